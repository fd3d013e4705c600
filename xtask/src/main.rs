//! `cargo xtask`: set-up, demo, test, bench and sim orchestration.
fn main() -> anyhow::Result<()> {
    Ok(())
}
