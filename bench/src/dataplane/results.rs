//! Samples collected per configuration, their medians, and the targets the
//! issue sets as ratios between configurations.

use std::collections::BTreeMap;

use serde::Serialize;

use super::topology::Config;
use crate::stats::{median, range};

/// The five figures of every configuration, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    Tcp1,
    Tcp2,
    UdpPps,
    RttP50,
    RttP99,
}

impl Figure {
    pub const ALL: [Self; 5] = [
        Self::Tcp1,
        Self::Tcp2,
        Self::UdpPps,
        Self::RttP50,
        Self::RttP99,
    ];

    /// JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Tcp1 => "tcp1_gbps",
            Self::Tcp2 => "tcp2_gbps",
            Self::UdpPps => "udp_mtu_pps",
            Self::RttP50 => "rtt_p50_us",
            Self::RttP99 => "rtt_p99_us",
        }
    }

    /// Table heading.
    pub fn heading(self) -> &'static str {
        match self {
            Self::Tcp1 => "TCP 1 stream (Gb/s)",
            Self::Tcp2 => "TCP 2 streams (Gb/s)",
            Self::UdpPps => "UDP MTU-size (pkt/s)",
            Self::RttP50 => "RTT p50 (µs)",
            Self::RttP99 => "RTT p99 (µs)",
        }
    }
}

/// Everything measured for one configuration.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConfigResult {
    /// Per-run values of each figure, in run order.
    pub samples: BTreeMap<&'static str, Vec<f64>>,
    /// Datagrams per second the UDP sender pushed (to tell a receiver limit
    /// from a sender limit).
    pub udp_sent_pps: Vec<f64>,
    /// TCP segments retransmitted per run, by figure key.
    pub tcp_retransmits: BTreeMap<&'static str, Vec<u64>>,
    /// Round trips behind each run's RTT percentiles.
    pub rtt_samples: Vec<u64>,
    /// MTU of the interface traffic leaves through.
    pub mtu: Option<u32>,
    /// UDP payload of the packet-rate test.
    pub udp_payload_bytes: Option<u32>,
    /// Setup or measurement failures (the run continues without them).
    pub errors: Vec<String>,
}

impl ConfigResult {
    pub fn push(&mut self, f: Figure, v: f64) {
        self.samples.entry(f.key()).or_default().push(v);
    }

    pub fn samples(&self, f: Figure) -> &[f64] {
        self.samples.get(f.key()).map_or(&[], Vec::as_slice)
    }

    pub fn median(&self, f: Figure) -> Option<f64> {
        median(self.samples(f))
    }

    pub fn range(&self, f: Figure) -> Option<(f64, f64)> {
        range(self.samples(f))
    }
}

/// The BPF programs' per-packet cost, one value per measuring run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BpfResult {
    pub egress_ns: Vec<f64>,
    pub ingress_ns: Vec<f64>,
    pub egress_runs: Vec<u64>,
    pub ingress_runs: Vec<u64>,
    pub errors: Vec<String>,
}

/// Whether a target was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Met,
    Missed,
    /// A figure it needs is missing.
    Unknown,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "missed",
            Self::Unknown => "not measured",
        }
    }
}

/// One target of the issue, evaluated on this run's medians.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: String,
    /// How the value is computed.
    pub formula: String,
    pub value: Option<f64>,
    /// The bound, and whether the value must be at least (`>=`) or below it.
    pub bound: f64,
    pub relation: &'static str,
    pub verdict: Verdict,
}

impl Target {
    fn new(
        name: &str,
        formula: &str,
        value: Option<f64>,
        relation: &'static str,
        bound: f64,
    ) -> Self {
        let verdict = match value {
            None => Verdict::Unknown,
            Some(v) if v.is_nan() => Verdict::Unknown,
            Some(v) => {
                let ok = match relation {
                    ">=" => v >= bound,
                    "<=" => v <= bound,
                    _ => v < bound,
                };
                if ok {
                    Verdict::Met
                } else {
                    Verdict::Missed
                }
            }
        };
        Self {
            name: name.to_owned(),
            formula: formula.to_owned(),
            value,
            bound,
            relation,
            verdict,
        }
    }
}

/// The targets on the medians in `configs` and `bpf`.
pub fn targets(configs: &BTreeMap<Config, ConfigResult>, bpf: &BpfResult) -> Vec<Target> {
    let med = |c: Config, f: Figure| configs.get(&c).and_then(|r| r.median(f));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let added = |c: Config| Some(med(c, Figure::RttP50)? - med(Config::Veth, Figure::RttP50)?);
    let mut out = Vec::new();
    for (f, label) in [(Figure::Tcp1, "1 stream"), (Figure::Tcp2, "2 streams")] {
        out.push(Target::new(
            &format!("kernel TCP >= 2x boringtun ({label})"),
            &format!("kernel.{0} / boringtun.{0}", f.key()),
            ratio(med(Config::Kernel, f), med(Config::Boringtun, f)),
            ">=",
            2.0,
        ));
    }
    for (f, label) in [(Figure::Tcp1, "1 stream"), (Figure::Tcp2, "2 streams")] {
        out.push(Target::new(
            &format!("userspace TCP >= 1x boringtun ({label})"),
            &format!("userspace.{0} / boringtun.{0}", f.key()),
            ratio(med(Config::Userspace, f), med(Config::Boringtun, f)),
            ">=",
            1.0,
        ));
    }
    out.push(Target::new(
        "RTT added by kernel <= 1/3 of RTT added by boringtun",
        "(kernel.rtt_p50_us - veth.rtt_p50_us) / (boringtun.rtt_p50_us - veth.rtt_p50_us)",
        ratio(added(Config::Kernel), added(Config::Boringtun)),
        "<=",
        1.0 / 3.0,
    ));
    out.push(Target::new(
        "encrypt < 4 µs per 1,400-byte packet",
        "vpn_encrypt run_time_ns / run_cnt (median), ns",
        median(&bpf.egress_ns),
        "<",
        4000.0,
    ));
    out.push(Target::new(
        "decrypt < 4 µs per 1,400-byte packet",
        "vpn_decrypt run_time_ns / run_cnt (median), ns",
        median(&bpf.ingress_ns),
        "<",
        4000.0,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: &[(Figure, f64)]) -> ConfigResult {
        let mut r = ConfigResult::default();
        for &(fig, v) in f {
            r.push(fig, v);
        }
        r
    }

    #[test]
    fn targets_from_medians() {
        let mut c = BTreeMap::new();
        c.insert(Config::Veth, with(&[(Figure::RttP50, 20.0)]));
        c.insert(
            Config::Kernel,
            with(&[(Figure::Tcp1, 3.0), (Figure::RttP50, 25.0)]),
        );
        c.insert(
            Config::Boringtun,
            with(&[
                (Figure::Tcp1, 1.0),
                (Figure::Tcp2, 1.0),
                (Figure::RttP50, 50.0),
            ]),
        );
        let bpf = BpfResult {
            egress_ns: vec![3000.0, 5000.0, 3500.0],
            ingress_ns: vec![4100.0],
            ..BpfResult::default()
        };
        let t = targets(&c, &bpf);
        let by = |p: &str| t.iter().find(|x| x.name.starts_with(p)).unwrap();
        assert_eq!(by("kernel TCP >= 2x boringtun (1").verdict, Verdict::Met);
        assert_eq!(
            by("kernel TCP >= 2x boringtun (2").verdict,
            Verdict::Unknown
        );
        assert_eq!(
            by("userspace TCP >= 1x boringtun (1").verdict,
            Verdict::Unknown
        );
        let rtt = by("RTT added");
        assert!((rtt.value.unwrap() - 5.0 / 30.0).abs() < 1e-12);
        assert_eq!(rtt.verdict, Verdict::Met);
        assert_eq!(by("encrypt").verdict, Verdict::Met);
        assert_eq!(by("decrypt").verdict, Verdict::Missed);
    }
}
