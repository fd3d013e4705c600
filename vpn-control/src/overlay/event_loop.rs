//! The event loop: owns the swarm, runs discovery, the membership gate,
//! record publication and resolution, and serves [`Client`] commands.
//!
//! [`Client`]: super::Client

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::kad::{self, QueryId, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify, Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval, Interval, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::behaviour::{
    build_swarm, MemberBehaviour, MemberBehaviourEvent, SessionRequest, SessionResponse,
};
use super::client::Command;
use super::gate::GateEvent;
use super::ids;
use super::membership::{DataInfo, MemberTable};
use super::resolve::ResolveCache;
use super::virtual_ranges::VirtualRanges;
use super::{OverlayConfig, OverlayError, OverlayEvent, OverlayStats, Timers};

mod claims;
mod group;
mod neighbours;
mod requests;

use neighbours::FIRST_DISCOVERY;

type SessionAnswer = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = (ResponseChannel<SessionResponse>, Option<Vec<u8>>)>
            + Send,
    >,
>;

/// Owns the swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<MemberBehaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<OverlayEvent>,
    members: MemberTable,
    own_cert: Vec<u8>,
    keypair: libp2p::identity::Keypair,
    provider_key: RecordKey,
    public_protocol: StreamProtocol,
    membership_protocol: StreamProtocol,
    timers: Timers,
    announce_listen_addrs: bool,
    /// The group's ranges: virtual addresses are never announced, dialed
    /// or used as data endpoints (the overlay stays off the tunnel).
    virtual_ranges: VirtualRanges,
    bootstrap_peers: HashSet<PeerId>,
    peer_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    membership_pending: HashSet<PeerId>,
    backoff: HashMap<PeerId, Instant>,
    claim_queries: HashMap<QueryId, claims::ClaimQuery>,
    claim_query_of: HashMap<IpAddr, QueryId>,
    put_waiters: HashMap<QueryId, claims::PutReply>,
    republish_queries: HashSet<QueryId>,
    /// This node's latest claim per address (republished as the group
    /// grows).
    own_claims: HashMap<IpAddr, super::claims::VerifiedClaim>,
    /// Fixed addresses the event loop claims itself
    /// ([`OverlayConfig::claim_fixed_addresses`]).
    fixed_claims: Vec<IpAddr>,
    cache: ResolveCache,
    session_pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, OverlayError>>>,
    session_answers: FuturesUnordered<SessionAnswer>,
    providing: bool,
    providers_query: Option<QueryId>,
    /// New providers taken up in the current discovery round.
    round_providers: HashSet<PeerId>,
    /// How many the current round may take (room left in the budget).
    round_budget: usize,
    /// Target number of chosen neighbours ([`OverlayConfig::neighbours`]).
    neighbour_target: usize,
    /// Neighbours this node chose from the provider records, and when.
    chosen: HashMap<PeerId, Instant>,
    /// Members that chose this node as a neighbour.
    chosen_by: HashSet<PeerId>,
    /// Members with session keys (their connections stay open too).
    session_peers: HashSet<PeerId>,
    /// Peers being reached for [`Command::Reach`], and when the last lookup
    /// started.
    reaching: HashMap<PeerId, Instant>,
    found_new: bool,
    discovery_delay: std::time::Duration,
    published_at: Option<(Instant, usize)>,
    stats: OverlayStats,
    /// This node's data-plane information (addresses updated by
    /// [`Command::Announce`]); listen IPs are added when sent.
    data: DataInfo,
    /// Remote IPs of the open connections of each peer, latest first.
    conn_ips: HashMap<PeerId, Vec<(libp2p::swarm::ConnectionId, IpAddr)>>,
}

impl EventLoop {
    pub(super) fn new(
        config: OverlayConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<OverlayEvent>,
    ) -> Result<Self, OverlayError> {
        let me = config.keypair.public().to_peer_id();
        let members = MemberTable::new(config.group.clone(), config.ca.clone(), config.crl.clone());
        // The node's own certificate must verify now.
        let own_info = members.check(&me, &config.cert, SystemTime::now())?;
        let fixed_claims = match (&own_info.address, config.claim_fixed_addresses) {
            (vpn_pki::AddressAssignment::Fixed(a), true) => a.clone(),
            _ => Vec::new(),
        };
        let group = config.group.clone();
        let proto = config.public_kad_protocol.clone();
        let ttl = config.timers.record_ttl;
        let behaviour = MemberBehaviour::new(&config.keypair, &group, proto, ttl)?;
        let mut swarm = build_swarm(config.keypair.clone(), config.transport, move |_| behaviour)?;
        if !config.public_dht_server {
            swarm
                .behaviour_mut()
                .public_kad
                .set_mode(Some(kad::Mode::Client));
        }
        for addr in &config.listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| OverlayError::Setup(format!("listen on {addr}: {e}")))?;
        }
        let mut bootstrap_peers = HashSet::new();
        for addr in &config.bootstrap {
            let Some(Protocol::P2p(peer)) = addr.iter().last() else {
                return Err(OverlayError::Setup(format!(
                    "bootstrap address {addr} lacks /p2p/<PeerId>"
                )));
            };
            let mut bare = addr.clone();
            bare.pop();
            swarm.behaviour_mut().public_kad.add_address(&peer, bare);
            bootstrap_peers.insert(peer);
            if let Err(e) = swarm.dial(addr.clone()) {
                warn!(%addr, "overlay: dialing bootstrap peer failed: {e}");
            }
        }
        Ok(Self {
            swarm,
            commands,
            events,
            members,
            own_cert: config.cert,
            keypair: config.keypair,
            provider_key: RecordKey::new(&ids::provider_key(&config.group)),
            public_protocol: config.public_kad_protocol,
            membership_protocol: ids::membership_protocol(&config.group),
            discovery_delay: config.timers.discovery,
            timers: config.timers,
            announce_listen_addrs: config.announce_listen_addrs,
            virtual_ranges: VirtualRanges::new(config.ca.ranges()),
            bootstrap_peers,
            peer_addrs: HashMap::new(),
            membership_pending: HashSet::new(),
            backoff: HashMap::new(),
            claim_queries: HashMap::new(),
            claim_query_of: HashMap::new(),
            put_waiters: HashMap::new(),
            republish_queries: HashSet::new(),
            own_claims: HashMap::new(),
            fixed_claims,
            cache: ResolveCache::default(),
            session_pending: HashMap::new(),
            session_answers: FuturesUnordered::new(),
            providing: false,
            providers_query: None,
            round_providers: HashSet::new(),
            round_budget: 0,
            neighbour_target: config.neighbours.max(1),
            chosen: HashMap::new(),
            chosen_by: HashSet::new(),
            session_peers: HashSet::new(),
            reaching: HashMap::new(),
            found_new: false,
            published_at: None,
            stats: OverlayStats::default(),
            data: DataInfo::default(),
            conn_ips: HashMap::new(),
        })
    }

    /// Sets the data port and the configured underlay IPs announced to
    /// members (before [`EventLoop::run`]).
    pub(crate) fn set_data_plane(&mut self, port: u16, ips: Vec<IpAddr>) {
        self.data.port = port;
        self.data.ips = self.virtual_ranges.filter_ips(ips);
    }

    /// What this node announces: the configured IPs, then the specific IPs
    /// of its listen addresses.
    pub(super) fn own_data(&self) -> DataInfo {
        let mut d = self.data.clone();
        for a in self.swarm.listeners() {
            if let Some(ip) = multiaddr_ip(a) {
                if !ip.is_unspecified() && !d.ips.contains(&ip) && !self.virtual_ranges.contains(ip)
                {
                    d.ips.push(ip);
                }
            }
        }
        d
    }

    pub(super) fn emit_member_data(&mut self, peer: PeerId, mut data: DataInfo) {
        self.forget_unannounced(&peer, &data.addresses);
        // Data endpoints are underlay addresses, never virtual ones.
        data.ips = self
            .virtual_ranges
            .filter_ips(std::mem::take(&mut data.ips));
        let observed = self
            .conn_ips
            .get(&peer)
            .map(|v| v.iter().map(|(_, ip)| *ip).collect())
            .map(|v| self.virtual_ranges.filter_ips(v))
            .unwrap_or_default();
        self.emit(OverlayEvent::MemberData {
            peer,
            data,
            observed,
        });
    }

    /// Sends this node's current data to every connected verified member
    /// (after its addresses changed); the others get it in the certificate
    /// exchange when they connect again.
    fn announce(&mut self, addresses: Vec<IpAddr>) {
        self.data.addresses = addresses;
        let peers: Vec<PeerId> = self
            .members
            .members()
            .map(|(p, _)| *p)
            .filter(|p| self.swarm.is_connected(p))
            .collect();
        for peer in peers {
            self.send_membership(peer);
        }
    }

    /// Runs until [`super::Client::shutdown`] or until every client is
    /// dropped.
    pub async fn run(mut self) {
        // The first round as soon as the bootstrap dials had a moment.
        let discovery = tokio::time::sleep(FIRST_DISCOVERY.min(self.timers.discovery));
        tokio::pin!(discovery);
        let mut recheck = ticker(self.timers.recheck);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.on_command(c),
                },
                _ = &mut discovery => {
                    self.discover();
                    discovery.as_mut().reset(tokio::time::Instant::now() + self.discovery_delay);
                }
                _ = recheck.tick() => self.recheck(),
                Some((channel, answer)) = self.session_answers.next(), if !self.session_answers.is_empty() => {
                    let resp = match answer {
                        Some(b) => SessionResponse::Reply(b),
                        None => SessionResponse::Refused("no session handler".into()),
                    };
                    let _ = self.swarm.behaviour_mut().session.send_response(channel, resp);
                }
            }
        }
        info!(peer = %self.swarm.local_peer_id(), "overlay: stopped");
    }

    fn emit(&mut self, ev: OverlayEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.events.try_send(ev) {
            self.stats.events_dropped += 1;
        }
    }

    // ---- the gate ------------------------------------------------------------

    /// Verifies `cert` for `peer`; on success opens everything private.
    fn admit(&mut self, peer: PeerId, cert: &[u8]) -> Result<(), String> {
        match self.members.admit(peer, cert, SystemTime::now()) {
            Ok(new) => {
                let b = self.swarm.behaviour_mut();
                b.private_kad.admit(peer);
                b.gossipsub.admit(peer);
                b.gossipsub.inner().remove_blacklisted_peer(&peer);
                for a in self.peer_addrs.get(&peer).into_iter().flatten() {
                    b.private_kad.inner().add_address(&peer, a.clone());
                }
                self.refresh_keep_alive(peer);
                if new {
                    debug!(%peer, "overlay: member verified");
                    self.emit(OverlayEvent::MemberJoined {
                        peer,
                        cert: cert.to_vec(),
                    });
                }
                Ok(())
            }
            Err(e) => {
                self.stats.membership_refused += 1;
                self.backoff.insert(peer, Instant::now());
                self.drop_neighbour(&peer);
                warn!(%peer, reason = %e, "overlay: certificate refused; peer gets nothing private");
                Err(e.to_string())
            }
        }
    }

    fn expel(&mut self, peer: PeerId, reason: String) {
        self.members.remove(&peer);
        self.drop_neighbour(&peer);
        let b = self.swarm.behaviour_mut();
        b.private_kad.expel(&peer);
        b.private_kad.inner().remove_peer(&peer);
        b.gossipsub.expel(&peer);
        b.gossipsub.inner().blacklist_peer(&peer);
        self.cache.forget_peer(&peer);
        self.stats.members_expelled += 1;
        warn!(%peer, %reason, "overlay: member expelled");
        self.emit(OverlayEvent::MemberExpelled(peer, reason));
    }

    fn recheck(&mut self) {
        for (peer, e) in self.members.recheck(SystemTime::now()) {
            // `recheck` already removed it from the table.
            self.expel(peer, e.to_string());
        }
    }

    // ---- swarm events --------------------------------------------------------

    fn on_swarm_event(&mut self, ev: SwarmEvent<MemberBehaviourEvent>) {
        match ev {
            SwarmEvent::NewListenAddr { address, .. } => {
                debug!(%address, "overlay: listening");
                if self.announce_listen_addrs && self.virtual_ranges.allows(&address) {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some(ip) = multiaddr_ip(endpoint.get_remote_address()) {
                    let ips = self.conn_ips.entry(peer_id).or_default();
                    ips.retain(|(_, i)| *i != ip);
                    ips.insert(0, (connection_id, ip));
                }
                if num_established.get() == 1 {
                    self.refresh_keep_alive(peer_id);
                }
                if !self.members.is_member(&peer_id) {
                    // No group messages to or from it until it is verified.
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .inner()
                        .blacklist_peer(&peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                if let Some(ips) = self.conn_ips.get_mut(&peer_id) {
                    ips.retain(|(c, _)| *c != connection_id);
                }
                if num_established == 0 {
                    self.conn_ips.remove(&peer_id);
                    self.drop_neighbour(&peer_id);
                    if self.members.is_member(&peer_id) {
                        self.emit(OverlayEvent::Disconnected(peer_id));
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                ..
            } if !self.swarm.is_connected(&peer) => {
                self.chosen.remove(&peer);
            }
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: MemberBehaviourEvent) {
        match ev {
            MemberBehaviourEvent::Identify(identify::Event::Received {
                peer_id, mut info, ..
            }) => {
                // A member listening on 0.0.0.0 also lists its virtual
                // addresses: never dial those (traffic through the tunnel).
                info.listen_addrs = self
                    .virtual_ranges
                    .filter_addrs(std::mem::take(&mut info.listen_addrs));
                let b = self.swarm.behaviour_mut();
                if info.protocols.contains(&self.public_protocol) {
                    for a in &info.listen_addrs {
                        b.public_kad.add_address(&peer_id, a.clone());
                    }
                }
                if self.members.is_member(&peer_id) {
                    for a in &info.listen_addrs {
                        b.private_kad.inner().add_address(&peer_id, a.clone());
                    }
                }
                self.peer_addrs.insert(peer_id, info.listen_addrs);
                let candidate = info.protocols.contains(&self.membership_protocol);
                self.on_identified(peer_id, candidate);
            }
            MemberBehaviourEvent::PublicKad(ev) => self.on_public_kad(ev),
            MemberBehaviourEvent::PrivateKad(GateEvent::Inner(ev)) => self.on_private_kad(ev),
            MemberBehaviourEvent::PrivateKad(GateEvent::Wanted(peer)) => {
                // A private lookup met a member we have not verified on
                // this connection: the exchange releases its requests.
                self.introduce(peer);
            }
            MemberBehaviourEvent::Membership(ev) => self.on_membership(ev),
            MemberBehaviourEvent::Session(ev) => self.on_session(ev),
            MemberBehaviourEvent::Gossipsub(GateEvent::Inner(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_group_message(propagation_source, message_id, message),
            _ => {}
        }
    }

    // ---- commands --------------------------------------------------------------

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::ListenAddrs(tx) => {
                let _ = tx.send(self.swarm.listeners().cloned().collect());
            }
            Command::Resolve(addr, tx) => self.resolve(addr, tx),
            Command::Members(tx) => {
                let _ = tx.send(self.members.members().map(|(p, _)| *p).collect());
            }
            Command::PrivateRoutingTable(tx) => {
                let peers = self
                    .swarm
                    .behaviour_mut()
                    .private_kad
                    .inner()
                    .kbuckets()
                    .flat_map(|b| b.iter().map(|e| *e.node.key.preimage()).collect::<Vec<_>>())
                    .collect();
                let _ = tx.send(peers);
            }
            Command::Stats(tx) => {
                let mut st = self.stats.clone();
                st.members = self.members.len() as u64;
                st.connected_members = self.connected_members() as u64;
                st.connected_peers = self.swarm.network_info().num_peers() as u64;
                st.neighbours = self
                    .chosen
                    .keys()
                    .chain(self.chosen_by.iter())
                    .collect::<HashSet<_>>()
                    .len() as u64;
                let _ = tx.send(st);
            }
            Command::SendSession(peer, msg, tx) => {
                if !self.members.is_member(&peer) {
                    let _ = tx.send(Err(OverlayError::NotMember(peer)));
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .session
                    .send_request(&peer, SessionRequest(msg));
                self.session_pending.insert(id, tx);
            }
            Command::SetCrl(crl, tx) => {
                let _ = tx.send(self.install_crl(crl, true));
            }
            Command::Reach(peer, tx) => {
                let _ = tx.send(self.reach(peer));
            }
            Command::KeepAlive(peers) => self.set_session_peers(peers),
            Command::Announce(addresses) => self.announce(addresses),
            Command::GetClaims(addr, tx) => self.get_claims(addr, tx),
            Command::PutClaim {
                addr,
                value,
                expires,
                reply,
            } => self.put_claim(addr, value, expires, reply),
            Command::Shutdown => {}
        }
    }
}

fn ticker(period: std::time::Duration) -> Interval {
    let mut i = interval(period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// The IP of a multiaddr (`/ip4/...` or `/ip6/...` first component).
pub(crate) fn multiaddr_ip(a: &Multiaddr) -> Option<IpAddr> {
    a.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}
