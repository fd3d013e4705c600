//! `kill -9` of a daemon leaves state behind; `vpn-control down`, or a new
//! `up`, must remove all of it: no BPF programs attached or loaded, no VPN
//! links, routes, rules, qdiscs or nftables rules. The namespace must look
//! exactly as it did before the first `up`.

use std::collections::BTreeSet;
use std::time::Duration;

use vpn_tests::{
    daemon_programs, ping_both_ways, process_bpf, require_root, still_linked, still_loaded,
    wait_ping, wait_until_ok, Dataplane, Lab, NetState,
};

#[derive(Clone, Copy, Debug)]
enum Recovery {
    Down,
    Up,
}

/// Ids of the BPF programs and links the daemon of node `i` holds.
fn bpf_ids(lab: &Lab, i: usize) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let node = lab.node(i);
    let pid = node.daemon_pid().expect("daemon running");
    let progs = daemon_programs(node.ns(), pid)
        .expect("bpftool")
        .into_iter()
        .map(|p| p.id)
        .collect();
    let (_, links) = process_bpf(pid).expect("fdinfo");
    (progs, links.into_iter().map(|l| l.link_id).collect())
}

fn crash(tag: &str, dp: Dataplane, recovery: Recovery) {
    let mut lab = Lab::new(tag, &[dp, dp]).unwrap();
    let ns0 = lab.node(0).ns().clone();
    let before = NetState::capture(&ns0).unwrap();
    lab.up_all().unwrap();
    wait_ping(
        lab.node(0).ns(),
        lab.node(1).vpn_v4(),
        Duration::from_secs(20),
    )
    .unwrap();
    let (mut ids, mut links) = bpf_ids(&lab, 0);
    if dp == Dataplane::Kernel {
        assert!(
            ids.len() >= 2,
            "the kernel path shows no BPF programs: {ids:?}"
        );
        assert!(
            links.len() >= 2,
            "the kernel path holds no BPF links: {links:?}"
        );
    }
    let during = NetState::capture(&ns0).unwrap();
    assert_ne!(before, during, "up changed nothing in the namespace?");

    let st = lab.node_mut(0).kill9().unwrap();
    assert!(!st.success());
    match recovery {
        Recovery::Down => {
            let out = lab.node(0).down().expect("down after kill -9");
            eprintln!("down said: {out}");
        }
        Recovery::Up => {
            lab.node_mut(0).up().expect("up after kill -9");
            ping_both_ways(&lab, 0, 1, 5).expect("traffic after the restart");
            let (p, l) = bpf_ids(&lab, 0);
            ids.extend(p);
            links.extend(l);
            let st = lab.node_mut(0).stop().unwrap();
            assert!(st.success(), "restarted daemon exited with {st}");
        }
    }
    let after = NetState::capture(&ns0).unwrap();
    assert!(
        before == after,
        "state left behind after kill -9 and {recovery:?}:\n{}",
        before.diff(&after)
    );
    // Programs and links are freed asynchronously once the last reference goes.
    wait_until_ok(
        "the daemon's BPF programs and links to go",
        Duration::from_secs(10),
        || {
            let left = still_loaded(&ids).map_err(|e| e.to_string())?;
            let linked = still_linked(&links).map_err(|e| e.to_string())?;
            if left.is_empty() && linked.is_empty() {
                Ok(())
            } else {
                Err(format!("still loaded: {left:?}; links: {linked:?}"))
            }
        },
    )
    .unwrap();
    // The peer is untouched and still up.
    assert!(lab.node(1).status().is_ok());
}

#[test]
fn ns_kernel_kill9_then_down() {
    if require_root("ns_kernel_kill9_then_down") {
        crash("ckd", Dataplane::Kernel, Recovery::Down);
    }
}

#[test]
fn ns_kernel_kill9_then_up() {
    if require_root("ns_kernel_kill9_then_up") {
        crash("cku", Dataplane::Kernel, Recovery::Up);
    }
}

#[test]
fn ns_userspace_kill9_then_down() {
    if require_root("ns_userspace_kill9_then_down") {
        crash("cud", Dataplane::Userspace, Recovery::Down);
    }
}
