//! Private-DHT lookup latency versus group size, in one process on
//! libp2p's memory transport: `N` members join through 3 public-DHT-only
//! bootstrap nodes, then randomly chosen members resolve randomly chosen
//! other members' virtual addresses through `Client::resolve`, one at a
//! time, each pair at most once (so every lookup misses the resolver's
//! cache and walks the private Kademlia DHT). The overlay is sparse: each
//! member chooses `neighbours` members from the provider records and meets
//! the rest through the private DHT; the per-member state (verified and
//! connected members) is recorded against the group size, and so is the
//! time to reach (verify on demand) a member not verified before.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use vpn_control::overlay::{self, ids, Client, OverlayConfig, PublicNode, Timers, TransportKind};
use vpn_pki::{AddressAssignment, CaParams, CertProfile, GroupCa, NodeIdentity, Role};

use super::rng::XorShift;
use super::summary::Summary;

const DAY: Duration = Duration::from_secs(86_400);
const GROUP: &str = "bench";
const BOOTSTRAP_NODES: u64 = 3;

/// Parameters of the in-process part.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Params {
    /// Group sizes to measure, smallest first.
    pub sizes: Vec<usize>,
    /// Timed lookups per size.
    pub lookups: usize,
    /// Tokio worker threads (the machine's cores).
    pub workers: usize,
    /// Longest wait for a size to form (every member connected to its
    /// neighbours); past it the lookups are measured anyway, flagged. Half
    /// of it bounds the wait for the address claims.
    pub join_budget_s: u64,
    /// Neighbours each member chooses from the provider records
    /// (`OverlayConfig::neighbours`).
    #[serde(default)]
    pub neighbours: usize,
    /// Timed on-demand reaches per size.
    #[serde(default)]
    pub reaches: usize,
    /// A size is abandoned when the process's resident memory passes this.
    pub memory_limit_mib: u64,
    /// One lookup's timeout (counted as a failure).
    pub lookup_timeout_s: u64,
    /// The overlay timers the members run with.
    pub timers: String,
}

/// The outcome of one group size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SizeResult {
    pub members: usize,
    /// `measured`, or why the size did not fit.
    pub outcome: String,
    /// Seconds from the first member's start until every member was
    /// connected to `min(neighbours, members - 1)` verified members (None
    /// if that never happened).
    pub formed_s: Option<f64>,
    /// Members that had that many when forming stopped.
    pub fully_joined: usize,
    /// Per-member overlay state when the group had formed.
    #[serde(default)]
    pub state_formed: Option<MemberState>,
    /// Per-member overlay state after the lookups and reaches.
    #[serde(default)]
    pub state_end: Option<MemberState>,
    /// Time (ms) for a member to reach (verify on demand) a member it had
    /// not verified, polling `Client::reach` every 10 ms.
    #[serde(default)]
    pub reach_ms: Option<Summary>,
    /// Reaches that did not succeed within the lookup timeout.
    #[serde(default)]
    pub reach_failures: usize,
    /// Addresses member 0 still could not resolve when publication
    /// stopped (not used as lookup targets).
    #[serde(default)]
    pub unresolvable: usize,
    /// Seconds until member 0 resolved every other member's address (the
    /// claims are all published).
    pub published_s: Option<f64>,
    /// Lookup latency in milliseconds over the successful lookups.
    pub latency_ms: Option<Summary>,
    /// Every lookup's latency (ms), in order.
    pub samples_ms: Vec<f64>,
    /// Lookups that failed or timed out.
    pub failures: usize,
    /// Resident memory (MiB) of the bench process at the end of the size.
    pub rss_mib: f64,
    /// CPU seconds the process used for this size (user + system).
    pub cpu_s: f64,
}

impl SizeResult {
    fn empty(members: usize) -> Self {
        Self {
            members,
            outcome: String::new(),
            formed_s: None,
            fully_joined: 0,
            state_formed: None,
            state_end: None,
            reach_ms: None,
            reach_failures: 0,
            unresolvable: 0,
            published_s: None,
            latency_ms: None,
            samples_ms: Vec::new(),
            failures: 0,
            rss_mib: 0.0,
            cpu_s: 0.0,
        }
    }
}

/// Verified and connected members per member (mean and largest).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct MemberState {
    pub verified_mean: f64,
    pub verified_max: u64,
    pub connected_mean: f64,
    pub connected_max: u64,
    /// Open connections to peers of any kind (members and public-DHT
    /// nodes; in this bench the public DHT is mostly the members).
    #[serde(default)]
    pub peers_mean: f64,
    #[serde(default)]
    pub peers_max: u64,
}

async fn member_state(members: &[Client]) -> Option<MemberState> {
    let (mut v, mut c, mut a) = (Vec::new(), Vec::new(), Vec::new());
    for m in members {
        let st = m.stats().await.ok()?;
        v.push(st.members);
        c.push(st.connected_members);
        a.push(st.connected_peers);
    }
    let mean = |x: &[u64]| x.iter().sum::<u64>() as f64 / x.len().max(1) as f64;
    Some(MemberState {
        verified_mean: mean(&v),
        verified_max: v.iter().copied().max().unwrap_or(0),
        connected_mean: mean(&c),
        connected_max: c.iter().copied().max().unwrap_or(0),
        peers_mean: mean(&a),
        peers_max: a.iter().copied().max().unwrap_or(0),
    })
}

fn mem(n: u64) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Memory(n))
}

fn addr_of(i: usize) -> IpAddr {
    let i = u32::try_from(i).expect("small group") + 10;
    IpAddr::from([10, 77, (i >> 8) as u8, (i & 0xff) as u8])
}

/// The timers of the in-process overlay tests (`vpn-control/tests/overlay_join.rs`):
/// fast discovery rounds so that a group forms in seconds.
pub fn timers() -> Timers {
    Timers {
        discovery: Duration::from_millis(500),
        discovery_max: Duration::from_secs(4),
        record_ttl: Duration::from_secs(3600),
        cache_ttl: Duration::from_secs(600),
        recheck: Duration::from_secs(60),
        refusal_backoff: Duration::from_secs(60),
    }
}

/// Tasks aborted on drop.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Runs every size in `p.sizes` on a fresh runtime each, handing each
/// result to `done` as soon as it is there; a size that does not fit in
/// memory ends the series (larger ones would not fit either).
pub fn run(
    p: &Params,
    mut done: impl FnMut(&[SizeResult]) -> Result<()>,
) -> Result<Vec<SizeResult>> {
    let mut out = Vec::new();
    for (k, &n) in p.sizes.iter().enumerate() {
        eprintln!("bench overlay: {n} members in-process ...");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(p.workers)
            .enable_all()
            .build()
            .context("building the tokio runtime")?;
        let cpu0 = cpu_seconds();
        let base = (u64::from(std::process::id()) << 24) + ((k as u64 + 1) << 16);
        let mut r = rt.block_on(one_size(n, base, p))?;
        r.rss_mib = rss_mib();
        r.cpu_s = cpu_seconds() - cpu0;
        rt.shutdown_timeout(Duration::from_secs(10));
        eprintln!(
            "bench overlay: {n} members: {} (formed {:?} s, lookups {} ok / {} failed, {:.0} MiB)",
            r.outcome,
            r.formed_s.map(|s| (s * 10.0).round() / 10.0),
            r.samples_ms.len(),
            r.failures,
            r.rss_mib
        );
        let fits = r.outcome.starts_with("measured");
        out.push(r);
        done(&out)?;
        if !fits {
            break;
        }
    }
    Ok(out)
}

async fn one_size(n: usize, base: u64, p: &Params) -> Result<SizeResult> {
    let t0 = Instant::now();
    let mut tasks = Tasks(Vec::new());
    let bootstrap = public_nodes(base, &mut tasks)?;
    let ca = GroupCa::init(
        &CaParams {
            group: GROUP.into(),
            ranges: vec!["10.77.0.0/16".parse().expect("literal")],
            validity: 30 * DAY,
        },
        SystemTime::now(),
    )?;
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        if i % 50 == 49 {
            if let Some(why) = over_memory(p.memory_limit_mib) {
                let mut r = SizeResult::empty(n);
                r.outcome = format!("did not fit: {why} after starting {i} of {n} members");
                return Ok(r);
            }
            // Let the members started so far make progress.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        members.push(start_member(
            &ca,
            i,
            base + 100 + i as u64,
            &bootstrap,
            p.neighbours,
            &mut tasks,
        )?);
    }
    let want_connected = p.neighbours.min(n - 1) as u64;
    let mut r = SizeResult::empty(n);

    // Forming: every member is connected to its neighbours (verified). A
    // group that does not get there within the budget is still measured
    // (flagged), unless it ran out of memory.
    let budget = Duration::from_secs(p.join_budget_s);
    let mut last_report = Instant::now();
    loop {
        let mut full = 0;
        let mut least = u64::MAX;
        let mut over = None;
        for (i, m) in members.iter().enumerate() {
            // Starved event loops answer late: count them as not joined.
            let st = tokio::time::timeout(Duration::from_secs(1), m.stats()).await;
            let k = match st {
                Ok(Ok(s)) => s.connected_members,
                _ => 0,
            };
            if i % 50 == 0 {
                over = over.or_else(|| over_memory(p.memory_limit_mib));
                if over.is_some() || t0.elapsed() > budget {
                    break;
                }
            }
            least = least.min(k);
            if k >= want_connected {
                full += 1;
            }
        }
        r.fully_joined = full;
        if full == n {
            r.formed_s = Some(t0.elapsed().as_secs_f64());
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "bench overlay:   {n} members, {:.0} s: {full} have {want_connected} connected members, the least-connected {least}, {:.0} MiB",
                t0.elapsed().as_secs_f64(),
                rss_mib()
            );
        }
        if let Some(why) = over.or_else(|| over_memory(p.memory_limit_mib)) {
            r.outcome = format!(
                "did not fit: {why} ({full} of {n} members had {want_connected} connected members)"
            );
            return Ok(r);
        }
        if t0.elapsed() > budget {
            r.outcome = format!(
                "measured while still forming: after {} s {full} of {n} members had \
                 {want_connected} connected members (the least-connected {least})",
                budget.as_secs()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    r.state_formed = member_state(&members).await;

    // Publication: member 0 (never a timed resolver) resolves everyone;
    // only addresses it could resolve are lookup targets.
    let want: Vec<PeerId> = members.iter().map(Client::peer_id).collect();
    let publish_start = Instant::now();
    let mut pending: Vec<usize> = (1..n).collect();
    loop {
        let mut still = Vec::new();
        for j in pending {
            match members[0].resolve(addr_of(j)).await {
                Ok(res) if res.peer == want[j] => {}
                _ => still.push(j),
            }
        }
        pending = still;
        if pending.is_empty() || publish_start.elapsed() > budget / 2 {
            break;
        }
        if let Some(why) = over_memory(p.memory_limit_mib) {
            r.outcome = format!("did not fit: {why} while waiting for address claims");
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    r.published_s = Some(t0.elapsed().as_secs_f64());
    r.unresolvable = pending.len();
    let targets: Vec<usize> = (1..n).filter(|j| !pending.contains(j)).collect();

    // Timed, cache-cold lookups: distinct (resolver, target) pairs.
    let mut rng = XorShift::new(0x9e37_79b9_7f4a_7c15 ^ n as u64);
    let mut seen = std::collections::HashSet::new();
    let timeout = Duration::from_secs(p.lookup_timeout_s);
    let wanted = p.lookups.min((n - 1) * targets.len().saturating_sub(1));
    // A group that never formed can make every lookup wait for its
    // timeout: the lookups and reaches together get one more budget, then
    // the size is reported with what was measured.
    let measure_deadline = Instant::now() + budget;
    let mut cut_short = false;
    while seen.len() < wanted {
        if Instant::now() > measure_deadline {
            cut_short = true;
            break;
        }
        let a = 1 + rng.below(n - 1);
        let b = targets[rng.below(targets.len())];
        if a == b || !seen.insert((a, b)) {
            continue;
        }
        let start = Instant::now();
        let res = tokio::time::timeout(timeout, members[a].resolve(addr_of(b))).await;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        match res {
            Ok(Ok(res)) if res.peer == want[b] => r.samples_ms.push(ms),
            _ => r.failures += 1,
        }
    }
    r.latency_ms = Summary::of(&r.samples_ms);

    // On-demand reaches: a member (not 0) reaches a member it has not
    // verified; timed until `reach` says verified.
    let mut reach_samples = Vec::new();
    let mut tries = 0;
    while reach_samples.len() + r.reach_failures < p.reaches && tries < p.reaches * 20 {
        if Instant::now() > measure_deadline {
            cut_short = true;
            break;
        }
        tries += 1;
        let a = 1 + rng.below(n - 1);
        let b = rng.below(n);
        if a == b {
            continue;
        }
        let known = members[a].members().await.unwrap_or_default();
        if known.contains(&want[b]) {
            continue;
        }
        let start = Instant::now();
        let reached = tokio::time::timeout(timeout, async {
            loop {
                match members[a].reach(want[b]).await {
                    Ok(true) => return true,
                    Ok(false) => tokio::time::sleep(Duration::from_millis(10)).await,
                    Err(_) => return false,
                }
            }
        })
        .await;
        match reached {
            Ok(true) => reach_samples.push(start.elapsed().as_secs_f64() * 1e3),
            _ => r.reach_failures += 1,
        }
    }
    r.reach_ms = Summary::of(&reach_samples);
    r.state_end = member_state(&members).await;
    if cut_short {
        let why = format!(
            "lookups and reaches cut short after {} s ({} lookups, {} reaches done)",
            budget.as_secs(),
            r.samples_ms.len() + r.failures,
            reach_samples.len() + r.reach_failures
        );
        r.outcome = if r.outcome.is_empty() {
            format!("measured; {why}")
        } else {
            format!("{}; {why}", r.outcome)
        };
    }
    if r.outcome.is_empty() {
        r.outcome = "measured".into();
    }
    for m in &members {
        m.shutdown().await;
    }
    drop(tasks);
    Ok(r)
}

fn over_memory(memory_limit_mib: u64) -> Option<String> {
    let rss = rss_mib();
    (rss > memory_limit_mib as f64)
        .then(|| format!("resident memory {rss:.0} MiB passed the {memory_limit_mib} MiB limit"))
}

fn public_nodes(base: u64, tasks: &mut Tasks) -> Result<Vec<Multiaddr>> {
    let proto = StreamProtocol::new(ids::DEFAULT_PUBLIC_KAD_PROTOCOL);
    let mut nodes = Vec::new();
    for i in 0..BOOTSTRAP_NODES {
        nodes.push(PublicNode::new(
            Keypair::generate_ed25519(),
            TransportKind::Memory,
            mem(base + i),
            proto.clone(),
        )?);
    }
    let peers: Vec<PeerId> = nodes.iter().map(PublicNode::peer_id).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        for (j, id) in peers.iter().enumerate() {
            if i != j {
                node.add_peer(*id, mem(base + j as u64));
            }
        }
    }
    tasks
        .0
        .extend(nodes.into_iter().map(|n| tokio::spawn(n.run())));
    Ok(peers
        .iter()
        .enumerate()
        .map(|(i, id)| mem(base + i as u64).with(Protocol::P2p(*id)))
        .collect())
}

fn start_member(
    ca: &GroupCa,
    i: usize,
    port: u64,
    bootstrap: &[Multiaddr],
    neighbours: usize,
    tasks: &mut Tasks,
) -> Result<Client> {
    let id = NodeIdentity::generate();
    let cert = ca
        .issue(
            &id.public_key(),
            &CertProfile {
                name: format!("m{i}"),
                address: AddressAssignment::Fixed(vec![addr_of(i)]),
                roles: vec![Role::Member],
                validity: 7 * DAY,
            },
            SystemTime::now(),
        )?
        .der()
        .to_vec();
    let mut cfg = OverlayConfig::new(
        GROUP.into(),
        ca.certificate().clone(),
        cert,
        ids::keypair_of(&id),
    );
    cfg.transport = TransportKind::Memory;
    cfg.listen = vec![mem(port)];
    cfg.bootstrap = bootstrap.to_vec();
    cfg.timers = timers();
    cfg.neighbours = neighbours;

    let (client, event_loop, mut events) = overlay::new(cfg)?;
    tasks.0.push(tokio::spawn(event_loop.run()));
    // Nobody consumes the events here: drain them so the loop never counts
    // drops.
    tasks.0.push(tokio::spawn(async move {
        while events.recv().await.is_some() {}
    }));
    Ok(client)
}

/// Resident set size of this process in MiB.
pub fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// User + system CPU seconds of this process.
pub fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a rusage into the pointer we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let u = unsafe { u.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}
