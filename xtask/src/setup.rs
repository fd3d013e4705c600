//! `cargo xtask setup`: installs what the demo, the tests and the benchmarks
//! need, idempotently, and says nothing but one line when all is present.
//!
//! - Debian packages (`apt-get`, only those `dpkg` reports missing);
//! - `rust-src` for the nightly toolchain (the eBPF crate builds `core`);
//! - `bpf-linker` 0.13.0, built against the nightly compiler's own LLVM
//!   (no system LLVM): `~/.cache/groupvpn/llvm/lib` holds symlinks to the
//!   sysroot's `libLLVM.so.*`, and `LLVM_PREFIX` points there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::util::{describe, is_root, output_ok, run_ok};

/// Debian packages the project's commands use.
pub const APT_PACKAGES: &[&str] = &[
    "iproute2",          // ip, tc, ss, bridge
    "iputils-ping",      // ping
    "iperf3",            // throughput (tests, demo, bench)
    "nftables",          // nft (teardown checks; gateways later)
    "bpftool",           // program inspection in tests and the demo
    "tcpdump",           // "no plaintext on the underlay" test
    "ethtool",           // offload inspection
    "sockperf",          // latency benchmark
    "wireguard-tools",   // configures boringtun in the benchmark
    "procps",            // sysctl
    "openssl",           // PKI interop tests (openssl x509/verify/crl)
    "fonts-dejavu-core", // font for the plots (relay-sim, bench)
    "chromium",          // group server browser tests (headless)
    "chromium-driver",   // WebDriver for chromium (the browser tests drive it)
    "postgresql",        // group server tests and bench against PostgreSQL
];

pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// Runs every step; prints one line when nothing had to be done.
pub fn ensure() -> Result<()> {
    add_cargo_bin_to_path();
    let mut did = Vec::new();
    if ensure_apt()? {
        did.push("Debian packages");
    }
    if ensure_rust_src()? {
        did.push("rust-src (nightly)");
    }
    if ensure_bpf_linker()? {
        did.push("bpf-linker");
    }
    if did.is_empty() {
        eprintln!(
            "setup: all present (Debian packages, nightly rust-src, bpf-linker {BPF_LINKER_VERSION})"
        );
    } else {
        eprintln!("setup: installed {}", did.join(", "));
    }
    Ok(())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// `cargo install` puts binaries in `$CARGO_INSTALL_ROOT/bin`, by default
/// `$CARGO_HOME/bin`; make sure child processes (the eBPF build looks
/// `bpf-linker` up on PATH) find them.
fn add_cargo_bin_to_path() {
    let bin = std::env::var_os("CARGO_INSTALL_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(cargo_home)
        .join("bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|p| p == bin) {
        return;
    }
    let mut parts = vec![bin];
    parts.extend(std::env::split_paths(&path));
    if let Ok(joined) = std::env::join_paths(parts) {
        std::env::set_var("PATH", joined);
    }
}

fn missing_packages() -> Result<Vec<&'static str>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(APT_PACKAGES)
        .output()
        .context("running dpkg-query (is this a Debian machine?)")?;
    // Unknown packages make dpkg-query exit 1 and are simply absent here.
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter(|l| l.ends_with(" install ok installed"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    Ok(APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

fn ensure_apt() -> Result<bool> {
    let missing = missing_packages()?;
    if missing.is_empty() {
        return Ok(false);
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {}; run as root (or `sudo apt-get install {}`)",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("setup: installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut c = Command::new("apt-get");
        c.env("DEBIAN_FRONTEND", "noninteractive").args(args);
        c
    };
    run_ok(apt(&["update", "-q"]).stdout(std::process::Stdio::null()))?;
    let mut install = apt(&["install", "-y", "-q", "--no-install-recommends"]);
    install.args(&missing);
    run_ok(install.stdout(std::process::Stdio::null()))?;
    let still = missing_packages()?;
    if !still.is_empty() {
        bail!("apt-get did not install: {}", still.join(" "));
    }
    Ok(true)
}

fn ensure_rust_src() -> Result<bool> {
    let installed = output_ok(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context(
        "the `nightly` toolchain is missing (`rustup toolchain list`); the eBPF crate needs it",
    )?;
    if installed.lines().any(|l| l.trim().starts_with("rust-src")) {
        return Ok(false);
    }
    eprintln!("setup: adding rust-src to the nightly toolchain");
    run_ok(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    Ok(true)
}

fn bpf_linker_ok() -> bool {
    output_ok(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION))
}

/// `libLLVM.so.<ver>-rust-<ver>-nightly` in the nightly sysroot, and its
/// major LLVM version.
fn nightly_llvm() -> Result<(PathBuf, u32)> {
    let sysroot = output_ok(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("`rustc +nightly --print sysroot` failed")?;
    let lib = Path::new(sysroot.trim()).join("lib");
    let mut found = None;
    for e in std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(major) = llvm_major(&name) {
            found = Some((lib.join(&name), major));
        }
    }
    found.with_context(|| format!("no libLLVM.so.* in {}", lib.display()))
}

/// The LLVM major version of a `libLLVM.so.<major>.<minor>-rust-...` file name.
fn llvm_major(file_name: &str) -> Option<u32> {
    file_name
        .strip_prefix("libLLVM.so.")?
        .split(['.', '-'])
        .next()?
        .parse()
        .ok()
}

fn symlink_fresh(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

fn ensure_bpf_linker() -> Result<bool> {
    if bpf_linker_ok() {
        return Ok(false);
    }
    let (llvm, major) = nightly_llvm()?;
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home).join(".cache/groupvpn/llvm");
    let libdir = prefix.join("lib");
    std::fs::create_dir_all(&libdir).with_context(|| format!("creating {}", libdir.display()))?;
    let file_name = llvm.file_name().context("libLLVM path has no file name")?;
    symlink_fresh(&llvm, &libdir.join("libLLVM.so"))?;
    symlink_fresh(&llvm, &libdir.join(file_name))?;
    let mut cmd = Command::new("cargo");
    cmd.env("LLVM_PREFIX", &prefix)
        // Build with the default (stable) toolchain whatever invoked us.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features"])
        .arg(OsString::from(format!("llvm-{major}")));
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {} (about a minute): {}",
        llvm.display(),
        describe(&cmd)
    );
    run_ok(&mut cmd)?;
    if !bpf_linker_ok() {
        bail!("bpf-linker was installed but `bpf-linker --version` does not report {BPF_LINKER_VERSION}");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_sysroot_names() {
        assert_eq!(llvm_major("libLLVM.so.22.1-rust-1.97.0-nightly"), Some(22));
        assert_eq!(llvm_major("libLLVM.so.21-rust-1.90.0-nightly"), Some(21));
        assert_eq!(llvm_major("libLLVM.so"), None);
        assert_eq!(llvm_major("librustc_driver-abc.so"), None);
    }
}
