//! The test environment: privileges, the `vpn-control` binary, scratch folders.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

/// Environment variable naming the `vpn-control` binary to test.
pub const BIN_ENV: &str = "VPN_CONTROL_BIN";
/// Set to `1` to skip (loudly) the tests that need root instead of failing them.
pub const SKIP_ROOT_ENV: &str = "GV_SKIP_ROOT_TESTS";

/// Whether this process runs as root (namespace tests need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Gate for tests that need root. Returns `true` when the test may run.
///
/// Not root: panics with a clear message (the test fails), unless
/// `GV_SKIP_ROOT_TESTS=1`, in which case it prints a loud SKIPPED line and
/// returns `false`. A silent pass is never possible.
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var(SKIP_ROOT_ENV).as_deref() == Ok("1") {
        eprintln!(
            "\n!!! SKIPPED {test}: needs root (network namespaces, eBPF); \
             {SKIP_ROOT_ENV}=1 is set. This test did NOT run. !!!\n"
        );
        return false;
    }
    panic!(
        "{test} needs root (it builds network namespaces and loads eBPF programs). \
         Run the suite as root (CI does: `cargo xtask test`), or set \
         {SKIP_ROOT_ENV}=1 to skip these tests explicitly."
    );
}

/// Locates the `vpn-control` binary: `$VPN_CONTROL_BIN`, else next to the
/// running executable's target profile folder (`target/debug/vpn-control`
/// for a test binary in `target/debug/deps/`). `cargo xtask test` builds it
/// before the suite runs.
pub fn vpn_control_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Setup(format!(
                "{BIN_ENV}={} is not a file",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe()?;
    let mut tried = Vec::new();
    for dir in exe.ancestors().skip(1).take(3) {
        let cand = dir.join("vpn-control");
        if cand.is_file() {
            return Ok(cand);
        }
        tried.push(cand);
    }
    Err(Error::Setup(format!(
        "vpn-control binary not found (tried {}); build it first with \
         `cargo build -p vpn-control` (`cargo xtask test` does) or set {BIN_ENV}",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A scratch folder `/tmp/gv-<tag>-<pid>-<n>`, removed on drop unless
/// `GV_KEEP_TMP=1` (for post-mortems).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("gv-{tag}-{}-{n}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var("GV_KEEP_TMP").as_deref() == Ok("1") {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
