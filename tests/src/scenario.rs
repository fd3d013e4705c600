//! Traffic scenarios shared by the namespace tests, the demo and the
//! benchmarks: pings both ways, iperf3, and the "no plaintext on the
//! underlay" marker check.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::config::LAB_PORT;
use crate::error::{Error, Result};
use crate::lab::Lab;
use crate::netns::NsRef;
use crate::tools::{
    count_containing, iperf3_tcp, ping, wait_ping, Capture, IperfResult, IperfServer,
};

/// Binds a UDP socket inside `ns`.
pub fn udp_bind(ns: &NsRef, addr: SocketAddr) -> Result<UdpSocket> {
    ns.enter(move || UdpSocket::bind(addr))?
        .map_err(Error::from)
}

/// Sends one datagram from inside `ns`.
pub fn udp_send(ns: &NsRef, dst: SocketAddr, payload: &[u8]) -> Result<()> {
    let payload = payload.to_vec();
    ns.enter(move || -> std::io::Result<()> {
        let bind: SocketAddr = match dst {
            SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
            SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
        };
        let s = UdpSocket::bind(bind)?;
        let n = s.send_to(&payload, dst)?;
        if n != payload.len() {
            return Err(std::io::Error::other("short send"));
        }
        Ok(())
    })?
    .map_err(Error::from)
}

/// Pings node `b` from node `a` and back, over IPv4 and IPv6: waits for the
/// first reply (neighbour resolution), then `count` pings each way must
/// come back (at most one lost, for a loaded machine).
pub fn ping_both_ways(lab: &Lab, a: usize, b: usize, count: u32) -> Result<()> {
    let pairs = [(a, b), (b, a)];
    for (x, y) in pairs {
        let (nx, ny) = (lab.node(x), lab.node(y));
        for dst in [ny.vpn_v4(), ny.vpn_v6()] {
            wait_ping(nx.ns(), dst, Duration::from_secs(20))?;
            let s = ping(nx.ns(), dst, count, 0.02)?;
            if s.received + 1 < count {
                return Err(Error::Setup(format!(
                    "{} -> {} ({dst}): {} of {} pings answered",
                    nx.spec.name, ny.spec.name, s.received, s.transmitted
                )));
            }
        }
    }
    Ok(())
}

/// iperf3 TCP from node `a` to node `b`'s VPN IPv4 address.
pub fn iperf_between(lab: &Lab, a: usize, b: usize, secs: u32) -> Result<IperfResult> {
    let tag = format!("iperf-{a}-{b}-{}", std::process::id());
    let server = IperfServer::start(
        lab.node(b).ns(),
        5201,
        &lab.dir().join(format!("{tag}.log")),
    )?;
    let r = iperf3_tcp(lab.node(a).ns(), lab.node(b).vpn_v4(), server.port, secs, 1)?;
    if r.received_bps <= 0.0 {
        return Err(Error::Setup(format!("iperf3 moved no data: {r:?}")));
    }
    Ok(r)
}

/// What the marker check saw.
#[derive(Clone, Debug, Default)]
pub struct MarkerOutcome {
    /// Packets captured on node `a`'s underlay during the check.
    pub captured: usize,
    /// Of those, packets to or from the data port.
    pub data_port_packets: usize,
    /// Captured packets that contained the marker in clear (must be 0).
    pub plaintext_hits: usize,
    /// Markers received by the UDP listeners on the far side (must be 2).
    pub delivered: usize,
}

fn udp_port_in(packet: &[u8], port: u16) -> bool {
    // Ethernet + IPv4 (IHL) + UDP ports.
    if packet.len() < 14 + 20 + 8 || packet[12..14] != [0x08, 0x00] || packet[14 + 9] != 17 {
        return false;
    }
    let ihl = usize::from(packet[14] & 0x0f) * 4;
    let udp = 14 + ihl;
    if packet.len() < udp + 4 {
        return false;
    }
    let sport = u16::from_be_bytes([packet[udp], packet[udp + 1]]);
    let dport = u16::from_be_bytes([packet[udp + 2], packet[udp + 3]]);
    sport == port || dport == port
}

/// Sends a marker string in clear over the tunnel from `a` to `b` and from
/// `b` to `a` (UDP to the far side's VPN address, IPv4 then IPv6), while
/// tcpdump records node `a`'s underlay. The caller asserts that
/// `plaintext_hits == 0`, `delivered == 4` and `data_port_packets >= 4`.
pub fn marker_check(lab: &Lab, a: usize, b: usize) -> Result<MarkerOutcome> {
    let marker = format!("GV-MARKER-{}-{a}-{b}-never-in-clear", std::process::id());
    let cap = Capture::start(
        lab.node(a).ns(),
        &lab.node(a).spec.underlay_if,
        "",
        &lab.dir().join(format!("marker-{a}-{b}.pcap")),
    )?;
    let mut out = MarkerOutcome::default();
    for (from, to) in [(a, b), (b, a)] {
        for dst_ip in [lab.node(to).vpn_v4(), lab.node(to).vpn_v6()] {
            let dst = SocketAddr::new(dst_ip, 40_000);
            let rx = udp_bind(lab.node(to).ns(), dst)?;
            rx.set_read_timeout(Some(Duration::from_millis(300)))?;
            let mut buf = [0u8; 256];
            // Retry a few times: UDP gives no guarantee even on a LAN.
            let mut got = false;
            for _ in 0..10 {
                udp_send(lab.node(from).ns(), dst, marker.as_bytes())?;
                if let Ok((n, _)) = rx.recv_from(&mut buf) {
                    if &buf[..n] == marker.as_bytes() {
                        got = true;
                        break;
                    }
                }
            }
            if got {
                out.delivered += 1;
            }
        }
    }
    let packets = cap.stop()?;
    out.captured = packets.len();
    out.data_port_packets = packets.iter().filter(|p| udp_port_in(p, LAB_PORT)).count();
    out.plaintext_hits = count_containing(&packets, marker.as_bytes());
    Ok(out)
}

/// Convenience: the VPN address of node `i` of the lab.
pub fn vpn_addr(lab: &Lab, i: usize, v6: bool) -> IpAddr {
    if v6 {
        lab.node(i).vpn_v6()
    } else {
        lab.node(i).vpn_v4()
    }
}
