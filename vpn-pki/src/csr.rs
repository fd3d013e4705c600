//! PKCS#10 certificate requests: `vpn-control join` sends one for its
//! PeerId; the group server signs it with [`sign_csr`] after checking the
//! self-signature and that the key is the PeerId it claims.

use std::time::SystemTime;

use libp2p_identity::PeerId;
use rcgen::{CertificateParams, DistinguishedName, DnType, SanType};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer as _;

use crate::ca::GroupCa;
use crate::ext::PEER_URI_PREFIX;
use crate::files::{self, PEM_CSR};
use crate::group::validate_node_name;
use crate::identity::{peer_id_of, NodeIdentity};
use crate::member::{CertProfile, MemberCert};
use crate::x509 as xh;
use crate::PkiError;

/// What a verified CSR asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrInfo {
    /// The PeerId of the CSR's key (also named in its subjectAltName).
    pub peer_id: PeerId,
    /// The raw Ed25519 key.
    pub public_key: [u8; 32],
    /// The subject CN, if any (a suggestion: the issuer picks the name).
    pub name: Option<String>,
}

/// Makes a CSR (DER) for `identity`: subject `CN=name`, subjectAltName URI
/// `libp2p:peer/<PeerId>`, signed with the node key.
pub fn make_csr(identity: &NodeIdentity, name: &str) -> Result<Vec<u8>, PkiError> {
    validate_node_name(name)?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name.to_owned());
    p.distinguished_name = dn;
    let uri = format!("{PEER_URI_PREFIX}{}", identity.peer_id());
    p.subject_alt_names = vec![SanType::URI(
        uri.try_into().map_err(|e| PkiError::build("CSR", e))?,
    )];
    let csr = p
        .serialize_request(&identity.rcgen_key()?)
        .map_err(|e| PkiError::build("CSR", e))?;
    Ok(csr.der().to_vec())
}

/// PEM (`CERTIFICATE REQUEST`) of a DER CSR.
pub fn csr_to_pem(der: &[u8]) -> String {
    files::to_pem(PEM_CSR, der)
}

/// PEM or DER CSR to DER.
pub fn csr_from_pem_or_der(bytes: &[u8]) -> Result<Vec<u8>, PkiError> {
    files::pem_or_der(bytes, PEM_CSR).map_err(|r| PkiError::malformed("CSR", r))
}

/// Parses a CSR and checks it: Ed25519 key and signature, the
/// self-signature verifies ([`PkiError::CsrBadSignature`]), and any
/// `libp2p:peer/` subjectAltName names the key's own PeerId
/// ([`PkiError::CsrPeerMismatch`]).
pub fn verify_csr(csr_der: &[u8]) -> Result<CsrInfo, PkiError> {
    const W: &str = "CSR";
    let (rest, csr) =
        X509CertificationRequest::from_der(csr_der).map_err(|e| PkiError::malformed(W, e))?;
    if !rest.is_empty() {
        return Err(PkiError::malformed(W, "trailing bytes"));
    }
    xh::require_ed25519_sig(&csr.signature_algorithm, W)?;
    let info = &csr.certification_request_info;
    let public_key = xh::ed25519_key(&info.subject_pki, W)?;
    if !xh::ed25519_verify(&public_key, info.raw, &csr.signature_value.data) {
        return Err(PkiError::CsrBadSignature);
    }
    let peer_id = peer_id_of(&public_key)?;
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for n in &san.general_names {
                if let GeneralName::URI(u) = n {
                    if let Some(claimed) = u.strip_prefix(PEER_URI_PREFIX) {
                        if claimed != peer_id.to_string() {
                            return Err(PkiError::CsrPeerMismatch {
                                claimed: claimed.to_owned(),
                                actual: peer_id.to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
    let name = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .map(str::to_owned);
    Ok(CsrInfo {
        peer_id,
        public_key,
        name,
    })
}

/// Verifies `csr_der` ([`verify_csr`]) and issues a member certificate for
/// its key with `profile` (the issuer's decision: name, address, roles,
/// validity; nothing else is taken from the CSR).
pub fn sign_csr(
    ca: &GroupCa,
    csr_der: &[u8],
    profile: &CertProfile,
    now: SystemTime,
) -> Result<MemberCert, PkiError> {
    let info = verify_csr(csr_der)?;
    ca.issue(&info.public_key, profile, now)
}
