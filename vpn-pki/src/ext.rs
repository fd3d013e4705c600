//! The GroupVPN X.509 extensions and their OIDs (see `docs/pki.md`).
//!
//! OIDs live under `1.3.6.1.4.1.32473`, the private enterprise number that
//! RFC 5612 reserves for documentation. **It is a placeholder arc**: a
//! production deployment should move [`ARC`] to a registered enterprise
//! number. (A UUID-based `2.25.<uuid>` arc would need no registration, but
//! its 128-bit component does not fit rcgen's `u64` OID components.)
//!
//! ```text
//! GroupVpnGroup ::= SEQUENCE {              -- in the CA certificate
//!     version      INTEGER (1),
//!     group        UTF8String,
//!     ranges       SEQUENCE OF IpPrefix }
//! IpPrefix ::= SEQUENCE {
//!     address      OCTET STRING (SIZE (4 | 16)),   -- network address
//!     prefixLength INTEGER (1..128) }
//! GroupVpnMember ::= SEQUENCE {             -- in member certificates
//!     version      INTEGER (1),
//!     group        UTF8String,
//!     name         UTF8String,
//!     address      CHOICE {
//!         fixed    [0] IMPLICIT SEQUENCE OF OCTET STRING (SIZE (4 | 16)),
//!         allocate [1] IMPLICIT NULL },
//!     roles        SEQUENCE OF UTF8String }
//! ```
//! Both extensions are non-critical, so generic X.509 tools (`openssl
//! verify`) accept the certificates; GroupVPN itself requires them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use yasna::{ASN1Error, ASN1ErrorKind, BERReader, Tag};

use crate::group::{AddressAssignment, IpRange, Role};
use crate::PkiError;

/// The placeholder arc: RFC 5612 documentation PEN 32473, sub-arc 7186 ("GV").
pub const ARC: [u64; 8] = [1, 3, 6, 1, 4, 1, 32473, 7186];
/// `1.3.6.1.4.1.32473.7186.1`: group name and address ranges (CA certificate).
pub const OID_GROUP: [u64; 9] = [1, 3, 6, 1, 4, 1, 32473, 7186, 1];
/// `1.3.6.1.4.1.32473.7186.2`: member binding (member certificates).
pub const OID_MEMBER: [u64; 9] = [1, 3, 6, 1, 4, 1, 32473, 7186, 2];

/// Dotted form of an OID.
pub fn dotted(oid: &[u64]) -> String {
    let parts: Vec<String> = oid.iter().map(ToString::to_string).collect();
    parts.join(".")
}

/// The subjectAltName URI that names a PeerId: `libp2p:peer/<PeerId>`.
pub const PEER_URI_PREFIX: &str = "libp2p:peer/";

const VERSION: u64 = 1;

/// Contents of the CA's group extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupExt {
    pub group: String,
    pub ranges: Vec<IpRange>,
}

/// Contents of a member certificate's extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemberExt {
    pub group: String,
    pub name: String,
    pub address: AddressAssignment,
    pub roles: Vec<Role>,
}

fn ip_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn ip_from(b: &[u8]) -> Result<IpAddr, ASN1Error> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        Ok(IpAddr::V4(Ipv4Addr::from(a)))
    } else if let Ok(a) = <[u8; 16]>::try_from(b) {
        Ok(IpAddr::V6(Ipv6Addr::from(a)))
    } else {
        Err(ASN1Error::new(ASN1ErrorKind::Invalid))
    }
}

impl GroupExt {
    pub fn encode(&self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u64(VERSION);
                w.next().write_utf8_string(&self.group);
                w.next().write_sequence_of(|w| {
                    for r in &self.ranges {
                        w.next().write_sequence(|w| {
                            w.next().write_bytes(&ip_bytes(&r.addr()));
                            w.next().write_u8(r.prefix());
                        });
                    }
                });
            });
        })
    }

    pub fn decode(der: &[u8]) -> Result<Self, PkiError> {
        let bad = |e: String| PkiError::malformed("group extension", e);
        let (group, raw) = yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                check_version(r.next())?;
                let group = r.next().read_utf8string()?;
                let mut raw = Vec::new();
                r.next().read_sequence_of(|r| {
                    r.read_sequence(|r| {
                        let a = ip_from(&r.next().read_bytes()?)?;
                        let p = r.next().read_u8()?;
                        raw.push((a, p));
                        Ok(())
                    })
                })?;
                Ok((group, raw))
            })
        })
        .map_err(|e| bad(e.to_string()))?;
        let ranges = raw
            .into_iter()
            .map(|(a, p)| IpRange::new(a, p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self { group, ranges })
    }
}

impl MemberExt {
    pub fn encode(&self) -> Vec<u8> {
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_u64(VERSION);
                w.next().write_utf8_string(&self.group);
                w.next().write_utf8_string(&self.name);
                match &self.address {
                    AddressAssignment::Fixed(addrs) => {
                        w.next().write_tagged_implicit(Tag::context(0), |w| {
                            w.write_sequence_of(|w| {
                                for a in addrs {
                                    w.next().write_bytes(&ip_bytes(a));
                                }
                            });
                        });
                    }
                    AddressAssignment::Allocate => {
                        w.next()
                            .write_tagged_implicit(Tag::context(1), |w| w.write_null());
                    }
                }
                w.next().write_sequence_of(|w| {
                    for r in &self.roles {
                        w.next().write_utf8_string(r.as_str());
                    }
                });
            });
        })
    }

    pub fn decode(der: &[u8]) -> Result<Self, PkiError> {
        yasna::parse_der(der, |r| {
            r.read_sequence(|r| {
                check_version(r.next())?;
                let group = r.next().read_utf8string()?;
                let name = r.next().read_utf8string()?;
                let address = read_address(r.next())?;
                let mut roles = Vec::new();
                r.next().read_sequence_of(|r| {
                    roles.push(Role::from_cert(r.read_utf8string()?));
                    Ok(())
                })?;
                Ok(Self {
                    group,
                    name,
                    address,
                    roles,
                })
            })
        })
        .map_err(|e| PkiError::malformed("member extension", e))
    }
}

fn check_version(r: BERReader<'_, '_>) -> Result<(), ASN1Error> {
    if r.read_u64()? == VERSION {
        Ok(())
    } else {
        Err(ASN1Error::new(ASN1ErrorKind::Invalid))
    }
}

fn read_address(r: BERReader<'_, '_>) -> Result<AddressAssignment, ASN1Error> {
    let tag = r.lookahead_tag()?;
    if tag == Tag::context(0) {
        let mut addrs = Vec::new();
        r.read_tagged_implicit(Tag::context(0), |r| {
            r.read_sequence_of(|r| {
                addrs.push(ip_from(&r.read_bytes()?)?);
                Ok(())
            })
        })?;
        Ok(AddressAssignment::Fixed(addrs))
    } else if tag == Tag::context(1) {
        r.read_tagged_implicit(Tag::context(1), |r| r.read_null())?;
        Ok(AddressAssignment::Allocate)
    } else {
        Err(ASN1Error::new(ASN1ErrorKind::Invalid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_roundtrip() {
        let g = GroupExt {
            group: "lab".into(),
            ranges: vec![
                "10.77.0.0/24".parse().unwrap(),
                "fd77::/64".parse().unwrap(),
            ],
        };
        assert_eq!(GroupExt::decode(&g.encode()).unwrap(), g);
    }

    #[test]
    fn member_roundtrip() {
        for address in [
            AddressAssignment::Allocate,
            AddressAssignment::Fixed(vec![
                "10.77.0.5".parse().unwrap(),
                "fd77::5".parse().unwrap(),
            ]),
        ] {
            let m = MemberExt {
                group: "lab".into(),
                name: "alice".into(),
                address,
                roles: vec![Role::Member, Role::Other("future".into())],
            };
            assert_eq!(MemberExt::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(MemberExt::decode(&[]).is_err());
        assert!(MemberExt::decode(&[0x30, 0x03, 0x02, 0x01, 0x02]).is_err());
        let mut der = GroupExt {
            group: "g".into(),
            ranges: vec![],
        }
        .encode();
        der[4] = 9; // version 9
        assert!(GroupExt::decode(&der).is_err());
        assert!(GroupExt::decode(&[0x30, 0x80]).is_err());
    }
}
