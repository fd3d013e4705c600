//! The overlay as one service: what the daemon starts and uses through
//! [`GroupOverlay`].
//!
//! [`start`] builds the libp2p [`EventLoop`](super::EventLoop), the session
//! driver (the sans-IO session core over the `session` protocol) and the
//! address service (this node's virtual addresses: fixed from its
//! certificate, or allocated from the group range through the private DHT
//! with `vpn_core::addr::Allocator`), and returns an [`OverlayNode`] handle
//! plus ONE future that runs all of them. The handle publishes a
//! [`GroupView`] on a `watch` channel:
//!
//! * `addresses`: this node's virtual addresses with the group range's
//!   prefix length (fixed ones at once; an allocated one once its claim is
//!   confirmed; empty meanwhile or after it was lost);
//! * `peers`: every verified member that has session keys (a session, or a
//!   handshake far enough to have installed a receive key), with the node
//!   name from its certificate, its verified virtual addresses, its data
//!   endpoint candidates (best first) and its current [`PeerKeys`].
//!
//! # Data endpoints (how members learn them)
//!
//! Every member sends a [`DataInfo`] (data port, underlay IPs, held virtual
//! addresses) inside the `membership` request-response exchange, with its
//! certificate, on the Noise-authenticated libp2p connection; so only
//! verified members get it, and it provably comes from the member. It is
//! sent again whenever the member's addresses change. A receiver builds
//! the candidates as: the IPs our libp2p connections to it come from (the
//! address that demonstrably reaches it), then the IPs it announced (the
//! [`NodeConfig::data_ips`] it was configured with, then the specific IPs of
//! its listen addresses), each with its data port, duplicates removed. NAT
//! traversal will add candidates to the same list.
//!
//! # Peer addresses (what "verified" means)
//!
//! A peer's address enters the view if its certificate fixes it, or if the
//! private DHT resolves it to that peer: the addresses a peer announces are
//! resolved (winning live claim, owner's certificate checked), and so is the
//! address [`GroupOverlay::connect_ip`] was asked for. Resolved addresses
//! are kept until their claim's lease ends and re-resolved before that
//! (every [`NodeConfig::address_refresh`]); an address whose lease ran out
//! or that now resolves to someone else leaves the view.
//!
//! # Members that disappear
//!
//! An expelled member (certificate expired, revoked by a newer CRL) has its
//! sessions removed at once. A member that just goes away keeps its keys
//! until the session core expires them (`reject_after_time`, no successful
//! rekey without a connection) and its allocated addresses until their lease
//! ends; then it leaves the view.
//!
//! # Lifecycle
//!
//! ```ignore
//! let (node, run) = overlay::node::start(cfg)?;
//! tokio::spawn(run);               // ends after shutdown (or when every handle is dropped)
//! let view = node.view();          // watch::Receiver<GroupView>
//! let peer = node.connect_ip(ip).await?;
//! node.shutdown().await;           // releases allocated addresses, stops everything
//! ```

mod addresses;
mod state;

use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot, watch};
use vpn_core::session::SystemEntropy;

use super::membership::DataInfo;
use super::session_driver;
use super::{Client, GroupOverlay, GroupView, OverlayConfig, OverlayError, OverlayStats};

/// Everything [`start`] needs.
#[derive(Clone)]
pub struct NodeConfig {
    /// The libp2p overlay (identity, certificate, CA, CRL, transport,
    /// listen and bootstrap addresses, overlay timers).
    pub overlay: OverlayConfig,
    /// Session timers (`rekey_after_time`, `reject_after_time`, ...);
    /// WireGuard's by default.
    pub session: vpn_core::session::Config,
    /// Address allocation timers (lease, renewal, checks); used for
    /// certificates that allocate from the range, and for the claims of
    /// fixed addresses.
    pub allocation: vpn_core::addr::Config,
    /// The UDP port of this node's data plane, announced to members.
    pub data_port: u16,
    /// Underlay IPs announced to members before the IPs of the listen
    /// addresses (e.g. the address of the underlay interface when listening
    /// on `0.0.0.0`). May be empty.
    pub data_ips: Vec<IpAddr>,
    /// How long [`GroupOverlay::connect_ip`] waits for the owner's keys.
    pub connect_timeout: Duration,
    /// How often peers' allocated addresses are re-resolved and expired
    /// ones dropped.
    pub address_refresh: Duration,
    /// Longest wait for the release of allocated addresses on
    /// [`GroupOverlay::shutdown`].
    pub release_timeout: Duration,
    /// Address claims start when the first member is verified, or after
    /// this long (a lone node).
    pub join_grace: Duration,
    /// Longest hold of a handshake message until the daemon reports
    /// ([`GroupOverlay::applied`]) the receive key installed before it in
    /// the data plane; then it is sent anyway.
    pub apply_wait: Duration,
}

impl NodeConfig {
    /// Defaults: WireGuard's session timers, the allocator's default lease
    /// (600 s, renewed at 300 s), 5 s connect timeout, 10 s address
    /// refresh, 2 s release wait, 3 s join grace, 1 s apply wait.
    pub fn new(overlay: OverlayConfig, data_port: u16) -> Self {
        Self {
            overlay,
            session: vpn_core::session::Config::default(),
            allocation: vpn_core::addr::Config::default(),
            data_port,
            data_ips: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            address_refresh: Duration::from_secs(10),
            release_timeout: Duration::from_secs(2),
            join_grace: Duration::from_secs(3),
            apply_wait: session_driver::APPLY_WAIT,
        }
    }
}

/// Pause between attempts of `connect_ip` (resolution, membership).
const RETRY: Duration = Duration::from_millis(200);

/// A request from a handle to the node task.
#[derive(Debug)]
enum NodeCommand {
    /// `connect_ip` resolved `addr` to `peer`: remember the address and
    /// start a session. Answers whether `peer` is a verified member.
    Connect {
        peer: PeerId,
        addr: IpAddr,
        expires: std::time::SystemTime,
        reply: oneshot::Sender<bool>,
    },
    /// Release the addresses and stop.
    Shutdown(oneshot::Sender<()>),
}

/// Handle to a running overlay node (cheap to clone). Implements
/// [`GroupOverlay`].
#[derive(Clone, Debug)]
pub struct OverlayNode {
    client: Client,
    sessions: session_driver::SessionDriver,
    view: watch::Receiver<GroupView>,
    commands: mpsc::Sender<NodeCommand>,
    connect_timeout: Duration,
}

/// Starts an overlay node: checks the node's own certificate, builds the
/// swarm (listening at once), the session core and the address service.
///
/// Returns the handle and the future that runs the node; spawn it
/// (`tokio::spawn(run)`). The future ends after [`GroupOverlay::shutdown`]
/// (or once every handle is dropped); aborting it stops the node without
/// releasing its addresses (they expire with their lease).
///
/// Errors: the own certificate does not verify against the CA/CRL now, a
/// listen address cannot be bound, a bootstrap address lacks `/p2p/<id>`,
/// invalid session or allocation timers, or a certificate address outside
/// the group range.
pub fn start(
    cfg: NodeConfig,
) -> Result<
    (
        OverlayNode,
        impl std::future::Future<Output = ()> + Send + 'static,
    ),
    OverlayError,
> {
    let own_cert = cfg.overlay.cert.clone();
    let capacity = cfg.overlay.channel_capacity;
    let me = cfg.overlay.keypair.public().to_peer_id();
    let addr_plan = addresses::Plan::new(&cfg, &me.to_bytes())?;
    let release_timeout = cfg.release_timeout;
    let mut overlay = cfg.overlay;
    overlay.claim_fixed_addresses = false;
    let (client, mut event_loop, events) = super::new(overlay)?;
    event_loop.set_data_plane(cfg.data_port, cfg.data_ips);
    let (to_sessions, session_events) = mpsc::channel(capacity);
    let (sessions, keys, session_task) = session_driver::start_with_apply_wait(
        client.clone(),
        session_events,
        &own_cert,
        cfg.session,
        SystemEntropy::new(),
        cfg.apply_wait,
    )
    .map_err(|e| OverlayError::Setup(e.to_string()))?;
    let (commands, command_rx) = mpsc::channel(16);
    let (addr_handle, own_addresses, addr_task) = addresses::start(addr_plan, client.clone());
    let mut first = GroupView::empty(client.peer_id());
    first.addresses = own_addresses.borrow().clone();
    let (view_tx, view) = watch::channel(first);
    let node_task = state::NodeState::new(
        client.clone(),
        sessions.clone(),
        keys,
        own_addresses,
        view_tx,
        cfg.address_refresh,
    )
    .run(
        events,
        to_sessions,
        command_rx,
        addr_handle,
        release_timeout,
    );
    let run = async move {
        tokio::join!(event_loop.run(), session_task, addr_task, node_task);
    };
    Ok((
        OverlayNode {
            client,
            sessions,
            view,
            commands,
            connect_timeout: cfg.connect_timeout,
        },
        run,
    ))
}

impl OverlayNode {
    /// This node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.client.peer_id()
    }

    /// The lower-level overlay client (resolution, members, CRL updates,
    /// listen addresses).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Installs a newer CRL; members it revokes are expelled at once (their
    /// sessions leave the view).
    pub async fn set_crl(&self, crl: vpn_pki::Crl) -> Result<(), OverlayError> {
        self.client.set_crl(crl).await
    }

    async fn connect(self, ip: IpAddr) -> Result<PeerId, OverlayError> {
        let timeout = self.connect_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = |what: String| OverlayError::Timeout(format!("{what} after {timeout:?}"));
        if self.view.borrow().addresses.iter().any(|(a, _)| *a == ip) {
            return Err(OverlayError::OwnAddress(ip));
        }
        // A claim may still be on its way to the members we ask (a member
        // that just joined): retry until the deadline.
        let r = loop {
            let res = tokio::time::timeout_at(deadline, self.client.resolve(ip))
                .await
                .map_err(|_| timed_out(format!("resolving {ip}")))?;
            match res {
                Ok(r) => break r,
                Err(OverlayError::NotFound(_))
                    if tokio::time::Instant::now() + RETRY < deadline =>
                {
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => return Err(e),
            }
        };
        let peer = r.peer;
        if peer == self.peer_id() {
            return Err(OverlayError::OwnAddress(ip));
        }
        // The owner may still be in the certificate exchange, or not even
        // connected (beyond this node's neighbours): reach it and retry
        // until it is a verified member or the deadline passes.
        loop {
            let (reply, rx) = oneshot::channel();
            self.commands
                .send(NodeCommand::Connect {
                    peer,
                    addr: ip,
                    expires: r.expires,
                    reply,
                })
                .await
                .map_err(|_| OverlayError::Stopped)?;
            if rx.await.map_err(|_| OverlayError::Stopped)? {
                break;
            }
            self.client.reach(peer).await?;
            if tokio::time::Instant::now() + RETRY >= deadline {
                return Err(OverlayError::NotMember(peer));
            }
            tokio::time::sleep(RETRY).await;
        }
        let mut view = self.view.clone();
        let ready = |v: &GroupView| {
            v.peers
                .get(&peer)
                .is_some_and(|p| p.keys.tx.is_some() && p.addresses.contains(&ip))
        };
        let res =
            tokio::time::timeout_at(deadline, async { view.wait_for(ready).await.map(|_| ()) })
                .await;
        match res {
            Ok(Ok(())) => Ok(peer),
            Ok(Err(_)) => Err(OverlayError::Stopped),
            Err(_) => Err(timed_out(format!("no session with {peer} (owner of {ip})"))),
        }
    }
}

impl GroupOverlay for OverlayNode {
    fn view(&self) -> watch::Receiver<GroupView> {
        self.view.clone()
    }

    fn connect_ip(&self, ip: IpAddr) -> BoxFuture<'static, Result<PeerId, OverlayError>> {
        Box::pin(self.clone().connect(ip))
    }

    fn stats(&self) -> BoxFuture<'static, Result<OverlayStats, OverlayError>> {
        let c = self.client.clone();
        Box::pin(async move { c.stats().await })
    }

    fn report_traffic(&self, traffic: Vec<(PeerId, u64, u64)>) {
        self.sessions.report_traffic(traffic);
    }

    fn applied(&self, view: &GroupView) {
        // Releases the handshake messages held for their receive keys.
        self.sessions.applied(
            view.peers
                .iter()
                .map(|(peer, p)| (*peer, p.keys.clone()))
                .collect(),
        );
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        let tx = self.commands.clone();
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            if tx.send(NodeCommand::Shutdown(reply)).await.is_ok() {
                let _ = rx.await;
            }
        })
    }
}

/// The data endpoint candidates of a member, best first: the IPs its
/// connections come from, then the IPs it announced, each with its data
/// port; none without a data port.
pub(crate) fn endpoints(data: &DataInfo, observed: &[IpAddr]) -> Vec<std::net::SocketAddr> {
    if data.port == 0 {
        return Vec::new();
    }
    let mut out: Vec<std::net::SocketAddr> = Vec::new();
    for ip in observed.iter().chain(&data.ips) {
        let sa = std::net::SocketAddr::new(*ip, data.port);
        if !out.contains(&sa) {
            out.push(sa);
        }
    }
    out
}
