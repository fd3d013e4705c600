//! Start page, registration, login, logout.

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse as _;
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::session::{self, CurrentUser, MaybeUser};
use super::{form, page, see_other, WebError, WebResult};
use crate::db::{groups, sessions};
use crate::error::AppError;
use crate::ops::accounts;
use crate::state::AppState;
use crate::tls::ClientAddr;

/// The flash message of the session (read once).
pub async fn flash_of(st: &AppState, u: &CurrentUser) -> Result<Option<String>, WebError> {
    let mut c = st.db.pool().acquire().await.map_err(AppError::from)?;
    Ok(sessions::take_flash(&mut c, &u.0.id_hash).await?)
}

/// Leaves a message for the next page of this session.
pub async fn set_flash(st: &AppState, u: &CurrentUser, msg: &str) -> Result<(), WebError> {
    let mut c = st.db.pool().acquire().await.map_err(AppError::from)?;
    sessions::set_flash(&mut c, &u.0.id_hash, msg).await?;
    Ok(())
}

/// `GET /`.
pub async fn home(State(st): State<Arc<AppState>>, MaybeUser(user): MaybeUser) -> WebResult {
    let Some(u) = user else {
        return Ok(page(
            "Group server",
            None,
            None,
            html! {
                p { "This server runs GroupVPN groups: private networks whose members find each other \
                     through a peer-to-peer overlay. Create an account to start a group or to ask to join one." }
                p { a href="/register" { "Create an account" } " · " a href="/login" { "Log in" } }
            },
        )
        .into_response());
    };
    let flash = flash_of(&st, &u).await?;
    let mut c = st.db.pool().acquire().await.map_err(AppError::from)?;
    let mine: Vec<_> = groups::list_for(&mut c, u.0.user_id)
        .await?
        .into_iter()
        .filter(|g| g.role.is_some() || g.request.as_deref() == Some("pending"))
        .collect();
    Ok(page(
        "Your groups",
        Some(&u),
        flash.as_deref(),
        html! {
            @if mine.is_empty() {
                p { "You are in no group yet. " a href="/groups" { "Create a group or ask to join one" } "." }
            } @else {
                ul #my-groups {
                    @for g in &mine {
                        li {
                            a href=(format!("/groups/{}", g.name)) { (g.name) }
                            " — "
                            @match (g.role.as_deref(), g.request.as_deref()) {
                                (Some("admin"), _) => "administrator",
                                (Some(_), _) => { "member · " a href=(format!("/groups/{}/blob", g.name)) { "configuration blob" } },
                                _ => "request pending",
                            }
                        }
                    }
                }
                p { a href="/groups" { "All groups" } }
            }
        },
    )
    .into_response())
}

fn register_form(csrf: &str, username: &str) -> maud::Markup {
    html! {
        form #register-form .stack method="post" action="/register" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Username" small { "letters, digits, . _ - @" }
                input type="text" name="username" value=(username) required autocomplete="username" maxlength="64"; }
            label { "Password" small { "at least 8 characters" }
                input type="password" name="password" required autocomplete="new-password" minlength="8"; }
            label { "Password again"
                input type="password" name="password2" required autocomplete="new-password"; }
            button type="submit" { "Create account" }
        }
        p { "Already registered? " a href="/login" { "Log in" } }
    }
}

fn login_form(csrf: &str, username: &str) -> maud::Markup {
    html! {
        form #login-form .stack method="post" action="/login" {
            input type="hidden" name="csrf" value=(csrf);
            label { "Username" input type="text" name="username" value=(username) required autocomplete="username"; }
            label { "Password" input type="password" name="password" required autocomplete="current-password"; }
            button type="submit" { "Log in" }
        }
        p { "No account? " a href="/register" { "Create one" } }
    }
}

fn anon_page(
    headers: &HeaderMap,
    title: &str,
    status: axum::http::StatusCode,
    msg: Option<&str>,
    body: impl FnOnce(&str) -> maud::Markup,
) -> WebResult {
    let (csrf, set) = session::pre_login_csrf(headers)?;
    let res = (status, page(title, None, msg, body(&csrf))).into_response();
    Ok(session::with_cookies(res, set))
}

/// `GET /register`.
pub async fn register_page(headers: HeaderMap) -> WebResult {
    anon_page(
        &headers,
        "Create an account",
        axum::http::StatusCode::OK,
        None,
        |c| register_form(c, ""),
    )
}

/// Registration form.
#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

/// `POST /register`: creates the account and logs in.
pub async fn register(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    f: Result<Form<RegisterForm>, FormRejection>,
) -> WebResult {
    let f = form(f)?;
    session::check_pre_login_csrf(&headers, &f.csrf)?;
    let result = if f.password == f.password2 {
        accounts::register(&st, addr.0.ip(), &f.username, &f.password).await
    } else {
        Err(AppError::BadRequest("the two passwords differ".into()))
    };
    match result {
        Ok(user_id) => {
            let cookie = session::start(&st, user_id, &format!("Welcome, {}!", f.username)).await?;
            Ok(session::with_cookies(see_other("/groups"), [cookie]))
        }
        Err(e @ (AppError::BadRequest(_) | AppError::Conflict(_) | AppError::TooMany(_))) => {
            let msg = e.public_message();
            anon_page(&headers, "Create an account", e.status(), Some(&msg), |c| {
                register_form(c, &f.username)
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /login`.
pub async fn login_page(headers: HeaderMap) -> WebResult {
    anon_page(&headers, "Log in", axum::http::StatusCode::OK, None, |c| {
        login_form(c, "")
    })
}

/// Login form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /login`.
pub async fn login(
    State(st): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    f: Result<Form<LoginForm>, FormRejection>,
) -> WebResult {
    let f = form(f)?;
    session::check_pre_login_csrf(&headers, &f.csrf)?;
    match accounts::login(&st, addr.0.ip(), &f.username, &f.password).await {
        Ok(u) => {
            let cookie =
                session::start(&st, u.id, &format!("Logged in as {}.", u.username)).await?;
            Ok(session::with_cookies(see_other("/"), [cookie]))
        }
        Err(e @ (AppError::Unauthorized(_) | AppError::TooMany(_))) => {
            let msg = e.public_message();
            anon_page(&headers, "Log in", e.status(), Some(&msg), |c| {
                login_form(c, &f.username)
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// A form with only the CSRF field.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`: deletes the session (its cookie no longer works, even
/// if replayed).
pub async fn logout(
    State(st): State<Arc<AppState>>,
    u: CurrentUser,
    f: Result<Form<CsrfForm>, FormRejection>,
) -> WebResult {
    let f = form(f)?;
    u.check_csrf(&f.csrf)?;
    let mut c = st.db.pool().acquire().await.map_err(AppError::from)?;
    sessions::delete(&mut c, &u.0.id_hash).await?;
    Ok(session::with_cookies(
        see_other("/login"),
        [session::set_cookie(session::SESSION_COOKIE, "", 0)],
    ))
}
