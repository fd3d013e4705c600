//! All sessions of this node: admission, index allocation, dispatch of
//! messages and timers to the per-peer state, and the action queue.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::time::Duration;

use super::crypto::{Entropy, Identity};
use super::peer::{Ctx, Out, Peer};
use super::wire::Message;
use super::{Action, Config, RxKey, SessionError, TxKey};

/// The session core of one node. `P` names peers the way the daemon does
/// (a PeerId, a peer-map id); `E` is the randomness source.
pub struct SessionManager<P, E> {
    cfg: Config,
    local: Identity,
    entropy: E,
    indices: BTreeSet<u32>,
    peers: BTreeMap<P, Peer>,
    actions: VecDeque<Action<P>>,
}

impl<P: Clone + Ord + Debug, E: Entropy> SessionManager<P, E> {
    /// A core for the node `local` (its PeerId bytes and certificate
    /// fingerprint). Fails on an inconsistent `cfg`.
    pub fn new(cfg: Config, local: Identity, entropy: E) -> Result<Self, SessionError> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            local,
            entropy,
            indices: BTreeSet::new(),
            peers: BTreeMap::new(),
            actions: VecDeque::new(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Runs `f` on the peer's state with a context, then turns its output
    /// into actions (key changes last, unless `f` synced earlier itself).
    fn with_peer<R>(
        &mut self,
        peer: &P,
        f: impl FnOnce(&mut Peer, &mut Ctx<'_, E>) -> Result<R, SessionError>,
    ) -> Result<R, SessionError> {
        let state = self.peers.get_mut(peer).ok_or(SessionError::NotAdmitted)?;
        let mut out = Vec::new();
        let mut ctx = Ctx {
            cfg: &self.cfg,
            local: &self.local,
            entropy: &mut self.entropy,
            indices: &mut self.indices,
            out: &mut out,
        };
        let r = f(state, &mut ctx);
        state.sync(&mut ctx);
        for o in out {
            let peer = peer.clone();
            self.actions.push_back(match o {
                Out::Send(request) => Action::Send { peer, request },
                Out::Install { tx, rx } => Action::Install { peer, tx, rx },
                Out::Remove => Action::Remove { peer },
                Out::Event(event) => Action::Event { peer, event },
            });
        }
        r
    }

    /// Accepts sessions with `peer`, whose group certificate the daemon has
    /// checked. Re-admitting with a different identity (a new certificate)
    /// drops the old sessions.
    pub fn admit(&mut self, peer: P, remote: Identity) {
        if self.peers.get(&peer).is_some_and(|p| *p.remote() == remote) {
            return;
        }
        if self.peers.contains_key(&peer) {
            self.remove(&peer);
        }
        self.peers.insert(peer, Peer::new(remote));
    }

    /// Whether `peer` is admitted.
    pub fn is_admitted(&self, peer: &P) -> bool {
        self.peers.contains_key(peer)
    }

    /// The daemon has a packet for `peer`: start a handshake unless a session
    /// or a handshake exists.
    pub fn connect(&mut self, now: Duration, peer: &P) -> Result<(), SessionError> {
        self.with_peer(peer, |p, ctx| p.connect(now, ctx))
    }

    /// A request from `peer` arrived on the session protocol. Returns the
    /// response to send back; apply the actions this call queued first.
    pub fn handle_request(
        &mut self,
        now: Duration,
        peer: &P,
        bytes: &[u8],
    ) -> Result<Vec<u8>, SessionError> {
        let msg = Message::decode(bytes)?;
        let reply = self.with_peer(peer, |p, ctx| match msg {
            Message::Init(m) => p.handle_init(now, ctx, m),
            Message::Confirm(m) => p.handle_confirm(now, ctx, m),
            _ => Err(SessionError::Unexpected("a response sent as a request")),
        })?;
        Ok(reply.encode())
    }

    /// The response to a request we sent to `peer` arrived.
    pub fn handle_response(
        &mut self,
        now: Duration,
        peer: &P,
        bytes: &[u8],
    ) -> Result<(), SessionError> {
        let msg = Message::decode(bytes)?;
        self.with_peer(peer, |p, ctx| match msg {
            Message::Reply(m) => p.handle_reply(now, ctx, m),
            Message::Ack(m) => p.handle_ack(now, ctx, m),
            Message::Reject(m) => p.handle_reject(now, ctx, m),
            _ => Err(SessionError::Unexpected("a request sent as a response")),
        })
    }

    /// Packets sent to and received from `peer` since the last report (from
    /// the data plane's counters). Drives the traffic-dependent rekey.
    pub fn on_traffic(
        &mut self,
        now: Duration,
        peer: &P,
        sent: u64,
        received: u64,
    ) -> Result<(), SessionError> {
        self.with_peer(peer, |p, ctx| p.on_traffic(now, ctx, sent, received))
    }

    /// The connection to `peer` is gone: remove all its keys and any
    /// handshake; it stays admitted.
    pub fn teardown(&mut self, peer: &P) {
        // Unknown peers have nothing to tear down.
        let _ = self.with_peer(peer, |p, ctx| {
            p.clear(ctx);
            Ok(())
        });
    }

    /// `peer` was revoked or left: remove its keys and forget it.
    pub fn remove(&mut self, peer: &P) {
        self.teardown(peer);
        self.peers.remove(peer);
    }

    /// When [`Self::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.peers
            .values()
            .filter_map(|p| p.deadline(&self.cfg))
            .min()
    }

    /// Runs every timer due at `now`. Errors of single peers (e.g. no free
    /// index) are returned after all peers were processed; the first wins.
    pub fn handle_timeout(&mut self, now: Duration) -> Result<(), SessionError> {
        let due: Vec<P> = self
            .peers
            .iter()
            .filter(|(_, p)| p.deadline(&self.cfg).is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut result = Ok(());
        for peer in due {
            let r = self.with_peer(&peer, |p, ctx| p.on_timeout(now, ctx));
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<Action<P>> {
        self.actions.pop_front()
    }

    /// The key set the data plane should hold for `peer` now.
    pub fn keys(&self, peer: &P) -> Option<(Option<TxKey>, Vec<RxKey>)> {
        self.peers.get(peer).map(Peer::desired)
    }

    /// Whether `peer` has a sending key.
    pub fn is_established(&self, peer: &P) -> bool {
        self.peers.get(peer).is_some_and(Peer::has_tx)
    }

    /// Receiver indices in use (test and status helper).
    pub fn local_indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.indices.iter().copied()
    }

    /// Checks that the allocator and the peers agree on the indices in use.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        let mut held = BTreeSet::new();
        for p in self.peers.values() {
            for i in p.indices() {
                assert_ne!(i, 0);
                assert!(held.insert(i), "index {i} held twice");
            }
        }
        assert_eq!(held, self.indices, "allocator and peers disagree");
    }
}
