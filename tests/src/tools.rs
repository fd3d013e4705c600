//! Wrappers around `ping`, `iperf3` and `tcpdump`, run inside namespaces.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::NsRef;
use crate::pcap::{contains, read_pcap};
use crate::process::Background;
use crate::wait::{wait_until, wait_until_ok};

/// The outcome of a `ping` run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PingStats {
    pub transmitted: u32,
    pub received: u32,
    pub rtt_min_ms: f64,
    pub rtt_avg_ms: f64,
    pub rtt_max_ms: f64,
}

impl PingStats {
    pub fn loss_pct(&self) -> f64 {
        if self.transmitted == 0 {
            return 100.0;
        }
        100.0 * f64::from(self.transmitted - self.received.min(self.transmitted))
            / f64::from(self.transmitted)
    }

    fn parse(out: &str) -> Result<Self> {
        let bad = || Error::Parse {
            what: "ping output".into(),
            detail: out.to_owned(),
        };
        let counts = out
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .ok_or_else(bad)?;
        let mut nums = counts
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(str::parse::<u32>);
        let transmitted = nums.next().and_then(|r| r.ok()).ok_or_else(bad)?;
        let received = nums.next().and_then(|r| r.ok()).ok_or_else(bad)?;
        let mut s = Self {
            transmitted,
            received,
            ..Self::default()
        };
        if let Some(rtt) = out.lines().find(|l| l.starts_with("rtt ")) {
            // "rtt min/avg/max/mdev = 0.045/0.061/0.079/0.012 ms[, pipe 4]"
            let vals: Vec<f64> = rtt
                .split('=')
                .nth(1)
                .and_then(|v| v.split_whitespace().next())
                .ok_or_else(bad)?
                .split('/')
                .map(|v| v.parse::<f64>().map_err(|_| bad()))
                .collect::<Result<_>>()?;
            if vals.len() < 3 {
                return Err(bad());
            }
            (s.rtt_min_ms, s.rtt_avg_ms, s.rtt_max_ms) = (vals[0], vals[1], vals[2]);
        }
        Ok(s)
    }
}

/// `ping -c count -i interval_s dst` inside `ns`; never fails on loss (the
/// statistics tell), only when ping cannot run at all.
pub fn ping(ns: &NsRef, dst: IpAddr, count: u32, interval_s: f64) -> Result<PingStats> {
    let out = ns.output(
        "ping",
        [
            "-n".to_owned(),
            "-q".to_owned(),
            "-c".to_owned(),
            count.to_string(),
            "-i".to_owned(),
            format!("{interval_s}"),
            "-W".to_owned(),
            "1".to_owned(),
            dst.to_string(),
        ],
    )?;
    PingStats::parse(&String::from_utf8_lossy(&out.stdout))
}

/// One echo request to `dst` from `ns`, waiting up to `wait_s` seconds for
/// the reply: its round-trip time in ms, or `None` if none came (or ping
/// could not send, e.g. no route yet).
pub fn ping_once(ns: &NsRef, dst: IpAddr, wait_s: u32) -> Result<Option<f64>> {
    let out = ns.output(
        "ping",
        [
            "-n".to_owned(),
            "-c".to_owned(),
            "1".to_owned(),
            "-W".to_owned(),
            wait_s.to_string(),
            dst.to_string(),
        ],
    )?;
    Ok(reply_rtt_ms(&String::from_utf8_lossy(&out.stdout)))
}

/// The `time=X ms` of the first reply line of ping's output.
fn reply_rtt_ms(out: &str) -> Option<f64> {
    out.lines()
        .filter(|l| l.contains("bytes from"))
        .find_map(|l| {
            l.split_once("time=")?
                .1
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// Pings `dst` once per attempt until a reply comes back or `timeout` passes.
pub fn wait_ping(ns: &NsRef, dst: IpAddr, timeout: Duration) -> Result<()> {
    wait_until_ok(
        &format!("a ping reply from {dst} in {}", ns.name()),
        timeout,
        || match ping(ns, dst, 1, 0.2) {
            Ok(s) if s.received > 0 => Ok(()),
            Ok(_) => Err("no reply".to_owned()),
            Err(e) => Err(e.to_string()),
        },
    )
}

/// A one-shot `iperf3 -s` (it exits after serving one client).
#[derive(Debug)]
pub struct IperfServer {
    pub port: u16,
    _proc: Background,
}

impl IperfServer {
    /// Starts the server in `ns` and waits until it listens.
    pub fn start(ns: &NsRef, port: u16, log: &Path) -> Result<Self> {
        let mut cmd = ns.cmd("iperf3");
        cmd.args(["-s", "-1", "-p", &port.to_string()]);
        let proc = Background::spawn("iperf3 server", cmd, log)?;
        let sport = format!("sport = :{port}");
        wait_until("iperf3 server to listen", Duration::from_secs(10), || {
            ns.run("ss", ["-Hltn", &sport])
                .ok()
                .filter(|o| !o.trim().is_empty())
        })?;
        Ok(Self { port, _proc: proc })
    }
}

/// Throughput of an iperf3 TCP run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct IperfResult {
    pub sent_bps: f64,
    pub received_bps: f64,
    pub retransmits: u64,
}

impl IperfResult {
    fn parse(json: &str) -> Result<Self> {
        let bad = |d: &str| Error::Parse {
            what: "iperf3 -J output".into(),
            detail: format!("{d}: {}", json.chars().take(2000).collect::<String>()),
        };
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
        if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
            return Err(bad(err));
        }
        let end = v.get("end").ok_or_else(|| bad("no `end` section"))?;
        let bps = |sec: &str| {
            end.get(sec)
                .and_then(|s| s.get("bits_per_second"))
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| bad(&format!("no end.{sec}.bits_per_second")))
        };
        Ok(Self {
            sent_bps: bps("sum_sent")?,
            received_bps: bps("sum_received")?,
            retransmits: end
                .get("sum_sent")
                .and_then(|s| s.get("retransmits"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
        })
    }
}

/// `iperf3 -c dst -p port -t secs -P streams` from `ns`.
pub fn iperf3_tcp(
    ns: &NsRef,
    dst: IpAddr,
    port: u16,
    secs: u32,
    streams: u32,
) -> Result<IperfResult> {
    let out = ns.output(
        "iperf3",
        [
            "-c".to_owned(),
            dst.to_string(),
            "-p".to_owned(),
            port.to_string(),
            "-t".to_owned(),
            secs.to_string(),
            "-P".to_owned(),
            streams.to_string(),
            "--connect-timeout".to_owned(),
            "5000".to_owned(),
            "-J".to_owned(),
        ],
    )?;
    IperfResult::parse(&String::from_utf8_lossy(&out.stdout))
}

/// An iperf3 TCP client running in the background with per-interval
/// reports (`-i`), for checks made while traffic flows.
#[derive(Debug)]
pub struct IperfClient {
    proc: Background,
    log: PathBuf,
    secs: u32,
}

/// A finished [`IperfClient`] run.
#[derive(Clone, Debug, PartialEq)]
pub struct IperfReport {
    pub total: IperfResult,
    /// The sender's throughput in each interval, bit/s.
    pub intervals_bps: Vec<f64>,
}

impl IperfClient {
    /// `iperf3 -c dst -p port -t secs -i interval_s -J` from `ns`, output
    /// to `log`.
    pub fn start(
        ns: &NsRef,
        dst: IpAddr,
        port: u16,
        secs: u32,
        interval_s: u32,
        log: &Path,
    ) -> Result<Self> {
        let mut cmd = ns.cmd("iperf3");
        cmd.args([
            "-c".to_owned(),
            dst.to_string(),
            "-p".to_owned(),
            port.to_string(),
            "-t".to_owned(),
            secs.to_string(),
            "-i".to_owned(),
            interval_s.to_string(),
            "--connect-timeout".to_owned(),
            "5000".to_owned(),
            "-J".to_owned(),
        ]);
        let proc = Background::spawn("iperf3 client", cmd, log)?;
        Ok(Self {
            proc,
            log: log.to_owned(),
            secs,
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Waits for the run to end (its duration plus 20 s at most) and
    /// parses the report.
    pub fn finish(mut self) -> Result<IperfReport> {
        let st = self
            .proc
            .wait(Duration::from_secs(u64::from(self.secs) + 20))?;
        let json = std::fs::read_to_string(&self.log)?;
        if !st.success() {
            return Err(Error::Setup(format!("iperf3 client failed ({st}): {json}")));
        }
        IperfReport::parse(&json)
    }
}

impl IperfReport {
    fn parse(json: &str) -> Result<Self> {
        let total = IperfResult::parse(json)?;
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::Parse {
            what: "iperf3 -J output".into(),
            detail: e.to_string(),
        })?;
        let intervals_bps = v
            .get("intervals")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .map(|i| {
                i.get("sum")
                    .and_then(|s| s.get("bits_per_second"))
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(0.0)
            })
            .collect();
        Ok(Self {
            total,
            intervals_bps,
        })
    }
}

/// A running `tcpdump -w` inside a namespace.
#[derive(Debug)]
pub struct Capture {
    proc: Background,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing on `iface` with a BPF `filter` into `file`, and
    /// waits until tcpdump is actually listening.
    pub fn start(ns: &NsRef, iface: &str, filter: &str, file: &Path) -> Result<Self> {
        let mut cmd = ns.cmd("tcpdump");
        cmd.args(["-i", iface, "-n", "-U", "--immediate-mode", "-s", "0", "-w"])
            .arg(file);
        cmd.args(filter.split_whitespace());
        let log = file.with_extension("log");
        let proc = Background::spawn("tcpdump", cmd, &log)?;
        let mut cap = Self {
            proc,
            file: file.to_owned(),
        };
        wait_until_ok("tcpdump to listen", Duration::from_secs(10), || {
            if cap.proc.log().contains("listening on") {
                Ok(())
            } else if let Some(s) = cap.proc.try_status() {
                Err(format!("tcpdump exited ({s}): {}", cap.proc.log()))
            } else {
                Err("starting".to_owned())
            }
        })?;
        Ok(cap)
    }

    /// Packets written so far.
    pub fn packets(&self) -> Result<Vec<Vec<u8>>> {
        read_pcap(&std::fs::read(&self.file)?)
    }

    /// Waits until at least `n` packets were written.
    pub fn wait_for_packets(&self, n: usize, timeout: Duration) -> Result<Vec<Vec<u8>>> {
        wait_until("tcpdump to write the expected packets", timeout, || {
            self.packets().ok().filter(|p| p.len() >= n)
        })
    }

    /// Stops tcpdump (after the file stopped growing for 100 ms, so packets
    /// still in flight are written) and returns every captured packet.
    pub fn stop(mut self) -> Result<Vec<Vec<u8>>> {
        let size = || std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0);
        let mut last = size();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            let now = size();
            if now == last {
                break;
            }
            last = now;
        }
        self.proc
            .signal_and_wait(libc::SIGINT, Duration::from_secs(10))?;
        read_pcap(&std::fs::read(&self.file)?)
    }
}

/// How many of `packets` contain `marker` anywhere in their bytes.
pub fn count_containing(packets: &[Vec<u8>], marker: &[u8]) -> usize {
    packets.iter().filter(|p| contains(p, marker)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summary() {
        let out = "PING 10.77.0.2 (10.77.0.2) 56(84) bytes of data.\n\n--- 10.77.0.2 ping statistics ---\n\
                   5 packets transmitted, 4 received, 20% packet loss, time 404ms\n\
                   rtt min/avg/max/mdev = 0.045/0.061/0.079/0.012 ms\n";
        let s = PingStats::parse(out).unwrap();
        assert_eq!((s.transmitted, s.received), (5, 4));
        assert!((s.rtt_avg_ms - 0.061).abs() < 1e-9);
        assert!((s.loss_pct() - 20.0).abs() < 1e-9);
        let piped = "20 packets transmitted, 20 received, 0% packet loss, time 556ms\n\
                     rtt min/avg/max/mdev = 0.299/11.586/85.217/22.753 ms, pipe 4\n";
        let s = PingStats::parse(piped).unwrap();
        assert!((s.rtt_max_ms - 85.217).abs() < 1e-9);
        let lost = "3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2ms\n";
        let s = PingStats::parse(lost).unwrap();
        assert_eq!((s.transmitted, s.received), (3, 0));
        assert!(PingStats::parse("ping: connect: Network is unreachable").is_err());
    }

    #[test]
    fn parses_one_reply() {
        let out = "PING 10.77.0.2 (10.77.0.2) 56(84) bytes of data.\n\
                   64 bytes from 10.77.0.2: icmp_seq=1 ttl=64 time=12.5 ms\n\n\
                   --- 10.77.0.2 ping statistics ---\n";
        assert_eq!(reply_rtt_ms(out), Some(12.5));
        assert_eq!(reply_rtt_ms("1 packets transmitted, 0 received"), None);
    }

    #[test]
    fn parses_iperf_json() {
        let j = r#"{"end":{"sum_sent":{"bits_per_second":2e9,"retransmits":3},
                  "sum_received":{"bits_per_second":1.9e9}}}"#;
        let r = IperfResult::parse(j).unwrap();
        assert_eq!(r.retransmits, 3);
        assert!((r.received_bps - 1.9e9).abs() < 1.0);
        assert!(IperfResult::parse(r#"{"error":"unable to connect"}"#).is_err());
    }

    #[test]
    fn parses_iperf_intervals() {
        let j = r#"{"intervals":[{"sum":{"bits_per_second":1e9}},{"sum":{"bits_per_second":0}},
                  {"sum":{"bits_per_second":8e8}}],
                  "end":{"sum_sent":{"bits_per_second":6e8,"retransmits":0},
                  "sum_received":{"bits_per_second":6e8}}}"#;
        let r = IperfReport::parse(j).unwrap();
        assert_eq!(r.intervals_bps, vec![1e9, 0.0, 8e8]);
        assert_eq!(r.total.retransmits, 0);
    }
}
