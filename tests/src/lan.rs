//! A LAN: a bridge inside its own namespace, one veth to each host namespace.

use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::netns::Netns;

/// Underlay subnet of every LAN the harness builds (only inside namespaces).
pub const LAN_PREFIX: [u8; 3] = [192, 168, 77];
const LAN_PREFIX_LEN: u8 = 24;
/// Host addresses start at `.11`.
const FIRST_HOST: u8 = 11;

/// One host: a namespace whose `eth0` sits on the LAN.
#[derive(Debug)]
pub struct Host {
    pub ns: Netns,
    /// Position on the LAN (0-based).
    pub index: usize,
    /// The host's underlay address on `eth0`.
    pub addr: Ipv4Addr,
    /// Underlay interface name inside the host namespace.
    pub ifname: &'static str,
}

/// A bridge `br0` inside a "lan" namespace, with hosts attached by veth.
/// Dropping it deletes the hosts' namespaces, then the LAN's.
#[derive(Debug)]
pub struct Lan {
    hosts: Vec<Host>,
    lan: Netns,
}

impl Lan {
    /// Creates the LAN namespace and its bridge. `tag` names the namespaces
    /// (`gv-<tag>lan-...`, `gv-<tag>h<n>-...`).
    pub fn new(tag: &str) -> Result<Self> {
        let lan = Netns::new(&format!("{tag}lan"))?;
        lan.ip(["link", "add", "br0", "type", "bridge"])?;
        lan.ip(["link", "set", "br0", "up"])?;
        Ok(Self {
            hosts: Vec::new(),
            lan,
        })
    }

    /// Creates `n` hosts at once.
    pub fn with_hosts(tag: &str, n: usize) -> Result<Self> {
        let mut lan = Self::new(tag)?;
        for _ in 0..n {
            lan.add_host(tag)?;
        }
        Ok(lan)
    }

    /// Adds a host namespace with `eth0` = `192.168.77.(11+i)/24` on the bridge.
    pub fn add_host(&mut self, tag: &str) -> Result<&Host> {
        let index = self.hosts.len();
        let last = u8::try_from(index)
            .ok()
            .and_then(|i| i.checked_add(FIRST_HOST))
            .filter(|&o| o < 255)
            .ok_or_else(|| Error::Setup("too many hosts on one LAN".into()))?;
        let ns = Netns::new(&format!("{tag}h{index}"))?;
        let port = format!("p{index}");
        self.lan.ip([
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ])?;
        self.lan.ip(["link", "set", &port, "master", "br0", "up"])?;
        let [a, b, c] = LAN_PREFIX;
        let addr = Ipv4Addr::new(a, b, c, last);
        ns.ip([
            "addr",
            "add",
            &format!("{addr}/{LAN_PREFIX_LEN}"),
            "dev",
            "eth0",
        ])?;
        ns.ip(["link", "set", "eth0", "up"])?;
        self.hosts.push(Host {
            ns,
            index,
            addr,
            ifname: "eth0",
        });
        Ok(&self.hosts[index])
    }

    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// The namespace holding the bridge.
    pub fn lan_ns(&self) -> &Netns {
        &self.lan
    }
}
