//! Randomized runs: latencies, reordering between control and data, and
//! lost control messages never lose a data packet.

use proptest::prelude::*;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::harness::*;
use crate::session::{Config, Event};

/// 24 runs by default; `PROPTEST_CASES=N` digs deeper (e.g. in release).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

/// Traffic over a control channel that drops `drop_percent` of messages;
/// checks that no data packet is lost and the pair converged.
fn lossy_run(
    l01: u64,
    l10: u64,
    data: u64,
    drop_percent: u32,
    seed: u64,
    both_start: bool,
) -> Result<(), TestCaseError> {
    let mut w = World::new(2, &Config::default());
    w.ctrl_latency.insert((0, 1), ms(l01));
    w.ctrl_latency.insert((1, 0), ms(l10));
    w.data = ms(data);
    w.interval = ms(5);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    w.drop = Box::new(move |_, _, _, _| rng.random_range(0..100u32) < drop_percent);
    w.traffic = if both_start {
        vec![(0, 1), (1, 0)]
    } else {
        vec![(0, 1)]
    };
    w.run_until(secs(20));
    w.traffic = vec![(0, 1), (1, 0)];
    w.run_until(secs(400));
    w.traffic.clear();
    w.drop = Box::new(|_, _, _, _| false);
    w.settle(secs(1));
    prop_assert!(w.lost.is_empty(), "lost {:?}", w.lost.first());
    prop_assert_eq!(w.sent, w.delivered);
    w.assert_paired(0, 1);
    w.assert_paired(1, 0);
    // Rekeyed at least twice in 400 s, never expired.
    prop_assert!(w.tx_keys[&(0, 1)].len() >= 3);
    for n in 0..2 {
        prop_assert_eq!(w.events(n, Event::Expired), 0);
        prop_assert!(w.nodes[n].dp.rx.len() <= 3);
    }
    Ok(())
}

/// Found by the property below: the responder of a pending handshake
/// started a rekey of its own; both completed, in opposite orders.
#[test]
fn regression_responder_rekey_during_pending_handshake() {
    lossy_run(1, 1, 5, 3, 2532339439164488440, true).unwrap();
}

/// Found by the property below: a side waiting for a Confirm initiated
/// after a timeout; the two sides settled on different sessions.
#[test]
fn regression_initiation_after_waiting_for_confirm() {
    lossy_run(1, 1, 1, 7, 12702279465513887738, true).unwrap();
}

/// Found by the property below with `connect` initiating at once while the
/// peer's handshake waited for its (lost) Confirm: same divergence.
#[test]
fn regression_connect_while_waiting_for_confirm() {
    lossy_run(1, 5, 1, 10, 1849494325582732647, true).unwrap();
}

/// Found by the property below when it drew control-loss rates up to 30 %:
/// with 29 % of handshake messages lost, a rekey (started at 120 s, retried
/// for up to 90 s) was still being retried when the keys hit their 180 s
/// limit; the session expired and one data packet sent just after was lost
/// (WireGuard's timers have the same window). Fixed by keeping the current
/// key while its rekey is retried, and a previous receive key until the
/// peer provably switched (see the module docs, "Timers").
#[test]
fn regression_expiry_while_rekey_retries_under_heavy_loss() {
    lossy_run(1, 1, 3, 29, 14509150581550226002, false).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    // Up to 29 % of control messages lost (2,000 cases in release pass;
    // far above that a rekey can give up after `rekey_attempt_time` and the
    // session legitimately expires).

    #[test]
    fn lossy_control_channel_never_loses_data(
        l01 in 1u64..200,
        l10 in 1u64..200,
        data in 1u64..200,
        drop_percent in 0u32..30,
        seed in any::<u64>(),
        both_start in any::<bool>(),
    ) {
        lossy_run(l01, l10, data, drop_percent, seed, both_start)?;
    }
}

/// Node `victim` restarts at `restart_ms` (control losses stop then);
/// checks that traffic recovers within two seconds.
#[allow(clippy::too_many_arguments)]
fn restart_run(
    l01: u64,
    l10: u64,
    data: u64,
    drop_percent: u32,
    seed: u64,
    victim: usize,
    restart_ms: u64,
    connection_loss: bool,
) -> Result<(), TestCaseError> {
    let mut w = World::new(2, &Config::default());
    w.ctrl_latency.insert((0, 1), ms(l01));
    w.ctrl_latency.insert((1, 0), ms(l10));
    w.data = ms(data);
    w.interval = ms(5);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    w.drop = Box::new(move |_, _, _, _| rng.random_range(0..100u32) < drop_percent);
    w.traffic = vec![(0, 1), (1, 0)];
    w.run_until(ms(restart_ms));
    prop_assert!(w.lost.is_empty(), "before restart: {:?}", w.lost.first());
    w.drop = Box::new(|_, _, _, _| false);
    w.restart(victim, seed ^ 0x5eed);
    if connection_loss {
        // The overlay tells the survivor that the connection dropped.
        w.nodes[1 - victim].core.teardown(&victim);
        w.drain(1 - victim);
    }
    let t = w.now;
    w.run_until(t + secs(400));
    w.traffic.clear();
    w.settle(secs(1));
    let late: Vec<_> = w.lost.iter().filter(|l| l.0 > t + secs(2)).collect();
    prop_assert!(
        late.is_empty(),
        "after restart at {t:?}: {:?}",
        late.first()
    );
    w.assert_paired(0, 1);
    w.assert_paired(1, 0);
    for n in 0..2 {
        prop_assert_eq!(w.events(n, Event::HandshakeFailed), 0);
    }
    Ok(())
}

/// Found by the property below: the restarted side's Init collided with
/// the winner's rekey Init, which had been lost; the winner now repeats its
/// Init when it refuses the collision instead of waiting 5 s to retry.
#[test]
fn regression_restart_during_lost_rekey_init() {
    restart_run(1, 1, 1, 5, 7381209386393499456, 1, 240_005, false).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]


    #[test]
    fn restart_recovers_within_two_seconds(
        l01 in 1u64..200,
        l10 in 1u64..200,
        data in 1u64..200,
        drop_percent in 0u32..20,
        seed in any::<u64>(),
        victim in 0usize..2,
        restart_ms in 1_000u64..300_000,
        connection_loss in any::<bool>(),
    ) {
        restart_run(l01, l10, data, drop_percent, seed, victim, restart_ms, connection_loss)?;
    }
}
