//! Address claims in the private DHT and their resolution (pure; time passed
//! in), plus the resolution cache.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use libp2p::identity::Keypair;
use libp2p::PeerId;
use vpn_pki::{AddressAssignment, MemberInfo};

use super::ids::address_key;
use super::membership::MemberTable;
use super::record::{sign_record, verify_record, RecordKind, RecordRejection};

/// An address claim: "virtual address `addr` is mine; here is my
/// certificate". Payload encoding: `u8 family (4|6) | address bytes |
/// certificate DER`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressClaim {
    /// The claimed virtual address.
    pub addr: IpAddr,
    /// The owner's member certificate (DER).
    pub cert: Vec<u8>,
}

impl AddressClaim {
    /// Payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17 + self.cert.len());
        match self.addr {
            IpAddr::V4(a) => {
                v.push(4);
                v.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                v.push(6);
                v.extend_from_slice(&a.octets());
            }
        }
        v.extend_from_slice(&self.cert);
        v
    }

    /// Parses payload bytes.
    pub fn decode(b: &[u8]) -> Result<Self, RecordRejection> {
        let bad = RecordRejection::Malformed("address claim");
        let (addr, rest) = match b.first() {
            Some(4) if b.len() >= 5 => {
                let o: [u8; 4] = b[1..5].try_into().map_err(|_| bad.clone())?;
                (IpAddr::V4(Ipv4Addr::from(o)), &b[5..])
            }
            Some(6) if b.len() >= 17 => {
                let o: [u8; 16] = b[1..17].try_into().map_err(|_| bad.clone())?;
                (IpAddr::V6(Ipv6Addr::from(o)), &b[17..])
            }
            _ => return Err(bad),
        };
        if rest.is_empty() {
            return Err(bad);
        }
        Ok(Self {
            addr,
            cert: rest.to_vec(),
        })
    }

    /// Signs the claim as a DHT record value valid until `expires`.
    pub fn sign(&self, expires: SystemTime, kp: &Keypair) -> Result<Vec<u8>, RecordRejection> {
        sign_record(
            &address_key(self.addr),
            RecordKind::Address,
            &self.encode(),
            expires,
            kp,
        )
    }
}

/// A resolved virtual address.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The address.
    pub addr: IpAddr,
    /// Its owner.
    pub peer: PeerId,
    /// The owner's certificate (DER), verified.
    pub cert: Vec<u8>,
    /// What the certificate proves.
    pub info: MemberInfo,
    /// When the claim expires.
    pub expires: SystemTime,
}

/// Checks a record value found under the private DHT key of `addr` at
/// `now`: an owner-signed, unexpired address claim for `addr`, whose
/// certificate verifies (CA, validity, group, CRL) for the record's owner,
/// and which grants the address (fixed in the certificate, or inside the
/// group range for certificates that allocate).
pub fn check_address_record(
    addr: IpAddr,
    value: &[u8],
    members: &MemberTable,
    now: SystemTime,
) -> Result<Resolved, RecordRejection> {
    let rec = verify_record(&address_key(addr), value, now)?;
    if rec.kind != RecordKind::Address {
        return Err(RecordRejection::Content(format!(
            "record kind {:?} under an address key",
            rec.kind
        )));
    }
    let claim = AddressClaim::decode(&rec.payload)?;
    if claim.addr != addr {
        return Err(RecordRejection::Content(format!(
            "claim for {} under the key of {addr}",
            claim.addr
        )));
    }
    let info = members
        .check(&rec.owner, &claim.cert, now)
        .map_err(|e| RecordRejection::Content(format!("owner {} certificate: {e}", rec.owner)))?;
    match &info.address {
        AddressAssignment::Fixed(a) if a.contains(&addr) => {}
        AddressAssignment::Fixed(_) => {
            return Err(RecordRejection::Content(format!(
                "certificate of {} does not grant {addr}",
                rec.owner
            )))
        }
        // Allocating members: the certificate check above already confirmed
        // group membership; range checks belong to the allocator.
        AddressAssignment::Allocate => {}
    }
    Ok(Resolved {
        addr,
        peer: rec.owner,
        cert: claim.cert,
        info,
        expires: rec.expires,
    })
}

/// Resolution cache: entries live until the claim expires or `ttl` passes,
/// whichever comes first.
#[derive(Debug, Default)]
pub struct ResolveCache {
    entries: HashMap<IpAddr, (Resolved, SystemTime)>,
}

impl ResolveCache {
    /// Caches `r` at `now` for at most `ttl`.
    pub fn insert(&mut self, r: Resolved, now: SystemTime, ttl: Duration) {
        let until = r.expires.min(now + ttl);
        self.entries.insert(r.addr, (r, until));
    }

    /// A fresh entry for `addr` at `now` (stale entries are dropped).
    pub fn get(&mut self, addr: IpAddr, now: SystemTime) -> Option<Resolved> {
        match self.entries.get(&addr) {
            Some((r, until)) if now < *until => Some(r.clone()),
            Some(_) => {
                self.entries.remove(&addr);
                None
            }
            None => None,
        }
    }

    /// Drops every entry owned by `peer` (revocation, expiry).
    pub fn forget_peer(&mut self, peer: &PeerId) {
        self.entries.retain(|_, (r, _)| r.peer != *peer);
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use vpn_pki::{
        CaParams, CertProfile, GroupCa, NodeIdentity, RevocationReason, RevokedEntry, Role,
    };

    use super::*;
    use crate::overlay::ids::{from_pki_peer, keypair_of};

    const DAY: Duration = Duration::from_secs(86_400);

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    fn ca(group: &str) -> GroupCa {
        GroupCa::init(
            &CaParams {
                group: group.into(),
                ranges: vec!["10.77.0.0/24".parse().unwrap()],
                validity: 365 * DAY,
            },
            t0(),
        )
        .unwrap()
    }

    fn a(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn issue(ca: &GroupCa, id: &NodeIdentity, addr: IpAddr, validity: Duration) -> Vec<u8> {
        ca.issue(
            &id.public_key(),
            &CertProfile {
                name: "n1".into(),
                address: AddressAssignment::Fixed(vec![addr]),
                roles: vec![Role::Member],
                validity,
            },
            t0(),
        )
        .unwrap()
        .der()
        .to_vec()
    }

    fn claim(addr: IpAddr, cert: &[u8], signer: &NodeIdentity, expires: SystemTime) -> Vec<u8> {
        AddressClaim {
            addr,
            cert: cert.to_vec(),
        }
        .sign(expires, &keypair_of(signer))
        .unwrap()
    }

    fn table(ca: &GroupCa) -> MemberTable {
        MemberTable::new("lab".into(), ca.certificate().clone(), None)
    }

    #[test]
    fn valid_claim_resolves_to_owner() {
        let ca = ca("lab");
        let id = NodeIdentity::generate();
        let cert = issue(&ca, &id, a("10.77.0.5"), 30 * DAY);
        let v = claim(a("10.77.0.5"), &cert, &id, t0() + DAY);
        let r = check_address_record(
            a("10.77.0.5"),
            &v,
            &table(&ca),
            t0() + Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(r.peer, from_pki_peer(&id.peer_id()));
        assert_eq!(r.cert, cert);
        assert_eq!(r.expires, t0() + DAY);
    }

    #[test]
    fn claims_that_do_not_fit_are_refused() {
        let ca = ca("lab");
        let id = NodeIdentity::generate();
        let now = t0() + Duration::from_secs(60);
        let cert = issue(&ca, &id, a("10.77.0.5"), 30 * DAY);
        let t = table(&ca);
        // Under another address's key (replay).
        let v = claim(a("10.77.0.5"), &cert, &id, t0() + DAY);
        assert!(matches!(
            check_address_record(a("10.77.0.6"), &v, &t, now),
            Err(RecordRejection::Forged(_))
        ));
        // An address the certificate does not grant.
        let v = claim(a("10.77.0.6"), &cert, &id, t0() + DAY);
        assert!(matches!(
            check_address_record(a("10.77.0.6"), &v, &t, now),
            Err(RecordRejection::Content(_))
        ));
        // Someone else's certificate, signed by the thief.
        let thief = NodeIdentity::generate();
        let v = claim(a("10.77.0.5"), &cert, &thief, t0() + DAY);
        assert!(matches!(
            check_address_record(a("10.77.0.5"), &v, &t, now),
            Err(RecordRejection::Content(_))
        ));
        // A certificate from another CA of the same group name.
        let other = self::ca("lab");
        let foreign = issue(&other, &id, a("10.77.0.5"), 30 * DAY);
        let v = claim(a("10.77.0.5"), &foreign, &id, t0() + DAY);
        assert!(matches!(
            check_address_record(a("10.77.0.5"), &v, &t, now),
            Err(RecordRejection::Content(_))
        ));
        // An expired claim.
        let v = claim(a("10.77.0.5"), &cert, &id, t0() + DAY);
        assert!(matches!(
            check_address_record(a("10.77.0.5"), &v, &t, t0() + 2 * DAY),
            Err(RecordRejection::Expired(_))
        ));
        // A live claim whose certificate has expired.
        let short = issue(&ca, &id, a("10.77.0.5"), DAY);
        let v = claim(a("10.77.0.5"), &short, &id, t0() + 10 * DAY);
        assert!(matches!(
            check_address_record(a("10.77.0.5"), &v, &t, t0() + 2 * DAY),
            Err(RecordRejection::Content(_))
        ));
        // Garbage.
        assert!(check_address_record(a("10.77.0.5"), b"\x01\x01garbage", &t, now).is_err());
    }

    #[test]
    fn claim_payload_roundtrip() {
        for addr in [a("10.77.0.5"), a("fd77::5")] {
            let c = AddressClaim {
                addr,
                cert: vec![1, 2, 3],
            };
            assert_eq!(AddressClaim::decode(&c.encode()).unwrap(), c);
        }
        assert!(AddressClaim::decode(&[4, 10, 77, 0, 5]).is_err()); // no certificate
        assert!(AddressClaim::decode(&[5, 10, 77, 0, 5, 1]).is_err());
        assert!(AddressClaim::decode(&[]).is_err());
    }

    #[test]
    fn cache_expires_and_forgets() {
        let ca = ca("lab");
        let id = NodeIdentity::generate();
        let cert = issue(&ca, &id, a("10.77.0.5"), 30 * DAY);
        let v = claim(a("10.77.0.5"), &cert, &id, t0() + Duration::from_secs(100));
        let r = check_address_record(a("10.77.0.5"), &v, &table(&ca), t0()).unwrap();
        let mut c = ResolveCache::default();
        // The claim's expiry bounds the TTL.
        c.insert(r.clone(), t0(), Duration::from_secs(1000));
        assert!(c
            .get(a("10.77.0.5"), t0() + Duration::from_secs(99))
            .is_some());
        assert!(c
            .get(a("10.77.0.5"), t0() + Duration::from_secs(100))
            .is_none());
        // The TTL bounds the claim's expiry.
        c.insert(r.clone(), t0(), Duration::from_secs(10));
        assert!(c
            .get(a("10.77.0.5"), t0() + Duration::from_secs(10))
            .is_none());
        c.insert(r.clone(), t0(), Duration::from_secs(10));
        c.forget_peer(&r.peer);
        assert!(c.get(a("10.77.0.5"), t0()).is_none());
    }

    #[test]
    fn member_table_admits_rechecks_and_revokes() {
        let ca = ca("lab");
        let id = NodeIdentity::generate();
        let peer = from_pki_peer(&id.peer_id());
        let cert = issue(&ca, &id, a("10.77.0.5"), DAY);
        let mut t = table(&ca);
        // Stolen: presented on another peer's connection.
        let thief = from_pki_peer(&NodeIdentity::generate().peer_id());
        assert!(matches!(
            t.admit(thief, &cert, t0()),
            Err(vpn_pki::PkiError::PeerMismatch { .. })
        ));
        assert!(t.admit(peer, &cert, t0()).unwrap());
        assert!(!t.admit(peer, &cert, t0()).unwrap());
        assert!(t.is_member(&peer) && !t.is_member(&thief));
        assert!(t.recheck(t0() + Duration::from_secs(60)).is_empty());
        // Expiry.
        let gone = t.recheck(t0() + 2 * DAY);
        assert_eq!(gone.len(), 1);
        assert!(matches!(gone[0].1, vpn_pki::PkiError::Expired { .. }));
        assert!(!t.is_member(&peer));
        // Revocation through a newer CRL.
        assert!(t.admit(peer, &cert, t0()).unwrap());
        let info = vpn_pki::MemberCert::from_der(&cert).unwrap().info().clone();
        let crl1 = ca.sign_crl(&[], 1, t0(), DAY).unwrap();
        t.set_crl(crl1.clone(), t0()).unwrap();
        assert!(t.recheck(t0()).is_empty());
        let crl2 = ca
            .sign_crl(
                &[RevokedEntry {
                    serial: info.serial.clone(),
                    revoked_at: t0(),
                    reason: RevocationReason::KeyCompromise,
                }],
                2,
                t0(),
                DAY,
            )
            .unwrap();
        t.set_crl(crl2, t0()).unwrap();
        // Rollback to the older CRL is refused.
        assert!(t.set_crl(crl1, t0()).is_err());
        let gone = t.recheck(t0());
        assert!(matches!(gone[0].1, vpn_pki::PkiError::Revoked { .. }));
        assert!(t.admit(peer, &cert, t0()).is_err());
    }
}
