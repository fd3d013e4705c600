//! The kernel data plane attached for real, without the daemon: two
//! namespaces joined by a veth "underlay", each with a `vpn0`/`vpn0p` veth
//! pair set up as the daemon's netdev code does, `KernelDataplane::load`
//! in each, and real `ping` over the tunnel (IPv4 and IPv6 inner). Checks
//! the counters on both sides, that the underlay carries only UDP on the
//! data port, and that dropping the data plane detaches everything.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use vpn_common::stats::Counter;
use vpn_control::dataplane::kernel::{attached_ingress_programs, KernelDataplane, KernelParams};
use vpn_control::dataplane::{Dataplane, DesiredPeer, DesiredState, Prefix, RxKey, TxKey};
use vpn_tests::{require_root, Netns};

const PORT: u16 = 51830;
const MTU: u32 = 1440;

struct Side {
    ns: Netns,
    underlay: &'static str,
    vpn4: &'static str,
    vpn6: &'static str,
}

fn ifindex(ns: &Netns, dev: &str) -> u32 {
    let out = ns
        .run("cat", [format!("/sys/class/net/{dev}/ifindex")])
        .unwrap();
    out.trim().parse().unwrap()
}

fn mac(ns: &Netns, dev: &str) -> [u8; 6] {
    let out = ns
        .run("cat", [format!("/sys/class/net/{dev}/address")])
        .unwrap();
    let mut m = [0u8; 6];
    for (i, p) in out.trim().split(':').enumerate() {
        m[i] = u8::from_str_radix(p, 16).unwrap();
    }
    m
}

/// vpn0/vpn0p as the daemon makes them: offloads off on vpn0 (each packet
/// reaches vpn0p as one segment with its checksums filled in), NOARP, MTU
/// from the overhead.
fn setup_vpn(s: &Side, peer4: &str, peer6: &str) {
    let ns = &s.ns;
    ns.ip([
        "link", "add", "vpn0", "type", "veth", "peer", "name", "vpn0p",
    ])
    .unwrap();
    ns.run(
        "ethtool",
        [
            "-K", "vpn0", "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off",
        ],
    )
    .unwrap();
    ns.ip([
        "link",
        "set",
        "vpn0",
        "mtu",
        &MTU.to_string(),
        "arp",
        "off",
        "up",
    ])
    .unwrap();
    ns.ip(["link", "set", "vpn0p", "up"]).unwrap();
    ns.ip(["addr", "add", &format!("{}/32", s.vpn4), "dev", "vpn0"])
        .unwrap();
    ns.ip([
        "addr",
        "add",
        &format!("{}/128", s.vpn6),
        "dev",
        "vpn0",
        "nodad",
    ])
    .unwrap();
    ns.ip(["route", "add", &format!("{peer4}/32"), "dev", "vpn0"])
        .unwrap();
    ns.ip(["-6", "route", "add", &format!("{peer6}/128"), "dev", "vpn0"])
        .unwrap();
}

fn desired(
    peer_ep: &str,
    peer4: &str,
    peer6: &str,
    tx: [u8; 32],
    rx: [u8; 32],
    tx_idx: u32,
    rx_idx: u32,
) -> DesiredState {
    let mut peers = BTreeMap::new();
    peers.insert(
        1,
        DesiredPeer {
            id: 1,
            name: "other".into(),
            endpoint: Some(SocketAddr::new(peer_ep.parse().unwrap(), PORT)),
            allowed: vec![
                Prefix {
                    addr: peer4.parse().unwrap(),
                    len: 32,
                },
                Prefix {
                    addr: peer6.parse().unwrap(),
                    len: 128,
                },
            ],
            tx: Some(TxKey {
                key: tx,
                remote_index: tx_idx,
                initial_counter: 1,
            }),
            rx: vec![RxKey {
                key: rx,
                local_index: rx_idx,
            }],
        },
    );
    DesiredState { peers }
}

fn load(s: &Side, state: DesiredState) -> KernelDataplane {
    let params = KernelParams {
        underlay_ifindex: ifindex(&s.ns, "eth0"),
        vpn_ifindex: ifindex(&s.ns, "vpn0"),
        vpn_peer_ifindex: ifindex(&s.ns, "vpn0p"),
        vpn_mac: mac(&s.ns, "vpn0"),
        local_addr: s.underlay.parse::<IpAddr>().unwrap(),
        data_port: PORT,
        mtu: MTU,
    };
    // Attaching resolves interface names in the caller's namespace.
    s.ns.enter(move || {
        let mut dp = KernelDataplane::load(&params).expect("load and attach");
        dp.enable_program_stats().expect("enable BPF stats");
        dp.apply(&state).expect("apply");
        dp
    })
    .unwrap()
}

/// A running `tcpdump -x` on one device of a namespace.
struct Capture {
    child: std::process::Child,
    path: std::path::PathBuf,
}

impl Capture {
    /// Starts tcpdump and waits until it listens.
    fn start(ns: &Netns, dev: &str) -> Self {
        use std::io::BufRead;
        let path = std::env::temp_dir().join(format!(
            "gv-bpfattach-{}-{}-{dev}.txt",
            std::process::id(),
            ns.name()
        ));
        let mut child = ns
            .cmd("tcpdump")
            .args(["-i", dev, "-n", "-l", "-x", "-U", "-c", "500"])
            .stdout(std::fs::File::create(&path).unwrap())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                panic!("tcpdump on {dev} exited: {seen}");
            }
            seen.push_str(&line);
            if line.contains("listening on") {
                break;
            }
        }
        Self { child, path }
    }

    /// Stops it and returns the captured bytes as one hex string.
    fn finish(mut self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dump = std::fs::read_to_string(&self.path).unwrap_or_default();
        let _ = std::fs::remove_file(&self.path);
        dump.lines()
            .filter(|l| l.trim_start().starts_with("0x"))
            .flat_map(|l| l.split_whitespace().skip(1))
            .collect()
    }
}

/// TC ingress programs of eth0 and vpn0p inside the namespace.
fn attached_programs(ns: &Netns) -> Vec<String> {
    ns.enter(|| {
        let mut names = Vec::new();
        for dev in ["eth0", "vpn0p"] {
            names.extend(attached_ingress_programs(dev).expect("query TCX"));
        }
        names
    })
    .unwrap()
}

/// Two namespaces joined by a veth underlay, the kernel data plane loaded
/// and attached in each, sessions between them.
struct Pair {
    a: Side,
    b: Side,
    dpa: KernelDataplane,
    dpb: KernelDataplane,
    k_ab: [u8; 32],
    k_ba: [u8; 32],
}

fn pair(tag: &str) -> Pair {
    pair_over(tag, ["192.168.91.1", "192.168.91.2"])
}

/// As [`pair`], with the given underlay addresses (IPv4 or IPv6).
fn pair_over(tag: &str, underlay: [&'static str; 2]) -> Pair {
    let ta = format!("{tag}a");
    let tb = format!("{tag}b");
    let a = Side {
        ns: Netns::new(&ta).unwrap(),
        underlay: underlay[0],
        vpn4: "10.91.0.1",
        vpn6: "fd91::1",
    };
    let b = Side {
        ns: Netns::new(&tb).unwrap(),
        underlay: underlay[1],
        vpn4: "10.91.0.2",
        vpn6: "fd91::2",
    };
    a.ns.ip([
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        b.ns.name(),
    ])
    .unwrap();
    for s in [&a, &b] {
        let plen = if s.underlay.contains(':') { 64 } else { 24 };
        s.ns.ip([
            "addr",
            "add",
            &format!("{}/{plen}", s.underlay),
            "dev",
            "eth0",
            "nodad",
        ])
        .unwrap();
        s.ns.ip(["link", "set", "eth0", "up"]).unwrap();
    }
    setup_vpn(&a, b.vpn4, b.vpn6);
    setup_vpn(&b, a.vpn4, a.vpn6);
    let (k_ab, k_ba) = ([0xabu8; 32], [0xbau8; 32]);
    let dpa = load(
        &a,
        desired(b.underlay, b.vpn4, b.vpn6, k_ab, k_ba, 200, 100),
    );
    let dpb = load(
        &b,
        desired(a.underlay, a.vpn4, a.vpn6, k_ba, k_ab, 100, 200),
    );
    Pair {
        a,
        b,
        dpa,
        dpb,
        k_ab,
        k_ba,
    }
}

#[test]
fn bpf_attach_ping_over_the_kernel_path() {
    if !require_root("bpf_attach_ping_over_the_kernel_path") {
        return;
    }
    let Pair {
        a,
        b,
        dpa,
        dpb,
        k_ab,
        k_ba,
    } = pair("bpfp");
    assert_eq!(attached_programs(&a.ns), ["vpn_decrypt", "vpn_encrypt"]);

    // Capture the underlay, and vpn0 as a positive control, while pinging
    // with a marker payload.
    let underlay_cap = Capture::start(&b.ns, "eth0");
    let vpn_cap = Capture::start(&b.ns, "vpn0");
    let marker = "6d61726b6572"; // "marker"
    let ping4 =
        a.ns.output(
            "ping",
            ["-c", "3", "-i", "0.2", "-W", "2", "-p", marker, b.vpn4],
        )
        .unwrap();
    let ping6 =
        a.ns.output(
            "ping",
            [
                "-6", "-c", "3", "-i", "0.2", "-W", "2", "-p", marker, b.vpn6,
            ],
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let underlay_hex = underlay_cap.finish();
    let vpn_hex = vpn_cap.finish();

    let sa = dpa.stats().unwrap().counters;
    let sb = dpb.stats().unwrap().counters;
    eprintln!(
        "A: {sa:?}\nB: {sb:?}\nprograms A: {:?}",
        dpa.program_stats()
    );
    assert!(
        ping4.status.success(),
        "IPv4 ping over the tunnel failed: {}",
        String::from_utf8_lossy(&ping4.stdout)
    );
    assert!(
        ping6.status.success(),
        "IPv6 ping over the tunnel failed: {}",
        String::from_utf8_lossy(&ping6.stdout)
    );
    // Six echo requests each way, six replies each way.
    assert!(
        sa[&Counter::TxPackets] >= 6 && sa[&Counter::RxPackets] >= 6,
        "{sa:?}"
    );
    assert!(
        sb[&Counter::TxPackets] >= 6 && sb[&Counter::RxPackets] >= 6,
        "{sb:?}"
    );
    for c in Counter::ALL.iter().filter(|c| c.is_drop()) {
        assert_eq!(sa[c] + sb[c], 0, "drops of {}", c.name());
    }
    // The underlay never shows the ICMP payload in clear, while vpn0 (the
    // decrypted side) does: the check can see the marker when it is there.
    assert!(
        vpn_hex.contains(marker),
        "marker not seen on vpn0: capture broken?"
    );
    assert!(
        !underlay_hex.is_empty(),
        "tcpdump captured nothing on the underlay"
    );
    assert!(
        underlay_hex.contains("ca76"),
        "no data-port traffic on the underlay"
    );
    assert!(
        !underlay_hex.contains(marker),
        "plaintext marker on the underlay"
    );
    let runs = dpa.program_stats();
    assert!(runs.iter().all(|(_, _, cnt)| *cnt > 0), "{runs:?}");

    // A VPN destination without a session: counted, and passed up on vpn0p
    // where the reader sees it.
    let mut dpa = dpa;
    let mut state = desired(b.underlay, b.vpn4, b.vpn6, k_ab, k_ba, 200, 100);
    state.peers.insert(
        2,
        DesiredPeer {
            id: 2,
            name: "no-session".into(),
            endpoint: None,
            allowed: vec![Prefix {
                addr: "10.91.0.9".parse().unwrap(),
                len: 32,
            }],
            tx: None,
            rx: vec![],
        },
    );
    dpa.apply(&state).unwrap();
    a.ns.ip(["route", "add", "10.91.0.9/32", "dev", "vpn0"])
        .unwrap();
    let before = dpa.stats().unwrap().counters[&Counter::NoSession];
    let _ =
        a.ns.output("ping", ["-c", "2", "-i", "0.2", "-W", "1", "10.91.0.9"]);
    let after = dpa.stats().unwrap().counters[&Counter::NoSession];
    assert!(after >= before + 2, "no_session {before} -> {after}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while dpa.no_session_packets() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        dpa.no_session_packets() >= 2,
        "reader saw {}",
        dpa.no_session_packets()
    );
    assert_eq!(
        dpa.stats().unwrap().counters[&Counter::TxPackets],
        sa[&Counter::TxPackets]
    );

    // Dropping the data plane detaches the programs (as process exit does).
    drop(dpa);
    assert!(attached_programs(&a.ns).is_empty());
    drop(dpb);
}

/// Per-packet cost of the attached programs under load, from the kernel's
/// own statistics (`run_time_ns / run_cnt`): UDP datagrams whose inner
/// packets are 1,400 bytes, encrypt on the sender, decrypt on the receiver.
#[test]
fn bpf_attach_cost_under_load() {
    if !require_root("bpf_attach_cost_under_load") {
        return;
    }
    let Pair { a, b, dpa, dpb, .. } = pair("bpfl");
    let mut server =
        b.ns.cmd("iperf3")
            .args(["-s", "-1", "-p", "5299"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    // 1372 bytes of UDP payload + 28 bytes of headers = 1400-byte inner packets.
    let client =
        a.ns.output(
            "iperf3",
            [
                "-u", "-c", b.vpn4, "-p", "5299", "-l", "1372", "-b", "300M", "-t", "3",
            ],
        )
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        client.status.success(),
        "iperf3: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    let enc = dpa.program_stats();
    let dec = dpb.program_stats();
    let per = |v: &[(String, u64, u64)], name: &str| {
        let (_, ns, cnt) = v.iter().find(|(n, _, _)| n == name).unwrap();
        (*ns, *cnt)
    };
    let (e_ns, e_cnt) = per(&enc, "vpn_encrypt");
    let (d_ns, d_cnt) = per(&dec, "vpn_decrypt");
    let sa = dpa.stats().unwrap().counters;
    let sb = dpb.stats().unwrap().counters;
    eprintln!(
        "under load: encrypt {} ns/packet over {e_cnt} runs, decrypt {} ns/packet over {d_cnt} runs; tx {} rx {}",
        e_ns / e_cnt.max(1),
        d_ns / d_cnt.max(1),
        sa[&Counter::TxPackets],
        sb[&Counter::RxPackets]
    );
    assert!(sa[&Counter::TxPackets] > 10_000, "{sa:?}");
    assert!(sb[&Counter::RxPackets] > 10_000, "{sb:?}");
    for c in Counter::ALL.iter().filter(|c| c.is_drop()) {
        assert_eq!(sa[c] + sb[c], 0, "drops of {}", c.name());
    }
}

/// The same tunnel over an IPv6 underlay (outer IPv6 + UDP with its
/// mandatory checksum, which the receiving stack never sees but a real
/// network's middleboxes may check).
#[test]
fn bpf_attach_ping_over_ipv6_underlay() {
    if !require_root("bpf_attach_ping_over_ipv6_underlay") {
        return;
    }
    let Pair { a, b, dpa, dpb, .. } = pair_over("bpf6", ["fd00:91::1", "fd00:91::2"]);
    let ping4 =
        a.ns.output("ping", ["-c", "3", "-i", "0.2", "-W", "2", b.vpn4])
            .unwrap();
    let ping6 =
        a.ns.output("ping", ["-6", "-c", "3", "-i", "0.2", "-W", "2", b.vpn6])
            .unwrap();
    let sa = dpa.stats().unwrap().counters;
    let sb = dpb.stats().unwrap().counters;
    assert!(
        ping4.status.success(),
        "IPv4 ping over an IPv6 underlay: {sa:?} {sb:?}"
    );
    assert!(
        ping6.status.success(),
        "IPv6 ping over an IPv6 underlay: {sa:?} {sb:?}"
    );
    assert!(
        sa[&Counter::RxPackets] >= 6 && sb[&Counter::RxPackets] >= 6,
        "{sa:?} {sb:?}"
    );
    for c in Counter::ALL.iter().filter(|c| c.is_drop()) {
        assert_eq!(sa[c] + sb[c], 0, "drops of {}", c.name());
    }
}

/// Child half of [`bpf_attach_kill9_detaches`]: loads and attaches in the
/// namespace named by `GV_BPF_KILL9_NS`, says so, and waits to be killed.
/// Ignored: only the parent runs it, by re-executing this test binary.
#[test]
#[ignore = "helper process of bpf_attach_kill9_detaches"]
fn bpf_attach_kill9_child() {
    let Ok(ns) = std::env::var("GV_BPF_KILL9_NS") else {
        panic!("run only by bpf_attach_kill9_detaches");
    };
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: setns on a valid namespace fd, for this process's main thread.
    let rc = unsafe { libc::setns(fd, libc::CLONE_NEWNET) };
    assert_eq!(rc, 0);
    // (sysfs still shows the original namespace here: ask the kernel.)
    let idx = |dev: &str| {
        let name = std::ffi::CString::new(dev).unwrap();
        // SAFETY: a valid NUL-terminated name.
        let i = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(i, 0, "no {dev}");
        i
    };
    let params = KernelParams {
        underlay_ifindex: idx("eth0"),
        vpn_ifindex: idx("vpn0"),
        vpn_peer_ifindex: idx("vpn0p"),
        vpn_mac: [2, 0, 0, 0, 0, 1],
        local_addr: "192.168.92.1".parse().unwrap(),
        data_port: PORT,
        mtu: MTU,
    };
    let _dp = KernelDataplane::load(&params).unwrap();
    println!("GV-READY");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

/// A `kill -9` of the process that attached the programs leaves nothing
/// attached: the TCX links die with its file descriptors.
#[test]
fn bpf_attach_kill9_detaches() {
    if !require_root("bpf_attach_kill9_detaches") {
        return;
    }
    use std::io::BufRead;
    let ns = Netns::new("bpfk").unwrap();
    ns.ip([
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])
    .unwrap();
    ns.ip(["addr", "add", "192.168.92.1/24", "dev", "eth0"])
        .unwrap();
    ns.ip(["link", "set", "eth0", "up"]).unwrap();
    ns.ip([
        "link", "add", "vpn0", "type", "veth", "peer", "name", "vpn0p",
    ])
    .unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "bpf_attach_kill9_child",
            "--nocapture",
        ])
        .env("GV_BPF_KILL9_NS", ns.name())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut ready = false;
    let mut line = String::new();
    while out.read_line(&mut line).unwrap_or(0) > 0 {
        if line.contains("GV-READY") {
            ready = true;
            break;
        }
        line.clear();
    }
    let attached = attached_programs(&ns);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    assert!(ready, "the child did not attach");
    assert_eq!(attached, ["vpn_decrypt", "vpn_encrypt"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !attached_programs(&ns).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        attached_programs(&ns).is_empty(),
        "{:?}",
        attached_programs(&ns)
    );
}
