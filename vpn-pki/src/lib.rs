//! GroupVPN group PKI (see `docs/pki.md`).
//!
//! - [`NodeIdentity`]: the node's Ed25519 key, which is its libp2p PeerId,
//!   stored as PKCS#8 PEM with mode 0600.
//! - [`GroupCa`] / [`CaCertificate`]: the group CA (X.509 v3, Ed25519,
//!   CA:TRUE, group name and address ranges in an extension).
//! - [`GroupCa::issue`], [`sign_csr`]: member certificates whose key is the
//!   node key, with the PeerId, group, address and roles.
//! - [`verify_member`]: CA signature, validity, group, PeerId and CRL checks,
//!   each refusal a distinct [`PkiError`].
//! - [`Crl`], [`RevocationStore`]: X.509 v2 CRLs with increasing numbers.
//!
//! std only, no async runtime and no web stack: the node daemon and the
//! group server both link it. Time is always passed in (`now`).

mod ca;
mod crl;
mod csr;
mod error;
pub mod ext;
mod files;
mod group;
mod identity;
mod member;
mod time;
mod verify;
mod x509;

pub use ca::{CaCertificate, CaParams, GroupCa, BACKDATE, CA_CERT_FILE, CA_KEY_FILE};
pub use crl::{
    Crl, RevocationReason, RevocationStore, RevokedEntry, CRL_NUMBER_FILE, REVOKED_FILE,
};
pub use csr::{csr_from_pem_or_der, csr_to_pem, make_csr, sign_csr, verify_csr, CsrInfo};
pub use error::PkiError;
pub use files::{to_pem, write_atomic, PEM_CERT, PEM_CRL, PEM_CSR, PEM_KEY};
pub use group::{
    fmt_ranges, validate_group_name, validate_node_name, AddressAssignment, IpRange, Role,
};
pub use identity::{parse_peer_id, peer_id_of, public_key_of, verify_peer_signature, NodeIdentity};
pub use libp2p_identity::PeerId;
pub use member::{CertProfile, MemberCert, MemberInfo};
pub use time::{fmt_time, parse_duration};
pub use verify::{verify_issued_by, verify_member, verify_member_cert};
pub use x509::{fingerprint, Serial};
