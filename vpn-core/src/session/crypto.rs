//! Key agreement and derivation (ring: X25519, SHA-256, HKDF-SHA256, HMAC).

use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::{digest, hkdf, hmac, rand::SecureRandom};

use super::wire::{NONCE_LEN, TAG_LEN};
use super::SessionError;

/// The source of randomness of a session core: receiver indices, nonces,
/// retry jitter and ephemeral keys. Production uses [`SystemEntropy`]; tests
/// pass a seeded generator so runs are reproducible.
pub trait Entropy {
    /// Fills `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
    /// A fresh X25519 private key. (ring only builds ephemeral keys from its
    /// own sealed random sources, hence a method of its own.)
    fn ephemeral_key(&mut self) -> Result<EphemeralPrivateKey, SessionError>;
}

/// The operating system's random source through ring.
#[derive(Debug)]
pub struct SystemEntropy(ring::rand::SystemRandom);

impl SystemEntropy {
    pub fn new() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Default for SystemEntropy {
    fn default() -> Self {
        Self::new()
    }
}

impl Entropy for SystemEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        // The OS source failing is not recoverable for a key-exchange daemon.
        #[allow(clippy::expect_used)]
        self.0
            .fill(dest)
            .expect("the operating system's random source failed");
    }

    fn ephemeral_key(&mut self) -> Result<EphemeralPrivateKey, SessionError> {
        EphemeralPrivateKey::generate(&X25519, &self.0).map_err(|_| SessionError::Crypto)
    }
}

/// Who is at one end of a session: the libp2p PeerId (as bytes) that the
/// authenticated stream proved, and the fingerprint of the group certificate
/// that was checked for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub peer_id: Vec<u8>,
    pub cert_fingerprint: Vec<u8>,
}

const BINDING_LABEL: &[u8] = b"GroupVPN session v1 binding";
const TRANSCRIPT_LABEL: &[u8] = b"GroupVPN session v1 transcript";

fn put(ctx: &mut digest::Context, field: &[u8]) {
    // Length-prefixed so that no two different tuples hash alike.
    ctx.update(&(field.len() as u64).to_le_bytes());
    ctx.update(field);
}

/// SHA-256 over both identities, initiator first. Both ends compute it from
/// their own view; the responder refuses an Init whose binding differs.
pub fn binding(initiator: &Identity, responder: &Identity) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(BINDING_LABEL);
    for id in [initiator, responder] {
        put(&mut ctx, &id.peer_id);
        put(&mut ctx, &id.cert_fingerprint);
    }
    to32(ctx.finish().as_ref())
}

fn to32(b: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(b);
    out
}

/// The public values of one handshake, hashed into the transcript.
pub struct Transcript<'a> {
    pub binding: &'a [u8; 32],
    pub initiator_ephemeral: &'a [u8; 32],
    pub initiator_index: u32,
    pub nonce: &'a [u8; NONCE_LEN],
    pub responder_ephemeral: &'a [u8; 32],
    pub responder_index: u32,
}

impl Transcript<'_> {
    fn hash(&self) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(TRANSCRIPT_LABEL);
        ctx.update(self.binding);
        ctx.update(self.initiator_ephemeral);
        ctx.update(&self.initiator_index.to_le_bytes());
        ctx.update(self.nonce);
        ctx.update(self.responder_ephemeral);
        ctx.update(&self.responder_index.to_le_bytes());
        to32(ctx.finish().as_ref())
    }
}

/// The secrets one handshake yields.
#[derive(Clone)]
pub struct Derived {
    /// Initiator to responder.
    pub i2r: [u8; 32],
    /// Responder to initiator.
    pub r2i: [u8; 32],
    confirm: hmac::Key,
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derived(..)")
    }
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn expand(prk: &hkdf::Prk, info: &[u8]) -> Result<[u8; 32], SessionError> {
    let mut out = [0; 32];
    prk.expand(&[info], Len32)
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| SessionError::Crypto)?;
    Ok(out)
}

/// X25519 with `private` and the peer's public key, then
/// `PRK = HKDF-Extract(salt = transcript hash, IKM = shared secret)` and three
/// HKDF-Expand outputs: the two directional keys and a confirmation key.
pub fn derive(
    private: EphemeralPrivateKey,
    peer_public: &[u8; 32],
    transcript: &Transcript<'_>,
) -> Result<Derived, SessionError> {
    let th = transcript.hash();
    let peer = UnparsedPublicKey::new(&X25519, peer_public);
    agreement::agree_ephemeral(private, &peer, |shared| {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &th).extract(shared);
        let i2r = expand(&prk, b"gv1 key initiator->responder")?;
        let r2i = expand(&prk, b"gv1 key responder->initiator")?;
        let confirm = expand(&prk, b"gv1 key confirmation")?;
        let mut key_input = confirm.to_vec();
        key_input.extend_from_slice(&th);
        Ok(Derived {
            i2r,
            r2i,
            confirm: hmac::Key::new(hmac::HMAC_SHA256, &key_input),
        })
    })
    // ring refuses low-order points (an all-zero shared secret).
    .map_err(|_| SessionError::Crypto)?
}

impl Derived {
    fn tag(&self, label: &[u8]) -> [u8; TAG_LEN] {
        let t = hmac::sign(&self.confirm, label);
        let mut out = [0; TAG_LEN];
        out.copy_from_slice(&t.as_ref()[..TAG_LEN]);
        out
    }

    /// Tag in the Reply.
    pub fn reply_tag(&self) -> [u8; TAG_LEN] {
        self.tag(b"reply")
    }

    /// Tag in the Confirm.
    pub fn confirm_tag(&self) -> [u8; TAG_LEN] {
        self.tag(b"confirm")
    }

    /// Constant-time comparison of a received tag.
    pub fn check(&self, expected: [u8; TAG_LEN], got: &[u8; TAG_LEN]) -> Result<(), SessionError> {
        let mut diff = 0u8;
        for (a, b) in expected.iter().zip(got) {
            diff |= a ^ b;
        }
        if diff == 0 {
            Ok(())
        } else {
            Err(SessionError::BadTag)
        }
    }
}

/// The public key of `private` as 32 bytes.
pub fn public_key(private: &EphemeralPrivateKey) -> Result<[u8; 32], SessionError> {
    let p = private
        .compute_public_key()
        .map_err(|_| SessionError::Crypto)?;
    let mut out = [0; 32];
    out.copy_from_slice(p.as_ref());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: &[u8], c: &[u8]) -> Identity {
        Identity {
            peer_id: p.to_vec(),
            cert_fingerprint: c.to_vec(),
        }
    }

    #[test]
    fn binding_is_ordered_and_unambiguous() {
        let a = id(b"A", b"ca");
        let b = id(b"B", b"cb");
        assert_ne!(binding(&a, &b), binding(&b, &a));
        // Moving a byte between fields changes the hash (length prefixes).
        assert_ne!(binding(&id(b"AB", b""), &b), binding(&id(b"A", b"B"), &b));
        assert_eq!(binding(&a, &b), binding(&a.clone(), &b.clone()));
    }

    #[test]
    fn both_sides_derive_the_same_distinct_keys() {
        let mut e = SystemEntropy::new();
        let ki = e.ephemeral_key().unwrap();
        let kr = e.ephemeral_key().unwrap();
        let (pi, pr) = (public_key(&ki).unwrap(), public_key(&kr).unwrap());
        let bind = [7; 32];
        let nonce = [9; 16];
        let t = Transcript {
            binding: &bind,
            initiator_ephemeral: &pi,
            initiator_index: 1,
            nonce: &nonce,
            responder_ephemeral: &pr,
            responder_index: 2,
        };
        let di = derive(ki, &pr, &t).unwrap();
        let dr = derive(kr, &pi, &t).unwrap();
        assert_eq!(di.i2r, dr.i2r);
        assert_eq!(di.r2i, dr.r2i);
        assert_ne!(di.i2r, di.r2i);
        assert_eq!(di.reply_tag(), dr.reply_tag());
        assert_ne!(di.reply_tag(), di.confirm_tag());
        di.check(dr.confirm_tag(), &di.confirm_tag()).unwrap();
        assert!(di.check(dr.confirm_tag(), &[0; 16]).is_err());
    }

    #[test]
    fn transcript_changes_the_keys() {
        let mut e = SystemEntropy::new();
        let ki = e.ephemeral_key().unwrap();
        let kr = e.ephemeral_key().unwrap();
        let (pi, pr) = (public_key(&ki).unwrap(), public_key(&kr).unwrap());
        let nonce = [0; 16];
        let t = |b: &'static [u8; 32]| Transcript {
            binding: b,
            initiator_ephemeral: &pi,
            initiator_index: 1,
            nonce: &nonce,
            responder_ephemeral: &pr,
            responder_index: 2,
        };
        let d1 = derive(ki, &pr, &t(&[1; 32])).unwrap();
        let d2 = derive(kr, &pi, &t(&[2; 32])).unwrap();
        assert_ne!(d1.i2r, d2.i2r);
    }

    #[test]
    fn low_order_public_key_is_refused() {
        let mut e = SystemEntropy::new();
        let k = e.ephemeral_key().unwrap();
        let t = Transcript {
            binding: &[0; 32],
            initiator_ephemeral: &[0; 32],
            initiator_index: 1,
            nonce: &[0; 16],
            responder_ephemeral: &[0; 32],
            responder_index: 2,
        };
        assert!(matches!(derive(k, &[0; 32], &t), Err(SessionError::Crypto)));
    }
}
