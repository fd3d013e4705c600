//! Resolution of virtual addresses (the winning live claim in the private
//! DHT, see [`super::claims`]) and the resolution cache (pure; time passed
//! in).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use vpn_pki::{MemberCert, MemberInfo};

use super::claims::VerifiedClaim;

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
    /// When the claim expires (the end of its current lease).
    pub expires: SystemTime,
    /// The address comes from the owner's certificate.
    pub fixed: bool,
}

impl Resolved {
    /// The resolution a winning claim gives.
    pub fn from_claim(c: &VerifiedClaim) -> Result<Self, vpn_pki::PkiError> {
        let info = MemberCert::from_der(&c.cert)?.info().clone();
        Ok(Self {
            addr: c.claim.addr,
            peer: c.owner,
            cert: c.cert.clone(),
            info,
            expires: UNIX_EPOCH + c.claim.expiry,
            fixed: c.claim.fixed,
        })
    }
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

    /// Drops the entries of `peer` except for `keep` (addresses it still
    /// announces).
    pub fn forget_peer_except(&mut self, peer: &PeerId, keep: &[IpAddr]) {
        self.entries
            .retain(|a, (r, _)| r.peer != *peer || keep.contains(a));
    }

    /// Drops the entry of `addr` (its claims changed).
    pub fn forget_addr(&mut self, addr: IpAddr) {
        self.entries.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use vpn_core::addr::Claim;
    use vpn_pki::{AddressAssignment, GroupCa, NodeIdentity, RevocationReason, RevokedEntry};

    use super::*;
    use crate::overlay::claims::{check_entry, sign_entry};
    use crate::overlay::ids::{from_pki_peer, keypair_of};
    use crate::overlay::membership::MemberTable;
    use crate::overlay::test_fixtures::{a, ca, issue, t0, DAY};

    fn table(ca: &GroupCa) -> MemberTable {
        MemberTable::new("lab".into(), ca.certificate().clone(), None)
    }

    fn resolved(lease: Duration) -> Resolved {
        let ca = ca();
        let id = NodeIdentity::generate();
        let addr = a("10.77.0.5");
        let cert = issue(&ca, &id, AddressAssignment::Fixed(vec![addr]), 30 * DAY);
        let start = t0().duration_since(UNIX_EPOCH).unwrap();
        let c = Claim {
            group: "lab".into(),
            addr,
            owner: from_pki_peer(&id.peer_id()).to_bytes(),
            fixed: true,
            released: false,
            since: start,
            lease_start: start,
            expiry: start + lease,
            seq: 1,
        };
        let e = sign_entry(addr, &c.encode(), t0() + lease, &cert, &keypair_of(&id)).unwrap();
        let (v, _) = check_entry(addr, &e, &table(&ca), t0()).unwrap();
        let r = Resolved::from_claim(&v).unwrap();
        assert_eq!(r.peer, from_pki_peer(&id.peer_id()));
        assert_eq!(r.cert, cert);
        assert!(r.fixed);
        assert_eq!(r.expires, t0() + lease);
        r
    }

    #[test]
    fn cache_expires_and_forgets() {
        let r = resolved(Duration::from_secs(100));
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
        c.insert(r.clone(), t0(), Duration::from_secs(10));
        c.forget_peer_except(&r.peer, &[a("10.77.0.5")]);
        assert!(c.get(a("10.77.0.5"), t0()).is_some());
        c.forget_peer_except(&r.peer, &[]);
        assert!(c.get(a("10.77.0.5"), t0()).is_none());
        c.insert(r.clone(), t0(), Duration::from_secs(10));
        c.forget_addr(a("10.77.0.5"));
        assert!(c.get(a("10.77.0.5"), t0()).is_none());
    }

    #[test]
    fn member_table_admits_rechecks_and_revokes() {
        let ca = ca();
        let id = NodeIdentity::generate();
        let peer = from_pki_peer(&id.peer_id());
        let cert = issue(
            &ca,
            &id,
            AddressAssignment::Fixed(vec![a("10.77.0.5")]),
            DAY,
        );
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
        // Ranges.
        assert!(t.in_range(a("10.77.0.9")));
        assert!(!t.in_range(a("10.77.0.0")) && !t.in_range(a("10.78.0.1")));
    }
}
