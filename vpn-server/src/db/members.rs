//! Join requests, members (nodes) and their certificates.

use sqlx::AnyConnection;

use super::col;
use crate::error::{AppError, AppResult};

/// A join request.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// Row id (in URLs).
    pub id: i64,
    /// Group.
    pub group_id: i64,
    /// Who asks.
    pub user_id: i64,
    /// Their name.
    pub username: String,
    /// The node name asked for.
    pub node_name: String,
    /// Why.
    pub reason: String,
    /// `pending`, `approved`, `denied`.
    pub status: String,
    /// When.
    pub created_at: i64,
}

const REQ_COLS: &str = "r.id, r.group_id, r.user_id, u.username, r.node_name, r.reason, \
    r.status, r.created_at";

fn req_from_row(r: &sqlx::any::AnyRow) -> Result<JoinRequest, sqlx::Error> {
    Ok(JoinRequest {
        id: col(r, "id")?,
        group_id: col(r, "group_id")?,
        user_id: col(r, "user_id")?,
        username: col(r, "username")?,
        node_name: col(r, "node_name")?,
        reason: col(r, "reason")?,
        status: col(r, "status")?,
        created_at: col(r, "created_at")?,
    })
}

/// Stores a pending request.
pub async fn create_request(
    conn: &mut AnyConnection,
    group_id: i64,
    user_id: i64,
    node_name: &str,
    reason: &str,
    now: i64,
) -> AppResult<i64> {
    let id = crate::crypto::random_id()?;
    sqlx::query(
        "INSERT INTO join_requests (id, group_id, user_id, node_name, reason, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
    )
    .bind(id)
    .bind(group_id)
    .bind(user_id)
    .bind(node_name)
    .bind(reason)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// A group's requests with `status`, oldest first.
pub async fn requests(
    conn: &mut AnyConnection,
    group_id: i64,
    status: &str,
) -> AppResult<Vec<JoinRequest>> {
    let rows = sqlx::query(&format!(
        "SELECT {REQ_COLS} FROM join_requests r JOIN users u ON u.id = r.user_id \
         WHERE r.group_id = $1 AND r.status = $2 ORDER BY r.created_at, r.id"
    ))
    .bind(group_id)
    .bind(status)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(req_from_row).collect::<Result<_, _>>()?)
}

/// The request `id` of the group (None if it belongs to another group).
pub async fn request(
    conn: &mut AnyConnection,
    group_id: i64,
    id: i64,
) -> AppResult<Option<JoinRequest>> {
    let row = sqlx::query(&format!(
        "SELECT {REQ_COLS} FROM join_requests r JOIN users u ON u.id = r.user_id \
         WHERE r.group_id = $1 AND r.id = $2"
    ))
    .bind(group_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(req_from_row).transpose()?)
}

/// Whether the user has a pending request in the group.
pub async fn has_pending(conn: &mut AnyConnection, group_id: i64, user_id: i64) -> AppResult<bool> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS n FROM join_requests WHERE group_id = $1 AND user_id = $2 \
         AND status = 'pending'",
    )
    .bind(group_id)
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(col::<i64>(&r, "n")? > 0)
}

/// Decides a pending request; false if it was no longer pending.
pub async fn decide_request(
    conn: &mut AnyConnection,
    id: i64,
    status: &str,
    by: i64,
    now: i64,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE join_requests SET status = $1, decided_at = $2, decided_by = $3 \
         WHERE id = $4 AND status = 'pending'",
    )
    .bind(status)
    .bind(now)
    .bind(by)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A member (node) of a group.
#[derive(Clone, Debug)]
pub struct Member {
    /// Row id.
    pub id: i64,
    /// Group.
    pub group_id: i64,
    /// The account it belongs to (None for CLI-made members).
    pub user_id: Option<i64>,
    /// The account's name, if any.
    pub username: Option<String>,
    /// Node name (certificate CN).
    pub node_name: String,
    /// `approved`, `enrolled`, `revoked`.
    pub status: String,
    /// Hash of the current blob secret.
    pub secret_hash: Option<String>,
    /// When the secret was consumed.
    pub secret_used_at: Option<i64>,
    /// PeerId after enrolment.
    pub peer_id: Option<String>,
    /// Fixed address after enrolment.
    pub address: Option<String>,
    /// When it was approved.
    pub created_at: i64,
}

const MEMBER_COLS: &str = "m.id, m.group_id, m.user_id, u.username, m.node_name, m.status, \
    m.secret_hash, m.secret_used_at, m.peer_id, m.address, m.created_at";

fn member_from_row(r: &sqlx::any::AnyRow) -> Result<Member, sqlx::Error> {
    Ok(Member {
        id: col(r, "id")?,
        group_id: col(r, "group_id")?,
        user_id: col(r, "user_id")?,
        username: col(r, "username")?,
        node_name: col(r, "node_name")?,
        status: col(r, "status")?,
        secret_hash: col(r, "secret_hash")?,
        secret_used_at: col(r, "secret_used_at")?,
        peer_id: col(r, "peer_id")?,
        address: col(r, "address")?,
        created_at: col(r, "created_at")?,
    })
}

async fn member_where(
    conn: &mut AnyConnection,
    cond: &str,
    binds: (i64, Option<&str>),
) -> AppResult<Vec<Member>> {
    let sql = format!(
        "SELECT {MEMBER_COLS} FROM members m LEFT JOIN users u ON u.id = m.user_id WHERE {cond} \
         ORDER BY m.node_name"
    );
    let mut q = sqlx::query(&sql).bind(binds.0);
    if let Some(s) = binds.1 {
        q = q.bind(s);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(member_from_row).collect::<Result<_, _>>()?)
}

/// Creates an approved member; 409 if the node name is taken in the group.
pub async fn create_member(
    conn: &mut AnyConnection,
    group_id: i64,
    user_id: Option<i64>,
    node_name: &str,
    now: i64,
) -> AppResult<i64> {
    let id = crate::crypto::random_id()?;
    let r = sqlx::query(
        "INSERT INTO members (id, group_id, user_id, node_name, status, created_at) \
         VALUES ($1, $2, $3, $4, 'approved', $5)",
    )
    .bind(id)
    .bind(group_id)
    .bind(user_id)
    .bind(node_name)
    .bind(now)
    .execute(&mut *conn)
    .await;
    match r.map_err(AppError::from) {
        Ok(_) => Ok(id),
        Err(e) if e.is_unique_violation() => Err(AppError::Conflict(format!(
            "the node name {node_name:?} is taken in this group"
        ))),
        Err(e) => Err(e),
    }
}

/// Whether a node name is taken in the group.
pub async fn name_taken(
    conn: &mut AnyConnection,
    group_id: i64,
    node_name: &str,
) -> AppResult<bool> {
    Ok(!member_where(
        conn,
        "m.group_id = $1 AND m.node_name = $2",
        (group_id, Some(node_name)),
    )
    .await?
    .is_empty())
}

/// All members of a group, by node name.
pub async fn members(conn: &mut AnyConnection, group_id: i64) -> AppResult<Vec<Member>> {
    member_where(conn, "m.group_id = $1", (group_id, None)).await
}

/// The member with this id in the group.
pub async fn member(conn: &mut AnyConnection, group_id: i64, id: i64) -> AppResult<Option<Member>> {
    let rows = sqlx::query(&format!(
        "SELECT {MEMBER_COLS} FROM members m LEFT JOIN users u ON u.id = m.user_id \
         WHERE m.group_id = $1 AND m.id = $2"
    ))
    .bind(group_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(rows.as_ref().map(member_from_row).transpose()?)
}

/// The member of `user_id` in the group (its newest node).
pub async fn member_of_user(
    conn: &mut AnyConnection,
    group_id: i64,
    user_id: i64,
) -> AppResult<Option<Member>> {
    let rows = sqlx::query(&format!(
        "SELECT {MEMBER_COLS} FROM members m LEFT JOIN users u ON u.id = m.user_id \
         WHERE m.group_id = $1 AND m.user_id = $2 ORDER BY m.created_at DESC, m.id DESC LIMIT 1"
    ))
    .bind(group_id)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(rows.as_ref().map(member_from_row).transpose()?)
}

/// The member whose blob secret hashes to `hash`.
pub async fn by_secret_hash(conn: &mut AnyConnection, hash: &str) -> AppResult<Option<Member>> {
    let row = sqlx::query(&format!(
        "SELECT {MEMBER_COLS} FROM members m LEFT JOIN users u ON u.id = m.user_id \
         WHERE m.secret_hash = $1"
    ))
    .bind(hash)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(member_from_row).transpose()?)
}

/// Members enrolled with `peer_id` (in any group).
pub async fn by_peer_id(conn: &mut AnyConnection, peer_id: &str) -> AppResult<Vec<Member>> {
    let rows = sqlx::query(&format!(
        "SELECT {MEMBER_COLS} FROM members m LEFT JOIN users u ON u.id = m.user_id \
         WHERE m.peer_id = $1 ORDER BY m.created_at"
    ))
    .bind(peer_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(member_from_row).collect::<Result<_, _>>()?)
}

/// Gives a not-yet-enrolled member a new blob secret (hash), replacing an
/// unused one; false if the member is enrolled or revoked.
pub async fn set_secret(conn: &mut AnyConnection, member_id: i64, hash: &str) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE members SET secret_hash = $1 WHERE id = $2 AND status = 'approved' \
         AND secret_used_at IS NULL",
    )
    .bind(hash)
    .bind(member_id)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Addresses taken in the group (enrolled and revoked members keep theirs).
pub async fn addresses(conn: &mut AnyConnection, group_id: i64) -> AppResult<Vec<String>> {
    let rows =
        sqlx::query("SELECT address FROM members WHERE group_id = $1 AND address IS NOT NULL")
            .bind(group_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .iter()
        .map(|r| col(r, "address"))
        .collect::<Result<_, _>>()?)
}

/// Records the enrolment: consumes the secret, stores PeerId and address.
/// False if the secret was consumed concurrently.
pub async fn mark_enrolled(
    conn: &mut AnyConnection,
    member_id: i64,
    peer_id: &str,
    address: &str,
    now: i64,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE members SET status = 'enrolled', secret_used_at = $1, enrolled_at = $1, \
         peer_id = $2, address = $3 WHERE id = $4 AND status = 'approved' \
         AND secret_used_at IS NULL",
    )
    .bind(now)
    .bind(peer_id)
    .bind(address)
    .bind(member_id)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks a member revoked; false if it already was.
pub async fn mark_revoked(conn: &mut AnyConnection, member_id: i64, now: i64) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE members SET status = 'revoked', revoked_at = $1 WHERE id = $2 \
         AND status <> 'revoked'",
    )
    .bind(now)
    .bind(member_id)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// An issued certificate.
#[derive(Clone, Debug)]
pub struct CertRow {
    /// Serial (hex).
    pub serial: String,
    /// notBefore.
    pub not_before: i64,
    /// notAfter.
    pub not_after: i64,
    /// When revoked.
    pub revoked_at: Option<i64>,
    /// Why.
    pub reason: Option<String>,
}

fn cert_from_row(r: &sqlx::any::AnyRow) -> Result<CertRow, sqlx::Error> {
    Ok(CertRow {
        serial: col(r, "serial")?,
        not_before: col(r, "not_before")?,
        not_after: col(r, "not_after")?,
        revoked_at: col(r, "revoked_at")?,
        reason: col(r, "reason")?,
    })
}

/// Records an issued certificate.
#[allow(clippy::too_many_arguments)]
pub async fn insert_cert(
    conn: &mut AnyConnection,
    serial: &str,
    group_id: i64,
    member_id: i64,
    cert_pem: &str,
    not_before: i64,
    not_after: i64,
    now: i64,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO certificates (serial, group_id, member_id, cert_pem, not_before, not_after, \
         issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(serial)
    .bind(group_id)
    .bind(member_id)
    .bind(cert_pem)
    .bind(not_before)
    .bind(not_after)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A member's certificates, newest first.
pub async fn certs_of(conn: &mut AnyConnection, member_id: i64) -> AppResult<Vec<CertRow>> {
    let rows = sqlx::query(
        "SELECT serial, not_before, not_after, revoked_at, reason FROM certificates \
         WHERE member_id = $1 ORDER BY issued_at DESC, not_after DESC",
    )
    .bind(member_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(cert_from_row).collect::<Result<_, _>>()?)
}

/// Revokes all unrevoked certificates of a member; returns how many.
pub async fn revoke_certs(
    conn: &mut AnyConnection,
    member_id: i64,
    reason: &str,
    now: i64,
) -> AppResult<u64> {
    let r = sqlx::query(
        "UPDATE certificates SET revoked_at = $1, reason = $2 WHERE member_id = $3 \
         AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(member_id)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected())
}

/// The group's revoked certificates still worth listing (not yet expired
/// at `now`; an expired certificate is refused anyway).
pub async fn revoked_certs(
    conn: &mut AnyConnection,
    group_id: i64,
    now: i64,
) -> AppResult<Vec<CertRow>> {
    let rows = sqlx::query(
        "SELECT serial, not_before, not_after, revoked_at, reason FROM certificates \
         WHERE group_id = $1 AND revoked_at IS NOT NULL AND not_after > $2 ORDER BY revoked_at",
    )
    .bind(group_id)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(cert_from_row).collect::<Result<_, _>>()?)
}

/// For each member of the group with an unrevoked certificate: the latest
/// notAfter.
pub async fn cert_expiries(
    conn: &mut AnyConnection,
    group_id: i64,
) -> AppResult<std::collections::HashMap<i64, i64>> {
    let rows = sqlx::query(
        "SELECT member_id, MAX(not_after) AS na FROM certificates \
         WHERE group_id = $1 AND revoked_at IS NULL GROUP BY member_id",
    )
    .bind(group_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((col(r, "member_id")?, col(r, "na")?)))
        .collect()
}

/// How many addresses the group has given out.
pub async fn address_count(conn: &mut AnyConnection, group_id: i64) -> AppResult<i64> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS n FROM members WHERE group_id = $1 AND address IS NOT NULL",
    )
    .bind(group_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(col(&r, "n")?)
}

/// Whether `address` is taken in the group.
pub async fn address_taken(
    conn: &mut AnyConnection,
    group_id: i64,
    address: &str,
) -> AppResult<bool> {
    let r = sqlx::query("SELECT COUNT(*) AS n FROM members WHERE group_id = $1 AND address = $2")
        .bind(group_id)
        .bind(address)
        .fetch_one(&mut *conn)
        .await?;
    Ok(col::<i64>(&r, "n")? > 0)
}
