//! The namespace harness itself: LAN plumbing, cleanup on drop and on
//! panic, and a capture that does see plaintext (so the tunnel tests'
//! "marker never on the underlay" check can fail).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use vpn_tests::{count_containing, ping, require_root, Capture, Lan, Netns, TempDir};

fn ns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

#[test]
fn ns_harness_lan_pings_and_cleans_up() {
    if !require_root("ns_harness_lan_pings_and_cleans_up") {
        return;
    }
    let names;
    {
        let lan = Lan::with_hosts("hl", 3).unwrap();
        names = lan
            .hosts()
            .iter()
            .map(|h| h.ns.name().to_owned())
            .chain([lan.lan_ns().name().to_owned()])
            .collect::<Vec<_>>();
        assert!(names.iter().all(|n| ns_exists(n)));
        let (a, c) = (lan.host(0), lan.host(2));
        let s = ping(&a.ns, IpAddr::V4(c.addr), 3, 0.05).unwrap();
        assert_eq!(s.received, 3, "{s:?}");
        // Nothing leaks into the host's namespace: the LAN address is not ours.
        let host_addrs = std::process::Command::new("ip")
            .args(["-o", "addr"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&host_addrs.stdout).contains(&a.addr.to_string()));
    }
    for n in &names {
        assert!(!ns_exists(n), "{n} survived its drop");
    }
}

#[test]
fn ns_harness_removes_namespace_on_panic() {
    if !require_root("ns_harness_removes_namespace_on_panic") {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let r = std::thread::spawn(move || {
        let ns = Netns::new("panic").unwrap();
        tx.send(ns.name().to_owned()).unwrap();
        panic!("deliberate");
    })
    .join();
    assert!(r.is_err());
    let name = rx.recv().unwrap();
    assert!(!ns_exists(&name), "{name} survived a panic");
}

#[test]
fn ns_harness_capture_sees_plaintext_marker() {
    if !require_root("ns_harness_capture_sees_plaintext_marker") {
        return;
    }
    let tmp = TempDir::new("hcap").unwrap();
    let lan = Lan::with_hosts("hc", 2).unwrap();
    let (a, b) = (lan.host(0), lan.host(1));
    let marker = b"GV-PLAINTEXT-MARKER-0123456789";
    let dst = SocketAddr::new(IpAddr::V4(b.addr), 40000);
    let rx = b.ns.enter(move || UdpSocket::bind(dst)).unwrap().unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cap = Capture::start(&a.ns, "eth0", "udp", &tmp.path().join("cap.pcap")).unwrap();
    a.ns.enter(move || -> std::io::Result<usize> {
        UdpSocket::bind("0.0.0.0:0")?.send_to(marker, dst)
    })
    .unwrap()
    .unwrap();
    let mut buf = [0u8; 100];
    let (n, _) = rx.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], marker);
    let packets = cap.stop().unwrap();
    assert_eq!(
        count_containing(&packets, marker),
        1,
        "{} packets",
        packets.len()
    );
}
