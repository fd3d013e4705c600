//! Looking up the owner of a virtual address: the winner of the claims
//! under its key, by the same order the allocators use, so a lookup never
//! names a node that lost a race or let its lease lapse.
//!
//! The overlay reads [`dht_key`](super::dht_key)`(addr)` and passes the
//! verified records to [`owner_of`]; it checks the owner's certificate and
//! caches the answer until [`Owner::expiry`] (or its own TTL).

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
}
