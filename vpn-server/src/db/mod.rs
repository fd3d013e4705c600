//! Storage: one schema (`migrations/`) on SQLite or PostgreSQL through
//! sqlx's `Any` driver. Queries use `$1`-style parameters, which both
//! drivers accept, and only BIGINT and TEXT columns. Every multi-step
//! change runs in one transaction ([`in_tx!`]), retried when the database
//! reports a transient conflict.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor as _};

pub mod audit;
pub mod groups;
pub mod members;
pub mod sessions;
pub mod users;

/// The migrations, embedded in the binary (applied in order at start).
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "init", include_str!("../../migrations/0001_init.sql"))];

fn migrator() -> Migrator {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|(v, d, sql)| {
            Migration::new(
                *v,
                Cow::Borrowed(*d),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// The database.
#[derive(Debug)]
pub struct Db {
    pool: AnyPool,
    sqlite: bool,
    /// SQLite has one writer at a time: writers of this process queue here
    /// instead of failing with SQLITE_BUSY on a lock upgrade.
    write_lock: tokio::sync::Mutex<()>,
}

impl Db {
    /// Connects (creating a SQLite file if needed) and applies migrations.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let opts = AnyPoolOptions::new()
            .max_connections(if sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30));
        let opts = if sqlite {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // Durable commits (a killed server loses nothing that
                    // was committed), readers beside the writer, and a
                    // wait instead of an error while another process writes.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts
            .connect(url)
            .await
            .with_context(|| format!("connecting to the database {}", redact(url)))?;
        migrator()
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Self {
            pool,
            sqlite,
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The pool, for single-statement reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Waits for this process's write turn (SQLite only; a no-op guard on
    /// PostgreSQL, whose row locks and retries handle concurrency).
    pub async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if self.sqlite {
            Some(self.write_lock.lock().await)
        } else {
            None
        }
    }

    /// Whether this is SQLite.
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    /// Closes the pool (checkpoints SQLite's WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Runs `$body` (an expression using `$tx: &mut Transaction<Any>`, of type
/// `AppResult<T>`) in a transaction and commits; retries the whole
/// transaction up to 8 times when the database reports a transient
/// conflict ([`crate::error::AppError::is_retryable`]). Any error rolls
/// back everything the body did.
#[macro_export]
macro_rules! in_tx {
    ($db:expr, |$tx:ident| $body:expr) => {{
        let db: &$crate::db::Db = $db;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let turn = db.write_turn().await;
            let result: $crate::error::AppResult<_> = async {
                let mut $tx = db.pool().begin().await?;
                let value = $body;
                match value {
                    Ok(v) => {
                        $tx.commit().await?;
                        Ok(v)
                    }
                    Err(e) => Err(e),
                }
            }
            .await;
            drop(turn);
            match result {
                Err(e) if e.is_retryable() && attempt < 8 => {
                    let jitter = u64::from(attempt) * 10
                        + u64::from($crate::crypto::random_bytes::<1>().map_or(0, |b| b[0]) % 20);
                    tokio::time::sleep(std::time::Duration::from_millis(jitter)).await;
                }
                other => break other,
            }
        }
    }};
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    unix_secs(SystemTime::now())
}

/// Unix seconds of `t`.
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The `SystemTime` of Unix seconds.
pub fn from_secs(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// Unix microseconds now (orders the audit log).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Reads a column, mapping decode errors to [`sqlx::Error`].
pub fn col<'r, T>(row: &'r AnyRow, name: &str) -> Result<T, sqlx::Error>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row as _;
    row.try_get(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
