//! Address allocation through the private DHT, end to end through
//! `GroupOverlay`: distinct addresses that resolve, a race for a small range
//! that leaves no address held twice, release on shutdown, and a member
//! that stops leaving the others' views after its lease.

mod overlay_common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use overlay_common::*;
use vpn_control::overlay::node::{NodeConfig, OverlayNode};
use vpn_control::overlay::GroupOverlay;
use vpn_pki::{AddressAssignment, CaParams, GroupCa, NodeIdentity};

fn allocating(ca: &GroupCa, name: &str, port: u64, boot: &libp2p::Multiaddr) -> NodeConfig {
    let id = NodeIdentity::generate();
    let c = cert(ca, &id, name, AddressAssignment::Allocate);
    let mut cfg = node_config(ca, &id, c, port, boot, 51830, ip("127.0.0.1"));
    cfg.allocation = short_allocation();
    cfg.join_grace = Duration::from_secs(1);
    cfg
}

fn own(n: &OverlayNode) -> Vec<IpAddr> {
    n.view()
        .borrow()
        .addresses
        .iter()
        .map(|(a, _)| *a)
        .collect()
}

async fn wait_for_address(n: &OverlayNode, deadline: Instant) -> IpAddr {
    wait_until(deadline, "an allocated address", || async {
        !own(n).is_empty()
    })
    .await;
    let v = own(n);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(n.view().borrow().addresses[0].1, 24);
    v[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocating_members_get_distinct_addresses_and_connect() {
    let base = port_base(11);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut tasks = Tasks::default();
    let boot = bootstrap(&mut tasks, base);
    let ca = ca();
    let a = start(&mut tasks, allocating(&ca, "alpha", base + 1, &boot));
    let b = start(&mut tasks, allocating(&ca, "beta", base + 2, &boot));
    let xa = wait_for_address(&a, deadline).await;
    let xb = wait_for_address(&b, deadline).await;
    assert_ne!(xa, xb);
    assert_eq!(a.connect_ip(xb).await.unwrap(), b.peer_id());
    // The responder learns the initiator's allocated address (announced,
    // then resolved in the private DHT).
    wait_until(deadline, "b's view of a with its address", || async {
        b.view()
            .borrow()
            .peers
            .get(&a.peer_id())
            .is_some_and(|p| p.addresses == vec![xa] && p.keys.tx.is_some())
    })
    .await;
    assert_eq!(b.connect_ip(xa).await.unwrap(), a.peer_id());
    let pa = b.view().borrow().peers[&a.peer_id()].clone();
    assert_eq!(pa.name, "alpha");
    assert_eq!(a.view().borrow().peers[&b.peer_id()].addresses, vec![xb]);
}

/// Three members race for a range with two host addresses: two hold one
/// each, the third none, and it stays that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_for_a_small_range_leaves_no_duplicate() {
    let base = port_base(12);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut tasks = Tasks::default();
    let boot = bootstrap(&mut tasks, base);
    let ca = GroupCa::init(
        &CaParams {
            group: GROUP.into(),
            ranges: vec!["10.77.0.0/30".parse().unwrap()],
            validity: 365 * DAY,
        },
        SystemTime::now(),
    )
    .unwrap();
    let nodes: Vec<OverlayNode> = (0..3)
        .map(|i| {
            start(
                &mut tasks,
                allocating(&ca, &format!("n{i}"), base + 1 + i, &boot),
            )
        })
        .collect();
    let held = || -> Vec<IpAddr> { nodes.iter().flat_map(own).collect() };
    wait_until(deadline, "two holders", || async { held().len() == 2 }).await;
    // Stable for several check intervals, never a duplicate.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let h = held();
        let distinct: HashSet<_> = h.iter().collect();
        assert_eq!(distinct.len(), h.len(), "address held twice: {h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = held();
    assert_eq!(h.len(), 2, "{h:?}");
    // Everyone resolves each held address to its holder.
    for n in &nodes {
        for (j, m) in nodes.iter().enumerate() {
            for x in own(m) {
                let want = m.peer_id();
                wait_until(
                    deadline,
                    &format!("resolution of {x} (node {j})"),
                    || async { matches!(n.client().resolve(x).await, Ok(r) if r.peer == want) },
                )
                .await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_claim() {
    let base = port_base(13);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut tasks = Tasks::default();
    let boot = bootstrap(&mut tasks, base);
    let ca = ca();
    let a = start(&mut tasks, allocating(&ca, "alpha", base + 1, &boot));
    let b = start(&mut tasks, allocating(&ca, "beta", base + 2, &boot));
    wait_for_address(&a, deadline).await;
    let xb = wait_for_address(&b, deadline).await;
    wait_until(deadline, "a to resolve b's address", || async {
        matches!(a.client().resolve(xb).await, Ok(r) if r.peer == b.peer_id())
    })
    .await;
    let t = Instant::now();
    b.shutdown().await;
    assert!(b.view().borrow().addresses.is_empty());
    // Released well before the 6 s lease would have run out.
    wait_until(
        t + Duration::from_secs(3),
        "the release to reach a",
        || async { a.client().resolve(xb).await.is_err() },
    )
    .await;
    let claims = a.client().get_claims(xb).await.unwrap();
    assert!(
        claims
            .iter()
            .all(|c| c.claim.released || c.owner != b.peer_id()),
        "b's claim is still live: {claims:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_member_leaves_the_view_after_its_lease() {
    let base = port_base(14);
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut tasks = Tasks::default();
    let boot = bootstrap(&mut tasks, base);
    let ca = ca();
    let short_sessions = vpn_core::session::Config {
        rekey_after_time: Duration::from_secs(2),
        responder_rekey_delay: Duration::from_secs(1),
        reject_after_time: Duration::from_secs(4),
        rekey_timeout: Duration::from_millis(500),
        rekey_attempt_time: Duration::from_secs(2),
        previous_grace: Duration::from_millis(500),
        ..vpn_core::session::Config::default()
    };
    let mut ca_cfg = allocating(&ca, "alpha", base + 1, &boot);
    ca_cfg.session = short_sessions.clone();
    let mut cb_cfg = allocating(&ca, "beta", base + 2, &boot);
    cb_cfg.session = short_sessions;
    let a = start(&mut tasks, ca_cfg);
    let (b, b_run) = vpn_control::overlay::node::start(cb_cfg).unwrap();
    let b_task = tokio::spawn(b_run);
    wait_for_address(&a, deadline).await;
    let xb = wait_for_address(&b, deadline).await;
    assert_eq!(a.connect_ip(xb).await.unwrap(), b.peer_id());
    assert!(a.view().borrow().peers.contains_key(&b.peer_id()));
    // b crashes: no release.
    b_task.abort();
    let _ = b_task.await;
    let t = Instant::now();
    wait_until(
        t + Duration::from_secs(15),
        "b to leave a's view",
        || async { !a.view().borrow().peers.contains_key(&b.peer_id()) },
    )
    .await;
    // Its address is free once the lease (6 s) ends.
    wait_until(t + Duration::from_secs(15), "b's lease to end", || async {
        a.client().resolve(xb).await.is_err()
    })
    .await;
    eprintln!(
        "b gone from a's view and resolution after {:?}",
        t.elapsed()
    );
}
