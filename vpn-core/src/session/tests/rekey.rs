//! Rekeying with packets in flight, message-count rekeys, expiry.

use super::harness::*;
use crate::session::wire::Message;
use crate::session::{Config, Event};

fn inits(w: &World) -> usize {
    w.count_msgs(|m| matches!(m, Message::Init(_)))
}

/// Traffic both ways for `until`; returns the world for more checks.
fn run_with_traffic(cfg: &Config, ctrl: u64, data: u64, until: u64) -> World {
    let mut w = World::new(2, cfg);
    w.ctrl = ms(ctrl);
    w.data = ms(data);
    w.interval = ms(2);
    // Node 0 makes the first session; then traffic flows both ways.
    w.offer_packet(0, 1);
    w.run_until(ms(500));
    w.traffic = vec![(0, 1), (1, 0)];
    w.run_until(secs(until));
    w.traffic.clear();
    w.settle(secs(1));
    w
}

#[test]
fn rekeys_lose_no_packet_in_flight() {
    // Control slower than data, equal, and faster: in every ordering each
    // packet must decrypt under a key the receiver has installed.
    for (ctrl, data) in [(30, 30), (150, 2), (2, 150), (60, 200)] {
        let w = run_with_traffic(&Config::default(), ctrl, data, 400);
        assert!(
            w.lost.is_empty(),
            "ctrl {ctrl} data {data}: lost {:?}",
            &w.lost[..w.lost.len().min(5)]
        );
        assert_eq!(w.sent, w.delivered, "ctrl {ctrl} data {data}");
        assert!(w.sent > 390_000);
        // Sessions at 0, ~120, ~240, ~360 s: four keys per direction.
        for pair in [(0, 1), (1, 0)] {
            assert_eq!(
                w.tx_keys[&pair].len(),
                4,
                "ctrl {ctrl} data {data} {pair:?}"
            );
        }
        assert_eq!(inits(&w), 4);
        // Only the initiator of each session rekeys (node 0 started).
        assert!(w
            .log
            .iter()
            .all(|(_, from, _, m)| !matches!(m, Message::Init(_)) || *from == 0));
        assert!(
            w.nodes.iter().all(|n| n.errors.is_empty()),
            "ctrl {ctrl} data {data}"
        );
        // After the grace window only the current receive key is left.
        assert_eq!(w.nodes[0].dp.rx.len(), 1);
        assert_eq!(w.nodes[1].dp.rx.len(), 1);
        w.assert_paired(0, 1);
        w.assert_paired(1, 0);
    }
}

#[test]
fn without_the_grace_window_packets_in_flight_are_lost() {
    // Negative control: the harness does notice keys removed too early.
    let cfg = Config {
        previous_grace: std::time::Duration::ZERO,
        ..Config::default()
    };
    let w = run_with_traffic(&cfg, 2, 150, 130);
    assert!(!w.lost.is_empty());
    assert!(w.lost.iter().all(|l| l.0 > secs(120) && l.0 < secs(121)));
}

#[test]
fn config_relations_are_checked() {
    assert!(Config::default().validate().is_ok());
    let bad = Config {
        rekey_after_time: secs(200),
        ..Config::default()
    };
    assert!(bad.validate().is_err());
    assert!(Core::new(bad, identity(0), TestEntropy::new(1)).is_err());
    let bad = Config {
        rekey_timeout: std::time::Duration::ZERO,
        ..Config::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn rekey_happens_on_time_and_old_key_lingers_for_grace() {
    let mut w = World::new(2, &Config::default());
    w.traffic = vec![(0, 1)];
    w.run_until(secs(119));
    assert_eq!(inits(&w), 1);
    let first_rx_1: Vec<u32> = w.nodes[1].dp.rx.keys().copied().collect();
    w.run_until(secs(122));
    assert_eq!(inits(&w), 2, "rekey at 120 s");
    // Both old and new receive keys are installed during the grace window.
    assert_eq!(w.nodes[1].dp.rx.len(), 2);
    assert!(w.nodes[1].dp.rx.contains_key(&first_rx_1[0]));
    w.run_until(secs(135));
    assert_eq!(
        w.nodes[1].dp.rx.len(),
        1,
        "old key gone after the grace window"
    );
    assert!(!w.nodes[1].dp.rx.contains_key(&first_rx_1[0]));
    assert!(w.lost.is_empty());
}

#[test]
fn message_count_triggers_rekey() {
    let cfg = Config {
        rekey_after_messages: 1_000,
        ..Config::default()
    };
    let mut w = World::new(2, &cfg);
    w.interval = ms(1);
    w.traffic = vec![(0, 1)];
    w.run_until(secs(10));
    // 1000 packets/s reported each second: a rekey about every second.
    assert!(inits(&w) >= 8, "{} inits", inits(&w));
    assert!(w.lost.is_empty());
}

#[test]
fn idle_session_expires_after_reject_time_without_rekey() {
    let mut w = World::new(2, &Config::default());
    // A session made without a packet (e.g. ahead of need): no traffic.
    w.nodes[0].core.connect(ms(0), &1).unwrap();
    w.drain(0);
    w.run_until(secs(179));
    assert!(w.nodes[0].dp.tx.contains_key(&1));
    assert!(!w.nodes[1].dp.rx.is_empty());
    w.run_until(secs(181));
    assert_eq!(inits(&w), 1, "no rekey without traffic");
    for n in 0..2 {
        assert!(w.nodes[n].dp.tx.is_empty(), "node {n} tx");
        assert!(w.nodes[n].dp.rx.is_empty(), "node {n} rx");
        assert_eq!(w.events(n, Event::Expired), 1);
        assert_eq!(w.nodes[n].core.local_indices().count(), 0);
        assert!(w.nodes[n].core.poll_timeout().is_none());
    }
    // The next packet starts a new session.
    w.offer_packet(0, 1);
    w.settle(secs(1));
    w.assert_paired(0, 1);
    assert_eq!(w.delivered, 1);
}

#[test]
fn traffic_that_stops_lets_the_session_expire() {
    let mut w = World::new(2, &Config::default());
    w.offer_packet(0, 1);
    w.run_until(ms(500));
    w.traffic = vec![(0, 1), (1, 0)];
    w.run_until(secs(100));
    w.traffic.clear();
    // Traffic was seen: rekey at 120 s; the new session sees none and both
    // it and the old one are gone 180 s after it was made.
    w.run_until(secs(302));
    assert_eq!(inits(&w), 2);
    assert!(w
        .nodes
        .iter()
        .all(|n| n.dp.tx.is_empty() && n.dp.rx.is_empty()));
    assert!(w.lost.is_empty());
}

#[test]
fn responder_rekeys_if_initiator_does_not() {
    // Node 1 initiated; its rekey Inits are lost, so node 0 (the
    // responder) rekeys at 130 s; it has the lower PeerId, so node 1 gives
    // up its own attempt and answers.
    let mut w = World::new(2, &Config::default());
    w.offer_packet(1, 0);
    w.drop =
        Box::new(|now, from, _, m| from == 1 && now > secs(100) && matches!(m, Message::Init(_)));
    w.run_until(ms(500));
    w.traffic = vec![(1, 0), (0, 1)];
    w.run_until(secs(129));
    let from0 = |w: &World| {
        w.log
            .iter()
            .filter(|(_, from, _, m)| *from == 0 && matches!(m, Message::Init(_)))
            .count()
    };
    assert_eq!(from0(&w), 0);
    w.run_until(secs(132));
    assert_eq!(from0(&w), 1);
    w.assert_paired(1, 0);
    w.assert_paired(0, 1);
    assert_eq!(w.tx_keys[&(0, 1)].len(), 2);
    assert_eq!(w.tx_keys[&(1, 0)].len(), 2);
    assert!(w.lost.is_empty());
}

#[test]
fn four_nodes_all_to_all_rekey_independently() {
    let mut w = World::new(4, &Config::default());
    for a in 0..4 {
        for b in 0..4 {
            if a != b {
                w.ctrl_latency
                    .insert((a, b), ms(5 + 7 * (a as u64) + 3 * (b as u64)));
                w.traffic.push((a, b));
            }
        }
    }
    w.interval = ms(20);
    w.run_until(secs(300));
    w.traffic.clear();
    w.settle(secs(1));
    assert!(w.lost.is_empty(), "{:?}", w.lost.first());
    assert_eq!(w.sent, w.delivered);
    for a in 0..4 {
        // Three peers, one current receive key each, all indices distinct
        // (the simulated data plane refuses duplicates).
        assert_eq!(w.nodes[a].dp.rx.len(), 3);
        assert_eq!(w.nodes[a].core.local_indices().count(), 3);
        for b in (0..4).filter(|&b| b != a) {
            w.assert_paired(a, b);
            assert!(w.tx_keys[&(a, b)].len() >= 3, "{a}->{b} rekeyed twice");
        }
    }
}

/// A rekey whose every message is lost keeps the old key past
/// `reject_after_time` while it is retried; when it gives up after
/// `rekey_attempt_time`, the key goes (never later than
/// `reject_after_time + rekey_attempt_time`).
#[test]
fn key_outlives_reject_time_while_its_rekey_is_retried() {
    let cfg = Config::default();
    let mut w = World::new(2, &cfg);
    w.interval = ms(50);
    w.offer_packet(0, 1);
    w.run_until(ms(500));
    w.traffic = vec![(0, 1), (1, 0)];
    // Every control message from 100 s on is lost.
    w.drop = Box::new(|now, _, _, _| now >= secs(100));
    w.run_until(secs(179));
    let first = w.nodes[0].dp.tx[&1];
    // Past 180 s the rekeys (node 0 from 120 s, node 1 from 130 s) are
    // still retried: the keys stay and no packet is lost.
    w.run_until(secs(200));
    assert_eq!(w.nodes[0].dp.tx[&1], first);
    assert!(w.nodes[1].dp.tx.contains_key(&0));
    assert!(w.lost.is_empty(), "lost {:?}", w.lost.first());
    assert_eq!(w.events(0, Event::Expired), 0);
    // Node 0's attempt (120 s + 90 s) gives up: its key goes with it.
    w.traffic.clear();
    w.run_until(secs(215));
    assert!(!w.nodes[0].dp.tx.contains_key(&1));
    assert_eq!(w.events(0, Event::Expired), 1);
    assert!(w.events(0, Event::HandshakeFailed) >= 1);
    // Node 1's attempt (from 130 s) ends by 220 s; nothing is held past
    // 180 + 90 s.
    w.run_until(secs(271));
    assert!(w.nodes[1].dp.tx.is_empty() && w.nodes[1].dp.rx.is_empty());
    assert!(w.nodes[0].dp.rx.is_empty());
}
