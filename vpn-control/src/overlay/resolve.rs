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
