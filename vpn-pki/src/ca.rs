//! The group CA: a self-signed Ed25519 X.509 v3 CA certificate carrying the
//! group name (subject O and CN, and the group extension with the address
//! ranges), and its key.
//!
//! CA directory layout (see `docs/pki.md`): `ca.crt` (PEM, 0644), `ca.key`
//! (PKCS#8 PEM, 0600, never overwritten), `revoked.txt` and `crl-number`
//! (maintained by [`crate::crl::RevocationStore`]).

use std::fs;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};
use x509_parser::prelude::FromDer as _;

use crate::ext::{GroupExt, OID_GROUP};
use crate::files::{self, PEM_CERT, PEM_KEY};
use crate::group::{fmt_ranges, validate_group_name, IpRange};
use crate::time::{from_asn1, to_offset, truncate};
use crate::x509::{self as xh, Serial};
use crate::PkiError;

/// File name of the CA certificate in a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA key in a CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// Certificates are backdated by this much to tolerate clock skew between
/// the issuer and the nodes.
pub const BACKDATE: Duration = Duration::from_secs(300);

/// What `ca init` needs.
#[derive(Clone, Debug)]
pub struct CaParams {
    /// The group's name.
    pub group: String,
    /// Its address ranges: one IPv4 range, optionally one IPv6 range.
    pub ranges: Vec<IpRange>,
    /// How long the CA is valid.
    pub validity: Duration,
}

/// A parsed, self-consistent group CA certificate: the trust anchor that
/// nodes verify members against. Holds no secret.
#[derive(Clone, Debug)]
pub struct CaCertificate {
    der: Vec<u8>,
    subject_raw: Vec<u8>,
    subject: String,
    key_id: Option<Vec<u8>>,
    public_key: [u8; 32],
    group: String,
    ranges: Vec<IpRange>,
    not_before: SystemTime,
    not_after: SystemTime,
    serial: Serial,
}

impl CaCertificate {
    /// Parses and checks a CA certificate: Ed25519, self-signed (signature
    /// verified), CA:TRUE with keyCertSign and cRLSign, a valid group
    /// extension whose name matches the subject O.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        const W: &str = "CA certificate";
        let (rest, c) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|e| PkiError::malformed(W, e))?;
        if !rest.is_empty() {
            return Err(PkiError::malformed(W, "trailing bytes"));
        }
        xh::require_ed25519_sig(&c.signature_algorithm, W)?;
        let public_key = xh::ed25519_key(c.public_key(), W)?;
        if !xh::ed25519_verify(
            &public_key,
            c.tbs_certificate.as_ref(),
            &c.signature_value.data,
        ) {
            return Err(PkiError::malformed(W, "self-signature does not verify"));
        }
        let bc = c
            .basic_constraints()
            .map_err(|e| PkiError::malformed(W, e))?;
        if !bc.is_some_and(|b| b.value.ca) {
            return Err(PkiError::malformed(
                W,
                "not a CA (basicConstraints CA:FALSE)",
            ));
        }
        let ku = c.key_usage().map_err(|e| PkiError::malformed(W, e))?;
        if !ku.is_some_and(|k| k.value.key_cert_sign() && k.value.crl_sign()) {
            return Err(PkiError::malformed(
                W,
                "key usage lacks keyCertSign/cRLSign",
            ));
        }
        let ext = xh::find_ext(c.extensions(), &OID_GROUP)
            .ok_or_else(|| PkiError::malformed(W, "no GroupVPN group extension"))?;
        let g = GroupExt::decode(ext)?;
        validate_group_name(&g.group).map_err(|e| PkiError::malformed(W, e))?;
        let org = c
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok());
        if org != Some(g.group.as_str()) {
            return Err(PkiError::malformed(
                W,
                "subject O differs from the group extension",
            ));
        }
        if !g.ranges.iter().any(IpRange::is_ipv4) {
            return Err(PkiError::malformed(W, "group has no IPv4 range"));
        }
        Ok(Self {
            der: der.to_vec(),
            subject_raw: c.subject().as_raw().to_vec(),
            subject: c.subject().to_string(),
            key_id: xh::subject_key_id(c.extensions()),
            public_key,
            group: g.group,
            ranges: g.ranges,
            not_before: from_asn1(c.validity().not_before),
            not_after: from_asn1(c.validity().not_after),
            serial: Serial::from_bytes(c.raw_serial()),
        })
    }

    /// Parses PEM or DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, PkiError> {
        let der = files::pem_or_der(bytes, PEM_CERT)
            .map_err(|r| PkiError::malformed("CA certificate", r))?;
        Self::from_der(&der)
    }

    /// Loads a `ca.crt` (PEM or DER).
    pub fn load(path: &Path) -> Result<Self, PkiError> {
        let der = files::read_pem_or_der(path, PEM_CERT)?;
        Self::from_der(&der).map_err(|e| PkiError::corrupt(path, e.to_string()))
    }

    /// DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM encoding.
    pub fn to_pem(&self) -> String {
        files::to_pem(PEM_CERT, &self.der)
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The group's address ranges.
    pub fn ranges(&self) -> &[IpRange] {
        &self.ranges
    }

    /// The IPv4 range.
    pub fn range_v4(&self) -> Option<IpRange> {
        self.ranges.iter().copied().find(IpRange::is_ipv4)
    }

    /// The IPv6 range, if the group has one.
    pub fn range_v6(&self) -> Option<IpRange> {
        self.ranges.iter().copied().find(|r| !r.is_ipv4())
    }

    /// The subject as text (`CN=..., O=...`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject key identifier.
    pub fn key_id(&self) -> Option<&[u8]> {
        self.key_id.as_deref()
    }

    /// The CA's Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// notBefore.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// notAfter.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The serial number.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }

    /// SHA-256 fingerprint (colon-separated hex).
    pub fn fingerprint(&self) -> String {
        xh::fingerprint(&self.der)
    }

    /// Whether an object naming `issuer_raw` with authority key id `aki`
    /// claims to come from this CA.
    pub(crate) fn is_named_issuer(&self, issuer_raw: &[u8], aki: Option<&[u8]>) -> bool {
        issuer_raw == self.subject_raw.as_slice()
            && match (aki, self.key_id()) {
                (Some(a), Some(k)) => a == k,
                _ => true,
            }
    }

    /// Refuses `now` outside the CA's validity.
    pub(crate) fn check_valid_at(&self, now: SystemTime) -> Result<(), PkiError> {
        if now < self.not_before || now > self.not_after {
            return Err(PkiError::CaNotValid {
                not_before: self.not_before,
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }
}

/// A group CA with its private key: issues member certificates and CRLs.
pub struct GroupCa {
    cert: CaCertificate,
    key: KeyPair,
    /// rcgen's view of the CA, used only as the issuer when signing.
    issuer: rcgen::Certificate,
}

impl std::fmt::Debug for GroupCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCa")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl GroupCa {
    /// Creates a new CA (key and self-signed certificate) valid from `now`
    /// (backdated by [`BACKDATE`]) for `params.validity`.
    pub fn init(params: &CaParams, now: SystemTime) -> Result<Self, PkiError> {
        validate_group_name(&params.group)?;
        let v4 = params.ranges.iter().filter(|r| r.is_ipv4()).count();
        let v6 = params.ranges.len() - v4;
        if v4 != 1 || v6 > 1 {
            return Err(PkiError::input(
                "address ranges",
                format!(
                    "need exactly one IPv4 range and at most one IPv6 range, got {}",
                    fmt_ranges(&params.ranges)
                ),
            ));
        }
        // A PKCS#8 v1 key (seed only), as `openssl genpkey` writes it: ring's
        // own v2 encoding of Ed25519 keys is not readable by OpenSSL.
        let key = KeyPair::try_from(crate::NodeIdentity::generate().to_pkcs8_der())
            .map_err(|e| PkiError::build("CA key", e))?;
        let now = truncate(now);
        let mut p = CertificateParams::default();
        p.not_before = to_offset(now - BACKDATE)?;
        p.not_after = to_offset(now + params.validity)?;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(
            Serial::random()?.as_bytes(),
        ));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("GroupVPN CA {}", params.group));
        dn.push(DnType::OrganizationName, params.group.clone());
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ext = GroupExt {
            group: params.group.clone(),
            ranges: params.ranges.clone(),
        };
        p.custom_extensions = vec![CustomExtension::from_oid_content(&OID_GROUP, ext.encode())];
        let cert = p
            .self_signed(&key)
            .map_err(|e| PkiError::build("CA certificate", e))?;
        let parsed = CaCertificate::from_der(cert.der())?;
        Ok(Self {
            cert: parsed,
            key,
            issuer: cert,
        })
    }

    /// From a CA certificate and its PKCS#8 key (the key must match).
    pub fn from_parts(cert_der: &[u8], key_pkcs8_der: &[u8]) -> Result<Self, PkiError> {
        let cert = CaCertificate::from_der(cert_der)?;
        let key = KeyPair::try_from(key_pkcs8_der).map_err(|e| PkiError::malformed("CA key", e))?;
        if key.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(PkiError::UnsupportedAlgorithm(
                "CA key is not Ed25519".into(),
            ));
        }
        if key.public_key_raw() != cert.public_key() {
            return Err(PkiError::malformed(
                "CA key",
                "the key does not belong to the CA certificate",
            ));
        }
        let params = CertificateParams::from_ca_cert_der(&cert_der.into())
            .map_err(|e| PkiError::malformed("CA certificate", e))?;
        let issuer = params
            .self_signed(&key)
            .map_err(|e| PkiError::build("CA issuer", e))?;
        Ok(Self { cert, key, issuer })
    }

    /// Loads `DIR/ca.crt` and `DIR/ca.key` (the key must be mode 0600).
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_der = files::read_pem_or_der(&cert_path, PEM_CERT)?;
        files::check_private_mode(&key_path)?;
        let key_der = files::read_pem_or_der(&key_path, PEM_KEY)?;
        CaCertificate::from_der(&cert_der)
            .map_err(|e| PkiError::corrupt(&cert_path, e.to_string()))?;
        Self::from_parts(&cert_der, &key_der).map_err(|e| match e {
            PkiError::Malformed { reason, .. } => PkiError::corrupt(&key_path, reason),
            e => e,
        })
    }

    /// Writes `DIR/ca.key` (0600, must not exist) and `DIR/ca.crt` (0644),
    /// creating `DIR` (0700) if needed. Returns the two paths.
    pub fn save_new(&self, dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| PkiError::io(dir, e))?;
        }
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        if cert_path.exists() {
            return Err(PkiError::AlreadyExists(cert_path));
        }
        files::write_private_new(&key_path, self.key_pkcs8_pem().as_bytes())?;
        files::write_atomic(&cert_path, self.cert.to_pem().as_bytes(), 0o644)?;
        Ok((cert_path, key_path))
    }

    /// The CA certificate.
    pub fn certificate(&self) -> &CaCertificate {
        &self.cert
    }

    /// The CA key as PKCS#8 PEM (secret: the group server encrypts it at rest).
    pub fn key_pkcs8_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The CA key as PKCS#8 DER (secret).
    pub fn key_pkcs8_der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    pub(crate) fn key(&self) -> &KeyPair {
        &self.key
    }

    pub(crate) fn issuer(&self) -> &rcgen::Certificate {
        &self.issuer
    }
}
