//! One measurement each: iperf3 TCP throughput, iperf3 UDP packet rate,
//! sockperf UDP ping-pong round trips. Servers run in the server's
//! namespace and are stopped when the measurement ends; clients run under
//! `timeout` so a broken tunnel fails the measurement instead of hanging.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use vpn_tests::{Background, IperfServer, NsRef};

use super::topology::TrafficPath;

const IPERF_PORT: u16 = 5201;
const SOCKPERF_PORT: u16 = 11111;
/// Ping-pong message size (bytes of UDP payload).
pub const RTT_MSG_BYTES: u32 = 64;
/// IPv4 + UDP headers: UDP payload = MTU - 28 fills one inner packet.
pub const IPV4_UDP_HEADERS: u32 = 28;

/// Runs `program args...` in `ns` under `timeout` (grace: `secs + 30`);
/// stdout, or an error with stderr.
fn run_bounded(ns: &NsRef, secs: u32, program: &str, args: &[String]) -> Result<String> {
    let mut full: Vec<OsString> = vec![
        "--kill-after=5".into(),
        (secs + 30).to_string().into(),
        program.into(),
    ];
    full.extend(args.iter().map(OsString::from));
    let out = ns.output("timeout", full)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{program} {} failed ({}): {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            stdout.chars().take(600).collect::<String>()
        );
    }
    Ok(stdout)
}

fn iperf_json(text: &str) -> Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(text).context("iperf3 -J output")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        bail!("iperf3: {e}");
    }
    Ok(v)
}

fn num(v: &serde_json::Value, path: &[&str]) -> Result<f64> {
    let mut cur = v;
    for k in path {
        cur = cur
            .get(k)
            .with_context(|| format!("iperf3 JSON has no {}", path.join(".")))?;
    }
    cur.as_f64()
        .with_context(|| format!("iperf3 JSON {} is not a number", path.join(".")))
}

/// A TCP run's outcome.
#[derive(Clone, Copy, Debug)]
pub struct TcpOutcome {
    /// Goodput the receiver counted, Gb/s.
    pub gbps: f64,
    /// Segments the sender retransmitted.
    pub retransmits: u64,
}

/// TCP with `streams` parallel streams for `secs` seconds (after one
/// omitted second of slow start).
pub fn tcp(p: &TrafficPath, secs: u32, streams: u32, logs: &Path) -> Result<TcpOutcome> {
    let _server = IperfServer::start(&p.server, IPERF_PORT, &logs.join("iperf3-server.log"))?;
    let args: Vec<String> = [
        "-c",
        &p.dst.to_string(),
        "-p",
        &IPERF_PORT.to_string(),
        "-t",
        &secs.to_string(),
        "-O",
        "1",
        "-P",
        &streams.to_string(),
        "--connect-timeout",
        "5000",
        "-J",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let v = iperf_json(&run_bounded(&p.client, secs + 1, "iperf3", &args)?)?;
    Ok(TcpOutcome {
        gbps: num(&v, &["end", "sum_received", "bits_per_second"])? / 1e9,
        retransmits: v
            .pointer("/end/sum_sent/retransmits")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
    })
}

/// A UDP flood's outcome.
#[derive(Clone, Copy, Debug)]
pub struct UdpOutcome {
    /// Datagrams the receiver got, per second.
    pub received_pps: f64,
    /// Datagrams the sender sent, per second.
    pub sent_pps: f64,
}

/// iperf3 UDP with `payload`-byte datagrams at `rate` (iperf3 `-b`; "0"
/// for as fast as the sender can) for `secs` seconds.
pub fn udp(
    p: &TrafficPath,
    secs: u32,
    payload: u32,
    rate: &str,
    logs: &Path,
) -> Result<UdpOutcome> {
    let _server = IperfServer::start(&p.server, IPERF_PORT, &logs.join("iperf3-server.log"))?;
    let args: Vec<String> = [
        "-c",
        &p.dst.to_string(),
        "-p",
        &IPERF_PORT.to_string(),
        "-u",
        "-b",
        rate,
        "-l",
        &payload.to_string(),
        "-t",
        &secs.to_string(),
        "--connect-timeout",
        "5000",
        "-J",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let v = iperf_json(&run_bounded(&p.client, secs, "iperf3", &args)?)?;
    let recv = if v.pointer("/end/sum_received").is_some() {
        "sum_received"
    } else {
        "sum"
    };
    let packets = num(&v, &["end", recv, "packets"])?;
    let lost = num(&v, &["end", recv, "lost_packets"])?;
    let seconds = num(&v, &["end", recv, "seconds"])?;
    let sent = num(&v, &["end", "sum_sent", "packets"]).unwrap_or(packets);
    let sent_secs = num(&v, &["end", "sum_sent", "seconds"]).unwrap_or(seconds);
    if seconds <= 0.0 {
        bail!("iperf3 UDP reported a zero-length interval");
    }
    Ok(UdpOutcome {
        received_pps: (packets - lost).max(0.0) / seconds,
        sent_pps: sent / sent_secs.max(f64::EPSILON),
    })
}

/// The ping-pong's duration for a requested `secs`.
pub fn rtt_secs(secs: u32) -> u32 {
    secs.max(3)
}

/// Round-trip times of a sockperf ping-pong (`RTT_MSG_BYTES` payload).
#[derive(Clone, Copy, Debug)]
pub struct RttOutcome {
    pub p50_us: f64,
    pub p99_us: f64,
    pub samples: u64,
}

/// sockperf UDP ping-pong for `secs` seconds (at least 3: sockperf
/// discards a warm-up and prints no percentiles for very short runs),
/// round-trip percentiles.
pub fn rtt(p: &TrafficPath, secs: u32, logs: &Path) -> Result<RttOutcome> {
    let secs = rtt_secs(secs);
    let dst = p.dst.to_string();
    let port = SOCKPERF_PORT.to_string();
    let mut cmd = p.server.cmd("sockperf");
    cmd.args(["server", "-i", &dst, "-p", &port]);
    let mut server = Background::spawn("sockperf server", cmd, &logs.join("sockperf-server.log"))?;
    let filter = format!("sport = :{port}");
    vpn_tests::wait_until_ok("sockperf server to listen", Duration::from_secs(10), || {
        if let Some(s) = server.try_status() {
            return Err(format!("sockperf server exited ({s}): {}", server.log()));
        }
        match p.server.run("ss", ["-Hlun", &filter]) {
            Ok(o) if !o.trim().is_empty() => Ok(()),
            _ => Err("not listening yet".to_owned()),
        }
    })?;
    let args: Vec<String> = [
        "ping-pong",
        "-i",
        &dst,
        "-p",
        &port,
        "-t",
        &secs.to_string(),
        "-m",
        &RTT_MSG_BYTES.to_string(),
        "--full-rtt",
        // The monotonic clock instead of calibrated TSC reads: safe on a VM.
        "--no-rdtsc",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let out = run_bounded(&p.client, secs, "sockperf", &args)?;
    parse_sockperf(&out)
}

fn parse_sockperf(out: &str) -> Result<RttOutcome> {
    let pct = |which: &str| -> Result<f64> {
        let key = format!("percentile {which} =");
        out.lines()
            .find_map(|l| l.split_once(&key).map(|(_, v)| v.trim().to_owned()))
            .and_then(|v| v.split_whitespace().next().and_then(|x| x.parse().ok()))
            .with_context(|| format!("sockperf output has no `{key}`: {out}"))
    };
    let samples = out
        .lines()
        .find_map(|l| {
            let rest = l.split("Total ").nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0);
    Ok(RttOutcome {
        p50_us: pct("50.000")?,
        p99_us: pct("99.000")?,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sockperf_percentiles() {
        let out = "sockperf: Summary: Round trip is 48.331 usec\n\
                   sockperf: \x1b[2;35mTotal 52702 observations\x1b[0m; each percentile contains 527.02 observations\n\
                   sockperf: ---> percentile 99.900 = 5079.735\n\
                   sockperf: ---> percentile 99.000 =  115.898\n\
                   sockperf: ---> percentile 50.000 =   23.593\n";
        let r = parse_sockperf(out).unwrap();
        assert!((r.p50_us - 23.593).abs() < 1e-9);
        assert!((r.p99_us - 115.898).abs() < 1e-9);
        assert_eq!(r.samples, 52702);
        assert!(parse_sockperf("sockperf: no messages").is_err());
    }
}
