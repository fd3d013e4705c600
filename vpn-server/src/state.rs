//! What every handler shares.

use crate::config::Config;
use crate::crypto::{Passwords, ServerKey};
use crate::db::Db;
use crate::ratelimit::RateLimiter;

/// The server's state.
#[derive(Debug)]
pub struct AppState {
    /// The database.
    pub db: Db,
    /// The configuration.
    pub cfg: Config,
    /// Encrypts CA keys at rest.
    pub key: ServerKey,
    /// Argon2id.
    pub passwords: Passwords,
    /// Bounds concurrent Argon2 computations (CPU and memory).
    pub hash_slots: tokio::sync::Semaphore,
    /// Login and registration limits.
    pub limiter: RateLimiter,
    /// The URL written into blobs (`https://HOST:PORT`).
    pub public_url: String,
    /// SHA-256 (hex) of the TLS certificate (DER), written into blobs.
    pub tls_sha256: String,
}
