//! X.509 v2 CRLs (RFC 5280 §5): issuing (with an increasing CRL number and
//! a nextUpdate), parsing, and verification (CA signature, freshness).
//! [`RevocationStore`] keeps a CA directory's revocations in `revoked.txt`
//! and the last CRL number in `crl-number`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use x509_parser::prelude::FromDer as _;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::ca::{CaCertificate, GroupCa, BACKDATE};
use crate::files::{self, PEM_CRL};
use crate::time::{from_asn1, from_unix, to_offset, truncate, unix_secs};
use crate::x509::{self as xh, Serial};
use crate::PkiError;

/// File in a CA directory listing revoked serials.
pub const REVOKED_FILE: &str = "revoked.txt";
/// File in a CA directory holding the last issued CRL number.
pub const CRL_NUMBER_FILE: &str = "crl-number";

/// Why a certificate was revoked (RFC 5280 §5.3.1 reason codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    const ALL: [(Self, &'static str, u8); 6] = [
        (Self::Unspecified, "unspecified", 0),
        (Self::KeyCompromise, "keyCompromise", 1),
        (Self::AffiliationChanged, "affiliationChanged", 3),
        (Self::Superseded, "superseded", 4),
        (Self::CessationOfOperation, "cessationOfOperation", 5),
        (Self::PrivilegeWithdrawn, "privilegeWithdrawn", 9),
    ];

    /// RFC 5280 name (`keyCompromise`...).
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|e| e.0 == self)
            .map_or("unspecified", |e| e.1)
    }

    fn from_code(code: u8) -> Self {
        Self::ALL
            .iter()
            .find(|e| e.2 == code)
            .map_or(Self::Unspecified, |e| e.0)
    }

    fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            Self::Unspecified => rcgen::RevocationReason::Unspecified,
            Self::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            Self::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            Self::Superseded => rcgen::RevocationReason::Superseded,
            Self::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            Self::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
        }
    }
}

impl FromStr for RevocationReason {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        Self::ALL
            .iter()
            .find(|e| e.1.eq_ignore_ascii_case(s))
            .map(|e| e.0)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|e| e.1).collect();
                PkiError::input("revocation reason", format!("{s:?}: use one of {names:?}"))
            })
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Its serial.
    pub serial: Serial,
    /// When the CA revoked it.
    pub revoked_at: SystemTime,
    /// Why.
    pub reason: RevocationReason,
}

/// A parsed CRL. Use [`Crl::verify`] (or pass it to
/// [`crate::verify_member`]) before trusting it.
#[derive(Clone, Debug)]
pub struct Crl {
    der: Vec<u8>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    issuer: String,
    issuer_raw: Vec<u8>,
    authority_key_id: Option<Vec<u8>>,
    number: Option<u64>,
    this_update: SystemTime,
    next_update: Option<SystemTime>,
    revoked: BTreeMap<Serial, (SystemTime, RevocationReason)>,
}

impl Crl {
    /// Parses a DER CRL (Ed25519-signed; structure only, not trust).
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        const W: &str = "CRL";
        let (rest, c) =
            CertificateRevocationList::from_der(der).map_err(|e| PkiError::malformed(W, e))?;
        if !rest.is_empty() {
            return Err(PkiError::malformed(W, "trailing bytes"));
        }
        xh::require_ed25519_sig(&c.signature_algorithm, W)?;
        let number = match c.crl_number() {
            None => None,
            Some(n) => {
                let b = n.to_bytes_be();
                if b.len() > 8 {
                    return Err(PkiError::malformed(W, "CRL number larger than 64 bits"));
                }
                Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
            }
        };
        let revoked = c
            .iter_revoked_certificates()
            .map(|r| {
                let reason = r
                    .reason_code()
                    .map_or(RevocationReason::Unspecified, |(_, code)| {
                        RevocationReason::from_code(code.0)
                    });
                (
                    Serial::from_bytes(r.raw_serial()),
                    (from_asn1(r.revocation_date), reason),
                )
            })
            .collect();
        Ok(Self {
            der: der.to_vec(),
            tbs: c.tbs_cert_list.as_ref().to_vec(),
            signature: c.signature_value.data.to_vec(),
            issuer: c.issuer().to_string(),
            issuer_raw: c.issuer().as_raw().to_vec(),
            authority_key_id: xh::authority_key_id(c.extensions()),
            number,
            this_update: from_asn1(c.last_update()),
            next_update: c.next_update().map(from_asn1),
            revoked,
        })
    }

    /// Parses PEM or DER.
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self, PkiError> {
        let der = files::pem_or_der(bytes, PEM_CRL).map_err(|r| PkiError::malformed("CRL", r))?;
        Self::from_der(&der)
    }

    /// Loads a CRL file (PEM or DER).
    pub fn load(path: &Path) -> Result<Self, PkiError> {
        let der = files::read_pem_or_der(path, PEM_CRL)?;
        Self::from_der(&der)
    }

    /// Checks that `ca` issued and signed this CRL and that it is current at
    /// `now` (thisUpdate passed, nextUpdate not passed).
    ///
    /// A thisUpdate up to [`BACKDATE`] ahead of `now` is accepted: an issuer
    /// whose clock runs a little fast (or a CRL signed a moment after the
    /// verifier read its clock) must not make a fresh CRL unusable.
    /// Certificates get the same tolerance by being backdated at issue.
    pub fn verify(&self, ca: &CaCertificate, now: SystemTime) -> Result<(), PkiError> {
        if !ca.is_named_issuer(&self.issuer_raw, self.authority_key_id.as_deref()) {
            return Err(PkiError::CrlWrongCa {
                issuer: self.issuer.clone(),
                expected: ca.subject().to_owned(),
            });
        }
        if !xh::ed25519_verify(ca.public_key(), &self.tbs, &self.signature) {
            return Err(PkiError::CrlBadSignature);
        }
        if now + BACKDATE < self.this_update {
            return Err(PkiError::CrlNotYetValid {
                this_update: self.this_update,
                now,
            });
        }
        let Some(next_update) = self.next_update else {
            return Err(PkiError::malformed(
                "CRL",
                "no nextUpdate (RFC 5280 requires it)",
            ));
        };
        if now > next_update {
            return Err(PkiError::CrlStale { next_update, now });
        }
        Ok(())
    }

    /// When `serial` was revoked, if it is on the list.
    pub fn revoked_at(&self, serial: &Serial) -> Option<SystemTime> {
        self.revoked.get(serial).map(|e| e.0)
    }

    /// The revoked certificates.
    pub fn entries(&self) -> impl Iterator<Item = RevokedEntry> + '_ {
        self.revoked.iter().map(|(s, (t, r))| RevokedEntry {
            serial: s.clone(),
            revoked_at: *t,
            reason: *r,
        })
    }

    /// DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM encoding (`X509 CRL`).
    pub fn to_pem(&self) -> String {
        files::to_pem(PEM_CRL, &self.der)
    }

    /// The CRL number extension.
    pub fn number(&self) -> Option<u64> {
        self.number
    }

    /// Whether this CRL should replace `other` (both already verified for
    /// the same CA): only a higher CRL number does (without numbers, a later
    /// thisUpdate). Keeping the highest number means an old CRL cannot be
    /// replayed to "unrevoke" a member.
    pub fn supersedes(&self, other: &Crl) -> bool {
        match (self.number, other.number) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            (None, _) => self.this_update > other.this_update && other.number.is_none(),
        }
    }

    /// thisUpdate.
    pub fn this_update(&self) -> SystemTime {
        self.this_update
    }

    /// nextUpdate.
    pub fn next_update(&self) -> Option<SystemTime> {
        self.next_update
    }

    /// The issuer as text.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

impl GroupCa {
    /// Signs a CRL listing `revoked`, numbered `number`, issued at `now`,
    /// whose next update is due `next_update_in` later.
    pub fn sign_crl(
        &self,
        revoked: &[RevokedEntry],
        number: u64,
        now: SystemTime,
        next_update_in: Duration,
    ) -> Result<Crl, PkiError> {
        let now = truncate(now);
        let revoked_certs = revoked
            .iter()
            .map(|e| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(e.serial.as_bytes()),
                    revocation_time: to_offset(e.revoked_at)?,
                    reason_code: Some(e.reason.to_rcgen()),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let key_identifier_method = match self.certificate().key_id() {
            Some(k) => KeyIdMethod::PreSpecified(k.to_vec()),
            None => KeyIdMethod::Sha256,
        };
        let params = CertificateRevocationListParams {
            this_update: to_offset(now)?,
            next_update: to_offset(now + next_update_in)?,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method,
        };
        let crl = params
            .signed_by(self.issuer(), self.key())
            .map_err(|e| PkiError::build("CRL", e))?;
        Crl::from_der(crl.der())
    }
}

/// The revocations of a CA directory (`revoked.txt`: one
/// `SERIAL-HEX UNIX-SECONDS REASON` line per certificate) and its CRL
/// counter (`crl-number`).
#[derive(Debug)]
pub struct RevocationStore {
    dir: PathBuf,
    entries: Vec<RevokedEntry>,
    last_number: u64,
}

impl RevocationStore {
    /// Loads the store of a CA directory (missing files mean empty).
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let rpath = dir.join(REVOKED_FILE);
        let mut entries = Vec::new();
        match std::fs::read_to_string(&rpath) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let bad = |r: &str| PkiError::corrupt(&rpath, format!("line {}: {r}", i + 1));
                    let mut it = line.split_whitespace();
                    let serial: Serial = it
                        .next()
                        .unwrap_or_default()
                        .parse()
                        .map_err(|_| bad("bad serial"))?;
                    let t: i64 = it
                        .next()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad("bad time"))?;
                    let reason: RevocationReason = it
                        .next()
                        .unwrap_or("unspecified")
                        .parse()
                        .map_err(|_| bad("bad reason"))?;
                    entries.push(RevokedEntry {
                        serial,
                        revoked_at: from_unix(t),
                        reason,
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PkiError::io(&rpath, e)),
        }
        let npath = dir.join(CRL_NUMBER_FILE);
        let last_number = match std::fs::read_to_string(&npath) {
            Ok(t) => t
                .trim()
                .parse()
                .map_err(|_| PkiError::corrupt(&npath, "not a number"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(PkiError::io(&npath, e)),
        };
        Ok(Self {
            dir: dir.to_owned(),
            entries,
            last_number,
        })
    }

    /// The revoked certificates.
    pub fn entries(&self) -> &[RevokedEntry] {
        &self.entries
    }

    /// The number of the last CRL issued from this directory (0 = none).
    pub fn last_number(&self) -> u64 {
        self.last_number
    }

    /// Adds a revocation and saves. Returns `false` (and changes nothing) if
    /// the serial was already revoked.
    pub fn revoke(
        &mut self,
        serial: Serial,
        at: SystemTime,
        reason: RevocationReason,
    ) -> Result<bool, PkiError> {
        if self.entries.iter().any(|e| e.serial == serial) {
            return Ok(false);
        }
        self.entries.push(RevokedEntry {
            serial,
            revoked_at: truncate(at),
            reason,
        });
        self.save_entries()?;
        Ok(true)
    }

    fn save_entries(&self) -> Result<(), PkiError> {
        let mut text = String::from("# serial (hex)  revoked at (unix seconds)  reason\n");
        for e in &self.entries {
            text.push_str(&format!(
                "{} {} {}\n",
                e.serial,
                unix_secs(e.revoked_at),
                e.reason
            ));
        }
        files::write_atomic(&self.dir.join(REVOKED_FILE), text.as_bytes(), 0o644)
    }

    /// Signs the next CRL (number = last + 1) and records its number.
    pub fn issue_crl(
        &mut self,
        ca: &GroupCa,
        now: SystemTime,
        next_update_in: Duration,
    ) -> Result<Crl, PkiError> {
        let number = self.last_number + 1;
        let crl = ca.sign_crl(&self.entries, number, now, next_update_in)?;
        files::write_atomic(
            &self.dir.join(CRL_NUMBER_FILE),
            format!("{number}\n").as_bytes(),
            0o644,
        )?;
        self.last_number = number;
        Ok(crl)
    }
}
