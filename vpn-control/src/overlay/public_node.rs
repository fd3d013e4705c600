//! A public-DHT-only node (not a group member): a bootstrap node for the
//! tests and the simulator; in production any libp2p Kademlia node speaking
//! the configured public protocol (e.g. the IPFS DHT) plays this role.

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, Multiaddr, PeerId, StreamProtocol, Swarm};

use super::behaviour::{build_swarm, PublicBehaviour, PublicBehaviourEvent, TransportKind};
use super::OverlayError;

/// A public DHT node.
pub struct PublicNode {
    swarm: Swarm<PublicBehaviour>,
    protocol: StreamProtocol,
}

impl PublicNode {
    /// A node with key `kp`, listening on `listen`.
    pub fn new(
        kp: Keypair,
        transport: TransportKind,
        listen: Multiaddr,
        protocol: StreamProtocol,
    ) -> Result<Self, OverlayError> {
        let p = protocol.clone();
        let mut swarm = build_swarm(kp, transport, |k| PublicBehaviour::new(k, p))?;
        swarm
            .listen_on(listen.clone())
            .map_err(|e| OverlayError::Setup(format!("listen on {listen}: {e}")))?;
        Ok(Self { swarm, protocol })
    }

    /// Its PeerId.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Adds another public node to its routing table.
    pub fn add_peer(&mut self, peer: PeerId, addr: Multiaddr) {
        self.swarm.behaviour_mut().kad.add_address(&peer, addr);
    }

    /// Runs forever (abort the task to stop it).
    pub async fn run(mut self) {
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    self.swarm.add_external_address(address);
                }
                SwarmEvent::Behaviour(PublicBehaviourEvent::Identify(
                    identify::Event::Received { peer_id, info, .. },
                )) if info.protocols.contains(&self.protocol) => {
                    for a in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                    }
                }
                _ => {}
            }
        }
    }
}
