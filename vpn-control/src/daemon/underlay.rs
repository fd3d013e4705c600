//! Finding the underlay interface and the local source address.

use std::net::IpAddr;

use crate::config::Config;
use crate::netdev::{NetConfig, NetError};

/// The physical interface the encrypted packets use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Underlay {
    pub ifindex: u32,
    pub name: String,
    pub mtu: u32,
    /// Source address of outer packets.
    pub local: IpAddr,
}

fn usable(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_multicast(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80 && !v6.is_unspecified(),
    }
}

/// An address outside every private range, to find the default route
/// (`RTM_GETROUTE` only looks the route up; nothing is sent to it).
const DEFAULT_ROUTE_PROBE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

/// Where the underlay route is looked up: the first lab peer's endpoint,
/// else (with `[overlay]`) the first bootstrap address, else the default
/// route; and how to name it in errors.
fn target(cfg: &Config) -> Option<(IpAddr, &'static str)> {
    if let Some(p) = cfg.peers.first() {
        return Some((p.endpoint.ip(), "the first peer's endpoint"));
    }
    let o = cfg.overlay.as_ref()?;
    Some(match o.first_bootstrap_ip() {
        Some(ip) => (ip, "the first bootstrap address"),
        None => (DEFAULT_ROUTE_PROBE, "the default route"),
    })
}

/// The underlay: `interface.underlay` if set, else the interface of the
/// route to the first peer's endpoint, or with `[overlay]` and no peers to
/// the first bootstrap address, or the default route's. `Ok(None)` when
/// none exists (no underlay configured and nothing to route to).
pub async fn find<N: NetConfig>(n: &N, cfg: &Config) -> Result<Option<Underlay>, NetError> {
    let target = target(cfg);
    let first = target.map(|t| t.0);
    let route = match first {
        Some(ip) => n.route_to(ip).await?,
        None => None,
    };
    let link = match &cfg.interface.underlay {
        Some(name) => n
            .link(name)
            .await?
            .ok_or_else(|| NetError::Other(format!("underlay interface {name} does not exist")))?,
        None => {
            let Some(r) = route else {
                return match target {
                    // A node without lab peers, bootstrap or default route
                    // (the first of a group, listening only): the twin
                    // still runs.
                    Some((_, "the default route")) => Ok(None),
                    Some((ip, what)) => Err(NetError::Other(format!(
                        "no route to {what} {ip}; set interface.underlay"
                    ))),
                    None => Ok(None),
                };
            };
            n.link_by_index(r.ifindex)
                .await?
                .ok_or_else(|| NetError::Other(format!("underlay link {} vanished", r.ifindex)))?
        }
    };
    if link.name == cfg.interface.name || link.name == cfg.interface.peer_name() {
        return Err(NetError::Other(format!(
            "the route to {} goes through the VPN interface {} itself; set interface.underlay",
            target.map_or("the underlay", |t| t.1),
            link.name
        )));
    }
    let want_v6 = first.is_some_and(|ip| ip.is_ipv6());
    // The route's preferred source if it leaves through this link, else
    // the link's first address of the peers' family.
    let from_route = route
        .filter(|r| r.ifindex == link.index)
        .and_then(|r| r.source)
        .filter(|s| s.is_ipv6() == want_v6);
    let local = match from_route {
        Some(s) => s,
        None => n
            .addresses(link.index)
            .await?
            .into_iter()
            .map(|a| a.addr)
            .find(|a| a.is_ipv6() == want_v6 && usable(a))
            .ok_or_else(|| {
                NetError::Other(format!(
                    "underlay {} has no IPv{} address",
                    link.name,
                    if want_v6 { 6 } else { 4 }
                ))
            })?,
    };
    Ok(Some(Underlay {
        ifindex: link.index,
        name: link.name,
        mtu: link.mtu,
        local,
    }))
}
