//! Autonomic two-hop relay selection (paper section IV-D), written sans-IO.
//!
//! Two members that cannot reach each other directly exchange their neighbour
//! sets through the overlay (each entry carrying the measured round-trip time
//! and the connection's start time). The overlap of the two sets is the set
//! of possible two-hop relays. When the sets do not overlap, the peers connect
//! to some of each other's neighbours to create an overlap (paper Fig. 4).
//!
//! * [`rank`] is the pure decision: candidates ranked by a [`Strategy`],
//!   plus the connections that would create (or improve) the overlap.
//! * [`RelaySelector`] is the state machine a live node (or the simulator)
//!   drives: neighbour-set measurements and relay failures come in with the
//!   current time, [`Action`]s come out. It adds hysteresis so a working
//!   relay is not swapped for a marginal gain, and fails over to the ranked
//!   reserve when the relay goes away.
//!
//! Time is a [`Duration`] since an epoch the caller chooses (a monotonic
//! clock in the daemon, simulated time in the simulator). No clock, no I/O.

mod rank;
mod selector;
mod strategy;

pub use rank::{rank, Candidate, OverlapPlan, Ranking};
pub use selector::{Action, RelaySelector, Side};
pub use strategy::{Config, ParseStrategyError, Strategy};

use core::time::Duration;

/// One entry of a neighbour set, as measured by the peer that owns the set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Neighbour<P> {
    /// The neighbour's identity (a libp2p `PeerId` in the daemon).
    pub id: P,
    /// Measured round-trip time to the neighbour; `None` until a ping answered.
    pub rtt: Option<Duration>,
    /// When the connection to this neighbour was established (caller's clock).
    pub connected_at: Duration,
}

impl<P> Neighbour<P> {
    /// Age of the connection at `now` (zero if `connected_at` lies in the future).
    #[must_use]
    pub fn age(&self, now: Duration) -> Duration {
        now.saturating_sub(self.connected_at)
    }
}

/// A peer and its neighbour set.
#[derive(Clone, Copy, Debug)]
pub struct View<'a, P> {
    /// The peer that owns the set.
    pub id: P,
    /// Its neighbours (any order; duplicates keep the first measured entry).
    pub neighbours: &'a [Neighbour<P>],
}
