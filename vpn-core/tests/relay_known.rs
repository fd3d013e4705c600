//! Hand-made neighbour sets with known answers.

use std::time::Duration;

use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use vpn_core::relay::{rank, Action, Config, Neighbour, RelaySelector, Side, Strategy, View};

const fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}
const fn s(x: u64) -> Duration {
    Duration::from_secs(x)
}

fn nb(id: u32, rtt_ms: u64, since_s: u64) -> Neighbour<u32> {
    Neighbour {
        id,
        rtt: Some(ms(rtt_ms)),
        connected_at: s(since_s),
    }
}

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(7)
}

const A: u32 = 0;
const B: u32 = 1;

/// A triangle-inequality violation: A–B direct is 200 ms, but A–R–B is
/// 30 + 40 = 70 ms. Our default picks R; the paper's picks A's closest
/// neighbour (X, 20 ms from A but 190 ms from B); most-stable picks the
/// oldest shared connection (Y).
#[test]
fn triangle_violation_relay_beats_direct() {
    const R: u32 = 2;
    const X: u32 = 3;
    const Y: u32 = 4;
    let direct = ms(200);
    let a = [nb(R, 30, 100), nb(X, 20, 100), nb(Y, 90, 10)];
    let b = [nb(R, 40, 100), nb(X, 190, 100), nb(Y, 150, 10)];
    let now = s(1000);
    let pick = |st| {
        rank(
            &Config::with_strategy(st),
            View {
                id: A,
                neighbours: &a,
            },
            View {
                id: B,
                neighbours: &b,
            },
            now,
            &mut rng(),
        )
    };
    let ours = pick(Strategy::LatencyStable);
    let best = ours.best().expect("a relay");
    assert_eq!(best.id, R);
    assert_eq!(best.cost(), ms(70));
    assert!(best.cost() < direct);
    assert_eq!(
        ours.reserve().iter().map(|c| c.id).collect::<Vec<_>>(),
        [X, Y]
    );

    assert_eq!(pick(Strategy::PaperClosest).best().map(|c| c.id), Some(X));
    assert_eq!(pick(Strategy::MostStable).best().map(|c| c.id), Some(Y));
    let random = pick(Strategy::Random);
    assert!([R, X, Y].contains(&random.best().expect("a relay").id));
}

/// The stability floor: a faster relay whose connection is younger than the
/// floor ranks after every relay that passes it.
#[test]
fn stability_floor_ranks_young_connections_last() {
    const OLD: u32 = 2;
    const YOUNG: u32 = 3;
    let cfg = Config::default();
    let now = s(1000);
    let young_since = 1000 - cfg.stability_floor.as_secs() + 1;
    let a = [nb(OLD, 50, 0), nb(YOUNG, 10, young_since)];
    let b = [nb(OLD, 50, 0), nb(YOUNG, 10, 0)];
    let r = rank(
        &cfg,
        View {
            id: A,
            neighbours: &a,
        },
        View {
            id: B,
            neighbours: &b,
        },
        now,
        &mut rng(),
    );
    assert_eq!(
        r.candidates.iter().map(|c| c.id).collect::<Vec<_>>(),
        [OLD, YOUNG]
    );
    // Once past the floor, the faster one comes first.
    let later = now + s(2);
    let r = rank(
        &cfg,
        View {
            id: A,
            neighbours: &a,
        },
        View {
            id: B,
            neighbours: &b,
        },
        later,
        &mut rng(),
    );
    assert_eq!(r.best().map(|c| c.id), Some(YOUNG));
}

/// Disjoint neighbour sets (paper Fig. 4): no relay; the peers are told to
/// connect to each other's closest neighbours; once those connections are
/// measured, the created overlap yields the relay.
#[test]
fn disjoint_sets_create_overlap_then_relay() {
    const X1: u32 = 10; // A's neighbours
    const X2: u32 = 11;
    const Y1: u32 = 20; // B's neighbours
    const Y2: u32 = 21;
    let cfg = Config {
        explore: 1,
        ..Config::default()
    };
    let mut a = vec![nb(X1, 15, 0), nb(X2, 60, 0)];
    let mut b = vec![nb(Y1, 80, 0), nb(Y2, 25, 0)];
    let mut sel = RelaySelector::new(cfg, A, B);
    let t0 = s(500);
    let actions = sel.on_neighbour_sets(t0, &a, &b, &mut rng());
    assert!(sel.current().is_none());
    assert_eq!(
        actions,
        [
            Action::Connect {
                side: Side::Local,
                peers: vec![Y2]
            },
            Action::Connect {
                side: Side::Remote,
                peers: vec![X1]
            },
        ]
    );
    // Asking again soon repeats nothing.
    assert!(sel
        .on_neighbour_sets(t0 + s(1), &a, &b, &mut rng())
        .is_empty());

    // Carry the connections out: A–Y2 is 30 ms, B–X1 is 100 ms.
    a.push(nb(Y2, 30, t0.as_secs()));
    b.push(nb(X1, 100, t0.as_secs()));
    let t1 = t0 + cfg.stability_floor + s(1);
    let actions = sel.on_neighbour_sets(t1, &a, &b, &mut rng());
    assert_eq!(
        actions,
        [Action::UseRelay {
            relay: Y2,
            cost: ms(55),
            replaces: None
        }]
    );
    assert_eq!(sel.reserve().iter().map(|c| c.id).collect::<Vec<_>>(), [X1]);
}

/// The paper's strategy with disjoint sets: the destination connects to the
/// source's closest neighbour, which then relays.
#[test]
fn paper_strategy_destination_connects_to_source_closest() {
    const X1: u32 = 10;
    const X2: u32 = 11;
    const Y1: u32 = 20;
    let cfg = Config::with_strategy(Strategy::PaperClosest);
    let a = vec![nb(X1, 15, 0), nb(X2, 60, 0)];
    let mut b = vec![nb(Y1, 80, 0)];
    let mut sel = RelaySelector::new(cfg, A, B);
    let actions = sel.on_neighbour_sets(s(10), &a, &b, &mut rng());
    assert_eq!(
        actions,
        [Action::Connect {
            side: Side::Remote,
            peers: vec![X1]
        }]
    );
    b.push(nb(X1, 70, 10));
    let actions = sel.on_neighbour_sets(s(11), &a, &b, &mut rng());
    assert_eq!(
        actions,
        [Action::UseRelay {
            relay: X1,
            cost: ms(85),
            replaces: None
        }]
    );
}

/// Hysteresis: a 3 ms (< 5 ms) or 8% (< 10%) gain does not move a working
/// relay; a large gain does, but only after the dwell time; a relay that
/// disappears is replaced at once.
#[test]
fn hysteresis_and_failover() {
    const R1: u32 = 2;
    const R2: u32 = 3;
    let cfg = Config {
        explore_when_overlapping: false,
        ..Config::default()
    };
    let mut sel = RelaySelector::new(cfg, A, B);
    let sets = |c1: u64, c2: u64| {
        (
            vec![nb(R1, c1 / 2, 0), nb(R2, c2 / 2, 0)],
            vec![nb(R1, c1 - c1 / 2, 0), nb(R2, c2 - c2 / 2, 0)],
        )
    };
    let (a, b) = sets(40, 60);
    let t = s(1000);
    let acts = sel.on_neighbour_sets(t, &a, &b, &mut rng());
    assert!(matches!(acts[..], [Action::UseRelay { relay: R1, .. }]));
    // R2 now 3 ms better: kept (absolute margin 5 ms).
    let (a, b) = sets(40, 37);
    assert!(sel
        .on_neighbour_sets(t + s(100), &a, &b, &mut rng())
        .is_empty());
    assert_eq!(sel.current().map(|c| (c.id, c.cost())), Some((R1, ms(40))));
    // Slow path: R1 at 200, R2 at 184 (8% better): kept (relative margin 10%).
    let (a, b) = sets(200, 184);
    assert!(sel
        .on_neighbour_sets(t + s(200), &a, &b, &mut rng())
        .is_empty());
    // R2 at 150: switch.
    let (a, b) = sets(200, 150);
    let acts = sel.on_neighbour_sets(t + s(300), &a, &b, &mut rng());
    assert_eq!(
        acts,
        [Action::UseRelay {
            relay: R2,
            cost: ms(150),
            replaces: Some(R1)
        }]
    );
    // R1 much better again, but within the dwell time: kept.
    let (a, b) = sets(20, 150);
    assert!(sel
        .on_neighbour_sets(t + s(310), &a, &b, &mut rng())
        .is_empty());
    // After the dwell time: switch back.
    let acts = sel.on_neighbour_sets(t + s(340), &a, &b, &mut rng());
    assert!(matches!(
        acts[..],
        [Action::UseRelay {
            relay: R1,
            replaces: Some(R2),
            ..
        }]
    ));
    // R1's connection drops: fail over to the reserve at once.
    let acts = sel.on_relay_down(t + s(341), R1);
    assert!(matches!(
        acts[..],
        [Action::UseRelay {
            relay: R2,
            replaces: Some(R1),
            ..
        }]
    ));
    // R2 leaves B's set too: nothing left, back to overlay routing.
    let b_only_r1 = [nb(R1, 10, 0)];
    let acts = sel.on_neighbour_sets(t + s(342), &a[..1], &b_only_r1[..0], &mut rng());
    assert_eq!(
        acts,
        [
            Action::DropRelay { previous: R2 },
            // No overlap left: ask B to connect to A's closest neighbour.
            Action::Connect {
                side: Side::Remote,
                peers: vec![R1]
            }
        ]
    );
    assert!(sel.current().is_none());
}

/// Neighbours without a measured RTT, the peers themselves, and duplicates
/// are never relays.
#[test]
fn unmeasured_self_and_peer_are_never_relays() {
    const R: u32 = 2;
    const U: u32 = 3;
    let a = [
        nb(B, 5, 0),
        nb(A, 1, 0),
        Neighbour {
            id: U,
            rtt: None,
            connected_at: s(0),
        },
        nb(R, 100, 0),
        nb(R, 1, 0),
    ];
    let b = [nb(A, 5, 0), nb(U, 1, 0), nb(R, 100, 0)];
    for st in Strategy::ALL {
        let r = rank(
            &Config::with_strategy(st),
            View {
                id: A,
                neighbours: &a,
            },
            View {
                id: B,
                neighbours: &b,
            },
            s(100),
            &mut rng(),
        );
        let ids: Vec<u32> = r.candidates.iter().map(|c| c.id).collect();
        assert_eq!(ids, [R], "{st}");
        // The first measured duplicate wins.
        assert_eq!(r.candidates[0].cost(), ms(200), "{st}");
    }
}

#[test]
fn strategy_names_round_trip() {
    for st in Strategy::ALL {
        assert_eq!(st.name().parse::<Strategy>(), Ok(st));
    }
    assert!("fastest".parse::<Strategy>().is_err());
    assert_eq!(Strategy::default(), Strategy::LatencyStable);
}
