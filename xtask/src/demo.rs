//! `cargo xtask demo`: three hosts in network namespaces on one LAN; all
//! pairs ping each other and one pair runs iperf3, first over the kernel
//! path, then over the userspace twin; then a short report. Everything is
//! removed at the end, also on error or Ctrl-C.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use vpn_tests::{
    daemon_programs, iperf3_tcp, ping, wait_ping, Dataplane, IperfServer, Lab, PingStats, Status,
};

use crate::util::{cargo, describe, is_root, run_ok, target_dir};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of hosts (2 to 8).
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    /// iperf3 duration in seconds.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// Run the debug `vpn-control` that `cargo xtask test` builds instead of
    /// the release one (shorter build; the userspace twin is then ~40x
    /// slower, so its throughput figure means little).
    #[arg(long)]
    debug: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM only set a flag: the demo stops at the next step and
/// its destructors stop the daemons and delete the namespaces.
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: cleaning up");
    }
    Ok(())
}

/// What one path's run measured.
struct PathReport {
    path: Dataplane,
    pings: Vec<(String, PingStats)>,
    ping6: Option<PingStats>,
    iperf_gbps: f64,
    iperf_pair: String,
    statuses: Vec<(String, Status)>,
    programs: Vec<String>,
    elapsed: Duration,
}

pub fn run(args: DemoArgs) -> Result<()> {
    if !(2..=8).contains(&args.hosts) {
        bail!("--hosts must be between 2 and 8");
    }
    crate::setup::ensure()?;
    if !is_root() {
        bail!("the demo builds network namespaces and loads eBPF programs: run it as root");
    }
    install_signal_handlers();
    let profile = if args.debug { "debug" } else { "release" };
    let mut build = cargo();
    build.args(["build", "-p", "vpn-control"]);
    if !args.debug {
        build.arg("--release");
    }
    eprintln!("demo: {}", describe(&build));
    run_ok(&mut build)?;
    let bin = target_dir().join(profile).join("vpn-control");
    std::env::set_var("VPN_CONTROL_BIN", &bin);
    check_interrupted()?;

    let mut reports = Vec::new();
    for path in [Dataplane::Kernel, Dataplane::Userspace] {
        eprintln!(
            "demo: {} path: starting {} hosts",
            path.as_str(),
            args.hosts
        );
        let r = run_path(path, &args);
        if INTERRUPTED.load(Ordering::SeqCst) {
            // run_path's destructors already stopped the daemons and
            // removed the namespaces.
            eprintln!("demo: interrupted; daemons stopped and namespaces removed");
            std::process::exit(130);
        }
        reports.push(r.with_context(|| format!("{} path", path.as_str()))?);
    }
    println!("{}", render(&reports, args.hosts, profile));
    Ok(())
}

fn run_path(path: Dataplane, args: &DemoArgs) -> Result<PathReport> {
    let start = Instant::now();
    let mut lab = Lab::new("demo", &vec![path; args.hosts])?;
    lab.up_all()?;
    check_interrupted()?;
    let n = lab.len();
    // First packets may wait for neighbour resolution: wait for each pair once.
    for i in 0..n {
        for j in 0..n {
            if i != j {
                wait_ping(
                    lab.node(i).ns(),
                    lab.node(j).vpn_v4(),
                    Duration::from_secs(20),
                )?;
                check_interrupted()?;
            }
        }
    }
    let mut pings = Vec::new();
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let (a, b) = (lab.node(i), lab.node(j));
            let s = ping(a.ns(), b.vpn_v4(), 10, 0.05)?;
            pings.push((format!("{} -> {}", a.spec.name, b.spec.name), s));
            check_interrupted()?;
        }
    }
    let ping6 = Some(ping(lab.node(0).ns(), lab.node(1).vpn_v6(), 10, 0.05)?);
    check_interrupted()?;

    let server = IperfServer::start(lab.node(1).ns(), 5201, &lab.dir().join("iperf3-server.log"))?;
    let dst: IpAddr = lab.node(1).vpn_v4();
    let iperf = iperf3_tcp(lab.node(0).ns(), dst, server.port, args.seconds, 1)?;
    drop(server);
    check_interrupted()?;

    let mut programs = Vec::new();
    if path == Dataplane::Kernel {
        for node in lab.nodes() {
            if let Some(pid) = node.daemon_pid() {
                for p in daemon_programs(node.ns(), pid)? {
                    programs.push(format!(
                        "{}: {} (id {}, {})",
                        node.spec.name, p.name, p.id, p.prog_type
                    ));
                }
            }
        }
    }
    let mut statuses = Vec::new();
    for node in lab.nodes() {
        statuses.push((node.spec.name.clone(), node.status()?));
    }
    let iperf_pair = format!("{} -> {}", lab.node(0).spec.name, lab.node(1).spec.name);
    drop(lab); // stops the daemons and removes the namespaces
    Ok(PathReport {
        path,
        pings,
        ping6,
        iperf_gbps: iperf.received_bps / 1e9,
        iperf_pair,
        statuses,
        programs,
        elapsed: start.elapsed(),
    })
}

fn render(reports: &[PathReport], hosts: usize, profile: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "GroupVPN demo: {hosts} hosts in network namespaces on one LAN (underlay 192.168.77.0/24),"
    );
    let _ = writeln!(
        s,
        "VPN 10.77.0.0/24 and fd77::/64, lab keys, every host a peer of every other."
    );
    let _ = writeln!(
        s,
        "vpn-control {profile} build; ping: 10 per ordered pair (IPv4), IPv6 n0 -> n1; iperf3: one TCP stream."
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<10} {:>9} {:>10} {:>14} {:>14} {:>15} {:>11}",
        "path", "pairs ok", "ping loss", "rtt avg (ms)", "ping6 (ms)", "iperf3 (Gb/s)", "time (s)"
    );
    for r in reports {
        let sent: u32 = r.pings.iter().map(|(_, p)| p.transmitted).sum();
        let recv: u32 = r.pings.iter().map(|(_, p)| p.received).sum();
        let ok = r.pings.iter().filter(|(_, p)| p.received > 0).count();
        let loss = if sent == 0 {
            100.0
        } else {
            100.0 * f64::from(sent - recv.min(sent)) / f64::from(sent)
        };
        let answered: Vec<f64> = r
            .pings
            .iter()
            .filter(|(_, p)| p.received > 0)
            .map(|(_, p)| p.rtt_avg_ms)
            .collect();
        let rtt = if answered.is_empty() {
            f64::NAN
        } else {
            answered.iter().sum::<f64>() / answered.len() as f64
        };
        let ping6 = r.ping6.map_or(f64::NAN, |p| p.rtt_avg_ms);
        let _ = writeln!(
            s,
            "{:<10} {:>9} {:>9.1}% {:>14.3} {:>14.3} {:>15.2} {:>11.1}",
            r.path.as_str(),
            format!("{ok}/{}", r.pings.len()),
            loss,
            rtt,
            ping6,
            r.iperf_gbps,
            r.elapsed.as_secs_f64()
        );
    }
    for r in reports {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{} path (iperf3 {}, single TCP stream):",
            r.path.as_str(),
            r.iperf_pair
        );
        for (name, st) in &r.statuses {
            let _ = writeln!(
                s,
                "  {name}: interface {} mtu {} dataplane {}",
                st.interface, st.mtu, st.dataplane
            );
            for p in &st.peers {
                let _ = writeln!(
                    s,
                    "    peer {:<4} path {:<9} tx {:>8} pkts {:>12} B   rx {:>8} pkts {:>12} B",
                    p.name, p.path, p.tx_packets, p.tx_bytes, p.rx_packets, p.rx_bytes
                );
            }
            let nonzero: Vec<String> = st
                .counters
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                s,
                "    counters: {}",
                if nonzero.is_empty() {
                    "all zero".into()
                } else {
                    nonzero.join(" ")
                }
            );
        }
        if !r.programs.is_empty() {
            let _ = writeln!(s, "  BPF programs (bpftool):");
            for p in &r.programs {
                let _ = writeln!(s, "    {p}");
            }
        }
    }
    s
}
