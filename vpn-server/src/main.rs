//! `vpn-server`: the GroupVPN group server (see `docs/group-server.md`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use vpn_server::config::{Config, Overrides};

/// GroupVPN group server: web UI and HTTPS API for accounts, groups, join
/// requests, approvals, configuration blobs, certificates and CRLs.
#[derive(Parser, Debug)]
#[command(name = "vpn-server", version)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Listen address, ADDR:PORT (default 127.0.0.1:8443; port 0 picks one).
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Data directory (default /var/lib/groupvpn-server).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL (default sqlite://DATA_DIR/server.db; or postgres://...).
    #[arg(long, global = true)]
    database: Option<String>,
    /// URL written into blobs (default https://LISTEN).
    #[arg(long, global = true)]
    public_url: Option<String>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the server (the default).
    Serve,
    /// Administration from the server's shell.
    #[command(subcommand)]
    Admin(vpn_server::admin::AdminCmd),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let cfg = Config::load(
        cli.config.as_deref(),
        Overrides {
            listen: cli.listen,
            data_dir: cli.data_dir,
            database: cli.database,
            public_url: cli.public_url,
        },
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            None | Some(Cmd::Serve) => vpn_server::serve::run(cfg).await,
            Some(Cmd::Admin(a)) => vpn_server::admin::run(cfg, a).await,
        }
    })
}
