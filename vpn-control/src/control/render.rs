//! The human-readable `vpn-control status`.

use std::fmt::Write;

use vpn_common::stats::Counter;

use super::Status;
use crate::dataplane::PathKind;

fn path_name(p: PathKind) -> &'static str {
    match p {
        PathKind::Kernel => "kernel",
        PathKind::Userspace => "userspace",
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A short table: the interface line, one line per peer, the counters
/// (drop counters only when non-zero, by reason).
pub fn render_table(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "interface {}  data plane {}  mtu {}",
        s.interface,
        path_name(s.dataplane),
        s.mtu
    );
    if let Some(o) = &s.overlay {
        let _ = writeln!(
            out,
            "group {}  node {}  addresses {}",
            o.group,
            o.peer_id,
            if o.addresses.is_empty() {
                "(allocating)".to_owned()
            } else {
                o.addresses.join(", ")
            }
        );
        let p = &o.pending;
        let _ = writeln!(
            out,
            "members {} ({} connected, {} neighbours)  sessions {}  first packets: queued {}, \
             delivered {}, dropped {}, connects {} ({} failed)",
            o.members,
            o.connected,
            o.neighbours,
            o.sessions,
            p.queued,
            p.delivered,
            p.dropped,
            p.connects,
            p.connect_failures
        );
        let nonzero: Vec<String> = o
            .counters
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !nonzero.is_empty() {
            let _ = writeln!(out, "overlay: {}", nonzero.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "{:<12} {:>3}  {:<24} {:<9} {:>10} {:>11} {:>10} {:>11}  allowed ips",
        "peer", "id", "endpoint", "path", "tx pkts", "tx bytes", "rx pkts", "rx bytes"
    );
    for p in &s.peers {
        let _ = writeln!(
            out,
            "{:<12} {:>3}  {:<24} {:<9} {:>10} {:>11} {:>10} {:>11}  {}",
            p.name,
            p.id,
            p.endpoint.as_deref().unwrap_or("-"),
            path_name(p.path),
            p.tx_packets,
            bytes(p.tx_bytes),
            p.rx_packets,
            bytes(p.rx_bytes),
            p.allowed_ips.join(", ")
        );
    }
    let get = |c: Counter| s.counters.get(c.name()).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "totals: tx {} packets ({}), rx {} packets ({})",
        get(Counter::TxPackets),
        bytes(get(Counter::TxBytes)),
        get(Counter::RxPackets),
        bytes(get(Counter::RxBytes))
    );
    let drops: Vec<String> = Counter::ALL
        .iter()
        .filter(|c| c.is_drop() && get(**c) > 0)
        .map(|c| format!("{} {}", c.name(), get(*c)))
        .collect();
    let _ = writeln!(
        out,
        "drops: {}",
        if drops.is_empty() {
            "none".to_owned()
        } else {
            drops.join(", ")
        }
    );
    let other: Vec<String> = [Counter::NoSession, Counter::TxError]
        .iter()
        .filter(|c| get(**c) > 0)
        .map(|c| format!("{} {}", c.name(), get(*c)))
        .collect();
    if !other.is_empty() {
        let _ = writeln!(out, "other: {}", other.join(", "));
    }
    out
}
