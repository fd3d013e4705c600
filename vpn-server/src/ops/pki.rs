//! The group CA in the database: creation (key sealed with the server
//! key), loading, CRL signing, address allocation, certificate issuance.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use sqlx::AnyConnection;
use vpn_pki::{
    AddressAssignment, CaParams, CertProfile, Crl, GroupCa, IpRange, MemberCert, RevocationReason,
    RevokedEntry, Role,
};

use crate::db::groups::{self, Group};
use crate::db::{self, audit, members, unix_secs};
use crate::error::{AppError, AppResult};
use crate::ops::Actor;
use crate::state::AppState;

/// Longest member certificate validity accepted, in days.
pub const MAX_VALIDITY_DAYS: i64 = 3650;

fn pki_internal(e: vpn_pki::PkiError) -> AppError {
    AppError::Internal(format!("pki: {e}"))
}

/// Parses a group's IPv4 range (as typed by an administrator).
pub fn parse_range4(text: &str) -> AppResult<IpRange> {
    let r: IpRange = text
        .trim()
        .parse()
        .map_err(|e: vpn_pki::PkiError| AppError::BadRequest(e.to_string()))?;
    if !r.is_ipv4() {
        return Err(AppError::BadRequest(format!(
            "{text:?}: the group range must be IPv4 (e.g. 10.77.0.0/24)"
        )));
    }
    Ok(r)
}

/// Creates a group with a new CA; the creator becomes its administrator.
pub async fn create_group(
    st: &AppState,
    actor: &Actor,
    name: &str,
    range: &str,
    validity_days: i64,
) -> AppResult<Group> {
    vpn_pki::validate_group_name(name).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let range = parse_range4(range)?;
    if !(1..=MAX_VALIDITY_DAYS).contains(&validity_days) {
        return Err(AppError::BadRequest(format!(
            "validity_days must be 1 to {MAX_VALIDITY_DAYS}"
        )));
    }
    let creator = actor
        .user_id()
        .ok_or_else(|| AppError::BadRequest("a group needs an administrator account".into()))?;
    let now = SystemTime::now();
    let validity_secs = u64::try_from(validity_days).unwrap_or(1) * 86_400;
    if Duration::from_secs(validity_secs) >= st.cfg.ca_validity {
        return Err(AppError::BadRequest(
            "validity_days must be shorter than the CA's validity".into(),
        ));
    }
    let ca = GroupCa::init(
        &CaParams {
            group: name.to_owned(),
            ranges: vec![range],
            validity: st.cfg.ca_validity,
        },
        now,
    )
    .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let crl = ca
        .sign_crl(&[], 1, now, st.cfg.crl_next_update)
        .map_err(pki_internal)?;
    let g = Group {
        id: crate::crypto::random_id()?,
        name: name.to_owned(),
        range4: range.to_string(),
        validity_days,
        bootstrap: String::new(),
        ca_cert_pem: ca.certificate().to_pem(),
        ca_key_enc: st.key.seal(&ca.key_pkcs8_der(), name)?,
        crl_number: 1,
        crl_pem: crl.to_pem(),
        crl_this_update: unix_secs(crl.this_update()),
        crl_next_update: crl.next_update().map_or(0, unix_secs),
        created_at: unix_secs(now),
    };
    crate::in_tx!(&st.db, |tx| {
        groups::insert(&mut tx, &g, creator).await?;
        groups::add_membership(&mut tx, g.id, creator, "admin", g.created_at).await?;
        audit::add(
            &mut tx,
            Some(g.id),
            actor.name(),
            "create-group",
            &format!(
                "range {}, member certificates valid {validity_days} days",
                g.range4
            ),
        )
        .await?;
        Ok(())
    })?;
    Ok(g)
}

/// The group's CA with its key (decrypted with the server key).
pub fn load_ca(st: &AppState, g: &Group) -> AppResult<GroupCa> {
    let key = st.key.open(&g.ca_key_enc, &g.name)?;
    let cert =
        vpn_pki::CaCertificate::from_pem_or_der(g.ca_cert_pem.as_bytes()).map_err(pki_internal)?;
    GroupCa::from_parts(cert.der(), &key).map_err(pki_internal)
}

/// Signs and stores the next CRL of the group (inside the caller's
/// transaction). Returns it.
pub async fn resign_crl(
    st: &AppState,
    conn: &mut AnyConnection,
    g: &Group,
    now: SystemTime,
) -> AppResult<Crl> {
    let ca = load_ca(st, g)?;
    let rows = members::revoked_certs(conn, g.id, unix_secs(now)).await?;
    let entries = rows
        .iter()
        .map(|r| {
            Ok(RevokedEntry {
                serial: r.serial.parse().map_err(pki_internal)?,
                revoked_at: db::from_secs(r.revoked_at.unwrap_or(0)),
                reason: r
                    .reason
                    .as_deref()
                    .unwrap_or("unspecified")
                    .parse()
                    .unwrap_or(RevocationReason::Unspecified),
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    let number = g.crl_number + 1;
    let crl = ca
        .sign_crl(
            &entries,
            u64::try_from(number).unwrap_or(0),
            now,
            st.cfg.crl_next_update,
        )
        .map_err(pki_internal)?;
    let stored = groups::replace_crl(
        conn,
        g.id,
        g.crl_number,
        number,
        &crl.to_pem(),
        unix_secs(crl.this_update()),
        crl.next_update().map_or(0, unix_secs),
    )
    .await?;
    if !stored {
        return Err(AppError::Retry("the CRL"));
    }
    Ok(crl)
}

/// Whether the stored CRL should be re-signed at `now`: more than half of
/// its validity has passed.
pub fn crl_due(g: &Group, now: i64) -> bool {
    let half = (g.crl_next_update - g.crl_this_update) / 2;
    now >= g.crl_this_update + half
}

/// `g` with a current CRL: re-signed (inside the caller's transaction) if
/// due.
pub async fn with_fresh_crl(st: &AppState, conn: &mut AnyConnection, g: Group) -> AppResult<Group> {
    if !crl_due(&g, db::now_secs()) {
        return Ok(g);
    }
    let g = groups::lock_and_get(conn, g.id).await?;
    if !crl_due(&g, db::now_secs()) {
        return Ok(g);
    }
    resign_crl(st, conn, &g, SystemTime::now()).await?;
    audit::add(conn, Some(g.id), "server", "crl", "re-signed (due)").await?;
    groups::by_id(conn, g.id)
        .await?
        .ok_or_else(|| AppError::NotFound("the group no longer exists".into()))
}

/// The group's current CRL, re-signed first if due.
pub async fn current_crl(st: &AppState, name: &str) -> AppResult<Group> {
    let mut conn = st.db.pool().acquire().await?;
    let g = super::group_or_404(&mut conn, name).await?;
    drop(conn);
    if !crl_due(&g, db::now_secs()) {
        return Ok(g);
    }
    crate::in_tx!(&st.db, |tx| {
        let g = super::group_or_404(&mut tx, name).await?;
        with_fresh_crl(st, &mut tx, g).await
    })
}

/// The lowest free host address of the group's range (called with the
/// group's row locked).
///
/// Addresses are never given back (a revoked member keeps its own) and
/// always the lowest free one is taken, so the taken ones are the first
/// `count` hosts: host `count + 1` is tried first (two indexed queries,
/// not a read of every address); the full scan is the fallback (and any
/// free host would do: uniqueness is what matters, checked here and by
/// the table's constraint).
pub async fn allocate_address(conn: &mut AnyConnection, g: &Group) -> AppResult<Ipv4Addr> {
    let range = parse_range4(&g.range4)?;
    let IpAddr::V4(base) = range.addr() else {
        return Err(AppError::Internal("group range is not IPv4".into()));
    };
    let base = u32::from(base);
    let size = 1u64 << (32 - u32::from(range.prefix()));
    let next = u64::try_from(members::address_count(conn, g.id).await?).unwrap_or(0) + 1;
    if next < size.saturating_sub(1) {
        let a = Ipv4Addr::from(base.wrapping_add(u32::try_from(next).unwrap_or(0)));
        if range.is_host_address(IpAddr::V4(a))
            && !members::address_taken(conn, g.id, &a.to_string()).await?
        {
            return Ok(a);
        }
    }
    let taken: std::collections::HashSet<String> =
        members::addresses(conn, g.id).await?.into_iter().collect();
    for off in 1..size.saturating_sub(1) {
        let a = Ipv4Addr::from(base.wrapping_add(u32::try_from(off).unwrap_or(0)));
        if range.is_host_address(IpAddr::V4(a)) && !taken.contains(&a.to_string()) {
            return Ok(a);
        }
    }
    Err(AppError::Unavailable(format!(
        "the group's address range {} is full",
        g.range4
    )))
}

/// Issues a member certificate for `csr_der` with the member's name and
/// fixed address, records it (inside the caller's transaction).
pub async fn issue(
    st: &AppState,
    conn: &mut AnyConnection,
    g: &Group,
    member_id: i64,
    node_name: &str,
    address: Ipv4Addr,
    csr_der: &[u8],
) -> AppResult<MemberCert> {
    let ca = load_ca(st, g)?;
    let now = SystemTime::now();
    let validity = Duration::from_secs(u64::try_from(g.validity_days).unwrap_or(1) * 86_400);
    let validity = validity.min(
        ca.certificate()
            .not_after()
            .duration_since(now)
            .unwrap_or_default(),
    );
    let profile = CertProfile {
        name: node_name.to_owned(),
        address: AddressAssignment::Fixed(vec![IpAddr::V4(address)]),
        roles: vec![Role::Member],
        validity,
    };
    let cert = vpn_pki::sign_csr(&ca, csr_der, &profile, now)
        .map_err(|e| AppError::BadRequest(format!("cannot sign the CSR: {e}")))?;
    let info = cert.info();
    members::insert_cert(
        conn,
        &info.serial.to_string(),
        g.id,
        member_id,
        &cert.to_pem(),
        unix_secs(info.not_before),
        unix_secs(info.not_after),
        unix_secs(now),
    )
    .await?;
    Ok(cert)
}
