//! Login sessions in cookies and CSRF tokens.
//!
//! - `gv_session`: 32 random bytes (base64url); the database keeps only
//!   their SHA-256, with the user, the expiry and the session's CSRF token.
//!   Secure, HttpOnly, SameSite=Strict, Path=/.
//! - `gv_csrf`: the token of the login and registration forms (no session
//!   yet): the form field must equal the cookie (double submit; the cookie
//!   is SameSite=Strict and HttpOnly, so another site can neither send nor
//!   read it).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};

use crate::crypto::{ct_eq, sha256_hex, token};
use crate::db::{self, sessions};
use crate::error::AppError;
use crate::state::AppState;
use crate::web::WebError;

/// Session cookie name.
pub const SESSION_COOKIE: &str = "gv_session";
/// Pre-login CSRF cookie name.
pub const CSRF_COOKIE: &str = "gv_csrf";

/// The value of cookie `name` in the request, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value with the secure attributes.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let v = format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    );
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The logged-in user of a request.
#[derive(Clone, Debug)]
pub struct CurrentUser(pub sessions::Session);

impl CurrentUser {
    /// The actor for operations.
    pub fn actor(&self) -> crate::ops::Actor {
        crate::ops::Actor::User(self.0.user_id, self.0.username.clone())
    }

    /// 403 unless `sent` is this session's CSRF token.
    pub fn check_csrf(&self, sent: &str) -> Result<(), WebError> {
        if ct_eq(sent.as_bytes(), self.0.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                "the form's security token is missing or wrong: reload the page and try again"
                    .into(),
            )
            .into())
        }
    }
}

async fn lookup(parts: &Parts, st: &AppState) -> Result<Option<sessions::Session>, WebError> {
    let Some(raw) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if raw.len() > 128 {
        return Err(invalid());
    }
    let mut c = st.db.pool().acquire().await.map_err(AppError::from)?;
    match sessions::lookup(&mut c, &sha256_hex(raw.as_bytes()), db::now_secs()).await? {
        Some(s) => Ok(Some(s)),
        None => Err(invalid()),
    }
}

fn invalid() -> WebError {
    WebError::with_clear_session(AppError::Unauthorized(
        "your session is invalid or has expired: please log in again".into(),
    ))
}

impl FromRequestParts<Arc<AppState>> for CurrentUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, WebError> {
        match lookup(parts, st).await? {
            Some(s) => Ok(CurrentUser(s)),
            None => Err(AppError::Unauthorized("please log in first".into()).into()),
        }
    }
}

/// The logged-in user, if any (an invalid cookie counts as none).
#[derive(Clone, Debug)]
pub struct MaybeUser(pub Option<CurrentUser>);

impl FromRequestParts<Arc<AppState>> for MaybeUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, WebError> {
        Ok(MaybeUser(
            lookup(parts, st).await.ok().flatten().map(CurrentUser),
        ))
    }
}

/// Starts a session for `user_id`: returns the `Set-Cookie` header value.
pub async fn start(st: &AppState, user_id: i64, flash: &str) -> Result<HeaderValue, AppError> {
    let id = token()?;
    let csrf = token()?;
    let now = db::now_secs();
    let ttl = i64::try_from(st.cfg.session_ttl.as_secs()).unwrap_or(43_200);
    let hash = sha256_hex(id.as_bytes());
    crate::in_tx!(&st.db, |tx| {
        sessions::create(&mut tx, &hash, user_id, &csrf, now, now + ttl).await?;
        sessions::set_flash(&mut tx, &hash, flash).await?;
        Ok(())
    })?;
    Ok(set_cookie(SESSION_COOKIE, &id, ttl))
}

/// The pre-login CSRF token of the request, or a new one with the header
/// that sets it.
pub fn pre_login_csrf(headers: &HeaderMap) -> Result<(String, Option<HeaderValue>), AppError> {
    match cookie(headers, CSRF_COOKIE).filter(|t| t.len() == 43) {
        Some(t) => Ok((t, None)),
        None => {
            let t = token()?;
            let h = set_cookie(CSRF_COOKIE, &t, 86_400);
            Ok((t, Some(h)))
        }
    }
}

/// 403 unless the form's token equals the pre-login cookie.
pub fn check_pre_login_csrf(headers: &HeaderMap, sent: &str) -> Result<(), AppError> {
    match cookie(headers, CSRF_COOKIE) {
        Some(c) if !sent.is_empty() && ct_eq(c.as_bytes(), sent.as_bytes()) => Ok(()),
        _ => Err(AppError::Forbidden(
            "the form's security token is missing or wrong: reload the page and try again".into(),
        )),
    }
}

/// Adds `Set-Cookie` headers.
pub fn with_cookies(
    mut res: axum::response::Response,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> axum::response::Response {
    for c in cookies {
        res.headers_mut().append(SET_COOKIE, c);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cookies() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1; gv_session=abc; b=2"));
        assert_eq!(cookie(&h, "gv_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "gv_csrf"), None);
        let v = set_cookie("gv_session", "x", 60);
        let s = v.to_str().unwrap();
        for attr in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(s.contains(attr), "{s}");
        }
    }
}
