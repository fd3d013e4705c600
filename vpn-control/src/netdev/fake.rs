//! An in-memory [`NetConfig`] for tests: a model of links, addresses,
//! routes, offload switches and sysctls, with a log of every change.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::rps::Spread;
use super::{LinkKind, LinkSettings, LinkState, NetConfig, NetError, RouteInfo};
use crate::config::values::{prefix_contains, InterfaceAddress};
use crate::dataplane::Prefix;

#[derive(Clone, Debug)]
pub struct FakeLink {
    pub state: LinkState,
    pub addresses: Vec<InterfaceAddress>,
    pub routes: Vec<Prefix>,
    pub offloads_off: bool,
    /// Receive packet steering over all CPUs ([`NetConfig::spread_rx`]).
    pub rps: bool,
    /// The other end of a veth pair.
    pub pair: Option<u32>,
}

#[derive(Default)]
struct Inner {
    links: BTreeMap<u32, FakeLink>,
    next_index: u32,
    sysctls: BTreeMap<String, String>,
    /// Every mutating call, in order ("add_veth vpn0 vpn0p", ...).
    log: Vec<String>,
    /// Underlay routes: (prefix, ifindex, source).
    underlay_routes: Vec<(Prefix, u32, Option<IpAddr>)>,
}

/// The fake. All methods are synchronous underneath.
#[derive(Default)]
pub struct FakeNet(Mutex<Inner>);

impl FakeNet {
    pub fn new() -> Self {
        let f = FakeNet::default();
        f.lock().next_index = 10;
        f
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_link(&self, name: &str, kind: LinkKind) -> u32 {
        let mut g = self.lock();
        g.next_index += 1;
        let index = g.next_index;
        let mac = [2, 0, 0, 0, 0, index as u8];
        g.links.insert(
            index,
            FakeLink {
                state: LinkState {
                    index,
                    name: name.into(),
                    kind,
                    mtu: 1500,
                    up: false,
                    noarp: false,
                    mac: Some(mac),
                },
                addresses: vec![],
                routes: vec![],
                offloads_off: false,
                rps: false,
                pair: None,
            },
        );
        index
    }

    /// Adds a TUN device (as opening `/dev/net/tun` would).
    pub fn add_tun(&self, name: &str) -> u32 {
        let i = self.new_link(name, LinkKind::Tun);
        if let Some(l) = self.lock().links.get_mut(&i) {
            l.state.noarp = true;
        }
        i
    }

    /// Adds some other device (an underlay, say).
    pub fn add_other(&self, name: &str, mtu: u32) -> u32 {
        let i = self.new_link(name, LinkKind::Other("dummy".into()));
        if let Some(l) = self.lock().links.get_mut(&i) {
            l.state.mtu = mtu;
            l.state.up = true;
        }
        i
    }

    pub fn add_underlay_route(&self, p: Prefix, ifindex: u32, src: Option<IpAddr>) {
        self.lock().underlay_routes.push((p, ifindex, src));
    }

    pub fn link_named(&self, name: &str) -> Option<FakeLink> {
        self.lock()
            .links
            .values()
            .find(|l| l.state.name == name)
            .cloned()
    }

    pub fn sysctl_value(&self, key: &str) -> Option<String> {
        self.lock().sysctls.get(key).cloned()
    }

    /// Takes the log of changes made so far.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().log)
    }

    /// Simulates another party changing a link.
    pub fn tamper(&self, name: &str, f: impl FnOnce(&mut FakeLink)) {
        let mut g = self.lock();
        if let Some(l) = g.links.values_mut().find(|l| l.state.name == name) {
            f(l);
        }
    }

    fn with_link<T>(&self, index: u32, f: impl FnOnce(&mut FakeLink) -> T) -> Result<T, NetError> {
        let mut g = self.lock();
        g.links.get_mut(&index).map(f).ok_or_else(|| {
            NetError::netlink(
                format!("link {index}"),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })
    }

    fn log(&self, s: String) {
        self.lock().log.push(s);
    }
}

impl NetConfig for FakeNet {
    async fn link(&self, name: &str) -> Result<Option<LinkState>, NetError> {
        Ok(self.link_named(name).map(|l| l.state))
    }

    async fn link_by_index(&self, index: u32) -> Result<Option<LinkState>, NetError> {
        Ok(self.lock().links.get(&index).map(|l| l.state.clone()))
    }

    async fn add_veth(&self, name: &str, peer: &str) -> Result<(), NetError> {
        if self.link_named(name).is_some() || self.link_named(peer).is_some() {
            return Err(NetError::netlink(
                "add veth",
                std::io::Error::from_raw_os_error(libc::EEXIST),
            ));
        }
        let a = self.new_link(name, LinkKind::Veth);
        let b = self.new_link(peer, LinkKind::Veth);
        let mut g = self.lock();
        if let Some(l) = g.links.get_mut(&a) {
            l.pair = Some(b);
        }
        if let Some(l) = g.links.get_mut(&b) {
            l.pair = Some(a);
        }
        g.log.push(format!("add_veth {name} {peer}"));
        Ok(())
    }

    async fn delete_link(&self, index: u32) -> Result<(), NetError> {
        let mut g = self.lock();
        let l = g.links.remove(&index).ok_or_else(|| {
            NetError::netlink(
                "delete link",
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?;
        if let Some(p) = l.pair {
            g.links.remove(&p);
        }
        g.log.push(format!("delete_link {}", l.state.name));
        Ok(())
    }

    async fn set_link(&self, index: u32, s: LinkSettings) -> Result<(), NetError> {
        let name = self.with_link(index, |l| {
            l.state.mtu = s.mtu;
            l.state.up = s.up;
            l.state.noarp = s.noarp;
            l.state.name.clone()
        })?;
        self.log(format!(
            "set_link {name} mtu={} up={} noarp={}",
            s.mtu, s.up, s.noarp
        ));
        Ok(())
    }

    async fn addresses(&self, index: u32) -> Result<Vec<InterfaceAddress>, NetError> {
        self.with_link(index, |l| l.addresses.clone())
    }

    async fn link_with_address(&self, addr: IpAddr) -> Result<Option<u32>, NetError> {
        let inner = self.0.lock().unwrap();
        Ok(inner
            .links
            .iter()
            .find(|(_, l)| l.addresses.iter().any(|a| a.addr == addr))
            .map(|(i, _)| *i))
    }

    async fn add_address(&self, index: u32, a: InterfaceAddress) -> Result<(), NetError> {
        let name = self.with_link(index, |l| {
            l.addresses.push(a);
            l.state.name.clone()
        })?;
        self.log(format!("add_address {name} {a}"));
        Ok(())
    }

    async fn del_address(&self, index: u32, a: InterfaceAddress) -> Result<(), NetError> {
        let name = self.with_link(index, |l| {
            l.addresses.retain(|b| *b != a);
            l.state.name.clone()
        })?;
        self.log(format!("del_address {name} {a}"));
        Ok(())
    }

    async fn routes(&self, index: u32) -> Result<Vec<Prefix>, NetError> {
        self.with_link(index, |l| l.routes.clone())
    }

    async fn add_route(&self, index: u32, p: Prefix) -> Result<(), NetError> {
        let name = self.with_link(index, |l| {
            l.routes.push(p);
            l.state.name.clone()
        })?;
        self.log(format!("add_route {name} {}/{}", p.addr, p.len));
        Ok(())
    }

    async fn del_route(&self, index: u32, p: Prefix) -> Result<(), NetError> {
        let name = self.with_link(index, |l| {
            l.routes.retain(|q| *q != p);
            l.state.name.clone()
        })?;
        self.log(format!("del_route {name} {}/{}", p.addr, p.len));
        Ok(())
    }

    async fn route_to(&self, dst: IpAddr) -> Result<Option<RouteInfo>, NetError> {
        let g = self.lock();
        Ok(g.underlay_routes
            .iter()
            .filter(|(p, _, _)| prefix_contains(p, dst))
            .max_by_key(|(p, _, _)| p.len)
            .map(|(_, i, s)| RouteInfo {
                ifindex: *i,
                source: *s,
            }))
    }

    fn disable_offloads(&self, name: &str) -> Result<(), NetError> {
        let mut g = self.lock();
        let l = g
            .links
            .values_mut()
            .find(|l| l.state.name == name)
            .ok_or_else(|| NetError::Other(format!("no link {name}")))?;
        if !l.offloads_off {
            l.offloads_off = true;
            g.log.push(format!("offloads_off {name}"));
        }
        Ok(())
    }

    fn spread_rx(&self, name: &str, index: u32) -> Result<Spread, NetError> {
        let mut g = self.lock();
        let l = g
            .links
            .get_mut(&index)
            .filter(|l| l.state.name == name)
            .ok_or_else(|| NetError::Other(format!("no link {name} with index {index}")))?;
        if l.rps {
            return Ok(Spread::Unchanged);
        }
        l.rps = true;
        g.log.push(format!("rps {name}"));
        Ok(Spread::Set)
    }

    fn sysctl(&self, key: &str, value: &str) -> Result<bool, NetError> {
        let mut g = self.lock();
        if g.sysctls.get(key).map(String::as_str) != Some(value) {
            g.sysctls.insert(key.into(), value.into());
            g.log.push(format!("sysctl {key}={value}"));
        }
        Ok(true)
    }
}
