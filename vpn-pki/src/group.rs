//! Group vocabulary: names, address ranges, roles, address assignments.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::PkiError;

/// Longest group or node name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// Checks a group name: 1..=64 characters of `A-Z a-z 0-9 . _ -`, starting
/// with a letter or digit. Group names end up in DHT keys (`private:<group>`)
/// and protocol names, so they stay plain.
pub fn validate_group_name(name: &str) -> Result<(), PkiError> {
    validate_name("group name", name, &['.', '_', '-'])
}

/// Checks a node name: 1..=64 characters of `A-Z a-z 0-9 . _ - @`, starting
/// with a letter or digit.
pub fn validate_node_name(name: &str) -> Result<(), PkiError> {
    validate_name("node name", name, &['.', '_', '-', '@'])
}

fn validate_name(what: &'static str, name: &str, extra: &[char]) -> Result<(), PkiError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(PkiError::input(
            what,
            format!("{name:?} must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(PkiError::input(
            what,
            format!("{name:?} must start with a letter or digit"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !extra.contains(c))
    {
        let allowed: String = extra.iter().collect();
        return Err(PkiError::input(
            what,
            format!("{name:?} contains {c:?}; allowed are letters, digits and {allowed:?}"),
        ));
    }
    Ok(())
}

/// An IP prefix (`10.77.0.0/24`, `fd77::/64`) with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

impl IpRange {
    /// A range from its network address and prefix length. Refuses host
    /// bits, prefixes that leave no room for two hosts (IPv4 longer than
    /// /30, IPv6 longer than /126) and /0.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, PkiError> {
        let max = match addr {
            IpAddr::V4(_) => 30,
            IpAddr::V6(_) => 126,
        };
        if prefix == 0 || prefix > max {
            return Err(PkiError::input(
                "address range",
                format!("{addr}/{prefix}: prefix length must be 1..={max}"),
            ));
        }
        let r = Self { addr, prefix };
        if r.network_bits(addr) != to_bits(addr) {
            return Err(PkiError::input(
                "address range",
                format!(
                    "{addr}/{prefix} has host bits set (did you mean {}?)",
                    Self {
                        addr: from_bits(r.network_bits(addr), addr.is_ipv4()),
                        prefix
                    }
                ),
            ));
        }
        Ok(r)
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether this is an IPv4 range.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
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

    fn network_bits(&self, a: IpAddr) -> u128 {
        to_bits(a) & self.mask()
    }

    /// Whether `a` is inside the range (same family, same network bits).
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.is_ipv4() && self.network_bits(a) == to_bits(self.addr)
    }

    /// Whether `a` can be given to a host: inside, and neither the network
    /// address nor (IPv4) the broadcast address.
    pub fn is_host_address(&self, a: IpAddr) -> bool {
        if !self.contains(a) || to_bits(a) == to_bits(self.addr) {
            return false;
        }
        !(self.is_ipv4() && to_bits(a) == (to_bits(self.addr) | (!self.mask() & 0xffff_ffff)))
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
        IpAddr::V4(u32::try_from(b).unwrap_or(0).into())
    } else {
        IpAddr::V6(b.into())
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpRange {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        let (a, p) = s.split_once('/').ok_or_else(|| {
            PkiError::input("address range", format!("{s:?}: expected ADDRESS/PREFIX"))
        })?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| PkiError::input("address range", format!("{s:?}: bad address")))?;
        let prefix: u8 = p
            .parse()
            .map_err(|_| PkiError::input("address range", format!("{s:?}: bad prefix length")))?;
        Self::new(addr, prefix)
    }
}

/// What a member may do in the group. Unknown roles read from a certificate
/// are kept (`Other`) so that newer issuers do not break older nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// An ordinary member (every certificate normally has it).
    Member,
    /// May announce itself as an Internet gateway (full tunnel).
    Gateway,
    /// May relay other members' ciphertext.
    Relay,
    /// A role this version does not know.
    Other(String),
}

impl Role {
    /// Its name as written in certificates and on the command line.
    pub fn as_str(&self) -> &str {
        match self {
            Role::Member => "member",
            Role::Gateway => "gateway",
            Role::Relay => "relay",
            Role::Other(s) => s,
        }
    }

    /// Parses a role read from a certificate (unknown names are kept).
    pub(crate) fn from_cert(s: String) -> Self {
        match s.as_str() {
            "member" => Role::Member,
            "gateway" => Role::Gateway,
            "relay" => Role::Relay,
            _ => Role::Other(s),
        }
    }

    /// Parses a comma-separated list such as `member,gateway,relay` (only
    /// known roles, no duplicates, not empty).
    pub fn parse_list(s: &str) -> Result<Vec<Role>, PkiError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let r: Role = part.parse()?;
            if out.contains(&r) {
                return Err(PkiError::input("roles", format!("{part:?} given twice")));
            }
            out.push(r);
        }
        Ok(out)
    }
}

impl FromStr for Role {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, PkiError> {
        match s {
            "member" => Ok(Role::Member),
            "gateway" => Ok(Role::Gateway),
            "relay" => Ok(Role::Relay),
            _ => Err(PkiError::input(
                "role",
                format!("{s:?}: known roles are member, gateway, relay"),
            )),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a member gets its virtual address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressAssignment {
    /// Fixed addresses written in the certificate (at most one per family,
    /// each inside the group's range of that family).
    Fixed(Vec<IpAddr>),
    /// The member allocates an address from the group's range(s) at run time
    /// (the DHT-based DHCP of the overlay).
    Allocate,
}

impl AddressAssignment {
    /// Checks the fixed addresses against the group's ranges.
    pub fn check(&self, ranges: &[IpRange]) -> Result<(), PkiError> {
        let AddressAssignment::Fixed(addrs) = self else {
            return Ok(());
        };
        if addrs.is_empty() {
            return Err(PkiError::input(
                "address",
                "no address given (use --allocate to let the node allocate one)",
            ));
        }
        for (i, a) in addrs.iter().enumerate() {
            if addrs[..i].iter().any(|b| b.is_ipv4() == a.is_ipv4()) {
                return Err(PkiError::input(
                    "address",
                    "at most one IPv4 and one IPv6 address",
                ));
            }
            if !ranges.iter().any(|r| r.is_host_address(*a)) {
                return Err(PkiError::AddressOutsideRange {
                    address: *a,
                    ranges: fmt_ranges(ranges),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for AddressAssignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressAssignment::Allocate => f.write_str("allocate from the group range"),
            AddressAssignment::Fixed(a) => {
                let parts: Vec<String> = a.iter().map(ToString::to_string).collect();
                f.write_str(&parts.join(", "))
            }
        }
    }
}

/// `10.77.0.0/24, fd77::/64`.
pub fn fmt_ranges(ranges: &[IpRange]) -> String {
    let parts: Vec<String> = ranges.iter().map(ToString::to_string).collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        validate_group_name("lab-1.example").unwrap();
        validate_node_name("alice@laptop").unwrap();
        for bad in ["", "-x", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(validate_group_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_group_name("a@b").is_err());
    }

    #[test]
    fn ranges() {
        let r: IpRange = "10.77.0.0/24".parse().unwrap();
        assert!(r.contains("10.77.0.255".parse().unwrap()));
        assert!(!r.contains("10.77.1.0".parse().unwrap()));
        assert!(!r.contains("fd77::1".parse().unwrap()));
        assert!(r.is_host_address("10.77.0.5".parse().unwrap()));
        assert!(!r.is_host_address("10.77.0.0".parse().unwrap()));
        assert!(!r.is_host_address("10.77.0.255".parse().unwrap()));
        let err = "10.77.0.1/24".parse::<IpRange>().unwrap_err().to_string();
        assert!(err.contains("did you mean 10.77.0.0/24"), "{err}");
        let r6: IpRange = "fd77::/64".parse().unwrap();
        assert!(r6.is_host_address("fd77::ffff:ffff:ffff:ffff".parse().unwrap()));
        assert!(!r6.contains("fd78::1".parse().unwrap()));
        for bad in ["10.0.0.0", "10.0.0.0/31", "10.0.0.0/0", "x/8", "fd00::/127"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_and_assignments() {
        assert_eq!(
            Role::parse_list("member,gateway").unwrap(),
            vec![Role::Member, Role::Gateway]
        );
        assert!(Role::parse_list("member,member").is_err());
        assert!(Role::parse_list("admin").is_err());
        let ranges = ["10.77.0.0/24".parse().unwrap()];
        let ok = AddressAssignment::Fixed(vec!["10.77.0.5".parse().unwrap()]);
        ok.check(&ranges).unwrap();
        let v6 = AddressAssignment::Fixed(vec!["fd77::5".parse().unwrap()]);
        assert!(matches!(
            v6.check(&ranges),
            Err(PkiError::AddressOutsideRange { .. })
        ));
        let two = AddressAssignment::Fixed(vec![
            "10.77.0.5".parse().unwrap(),
            "10.77.0.6".parse().unwrap(),
        ]);
        assert!(two.check(&ranges).is_err());
    }
}
