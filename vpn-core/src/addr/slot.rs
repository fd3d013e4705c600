//! The allocation state machine of one range (one address family).

use std::net::IpAddr;
use std::time::Duration;

use super::claim::{dht_key, latest_per_owner, ms, resolve, Claim, SignedRecord};
use super::ctx::Ctx;
use super::range::Range;
use super::search::Search;
use super::{Action, AddrError, Assignment, Config, LostReason, RequestId};

#[derive(Clone, Debug)]
enum Phase {
    Idle,
    Probing {
        addr: IpAddr,
        req: RequestId,
        deadline: Duration,
    },
    Claiming {
        claim: Claim,
        req: RequestId,
        deadline: Duration,
        attempt: u32,
    },
    Settling {
        claim: Claim,
        until: Duration,
        attempt: u32,
    },
    Confirming {
        claim: Claim,
        req: RequestId,
        deadline: Duration,
        attempt: u32,
    },
    Held {
        claim: Claim,
        renew_at: Duration,
        check_at: Duration,
        pending: Option<HeldReq>,
    },
    Waiting {
        until: Duration,
        resume: Option<IpAddr>,
    },
    Released,
}

#[derive(Clone, Copy, Debug)]
enum HeldReq {
    Renew { req: RequestId, deadline: Duration },
    Check { req: RequestId, deadline: Duration },
}

pub(super) struct Slot {
    range: Range,
    assignment: Assignment,
    phase: Phase,
    search: Search,
    last_seq: u64,
    /// The latest claim we put and have not withdrawn (released on
    /// shutdown whatever the phase).
    outstanding: Option<Claim>,
}

fn owner_hex(owner: &[u8]) -> String {
    owner.iter().map(|b| format!("{b:02x}")).collect()
}

impl Slot {
    pub(super) fn new(range: Range, assignment: Assignment) -> Self {
        Self {
            range,
            assignment,
            phase: Phase::Idle,
            search: Search::default(),
            last_seq: 0,
            outstanding: None,
        }
    }

    pub(super) fn range(&self) -> &Range {
        &self.range
    }

    /// The address held, if any.
    pub(super) fn held(&self) -> Option<IpAddr> {
        match &self.phase {
            Phase::Held { claim, .. } => Some(claim.addr),
            _ => None,
        }
    }

    pub(super) fn start(&mut self, now: Duration, ctx: &mut Ctx<'_>) {
        if matches!(self.phase, Phase::Idle) {
            self.next_candidate(now, ctx);
        }
    }

    pub(super) fn next_deadline(&self) -> Option<Duration> {
        match &self.phase {
            Phase::Idle | Phase::Released => None,
            Phase::Probing { deadline, .. }
            | Phase::Claiming { deadline, .. }
            | Phase::Confirming { deadline, .. } => Some(*deadline),
            Phase::Settling { until, .. } | Phase::Waiting { until, .. } => Some(*until),
            Phase::Held {
                renew_at,
                check_at,
                pending,
                ..
            } => Some(match pending {
                Some(HeldReq::Renew { deadline, .. } | HeldReq::Check { deadline, .. }) => {
                    *deadline
                }
                None => (*renew_at).min(*check_at),
            }),
        }
    }

    fn next_seq(&mut self, now: Duration) -> u64 {
        let now_ms = u64::try_from(ms(now).as_millis()).unwrap_or(u64::MAX);
        self.last_seq = (self.last_seq + 1).max(now_ms);
        self.last_seq
    }

    fn new_claim(
        &mut self,
        addr: IpAddr,
        since: Option<Duration>,
        now: Duration,
        cfg: &Config,
        owner: &[u8],
        group: &str,
    ) -> Claim {
        let start = ms(now);
        Claim {
            group: group.to_owned(),
            addr,
            owner: owner.to_vec(),
            fixed: matches!(self.assignment, Assignment::Fixed(_)),
            released: false,
            since: since.map_or(start, |s| s.min(start)),
            lease_start: start,
            expiry: start + ms(cfg.lease).max(Duration::from_millis(1)),
            seq: self.next_seq(now),
        }
    }

    fn tombstone(&mut self, claim: &Claim, now: Duration, ctx: &mut Ctx<'_>) {
        let start = ms(now);
        let t = Claim {
            released: true,
            since: claim.since.min(start),
            lease_start: start,
            expiry: claim.expiry.max(start + Duration::from_secs(1)),
            seq: self.next_seq(now),
            ..claim.clone()
        };
        if self
            .outstanding
            .as_ref()
            .is_some_and(|o| o.addr == claim.addr)
        {
            self.outstanding = None;
        }
        ctx.put(&t);
    }

    /// Decodes the records read under the key of `addr`, counting bad ones,
    /// and notes the highest sequence of our own claims.
    fn claims_from(
        &mut self,
        addr: IpAddr,
        records: &[SignedRecord],
        ctx: &mut Ctx<'_>,
    ) -> Vec<Claim> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            match Claim::from_record(ctx.group, addr, r) {
                Ok(c) => {
                    if c.owner == ctx.owner {
                        self.last_seq = self.last_seq.max(c.seq);
                    }
                    out.push(c);
                }
                Err(super::ClaimError::OwnerMismatch | super::ClaimError::KeyMismatch) => {
                    ctx.stats.mismatched += 1;
                }
                Err(_) => ctx.stats.malformed += 1,
            }
        }
        out
    }

    // ----- candidate search -----

    fn pick(&mut self, ctx: &mut Ctx<'_>) -> Option<IpAddr> {
        match self.assignment {
            Assignment::Fixed(a) => Some(a),
            Assignment::Allocate => {
                self.search
                    .pick(&self.range, ctx.group, ctx.owner, ctx.cfg, &mut *ctx.rng)
            }
        }
    }

    /// Probes the next candidate, or reports the range full and waits.
    fn next_candidate(&mut self, now: Duration, ctx: &mut Ctx<'_>) {
        match self.pick(ctx) {
            Some(addr) => self.probe(addr, now, ctx),
            None => {
                ctx.out.push_back(Action::Error(AddrError::RangeFull {
                    range: self.range.to_string(),
                    hosts: self.range.free_count(),
                    probed: self.search.tried.len(),
                }));
                self.search = Search::default();
                self.phase = Phase::Waiting {
                    until: now + ctx.cfg.full_retry,
                    resume: None,
                };
            }
        }
    }

    fn probe(&mut self, addr: IpAddr, now: Duration, ctx: &mut Ctx<'_>) {
        self.search.tried.insert(addr);
        let req = ctx.get(addr);
        self.phase = Phase::Probing {
            addr,
            req,
            deadline: now + ctx.cfg.request_timeout,
        };
    }

    fn wait(&mut self, now: Duration, delay: Duration, resume: Option<IpAddr>) {
        self.phase = Phase::Waiting {
            until: now + delay,
            resume,
        };
    }

    fn fixed_conflict(&mut self, addr: IpAddr, winner: &[u8], now: Duration, ctx: &mut Ctx<'_>) {
        ctx.out.push_back(Action::Error(AddrError::FixedConflict {
            addr,
            owner_hex: owner_hex(winner),
        }));
        self.wait(now, ctx.cfg.full_retry, Some(addr));
    }

    fn claim(
        &mut self,
        addr: IpAddr,
        since: Option<Duration>,
        attempt: u32,
        now: Duration,
        ctx: &mut Ctx<'_>,
    ) {
        let claim = self.new_claim(addr, since, now, ctx.cfg, ctx.owner, ctx.group);
        let req = ctx.put(&claim);
        self.outstanding = Some(claim.clone());
        self.phase = Phase::Claiming {
            claim,
            req,
            deadline: now + ctx.cfg.request_timeout,
            attempt,
        };
    }

    // ----- inputs -----

    /// Returns false when `id` is not this slot's request.
    pub(super) fn handle_get(
        &mut self,
        id: RequestId,
        now: Duration,
        result: Result<&[SignedRecord], &super::DhtFailure>,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        match self.phase.clone() {
            Phase::Probing { addr, req, .. } if req == id => {
                match result {
                    Ok(records) => {
                        let claims = self.claims_from(addr, records, ctx);
                        self.on_probe(addr, &claims, now, ctx);
                    }
                    Err(_) => {
                        ctx.stats.failed_requests += 1;
                        self.wait(now, ctx.cfg.retry_backoff, Some(addr));
                    }
                }
                true
            }
            Phase::Confirming {
                claim,
                req,
                attempt,
                ..
            } if req == id => {
                match result {
                    Ok(records) => {
                        let claims = self.claims_from(claim.addr, records, ctx);
                        self.on_confirm(claim, attempt, &claims, now, ctx);
                    }
                    Err(_) => {
                        ctx.stats.failed_requests += 1;
                        // Re-probe: our own live claim, alone, is taken over.
                        self.wait(now, ctx.cfg.retry_backoff, Some(claim.addr));
                    }
                }
                true
            }
            Phase::Held {
                claim,
                renew_at,
                pending: Some(HeldReq::Check { req, .. }),
                ..
            } if req == id => {
                self.phase = Phase::Held {
                    claim: claim.clone(),
                    renew_at,
                    check_at: now + ctx.cfg.check_interval,
                    pending: None,
                };
                match result {
                    Ok(records) => {
                        let claims = self.claims_from(claim.addr, records, ctx);
                        self.on_check(&claims, now, ctx);
                    }
                    Err(_) => ctx.stats.failed_requests += 1,
                }
                true
            }
            _ => false,
        }
    }

    pub(super) fn handle_put(
        &mut self,
        id: RequestId,
        now: Duration,
        ok: bool,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        if !ok {
            ctx.stats.failed_requests += 1;
        }
        match self.phase.clone() {
            Phase::Claiming {
                claim,
                req,
                attempt,
                ..
            } if req == id => {
                // Even a failed put may have stored somewhere: the confirm
                // read decides.
                self.phase = Phase::Settling {
                    claim,
                    until: now + ctx.cfg.settle,
                    attempt,
                };
                true
            }
            Phase::Held {
                claim,
                check_at,
                pending: Some(HeldReq::Renew { req, .. }),
                ..
            } if req == id => {
                let (renew_at, check_at) = if ok {
                    (
                        claim.lease_start + ctx.cfg.renew_after,
                        check_at.min(now + ctx.cfg.settle),
                    )
                } else {
                    (now + ctx.cfg.retry_backoff, check_at)
                };
                self.phase = Phase::Held {
                    claim,
                    renew_at,
                    check_at,
                    pending: None,
                };
                true
            }
            _ => false,
        }
    }

    /// Claims on our held key that reached us otherwise (a replica's store,
    /// a notification): evaluated like a check read.
    pub(super) fn observe(
        &mut self,
        key: &[u8],
        records: &[SignedRecord],
        now: Duration,
        ctx: &mut Ctx<'_>,
    ) {
        let Phase::Held { claim, .. } = &self.phase else {
            return;
        };
        if dht_key(claim.addr) != key {
            return;
        }
        let addr = claim.addr;
        let mut claims = self.claims_from(addr, records, ctx);
        if let Phase::Held { claim, .. } = &self.phase {
            // Our own current claim is known to exist: keep it in the set so
            // a notification carrying only others' claims is judged fairly.
            claims.push(claim.clone());
        }
        self.on_check(&claims, now, ctx);
    }

    fn on_probe(&mut self, addr: IpAddr, claims: &[Claim], now: Duration, ctx: &mut Ctx<'_>) {
        let latest = latest_per_owner(claims);
        let own = latest
            .iter()
            .find(|c| c.owner == ctx.owner && c.is_live(now))
            .map(|c| (*c).clone());
        let others: Vec<&Claim> = latest
            .into_iter()
            .filter(|c| c.owner != ctx.owner && c.is_live(now))
            .collect();
        match self.assignment {
            Assignment::Allocate => {
                if others.is_empty() {
                    self.claim(addr, own.map(|c| c.since), 0, now, ctx);
                } else {
                    ctx.stats.taken += 1;
                    if let Some(o) = own {
                        self.tombstone(&o, now, ctx);
                    }
                    self.next_candidate(now, ctx);
                }
            }
            Assignment::Fixed(_) => {
                let since = if others.is_empty() {
                    own.map(|c| c.since)
                } else {
                    None
                };
                let mine = self.new_claim(addr, since, now, ctx.cfg, ctx.owner, ctx.group);
                let w = resolve(others.iter().copied().chain([&mine]), now);
                match w {
                    Some(w) if w.owner != ctx.owner => {
                        let winner = w.owner.clone();
                        self.fixed_conflict(addr, &winner, now, ctx);
                    }
                    _ => self.claim(addr, since, 0, now, ctx),
                }
            }
        }
    }

    fn on_confirm(
        &mut self,
        claim: Claim,
        attempt: u32,
        claims: &[Claim],
        now: Duration,
        ctx: &mut Ctx<'_>,
    ) {
        match resolve(claims, now) {
            Some(w) if w.owner == ctx.owner => {
                let claim = if w.seq > claim.seq { w.clone() } else { claim };
                ctx.out.push_back(Action::AddressAcquired {
                    addr: claim.addr,
                    prefix: self.range.prefix(),
                });
                self.phase = Phase::Held {
                    renew_at: claim.lease_start + ctx.cfg.renew_after,
                    check_at: now + ctx.cfg.check_interval,
                    claim,
                    pending: None,
                };
            }
            Some(w) => {
                ctx.stats.races_lost += 1;
                let winner = w.owner.clone();
                self.tombstone(&claim, now, ctx);
                self.search.tried.insert(claim.addr);
                match self.assignment {
                    Assignment::Fixed(a) => self.fixed_conflict(a, &winner, now, ctx),
                    Assignment::Allocate => self.next_candidate(now, ctx),
                }
            }
            None => {
                ctx.stats.lost_writes += 1;
                if attempt + 1 < ctx.cfg.confirm_attempts {
                    // Fresh `since`: a claim that was not visible must not
                    // outrank one confirmed meanwhile.
                    self.claim(claim.addr, None, attempt + 1, now, ctx);
                } else {
                    self.wait(now, ctx.cfg.retry_backoff, Some(claim.addr));
                }
            }
        }
    }

    fn on_check(&mut self, claims: &[Claim], now: Duration, ctx: &mut Ctx<'_>) {
        let Phase::Held { claim, .. } = self.phase.clone() else {
            return;
        };
        match resolve(claims, now) {
            Some(w) if w.owner == ctx.owner && w.seq < claim.seq => {
                // Our last renewal is not visible (lost): put it again now,
                // before the older claim runs out and the address looks free.
                ctx.stats.lost_writes += 1;
                self.renew_now(now, ctx);
            }
            Some(w) if w.owner == ctx.owner => {}
            Some(w) => {
                ctx.stats.conflicts_lost += 1;
                let winner = w.owner.clone();
                ctx.out.push_back(Action::AddressLost {
                    addr: claim.addr,
                    reason: LostReason::Conflict {
                        winner: winner.clone(),
                    },
                });
                self.tombstone(&claim, now, ctx);
                self.search = Search::default();
                self.search.tried.insert(claim.addr);
                match self.assignment {
                    Assignment::Fixed(a) => self.fixed_conflict(a, &winner, now, ctx),
                    Assignment::Allocate => self.next_candidate(now, ctx),
                }
            }
            None => {
                // Our claim vanished (store loss, or we could not renew in
                // time): put it again at once.
                ctx.stats.lost_writes += 1;
                self.renew_now(now, ctx);
            }
        }
    }

    fn renew_now(&mut self, now: Duration, ctx: &mut Ctx<'_>) {
        if let Phase::Held { renew_at, .. } = &mut self.phase {
            *renew_at = now;
        }
        self.handle_held_timers(now, ctx);
    }

    pub(super) fn handle_timeout(&mut self, now: Duration, ctx: &mut Ctx<'_>) {
        match self.phase.clone() {
            Phase::Idle | Phase::Released => {}
            Phase::Probing { addr, deadline, .. } if now >= deadline => {
                ctx.stats.failed_requests += 1;
                self.wait(now, ctx.cfg.retry_backoff, Some(addr));
            }
            Phase::Claiming {
                claim,
                deadline,
                attempt,
                ..
            } if now >= deadline => {
                ctx.stats.failed_requests += 1;
                self.phase = Phase::Settling {
                    claim,
                    until: now + ctx.cfg.settle,
                    attempt,
                };
            }
            Phase::Settling {
                claim,
                until,
                attempt,
            } if now >= until => {
                let req = ctx.get(claim.addr);
                self.phase = Phase::Confirming {
                    claim,
                    req,
                    deadline: now + ctx.cfg.request_timeout,
                    attempt,
                };
            }
            Phase::Confirming {
                claim, deadline, ..
            } if now >= deadline => {
                ctx.stats.failed_requests += 1;
                self.wait(now, ctx.cfg.retry_backoff, Some(claim.addr));
            }
            Phase::Waiting { until, resume } if now >= until => match resume {
                Some(addr) => self.probe(addr, now, ctx),
                None => self.next_candidate(now, ctx),
            },
            Phase::Held { .. } => self.handle_held_timers(now, ctx),
            _ => {}
        }
    }

    fn handle_held_timers(&mut self, now: Duration, ctx: &mut Ctx<'_>) {
        let Phase::Held {
            claim,
            renew_at,
            check_at,
            pending,
        } = self.phase.clone()
        else {
            return;
        };
        match pending {
            Some(HeldReq::Renew { deadline, .. }) if now >= deadline => {
                ctx.stats.failed_requests += 1;
                self.phase = Phase::Held {
                    claim,
                    renew_at: now + ctx.cfg.retry_backoff,
                    check_at,
                    pending: None,
                };
            }
            Some(HeldReq::Check { deadline, .. }) if now >= deadline => {
                ctx.stats.failed_requests += 1;
                self.phase = Phase::Held {
                    claim,
                    renew_at,
                    check_at: now + ctx.cfg.check_interval,
                    pending: None,
                };
            }
            Some(_) => {}
            None if now >= renew_at => {
                // A lapsed lease loses its incumbency: others may have
                // claimed the address meanwhile in good faith.
                let since = (claim.expiry > now).then_some(claim.since);
                let fresh = self.new_claim(claim.addr, since, now, ctx.cfg, ctx.owner, ctx.group);
                let req = ctx.put(&fresh);
                self.outstanding = Some(fresh.clone());
                self.phase = Phase::Held {
                    claim: fresh,
                    renew_at,
                    check_at,
                    pending: Some(HeldReq::Renew {
                        req,
                        deadline: now + ctx.cfg.request_timeout,
                    }),
                };
            }
            None if now >= check_at => {
                let req = ctx.get(claim.addr);
                self.phase = Phase::Held {
                    claim,
                    renew_at,
                    check_at,
                    pending: Some(HeldReq::Check {
                        req,
                        deadline: now + ctx.cfg.request_timeout,
                    }),
                };
            }
            None => {}
        }
    }

    /// Gives the address up: tombstone for any claim made, and
    /// [`Action::AddressLost`] if it was held.
    pub(super) fn release(&mut self, now: Duration, ctx: &mut Ctx<'_>) {
        if let Phase::Held { claim, .. } = &self.phase {
            ctx.out.push_back(Action::AddressLost {
                addr: claim.addr,
                reason: LostReason::Released,
            });
        }
        if let Some(c) = self.outstanding.take() {
            if c.expiry > now {
                self.tombstone(&c, now, ctx);
            }
        }
        self.phase = Phase::Released;
    }
}
