//! The four configurations, each on its own two-host LAN built by the
//! harness (`vpn_tests`): the same bridge/veth underlay every time, with or
//! without a VPN on top.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use vpn_tests::{Dataplane, Lab, Lan, NsRef};

use super::boringtun::{underlay_mtu, BoringtunPair};

/// A configuration under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Config {
    /// The underlay itself, no VPN: the ceiling.
    Veth,
    /// `vpn-control` with `dataplane = "kernel"` (eBPF).
    Kernel,
    /// `vpn-control` with `dataplane = "userspace"` (TUN + UDP twin).
    Userspace,
    /// boringtun-cli configured with `wg`.
    Boringtun,
}

impl Config {
    pub const ALL: [Self; 4] = [Self::Veth, Self::Kernel, Self::Userspace, Self::Boringtun];

    pub fn name(self) -> &'static str {
        match self {
            Self::Veth => "veth",
            Self::Kernel => "kernel",
            Self::Userspace => "userspace",
            Self::Boringtun => "boringtun",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .with_context(|| format!("unknown config {s:?} (veth, kernel, userspace, boringtun)"))
    }

    /// Namespace tag (ASCII alphanumerics).
    fn tag(self) -> &'static str {
        match self {
            Self::Veth => "bveth",
            Self::Kernel => "bkern",
            Self::Userspace => "buser",
            Self::Boringtun => "bbt",
        }
    }
}

/// Where traffic goes for one configuration: from `client` to `dst`
/// (an address of `server`), through an interface of MTU `mtu`.
#[derive(Clone, Debug)]
pub struct TrafficPath {
    pub client: NsRef,
    pub server: NsRef,
    pub dst: Ipv4Addr,
    /// MTU of the interface the traffic leaves the client through.
    pub mtu: u32,
}

/// A built configuration; dropping it stops its daemons and deletes its
/// namespaces.
#[derive(Debug)]
pub enum Topology {
    Veth(Lan),
    Vpn(Lab),
    Boringtun(BoringtunPair),
}

/// How long the first packets may take through a fresh tunnel (neighbour
/// resolution, boringtun's handshake).
const FIRST_PING: Duration = Duration::from_secs(30);

impl Topology {
    pub fn build(config: Config) -> Result<Self> {
        let tag = config.tag();
        let topo = match config {
            Config::Veth => Self::Veth(Lan::with_hosts(tag, 2)?),
            Config::Kernel | Config::Userspace => {
                let dp = if config == Config::Kernel {
                    Dataplane::Kernel
                } else {
                    Dataplane::Userspace
                };
                let mut lab = Lab::new(tag, &[dp, dp])?;
                lab.up_all()?;
                for i in 0..2 {
                    let st = lab.node(i).status()?;
                    if st.dataplane != dp.as_str() {
                        bail!(
                            "{} reports dataplane {:?}, expected {:?}",
                            lab.node(i).spec.name,
                            st.dataplane,
                            dp.as_str()
                        );
                    }
                }
                Self::Vpn(lab)
            }
            Config::Boringtun => Self::Boringtun(BoringtunPair::new(tag)?),
        };
        let p = topo.path()?;
        for (from, to) in [
            (&p.client, IpAddr::V4(p.dst)),
            (&p.server, topo.client_addr()),
        ] {
            vpn_tests::wait_ping(from, to, FIRST_PING)
                .with_context(|| format!("{}: first ping", config.name()))?;
        }
        Ok(topo)
    }

    /// The client's address on the measured path (for the reverse ping).
    fn client_addr(&self) -> IpAddr {
        match self {
            Self::Veth(lan) => IpAddr::V4(lan.host(0).addr),
            Self::Vpn(lab) => lab.node(0).vpn_v4(),
            Self::Boringtun(_) => IpAddr::V4(BoringtunPair::addr(0)),
        }
    }

    pub fn path(&self) -> Result<TrafficPath> {
        Ok(match self {
            Self::Veth(lan) => {
                let (c, s) = (lan.host(0), lan.host(1));
                TrafficPath {
                    client: (*c.ns).clone(),
                    server: (*s.ns).clone(),
                    dst: s.addr,
                    mtu: underlay_mtu(&c.ns, c.ifname)?,
                }
            }
            Self::Vpn(lab) => {
                let (c, s) = (lab.node(0), lab.node(1));
                TrafficPath {
                    client: c.ns().clone(),
                    server: s.ns().clone(),
                    dst: s.spec.vpn_v4,
                    mtu: underlay_mtu(c.ns(), &c.spec.ifname)?,
                }
            }
            Self::Boringtun(bt) => TrafficPath {
                client: bt.ns(0).clone(),
                server: bt.ns(1).clone(),
                dst: BoringtunPair::addr(1),
                mtu: underlay_mtu(bt.ns(0), bt.ifname(0))?,
            },
        })
    }

    /// An error if a daemon of this configuration has gone away.
    pub fn check(&mut self) -> Result<()> {
        match self {
            Self::Veth(_) => Ok(()),
            Self::Vpn(lab) => {
                for n in lab.nodes() {
                    n.status().with_context(|| {
                        format!("{}'s daemon: {}", n.spec.name, tail(&n.log(), 20))
                    })?;
                }
                Ok(())
            }
            Self::Boringtun(bt) => bt.check_running(),
        }
    }

    /// The kernel lab, for its BPF programs.
    pub fn lab(&self) -> Option<&Lab> {
        match self {
            Self::Vpn(lab) => Some(lab),
            _ => None,
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
