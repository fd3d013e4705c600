//! The group overlay on rust-libp2p (issue 4, DESIGN decision 6, paper
//! IV-B), in the style of rust-libp2p's `file-sharing` example: a cheap
//! [`Client`] handle sends commands over a bounded channel to an
//! [`EventLoop`] that owns the `Swarm`.
//!
//! Protocols (see `docs/architecture.md`, "Overlay"):
//! - public Kademlia (default `/ipfs/kad/1.0.0`, configurable): members
//!   provide the key `sha2-256("private:<group>")` (a multihash) and find each
//!   other's PeerIds from the providers;
//! - `/groupvpn/<group>/membership/1.0.0` (request-response, CBOR): mutual
//!   certificate exchange, checked with `vpn_pki::verify_member`;
//! - `/groupvpn/<group>/kad/1.0.0`: the members-only Kademlia, behind
//!   [`gate::MembersOnly`] (refused at negotiation until the peer is
//!   verified) with manual routing-table inserts and filtered PUTs;
//! - `/groupvpn/<group>/session/1.0.0` (request-response, CBOR): session
//!   handshake messages, refused for unverified peers;
//! - identify (`/ipfs/id/1.0.0`), ping, gossipsub topic
//!   `/groupvpn/<group>/events` (messages accepted only from members; a
//!   newer CRL installed on one member is published there and installed by
//!   the others, see `event_loop/group.rs`).
//!
//! Records in the private DHT are owner-signed with an expiry
//! ([`record`]); address claims ([`claims`], one format for allocation and
//! resolution) resolve a virtual address to the owner's PeerId and
//! certificate.

pub mod behaviour;
pub mod claims;
mod client;
mod event_loop;
pub mod gate;
pub mod ids;
pub mod membership;
pub mod node;
mod public_node;
pub mod record;
pub mod resolve;
pub mod session_driver;
#[cfg(test)]
mod test_fixtures;
pub mod view;
mod virtual_ranges;

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::mpsc;
use vpn_pki::{CaCertificate, Crl};

pub use behaviour::TransportKind;
pub use client::Client;
pub use event_loop::EventLoop;
pub use node::{NodeConfig, OverlayNode};
pub use public_node::PublicNode;
pub use resolve::Resolved;
pub use view::{GroupOverlay, GroupView, PeerView};

/// Overlay errors.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// Building the swarm or behaviours failed.
    #[error("overlay setup: {0}")]
    Setup(String),
    /// This node's own certificate does not verify.
    #[error("own certificate refused: {0}")]
    OwnCertificate(#[from] vpn_pki::PkiError),
    /// The event loop has stopped.
    #[error("overlay stopped")]
    Stopped,
    /// No valid claim for the address was found.
    #[error("no valid address claim for {0}")]
    NotFound(std::net::IpAddr),
    /// The peer is not a verified member.
    #[error("{0} is not a verified member")]
    NotMember(PeerId),
    /// A request failed.
    #[error("request failed: {0}")]
    Request(String),
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The address is this node's own.
    #[error("{0} is this node's own address")]
    OwnAddress(std::net::IpAddr),
    /// Address allocation could not be set up.
    #[error("address allocation: {0}")]
    Allocation(String),
}

/// Timers of the overlay.
#[derive(Clone, Debug)]
pub struct Timers {
    /// Delay between discovery rounds (provider lookup, announcement,
    /// republication) while new members keep appearing.
    pub discovery: Duration,
    /// Longest delay between rounds once nothing new is found.
    pub discovery_max: Duration,
    /// Lifetime of the node's signed records (republished at half).
    pub record_ttl: Duration,
    /// Longest time a resolution stays cached.
    pub cache_ttl: Duration,
    /// How often verified members are re-checked (expiry, CRL).
    pub recheck: Duration,
    /// How long a peer that refused us or that we refused is left alone.
    pub refusal_backoff: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            discovery: Duration::from_secs(2),
            discovery_max: Duration::from_secs(120),
            record_ttl: Duration::from_secs(3600),
            cache_ttl: Duration::from_secs(300),
            recheck: Duration::from_secs(60),
            refusal_backoff: Duration::from_secs(60),
        }
    }
}

/// What a member's overlay needs.
#[derive(Clone)]
pub struct OverlayConfig {
    /// The group's name.
    pub group: String,
    /// The group CA.
    pub ca: CaCertificate,
    /// The current CRL, if any.
    pub crl: Option<Crl>,
    /// This node's member certificate (DER).
    pub cert: Vec<u8>,
    /// This node's key (its PeerId; the certificate's key).
    pub keypair: Keypair,
    /// Transport.
    pub transport: TransportKind,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Public DHT bootstrap peers (each ending in `/p2p/<PeerId>`).
    pub bootstrap: Vec<Multiaddr>,
    /// The public DHT's protocol name.
    pub public_kad_protocol: StreamProtocol,
    /// Announce the listen addresses as external addresses (LAN, tests);
    /// provider records carry the external addresses.
    pub announce_listen_addrs: bool,
    /// Timers.
    pub timers: Timers,
    /// Capacity of the command and event channels.
    pub channel_capacity: usize,
    /// The event loop itself claims the certificate's fixed addresses (a
    /// fixed claim leased for `timers.record_ttl`, renewed at half). For an
    /// overlay used without [`node`] (tests, benches); [`node::start`] turns
    /// it off, its address service claims through the allocator.
    pub claim_fixed_addresses: bool,
    /// How many members discovery connects to and verifies from the
    /// provider records (the node's random neighbours). Members beyond it
    /// are met through the private DHT (its lookups verify the members they
    /// reach) and on demand ([`Client::reach`]), so per-node state grows
    /// with the log of the group's size instead of with the size. A group
    /// no larger than this is a full mesh.
    pub neighbours: usize,
    /// Serve the public DHT (store provider records, answer lookups), or
    /// only use it (client mode: a host behind NAT, or a group that
    /// bootstraps from an external public DHT and does not want to carry
    /// its traffic).
    pub public_dht_server: bool,
}

/// Default [`OverlayConfig::neighbours`].
pub const DEFAULT_NEIGHBOURS: usize = 32;

impl OverlayConfig {
    /// A configuration with the project defaults.
    pub fn new(group: String, ca: CaCertificate, cert: Vec<u8>, keypair: Keypair) -> Self {
        Self {
            group,
            ca,
            crl: None,
            cert,
            keypair,
            transport: TransportKind::Tcp,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            public_kad_protocol: StreamProtocol::new(ids::DEFAULT_PUBLIC_KAD_PROTOCOL),
            announce_listen_addrs: true,
            timers: Timers::default(),
            channel_capacity: 64,
            claim_fixed_addresses: true,
            neighbours: DEFAULT_NEIGHBOURS,
            public_dht_server: true,
        }
    }
}

/// What the overlay tells its owner.
#[derive(Debug)]
pub enum OverlayEvent {
    /// A peer's certificate verified.
    MemberJoined {
        /// The member.
        peer: PeerId,
        /// Its certificate (DER).
        cert: Vec<u8>,
    },
    /// A member was expelled (expired, revoked).
    MemberExpelled(PeerId, String),
    /// A session handshake request from a verified member (for
    /// `vpn_core::session::SessionManager::handle_request`); send the
    /// response bytes through `reply` (dropping it answers with a refusal).
    SessionRequest {
        /// From whom.
        peer: PeerId,
        /// The request bytes.
        msg: Vec<u8>,
        /// Where the response goes.
        reply: tokio::sync::oneshot::Sender<Vec<u8>>,
    },
    /// A verified member's data-plane information (after every membership
    /// exchange with it), with the remote IPs of our open connections to it
    /// (latest first; the best endpoint candidates).
    MemberData {
        /// The member.
        peer: PeerId,
        /// What it announced.
        data: membership::DataInfo,
        /// The IPs its connections come from.
        observed: Vec<std::net::IpAddr>,
    },
    /// The last connection to a verified member closed.
    Disconnected(PeerId),
    /// A message on the group topic from a verified member.
    GroupMessage {
        /// Its author.
        source: PeerId,
        /// Its data.
        data: Vec<u8>,
    },
}

/// Counters (refusals and rejected records).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OverlayStats {
    /// Peers whose certificates we refused.
    pub membership_refused: u64,
    /// Peers that refused ours.
    pub refused_by_peer: u64,
    /// Private requests (session, PUT, group messages) refused because the
    /// peer was not verified.
    pub private_requests_refused: u64,
    /// Records ignored because their signature did not verify.
    pub records_forged: u64,
    /// Records ignored because they were unsigned.
    pub records_unsigned: u64,
    /// Records ignored because they had expired.
    pub records_expired: u64,
    /// Records ignored because they were malformed.
    pub records_malformed: u64,
    /// Records ignored because their content did not fit (key, certificate).
    pub records_content: u64,
    /// Members expelled on re-check (expiry, CRL).
    pub members_expelled: u64,
    /// Events dropped because the owner's event channel was full.
    pub events_dropped: u64,
    /// Verified members now.
    pub members: u64,
    /// Verified members with an open connection now.
    pub connected_members: u64,
    /// Peers of any kind (members, public-DHT nodes) with an open
    /// connection now.
    pub connected_peers: u64,
    /// Neighbours: members this node chose from the provider records, or
    /// that chose it (connections kept open while idle).
    pub neighbours: u64,
    /// Newer CRLs received on the group topic and installed.
    pub crls_received: u64,
    /// Newer CRLs learned in a membership exchange and installed.
    pub crls_learned: u64,
}

impl OverlayStats {
    pub(crate) fn count_rejection(&mut self, r: &record::RecordRejection) {
        use record::RecordRejection as R;
        match r {
            R::Malformed(_) => self.records_malformed += 1,
            R::Unsigned => self.records_unsigned += 1,
            R::Forged(_) => self.records_forged += 1,
            R::Expired(_) => self.records_expired += 1,
            R::Content(_) => self.records_content += 1,
        }
    }
}

/// Builds a member's overlay: the [`Client`] handle, the [`EventLoop`] to
/// spawn, and the receiver of [`OverlayEvent`]s. Fails if the node's own
/// certificate does not verify (now) or the swarm cannot be built.
pub fn new(
    config: OverlayConfig,
) -> Result<(Client, EventLoop, mpsc::Receiver<OverlayEvent>), OverlayError> {
    let (cmd_tx, cmd_rx) = mpsc::channel(config.channel_capacity);
    let (ev_tx, ev_rx) = mpsc::channel(config.channel_capacity);
    let peer_id = config.keypair.public().to_peer_id();
    let event_loop = EventLoop::new(config, cmd_rx, ev_tx)?;
    Ok((
        Client {
            tx: cmd_tx,
            peer_id,
        },
        event_loop,
        ev_rx,
    ))
}
