//! Address ranges and candidate addresses.
//!
//! A [`Range`] is one IPv4 or IPv6 prefix of the group. Its *host addresses*
//! are the addresses a node may be given: inside the prefix, not the network
//! address, not the IPv4 broadcast address, not (IPv6, prefixes up to /120)
//! one of the 128 reserved subnet anycast addresses at the top of the prefix
//! (RFC 2526), and none of the addresses the caller reserves (for example
//! gateway or certificate-fixed addresses).
//!
//! Host addresses are numbered `0..host_count()` so candidates can be drawn
//! as indices: [`Range::hashed_index`] gives the deterministic first choice
//! of a node (from a hash of its PeerId, so a node gets the same address
//! after a restart when it is still free), random indices follow.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ring::digest;

use super::AddrError;

/// One address range of the group (IPv4 or IPv6 CIDR prefix, host bits zero).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    network: IpAddr,
    prefix: u8,
    reserved: HashSet<IpAddr>,
}

impl Range {
    /// A range from its network address and prefix length. Refuses host bits
    /// and prefixes with fewer than two host addresses (IPv4 longer than /30,
    /// IPv6 longer than /126), like the group certificate does.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Self, AddrError> {
        let max = if network.is_ipv4() { 30 } else { 126 };
        if prefix == 0 || prefix > max {
            return Err(AddrError::BadRange(format!(
                "{network}/{prefix}: prefix length must be 1..={max}"
            )));
        }
        let r = Self {
            network,
            prefix,
            reserved: HashSet::new(),
        };
        if to_bits(network) & r.mask() != to_bits(network) {
            return Err(AddrError::BadRange(format!(
                "{network}/{prefix} has host bits set"
            )));
        }
        Ok(r)
    }

    /// Parses `ADDRESS/PREFIX`.
    pub fn parse(s: &str) -> Result<Self, AddrError> {
        let bad = || AddrError::BadRange(format!("{s:?}: expected ADDRESS/PREFIX"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let a: IpAddr = a.parse().map_err(|_| bad())?;
        let p: u8 = p.parse().map_err(|_| bad())?;
        Self::new(a, p)
    }

    /// Never hand out `addr` (gateways, certificate-fixed addresses of other
    /// members, service addresses). Addresses outside the range are ignored.
    pub fn reserve(&mut self, addr: IpAddr) {
        if self.contains(addr) {
            self.reserved.insert(addr);
        }
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether this is an IPv4 range.
    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    fn width(&self) -> u32 {
        if self.is_ipv4() {
            32
        } else {
            128
        }
    }

    fn mask(&self) -> u128 {
        let host_bits = self.width() - u32::from(self.prefix);
        let all = if self.is_ipv4() {
            u128::from(u32::MAX)
        } else {
            u128::MAX
        };
        all & !((1u128 << host_bits) - 1)
    }

    /// Whether `a` is inside the prefix.
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.is_ipv4() && to_bits(a) & self.mask() == to_bits(self.network)
    }

    /// Offsets (from the network address) of the first and past-the-last
    /// usable address, before caller reservations.
    fn span(&self) -> (u128, u128) {
        let size = 1u128 << (self.width() - u32::from(self.prefix));
        if self.is_ipv4() {
            (1, size - 1)
        } else if self.prefix <= 120 {
            (1, size - 128)
        } else {
            (1, size)
        }
    }

    /// Number of host addresses before caller reservations (saturates for
    /// IPv6 prefixes shorter than /1, which cannot occur).
    pub fn host_count(&self) -> u128 {
        let (lo, hi) = self.span();
        hi - lo
    }

    /// Number of host addresses that can be handed out.
    pub fn free_count(&self) -> u128 {
        self.host_count() - self.reserved.len() as u128
    }

    /// The host address with this index (`index < host_count()`), wrapping
    /// around. Reserved addresses are returned too: check
    /// [`Range::is_assignable`].
    pub fn host(&self, index: u128) -> IpAddr {
        let (lo, _) = self.span();
        let off = lo + index % self.host_count();
        from_bits(to_bits(self.network) + off, self.is_ipv4())
    }

    /// Whether `a` may be given to a node.
    pub fn is_assignable(&self, a: IpAddr) -> bool {
        if !self.contains(a) || self.reserved.contains(&a) {
            return false;
        }
        let off = to_bits(a) - to_bits(self.network);
        let (lo, hi) = self.span();
        off >= lo && off < hi
    }

    /// The deterministic first choice of the node `owner`: SHA-256 over a
    /// label, the group, the range and the PeerId bytes, reduced modulo the
    /// host count.
    pub fn hashed_index(&self, group: &str, owner: &[u8]) -> u128 {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"groupvpn addr candidate v1");
        for part in [group.as_bytes(), self.to_string().as_bytes(), owner] {
            ctx.update(&(part.len() as u32).to_be_bytes());
            ctx.update(part);
        }
        index_from_bytes(ctx.finish().as_ref(), self.host_count())
    }
}

/// Reduces the first 16 bytes of `bytes` modulo `n` (`n > 0`).
pub(crate) fn index_from_bytes(bytes: &[u8], n: u128) -> u128 {
    let mut b = [0u8; 16];
    let k = bytes.len().min(16);
    b[..k].copy_from_slice(&bytes[..k]);
    u128::from_be_bytes(b) % n.max(1)
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn to_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_bits(b: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(u32::try_from(b).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_hosts_skip_network_and_broadcast() {
        let r = Range::parse("10.0.0.0/30").unwrap();
        assert_eq!(r.host_count(), 2);
        assert_eq!(r.host(0), ip("10.0.0.1"));
        assert_eq!(r.host(1), ip("10.0.0.2"));
        assert_eq!(r.host(2), ip("10.0.0.1"));
        assert!(!r.is_assignable(ip("10.0.0.0")));
        assert!(!r.is_assignable(ip("10.0.0.3")));
        assert!(!r.is_assignable(ip("10.0.1.1")));
        let r = Range::parse("10.77.0.0/24").unwrap();
        assert_eq!(r.host_count(), 254);
        assert_eq!(r.host(253), ip("10.77.0.254"));
    }

    #[test]
    fn v6_hosts_skip_subnet_router_and_anycast() {
        let r = Range::parse("fd77::/120").unwrap();
        assert_eq!(r.host_count(), 127);
        assert!(!r.is_assignable(ip("fd77::")));
        assert!(r.is_assignable(ip("fd77::7f")));
        assert!(!r.is_assignable(ip("fd77::80")));
        let r = Range::parse("fd77::/64").unwrap();
        assert_eq!(r.host_count(), (1u128 << 64) - 129);
        let r = Range::parse("fd77::/126").unwrap();
        assert_eq!(r.host_count(), 3);
    }

    #[test]
    fn reserved_addresses_are_not_assignable() {
        let mut r = Range::parse("10.0.0.0/29").unwrap();
        r.reserve(ip("10.0.0.1"));
        r.reserve(ip("192.168.0.1"));
        assert!(!r.is_assignable(ip("10.0.0.1")));
        assert!(r.is_assignable(ip("10.0.0.2")));
        assert_eq!(r.free_count(), 5);
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(Range::parse("10.0.0.1/24").is_err());
        assert!(Range::parse("10.0.0.0/31").is_err());
        assert!(Range::parse("10.0.0.0/0").is_err());
        assert!(Range::parse("10.0.0.0").is_err());
        assert!(Range::parse("fd77::/127").is_err());
    }

    #[test]
    fn hashed_index_is_stable_and_spread() {
        let r = Range::parse("10.77.0.0/24").unwrap();
        let a = r.hashed_index("g", b"peer-a");
        assert_eq!(a, r.hashed_index("g", b"peer-a"));
        assert!(a < 254);
        let distinct: HashSet<u128> = (0..50u8).map(|i| r.hashed_index("g", &[i])).collect();
        assert!(distinct.len() > 40, "{}", distinct.len());
    }
}
