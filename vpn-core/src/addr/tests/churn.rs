//! Randomized churn: members start, crash, leave cleanly and come back on a
//! small range over a lossy DHT; no address is ever held twice, and once
//! things calm down every free address that someone wants is in use.

use std::collections::HashSet;
use std::time::Duration;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::harness::{owner, range, secs, test_config, Knobs, Sim, T0};
use crate::addr::Assignment;

#[derive(Clone, Copy, Debug)]
enum Step {
    Start(usize),
    Kill(usize),
    Release(usize),
}

#[test]
fn churn_on_a_small_range_never_duplicates_and_settles() {
    let cfg = test_config();
    for seed in 0..40 {
        let knobs = Knobs {
            loss: 0.1,
            ..Knobs::default()
        };
        let mut sim = Sim::new(seed, knobs);
        let mut r = ChaCha8Rng::seed_from_u64(seed.wrapping_add(77));
        let nodes = 10;
        let mut plan: Vec<(u64, Step)> = Vec::new();
        for i in 0..nodes {
            sim.add(
                owner(100 * seed as usize + i),
                vec![(range("10.9.0.0/29"), Assignment::Allocate)],
                cfg.clone(),
            );
            let start = r.random_range(0..60_000u64);
            plan.push((start, Step::Start(i)));
            match r.random_range(0..3u8) {
                0 => plan.push((start + r.random_range(20_000..1_500_000u64), Step::Kill(i))),
                1 => plan.push((
                    start + r.random_range(20_000..1_500_000u64),
                    Step::Release(i),
                )),
                _ => {}
            }
        }
        plan.sort_by_key(|p| p.0);
        let mut last = 0;
        for (ms, step) in plan {
            sim.run_until(T0 + Duration::from_millis(ms));
            last = ms;
            match step {
                Step::Start(i) => sim.start(i),
                Step::Kill(i) => sim.kill(i),
                Step::Release(i) => sim.release(i),
            }
        }
        sim.run_until(T0 + Duration::from_millis(last) + cfg.lease + cfg.full_retry * 2 + secs(10));
        assert!(
            sim.max_holders.values().all(|&m| m <= 1),
            "seed {seed}: duplicate {:?}",
            sim.max_holders
        );
        let alive = sim.nodes.iter().filter(|n| n.alive).count();
        let holders = sim.holders();
        assert!(holders.values().all(|h| h.len() == 1));
        assert_eq!(holders.len(), alive.min(6), "seed {seed}: {holders:?}");
        let mut seen = HashSet::new();
        for (a, h) in &holders {
            assert!(seen.insert(*a));
            assert_eq!(
                sim.dht_winner(*a),
                Some(sim.nodes[h[0]].owner.clone()),
                "seed {seed}: {a}"
            );
        }
    }
}
