//! The audit log: approvals, denials, issuances, renewals, revocations,
//! group changes.

use sqlx::AnyConnection;

use super::col;
use crate::error::AppResult;

/// One entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Unix microseconds.
    pub at: i64,
    /// Who (username, `api`, `admin-cli`).
    pub actor: String,
    /// What (`approve`, `deny`, `enroll`, `renew`, `revoke`, ...).
    pub action: String,
    /// Details.
    pub detail: String,
}

/// Appends an entry (inside the transaction of the change it records).
pub async fn add(
    conn: &mut AnyConnection,
    group_id: Option<i64>,
    actor: &str,
    action: &str,
    detail: &str,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, group_id, at, actor, action, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(crate::crypto::random_id()?)
    .bind(group_id)
    .bind(super::now_micros())
    .bind(actor)
    .bind(action)
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The newest `limit` entries of a group, newest first.
pub async fn list(conn: &mut AnyConnection, group_id: i64, limit: i64) -> AppResult<Vec<Entry>> {
    let rows = sqlx::query(
        "SELECT at, actor, action, detail FROM audit_log WHERE group_id = $1 \
         ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(group_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Entry {
                at: col(r, "at")?,
                actor: col(r, "actor")?,
                action: col(r, "action")?,
                detail: col(r, "detail")?,
            })
        })
        .collect()
}

/// Counts a group's entries with `action` (tests and the admin CLI).
pub async fn count(conn: &mut AnyConnection, group_id: i64, action: &str) -> AppResult<i64> {
    let r = sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE group_id = $1 AND action = $2")
        .bind(group_id)
        .bind(action)
        .fetch_one(&mut *conn)
        .await?;
    Ok(col(&r, "n")?)
}
