//! Leases, renewal, release, full ranges, fixed addresses, restarts.

use std::net::IpAddr;
use std::time::Duration;

use super::harness::{one_free, owner, range, secs, test_config, Knobs, Sim, GROUP, T0};
use crate::addr::{dht_key, AddrError, Assignment, Claim, LostReason, SignedRecord};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn only(sim: &Sim, i: usize) -> Option<IpAddr> {
    assert!(sim.nodes[i].held.len() <= 1);
    sim.nodes[i].held.iter().next().copied()
}

fn acquired_at(sim: &Sim, i: usize, addr: IpAddr) -> Option<Duration> {
    sim.nodes[i]
        .log
        .acquired
        .iter()
        .find(|(_, a)| *a == addr)
        .map(|(t, _)| *t)
}

/// The live claim of `owner_bytes` under `addr`'s key.
fn stored_claim(sim: &Sim, addr: IpAddr, owner_bytes: &[u8]) -> Option<Claim> {
    sim.read(&dht_key(addr))
        .iter()
        .filter_map(|r| Claim::decode(&r.value).ok())
        .find(|c| c.owner == owner_bytes && !c.released)
}

#[test]
fn a_node_that_disappears_loses_its_address_when_the_lease_expires() {
    let cfg = test_config();
    for seed in 0..5 {
        let mut sim = Sim::new(seed, Knobs::default());
        let a = sim.add(
            owner(1),
            vec![(one_free(), Assignment::Allocate)],
            cfg.clone(),
        );
        let b = sim.add(
            owner(2),
            vec![(one_free(), Assignment::Allocate)],
            cfg.clone(),
        );
        sim.start(a);
        sim.run_until(T0 + secs(100));
        let x = ip("10.9.0.2");
        assert_eq!(only(&sim, a), Some(x));
        let expiry = stored_claim(&sim, x, &sim.nodes[a].owner).unwrap().expiry;
        sim.kill(a);
        sim.run_until(T0 + secs(120));
        sim.start(b);
        sim.run_until(expiry + cfg.full_retry + secs(10));
        let t = acquired_at(&sim, b, x).expect("B gets the dead node's address");
        assert!(
            t >= expiry,
            "seed {seed}: acquired at {t:?} before expiry {expiry:?}"
        );
        assert!(
            t <= expiry + cfg.full_retry + secs(5),
            "seed {seed}: late {t:?}"
        );
        // Before that, B was told the range is full.
        assert!(sim.nodes[b]
            .log
            .errors
            .iter()
            .all(|(t, e)| *t < expiry && matches!(e, AddrError::RangeFull { .. })));
        assert!(!sim.nodes[b].log.errors.is_empty());
    }
}

#[test]
fn renewal_keeps_an_address_across_many_lease_periods() {
    let cfg = test_config();
    let mut sim = Sim::new(3, Knobs::default());
    let a = sim.add(
        owner(1),
        vec![(one_free(), Assignment::Allocate)],
        cfg.clone(),
    );
    let b = sim.add(
        owner(2),
        vec![(one_free(), Assignment::Allocate)],
        cfg.clone(),
    );
    sim.start(a);
    sim.run_until(T0 + secs(10));
    sim.start(b);
    let x = ip("10.9.0.2");
    let end = T0 + cfg.lease * 10;
    let mut t = T0 + secs(10);
    while t < end {
        t += secs(17);
        sim.run_until(t);
        assert_eq!(
            sim.dht_winner(x),
            Some(sim.nodes[a].owner.clone()),
            "at {t:?}"
        );
        assert_eq!(only(&sim, a), Some(x));
    }
    assert!(sim.nodes[a].log.lost.is_empty());
    assert!(sim.nodes[b].held.is_empty());
    // About two renewals per lease.
    let puts = sim.nodes[a].alloc.stats().puts;
    assert!((19..=23).contains(&puts), "{puts} puts");
    // The stored claim keeps the original `since`.
    let c = stored_claim(&sim, x, &sim.nodes[a].owner).unwrap();
    assert!(c.since < T0 + secs(5) && c.lease_start > end - cfg.lease);
}

#[test]
fn release_on_shutdown_frees_the_address_at_once() {
    let cfg = test_config();
    let mut sim = Sim::new(4, Knobs::default());
    let a = sim.add(
        owner(1),
        vec![(one_free(), Assignment::Allocate)],
        cfg.clone(),
    );
    let b = sim.add(
        owner(2),
        vec![(one_free(), Assignment::Allocate)],
        cfg.clone(),
    );
    sim.start(a);
    sim.run_until(T0 + secs(10));
    sim.start(b);
    sim.run_until(T0 + secs(20));
    let x = ip("10.9.0.2");
    assert_eq!(only(&sim, a), Some(x));
    assert!(only(&sim, b).is_none());
    sim.release(a);
    assert_eq!(
        sim.nodes[a].log.lost.last().map(|l| l.2.clone()),
        Some(LostReason::Released)
    );
    // A fresh node gets it at once, long before the lease would end.
    let c = sim.add(
        owner(3),
        vec![(one_free(), Assignment::Allocate)],
        cfg.clone(),
    );
    sim.run_until(T0 + secs(22));
    sim.start(c);
    sim.run_until(T0 + secs(30));
    // B (waiting after "range full") or C has it, exactly one.
    let holders = sim.holders();
    assert_eq!(holders.get(&x).map(Vec::len), Some(1), "{holders:?}");
    sim.run_until(T0 + secs(60));
    assert!(sim.max_holders.values().all(|&m| m <= 1));
    let h = sim.holders()[&x][0];
    assert!(h == b || h == c);
    assert!(acquired_at(&sim, h, x).unwrap() < T0 + secs(60));
}

#[test]
fn release_frees_the_address_for_a_waiting_node() {
    let cfg = test_config();
    let mut sim = Sim::new(5, Knobs::default());
    let a = sim.add(
        owner(1),
        vec![(one_free(), Assignment::Allocate)],
        cfg.clone(),
    );
    let b = sim.add(
        owner(2),
        vec![(one_free(), Assignment::Allocate)],
        cfg.clone(),
    );
    sim.start(a);
    sim.run_until(T0 + secs(10));
    sim.start(b);
    sim.run_until(T0 + secs(20));
    sim.release(a);
    sim.run_until(T0 + secs(20) + cfg.full_retry + secs(10));
    assert_eq!(only(&sim, b), Some(ip("10.9.0.2")));
}

#[test]
fn a_full_range_gives_a_clear_error() {
    let mut sim = Sim::new(6, Knobs::default());
    let n: Vec<usize> = (0..3)
        .map(|i| {
            sim.add(
                owner(i),
                vec![(range("10.9.0.0/30"), Assignment::Allocate)],
                test_config(),
            )
        })
        .collect();
    for &i in &n {
        sim.start(i);
    }
    sim.run_until(T0 + secs(60));
    let held: Vec<IpAddr> = n.iter().filter_map(|&i| only(&sim, i)).collect();
    assert_eq!(held.len(), 2);
    assert_ne!(held[0], held[1]);
    let loser = n
        .iter()
        .copied()
        .find(|&i| only(&sim, i).is_none())
        .unwrap();
    let (_, e) = sim.nodes[loser].log.errors.first().expect("an error");
    assert_eq!(
        e,
        &AddrError::RangeFull {
            range: "10.9.0.0/30".into(),
            hosts: 2,
            probed: 2
        }
    );
    assert_eq!(
        e.to_string(),
        "address range 10.9.0.0/30 is full: no free address among 2 host addresses (2 probed); retrying"
    );
}

#[test]
fn fixed_address_beats_an_allocated_one() {
    let cfg = test_config();
    let mut sim = Sim::new(7, Knobs::default());
    let a = sim.add(
        owner(1),
        vec![(range("10.9.0.0/29"), Assignment::Allocate)],
        cfg.clone(),
    );
    sim.start(a);
    sim.run_until(T0 + secs(60));
    let x = only(&sim, a).unwrap();
    let b = sim.add(
        owner(2),
        vec![(range("10.9.0.0/29"), Assignment::Fixed(x))],
        cfg.clone(),
    );
    sim.start(b);
    sim.run_until(T0 + secs(200));
    assert_eq!(only(&sim, b), Some(x));
    let y = only(&sim, a).unwrap();
    assert_ne!(x, y);
    let (t_lost, addr, reason) = sim.nodes[a].log.lost[0].clone();
    assert_eq!(addr, x);
    assert_eq!(reason, LostReason::Conflict { winner: owner(2) });
    // The overlap lasts at most one check interval.
    let t_b = acquired_at(&sim, b, x).unwrap();
    assert!(
        t_lost <= t_b + cfg.check_interval + secs(1),
        "{t_lost:?} vs {t_b:?}"
    );
    // With observe(), the holder gives it up as soon as it sees the claim.
    let mut sim = Sim::new(8, Knobs::default());
    let a = sim.add(
        owner(1),
        vec![(range("10.9.0.0/29"), Assignment::Allocate)],
        cfg.clone(),
    );
    sim.start(a);
    sim.run_until(T0 + secs(60));
    let x = only(&sim, a).unwrap();
    let b = sim.add(
        owner(2),
        vec![(range("10.9.0.0/29"), Assignment::Fixed(x))],
        cfg.clone(),
    );
    sim.start(b);
    sim.run_until(T0 + secs(66));
    assert_eq!(only(&sim, b), Some(x));
    let recs = sim.read(&dht_key(x));
    let now = sim.now;
    sim.nodes[a].alloc.observe(&dht_key(x), &recs, now);
    assert_eq!(sim.nodes[a].alloc.addresses(), vec![]);
}

#[test]
fn two_fixed_claims_for_one_address_one_wins_the_other_reports() {
    for seed in 0..50 {
        let mut sim = Sim::new(seed, Knobs::default());
        let x = ip("10.9.0.2");
        let a = sim.add(
            owner(1),
            vec![(one_free(), Assignment::Fixed(x))],
            test_config(),
        );
        let b = sim.add(
            owner(2),
            vec![(one_free(), Assignment::Fixed(x))],
            test_config(),
        );
        sim.start(a);
        sim.run_until(T0 + Duration::from_millis(seed * 37));
        sim.start(b);
        sim.run_until(T0 + secs(120));
        assert!(sim.max_holders.values().all(|&m| m <= 1), "seed {seed}");
        let h = &sim.holders()[&x];
        assert_eq!(h.len(), 1);
        let other = 1 - h[0];
        assert!(sim.nodes[other]
            .log
            .errors
            .iter()
            .any(|(_, e)| matches!(e, AddrError::FixedConflict { addr, .. } if *addr == x)));
    }
}

#[test]
fn a_restarted_node_takes_its_own_address_back_at_once() {
    let mut sim = Sim::new(9, Knobs::default());
    let r = range("10.77.0.0/24");
    let a = sim.add(
        owner(1),
        vec![(r.clone(), Assignment::Allocate)],
        test_config(),
    );
    sim.start(a);
    sim.run_until(T0 + secs(50));
    let x = only(&sim, a).unwrap();
    let since = stored_claim(&sim, x, &owner(1)).unwrap().since;
    sim.kill(a);
    let a2 = sim.add(owner(1), vec![(r, Assignment::Allocate)], test_config());
    sim.run_until(T0 + secs(60));
    sim.start(a2);
    sim.run_until(T0 + secs(70));
    assert_eq!(only(&sim, a2), Some(x));
    // It kept its incumbency.
    let c = stored_claim(&sim, x, &owner(1)).unwrap();
    assert_eq!(c.since, since);
    assert!(c.lease_start >= T0 + secs(60));
}

#[test]
fn ipv4_and_ipv6_ranges_each_get_an_address() {
    let mut sim = Sim::new(10, Knobs::default());
    let a = sim.add(
        owner(1),
        vec![
            (range("10.77.0.0/24"), Assignment::Allocate),
            (range("fd77::/64"), Assignment::Allocate),
        ],
        test_config(),
    );
    sim.start(a);
    sim.run_until(T0 + secs(30));
    let got = sim.nodes[a].alloc.addresses();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().any(|(a, p)| a.is_ipv4() && *p == 24));
    assert!(got.iter().any(|(a, p)| a.is_ipv6() && *p == 64));
}

#[test]
fn garbage_and_forged_records_are_ignored_and_counted() {
    let mut sim = Sim::new(11, Knobs::default());
    let x = ip("10.9.0.2");
    let key = dht_key(x);
    let far = T0 + secs(3600);
    sim.inject(
        key.clone(),
        SignedRecord {
            owner: owner(50),
            value: b"\x00garbage".to_vec(),
        },
        far,
    );
    // A live claim by owner 51, but signed by owner 52: forged.
    let forged = Claim {
        group: GROUP.into(),
        addr: x,
        owner: owner(51),
        fixed: true,
        released: false,
        since: T0 - secs(100),
        lease_start: T0 - secs(100),
        expiry: far,
        seq: 1,
    };
    sim.inject(
        key.clone(),
        SignedRecord {
            owner: owner(52),
            value: forged.encode(),
        },
        far,
    );
    // A genuine claim of another group under this key.
    let other_group = Claim {
        group: "other".into(),
        owner: owner(53),
        ..forged.clone()
    };
    sim.inject(
        key.clone(),
        SignedRecord {
            owner: owner(53),
            value: other_group.encode(),
        },
        far,
    );
    let a = sim.add(
        owner(1),
        vec![(one_free(), Assignment::Allocate)],
        test_config(),
    );
    sim.start(a);
    sim.run_until(T0 + secs(30));
    assert_eq!(only(&sim, a), Some(x));
    let s = sim.nodes[a].alloc.stats();
    assert!(s.malformed >= 1 && s.mismatched >= 2, "{s:?}");
}
