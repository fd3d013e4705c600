//! The node daemon: `up` (foreground, until SIGINT/SIGTERM or a `down`
//! request), `down` (stop a running daemon, or clean up after a killed
//! one) and `status`.

mod plane;
mod server;
mod underlay;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::control::{self, ClientError, Request, Response, Status};
use crate::dataplane::DataplaneError;
use crate::netdev::{self, linux::LinuxNet, NetConfig, NetError};

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
}

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

/// `vpn-control up`: runs in the foreground until SIGINT, SIGTERM or a
/// `down` request, then tears everything down.
pub async fn up(cfg: Config) -> Result<(), DaemonError> {
    let sock = cfg.interface.control_socket.clone();
    if control::request(&sock, &Request::Status, Duration::from_secs(2)).is_ok() {
        return Err(DaemonError::AlreadyRunning(sock.display().to_string()));
    }
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
    let allowed: Vec<_> = cfg
        .peers
        .iter()
        .flat_map(|p| p.allowed_ips.iter().copied())
        .collect();
    let routes = netdev::routes_needed(&cfg.interface.addresses, &allowed);

    let plane = plane::start(&n, &cfg, underlay.as_ref(), mtu, &routes, &desired).await?;
    let path = plane.path;
    let udp = plane._udp;
    let dataplane = Arc::new(Mutex::new(plane.dataplane));
    tracing::info!(
        "{} up: data plane {}, mtu {mtu}, underlay {}, {} peer(s), data port {}",
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

    let result = serve_until_stopped(&cfg, path, mtu, desired, dataplane.clone()).await;

    // Teardown: detach the data plane (BPF links, twin threads and TUN fd),
    // delete the links, remove the socket.
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

async fn serve_until_stopped(
    cfg: &Config,
    path: crate::dataplane::PathKind,
    mtu: u32,
    desired: crate::dataplane::DesiredState,
    dataplane: Arc<Mutex<Box<dyn crate::dataplane::Dataplane>>>,
) -> Result<Option<server::DownRequest>, DaemonError> {
    let sock = &cfg.interface.control_socket;
    let listener = server::bind(sock)
        .map_err(|e| DaemonError::Io(format!("control socket {}: {e}", sock.display())))?;
    let ctx = Arc::new(server::Context {
        interface: cfg.interface.name.clone(),
        path,
        mtu,
        desired,
        dataplane,
    });
    let (down_tx, mut down_rx) = mpsc::channel(1);
    let task = tokio::spawn(server::serve(listener, ctx, down_tx));
    let mut int = signal(SignalKind::interrupt()).map_err(|e| DaemonError::Io(e.to_string()))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| DaemonError::Io(e.to_string()))?;
    let reply = tokio::select! {
        _ = int.recv() => { tracing::info!("SIGINT: shutting down"); None }
        _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        r = down_rx.recv() => r,
    };
    task.abort();
    let _ = task.await;
    Ok(reply)
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
