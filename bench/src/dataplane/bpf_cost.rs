//! Per-packet cost of the kernel path's BPF programs from the kernel's own
//! statistics (`run_time_ns / run_cnt`), measured under a UDP stream of
//! 1,400-byte inner packets (1,372-byte payload).
//!
//! The statistics are switched on with `BPF_ENABLE_STATS`, whose effect
//! lasts as long as the returned file descriptor is open: the kernel
//! switches them off again when the bench exits, however it exits. Where
//! that command is missing (kernels before 5.8), the sysctl
//! `kernel.bpf_stats_enabled` is set and its old value restored on drop
//! (and by the signal watcher). Nothing is left on either way.

use std::collections::BTreeSet;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};
use vpn_common::maps::programs;
use vpn_tests::Lab;

use super::measure::{udp, IPV4_UDP_HEADERS};
use super::topology::TrafficPath;

/// Inner packet size the cost is quoted for.
pub const PACKET_BYTES: u32 = 1400;
/// Rate of the measuring stream: steady, far below saturation.
const RATE: &str = "300M";

const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
/// `BPF_ENABLE_STATS` (enum bpf_cmd) and `BPF_STATS_RUN_TIME`.
const BPF_ENABLE_STATS: libc::c_long = 32;
const BPF_STATS_RUN_TIME: u32 = 0;

/// Keeps the kernel's BPF run-time statistics on while alive.
#[derive(Debug)]
enum StatsSwitch {
    /// Closing the fd switches the statistics off.
    Fd {
        _keep: OwnedFd,
    },
    Sysctl {
        old: String,
    },
}

impl StatsSwitch {
    fn enable() -> Result<Self> {
        #[repr(C)]
        struct EnableStatsAttr {
            kind: u32,
            pad: u32,
        }
        let attr = EnableStatsAttr {
            kind: BPF_STATS_RUN_TIME,
            pad: 0,
        };
        // SAFETY: bpf(2) with a fully initialised attribute of the size passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_ENABLE_STATS,
                std::ptr::from_ref(&attr),
                std::mem::size_of::<EnableStatsAttr>(),
            )
        };
        if rc >= 0 {
            let fd = i32::try_from(rc).context("bpf(BPF_ENABLE_STATS) returned a bad fd")?;
            return Ok(Self::Fd {
                // SAFETY: the kernel just returned this fd to us; we own it.
                _keep: unsafe { OwnedFd::from_raw_fd(fd) },
            });
        }
        let err = std::io::Error::last_os_error();
        eprintln!("bench: BPF_ENABLE_STATS failed ({err}); using the sysctl {SYSCTL}");
        let old = std::fs::read_to_string(SYSCTL)
            .with_context(|| format!("reading {SYSCTL}"))?
            .trim()
            .to_owned();
        crate::signals::restore_on_signal(Some((SYSCTL.to_owned(), old.clone())));
        std::fs::write(SYSCTL, "1").with_context(|| format!("writing {SYSCTL}"))?;
        Ok(Self::Sysctl { old })
    }
}

impl Drop for StatsSwitch {
    fn drop(&mut self) {
        if let Self::Sysctl { old } = self {
            if let Err(e) = std::fs::write(SYSCTL, old.as_bytes()) {
                eprintln!("warning: restoring {SYSCTL} to {old}: {e}");
            }
            crate::signals::restore_on_signal(None);
        }
        // Fd: closing it (dropping the OwnedFd) switches the statistics off.
    }
}

/// Cumulative statistics of one program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ProgStats {
    run_time_ns: u64,
    run_cnt: u64,
}

fn bpftool_prog(id: u32) -> Result<serde_json::Value> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show", "id", &id.to_string()])
        .output()
        .context("running bpftool")?;
    if !out.status.success() {
        bail!(
            "bpftool prog show id {id}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("bpftool -j prog show output")
}

fn prog_stats(id: u32) -> Result<ProgStats> {
    let v = bpftool_prog(id)?;
    // bpftool omits both fields while run_time_ns is 0.
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Ok(ProgStats {
        run_time_ns: field("run_time_ns"),
        run_cnt: field("run_cnt"),
    })
}

fn sum(ids: &[u32]) -> Result<ProgStats> {
    ids.iter().try_fold(ProgStats::default(), |acc, &id| {
        let s = prog_stats(id)?;
        Ok(ProgStats {
            run_time_ns: acc.run_time_ns + s.run_time_ns,
            run_cnt: acc.run_cnt + s.run_cnt,
        })
    })
}

/// Ids of the BPF programs process `pid` holds: every `prog_id:` in the
/// fdinfo of its file descriptors (program fds and the TCX/XDP link fds
/// that attach them). Unlike bpftool's `pids` column this needs no BPF
/// iterator support, and it tells this lab's programs from those of other
/// labs running at the same time.
fn prog_ids_of_pid(pid: i32) -> Result<BTreeSet<u32>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids = BTreeSet::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        // An fd may close while we look: skip what cannot be read.
        let Ok(text) = std::fs::read_to_string(e?.path()) else {
            continue;
        };
        for l in text.lines() {
            if let Some(v) = l.strip_prefix("prog_id:") {
                if let Ok(id) = v.trim().parse() {
                    ids.insert(id);
                }
            }
        }
    }
    Ok(ids)
}

/// The name bpftool reports for program `id`.
fn prog_name(id: u32) -> Result<String> {
    let v = bpftool_prog(id)?;
    Ok(v.get("name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned())
}

/// Ids of the programs named `name` that node `i`'s daemon holds.
fn programs_of(lab: &Lab, i: usize, name: &str) -> Result<Vec<u32>> {
    let node = lab.node(i);
    let pid = node
        .daemon_pid()
        .with_context(|| format!("{} has no daemon", node.spec.name))?;
    let mut ids = Vec::new();
    let mut seen = Vec::new();
    for id in prog_ids_of_pid(pid)? {
        let n = prog_name(id)?;
        if n == name {
            ids.push(id);
        }
        seen.push(format!("{id}:{n}"));
    }
    if ids.is_empty() {
        bail!(
            "{}'s daemon (pid {pid}) holds no program named {name} (it holds: {})",
            node.spec.name,
            if seen.is_empty() {
                "none".to_owned()
            } else {
                seen.join(", ")
            }
        );
    }
    Ok(ids)
}

/// One measurement of both programs.
#[derive(Clone, Copy, Debug)]
pub struct BpfSample {
    pub egress_ns: f64,
    pub ingress_ns: f64,
    pub egress_runs: u64,
    pub ingress_runs: u64,
}

/// Sends a `secs`-second stream of 1,400-byte packets from node 0 to node
/// 1 and divides the run time the client's `vpn_encrypt` and the server's
/// `vpn_decrypt` accumulated by their run counts.
pub fn measure(lab: &Lab, path: &TrafficPath, secs: u32, logs: &Path) -> Result<BpfSample> {
    let enc = programs_of(lab, 0, programs::ENCRYPT)?;
    let dec = programs_of(lab, 1, programs::DECRYPT)?;
    let switch = StatsSwitch::enable()?;
    let (e0, d0) = (sum(&enc)?, sum(&dec)?);
    let flow = udp(path, secs, PACKET_BYTES - IPV4_UDP_HEADERS, RATE, logs);
    let (e1, d1) = (sum(&enc)?, sum(&dec)?);
    drop(switch);
    flow.context("the 1,400-byte UDP stream")?;
    let per = |a: ProgStats, b: ProgStats, what: &str| -> Result<(f64, u64)> {
        let runs = b.run_cnt.saturating_sub(a.run_cnt);
        let ns = b.run_time_ns.saturating_sub(a.run_time_ns);
        if runs == 0 {
            bail!("{what} did not run during the stream (run_cnt unchanged)");
        }
        Ok((ns as f64 / runs as f64, runs))
    };
    let (egress_ns, egress_runs) = per(e0, e1, "vpn_encrypt")?;
    let (ingress_ns, ingress_runs) = per(d0, d1, "vpn_decrypt")?;
    Ok(BpfSample {
        egress_ns,
        ingress_ns,
        egress_runs,
        ingress_runs,
    })
}
