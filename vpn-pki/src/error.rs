//! The one error type of the PKI library. Every refusal has its own variant
//! so that callers (the overlay, the group server, the CLI) can log, count
//! and map it without parsing messages.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::time::fmt_time;

/// Everything that can go wrong while creating, loading, issuing, parsing or
/// verifying identities, certificates, CSRs and CRLs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    // --- files ---------------------------------------------------------
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A private key file is readable or writable by group or others.
    #[error(
        "{path}: private key file has mode {mode:04o}, which lets other users read it; \
         run `chmod 600 {path}`"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Refusing to overwrite an existing key or CA.
    #[error("{0}: already exists; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// A file is not the PEM object it should be, or its content is corrupt.
    #[error("{path}: {reason}")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    // --- input ---------------------------------------------------------
    /// A user-supplied value (group name, range, address, role, duration,
    /// serial, PeerId...) is invalid.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which value.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A key is not an Ed25519 key (the only algorithm of this PKI).
    #[error("unsupported key or signature algorithm: {0} (this PKI uses Ed25519 only)")]
    UnsupportedAlgorithm(String),
    /// A PeerId that does not embed an Ed25519 public key.
    #[error("PeerId {0} does not embed an Ed25519 public key (pass the identity file instead)")]
    PeerIdWithoutKey(String),

    // --- parsing -------------------------------------------------------
    /// DER/PEM that is not a well-formed certificate, CSR or CRL of this PKI.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// "certificate", "CA certificate", "CRL", "CSR", ...
        what: &'static str,
        /// Why.
        reason: String,
    },

    // --- issuing -------------------------------------------------------
    /// The requested certificate would be valid after its CA expires.
    #[error("the certificate would outlive its CA (CA valid until {}, certificate until {}); shorten --validity or renew the CA", fmt_time(*ca_not_after), fmt_time(*not_after))]
    OutlivesCa {
        /// The CA's notAfter.
        ca_not_after: SystemTime,
        /// The requested notAfter.
        not_after: SystemTime,
    },
    /// A fixed address outside the group's ranges (or of a family the group
    /// has no range for).
    #[error("address {address} is not inside the group's range(s) {ranges}")]
    AddressOutsideRange {
        /// The address.
        address: std::net::IpAddr,
        /// The group's ranges, comma separated.
        ranges: String,
    },
    /// The CSR's signature does not verify with the key it carries.
    #[error("CSR self-signature does not verify")]
    CsrBadSignature,
    /// The CSR names a PeerId that is not the one of its own key.
    #[error("CSR claims PeerId {claimed} but its key is PeerId {actual}")]
    CsrPeerMismatch {
        /// PeerId in the CSR's subjectAltName.
        claimed: String,
        /// PeerId derived from the CSR's key.
        actual: String,
    },
    /// rcgen refused to build or sign an object.
    #[error("could not build {what}: {reason}")]
    Build {
        /// What was being built.
        what: &'static str,
        /// rcgen's reason.
        reason: String,
    },

    // --- certificate verification -------------------------------------
    /// The certificate was issued by another CA (issuer name or authority
    /// key identifier differ from the trusted CA's).
    #[error("certificate was issued by another CA (issuer \"{issuer}\", expected \"{expected}\")")]
    WrongCa {
        /// The certificate's issuer.
        issuer: String,
        /// The trusted CA's subject.
        expected: String,
    },
    /// The certificate names the trusted CA but its signature does not
    /// verify with the CA's key (tampered or forged).
    #[error("certificate signature does not verify with the CA key (tampered or forged)")]
    BadSignature,
    /// The trusted CA itself is outside its validity period.
    #[error("the group CA is not valid at {} (valid {} .. {})", fmt_time(*now), fmt_time(*not_before), fmt_time(*not_after))]
    CaNotValid {
        /// CA notBefore.
        not_before: SystemTime,
        /// CA notAfter.
        not_after: SystemTime,
        /// The time of the check.
        now: SystemTime,
    },
    /// The certificate's notBefore is in the future.
    #[error("certificate is not valid yet (valid from {}, now {})", fmt_time(*not_before), fmt_time(*now))]
    NotYetValid {
        /// notBefore.
        not_before: SystemTime,
        /// The time of the check.
        now: SystemTime,
    },
    /// The certificate's notAfter has passed.
    #[error("certificate expired at {} (now {})", fmt_time(*not_after), fmt_time(*now))]
    Expired {
        /// notAfter.
        not_after: SystemTime,
        /// The time of the check.
        now: SystemTime,
    },
    /// The certificate belongs to another group.
    #[error("certificate is for group \"{found}\", expected group \"{expected}\"")]
    WrongGroup {
        /// The group the caller asked for.
        expected: String,
        /// The group in the certificate (or of its CA).
        found: String,
    },
    /// The certificate's key is not the PeerId of the connection.
    #[error("certificate is for PeerId {found}, but the peer is {expected}")]
    PeerMismatch {
        /// The PeerId the caller authenticated (e.g. the Noise peer).
        expected: String,
        /// The PeerId the certificate binds.
        found: String,
    },
    /// The certificate is on the CRL.
    #[error("certificate serial {serial} was revoked at {}", fmt_time(*revoked_at))]
    Revoked {
        /// Its serial (hex).
        serial: String,
        /// Revocation time from the CRL.
        revoked_at: SystemTime,
    },
    /// The certificate is signed by the CA but does not follow the member
    /// profile (CA flag set, missing or inconsistent extensions...).
    #[error("not a valid member certificate: {0}")]
    NotMemberCertificate(String),

    // --- CRL verification ---------------------------------------------
    /// The CRL was issued by another CA.
    #[error("CRL was issued by another CA (issuer \"{issuer}\", expected \"{expected}\")")]
    CrlWrongCa {
        /// The CRL's issuer.
        issuer: String,
        /// The trusted CA's subject.
        expected: String,
    },
    /// The CRL's signature does not verify with the CA key.
    #[error("CRL signature does not verify with the CA key (tampered or forged)")]
    CrlBadSignature,
    /// The CRL's nextUpdate has passed: a fresher one must be fetched.
    #[error("CRL is stale: its next update was due at {} (now {})", fmt_time(*next_update), fmt_time(*now))]
    CrlStale {
        /// nextUpdate.
        next_update: SystemTime,
        /// The time of the check.
        now: SystemTime,
    },
    /// The CRL's thisUpdate is in the future.
    #[error("CRL is not valid yet (issued at {}, now {})", fmt_time(*this_update), fmt_time(*now))]
    CrlNotYetValid {
        /// thisUpdate.
        this_update: SystemTime,
        /// The time of the check.
        now: SystemTime,
    },
}

impl PkiError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn input(what: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn build(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Build {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::CorruptFile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
