//! Finding the underlay interface and the local source address.

use std::net::IpAddr;

use crate::config::Config;
use crate::netdev::{NetConfig, NetError, RouteInfo};

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

/// Where the underlay route is looked up, in order: the first lab peer's
/// endpoint; else (with `[overlay]`) the bootstrap addresses, then the
/// default route. With how to name each in errors.
fn targets(cfg: &Config) -> Vec<(IpAddr, &'static str)> {
    if let Some(p) = cfg.peers.first() {
        return vec![(p.endpoint.ip(), "the first peer's endpoint")];
    }
    let Some(o) = &cfg.overlay else {
        return Vec::new();
    };
    let mut out: Vec<(IpAddr, &'static str)> = o
        .bootstrap_ips()
        .into_iter()
        .map(|ip| (ip, "the bootstrap address"))
        .collect();
    out.push((DEFAULT_ROUTE_PROBE, "the default route"));
    out
}

/// The underlay: `interface.underlay` if set, else the interface of the
/// route to the first peer's endpoint, or with `[overlay]` and no peers to
/// the first bootstrap address that is not this host's own (a bootstrap
/// node on this host routes through `lo`), else the default route's.
/// `Ok(None)` when none exists (no underlay configured and nothing to
/// route to).
pub async fn find<N: NetConfig>(n: &N, cfg: &Config) -> Result<Option<Underlay>, NetError> {
    let targets = targets(cfg);
    let mut found = None;
    for (ip, what) in &targets {
        let Some(mut r) = n.route_to(*ip).await? else {
            continue;
        };
        let mut link = n
            .link_by_index(r.ifindex)
            .await?
            .ok_or_else(|| NetError::Other(format!("underlay link {} vanished", r.ifindex)))?;
        if link.name == "lo" && *what != "the first peer's endpoint" {
            // A bootstrap node on this host: the underlay is the link that
            // holds its address (it listens there for the members).
            let Some(index) = n.link_with_address(*ip).await?.filter(|i| *i != link.index) else {
                continue;
            };
            let Some(l) = n.link_by_index(index).await? else {
                continue;
            };
            r = RouteInfo {
                ifindex: index,
                source: Some(*ip),
            };
            link = l;
        }
        found = Some((*ip, *what, r, link));
        break;
    }
    let target = found
        .as_ref()
        .map(|f| (f.0, f.1))
        .or(targets.first().copied());
    let first = target.map(|t| t.0);
    let route = found.as_ref().map(|f| f.2);
    let link = match &cfg.interface.underlay {
        Some(name) => n
            .link(name)
            .await?
            .ok_or_else(|| NetError::Other(format!("underlay interface {name} does not exist")))?,
        None => match found {
            Some((_, _, _, link)) => link,
            None => {
                return match targets.first() {
                    Some((ip, what)) if *what != "the default route" => Err(NetError::Other(
                        format!("no route to {what} {ip}; set interface.underlay"),
                    )),
                    // No lab peers, no bootstrap, no default route (the
                    // first node of a group, listening only): the twin
                    // still runs.
                    _ => Ok(None),
                };
            }
        },
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
