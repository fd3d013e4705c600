//! The composed network behaviours and swarm construction.

use std::time::Duration;

use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    gossipsub, identify, kad, noise, ping, tcp, yamux, StreamProtocol, Swarm, SwarmBuilder,
    Transport as _,
};
use serde::{Deserialize, Serialize};

use super::gate::MembersOnly;
use super::ids;
use super::membership::{MembershipRequest, MembershipResponse};
use super::OverlayError;

/// Providers kept per key in the public DHT store (rust-libp2p's default is
/// 20).
pub const MAX_PROVIDERS_PER_KEY: usize = 4096;

/// How long a connection no protocol needs stays open. Neighbours and
/// members with sessions are kept open explicitly (the gate's keep-alive);
/// connections made for one DHT query or exchange close soon after, so a
/// member's open connections follow what it uses, not everyone it met.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Which transport a node uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// TCP + Noise + Yamux (production).
    Tcp,
    /// libp2p's in-process memory transport + Noise + Yamux (tests).
    Memory,
}

/// `session` request: one handshake message of the session core.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRequest(pub Vec<u8>);

/// `session` response: the session core's answer (Reply, Ack...), or a
/// refusal for peers that are not verified members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionResponse {
    /// The session core's response bytes.
    Reply(Vec<u8>),
    /// Not served (why).
    Refused(String),
}

/// The group member's behaviour.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct MemberBehaviour {
    /// The public DHT (standard wire protocol; provider records).
    pub public_kad: kad::Behaviour<MemoryStore>,
    /// The members-only DHT, behind the gate.
    pub private_kad: MembersOnly<kad::Behaviour<MemoryStore>>,
    /// Identify (listen addresses, protocols).
    pub identify: identify::Behaviour,
    /// Ping (liveness).
    pub ping: ping::Behaviour,
    /// The group topic, behind the gate too: no gossipsub stream with a
    /// peer before it is verified (so connections to peers met only through
    /// the public DHT carry no long-lived stream and idle out).
    pub gossipsub: MembersOnly<gossipsub::Behaviour>,
    /// Certificate exchange.
    pub membership: request_response::cbor::Behaviour<MembershipRequest, MembershipResponse>,
    /// Session handshake messages.
    pub session: request_response::cbor::Behaviour<SessionRequest, SessionResponse>,
}

/// A public-DHT-only node (bootstrap node, not a group member).
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct PublicBehaviour {
    /// The public DHT.
    pub kad: kad::Behaviour<MemoryStore>,
    /// Identify.
    pub identify: identify::Behaviour,
    /// Ping.
    pub ping: ping::Behaviour,
}

fn public_kad(kp: &Keypair, protocol: StreamProtocol) -> kad::Behaviour<MemoryStore> {
    let peer = kp.public().to_peer_id();
    let mut cfg = kad::Config::new(protocol);
    cfg.set_query_timeout(Duration::from_secs(30));
    // rust-libp2p keeps 20 providers per key by default (its replication
    // factor), which would hide members of larger groups from each other;
    // keep as many as a group has members (go-libp2p does not cap them).
    let store = MemoryStore::with_config(
        peer,
        MemoryStoreConfig {
            max_providers_per_key: MAX_PROVIDERS_PER_KEY,
            ..MemoryStoreConfig::default()
        },
    );
    let mut k = kad::Behaviour::with_config(peer, store, cfg);
    // Explicit server mode: nodes on the memory transport or a LAN have no
    // confirmed external address, which would leave Kademlia in client mode.
    k.set_mode(Some(kad::Mode::Server));
    k
}

fn private_kad(kp: &Keypair, group: &str, record_ttl: Duration) -> kad::Behaviour<MemoryStore> {
    let peer = kp.public().to_peer_id();
    let mut cfg = kad::Config::new(ids::private_kad_protocol(group));
    // Only verified members enter the routing table (added by the event loop).
    cfg.set_kbucket_inserts(kad::BucketInserts::Manual);
    // Inbound PUTs are validated (signature, expiry, member source) before
    // they are stored.
    cfg.set_record_filtering(kad::StoreInserts::FilterBoth);
    cfg.set_record_ttl(Some(record_ttl));
    cfg.set_query_timeout(Duration::from_secs(20));
    // The event loop republishes its own records; no blind re-replication of
    // other members' records.
    cfg.set_replication_interval(None);
    cfg.set_publication_interval(None);
    let mut k = kad::Behaviour::with_config(peer, MemoryStore::new(peer), cfg);
    k.set_mode(Some(kad::Mode::Server));
    k
}

fn identify(kp: &Keypair) -> identify::Behaviour {
    identify::Behaviour::new(
        identify::Config::new("groupvpn/1.0.0".into(), kp.public())
            .with_agent_version(format!("vpn-control/{}", env!("CARGO_PKG_VERSION")))
            .with_push_listen_addr_updates(true)
            // No dial addresses from identify's unfiltered cache: peers'
            // addresses reach the swarm only through Kademlia, after the
            // event loop dropped their virtual (group-range) addresses.
            .with_cache_size(0),
    )
}

impl MemberBehaviour {
    /// The behaviour of a member of `group`.
    pub fn new(
        kp: &Keypair,
        group: &str,
        public_protocol: StreamProtocol,
        record_ttl: Duration,
    ) -> Result<Self, OverlayError> {
        let gs_cfg = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .validate_messages()
            .heartbeat_interval(Duration::from_secs(1))
            .build()
            .map_err(|e| OverlayError::Setup(format!("gossipsub config: {e}")))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(kp.clone()), gs_cfg)
                .map_err(|e| OverlayError::Setup(format!("gossipsub: {e}")))?;
        gossipsub
            .subscribe(&gossipsub::IdentTopic::new(ids::group_topic(group)))
            .map_err(|e| OverlayError::Setup(format!("gossipsub subscribe: {e}")))?;
        let rr_cfg =
            request_response::Config::default().with_request_timeout(Duration::from_secs(10));
        Ok(Self {
            public_kad: public_kad(kp, public_protocol),
            private_kad: MembersOnly::new(private_kad(kp, group, record_ttl), true),
            identify: identify(kp),
            ping: ping::Behaviour::default(),
            gossipsub: MembersOnly::new(gossipsub, false),
            membership: request_response::cbor::Behaviour::new(
                [(ids::membership_protocol(group), ProtocolSupport::Full)],
                rr_cfg.clone(),
            ),
            session: request_response::cbor::Behaviour::new(
                [(ids::session_protocol(group), ProtocolSupport::Full)],
                rr_cfg,
            ),
        })
    }
}

impl PublicBehaviour {
    /// A public-DHT-only behaviour.
    pub fn new(kp: &Keypair, public_protocol: StreamProtocol) -> Self {
        Self {
            kad: public_kad(kp, public_protocol),
            identify: identify(kp),
            ping: ping::Behaviour::default(),
        }
    }
}

/// Builds a swarm on `transport` with `behaviour`.
pub fn build_swarm<B: NetworkBehaviour>(
    kp: Keypair,
    transport: TransportKind,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Result<Swarm<B>, OverlayError> {
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    let setup = |e: &dyn std::fmt::Display| OverlayError::Setup(e.to_string());
    Ok(match transport {
        TransportKind::Tcp => SwarmBuilder::with_existing_identity(kp)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| setup(&e))?
            .with_behaviour(|k| behaviour(k))
            .map_err(|e| setup(&e))?
            .with_swarm_config(idle)
            .build(),
        TransportKind::Memory => {
            let noise_cfg = noise::Config::new(&kp).map_err(|e| setup(&e))?;
            SwarmBuilder::with_existing_identity(kp)
                .with_tokio()
                .with_other_transport(move |_| {
                    MemoryTransport::default()
                        .upgrade(Version::V1)
                        .authenticate(noise_cfg)
                        .multiplex(yamux::Config::default())
                })
                .map_err(|e| setup(&e))?
                .with_behaviour(|k| behaviour(k))
                .map_err(|e| setup(&e))?
                .with_swarm_config(idle)
                .build()
        }
    })
}
