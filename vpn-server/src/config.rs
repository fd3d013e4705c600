//! Server configuration: a TOML file (all keys optional), overridden by
//! command-line flags. See `docs/group-server.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::crypto::Argon2Params;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/groupvpn-server";

/// Login and registration limits (per rolling window, in memory).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Failed logins allowed per username per window.
    pub login_failures_per_user: u32,
    /// Failed logins allowed per client IP per window.
    pub login_failures_per_ip: u32,
    /// Registrations (with valid input, taken names included) one client
    /// IP may attempt per window.
    pub registrations_per_ip: u32,
    /// The window, in seconds.
    pub window_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            login_failures_per_user: 5,
            login_failures_per_ip: 20,
            registrations_per_ip: 20,
            window_secs: 900,
        }
    }
}

/// The configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `ADDR:PORT` to listen on.
    pub listen: Option<String>,
    /// Data directory (SQLite database, TLS certificate, server key).
    pub data_dir: Option<PathBuf>,
    /// Database URL (`sqlite://...` or `postgres://...`).
    pub database: Option<String>,
    /// URL written into blobs.
    pub public_url: Option<String>,
    /// PEM certificate chain to serve instead of the self-signed one.
    pub tls_cert: Option<PathBuf>,
    /// Its PEM private key.
    pub tls_key: Option<PathBuf>,
    /// How long a login lasts, in hours.
    pub session_hours: Option<u64>,
    /// Validity of a group CA, in days.
    pub ca_validity_days: Option<u64>,
    /// CRL nextUpdate interval, in days.
    pub crl_next_update_days: Option<u64>,
    /// Argon2id costs (lower them only for tests).
    pub argon2: Option<Argon2Params>,
    /// Rate limits.
    pub limits: Option<Limits>,
}

/// The effective configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database URL.
    pub database: String,
    /// Public URL override (`None`: `https://LISTEN` with the real port).
    pub public_url: Option<String>,
    /// Configured TLS certificate and key, if any.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Group CA validity.
    pub ca_validity: Duration,
    /// CRL nextUpdate interval.
    pub crl_next_update: Duration,
    /// Argon2id costs.
    pub argon2: Argon2Params,
    /// Rate limits.
    pub limits: Limits,
}

/// What the command line may override.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--database`.
    pub database: Option<String>,
    /// `--public-url`.
    pub public_url: Option<String>,
}

const DAY: u64 = 86_400;

impl Config {
    /// Reads `file` (if given) and applies `over`.
    pub fn load(file: Option<&Path>, over: Overrides) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let fc: FileConfig = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        Self::from_parts(fc, over)
    }

    /// Merges a parsed file and the overrides.
    pub fn from_parts(fc: FileConfig, over: Overrides) -> anyhow::Result<Self> {
        use anyhow::{bail, Context as _};
        let listen_s = over
            .listen
            .or(fc.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_s
            .parse()
            .with_context(|| format!("listen address {listen_s:?} (expected ADDR:PORT)"))?;
        let data_dir = over
            .data_dir
            .or(fc.data_dir)
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let database = over.database.or(fc.database).unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", data_dir.join("server.db").display())
        });
        if !(database.starts_with("sqlite:")
            || database.starts_with("postgres://")
            || database.starts_with("postgresql://"))
        {
            bail!("database URL must start with sqlite:, postgres:// or postgresql://");
        }
        let public_url = over.public_url.or(fc.public_url);
        if let Some(u) = &public_url {
            if !u.starts_with("https://") {
                bail!("public URL {u:?} must start with https://");
            }
        }
        let tls = match (fc.tls_cert, fc.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("tls_cert and tls_key go together"),
        };
        let pos = |v: Option<u64>, default: u64, what: &str| -> anyhow::Result<u64> {
            match v.unwrap_or(default) {
                0 => bail!("{what} must be positive"),
                n => Ok(n),
            }
        };
        let argon2 = fc.argon2.unwrap_or_default();
        argon2::Params::new(
            argon2.memory_kib,
            argon2.iterations,
            argon2.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        Ok(Self {
            listen,
            data_dir,
            database,
            public_url,
            tls,
            session_ttl: Duration::from_secs(pos(fc.session_hours, 12, "session_hours")? * 3600),
            ca_validity: Duration::from_secs(
                pos(fc.ca_validity_days, 3650, "ca_validity_days")? * DAY,
            ),
            crl_next_update: Duration::from_secs(
                pos(fc.crl_next_update_days, 7, "crl_next_update_days")? * DAY,
            ),
            argon2,
            limits: fc.limits.unwrap_or_default(),
        })
    }

    /// Whether the database is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.database.starts_with("sqlite:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_parts(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            c.database,
            "sqlite:///var/lib/groupvpn-server/server.db?mode=rwc"
        );
        assert_eq!(c.argon2, Argon2Params::default());
        let fc: FileConfig = toml::from_str(
            "listen = \"0.0.0.0:443\"\n[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n",
        )
        .unwrap();
        let c = Config::from_parts(
            fc,
            Overrides {
                data_dir: Some("/tmp/x".into()),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(c.listen.port(), 443);
        assert_eq!(c.argon2.memory_kib, 64);
        assert!(c.database.starts_with("sqlite:///tmp/x/server.db"));
        assert!(toml::from_str::<FileConfig>("nope = 1").is_err());
        let bad = Overrides {
            database: Some("mysql://x".into()),
            ..Overrides::default()
        };
        assert!(Config::from_parts(FileConfig::default(), bad).is_err());
    }
}
