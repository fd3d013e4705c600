//! The members-only gate around the private Kademlia behaviour and the
//! group topic (gossipsub).
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
//!
//! Outbound private Kademlia requests wait as well: a connection handler
//! holds the inner handler's requests for new streams until the gate is
//! [released](MembersOnly::release) for the peer, which the event loop does
//! once the peer has accepted *our* certificate (its `Accepted` answer to
//! our membership request; the peer opened its own gate before answering).
//! A lookup that meets a member it has not verified yet (common in a sparse
//! overlay) thus waits one certificate exchange instead of having its
//! request refused at negotiation. Held requests time out inside the inner
//! handler like any other. Release is per connection lifetime: when the
//! last connection to a peer closes it is withdrawn, since a restarted peer
//! has forgotten us.
//!
//! The gate also keeps the connections of chosen peers (the overlay's
//! neighbours) open while idle ([`MembersOnly::keep_alive`]); other
//! connections close after the swarm's idle timeout once no protocol uses
//! them.

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

/// What a [`GatedHandler`] tells [`MembersOnly`].
#[derive(Debug)]
pub enum GateOut<E> {
    /// From the inner handler.
    Inner(E),
    /// The inner handler wants to send to this (not yet released) peer: a
    /// request is held.
    Wanted,
}

/// What [`MembersOnly`] reports to the swarm's owner.
#[derive(Debug)]
pub enum GateEvent<E> {
    /// From the inner behaviour.
    Inner(E),
    /// Our private requests to `0` are held until it accepts our
    /// certificate: start the exchange with it.
    Wanted(libp2p::PeerId),
}

/// Message from [`MembersOnly`] to its handlers.
#[derive(Debug)]
pub enum GateIn<I> {
    /// Serve the inner protocol on this connection.
    Open,
    /// Stop serving it (and hold outbound requests again).
    Close,
    /// Let the inner handler's outbound requests through.
    Release,
    /// Keep the connection open while idle (a neighbour), or not.
    KeepAlive(bool),
    /// For the inner handler.
    Inner(I),
}

/// An outbound stream request of the inner handler.
type Outbound<H> = ConnectionHandlerEvent<
    <H as ConnectionHandler>::OutboundProtocol,
    <H as ConnectionHandler>::OutboundOpenInfo,
    <H as ConnectionHandler>::ToBehaviour,
>;

/// Connection handler: the inner handler behind a per-connection switch.
pub struct GatedHandler<H: ConnectionHandler> {
    inner: H,
    open: bool,
    released: bool,
    keep_alive: bool,
    held: VecDeque<Outbound<H>>,
}

impl<H: ConnectionHandler> GatedHandler<H> {
    fn new(inner: H, open: bool, released: bool, keep_alive: bool) -> Self {
        Self {
            inner,
            open,
            released,
            keep_alive,
            held: VecDeque::new(),
        }
    }
}

impl<H, U> ConnectionHandler for GatedHandler<H>
where
    H: ConnectionHandler<InboundProtocol = Either<U, DeniedUpgrade>, InboundOpenInfo = ()>,
    Either<U, DeniedUpgrade>: libp2p::swarm::handler::InboundUpgradeSend,
{
    type FromBehaviour = GateIn<H::FromBehaviour>;
    type ToBehaviour = GateOut<H::ToBehaviour>;
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
        self.keep_alive || self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        if self.released {
            if let Some(ev) = self.held.pop_front() {
                return Poll::Ready(ev.map_custom(GateOut::Inner));
            }
        }
        match self.inner.poll(cx) {
            Poll::Ready(ev @ ConnectionHandlerEvent::OutboundSubstreamRequest { .. })
                if !self.released =>
            {
                // Not yet: the peer may still refuse the protocol. Ask the
                // behaviour to start the certificate exchange; the
                // connection polls again after `Release` arrives.
                self.held.push_back(ev);
                Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(GateOut::Wanted))
            }
            other => other.map(|ev| ev.map_custom(GateOut::Inner)),
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx).map(|e| e.map(GateOut::Inner))
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {
            GateIn::Open => self.open = true,
            GateIn::Close => {
                self.open = false;
                self.released = false;
            }
            GateIn::Release => self.released = true,
            GateIn::KeepAlive(k) => self.keep_alive = k,
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
    /// Admitted peers that accepted our certificate on their current
    /// connections.
    released: HashSet<PeerId>,
    /// Peers whose connections stay open while idle (neighbours), until
    /// the last one closes.
    kept: HashSet<PeerId>,
    connections: HashMap<PeerId, HashSet<ConnectionId>>,
    pending: VecDeque<(PeerId, ConnectionId, Switch)>,
    wanted: VecDeque<PeerId>,
    report_wanted: bool,
}

/// A change for one connection's handler.
#[derive(Clone, Copy, Debug)]
enum Switch {
    Open,
    Close,
    Release,
    KeepAlive(bool),
}

impl<B> MembersOnly<B> {
    /// Wraps `inner` with every gate closed. With `report_wanted`, a held
    /// outbound request is reported as [`GateEvent::Wanted`] (the private
    /// DHT: its lookups need the peer); without, it simply waits (the group
    /// topic: nobody is verified for its sake).
    pub fn new(inner: B, report_wanted: bool) -> Self {
        Self {
            inner,
            admitted: HashSet::new(),
            released: HashSet::new(),
            kept: HashSet::new(),
            connections: HashMap::new(),
            pending: VecDeque::new(),
            wanted: VecDeque::new(),
            report_wanted,
        }
    }

    /// The wrapped behaviour.
    pub fn inner(&mut self) -> &mut B {
        &mut self.inner
    }

    fn notify(&mut self, peer: PeerId, switch: Switch) {
        for c in self.connections.get(&peer).into_iter().flatten() {
            self.pending.push_back((peer, *c, switch));
        }
    }

    /// Opens the gate for `peer` on all its connections, present and future.
    pub fn admit(&mut self, peer: PeerId) {
        if self.admitted.insert(peer) {
            self.notify(peer, Switch::Open);
        }
    }

    /// Lets our outbound requests to the admitted `peer` through on its open
    /// connections (it accepted our certificate), until the last one closes.
    /// Ignored for a peer that is not admitted or has no connection.
    pub fn release(&mut self, peer: PeerId) {
        if self.admitted.contains(&peer)
            && self.connections.contains_key(&peer)
            && self.released.insert(peer)
        {
            self.notify(peer, Switch::Release);
        }
    }

    /// Keeps the connections of `peer` open while idle (or stops), until
    /// its last connection closes. Ignored for a peer with no connection.
    pub fn keep_alive(&mut self, peer: PeerId, keep: bool) {
        if !self.connections.contains_key(&peer) {
            return;
        }
        let changed = if keep {
            self.kept.insert(peer)
        } else {
            self.kept.remove(&peer)
        };
        if changed {
            self.notify(peer, Switch::KeepAlive(keep));
        }
    }

    /// Closes the gate for `peer`.
    pub fn expel(&mut self, peer: &PeerId) {
        self.released.remove(peer);
        if self.kept.remove(peer) {
            self.notify(*peer, Switch::KeepAlive(false));
        }
        if self.admitted.remove(peer) {
            self.notify(*peer, Switch::Close);
        }
    }

    /// Whether the gate is open for `peer`.
    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        self.admitted.contains(peer)
    }

    /// Whether our outbound requests to `peer` go through.
    pub fn is_released(&self, peer: &PeerId) -> bool {
        self.released.contains(peer)
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
    type ToSwarm = GateEvent<B::ToSwarm>;

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
        Ok(GatedHandler::new(
            inner,
            self.admitted.contains(&peer),
            self.released.contains(&peer),
            self.kept.contains(&peer),
        ))
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
        Ok(GatedHandler::new(
            inner,
            self.admitted.contains(&peer),
            self.released.contains(&peer),
            self.kept.contains(&peer),
        ))
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
                        self.released.remove(&e.peer_id);
                        self.kept.remove(&e.peer_id);
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
        match event {
            GateOut::Inner(e) => self.inner.on_connection_handler_event(peer, id, e),
            GateOut::Wanted => {
                if self.report_wanted && !self.wanted.contains(&peer) {
                    self.wanted.push_back(peer);
                }
            }
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some((peer_id, c, switch)) = self.pending.pop_front() {
            return Poll::Ready(ToSwarm::NotifyHandler {
                peer_id,
                handler: NotifyHandler::One(c),
                event: match switch {
                    Switch::Open => GateIn::Open,
                    Switch::Close => GateIn::Close,
                    Switch::Release => GateIn::Release,
                    Switch::KeepAlive(k) => GateIn::KeepAlive(k),
                },
            });
        }
        if let Some(peer) = self.wanted.pop_front() {
            return Poll::Ready(ToSwarm::GenerateEvent(GateEvent::Wanted(peer)));
        }
        self.inner
            .poll(cx)
            .map(|e| e.map_in(GateIn::Inner).map_out(GateEvent::Inner))
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll};

    use either::Either;
    use libp2p::core::upgrade::{DeniedUpgrade, ReadyUpgrade};
    use libp2p::swarm::handler::ConnectionEvent;
    use libp2p::swarm::{ConnectionHandler, ConnectionHandlerEvent, SubstreamProtocol};
    use libp2p::StreamProtocol;

    use super::{GateIn, GateOut, GatedHandler};

    const P: StreamProtocol = StreamProtocol::new("/test/1.0.0");

    /// An inner handler that asks for one outbound stream per request the
    /// behaviour sends it, and counts how many it asked for.
    #[derive(Default)]
    struct Requests {
        queued: usize,
        asked: usize,
    }

    impl ConnectionHandler for Requests {
        type FromBehaviour = ();
        type ToBehaviour = ();
        type InboundProtocol = Either<ReadyUpgrade<StreamProtocol>, DeniedUpgrade>;
        type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
        type InboundOpenInfo = ();
        type OutboundOpenInfo = ();

        fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
            SubstreamProtocol::new(Either::Left(ReadyUpgrade::new(P)), ())
        }

        fn poll(
            &mut self,
            _: &mut Context<'_>,
        ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), ()>> {
            if self.queued == 0 {
                return Poll::Pending;
            }
            self.queued -= 1;
            self.asked += 1;
            Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(P), ()),
            })
        }

        fn on_behaviour_event(&mut self, (): ()) {
            self.queued += 1;
        }

        fn on_connection_event(
            &mut self,
            _: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol, (), ()>,
        ) {
        }
    }

    /// Polls until pending: (outbound requests let through, "wanted"
    /// notifications).
    fn poll_all(h: &mut GatedHandler<Requests>) -> (usize, usize) {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let (mut out, mut wanted) = (0, 0);
        while let Poll::Ready(ev) = h.poll(&mut cx) {
            match ev {
                ConnectionHandlerEvent::OutboundSubstreamRequest { .. } => out += 1,
                ConnectionHandlerEvent::NotifyBehaviour(GateOut::Wanted) => wanted += 1,
                _ => panic!("unexpected handler event"),
            }
        }
        (out, wanted)
    }

    fn outbound_requests(h: &mut GatedHandler<Requests>) -> usize {
        poll_all(h).0
    }

    fn serves_inbound(h: &GatedHandler<Requests>) -> bool {
        matches!(h.listen_protocol().upgrade(), Either::Left(_))
    }

    #[test]
    fn outbound_requests_wait_for_release_and_inbound_for_open() {
        let mut h = GatedHandler::new(Requests::default(), false, false, false);
        assert!(!serves_inbound(&h));
        h.on_behaviour_event(GateIn::Inner(()));
        h.on_behaviour_event(GateIn::Inner(()));
        // The inner handler asked; nothing leaves the gate, and the
        // behaviour hears that the peer is wanted (once per held request).
        assert_eq!(poll_all(&mut h), (0, 2));
        assert_eq!(h.inner.asked, 2);
        // Admitted: inbound served, outbound still held (the peer may not
        // have verified us yet).
        h.on_behaviour_event(GateIn::Open);
        assert!(serves_inbound(&h));
        assert_eq!(outbound_requests(&mut h), 0);
        // Released: the held requests go, in order, then new ones directly.
        h.on_behaviour_event(GateIn::Release);
        assert_eq!(outbound_requests(&mut h), 2);
        h.on_behaviour_event(GateIn::Inner(()));
        assert_eq!(outbound_requests(&mut h), 1);
        // Expelled: inbound refused and outbound held again.
        h.on_behaviour_event(GateIn::Close);
        assert!(!serves_inbound(&h));
        h.on_behaviour_event(GateIn::Inner(()));
        assert_eq!(outbound_requests(&mut h), 0);
        assert_eq!(h.inner.asked, 4);
    }

    #[test]
    fn a_handler_created_released_does_not_hold() {
        let mut h = GatedHandler::new(Requests::default(), true, true, false);
        h.on_behaviour_event(GateIn::Inner(()));
        assert_eq!(outbound_requests(&mut h), 1);
    }

    #[test]
    fn neighbours_stay_open_while_idle() {
        let mut h = GatedHandler::new(Requests::default(), true, true, false);
        assert!(!h.connection_keep_alive());
        h.on_behaviour_event(GateIn::KeepAlive(true));
        assert!(h.connection_keep_alive());
        h.on_behaviour_event(GateIn::KeepAlive(false));
        assert!(!h.connection_keep_alive());
        let kept = GatedHandler::new(Requests::default(), true, true, true);
        assert!(kept.connection_keep_alive());
    }
}
