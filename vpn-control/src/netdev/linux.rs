//! [`NetConfig`] on Linux: rtnetlink for links, addresses and routes, the
//! ethtool ioctl for offloads, `/proc/sys/net` for sysctls, sysfs for RPS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::{LinkKind, LinkSettings, LinkState, NetConfig, NetError, RouteInfo, ROUTE_PROTO};
use crate::config::values::InterfaceAddress;
use crate::dataplane::Prefix;

/// The real thing. Create inside a tokio runtime.
pub struct LinuxNet {
    handle: Handle,
}

fn io_err(e: rtnetlink::Error) -> std::io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => std::io::Error::other(other.to_string()),
    }
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

impl LinuxNet {
    /// Opens a route netlink socket and spawns its connection task.
    pub fn new() -> Result<Self, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| NetError::netlink("opening a netlink socket", e))?;
        tokio::spawn(conn);
        Ok(LinuxNet { handle })
    }

    async fn first_link(
        &self,
        req: rtnetlink::LinkGetRequest,
    ) -> Result<Option<LinkState>, NetError> {
        match req.execute().try_next().await {
            Ok(Some(m)) => Ok(Some(link_state(&m))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(NetError::netlink("reading a link", io_err(e))),
        }
    }
}

fn link_state(m: &LinkMessage) -> LinkState {
    let mut s = LinkState {
        index: m.header.index,
        name: String::new(),
        kind: LinkKind::Other(String::new()),
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        noarp: m.header.flags.contains(LinkFlags::Noarp),
        mac: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => s.name = n.clone(),
            LinkAttribute::Mtu(v) => s.mtu = *v,
            LinkAttribute::Address(b) if b.len() == 6 => {
                s.mac = b.as_slice().try_into().ok();
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        s.kind = match k {
                            InfoKind::Veth => LinkKind::Veth,
                            InfoKind::Tun => LinkKind::Tun,
                            other => LinkKind::Other(other.to_string()),
                        };
                    }
                }
            }
            _ => {}
        }
    }
    s
}

fn route_prefix(m: &RouteMessage) -> Option<Prefix> {
    let len = m.header.destination_prefix_length;
    let addr = m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        _ => None,
    });
    match (addr, m.header.address_family) {
        (Some(addr), _) => Some(Prefix { addr, len }),
        (None, AddressFamily::Inet) if len == 0 => Some(Prefix {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            len: 0,
        }),
        (None, AddressFamily::Inet6) if len == 0 => Some(Prefix {
            addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            len: 0,
        }),
        _ => None,
    }
}

fn route_message(index: u32, p: Prefix) -> Result<RouteMessage, NetError> {
    let scope = if p.addr.is_ipv4() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(p.addr, p.len)
        .map_err(|e| NetError::Other(e.to_string()))?
        .output_interface(index)
        .protocol(RouteProtocol::Other(ROUTE_PROTO))
        .scope(scope)
        .build())
}

fn address_of(m: &AddressMessage) -> Option<InterfaceAddress> {
    // IFA_LOCAL is the local address on point-to-point links; IFA_ADDRESS
    // otherwise. Prefer the local one.
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let addr = local.or_else(|| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some(InterfaceAddress {
        addr,
        len: m.header.prefix_len,
    })
}

impl NetConfig for LinuxNet {
    async fn link(&self, name: &str) -> Result<Option<LinkState>, NetError> {
        self.first_link(self.handle.link().get().match_name(name.to_owned()))
            .await
    }

    async fn link_by_index(&self, index: u32) -> Result<Option<LinkState>, NetError> {
        self.first_link(self.handle.link().get().match_index(index))
            .await
    }

    async fn add_veth(&self, name: &str, peer: &str) -> Result<(), NetError> {
        self.handle
            .link()
            .add(LinkVeth::new(name, peer).build())
            .execute()
            .await
            .map_err(|e| NetError::netlink(format!("creating veth pair {name}/{peer}"), io_err(e)))
    }

    async fn delete_link(&self, index: u32) -> Result<(), NetError> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(NetError::netlink(
                format!("deleting link {index}"),
                io_err(e),
            )),
        }
    }

    async fn set_link(&self, index: u32, s: LinkSettings) -> Result<(), NetError> {
        let b = LinkUnspec::new_with_index(index).mtu(s.mtu).arp(!s.noarp);
        let b = if s.up { b.up() } else { b.down() };
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(|e| {
                NetError::netlink(
                    format!("setting link {index} mtu={} up={}", s.mtu, s.up),
                    io_err(e),
                )
            })
    }

    async fn addresses(&self, index: u32) -> Result<Vec<InterfaceAddress>, NetError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| {
                NetError::netlink(format!("listing addresses of link {index}"), io_err(e))
            })?;
        Ok(msgs
            .iter()
            .filter(|m| m.header.index == index)
            .filter_map(address_of)
            .collect())
    }

    async fn link_with_address(&self, addr: IpAddr) -> Result<Option<u32>, NetError> {
        let msgs: Vec<AddressMessage> =
            self.handle
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| NetError::netlink("listing addresses", io_err(e)))?;
        Ok(msgs
            .iter()
            .find(|m| address_of(m).is_some_and(|a| a.addr == addr))
            .map(|m| m.header.index))
    }

    async fn add_address(&self, index: u32, a: InterfaceAddress) -> Result<(), NetError> {
        let mut req = self.handle.address().add(index, a.addr, a.len);
        if a.addr.is_ipv6() {
            // No duplicate address detection inside the tunnel.
            let m = req.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(NetError::netlink(
                format!("adding address {a} to link {index}"),
                io_err(e),
            )),
        }
    }

    async fn del_address(&self, index: u32, a: InterfaceAddress) -> Result<(), NetError> {
        let msgs: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| NetError::netlink("listing addresses", io_err(e)))?;
        for m in msgs {
            if m.header.index == index && address_of(&m) == Some(a) {
                match self.handle.address().del(m).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EADDRNOTAVAIL) => {}
                    Err(e) => {
                        return Err(NetError::netlink(
                            format!("removing address {a}"),
                            io_err(e),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    async fn routes(&self, index: u32) -> Result<Vec<Prefix>, NetError> {
        let mut out = Vec::new();
        for msg in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            let routes: Vec<RouteMessage> = self
                .handle
                .route()
                .get(msg)
                .execute()
                .try_collect()
                .await
                .map_err(|e| NetError::netlink("listing routes", io_err(e)))?;
            for r in &routes {
                let ours = r.header.protocol == RouteProtocol::Other(ROUTE_PROTO);
                let via = r
                    .attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index));
                if ours && via {
                    out.extend(route_prefix(r));
                }
            }
        }
        Ok(out)
    }

    async fn add_route(&self, index: u32, p: Prefix) -> Result<(), NetError> {
        self.handle
            .route()
            .add(route_message(index, p)?)
            .replace()
            .execute()
            .await
            .map_err(|e| NetError::netlink(format!("adding route {}/{}", p.addr, p.len), io_err(e)))
    }

    async fn del_route(&self, index: u32, p: Prefix) -> Result<(), NetError> {
        match self
            .handle
            .route()
            .del(route_message(index, p)?)
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(NetError::netlink(
                format!("removing route {}/{}", p.addr, p.len),
                io_err(e),
            )),
        }
    }

    async fn route_to(&self, dst: IpAddr) -> Result<Option<RouteInfo>, NetError> {
        let len = if dst.is_ipv4() { 32 } else { 128 };
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dst, len)
            .map_err(|e| NetError::Other(e.to_string()))?
            .build();
        match self.handle.route().get(msg).execute().try_next().await {
            Ok(Some(r)) => {
                let ifindex = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                let source = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::PrefSource(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
                    RouteAttribute::PrefSource(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
                    _ => None,
                });
                Ok(ifindex.map(|ifindex| RouteInfo { ifindex, source }))
            }
            Ok(None) => Ok(None),
            Err(e) if matches!(errno(&e), Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => Ok(None),
            Err(e) => Err(NetError::netlink(
                format!("looking up the route to {dst}"),
                io_err(e),
            )),
        }
    }

    fn disable_offloads(&self, name: &str) -> Result<(), NetError> {
        super::ethtool::disable_offloads(name).map_err(NetError::Io)
    }

    fn spread_rx(&self, name: &str, index: u32) -> Result<super::rps::Spread, NetError> {
        super::rps::spread(std::path::Path::new("/sys"), name, index)
            .map_err(|e| NetError::Other(format!("RPS on {name}: {e}")))
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<bool, NetError> {
        let path = format!("/proc/sys/net/{key}");
        match std::fs::read_to_string(&path) {
            Ok(cur) if cur.trim() == value => Ok(true),
            Ok(_) => std::fs::write(&path, value)
                .map(|_| true)
                .map_err(|e| NetError::Other(format!("writing {path}: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(NetError::Other(format!("reading {path}: {e}"))),
        }
    }
}
