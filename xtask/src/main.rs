//! `cargo xtask`: set-up, demo, test, bench and sim orchestration. Product
//! logic never lives here: the simulator's model is in `vpn-core`, the
//! benchmark suites in `bench`, the namespace harness in `tests` (`vpn-tests`).
use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod setup;
mod sim;
mod test;
mod util;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the project needs (Debian packages, nightly rust-src,
    /// bpf-linker 0.13.0); idempotent. The other commands run it first.
    Setup,
    /// Build everything and run the whole test suite (root for the
    /// namespace and eBPF tests). Extra arguments go to the test runner.
    Test(test::TestArgs),
    /// Three hosts in network namespaces enrolled through a running
    /// `vpn-server`, joined by the overlay from their certificates: traffic
    /// over the kernel path, then over the userspace twin, and a short
    /// report (needs root).
    Demo(demo::DemoArgs),
    /// Benchmark suites; results in docs/bench/ (or --out).
    Bench(bench::BenchArgs),
    /// Remove leftover `gv-*` network namespaces (by default only those of
    /// processes that no longer exist).
    CleanNetns {
        /// Remove every `gv-*` namespace, also those of running processes.
        #[arg(long)]
        all: bool,
    },
    /// Simulators (`cargo xtask sim relays ...`).
    Sim(sim::SimArgs),
}

fn clean_netns(all: bool) -> anyhow::Result<()> {
    let scope = if all {
        vpn_tests::CleanScope::All
    } else {
        vpn_tests::CleanScope::Stale
    };
    let r = vpn_tests::clean_namespaces(scope)?;
    for n in &r.removed {
        println!("removed {n}");
    }
    for n in &r.kept {
        println!("kept {n} (its process is alive; --all removes it)");
    }
    for e in &r.errors {
        eprintln!("error: {e}");
    }
    if r.removed.is_empty() && r.kept.is_empty() {
        println!("no gv-* namespaces");
    }
    anyhow::ensure!(r.errors.is_empty(), "some namespaces could not be removed");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::ensure(),
        Cmd::Test(a) => test::run_tests(a),
        Cmd::Demo(a) => demo::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::CleanNetns { all } => clean_netns(all),
        Cmd::Sim(a) => sim::run(a),
    }
}
