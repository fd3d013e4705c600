//! Concurrent claims: exactly one node keeps a contested address.

use std::collections::HashSet;
use std::net::IpAddr;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::harness::{one_free, owner, range, secs, test_config, Knobs, Sim, T0};
use crate::addr::{AddrError, Assignment};

fn free_addr() -> IpAddr {
    "10.9.0.2".parse().unwrap()
}

/// Two nodes race for the only free address, the second starting up to 3 s
/// after the first (the whole settle window); checks that at no time two
/// hold it, and that in the end exactly one does and the other reports the
/// range full.
fn race(seed: u64, knobs: Knobs, end: u64) -> Sim {
    race_skewed(seed, knobs, end, 0)
}

/// As [`race`], with each node's clock off by up to `skew_ms` either way.
fn race_skewed(seed: u64, knobs: Knobs, end: u64, skew_ms: i64) -> Sim {
    let mut sim = Sim::new(seed, knobs);
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let a = sim.add(
        owner(2 * seed as usize),
        vec![(one_free(), Assignment::Allocate)],
        test_config(),
    );
    let b = sim.add(
        owner(2 * seed as usize + 1),
        vec![(one_free(), Assignment::Allocate)],
        test_config(),
    );
    if skew_ms > 0 {
        sim.nodes[a].skew_ms = r.random_range(-skew_ms..=skew_ms);
        sim.nodes[b].skew_ms = r.random_range(-skew_ms..=skew_ms);
    }
    sim.start(a);
    let delay = r.random_range(0..3000u64);
    sim.run_until(T0 + std::time::Duration::from_millis(delay));
    sim.start(b);
    sim.run_until(T0 + secs(end));
    assert!(
        sim.max_holders.get(&free_addr()).copied().unwrap_or(0) <= 1,
        "seed {seed}: two nodes held the address at once"
    );
    let holders = sim.holders();
    let h = holders.get(&free_addr()).cloned().unwrap_or_default();
    assert_eq!(h.len(), 1, "seed {seed}: holders {h:?}");
    let winner = h[0];
    let loser = 1 - winner;
    assert_eq!(
        sim.dht_winner(free_addr()),
        Some(sim.nodes[winner].owner.clone())
    );
    assert!(sim.nodes[loser].held.is_empty());
    assert!(
        sim.nodes[loser]
            .log
            .errors
            .iter()
            .any(|(_, e)| matches!(e, AddrError::RangeFull { .. })),
        "seed {seed}: loser reported {:?}",
        sim.nodes[loser].log.errors
    );
    // The winner never lost it after acquiring.
    assert!(sim.nodes[winner].log.lost.is_empty(), "seed {seed}");
    sim
}

#[test]
fn two_nodes_racing_for_one_address_exactly_one_keeps_it() {
    let mut wins = [0usize; 2];
    let mut contested = 0;
    for seed in 0..300 {
        let sim = race(seed, Knobs::default(), 120);
        let w = usize::from(sim.nodes[1].held.contains(&free_addr()));
        wins[w] += 1;
        if sim.nodes[w].alloc.stats().races_lost + sim.nodes[1 - w].alloc.stats().races_lost > 0 {
            contested += 1;
        }
    }
    // Both orders happen, and real races (both claims put) happen often.
    assert!(wins[0] > 0 && wins[1] > 0, "{wins:?}");
    assert!(contested > 30, "only {contested} contested runs");
}

#[test]
fn racing_with_lost_writes_still_one_holder() {
    for seed in 0..150 {
        let knobs = Knobs {
            loss: 0.3,
            ..Knobs::default()
        };
        race(seed, knobs, 300);
    }
}

/// Exactness holds while the clock difference of two racing nodes stays
/// below `settle` minus the replication delay: (replication, skew of each
/// node either way) = (2.9 s, 0), (2 s, ±0.4 s), (1.5 s, ±0.6 s) with the
/// 3 s settle. (With 2.9 s and ±2.5 s, seed 37 gives a duplicate.)
#[test]
fn racing_with_skewed_clocks_still_one_holder() {
    for (repl_ms, skew_ms) in [(2900, 0), (2000, 400), (1500, 600)] {
        for seed in 0..300 {
            let knobs = Knobs {
                replication: std::time::Duration::from_millis(repl_ms),
                ..Knobs::default()
            };
            race_skewed(seed, knobs, 120, skew_ms);
        }
    }
}

#[test]
fn simultaneous_start_same_instant() {
    for seed in 0..100 {
        let mut sim = Sim::new(seed, Knobs::default());
        let a = sim.add(
            owner(7),
            vec![(one_free(), Assignment::Allocate)],
            test_config(),
        );
        let b = sim.add(
            owner(8),
            vec![(one_free(), Assignment::Allocate)],
            test_config(),
        );
        sim.start(a);
        sim.start(b);
        sim.run_until(T0 + secs(60));
        assert!(sim.max_holders.get(&free_addr()).copied().unwrap_or(0) <= 1);
        assert_eq!(
            sim.holders().get(&free_addr()).map(Vec::len),
            Some(1),
            "seed {seed}"
        );
    }
}

fn fifty(seed: u64, knobs: Knobs, end: u64) -> Sim {
    let mut sim = Sim::new(seed, knobs);
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut starts: Vec<(u64, usize)> = (0..50)
        .map(|i| {
            let n = sim.add(
                owner(1000 + i),
                vec![(range("10.77.0.0/24"), Assignment::Allocate)],
                test_config(),
            );
            (r.random_range(0..1000u64), n)
        })
        .collect();
    starts.sort_unstable();
    for (ms, n) in starts {
        sim.run_until(T0 + std::time::Duration::from_millis(ms));
        sim.start(n);
    }
    sim.run_until(T0 + secs(end));
    sim
}

fn assert_all_distinct(sim: &Sim, seed: u64) {
    let mut seen = HashSet::new();
    for (i, n) in sim.nodes.iter().enumerate() {
        assert_eq!(n.held.len(), 1, "seed {seed}: node {i} holds {:?}", n.held);
        let a = *n.held.iter().next().unwrap();
        assert!(seen.insert(a), "seed {seed}: {a} held twice");
        assert_eq!(sim.dht_winner(a), Some(n.owner.clone()), "seed {seed}: {a}");
        assert_eq!(n.alloc.addresses(), vec![(a, 24)]);
    }
}

#[test]
fn fifty_nodes_allocate_concurrently_in_a_slash_24_without_duplicates() {
    for seed in 0..8 {
        let sim = fifty(seed, Knobs::default(), 90);
        assert!(
            sim.max_holders.values().all(|&m| m <= 1),
            "seed {seed}: a duplicate existed at some time"
        );
        assert_all_distinct(&sim, seed);
    }
}

#[test]
fn fifty_nodes_with_lossy_dht() {
    for seed in 0..4 {
        let knobs = Knobs {
            loss: 0.2,
            ..Knobs::default()
        };
        let sim = fifty(seed, knobs, 200);
        assert!(sim.max_holders.values().all(|&m| m <= 1), "seed {seed}");
        assert_all_distinct(&sim, seed);
    }
}

/// Plain last-writer-wins records (a Kademlia store that keeps one value per
/// key): duplicates may appear briefly but the checks resolve them.
#[test]
fn fifty_nodes_on_a_last_writer_wins_store_converge() {
    for seed in 0..4 {
        let knobs = Knobs {
            lww: true,
            ..Knobs::default()
        };
        let sim = fifty(seed, knobs, 400);
        assert_all_distinct(&sim, seed);
    }
}
