//! The relay experiment (paper section V-A, Fig. 5): for each network size,
//! sample members from a latency matrix, form the overlay, and for every
//! ordered pair whose overlay path takes two hops or more compare direct,
//! overlay-routed and relayed latency, the relay chosen by the real
//! [`RelaySelector`] under each [`Strategy`] in simulated time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;
use serde::Serialize;

use super::matrix::LatencyMatrix;
use super::overlay::{Overlay, OverlayParams};
use crate::relay::{Action, Config, Neighbour, RelaySelector, Side, Strategy};

/// Parameters of a run.
#[derive(Clone, Debug)]
pub struct RelaySimParams {
    /// Network sizes (members per trial, sampled from the matrix's hosts).
    pub sizes: Vec<usize>,
    /// Trials per size (fresh sample, keys and overlay each time).
    pub trials: usize,
    /// Seed: the whole run is a function of it.
    pub seed: u64,
    /// Overlay model.
    pub overlay: OverlayParams,
    /// Strategies to compare.
    pub strategies: Vec<Variant>,
    /// Worker threads (results do not depend on it).
    pub threads: usize,
}

impl Default for RelaySimParams {
    fn default() -> Self {
        RelaySimParams {
            sizes: vec![25, 50, 100, 200, 400],
            trials: 20,
            seed: 1,
            overlay: OverlayParams::default(),
            strategies: Variant::standard(),
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// A selector configuration compared under a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Name in reports (a strategy's name for the standard variants).
    pub name: String,
    /// The selector's tuning.
    pub config: Config,
}

impl Variant {
    /// Name of the ablation of the default without exploration.
    pub const OVERLAP_ONLY: &'static str = "latency-stable-overlap-only";

    /// Each [`Strategy`] with the default tuning, plus the default without
    /// exploration when the sets already overlap (an ablation: how much of
    /// the gain comes from connecting to the other side's closest neighbours).
    #[must_use]
    pub fn standard() -> Vec<Variant> {
        let mut v: Vec<Variant> = Strategy::ALL
            .into_iter()
            .map(|st| Variant {
                name: st.name().to_owned(),
                config: Config::with_strategy(st),
            })
            .collect();
        v.push(Variant {
            name: Self::OVERLAP_ONLY.to_owned(),
            config: Config {
                explore_when_overlapping: false,
                ..Config::default()
            },
        });
        v
    }
}

/// A run that cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A size larger than the matrix or below 2.
    #[error(
        "network size {size} is not possible with a matrix of {hosts} hosts (need 2..={hosts})"
    )]
    BadSize {
        /// The size asked for.
        size: usize,
        /// Hosts in the matrix.
        hosts: usize,
    },
    /// No trials or no sizes.
    #[error("nothing to run: {0}")]
    Empty(&'static str),
}

/// Per-strategy figures of one size.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StrategyRow {
    /// Mean relayed RTT (ms) over the evaluated pairs (pairs left without a
    /// relay count with their overlay RTT).
    pub relay_ms: f64,
    /// Share of pairs whose first decision found a relay in the existing
    /// overlap, without creating one.
    pub found_without_creating_overlap: f64,
    /// Share of pairs left without a relay at the end.
    pub no_relay: f64,
    /// Mean number of relay switches per pair after the first choice.
    pub switches: f64,
    /// Mean connections opened per pair to create or improve the overlap.
    pub connections: f64,
}

/// One network size, averaged over trials.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SizeRow {
    /// Members.
    pub size: usize,
    /// Trials.
    pub trials: usize,
    /// Mean number of evaluated ordered pairs per trial (overlay path of two
    /// hops or more, direct RTT known).
    pub pairs: f64,
    /// Share of ordered pairs that were evaluated.
    pub pair_share: f64,
    /// Mean neighbour-set (routing table) size.
    pub neighbours: f64,
    /// Mean overlay hops of the evaluated pairs.
    pub overlay_hops: f64,
    /// Ordered pairs, summed over trials, that greedy routing could not route
    /// or whose path crosses an unknown RTT (left out).
    pub unroutable: usize,
    /// Mean direct RTT (ms).
    pub direct_ms: f64,
    /// Mean overlay-routed RTT (ms): sum of the per-hop RTTs.
    pub overlay_ms: f64,
    /// Mean relayed RTT (ms) per strategy name.
    pub relay_ms: BTreeMap<String, f64>,
    /// Details per strategy name.
    pub strategies: BTreeMap<String, StrategyRow>,
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RelaySimReport {
    /// Name of the project's default strategy.
    pub default_strategy: String,
    /// The seed.
    pub seed: u64,
    /// Bucket size.
    pub k: usize,
    /// One row per size, in the order asked.
    pub rows: Vec<SizeRow>,
}

#[derive(Clone, Debug, Default)]
struct StratAcc {
    relay: f64,
    found: usize,
    none: usize,
    switches: usize,
    connections: usize,
}

#[derive(Clone, Debug, Default)]
struct TrialResult {
    pairs: usize,
    all_pairs: usize,
    neighbours: f64,
    hops: usize,
    unroutable: usize,
    direct: f64,
    overlay: f64,
    strat: Vec<StratAcc>,
}

/// SplitMix64 finaliser: independent seeds per (size, trial).
fn derive_seed(seed: u64, size: usize, trial: usize) -> u64 {
    let mut z = seed
        ^ (size as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (trial as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs the experiment. Deterministic for `params.seed` whatever `threads`.
pub fn run(matrix: &LatencyMatrix, params: &RelaySimParams) -> Result<RelaySimReport, SimError> {
    if params.sizes.is_empty() {
        return Err(SimError::Empty("no sizes"));
    }
    if params.trials == 0 {
        return Err(SimError::Empty("zero trials"));
    }
    if params.strategies.is_empty() {
        return Err(SimError::Empty("no strategies"));
    }
    for &size in &params.sizes {
        if size < 2 || size > matrix.len() {
            return Err(SimError::BadSize {
                size,
                hosts: matrix.len(),
            });
        }
    }
    // Largest jobs first so the two cores finish together.
    let mut jobs: Vec<(usize, usize)> = (0..params.sizes.len())
        .flat_map(|s| (0..params.trials).map(move |t| (s, t)))
        .collect();
    jobs.sort_by_key(|&(s, t)| (std::cmp::Reverse(params.sizes[s]), s, t));
    let results: Mutex<Vec<Option<TrialResult>>> = Mutex::new(vec![None; jobs.len()]);
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..params.threads.max(1) {
            scope.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(s, t)) = jobs.get(j) else { break };
                let size = params.sizes[s];
                let r = run_trial(matrix, params, size, derive_seed(params.seed, size, t));
                results.lock().unwrap_or_else(|e| e.into_inner())[j] = Some(r);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let rows = params
        .sizes
        .iter()
        .enumerate()
        .map(|(s, &size)| {
            let trials: Vec<&TrialResult> = jobs
                .iter()
                .zip(&results)
                .filter(|((js, _), _)| *js == s)
                .filter_map(|(_, r)| r.as_ref())
                .collect();
            aggregate(size, &trials, &params.strategies)
        })
        .collect();
    Ok(RelaySimReport {
        default_strategy: Strategy::DEFAULT.name().to_owned(),
        seed: params.seed,
        k: params.overlay.k,
        rows,
    })
}

fn mean_of(trials: &[&TrialResult], f: impl Fn(&TrialResult) -> Option<f64>) -> f64 {
    let v: Vec<f64> = trials.iter().filter_map(|t| f(t)).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn aggregate(size: usize, trials: &[&TrialResult], strategies: &[Variant]) -> SizeRow {
    let per_pair = |x: f64, t: &TrialResult| (t.pairs > 0).then(|| x / t.pairs as f64);
    let mut row = SizeRow {
        size,
        trials: trials.len(),
        pairs: mean_of(trials, |t| Some(t.pairs as f64)),
        pair_share: mean_of(trials, |t| Some(t.pairs as f64 / t.all_pairs.max(1) as f64)),
        neighbours: mean_of(trials, |t| Some(t.neighbours)),
        overlay_hops: mean_of(trials, |t| per_pair(t.hops as f64, t)),
        unroutable: trials.iter().map(|t| t.unroutable).sum(),
        direct_ms: mean_of(trials, |t| per_pair(t.direct, t)),
        overlay_ms: mean_of(trials, |t| per_pair(t.overlay, t)),
        ..SizeRow::default()
    };
    for (i, st) in strategies.iter().enumerate() {
        let sr = StrategyRow {
            relay_ms: mean_of(trials, |t| per_pair(t.strat[i].relay, t)),
            found_without_creating_overlap: mean_of(trials, |t| {
                per_pair(t.strat[i].found as f64, t)
            }),
            no_relay: mean_of(trials, |t| per_pair(t.strat[i].none as f64, t)),
            switches: mean_of(trials, |t| per_pair(t.strat[i].switches as f64, t)),
            connections: mean_of(trials, |t| per_pair(t.strat[i].connections as f64, t)),
        };
        row.relay_ms.insert(st.name.clone(), sr.relay_ms);
        row.strategies.insert(st.name.clone(), sr);
    }
    row
}

fn to_duration(ms: f64) -> Duration {
    Duration::from_secs_f64(ms / 1000.0)
}

fn run_trial(
    matrix: &LatencyMatrix,
    params: &RelaySimParams,
    size: usize,
    seed: u64,
) -> TrialResult {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let hosts: Vec<usize> = rand::seq::index::sample(&mut rng, matrix.len(), size).into_vec();
    let lat = |a: usize, b: usize| matrix.get(hosts[a], hosts[b]);
    let overlay = Overlay::build(size, params.overlay, &mut rng);
    let now = overlay.settled_at + Duration::from_secs(600);
    // Neighbour sets as the relay core sees them (member index as peer id).
    let sets: Vec<Vec<Neighbour<u32>>> = (0..size)
        .map(|i| {
            overlay
                .neighbours(i)
                .iter()
                .map(|e| Neighbour {
                    id: e.node,
                    rtt: lat(i, e.node as usize).map(to_duration),
                    connected_at: e.since,
                })
                .collect()
        })
        .collect();
    let mut res = TrialResult {
        all_pairs: size * (size - 1),
        neighbours: sets.iter().map(Vec::len).sum::<usize>() as f64 / size as f64,
        strat: vec![StratAcc::default(); params.strategies.len()],
        ..TrialResult::default()
    };
    let (mut buf_l, mut buf_r) = (Vec::new(), Vec::new());
    let world = World {
        sets: &sets,
        lat: &lat,
        now,
    };
    for s in 0..size {
        for d in 0..size {
            if s == d || overlay.knows(s, d) {
                continue;
            }
            let Some(direct) = lat(s, d) else { continue };
            let overlay_ms = overlay.route(s, d).and_then(|path| {
                path.windows(2)
                    .map(|w| lat(w[0], w[1]))
                    .sum::<Option<f64>>()
                    .map(|ms| (ms, path.len() - 1))
            });
            let Some((overlay_ms, hops)) = overlay_ms else {
                res.unroutable += 1;
                continue;
            };
            res.pairs += 1;
            res.direct += direct;
            res.overlay += overlay_ms;
            res.hops += hops;
            for (i, variant) in params.strategies.iter().enumerate() {
                let cfg = variant.config;
                let out = relay_pair(cfg, (s, d), &world, &mut rng, (&mut buf_l, &mut buf_r));
                let acc = &mut res.strat[i];
                match out.relay {
                    Some(r) => {
                        // True RTTs (in the simulator, measurement = truth).
                        let via = lat(s, r).zip(lat(r, d)).map(|(a, b)| a + b);
                        acc.relay += via.unwrap_or(overlay_ms);
                    }
                    None => {
                        acc.none += 1;
                        acc.relay += overlay_ms;
                    }
                }
                acc.found += usize::from(out.found_in_overlap);
                acc.switches += out.switches;
                acc.connections += out.connections;
            }
        }
    }
    res
}

/// What every pair of a trial shares.
struct World<'a, F> {
    /// Neighbour sets as the relay core sees them.
    sets: &'a [Vec<Neighbour<u32>>],
    /// True RTT between members (ms).
    lat: &'a F,
    /// Simulated time of the first exchange.
    now: Duration,
}

impl<F> Clone for World<'_, F> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F> Copy for World<'_, F> {}

struct PairOutcome {
    relay: Option<usize>,
    found_in_overlap: bool,
    switches: usize,
    connections: usize,
}

/// Drives one selector for the pair `s → d` in simulated time: the first
/// exchange of neighbour sets at `now`, connections carried out (each new
/// connection measured at once), then fresh exchanges once the new
/// connections are past the stability floor and the dwell time, until no
/// more connections are asked for (at most four rounds). Connections made for
/// one pair do not change the overlay seen by other pairs.
fn relay_pair<F>(
    cfg: Config,
    (s, d): (usize, usize),
    world: &World<'_, F>,
    rng: &mut ChaCha8Rng,
    scratch: (&mut Vec<Neighbour<u32>>, &mut Vec<Neighbour<u32>>),
) -> PairOutcome
where
    F: Fn(usize, usize) -> Option<f64>,
{
    let World { sets, lat, now } = *world;
    let (s32, d32) = (s as u32, d as u32);
    let mut sel = RelaySelector::new(cfg, s32, d32);
    let (local, remote) = scratch;
    local.clear();
    local.extend_from_slice(&sets[s]);
    remote.clear();
    remote.extend_from_slice(&sets[d]);
    let step = cfg.stability_floor.max(cfg.min_dwell) + Duration::from_secs(1);
    let mut out = PairOutcome {
        relay: None,
        found_in_overlap: false,
        switches: 0,
        connections: 0,
    };
    let mut t = now;
    for round in 0..4 {
        let actions = sel.on_neighbour_sets(t, local, remote, rng);
        if round == 0 {
            out.found_in_overlap = sel.current().is_some();
        }
        let mut connected = false;
        for a in actions {
            match a {
                Action::UseRelay {
                    replaces: Some(_), ..
                } => out.switches += 1,
                Action::Connect { side, peers } => {
                    let (who, set) = match side {
                        Side::Local => (s, &mut *local),
                        Side::Remote => (d, &mut *remote),
                    };
                    for p in peers {
                        // Sets stay sorted by id (the core then skips sorting).
                        let Err(pos) = set.binary_search_by_key(&p, |n| n.id) else {
                            continue;
                        };
                        if p == s32 || p == d32 {
                            continue;
                        }
                        set.insert(
                            pos,
                            Neighbour {
                                id: p,
                                rtt: lat(who, p as usize).map(to_duration),
                                connected_at: t,
                            },
                        );
                        out.connections += 1;
                        connected = true;
                    }
                }
                Action::UseRelay { .. } | Action::DropRelay { .. } => {}
            }
        }
        if !connected {
            break;
        }
        t += step;
    }
    // A final exchange lets hysteresis decide on the last connections.
    if out.connections > 0 {
        for a in sel.on_neighbour_sets(t, local, remote, rng) {
            if let Action::UseRelay {
                replaces: Some(_), ..
            } = a
            {
                out.switches += 1;
            }
        }
    }
    out.relay = sel.current().map(|c| c.id as usize);
    out
}
