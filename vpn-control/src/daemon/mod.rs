//! The node daemon: `up` (foreground, until SIGINT/SIGTERM or a `down`
//! request), `down` (stop a running daemon, or clean up after a killed
//! one) and `status`.

pub mod credentials;
pub mod dht_node;
mod group;
pub mod pending;
mod plane;
pub mod reconcile;
mod renewal;
mod server;
mod underlay;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::{Config, InterfaceAddress, OverlaySection};
use crate::control::{self, ClientError, OverlayStatus, Request, Response, Status};
use crate::dataplane::{DataplaneError, Prefix};
use crate::netdev::{self, linux::LinuxNet, NetConfig, NetError};
use crate::overlay::{self, GroupOverlay};
use credentials::{CredentialError, Credentials};

pub use underlay::{find as find_underlay, Underlay};

/// Errors of the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Dataplane(DataplaneError),
    #[error("kernel data plane: {0}")]
    Kernel(String),
    #[error("{0}")]
    Io(String),
    #[error("a daemon is already running for {0} (its control socket answers)")]
    AlreadyRunning(String),
    #[error(transparent)]
    Control(#[from] ClientError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error("{0}")]
    Config(String),
    #[error("overlay: {0}")]
    Overlay(String),
}

/// How long a clean shutdown waits for the overlay to release its
/// address claims.
const OVERLAY_SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// How often the CRL file is checked for changes.
const CRL_POLL: Duration = Duration::from_secs(5);

/// The MTU of the VPN interface: configured, or the underlay's minus the
/// per-packet overhead (`vpn_common::wire::vpn_mtu`).
pub fn choose_mtu(cfg: &Config, underlay: Option<&Underlay>) -> u32 {
    cfg.interface.mtu.unwrap_or_else(|| match underlay {
        Some(u) => vpn_common::wire::vpn_mtu(u.mtu, u.local.is_ipv6()),
        None => vpn_common::wire::vpn_mtu(1500, false),
    })
}

fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Removes what a killed daemon may have left: the links named in the
/// config (their addresses and routes go with them) and a stale control
/// socket. Returns a description of what was removed.
pub async fn cleanup<N: NetConfig>(n: &N, cfg: &Config) -> Result<Vec<String>, DaemonError> {
    let peer = cfg.interface.peer_name();
    let mut removed: Vec<String> = netdev::remove(n, &[&cfg.interface.name, &peer])
        .await?
        .into_iter()
        .map(|l| format!("link {l}"))
        .collect();
    let sock = &cfg.interface.control_socket;
    if sock.exists() {
        std::fs::remove_file(sock)
            .map_err(|e| DaemonError::Io(format!("removing {}: {e}", sock.display())))?;
        removed.push(format!("socket {}", sock.display()));
    }
    Ok(removed)
}

/// The overlay's part of a starting daemon.
struct Group {
    creds: Credentials,
    section: OverlaySection,
}

impl Group {
    fn load(cfg: &Config) -> Result<Option<Self>, DaemonError> {
        let Some(section) = cfg.overlay.clone() else {
            return Ok(None);
        };
        let (creds, created) = Credentials::load(&section, SystemTime::now())?;
        if created {
            tracing::info!(
                "created the node identity {} (PeerId {})",
                section.identity.display(),
                creds.identity.peer_id()
            );
        }
        creds
            .check_configured(&cfg.interface.addresses)
            .map_err(DaemonError::Config)?;
        tracing::info!(
            "node {} ({}) of group {}: certificate verified",
            creds.cert.info().name,
            creds.identity.peer_id(),
            creds.group()
        );
        Ok(Some(Self { creds, section }))
    }

    fn node_config(
        &self,
        cfg: &Config,
        underlay: Option<&Underlay>,
    ) -> Result<overlay::NodeConfig, DaemonError> {
        let o = &self.section;
        let mut oc = overlay::OverlayConfig::new(
            self.creds.group().to_owned(),
            self.creds.ca.clone(),
            self.creds.cert.der().to_vec(),
            overlay::ids::keypair_of(&self.creds.identity),
        );
        oc.crl = self.creds.crl.clone();
        oc.listen = o.listen.clone();
        oc.bootstrap = o.bootstrap.clone();
        oc.neighbours = o.neighbours;
        oc.public_dht_server = o.public_dht_server;
        oc.public_kad_protocol =
            libp2p::StreamProtocol::try_from_owned(o.public_kad_protocol.clone())
                .map_err(|e| DaemonError::Config(format!("overlay.public_kad_protocol: {e}")))?;
        oc.announce_listen_addrs = o.announce_listen_addrs;
        let mut nc = overlay::NodeConfig::new(oc, cfg.interface.listen_port);
        nc.session = o.session_config();
        nc.data_ips = underlay.map(|u| u.local).into_iter().collect();
        Ok(nc)
    }
}

/// `vpn-control up`: runs in the foreground until SIGINT, SIGTERM or a
/// `down` request, then tears everything down.
pub async fn up(cfg: Config) -> Result<(), DaemonError> {
    let sock = cfg.interface.control_socket.clone();
    if control::request(&sock, &Request::Status, Duration::from_secs(2)).is_ok() {
        return Err(DaemonError::AlreadyRunning(sock.display().to_string()));
    }
    let group = Group::load(&cfg)?;
    let n = LinuxNet::new()?;
    let leftovers = cleanup(&n, &cfg).await?;
    if !leftovers.is_empty() {
        tracing::info!(
            "removed leftovers of an earlier run: {}",
            leftovers.join(", ")
        );
    }
    let underlay = underlay::find(&n, &cfg).await?;
    let mtu = choose_mtu(&cfg, underlay.as_ref());
    let desired = cfg.desired_state(now_unix_nanos());
    let ranges: Vec<Prefix> = group.as_ref().map_or_else(Vec::new, |g| g.creds.ranges());
    // Configured addresses, else the certificate's fixed ones (an
    // allocated address comes later through the view).
    let addresses: Vec<InterfaceAddress> = match &group {
        Some(g) if cfg.interface.addresses.is_empty() => g.creds.fixed_addresses(),
        _ => cfg.interface.addresses.clone(),
    };
    let mut targets: Vec<Prefix> = cfg
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter().copied())
        .collect();
    targets.extend(ranges.iter().copied());
    let layout = plane::Layout {
        routes: netdev::routes_needed(&addresses, &targets),
        addresses,
    };

    let plane = plane::start(&n, &cfg, underlay.as_ref(), mtu, &layout, &desired).await?;
    let path = plane.path;
    let udp = plane._udp;
    let spec = plane.spec;
    let dataplane = Arc::new(Mutex::new(plane.dataplane));
    tracing::info!(
        "{} up: data plane {}, mtu {mtu}, underlay {}, {} lab peer(s), data port {}",
        cfg.interface.name,
        match path {
            crate::dataplane::PathKind::Kernel => "kernel",
            crate::dataplane::PathKind::Userspace => "userspace",
        },
        underlay
            .as_ref()
            .map_or("none".to_owned(), |u| format!("{} ({})", u.name, u.local)),
        desired.peers.len(),
        cfg.interface.listen_port
    );

    let mut ctx = server::Context {
        interface: cfg.interface.name.clone(),
        path,
        mtu,
        desired: Mutex::new(desired.clone()),
        dataplane: dataplane.clone(),
        overlay: None,
    };
    // The overlay: started after the data plane (it announces the data
    // port), stopped before it.
    let mut node: Option<(overlay::OverlayNode, tokio::task::JoinHandle<()>)> = None;
    let mut runtime = None;
    let mut crl_watch = None;
    let mut renewal_task = None;
    let started: Result<(), DaemonError> = async {
        let Some(g) = &group else {
            return Ok(());
        };
        let (tx, rx) = mpsc::channel(group::PASS_UP_CAPACITY);
        dataplane
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_packet_sink(tx);
        let (handle, run) = overlay::node::start(g.node_config(&cfg, underlay.as_ref())?)
            .map_err(|e| DaemonError::Overlay(e.to_string()))?;
        let task = tokio::spawn(run);
        if let Ok(addrs) = handle.client().listen_addrs().await {
            for a in addrs {
                tracing::info!("overlay listening on {a}/p2p/{}", handle.peer_id());
            }
        }
        let shared: Arc<dyn GroupOverlay> = Arc::new(handle.clone());
        ctx.overlay = Some(server::OverlayContext {
            overlay: shared.clone(),
            status: Mutex::new(OverlayStatus {
                peer_id: handle.peer_id().to_string(),
                group: g.creds.group().to_owned(),
                ..Default::default()
            }),
        });
        if let Some(path) = g.section.crl.clone() {
            crl_watch = Some(tokio::spawn(watch_crl(path, handle.clone())));
        }
        renewal_task = renewal::spawn(&g.section, handle.clone());
        runtime = Some((shared, rx));
        node = Some((handle, task));
        Ok(())
    }
    .await;
    let ctx = Arc::new(ctx);
    let result = match started {
        Ok(()) => {
            let rt = runtime.map(|(shared, rx)| {
                group::GroupRuntime::new(
                    shared,
                    rx,
                    ranges,
                    desired,
                    cfg.interface.addresses.clone(),
                    spec,
                    ctx.clone(),
                )
            });
            serve_until_stopped(&cfg, ctx.clone(), rt.map(|r| r.run(&n))).await
        }
        Err(e) => Err(e),
    };

    // Teardown: release the overlay's claims (bounded), detach the data
    // plane (BPF links, twin threads and TUN fd), delete the links, remove
    // the socket.
    if let Some(t) = crl_watch {
        t.abort();
    }
    if let Some(t) = renewal_task {
        t.abort();
    }
    if let Some((handle, mut task)) = node {
        if tokio::time::timeout(OVERLAY_SHUTDOWN_WAIT, handle.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("the overlay did not shut down within {OVERLAY_SHUTDOWN_WAIT:?}");
        }
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
    drop(ctx);
    match Arc::try_unwrap(dataplane) {
        Ok(m) => drop(m.into_inner().unwrap_or_else(|e| e.into_inner())),
        Err(arc) => drop(arc),
    }
    drop(udp);
    let removed = cleanup(&n, &cfg).await;
    let (reply, run_err) = match result {
        Ok(reply) => (reply, None),
        Err(e) => (None, Some(e)),
    };
    if let Some(mut stream) = reply {
        let resp = match &removed {
            Ok(_) => Response::ok(),
            Err(e) => Response::error(e.to_string()),
        };
        let _ = server::write_response(&mut stream, &resp).await;
    }
    removed?;
    tracing::info!("{} down", cfg.interface.name);
    match run_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Re-reads the CRL when its file changes and hands a valid one to the
/// overlay (members it revokes are expelled at once).
async fn watch_crl(path: std::path::PathBuf, node: overlay::OverlayNode) {
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = stamp(&path);
    loop {
        tokio::time::sleep(CRL_POLL).await;
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        match vpn_pki::Crl::load(&path) {
            Ok(crl) => match node.set_crl(crl).await {
                Ok(()) => tracing::info!("loaded the new CRL {}", path.display()),
                Err(e) => tracing::warn!("new CRL {} refused: {e}", path.display()),
            },
            Err(e) => tracing::warn!("reading the changed CRL {}: {e}", path.display()),
        }
    }
}

async fn serve_until_stopped(
    cfg: &Config,
    ctx: Arc<server::Context>,
    runtime: Option<impl std::future::Future<Output = String>>,
) -> Result<Option<server::DownRequest>, DaemonError> {
    let sock = &cfg.interface.control_socket;
    let listener = server::bind(sock)
        .map_err(|e| DaemonError::Io(format!("control socket {}: {e}", sock.display())))?;
    let (down_tx, mut down_rx) = mpsc::channel(1);
    let task = tokio::spawn(server::serve(listener, ctx, down_tx));
    let mut int = signal(SignalKind::interrupt()).map_err(|e| DaemonError::Io(e.to_string()))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| DaemonError::Io(e.to_string()))?;
    let overlay = async {
        match runtime {
            Some(r) => r.await,
            None => std::future::pending().await,
        }
    };
    let reply = tokio::select! {
        _ = int.recv() => { tracing::info!("SIGINT: shutting down"); Ok(None) }
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); Ok(None) }
        r = down_rx.recv() => Ok(r),
        why = overlay => Err(DaemonError::Overlay(why)),
    };
    task.abort();
    let _ = task.await;
    reply
}

/// `vpn-control down`: asks a running daemon to stop; if none answers,
/// removes what a killed one left behind. Returns a one-line summary.
pub async fn down(cfg: &Config) -> Result<String, DaemonError> {
    let sock = cfg.interface.control_socket.clone();
    let asked = tokio::task::spawn_blocking(move || {
        control::request(&sock, &Request::Down, Duration::from_secs(30))
    })
    .await
    .map_err(|e| DaemonError::Io(e.to_string()))?;
    match asked {
        Ok(_) => Ok(format!(
            "{}: the daemon stopped and cleaned up",
            cfg.interface.name
        )),
        Err(ClientError::NotRunning { .. }) => {
            let n = LinuxNet::new()?;
            let removed = cleanup(&n, cfg).await?;
            Ok(if removed.is_empty() {
                format!(
                    "{}: no daemon running, nothing to clean up",
                    cfg.interface.name
                )
            } else {
                format!(
                    "{}: no daemon running; removed {}",
                    cfg.interface.name,
                    removed.join(", ")
                )
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `vpn-control status`.
pub fn status(cfg: &Config) -> Result<Status, DaemonError> {
    let r = control::request(
        &cfg.interface.control_socket,
        &Request::Status,
        Duration::from_secs(5),
    )?;
    r.status
        .ok_or_else(|| DaemonError::Io("the daemon sent no status".into()))
}
