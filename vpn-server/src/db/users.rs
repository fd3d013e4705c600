//! Accounts.

use sqlx::AnyConnection;

use super::col;
use crate::error::{AppError, AppResult};

/// An account.
#[derive(Clone, Debug)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: col(r, "id")?,
        username: col(r, "username")?,
        password_hash: col(r, "password_hash")?,
    })
}

/// Creates an account; 409 if the name is taken.
pub async fn create(
    conn: &mut AnyConnection,
    username: &str,
    password_hash: &str,
    now: i64,
) -> AppResult<i64> {
    let id = crate::crypto::random_id()?;
    let r = sqlx::query(
        "INSERT INTO users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(username)
    .bind(password_hash)
    .bind(now)
    .execute(&mut *conn)
    .await;
    match r.map_err(AppError::from) {
        Ok(_) => Ok(id),
        Err(e) if e.is_unique_violation() => Err(AppError::Conflict(format!(
            "the username {username:?} is taken"
        ))),
        Err(e) => Err(e),
    }
}

/// The account named `username`.
pub async fn by_name(conn: &mut AnyConnection, username: &str) -> AppResult<Option<User>> {
    let row = sqlx::query("SELECT id, username, password_hash FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}
