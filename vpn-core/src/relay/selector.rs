//! The relay-selection state machine: measurements in, actions out.

use core::time::Duration;

use rand::Rng;

use super::{rank, Candidate, Config, Neighbour, Strategy, View};

/// Which peer of the pair an [`Action::Connect`] is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The peer running this selector.
    Local,
    /// The other peer: the request travels to it over the overlay.
    Remote,
}

/// What the owner of a [`RelaySelector`] should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<P> {
    /// Carry the pair's traffic through `relay` (install the relay path,
    /// replacing `replaces` if set). `cost` is the expected two-hop RTT.
    UseRelay {
        /// The new relay.
        relay: P,
        /// Expected RTT local → relay → remote.
        cost: Duration,
        /// The relay it replaces, if any.
        replaces: Option<P>,
    },
    /// The relay stopped working and no other is usable: fall back to
    /// overlay routing until one appears.
    DropRelay {
        /// The relay that went away.
        previous: P,
    },
    /// Open connections to these peers ([`Side::Local`]), or ask the remote
    /// peer to ([`Side::Remote`]): this creates (or improves) the overlap.
    Connect {
        /// Who connects.
        side: Side,
        /// To whom, best first.
        peers: Vec<P>,
    },
}

/// Relay selection for one pair of peers that cannot connect directly.
///
/// Feed it the two neighbour sets whenever they are (re)measured
/// ([`RelaySelector::on_neighbour_sets`]) and relay failures
/// ([`RelaySelector::on_relay_down`]); carry out the returned actions.
#[derive(Clone, Debug)]
pub struct RelaySelector<P> {
    cfg: Config,
    local: P,
    remote: P,
    current: Option<Candidate<P>>,
    reserve: Vec<Candidate<P>>,
    last_switch: Option<Duration>,
    requested: Vec<(Side, P, Duration)>,
}

impl<P: Copy + Ord> RelaySelector<P> {
    /// A selector run by `local` for its traffic to `remote`.
    #[must_use]
    pub fn new(cfg: Config, local: P, remote: P) -> Self {
        RelaySelector {
            cfg,
            local,
            remote,
            current: None,
            reserve: Vec::new(),
            last_switch: None,
            requested: Vec::new(),
        }
    }

    /// The tuning.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The relay in use, with its latest measurements.
    #[must_use]
    pub fn current(&self) -> Option<&Candidate<P>> {
        self.current.as_ref()
    }

    /// The ranked reserve (best first), without the current relay.
    #[must_use]
    pub fn reserve(&self) -> &[Candidate<P>] {
        &self.reserve
    }

    /// The figure a strategy optimises, if it re-optimises at all.
    fn metric(&self, c: &Candidate<P>) -> Duration {
        match self.cfg.strategy {
            Strategy::PaperClosest => c.local_rtt,
            _ => c.cost(),
        }
    }

    fn switch_to(&mut self, now: Duration, to: Candidate<P>, out: &mut Vec<Action<P>>) {
        out.push(Action::UseRelay {
            relay: to.id,
            cost: to.cost(),
            replaces: self.current.map(|c| c.id),
        });
        self.current = Some(to);
        self.last_switch = Some(now);
    }

    /// New measurements of both neighbour sets: `local_set` as this peer
    /// measured it, `remote_set` as the remote peer reported it.
    pub fn on_neighbour_sets<R: Rng + ?Sized>(
        &mut self,
        now: Duration,
        local_set: &[Neighbour<P>],
        remote_set: &[Neighbour<P>],
        rng: &mut R,
    ) -> Vec<Action<P>> {
        let ranking = rank(
            &self.cfg,
            View {
                id: self.local,
                neighbours: local_set,
            },
            View {
                id: self.remote,
                neighbours: remote_set,
            },
            now,
            rng,
        );
        let mut out = Vec::new();
        let best = ranking.best().copied();
        match (self.current, best) {
            (None, Some(b)) => self.switch_to(now, b, &mut out),
            (None, None) => {}
            // The current relay is judged against the whole measured overlap,
            // not the truncated ranking: a working relay that is merely not
            // among the best `reserve + 1` stays.
            (Some(cur), _) => match still_usable(now, cur.id, local_set, remote_set) {
                Some(cur_now) => {
                    self.current = Some(cur_now);
                    if let Some(b) = best {
                        let dwelt = self
                            .last_switch
                            .is_none_or(|t| now.saturating_sub(t) >= self.cfg.min_dwell);
                        let m_cur = self.metric(&cur_now);
                        let gain_enough = self.metric(&b) + self.cfg.switch_margin(m_cur) <= m_cur;
                        if b.id != cur.id && self.cfg.strategy.reoptimises() && dwelt && gain_enough
                        {
                            self.switch_to(now, b, &mut out);
                        }
                    }
                }
                // The relay is no longer usable: fail over at once.
                None => match best {
                    Some(b) => self.switch_to(now, b, &mut out),
                    None => {
                        self.current = None;
                        out.push(Action::DropRelay { previous: cur.id });
                    }
                },
            },
        }
        let cur_id = self.current.map(|c| c.id);
        self.reserve = ranking
            .candidates
            .iter()
            .filter(|c| Some(c.id) != cur_id)
            .copied()
            .collect();
        self.reserve.truncate(self.cfg.reserve);

        for (side, peers) in [
            (Side::Local, &ranking.plan.local_connects),
            (Side::Remote, &ranking.plan.remote_connects),
        ] {
            let fresh = self.not_recently_requested(now, side, peers);
            if !fresh.is_empty() {
                out.push(Action::Connect { side, peers: fresh });
            }
        }
        out
    }

    fn not_recently_requested(&mut self, now: Duration, side: Side, peers: &[P]) -> Vec<P> {
        let retry = self.cfg.connect_retry;
        self.requested
            .retain(|(_, _, at)| now.saturating_sub(*at) < retry);
        let mut fresh = Vec::new();
        for &p in peers {
            if !self.requested.iter().any(|(s, q, _)| *s == side && *q == p) {
                self.requested.push((side, p, now));
                fresh.push(p);
            }
        }
        fresh
    }

    /// The connection to `relay` (on either side) went away: fail over to the
    /// best reserve relay at once, or fall back to overlay routing.
    pub fn on_relay_down(&mut self, now: Duration, relay: P) -> Vec<Action<P>> {
        self.reserve.retain(|c| c.id != relay);
        let mut out = Vec::new();
        if self.current.is_some_and(|c| c.id == relay) {
            if self.reserve.is_empty() {
                self.current = None;
                out.push(Action::DropRelay { previous: relay });
            } else {
                let next = self.reserve.remove(0);
                self.switch_to(now, next, &mut out);
            }
        }
        out
    }
}

/// The relay `id` as a candidate if both sides still have a measured
/// connection to it (the first measured entry of each set counts, as in
/// [`rank`]).
fn still_usable<P: Copy + Ord>(
    now: Duration,
    id: P,
    local_set: &[Neighbour<P>],
    remote_set: &[Neighbour<P>],
) -> Option<Candidate<P>> {
    let first = |set: &[Neighbour<P>]| {
        set.iter()
            .find(|n| n.id == id && n.rtt.is_some())
            .map(|n| (n.rtt.unwrap_or_default(), n.connected_at))
    };
    let (l_rtt, l_at) = first(local_set)?;
    let (r_rtt, r_at) = first(remote_set)?;
    Some(Candidate {
        id,
        local_rtt: l_rtt,
        remote_rtt: r_rtt,
        age: now.saturating_sub(l_at).min(now.saturating_sub(r_at)),
    })
}
