//! Group pages: list and create, group page, join requests, decisions,
//! revocation, settings, blob, audit log.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::IntoResponse as _;
use axum::Form;
use serde::Deserialize;

use super::account::{flash_of, set_flash, CsrfForm};
use super::session::CurrentUser;
use super::views::{self, GroupView};
use super::{form, page, see_other, WebResult};
use crate::db::{audit, groups, members};
use crate::error::AppError;
use crate::ops::{self, blob, pki, requests, Actor};
use crate::state::AppState;

async fn conn(st: &AppState) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, AppError> {
    Ok(st.db.pool().acquire().await?)
}

/// `GET /groups`.
pub async fn list(State(st): State<Arc<AppState>>, u: CurrentUser) -> WebResult {
    let flash = flash_of(&st, &u).await?;
    let all = groups::list_for(&mut *conn(&st).await?, u.0.user_id).await?;
    Ok(page(
        "Groups",
        Some(&u),
        flash.as_deref(),
        views::groups_list(&all, &u.0.csrf),
    )
    .into_response())
}

/// Create-group form.
#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    range: String,
    #[serde(default)]
    validity_days: String,
}

/// `POST /groups`.
pub async fn create(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    f: Result<Form<CreateForm>, FormRejection>,
) -> WebResult {
    let f = form(f)?;
    u.check_csrf(&f.csrf)?;
    let days: i64 =
        f.validity_days.trim().parse().map_err(|_| {
            AppError::BadRequest("validity_days must be a whole number of days".into())
        })?;
    let g = pki::create_group(&st, &u.actor(), f.name.trim(), &f.range, days).await?;
    set_flash(
        &st,
        &u,
        &format!(
            "Created the group {} with its certificate authority.",
            g.name
        ),
    )
    .await?;
    Ok(see_other(&format!("/groups/{}", g.name)))
}

/// `GET /groups/{name}`: administrators see requests, certificates,
/// settings and revoke buttons; members see the member list; others 403.
pub async fn page_h(st: &AppState, u: &CurrentUser, name: &str) -> WebResult {
    let flash = flash_of(st, u).await?;
    let mut c = conn(st).await?;
    let g = ops::group_or_404(&mut c, name).await?;
    let role = match ops::require_role(&mut c, &g, &u.actor()).await {
        Ok(r) => r,
        Err(AppError::Forbidden(msg)) => {
            let body = maud::html! {
                p { a #join-link href=(format!("/groups/{}/join", g.name)) { "Ask to join " (g.name) } }
            };
            return Ok((
                axum::http::StatusCode::FORBIDDEN,
                page(&format!("Group {}", g.name), Some(u), Some(&msg), body),
            )
                .into_response());
        }
        Err(e) => return Err(e.into()),
    };
    let own_node = members::member_of_user(&mut c, g.id, u.0.user_id).await?;
    let members = members::members(&mut c, g.id).await?;
    let expiries = members::cert_expiries(&mut c, g.id).await?;
    let pending = if role == "admin" {
        members::requests(&mut c, g.id, "pending").await?
    } else {
        Vec::new()
    };
    let body = views::group_page(&GroupView {
        g: &g,
        role: &role,
        members: &members,
        expiries: &expiries,
        pending: &pending,
        csrf: &u.0.csrf,
        has_node: own_node.is_some_and(|m| m.status != "revoked"),
    });
    Ok(page(
        &format!("Group {}", g.name),
        Some(u),
        flash.as_deref(),
        body,
    )
    .into_response())
}

/// `GET /groups/{name}`.
pub async fn group(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    Path(name): Path<String>,
) -> WebResult {
    page_h(&st, &u, &name).await
}

/// `GET /groups/{name}/join`.
pub async fn join_page(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    Path(name): Path<String>,
) -> WebResult {
    let g = ops::group_or_404(&mut *conn(&st).await?, &name).await?;
    Ok(page(
        &format!("Join {}", g.name),
        Some(&u),
        None,
        views::join_page(&g.name, &u.0.csrf, "", ""),
    )
    .into_response())
}

/// Join form.
#[derive(Deserialize)]
pub struct JoinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    node_name: String,
    #[serde(default)]
    reason: String,
}

/// `POST /groups/{name}/join`.
pub async fn join(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    Path(name): Path<String>,
    f: Result<Form<JoinForm>, FormRejection>,
) -> WebResult {
    let f = form(f)?;
    u.check_csrf(&f.csrf)?;
    match requests::request_join(&st, &u.actor(), &name, f.node_name.trim(), &f.reason).await {
        Ok(_) => {
            set_flash(
                &st,
                &u,
                &format!("Your request to join {name} was sent to its administrators."),
            )
            .await?;
            Ok(see_other("/groups"))
        }
        Err(e @ (AppError::BadRequest(_) | AppError::Conflict(_))) => {
            let msg = e.public_message();
            Ok((
                e.status(),
                page(
                    &format!("Join {name}"),
                    Some(&u),
                    Some(&msg),
                    views::join_page(&name, &u.0.csrf, &f.node_name, &f.reason),
                ),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

fn request_id(id: &str) -> Result<i64, AppError> {
    id.parse()
        .map_err(|_| AppError::NotFound(format!("no request {id:?}")))
}

async fn decide(
    st: &AppState,
    u: &CurrentUser,
    name: &str,
    id: &str,
    csrf: &str,
    approve: bool,
) -> WebResult {
    u.check_csrf(csrf)?;
    let id = request_id(id)?;
    let node = requests::decide(st, &u.actor(), name, id, approve).await?;
    let msg = if approve {
        format!("Approved {node}: its owner can now download the configuration blob.")
    } else {
        format!("Denied the request for {node}.")
    };
    set_flash(st, u, &msg).await?;
    Ok(see_other(&format!("/groups/{name}")))
}

/// `POST /groups/{name}/requests/{id}/approve`.
pub async fn approve(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    Path((name, id)): Path<(String, String)>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> WebResult {
    let f = form(f)?;
    decide(&st, &u, &name, &id, &f.csrf, true).await
}

/// `POST /groups/{name}/requests/{id}/deny`.
pub async fn deny(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    Path((name, id)): Path<(String, String)>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> WebResult {
    let f = form(f)?;
    decide(&st, &u, &name, &id, &f.csrf, false).await
}

/// `POST /groups/{name}/members/{member}/revoke`.
pub async fn revoke(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    Path((name, member)): Path<(String, String)>,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> WebResult {
    let f = form(f)?;
    u.check_csrf(&f.csrf)?;
    requests::revoke(&st, &u.actor(), &name, &member).await?;
    set_flash(
        &st,
        &u,
        &format!("Revoked {member}; the group's CRL was re-signed."),
    )
    .await?;
    Ok(see_other(&format!("/groups/{name}")))
}

/// Settings form.
#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    bootstrap: String,
}

/// `POST /groups/{name}/settings`.
pub async fn settings(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    Path(name): Path<String>,
    f: Result<Form<SettingsForm>, FormRejection>,
) -> WebResult {
    let f = form(f)?;
    u.check_csrf(&f.csrf)?;
    requests::set_bootstrap(&st, &u.actor(), &name, &f.bootstrap).await?;
    set_flash(&st, &u, "Saved the bootstrap addresses.").await?;
    Ok(see_other(&format!("/groups/{name}")))
}

/// `GET /groups/{name}/blob`: a fresh blob for the viewer's approved node,
/// or its enrolment once used.
pub async fn blob(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    Path(name): Path<String>,
) -> WebResult {
    let mut c = conn(&st).await?;
    let g = ops::group_or_404(&mut c, &name).await?;
    let m = members::member_of_user(&mut c, g.id, u.0.user_id).await?;
    let role = groups::role_of(&mut c, g.id, u.0.user_id).await?;
    let title = format!("Configuration blob for {}", g.name);
    let Some(m) = m else {
        return Err(match role {
            Some(_) => AppError::NotFound(format!(
                "you have no approved node in {name}: ask to join with a node name first"
            )),
            None => AppError::Forbidden(format!("you are not a member of the group {name:?}")),
        }
        .into());
    };
    match m.status.as_str() {
        "revoked" => Err(AppError::Forbidden(format!(
            "your node {} was revoked from {name}",
            m.node_name
        ))
        .into()),
        "enrolled" => {
            let until = members::cert_expiries(&mut c, g.id)
                .await?
                .get(&m.id)
                .copied();
            drop(c);
            Ok(page(&title, Some(&u), None, views::enrolled_page(&m, until)).into_response())
        }
        _ => {
            drop(c);
            let text =
                blob::issue_blob(&st, &Actor::User(u.0.user_id, u.0.username.clone()), &g, &m)
                    .await?;
            Ok(page(
                &title,
                Some(&u),
                None,
                views::blob_page(&g.name, &m.node_name, &text),
            )
            .into_response())
        }
    }
}

/// `GET /groups/{name}/audit` (administrators).
pub async fn audit(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    Path(name): Path<String>,
) -> WebResult {
    let mut c = conn(&st).await?;
    let g = ops::group_or_404(&mut c, &name).await?;
    ops::require_admin(&mut c, &g, &u.actor()).await?;
    let entries = audit::list(&mut c, g.id, 500).await?;
    Ok(page(
        &format!("Audit log of {}", g.name),
        Some(&u),
        None,
        views::audit_page(&g.name, &entries),
    )
    .into_response())
}
