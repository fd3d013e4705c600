//! `vpn-bench`: GroupVPN's benchmark suites, run by `cargo xtask bench`.
//!
//! - `vpn-bench dataplane --out DIR` (root): the data-plane comparison of
//!   plain veth, the kernel path, the userspace twin and boringtun on the
//!   same namespace topology; writes `DIR/dataplane.{json,md,png}`.
//! - `vpn-bench overlay --out DIR [--parts inprocess,namespace]`: private-DHT
//!   lookup latency versus group size (in-process), time from `up` to the
//!   first reply and on-demand session set-up (namespaces, root); writes
//!   `DIR/overlay.{json,md}`.
//! - `vpn-bench server --out DIR`: the group server's enrolments per second
//!   and CRL fetch latency, SQLite and PostgreSQL; writes
//!   `DIR/server.{json,md}` (runs `$VPN_SERVER_BIN`).

mod dataplane;
mod machine;
mod overlay;
mod server;
mod signals;
mod stats;

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vpn-bench", about = "GroupVPN benchmark suites")]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
}

#[derive(Subcommand)]
enum Suite {
    /// veth vs kernel path vs userspace twin vs boringtun: TCP, UDP pps,
    /// RTT, and the BPF programs' per-packet cost (needs root).
    Dataplane(dataplane::Args),
    /// Private-DHT lookup latency vs group size; time from `up` to the
    /// first reply and to an on-demand session (namespace part needs root).
    Overlay(overlay::Args),
    /// Group server: enrolments per second and CRL fetch latency under 200
    /// concurrent clients, SQLite and PostgreSQL side by side.
    Server(server::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.suite {
        Suite::Dataplane(args) => {
            if !vpn_tests::is_root() {
                bail!("the dataplane suite builds network namespaces and loads eBPF programs: run it as root");
            }
            // Before any namespace exists: an interrupt cleans them up.
            signals::install()?;
            dataplane::run(&args)
        }
        Suite::Overlay(args) => {
            signals::install()?;
            overlay::run(&args)
        }
        Suite::Server(args) => server::run(&args),
    }
}

/// The output folder argument shared by suites.
#[derive(clap::Args, Clone, Debug)]
pub struct OutArg {
    /// Folder for NAME.json, NAME.md (and NAME.png).
    #[arg(long, default_value = "docs/bench")]
    pub out: PathBuf,
}
