//! The demo's closing report.

use std::fmt::Write as _;

use super::PathReport;

pub(crate) fn render(reports: &[PathReport], hosts: usize, profile: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "GroupVPN demo: {hosts} hosts and 2 public DHT nodes in network namespaces on one LAN \
         (underlay 192.168.77.0/24)."
    );
    let _ = writeln!(
        s,
        "Certificates only, no lab keys; the hosts find each other through the DHTs and \
         negotiate their keys."
    );
    for r in reports {
        let _ = writeln!(s, "{} path: {}", r.path.as_str(), r.credentials);
        let _ = writeln!(
            s,
            "  automatic renewal: {} of {hosts} daemons checked their certificate and fetched \
             the CRL from the group server.",
            r.renewing
        );
    }
    if let Some(r) = reports.first() {
        let (ok, total, failure) = &r.openssl;
        let _ = writeln!(
            s,
            "openssl verify -CAfile ca.crt node.crt: {ok} of {total} certificates OK{}",
            failure
                .as_ref()
                .map_or(String::new(), |f| format!(" (first failure: {})", f.trim()))
        );
    }
    let v6 = if reports.iter().any(|r| r.ping6.is_some()) {
        "IPv6 n0 -> n1"
    } else {
        "no IPv6 (ping6 n/a)"
    };
    let _ = writeln!(
        s,
        "vpn-control {profile} build; ping by virtual address: 10 per ordered pair (IPv4), \
         {v6}; iperf3: one TCP stream."
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<10} {:>9} {:>9} {:>10} {:>13} {:>11} {:>14} {:>9}",
        "path",
        "joined (s)",
        "pairs ok",
        "ping loss",
        "rtt avg (ms)",
        "ping6 (ms)",
        "iperf3 (Gb/s)",
        "time (s)"
    );
    for r in reports {
        let sent: u32 = r.pings.iter().map(|(_, p)| p.transmitted).sum();
        let recv: u32 = r.pings.iter().map(|(_, p)| p.received).sum();
        let ok = r.pings.iter().filter(|(_, p)| p.received > 0).count();
        let loss = if sent == 0 {
            100.0
        } else {
            100.0 * f64::from(sent - recv.min(sent)) / f64::from(sent)
        };
        let answered: Vec<f64> = r
            .pings
            .iter()
            .filter(|(_, p)| p.received > 0)
            .map(|(_, p)| p.rtt_avg_ms)
            .collect();
        let rtt = if answered.is_empty() {
            f64::NAN
        } else {
            answered.iter().sum::<f64>() / answered.len() as f64
        };
        let ping6 = r.ping6.map_or(f64::NAN, |p| p.rtt_avg_ms);
        let _ = writeln!(
            s,
            "{:<10} {:>10.1} {:>9} {:>9.1}% {:>13.3} {:>11.3} {:>14.2} {:>9.1}",
            r.path.as_str(),
            r.joined.as_secs_f64(),
            format!("{ok}/{}", r.pings.len()),
            loss,
            rtt,
            ping6,
            r.iperf_gbps,
            r.elapsed.as_secs_f64()
        );
    }
    for r in reports {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{} path (iperf3 {}, single TCP stream):",
            r.path.as_str(),
            r.iperf_pair
        );
        for (name, st) in &r.statuses {
            let overlay = st.overlay.as_ref().map_or_else(
                || "no overlay".to_owned(),
                |o| {
                    format!(
                        "group {} address {} members {} sessions {} peer id {}",
                        o.group,
                        o.addresses.join(" "),
                        o.members,
                        o.sessions,
                        short_id(&o.peer_id)
                    )
                },
            );
            let _ = writeln!(
                s,
                "  {name}: interface {} mtu {} dataplane {}; {overlay}",
                st.interface, st.mtu, st.dataplane
            );
            for p in &st.peers {
                let _ = writeln!(
                    s,
                    "    peer {:<4} path {:<9} tx {:>8} pkts {:>12} B   rx {:>8} pkts {:>12} B",
                    p.name, p.path, p.tx_packets, p.tx_bytes, p.rx_packets, p.rx_bytes
                );
            }
            let nonzero: Vec<String> = st
                .counters
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                s,
                "    counters: {}",
                if nonzero.is_empty() {
                    "all zero".into()
                } else {
                    nonzero.join(" ")
                }
            );
        }
        if !r.programs.is_empty() {
            let _ = writeln!(s, "  BPF programs (bpftool):");
            for p in &r.programs {
                let _ = writeln!(s, "    {p}");
            }
        }
    }
    s
}

/// `12D3KooW...` shortened to its first 12 and last 6 characters.
fn short_id(id: &str) -> String {
    if id.len() <= 20 {
        return id.to_owned();
    }
    format!("{}…{}", &id[..12], &id[id.len() - 6..])
}
