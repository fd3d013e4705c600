//! Keeps the overlay off the VPN it manages.
//!
//! A node listening on `0.0.0.0` (or `::`) also listens on its virtual
//! (group-range) addresses once the daemon configured them; if those were
//! announced or dialed, libp2p traffic between members would ride on the
//! tunnel (and break whenever a session expires). [`VirtualRanges`] holds
//! the group's ranges (from the CA certificate) and filters such addresses
//! out of everything this node announces (external addresses, `DataInfo`
//! IPs) and everything it learns about peers (identify listen addresses,
//! announced data IPs, connection IPs).

use std::net::IpAddr;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use vpn_pki::IpRange;

/// The group's virtual address ranges.
#[derive(Clone, Debug, Default)]
pub(crate) struct VirtualRanges(Vec<IpRange>);

impl VirtualRanges {
    /// The ranges `ranges` (the CA certificate's).
    pub(crate) fn new(ranges: &[IpRange]) -> Self {
        Self(ranges.to_vec())
    }

    /// Whether `ip` is inside one of the group's ranges.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    /// Whether `addr` may be announced or dialed: none of its IP components
    /// is a virtual address.
    pub(crate) fn allows(&self, addr: &Multiaddr) -> bool {
        !addr.iter().any(|p| match p {
            Protocol::Ip4(ip) => self.contains(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => self.contains(IpAddr::V6(ip)),
            _ => false,
        })
    }

    /// `addrs` without the virtual ones.
    pub(crate) fn filter_addrs(&self, addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
        addrs.into_iter().filter(|a| self.allows(a)).collect()
    }

    /// `ips` without the virtual ones.
    pub(crate) fn filter_ips(&self, ips: Vec<IpAddr>) -> Vec<IpAddr> {
        ips.into_iter().filter(|ip| !self.contains(*ip)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges() -> VirtualRanges {
        VirtualRanges::new(&[
            "10.78.0.0/16".parse().unwrap(),
            "fd78::/64".parse().unwrap(),
        ])
    }

    #[test]
    fn ips_inside_the_ranges_are_virtual() {
        let r = ranges();
        assert!(r.contains("10.78.0.1".parse().unwrap()));
        assert!(r.contains("fd78::5".parse().unwrap()));
        assert!(!r.contains("10.79.0.1".parse().unwrap()));
        assert!(!r.contains("192.168.1.2".parse().unwrap()));
        assert!(!r.contains("fd79::5".parse().unwrap()));
        let ips = vec![
            "192.168.1.2".parse().unwrap(),
            "10.78.3.4".parse().unwrap(),
            "fd78::9".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ];
        assert_eq!(
            r.filter_ips(ips),
            vec![
                "192.168.1.2".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn multiaddrs_with_a_virtual_ip_are_dropped() {
        let r = ranges();
        let a = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert!(!r.allows(&a("/ip4/10.78.0.1/tcp/4001")));
        assert!(!r.allows(&a("/ip6/fd78::1/udp/4001/quic-v1")));
        assert!(r.allows(&a("/ip4/192.168.1.2/tcp/4001")));
        assert!(r.allows(&a("/ip4/127.0.0.1/tcp/4001")));
        assert!(r.allows(&a("/dns4/example.org/tcp/4001")));
        let kept = r.filter_addrs(vec![
            a("/ip4/10.78.0.1/tcp/4001"),
            a("/ip4/192.168.1.2/tcp/4001"),
            a("/ip6/fd78::1/tcp/4001"),
        ]);
        assert_eq!(kept, vec![a("/ip4/192.168.1.2/tcp/4001")]);
    }

    #[test]
    fn no_ranges_filters_nothing() {
        let r = VirtualRanges::default();
        assert!(r.allows(&"/ip4/10.78.0.1/tcp/4001".parse().unwrap()));
        assert!(!r.contains("10.78.0.1".parse().unwrap()));
    }
}
