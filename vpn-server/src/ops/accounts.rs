//! Registration and login (Argon2id, rate limited per username and IP).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::db::{self, users};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted (Argon2 input stays bounded).
pub const MAX_PASSWORD: usize = 1024;

/// Checks a username: like a node name (letters, digits, `.`, `_`, `-`,
/// `@`, 1 to 64 characters, starting with a letter or digit).
pub fn validate_username(name: &str) -> AppResult<()> {
    vpn_pki::validate_node_name(name)
        .map_err(|e| AppError::BadRequest(e.to_string().replace("node name", "username")))
}

fn validate_password(p: &str) -> AppResult<()> {
    let n = p.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(AppError::BadRequest(format!(
            "the password must have {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

async fn hash_password(st: &Arc<AppState>, password: &str) -> AppResult<String> {
    let _slot = st
        .hash_slots
        .acquire()
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let st2 = Arc::clone(st);
    let pw = password.to_owned();
    tokio::task::spawn_blocking(move || st2.passwords.hash(&pw))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(AppError::from)
}

/// Creates an account (registrations are limited per client IP).
pub async fn register(
    st: &Arc<AppState>,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> AppResult<i64> {
    validate_username(username)?;
    validate_password(password)?;
    let key = format!("reg:{ip}");
    let now = Instant::now();
    if !st
        .limiter
        .allows(&key, st.cfg.limits.registrations_per_ip, now)
    {
        return Err(AppError::TooMany(
            "too many new accounts from your address; try again later".into(),
        ));
    }
    // Counted before the (costly) hash: a taken name costs an attempt too.
    st.limiter.record(&key, now);
    let hash = hash_password(st, password).await?;
    crate::in_tx!(&st.db, |tx| {
        let id = users::create(&mut tx, username, &hash, db::now_secs()).await?;
        crate::db::audit::add(&mut tx, None, username, "register", "account created").await?;
        Ok(id)
    })
}

/// Checks a login; 429 while the username or the IP has too many recent
/// failures (even with the right password), 401 for a wrong name or
/// password (the same answer and about the same time for both).
pub async fn login(
    st: &Arc<AppState>,
    ip: IpAddr,
    username: &str,
    password: &str,
) -> AppResult<users::User> {
    let ukey = format!("user:{}", username.to_lowercase());
    let ikey = format!("ip:{ip}");
    let now = Instant::now();
    let lim = &st.cfg.limits;
    if !st.limiter.allows(&ukey, lim.login_failures_per_user, now)
        || !st.limiter.allows(&ikey, lim.login_failures_per_ip, now)
    {
        return Err(AppError::TooMany(
            "too many failed logins; wait a few minutes and try again".into(),
        ));
    }
    let user = if username.len() <= 64 && password.len() <= MAX_PASSWORD {
        let mut conn = st.db.pool().acquire().await?;
        users::by_name(&mut conn, username).await?
    } else {
        None
    };
    let slot = st
        .hash_slots
        .acquire()
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let st2 = Arc::clone(st);
    let pw = password.to_owned();
    let phc = user.as_ref().map(|u| u.password_hash.clone());
    let ok = tokio::task::spawn_blocking(move || st2.passwords.verify(&pw, phc.as_deref()))
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    drop(slot);
    match user {
        Some(u) if ok => {
            st.limiter.clear(&ukey);
            Ok(u)
        }
        _ => {
            st.limiter.record(&ukey, now);
            st.limiter.record(&ikey, now);
            Err(AppError::Unauthorized("wrong username or password".into()))
        }
    }
}
