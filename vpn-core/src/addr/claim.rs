//! Address claims: the record a node stores in the private DHT to hold a
//! virtual address, its binary format, and the total order that decides
//! between competing claims.
//!
//! # Wire format (version 1)
//!
//! All integers big-endian; the whole value must be consumed (no trailing
//! bytes), and every length is checked before it is used.
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `GVAC` |
//! | 1 | version, `1` |
//! | 1 | flags: bit 0 *fixed* (address from the owner's certificate), bit 1 *released* (tombstone); other bits must be 0 |
//! | 1 | address family: `4` or `6` |
//! | 1 | group name length `g`, 1..=64 |
//! | g | group name (UTF-8) |
//! | 4 or 16 | the address |
//! | 1 | owner length `o`, 1..=128 |
//! | o | owner PeerId bytes (`PeerId::to_bytes()`) |
//! | 8 | `since`: ms since the UNIX epoch when the owner started holding the address (kept across renewals) |
//! | 8 | `lease_start`: ms since the UNIX epoch |
//! | 8 | `expiry`: ms since the UNIX epoch, `since <= lease_start < expiry <= lease_start + 24 h` |
//! | 8 | `seq`: claim sequence of this owner for this address; a higher one replaces a lower one |
//!
//! The record is signed by its owner in the overlay layer; the core only
//! takes claims whose signer ([`SignedRecord::owner`]) equals the owner
//! written in the claim, for the group and address of the key it read.
//!
//! # Which claim wins
//!
//! From the claims seen under one key, every node computes the same winner
//! ([`resolve`]):
//!
//! 1. per owner only the claim with the highest `seq` counts (so a
//!    tombstone hides its owner's older claim);
//! 2. released (tombstone) and expired (`expiry <= now`) claims never win;
//! 3. a *fixed* claim beats an allocated one;
//! 4. then the earliest `since` wins (the incumbent keeps its address);
//! 5. then the lowest tie-breaker `SHA-256(label, address, owner)`. The
//!    tie-breaker is derived from the signed owner rather than carried as a
//!    free field, so a claimant cannot pick a winning value, and mixing in
//!    the address keeps one node from winning (or losing) every race.
//!
//! Steps 3–5 use only the claims' contents, so nodes that see the same set
//! agree; `now` only filters expiry, where clocks may differ by their skew
//! (leases are renewed long before they end, so this only matters for dead
//! owners).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ring::digest;

/// Current claim format version.
pub const CLAIM_VERSION: u8 = 1;
/// Longest lease the format accepts.
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// Longest group name (as in the group certificate).
pub const MAX_GROUP_LEN: usize = 64;
/// Longest owner PeerId encoding.
pub const MAX_OWNER_LEN: usize = 128;

const MAGIC: &[u8; 4] = b"GVAC";
const FLAG_FIXED: u8 = 1;
const FLAG_RELEASED: u8 = 2;

/// Why a claim value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("claim truncated: needed {needed} more bytes for {field}")]
    Truncated { field: &'static str, needed: usize },
    #[error("not an address claim (bad magic)")]
    Magic,
    #[error("unsupported claim version {0}")]
    Version(u8),
    #[error("unknown claim flags {0:#04x}")]
    Flags(u8),
    #[error("bad address family {0}")]
    Family(u8),
    #[error("bad {field} length {len}")]
    Length { field: &'static str, len: usize },
    #[error("group name is not UTF-8")]
    GroupUtf8,
    #[error("{0} trailing bytes after the claim")]
    Trailing(usize),
    #[error("inconsistent lease times (need since <= start < expiry <= start + 24 h)")]
    Times,
    #[error("claim owner differs from the record's signer")]
    OwnerMismatch,
    #[error("claim is for another group or address than the key read")]
    KeyMismatch,
}

/// A claim on one virtual address (see the module docs for the format).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    pub group: String,
    pub addr: IpAddr,
    /// Owner PeerId bytes.
    pub owner: Vec<u8>,
    /// The address comes from the owner's certificate.
    pub fixed: bool,
    /// Tombstone: the owner gave the address up.
    pub released: bool,
    /// When the owner started holding the address (UNIX time, ms precision).
    pub since: Duration,
    pub lease_start: Duration,
    pub expiry: Duration,
    pub seq: u64,
}

/// A DHT record whose signature the overlay layer has checked: the signer's
/// PeerId bytes and the signed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRecord {
    pub owner: Vec<u8>,
    pub value: Vec<u8>,
}

/// The DHT key of the claims on `addr`: `/groupvpn/addr/<address>` (address
/// in its usual text form), the key `vpn-control`'s overlay uses for address
/// records (`overlay::ids::address_key`). The private DHT is per group, so
/// the group is not in the key; it is in the claim and checked on read.
pub fn dht_key(addr: IpAddr) -> Vec<u8> {
    format!("/groupvpn/addr/{addr}").into_bytes()
}

/// Truncates to whole milliseconds (the format's precision).
pub(crate) fn ms(d: Duration) -> Duration {
    Duration::from_millis(as_ms(d))
}

fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Claim {
    /// Whether the claim can win at `now`: not a tombstone, not expired.
    pub fn is_live(&self, now: Duration) -> bool {
        !self.released && self.expiry > now
    }

    /// The tie-breaker: SHA-256 over a label, the address and the owner.
    pub fn tiebreak(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"groupvpn addr tiebreak v1");
        match self.addr {
            IpAddr::V4(a) => ctx.update(&a.octets()),
            IpAddr::V6(a) => ctx.update(&a.octets()),
        }
        ctx.update(&self.owner);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// The total order of live claims: `Less` means `self` wins over `other`.
    pub fn rank(&self, other: &Claim) -> Ordering {
        other
            .fixed
            .cmp(&self.fixed)
            .then(self.since.cmp(&other.since))
            .then_with(|| self.tiebreak().cmp(&other.tiebreak()))
            .then(other.seq.cmp(&self.seq))
    }

    /// Encodes the claim (version 1). Panics never; fields out of the
    /// format's limits make [`Claim::decode`] refuse the result, so the
    /// allocator only builds valid claims.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.group.len() + self.owner.len());
        out.extend_from_slice(MAGIC);
        out.push(CLAIM_VERSION);
        let mut flags = 0;
        if self.fixed {
            flags |= FLAG_FIXED;
        }
        if self.released {
            flags |= FLAG_RELEASED;
        }
        out.push(flags);
        out.push(if self.addr.is_ipv4() { 4 } else { 6 });
        out.push(u8::try_from(self.group.len()).unwrap_or(0));
        out.extend_from_slice(self.group.as_bytes());
        match self.addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
        out.push(u8::try_from(self.owner.len()).unwrap_or(0));
        out.extend_from_slice(&self.owner);
        for t in [self.since, self.lease_start, self.expiry] {
            out.extend_from_slice(&as_ms(t).to_be_bytes());
        }
        out.extend_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Decodes and checks a claim value.
    pub fn decode(bytes: &[u8]) -> Result<Claim, ClaimError> {
        let mut r = Reader(bytes);
        if r.take(4, "magic")? != MAGIC {
            return Err(ClaimError::Magic);
        }
        let version = r.u8("version")?;
        if version != CLAIM_VERSION {
            return Err(ClaimError::Version(version));
        }
        let flags = r.u8("flags")?;
        if flags & !(FLAG_FIXED | FLAG_RELEASED) != 0 {
            return Err(ClaimError::Flags(flags));
        }
        let family = r.u8("family")?;
        if family != 4 && family != 6 {
            return Err(ClaimError::Family(family));
        }
        let glen = usize::from(r.u8("group length")?);
        if glen == 0 || glen > MAX_GROUP_LEN {
            return Err(ClaimError::Length {
                field: "group",
                len: glen,
            });
        }
        let group = std::str::from_utf8(r.take(glen, "group")?)
            .map_err(|_| ClaimError::GroupUtf8)?
            .to_owned();
        let addr = if family == 4 {
            let mut a = [0u8; 4];
            a.copy_from_slice(r.take(4, "address")?);
            IpAddr::V4(Ipv4Addr::from(a))
        } else {
            let mut a = [0u8; 16];
            a.copy_from_slice(r.take(16, "address")?);
            IpAddr::V6(Ipv6Addr::from(a))
        };
        let olen = usize::from(r.u8("owner length")?);
        if olen == 0 || olen > MAX_OWNER_LEN {
            return Err(ClaimError::Length {
                field: "owner",
                len: olen,
            });
        }
        let owner = r.take(olen, "owner")?.to_vec();
        let since = Duration::from_millis(r.u64("since")?);
        let lease_start = Duration::from_millis(r.u64("lease start")?);
        let expiry = Duration::from_millis(r.u64("expiry")?);
        let seq = r.u64("seq")?;
        if !r.0.is_empty() {
            return Err(ClaimError::Trailing(r.0.len()));
        }
        let lease_ok = expiry
            .checked_sub(lease_start)
            .is_some_and(|l| !l.is_zero() && l <= MAX_LEASE);
        if since > lease_start || !lease_ok {
            return Err(ClaimError::Times);
        }
        Ok(Claim {
            group,
            addr,
            owner,
            fixed: flags & FLAG_FIXED != 0,
            released: flags & FLAG_RELEASED != 0,
            since,
            lease_start,
            expiry,
            seq,
        })
    }

    /// Decodes a signed record read under the key of (`group`, `addr`) and
    /// checks that its signer owns it and that it belongs to that key.
    pub fn from_record(group: &str, addr: IpAddr, rec: &SignedRecord) -> Result<Claim, ClaimError> {
        let c = Claim::decode(&rec.value)?;
        if c.owner != rec.owner {
            return Err(ClaimError::OwnerMismatch);
        }
        if c.group != group || c.addr != addr {
            return Err(ClaimError::KeyMismatch);
        }
        Ok(c)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ClaimError> {
        if self.0.len() < n {
            return Err(ClaimError::Truncated {
                field,
                needed: n - self.0.len(),
            });
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, ClaimError> {
        Ok(self.take(1, field)?[0])
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, ClaimError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_be_bytes(b))
    }
}

/// Keeps, per owner, only the claim with the highest `seq` (ties: the later
/// expiry). This is also the merge rule for a record store that keeps a
/// claim set per key.
pub fn latest_per_owner<'a>(claims: impl IntoIterator<Item = &'a Claim>) -> Vec<&'a Claim> {
    let mut by_owner: HashMap<&[u8], &Claim> = HashMap::new();
    for c in claims {
        by_owner
            .entry(&c.owner)
            .and_modify(|cur| {
                if (c.seq, c.expiry) > (cur.seq, cur.expiry) {
                    *cur = c;
                }
            })
            .or_insert(c);
    }
    by_owner.into_values().collect()
}

/// The winning claim among `claims` at `now`, if any is live (see the
/// module docs). Every node evaluating the same set gets the same answer.
pub fn resolve<'a>(
    claims: impl IntoIterator<Item = &'a Claim>,
    now: Duration,
) -> Option<&'a Claim> {
    latest_per_owner(claims)
        .into_iter()
        .filter(|c| c.is_live(now))
        .min_by(|a, b| a.rank(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn claim(owner: u8, since: u64) -> Claim {
        Claim {
            group: "lab".into(),
            addr: "10.0.0.5".parse().unwrap(),
            owner: vec![owner; 38],
            fixed: false,
            released: false,
            since: Duration::from_secs(since),
            lease_start: Duration::from_secs(since),
            expiry: Duration::from_secs(since + 600),
            seq: 1,
        }
    }

    #[test]
    fn roundtrip() {
        let mut c = claim(1, 1_700_000_000);
        c.fixed = true;
        c.seq = 42;
        assert_eq!(Claim::decode(&c.encode()).unwrap(), c);
        let mut c6 = claim(2, 5);
        c6.addr = "fd77::9".parse().unwrap();
        c6.released = true;
        assert_eq!(Claim::decode(&c6.encode()).unwrap(), c6);
    }

    #[test]
    fn refuses_bad_values() {
        let c = claim(1, 100);
        let good = c.encode();
        assert!(matches!(
            Claim::decode(&good[..good.len() - 1]),
            Err(ClaimError::Truncated { .. })
        ));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(Claim::decode(&long), Err(ClaimError::Trailing(1)));
        let mut v = good.clone();
        v[4] = 2;
        assert_eq!(Claim::decode(&v), Err(ClaimError::Version(2)));
        let mut f = good.clone();
        f[5] = 0x80;
        assert_eq!(Claim::decode(&f), Err(ClaimError::Flags(0x80)));
        let mut t = c.clone();
        t.expiry = t.lease_start;
        assert_eq!(Claim::decode(&t.encode()), Err(ClaimError::Times));
        let mut t = c.clone();
        t.since = t.lease_start + Duration::from_secs(1);
        assert_eq!(Claim::decode(&t.encode()), Err(ClaimError::Times));
        let mut t = c.clone();
        t.expiry = t.lease_start + MAX_LEASE + Duration::from_secs(1);
        assert_eq!(Claim::decode(&t.encode()), Err(ClaimError::Times));
        assert_eq!(Claim::decode(b"nope"), Err(ClaimError::Magic));
    }

    #[test]
    fn record_checks_signer_and_key() {
        let c = claim(1, 100);
        let rec = SignedRecord {
            owner: c.owner.clone(),
            value: c.encode(),
        };
        assert_eq!(Claim::from_record("lab", c.addr, &rec).unwrap(), c);
        assert_eq!(
            Claim::from_record("other", c.addr, &rec),
            Err(ClaimError::KeyMismatch)
        );
        let forged = SignedRecord {
            owner: vec![9; 38],
            value: c.encode(),
        };
        assert_eq!(
            Claim::from_record("lab", c.addr, &forged),
            Err(ClaimError::OwnerMismatch)
        );
    }

    #[test]
    fn order_fixed_then_since_then_tiebreak() {
        let now = Duration::from_secs(200);
        let a = claim(1, 100);
        let b = claim(2, 150);
        assert_eq!(resolve([&a, &b], now), Some(&a));
        assert_eq!(resolve([&b, &a], now), Some(&a));
        let mut bf = b.clone();
        bf.fixed = true;
        assert_eq!(resolve([&a, &bf], now), Some(&bf));
        // Same since: the tie-breaker decides, identically in any order.
        let c = claim(3, 100);
        let w1 = resolve([&a, &c], now).unwrap().owner.clone();
        let w2 = resolve([&c, &a], now).unwrap().owner.clone();
        assert_eq!(w1, w2);
    }

    #[test]
    fn expired_and_released_never_win() {
        let a = claim(1, 100);
        let b = claim(2, 150);
        assert_eq!(resolve([&a, &b], Duration::from_secs(700)), Some(&b));
        assert_eq!(resolve([&a, &b], Duration::from_secs(750)), None);
        let mut tomb = a.clone();
        tomb.released = true;
        tomb.seq = 2;
        // The tombstone hides its owner's older live claim.
        assert_eq!(resolve([&a, &tomb, &b], Duration::from_secs(200)), Some(&b));
        assert_eq!(resolve([&a, &tomb], Duration::from_secs(200)), None);
    }
}
