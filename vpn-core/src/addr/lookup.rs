//! Looking up the owner of a virtual address: the winner of the claims
//! under its key, and a small cache with expiry for the daemon.
//!
//! The overlay reads `dht_key(group, addr)` and passes the verified records
//! to [`owner_of`]; the owner's certificate is then fetched and checked by
//! the overlay (the claim only says who holds the address). Entries stay in
//! [`LookupCache`] until the claim's expiry or the cache TTL, whichever is
//! first, so an address that changes hands is seen again after at most the
//! TTL; the daemon also calls [`LookupCache::invalidate`] when a session to
//! the cached owner fails.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::claim::{resolve, Claim, SignedRecord};

/// The holder of an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// PeerId bytes.
    pub peer: Vec<u8>,
    /// The address comes from the holder's certificate.
    pub fixed: bool,
    /// End of the holder's current lease.
    pub expiry: Duration,
}

/// The winning live claim among `records` read under the key of
/// (`group`, `addr`), and the number of records refused (malformed, forged,
/// or for another key).
pub fn owner_of(
    group: &str,
    addr: IpAddr,
    records: &[SignedRecord],
    now: Duration,
) -> (Option<Owner>, usize) {
    let mut refused = 0;
    let claims: Vec<Claim> = records
        .iter()
        .filter_map(|r| {
            Claim::from_record(group, addr, r)
                .map_err(|_| refused += 1)
                .ok()
        })
        .collect();
    let owner = resolve(&claims, now).map(|c| Owner {
        peer: c.owner.clone(),
        fixed: c.fixed,
        expiry: c.expiry,
    });
    (owner, refused)
}

/// Address -> owner, bounded, with expiry.
#[derive(Debug)]
pub struct LookupCache {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<IpAddr, (Owner, Duration)>,
}

impl LookupCache {
    /// Entries live at most `ttl`; at most `capacity` are kept (expired ones
    /// are dropped first, then the ones closest to expiry).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    pub fn insert(&mut self, addr: IpAddr, owner: Owner, now: Duration) {
        let until = owner.expiry.min(now + self.ttl);
        if until <= now {
            self.entries.remove(&addr);
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&addr) {
            self.entries.retain(|_, (_, u)| *u > now);
            if self.entries.len() >= self.capacity {
                if let Some(victim) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(a, _)| *a)
                {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.insert(addr, (owner, until));
    }

    /// The cached owner, if still valid at `now`.
    pub fn get(&self, addr: IpAddr, now: Duration) -> Option<&Owner> {
        self.entries
            .get(&addr)
            .filter(|(_, u)| *u > now)
            .map(|(o, _)| o)
    }

    pub fn invalidate(&mut self, addr: IpAddr) {
        self.entries.remove(&addr);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(owner: u8, since: u64, expiry: u64) -> Claim {
        Claim {
            group: "lab".into(),
            addr: "10.0.0.5".parse().unwrap(),
            owner: vec![owner; 38],
            fixed: false,
            released: false,
            since: Duration::from_secs(since),
            lease_start: Duration::from_secs(since),
            expiry: Duration::from_secs(expiry),
            seq: 1,
        }
    }

    fn rec(c: &Claim) -> SignedRecord {
        SignedRecord {
            owner: c.owner.clone(),
            value: c.encode(),
        }
    }

    #[test]
    fn owner_is_the_winner_and_bad_records_are_counted() {
        let a = claim(1, 100, 700);
        let b = claim(2, 200, 800);
        let forged = SignedRecord {
            owner: vec![3; 38],
            value: a.encode(),
        };
        let garbage = SignedRecord {
            owner: vec![4; 38],
            value: vec![1, 2, 3],
        };
        let recs = [rec(&b), forged, rec(&a), garbage];
        let (o, refused) = owner_of("lab", a.addr, &recs, Duration::from_secs(300));
        assert_eq!(o.unwrap().peer, vec![1; 38]);
        assert_eq!(refused, 2);
        let (o, _) = owner_of("lab", a.addr, &recs, Duration::from_secs(750));
        assert_eq!(o.unwrap().peer, vec![2; 38]);
        let (o, _) = owner_of("lab", a.addr, &recs, Duration::from_secs(900));
        assert!(o.is_none());
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let mut c = LookupCache::new(Duration::from_secs(60), 2);
        let o = |p: u8, e: u64| Owner {
            peer: vec![p],
            fixed: false,
            expiry: Duration::from_secs(e),
        };
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let t = Duration::from_secs(1000);
        c.insert(ip("10.0.0.1"), o(1, 2000), t);
        c.insert(ip("10.0.0.2"), o(2, 1010), t);
        assert_eq!(c.get(ip("10.0.0.1"), t).unwrap().peer, vec![1]);
        // Claim expiry before the TTL.
        assert!(c.get(ip("10.0.0.2"), Duration::from_secs(1010)).is_none());
        // TTL before the claim expiry.
        assert!(c.get(ip("10.0.0.1"), Duration::from_secs(1060)).is_none());
        // Bounded: the entry closest to expiry goes.
        c.insert(ip("10.0.0.3"), o(3, 2000), t);
        assert_eq!(c.len(), 2);
        assert!(c.get(ip("10.0.0.2"), t).is_none());
        c.invalidate(ip("10.0.0.3"));
        assert!(c.get(ip("10.0.0.3"), t).is_none());
        // An already expired claim is not cached.
        c.insert(ip("10.0.0.4"), o(4, 900), t);
        assert!(c.get(ip("10.0.0.4"), t).is_none());
    }
}
