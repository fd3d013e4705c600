//! The kernel path while traffic flows: `vpn-control status --json` reports
//! path `kernel` and moving counters, and bpftool shows the daemon's
//! programs attached inside the host's namespace.

use std::net::IpAddr;
use std::time::Duration;

use vpn_tests::{
    daemon_programs, ifindex, process_bpf, require_root, wait_ping, wait_until, Background,
    Dataplane, IperfServer, Lab,
};

#[test]
fn ns_kernel_status_and_programs_while_traffic_flows() {
    if !require_root("ns_kernel_status_and_programs_while_traffic_flows") {
        return;
    }
    let mut lab = Lab::new("ks", &[Dataplane::Kernel, Dataplane::Kernel]).unwrap();
    lab.up_all().unwrap();
    let (a, b) = (lab.node(0), lab.node(1));
    wait_ping(a.ns(), b.vpn_v4(), Duration::from_secs(20)).unwrap();

    let server = IperfServer::start(b.ns(), 5201, &lab.dir().join("iperf-s.log")).unwrap();
    let dst: IpAddr = b.vpn_v4();
    let mut client_cmd = a.ns().cmd("iperf3");
    client_cmd.args(["-c", &dst.to_string(), "-p", "5201", "-t", "4"]);
    let mut client =
        Background::spawn("iperf3 client", client_cmd, &lab.dir().join("iperf-c.log")).unwrap();

    // While the client runs, the counters move and the path is `kernel`.
    let first = a.status().unwrap();
    let tx0 = first.peers[0].tx_packets;
    let moving = wait_until("kernel tx counters to move", Duration::from_secs(3), || {
        let s = a.status().ok()?;
        (s.peers[0].tx_packets > tx0 + 100).then_some(s)
    })
    .unwrap();
    assert!(
        client.is_running(),
        "iperf3 ended before the check: {}",
        client.log()
    );
    assert_eq!(moving.dataplane, "kernel");
    assert_eq!(moving.peers[0].path, "kernel", "{moving:?}");
    let rx_b = b.status().unwrap();
    assert_eq!(rx_b.peers[0].path, "kernel");
    assert!(rx_b.peers[0].rx_packets > 100, "{rx_b:?}");

    for node in lab.nodes() {
        let pid = node.daemon_pid().unwrap();
        let progs = daemon_programs(node.ns(), pid).unwrap();
        assert!(
            progs.len() >= 2,
            "{}: expected the encrypt and decrypt programs, bpftool shows {progs:?}",
            node.spec.name
        );
        // Attached inside this namespace: one on the underlay (decrypt),
        // one on the veth wire end (encrypt).
        let (_, links) = process_bpf(pid).unwrap();
        let wire_end = format!("{}p", node.spec.ifname);
        for dev in [node.spec.underlay_if.as_str(), wire_end.as_str()] {
            let idx = ifindex(node.ns(), dev).unwrap();
            let link = links
                .iter()
                .find(|l| l.ifindex == Some(idx))
                .unwrap_or_else(|| {
                    panic!("{}: nothing attached to {dev}: {links:?}", node.spec.name)
                });
            assert!(
                progs.iter().any(|p| p.id == link.prog_id),
                "{}: program {} on {dev} not shown by bpftool: {progs:?}",
                node.spec.name,
                link.prog_id
            );
        }
        eprintln!("{}: {progs:?} {links:?}", node.spec.name);
    }

    let st = client.wait(Duration::from_secs(15)).unwrap();
    assert!(st.success(), "iperf3 client failed: {}", client.log());
    drop(server);
}

#[test]
fn ns_auto_picks_the_kernel_path_where_it_loads() {
    if !require_root("ns_auto_picks_the_kernel_path_where_it_loads") {
        return;
    }
    let mut lab = Lab::new("auto", &[Dataplane::Auto, Dataplane::Userspace]).unwrap();
    lab.up_all().unwrap();
    vpn_tests::ping_both_ways(&lab, 0, 1, 5).unwrap();
    let st = lab.node(0).status().unwrap();
    assert_eq!(st.dataplane, "kernel", "{st:?}");
    assert_eq!(st.peers[0].path, "kernel", "{st:?}");
    let log = lab.node(0).log();
    assert!(!log.to_lowercase().contains("falling back"), "{log}");
}
