//! HTTPS: the certificate (configured, or self-signed on first start and
//! kept in the data directory) and a listener that hands axum connections
//! whose TLS handshake has completed.

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use crate::conn::{Guarded, IDLE_TIMEOUT, MAX_CONNECTIONS};

/// Self-signed certificate file in the data directory.
pub const TLS_CERT_FILE: &str = "tls.crt";
/// Its key.
pub const TLS_KEY_FILE: &str = "tls.key";

/// How long a client may take to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and key the server presents.
pub struct TlsIdentity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The key.
    pub key: PrivateKeyDer<'static>,
}

impl TlsIdentity {
    /// SHA-256 (64 lower-case hex) of the leaf certificate's DER: what
    /// blobs pin.
    pub fn sha256(&self) -> String {
        crate::crypto::sha256_hex(self.chain.first().map_or(&[][..], |c| c.as_ref()))
    }
}

fn read_pem(path: &Path) -> Result<Vec<pem_item::Item>> {
    let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    pem_item::parse(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Minimal PEM reading through rustls-pki-types.
mod pem_item {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    pub enum Item {
        Cert(CertificateDer<'static>),
        Key(PrivateKeyDer<'static>),
    }

    pub fn parse(text: &[u8]) -> anyhow::Result<Vec<Item>> {
        let mut out = Vec::new();
        for c in CertificateDer::pem_slice_iter(text) {
            out.push(Item::Cert(c?));
        }
        if let Ok(k) = PrivateKeyDer::from_pem_slice(text) {
            out.push(Item::Key(k));
        }
        Ok(out)
    }
}

/// Loads `cert`/`key` (PEM).
pub fn load(cert: &Path, key: &Path) -> Result<TlsIdentity> {
    let chain: Vec<_> = read_pem(cert)?
        .into_iter()
        .filter_map(|i| match i {
            pem_item::Item::Cert(c) => Some(c),
            pem_item::Item::Key(_) => None,
        })
        .collect();
    if chain.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key = read_pem(key)?
        .into_iter()
        .find_map(|i| match i {
            pem_item::Item::Key(k) => Some(k),
            pem_item::Item::Cert(_) => None,
        })
        .with_context(|| format!("{} holds no private key", key.display()))?;
    Ok(TlsIdentity { chain, key })
}

/// `DIR/tls.crt` and `DIR/tls.key`, generated (ECDSA P-256, self-signed,
/// valid 10 years, names `localhost`, the loopback addresses and `names`)
/// if missing.
pub fn load_or_create(dir: &Path, names: &[String]) -> Result<TlsIdentity> {
    let cert_path = dir.join(TLS_CERT_FILE);
    let key_path = dir.join(TLS_KEY_FILE);
    if cert_path.exists() || key_path.exists() {
        return load(&cert_path, &key_path);
    }
    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    for n in names {
        if !sans.contains(n) {
            sans.push(n.clone());
        }
    }
    let key = rcgen::KeyPair::generate().context("generating the TLS key")?;
    let mut params = rcgen::CertificateParams::new(sans).context("TLS certificate names")?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "GroupVPN group server");
    params.distinguished_name = dn;
    let today = std::time::SystemTime::now();
    let secs = crate::db::unix_secs(today);
    params.not_before = time_from_unix(secs - 86_400)?;
    params.not_after = time_from_unix(secs + 10 * 365 * 86_400)?;
    let cert = params
        .self_signed(&key)
        .context("signing the TLS certificate")?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("creating {}", key_path.display()))?;
    f.write_all(key.serialize_pem().as_bytes())?;
    f.sync_all()?;
    vpn_pki::write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)
        .with_context(|| format!("writing {}", cert_path.display()))?;
    load(&cert_path, &key_path)
}

fn time_from_unix(secs: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(secs).context("certificate time")
}

/// rustls server configuration (ring, TLS 1.2 and 1.3, HTTP/1.1).
pub fn server_config(id: TlsIdentity) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(id.chain, id.key)
        .context("TLS certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The client address of a connection (for rate limits and logs).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// A served connection.
pub type Conn = Guarded<TlsStream<TcpStream>>;

/// Accepts TCP connections (at most [`MAX_CONNECTIONS`] open) and
/// completes their TLS handshakes in separate tasks (a slow client does
/// not hold up others).
pub struct TlsListener {
    local: SocketAddr,
    rx: mpsc::Receiver<(Conn, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `tcp`.
    pub fn new(tcp: TcpListener, cfg: Arc<rustls::ServerConfig>) -> Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                let (sock, peer) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        eprintln!("vpn-server: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = sock.set_nodelay(true);
                let acceptor = acceptor.clone();
                let conn_tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await
                    {
                        let conn = Guarded::new(tls, slot, IDLE_TIMEOUT);
                        let _ = conn_tx.send((conn, peer)).await;
                    }
                });
                if tx.is_closed() {
                    break;
                }
            }
        });
        Ok(Self { local, rx })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task ended (it never does while the listener
            // lives): wait forever rather than spin.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}
