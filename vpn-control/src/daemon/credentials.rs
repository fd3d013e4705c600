//! Loading the node's identity, certificate, CA and CRL for `[overlay]`,
//! with errors that name the file, and refusing to start on a certificate
//! that does not verify.

use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use vpn_pki::{AddressAssignment, CaCertificate, Crl, MemberCert, NodeIdentity, PkiError};

use crate::config::{InterfaceAddress, OverlaySection};
use crate::dataplane::Prefix;

/// Everything the overlay needs from files.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub identity: NodeIdentity,
    pub cert: MemberCert,
    pub ca: CaCertificate,
    pub crl: Option<Crl>,
}

/// A credential problem: which file (by its config key) and what.
#[derive(Debug, thiserror::Error)]
#[error("overlay.{key} ({path}): {problem}")]
pub struct CredentialError {
    pub key: &'static str,
    pub path: String,
    pub problem: String,
}

fn err(key: &'static str, path: &Path, e: impl std::fmt::Display) -> CredentialError {
    CredentialError {
        key,
        path: path.display().to_string(),
        problem: e.to_string(),
    }
}

/// What a `PkiError` says without the path prefix the file loaders add.
fn problem(e: &PkiError) -> String {
    match e {
        PkiError::Io { source, .. } => source.to_string(),
        PkiError::CorruptFile { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

impl Credentials {
    /// Loads (and on first start creates, mode 0600) the identity, loads
    /// the certificate, CA and CRL, and verifies the certificate against
    /// them for this node's PeerId now.
    pub fn load(o: &OverlaySection, now: SystemTime) -> Result<(Self, bool), CredentialError> {
        let (identity, created) = NodeIdentity::load_or_create(&o.identity)
            .map_err(|e| err("identity", &o.identity, problem(&e)))?;
        let cert = MemberCert::load(&o.certificate).map_err(|e| {
            err(
                "certificate",
                &o.certificate,
                format!(
                    "{} (this node's PeerId, to sign a certificate for: {})",
                    problem(&e),
                    identity.peer_id()
                ),
            )
        })?;
        let ca = CaCertificate::load(&o.ca).map_err(|e| err("ca", &o.ca, problem(&e)))?;
        let crl = match &o.crl {
            Some(p) => Some(Crl::load(p).map_err(|e| err("crl", p, problem(&e)))?),
            None => None,
        };
        let group = cert.info().group.clone();
        vpn_pki::verify_member_cert(&cert, &ca, crl.as_ref(), &identity.peer_id(), &group, now)
            .map_err(|e| {
                let hint = match e {
                    PkiError::PeerMismatch { .. } => format!(
                        " (the certificate is for another node key than {}; sign one for this \
                     node's PeerId {})",
                        o.identity.display(),
                        identity.peer_id()
                    ),
                    PkiError::CrlWrongCa { .. }
                    | PkiError::CrlBadSignature
                    | PkiError::CrlStale { .. }
                    | PkiError::CrlNotYetValid { .. } => {
                        format!(
                            " (CRL {})",
                            o.crl.as_deref().unwrap_or(Path::new("")).display()
                        )
                    }
                    _ => String::new(),
                };
                err(
                    "certificate",
                    &o.certificate,
                    format!("this node's own certificate does not verify: {e}{hint}"),
                )
            })?;
        Ok((
            Self {
                identity,
                cert,
                ca,
                crl,
            },
            created,
        ))
    }

    /// The group's name (from the certificate).
    pub fn group(&self) -> &str {
        &self.cert.info().group
    }

    /// The group's address ranges as prefixes (routed into the interface).
    pub fn ranges(&self) -> Vec<Prefix> {
        self.ca
            .ranges()
            .iter()
            .map(|r| Prefix {
                addr: r.addr(),
                len: r.prefix(),
            })
            .collect()
    }

    /// The certificate's fixed addresses with their range's prefix length
    /// (empty for a certificate that allocates).
    pub fn fixed_addresses(&self) -> Vec<InterfaceAddress> {
        let AddressAssignment::Fixed(addrs) = &self.cert.info().address else {
            return Vec::new();
        };
        addrs
            .iter()
            .filter_map(|a| {
                let r = self.ca.ranges().iter().find(|r| r.contains(*a))?;
                Some(InterfaceAddress {
                    addr: *a,
                    len: r.prefix(),
                })
            })
            .collect()
    }

    /// Checks configured `interface.addresses` against the certificate:
    /// with fixed addresses they must be exactly those (any prefix length);
    /// a certificate that allocates takes its address from the overlay.
    pub fn check_configured(&self, configured: &[InterfaceAddress]) -> Result<(), String> {
        if configured.is_empty() {
            return Ok(());
        }
        match &self.cert.info().address {
            AddressAssignment::Allocate => Err(
                "interface.addresses: the certificate allocates its address from the group \
                 range; leave interface.addresses out"
                    .into(),
            ),
            AddressAssignment::Fixed(fixed) => {
                let have: Vec<IpAddr> = configured.iter().map(|a| a.addr).collect();
                let mut want = fixed.clone();
                let mut h = have.clone();
                want.sort();
                h.sort();
                if h == want {
                    Ok(())
                } else {
                    Err(format!(
                        "interface.addresses: {} do not match the certificate's address(es) {}",
                        fmt_list(&have),
                        fmt_list(fixed)
                    ))
                }
            }
        }
    }
}

fn fmt_list(a: &[IpAddr]) -> String {
    a.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vpn_pki::{CaParams, CertProfile, GroupCa, IpRange, Role};

    use super::*;

    struct Files {
        dir: tempfile::TempDir,
        ca: GroupCa,
    }

    fn files() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let ca = GroupCa::init(
            &CaParams {
                group: "lab".into(),
                ranges: vec![IpRange::new("10.77.0.0".parse().unwrap(), 24).unwrap()],
                validity: Duration::from_secs(86_400),
            },
            SystemTime::now(),
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.certificate().to_pem()).unwrap();
        Files { dir, ca }
    }

    fn sign(f: &Files, id: &NodeIdentity, address: AddressAssignment) {
        let cert =
            f.ca.issue(
                &id.public_key(),
                &CertProfile {
                    name: "node-a".into(),
                    address,
                    roles: vec![Role::Member],
                    validity: Duration::from_secs(3600),
                },
                SystemTime::now(),
            )
            .unwrap();
        std::fs::write(f.dir.path().join("node.crt"), cert.to_pem()).unwrap();
    }

    fn section(f: &Files) -> OverlaySection {
        let path = f.dir.path().join("node.toml");
        std::fs::write(
            &path,
            "[interface]\nname = \"vpn0\"\n[overlay]\nidentity = \"keys/node.key\"\n\
             certificate = \"node.crt\"\nca = \"ca.crt\"\n",
        )
        .unwrap();
        crate::config::load(&path).unwrap().overlay.unwrap()
    }

    #[test]
    fn first_start_creates_the_key_then_refuses_a_foreign_certificate() {
        use std::os::unix::fs::PermissionsExt;
        let f = files();
        let o = section(&f);
        // Not there yet: created (0600), and the certificate (for another
        // key) is refused, naming the file and the PeerId to sign.
        sign(&f, &NodeIdentity::generate(), AddressAssignment::Allocate);
        let e = Credentials::load(&o, SystemTime::now()).unwrap_err();
        assert_eq!(e.key, "certificate");
        assert!(e.to_string().contains("node.crt"), "{e}");
        assert!(e.to_string().contains("does not verify"), "{e}");
        let mode = std::fs::metadata(&o.identity).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let id = NodeIdentity::load(&o.identity).unwrap();
        assert!(e.to_string().contains(&id.peer_id().to_string()), "{e}");
        // Signed for this key: accepted; the key is reused, not recreated.
        sign(
            &f,
            &id,
            AddressAssignment::Fixed(vec!["10.77.0.5".parse().unwrap()]),
        );
        let (c, created) = Credentials::load(&o, SystemTime::now()).unwrap();
        assert!(!created);
        assert_eq!(c.identity.peer_id(), id.peer_id());
        assert_eq!(c.group(), "lab");
        assert_eq!(
            c.ranges(),
            vec![crate::config::values::parse_prefix("10.77.0.0/24").unwrap()]
        );
        assert_eq!(c.fixed_addresses(), vec!["10.77.0.5/24".parse().unwrap()]);
        c.check_configured(&[]).unwrap();
        c.check_configured(&["10.77.0.5/16".parse().unwrap()])
            .unwrap();
        let e = c
            .check_configured(&["10.77.0.6/24".parse().unwrap()])
            .unwrap_err();
        assert!(e.contains("10.77.0.5"), "{e}");
        // Expired (checked at a later `now`).
        let later = SystemTime::now() + Duration::from_secs(7200);
        let e = Credentials::load(&o, later).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
    }

    #[test]
    fn missing_and_corrupt_files_are_named() {
        let f = files();
        let o = section(&f);
        let e = Credentials::load(&o, SystemTime::now()).unwrap_err();
        assert_eq!(e.key, "certificate");
        assert!(e.to_string().starts_with("overlay.certificate ("), "{e}");
        assert!(e.to_string().contains("node.crt"), "{e}");
        let id = NodeIdentity::load(&o.identity).unwrap();
        assert!(e.to_string().contains(&id.peer_id().to_string()), "{e}");
        std::fs::write(f.dir.path().join("node.crt"), "garbage").unwrap();
        std::fs::write(f.dir.path().join("ca.crt"), "garbage").unwrap();
        let e = Credentials::load(&o, SystemTime::now()).unwrap_err();
        assert_eq!(e.key, "certificate", "{e}");
        sign(&f, &id, AddressAssignment::Allocate);
        let e = Credentials::load(&o, SystemTime::now()).unwrap_err();
        assert_eq!(e.key, "ca", "{e}");
        assert!(e.to_string().contains("ca.crt"), "{e}");
    }
}
