//! The OS network configuration of the VPN interface, declarative and
//! idempotent: [`NetSpec`] says what should exist, [`ensure`] reads what
//! does through a [`NetConfig`] and changes only the difference, [`remove`]
//! deletes the links (which takes their addresses and routes with them).
//! [`linux::LinuxNet`] is the real implementation (rtnetlink, ethtool
//! ioctls, sysctl files); [`fake::FakeNet`] an in-memory model for tests.
//!
//! Kernel path: a veth pair `<name>` / `<name>p`. `<name>` carries the
//! addresses and routes, has NOARP set and TX checksum, scatter-gather,
//! TSO, GSO and GRO off, so every packet reaches `<name>p` as one complete
//! IP packet with its checksums filled in (DESIGN decision 5). `<name>p`
//! has no address and IPv6 disabled, so it emits nothing of its own.
//! Both ends steer received packets over all CPUs (RPS, see [`rps`]), which
//! keeps every flow in order through the BPF programs.
//! Userspace path: a TUN device `<name>` (created by [`tun::open`]) with
//! the same addresses, MTU and routes.

pub mod ethtool;
pub mod fake;
pub mod linux;
pub mod rps;
pub mod tun;

#[cfg(test)]
mod tests;

use std::net::IpAddr;

use crate::config::values::{prefix_covers, InterfaceAddress};
use crate::dataplane::Prefix;

/// Routing protocol number marking the routes this daemon installs, so
/// that reconciliation never touches anybody else's routes.
pub const ROUTE_PROTO: u8 = 77;

/// Errors of the network configuration.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("netlink: {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

impl NetError {
    pub fn netlink(op: impl Into<String>, source: std::io::Error) -> Self {
        NetError::Netlink {
            op: op.into(),
            source,
        }
    }
}

/// Kind of a link as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    Veth,
    Tun,
    Other(String),
}

/// What [`NetConfig::link`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: u32,
    pub up: bool,
    pub noarp: bool,
    pub mac: Option<[u8; 6]>,
}

/// Link settings to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSettings {
    pub mtu: u32,
    pub up: bool,
    pub noarp: bool,
}

/// The route the kernel would use to reach a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    pub ifindex: u32,
    /// Preferred source address, if the route or the kernel chose one.
    pub source: Option<IpAddr>,
}

/// Access to the OS network configuration.
#[allow(async_fn_in_trait)]
pub trait NetConfig {
    async fn link(&self, name: &str) -> Result<Option<LinkState>, NetError>;
    async fn link_by_index(&self, index: u32) -> Result<Option<LinkState>, NetError>;
    async fn add_veth(&self, name: &str, peer: &str) -> Result<(), NetError>;
    async fn delete_link(&self, index: u32) -> Result<(), NetError>;
    async fn set_link(&self, index: u32, s: LinkSettings) -> Result<(), NetError>;
    async fn addresses(&self, index: u32) -> Result<Vec<InterfaceAddress>, NetError>;
    /// The link that holds address `addr`, if any.
    async fn link_with_address(&self, addr: IpAddr) -> Result<Option<u32>, NetError>;
    async fn add_address(&self, index: u32, a: InterfaceAddress) -> Result<(), NetError>;
    async fn del_address(&self, index: u32, a: InterfaceAddress) -> Result<(), NetError>;
    /// Routes through `index` installed with [`ROUTE_PROTO`].
    async fn routes(&self, index: u32) -> Result<Vec<Prefix>, NetError>;
    async fn add_route(&self, index: u32, p: Prefix) -> Result<(), NetError>;
    async fn del_route(&self, index: u32, p: Prefix) -> Result<(), NetError>;
    async fn route_to(&self, dst: IpAddr) -> Result<Option<RouteInfo>, NetError>;
    /// Turns TX checksum offload, scatter-gather, TSO, GSO and GRO off and
    /// verifies that they are off.
    fn disable_offloads(&self, name: &str) -> Result<(), NetError>;
    /// Writes `/proc/sys/net/<key>` (e.g. `ipv6/conf/vpn0p/disable_ipv6`).
    /// Returns false if the key does not exist.
    fn sysctl(&self, key: &str, value: &str) -> Result<bool, NetError>;
    /// Turns receive packet steering over all online CPUs on for every RX
    /// queue of link `name`, whose index must be `index` ([`rps::spread`]).
    fn spread_rx(&self, name: &str, index: u32) -> Result<rps::Spread, NetError>;
}

/// Which kind of VPN interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// Kernel path: veth pair, `peer` is the wire end.
    Veth { peer: String },
    /// Userspace path: a TUN device that must already be open.
    Tun,
}

/// The desired OS configuration of the VPN interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpec {
    pub name: String,
    pub device: DeviceSpec,
    pub addresses: Vec<InterfaceAddress>,
    pub mtu: u32,
    /// Prefixes to route into the interface (see [`routes_needed`]).
    pub routes: Vec<Prefix>,
}

/// What [`ensure`] returns: the indices the data plane needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetHandles {
    pub ifindex: u32,
    pub peer_ifindex: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

/// The allowed prefixes that need a route: those not already covered by a
/// connected prefix of one of the interface's addresses. Deduplicated and
/// sorted.
pub fn routes_needed(addresses: &[InterfaceAddress], allowed: &[Prefix]) -> Vec<Prefix> {
    let connected: Vec<Prefix> = addresses.iter().map(|a| a.network()).collect();
    let mut out: Vec<Prefix> = allowed
        .iter()
        .filter(|p| !connected.iter().any(|c| prefix_covers(c, p)))
        .copied()
        .collect();
    out.sort();
    out.dedup();
    out
}

fn is_link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// Brings the OS configuration to `spec`, changing only what differs.
pub async fn ensure<N: NetConfig>(n: &N, spec: &NetSpec) -> Result<NetHandles, NetError> {
    let link = match &spec.device {
        DeviceSpec::Veth { peer } => ensure_veth(n, &spec.name, peer).await?,
        DeviceSpec::Tun => match n.link(&spec.name).await? {
            Some(l) if l.kind == LinkKind::Tun => l,
            Some(l) => {
                return Err(NetError::Other(format!(
                    "{} exists but is a {:?} device, not TUN",
                    spec.name, l.kind
                )))
            }
            None => {
                return Err(NetError::Other(format!(
                    "TUN device {} does not exist",
                    spec.name
                )))
            }
        },
    };
    let mut peer_ifindex = None;
    let veth = matches!(spec.device, DeviceSpec::Veth { .. });
    if let DeviceSpec::Veth { peer } = &spec.device {
        // The wire end: no IPv6 (no link-local address, no router or
        // neighbour solicitations), no ARP, same MTU, up.
        n.sysctl(&format!("ipv6/conf/{peer}/disable_ipv6"), "1")?;
        let p = n
            .link(peer)
            .await?
            .ok_or_else(|| NetError::Other(format!("veth peer {peer} vanished")))?;
        let want = LinkSettings {
            mtu: spec.mtu,
            up: true,
            noarp: true,
        };
        if (p.mtu, p.up, p.noarp) != (want.mtu, want.up, want.noarp) {
            n.set_link(p.index, want).await?;
        }
        for a in n.addresses(p.index).await? {
            n.del_address(p.index, a).await?;
        }
        n.disable_offloads(&spec.name)?;
        // Flow-consistent CPUs on both ends: `<name>p` (sender side, runs
        // `vpn_encrypt`) and `<name>` (after `vpn_decrypt` redirects in).
        // A performance setting: failing it must not fail the interface.
        for (dev, index) in [(peer.as_str(), p.index), (spec.name.as_str(), link.index)] {
            match n.spread_rx(dev, index) {
                Ok(rps::Spread::Skipped(why)) => {
                    tracing::info!("{dev}: receive packet steering left alone: {why}")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("{dev}: could not set receive packet steering: {e}"),
            }
        }
        peer_ifindex = Some(p.index);
    }
    // No IPv6 link-local address on the VPN interface either: it would
    // only emit router solicitations into the tunnel.
    n.sysctl(&format!("ipv6/conf/{}/addr_gen_mode", spec.name), "1")?;
    let want = LinkSettings {
        mtu: spec.mtu,
        up: true,
        noarp: veth || link.noarp,
    };
    if (link.mtu, link.up, link.noarp) != (want.mtu, want.up, want.noarp) {
        n.set_link(link.index, want).await?;
    }
    let have = n.addresses(link.index).await?;
    for a in &have {
        if !spec.addresses.contains(a) && !is_link_local(&a.addr) {
            n.del_address(link.index, *a).await?;
        }
    }
    for a in &spec.addresses {
        if !have.contains(a) {
            n.add_address(link.index, *a).await?;
        }
    }
    let have = n.routes(link.index).await?;
    for r in &have {
        if !spec.routes.contains(r) {
            n.del_route(link.index, *r).await?;
        }
    }
    for r in &spec.routes {
        if !have.contains(r) {
            n.add_route(link.index, *r).await?;
        }
    }
    Ok(NetHandles {
        ifindex: link.index,
        peer_ifindex,
        mac: link.mac,
    })
}

async fn ensure_veth<N: NetConfig>(n: &N, name: &str, peer: &str) -> Result<LinkState, NetError> {
    let a = n.link(name).await?;
    let b = n.link(peer).await?;
    let ok = matches!((&a, &b), (Some(a), Some(b)) if a.kind == LinkKind::Veth && b.kind == LinkKind::Veth);
    if !ok {
        // Half a pair, or something else under our names: start over.
        for l in [a, b].into_iter().flatten() {
            n.delete_link(l.index).await?;
        }
        n.add_veth(name, peer).await?;
    }
    n.link(name)
        .await?
        .ok_or_else(|| NetError::Other(format!("{name} vanished after creation")))
}

/// Deletes the named links if they exist (their addresses and routes go
/// with them). Returns the names that existed.
pub async fn remove<N: NetConfig>(n: &N, names: &[&str]) -> Result<Vec<String>, NetError> {
    let mut removed = Vec::new();
    for name in names {
        if let Some(l) = n.link(name).await? {
            match n.delete_link(l.index).await {
                Ok(()) => removed.push(name.to_string()),
                // Deleting one end of a veth pair removes the other.
                Err(_) if n.link(name).await?.is_none() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}
