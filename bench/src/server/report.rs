//! `server.json` and `server.md`.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{Args, DbResult, LoadResult};
use crate::machine::Machine;

/// Everything the suite measured, with its conditions.
#[derive(Debug, Serialize)]
pub struct Report {
    pub suite: &'static str,
    /// Seconds since the Unix epoch when the report was written.
    pub unix_time: u64,
    pub machine: Machine,
    pub clients: usize,
    pub seconds_per_phase: u64,
    pub server_binary: String,
    pub note: Option<String>,
    pub method: &'static str,
    pub results: Vec<DbResult>,
}

const METHOD: &str = "Closed-loop load from a second process (vpn-bench) on loopback: each client thread sends one request after another, each on a new TCP + TLS 1.3 connection to the pinned server certificate (as vpn-control does). Enrolment: a fresh Ed25519 identity and CSR per request (made outside the timed part) and a single-use blob secret from `vpn-server admin add-node --count`; the server verifies the secret, allocates an address, signs the certificate and commits, then answers with certificate, CA, CRL and group config. CRL: GET /api/v1/groups/{group}/crl. Latency percentiles are nearest-rank over the successful requests.";

impl Report {
    pub fn new(machine: Machine, args: &Args, bin: &Path, results: Vec<DbResult>) -> Self {
        Self {
            suite: "server",
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine,
            clients: args.clients,
            seconds_per_phase: args.seconds,
            server_binary: bin.display().to_string(),
            note: args.note.clone(),
            method: METHOD,
            results,
        }
    }

    pub fn write(&self, out: &Path) -> Result<()> {
        let json = out.join("server.json");
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")?;
        let md = out.join("server.md");
        std::fs::write(&md, self.markdown())?;
        eprintln!(
            "server bench: wrote {} and {}",
            json.display(),
            md.display()
        );
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str("# Group server benchmark\n\n");
        s.push_str("Written by `cargo xtask bench --suite server` (`vpn-bench server`); raw numbers in `server.json`.\n\n");
        s.push_str(&format!(
            "- Machine: {}\n- Kernel: {}\n- Load: {} concurrent clients, {} s per phase, from a second process on loopback\n",
            self.machine.summary(),
            self.machine.kernel,
            self.clients,
            self.seconds_per_phase
        ));
        if let Some(n) = &self.note {
            s.push_str(&format!("- Note: {n}\n"));
        }
        s.push_str(&format!("\n{METHOD}\n\n"));
        s.push_str("## Enrolments\n\n");
        s.push_str("| database | enrolments/s | p50 ms | p90 ms | p99 ms | max ms | ok | errors | blobs ran out |\n");
        s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n");
        for r in &self.results {
            s.push_str(&row(&r.database_version, &r.enroll));
        }
        s.push_str("\n## CRL fetches\n\n");
        s.push_str(
            "| database | fetches/s | p50 ms | p90 ms | p99 ms | max ms | ok | errors | |\n",
        );
        s.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n");
        for r in &self.results {
            s.push_str(&row(&r.database_version, &r.crl));
        }
        s.push_str("\n## Set-up\n\n");
        for r in &self.results {
            s.push_str(&format!(
                "- {}: pilot {} enrolments at {:.0}/s sized the pool; `vpn-server admin add-node --count {}` took {:.1} s.\n",
                r.database_version, r.pilot.ok, r.pilot.per_sec, r.pool, r.pool_seconds
            ));
        }
        s.push_str(
            "- PostgreSQL runs as a private cluster on loopback with its default durability (fsync and synchronous_commit on); SQLite is the server's default file database.\n",
        );
        s.push_str(
            "\nThe load generator and the server share the machine's CPUs, so the numbers are a lower bound for a dedicated server host; every request pays a full TLS handshake (no session resumption, no keep-alive), which dominates the CRL fetch.\n",
        );
        s
    }
}

fn row(db: &str, r: &LoadResult) -> String {
    let (p50, p90, p99, max) =
        r.latency
            .as_ref()
            .map_or(("-".into(), "-".into(), "-".into(), "-".into()), |l| {
                (
                    format!("{:.1}", l.p50_ms),
                    format!("{:.1}", l.p90_ms),
                    format!("{:.1}", l.p99_ms),
                    format!("{:.1}", l.max_ms),
                )
            });
    let errors = if r.errors.is_empty() {
        "0".to_owned()
    } else {
        r.errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "| {db} | {:.1} | {p50} | {p90} | {p99} | {max} | {} | {errors} | {} |\n",
        r.per_sec,
        r.ok,
        if r.exhausted { "yes" } else { "" }
    )
}
