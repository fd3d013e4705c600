//! `cargo xtask bench [--suite NAME] [--out DIR]`: runs benchmark suites,
//! each writing `NAME.md` and `NAME.json` into the output folder
//! (`docs/bench/` by default). No `--suite` runs them all.
//!
//! - `dataplane`: the `vpn-bench` binary (package `vpn-bench`, built in
//!   release with `vpn-control`), run as `vpn-bench dataplane --out DIR`
//!   with `VPN_CONTROL_BIN` naming the release `vpn-control`. Needs root.
//! - `relay-sim`: the relay simulator's suite (`sim::bench_suite`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use crate::util::{cargo, describe, is_root, run_ok, target_dir, workspace_root};

/// Every suite, in the order `cargo xtask bench` runs them.
pub const SUITES: &[&str] = &["dataplane", "relay-sim"];

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Run only this suite (one of: dataplane, relay-sim).
    #[arg(long)]
    suite: Option<String>,
    /// Output folder (default: docs/bench/ in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
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
            "dataplane" => dataplane(&out)?,
            "relay-sim" => relay_sim(&out)?,
            _ => unreachable!("checked above"),
        }
    }
    Ok(())
}

fn dataplane(out: &Path) -> Result<()> {
    if !is_root() {
        bail!(
            "the dataplane suite builds network namespaces and loads eBPF programs: run it as root"
        );
    }
    let mut build = cargo();
    build.args(["build", "--release", "-p", "vpn-control", "-p", "vpn-bench"]);
    eprintln!("bench: {}", describe(&build));
    run_ok(&mut build)?;
    let rel = target_dir().join("release");
    let mut cmd = std::process::Command::new(rel.join("vpn-bench"));
    cmd.current_dir(workspace_root())
        .env("VPN_CONTROL_BIN", rel.join("vpn-control"))
        .arg("dataplane")
        .arg("--out")
        .arg(out);
    eprintln!("bench: {}", describe(&cmd));
    run_ok(&mut cmd)
}

fn relay_sim(out: &Path) -> Result<()> {
    crate::sim::bench_suite(out)
}
