//! Property tests of the relay core: never itself, the peer, or an
//! unmeasured neighbour; reserve ordered; the best is the optimum; hysteresis.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use vpn_core::relay::{rank, Action, Candidate, Config, Neighbour, RelaySelector, Strategy, View};

const A: u32 = 0;
const B: u32 = 1;

fn neighbour() -> impl proptest::strategy::Strategy<Value = Neighbour<u32>> {
    (
        0u32..16,
        proptest::option::weighted(0.85, 1u64..400),
        0u64..2000,
    )
        .prop_map(|(id, rtt, since)| Neighbour {
            id,
            rtt: rtt.map(Duration::from_millis),
            connected_at: Duration::from_secs(since),
        })
}

fn any_strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::PaperClosest),
        Just(Strategy::Random),
        Just(Strategy::MostStable),
        Just(Strategy::LatencyStable),
    ]
}

/// First measured entry per id, without A and B: (rtt, connected_at).
fn measured(set: &[Neighbour<u32>]) -> BTreeMap<u32, (Duration, Duration)> {
    let mut m = BTreeMap::new();
    for n in set {
        if let (Some(rtt), false) = (n.rtt, n.id == A || n.id == B) {
            m.entry(n.id).or_insert((rtt, n.connected_at));
        }
    }
    m
}

fn overlap(a: &[Neighbour<u32>], b: &[Neighbour<u32>], now: Duration) -> Vec<Candidate<u32>> {
    let (ma, mb) = (measured(a), measured(b));
    ma.iter()
        .filter_map(|(id, (ra, sa))| {
            mb.get(id).map(|(rb, sb)| Candidate {
                id: *id,
                local_rtt: *ra,
                remote_rtt: *rb,
                age: now.saturating_sub(*sa).min(now.saturating_sub(*sb)),
            })
        })
        .collect()
}

/// The strategy's ranking key (what the reserve must be ordered by).
fn key(
    st: Strategy,
    cfg: &Config,
    c: &Candidate<u32>,
) -> (Duration, Duration, Reverse<Duration>, u32) {
    let z = Duration::ZERO;
    match st {
        Strategy::PaperClosest => (c.local_rtt, c.cost(), Reverse(z), c.id),
        Strategy::Random => (c.cost(), z, Reverse(z), c.id),
        Strategy::MostStable => (z, z, Reverse(c.age), c.id),
        Strategy::LatencyStable => {
            let young = if c.age < cfg.stability_floor {
                Duration::MAX
            } else {
                z
            };
            (young, c.cost(), Reverse(z), c.id)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ranking_is_sound(
        a in proptest::collection::vec(neighbour(), 0..24),
        b in proptest::collection::vec(neighbour(), 0..24),
        st in any_strategy(),
        explore in 0usize..4,
        now_s in 2000u64..4000,
        seed in any::<u64>(),
    ) {
        let cfg = Config { strategy: st, explore, ..Config::default() };
        let now = Duration::from_secs(now_s);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let r = rank(&cfg, View { id: A, neighbours: &a }, View { id: B, neighbours: &b }, now, &mut rng);
        let full = overlap(&a, &b, now);
        let (ma, mb) = (measured(&a), measured(&b));

        // Never itself, the peer, an unmeasured neighbour, or a duplicate;
        // measurements are the first measured entries.
        let mut seen = std::collections::BTreeSet::new();
        for c in &r.candidates {
            prop_assert!(c.id != A && c.id != B);
            prop_assert!(seen.insert(c.id), "duplicate {}", c.id);
            prop_assert!(full.contains(c), "{c:?} not a measured overlap member");
        }
        prop_assert!(r.candidates.len() <= cfg.reserve + 1);
        // Reserve ordered by the strategy's key.
        let keys: Vec<_> = r.reserve().iter().map(|c| key(st, &cfg, c)).collect();
        prop_assert!(keys.windows(2).all(|w| w[0] <= w[1]), "reserve out of order: {:?}", r.reserve());
        // The choice is the optimum of the whole overlap (random: any member).
        match st {
            Strategy::Random => prop_assert_eq!(r.best().is_some(), !full.is_empty()),
            Strategy::PaperClosest => {
                let closest = ma.iter().min_by_key(|(id, (rtt, _))| (*rtt, **id)).map(|(id, _)| *id);
                match closest {
                    Some(c) if mb.contains_key(&c) => {
                        // Any of the source's equally close neighbours is
                        // "the closest"; the core breaks ties by total cost.
                        let min_rtt = ma[&c].0;
                        let best = r.best().map(|x| x.id);
                        prop_assert!(
                            best.is_some_and(|g| ma.get(&g).is_some_and(|m| m.0 == min_rtt)),
                            "best {best:?} is not among the closest ({min_rtt:?})"
                        );
                    }
                    Some(c) => {
                        prop_assert!(r.best().is_none());
                        prop_assert_eq!(&r.plan.remote_connects, &vec![c]);
                    }
                    None => prop_assert!(r.best().is_none()),
                }
            }
            _ => {
                let opt = full.iter().min_by_key(|c| key(st, &cfg, c));
                prop_assert_eq!(r.best(), opt);
                for c in r.reserve() {
                    prop_assert!(key(st, &cfg, &r.candidates[0]) <= key(st, &cfg, c));
                }
            }
        }
        // Connections asked for: measured members of the other side's set,
        // never the peers, not already shared.
        for p in &r.plan.local_connects {
            prop_assert!(mb.contains_key(p) && !ma.contains_key(p));
        }
        for p in &r.plan.remote_connects {
            prop_assert!(ma.contains_key(p));
            prop_assert!(st == Strategy::PaperClosest || !mb.contains_key(p));
        }
        if !full.is_empty() && st != Strategy::LatencyStable {
            prop_assert!(r.plan.local_connects.is_empty());
        }
        if full.is_empty() && !ma.is_empty() {
            prop_assert!(!r.plan.is_empty(), "no overlap and no plan to create one");
        }
    }

    /// Fed a random sequence of measurements, the selector only swaps a
    /// working relay for a gain beyond the margin and after the dwell time,
    /// never keeps a relay that is no longer usable, and never uses itself,
    /// the peer or an unmeasured neighbour.
    #[test]
    fn hysteresis_holds(
        steps in proptest::collection::vec(
            (proptest::collection::vec(neighbour(), 0..12),
             proptest::collection::vec(neighbour(), 0..12),
             0u64..120),
            1..24),
        st in any_strategy(),
        seed in any::<u64>(),
    ) {
        let cfg = Config::with_strategy(st);
        let mut sel = RelaySelector::new(cfg, A, B);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut now = Duration::from_secs(2000);
        let mut last_switch: Option<Duration> = None;
        for (a, b, dt) in steps {
            now += Duration::from_secs(dt);
            let before = sel.current().copied();
            let usable = overlap(&a, &b, now);
            let acts = sel.on_neighbour_sets(now, &a, &b, &mut rng);
            let switched: Vec<_> = acts.iter().filter_map(|x| match x {
                Action::UseRelay { relay, replaces, .. } => Some((*relay, *replaces)),
                _ => None,
            }).collect();
            prop_assert!(switched.len() <= 1);
            if let Some(cur) = sel.current() {
                prop_assert!(cur.id != A && cur.id != B);
                prop_assert!(usable.iter().any(|c| c.id == cur.id), "kept an unusable relay");
            }
            if let Some(&(relay, replaces)) = switched.first() {
                prop_assert_eq!(replaces, before.map(|c| c.id));
                prop_assert_eq!(sel.current().map(|c| c.id), Some(relay));
                if let Some(old) = before.and_then(|o| usable.iter().find(|c| c.id == o.id)) {
                    // A voluntary switch: the old relay still works.
                    prop_assert!(st.reoptimises(), "{st} switched away from a working relay");
                    prop_assert!(last_switch.is_none_or(|t| now - t >= cfg.min_dwell));
                    let new = usable.iter().find(|c| c.id == relay).expect("new relay usable");
                    let metric = |c: &Candidate<u32>| if st == Strategy::PaperClosest { c.local_rtt } else { c.cost() };
                    prop_assert!(metric(new) + cfg.switch_margin(metric(old)) <= metric(old),
                        "marginal switch {old:?} -> {new:?}");
                }
                last_switch = Some(now);
            } else if let (Some(b4), Some(cur)) = (before, sel.current()) {
                prop_assert_eq!(b4.id, cur.id);
            }
        }
    }
}
