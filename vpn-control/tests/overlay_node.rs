//! The overlay as a service (`overlay::node`), used only through
//! `GroupOverlay` as the daemon does: connect by virtual address both ways,
//! matching keys, endpoints and addresses in both views.

mod overlay_common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use overlay_common::*;
use vpn_control::overlay::{GroupOverlay, OverlayError};
use vpn_pki::{AddressAssignment, NodeIdentity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fixed_members_connect_both_ways() {
    let base = port_base(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut tasks = Tasks::default();
    let boot = bootstrap(&mut tasks, base);
    let ca = ca();
    let (ia, ib) = (NodeIdentity::generate(), NodeIdentity::generate());
    let (aa, ab) = (ip("10.77.0.10"), ip("10.77.0.11"));
    let ca_ = cert(&ca, &ia, "alpha", AddressAssignment::Fixed(vec![aa]));
    let cb = cert(&ca, &ib, "beta", AddressAssignment::Fixed(vec![ab]));
    let a = start(
        &mut tasks,
        node_config(&ca, &ia, ca_, base + 1, &boot, 51830, ip("127.0.0.1")),
    );
    let b = start(
        &mut tasks,
        node_config(&ca, &ib, cb, base + 2, &boot, 51831, ip("127.0.0.2")),
    );
    // Own addresses are the certificate's, with the range's prefix.
    assert_eq!(a.view().borrow().addresses, vec![(aa, 24)]);
    assert_eq!(b.view().borrow().addresses, vec![(ab, 24)]);

    wait_until(deadline, "a and b to verify each other", || async {
        a.stats().await.unwrap().members == 1 && b.stats().await.unwrap().members == 1
    })
    .await;
    let got = a.connect_ip(ab).await.unwrap();
    assert_eq!(got, b.peer_id());
    // The responder's view fills in as well.
    let mut bv = b.view();
    tokio::time::timeout(
        Duration::from_secs(5),
        bv.wait_for(|v| {
            v.peers
                .get(&a.peer_id())
                .is_some_and(|p| p.keys.tx.is_some())
        }),
    )
    .await
    .expect("responder view")
    .unwrap();
    let va = a.view().borrow().clone();
    let vb = b.view().borrow().clone();
    let pb = &va.peers[&b.peer_id()];
    let pa = &vb.peers[&a.peer_id()];
    assert_eq!(pb.name, "beta");
    assert_eq!(pa.name, "alpha");
    assert_eq!(pb.addresses, vec![ab]);
    assert_eq!(pa.addresses, vec![aa]);
    assert_eq!(
        pb.endpoints,
        vec!["127.0.0.2:51831".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        pa.endpoints,
        vec!["127.0.0.1:51830".parse::<SocketAddr>().unwrap()]
    );
    let (ta, tb) = (pb.keys.tx.unwrap(), pa.keys.tx.unwrap());
    assert!(pa
        .keys
        .rx
        .iter()
        .any(|r| r.local_index == ta.remote_index && r.key == ta.key));
    assert!(pb
        .keys
        .rx
        .iter()
        .any(|r| r.local_index == tb.remote_index && r.key == tb.key));
    assert_ne!(ta.key, tb.key);

    // The other way round: the session exists already.
    assert_eq!(b.connect_ip(aa).await.unwrap(), a.peer_id());

    // Errors: own address, an address nobody holds.
    assert!(matches!(a.connect_ip(aa).await, Err(OverlayError::OwnAddress(x)) if x == aa));
    assert!(a.connect_ip(ip("10.77.0.99")).await.is_err());

    // Clean shutdown of b: a's view loses it once its keys go (or at once
    // when the session ends); the handle reports the stop.
    b.shutdown().await;
    assert!(b.view().borrow().peers.is_empty());
}

async fn connected_pair(
    test: u64,
    tasks: &mut Tasks,
) -> (
    vpn_pki::GroupCa,
    vpn_control::overlay::OverlayNode,
    vpn_control::overlay::OverlayNode,
    Vec<u8>,
) {
    let base = port_base(test);
    let boot = bootstrap(tasks, base);
    let ca = ca();
    let (ia, ib) = (NodeIdentity::generate(), NodeIdentity::generate());
    let ca_ = cert(
        &ca,
        &ia,
        "alpha",
        AddressAssignment::Fixed(vec![ip("10.77.0.10")]),
    );
    let cb = cert(
        &ca,
        &ib,
        "beta",
        AddressAssignment::Fixed(vec![ip("10.77.0.11")]),
    );
    let a = start(
        tasks,
        node_config(&ca, &ia, ca_, base + 1, &boot, 51830, ip("127.0.0.1")),
    );
    let b = start(
        tasks,
        node_config(
            &ca,
            &ib,
            cb.clone(),
            base + 2,
            &boot,
            51831,
            ip("127.0.0.2"),
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    wait_until(deadline, "a and b to verify each other", || async {
        a.stats().await.unwrap().members == 1 && b.stats().await.unwrap().members == 1
    })
    .await;
    a.connect_ip(ip("10.77.0.11")).await.unwrap();
    (ca, a, b, cb)
}

/// A member revoked by a newer CRL leaves the view (hence the data plane's
/// maps) at once, and cannot be connected to any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_member_leaves_the_view() {
    let mut tasks = Tasks::default();
    let (ca, a, b, cb) = connected_pair(2, &mut tasks).await;
    assert!(a.view().borrow().peers.contains_key(&b.peer_id()));
    let crl = crl_revoking(&ca, &cb);
    a.set_crl(crl).await.unwrap();
    let mut v = a.view();
    tokio::time::timeout(
        Duration::from_secs(2),
        v.wait_for(|v| !v.peers.contains_key(&b.peer_id())),
    )
    .await
    .expect("revoked member still in the view")
    .unwrap();
    assert!(a.connect_ip(ip("10.77.0.11")).await.is_err());
    assert_eq!(a.stats().await.unwrap().members, 0);
}

/// A member whose process dies: its connection closes, the survivor tears
/// its session down (its keys may be dead), and a restarted member with the
/// same identity gets a fresh session on the next `connect_ip`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_member_is_torn_down_and_reconnected_after_restart() {
    let base = port_base(3);
    let mut tasks = Tasks::default();
    let boot = bootstrap(&mut tasks, base);
    let ca = ca();
    let (ia, ib) = (NodeIdentity::generate(), NodeIdentity::generate());
    let ca_ = cert(
        &ca,
        &ia,
        "alpha",
        AddressAssignment::Fixed(vec![ip("10.77.0.10")]),
    );
    let cb = cert(
        &ca,
        &ib,
        "beta",
        AddressAssignment::Fixed(vec![ip("10.77.0.11")]),
    );
    let a = start(
        &mut tasks,
        node_config(&ca, &ia, ca_, base + 1, &boot, 51830, ip("127.0.0.1")),
    );
    let b_cfg = node_config(&ca, &ib, cb, base + 2, &boot, 51831, ip("127.0.0.2"));
    let (b, run) = vpn_control::overlay::node::start(b_cfg.clone()).unwrap();
    let b_task = tokio::spawn(run);
    let deadline = Instant::now() + Duration::from_secs(30);
    wait_until(deadline, "a and b to verify each other", || async {
        a.stats().await.unwrap().members == 1 && b.stats().await.unwrap().members == 1
    })
    .await;
    a.connect_ip(ip("10.77.0.11")).await.unwrap();
    let old = a.view().borrow().peers[&b.peer_id()].keys.tx.unwrap();
    b_task.abort();
    let _ = b_task.await;
    drop(b);
    let mut v = a.view();
    tokio::time::timeout(Duration::from_secs(5), v.wait_for(|v| v.peers.is_empty()))
        .await
        .expect("session of the crashed member not torn down")
        .unwrap();
    // Restart with the same identity (on a new memory port: the old
    // listener may linger until the runtime drops it).
    let mut b_cfg = b_cfg;
    b_cfg.overlay.listen = vec![mem(base + 3)];
    let b = start(&mut tasks, b_cfg);
    wait_until(deadline, "the restarted b to be verified", || async {
        b.stats().await.unwrap().members == 1
    })
    .await;
    assert_eq!(a.connect_ip(ip("10.77.0.11")).await.unwrap(), b.peer_id());
    let new = a.view().borrow().peers[&b.peer_id()].keys.tx.unwrap();
    assert_ne!(new.key, old.key);
}

/// A CRL installed on one member travels on the group topic: the others
/// install it and expel the revoked member too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_update_is_broadcast_to_the_group() {
    let base = port_base(4);
    let mut tasks = Tasks::default();
    let boot = bootstrap(&mut tasks, base);
    let ca = ca();
    let mut nodes = Vec::new();
    let mut certs = Vec::new();
    for i in 0..3u8 {
        let id = NodeIdentity::generate();
        let c = cert(
            &ca,
            &id,
            &format!("n{i}"),
            AddressAssignment::Fixed(vec![ip(&format!("10.77.0.{}", 10 + i))]),
        );
        certs.push(c.clone());
        nodes.push(start(
            &mut tasks,
            node_config(
                &ca,
                &id,
                c,
                base + 1 + u64::from(i),
                &boot,
                51830,
                ip("127.0.0.1"),
            ),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in &nodes {
        wait_until(deadline, "all members verified", || async {
            n.stats().await.unwrap().members == 2
        })
        .await;
    }
    // Let gossipsub exchange subscriptions after the verifications.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let crl = crl_revoking(&ca, &certs[2]);
    nodes[0].set_crl(crl).await.unwrap();
    let revoked = nodes[2].peer_id();
    wait_until(deadline, "the CRL to reach member 1", || async {
        let st = nodes[1].stats().await.unwrap();
        st.crls_received == 1
            && !nodes[1]
                .client()
                .members()
                .await
                .unwrap()
                .contains(&revoked)
    })
    .await;
    assert!(!nodes[0]
        .client()
        .members()
        .await
        .unwrap()
        .contains(&revoked));
}

/// A member that starts after a revocation was broadcast learns the CRL in
/// its first membership exchange with a member that has it, and keeps the
/// revoked member out (or expels it, if that one got in first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_learns_the_crl_in_the_membership_exchange() {
    let base = port_base(7);
    let mut tasks = Tasks::default();
    let boot = bootstrap(&mut tasks, base);
    let ca = ca();
    let ids: Vec<NodeIdentity> = (0..3).map(|_| NodeIdentity::generate()).collect();
    let certs: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let a = ip(&format!("10.77.0.{}", 20 + i));
            cert(
                &ca,
                &ids[usize::from(i)],
                &format!("m{i}"),
                AddressAssignment::Fixed(vec![a]),
            )
        })
        .collect();
    let config = |i: usize| {
        let n = u16::try_from(i).unwrap();
        node_config(
            &ca,
            &ids[i],
            certs[i].clone(),
            base + 1 + i as u64,
            &boot,
            51840 + n,
            ip(&format!("127.0.0.{}", 1 + n)),
        )
    };
    let a = start(&mut tasks, config(0));
    let revoked = start(&mut tasks, config(1));
    let deadline = Instant::now() + Duration::from_secs(30);
    wait_until(
        deadline,
        "a and the soon revoked member to verify each other",
        || async {
            a.stats().await.unwrap().members == 1 && revoked.stats().await.unwrap().members == 1
        },
    )
    .await;
    let crl = crl_revoking(&ca, &certs[1]);
    a.set_crl(crl).await.unwrap();
    wait_until(deadline, "a to expel the revoked member", || async {
        a.stats().await.unwrap().members == 0
    })
    .await;

    // The late joiner starts with no CRL at all.
    let late = start(&mut tasks, config(2));
    let late_client = late.client();
    wait_until(
        deadline,
        "the late joiner to learn the CRL and verify a",
        || async {
            let st = late.stats().await.unwrap();
            let members = late_client.members().await.unwrap();
            st.crls_learned == 1 && members == vec![a.peer_id()]
        },
    )
    .await;
    // The revoked member keeps trying (its discovery finds the late
    // joiner): it is refused, or expelled when the CRL arrived after it.
    wait_until(deadline, "the revoked member to be kept out", || async {
        let st = late.stats().await.unwrap();
        st.membership_refused + st.members_expelled >= 1
    })
    .await;
    assert!(!late_client
        .members()
        .await
        .unwrap()
        .contains(&revoked.peer_id()));
    assert_eq!(
        late.stats().await.unwrap().crls_received,
        0,
        "not from gossip"
    );
}

/// Two verified members that have no session yet; `a` holds handshake
/// messages at most `apply_wait` for its keys to be applied.
async fn verified_pair(
    test: u64,
    tasks: &mut Tasks,
    apply_wait: Duration,
) -> (
    vpn_control::overlay::OverlayNode,
    vpn_control::overlay::OverlayNode,
) {
    let base = port_base(test);
    let boot = bootstrap(tasks, base);
    let ca = ca();
    let (ia, ib) = (NodeIdentity::generate(), NodeIdentity::generate());
    let ca_ = cert(
        &ca,
        &ia,
        "alpha",
        AddressAssignment::Fixed(vec![ip("10.77.0.10")]),
    );
    let cb = cert(
        &ca,
        &ib,
        "beta",
        AddressAssignment::Fixed(vec![ip("10.77.0.11")]),
    );
    let mut cfg_a = node_config(&ca, &ia, ca_, base + 1, &boot, 51830, ip("127.0.0.1"));
    cfg_a.apply_wait = apply_wait;
    let a = start(tasks, cfg_a);
    let b = start(
        tasks,
        node_config(&ca, &ib, cb, base + 2, &boot, 51831, ip("127.0.0.2")),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    wait_until(deadline, "a and b to verify each other", || async {
        a.stats().await.unwrap().members == 1 && b.stats().await.unwrap().members == 1
    })
    .await;
    (a, b)
}

/// The responder's reply (which makes the initiator switch to the new key)
/// waits until the daemon reports a data plane holding the responder's new
/// receive key; a report without it keeps it waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_waits_until_the_receive_key_is_applied() {
    let mut tasks = Tasks::default();
    let (a, b) = verified_pair(5, &mut tasks, Duration::from_secs(30)).await;
    let (pa, pb) = (a.peer_id(), b.peer_id());
    // The daemon reports an applied view without b: a now holds messages.
    a.applied(&vpn_control::overlay::GroupView::empty(pa));
    let connect = tokio::spawn({
        let b = b.clone();
        async move { b.connect_ip(ip("10.77.0.10")).await }
    });
    let mut av = a.view();
    let installed = tokio::time::timeout(
        Duration::from_secs(10),
        av.wait_for(|v| v.peers.get(&pb).is_some_and(|p| !p.keys.rx.is_empty())),
    )
    .await
    .expect("a installs a receive key for b")
    .unwrap()
    .clone();
    // A stale report (no key for b) does not release the reply.
    a.applied(&vpn_control::overlay::GroupView::empty(pa));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let has_tx =
        |v: &vpn_control::overlay::GroupView| v.peers.get(&pa).is_some_and(|p| p.keys.tx.is_some());
    assert!(
        !has_tx(&b.view().borrow()),
        "b got a's reply before a's receive key was applied"
    );
    // The daemon applied the view with the key: the reply goes out.
    a.applied(&installed);
    let mut bv = b.view();
    tokio::time::timeout(Duration::from_secs(10), bv.wait_for(has_tx))
        .await
        .expect("b gets its sending key once a's receive key is applied")
        .unwrap();
    assert_eq!(
        connect.await.unwrap().unwrap(),
        pa,
        "b's connect_ip succeeds"
    );
}

/// A daemon that never reports the keys applied (a failing apply) delays
/// the handshake by the apply wait, never blocks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_is_sent_anyway_after_the_apply_wait() {
    let mut tasks = Tasks::default();
    let (a, b) = verified_pair(6, &mut tasks, Duration::from_millis(1500)).await;
    a.applied(&vpn_control::overlay::GroupView::empty(a.peer_id()));
    let t0 = Instant::now();
    let peer = tokio::time::timeout(Duration::from_secs(10), b.connect_ip(ip("10.77.0.10")))
        .await
        .expect("connect_ip ends")
        .expect("connect_ip succeeds");
    assert_eq!(peer, a.peer_id());
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "the reply was not held: {:?}",
        t0.elapsed()
    );
}
