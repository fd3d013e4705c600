//! `dataplane.json` and `dataplane.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::results::{targets, BpfResult, ConfigResult, Figure, Target};
use super::topology::Config;
use crate::machine::Machine;
use crate::stats::median;

/// How the numbers were taken (written into both files).
#[derive(Clone, Debug, Serialize)]
pub struct Method {
    pub runs: u32,
    pub secs: u32,
    pub rtt_msg_bytes: u32,
    pub bpf_packet_bytes: u32,
    pub bpf_secs: u32,
    pub boringtun: String,
    pub iperf3: String,
    pub sockperf: String,
}

#[derive(Clone, Debug)]
pub struct Report {
    pub machine: Machine,
    pub configs: BTreeMap<Config, ConfigResult>,
    pub bpf: BpfResult,
    pub method: Method,
    /// `/proc/loadavg` before and after the run.
    pub load: (String, String),
    pub note: Option<String>,
    pub generated: String,
}

impl Report {
    fn config_json(r: &ConfigResult) -> Value {
        let mut m = serde_json::Map::new();
        for f in Figure::ALL {
            m.insert(f.key().to_owned(), json!(r.median(f)));
        }
        m.insert("samples".into(), json!(r.samples));
        m.insert("udp_sent_pps".into(), json!(r.udp_sent_pps));
        m.insert("rtt_round_trips".into(), json!(r.rtt_samples));
        m.insert("tcp_retransmits".into(), json!(r.tcp_retransmits));
        m.insert("mtu".into(), json!(r.mtu));
        m.insert("udp_payload_bytes".into(), json!(r.udp_payload_bytes));
        m.insert("errors".into(), json!(r.errors));
        Value::Object(m)
    }

    pub fn to_json(&self) -> Value {
        let configs: serde_json::Map<String, Value> = Config::ALL
            .iter()
            .map(|c| {
                let r = self
                    .configs
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| ConfigResult {
                        errors: vec!["not run (excluded with --configs)".into()],
                        ..ConfigResult::default()
                    });
                (c.name().to_owned(), Self::config_json(&r))
            })
            .collect();
        json!({
            "machine": self.machine.summary(),
            "kernel": self.machine.kernel,
            "configs": configs,
            "bpf_ns_per_packet": {
                "egress": median(&self.bpf.egress_ns),
                "ingress": median(&self.bpf.ingress_ns),
            },
            "bpf_samples": self.bpf,
            "targets": targets(&self.configs, &self.bpf),
            "method": self.method,
            "loadavg": {"before": self.load.0, "after": self.load.1, "busy": self.busy()},
            "note": self.note,
            "generated": self.generated,
        })
    }

    /// Whether the 1-minute load average before or after the run exceeded
    /// the number of CPUs.
    pub fn busy(&self) -> bool {
        let one = |l: &str| {
            l.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cores = self.machine.cores as f64;
        one(&self.load.0) > cores || one(&self.load.1) > cores
    }

    pub fn write(&self, dir: &Path, plot: Option<&str>) -> Result<()> {
        let json_path = dir.join("dataplane.json");
        let text = serde_json::to_string_pretty(&self.to_json())? + "\n";
        std::fs::write(&json_path, text)
            .with_context(|| format!("writing {}", json_path.display()))?;
        let md_path = dir.join("dataplane.md");
        std::fs::write(&md_path, self.markdown(plot))
            .with_context(|| format!("writing {}", md_path.display()))?;
        Ok(())
    }

    pub fn markdown(&self, plot: Option<&str>) -> String {
        let m = &self.method;
        let mut s = String::new();
        let _ = writeln!(s, "# Data-plane benchmark\n");
        let _ = writeln!(
            s,
            "Written by `cargo xtask bench --suite dataplane` on {}. Numbers are this \
             machine's and this run's: compare the ratios, not the absolute values.\n",
            self.generated
        );
        let _ = writeln!(s, "- Machine: {}", self.machine.summary());
        let _ = writeln!(s, "- Kernel: {}", self.machine.kernel);
        let _ = writeln!(
            s,
            "- Load average (1/5/15 min) before: {}; after: {}",
            self.load.0, self.load.1
        );
        if let Some(n) = &self.note {
            let _ = writeln!(s, "- Note: {n}");
        }
        if self.busy() {
            let _ = writeln!(
                s,
                "- **The machine was busy**: the 1-minute load average exceeded its {} \
                 logical CPUs, so other work competed with the measurements. Every \
                 configuration was exposed alike (interleaved rounds), but absolute \
                 numbers, and tail latencies most of all, are disturbed.",
                self.machine.cores
            );
        }
        let _ = writeln!(s, "\n## Method\n");
        let _ = writeln!(
            s,
            "Each configuration is two network namespaces on a bridge with veth links \
             (the `vpn_tests` harness's LAN, 1,500-byte underlay MTU), all built once and \
             kept up for the whole run. The configurations are measured in {} round(s); \
             each round measures every configuration once, in an order rotated by one \
             each round, so drift and background load hit all of them alike. Every \
             figure is the median of the rounds (min–max in the second table).\n",
            m.runs
        );
        let _ = writeln!(
            s,
            "- `veth`: the underlay itself, no VPN (the ceiling).\n\
             - `kernel`: `vpn-control` with `dataplane = \"kernel\"` (eBPF encrypt on `vpn0p`, decrypt on the underlay).\n\
             - `userspace`: `vpn-control` with `dataplane = \"userspace\"` (TUN + UDP twin).\n\
             - `boringtun`: {} (crates.io), configured with Debian's `wg` (wireguard-tools); its default 4 threads and multi-queue TUN; tunnel MTU = underlay − 60, the same overhead as GroupVPN's.\n",
            m.boringtun
        );
        let _ = writeln!(
            s,
            "- TCP: {iperf} from host 0 to host 1, {secs} s after 1 omitted second, 1 and 2 \
             streams; receiver goodput.\n\
             - UDP: {iperf} `-u -b 0` for {secs} s with datagrams that just fit the path \
             (payload = tunnel MTU − 28; veth uses the tunnel's payload so packets are \
             comparable); packets per second the receiver got.\n\
             - RTT: {sockperf} UDP ping-pong, {msg}-byte messages, {rsecs} s, full \
             round trip, monotonic clock; p50 and p99 of all round trips of the run.\n\
             - BPF cost: kernel run-time statistics switched on (`BPF_ENABLE_STATS`) \
             only while a {bsecs} s UDP stream of {pkt}-byte inner packets (IPv4, \
             payload {pl} B, 300 Mb/s) runs from host 0 to host 1, once per round; \
             `Δrun_time_ns / Δrun_cnt` of host 0's `vpn_encrypt` (egress) and host 1's \
             `vpn_decrypt` (ingress). It includes the statistics' own clock reads \
             (tens of ns).\n",
            iperf = m.iperf3,
            sockperf = m.sockperf,
            secs = m.secs,
            msg = m.rtt_msg_bytes,
            rsecs = super::measure::rtt_secs(m.secs),
            bsecs = m.bpf_secs,
            pkt = thousands(u64::from(m.bpf_packet_bytes)),
            pl = thousands(u64::from(m.bpf_packet_bytes - 28)),
        );
        self.results_tables(&mut s);
        self.bpf_table(&mut s);
        self.targets_table(&mut s, &targets(&self.configs, &self.bpf));
        if let Some(p) = plot {
            let _ = writeln!(s, "![medians per configuration]({p})\n");
        }
        self.errors(&mut s);
        s
    }

    fn results_tables(&self, s: &mut String) {
        let _ = writeln!(s, "## Results (medians)\n");
        let mut head = "| config | MTU | UDP payload |".to_owned();
        let mut rule = "| --- | ---: | ---: |".to_owned();
        for f in Figure::ALL {
            let _ = write!(head, " {} |", f.heading());
            rule.push_str(" ---: |");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for c in Config::ALL {
            let r = self.configs.get(&c);
            let opt = |v: Option<u32>| v.map_or("–".to_owned(), |x| x.to_string());
            let _ = write!(
                s,
                "| {} | {} | {} |",
                c.name(),
                opt(r.and_then(|r| r.mtu)),
                opt(r.and_then(|r| r.udp_payload_bytes))
            );
            for f in Figure::ALL {
                let _ = write!(s, " {} |", fmt(f, r.and_then(|r| r.median(f))));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "\nSpread over the rounds (min–max, n = rounds with a value):\n"
        );
        let mut head = "| config |".to_owned();
        let mut rule = "| --- |".to_owned();
        for f in Figure::ALL {
            let _ = write!(head, " {} |", f.heading());
            rule.push_str(" ---: |");
        }
        let _ = writeln!(s, "{head}\n{rule}");
        for c in Config::ALL {
            let r = self.configs.get(&c);
            let _ = write!(s, "| {} |", c.name());
            for f in Figure::ALL {
                let cell = match r.and_then(|r| r.range(f)) {
                    Some((lo, hi)) => format!(
                        "{}–{} (n={})",
                        fmt(f, Some(lo)),
                        fmt(f, Some(hi)),
                        r.map_or(0, |r| r.samples(f).len())
                    ),
                    None => "–".to_owned(),
                };
                let _ = write!(s, " {cell} |");
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(
            s,
            "\nTCP segments the sender retransmitted, per run (1 stream / 2 streams):\n"
        );
        let _ = writeln!(s, "| config | 1 stream | 2 streams |\n| --- | --- | --- |");
        for c in Config::ALL {
            let cell = |f: Figure| {
                self.configs
                    .get(&c)
                    .and_then(|r| r.tcp_retransmits.get(f.key()))
                    .filter(|v| !v.is_empty())
                    .map_or("–".to_owned(), |v| {
                        v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
                    })
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                c.name(),
                cell(Figure::Tcp1),
                cell(Figure::Tcp2)
            );
        }
        let _ = writeln!(s);
    }

    fn bpf_table(&self, s: &mut String) {
        let b = &self.bpf;
        let _ = writeln!(
            s,
            "## BPF programs, per {}-byte packet\n",
            thousands(u64::from(self.method.bpf_packet_bytes))
        );
        let _ = writeln!(
            s,
            "| program | median (ns) | runs measured | samples (ns) |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | --- |");
        for (name, ns, runs) in [
            ("vpn_encrypt (egress)", &b.egress_ns, &b.egress_runs),
            ("vpn_decrypt (ingress)", &b.ingress_ns, &b.ingress_runs),
        ] {
            let list: Vec<String> = ns.iter().map(|v| format!("{v:.0}")).collect();
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} |",
                median(ns).map_or("–".to_owned(), |v| format!("{v:.0}")),
                runs.iter().sum::<u64>(),
                if list.is_empty() {
                    "–".to_owned()
                } else {
                    list.join(", ")
                }
            );
        }
        let _ = writeln!(s);
    }

    fn targets_table(&self, s: &mut String, ts: &[Target]) {
        let _ = writeln!(s, "## Targets (issue 3), on the medians above\n");
        let _ = writeln!(s, "| target | computed as | value | bound | result |");
        let _ = writeln!(s, "| --- | --- | ---: | ---: | --- |");
        for t in ts {
            let (value, bound) = if t.formula.ends_with(", ns") {
                (
                    t.value.map_or("–".to_owned(), |v| format!("{v:.0} ns")),
                    format!("{} {:.0} ns", t.relation, t.bound),
                )
            } else {
                (
                    t.value.map_or("–".to_owned(), |v| format!("{v:.2}")),
                    format!("{} {:.2}", t.relation, t.bound),
                )
            };
            let _ = writeln!(
                s,
                "| {} | `{}` | {value} | {bound} | **{}** |",
                t.name,
                t.formula.trim_end_matches(", ns"),
                t.verdict.word()
            );
        }
        let _ = writeln!(s);
    }

    fn errors(&self, s: &mut String) {
        let mut any = false;
        for c in Config::ALL {
            let Some(r) = self.configs.get(&c) else {
                continue;
            };
            for e in &r.errors {
                if !any {
                    let _ = writeln!(s, "## Failures during this run\n");
                    any = true;
                }
                let first = e.lines().next().unwrap_or("");
                let _ = writeln!(s, "- `{}`: {}", c.name(), first);
            }
        }
        for e in &self.bpf.errors {
            if !any {
                let _ = writeln!(s, "## Failures during this run\n");
                any = true;
            }
            let _ = writeln!(s, "- BPF cost: {}", e.lines().next().unwrap_or(""));
        }
        if any {
            let _ = writeln!(s, "\n(Full messages in `dataplane.json`.)\n");
        }
    }
}

/// A figure's value for the tables.
pub fn fmt(f: Figure, v: Option<f64>) -> String {
    let Some(v) = v else {
        return "–".to_owned();
    };
    match f {
        Figure::Tcp1 | Figure::Tcp2 => format!("{v:.2}"),
        Figure::UdpPps => thousands(v.round() as u64),
        Figure::RttP50 | Figure::RttP99 => format!("{v:.1}"),
    }
}

fn thousands(n: u64) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, ch) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
