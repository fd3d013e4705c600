//! Login sessions: the cookie holds a random id, the table its SHA-256.

use sqlx::AnyConnection;

use super::col;
use crate::error::AppResult;

/// A live session.
#[derive(Clone, Debug)]
pub struct Session {
    /// SHA-256 hex of the cookie value.
    pub id_hash: String,
    /// The user.
    pub user_id: i64,
    /// Their name.
    pub username: String,
    /// The CSRF token of this session's forms.
    pub csrf: String,
    /// When it ends (Unix seconds).
    pub expires_at: i64,
}

/// Stores a new session.
pub async fn create(
    conn: &mut AnyConnection,
    id_hash: &str,
    user_id: i64,
    csrf: &str,
    now: i64,
    expires_at: i64,
) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, csrf, flash, created_at, expires_at) \
         VALUES ($1, $2, $3, NULL, $4, $5)",
    )
    .bind(id_hash)
    .bind(user_id)
    .bind(csrf)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The unexpired session with this id hash.
pub async fn lookup(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: i64,
) -> AppResult<Option<Session>> {
    let row = sqlx::query(
        "SELECT s.id_hash, s.user_id, u.username, s.csrf, s.expires_at \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id_hash = $1 AND s.expires_at > $2",
    )
    .bind(id_hash)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Session {
        id_hash: col(&r, "id_hash")?,
        user_id: col(&r, "user_id")?,
        username: col(&r, "username")?,
        csrf: col(&r, "csrf")?,
        expires_at: col(&r, "expires_at")?,
    }))
}

/// Ends a session (logout).
pub async fn delete(conn: &mut AnyConnection, id_hash: &str) -> AppResult<()> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Forgets expired sessions.
pub async fn purge_expired(conn: &mut AnyConnection, now: i64) -> AppResult<u64> {
    let r = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected())
}

/// Leaves a message for the session's next page.
pub async fn set_flash(conn: &mut AnyConnection, id_hash: &str, msg: &str) -> AppResult<()> {
    sqlx::query("UPDATE sessions SET flash = $1 WHERE id_hash = $2")
        .bind(msg)
        .bind(id_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes (reads and clears) the session's message.
pub async fn take_flash(conn: &mut AnyConnection, id_hash: &str) -> AppResult<Option<String>> {
    let row = sqlx::query("SELECT flash FROM sessions WHERE id_hash = $1")
        .bind(id_hash)
        .fetch_optional(&mut *conn)
        .await?;
    let flash: Option<String> = match row {
        Some(r) => col(&r, "flash")?,
        None => None,
    };
    if flash.is_some() {
        sqlx::query("UPDATE sessions SET flash = NULL WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *conn)
            .await?;
    }
    Ok(flash)
}
