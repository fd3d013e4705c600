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
