//! The control socket server.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::control::{overlay_counters, OverlayStatus, PendingStatus, Request, Response, Status};
use crate::dataplane::{Dataplane, DesiredState, PathKind};
use crate::overlay::GroupOverlay;

/// What the status answer is built from.
pub struct Context {
    pub interface: String,
    pub path: PathKind,
    pub mtu: u32,
    /// The state last applied to the data plane.
    pub desired: Mutex<DesiredState>,
    pub dataplane: Arc<Mutex<Box<dyn Dataplane>>>,
    pub overlay: Option<OverlayContext>,
}

/// The overlay part of the status.
pub struct OverlayContext {
    pub overlay: Arc<dyn GroupOverlay>,
    /// Fixed fields and what the daemon loop keeps current (everything but
    /// the counters, fetched per request).
    pub status: Mutex<OverlayStatus>,
}

/// How long `status` waits for the overlay's counters.
const STATS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Context {
    pub async fn status(&self) -> Result<Status, String> {
        let (stats, pass_up) = {
            let dp = lock(&self.dataplane);
            (dp.stats().map_err(|e| e.to_string())?, dp.pass_up_stats())
        };
        let mut st = Status::build(
            &self.interface,
            self.path,
            self.mtu,
            &lock(&self.desired),
            &stats,
        );
        if let Some(o) = &self.overlay {
            let stats = match tokio::time::timeout(STATS_TIMEOUT, o.overlay.stats()).await {
                Ok(Ok(s)) => Some(s),
                Ok(Err(e)) => {
                    tracing::debug!("overlay counters: {e}");
                    None
                }
                Err(_) => None,
            };
            let mut os = lock(&o.status).clone();
            if let Some(s) = stats {
                os.counters = overlay_counters(&s);
                // Every verified member (the view only has those with keys).
                os.members = s.members;
                os.connected = s.connected_members;
                os.neighbours = s.neighbours;
            }
            os.pending = PendingStatus {
                passed_up: pass_up.passed,
                pass_up_dropped: pass_up.dropped,
                ..os.pending
            };
            st.overlay = Some(os);
        }
        Ok(st)
    }
}

/// Binds the socket with mode 0600 (creating its directory).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // umask for the bind itself, so the socket is never reachable by others.
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let l = l?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// A `down` request: the stream to answer once everything is torn down.
pub type DownRequest = UnixStream;

/// Accepts connections until the task is aborted.
pub async fn serve(listener: UnixListener, ctx: Arc<Context>, down: mpsc::Sender<DownRequest>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        let down = down.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &ctx, &down).await {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

async fn handle(
    mut stream: UnixStream,
    ctx: &Context,
    down: &mpsc::Sender<DownRequest>,
) -> std::io::Result<()> {
    let mut line = String::new();
    let mut reader = BufReader::new(&mut stream);
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        reader.read_line(&mut line),
    )
    .await;
    let resp = match read {
        Err(_) => return Ok(()),
        Ok(r) => {
            r?;
            match serde_json::from_str::<Request>(line.trim()) {
                Ok(Request::Status) => match ctx.status().await {
                    Ok(s) => Response::status(s),
                    Err(e) => Response::error(e),
                },
                Ok(Request::Down) => {
                    tracing::info!("stop requested over the control socket");
                    // The main task answers after the teardown.
                    let _ = down.send(stream).await;
                    return Ok(());
                }
                Err(e) => Response::error(format!("bad request: {e}")),
            }
        }
    };
    write_response(&mut stream, &resp).await
}

pub async fn write_response(stream: &mut UnixStream, resp: &Response) -> std::io::Result<()> {
    let mut out = serde_json::to_string(resp).map_err(std::io::Error::other)?;
    out.push('\n');
    stream.write_all(out.as_bytes()).await?;
    stream.flush().await
}
