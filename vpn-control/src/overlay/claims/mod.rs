//! Address claims in the private DHT: ONE claim format for allocation and
//! resolution (pure; `now` passed in).
//!
//! The claim itself is `vpn_core::addr::Claim` (group, address, owner,
//! *fixed*/*released* flags, `since`, lease start and expiry, `seq`; format
//! and winner order in `vpn_core::addr::claim`). The overlay wraps it:
//!
//! * **Entry**: an owner-signed record ([`super::record`], kind *address*,
//!   bound to the DHT key `/groupvpn/addr/<address>`, record expiry = the
//!   claim's expiry) whose payload is
//!   `u16 claim_len | claim | owner's member certificate (DER)`, so a reader
//!   can check the owner's certificate without another lookup.
//! * **Set**: the DHT value under that key holds every owner's latest entry:
//!   `"GVCS" | u8 count | count × (u16 len | entry)`. Members that store a
//!   value merge it with what they hold ([`merge`]: per owner the highest
//!   `seq`; expired entries dropped; at most [`MAX_ENTRIES`], best first),
//!   so racing claims meet in one place and every reader sees them all.
//!
//! An entry is believed ([`check_entry`]) only if its signature, key binding
//! and expiry verify, the claim decodes and names the signer as owner for
//! this group and address, the owner's certificate verifies now (CA,
//! validity, group, PeerId, CRL), and the certificate grants the claim: a
//! *fixed* claim for an address written in it, an allocated claim only for
//! a certificate that allocates, inside a group range.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::identity::Keypair;
use libp2p::PeerId;
use vpn_core::addr::{Claim, SignedRecord as CoreRecord};
use vpn_pki::{AddressAssignment, MemberInfo};

use super::ids::address_key;
use super::membership::MemberTable;
use super::record::{sign_record, verify_record, RecordKind, RecordRejection};

/// Most entries kept under one key.
pub const MAX_ENTRIES: usize = 8;
const SET_MAGIC: &[u8; 4] = b"GVCS";

/// A claim entry whose signature, content and owner certificate verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedClaim {
    /// The claim.
    pub claim: Claim,
    /// Its owner (the signer).
    pub owner: PeerId,
    /// The owner's certificate (DER).
    pub cert: Vec<u8>,
    /// The signed entry as stored (for relaying).
    pub entry: Vec<u8>,
}

impl VerifiedClaim {
    /// The claim as the allocator core reads it.
    pub fn core_record(&self) -> CoreRecord {
        CoreRecord {
            owner: self.owner.to_bytes(),
            value: self.claim.encode(),
        }
    }
}

fn unix(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Signs an entry for `claim_value` (an encoded `vpn_core::addr::Claim`)
/// with this node's key and certificate.
pub fn sign_entry(
    addr: IpAddr,
    claim_value: &[u8],
    expires: SystemTime,
    cert: &[u8],
    kp: &Keypair,
) -> Result<Vec<u8>, RecordRejection> {
    let len =
        u16::try_from(claim_value.len()).map_err(|_| RecordRejection::Malformed("claim size"))?;
    let mut payload = Vec::with_capacity(2 + claim_value.len() + cert.len());
    payload.extend_from_slice(&len.to_be_bytes());
    payload.extend_from_slice(claim_value);
    payload.extend_from_slice(cert);
    sign_record(
        &address_key(addr),
        RecordKind::Address,
        &payload,
        expires,
        kp,
    )
}

/// Checks one entry found under the key of `addr` at `now` (see the module
/// docs).
pub fn check_entry(
    addr: IpAddr,
    entry: &[u8],
    members: &MemberTable,
    now: SystemTime,
) -> Result<(VerifiedClaim, MemberInfo), RecordRejection> {
    let rec = verify_record(&address_key(addr), entry, now)?;
    if rec.kind != RecordKind::Address {
        return Err(RecordRejection::Content(format!(
            "record kind {:?} under an address key",
            rec.kind
        )));
    }
    let p = &rec.payload;
    if p.len() < 2 {
        return Err(RecordRejection::Malformed("address claim"));
    }
    let n = usize::from(u16::from_be_bytes([p[0], p[1]]));
    if p.len() < 2 + n + 1 {
        return Err(RecordRejection::Malformed("address claim"));
    }
    let (value, cert) = (&p[2..2 + n], &p[2 + n..]);
    let core = CoreRecord {
        owner: rec.owner.to_bytes(),
        value: value.to_vec(),
    };
    let claim = Claim::from_record(members.group(), addr, &core)
        .map_err(|e| RecordRejection::Content(format!("claim: {e}")))?;
    let info = members
        .check(&rec.owner, cert, now)
        .map_err(|e| RecordRejection::Content(format!("owner {} certificate: {e}", rec.owner)))?;
    match (&info.address, claim.fixed) {
        (AddressAssignment::Fixed(a), true) if a.contains(&addr) => {}
        (AddressAssignment::Allocate, false) if members.in_range(addr) => {}
        _ => {
            return Err(RecordRejection::Content(format!(
                "certificate of {} does not grant {} claim for {addr}",
                rec.owner,
                if claim.fixed {
                    "a fixed"
                } else {
                    "an allocated"
                }
            )))
        }
    }
    Ok((
        VerifiedClaim {
            claim,
            owner: rec.owner,
            cert: cert.to_vec(),
            entry: entry.to_vec(),
        },
        info,
    ))
}

/// Encodes a set of entries (at most [`MAX_ENTRIES`] are written).
pub fn encode_set<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    let mut n = 0u8;
    for e in entries.into_iter().take(MAX_ENTRIES) {
        let Ok(len) = u16::try_from(e.len()) else {
            continue;
        };
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(e);
        n += 1;
    }
    let mut out = Vec::with_capacity(5 + body.len());
    out.extend_from_slice(SET_MAGIC);
    out.push(n);
    out.extend_from_slice(&body);
    out
}

/// Splits a set into its entries (unchecked).
pub fn decode_set(b: &[u8]) -> Result<Vec<&[u8]>, RecordRejection> {
    let bad = RecordRejection::Malformed("claim set");
    if b.len() < 5 || &b[..4] != SET_MAGIC {
        return Err(bad);
    }
    let n = usize::from(b[4]);
    if n > MAX_ENTRIES {
        return Err(bad);
    }
    let mut rest = &b[5..];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if rest.len() < 2 {
            return Err(bad);
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if rest.len() < 2 + len {
            return Err(bad);
        }
        out.push(&rest[2..2 + len]);
        rest = &rest[2 + len..];
    }
    if !rest.is_empty() {
        return Err(bad);
    }
    Ok(out)
}

/// Checks every entry of the set `value` found under the key of `addr`;
/// returns the verified claims and the rejections.
pub fn check_set(
    addr: IpAddr,
    value: &[u8],
    members: &MemberTable,
    now: SystemTime,
) -> (Vec<VerifiedClaim>, Vec<RecordRejection>) {
    let entries = match decode_set(value) {
        Ok(e) => e,
        Err(r) => return (Vec::new(), vec![r]),
    };
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for e in entries {
        match check_entry(addr, e, members, now) {
            Ok((c, _)) => ok.push(c),
            Err(r) => bad.push(r),
        }
    }
    (ok, bad)
}

/// Merges claims: per owner the one with the highest (`seq`, expiry);
/// expired ones dropped; live claims in winner order first, then
/// tombstones; at most [`MAX_ENTRIES`].
pub fn merge(
    claims: impl IntoIterator<Item = VerifiedClaim>,
    now: SystemTime,
) -> Vec<VerifiedClaim> {
    let now = unix(now);
    let mut by_owner: Vec<VerifiedClaim> = Vec::new();
    for c in claims {
        if c.claim.expiry <= now {
            continue;
        }
        match by_owner.iter_mut().find(|x| x.owner == c.owner) {
            Some(x) => {
                if (c.claim.seq, c.claim.expiry) > (x.claim.seq, x.claim.expiry) {
                    *x = c;
                }
            }
            None => by_owner.push(c),
        }
    }
    by_owner.sort_by(|a, b| {
        b.claim
            .is_live(now)
            .cmp(&a.claim.is_live(now))
            .then_with(|| a.claim.rank(&b.claim))
    });
    by_owner.truncate(MAX_ENTRIES);
    by_owner
}

/// The winning live claim at `now` (the same order the allocators use).
pub fn winner(claims: &[VerifiedClaim], now: SystemTime) -> Option<&VerifiedClaim> {
    let now = unix(now);
    let refs: Vec<&Claim> = claims.iter().map(|c| &c.claim).collect();
    let w = vpn_core::addr::resolve(refs.iter().copied(), now)?;
    claims
        .iter()
        .find(|c| c.owner.to_bytes() == w.owner && c.claim == *w)
}

/// When the claims of a set run out (the latest expiry), for the DHT
/// record's own expiry.
pub fn set_expiry(claims: &[VerifiedClaim]) -> Option<SystemTime> {
    claims.iter().map(|c| UNIX_EPOCH + c.claim.expiry).max()
}

#[cfg(test)]
mod tests;
