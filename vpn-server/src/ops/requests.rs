//! Join requests and their decisions, revocation, group settings.

use std::time::SystemTime;

use crate::db::groups::{self, Group};
use crate::db::{self, audit, members};
use crate::error::{AppError, AppResult};
use crate::ops::{group_or_404, pki, require_admin, Actor};
use crate::state::AppState;

/// Longest reason accepted.
pub const MAX_REASON: usize = 1000;
/// Most bootstrap addresses per group.
pub const MAX_BOOTSTRAP: usize = 32;

/// Asks to join `group` with a node name and a reason.
pub async fn request_join(
    st: &AppState,
    actor: &Actor,
    group: &str,
    node_name: &str,
    reason: &str,
) -> AppResult<i64> {
    let user = actor
        .user_id()
        .ok_or_else(|| AppError::BadRequest("join requests come from accounts".into()))?;
    vpn_pki::validate_node_name(node_name).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(AppError::BadRequest(format!(
            "give a reason of 1 to {MAX_REASON} characters"
        )));
    }
    crate::in_tx!(&st.db, |tx| {
        let g = group_or_404(&mut tx, group).await?;
        if members::has_pending(&mut tx, g.id, user).await? {
            return Err(AppError::Conflict(format!(
                "you already have a pending request for {group:?}"
            )));
        }
        if let Some(m) = members::member_of_user(&mut tx, g.id, user).await? {
            if m.status != "revoked" {
                return Err(AppError::Conflict(format!(
                    "you already have the node {} in {group:?}",
                    m.node_name
                )));
            }
        }
        if members::name_taken(&mut tx, g.id, node_name).await? {
            return Err(AppError::Conflict(format!(
                "the node name {node_name:?} is taken in {group:?}"
            )));
        }
        let id =
            members::create_request(&mut tx, g.id, user, node_name, reason, db::now_secs()).await?;
        audit::add(
            &mut tx,
            Some(g.id),
            actor.name(),
            "request",
            &format!("asks to join as {node_name}: {reason}"),
        )
        .await?;
        Ok(id)
    })
}

/// Approves (`approve = true`) or denies a pending request (admins only).
/// Approval creates the member (its blob is made when the member opens
/// the blob page) and gives the user the `member` role.
pub async fn decide(
    st: &AppState,
    actor: &Actor,
    group: &str,
    request_id: i64,
    approve: bool,
) -> AppResult<String> {
    crate::in_tx!(&st.db, |tx| {
        let g = group_or_404(&mut tx, group).await?;
        require_admin(&mut tx, &g, actor).await?;
        let r = members::request(&mut tx, g.id, request_id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no request {request_id} in {group:?}")))?;
        let now = db::now_secs();
        let status = if approve { "approved" } else { "denied" };
        if !members::decide_request(
            &mut tx,
            r.id,
            status,
            actor.user_id().unwrap_or(r.user_id),
            now,
        )
        .await?
        {
            return Err(AppError::Conflict(format!(
                "the request was already {}",
                r.status
            )));
        }
        if approve {
            members::create_member(&mut tx, g.id, Some(r.user_id), &r.node_name, now).await?;
            groups::add_membership(&mut tx, g.id, r.user_id, "member", now).await?;
        }
        audit::add(
            &mut tx,
            Some(g.id),
            actor.name(),
            if approve { "approve" } else { "deny" },
            &format!("{} as {} ({})", r.username, r.node_name, r.reason),
        )
        .await?;
        Ok(r.node_name)
    })
}

/// Revokes the member `node_name` (admins only): its certificates go on
/// the CRL, which is re-signed; its secret stops working.
pub async fn revoke(st: &AppState, actor: &Actor, group: &str, node_name: &str) -> AppResult<()> {
    crate::in_tx!(&st.db, |tx| {
        let g = group_or_404(&mut tx, group).await?;
        require_admin(&mut tx, &g, actor).await?;
        let g = groups::lock_and_get(&mut tx, g.id).await?;
        let m = members::members(&mut tx, g.id)
            .await?
            .into_iter()
            .find(|m| m.node_name == node_name)
            .ok_or_else(|| AppError::NotFound(format!("no member {node_name:?} in {group:?}")))?;
        let now = db::now_secs();
        if !members::mark_revoked(&mut tx, m.id, now).await? {
            return Err(AppError::Conflict(format!(
                "{node_name} is already revoked"
            )));
        }
        let n = members::revoke_certs(&mut tx, m.id, "privilegeWithdrawn", now).await?;
        if let Some(user) = m.user_id {
            if groups::role_of(&mut tx, g.id, user).await?.as_deref() == Some("member")
                && members::member_of_user(&mut tx, g.id, user)
                    .await?
                    .is_some_and(|x| x.id == m.id)
            {
                sqlx::query("DELETE FROM memberships WHERE group_id = $1 AND user_id = $2")
                    .bind(g.id)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let crl = pki::resign_crl(st, &mut tx, &g, SystemTime::now()).await?;
        audit::add(
            &mut tx,
            Some(g.id),
            actor.name(),
            "revoke",
            &format!(
                "{node_name} revoked ({n} certificate(s)); CRL number {}",
                crl.number().unwrap_or(0)
            ),
        )
        .await?;
        Ok(())
    })
}

/// Checks and normalises a bootstrap list (one multiaddr per line).
pub fn parse_bootstrap(text: &str) -> AppResult<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() > MAX_BOOTSTRAP {
        return Err(AppError::BadRequest(format!(
            "at most {MAX_BOOTSTRAP} bootstrap addresses"
        )));
    }
    for l in &lines {
        let ok = l.starts_with('/')
            && l.len() <= 512
            && l.chars().all(|c| c.is_ascii_graphic())
            && l.split('/').skip(1).all(|p| !p.is_empty());
        if !ok {
            return Err(AppError::BadRequest(format!(
                "{l:?} is not a multiaddr (e.g. /ip4/192.0.2.1/tcp/4001/p2p/12D3KooW...)"
            )));
        }
    }
    Ok(lines.join("\n"))
}

/// Replaces the bootstrap list (admins only).
pub async fn set_bootstrap(st: &AppState, actor: &Actor, group: &str, text: &str) -> AppResult<()> {
    let list = parse_bootstrap(text)?;
    crate::in_tx!(&st.db, |tx| {
        let g: Group = group_or_404(&mut tx, group).await?;
        require_admin(&mut tx, &g, actor).await?;
        groups::set_bootstrap(&mut tx, g.id, &list).await?;
        audit::add(
            &mut tx,
            Some(g.id),
            actor.name(),
            "settings",
            &format!(
                "bootstrap: {}",
                if list.is_empty() { "(none)" } else { &list }
            ),
        )
        .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bootstrap_lists() {
        let ok = super::parse_bootstrap("\n /ip4/192.0.2.1/tcp/4001/p2p/12D3KooWabc \n\n").unwrap();
        assert_eq!(ok, "/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWabc");
        for bad in [
            "ip4/1.2.3.4",
            "/ip4//tcp",
            "/ip4/1.2.3.4 x",
            "/a'; DROP TABLE x;--",
        ] {
            assert!(super::parse_bootstrap(bad).is_err(), "{bad}");
        }
    }
}
