//! Value types of the configuration file with their own parsers, so that a
//! bad value is reported at its key path by the deserializer.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer};

use crate::dataplane::Prefix;

/// A 32-byte symmetric key given as 64 hex digits. Debug never prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexKey(pub [u8; 32]);

impl fmt::Debug for HexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HexKey(..)")
    }
}

impl FromStr for HexKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(format!("expected 64 hex digits, got {}", s.len()));
        }
        let mut key = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = hex_digit(pair[0]);
            let lo = hex_digit(pair[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => key[i] = (h << 4) | l,
                _ => {
                    let bad = if hi.is_none() { pair[0] } else { pair[1] };
                    return Err(format!(
                        "expected 64 hex digits, found {:?} at position {}",
                        bad as char,
                        2 * i + usize::from(hi.is_some())
                    ));
                }
            }
        }
        if key == [0u8; 32] {
            return Err("the all-zero key is not allowed".into());
        }
        Ok(HexKey(key))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// An interface address with its prefix length (`10.77.0.1/24`); host bits allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterfaceAddress {
    pub addr: IpAddr,
    pub len: u8,
}

impl InterfaceAddress {
    /// The connected prefix (host bits cleared).
    pub fn network(&self) -> Prefix {
        Prefix {
            addr: mask(self.addr, self.len),
            len: self.len,
        }
    }
}

impl fmt::Display for InterfaceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for InterfaceAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, len) = split_cidr(s)?;
        if addr.is_unspecified() || addr.is_multicast() {
            return Err(format!("{addr} cannot be an interface address"));
        }
        Ok(InterfaceAddress { addr, len })
    }
}

/// Parses an allowed-IPs prefix; host bits must be zero.
pub fn parse_prefix(s: &str) -> Result<Prefix, String> {
    let (addr, len) = split_cidr(s)?;
    let net = mask(addr, len);
    if net != addr {
        return Err(format!(
            "{s:?} has host bits set (did you mean \"{net}/{len}\"?)"
        ));
    }
    Ok(Prefix { addr, len })
}

fn split_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let s = s.trim();
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX_LENGTH"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len: u8 = l
        .parse()
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| format!("prefix length {l:?} is not in 0..={max}"))?;
    Ok((addr, len))
}

/// Clears the host bits of `addr` beyond `len`.
pub fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Whether `p` contains address `a`.
pub fn prefix_contains(p: &Prefix, a: IpAddr) -> bool {
    p.addr.is_ipv4() == a.is_ipv4() && mask(a, p.len) == p.addr
}

/// Whether prefix `outer` covers all of prefix `inner`.
pub fn prefix_covers(outer: &Prefix, inner: &Prefix) -> bool {
    outer.len <= inner.len && prefix_contains(outer, inner.addr)
}

/// Deserializes any `FromStr` value given as a TOML string.
pub struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr<Err = String>,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map(Parsed).map_err(de::Error::custom)
    }
}

/// A prefix as a deserializable value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllowedPrefix(pub Prefix);

impl FromStr for AllowedPrefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_prefix(s).map(AllowedPrefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let k: HexKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1F"
            .parse()
            .unwrap();
        assert_eq!(k.0[1], 1);
        assert_eq!(k.0[31], 0x1f);
        assert_eq!(
            "abc".parse::<HexKey>().unwrap_err(),
            "expected 64 hex digits, got 3"
        );
        let bad = format!("{}zz", "0".repeat(62));
        assert!(bad.parse::<HexKey>().unwrap_err().contains("'z'"));
        assert!("0"
            .repeat(64)
            .parse::<HexKey>()
            .unwrap_err()
            .contains("all-zero"));
        assert_eq!(format!("{k:?}"), "HexKey(..)");
    }

    #[test]
    fn prefixes() {
        let p = parse_prefix("10.77.0.0/24").unwrap();
        assert!(prefix_contains(&p, "10.77.0.9".parse().unwrap()));
        assert!(!prefix_contains(&p, "10.77.1.9".parse().unwrap()));
        assert!(!prefix_contains(&p, "fd77::1".parse().unwrap()));
        assert!(parse_prefix("10.77.0.1/24")
            .unwrap_err()
            .contains("10.77.0.0/24"));
        assert!(parse_prefix("10.77.0.1/33").is_err());
        assert!(parse_prefix("10.77.0.1").is_err());
        assert!(parse_prefix("fd77::/16").is_ok());
        assert!(parse_prefix("0.0.0.0/0").is_ok());
        let a: InterfaceAddress = "fd77::1/64".parse().unwrap();
        assert_eq!(a.network(), parse_prefix("fd77::/64").unwrap());
        assert!(prefix_covers(
            &a.network(),
            &parse_prefix("fd77::2/128").unwrap()
        ));
        assert!("0.0.0.0/8".parse::<InterfaceAddress>().is_err());
    }
}
