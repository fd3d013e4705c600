//! The data-plane suite: plain veth, the kernel path, the userspace twin
//! and boringtun on the same two-host namespace topology, measured in
//! interleaved rounds; writes `dataplane.{json,md,png}`.

mod boringtun;
mod bpf_cost;
mod measure;
mod plot;
mod report;
mod results;
mod topology;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use vpn_tests::TempDir;

use crate::machine::Machine;
use measure::{IPV4_UDP_HEADERS, RTT_MSG_BYTES};
use report::{Method, Report};
use results::{BpfResult, ConfigResult, Figure};
use topology::{Config, Topology, TrafficPath};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    out: crate::OutArg,
    /// Rounds; each measures every configuration once.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Seconds per TCP, UDP and RTT measurement.
    #[arg(long, default_value_t = 5)]
    secs: u32,
    /// Seconds of the 1,400-byte stream that measures the BPF programs.
    #[arg(long, default_value_t = 3)]
    bpf_secs: u32,
    /// Configurations to run (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "veth,kernel,userspace,boringtun"
    )]
    configs: Vec<String>,
    /// A remark written into the report (e.g. other load on the machine).
    #[arg(long)]
    note: Option<String>,
}

/// A configuration that came up, with its traffic path.
struct Live {
    config: Config,
    topo: Topology,
    path: TrafficPath,
    udp_payload: u32,
}

pub fn run(args: &Args) -> Result<()> {
    if args.runs == 0 || args.secs == 0 || args.bpf_secs == 0 {
        bail!("--runs, --secs and --bpf-secs must be at least 1");
    }
    let configs: Vec<Config> = {
        let mut v = args
            .configs
            .iter()
            .map(|s| Config::parse(s.trim()))
            .collect::<Result<Vec<_>>>()?;
        v.sort();
        v.dedup();
        v
    };
    std::fs::create_dir_all(&args.out.out)
        .with_context(|| format!("creating {}", args.out.out.display()))?;
    let machine = Machine::probe();
    eprintln!("bench: {} | {}", machine.summary(), machine.kernel);
    let load_before = loadavg();
    let logs = TempDir::new("benchlogs")?;
    let mut results: BTreeMap<Config, ConfigResult> = configs
        .iter()
        .map(|&c| (c, ConfigResult::default()))
        .collect();
    let mut bpf = BpfResult::default();

    let mut live = bring_up(&configs, &mut results);
    for round in 0..args.runs {
        let k = live.len();
        for j in 0..k {
            let l = &mut live[(round as usize + j) % k];
            let r = results
                .get_mut(&l.config)
                .expect("every config has a result");
            measure_one(l, r, &mut bpf, round, args, logs.path());
        }
    }
    // Tear everything down before writing: daemons stop, namespaces go.
    drop(live);

    let report = Report {
        machine,
        configs: results,
        bpf,
        method: Method {
            runs: args.runs,
            secs: args.secs,
            rtt_msg_bytes: RTT_MSG_BYTES,
            bpf_packet_bytes: bpf_cost::PACKET_BYTES,
            bpf_secs: args.bpf_secs,
            boringtun: tool_version(&boringtun_bin(), "--version"),
            iperf3: tool_version(Path::new("iperf3"), "--version"),
            sockperf: tool_version(Path::new("sockperf"), "--version"),
        },
        load: (load_before, loadavg()),
        note: args.note.clone(),
        generated: now_utc(),
    };
    let png = args.out.out.join("dataplane.png");
    let plotted = plot::draw(&report, &png).unwrap_or_else(|e| {
        eprintln!("bench: plot failed: {e:#}");
        false
    });
    report.write(&args.out.out, plotted.then_some("dataplane.png"))?;
    eprintln!(
        "bench: wrote {}",
        args.out.out.join("dataplane.{json,md}").display()
    );
    print!("{}", report.markdown(None));
    let failed: Vec<String> = report
        .configs
        .iter()
        .filter(|(_, r)| !r.errors.is_empty())
        .map(|(c, r)| format!("{} ({} failures)", c.name(), r.errors.len()))
        .chain((!report.bpf.errors.is_empty()).then(|| "BPF cost".to_owned()))
        .collect();
    if !failed.is_empty() {
        bail!(
            "some measurements failed: {} (see dataplane.md/json)",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Builds every configuration; one that fails is recorded and left out.
fn bring_up(configs: &[Config], results: &mut BTreeMap<Config, ConfigResult>) -> Vec<Live> {
    let mut live = Vec::new();
    for &c in configs {
        eprintln!("bench: bringing up {}", c.name());
        let r = results.get_mut(&c).expect("every config has a result");
        match Topology::build(c).and_then(|t| t.path().map(|p| (t, p))) {
            Ok((topo, path)) => {
                r.mtu = Some(path.mtu);
                live.push(Live {
                    config: c,
                    topo,
                    path,
                    udp_payload: 0,
                });
            }
            Err(e) => {
                eprintln!("bench: {} did not come up: {e:#}", c.name());
                r.errors.push(format!("setup: {e:#}"));
            }
        }
    }
    // Datagrams that just fit each tunnel; veth gets the tunnels' size so
    // its packets are the same (1,500 - 60 - 28 if no tunnel came up).
    let tunnel = live
        .iter()
        .filter(|l| l.config != Config::Veth)
        .map(|l| l.path.mtu - IPV4_UDP_HEADERS)
        .min()
        .unwrap_or(1500 - boringtun::WG_OVERHEAD_V4 - IPV4_UDP_HEADERS);
    for l in &mut live {
        l.udp_payload = if l.config == Config::Veth {
            tunnel
        } else {
            l.path.mtu - IPV4_UDP_HEADERS
        };
        if let Some(r) = results.get_mut(&l.config) {
            r.udp_payload_bytes = Some(l.udp_payload);
        }
    }
    live
}

/// One configuration's turn in a round: every figure once (and, for the
/// kernel path, the BPF programs' cost). Failures are recorded, not fatal.
fn measure_one(
    l: &mut Live,
    r: &mut ConfigResult,
    bpf: &mut BpfResult,
    round: u32,
    args: &Args,
    logs: &Path,
) {
    let name = l.config.name();
    let tag = format!("round {}/{} {name}", round + 1, args.runs);
    if let Err(e) = l.topo.check() {
        eprintln!("bench: {tag}: not healthy: {e:#}");
        r.errors
            .push(format!("round {}: not healthy: {e:#}", round + 1));
        return;
    }
    let mut line = Vec::new();
    let mut record = |what: &str, res: Result<Vec<(Figure, f64)>>, r: &mut ConfigResult| match res {
        Ok(vals) => {
            for (f, v) in vals {
                line.push(format!("{} {}", f.key(), report::fmt(f, Some(v))));
                r.push(f, v);
            }
        }
        Err(e) => {
            line.push(format!("{what} FAILED"));
            r.errors.push(format!("round {} {what}: {e:#}", round + 1));
        }
    };
    let p = &l.path;
    for (what, streams, fig) in [("tcp1", 1, Figure::Tcp1), ("tcp2", 2, Figure::Tcp2)] {
        let t = measure::tcp(p, args.secs, streams, logs);
        if let Ok(t) = &t {
            r.tcp_retransmits
                .entry(fig.key())
                .or_default()
                .push(t.retransmits);
        }
        record(what, t.map(|t| vec![(fig, t.gbps)]), r);
    }
    let udp = measure::udp(p, args.secs, l.udp_payload, "0", logs);
    if let Ok(u) = &udp {
        r.udp_sent_pps.push(u.sent_pps);
    }
    record(
        "udp",
        udp.map(|u| vec![(Figure::UdpPps, u.received_pps)]),
        r,
    );
    let rtt = measure::rtt(p, args.secs, logs);
    if let Ok(o) = &rtt {
        r.rtt_samples.push(o.samples);
    }
    record(
        "rtt",
        rtt.map(|o| vec![(Figure::RttP50, o.p50_us), (Figure::RttP99, o.p99_us)]),
        r,
    );
    if l.config == Config::Kernel {
        match l
            .topo
            .lab()
            .context("the kernel config has no lab")
            .and_then(|lab| bpf_cost::measure(lab, p, args.bpf_secs, logs))
        {
            Ok(s) => {
                line.push(format!(
                    "bpf egress {:.0} ns ingress {:.0} ns",
                    s.egress_ns, s.ingress_ns
                ));
                bpf.egress_ns.push(s.egress_ns);
                bpf.ingress_ns.push(s.ingress_ns);
                bpf.egress_runs.push(s.egress_runs);
                bpf.ingress_runs.push(s.ingress_runs);
            }
            Err(e) => {
                line.push("bpf FAILED".into());
                bpf.errors.push(format!("round {}: {e:#}", round + 1));
            }
        }
    }
    eprintln!("bench: {tag}: {}", line.join(", "));
}

fn boringtun_bin() -> PathBuf {
    std::env::var_os(boringtun::BIN_ENV).map_or_else(boringtun::default_bin, PathBuf::from)
}

fn tool_version(bin: &Path, flag: &str) -> String {
    Command::new(bin)
        .arg(flag)
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .map(|l| l.trim_start_matches("sockperf:").trim())
                .find(|l| !l.is_empty())
                .unwrap_or("unknown version")
                .to_owned()
        })
        .unwrap_or_else(|| format!("{} (not found)", bin.display()))
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
