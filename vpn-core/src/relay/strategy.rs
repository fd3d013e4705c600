//! Relay-selection strategies and their tuning.

use core::fmt;
use core::str::FromStr;
use core::time::Duration;

/// How a relay is picked from the two peers' neighbour sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Strategy {
    /// The seed paper's (section V-A): the destination connects to the
    /// source's physically closest neighbour (lowest measured RTT from the
    /// source), which then relays. The overlap is not otherwise used.
    PaperClosest,
    /// A uniformly random member of the overlap (seeded RNG passed in).
    Random,
    /// The overlap member with the oldest connection (the smaller of the two
    /// connection ages), i.e. the most stable one; ties go to the lower id,
    /// never to latency.
    MostStable,
    /// Ours, the default: the overlap member with the lowest RTT sum
    /// (source→relay + relay→destination) among those whose connections to
    /// both peers are at least [`Config::stability_floor`] old; each side also
    /// connects to the other's few closest neighbours so that good detours
    /// near either end join the overlap.
    LatencyStable,
}

impl Strategy {
    /// Every strategy, in report order.
    pub const ALL: [Strategy; 4] = [
        Strategy::PaperClosest,
        Strategy::Random,
        Strategy::MostStable,
        Strategy::LatencyStable,
    ];

    /// The project's default.
    pub const DEFAULT: Strategy = Strategy::LatencyStable;

    /// Stable name used in reports, JSON keys and on the command line.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::PaperClosest => "paper-closest",
            Strategy::Random => "random",
            Strategy::MostStable => "most-stable",
            Strategy::LatencyStable => "latency-stable",
        }
    }

    /// Whether a working relay may be replaced voluntarily by a better one
    /// (with hysteresis). Random and most-stable keep a relay while it works.
    #[must_use]
    pub const fn reoptimises(self) -> bool {
        matches!(self, Strategy::PaperClosest | Strategy::LatencyStable)
    }
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::DEFAULT
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown strategy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown relay strategy {0:?} (expected paper-closest, random, most-stable or latency-stable)"
)]
pub struct ParseStrategyError(pub String);

impl FromStr for Strategy {
    type Err = ParseStrategyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| ParseStrategyError(s.to_owned()))
    }
}

/// Tuning of the selector. [`Config::default`] is what the daemon uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The strategy.
    pub strategy: Strategy,
    /// `LatencyStable`: connections younger than this (on either side) rank
    /// after every candidate that passes the floor.
    pub stability_floor: Duration,
    /// Hysteresis, relative part: a working relay is replaced only when the
    /// new one's cost is lower by at least this many thousandths of the
    /// current cost...
    pub switch_margin_permille: u32,
    /// ...and by at least this absolute amount (the larger margin applies).
    pub switch_margin_abs: Duration,
    /// Hysteresis, time part: no voluntary switch sooner than this after the
    /// previous one (failover when the relay stops working is immediate).
    pub min_dwell: Duration,
    /// `LatencyStable`: how many of the other side's closest neighbours each
    /// side connects to (to create overlap, and to bring near-end detours in).
    /// At least one when the sets do not overlap. The other strategies
    /// create overlap with a single connection.
    pub explore: usize,
    /// `LatencyStable`: also explore when the sets already overlap.
    pub explore_when_overlapping: bool,
    /// A connection request is repeated only after this long.
    pub connect_retry: Duration,
    /// How many reserve relays are kept after the chosen one.
    pub reserve: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            strategy: Strategy::DEFAULT,
            stability_floor: Duration::from_secs(60),
            switch_margin_permille: 100,
            switch_margin_abs: Duration::from_millis(5),
            min_dwell: Duration::from_secs(30),
            explore: 3,
            explore_when_overlapping: true,
            connect_retry: Duration::from_secs(60),
            reserve: 4,
        }
    }
}

impl Config {
    /// The default tuning with another strategy.
    #[must_use]
    pub fn with_strategy(strategy: Strategy) -> Self {
        Config {
            strategy,
            ..Config::default()
        }
    }

    /// The hysteresis margin that a replacement must beat `current_cost` by.
    #[must_use]
    pub fn switch_margin(&self, current_cost: Duration) -> Duration {
        let rel = current_cost * self.switch_margin_permille / 1000;
        rel.max(self.switch_margin_abs)
    }
}
