//! `overlay.json` (both parts, each with its machine and date) and
//! `overlay.md` rendered from it.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::inprocess::{MemberState, Params, SizeResult};
use super::summary::Summary;
use crate::machine::Machine;

/// Targets of issue 4 (LAN).
pub const TARGET_FIRST_REPLY_MS: f64 = 2000.0;
pub const TARGET_ON_DEMAND_MS: f64 = 200.0;

/// Where and when a part ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Context {
    pub machine: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub virtualized: bool,
    pub generated: String,
    /// `/proc/loadavg` (1, 5, 15 min) before and after.
    pub load_before: String,
    pub load_after: String,
    pub note: Option<String>,
}

impl Context {
    pub fn now(note: Option<String>) -> Self {
        let m = Machine::probe();
        Self {
            machine: m.summary(),
            cpu: m.cpu.clone(),
            cores: m.cores,
            memory_gib: m.memory_gib,
            kernel: m.kernel.clone(),
            virtualized: m.virtualized,
            generated: now_utc(),
            load_before: loadavg(),
            load_after: String::new(),
            note,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InprocessSection {
    pub context: Context,
    pub params: Params,
    pub results: Vec<SizeResult>,
}

impl InprocessSection {
    pub fn start(params: Params, note: Option<String>) -> Self {
        Self {
            context: Context::now(note),
            params,
            results: Vec::new(),
        }
    }

    pub fn finish(&mut self) {
        self.context.load_after = loadavg();
    }
}

/// One repetition of the namespace measurements.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NsRun {
    /// From spawning `vpn-control up` to the first ping reply over the
    /// tunnel from an already running member.
    pub up_to_first_reply_ms: Option<f64>,
    /// From `up` until `status` reports every other member verified.
    pub up_to_all_members_ms: Option<f64>,
    /// RTT of the first ping to a member this node had no session with
    /// (resolution, handshake and delivery of the queued packet included).
    pub on_demand_first_rtt_ms: Option<f64>,
    /// Average RTT of the pings that followed (session up).
    pub steady_rtt_ms: Option<f64>,
    /// Whether `status` already listed a session with that member before
    /// the first ping (then the first RTT measures no handshake).
    pub session_existed_before: Option<bool>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NamespaceSection {
    pub context: Context,
    pub runs_requested: u32,
    /// Members (besides the restarted one) and public DHT nodes on the LAN.
    pub topology: String,
    pub method: String,
    pub runs: Vec<NsRun>,
    pub up_to_first_reply_ms: Option<Summary>,
    pub up_to_all_members_ms: Option<Summary>,
    pub on_demand_first_rtt_ms: Option<Summary>,
    pub steady_rtt_ms: Option<Summary>,
}

impl NamespaceSection {
    pub fn start(runs: u32, note: Option<String>) -> Self {
        Self {
            context: Context::now(note),
            runs_requested: runs,
            topology: String::new(),
            method: String::new(),
            runs: Vec::new(),
            up_to_first_reply_ms: None,
            up_to_all_members_ms: None,
            on_demand_first_rtt_ms: None,
            steady_rtt_ms: None,
        }
    }

    pub fn finish(&mut self) {
        self.context.load_after = loadavg();
        let col = |f: fn(&NsRun) -> Option<f64>| -> Option<Summary> {
            Summary::of(&self.runs.iter().filter_map(f).collect::<Vec<_>>())
        };
        self.up_to_first_reply_ms = col(|r| r.up_to_first_reply_ms);
        self.up_to_all_members_ms = col(|r| r.up_to_all_members_ms);
        self.on_demand_first_rtt_ms = col(|r| r.on_demand_first_rtt_ms);
        self.steady_rtt_ms = col(|r| r.steady_rtt_ms);
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OverlayReport {
    pub inprocess: Option<InprocessSection>,
    pub namespace: Option<NamespaceSection>,
}

impl OverlayReport {
    /// The previous report, or an empty one (missing or unreadable file:
    /// the parts not run now are then reported as not run).
    pub fn load(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)?;
        let p = dir.join("overlay.json");
        std::fs::write(&p, json + "\n").with_context(|| format!("writing {}", p.display()))?;
        let p = dir.join("overlay.md");
        std::fs::write(&p, self.markdown()).with_context(|| format!("writing {}", p.display()))
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Overlay benchmark\n");
        let _ = writeln!(
            s,
            "Generated by `cargo xtask bench --suite overlay` (`vpn-bench overlay`); \
             raw data in `overlay.json`. Issue 4's targets on a LAN: first reply \
             within {:.0} s of `vpn-control up`, an on-demand session to a known \
             member within {:.0} ms.\n",
            TARGET_FIRST_REPLY_MS / 1000.0,
            TARGET_ON_DEMAND_MS
        );
        match &self.namespace {
            Some(ns) => render_namespace(&mut s, ns),
            None => {
                let _ = writeln!(
                    s,
                    "## Namespace part\n\nNot run yet (`--parts namespace`, as root).\n"
                );
            }
        }
        match &self.inprocess {
            Some(ip) => render_inprocess(&mut s, ip),
            None => {
                let _ = writeln!(
                    s,
                    "## Private-DHT lookup latency\n\nNot run yet (`--parts inprocess`).\n"
                );
            }
        }
        s
    }
}

fn render_context(s: &mut String, c: &Context) {
    let _ = writeln!(s, "- Machine: {}", c.machine);
    let _ = writeln!(s, "- Kernel: {}", c.kernel);
    let _ = writeln!(
        s,
        "- Run: {}; load average (1/5/15 min) before {} and after {}",
        c.generated, c.load_before, c.load_after
    );
    if let Some(n) = &c.note {
        let _ = writeln!(s, "- Note: {n}");
    }
    let _ = writeln!(s);
}

fn fmt_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

fn verdict(v: Option<f64>, target: f64) -> &'static str {
    match v {
        Some(v) if v <= target => "met",
        Some(_) => "**missed**",
        None => "not measured",
    }
}

fn render_namespace(s: &mut String, ns: &NamespaceSection) {
    let _ = writeln!(s, "## Namespace part: real `vpn-control up` processes\n");
    render_context(s, &ns.context);
    let _ = writeln!(s, "Topology: {}\n", ns.topology);
    let _ = writeln!(s, "Method: {}\n", ns.method);
    let _ = writeln!(
        s,
        "| measure (ms) | runs | median | p90 | min | max | target |"
    );
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    let rows: [(&str, Option<Summary>, Option<f64>); 4] = [
        (
            "`up` to first reply over the tunnel",
            ns.up_to_first_reply_ms,
            Some(TARGET_FIRST_REPLY_MS),
        ),
        (
            "`up` to every member verified (status)",
            ns.up_to_all_members_ms,
            None,
        ),
        (
            "on-demand: first ping RTT (resolve + handshake + queued packet)",
            ns.on_demand_first_rtt_ms,
            Some(TARGET_ON_DEMAND_MS),
        ),
        ("steady ping RTT over the session", ns.steady_rtt_ms, None),
    ];
    for (name, sum, target) in rows {
        let t = target.map_or_else(String::new, |t| {
            format!("≤ {t:.0} ms: {}", verdict(sum.map(|x| x.median), t))
        });
        match sum {
            Some(x) => {
                let _ = writeln!(
                    s,
                    "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {t} |",
                    x.count, x.median, x.p90, x.min, x.max
                );
            }
            None => {
                let _ = writeln!(s, "| {name} | 0 | – | – | – | – | {t} |");
            }
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "| run | up→reply | up→members | first RTT | steady RTT | session before | error |"
    );
    let _ = writeln!(s, "| ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for (i, r) in ns.runs.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            fmt_ms(r.up_to_first_reply_ms),
            fmt_ms(r.up_to_all_members_ms),
            fmt_ms(r.on_demand_first_rtt_ms),
            fmt_ms(r.steady_rtt_ms),
            r.session_existed_before
                .map_or("–", |b| if b { "yes" } else { "no" }),
            r.error.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(s);
}

fn fmt_state(
    formed: Option<MemberState>,
    end: Option<MemberState>,
    pick: impl Fn(&MemberState) -> (f64, u64),
) -> String {
    let one = |m: Option<MemberState>| {
        m.map_or("–".to_owned(), |m| {
            let (mean, max) = pick(&m);
            format!("{mean:.0}, {max}")
        })
    };
    format!("{} / {}", one(formed), one(end))
}

fn render_inprocess(s: &mut String, ip: &InprocessSection) {
    let _ = writeln!(
        s,
        "## Private-DHT lookup latency versus group size (in-process)\n"
    );
    render_context(s, &ip.context);
    let p = &ip.params;
    let _ = writeln!(
        s,
        "Method: all members and {} public-DHT-only bootstrap nodes run in one \
         process (release build, tokio with {} worker threads) on libp2p's \
         memory transport (Noise and Yamux still run; no network delay). Each \
         member chooses {} neighbours from the provider records and meets the \
         others through the private DHT's lookups (sparse overlay). A size \
         counts as formed when every member is connected to min({}, members - 1) \
         verified members; then \
         member 0 resolves every address (so all claims are published; member \
         0 is never timed). Then {} lookups: a random member (not 0) resolves a \
         random other member's virtual address with `Client::resolve`, one \
         lookup at a time, each (resolver, address) pair once, so the \
         resolver's cache is always cold and the lookup walks the private \
         Kademlia DHT (a resolver that itself stores the record answers from \
         its store). Latency is measured around the `resolve` call (command \
         channel and event loop included). Timeout {} s per lookup. A size \
         that has not formed within {} s is measured anyway (flagged; the \
         lookups then compete with the ongoing joins); one that passes {} MiB \
         resident memory is reported as not fitting, and larger sizes are not \
         tried. Then up to {} reaches: a random member (not 0) reaches a \
         member it has not verified (`Client::reach`, polled every 10 ms until \
         it reports the member verified: private-DHT lookup of the PeerId, \
         connection, certificate exchange). Per-member state (verified \
         members, open connections to members) is read from every member's \
         counters when the group formed and at the end. Timers: `{}`.\n",
        3,
        p.workers,
        p.neighbours,
        p.neighbours,
        p.lookups,
        p.lookup_timeout_s,
        p.join_budget_s,
        p.memory_limit_mib,
        p.reaches,
        p.timers
    );
    let _ = writeln!(
        s,
        "| members | outcome | formed (s) | claims resolvable (s) | lookups ok / failed | median (ms) | p90 (ms) | max (ms) | verified per member: formed / end (mean, max) | connected per member: formed / end (mean, max) | all connections per member: formed / end (mean, max) | reach ok / failed, median / p90 (ms) | RSS (MiB) | CPU (s) |"
    );
    let _ = writeln!(
        s,
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- | ---: | ---: |"
    );
    for r in &ip.results {
        let l = r.latency_ms;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} |",
            r.members,
            r.outcome,
            r.formed_s.map_or("–".into(), |v| format!("{v:.1}")),
            match (r.published_s, r.unresolvable) {
                (None, _) => "–".to_owned(),
                (Some(v), 0) => format!("{v:.1}"),
                (Some(v), u) => format!("{v:.1} ({u} never resolved)"),
            },
            r.samples_ms.len(),
            r.failures,
            fmt_ms(l.map(|x| x.median)),
            fmt_ms(l.map(|x| x.p90)),
            fmt_ms(l.map(|x| x.max)),
            fmt_state(r.state_formed, r.state_end, |m| (
                m.verified_mean,
                m.verified_max
            )),
            fmt_state(r.state_formed, r.state_end, |m| (
                m.connected_mean,
                m.connected_max
            )),
            fmt_state(r.state_formed, r.state_end, |m| (m.peers_mean, m.peers_max)),
            match r.reach_ms {
                Some(x) => format!(
                    "{} / {}, {} / {}",
                    x.count,
                    r.reach_failures,
                    fmt_ms(Some(x.median)),
                    fmt_ms(Some(x.p90))
                ),
                None if r.reach_failures > 0 => format!("0 / {}", r.reach_failures),
                None => "– (every pair verified)".into(),
            },
            r.rss_mib,
            r.cpu_s
        );
    }
    let not_tried: Vec<String> = p
        .sizes
        .iter()
        .filter(|n| !ip.results.iter().any(|r| r.members == **n))
        .map(ToString::to_string)
        .collect();
    if !not_tried.is_empty() {
        let why = if ip
            .results
            .iter()
            .any(|r| r.outcome.starts_with("did not fit"))
        {
            "a smaller size did not fit"
        } else {
            "the run stopped before them; see the note"
        };
        let _ = writeln!(s, "\nNot measured ({why}): {}.", not_tried.join(", "));
    }
    let _ = writeln!(s);
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
