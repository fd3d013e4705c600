//! Handshakes: first contact, simultaneous initiation, index allocation.

use super::harness::*;
use crate::session::wire::{Message, RejectReason};
use crate::session::{Config, Event};

#[test]
fn first_packet_queues_handshakes_and_delivers() {
    let mut w = World::new(2, &Config::default());
    // Five packets before any session exist: queued, then flushed.
    for _ in 0..5 {
        w.offer_packet(0, 1);
    }
    assert_eq!(w.nodes[0].queue.len_of(&1), 5);
    assert_eq!(w.count_msgs(|_| true), 0, "nothing delivered yet");
    w.settle(secs(1));
    assert_eq!(w.nodes[0].queue.len(), 0);
    assert_eq!(w.sent, 5);
    assert_eq!(w.delivered, 5);
    assert!(w.lost.is_empty());
    w.assert_paired(0, 1);
    w.assert_paired(1, 0);
    assert_eq!(w.events(0, Event::Established), 1);
    assert_eq!(w.events(1, Event::Established), 1);
    // One Init, Reply, Confirm, Ack: two round trips.
    assert_eq!(w.count_msgs(|m| matches!(m, Message::Init(_))), 1);
    assert_eq!(w.count_msgs(|m| matches!(m, Message::Reply(_))), 1);
    assert_eq!(w.count_msgs(|m| matches!(m, Message::Confirm(_))), 1);
    assert_eq!(w.count_msgs(|m| matches!(m, Message::Ack(_))), 1);
    // Initiator sends after one round trip (40 ms), the responder after 1.5.
    let est = |n: usize| w.nodes[n].events[0].0;
    assert_eq!(est(0), ms(40));
    assert_eq!(est(1), ms(60));
    // Directions use different keys; each side holds exactly one rx key.
    assert_ne!(w.nodes[0].dp.tx[&1].key, w.nodes[1].dp.tx[&0].key);
    assert_eq!(w.nodes[0].dp.rx.len(), 1);
    assert_eq!(w.nodes[1].dp.rx.len(), 1);
    assert!(w.nodes.iter().all(|n| n.errors.is_empty()));
}

#[test]
fn responder_does_not_send_before_confirm() {
    // Data is much faster than control: if the responder switched early,
    // its packets would reach the initiator before it installed the keys.
    let mut w = World::new(2, &Config::default());
    w.ctrl = ms(100);
    w.data = ms(1);
    w.offer_packet(0, 1);
    w.traffic = vec![(1, 0)];
    w.run_until(ms(1000));
    assert!(w.lost.is_empty(), "{:?}", w.lost);
    assert!(w.delivered > 50);
}

#[test]
fn simultaneous_initiation_resolves_to_lower_peer_id() {
    for (l01, l10) in [(20, 20), (5, 50), (50, 5)] {
        let mut w = World::new(2, &Config::default());
        w.ctrl_latency.insert((0, 1), ms(l01));
        w.ctrl_latency.insert((1, 0), ms(l10));
        // Both have traffic from the start: packets queue on both sides.
        w.traffic = vec![(0, 1), (1, 0)];
        w.run_until(secs(2));
        w.traffic.clear();
        w.settle(secs(1));
        w.assert_paired(0, 1);
        w.assert_paired(1, 0);
        // "peer-0" < "peer-1": node 0 stays initiator, node 1 is refused.
        let collisions = w.log.iter().filter(|(_, from, _, m)| {
            *from == 0 && matches!(m, Message::Reject(r) if r.reason == RejectReason::Collision)
        });
        assert_eq!(collisions.count(), 1, "latencies {l01}/{l10}");
        // Two handshakes started; the winner repeats its Init once when it
        // refuses the loser's (answered with the same Reply).
        let distinct: std::collections::BTreeSet<u32> = w
            .log
            .iter()
            .filter_map(|(_, _, _, m)| match m {
                Message::Init(i) => Some(i.initiator_index),
                _ => None,
            })
            .collect();
        assert_eq!(distinct.len(), 2);
        assert_eq!(w.count_msgs(|m| matches!(m, Message::Init(_))), 3);
        assert!(w.nodes[0].errors.is_empty(), "{:?}", w.nodes[0].errors);
        assert_eq!(w.count_msgs(|m| matches!(m, Message::Confirm(_))), 1);
        let confirm_from = w
            .log
            .iter()
            .find(|(_, _, _, m)| matches!(m, Message::Confirm(_)))
            .map(|x| x.1);
        assert_eq!(confirm_from, Some(0), "the winner completes its handshake");
        assert_eq!(w.delivered, w.sent);
        assert!(w.sent > 390);
        assert!(w.lost.is_empty());
        assert_eq!(w.nodes[0].queue.len() + w.nodes[1].queue.len(), 0);
        assert_eq!(w.events(0, Event::HandshakeFailed), 0);
        assert_eq!(w.events(1, Event::HandshakeFailed), 0);
        // One session: each side has one receive key, the other's sending key.
        assert_eq!(w.nodes[0].dp.rx.len(), 1);
        assert_eq!(w.nodes[1].dp.rx.len(), 1);
    }
}

#[test]
fn simultaneous_initiation_with_lost_winner_init_recovers() {
    let mut w = World::new(2, &Config::default());
    let mut dropped = false;
    w.drop = Box::new(move |_, from, _, m| {
        let hit = !dropped && from == 0 && matches!(m, Message::Init(_));
        dropped |= hit;
        hit
    });
    w.offer_packet(0, 1);
    w.offer_packet(1, 0);
    // Node 0's Init is lost. Node 1's Init reaches node 0 (waiting for a
    // Reply, lower PeerId): node 0 refuses it and repeats its own Init at
    // once instead of waiting for its retry timer.
    w.run_until(ms(101)); // Init 40, Reply 60, Confirm 80, data 100 ms.
    w.assert_paired(0, 1);
    w.assert_paired(1, 0);
    assert_eq!(w.delivered, 2);
    assert!(w.lost.is_empty());
}

#[test]
fn receiver_indices_are_nonzero_unique_and_retried() {
    let mut w = World::new(3, &Config::default());
    // Node 0's index draws: 0 (refused), 77, then 77 again (taken), 0, 78.
    let e = &mut w.nodes[0];
    let mut ent = TestEntropy::new(5);
    ent.forced_indices.extend([0, 77, 77, 0, 78]);
    e.core = Core::new(Config::default(), identity(0), ent).unwrap();
    e.core.admit(1, identity(1));
    e.core.admit(2, identity(2));
    w.offer_packet(0, 1);
    w.offer_packet(0, 2);
    w.settle(secs(1));
    let idx: Vec<u32> = w.nodes[0].core.local_indices().collect();
    assert_eq!(idx, vec![77, 78]);
    w.assert_paired(0, 1);
    w.assert_paired(0, 2);
    w.assert_paired(1, 0);
    w.assert_paired(2, 0);
    assert_eq!(w.delivered, 2);
}

#[test]
fn index_exhaustion_is_an_error_not_a_panic() {
    let mut ent = TestEntropy::new(5);
    ent.forced_indices.extend(std::iter::repeat_n(0, 64));
    let mut core = Core::new(Config::default(), identity(0), ent).unwrap();
    core.admit(1, identity(1));
    assert_eq!(
        core.connect(ms(0), &1),
        Err(crate::session::SessionError::IndicesExhausted)
    );
    core.check_invariants();
}
