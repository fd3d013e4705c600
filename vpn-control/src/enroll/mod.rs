//! Enrolment with the group server: `vpn-control join BLOB [--dir DIR]` and
//! `vpn-control renew --dir DIR [--force]` (`.work/server-contract.md`).
//!
//! **Join.** The blob ([`Blob`]) names the server, pins the SHA-256 of its
//! TLS certificate, and carries a single-use secret. [`join`] creates (or
//! keeps) the node identity `DIR/node.key` (0600), sends a CSR for its PeerId
//! with the secret over TLS to the pinned server ([`PinnedClient`]), checks
//! the answer with `vpn_pki` (CA of the blob's group, our PeerId, our node
//! name, signature, validity, CRL) and only then writes `node.crt`, `ca.crt`,
//! `ca.crl`, `server.json` and (if absent) `groupvpn.toml`, each atomically.
//!
//! **Renewal, for the daemon.** Without a person:
//!
//! ```no_run
//! # async fn f() -> Result<(), vpn_control::enroll::EnrollError> {
//! use std::time::SystemTime;
//! use vpn_control::enroll;
//! let dir = std::path::Path::new("/etc/groupvpn");
//! // When to act next (renew_after from the server, else 2/3 of the lifetime):
//! let at = enroll::renewal_time(dir)?;
//! if enroll::renewal_due(dir, SystemTime::now())? {
//!     // Blocking network I/O: from async code use renew_async.
//!     let out = enroll::renew_async(dir.to_owned(), false).await?;
//!     // out.renewed: node.crt was replaced -> reload the certificate;
//!     // out.crl_updated: ca.crl was replaced (the overlay re-reads it).
//! }
//! # let _ = at; Ok(()) }
//! ```
//!
//! [`renew`] also refreshes the CRL each time it is called (a newer CRL
//! number replaces `ca.crl`; an older one is ignored, so a replayed CRL
//! cannot unrevoke anyone). Call it at least daily so that `ca.crl` never
//! passes its nextUpdate (7 days on the group server).
//!
//! Limitation of the protocol: the secret is consumed when the server
//! commits the enrolment. If the connection breaks after that and before
//! the answer arrives, the blob is spent and the administrator must issue a
//! new one (the node key is kept, so nothing else is lost).

pub mod api;
/// The blob, shared with the group server (`vpn_api::blob`).
pub mod blob {
    pub use vpn_api::blob::*;
}
mod files;
pub mod https;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use vpn_pki::{
    csr_to_pem, fmt_time, make_csr, verify_member_cert, CaCertificate, Crl, MemberCert,
    NodeIdentity, PkiError,
};

pub use api::{GroupConfig, Issued};
pub use blob::{normalize_fingerprint, parse_fingerprint, Blob, BlobError, BLOB_PREFIX};
pub use files::{
    interface_addresses, render_config, NodeDir, ServerInfo, CA_CRL, CA_CRT, CONFIG_TOML, NODE_CRT,
    NODE_KEY, SERVER_JSON,
};
pub use https::{PinnedClient, Response};

/// Everything enrolment can refuse.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The blob does not parse.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// TCP to the server failed (or broke).
    #[error("cannot talk to the group server at {url}: {source}")]
    Connect {
        /// The server URL.
        url: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server's certificate is not the pinned one.
    #[error(
        "the server at {url} presented a TLS certificate with SHA-256 {got}, but the blob pins \
         {expected}: refusing to send anything to it (wrong server, an interception attempt, or \
         the server's certificate changed; ask the group administrator for a new blob)"
    )]
    PinMismatch {
        /// The server URL.
        url: String,
        /// The pinned digest (hex).
        expected: String,
        /// The presented certificate's digest (hex).
        got: String,
    },
    /// The TLS handshake failed for another reason.
    #[error("TLS with the group server at {url} failed: {reason}")]
    Tls {
        /// The server URL.
        url: String,
        /// rustls' reason.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("the group server refused ({status}): {message}{}", hint(*.status))]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's `error` text.
        message: String,
    },
    /// The answer is not what the API promises.
    #[error("unexpected answer from the group server: {0}")]
    Protocol(String),
    /// What the server issued does not verify: nothing was written.
    #[error("the group server's {what} does not verify, nothing was written: {source}")]
    BadIssued {
        /// Which object.
        what: &'static str,
        /// Why.
        #[source]
        source: PkiError,
    },
    /// Local PKI files (identity, certificates).
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A local file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The folder has not been enrolled (or lost files).
    #[error("{dir} is not an enrolled node folder ({reason}); run `vpn-control join BLOB --dir {dir}` first", dir = .dir.display())]
    NotEnrolled {
        /// The folder.
        dir: PathBuf,
        /// What is missing.
        reason: String,
    },
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => " (the server does not know this blob's secret: was it issued by this server?)",
        409 => " (this blob was already used; ask the group administrator for a new one)",
        403 => " (not allowed: the request was denied or the membership revoked)",
        413 => " (request too large)",
        _ => "",
    }
}

/// What [`join`] did.
#[derive(Clone, Debug)]
pub struct JoinReport {
    /// The node's PeerId.
    pub peer_id: String,
    /// Whether `node.key` was created now (else an existing one was kept).
    pub identity_created: bool,
    /// Node name in the certificate.
    pub name: String,
    /// Group.
    pub group: String,
    /// Interface addresses written to the configuration.
    pub addresses: Vec<String>,
    /// Certificate expiry.
    pub not_after: SystemTime,
    /// Files written.
    pub written: Vec<PathBuf>,
    /// `groupvpn.toml` already existed and was left as it was.
    pub config_kept: bool,
}

impl std::fmt::Display for JoinReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "joined group \"{}\" as {} ({}{}), address {}, certificate valid until {}",
            self.group,
            self.name,
            self.peer_id,
            if self.identity_created {
                ", new identity"
            } else {
                ""
            },
            if self.addresses.is_empty() {
                "allocated at start".to_owned()
            } else {
                self.addresses.join(", ")
            },
            fmt_time(self.not_after)
        )?;
        for p in &self.written {
            writeln!(f, "  wrote {}", p.display())?;
        }
        if self.config_kept {
            writeln!(
                f,
                "  kept the existing {CONFIG_TOML} (remove it and join again to regenerate it)"
            )?;
        }
        Ok(())
    }
}

/// Checked result of an enrol/renew answer.
struct Checked {
    cert: MemberCert,
    ca: CaCertificate,
    crl: Crl,
    renew_after: SystemTime,
}

/// Verifies what the server issued before anything is written: the CA is the
/// group's, the certificate is ours (PeerId), valid now, signed by that CA,
/// named as expected, and not on the (fresh, CA-signed) CRL.
fn check_issued(
    issued: &Issued,
    identity: &NodeIdentity,
    group: &str,
    name: &str,
    now: SystemTime,
) -> Result<Checked, EnrollError> {
    let bad = |what, source| EnrollError::BadIssued { what, source };
    let ca = CaCertificate::from_pem_or_der(issued.ca_pem.as_bytes())
        .map_err(|e| bad("CA certificate", e))?;
    if ca.group() != group {
        return Err(EnrollError::Protocol(format!(
            "the CA is for group {:?}, the blob for {group:?}",
            ca.group()
        )));
    }
    let cert = MemberCert::from_pem_or_der(issued.certificate_pem.as_bytes())
        .map_err(|e| bad("member certificate", e))?;
    let crl = Crl::from_pem_or_der(issued.crl_pem.as_bytes()).map_err(|e| bad("CRL", e))?;
    verify_member_cert(&cert, &ca, Some(&crl), &identity.peer_id(), group, now)
        .map_err(|e| bad("member certificate", e))?;
    if cert.info().name != name {
        return Err(EnrollError::Protocol(format!(
            "the certificate names the node {:?}, expected {name:?}",
            cert.info().name
        )));
    }
    let renew_after = api::parse_time("renew_after", &issued.renew_after)?;
    Ok(Checked {
        cert,
        ca,
        crl,
        renew_after,
    })
}

/// `vpn-control join`: enrols the node in `dir` with `blob_text` at `now`.
pub fn join(blob_text: &str, dir: &Path, now: SystemTime) -> Result<JoinReport, EnrollError> {
    let blob = Blob::parse(blob_text)?;
    let client = PinnedClient::new(&blob.server, blob.pin())?;
    join_with(&blob, &client, dir, now)
}

/// [`join`] with a given client (tests use short timeouts).
pub fn join_with(
    blob: &Blob,
    client: &PinnedClient,
    dir: &Path,
    now: SystemTime,
) -> Result<JoinReport, EnrollError> {
    let nd = NodeDir::new(dir);
    nd.create()?;
    let (identity, identity_created) = NodeIdentity::load_or_create(&nd.file(NODE_KEY))?;
    let csr_pem = csr_to_pem(&make_csr(&identity, &blob.node_name)?);
    let issued: Issued = client.post_json(
        api::ENROLL_PATH,
        &api::EnrollRequest {
            secret: blob.secret.clone(),
            csr_pem,
        },
    )?;
    let c = check_issued(&issued, &identity, &blob.group, &blob.node_name, now)?;
    let mut written = vec![
        nd.write_public(CA_CRT, c.ca.to_pem().as_bytes())?,
        nd.write_public(CA_CRL, c.crl.to_pem().as_bytes())?,
        nd.write_public(NODE_CRT, c.cert.to_pem().as_bytes())?,
        nd.write_server_info(&ServerInfo {
            server: blob.server.clone(),
            server_cert_sha256: blob.server_cert_sha256.clone(),
            group: blob.group.clone(),
            renew_after: Some(fmt_time(c.renew_after)),
        })?,
    ];
    let info = c.cert.info();
    let addresses = interface_addresses(info, &c.ca);
    let cfg_path = nd.file(CONFIG_TOML);
    let config_kept = cfg_path.exists();
    if !config_kept {
        let text = render_config(info, &blob.server, &addresses, &issued.group);
        written.push(nd.write_public(CONFIG_TOML, text.as_bytes())?);
    }
    Ok(JoinReport {
        peer_id: identity.peer_id().to_string(),
        identity_created,
        name: info.name.clone(),
        group: info.group.clone(),
        addresses,
        not_after: info.not_after,
        written,
        config_kept,
    })
}

/// When the node in `dir` should renew: the server's `renew_after` if
/// `server.json` has it, else two thirds into the certificate's lifetime
/// (never later than one hour before expiry).
pub fn renewal_time(dir: &Path) -> Result<SystemTime, EnrollError> {
    let nd = NodeDir::new(dir);
    let info = nd.server_info()?;
    let cert = load_cert(&nd)?;
    let i = cert.info();
    let life = i.not_after.duration_since(i.not_before).unwrap_or_default();
    let two_thirds = i.not_before + life * 2 / 3;
    let latest = i
        .not_after
        .checked_sub(Duration::from_secs(3600))
        .unwrap_or(i.not_before)
        .max(i.not_before);
    let server = match &info.renew_after {
        Some(t) => Some(api::parse_time("server.json renew_after", t)?),
        None => None,
    };
    Ok(server.unwrap_or(two_thirds).min(latest))
}

/// Whether the certificate in `dir` is due for renewal at `now`.
pub fn renewal_due(dir: &Path, now: SystemTime) -> Result<bool, EnrollError> {
    Ok(now >= renewal_time(dir)?)
}

fn load_cert(nd: &NodeDir) -> Result<MemberCert, EnrollError> {
    MemberCert::load(&nd.file(NODE_CRT)).map_err(|e| EnrollError::NotEnrolled {
        dir: nd.path().to_owned(),
        reason: e.to_string(),
    })
}

/// What [`renew`] did.
#[derive(Clone, Debug)]
pub struct RenewOutcome {
    /// `node.crt` was replaced.
    pub renewed: bool,
    /// Expiry of the certificate now in `node.crt`.
    pub not_after: SystemTime,
    /// When the next renewal is due.
    pub renew_after: SystemTime,
    /// `ca.crl` was replaced by a newer CRL.
    pub crl_updated: bool,
    /// CRL number of `ca.crl` now.
    pub crl_number: Option<u64>,
}

impl std::fmt::Display for RenewOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.renewed {
            write!(f, "renewed the certificate")?;
        } else {
            write!(f, "certificate not due for renewal")?;
        }
        writeln!(
            f,
            " (valid until {}, renewal due {})",
            fmt_time(self.not_after),
            fmt_time(self.renew_after)
        )?;
        let n = self
            .crl_number
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        if self.crl_updated {
            writeln!(f, "updated the CRL to number {n}")
        } else {
            writeln!(f, "CRL is current (number {n})")
        }
    }
}

/// `vpn-control renew`: renews the certificate in `dir` if due at `now` (or
/// `force`), and refreshes the CRL. Blocking (network I/O); see
/// [`renew_async`] for async callers.
pub fn renew(dir: &Path, force: bool, now: SystemTime) -> Result<RenewOutcome, EnrollError> {
    let nd = NodeDir::new(dir);
    let mut server = nd.server_info()?;
    let pin = parse_fingerprint(&server.server_cert_sha256).map_err(|reason| {
        EnrollError::NotEnrolled {
            dir: dir.to_owned(),
            reason: format!("{SERVER_JSON}: {reason}"),
        }
    })?;
    let client = PinnedClient::new(&server.server, pin)?;
    let identity = NodeIdentity::load(&nd.file(NODE_KEY))?;
    let ca = CaCertificate::load(&nd.file(CA_CRT)).map_err(|e| EnrollError::NotEnrolled {
        dir: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let mut cert = load_cert(&nd)?;
    let old_crl = Crl::load(&nd.file(CA_CRL)).ok();
    let mut renewed = false;
    let mut new_crl = None;
    if force || renewal_due(dir, now)? {
        let csr_pem = csr_to_pem(&make_csr(&identity, &cert.info().name)?);
        let request = api::RenewRequest {
            csr_pem,
            group: Some(server.group.clone()),
        };
        let issued: Issued = client.post_json(api::RENEW_PATH, &request)?;
        let c = check_issued(&issued, &identity, &server.group, &cert.info().name, now)?;
        if c.ca.der() != ca.der() {
            return Err(EnrollError::Protocol(
                "the server answered with another group CA than ca.crt; join the group again"
                    .into(),
            ));
        }
        if c.cert.info().address != cert.info().address {
            return Err(EnrollError::Protocol(format!(
                "the renewed certificate has address {}, the current one {}",
                c.cert.info().address,
                cert.info().address
            )));
        }
        nd.write_public(NODE_CRT, c.cert.to_pem().as_bytes())?;
        server.renew_after = Some(fmt_time(c.renew_after));
        nd.write_server_info(&server)?;
        cert = c.cert;
        renewed = true;
        new_crl = Some(c.crl);
    }
    if new_crl.is_none() {
        let answer: api::CrlAnswer = client.get_json(&api::crl_path(&server.group))?;
        let crl = Crl::from_pem_or_der(answer.crl_pem.as_bytes()).map_err(|e| {
            EnrollError::BadIssued {
                what: "CRL",
                source: e,
            }
        })?;
        crl.verify(&ca, now).map_err(|e| EnrollError::BadIssued {
            what: "CRL",
            source: e,
        })?;
        new_crl = Some(crl);
    }
    let new_crl = new_crl.expect("set above");
    let crl_updated = old_crl.as_ref().is_none_or(|old| new_crl.supersedes(old));
    let crl_number = if crl_updated {
        nd.write_public(CA_CRL, new_crl.to_pem().as_bytes())?;
        new_crl.number()
    } else {
        old_crl.as_ref().and_then(Crl::number)
    };
    Ok(RenewOutcome {
        renewed,
        not_after: cert.info().not_after,
        renew_after: renewal_time(dir)?,
        crl_updated,
        crl_number,
    })
}

/// [`renew`] at the current time on a blocking thread, for the daemon's
/// async runtime.
pub async fn renew_async(dir: PathBuf, force: bool) -> Result<RenewOutcome, EnrollError> {
    tokio::task::spawn_blocking(move || renew(&dir, force, SystemTime::now()))
        .await
        .map_err(|e| EnrollError::Protocol(format!("renewal task failed: {e}")))?
}

#[cfg(test)]
mod tests;
