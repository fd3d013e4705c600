//! Drives the sans-IO session core (`vpn_core::session`) over the overlay's
//! `session` protocol and turns its key actions into data-plane key sets.
//!
//! Inputs: [`OverlayEvent`]s (verified members are admitted with their
//! certificate fingerprint, expelled members removed, members whose last
//! connection closed torn down, session requests answered by
//! `handle_request`), [`SessionDriver::connect`] requests (a
//! packet waits for a peer), the core's timer, and the responses to the
//! requests it asked to send. Output: the current key set of every peer on a
//! `watch` channel ([`PeerKeys`], in the data plane's types), which the
//! daemon merges into its `DesiredState`. Actions are applied in order, and a
//! request's actions before its response is sent, as the core requires.
//!
//! # Keys in the kernel before the message that uses them
//!
//! Publishing a key set is not installing it: the daemon applies the view
//! asynchronously. A handshake message that follows an `Install` adding a
//! receive key (the responder's reply, the initiator's confirm) makes the
//! peer switch to that key, so it is held back until the daemon reports
//! ([`SessionDriver::applied`]) a data plane that holds the new receive
//! indices, or at most [`APPLY_WAIT`] (a slow or failing apply never stalls
//! handshakes). Until the first report (no daemon, e.g. the overlay's own
//! tests) nothing is held back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use libp2p::PeerId;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};
use vpn_core::session::{self, Action, Config, Entropy, Identity, SessionManager};

use super::{Client, OverlayError, OverlayEvent};
use crate::dataplane::{RxKey, TxKey};

/// The keys the data plane should hold for one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerKeys {
    /// The sending key, once established.
    pub tx: Option<TxKey>,
    /// The receiving keys (current, pending, previous in a grace window).
    pub rx: Vec<RxKey>,
}

/// The current key sets of all peers (updated on every install/remove).
pub type KeySets = watch::Receiver<BTreeMap<PeerId, PeerKeys>>;

/// Longest hold of a handshake message waiting for the data plane to hold
/// the receive key installed before it.
pub const APPLY_WAIT: Duration = Duration::from_secs(1);

/// The key sets the data plane holds, per peer; `None` until the daemon's
/// first report.
type Applied = Option<BTreeMap<PeerId, PeerKeys>>;

/// Errors of the driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The session core refused its configuration.
    #[error("session core: {0}")]
    Session(#[from] session::SessionError),
}

/// The session identity of a member: its PeerId bytes and the SHA-256
/// fingerprint of its certificate (both sides compute the binding from
/// these).
pub fn identity(peer: &PeerId, cert: &[u8]) -> Identity {
    Identity {
        peer_id: peer.to_bytes(),
        cert_fingerprint: vpn_pki::fingerprint(cert).into_bytes(),
    }
}

/// Handle to ask the driver for sessions.
#[derive(Clone, Debug)]
pub struct SessionDriver {
    tx: mpsc::Sender<PeerId>,
    traffic: mpsc::Sender<Vec<(PeerId, u64, u64)>>,
    applied: Arc<watch::Sender<Applied>>,
}

impl SessionDriver {
    /// Asks for a session with `peer` (no-op if one exists or is being
    /// made).
    pub async fn connect(&self, peer: PeerId) -> Result<(), OverlayError> {
        self.tx.send(peer).await.map_err(|_| OverlayError::Stopped)
    }

    /// Packets sent to and received from peers since the last report
    /// (drives the traffic-dependent rekey). Never blocks: a report that
    /// finds the queue full is dropped (the next one carries new deltas;
    /// a rekey starts on any later report).
    pub fn report_traffic(&self, traffic: Vec<(PeerId, u64, u64)>) {
        let _ = self.traffic.try_send(traffic);
    }

    /// The data plane now holds exactly `keys` (the daemon applied a view
    /// with these key sets): releases the handshake messages waiting for
    /// their receive keys.
    pub fn applied(&self, keys: BTreeMap<PeerId, PeerKeys>) {
        self.applied.send_replace(Some(keys));
    }
}

/// Waits until the data plane holds every receive index of `want` for
/// `peer` (at once without a report yet), at most `limit`.
async fn applied_wait(
    mut applied: watch::Receiver<Applied>,
    peer: PeerId,
    want: Vec<u32>,
    limit: Duration,
) {
    let holds = |a: &Applied| {
        a.as_ref().is_none_or(|m| {
            m.get(&peer).is_some_and(|k| {
                want.iter()
                    .all(|i| k.rx.iter().any(|r| r.local_index == *i))
            })
        })
    };
    if tokio::time::timeout(limit, applied.wait_for(holds))
        .await
        .is_err()
    {
        debug!(%peer, "session: keys not applied after {limit:?}, sending anyway");
    }
}

type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = (PeerId, Result<Vec<u8>, OverlayError>)> + Send>,
>;

/// Starts the driver: returns its handle, the key sets, and the task to
/// spawn. `own_cert` is this node's certificate (DER). Handshake messages
/// wait at most [`APPLY_WAIT`] for their keys to be applied.
pub fn start<E: Entropy + Send + 'static>(
    client: Client,
    events: mpsc::Receiver<OverlayEvent>,
    own_cert: &[u8],
    cfg: Config,
    entropy: E,
) -> Result<
    (
        SessionDriver,
        KeySets,
        impl std::future::Future<Output = ()> + Send,
    ),
    DriverError,
> {
    start_with_apply_wait(client, events, own_cert, cfg, entropy, APPLY_WAIT)
}

/// [`start`] with another bound on the wait for applied keys.
pub fn start_with_apply_wait<E: Entropy + Send + 'static>(
    client: Client,
    events: mpsc::Receiver<OverlayEvent>,
    own_cert: &[u8],
    cfg: Config,
    entropy: E,
    apply_wait: Duration,
) -> Result<
    (
        SessionDriver,
        KeySets,
        impl std::future::Future<Output = ()> + Send,
    ),
    DriverError,
> {
    let local = identity(&client.peer_id(), own_cert);
    let mgr = SessionManager::new(cfg, local, entropy)?;
    let (connect_tx, connect_rx) = mpsc::channel(64);
    let (traffic_tx, traffic_rx) = mpsc::channel(16);
    let (keys_tx, keys_rx) = watch::channel(BTreeMap::new());
    let (applied_tx, applied_rx) = watch::channel(None);
    let io = Io {
        client,
        keys: keys_tx,
        applied: applied_rx,
        apply_wait,
        pending: FuturesUnordered::new(),
        replies: FuturesUnordered::new(),
    };
    let task = run(events, mgr, connect_rx, traffic_rx, io);
    Ok((
        SessionDriver {
            tx: connect_tx,
            traffic: traffic_tx,
            applied: Arc::new(applied_tx),
        },
        keys_rx,
        task,
    ))
}

/// The driver's outputs.
struct Io {
    client: Client,
    keys: watch::Sender<BTreeMap<PeerId, PeerKeys>>,
    applied: watch::Receiver<Applied>,
    /// Longest hold of a message for its keys.
    apply_wait: Duration,
    /// Requests in flight.
    pending: FuturesUnordered<Pending>,
    /// Responses held until their receive keys are applied.
    replies: FuturesUnordered<BoxFuture<'static, ()>>,
}

async fn run<E: Entropy>(
    mut events: mpsc::Receiver<OverlayEvent>,
    mut mgr: SessionManager<PeerId, E>,
    mut connect: mpsc::Receiver<PeerId>,
    mut traffic: mpsc::Receiver<Vec<(PeerId, u64, u64)>>,
    mut io: Io,
) {
    let origin = Instant::now();
    let now = move || Instant::now().duration_since(origin);
    loop {
        let wake = mgr
            .poll_timeout()
            .map(|t| origin + t)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            ev = events.recv() => match ev {
                None => break,
                Some(OverlayEvent::MemberJoined { peer, cert }) => mgr.admit(peer, identity(&peer, &cert)),
                Some(OverlayEvent::MemberExpelled(peer, _)) => mgr.remove(&peer),
                // Its keys may be dead (a restart): the next packet starts
                // a new handshake (see the session core's "Restarts").
                Some(OverlayEvent::Disconnected(peer)) => mgr.teardown(&peer),
                Some(OverlayEvent::SessionRequest { peer, msg, reply }) => {
                    match mgr.handle_request(now(), &peer, &msg) {
                        Ok(resp) => {
                            // The core's actions (key installs) go first;
                            // the response waits for a new receive key to
                            // reach the data plane.
                            let fresh = io.apply(&mut mgr);
                            match fresh.get(&peer) {
                                Some(want) if !want.is_empty() => {
                                    let wait = applied_wait(io.applied.clone(), peer, want.clone(), io.apply_wait);
                                    io.replies.push(Box::pin(async move {
                                        wait.await;
                                        let _ = reply.send(resp);
                                    }));
                                }
                                _ => {
                                    let _ = reply.send(resp);
                                }
                            }
                        }
                        Err(e) => {
                            debug!(%peer, "session: request refused: {e}");
                            io.apply(&mut mgr);
                        }
                    }
                    continue;
                }
                Some(_) => {}
            },
            Some(peer) = connect.recv() => {
                if let Err(e) = mgr.connect(now(), &peer) {
                    warn!(%peer, "session: connect: {e}");
                }
            }
            Some(report) = traffic.recv() => {
                for (peer, sent, received) in report {
                    // Peers without a session (or not admitted) are ignored.
                    let _ = mgr.on_traffic(now(), &peer, sent, received);
                }
            }
            Some((peer, res)) = io.pending.next(), if !io.pending.is_empty() => match res {
                Ok(resp) => {
                    if let Err(e) = mgr.handle_response(now(), &peer, &resp) {
                        debug!(%peer, "session: response refused: {e}");
                    }
                }
                Err(e) => debug!(%peer, "session: request failed: {e}"),
            },
            Some(()) = io.replies.next(), if !io.replies.is_empty() => {}
            _ = tokio::time::sleep_until(wake) => {
                if let Err(e) = mgr.handle_timeout(now()) {
                    warn!("session: timers: {e}");
                }
            }
        }
        io.apply(&mut mgr);
    }
}

impl Io {
    /// Carries out the core's actions in order. Returns, per peer, the
    /// receive indices its installs added: a request sent after them waits
    /// (bounded) until the data plane holds them, and so should the
    /// caller's response.
    fn apply<E: Entropy>(
        &mut self,
        mgr: &mut SessionManager<PeerId, E>,
    ) -> BTreeMap<PeerId, Vec<u32>> {
        let mut fresh: BTreeMap<PeerId, Vec<u32>> = BTreeMap::new();
        while let Some(a) = mgr.poll_action() {
            match a {
                Action::Send { peer, request } => {
                    let c = self.client.clone();
                    let want = fresh.get(&peer).cloned().unwrap_or_default();
                    let applied = self.applied.clone();
                    let limit = self.apply_wait;
                    self.pending.push(Box::pin(async move {
                        if !want.is_empty() {
                            applied_wait(applied, peer, want, limit).await;
                        }
                        (peer, c.send_session(peer, request).await)
                    }));
                }
                Action::Install { peer, tx, rx } => {
                    let added = new_indices(self.keys.borrow().get(&peer), &rx);
                    let f = fresh.entry(peer).or_default();
                    f.retain(|i| rx.iter().any(|r| r.local_index == *i));
                    f.extend(
                        added
                            .into_iter()
                            .filter(|i| !f.contains(i))
                            .collect::<Vec<_>>(),
                    );
                    let set = PeerKeys { tx, rx };
                    self.keys.send_modify(|m| {
                        m.insert(peer, set);
                    });
                }
                Action::Remove { peer } => {
                    fresh.remove(&peer);
                    self.keys.send_modify(|m| {
                        m.remove(&peer);
                    });
                }
                Action::Event { peer, event } => debug!(%peer, ?event, "session"),
            }
        }
        fresh
    }
}

/// The receive indices in `rx` that `before` lacks.
fn new_indices(before: Option<&PeerKeys>, rx: &[RxKey]) -> Vec<u32> {
    rx.iter()
        .map(|r| r.local_index)
        .filter(|i| before.is_none_or(|b| !b.rx.iter().any(|r| r.local_index == *i)))
        .collect()
}
