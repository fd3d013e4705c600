//! The web UI: server-rendered HTML (maud escapes every interpolation),
//! plain forms that work without JavaScript, one small stylesheet, usable
//! on a phone. Every form carries a `csrf` field.

mod account;
mod groups;
pub mod session;
mod views;

use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{html, Markup, DOCTYPE};

use crate::error::AppError;
use crate::state::AppState;

/// The stylesheet.
const STYLE: &str = include_str!("style.css");

/// The web routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(account::home))
        .route("/style.css", get(style))
        .route(
            "/register",
            get(account::register_page).post(account::register),
        )
        .route("/login", get(account::login_page).post(account::login))
        .route("/logout", post(account::logout))
        .route("/groups", get(groups::list).post(groups::create))
        .route("/groups/{name}", get(groups::group))
        .route(
            "/groups/{name}/join",
            get(groups::join_page).post(groups::join),
        )
        .route(
            "/groups/{name}/requests/{id}/approve",
            post(groups::approve),
        )
        .route("/groups/{name}/requests/{id}/deny", post(groups::deny))
        .route(
            "/groups/{name}/members/{member}/revoke",
            post(groups::revoke),
        )
        .route("/groups/{name}/settings", post(groups::settings))
        .route("/groups/{name}/blob", get(groups::blob))
        .route("/groups/{name}/audit", get(groups::audit))
        .fallback(not_found)
}

async fn style() -> Response {
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("max-age=3600")),
        ],
        STYLE,
    )
        .into_response()
}

async fn not_found() -> WebError {
    AppError::NotFound("no such page".into()).into()
}

/// An error shown as an HTML page.
#[derive(Debug)]
pub struct WebError {
    err: AppError,
    clear_session: bool,
}

impl WebError {
    /// An error that also deletes the (invalid) session cookie.
    pub fn with_clear_session(err: AppError) -> Self {
        Self {
            err,
            clear_session: true,
        }
    }
}

impl From<AppError> for WebError {
    fn from(err: AppError) -> Self {
        Self {
            err,
            clear_session: false,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.err.status();
        let msg = self.err.public_message();
        let login = status == StatusCode::UNAUTHORIZED;
        let body = page(
            status.canonical_reason().unwrap_or("Error"),
            None,
            Some(&msg),
            html! {
                @if login {
                    p { a href="/login" { "Log in" } " or " a href="/register" { "create an account" } "." }
                } @else {
                    p { a href="/" { "Back to the start page" } }
                }
            },
        );
        let res = (status, body).into_response();
        if self.clear_session {
            session::with_cookies(res, [session::set_cookie(session::SESSION_COOKIE, "", 0)])
        } else {
            res
        }
    }
}

/// Handler result.
pub type WebResult = Result<Response, WebError>;

/// The form of a request, or a 4xx for a malformed, oversize or
/// non-form body.
pub fn form<T>(f: Result<Form<T>, FormRejection>) -> Result<T, WebError> {
    f.map(|Form(v)| v).map_err(|r| {
        let e = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge("the form is too large".into()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                AppError::UnsupportedMedia("expected a form submission".into())
            }
            _ => AppError::BadRequest(format!("malformed form: {}", r.body_text())),
        };
        WebError::from(e)
    })
}

/// A 303 redirect (after a successful POST).
pub fn see_other(to: &str) -> Response {
    let loc = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/"));
    (StatusCode::SEE_OTHER, [(LOCATION, loc)]).into_response()
}

/// The page layout: title, navigation (with the logout form when logged
/// in), the flash message, the content.
pub fn page(
    title: &str,
    user: Option<&session::CurrentUser>,
    flash: Option<&str>,
    content: Markup,
) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · GroupVPN" }
                    link rel="stylesheet" href="/style.css";
                }
                body {
                    header {
                        nav {
                            a.brand href="/" { "GroupVPN" }
                            @if let Some(u) = user {
                                a href="/groups" { "Groups" }
                                span.who { (u.0.username) }
                                form #logout-form method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(u.0.csrf);
                                    button type="submit" { "Log out" }
                                }
                            } @else {
                                a href="/login" { "Log in" }
                                a href="/register" { "Register" }
                            }
                        }
                    }
                    main {
                        h1 { (title) }
                        @if let Some(f) = flash {
                            p.flash { (f) }
                        }
                        (content)
                    }
                }
            }
        }
        .into_string(),
    )
}
