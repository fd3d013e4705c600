use super::*;
use crate::config::values::parse_prefix;
use crate::netdev::fake::FakeNet;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn cfg(extra: &str, endpoint: &str) -> Config {
    Config::parse(&format!(
        r#"
[interface]
name = "vpn0"
addresses = ["10.77.0.1/24"]
control_socket = "/nonexistent/gv-h3-test.sock"
{extra}

[[peer]]
name = "b"
endpoint = "{endpoint}"
allowed_ips = ["10.77.0.2/32"]
local_index = 1
remote_index = 2
send_key = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
recv_key = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100"
"#
    ))
    .unwrap()
}

#[test]
fn underlay_from_the_route_to_the_first_peer() {
    let n = FakeNet::new();
    let eth = n.add_other("eth0", 9000);
    n.add_underlay_route(
        parse_prefix("192.168.77.0/24").unwrap(),
        eth,
        Some("192.168.77.1".parse().unwrap()),
    );
    let u = block_on(find_underlay(&n, &cfg("", "192.168.77.2:51830")))
        .unwrap()
        .unwrap();
    assert_eq!((u.ifindex, u.name.as_str(), u.mtu), (eth, "eth0", 9000));
    assert_eq!(u.local, "192.168.77.1".parse::<std::net::IpAddr>().unwrap());
    // MTU: underlay minus overhead, clamped to what the data plane carries.
    assert_eq!(
        choose_mtu(&cfg("", "192.168.77.2:51830"), Some(&u)),
        vpn_common::wire::vpn_mtu(9000, false)
    );
    assert_eq!(
        choose_mtu(&cfg("mtu = 1300", "192.168.77.2:51830"), Some(&u)),
        1300
    );
    let mut u1500 = u.clone();
    u1500.mtu = 1500;
    assert_eq!(
        choose_mtu(&cfg("", "192.168.77.2:51830"), Some(&u1500)),
        1440
    );
}

#[test]
fn configured_underlay_and_its_address() {
    let n = FakeNet::new();
    let eth = n.add_other("eth1", 1500);
    block_on(n.add_address(eth, "192.168.9.5/24".parse().unwrap())).unwrap();
    block_on(n.add_address(eth, "fe80::1/64".parse().unwrap())).unwrap();
    block_on(n.add_address(eth, "fd00::5/64".parse().unwrap())).unwrap();
    let u = block_on(find_underlay(
        &n,
        &cfg("underlay = \"eth1\"", "192.168.9.7:51830"),
    ))
    .unwrap()
    .unwrap();
    assert_eq!(u.local, "192.168.9.5".parse::<std::net::IpAddr>().unwrap());
    let u = block_on(find_underlay(
        &n,
        &cfg("underlay = \"eth1\"", "[fd00::7]:51830"),
    ))
    .unwrap()
    .unwrap();
    assert_eq!(u.local, "fd00::5".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(choose_mtu(&cfg("", "[fd00::7]:51830"), Some(&u)), 1420);
    let e = block_on(find_underlay(
        &n,
        &cfg("underlay = \"eth9\"", "192.168.9.7:51830"),
    ))
    .unwrap_err();
    assert!(e.to_string().contains("eth9"), "{e}");
}

#[test]
fn no_route_is_a_clear_error() {
    let n = FakeNet::new();
    let e = block_on(find_underlay(&n, &cfg("", "192.168.77.2:51830"))).unwrap_err();
    assert!(
        e.to_string().contains("no route") && e.to_string().contains("interface.underlay"),
        "{e}"
    );
}

#[test]
fn route_through_the_vpn_itself_is_refused() {
    let n = FakeNet::new();
    let v = n.add_tun("vpn0");
    n.add_underlay_route(parse_prefix("0.0.0.0/0").unwrap(), v, None);
    let e = block_on(find_underlay(&n, &cfg("", "192.168.77.2:51830"))).unwrap_err();
    assert!(e.to_string().contains("VPN interface"), "{e}");
}

#[test]
fn cleanup_removes_leftover_links_and_socket() {
    let n = FakeNet::new();
    block_on(n.add_veth("vpn0", "vpn0p")).unwrap();
    let dir = std::env::temp_dir().join(format!("gv-h3-cleanup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("vpn0.sock");
    std::fs::write(&sock, b"").unwrap();
    let mut c = cfg("", "192.168.77.2:51830");
    c.interface.control_socket = sock.clone();
    let removed = block_on(cleanup(&n, &c)).unwrap();
    assert_eq!(
        removed,
        vec![
            "link vpn0".to_string(),
            format!("socket {}", sock.display())
        ]
    );
    assert!(n.link_named("vpn0p").is_none() && !sock.exists());
    assert!(block_on(cleanup(&n, &c)).unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn control_socket_serves_status_and_down() {
    use crate::dataplane::{Dataplane, DataplaneStats, DesiredState, PathKind};
    struct FakePlane;
    impl Dataplane for FakePlane {
        fn path(&self) -> PathKind {
            PathKind::Userspace
        }
        fn apply(&mut self, _: &DesiredState) -> Result<(), DataplaneError> {
            Ok(())
        }
        fn stats(&self) -> Result<DataplaneStats, DataplaneError> {
            let mut s = DataplaneStats::default();
            s.counters.insert(vpn_common::stats::Counter::DropBadTag, 4);
            Ok(s)
        }
        fn set_packet_sink(&mut self, _: crate::dataplane::PacketSink) {}
        fn pass_up_stats(&self) -> crate::dataplane::PassUpStats {
            Default::default()
        }
        fn inject(&self, _: &[Vec<u8>]) -> Result<usize, DataplaneError> {
            Ok(0)
        }
    }
    let dir = std::env::temp_dir().join(format!("gv-h3-sock-{}", std::process::id()));
    let sock = dir.join("s.sock");
    let c = cfg("", "192.168.77.2:51830");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = server::bind(&sock).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let ctx = Arc::new(server::Context {
            interface: "vpn0".into(),
            path: PathKind::Userspace,
            mtu: 1440,
            desired: Mutex::new(c.desired_state(1)),
            dataplane: Arc::new(Mutex::new(Box::new(FakePlane))),
            overlay: None,
        });
        let (tx, mut rx) = mpsc::channel(1);
        let task = tokio::spawn(server::serve(listener, ctx, tx));
        let s2 = sock.clone();
        let st = tokio::task::spawn_blocking(move || {
            control::request(&s2, &Request::Status, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap()
        .status
        .unwrap();
        assert_eq!(st.peers[0].name, "b");
        assert_eq!(st.counters["bad_tag"], 4);
        let s2 = sock.clone();
        let down = tokio::task::spawn_blocking(move || {
            control::request(&s2, &Request::Down, Duration::from_secs(5))
        });
        let mut stream = rx.recv().await.unwrap();
        server::write_response(&mut stream, &Response::ok())
            .await
            .unwrap();
        assert!(down.await.unwrap().unwrap().ok);
        task.abort();
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

fn overlay_cfg(bootstrap: &[&str]) -> Config {
    let b: Vec<String> = bootstrap
        .iter()
        .map(|ip| {
            format!(
                "\"/ip4/{ip}/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA\""
            )
        })
        .collect();
    Config::parse(&format!(
        "[interface]\nname = \"vpn0\"\n[overlay]\nidentity = \"k\"\ncertificate = \"c\"\nca = \"ca\"\nbootstrap = [{}]\n",
        b.join(", ")
    ))
    .unwrap()
}

#[test]
fn overlay_underlay_from_bootstrap_default_route_or_none() {
    let n = FakeNet::new();
    let eth = n.add_other("eth0", 1500);
    n.add_underlay_route(
        parse_prefix("192.168.91.0/24").unwrap(),
        eth,
        Some("192.168.91.2".parse().unwrap()),
    );
    // The route to the bootstrap address.
    let u = block_on(find_underlay(&n, &overlay_cfg(&["192.168.91.1"])))
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.name.as_str(), u.local),
        ("eth0", "192.168.91.2".parse().unwrap())
    );
    // No bootstrap and no default route: no underlay (the twin runs).
    assert_eq!(
        block_on(find_underlay(&n, &overlay_cfg(&[]))).unwrap(),
        None
    );
    // An unreachable bootstrap is an error naming it.
    let e = block_on(find_underlay(&n, &overlay_cfg(&["10.9.9.9"]))).unwrap_err();
    assert!(e.to_string().contains("10.9.9.9"), "{e}");
    // With a default route: a node without bootstrap uses it.
    let wan = n.add_other("wan0", 1400);
    n.add_underlay_route(
        parse_prefix("0.0.0.0/0").unwrap(),
        wan,
        Some("203.0.113.5".parse().unwrap()),
    );
    let u = block_on(find_underlay(&n, &overlay_cfg(&[])))
        .unwrap()
        .unwrap();
    assert_eq!(u.name, "wan0");
}

#[test]
fn a_bootstrap_node_on_this_host_means_the_link_holding_its_address() {
    let n = FakeNet::new();
    let lo = n.add_other("lo", 65536);
    let eth = n.add_other("eth0", 1500);
    block_on(n.add_address(eth, "192.168.91.1/24".parse().unwrap())).unwrap();
    n.add_underlay_route(parse_prefix("192.168.91.1/32").unwrap(), lo, None);
    let u = block_on(find_underlay(&n, &overlay_cfg(&["192.168.91.1"])))
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.name.as_str(), u.local),
        ("eth0", "192.168.91.1".parse().unwrap())
    );
}
