//! Groups (with their CA and current CRL) and who holds which role in them.

use sqlx::AnyConnection;

use super::col;
use crate::error::{AppError, AppResult};

/// A group row.
#[derive(Clone, Debug)]
pub struct Group {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// IPv4 range, e.g. `10.77.0.0/24`.
    pub range4: String,
    /// Member certificate validity in days.
    pub validity_days: i64,
    /// Bootstrap multiaddrs, one per line.
    pub bootstrap: String,
    /// CA certificate (PEM).
    pub ca_cert_pem: String,
    /// CA key, sealed with the server key.
    pub ca_key_enc: String,
    /// Number of the current CRL.
    pub crl_number: i64,
    /// The current CRL (PEM).
    pub crl_pem: String,
    /// Its thisUpdate (Unix seconds).
    pub crl_this_update: i64,
    /// Its nextUpdate (Unix seconds).
    pub crl_next_update: i64,
    /// Creation time.
    pub created_at: i64,
}

impl Group {
    /// The bootstrap multiaddrs.
    pub fn bootstrap_list(&self) -> Vec<String> {
        self.bootstrap
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

const COLS: &str = "id, name, range4, validity_days, bootstrap, ca_cert_pem, ca_key_enc, \
    crl_number, crl_pem, crl_this_update, crl_next_update, created_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Group, sqlx::Error> {
    Ok(Group {
        id: col(r, "id")?,
        name: col(r, "name")?,
        range4: col(r, "range4")?,
        validity_days: col(r, "validity_days")?,
        bootstrap: col(r, "bootstrap")?,
        ca_cert_pem: col(r, "ca_cert_pem")?,
        ca_key_enc: col(r, "ca_key_enc")?,
        crl_number: col(r, "crl_number")?,
        crl_pem: col(r, "crl_pem")?,
        crl_this_update: col(r, "crl_this_update")?,
        crl_next_update: col(r, "crl_next_update")?,
        created_at: col(r, "created_at")?,
    })
}

/// Inserts a group (its id is `g.id`); 409 if the name is taken.
pub async fn insert(conn: &mut AnyConnection, g: &Group, created_by: i64) -> AppResult<()> {
    let r = sqlx::query(&format!(
        "INSERT INTO vpn_groups ({COLS}, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(g.id)
    .bind(&g.name)
    .bind(&g.range4)
    .bind(g.validity_days)
    .bind(&g.bootstrap)
    .bind(&g.ca_cert_pem)
    .bind(&g.ca_key_enc)
    .bind(g.crl_number)
    .bind(&g.crl_pem)
    .bind(g.crl_this_update)
    .bind(g.crl_next_update)
    .bind(g.created_at)
    .bind(created_by)
    .execute(&mut *conn)
    .await;
    match r.map_err(AppError::from) {
        Ok(_) => Ok(()),
        Err(e) if e.is_unique_violation() => Err(AppError::Conflict(format!(
            "a group named {:?} already exists",
            g.name
        ))),
        Err(e) => Err(e),
    }
}

/// The group named `name`.
pub async fn by_name(conn: &mut AnyConnection, name: &str) -> AppResult<Option<Group>> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM vpn_groups WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The group with this id.
pub async fn by_id(conn: &mut AnyConnection, id: i64) -> AppResult<Option<Group>> {
    let row = sqlx::query(&format!("SELECT {COLS} FROM vpn_groups WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// A group in the list of groups, with the viewer's relation to it.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Name.
    pub name: String,
    /// IPv4 range.
    pub range4: String,
    /// The viewer's role (`admin`, `member`) if any.
    pub role: Option<String>,
    /// The viewer's latest join request status, if any.
    pub request: Option<String>,
}

/// All groups (names are public: people ask to join by name), with the
/// viewer's role and request status.
pub async fn list_for(conn: &mut AnyConnection, user_id: i64) -> AppResult<Vec<Listed>> {
    let rows = sqlx::query(
        "SELECT g.name, g.range4, m.role, \
           (SELECT r.status FROM join_requests r WHERE r.group_id = g.id AND r.user_id = $1 \
            ORDER BY r.created_at DESC, r.id DESC LIMIT 1) AS request \
         FROM vpn_groups g LEFT JOIN memberships m ON m.group_id = g.id AND m.user_id = $1 \
         ORDER BY g.name",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Listed {
                name: col(r, "name")?,
                range4: col(r, "range4")?,
                role: col(r, "role")?,
                request: col(r, "request")?,
            })
        })
        .collect()
}

/// The user's role in the group (`admin`, `member`), if any.
pub async fn role_of(
    conn: &mut AnyConnection,
    group_id: i64,
    user_id: i64,
) -> AppResult<Option<String>> {
    let row = sqlx::query("SELECT role FROM memberships WHERE group_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Some(col(&r, "role")?),
        None => None,
    })
}

/// Gives the user a role in the group (keeps `admin` if already admin).
pub async fn add_membership(
    conn: &mut AnyConnection,
    group_id: i64,
    user_id: i64,
    role: &str,
    now: i64,
) -> AppResult<()> {
    if role_of(conn, group_id, user_id).await?.is_some() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO memberships (group_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(group_id)
    .bind(user_id)
    .bind(role)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replaces the bootstrap list.
pub async fn set_bootstrap(
    conn: &mut AnyConnection,
    group_id: i64,
    bootstrap: &str,
) -> AppResult<()> {
    sqlx::query("UPDATE vpn_groups SET bootstrap = $1 WHERE id = $2")
        .bind(bootstrap)
        .bind(group_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores a newly signed CRL if the stored one is still number
/// `previous` (false: someone else stored a newer one first).
pub async fn replace_crl(
    conn: &mut AnyConnection,
    group_id: i64,
    previous: i64,
    number: i64,
    pem: &str,
    this_update: i64,
    next_update: i64,
) -> AppResult<bool> {
    let r = sqlx::query(
        "UPDATE vpn_groups SET crl_number = $1, crl_pem = $2, crl_this_update = $3, \
         crl_next_update = $4 WHERE id = $5 AND crl_number = $6",
    )
    .bind(number)
    .bind(pem)
    .bind(this_update)
    .bind(next_update)
    .bind(group_id)
    .bind(previous)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// One group's name and sealed CA key (to check the server key at start).
pub async fn any_sealed_key(conn: &mut AnyConnection) -> AppResult<Option<(String, String)>> {
    let row = sqlx::query("SELECT name, ca_key_enc FROM vpn_groups ORDER BY created_at LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Some((col(&r, "name")?, col(&r, "ca_key_enc")?)),
        None => None,
    })
}

/// Locks the group's row until the transaction ends (PostgreSQL: a row
/// lock that queues the group's other enrolments and CRL changes instead
/// of letting them race for the same address or CRL number; SQLite: the
/// write lock), then reads the group as it is now.
pub async fn lock_and_get(conn: &mut AnyConnection, id: i64) -> AppResult<Group> {
    sqlx::query("UPDATE vpn_groups SET crl_number = crl_number WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    by_id(conn, id)
        .await?
        .ok_or_else(|| AppError::NotFound("the group no longer exists".into()))
}
