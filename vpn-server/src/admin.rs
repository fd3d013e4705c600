//! `vpn-server admin ...`: account, group and blob management from the
//! server's own shell (demos, benchmarks, first administrator). Works on
//! the same database while the server runs.

use std::io::BufRead as _;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;

use crate::config::Config;
use crate::db::users;
use crate::error::AppError;
use crate::ops::{self, blob, pki, Actor};
use crate::state::AppState;

/// Admin subcommands.
#[derive(Subcommand, Debug)]
pub enum AdminCmd {
    /// Create an account; the password is read from the first line of stdin.
    CreateUser {
        /// Username.
        name: String,
    },
    /// Create a group (with its CA); USER becomes its administrator.
    CreateGroup {
        /// Group name.
        name: String,
        /// IPv4 range, e.g. 10.77.0.0/24.
        #[arg(long)]
        range: String,
        /// The administrator's username.
        #[arg(long)]
        admin: String,
        /// Member certificate validity in days.
        #[arg(long, default_value_t = 90)]
        validity_days: i64,
        /// A public DHT bootstrap multiaddr for the group's configuration
        /// (repeatable; the same as the group page's bootstrap setting).
        #[arg(long = "bootstrap", value_name = "MULTIADDR")]
        bootstrap: Vec<String>,
    },
    /// Approve new node(s) without an account and print their blobs, one
    /// per line (with --count N: names NODE-1 ... NODE-N).
    AddNode {
        /// Group name.
        group: String,
        /// Node name (or prefix with --count).
        node: String,
        /// How many.
        #[arg(long)]
        count: Option<u32>,
    },
}

/// Runs an admin command.
pub async fn run(cfg: Config, cmd: AdminCmd) -> Result<()> {
    crate::serve::ensure_data_dir(&cfg)?;
    let id = crate::serve::tls_identity(&cfg)?;
    let public_url = match (&cfg.public_url, cfg.listen.port()) {
        (Some(u), _) => u.clone(),
        (None, 0) => bail!("with --listen ...:0, give --public-url for the blobs"),
        (None, _) => format!("https://{}", cfg.listen),
    };
    let st = Arc::new(crate::serve::open_state(cfg, id.sha256(), public_url).await?);
    let r = run_cmd(&st, cmd).await;
    st.db.close().await;
    r
}

fn app(e: AppError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.public_message())
}

async fn run_cmd(st: &Arc<AppState>, cmd: AdminCmd) -> Result<()> {
    match cmd {
        AdminCmd::CreateUser { name } => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let pw = line.trim_end_matches(['\r', '\n']);
            let ip = std::net::IpAddr::from([127, 0, 0, 1]);
            st.limiter.clear(&format!("reg:{ip}"));
            ops::accounts::register(st, ip, &name, pw)
                .await
                .map_err(app)?;
            eprintln!("created user {name}");
        }
        AdminCmd::CreateGroup {
            name,
            range,
            admin,
            validity_days,
            bootstrap,
        } => {
            let mut c = st.db.pool().acquire().await?;
            let u = users::by_name(&mut c, &admin)
                .await
                .map_err(app)?
                .with_context(|| format!("no user {admin:?}"))?;
            drop(c);
            // Checked before the group exists, so that a bad address
            // leaves nothing half made.
            let bootstrap = bootstrap.join("\n");
            ops::requests::parse_bootstrap(&bootstrap).map_err(app)?;
            let actor = Actor::User(u.id, u.username);
            let g = pki::create_group(st, &actor, &name, &range, validity_days)
                .await
                .map_err(app)?;
            eprintln!("created group {} ({})", g.name, g.range4);
            if !bootstrap.is_empty() {
                ops::requests::set_bootstrap(st, &actor, &g.name, &bootstrap)
                    .await
                    .map_err(app)?;
                eprintln!("bootstrap: {}", bootstrap.replace('\n', " "));
            }
        }
        AdminCmd::AddNode { group, node, count } => {
            let names: Vec<String> = match count {
                None => vec![node],
                Some(n) => (1..=n).map(|i| format!("{node}-{i}")).collect(),
            };
            let mut c = st.db.pool().acquire().await?;
            let g = ops::group_or_404(&mut c, &group).await.map_err(app)?;
            drop(c);
            // Batches of 500 per transaction, printed once committed: if a
            // later batch fails, the blobs of the earlier ones are not lost.
            for batch in names.chunks(500) {
                for b in blob::add_nodes(st, &g, batch).await.map_err(app)? {
                    println!("{b}");
                }
            }
        }
    }
    Ok(())
}
