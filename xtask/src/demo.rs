//! `cargo xtask demo`: a group from certificates alone, enrolled through a
//! group server. Two public-DHT-only `vpn-control dht-node`s and three
//! hosts sit in network namespaces on one LAN; a `vpn-server` runs next to
//! the first DHT node; its admin CLI creates the group (bootstrap = the DHT
//! nodes) and one blob per host, each host runs `vpn-control join BLOB` in
//! its namespace (no lab keys, no certificates made by hand) and then
//! `vpn-control up` with the `[overlay]` configuration `join` wrote. The hosts
//! find each other through the DHTs, verify each other's certificates,
//! negotiate session keys, and all pairs ping each other by virtual address
//! while one pair runs iperf3: first over the kernel path, then over the
//! userspace twin; then a short report. Everything is removed at the end,
//! also on error or Ctrl-C.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use vpn_tests::{
    daemon_programs, iperf3_tcp, ping, wait_ping, Dataplane, GroupCredentials, GroupSpec,
    IperfServer, OverlayLab, OverlayOptions, PingStats, Status,
};

use crate::util::{cargo, describe, is_root, run_ok, target_dir};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of hosts (2 to 8).
    #[arg(long, default_value_t = 3)]
    hosts: usize,
    /// iperf3 duration in seconds.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// Run the debug `vpn-control` that `cargo xtask test` builds instead of
    /// the release one (shorter build; the userspace twin is then ~40x
    /// slower, so its throughput figure means little).
    #[arg(long)]
    debug: bool,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM only set a flag: the demo stops at the next step and
/// its destructors stop the daemons and delete the namespaces.
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted: cleaning up");
    }
    Ok(())
}

/// How long the hosts may take to find and verify each other.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// `openssl verify -CAfile ca.crt node.crt` for every member certificate:
/// how many verified, and the first failure's output.
fn openssl_verify(creds: &GroupCredentials) -> (usize, Option<String>) {
    let mut ok = 0;
    let mut first_failure = None;
    for m in &creds.members {
        let out = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&creds.ca_cert)
            .arg(&m.certificate)
            .output();
        match out {
            Ok(o) if o.status.success() => ok += 1,
            Ok(o) => {
                first_failure.get_or_insert_with(|| {
                    String::from_utf8_lossy(&o.stdout).into_owned()
                        + &String::from_utf8_lossy(&o.stderr)
                });
            }
            Err(e) => {
                first_failure.get_or_insert_with(|| format!("running openssl: {e}"));
            }
        }
    }
    (ok, first_failure)
}

mod enrol;
mod render;

use enrol::{planned_credentials, GroupServer};
use render::render;

/// The daemon's log line once its automatic renewal task has checked the
/// certificate and fetched the CRL from the group server.
const RENEWAL_CHECKED: &str = "checked with the group server";

/// What one path's run measured.
pub(crate) struct PathReport {
    pub(crate) path: Dataplane,
    /// Where the certificates came from.
    pub(crate) credentials: String,
    /// Daemons whose renewal task checked in with the group server.
    pub(crate) renewing: usize,
    /// From starting the daemons until every host had verified every other.
    pub(crate) joined: Duration,
    /// `openssl verify` of the member certificates: (verified, members, failure).
    pub(crate) openssl: (usize, usize, Option<String>),
    pub(crate) pings: Vec<(String, PingStats)>,
    pub(crate) ping6: Option<PingStats>,
    pub(crate) iperf_gbps: f64,
    pub(crate) iperf_pair: String,
    pub(crate) statuses: Vec<(String, Status)>,
    pub(crate) programs: Vec<String>,
    pub(crate) elapsed: Duration,
}

pub fn run(args: DemoArgs) -> Result<()> {
    if !(2..=8).contains(&args.hosts) {
        bail!("--hosts must be between 2 and 8");
    }
    crate::setup::ensure()?;
    if !is_root() {
        bail!("the demo builds network namespaces and loads eBPF programs: run it as root");
    }
    install_signal_handlers();
    let profile = if args.debug { "debug" } else { "release" };
    let mut build = cargo();
    build.args(["build", "-p", "vpn-control", "-p", "vpn-server"]);
    if !args.debug {
        build.arg("--release");
    }
    eprintln!("demo: {}", describe(&build));
    run_ok(&mut build)?;
    let bin = target_dir().join(profile).join("vpn-control");
    std::env::set_var("VPN_CONTROL_BIN", &bin);
    let server_bin = target_dir().join(profile).join("vpn-server");
    check_interrupted()?;

    let mut reports = Vec::new();
    for path in [Dataplane::Kernel, Dataplane::Userspace] {
        eprintln!(
            "demo: {} path: starting {} hosts",
            path.as_str(),
            args.hosts
        );
        let r = run_path(path, &args, &server_bin);
        if INTERRUPTED.load(Ordering::SeqCst) {
            // run_path's destructors already stopped the daemons and
            // removed the namespaces.
            eprintln!("demo: interrupted; daemons stopped and namespaces removed");
            std::process::exit(130);
        }
        reports.push(r.with_context(|| format!("{} path", path.as_str()))?);
    }
    println!("{}", render(&reports, args.hosts, profile));
    Ok(())
}

fn run_path(path: Dataplane, args: &DemoArgs, server_bin: &std::path::Path) -> Result<PathReport> {
    let start = Instant::now();
    let mut opts = OverlayOptions::new(args.hosts);
    opts.dataplane = path;
    // The group server issues IPv4 addresses from one range.
    opts.ipv6 = false;
    let group = GroupSpec::lab(&opts.group, false);
    let mut lab = OverlayLab::with_credentials("demo", opts, planned_credentials)?;
    // Declared after the lab: dropped (stopped) before its namespaces go.
    let mut group_server = GroupServer::start(&lab, server_bin).context("starting vpn-server")?;
    let enrolment = group_server
        .enrol_all(&mut lab, &group.range_v4)
        .context("enrolling the hosts through vpn-server")?;
    eprintln!("demo: {} path: {}", path.as_str(), enrolment.summary);
    check_interrupted()?;
    let (verified, failure) = openssl_verify(lab.credentials());
    let openssl = (verified, lab.credentials().members.len(), failure);
    let up = Instant::now();
    lab.up_all()?;
    check_interrupted()?;
    lab.wait_all_joined(JOIN_TIMEOUT)
        .context("hosts finding and verifying each other")?;
    let joined = up.elapsed();
    eprintln!(
        "demo: {} path: {} hosts verified each other {:.1} s after `up`",
        path.as_str(),
        args.hosts,
        joined.as_secs_f64()
    );
    check_interrupted()?;
    let n = lab.len();
    // First packets may wait for neighbour resolution: wait for each pair once.
    for i in 0..n {
        for j in 0..n {
            if i != j {
                wait_ping(lab.node(i).ns(), lab.vpn_v4(j)?, Duration::from_secs(20))?;
                check_interrupted()?;
            }
        }
    }
    let mut pings = Vec::new();
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let (a, b) = (lab.node(i), lab.node(j));
            let s = ping(a.ns(), lab.vpn_v4(j)?, 10, 0.05)?;
            pings.push((format!("{} -> {}", a.spec.name, b.spec.name), s));
            check_interrupted()?;
        }
    }
    let ping6 = match lab.vpn_v6(1) {
        Some(v6) => Some(ping(lab.node(0).ns(), v6, 10, 0.05)?),
        None => None,
    };
    check_interrupted()?;

    let server = IperfServer::start(lab.node(1).ns(), 5201, &lab.dir().join("iperf3-server.log"))?;
    let dst: IpAddr = lab.vpn_v4(1)?;
    let iperf = iperf3_tcp(lab.node(0).ns(), dst, server.port, args.seconds, 1)?;
    drop(server);
    check_interrupted()?;

    let mut programs = Vec::new();
    if path == Dataplane::Kernel {
        for node in lab.nodes() {
            if let Some(pid) = node.daemon_pid() {
                for p in daemon_programs(node.ns(), pid)? {
                    programs.push(format!(
                        "{}: {} (id {}, {})",
                        node.spec.name, p.name, p.id, p.prog_type
                    ));
                }
            }
        }
    }
    let mut statuses = Vec::new();
    for node in lab.nodes() {
        statuses.push((node.spec.name.clone(), node.status()?));
    }
    let iperf_pair = format!("{} -> {}", lab.node(0).spec.name, lab.node(1).spec.name);
    let renewing = lab
        .nodes()
        .iter()
        .filter(|n| n.log().contains(RENEWAL_CHECKED))
        .count();
    drop(group_server);
    drop(lab); // stops the daemons and removes the namespaces
    Ok(PathReport {
        path,
        credentials: enrolment.summary,
        renewing,
        joined,
        openssl,
        pings,
        ping6,
        iperf_gbps: iperf.received_bps / 1e9,
        iperf_pair,
        statuses,
        programs,
        elapsed: start.elapsed(),
    })
}
