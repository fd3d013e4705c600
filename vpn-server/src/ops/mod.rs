//! The server's operations, shared by the web UI, the JSON API and the
//! admin command line. Each checks the actor's role and runs in one
//! database transaction.

pub mod accounts;
pub mod blob;
pub mod enroll;
pub mod pki;
pub mod requests;

use sqlx::AnyConnection;

use crate::db::groups::{self, Group};
use crate::error::{AppError, AppResult};

/// Who acts: a logged-in user, or the server's own command line.
#[derive(Clone, Debug)]
pub enum Actor {
    /// A user (id, name).
    User(i64, String),
    /// `vpn-server admin ...` (acts as an administrator of every group).
    Cli,
}

impl Actor {
    /// The name in the audit log.
    pub fn name(&self) -> &str {
        match self {
            Actor::User(_, n) => n,
            Actor::Cli => "admin-cli",
        }
    }

    /// The user id, if a user.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Actor::User(id, _) => Some(*id),
            Actor::Cli => None,
        }
    }
}

/// The group named `name`, or 404.
pub async fn group_or_404(conn: &mut AnyConnection, name: &str) -> AppResult<Group> {
    groups::by_name(conn, name)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no group named {name:?}")))
}

/// The actor's role in the group: `admin`, `member`, or 403.
pub async fn require_role(conn: &mut AnyConnection, g: &Group, actor: &Actor) -> AppResult<String> {
    match actor {
        Actor::Cli => Ok("admin".into()),
        Actor::User(id, _) => groups::role_of(conn, g.id, *id).await?.ok_or_else(|| {
            AppError::Forbidden(format!("you are not a member of the group {:?}", g.name))
        }),
    }
}

/// 403 unless the actor administers the group.
pub async fn require_admin(conn: &mut AnyConnection, g: &Group, actor: &Actor) -> AppResult<()> {
    if require_role(conn, g, actor).await? == "admin" {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "only administrators of {:?} may do this",
            g.name
        )))
    }
}
