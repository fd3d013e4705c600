//! Lost messages, restarts, failures, teardown and garbage input.

use proptest::prelude::*;

use super::harness::*;
use crate::session::wire::{Confirm, Init, Message, RejectReason, Reply};
use crate::session::{Action, Config, Event, SessionError};

fn is_init(m: &Message) -> bool {
    matches!(m, Message::Init(_))
}

/// Drops the `nth` (0-based) control message matching `f`.
fn drop_nth(nth: usize, f: fn(&Message) -> bool) -> DropFn {
    let mut seen = 0;
    Box::new(move |_, _, _, m| {
        if f(m) {
            seen += 1;
            seen - 1 == nth
        } else {
            false
        }
    })
}

type Kind = (&'static str, fn(&Message) -> bool);

#[test]
fn each_lost_handshake_message_is_recovered() {
    let kinds: [Kind; 4] = [
        ("init", is_init),
        ("reply", |m| matches!(m, Message::Reply(_))),
        ("confirm", |m| matches!(m, Message::Confirm(_))),
        ("ack", |m| matches!(m, Message::Ack(_))),
    ];
    for (name, f) in kinds {
        // Lost in the first handshake and in the first rekey (with traffic
        // flowing both ways, which must not lose a packet).
        for nth in [0, 1] {
            let mut w = World::new(2, &Config::default());
            w.drop = drop_nth(nth, f);
            w.offer_packet(0, 1);
            w.run_until(secs(8));
            w.assert_paired(0, 1);
            w.assert_paired(1, 0);
            w.traffic = vec![(0, 1), (1, 0)];
            w.run_until(secs(140));
            w.traffic.clear();
            w.settle(secs(1));
            w.assert_paired(0, 1);
            w.assert_paired(1, 0);
            assert!(w.lost.is_empty(), "{name} #{nth}: {:?}", w.lost.first());
            assert_eq!(w.sent, w.delivered, "{name} #{nth}");
            assert_eq!(w.tx_keys[&(0, 1)].len(), 2, "{name} #{nth}: rekeyed");
            assert_eq!(w.tx_keys[&(1, 0)].len(), 2, "{name} #{nth}: rekeyed");
            for n in 0..2 {
                assert_eq!(w.events(n, Event::HandshakeFailed), 0);
            }
        }
    }
}

#[test]
fn retries_use_fresh_keys_and_give_up_after_attempt_time() {
    let mut w = World::new(2, &Config::default());
    w.drop = Box::new(|_, _, _, m| is_init(m));
    w.offer_packet(0, 1);
    w.offer_packet(0, 1);
    w.run_until(secs(89));
    assert_eq!(w.nodes[0].queue.len_of(&1), 2);
    w.run_until(secs(91));
    assert_eq!(w.events(0, Event::HandshakeFailed), 1);
    assert_eq!(w.nodes[0].queue.len(), 0, "queue dropped on failure");
    assert_eq!(w.nodes[0].core.local_indices().count(), 0);
    assert!(w.nodes[0].core.poll_timeout().is_none());
    // One Init per rekey_timeout + jitter, each with a fresh key and index.
    let inits: Vec<(std::time::Duration, Init)> = w
        .dropped
        .iter()
        .filter_map(|(t, _, _, m)| match m {
            Message::Init(i) => Some((*t, i.clone())),
            _ => None,
        })
        .collect();
    assert!((17..=18).contains(&inits.len()), "{} attempts", inits.len());
    for pair in inits.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= secs(5) && gap <= ms(5334), "gap {gap:?}");
        assert_ne!(pair[0].1.ephemeral, pair[1].1.ephemeral);
        assert_ne!(pair[0].1.initiator_index, pair[1].1.initiator_index);
    }
    let gaps: std::collections::BTreeSet<_> = inits.windows(2).map(|p| p[1].0 - p[0].0).collect();
    assert!(gaps.len() > 3, "retries are jittered");
}

#[test]
fn restarted_responder_reestablishes_when_it_sends() {
    let mut w = World::new(2, &Config::default());
    w.offer_packet(0, 1);
    w.run_until(secs(1));
    w.traffic = vec![(0, 1), (1, 0)];
    w.run_until(secs(50));
    let old = w.nodes[0].dp.tx[&1].remote_index;
    w.restart(1, 99);
    w.run_until(secs(52));
    let lost_at_restart = w.lost.len();
    assert!(lost_at_restart > 0, "packets to the dead process are lost");
    // Node 1's first packet started a handshake; node 0 switched to it.
    assert_ne!(w.nodes[0].dp.tx[&1].remote_index, old);
    w.assert_paired(0, 1);
    w.assert_paired(1, 0);
    w.run_until(secs(300));
    let late: Vec<_> = w.lost.iter().filter(|l| l.0 > secs(51)).collect();
    assert!(late.is_empty(), "{late:?}");
    assert!(w.nodes.iter().all(|n| n.errors.is_empty()));
}

#[test]
fn restart_with_connection_loss_lets_the_sender_reconnect() {
    // Only node 0 sends. Node 1 restarts; the overlay reports the lost
    // connection to node 0, whose daemon tears the peer's keys down.
    let mut w = World::new(2, &Config::default());
    w.traffic = vec![(0, 1)];
    w.run_until(secs(30));
    w.restart(1, 42);
    w.nodes[0].core.teardown(&1);
    w.drain(0);
    assert!(w.nodes[0].dp.tx.is_empty() && w.nodes[0].dp.rx.is_empty());
    w.run_until(secs(31));
    w.assert_paired(0, 1);
    w.run_until(secs(200));
    let late: Vec<_> = w.lost.iter().filter(|l| l.0 > secs(30) + ms(100)).collect();
    assert!(late.is_empty(), "{late:?}");
    assert!(w.tx_keys[&(0, 1)].len() >= 3);
}

#[test]
fn restart_between_reply_and_confirm_starts_over() {
    let mut w = World::new(2, &Config::default());
    w.offer_packet(0, 1);
    // Init arrives at 20 ms, Reply at 40 ms, Confirm would arrive at 60 ms.
    w.run_until(ms(45));
    w.restart(1, 7);
    w.settle(secs(1));
    let rejects = w.count_msgs(
        |m| matches!(m, Message::Reject(r) if r.reason == RejectReason::UnknownSession),
    );
    assert_eq!(rejects, 1);
    assert_eq!(w.count_msgs(is_init), 2);
    w.assert_paired(0, 1);
    w.assert_paired(1, 0);
}

#[test]
fn teardown_and_remove_drop_every_key() {
    let mut w = World::new(2, &Config::default());
    w.traffic = vec![(0, 1), (1, 0)];
    w.run_until(secs(125)); // mid-rekey grace: two receive keys
    assert_eq!(w.nodes[0].dp.rx.len(), 2);
    w.nodes[0].core.teardown(&1);
    assert_eq!(
        w.nodes[0].core.poll_action(),
        Some(Action::Remove { peer: 1 })
    );
    assert_eq!(w.nodes[0].core.poll_action(), None);
    assert_eq!(w.nodes[0].core.local_indices().count(), 0);
    assert!(w.nodes[0].core.is_admitted(&1));
    w.nodes[1].core.remove(&0);
    assert_eq!(
        w.nodes[1].core.poll_action(),
        Some(Action::Remove { peer: 0 })
    );
    assert!(!w.nodes[1].core.is_admitted(&0));
    // A removed (revoked) peer's requests are refused.
    let init = Message::Init(Init {
        ephemeral: [9; 32],
        initiator_index: 5,
        nonce: [0; 16],
        binding: [0; 32],
    })
    .encode();
    assert_eq!(
        w.nodes[1].core.handle_request(w.now, &0, &init),
        Err(SessionError::NotAdmitted)
    );
}

/// An established pair, not advanced further.
fn established() -> World {
    let mut w = World::new(2, &Config::default());
    w.offer_packet(0, 1);
    w.settle(secs(1));
    w
}

#[test]
fn wrong_but_wellformed_messages_are_refused_without_state_change() {
    let mut w = established();
    let keys0 = w.nodes[0].core.keys(&1);
    let keys1 = w.nodes[1].core.keys(&0);
    let now = w.now;
    let c1 = &mut w.nodes[1].core;
    // Binding for other identities.
    let bad_binding = Message::Init(Init {
        ephemeral: [9; 32],
        initiator_index: 5,
        nonce: [0; 16],
        binding: [1; 32],
    })
    .encode();
    let r = Message::decode(&c1.handle_request(now, &0, &bad_binding).unwrap()).unwrap();
    assert!(matches!(r, Message::Reject(x) if x.reason == RejectReason::Binding));
    // Responses sent as requests and vice versa.
    let reply = Message::Reply(Reply {
        ephemeral: [9; 32],
        responder_index: 1,
        initiator_index: 2,
        tag: [0; 16],
    })
    .encode();
    assert!(matches!(
        c1.handle_request(now, &0, &reply),
        Err(SessionError::Unexpected(_))
    ));
    // A Confirm for an unknown session.
    let confirm = Message::Confirm(Confirm {
        initiator_index: 3,
        responder_index: 4,
        tag: [0; 16],
    })
    .encode();
    let r = Message::decode(&c1.handle_request(now, &0, &confirm).unwrap()).unwrap();
    assert!(matches!(r, Message::Reject(x) if x.reason == RejectReason::UnknownSession));
    // A stale Reply at the initiator.
    let c0 = &mut w.nodes[0].core;
    assert_eq!(
        c0.handle_response(now, &1, &reply),
        Err(SessionError::Stale)
    );
    assert!(matches!(
        c0.handle_response(now, &1, &confirm),
        Err(SessionError::Unexpected(_))
    ));
    // Unknown peer.
    assert_eq!(
        c0.handle_response(now, &7, &reply),
        Err(SessionError::NotAdmitted)
    );
    assert_eq!(w.nodes[0].core.keys(&1), keys0);
    assert_eq!(w.nodes[1].core.keys(&0), keys1);
    assert_eq!(w.nodes[0].core.poll_action(), None);
    w.nodes[0].core.check_invariants();
    w.nodes[1].core.check_invariants();
}

#[test]
fn confirm_with_bad_tag_does_not_switch() {
    let mut w = World::new(2, &Config::default());
    w.offer_packet(0, 1);
    w.run_until(ms(41)); // Reply processed at node 0; its Confirm is in flight.
    let forged = w
        .log
        .iter()
        .find_map(|(_, _, _, m)| match m {
            Message::Reply(r) => Some(Confirm {
                initiator_index: r.initiator_index,
                responder_index: r.responder_index,
                tag: [0xAA; 16],
            }),
            _ => None,
        })
        .unwrap();
    let now = w.now;
    let before = w.nodes[1].core.keys(&0);
    let r = w.nodes[1]
        .core
        .handle_request(now, &0, &Message::Confirm(forged).encode());
    assert_eq!(r, Err(SessionError::BadTag));
    assert!(!w.nodes[1].core.is_established(&0));
    assert_eq!(w.nodes[1].core.keys(&0), before);
    // The genuine Confirm still completes the handshake.
    w.settle(secs(1));
    w.assert_paired(1, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn garbage_never_panics_or_changes_state(
        bytes in proptest::collection::vec(any::<u8>(), 0..120),
        header in any::<bool>(),
        ty in 1u8..6,
    ) {
        let mut w = established();
        let mut bytes = bytes;
        if header && bytes.len() >= 4 {
            // A plausible header so the body parser is exercised too.
            bytes[0] = 1;
            bytes[1] = ty;
            let l = (bytes.len() - 4) as u16;
            bytes[2..4].copy_from_slice(&l.to_le_bytes());
        }
        let before = (w.nodes[0].core.keys(&1), w.nodes[1].core.keys(&0));
        let now = w.now;
        let _ = w.nodes[1].core.handle_request(now, &0, &bytes);
        let _ = w.nodes[0].core.handle_response(now, &1, &bytes);
        let _ = w.nodes[0].core.handle_request(now, &1, &bytes);
        // Random bytes never carry the right binding (SHA-256) nor a valid
        // tag, so no key changes and nothing is queued.
        let after = (w.nodes[0].core.keys(&1), w.nodes[1].core.keys(&0));
        prop_assert_eq!(before, after);
        prop_assert!(w.nodes[0].core.poll_action().is_none());
        prop_assert!(w.nodes[1].core.poll_action().is_none());
        w.nodes[0].core.check_invariants();
        w.nodes[1].core.check_invariants();
    }
}

#[test]
fn repeated_init_gets_the_same_reply() {
    let mut w = World::new(2, &Config::default());
    w.nodes[0].core.connect(ms(0), &1).unwrap();
    let Some(Action::Send { request, .. }) = w.nodes[0].core.poll_action() else {
        panic!("an Init");
    };
    let c1 = &mut w.nodes[1].core;
    let r1 = c1.handle_request(ms(1), &0, &request).unwrap();
    let keys = c1.keys(&0);
    let r2 = c1.handle_request(ms(2), &0, &request).unwrap();
    assert_eq!(r1, r2);
    assert_eq!(c1.keys(&0), keys, "no second pending session");
    assert_eq!(keys.unwrap().1.len(), 1);
    c1.check_invariants();
    // The initiator takes the first copy and ignores the second.
    let c0 = &mut w.nodes[0].core;
    c0.handle_response(ms(3), &1, &r1).unwrap();
    let keys = c0.keys(&1);
    assert_eq!(c0.handle_response(ms(4), &1, &r2), Ok(()));
    assert_eq!(c0.keys(&1), keys);
}
