//! `cargo xtask bench [--suite NAME] [--out DIR]`: runs benchmark suites,
//! each writing `NAME.md` and `NAME.json` into the output folder
//! (`docs/bench/` by default). No `--suite` runs them all.
//!
//! - `dataplane`: the `vpn-bench` binary (package `vpn-bench`, built in
//!   release with `vpn-control`), run as `vpn-bench dataplane --out DIR`
//!   with `VPN_CONTROL_BIN` naming the release `vpn-control` and
//!   `BORINGTUN_BIN` the boringtun-cli it compares against (installed here
//!   from crates.io, idempotently, into `~/.cache/groupvpn/boringtun`).
//!   Needs root.
//! - `relay-sim`: the relay simulator's suite (`sim::bench_suite`).
//! - `overlay`: `vpn-bench overlay --out DIR` (release builds of
//!   `vpn-bench` and `vpn-control`): private-DHT lookup latency versus group
//!   size in-process, and (root) time from `vpn-control up` to the first
//!   reply and to an on-demand session in namespaces. `--parts` picks
//!   `inprocess` and/or `namespace`; without root only `inprocess` runs.
//! - `server`: `vpn-bench server --out DIR` with `VPN_SERVER_BIN` naming
//!   the release `vpn-server`: enrolments per second and CRL fetch latency
//!   under 200 concurrent clients, SQLite and a private PostgreSQL cluster.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use crate::util::{cargo, describe, is_root, output_ok, run_ok, target_dir, workspace_root};

/// The established userspace VPN the dataplane suite compares against.
pub const BORINGTUN_VERSION: &str = "0.7.1";

/// Every suite, in the order `cargo xtask bench` runs them.
pub const SUITES: &[&str] = &["dataplane", "relay-sim", "overlay", "server"];

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Run only this suite (one of: dataplane, relay-sim, overlay, server).
    #[arg(long)]
    suite: Option<String>,
    /// Output folder (default: docs/bench/ in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A remark for the dataplane and overlay reports (e.g. other load on
    /// the machine).
    #[arg(long)]
    note: Option<String>,
    /// Overlay suite only: the parts to run (`inprocess`, `namespace`;
    /// comma-separated). Default: both as root, else `inprocess`.
    #[arg(long)]
    parts: Option<String>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let suites: Vec<&str> = match args.suite.as_deref() {
        None => SUITES.to_vec(),
        Some(s) if SUITES.contains(&s) => vec![s],
        Some(s) => bail!("unknown suite {s:?}; suites: {}", SUITES.join(", ")),
    };
    let out = args
        .out
        .unwrap_or_else(|| workspace_root().join("docs").join("bench"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    crate::setup::ensure()?;
    for s in suites {
        eprintln!("bench: suite {s} -> {}", out.display());
        match s {
            "dataplane" => dataplane(&out, args.note.as_deref())?,
            "relay-sim" => relay_sim(&out)?,
            "overlay" => overlay(&out, args.note.as_deref(), args.parts.as_deref())?,
            "server" => server(&out, args.note.as_deref())?,
            _ => unreachable!("checked above"),
        }
    }
    Ok(())
}

fn dataplane(out: &Path, note: Option<&str>) -> Result<()> {
    if !is_root() {
        bail!(
            "the dataplane suite builds network namespaces and loads eBPF programs: run it as root"
        );
    }
    let boringtun = ensure_boringtun()?;
    let mut build = cargo();
    build.args(["build", "--release", "-p", "vpn-control", "-p", "vpn-bench"]);
    eprintln!("bench: {}", describe(&build));
    run_ok(&mut build)?;
    let rel = target_dir().join("release");
    let mut cmd = std::process::Command::new(rel.join("vpn-bench"));
    cmd.current_dir(workspace_root())
        .env("VPN_CONTROL_BIN", rel.join("vpn-control"))
        .env("BORINGTUN_BIN", &boringtun)
        .arg("dataplane")
        .arg("--out")
        .arg(out);
    if let Some(n) = note {
        cmd.arg("--note").arg(n);
    }
    eprintln!("bench: {}", describe(&cmd));
    run_ok(&mut cmd)
}

fn overlay(out: &Path, note: Option<&str>, parts: Option<&str>) -> Result<()> {
    let parts = match parts {
        Some(p) => p.to_owned(),
        None if is_root() => "inprocess,namespace".to_owned(),
        None => {
            eprintln!(
                "bench: not root: the overlay suite's namespace part (time to first reply, \
                 on-demand sessions) is SKIPPED; only the in-process part runs"
            );
            "inprocess".to_owned()
        }
    };
    if parts.contains("namespace") && !is_root() {
        bail!("the overlay suite's namespace part builds network namespaces and loads eBPF programs: run it as root");
    }
    let mut build = cargo();
    build.args(["build", "--release", "-p", "vpn-control", "-p", "vpn-bench"]);
    eprintln!("bench: {}", describe(&build));
    run_ok(&mut build)?;
    let rel = target_dir().join("release");
    let mut cmd = Command::new(rel.join("vpn-bench"));
    cmd.current_dir(workspace_root())
        .env("VPN_CONTROL_BIN", rel.join("vpn-control"))
        .args(["overlay", "--parts", &parts, "--out"])
        .arg(out);
    if let Some(n) = note {
        cmd.arg("--note").arg(n);
    }
    eprintln!("bench: {}", describe(&cmd));
    run_ok(&mut cmd)
}

/// `boringtun-cli` BORINGTUN_VERSION under `~/.cache/groupvpn/boringtun`,
/// installed from crates.io (`cargo install --locked`) unless the right
/// version is already there. Returns the binary's path.
fn ensure_boringtun() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let root = PathBuf::from(home).join(".cache/groupvpn/boringtun");
    let bin = root.join("bin").join("boringtun-cli");
    let right_version = || {
        output_ok(Command::new(&bin).arg("--version"))
            .is_some_and(|v| v.split_whitespace().any(|w| w == BORINGTUN_VERSION))
    };
    if right_version() {
        return Ok(bin);
    }
    let mut cmd = Command::new("cargo");
    // Build with the default (stable) toolchain, outside the workspace's target.
    cmd.env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "install",
            "boringtun-cli",
            "--version",
            BORINGTUN_VERSION,
            "--locked",
            "--root",
        ])
        .arg(&root);
    eprintln!(
        "bench: installing boringtun-cli {BORINGTUN_VERSION} (a minute or two): {}",
        describe(&cmd)
    );
    run_ok(&mut cmd)?;
    if !right_version() {
        bail!(
            "installed boringtun-cli, but `{} --version` does not report {BORINGTUN_VERSION}",
            bin.display()
        );
    }
    Ok(bin)
}

fn relay_sim(out: &Path) -> Result<()> {
    crate::sim::bench_suite(out)
}

fn server(out: &Path, note: Option<&str>) -> Result<()> {
    let mut build = cargo();
    build.args(["build", "--release", "-p", "vpn-server", "-p", "vpn-bench"]);
    eprintln!("bench: {}", describe(&build));
    run_ok(&mut build)?;
    let rel = target_dir().join("release");
    let mut cmd = Command::new(rel.join("vpn-bench"));
    cmd.current_dir(workspace_root())
        .env("VPN_SERVER_BIN", rel.join("vpn-server"))
        .arg("server")
        .arg("--out")
        .arg(out);
    if let Some(n) = note {
        cmd.arg("--note").arg(n);
    }
    eprintln!("bench: {}", describe(&cmd));
    run_ok(&mut cmd)
}
