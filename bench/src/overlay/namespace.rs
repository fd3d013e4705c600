//! The namespace part: real `vpn-control up` processes with `[overlay]`
//! configurations (certificates made with the CLI) and two
//! `vpn-control dht-node`s on one LAN bridge. Member n0 is restarted for
//! every run while n1 and n2 keep running:
//!
//! - `up` to first reply: from spawning n0's `up` until the first reply to
//!   pings from n0 to n1's virtual address sent every 50 ms (`ping -D`
//!   stamps the reply; ping is restarted when it cannot send yet);
//! - `up` to members: until n0's `status` reports both others verified;
//! - on-demand session: then the first ping from n0 to n2 (which n0 has not
//!   sent anything to), with up to 5 s for the reply: its RTT covers the
//!   packet reaching the daemon, resolution, handshake, installation and
//!   delivery of the queued packet; then 10 pings measure the steady RTT.

use std::io::{BufRead as _, BufReader};
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context as _, Result};
use vpn_tests::{ping, ping_once, OverlayLab, OverlayOptions};

use super::report::{NamespaceSection, NsRun};

/// Longest wait for one run's first reply.
const FIRST_REPLY_BUDGET: Duration = Duration::from_secs(60);

pub fn run(sec: &mut NamespaceSection) -> Result<()> {
    let bin = vpn_tests::vpn_control_bin()?;
    sec.topology = format!(
        "3 members (n0 restarted per run; n1, n2 stay up) and 2 public-DHT-only \
         `vpn-control dht-node`s, each in its own network namespace on one bridge; \
         kernel data path; certificates with fixed addresses from `vpn-control ca init` \
         / `cert sign`; `vpn-control` at {}",
        bin.display()
    );
    sec.method = "n0's `vpn-control up` is spawned at t0. A thread pings n1's virtual \
        address from n0 every 50 ms (`ping -D -i 0.05`, restarted after 10 ms while it \
        cannot send yet) until the first reply, stamped by ping: *up to first reply*. Meanwhile `status --json` is polled \
        every 50 ms until it reports 2 verified members: *up to members*. Then one ping to \
        n2 with `-W 5` (nothing was sent to n2 before; whether `status` already listed n2 \
        as a peer is recorded): its RTT is the *on-demand* figure (packet to the daemon, \
        resolution, handshake, key installation, delivery). Then 10 pings at 50 ms: \
        *steady RTT*. n0 is stopped with SIGTERM between runs."
        .into();
    let mut lab = OverlayLab::new("ovbench", OverlayOptions::new(3))?;
    for i in [1, 2] {
        lab.node_mut(i).up()?;
    }
    lab.wait_members(1, 1, Duration::from_secs(60))
        .context("n1 and n2 to verify each other")?;
    lab.wait_members(2, 1, Duration::from_secs(60))
        .context("n2 and n1 to verify each other")?;
    for k in 0..sec.runs_requested {
        eprintln!(
            "bench overlay: namespace run {}/{}",
            k + 1,
            sec.runs_requested
        );
        let mut r = NsRun::default();
        if let Err(e) = one_run(&mut lab, &mut r) {
            eprintln!("bench overlay: run {} failed: {e:#}", k + 1);
            r.error = Some(format!("{e:#}"));
            let log = lab.node(0).log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("n0's log (last lines):");
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
        }
        eprintln!(
            "bench overlay:   up->reply {:?} ms, up->members {:?} ms, first RTT {:?} ms, steady {:?} ms, session before: {:?}",
            r.up_to_first_reply_ms.map(|v| v.round()),
            r.up_to_all_members_ms.map(|v| v.round()),
            r.on_demand_first_rtt_ms,
            r.steady_rtt_ms,
            r.session_existed_before
        );
        sec.runs.push(r);
        if lab.node(0).daemon_pid().is_some() {
            lab.node_mut(0).stop()?;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

fn one_run(lab: &mut OverlayLab, r: &mut NsRun) -> Result<()> {
    let ns0 = lab.node(0).ns().clone();
    let n1 = lab.vpn_v4(1)?;
    let n2 = lab.vpn_v4(2)?;
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let t0_wall = SystemTime::now();
    lab.node_mut(0).spawn_up()?;
    let pinger = {
        let (ns0, stop) = (ns0.clone(), stop.clone());
        std::thread::spawn(move || first_reply(&ns0, n1, t0_wall, &stop))
    };
    // Members verified, polled while the pinger runs.
    let members = (|| -> Result<f64> {
        while t0.elapsed() < FIRST_REPLY_BUDGET {
            if let Ok(st) = lab.node(0).status() {
                if st.overlay.as_ref().is_some_and(|o| o.members >= 2) {
                    return Ok(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(anyhow!(
            "n0 did not verify both members within {FIRST_REPLY_BUDGET:?}"
        ))
    })();
    if members.is_err() {
        stop.store(true, Ordering::SeqCst);
    }
    let reply = pinger
        .join()
        .map_err(|_| anyhow!("the pinger thread panicked"))?;
    r.up_to_all_members_ms = members.as_ref().ok().copied();
    r.up_to_first_reply_ms = Some(reply?);
    members?;

    let st = lab.node(0).status()?;
    r.session_existed_before = Some(st.peer("n2").is_some());
    let first =
        ping_once(&ns0, n2, 5)?.ok_or_else(|| anyhow!("no reply from n2 ({n2}) within 5 s"))?;
    r.on_demand_first_rtt_ms = Some(first);
    let steady = ping(&ns0, n2, 10, 0.05)?;
    if steady.received == 0 {
        return Err(anyhow!("no steady-state replies from n2"));
    }
    r.steady_rtt_ms = Some(steady.rtt_avg_ms);
    Ok(())
}

/// Pings `dst` every 50 ms (`ping -D`, which stamps each reply with the
/// wall clock) until the first reply; its arrival in ms after `t0`. A ping
/// that cannot start yet (no route before `vpn0` exists) is restarted
/// after 10 ms.
fn first_reply(
    ns: &vpn_tests::NsRef,
    dst: IpAddr,
    t0: SystemTime,
    stop: &AtomicBool,
) -> Result<f64> {
    let started = Instant::now();
    while started.elapsed() < FIRST_REPLY_BUDGET && !stop.load(Ordering::SeqCst) {
        let mut cmd = ns.cmd("ping");
        cmd.args(["-n", "-D", "-i", "0.05", "-W", "1", "-w"])
            .arg(FIRST_REPLY_BUDGET.as_secs().to_string())
            .arg(dst.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().context("running ping")?;
        let out = child.stdout.take().expect("piped");
        let mut reply = None;
        for line in BufReader::new(out).lines() {
            let line = line?;
            if let Some(at) = reply_stamp(&line) {
                reply = Some(at);
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        if let Some(at) = reply {
            let t0s = t0.duration_since(UNIX_EPOCH)?.as_secs_f64();
            return Ok((at - t0s) * 1e3);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(anyhow!(
        "no reply from {dst} within {FIRST_REPLY_BUDGET:?} of up"
    ))
}

/// The wall-clock stamp (`[1764070000.123456]`) of a `ping -D` reply line.
fn reply_stamp(line: &str) -> Option<f64> {
    if !line.contains("bytes from") {
        return None;
    }
    line.strip_prefix('[')?.split_once(']')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_d_reply_stamps() {
        let l = "[1764070000.123456] 64 bytes from 10.77.0.2: icmp_seq=3 ttl=64 time=0.2 ms";
        assert_eq!(reply_stamp(l), Some(1_764_070_000.123_456));
        assert_eq!(
            reply_stamp("[1764070000.1] From 10.77.0.1 icmp_seq=1 Destination Host Unreachable"),
            None
        );
        assert_eq!(
            reply_stamp("PING 10.77.0.2 (10.77.0.2) 56(84) bytes of data."),
            None
        );
    }
}
