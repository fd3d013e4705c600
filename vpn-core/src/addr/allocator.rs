//! The allocator: one [`Slot`] per range, request ids, the action queue.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use super::claim::{SignedRecord, MAX_GROUP_LEN, MAX_OWNER_LEN};
use super::ctx::Ctx;
use super::slot::Slot;
use super::{Action, AddrError, Assignment, Config, DhtFailure, Random, Range, RequestId, Stats};

/// Allocates (or claims the fixed) virtual addresses of one node in one
/// group. See the module docs for the protocol and what the caller drives:
/// [`Allocator::start`], then [`Allocator::handle_get`] /
/// [`Allocator::handle_put`] for every request and
/// [`Allocator::handle_timeout`] when [`Allocator::poll_timeout`] passes;
/// after each call, drain [`Allocator::poll_action`].
pub struct Allocator {
    cfg: Config,
    group: String,
    owner: Vec<u8>,
    slots: Vec<Slot>,
    rng: Box<dyn Random + Send>,
    out: VecDeque<Action>,
    next_id: u64,
    stats: Stats,
}

impl std::fmt::Debug for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Allocator")
            .field("group", &self.group)
            .field("held", &self.addresses())
            .finish_non_exhaustive()
    }
}

impl Allocator {
    /// `owner` is this node's `PeerId::to_bytes()`. `ranges` holds at most
    /// one range per address family, each with its assignment; a fixed
    /// address must be a host address of its range (reservations do not
    /// apply to it).
    pub fn new(
        group: &str,
        owner: &[u8],
        ranges: Vec<(Range, Assignment)>,
        cfg: Config,
        rng: Box<dyn Random + Send>,
    ) -> Result<Self, AddrError> {
        cfg.validate()?;
        if group.is_empty() || group.len() > MAX_GROUP_LEN {
            return Err(AddrError::Setup(format!(
                "group name must be 1 to {MAX_GROUP_LEN} bytes"
            )));
        }
        if owner.is_empty() || owner.len() > MAX_OWNER_LEN {
            return Err(AddrError::Setup(format!(
                "owner PeerId must be 1 to {MAX_OWNER_LEN} bytes"
            )));
        }
        if ranges.is_empty() {
            return Err(AddrError::Setup("no address range".into()));
        }
        let mut slots = Vec::new();
        for (i, (range, asg)) in ranges.into_iter().enumerate() {
            if slots
                .iter()
                .any(|s: &Slot| s.range().is_ipv4() == range.is_ipv4())
            {
                return Err(AddrError::Setup(format!(
                    "range {range}: at most one range per address family"
                )));
            }
            if let Assignment::Fixed(a) = asg {
                let plain = Range::new(range.network(), range.prefix())?;
                if !plain.is_assignable(a) {
                    return Err(AddrError::Setup(format!(
                        "fixed address {a} is not a host address of range {range} (range #{i})"
                    )));
                }
            }
            slots.push(Slot::new(range, asg));
        }
        Ok(Self {
            cfg,
            group: group.to_owned(),
            owner: owner.to_vec(),
            slots,
            rng,
            out: VecDeque::new(),
            next_id: 0,
            stats: Stats::default(),
        })
    }

    fn each(&mut self, mut f: impl FnMut(&mut Slot, &mut Ctx<'_>) -> bool) {
        let mut ctx = Ctx {
            cfg: &self.cfg,
            group: &self.group,
            owner: &self.owner,
            rng: &mut *self.rng,
            out: &mut self.out,
            next_id: &mut self.next_id,
            stats: &mut self.stats,
        };
        for s in &mut self.slots {
            if f(s, &mut ctx) {
                break;
            }
        }
    }

    /// Starts allocating (idempotent).
    pub fn start(&mut self, now: Duration) {
        self.each(|s, ctx| {
            s.start(now, ctx);
            false
        });
    }

    /// The answer to [`Action::Get`] `id`. Unknown or stale ids are ignored.
    pub fn handle_get(
        &mut self,
        id: RequestId,
        now: Duration,
        result: Result<Vec<SignedRecord>, DhtFailure>,
    ) {
        let r = result.as_deref();
        self.each(|s, ctx| s.handle_get(id, now, r, ctx));
    }

    /// The answer to [`Action::Put`] `id`.
    pub fn handle_put(&mut self, id: RequestId, now: Duration, result: Result<(), DhtFailure>) {
        let ok = result.is_ok();
        self.each(|s, ctx| s.handle_put(id, now, ok, ctx));
    }

    /// Claim records under `key` that arrived without a request of ours
    /// (stored on us as a replica, or pushed). Only a held address reacts:
    /// if another claim now wins, the address is given up at once instead
    /// of at the next check.
    pub fn observe(&mut self, key: &[u8], records: &[SignedRecord], now: Duration) {
        self.each(|s, ctx| {
            s.observe(key, records, now, ctx);
            false
        });
    }

    /// Runs the timers that are due.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.each(|s, ctx| {
            s.handle_timeout(now, ctx);
            false
        });
    }

    /// Clean shutdown: tombstones for every claim, [`Action::AddressLost`]
    /// for held addresses. The daemon should wait (bounded) for the puts.
    pub fn release(&mut self, now: Duration) {
        self.each(|s, ctx| {
            s.release(now, ctx);
            false
        });
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// When to call [`Allocator::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.slots.iter().filter_map(Slot::next_deadline).min()
    }

    /// The addresses held now, with their prefix lengths.
    pub fn addresses(&self) -> Vec<(IpAddr, u8)> {
        self.slots
            .iter()
            .filter_map(|s| s.held().map(|a| (a, s.range().prefix())))
            .collect()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}
