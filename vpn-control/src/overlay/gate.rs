//! The members-only gate around the private Kademlia behaviour.
//!
//! [`MembersOnly`] wraps a behaviour whose connection handler advertises its
//! inbound protocol as `Either<U, DeniedUpgrade>` (Kademlia's handler, which
//! uses `DeniedUpgrade` in client mode). On every connection the wrapper's
//! handler offers the inner protocol only once the behaviour has opened the
//! gate for that peer ([`MembersOnly::admit`]); before that, inbound private
//! Kademlia streams are refused at protocol negotiation (the peer never
//! reaches the private DHT's request handling, so it cannot read records or
//! routing entries), and identify tells the peer that the protocol is not
//! supported. Admission flips every open connection of the peer; the swarm
//! notices the changed local protocols, identify pushes them, and the
//! remote's Kademlia then confirms the protocol. [`MembersOnly::expel`]
//! closes the gate again (revocation, expiry).

use std::collections::{HashMap, HashSet, VecDeque};
use std::task::{Context, Poll};

use either::Either;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::DeniedUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::handler::ConnectionEvent;
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Message from [`MembersOnly`] to its handlers.
#[derive(Debug)]
pub enum GateIn<I> {
    /// Serve the inner protocol on this connection.
    Open,
    /// Stop serving it.
    Close,
    /// For the inner handler.
    Inner(I),
}

/// Connection handler: the inner handler behind a per-connection switch.
pub struct GatedHandler<H> {
    inner: H,
    open: bool,
}

impl<H, U> ConnectionHandler for GatedHandler<H>
where
    H: ConnectionHandler<InboundProtocol = Either<U, DeniedUpgrade>, InboundOpenInfo = ()>,
    Either<U, DeniedUpgrade>: libp2p::swarm::handler::InboundUpgradeSend,
{
    type FromBehaviour = GateIn<H::FromBehaviour>;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = H::InboundProtocol;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        if self.open {
            self.inner.listen_protocol()
        } else {
            SubstreamProtocol::new(Either::Right(DeniedUpgrade), ())
        }
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        self.inner.poll(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx)
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {
            GateIn::Open => self.open = true,
            GateIn::Close => self.open = false,
            GateIn::Inner(e) => self.inner.on_behaviour_event(e),
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            '_,
            Self::InboundProtocol,
            Self::OutboundProtocol,
            (),
            Self::OutboundOpenInfo,
        >,
    ) {
        self.inner.on_connection_event(event)
    }
}

/// The members-only wrapper behaviour (see the module docs).
pub struct MembersOnly<B> {
    inner: B,
    admitted: HashSet<PeerId>,
    connections: HashMap<PeerId, HashSet<ConnectionId>>,
    pending: VecDeque<(PeerId, ConnectionId, bool)>,
}

impl<B> MembersOnly<B> {
    /// Wraps `inner` with every gate closed.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            admitted: HashSet::new(),
            connections: HashMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// The wrapped behaviour.
    pub fn inner(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Opens the gate for `peer` on all its connections, present and future.
    pub fn admit(&mut self, peer: PeerId) {
        if self.admitted.insert(peer) {
            for c in self.connections.get(&peer).into_iter().flatten() {
                self.pending.push_back((peer, *c, true));
            }
        }
    }

    /// Closes the gate for `peer`.
    pub fn expel(&mut self, peer: &PeerId) {
        if self.admitted.remove(peer) {
            for c in self.connections.get(peer).into_iter().flatten() {
                self.pending.push_back((*peer, *c, false));
            }
        }
    }

    /// Whether the gate is open for `peer`.
    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        self.admitted.contains(peer)
    }
}

impl<B, U> NetworkBehaviour for MembersOnly<B>
where
    B: NetworkBehaviour,
    B::ConnectionHandler:
        ConnectionHandler<InboundProtocol = Either<U, DeniedUpgrade>, InboundOpenInfo = ()>,
    Either<U, DeniedUpgrade>: libp2p::swarm::handler::InboundUpgradeSend,
{
    type ConnectionHandler = GatedHandler<THandler<B>>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self
            .inner
            .handle_established_inbound_connection(id, peer, local, remote)?;
        Ok(GatedHandler {
            inner,
            open: self.admitted.contains(&peer),
        })
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self
            .inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)?;
        Ok(GatedHandler {
            inner,
            open: self.admitted.contains(&peer),
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match &event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections
                    .entry(e.peer_id)
                    .or_default()
                    .insert(e.connection_id);
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(set) = self.connections.get_mut(&e.peer_id) {
                    set.remove(&e.connection_id);
                    if set.is_empty() {
                        self.connections.remove(&e.peer_id);
                    }
                }
            }
            _ => {}
        }
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some((peer_id, c, open)) = self.pending.pop_front() {
            return Poll::Ready(ToSwarm::NotifyHandler {
                peer_id,
                handler: NotifyHandler::One(c),
                event: if open { GateIn::Open } else { GateIn::Close },
            });
        }
        self.inner.poll(cx).map(|e| e.map_in(GateIn::Inner))
    }
}
