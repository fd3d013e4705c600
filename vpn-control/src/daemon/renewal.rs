//! Automatic renewal for nodes enrolled with a group server.
//!
//! When the configured certificate sits in a folder that `vpn-control join`
//! filled (`server.json` beside `node.crt` and `node.key`), the daemon runs
//! [`enroll::renew_async`] at start and then again at the certificate's
//! renewal time (`renew_after` from the server, else two thirds into its
//! lifetime), and at least every [`CRL_REFRESH`] in between: each call
//! refreshes `ca.crl` from the server and renews `node.crt` once it is due.
//!
//! A newer CRL reaches the running overlay at once: through the daemon's
//! CRL file watcher when the configuration's `crl` is that `ca.crl`, else
//! through [`OverlayNode::set_crl`] here. A renewed certificate is written
//! to `node.crt` for the next start: the overlay has no hook to swap its
//! own certificate while running, so it keeps presenting the one it
//! started with until the daemon restarts (logged at each renewal).
//!
//! Failures (server unreachable, refused, a file problem) are logged and
//! retried with exponential backoff; they never stop the daemon.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::OverlaySection;
use crate::enroll::{self, CA_CRL, NODE_CRT, NODE_KEY, SERVER_JSON};
use crate::overlay::OverlayNode;

/// Longest wait between two calls to the server: bounds how long a
/// revocation takes to reach this node through the CRL.
pub const CRL_REFRESH: Duration = Duration::from_secs(15 * 60);
/// Shortest wait after a successful call (a server that keeps issuing
/// certificates already due must not make the node spin).
pub const MIN_DELAY: Duration = Duration::from_secs(60);
/// First retry after a failure; doubles per failure up to [`CRL_REFRESH`].
pub const FIRST_RETRY: Duration = Duration::from_secs(30);

/// Where and how this node renews.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The enrolled node folder (`server.json`, `node.crt`, `node.key`, `ca.crl`).
    pub dir: PathBuf,
    /// The daemon's CRL watcher already re-reads `dir/ca.crl`.
    pub crl_watched: bool,
}

/// Whether the configuration describes a node enrolled with a group server:
/// `Ok(None)` without `server.json` in the certificate's folder, `Err` with
/// the reason when `server.json` is there but renewal would write files the
/// configuration does not use.
pub fn plan(section: &OverlaySection) -> Result<Option<Plan>, String> {
    let Some(dir) = section.certificate.parent() else {
        return Ok(None);
    };
    if !dir.join(SERVER_JSON).is_file() {
        return Ok(None);
    }
    for (configured, expected) in [
        (&section.certificate, NODE_CRT),
        (&section.identity, NODE_KEY),
    ] {
        if !same_file(configured, &dir.join(expected)) {
            return Err(format!(
                "{} holds {SERVER_JSON} but the configuration uses {} instead of {}: \
                 not renewing automatically",
                dir.display(),
                configured.display(),
                dir.join(expected).display()
            ));
        }
    }
    let crl_watched = section
        .crl
        .as_deref()
        .is_some_and(|c| same_file(c, &dir.join(CA_CRL)));
    Ok(Some(Plan {
        dir: dir.to_owned(),
        crl_watched,
    }))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// How long to wait after a successful call whose certificate is due for
/// renewal at `renew_at`: until then, but at least [`MIN_DELAY`] and at
/// most [`CRL_REFRESH`].
pub fn delay_after_success(renew_at: SystemTime, now: SystemTime) -> Duration {
    renew_at
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
        .clamp(MIN_DELAY, CRL_REFRESH)
}

/// How long to wait after `failures` (>= 1) failed calls in a row:
/// [`FIRST_RETRY`] doubled per further failure, at most [`CRL_REFRESH`].
pub fn delay_after_failure(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_RETRY
        .saturating_mul(1u32 << doublings)
        .min(CRL_REFRESH)
}

/// Starts the renewal task if the configuration is that of an enrolled
/// node (see [`plan`]); the caller aborts the handle at shutdown.
pub fn spawn(section: &OverlaySection, node: OverlayNode) -> Option<tokio::task::JoinHandle<()>> {
    match plan(section) {
        Ok(Some(p)) => {
            tracing::info!(
                "enrolled with a group server ({}): renewing the certificate and refreshing \
                 the CRL automatically",
                p.dir.join(SERVER_JSON).display()
            );
            Some(tokio::spawn(run(p, node)))
        }
        Ok(None) => None,
        Err(why) => {
            tracing::warn!("{why}");
            None
        }
    }
}

async fn run(plan: Plan, node: OverlayNode) {
    let mut failures = 0u32;
    let mut first = true;
    loop {
        let wait = match enroll::renew_async(plan.dir.clone(), false).await {
            Ok(out) => {
                failures = 0;
                if std::mem::take(&mut first) {
                    tracing::info!(
                        "checked with the group server: certificate valid until {}, renewal \
                         due {}, CRL number {:?}",
                        vpn_pki::fmt_time(out.not_after),
                        vpn_pki::fmt_time(out.renew_after),
                        out.crl_number
                    );
                }
                report(&plan, &node, &out).await;
                delay_after_success(out.renew_after, SystemTime::now())
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = delay_after_failure(failures);
                tracing::warn!(
                    "certificate renewal / CRL refresh with the group server failed \
                     ({failures} in a row), retrying in {}s: {e}",
                    wait.as_secs()
                );
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn report(plan: &Plan, node: &OverlayNode, out: &enroll::RenewOutcome) {
    if out.renewed {
        tracing::info!(
            "renewed the certificate {} (valid until {}, next renewal {}); the running overlay \
             keeps presenting its previous certificate until the daemon restarts",
            plan.dir.join(NODE_CRT).display(),
            vpn_pki::fmt_time(out.not_after),
            vpn_pki::fmt_time(out.renew_after)
        );
    }
    if !out.crl_updated {
        tracing::debug!("CRL is current ({:?})", out.crl_number);
        return;
    }
    if plan.crl_watched {
        tracing::info!(
            "fetched CRL number {:?}; the CRL watcher loads it",
            out.crl_number
        );
        return;
    }
    let path = plan.dir.join(CA_CRL);
    match vpn_pki::Crl::load(&path) {
        Ok(crl) => match node.set_crl(crl).await {
            Ok(()) => tracing::info!("loaded the fetched CRL number {:?}", out.crl_number),
            Err(e) => tracing::warn!("fetched CRL {} refused: {e}", path.display()),
        },
        Err(e) => tracing::warn!("reading the fetched CRL {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn waits_until_the_renewal_time_within_bounds() {
        let now = t(0);
        // Far away: capped by the CRL refresh.
        assert_eq!(delay_after_success(t(90 * 86_400), now), CRL_REFRESH);
        // Soon: exactly then.
        assert_eq!(delay_after_success(t(300), now), Duration::from_secs(300));
        // Due now or overdue (the server issued a certificate already due):
        // the floor, not a busy loop.
        assert_eq!(delay_after_success(t(0), now), MIN_DELAY);
        assert_eq!(delay_after_success(now, t(5_000)), MIN_DELAY);
        assert_eq!(delay_after_success(t(10), now), MIN_DELAY);
    }

    #[test]
    fn failures_back_off_exponentially_to_the_refresh_interval() {
        let d: Vec<u64> = (1..=8).map(|f| delay_after_failure(f).as_secs()).collect();
        assert_eq!(d, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(delay_after_failure(u32::MAX), CRL_REFRESH);
        assert_eq!(delay_after_failure(0), FIRST_RETRY);
    }

    fn section(dir: &Path) -> OverlaySection {
        OverlaySection {
            identity: dir.join(NODE_KEY),
            certificate: dir.join(NODE_CRT),
            ca: dir.join("ca.crt"),
            crl: Some(dir.join(CA_CRL)),
            listen: Vec::new(),
            bootstrap: Vec::new(),
            public_kad_protocol: "/ipfs/kad/1.0.0".into(),
            announce_listen_addrs: true,
            rekey_after: Duration::from_secs(120),
            reject_after: Duration::from_secs(180),
            neighbours: crate::overlay::DEFAULT_NEIGHBOURS,
            public_dht_server: true,
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gv-renewal-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn only_enrolled_folders_are_renewed() {
        let d = scratch("plan");
        let s = section(&d);
        assert_eq!(
            plan(&s),
            Ok(None),
            "no server.json: offline CLI certificates"
        );
        std::fs::write(d.join(SERVER_JSON), "{}").unwrap();
        assert_eq!(
            plan(&s),
            Ok(Some(Plan {
                dir: d.clone(),
                crl_watched: true
            }))
        );
        let mut unwatched = s.clone();
        unwatched.crl = None;
        assert!(!plan(&unwatched).unwrap().unwrap().crl_watched);
        unwatched.crl = Some(d.join("other.crl"));
        assert!(!plan(&unwatched).unwrap().unwrap().crl_watched);
        // renew writes node.crt with node.key's PeerId: a configuration that
        // uses other files is left alone, with a reason.
        let mut other_key = s.clone();
        other_key.identity = d.join("mine.key");
        assert!(plan(&other_key).unwrap_err().contains("mine.key"));
        let mut other_cert = s;
        other_cert.certificate = d.join("mine.crt");
        assert!(plan(&other_cert).unwrap_err().contains("node.crt"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
