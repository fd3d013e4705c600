//! The overlay suite (issue 4): private-DHT lookup latency versus group
//! size in one process on libp2p's memory transport, and, in network
//! namespaces with real `vpn-control up` processes, the time from `up` to
//! the first reply over the tunnel and the time to resolve a member and
//! establish an on-demand session. Writes `overlay.json` and `overlay.md`.
//!
//! Each part can run alone (`--parts`): the other part's last results are
//! kept from the existing `overlay.json`, each with its own machine,
//! kernel and date.

mod inprocess;
mod namespace;
mod report;
mod rng;
mod summary;

use anyhow::{bail, Context as _, Result};

use report::{InprocessSection, NamespaceSection, OverlayReport};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    out: crate::OutArg,
    /// Parts to run (comma-separated): `inprocess` (no privileges) and
    /// `namespace` (root); `render` alone only rewrites `overlay.md` from
    /// `overlay.json` (after a note was added to it, say).
    #[arg(long, value_delimiter = ',', default_value = "inprocess,namespace")]
    parts: Vec<String>,
    /// Group sizes of the in-process lookup measurement.
    #[arg(long, value_delimiter = ',', default_value = "50,200,1000")]
    sizes: Vec<usize>,
    /// Timed lookups per group size.
    #[arg(long, default_value_t = 200)]
    lookups: usize,
    /// Seconds to wait for a group to form (every member connected to its
    /// neighbours); past it the lookups are measured anyway and flagged.
    #[arg(long, default_value_t = 600)]
    join_budget: u64,
    /// Neighbours each member chooses (`[overlay] neighbours`).
    #[arg(long, default_value_t = vpn_control::overlay::DEFAULT_NEIGHBOURS)]
    neighbours: usize,
    /// Timed on-demand reaches (verification of a member not met before)
    /// per group size.
    #[arg(long, default_value_t = 50)]
    reaches: usize,
    /// Resident-memory ceiling (MiB) of the in-process part; default: 60%
    /// of the machine's available memory.
    #[arg(long)]
    memory_limit_mib: Option<u64>,
    /// Repetitions of each namespace measurement.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// A remark written into the report (e.g. other load on the machine).
    #[arg(long)]
    note: Option<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let mut inproc = false;
    let mut ns = false;
    let mut render = false;
    for p in &args.parts {
        match p.trim() {
            "inprocess" => inproc = true,
            "namespace" => ns = true,
            "render" => render = true,
            other => bail!("unknown part {other:?} (parts: inprocess, namespace, render)"),
        }
    }
    if render && !inproc && !ns {
        let json_path = args.out.out.join("overlay.json");
        let rep = OverlayReport::load(&json_path);
        rep.write(&args.out.out)?;
        eprintln!(
            "bench overlay: rewrote overlay.md from {}",
            json_path.display()
        );
        return Ok(());
    }
    if args.sizes.iter().any(|&n| n < 3) || args.lookups == 0 || args.runs == 0 {
        bail!("--sizes must be at least 3 each, --lookups and --runs at least 1");
    }
    if ns && !vpn_tests::is_root() {
        bail!("the namespace part builds network namespaces and loads eBPF programs: run it as root (or --parts inprocess)");
    }
    std::fs::create_dir_all(&args.out.out)
        .with_context(|| format!("creating {}", args.out.out.display()))?;
    let json_path = args.out.out.join("overlay.json");
    let mut rep = OverlayReport::load(&json_path);
    if inproc {
        let mut sizes = args.sizes.clone();
        sizes.sort_unstable();
        sizes.dedup();
        let params = inprocess::Params {
            sizes,
            lookups: args.lookups,
            workers: std::thread::available_parallelism().map_or(2, usize::from),
            join_budget_s: args.join_budget,
            neighbours: args.neighbours.max(1),
            reaches: args.reaches,
            memory_limit_mib: args
                .memory_limit_mib
                .unwrap_or_else(|| available_mib() * 6 / 10),
            lookup_timeout_s: 10,
            timers: format!("{:?}", inprocess::timers()),
        };
        let sec = InprocessSection::start(params.clone(), args.note.clone());
        // Written after every size: a long series keeps what it measured.
        inprocess::run(&params, |results| {
            let mut s = sec.clone();
            s.results = results.to_vec();
            s.finish();
            rep.inprocess = Some(s);
            rep.write(&args.out.out)
        })?;
    }
    if ns {
        let mut sec = NamespaceSection::start(args.runs, args.note.clone());
        namespace::run(&mut sec)?;
        sec.finish();
        rep.namespace = Some(sec);
        rep.write(&args.out.out)?;
    }
    eprintln!(
        "bench overlay: wrote {} and overlay.md",
        json_path.display()
    );
    Ok(())
}

/// `MemAvailable` in MiB.
fn available_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(4096, |kib| kib / 1024)
}
