//! Who this node verifies and stays connected to: discovery from the
//! provider records (paper IV-B) under the neighbour budget, the
//! certificate exchange it starts, on-demand reaching of a member it has
//! not verified, and which connections are kept open while idle
//! (neighbours and members with sessions). See `docs/architecture.md`,
//! "Sparse membership".

use std::collections::HashSet;
use std::time::Instant;

use libp2p::kad::{self, GetProvidersOk, QueryResult};
use libp2p::PeerId;
use tracing::{debug, warn};

use super::super::membership::MembershipRequest;
use super::EventLoop;

/// New providers (not yet members) a discovery round dials or introduces
/// at most; the provider lookup stops there and the next round goes on. It
/// bounds the burst of dials and certificate checks when a node joins a
/// large group.
const MAX_NEW_PROVIDERS_PER_ROUND: usize = 64;

/// A chosen neighbour that is not a connected, verified member this long
/// after it was chosen is given up (it frees its place in the budget).
const NEIGHBOUR_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Delay of the first discovery round after start.
pub(super) const FIRST_DISCOVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Shortest pause between two private-DHT lookups that reach one peer.
const REACH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

impl EventLoop {
    // ---- discovery (paper IV-B) -------------------------------------------

    /// One discovery round: announce this node as a provider (until that
    /// succeeded once; Kademlia republishes it), look up the other providers
    /// (one lookup at a time), publish address claims when due. Rounds that
    /// find nobody new double the delay up to `discovery_max`; news resets
    /// it.
    pub(super) fn discover(&mut self) {
        self.publish_own_records();
        self.prune_neighbours();
        if self.providers_query.is_some() {
            return;
        }
        let room = self.neighbour_target.saturating_sub(self.chosen.len());
        self.round_budget = room.min(MAX_NEW_PROVIDERS_PER_ROUND);
        let b = self.swarm.behaviour_mut();
        if b.public_kad.kbuckets().all(|k| k.num_entries() == 0) {
            return;
        }
        if !self.providing {
            if let Err(e) = b.public_kad.start_providing(self.provider_key.clone()) {
                warn!("overlay: start_providing: {e}");
            }
        }
        if self.round_budget > 0 {
            self.providers_query = Some(b.public_kad.get_providers(self.provider_key.clone()));
        }
        self.round_providers.clear();
        self.discovery_delay = if std::mem::take(&mut self.found_new) || !self.providing {
            self.timers.discovery
        } else {
            (self.discovery_delay * 2).min(self.timers.discovery_max)
        };
    }

    /// Gives up chosen neighbours that did not become connected, verified
    /// members within [`NEIGHBOUR_SETTLE`], and forgets old reach lookups.
    pub(super) fn prune_neighbours(&mut self) {
        let stale: Vec<PeerId> = self
            .chosen
            .iter()
            .filter(|(p, t)| {
                t.elapsed() > NEIGHBOUR_SETTLE
                    && !(self.members.is_member(p) && self.swarm.is_connected(p))
            })
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            self.drop_neighbour(&p);
        }
        self.reaching.retain(|_, t| t.elapsed() < NEIGHBOUR_SETTLE);
    }

    /// `peer` is no longer a neighbour (either way).
    pub(super) fn drop_neighbour(&mut self, peer: &PeerId) {
        let was = self.chosen.remove(peer).is_some() | self.chosen_by.remove(peer);
        if was {
            self.refresh_keep_alive(*peer);
        }
    }

    /// Keeps the connections of a verified member open while idle if it is
    /// a neighbour or has a session, and lets them idle out otherwise.
    pub(super) fn refresh_keep_alive(&mut self, peer: PeerId) {
        let keep = self.members.is_member(&peer)
            && (self.chosen.contains_key(&peer)
                || self.chosen_by.contains(&peer)
                || self.session_peers.contains(&peer));
        self.swarm
            .behaviour_mut()
            .private_kad
            .keep_alive(peer, keep);
    }

    /// [`Command::KeepAlive`]: the members with sessions now.
    pub(super) fn set_session_peers(&mut self, peers: Vec<PeerId>) {
        let new: HashSet<PeerId> = peers.into_iter().collect();
        let old = std::mem::replace(&mut self.session_peers, new);
        let changed: Vec<PeerId> = old
            .symmetric_difference(&self.session_peers)
            .copied()
            .collect();
        for p in changed {
            self.refresh_keep_alive(p);
        }
    }

    /// Verified members with an open connection.
    pub(super) fn connected_members(&self) -> usize {
        self.members
            .members()
            .filter(|(p, _)| self.swarm.is_connected(p))
            .count()
    }

    /// [`Command::Reach`]: whether `peer` is a verified member; otherwise
    /// start the certificate exchange (connected) or a private-DHT lookup
    /// of its PeerId plus a dial (not connected).
    pub(super) fn reach(&mut self, peer: PeerId) -> bool {
        if self.members.is_member(&peer) {
            return true;
        }
        if peer == *self.swarm.local_peer_id() || self.in_backoff(&peer) {
            return false;
        }
        if self.swarm.is_connected(&peer) {
            self.introduce(peer);
            return false;
        }
        if self
            .reaching
            .get(&peer)
            .is_some_and(|t| t.elapsed() < REACH_INTERVAL)
        {
            return false;
        }
        self.reaching.insert(peer, Instant::now());
        debug!(%peer, "overlay: reaching a member through the private DHT");
        // The lookup contacts the peer itself (it is the closest to its own
        // id): that connection brings identify, then the exchange.
        self.swarm
            .behaviour_mut()
            .private_kad
            .inner()
            .get_closest_peers(peer);
        if let Err(e) = self.swarm.dial(peer) {
            debug!(%peer, "overlay: dialing a member to reach: {e}");
        }
        false
    }

    pub(super) fn in_backoff(&mut self, peer: &PeerId) -> bool {
        match self.backoff.get(peer) {
            Some(t) if t.elapsed() < self.timers.refusal_backoff => true,
            Some(_) => {
                self.backoff.remove(peer);
                false
            }
            None => false,
        }
    }

    /// Starts the certificate exchange with `peer` unless it has accepted
    /// ours on its current connections (gate released), an exchange is
    /// under way, or it is backing off after a refusal. A member that
    /// introduced itself first still gets our request: its `Accepted`
    /// answer is what releases our private requests to it.
    pub(super) fn introduce(&mut self, peer: PeerId) {
        if peer == *self.swarm.local_peer_id()
            || self.swarm.behaviour_mut().private_kad.is_released(&peer)
            || self.membership_pending.contains(&peer)
            || self.in_backoff(&peer)
        {
            return;
        }
        self.send_membership(peer);
    }

    /// Sends our certificate, data, CRL and neighbour flag to `peer`.
    pub(super) fn send_membership(&mut self, peer: PeerId) {
        self.membership_pending.insert(peer);
        let request = MembershipRequest {
            cert: self.own_cert.clone(),
            data: self.own_data(),
            crl: self.own_crl(),
            neighbour: self.chosen.contains_key(&peer),
        };
        self.swarm
            .behaviour_mut()
            .membership
            .send_request(&peer, request);
    }

    /// Identify told us about a connected peer; `candidate`: it speaks our
    /// group's membership protocol.
    pub(super) fn on_identified(&mut self, peer: PeerId, candidate: bool) {
        if !candidate {
            self.chosen.remove(&peer);
            return;
        }
        if !self.chosen.contains_key(&peer)
            && !self.in_backoff(&peer)
            && self.chosen.len() < self.neighbour_target
        {
            // A member candidate met before discovery found it (through the
            // public DHT, say) while neighbours are missing: as good a
            // neighbour as a provider.
            self.chosen.insert(peer, Instant::now());
            self.found_new = true;
        }
        // Our neighbours, members being reached, and members we verified
        // before (a new connection needs a fresh exchange to release our
        // private requests). Other peers are verified only when the private
        // DHT or a session needs them.
        if self.chosen.contains_key(&peer)
            || self.reaching.contains_key(&peer)
            || self.members.is_member(&peer)
        {
            self.introduce(peer);
        }
    }

    pub(super) fn on_public_kad(&mut self, ev: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = ev
        else {
            return;
        };
        if step.last && self.providers_query == Some(id) {
            self.providers_query = None;
        }
        match result {
            QueryResult::StartProviding(Ok(_)) => self.providing = true,
            QueryResult::StartProviding(Err(e)) => debug!("overlay: providing: {e}"),
            QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })) => {
                for p in providers {
                    if p == *self.swarm.local_peer_id()
                        || self.chosen.contains_key(&p)
                        || self.bootstrap_peers.contains(&p)
                        || self.round_providers.contains(&p)
                    {
                        continue;
                    }
                    if self.in_backoff(&p) {
                        continue;
                    }
                    if self.round_providers.len() >= self.round_budget {
                        // Enough for this round (the neighbour budget, or
                        // the burst bound): a later round fills what is
                        // still missing.
                        if let Some(mut q) = self.swarm.behaviour_mut().public_kad.query_mut(&id) {
                            q.finish();
                        }
                        break;
                    }
                    self.round_providers.insert(p);
                    self.chosen.insert(p, Instant::now());
                    self.found_new = true;
                    if self.members.is_member(&p) && self.swarm.is_connected(&p) {
                        // Already verified (it reached us first): a
                        // neighbour from now on; tell it so.
                        self.refresh_keep_alive(p);
                        if !self.membership_pending.contains(&p) {
                            self.send_membership(p);
                        }
                        continue;
                    }
                    if self.swarm.is_connected(&p) {
                        self.introduce(p);
                    } else {
                        // Dial now, while the query still holds the
                        // provider's addresses; identify then starts the
                        // certificate exchange.
                        if let Err(e) = self.swarm.dial(p) {
                            debug!(peer = %p, "overlay: dialing provider: {e}");
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
