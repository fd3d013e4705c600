//! Sans-IO virtual address allocation through the group's private DHT (the
//! paper's DHT-based DHCP): a node claims an address with a signed, leased
//! record, confirms it by reading it back, renews it, and gives it up on a
//! clean shutdown. Time and DHT results go in; [`Action`]s come out. There is
//! no clock, socket or random source inside: `now` is the wall-clock time
//! since the UNIX epoch (claims are compared across nodes, so it must be
//! the real time, like certificate validity), and randomness comes through
//! [`Random`].
//!
//! # Protocol
//!
//! Per range (at most one IPv4 and one IPv6), an [`Allocator`] slot either
//! claims the certificate's fixed address or allocates one:
//!
//! 1. **Candidate.** First a hash of (group, range, PeerId), so a restarted
//!    node asks for the same address again; then
//!    [`Config::random_probes`] random host addresses; then, for ranges of
//!    at most [`Config::scan_limit`] hosts, every remaining address in turn
//!    from a random start. Network, broadcast, IPv6 anycast and reserved
//!    addresses are skipped ([`Range`]). When nothing is left the slot
//!    reports [`AddrError::RangeFull`] and starts over after
//!    [`Config::full_retry`].
//! 2. **Probe.** [`Action::Get`] of the candidate's key ([`dht_key`]). If
//!    another owner has a live claim there, the address is taken: next
//!    candidate. (An unexpired claim of our own from before a restart, with
//!    no other live claim beside it, is taken over, keeping its `since`.)
//! 3. **Claim.** [`Action::Put`] of a fresh [`Claim`] (lease
//!    [`Config::lease`], `since` = `lease_start` = now).
//! 4. **Confirm (read after write).** [`Config::settle`] after the put was
//!    answered, a second [`Action::Get`]: the address is ours only if the
//!    winner ([`resolve`]) of the claims read is ours
//!    ([`Action::AddressAcquired`]). If another claim wins, we lost a race:
//!    our claim is withdrawn with a tombstone and we go on with the next
//!    candidate. If no live claim is visible, the write was lost: put again
//!    (fresh `since`), up to [`Config::confirm_attempts`] times.
//! 5. **Hold.** The claim is renewed (same `since`, higher `seq`, new lease)
//!    [`Config::renew_after`] after each lease start, and the key is re-read
//!    every [`Config::check_interval`]. A read whose winner is another owner
//!    (a fixed claim, or a claim made during a partition that beats ours)
//!    ends the hold: [`Action::AddressLost`], tombstone, next candidate. A
//!    read showing no live claim at all re-puts ours at once.
//! 6. **Release.** [`Allocator::release`] puts a tombstone (a claim with the
//!    *released* flag and a higher `seq`), which hides the claim at once, so
//!    the address is free for the next probe.
//!
//! Why exactly one node keeps a contested address: every node decides from
//! the claims it reads with the same total order ([`claim`] module docs);
//! a node holds only after reading its own claim back as the winner at least
//! `settle` after its put; and a later claimant's claim carries a later
//! `since`, so if its put became visible too late for the first node's
//! confirm read, the later node's own confirm read sees the earlier claim
//! and loses. This needs `settle` to exceed the DHT's replication delay,
//! and the clocks of two racing nodes to differ by less than `settle` minus
//! that delay (the tests check 2.9 s delay with exact clocks, 2 s with
//! ±0.4 s, 1.5 s with ±0.6 s against the 3 s default, and that 2.9 s with
//! ±2.5 s can break it); beyond that, the periodic check converges to one
//! holder within `check_interval`. The nodes' clocks must be roughly right
//! anyway (certificate validity, lease expiry).
//!
//! # What the overlay must provide
//!
//! * `Get(key)`: every verified claim record under `key` it can find (local
//!   store included, so a lone node can allocate), as [`SignedRecord`]s;
//!   "no record" is `Ok(vec![])`, not an error. Forged or unsigned records
//!   are dropped before they reach the core; the core drops claims whose
//!   owner is not the signer, or that belong to another key, and counts them
//!   ([`Stats`]).
//! * `Put(key, value, expires)`: sign `value` as the local node and store
//!   it with record expiry `expires`. The record store should keep one claim
//!   per owner under a key (merge with [`latest_per_owner`]); with a plain
//!   last-writer-wins store the protocol still converges (a holder that
//!   reads another owner's claim without its own gives the address up, one
//!   that reads nothing re-puts) but a duplicate can last up to
//!   `check_interval`. A put that reached fewer replicas than wanted may be
//!   reported `Ok`: the confirm read decides. (`vpn-control`'s overlay
//!   keeps such a claim set per key, each entry signed by its owner with
//!   the owner's certificate attached: `overlay::claims`; lookups use the
//!   same claims and order.)
//! * A claim with the *fixed* flag must be checked against the owner's
//!   certificate (its fixed address) before it reaches the core; otherwise
//!   drop it.
//! * [`SignedRecord::owner`] is the signer's `PeerId::to_bytes()` and
//!   [`SignedRecord::value`] the exact bytes the core gave to `Put` (if the
//!   overlay's record payload also carries the owner's certificate, strip
//!   it). Optionally, claims for a held key that reach the node otherwise
//!   (stored on it as a replica) go to [`Allocator::observe`], so a holder
//!   that lost does not wait for its next check.
//! * Releasing: on shutdown call [`Allocator::release`], carry out the
//!   tombstone puts, and wait for their answers a bounded time (a second or
//!   two) before leaving the DHT.
//!
//! # Timers ([`Config::default`])
//!
//! | timer | default | meaning |
//! |---|---|---|
//! | `lease` | 600 s | lifetime of a claim; a dead node's address is free after it |
//! | `renew_after` | 300 s | renew this long after each lease start |
//! | `check_interval` | 30 s | a holder re-reads its key this often |
//! | `settle` | 3 s | wait between a put's answer and the confirm read |
//! | `request_timeout` | 30 s | a Get or Put with no answer counts as failed |
//! | `retry_backoff` | 5 s | wait after a failed Get, or a lost write repeated `confirm_attempts` (3) times |
//! | `full_retry` | 30 s | wait after [`AddrError::RangeFull`] or a fixed-address conflict |

mod allocator;
pub mod claim;
mod ctx;
pub mod lookup;
pub mod range;
mod search;
mod slot;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::time::Duration;

pub use allocator::Allocator;
pub use claim::{dht_key, latest_per_owner, resolve, Claim, ClaimError, SignedRecord};
pub use lookup::{owner_of, Owner};
pub use range::Range;

/// Source of random bytes (candidate addresses).
pub trait Random {
    fn fill(&mut self, dest: &mut [u8]);
}

impl Random for crate::session::SystemEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        crate::session::Entropy::fill(self, dest);
    }
}

/// Any `rand` generator (tests use a seeded ChaCha).
#[derive(Debug)]
pub struct RngRandom<R>(pub R);

impl<R: rand::Rng> Random for RngRandom<R> {
    fn fill(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
}

/// How a range's address is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// The address written in the node's certificate; its claims carry the
    /// *fixed* flag and beat allocated ones.
    Fixed(IpAddr),
    /// Allocate from the range.
    Allocate,
}

/// Identifies one DHT request; the overlay answers with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Why an address was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// Another owner's claim wins (its PeerId bytes).
    Conflict { winner: Vec<u8> },
    /// [`Allocator::release`] was called.
    Released,
}

/// What the allocator asks the overlay or daemon to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read every claim under `key`; answer with [`Allocator::handle_get`].
    Get { id: RequestId, key: Vec<u8> },
    /// Sign `value` and store it under `key` until `expires` (UNIX time);
    /// answer with [`Allocator::handle_put`].
    Put {
        id: RequestId,
        key: Vec<u8>,
        value: Vec<u8>,
        expires: Duration,
    },
    /// The address is ours: configure it (with the range's prefix length).
    AddressAcquired { addr: IpAddr, prefix: u8 },
    /// The address is no longer ours: remove it.
    AddressLost { addr: IpAddr, reason: LostReason },
    /// A condition the operator should see; the allocator keeps trying.
    Error(AddrError),
}

/// A DHT request that failed (timeout, no peers, quorum not reached).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("DHT request failed: {0}")]
pub struct DhtFailure(pub String);

/// Errors of the allocator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("bad address range: {0}")]
    BadRange(String),
    #[error("bad allocator setup: {0}")]
    Setup(String),
    #[error("invalid allocator config: {0}")]
    Config(&'static str),
    #[error("address range {range} is full: no free address among {hosts} host addresses ({probed} probed); retrying")]
    RangeFull {
        range: String,
        hosts: u128,
        probed: usize,
    },
    #[error("fixed address {addr} from the certificate is claimed by another fixed claim (owner {owner_hex}); retrying")]
    FixedConflict { addr: IpAddr, owner_hex: String },
    #[error("bad claim: {0}")]
    Claim(#[from] ClaimError),
}

/// Timers and limits; see the table in the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub lease: Duration,
    pub renew_after: Duration,
    pub check_interval: Duration,
    pub settle: Duration,
    pub request_timeout: Duration,
    pub retry_backoff: Duration,
    pub full_retry: Duration,
    /// Random candidates tried after the hashed one.
    pub random_probes: u32,
    /// Ranges with at most this many hosts are scanned completely before
    /// they are reported full.
    pub scan_limit: u128,
    /// Puts of one candidate whose confirm read shows no live claim.
    pub confirm_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(600),
            renew_after: Duration::from_secs(300),
            check_interval: Duration::from_secs(30),
            settle: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_secs(5),
            full_retry: Duration::from_secs(30),
            random_probes: 32,
            scan_limit: 1 << 16,
            confirm_attempts: 3,
        }
    }
}

impl Config {
    /// Checks the relations the state machine relies on.
    pub fn validate(&self) -> Result<(), AddrError> {
        let ok = !self.settle.is_zero()
            && !self.request_timeout.is_zero()
            && !self.retry_backoff.is_zero()
            && !self.full_retry.is_zero()
            && !self.check_interval.is_zero()
            && !self.renew_after.is_zero()
            && self.lease <= claim::MAX_LEASE
            && self.renew_after + self.request_timeout + self.settle < self.lease
            && self.confirm_attempts > 0;
        if ok {
            Ok(())
        } else {
            Err(AddrError::Config(
                "need non-zero timers, confirm_attempts > 0, lease <= 24 h and renew_after + request_timeout + settle < lease",
            ))
        }
    }
}

/// Counters for the status output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub gets: u64,
    pub puts: u64,
    /// Claim values that did not decode.
    pub malformed: u64,
    /// Claims whose owner is not the signer, or for another key.
    pub mismatched: u64,
    /// Candidates found taken by a probe.
    pub taken: u64,
    /// Races lost at the confirm read.
    pub races_lost: u64,
    /// Held addresses lost to a better claim.
    pub conflicts_lost: u64,
    /// Puts whose confirm read showed no live claim.
    pub lost_writes: u64,
    pub failed_requests: u64,
}
