//! `cargo xtask`: set-up, demo, test, bench and sim orchestration. Product
//! logic never lives here: the simulator's model is in `vpn-core`, the
//! benchmark suites in `bench`.
use clap::{Parser, Subcommand};

mod sim;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Simulators (`cargo xtask sim relays ...`).
    Sim(sim::SimArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Sim(a) => sim::run(a),
    }
}
