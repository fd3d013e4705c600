//! Runs the real `vpn-server` binary on loopback (port 0) with a private
//! data directory; stops it on drop.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::client::Client;

/// Test configuration: cheap Argon2 (tests only), generous registration
/// limit, default login limits.
pub const TEST_CONFIG: &str = "[argon2]\nmemory_kib = 64\niterations = 1\nparallelism = 1\n\
[limits]\nregistrations_per_ip = 1000\nlogin_failures_per_user = 5\nlogin_failures_per_ip = 50\nwindow_secs = 900\n";

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub url: String,
    pub sha256: String,
    pub data_dir: PathBuf,
    pub database: String,
    stderr: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vpn-server")
}

impl Server {
    /// A server on a fresh data directory; `database` None = SQLite there.
    pub fn start(database: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let mut s = Self::start_in(&data_dir, database, "127.0.0.1:0");
        s._dir = Some(dir);
        s
    }

    /// A server on `data_dir` (kept by the caller).
    pub fn start_in(data_dir: &Path, database: Option<&str>, listen: &str) -> Self {
        std::fs::create_dir_all(data_dir).unwrap();
        let cfg = data_dir.join("test.toml");
        std::fs::write(&cfg, TEST_CONFIG).unwrap();
        let database = database.map(str::to_owned).unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", data_dir.join("server.db").display())
        });
        let stderr = data_dir.join("stderr.log");
        let mut child = Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen)
            .arg("--database")
            .arg(&database)
            .env_remove("GROUPVPN_SERVER_KEY")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "vpn-server did not start: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
        };
        // vpn-server listening on https://127.0.0.1:PORT (tls sha256 HEX)
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("https://"))
            .unwrap_or_else(|| panic!("bad ready line {line:?}"))
            .to_owned();
        let sha256 = line
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_end_matches(')')
            .to_owned();
        assert_eq!(sha256.len(), 64, "{line}");
        let addr: SocketAddr = url.trim_start_matches("https://").parse().unwrap();
        Self {
            child: Some(child),
            addr,
            url,
            sha256,
            data_dir: data_dir.to_owned(),
            database,
            stderr,
            _dir: None,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(self.addr, &self.sha256)
    }

    /// SIGKILL (no cleanup at all), then wait.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What the server wrote on stderr.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Runs `vpn-server admin ARGS` on the same data directory and database.
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write as _;
        let mut c = Command::new(bin())
            .arg("--config")
            .arg(self.data_dir.join("test.toml"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--database")
            .arg(&self.database)
            .arg("--public-url")
            .arg(&self.url)
            .arg("admin")
            .args(args)
            .env_remove("GROUPVPN_SERVER_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(c.stdin.take());
        c.wait_with_output().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: graceful shutdown.
            unsafe_free_term(c.id());
            for _ in 0..50 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_free_term(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}
