//! The group server for tests and benchmarks: a `vpn-server` process on
//! loopback with its own data folder ([`VpnServer`]), and a private
//! PostgreSQL cluster for the PostgreSQL runs ([`PgCluster`]). Both stop
//! (and the cluster is deleted) on drop.
//!
//! Loopback only: the server listens on `127.0.0.1:0` and PostgreSQL on a
//! free `127.0.0.1` port plus a Unix socket inside its temporary folder.

use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::env::TempDir;
use crate::error::{Error, Result};
use crate::process::Background;
use crate::wait::{wait_until, wait_until_ok};

/// Environment variable naming the `vpn-server` binary.
pub const SERVER_BIN_ENV: &str = "VPN_SERVER_BIN";
/// How long the server gets to print its ready line.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Locates `vpn-server`: `$VPN_SERVER_BIN`, else next to the running
/// executable's target profile folder (as [`crate::vpn_control_bin`]).
pub fn vpn_server_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(SERVER_BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Setup(format!(
                "{SERVER_BIN_ENV}={} is not a file",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let cand = dir.join("vpn-server");
        if cand.is_file() {
            return Ok(cand);
        }
    }
    Err(Error::Setup(format!(
        "vpn-server binary not found next to {}; build it first with \
         `cargo build -p vpn-server` (`cargo xtask test` does) or set {SERVER_BIN_ENV}",
        exe.display()
    )))
}

/// What the server's ready line says:
/// `vpn-server listening on https://ADDR:PORT (tls sha256 HEX)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyLine {
    /// `https://ADDR:PORT`.
    pub url: String,
    /// SHA-256 of the TLS certificate, lower-case hex.
    pub tls_sha256: String,
}

/// Finds the ready line in a process log.
pub fn parse_ready_line(log: &str) -> Option<ReadyLine> {
    log.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("vpn-server listening on ")?;
        let (url, tail) = rest.split_once(' ')?;
        let hex = tail
            .trim()
            .strip_prefix("(tls sha256 ")?
            .strip_suffix(')')?
            .replace(':', "")
            .to_ascii_lowercase();
        (url.starts_with("https://") && hex.len() == 64).then(|| ReadyLine {
            url: url.trim_end_matches('/').to_owned(),
            tls_sha256: hex,
        })
    })
}

/// A running `vpn-server` on `127.0.0.1:<free port>`.
#[derive(Debug)]
pub struct VpnServer {
    proc: Background,
    ready: ReadyLine,
    data_dir: PathBuf,
}

impl VpnServer {
    /// Starts `vpn-server --listen 127.0.0.1:0 --data-dir DATA_DIR` (plus
    /// `--database URL` if given; SQLite in DATA_DIR otherwise) and waits
    /// for its ready line. `extra` are more arguments. The log is
    /// `DATA_DIR/../<label>.log`.
    pub fn start(
        label: &str,
        data_dir: &Path,
        database: Option<&str>,
        extra: &[&str],
    ) -> Result<Self> {
        let bin = vpn_server_bin()?;
        std::fs::create_dir_all(data_dir)?;
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        if let Some(db) = database {
            cmd.args(["--database", db]);
        }
        let log = data_dir
            .parent()
            .unwrap_or(data_dir)
            .join(format!("{label}.log"));
        let mut proc = Background::spawn(label, cmd, &log)?;
        let ready = wait_until_ok("vpn-server's ready line", SERVER_START_TIMEOUT, || {
            if let Some(r) = parse_ready_line(&proc.log()) {
                return Ok(r);
            }
            if let Some(status) = proc.try_status() {
                return Err(Error::Setup(format!(
                    "vpn-server exited ({status}) before it was ready:\n{}",
                    proc.log()
                )));
            }
            Err(Error::Setup("not yet".into()))
        })
        .map_err(|e| match proc.try_status() {
            Some(_) => Error::Setup(format!("{e}\n{}", proc.log())),
            None => e,
        })?;
        Ok(Self {
            proc,
            ready,
            data_dir: data_dir.to_owned(),
        })
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.ready.url
    }

    /// The TLS certificate's SHA-256 (lower-case hex) from the ready line.
    pub fn tls_sha256(&self) -> &str {
        &self.ready.tls_sha256
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.ready
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the ready line has a port")
    }

    /// The data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The process (to kill it mid-test).
    pub fn process(&mut self) -> &mut Background {
        &mut self.proc
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on a
/// test machine).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The newest `/usr/lib/postgresql/<major>/bin` (Debian's layout).
pub fn postgres_bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let Some(major) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let bin = e.path().join("bin");
            if bin.join("postgres").is_file() && best.as_ref().is_none_or(|(m, _)| major > *m) {
                best = Some((major, bin));
            }
        }
    }
    best.map(|(_, b)| b).ok_or_else(|| {
        Error::Setup(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); \
             `cargo xtask setup` installs the Debian package postgresql"
                .into(),
        )
    })
}

/// uid and gid of a system user (from /etc/passwd).
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// A private PostgreSQL cluster in a temporary folder, listening on
/// `127.0.0.1:<free port>` with trust authentication for the superuser
/// `groupvpn`. PostgreSQL refuses to run as root: as root, the cluster runs
/// as the `postgres` system user. Stopped (fast shutdown) and deleted on drop.
#[derive(Debug)]
pub struct PgCluster {
    proc: Option<Background>,
    port: u16,
    // Dropped after the process.
    _dir: TempDir,
}

impl PgCluster {
    /// Creates and starts a cluster. `durable = false` turns off fsync (tests);
    /// benchmarks keep PostgreSQL's defaults.
    pub fn start(tag: &str, durable: bool) -> Result<Self> {
        let bin = postgres_bin_dir()?;
        let dir = TempDir::new(&format!("pg-{tag}"))?;
        let data = dir.path().join("data");
        let run_as = if crate::is_root() {
            Some(system_user("postgres").ok_or_else(|| {
                Error::Setup("running as root but there is no `postgres` system user".into())
            })?)
        } else {
            None
        };
        let as_user = |cmd: &mut Command| {
            if let Some((uid, gid)) = run_as {
                cmd.uid(uid).gid(gid);
            }
        };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let mut init = Command::new(bin.join("initdb"));
        init.arg("-D")
            .arg(&data)
            .args(["-U", "groupvpn", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .current_dir(dir.path());
        as_user(&mut init);
        crate::error::run_checked(&mut init)?;
        let port = free_port()?;
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "max_connections=300"])
            .current_dir(dir.path());
        if !durable {
            cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
        }
        as_user(&mut cmd);
        let log = dir.path().join("postgres.log");
        let mut proc = Background::spawn("postgres", cmd, &log)?;
        wait_until(
            "PostgreSQL to accept connections",
            Duration::from_secs(60),
            || {
                if proc.try_status().is_some() {
                    return Some(Err(Error::Setup(format!(
                        "postgres exited at start:\n{}",
                        proc.log()
                    ))));
                }
                proc.log()
                    .contains("ready to accept connections")
                    .then_some(Ok(()))
            },
        )??;
        Ok(Self {
            proc: Some(proc),
            port,
            _dir: dir,
        })
    }

    /// `postgres://groupvpn@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://groupvpn@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a database (`createdb`).
    pub fn create_db(&self, name: &str) -> Result<()> {
        let bin = postgres_bin_dir()?;
        let mut cmd = Command::new(bin.join("createdb"));
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "groupvpn",
            name,
        ]);
        crate::error::run_checked(&mut cmd).map(|_| ())
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // SIGINT: fast shutdown (SIGTERM would wait for clients).
            if p.signal_and_wait(libc::SIGINT, Duration::from_secs(20))
                .is_err()
            {
                let _ = p.kill9();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        let log = "INFO starting\nvpn-server listening on https://127.0.0.1:40123 (tls sha256 ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789)\n";
        let r = parse_ready_line(log).unwrap();
        assert_eq!(r.url, "https://127.0.0.1:40123");
        assert_eq!(
            r.tls_sha256,
            "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
        );
        assert!(parse_ready_line("vpn-server listening on https://x:1 (tls sha256 abc)").is_none());
        assert!(parse_ready_line("nothing").is_none());
    }
}
