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

/// The underlay: `interface.underlay` if set, else the interface of the
/// route to the first peer's endpoint. `Ok(None)` when neither exists
/// (no underlay configured and no peers).
pub async fn find<N: NetConfig>(n: &N, cfg: &Config) -> Result<Option<Underlay>, NetError> {
    let first = cfg.peers.first().map(|p| p.endpoint.ip());
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
                return match first {
                    Some(ip) => Err(NetError::Other(format!(
                        "no route to the first peer's endpoint {ip}; set interface.underlay"
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
            "the route to the first peer goes through the VPN interface {} itself; set interface.underlay",
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
