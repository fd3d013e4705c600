//! Member verification: everything a node checks before it serves a peer
//! anything private (issue 4), and what the group server checks on renewal.

use std::time::SystemTime;

use libp2p_identity::PeerId;

use crate::ca::CaCertificate;
use crate::crl::Crl;
use crate::group::{fmt_ranges, AddressAssignment};
use crate::member::{MemberCert, MemberInfo};
use crate::x509 as xh;
use crate::PkiError;

/// Verifies a member certificate (DER) against the group CA at `now`:
///
/// 1. structure: Ed25519, not a CA, GroupVPN member extension, consistent
///    PeerId subjectAltName ([`PkiError::Malformed`],
///    [`PkiError::NotMemberCertificate`]);
/// 2. issued by `ca` ([`PkiError::WrongCa`]) and signed by its key
///    ([`PkiError::BadSignature`]);
/// 3. the CA valid at `now` ([`PkiError::CaNotValid`]), the certificate
///    valid at `now` ([`PkiError::NotYetValid`], [`PkiError::Expired`]);
/// 4. for `group` ([`PkiError::WrongGroup`]), for `expected_peer`
///    ([`PkiError::PeerMismatch`]), fixed addresses inside the group range;
/// 5. if a CRL is given: issued and signed by `ca` and current
///    ([`PkiError::CrlWrongCa`], [`PkiError::CrlBadSignature`],
///    [`PkiError::CrlStale`], [`PkiError::CrlNotYetValid`]), and the
///    certificate not on it ([`PkiError::Revoked`]).
pub fn verify_member(
    cert_der: &[u8],
    ca: &CaCertificate,
    crl: Option<&Crl>,
    expected_peer: &PeerId,
    group: &str,
    now: SystemTime,
) -> Result<MemberInfo, PkiError> {
    let cert = MemberCert::from_der(cert_der)?;
    verify_member_cert(&cert, ca, crl, expected_peer, group, now)?;
    Ok(cert.info().clone())
}

/// [`verify_member`] on an already parsed certificate.
pub fn verify_member_cert(
    cert: &MemberCert,
    ca: &CaCertificate,
    crl: Option<&Crl>,
    expected_peer: &PeerId,
    group: &str,
    now: SystemTime,
) -> Result<(), PkiError> {
    verify_issued_by(cert, ca)?;
    ca.check_valid_at(now)?;
    let info = cert.info();
    if now < info.not_before {
        return Err(PkiError::NotYetValid {
            not_before: info.not_before,
            now,
        });
    }
    if now > info.not_after {
        return Err(PkiError::Expired {
            not_after: info.not_after,
            now,
        });
    }
    if ca.group() != group || info.group != group {
        return Err(PkiError::WrongGroup {
            expected: group.to_owned(),
            found: if ca.group() != group {
                ca.group().to_owned()
            } else {
                info.group.clone()
            },
        });
    }
    if info.peer_id != *expected_peer {
        return Err(PkiError::PeerMismatch {
            expected: expected_peer.to_string(),
            found: info.peer_id.to_string(),
        });
    }
    if let AddressAssignment::Fixed(addrs) = &info.address {
        if let Some(a) = addrs
            .iter()
            .find(|a| !ca.ranges().iter().any(|r| r.is_host_address(**a)))
        {
            return Err(PkiError::NotMemberCertificate(format!(
                "address {a} is outside the group range(s) {}",
                fmt_ranges(ca.ranges())
            )));
        }
    }
    if let Some(crl) = crl {
        crl.verify(ca, now)?;
        if let Some(revoked_at) = crl.revoked_at(&info.serial) {
            return Err(PkiError::Revoked {
                serial: info.serial.to_string(),
                revoked_at,
            });
        }
    }
    Ok(())
}

/// Checks only that `ca` issued and signed `cert` (no time, group, peer or
/// CRL check): used by `ca revoke --cert`.
pub fn verify_issued_by(cert: &MemberCert, ca: &CaCertificate) -> Result<(), PkiError> {
    if !ca.is_named_issuer(cert.issuer_raw(), cert.authority_key_id()) {
        return Err(PkiError::WrongCa {
            issuer: cert.issuer().to_owned(),
            expected: ca.subject().to_owned(),
        });
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der())
        .map_err(|e| PkiError::malformed("certificate", e))?;
    if !xh::ed25519_verify(
        ca.public_key(),
        parsed.tbs_certificate.as_ref(),
        &parsed.signature_value.data,
    ) {
        return Err(PkiError::BadSignature);
    }
    Ok(())
}
