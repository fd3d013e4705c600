//! Enrolment (blob secret + CSR -> certificate) and renewal (CSR of an
//! enrolled key -> fresh certificate).

use std::net::Ipv4Addr;

use vpn_pki::{fmt_time, MemberCert};

use crate::db::groups::Group;
use crate::db::{self, audit, members};
use crate::error::{AppError, AppResult};
use crate::ops::{blob, pki};
use crate::state::AppState;

pub use vpn_api::{GroupConfig, Issued as EnrollResponse, PUBLIC_KAD_PROTOCOL};

fn response(g: &Group, cert: &MemberCert) -> EnrollResponse {
    let info = cert.info();
    let life = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or_default();
    EnrollResponse {
        certificate_pem: cert.to_pem(),
        ca_pem: g.ca_cert_pem.clone(),
        crl_pem: g.crl_pem.clone(),
        group: GroupConfig {
            name: g.name.clone(),
            ranges: vec![g.range4.clone()],
            bootstrap: g.bootstrap_list(),
            public_kad_protocol: PUBLIC_KAD_PROTOCOL.into(),
        },
        renew_after: fmt_time(info.not_before + life * 2 / 3),
        not_after: fmt_time(info.not_after),
    }
}

fn parse_csr(csr_pem: &str) -> AppResult<(Vec<u8>, vpn_pki::CsrInfo)> {
    let der = vpn_pki::csr_from_pem_or_der(csr_pem.as_bytes())
        .map_err(|e| AppError::BadRequest(format!("bad CSR: {e}")))?;
    let info =
        vpn_pki::verify_csr(&der).map_err(|e| AppError::BadRequest(format!("bad CSR: {e}")))?;
    Ok((der, info))
}

/// `POST /api/v1/enroll`.
pub async fn enroll(st: &AppState, secret: &str, csr_pem: &str) -> AppResult<EnrollResponse> {
    if secret.is_empty() || secret.len() > 256 {
        return Err(AppError::Unauthorized("unknown enrolment secret".into()));
    }
    let hash = blob::secret_hash(secret);
    let (csr_der, csr) = parse_csr(csr_pem)?;
    let peer = csr.peer_id.to_string();
    crate::in_tx!(&st.db, |tx| {
        let m = members::by_secret_hash(&mut tx, &hash)
            .await?
            .ok_or_else(|| AppError::Unauthorized("unknown enrolment secret".into()))?;
        if m.status == "revoked" {
            return Err(AppError::Forbidden(format!(
                "{} has been revoked from the group",
                m.node_name
            )));
        }
        if m.secret_used_at.is_some() || m.status != "approved" {
            return Err(AppError::Conflict(
                "this enrolment secret was already used".into(),
            ));
        }
        // One enrolment per group at a time: the address allocation below
        // must see the previous one's address.
        let g = crate::db::groups::lock_and_get(&mut tx, m.group_id).await?;
        let g = pki::with_fresh_crl(st, &mut tx, g).await?;
        if let Some(other) = members::by_peer_id(&mut tx, &peer)
            .await?
            .into_iter()
            .find(|o| o.group_id == g.id && o.id != m.id)
        {
            return Err(AppError::Conflict(format!(
                "PeerId {peer} is already enrolled in {} as {}",
                g.name, other.node_name
            )));
        }
        let address: Ipv4Addr = pki::allocate_address(&mut tx, &g).await?;
        let now = db::now_secs();
        if !members::mark_enrolled(&mut tx, m.id, &peer, &address.to_string(), now).await? {
            return Err(AppError::Conflict(
                "this enrolment secret was already used".into(),
            ));
        }
        let cert = pki::issue(st, &mut tx, &g, m.id, &m.node_name, address, &csr_der).await?;
        audit::add(
            &mut tx,
            Some(g.id),
            "api",
            "enroll",
            &format!(
                "{} enrolled: PeerId {peer}, address {address}, certificate {} until {}",
                m.node_name,
                cert.info().serial,
                fmt_time(cert.info().not_after)
            ),
        )
        .await?;
        Ok(response(&g, &cert))
    })
}

/// `POST /api/v1/renew`: the CSR's key must belong to an enrolled member
/// (of `group`, if given) whose newest certificate is current and not
/// revoked.
pub async fn renew(st: &AppState, csr_pem: &str, group: Option<&str>) -> AppResult<EnrollResponse> {
    let (csr_der, csr) = parse_csr(csr_pem)?;
    let peer = csr.peer_id.to_string();
    crate::in_tx!(&st.db, |tx| {
        let mut candidates = members::by_peer_id(&mut tx, &peer).await?;
        if let Some(name) = group {
            let g = crate::ops::group_or_404(&mut tx, name).await?;
            candidates.retain(|m| m.group_id == g.id);
        }
        candidates.retain(|m| m.status == "enrolled");
        let m = match candidates.as_slice() {
            [] => {
                return Err(AppError::Forbidden(format!(
                    "PeerId {peer} is not an enrolled, unrevoked member"
                )))
            }
            [m] => m.clone(),
            _ => {
                return Err(AppError::BadRequest(
                    "this PeerId is enrolled in several groups: name the group".into(),
                ))
            }
        };
        let now = db::now_secs();
        let current = members::certs_of(&mut tx, m.id)
            .await?
            .into_iter()
            .any(|c| c.revoked_at.is_none() && c.not_before <= now + 300 && c.not_after > now);
        if !current {
            return Err(AppError::Forbidden(
                "no current certificate to renew (expired or revoked): enrol again".into(),
            ));
        }
        let g = crate::db::groups::by_id(&mut tx, m.group_id)
            .await?
            .ok_or_else(|| AppError::NotFound("the group no longer exists".into()))?;
        let g = pki::with_fresh_crl(st, &mut tx, g).await?;
        let address: Ipv4Addr = m
            .address
            .as_deref()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| AppError::Internal("enrolled member without address".into()))?;
        let cert = pki::issue(st, &mut tx, &g, m.id, &m.node_name, address, &csr_der).await?;
        audit::add(
            &mut tx,
            Some(g.id),
            "api",
            "renew",
            &format!(
                "{} renewed: certificate {} until {}",
                m.node_name,
                cert.info().serial,
                fmt_time(cert.info().not_after)
            ),
        )
        .await?;
        Ok(response(&g, &cert))
    })
}
