//! Starting the server: data directory, keys, database, TLS, listener.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::config::Config;
use crate::crypto::{Passwords, ServerKey};
use crate::db::Db;
use crate::ratelimit::RateLimiter;
use crate::state::AppState;
use crate::tls::{self, ClientAddr, TlsIdentity};

/// Creates the data directory (0700) if missing.
pub fn ensure_data_dir(cfg: &Config) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if !cfg.data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.data_dir)
            .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    }
    Ok(())
}

/// The TLS identity: configured files, or the self-signed one.
pub fn tls_identity(cfg: &Config) -> Result<TlsIdentity> {
    match &cfg.tls {
        Some((c, k)) => tls::load(c, k),
        None => {
            let mut names = Vec::new();
            if !cfg.listen.ip().is_unspecified() {
                names.push(cfg.listen.ip().to_string());
            }
            if let Some(host) = cfg.public_url.as_deref().and_then(url_host) {
                names.push(host);
            }
            tls::load_or_create(&cfg.data_dir, &names)
        }
    }
}

/// The host of `https://HOST[:PORT][/...]` (brackets of IPv6 removed).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let hostport = rest.split('/').next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().map(str::to_owned);
    }
    Some(hostport.split(':').next()?.to_owned())
}

/// Opens everything the server and the admin commands share.
pub async fn open_state(cfg: Config, tls_sha256: String, public_url: String) -> Result<AppState> {
    ensure_data_dir(&cfg)?;
    let key = ServerKey::load_or_create(&cfg.data_dir)?;
    let db = Db::open(&cfg.database).await?;
    check_server_key(&db, &key).await?;
    let passwords = Passwords::new(cfg.argon2)?;
    let limiter = RateLimiter::new(Duration::from_secs(cfg.limits.window_secs));
    Ok(AppState {
        db,
        cfg,
        key,
        passwords,
        hash_slots: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
        ),
        limiter,
        public_url,
        tls_sha256,
    })
}

/// Refuses to run with a server key that cannot open the CA keys already
/// in the database (a lost `server.key` replaced by a new one, or the
/// wrong `GROUPVPN_SERVER_KEY`): every signature would fail.
async fn check_server_key(db: &Db, key: &ServerKey) -> Result<()> {
    let mut c = db.pool().acquire().await?;
    let sealed = crate::db::groups::any_sealed_key(&mut c)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some((group, enc)) = sealed {
        key.open(&enc, &group).map_err(|_| {
            anyhow::anyhow!(
                "the server key cannot decrypt the CA key of group {group:?}: restore the \
                 server.key (or GROUPVPN_SERVER_KEY) that belongs to this database \
                 (see docs/group-server.md, backup)"
            )
        })?;
    }
    Ok(())
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> Result<()> {
    ensure_data_dir(&cfg)?;
    let id = tls_identity(&cfg)?;
    let fingerprint = id.sha256();
    let tcp = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let local = tcp.local_addr()?;
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{local}"));
    let st = Arc::new(open_state(cfg, fingerprint.clone(), public_url).await?);
    let listener = tls::TlsListener::new(tcp, tls::server_config(id)?)?;
    let app = crate::app::router(Arc::clone(&st));
    spawn_housekeeping(Arc::clone(&st));
    eprintln!(
        "vpn-server: data {}, database {}",
        st.cfg.data_dir.display(),
        crate::db::redact(&st.cfg.database)
    );
    println!("vpn-server listening on https://{local} (tls sha256 {fingerprint})");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<ClientAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving")?;
    st.db.close().await;
    Ok(())
}

fn spawn_housekeeping(st: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            if let Ok(mut c) = st.db.pool().acquire().await {
                let _ = crate::db::sessions::purge_expired(&mut c, crate::db::now_secs()).await;
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
