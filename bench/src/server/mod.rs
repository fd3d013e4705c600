//! `vpn-bench server --out DIR`: the group server under bounded load from
//! this (second) process on loopback, with SQLite and with PostgreSQL:
//!
//! - **enrolments per second**: N clients (default 200) each enrol one
//!   fresh node after another (new Ed25519 identity, CSR, single-use blob
//!   secret made beforehand with `vpn-server admin add-node --count`),
//!   for a fixed time (default 20 s) or until the blobs run out;
//! - **CRL fetch latency**: the same clients fetch the group CRL for the
//!   same time.
//!
//! Every request is a new TCP + TLS connection, as `vpn-control join` /
//! `renew` make them. Writes `DIR/server.json` and `DIR/server.md`.

mod load;
mod report;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use vpn_control::enroll::api::{crl_path, EnrollRequest, Issued, ENROLL_PATH};
use vpn_control::enroll::{parse_fingerprint, Blob, EnrollError, PinnedClient};
use vpn_pki::{csr_to_pem, make_csr, NodeIdentity};
use vpn_tests::server::{vpn_server_bin, PgCluster, VpnServer};
use vpn_tests::TempDir;

use crate::machine::Machine;

pub use load::{LoadResult, Outcome};

/// The group the bench enrols into (a /16: room for every enrolment).
const GROUP: &str = "bench";
const RANGE: &str = "10.90.0.0/16";
const ADMIN: &str = "bench-admin";
const ADMIN_PASSWORD: &str = "bench password that is long enough";
/// Blobs for the pilot run that sizes the real pool.
const PILOT_BLOBS: usize = 400;
/// Upper bound of the blob pool.
const MAX_POOL: usize = 60_000;

/// Arguments of `vpn-bench server`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub out: crate::OutArg,
    /// Concurrent clients.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Seconds per phase (enrolment, CRL fetch).
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Databases, comma separated: sqlite, postgres.
    #[arg(long, default_value = "sqlite,postgres")]
    pub databases: String,
    /// A remark for the report (e.g. other load on the machine).
    #[arg(long)]
    pub note: Option<String>,
}

/// The results for one database.
#[derive(Clone, Debug, Serialize)]
pub struct DbResult {
    /// `sqlite` or `postgres`.
    pub database: String,
    /// e.g. `PostgreSQL 15.18`.
    pub database_version: String,
    /// The pilot that sized the blob pool.
    pub pilot: LoadResult,
    /// Blobs made for the measured enrolment phase.
    pub pool: usize,
    /// Seconds it took `vpn-server admin add-node` to make them.
    pub pool_seconds: f64,
    /// Enrolment phase.
    pub enroll: LoadResult,
    /// CRL fetch phase.
    pub crl: LoadResult,
}

/// Runs the suite.
pub fn run(args: &Args) -> Result<()> {
    let bin = vpn_server_bin().context("the server suite runs the vpn-server binary")?;
    let machine = Machine::probe();
    let mut results = Vec::new();
    for db in args
        .databases
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if db != "sqlite" && db != "postgres" {
            bail!("unknown database {db:?} (sqlite, postgres)");
        }
        eprintln!("server bench: {db}");
        results.push(bench_db(db, args)?);
    }
    let out = &args.out.out;
    std::fs::create_dir_all(out)?;
    let rep = report::Report::new(machine, args, &bin, results);
    rep.write(out)
}

fn bench_db(db: &str, args: &Args) -> Result<DbResult> {
    let tmp = TempDir::new(&format!("bench-server-{db}"))?;
    let pg = if db == "postgres" {
        let pg = PgCluster::start("bench", true)?;
        pg.create_db("groupvpn")?;
        Some(pg)
    } else {
        None
    };
    let url = pg.as_ref().map(|p| p.url("groupvpn"));
    let data = tmp.path().join("data");
    let srv = VpnServer::start("vpn-server", &data, url.as_deref(), &[])?;
    let version = match &pg {
        Some(_) => postgres_version(),
        None => "SQLite (WAL, synchronous = FULL)".to_owned(),
    };
    let admin = Admin {
        data: &data,
        database: url.as_deref(),
        public_url: srv.url(),
    };
    admin.run(&["create-user", ADMIN], Some(ADMIN_PASSWORD))?;
    admin.run(
        &["create-group", GROUP, "--range", RANGE, "--admin", ADMIN],
        None,
    )?;
    let client = PinnedClient::new(
        srv.url(),
        parse_fingerprint(srv.tls_sha256()).map_err(anyhow::Error::msg)?,
    )?
    .with_timeout(Duration::from_secs(60));
    let duration = Duration::from_secs(args.seconds);

    // Pilot: how fast is it here? Sizes the pool so that it lasts the phase.
    let pilot_blobs = admin.add_nodes("pilot", PILOT_BLOBS)?;
    let pilot = enrol_phase(&client, &pilot_blobs, args.clients, duration);
    eprintln!(
        "  pilot: {} enrolments in {:.1} s ({:.0}/s)",
        pilot.ok, pilot.elapsed_s, pilot.per_sec
    );
    let pool = ((pilot.per_sec * args.seconds as f64 * 1.5) as usize + args.clients)
        .clamp(PILOT_BLOBS, MAX_POOL);
    let t = Instant::now();
    let blobs = admin.add_nodes("node", pool)?;
    let pool_seconds = t.elapsed().as_secs_f64();
    eprintln!("  made {pool} blobs in {pool_seconds:.1} s");

    let enroll = enrol_phase(&client, &blobs, args.clients, duration);
    eprintln!(
        "  enrol: {} in {:.1} s = {:.1}/s, errors {:?}, latency {:?}",
        enroll.ok, enroll.elapsed_s, enroll.per_sec, enroll.errors, enroll.latency
    );
    let crl = crl_phase(&client, args.clients, duration);
    eprintln!(
        "  crl: {} in {:.1} s = {:.1}/s, errors {:?}, latency {:?}",
        crl.ok, crl.elapsed_s, crl.per_sec, crl.errors, crl.latency
    );
    drop(srv);
    drop(pg);
    Ok(DbResult {
        database: db.to_owned(),
        database_version: version,
        pilot,
        pool,
        pool_seconds: (pool_seconds * 10.0).round() / 10.0,
        enroll,
        crl,
    })
}

fn error_kind(e: &EnrollError) -> String {
    match e {
        EnrollError::Server { status, .. } => format!("HTTP {status}"),
        EnrollError::Connect { .. } => "connect".into(),
        EnrollError::Tls { .. } => "tls".into(),
        EnrollError::PinMismatch { .. } => "pin".into(),
        EnrollError::Protocol(_) => "protocol".into(),
        _ => "other".into(),
    }
}

fn enrol_phase(client: &PinnedClient, blobs: &[Blob], clients: usize, d: Duration) -> LoadResult {
    let next = AtomicUsize::new(0);
    load::run(clients, d, |_| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(blob) = blobs.get(i) else {
            return Outcome::Exhausted;
        };
        // The node's own work (key, CSR) is not part of the latency.
        let id = NodeIdentity::generate();
        let csr = match make_csr(&id, &blob.node_name) {
            Ok(der) => csr_to_pem(&der),
            Err(e) => return Outcome::Err(format!("csr: {e}")),
        };
        let t = Instant::now();
        let r: Result<Issued, _> = client.post_json(
            ENROLL_PATH,
            &EnrollRequest {
                secret: blob.secret.clone(),
                csr_pem: csr,
            },
        );
        match r {
            Ok(_) => Outcome::Ok(t.elapsed()),
            Err(e) => Outcome::Err(error_kind(&e)),
        }
    })
}

fn crl_phase(client: &PinnedClient, clients: usize, d: Duration) -> LoadResult {
    let path = crl_path(GROUP);
    load::run(clients, d, |_| {
        let t = Instant::now();
        match client.request("GET", &path, &[("Accept", "application/json")], None) {
            Ok(r) if r.status == 200 => Outcome::Ok(t.elapsed()),
            Ok(r) => Outcome::Err(format!("HTTP {}", r.status)),
            Err(e) => Outcome::Err(error_kind(&e)),
        }
    })
}

/// `vpn-server admin ...` on the running server's database.
struct Admin<'a> {
    data: &'a Path,
    database: Option<&'a str>,
    public_url: &'a str,
}

impl Admin<'_> {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut cmd = Command::new(vpn_server_bin()?);
        cmd.arg("--data-dir")
            .arg(self.data)
            .args(["--public-url", self.public_url]);
        if let Some(db) = self.database {
            cmd.args(["--database", db]);
        }
        cmd.arg("admin")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("running vpn-server admin")?;
        if let Some(mut input) = child.stdin.take() {
            if let Some(text) = stdin {
                writeln!(input, "{text}")?;
            }
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "vpn-server admin {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `add-node GROUP PREFIX --count N`: N blobs.
    fn add_nodes(&self, prefix: &str, n: usize) -> Result<Vec<Blob>> {
        let text = self.run(
            &["add-node", GROUP, prefix, "--count", &n.to_string()],
            None,
        )?;
        let blobs: Vec<Blob> = text
            .lines()
            .filter(|l| l.trim_start().starts_with("groupvpn"))
            .map(Blob::parse)
            .collect::<Result<_, _>>()
            .context("parsing the blobs vpn-server admin add-node printed")?;
        if blobs.len() != n {
            bail!("asked for {n} blobs, got {}", blobs.len());
        }
        Ok(blobs)
    }
}

fn postgres_version() -> String {
    vpn_tests::server::postgres_bin_dir()
        .ok()
        .and_then(|b| {
            Command::new(b.join("postgres"))
                .arg("--version")
                .output()
                .ok()
        })
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .replace("postgres (PostgreSQL) ", "PostgreSQL ")
        })
        .unwrap_or_else(|| "PostgreSQL".into())
}
