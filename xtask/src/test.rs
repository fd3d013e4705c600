//! `cargo xtask test`: set-up, one debug build of the workspace, then the
//! whole suite under cargo-nextest (or `cargo test` without it). The exit
//! code is the runner's: non-zero when any test failed.

use std::process::Command;

use anyhow::{bail, Result};

use crate::util::{cargo, describe, is_root, output_ok, run_ok, status, target_dir};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Skip the documentation tests.
    #[arg(long)]
    no_doc: bool,
    /// Extra arguments passed to the test runner (after `--`), e.g.
    /// `cargo xtask test -- -E 'test(ns_)'` for nextest.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    runner_args: Vec<String>,
}

/// Packages the suite covers: everything but the eBPF crate, which only
/// builds for the BPF target (vpn-control's build script compiles it).
const EXCLUDE: &[&str] = &["vpn-ebpf"];

const SKIP_BANNER: &str = "xtask test: !!! NOT ROOT and GV_SKIP_ROOT_TESTS=1: the \
    network-namespace and eBPF tests return early WITHOUT RUNNING and count as passed. \
    This run does not test the data plane. !!!";

fn workspace_args(cmd: &mut Command) {
    cmd.arg("--workspace");
    for p in EXCLUDE {
        cmd.args(["--exclude", p]);
    }
}

fn nextest_available() -> bool {
    output_ok(cargo().args(["nextest", "--version"])).is_some()
}

fn clean_stale_namespaces(when: &str) {
    if !is_root() {
        return;
    }
    match vpn_tests::clean_namespaces(vpn_tests::CleanScope::Stale) {
        Ok(r) if !r.removed.is_empty() => eprintln!(
            "xtask test: removed {} leftover namespace(s) {when}: {}",
            r.removed.len(),
            r.removed.join(" ")
        ),
        Ok(_) => {}
        Err(e) => eprintln!("xtask test: warning: cleaning namespaces: {e}"),
    }
}

pub fn run_tests(args: TestArgs) -> Result<()> {
    crate::setup::ensure()?;
    let skipping = !is_root() && std::env::var("GV_SKIP_ROOT_TESTS").as_deref() == Ok("1");
    if skipping {
        eprintln!("{SKIP_BANNER}");
    } else if !is_root() {
        eprintln!(
            "xtask test: WARNING: not root. The network-namespace and eBPF tests need root \
             and will FAIL (set GV_SKIP_ROOT_TESTS=1 to skip them explicitly)."
        );
    }
    clean_stale_namespaces("before the run");

    // One build of every binary (vpn-control with its eBPF object) in the
    // shared debug target folder; the namespace tests run that binary.
    let mut build = cargo();
    build.args(["build", "--bins"]);
    workspace_args(&mut build);
    eprintln!("xtask test: {}", describe(&build));
    run_ok(&mut build)?;
    let bin = target_dir().join("debug").join("vpn-control");
    if !bin.is_file() {
        bail!("{} was not built", bin.display());
    }

    // Before the main runner, so the runner's summary is the last thing printed.
    let mut doc_failed = false;
    if !args.no_doc {
        let mut doc = cargo();
        doc.args(["test", "--doc", "--no-fail-fast"]);
        workspace_args(&mut doc);
        eprintln!("xtask test: {}", describe(&doc));
        doc_failed = !status(&mut doc)?.success();
    }

    let mut cmd = cargo();
    if nextest_available() {
        cmd.args(["nextest", "run", "--no-fail-fast"]);
    } else {
        eprintln!("xtask test: cargo-nextest not found, using cargo test");
        cmd.args(["test", "--no-fail-fast"]);
    }
    workspace_args(&mut cmd);
    cmd.args(&args.runner_args);
    cmd.env("VPN_CONTROL_BIN", &bin);
    eprintln!("xtask test: {}", describe(&cmd));
    let st = status(&mut cmd)?;
    clean_stale_namespaces("after the run (a test leaked them)");
    if skipping {
        eprintln!("{SKIP_BANNER}");
    }
    if doc_failed {
        eprintln!("xtask test: documentation tests FAILED (see above)");
    }
    if !st.success() {
        std::process::exit(st.code().unwrap_or(1));
    }
    if doc_failed {
        std::process::exit(1);
    }
    Ok(())
}
