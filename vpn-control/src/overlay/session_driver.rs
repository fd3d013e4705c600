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

use std::collections::BTreeMap;
use std::time::Duration;

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
}

type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = (PeerId, Result<Vec<u8>, OverlayError>)> + Send>,
>;

/// Starts the driver: returns its handle, the key sets, and the task to
/// spawn. `own_cert` is this node's certificate (DER).
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
    let local = identity(&client.peer_id(), own_cert);
    let mgr = SessionManager::new(cfg, local, entropy)?;
    let (connect_tx, connect_rx) = mpsc::channel(64);
    let (traffic_tx, traffic_rx) = mpsc::channel(16);
    let (keys_tx, keys_rx) = watch::channel(BTreeMap::new());
    let task = run(client, events, mgr, connect_rx, traffic_rx, keys_tx);
    Ok((
        SessionDriver {
            tx: connect_tx,
            traffic: traffic_tx,
        },
        keys_rx,
        task,
    ))
}

async fn run<E: Entropy>(
    client: Client,
    mut events: mpsc::Receiver<OverlayEvent>,
    mut mgr: SessionManager<PeerId, E>,
    mut connect: mpsc::Receiver<PeerId>,
    mut traffic: mpsc::Receiver<Vec<(PeerId, u64, u64)>>,
    keys: watch::Sender<BTreeMap<PeerId, PeerKeys>>,
) {
    let origin = Instant::now();
    let now = move || Instant::now().duration_since(origin);
    let mut pending: FuturesUnordered<Pending> = FuturesUnordered::new();
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
                            // The core's actions (key installs) go first.
                            apply(&mut mgr, &client, &keys, &mut pending);
                            let _ = reply.send(resp);
                        }
                        Err(e) => {
                            debug!(%peer, "session: request refused: {e}");
                            apply(&mut mgr, &client, &keys, &mut pending);
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
            Some((peer, res)) = pending.next(), if !pending.is_empty() => match res {
                Ok(resp) => {
                    if let Err(e) = mgr.handle_response(now(), &peer, &resp) {
                        debug!(%peer, "session: response refused: {e}");
                    }
                }
                Err(e) => debug!(%peer, "session: request failed: {e}"),
            },
            _ = tokio::time::sleep_until(wake) => {
                if let Err(e) = mgr.handle_timeout(now()) {
                    warn!("session: timers: {e}");
                }
            }
        }
        apply(&mut mgr, &client, &keys, &mut pending);
    }
}

fn apply<E: Entropy>(
    mgr: &mut SessionManager<PeerId, E>,
    client: &Client,
    keys: &watch::Sender<BTreeMap<PeerId, PeerKeys>>,
    pending: &mut FuturesUnordered<Pending>,
) {
    while let Some(a) = mgr.poll_action() {
        match a {
            Action::Send { peer, request } => {
                let c = client.clone();
                pending.push(Box::pin(async move {
                    (peer, c.send_session(peer, request).await)
                }));
            }
            Action::Install { peer, tx, rx } => {
                let set = PeerKeys { tx, rx };
                keys.send_modify(|m| {
                    m.insert(peer, set);
                });
            }
            Action::Remove { peer } => {
                keys.send_modify(|m| {
                    m.remove(&peer);
                });
            }
            Action::Event { peer, event } => debug!(%peer, ?event, "session"),
        }
    }
}
