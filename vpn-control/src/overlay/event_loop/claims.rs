//! Address claims in the private DHT: reading every claim under a key
//! (allocation and resolution), storing this node's signed claims (merged
//! into the claim set of the key), validating and merging inbound PUTs,
//! and republishing this node's claims as the group grows.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use libp2p::kad::store::RecordStore as _;
use libp2p::kad::{self, GetRecordOk, QueryId, QueryResult, Quorum, Record, RecordKey};
use libp2p::PeerId;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::super::claims::{self, VerifiedClaim};
use super::super::ids;
use super::super::resolve::Resolved;
use super::super::OverlayError;
use super::EventLoop;

pub(crate) type ResolveReply = oneshot::Sender<Result<Resolved, OverlayError>>;
pub(crate) type ClaimsReply = oneshot::Sender<Result<Vec<VerifiedClaim>, OverlayError>>;
pub(crate) type PutReply = oneshot::Sender<Result<(), OverlayError>>;

/// Who waits for a claim read.
pub(super) enum Waiter {
    Resolve(ResolveReply),
    Claims(ClaimsReply),
}

/// A running read of the claims under one key.
pub(super) struct ClaimQuery {
    addr: IpAddr,
    found: Vec<VerifiedClaim>,
    waiters: Vec<Waiter>,
}

impl EventLoop {
    /// The verified claims of the local store under the key of `addr`.
    fn local_claims(&mut self, addr: IpAddr, now: SystemTime) -> Vec<VerifiedClaim> {
        let key = RecordKey::new(&ids::address_key(addr));
        let Some(rec) = self
            .swarm
            .behaviour_mut()
            .private_kad
            .inner()
            .store_mut()
            .get(&key)
            .map(|r| r.into_owned())
        else {
            return Vec::new();
        };
        claims::check_set(addr, &rec.value, &self.members, now).0
    }

    /// The record holding the claim set `set` for `addr`.
    fn set_record(&self, addr: IpAddr, set: &[VerifiedClaim]) -> Option<Record> {
        let until = claims::set_expiry(set)?;
        let ttl = until.duration_since(SystemTime::now()).ok()?;
        let mut r = Record::new(
            ids::address_key(addr),
            claims::encode_set(set.iter().map(|c| c.entry.as_slice())),
        );
        r.publisher = Some(*self.swarm.local_peer_id());
        r.expires = Some(Instant::now() + ttl);
        Some(r)
    }

    /// Merges `new` into the local set under `addr` and stores the result;
    /// with `publish`, also sends it to the closest members. Returns the
    /// PUT query, if one was started.
    fn store_claims(
        &mut self,
        addr: IpAddr,
        new: Vec<VerifiedClaim>,
        publish: bool,
    ) -> Option<QueryId> {
        let now = SystemTime::now();
        let local = self.local_claims(addr, now);
        let set = claims::merge(local.into_iter().chain(new), now);
        self.cache.forget_addr(addr);
        let record = self.set_record(addr, &set)?;
        let kad = self.swarm.behaviour_mut().private_kad.inner();
        if publish {
            match kad.put_record(record, Quorum::One) {
                Ok(id) => Some(id),
                Err(e) => {
                    warn!(%addr, "overlay: storing address claims: {e}");
                    None
                }
            }
        } else {
            if let Err(e) = kad.store_mut().put(record) {
                warn!(%addr, "overlay: storing address claims: {e}");
            }
            None
        }
    }

    /// Signs `value` (an encoded `vpn_core::addr::Claim` of this node) and
    /// stores it (locally and at the closest members); answers when the
    /// PUT finished.
    pub(super) fn put_claim(
        &mut self,
        addr: IpAddr,
        value: Vec<u8>,
        expires: SystemTime,
        reply: PutReply,
    ) {
        let now = SystemTime::now();
        let entry = match claims::sign_entry(addr, &value, expires, &self.own_cert, &self.keypair) {
            Ok(e) => e,
            Err(e) => {
                let _ = reply.send(Err(OverlayError::Request(format!("signing claim: {e}"))));
                return;
            }
        };
        let claim = match claims::check_entry(addr, &entry, &self.members, now) {
            Ok((c, _)) => c,
            Err(e) => {
                let _ = reply.send(Err(OverlayError::Request(format!(
                    "own claim refused: {e}"
                ))));
                return;
            }
        };
        self.own_claims.insert(addr, claim.clone());
        match self.store_claims(addr, vec![claim], true) {
            Some(id) => {
                self.put_waiters.insert(id, reply);
            }
            None => {
                let _ = reply.send(Err(OverlayError::Request("claim not stored".into())));
            }
        }
    }

    /// (Re)publishes this node's live claims: when the set of members grew
    /// since the last publication (so the new closest members get them),
    /// or at half the record lifetime.
    pub(super) fn publish_own_records(&mut self) {
        self.renew_fixed_claims();
        let n = self.members.len();
        if n == 0 || self.own_claims.is_empty() {
            return;
        }
        // Republish when the member set grew by half since the last time
        // (the claim then reaches the closest members of the larger set:
        // O(log n) publications while a group forms), once more when the set
        // grew and then stayed quiet for `discovery_max`, after a failed
        // publication, and at half the TTL.
        let due = match self.published_at {
            None => true,
            Some((at, count)) => {
                n >= count + (count / 2).max(1)
                    || (n > count && at.elapsed() >= self.timers.discovery_max)
                    || at.elapsed() >= self.timers.record_ttl / 2
            }
        };
        if !due {
            return;
        }
        let now = SystemTime::now();
        let now_unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.own_claims.retain(|_, c| c.claim.expiry > now_unix);
        let own: Vec<VerifiedClaim> = self.own_claims.values().cloned().collect();
        for c in own {
            let addr = c.claim.addr;
            if let Some(id) = self.store_claims(addr, vec![c], true) {
                self.republish_queries.insert(id);
            }
        }
        self.published_at = Some((Instant::now(), n));
    }

    /// Without the node's address service: (re)makes the fixed claims of
    /// the certificate's addresses when they are missing or past half their
    /// lease (same `since`, new lease, higher `seq`).
    fn renew_fixed_claims(&mut self) {
        if self.fixed_claims.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let now_ms = Duration::from_millis(
            u64::try_from(
                now.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        );
        let lease = self.timers.record_ttl.min(vpn_core::addr::claim::MAX_LEASE);
        let owner = self.swarm.local_peer_id().to_bytes();
        for addr in self.fixed_claims.clone() {
            let old = self.own_claims.get(&addr).map(|c| c.claim.clone());
            if old
                .as_ref()
                .is_some_and(|c| c.expiry > now_ms + lease / 2 && !c.released)
            {
                continue;
            }
            let since = old
                .as_ref()
                .filter(|c| c.expiry > now_ms && !c.released)
                .map_or(now_ms, |c| c.since);
            let seq = old.map_or(0, |c| c.seq).max(now_ms.as_millis() as u64) + 1;
            let claim = vpn_core::addr::Claim {
                group: self.members.group().to_owned(),
                addr,
                owner: owner.clone(),
                fixed: true,
                released: false,
                since,
                lease_start: now_ms,
                expiry: now_ms + lease,
                seq,
            };
            let signed = claims::sign_entry(
                addr,
                &claim.encode(),
                SystemTime::UNIX_EPOCH + claim.expiry,
                &self.own_cert,
                &self.keypair,
            )
            .map_err(|e| e.to_string())
            .and_then(|e| {
                claims::check_entry(addr, &e, &self.members, now).map_err(|e| e.to_string())
            });
            match signed {
                Ok((c, _)) => {
                    self.own_claims.insert(addr, c);
                    // Publish now (with the rest of the round).
                    self.published_at = None;
                }
                Err(e) => warn!(%addr, "overlay: cannot claim the fixed address: {e}"),
            }
        }
    }

    pub(super) fn on_private_kad(&mut self, ev: kad::Event) {
        match ev {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => self.on_inbound_put(source, record),
            kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetRecord(res),
                step,
                ..
            } => self.on_get_record(id, res, step.last),
            kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::PutRecord(res),
                ..
            } => {
                if let Some(w) = self.put_waiters.remove(&id) {
                    let _ = w.send(
                        res.as_ref()
                            .map(|_| ())
                            .map_err(|e| OverlayError::Request(format!("storing claim: {e}"))),
                    );
                }
                if self.republish_queries.remove(&id) {
                    if let Err(e) = res {
                        debug!("overlay: publishing a claim: {e}; retrying next round");
                        self.published_at = None;
                    }
                }
            }
            _ => {}
        }
    }

    fn on_inbound_put(&mut self, source: PeerId, record: Record) {
        if !self.members.is_member(&source) {
            self.stats.private_requests_refused += 1;
            warn!(peer = %source, "overlay: PUT from a non-member ignored");
            return;
        }
        let key = record.key.to_vec();
        let Some(addr) = parse_address_key(&key) else {
            self.stats
                .count_rejection(&super::super::record::RecordRejection::Content(
                    "unknown key".into(),
                ));
            warn!(peer = %source, "overlay: PUT under an unknown key ignored");
            return;
        };
        let (ok, bad) = claims::check_set(addr, &record.value, &self.members, SystemTime::now());
        for r in &bad {
            self.stats.count_rejection(r);
            warn!(peer = %source, %addr, reason = %r, "overlay: claim refused on PUT");
        }
        if !ok.is_empty() {
            self.store_claims(addr, ok, false);
        }
    }

    /// Starts (or joins) a read of every claim under the key of `addr`.
    fn read_claims(&mut self, addr: IpAddr, waiter: Waiter) {
        if let Some(id) = self.claim_query_of.get(&addr) {
            if let Some(q) = self.claim_queries.get_mut(id) {
                q.waiters.push(waiter);
                return;
            }
        }
        let id = self
            .swarm
            .behaviour_mut()
            .private_kad
            .inner()
            .get_record(RecordKey::new(&ids::address_key(addr)));
        self.claim_queries.insert(
            id,
            ClaimQuery {
                addr,
                found: Vec::new(),
                waiters: vec![waiter],
            },
        );
        self.claim_query_of.insert(addr, id);
    }

    /// Every verified claim under the key of `addr` (for the allocator).
    pub(super) fn get_claims(&mut self, addr: IpAddr, reply: ClaimsReply) {
        self.read_claims(addr, Waiter::Claims(reply));
    }

    /// The owner of `addr` (cached).
    pub(super) fn resolve(&mut self, addr: IpAddr, reply: ResolveReply) {
        if let Some(r) = self.cache.get(addr, SystemTime::now()) {
            let _ = reply.send(Ok(r));
            return;
        }
        self.read_claims(addr, Waiter::Resolve(reply));
    }

    fn on_get_record(
        &mut self,
        id: QueryId,
        res: Result<GetRecordOk, kad::GetRecordError>,
        last: bool,
    ) {
        let Some(q) = self.claim_queries.get_mut(&id) else {
            return;
        };
        let addr = q.addr;
        if let Ok(GetRecordOk::FoundRecord(found)) = res {
            let (ok, bad) =
                claims::check_set(addr, &found.record.value, &self.members, SystemTime::now());
            q.found.extend(ok);
            for r in &bad {
                self.stats.count_rejection(r);
                warn!(%addr, reason = %r, "overlay: address claim ignored");
            }
        }
        // A fixed claim beats every allocated one: a resolution can stop at
        // the first one found (allocation reads still see every replica).
        let early = !last
            && q.waiters.iter().all(|w| matches!(w, Waiter::Resolve(_)))
            && claims::winner(&q.found, SystemTime::now()).is_some_and(|w| w.claim.fixed);
        if early {
            if let Some(mut query) = self
                .swarm
                .behaviour_mut()
                .private_kad
                .inner()
                .query_mut(&id)
            {
                query.finish();
            }
        }
        if last || early {
            self.finish_claim_query(id);
        }
    }

    fn finish_claim_query(&mut self, id: QueryId) {
        let Some(q) = self.claim_queries.remove(&id) else {
            return;
        };
        self.claim_query_of.remove(&q.addr);
        let now = SystemTime::now();
        let set = claims::merge(q.found, now);
        let resolved = claims::winner(&set, now).and_then(|w| Resolved::from_claim(w).ok());
        if let Some(r) = &resolved {
            self.cache.insert(r.clone(), now, self.timers.cache_ttl);
        }
        for w in q.waiters {
            match w {
                Waiter::Claims(tx) => {
                    let _ = tx.send(Ok(set.clone()));
                }
                Waiter::Resolve(tx) => {
                    let _ = tx.send(resolved.clone().ok_or(OverlayError::NotFound(q.addr)));
                }
            }
        }
    }

    /// Drops cached resolutions of `peer` for addresses it no longer
    /// announces.
    pub(super) fn forget_unannounced(&mut self, peer: &PeerId, announced: &[IpAddr]) {
        self.cache.forget_peer_except(peer, announced);
    }
}

/// The address under a `/groupvpn/addr/<address>` key.
pub(super) fn parse_address_key(key: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(key)
        .ok()?
        .strip_prefix("/groupvpn/addr/")?
        .parse()
        .ok()
}
