//! Two hosts on a LAN, real `vpn-control up` daemons, real ping and iperf3
//! over every combination of data paths: kernel<->kernel,
//! userspace<->userspace, kernel->userspace and userspace->kernel, IPv4 and
//! IPv6 inner. tcpdump on the underlay must never see a marker that crossed
//! the tunnel in clear, and the daemons must report the right path, moving
//! counters and no integrity drops.

use std::time::Duration;

use vpn_tests::{
    iperf_between, marker_check, ping_both_ways, require_root, Dataplane, Lab, NetState, Status,
};

fn check_status(lab: &Lab, i: usize, expected: Dataplane) -> Status {
    let node = lab.node(i);
    let st = node.status().expect("status --json");
    assert_eq!(st.interface, node.spec.ifname, "{st:?}");
    assert_eq!(st.dataplane, expected.as_str(), "{st:?}");
    assert_eq!(st.peers.len(), lab.len() - 1, "{st:?}");
    for p in &st.peers {
        assert_eq!(
            p.path,
            expected.as_str(),
            "peer {} of {}: {st:?}",
            p.name,
            node.spec.name
        );
        assert!(
            p.tx_packets > 0 && p.rx_packets > 0,
            "no traffic counted: {st:?}"
        );
        assert!(p.tx_bytes > 0 && p.rx_bytes > 0, "no bytes counted: {st:?}");
    }
    assert!(
        st.integrity_failures().is_empty(),
        "{} dropped packets on a clean link: {:?}",
        node.spec.name,
        st.integrity_failures()
    );
    st
}

/// Runs the whole pair check; `a` is the iperf3 client.
fn pair(tag: &str, a: Dataplane, b: Dataplane) {
    let mut lab = Lab::new(tag, &[a, b]).expect("lab");
    let before: Vec<NetState> = (0..2)
        .map(|i| NetState::capture(lab.node(i).ns()).expect("state"))
        .collect();
    lab.up_all().expect("daemons up");
    ping_both_ways(&lab, 0, 1, 20).expect("ping both ways");

    let m = marker_check(&lab, 0, 1).expect("marker check");
    assert_eq!(
        m.delivered, 4,
        "markers must cross the tunnel (v4, v6, both ways): {m:?}"
    );
    assert!(
        m.data_port_packets >= 4,
        "the capture saw no tunnel packets: {m:?}"
    );
    assert_eq!(
        m.plaintext_hits, 0,
        "marker seen in clear on the underlay: {m:?}"
    );

    let r = iperf_between(&lab, 0, 1, 2).expect("iperf3");
    eprintln!(
        "{tag}: {} -> {}: {:.3} Gb/s, {} retransmits",
        a.as_str(),
        b.as_str(),
        r.received_bps / 1e9,
        r.retransmits
    );
    check_status(&lab, 0, a);
    check_status(&lab, 1, b);

    // Clean shutdown, node 0 by SIGTERM, node 1 by `vpn-control down`:
    // both exit 0 and leave their namespace as they found it.
    let st = lab.node_mut(0).stop().expect("daemon stops on SIGTERM");
    assert!(st.success(), "daemon 0 exited with {st} on SIGTERM");
    let said = lab.node(1).down().expect("vpn-control down");
    let st = lab
        .node_mut(1)
        .wait_exit(Duration::from_secs(15))
        .expect("daemon exits after down");
    assert!(
        st.success(),
        "daemon 1 exited with {st} after down ({said})"
    );
    for (i, b) in before.iter().enumerate() {
        let after = NetState::capture(lab.node(i).ns()).expect("state");
        assert!(
            *b == after,
            "node {i} left state behind:\n{}",
            b.diff(&after)
        );
    }
}

#[test]
fn ns_kernel_to_kernel() {
    if require_root("ns_kernel_to_kernel") {
        pair("kk", Dataplane::Kernel, Dataplane::Kernel);
    }
}

#[test]
fn ns_userspace_to_userspace() {
    if require_root("ns_userspace_to_userspace") {
        pair("uu", Dataplane::Userspace, Dataplane::Userspace);
    }
}

#[test]
fn ns_kernel_to_userspace() {
    if require_root("ns_kernel_to_userspace") {
        pair("ku", Dataplane::Kernel, Dataplane::Userspace);
    }
}

#[test]
fn ns_userspace_to_kernel() {
    if require_root("ns_userspace_to_kernel") {
        pair("uk", Dataplane::Userspace, Dataplane::Kernel);
    }
}
