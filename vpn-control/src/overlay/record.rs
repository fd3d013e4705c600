//! Owner-signed records for the private DHT (pure functions, `now` passed in).
//!
//! Members rely on what other members publish in the private DHT (address
//! claims now; gateway lists and revocation watchers later), so every value
//! is signed by its owner's node key (the key behind its PeerId) and carries
//! an expiry. A reader checks the signature, the expiry and that the record
//! is bound to the DHT key it was found under; anything else is ignored and
//! counted ([`RecordRejection`]).
//!
//! Encoding (big endian, version 1):
//!
//! ```text
//! u8 version=1 | u8 kind | u64 expires (unix seconds)
//! u8 owner_len | owner (PeerId multihash bytes)
//! u16 payload_len | payload
//! u8 sig_len | signature (Ed25519, 64 bytes)
//! ```
//!
//! The signature covers `"groupvpn-record-v1\0" | u16 key_len | key |`
//! followed by every field above except the signature, so a record cannot be
//! replayed under another DHT key or kind.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::identity::Keypair;
use libp2p::PeerId;

use super::ids::to_pki_peer;

const VERSION: u8 = 1;
const DOMAIN: &[u8] = b"groupvpn-record-v1\0";
/// Largest payload a record may carry (a member certificate plus a little).
pub const MAX_PAYLOAD: usize = 8 * 1024;

/// What a record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A virtual address claim entry ([`super::claims`]).
    Address,
    /// A kind this version does not know (kept for counting).
    Unknown(u8),
}

impl RecordKind {
    fn to_u8(self) -> u8 {
        match self {
            RecordKind::Address => 1,
            RecordKind::Unknown(k) => k,
        }
    }
    fn from_u8(k: u8) -> Self {
        match k {
            1 => RecordKind::Address,
            k => RecordKind::Unknown(k),
        }
    }
}

/// A record whose signature and expiry have been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRecord {
    /// What the payload is.
    pub kind: RecordKind,
    /// Who signed it.
    pub owner: PeerId,
    /// Until when it is valid.
    pub expires: SystemTime,
    /// The owner's statement.
    pub payload: Vec<u8>,
}

/// Why a record read from the DHT was ignored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordRejection {
    /// Not decodable, unknown version, truncated or trailing bytes.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    /// No signature.
    #[error("unsigned record")]
    Unsigned,
    /// The signature does not verify with the owner's key.
    #[error("forged record: signature does not verify for owner {0}")]
    Forged(PeerId),
    /// Past its expiry.
    #[error("expired record (owner {0})")]
    Expired(PeerId),
    /// Valid signature, but the content does not fit the key or the owner's
    /// certificate (e.g. an address claim for another address).
    #[error("record content refused: {0}")]
    Content(String),
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn signed_bytes(
    key: &[u8],
    kind: RecordKind,
    expires: u64,
    owner: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + 2 + key.len() + 12 + owner.len() + payload.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(&(key.len() as u16).to_be_bytes());
    m.extend_from_slice(key);
    m.push(VERSION);
    m.push(kind.to_u8());
    m.extend_from_slice(&expires.to_be_bytes());
    m.push(owner.len() as u8);
    m.extend_from_slice(owner);
    m.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    m.extend_from_slice(payload);
    m
}

/// Encodes and signs a record for DHT key `key` with the owner's key pair.
/// The payload must not exceed [`MAX_PAYLOAD`]; `expires` is truncated to
/// whole seconds.
pub fn sign_record(
    key: &[u8],
    kind: RecordKind,
    payload: &[u8],
    expires: SystemTime,
    keypair: &Keypair,
) -> Result<Vec<u8>, RecordRejection> {
    if payload.len() > MAX_PAYLOAD {
        return Err(RecordRejection::Malformed("payload too large"));
    }
    let owner = keypair.public().to_peer_id().to_bytes();
    let exp = unix_secs(expires);
    let msg = signed_bytes(key, kind, exp, &owner, payload);
    let sig = keypair
        .sign(&msg)
        .map_err(|_| RecordRejection::Malformed("key cannot sign"))?;
    let mut out = msg[DOMAIN.len() + 2 + key.len()..].to_vec();
    out.push(sig.len() as u8);
    out.extend_from_slice(&sig);
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordRejection> {
        if self.0.len() < n {
            return Err(RecordRejection::Malformed("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, RecordRejection> {
        Ok(self.take(1)?[0])
    }
}

/// Decodes and checks a record found under DHT key `key` at `now`:
/// structure, signature by the owner's key (the PeerId's inlined Ed25519
/// key, through `vpn_pki::verify_peer_signature`), then expiry.
pub fn verify_record(
    key: &[u8],
    bytes: &[u8],
    now: SystemTime,
) -> Result<SignedRecord, RecordRejection> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return Err(RecordRejection::Malformed("unknown version"));
    }
    let kind = RecordKind::from_u8(r.u8()?);
    let exp = u64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"));
    let owner_len = r.u8()? as usize;
    let owner_bytes = r.take(owner_len)?;
    let owner = PeerId::from_bytes(owner_bytes)
        .map_err(|_| RecordRejection::Malformed("owner is not a PeerId"))?;
    let plen = u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes")) as usize;
    if plen > MAX_PAYLOAD {
        return Err(RecordRejection::Malformed("payload too large"));
    }
    let payload = r.take(plen)?;
    let sig_len = r.u8()? as usize;
    if sig_len == 0 {
        return Err(RecordRejection::Unsigned);
    }
    let sig = r.take(sig_len)?;
    if !r.0.is_empty() {
        return Err(RecordRejection::Malformed("trailing bytes"));
    }
    let msg = signed_bytes(key, kind, exp, owner_bytes, payload);
    let pki_owner = to_pki_peer(&owner);
    if !vpn_pki::verify_peer_signature(&pki_owner, &msg, sig) {
        return Err(RecordRejection::Forged(owner));
    }
    let expires = UNIX_EPOCH + Duration::from_secs(exp);
    if now >= expires {
        return Err(RecordRejection::Expired(owner));
    }
    Ok(SignedRecord {
        kind,
        owner,
        expires,
        payload: payload.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    #[test]
    fn roundtrip() {
        let kp = Keypair::generate_ed25519();
        let rec = sign_record(
            b"k",
            RecordKind::Address,
            b"hello",
            t0() + Duration::from_secs(60),
            &kp,
        )
        .unwrap();
        let v = verify_record(b"k", &rec, t0()).unwrap();
        assert_eq!(v.owner, kp.public().to_peer_id());
        assert_eq!(v.payload, b"hello");
        assert_eq!(v.kind, RecordKind::Address);
        assert_eq!(v.expires, t0() + Duration::from_secs(60));
    }

    #[test]
    fn expired_refused() {
        let kp = Keypair::generate_ed25519();
        let rec = sign_record(
            b"k",
            RecordKind::Address,
            b"x",
            t0() + Duration::from_secs(60),
            &kp,
        )
        .unwrap();
        assert_eq!(
            verify_record(b"k", &rec, t0() + Duration::from_secs(60)),
            Err(RecordRejection::Expired(kp.public().to_peer_id()))
        );
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let kp = Keypair::generate_ed25519();
        let rec = sign_record(
            b"k",
            RecordKind::Address,
            b"payload",
            t0() + Duration::from_secs(60),
            &kp,
        )
        .unwrap();
        for i in 0..rec.len() * 8 {
            let mut bad = rec.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                verify_record(b"k", &bad, t0()).is_err(),
                "bit {i} flipped was accepted"
            );
        }
    }

    #[test]
    fn other_key_or_kind_refused() {
        let kp = Keypair::generate_ed25519();
        let rec = sign_record(
            b"k1",
            RecordKind::Address,
            b"x",
            t0() + Duration::from_secs(60),
            &kp,
        )
        .unwrap();
        assert!(matches!(
            verify_record(b"k2", &rec, t0()),
            Err(RecordRejection::Forged(_))
        ));
    }

    #[test]
    fn forged_owner_refused() {
        // Signed by A but claiming B as owner.
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        let rec = sign_record(
            b"k",
            RecordKind::Address,
            b"x",
            t0() + Duration::from_secs(60),
            &a,
        )
        .unwrap();
        let a_id = a.public().to_peer_id().to_bytes();
        let b_id = b.public().to_peer_id().to_bytes();
        assert_eq!(a_id.len(), b_id.len());
        let mut forged = rec.clone();
        let pos = 11;
        forged[pos..pos + a_id.len()].copy_from_slice(&b_id);
        assert_eq!(
            verify_record(b"k", &forged, t0()),
            Err(RecordRejection::Forged(b.public().to_peer_id()))
        );
    }

    #[test]
    fn unsigned_and_truncated_refused() {
        let kp = Keypair::generate_ed25519();
        let rec = sign_record(
            b"k",
            RecordKind::Address,
            b"x",
            t0() + Duration::from_secs(60),
            &kp,
        )
        .unwrap();
        // Strip the signature, leave a zero length.
        let mut unsigned = rec[..rec.len() - 65].to_vec();
        unsigned.push(0);
        assert_eq!(
            verify_record(b"k", &unsigned, t0()),
            Err(RecordRejection::Unsigned)
        );
        for n in 0..rec.len() {
            assert!(verify_record(b"k", &rec[..n], t0()).is_err());
        }
        let mut long = rec.clone();
        long.push(0);
        assert_eq!(
            verify_record(b"k", &long, t0()),
            Err(RecordRejection::Malformed("trailing bytes"))
        );
    }

    #[test]
    fn oversized_payload_refused() {
        let kp = Keypair::generate_ed25519();
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert!(sign_record(b"k", RecordKind::Address, &big, t0(), &kp).is_err());
    }
}
