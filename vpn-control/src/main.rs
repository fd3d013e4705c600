//! `vpn-control`: the GroupVPN node daemon and its CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use vpn_control::{config, control, daemon, enroll, pki_cli};

#[derive(Parser)]
#[command(name = "vpn-control", version, about = "GroupVPN node daemon and CLI")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Set up the VPN interface and run the data plane in the foreground
    /// until SIGINT/SIGTERM or `vpn-control down`.
    Up {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Stop a running daemon, or clean up what a killed one left behind.
    Down {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show peers, paths and counters of a running daemon.
    Status {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a public-DHT-only node (a bootstrap node for members) until
    /// SIGINT/SIGTERM. Prints `dht-node listening on <multiaddr>/p2p/<PeerId>`
    /// once it listens.
    DhtNode {
        /// Node key (PKCS#8 PEM), created with mode 0600 if absent.
        #[arg(long, value_name = "FILE")]
        identity: PathBuf,
        /// TCP listen address with an explicit port, e.g. /ip4/10.0.0.1/tcp/4001.
        #[arg(long, value_name = "MULTIADDR")]
        listen: libp2p::Multiaddr,
        /// Other public DHT nodes, each ending in /p2p/<PeerId> (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<libp2p::Multiaddr>,
        /// The public Kademlia protocol name.
        #[arg(long, value_name = "P", default_value = vpn_control::overlay::ids::DEFAULT_PUBLIC_KAD_PROTOCOL)]
        kad_protocol: String,
    },
    /// Validate a configuration file and exit.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Group CA: create it, revoke certificates, write the CRL (docs/pki.md).
    Ca {
        #[command(subcommand)]
        cmd: pki_cli::CaCmd,
    },
    /// Member certificates: sign, print, verify; node identities and requests.
    Cert {
        #[command(subcommand)]
        cmd: pki_cli::CertCmd,
    },
    /// Enrol with a group server using the blob from its web page: writes
    /// node.key, node.crt, ca.crt, ca.crl, server.json and groupvpn.toml.
    Join {
        /// The `groupvpn1:...` blob (`-` reads it from stdin).
        blob: String,
        /// Node folder.
        #[arg(long, value_name = "DIR", default_value = "/etc/groupvpn")]
        dir: PathBuf,
    },
    /// Renew the certificate when due and refresh the CRL from the group server.
    Renew {
        /// Node folder (as given to `join`).
        #[arg(long, value_name = "DIR", default_value = "/etc/groupvpn")]
        dir: PathBuf,
        /// Renew even if not due yet.
        #[arg(long)]
        force: bool,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Up { config } => {
            let cfg = config::load(&config)?;
            runtime()?.block_on(daemon::up(cfg))?;
        }
        Cmd::Down { config } => {
            let cfg = config::load(&config)?;
            let msg = runtime()?.block_on(daemon::down(&cfg))?;
            println!("{msg}");
        }
        Cmd::Status { config, json } => {
            let cfg = config::load(&config)?;
            let s = daemon::status(&cfg)?;
            let text = if json {
                serde_json::to_string_pretty(&s)? + "\n"
            } else {
                control::render_table(&s)
            };
            write_stdout(&text)?;
        }
        Cmd::DhtNode {
            identity,
            listen,
            bootstrap,
            kad_protocol,
        } => {
            runtime()?.block_on(daemon::dht_node::run(
                &identity,
                listen,
                &bootstrap,
                &kad_protocol,
            ))?;
        }
        Cmd::Check { config } => {
            let cfg = config::load(&config)?;
            let overlay = match &cfg.overlay {
                Some(o) => format!(
                    ", overlay with {} bootstrap peer(s), certificate {}",
                    o.bootstrap.len(),
                    o.certificate.display()
                ),
                None => String::new(),
            };
            println!(
                "{}: ok ({} peer(s), data plane {:?}{overlay})",
                config.display(),
                cfg.peers.len(),
                cfg.interface.dataplane
            );
        }
        Cmd::Ca { cmd } => write_stdout(&pki_cli::run_ca(cmd)?)?,
        Cmd::Cert { cmd } => write_stdout(&pki_cli::run_cert(cmd)?)?,
        Cmd::Join { blob, dir } => {
            let blob = if blob == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading the blob from stdin")?
            } else {
                blob
            };
            let report = enroll::join(&blob, &dir, std::time::SystemTime::now())?;
            write_stdout(&report.to_string())?;
        }
        Cmd::Renew { dir, force } => {
            let out = enroll::renew(&dir, force, std::time::SystemTime::now())?;
            write_stdout(&out.to_string())?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpn-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}
