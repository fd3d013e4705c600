//! The pure decision: rank the overlap, plan connections that create overlap.

use core::cmp::{Ordering, Reverse};
use core::time::Duration;

use rand::{Rng, RngExt};

use super::{Config, Strategy, View};

/// A possible relay: a member of both neighbour sets, measured from both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate<P> {
    /// The relay.
    pub id: P,
    /// RTT local peer ↔ relay, as the local peer measured it.
    pub local_rtt: Duration,
    /// RTT relay ↔ remote peer, as the remote peer measured it.
    pub remote_rtt: Duration,
    /// The younger of the two connections' ages.
    pub age: Duration,
}

impl<P> Candidate<P> {
    /// Round-trip time of the two-hop path through this relay.
    #[must_use]
    pub fn cost(&self) -> Duration {
        self.local_rtt + self.remote_rtt
    }
}

/// Connections that would create overlap (paper Fig. 4), or improve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlapPlan<P> {
    /// Members of the remote peer's set that the local peer should connect to.
    pub local_connects: Vec<P>,
    /// Members of the local peer's set that the remote peer should connect to.
    pub remote_connects: Vec<P>,
}

impl<P> Default for OverlapPlan<P> {
    fn default() -> Self {
        OverlapPlan {
            local_connects: Vec::new(),
            remote_connects: Vec::new(),
        }
    }
}

impl<P> OverlapPlan<P> {
    /// Whether the plan asks for no connection.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.local_connects.is_empty() && self.remote_connects.is_empty()
    }
}

/// The outcome of [`rank`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ranking<P> {
    /// Usable relays, best first: `candidates[0]` is the choice, the rest the
    /// reserve in order. Empty when there is no usable overlap (yet).
    pub candidates: Vec<Candidate<P>>,
    /// Connections to make. Non-empty when the sets do not overlap, and, for
    /// [`Strategy::LatencyStable`], to bring near-end detours into the overlap.
    pub plan: OverlapPlan<P>,
}

impl<P> Ranking<P> {
    /// The chosen relay.
    #[must_use]
    pub fn best(&self) -> Option<&Candidate<P>> {
        self.candidates.first()
    }

    /// The reserve, best first.
    #[must_use]
    pub fn reserve(&self) -> &[Candidate<P>] {
        self.candidates.get(1..).unwrap_or(&[])
    }
}

/// Measured neighbours of `view`, sorted by id, deduplicated, without `a` and
/// `b`. Unmeasured entries are dropped (they can neither relay nor be ranked).
fn measured<P: Copy + Ord>(view: &View<'_, P>, a: P, b: P) -> Vec<(P, Duration, Duration)> {
    let mut v: Vec<(P, Duration, Duration)> = Vec::with_capacity(view.neighbours.len());
    for n in view.neighbours {
        if let (Some(rtt), true) = (n.rtt, n.id != a && n.id != b) {
            v.push((n.id, rtt, n.connected_at));
        }
    }
    // Stable sort keeps the first measured entry of each id first.
    if !v.is_sorted_by_key(|x| x.0) {
        v.sort_by_key(|x| x.0);
    }
    v.dedup_by(|later, earlier| later.0 == earlier.0);
    v
}

/// Ranks the possible relays between `local` and `remote` by `cfg.strategy`,
/// and plans the connections that create overlap when there is none.
///
/// Never returns `local.id`, `remote.id`, or a neighbour whose RTT is not
/// measured on the side that reports it. `rng` is used only by
/// [`Strategy::Random`].
pub fn rank<P, R>(
    cfg: &Config,
    local: View<'_, P>,
    remote: View<'_, P>,
    now: Duration,
    rng: &mut R,
) -> Ranking<P>
where
    P: Copy + Ord,
    R: Rng + ?Sized,
{
    let (a, b) = (local.id, remote.id);
    let l = measured(&local, a, b);
    let r = measured(&remote, a, b);

    // Merge-join: the overlap, measured on both sides.
    let mut overlap = Vec::with_capacity(l.len().min(r.len()));
    let (mut l_shared, mut r_shared) = (vec![false; l.len()], vec![false; r.len()]);
    let (mut i, mut j) = (0, 0);
    while i < l.len() && j < r.len() {
        match l[i].0.cmp(&r[j].0) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                let age = now.saturating_sub(l[i].2).min(now.saturating_sub(r[j].2));
                overlap.push(Candidate {
                    id: l[i].0,
                    local_rtt: l[i].1,
                    remote_rtt: r[j].1,
                    age,
                });
                l_shared[i] = true;
                r_shared[j] = true;
                i += 1;
                j += 1;
            }
        }
    }
    let in_overlap = |id: &P| overlap.binary_search_by(|c| c.id.cmp(id)).is_ok();
    let by_cost = |x: &Candidate<P>, y: &Candidate<P>| (x.cost(), x.id).cmp(&(y.cost(), y.id));

    let mut plan = OverlapPlan::default();
    match cfg.strategy {
        Strategy::PaperClosest => {
            // The source's closest neighbour, whatever the overlap holds.
            let closest = l.iter().min_by_key(|n| (n.1, n.0)).map(|n| n.0);
            match closest {
                Some(c) if in_overlap(&c) => {
                    overlap.sort_by(|x, y| {
                        (x.local_rtt, x.cost(), x.id).cmp(&(y.local_rtt, y.cost(), y.id))
                    });
                }
                Some(c) => {
                    overlap.clear();
                    plan.remote_connects.push(c);
                }
                None => overlap.clear(),
            }
        }
        Strategy::Random => {
            overlap.sort_by(by_cost);
            if overlap.is_empty() {
                if !l.is_empty() {
                    let k = rng.random_range(0..l.len());
                    plan.remote_connects.push(l[k].0);
                }
            } else {
                let k = rng.random_range(0..overlap.len());
                let chosen = overlap.remove(k);
                overlap.insert(0, chosen);
            }
        }
        Strategy::MostStable => {
            // Ties go to the lower id, never to latency: this strategy
            // does not look at latency.
            overlap.sort_by_key(|x| (Reverse(x.age), x.id));
            if overlap.is_empty() {
                if let Some(oldest) = l.iter().min_by_key(|n| (n.2, n.0)) {
                    plan.remote_connects.push(oldest.0);
                }
            }
        }
        Strategy::LatencyStable => {
            let floor = cfg.stability_floor;
            overlap.sort_by(|x, y| {
                ((x.age < floor), x.cost(), x.id).cmp(&((y.age < floor), y.cost(), y.id))
            });
            // Without overlap at least one connection each way is asked for.
            let n = if overlap.is_empty() {
                cfg.explore.max(1)
            } else if cfg.explore_when_overlapping {
                cfg.explore
            } else {
                0
            };
            plan.remote_connects = closest_outside(&l, &l_shared, n);
            plan.local_connects = closest_outside(&r, &r_shared, n);
        }
    }
    overlap.truncate(cfg.reserve.saturating_add(1));
    Ranking {
        candidates: overlap,
        plan,
    }
}

/// Of the `n` members of `own` with the lowest RTT (ties: lower id), those
/// not yet `shared` with the other side, lowest first. Bounding by the `n`
/// closest overall (not the `n` closest outside) keeps exploration finite:
/// once they are shared, nothing more is asked for.
fn closest_outside<P: Copy + Ord>(
    own: &[(P, Duration, Duration)],
    shared: &[bool],
    n: usize,
) -> Vec<P> {
    let mut best: Vec<(Duration, P, bool)> = Vec::with_capacity(n + 1);
    for (x, &sh) in own.iter().zip(shared) {
        let key = (x.1, x.0, sh);
        if best.len() < n || best.last().is_some_and(|w| (key.0, key.1) < (w.0, w.1)) {
            let pos = best.partition_point(|b| (b.0, b.1) < (key.0, key.1));
            best.insert(pos, key);
            best.truncate(n);
        }
    }
    best.into_iter().filter(|x| !x.2).map(|x| x.1).collect()
}
