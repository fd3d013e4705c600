//! `cargo xtask sim ...`: thin front-end over the simulators in `vpn-core`.
#[derive(clap::Args)]
pub struct SimArgs {}

pub fn run(_a: SimArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
