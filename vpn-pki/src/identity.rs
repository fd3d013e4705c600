//! The node identity: an Ed25519 key pair whose public key is the node's
//! libp2p PeerId, and the key of its group certificate.
//!
//! Stored as an unencrypted PKCS#8 v1 PEM file (`-----BEGIN PRIVATE KEY-----`,
//! RFC 8410), the format `openssl genpkey -algorithm ed25519` writes, with mode
//! 0600. Loading refuses files that group or others can access.

use std::fmt;
use std::path::Path;

use libp2p_identity::{ed25519, PeerId};

use crate::files::{self, PEM_KEY};
use crate::PkiError;

/// DER prefix of an Ed25519 PKCS#8 v1 `OneAsymmetricKey` (RFC 8410 §7); the
/// 32-byte seed follows.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32-byte key follows.
pub(crate) const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The Ed25519 SubjectPublicKeyInfo DER of a raw public key.
pub(crate) fn spki_der(public: &[u8; 32]) -> Vec<u8> {
    let mut v = SPKI_PREFIX.to_vec();
    v.extend_from_slice(public);
    v
}

/// The PeerId of a raw Ed25519 public key.
pub fn peer_id_of(public: &[u8; 32]) -> Result<PeerId, PkiError> {
    let pk = ed25519::PublicKey::try_from_bytes(public)
        .map_err(|e| PkiError::malformed("Ed25519 public key", e))?;
    Ok(libp2p_identity::PublicKey::from(pk).to_peer_id())
}

/// The Ed25519 public key embedded in a PeerId (Ed25519 PeerIds inline the
/// key with the identity multihash).
pub fn public_key_of(peer: &PeerId) -> Result<[u8; 32], PkiError> {
    // Multihash bytes: varint code (0 = identity), varint length, digest.
    let bytes = peer.to_bytes();
    let digest = match bytes.as_slice() {
        [0x00, len, rest @ ..] if usize::from(*len) == rest.len() => rest,
        _ => return Err(PkiError::PeerIdWithoutKey(peer.to_string())),
    };
    let pk = libp2p_identity::PublicKey::try_decode_protobuf(digest)
        .map_err(|_| PkiError::PeerIdWithoutKey(peer.to_string()))?;
    let ed = pk
        .try_into_ed25519()
        .map_err(|_| PkiError::PeerIdWithoutKey(peer.to_string()))?;
    Ok(ed.to_bytes())
}

/// Checks an Ed25519 signature by the node `peer` (for records signed by
/// their owner, e.g. address claims): `false` for a bad signature or a PeerId
/// that embeds no Ed25519 key.
pub fn verify_peer_signature(peer: &PeerId, msg: &[u8], sig: &[u8]) -> bool {
    public_key_of(peer).is_ok_and(|k| crate::x509::ed25519_verify(&k, msg, sig))
}

/// Parses a PeerId string.
pub fn parse_peer_id(s: &str) -> Result<PeerId, PkiError> {
    s.trim()
        .parse()
        .map_err(|e| PkiError::input("PeerId", format!("{s:?}: {e}")))
}

/// A node's Ed25519 key pair.
#[derive(Clone)]
pub struct NodeIdentity {
    keypair: ed25519::Keypair,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("peer_id", &self.peer_id())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        Self {
            keypair: ed25519::Keypair::generate(),
        }
    }

    /// From a 32-byte Ed25519 seed.
    pub fn from_seed(seed: [u8; 32]) -> Result<Self, PkiError> {
        let sk = ed25519::SecretKey::try_from_bytes(seed)
            .map_err(|e| PkiError::malformed("Ed25519 private key", e))?;
        Ok(Self {
            keypair: ed25519::Keypair::from(sk),
        })
    }

    /// Parses a PKCS#8 Ed25519 private key (v1 as openssl writes it, or v2
    /// with the public key, as ring writes it; the public key must match).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, PkiError> {
        let bad = |r: &str| PkiError::malformed("Ed25519 private key", r);
        // Same layout as v1 up to the seed, except the version (0 or 1).
        if der.len() < 48
            || der[0] != 0x30
            || der[2..4] != PKCS8_V1_PREFIX[2..4]
            || der[4] > 1
            || der[5..16] != PKCS8_V1_PREFIX[5..16]
        {
            return Err(bad("not an unencrypted PKCS#8 Ed25519 key"));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&der[16..48]);
        let id = Self::from_seed(seed)?;
        if der.len() != 48 || der[..2] != PKCS8_V1_PREFIX[..2] {
            // v2: let ring check the structure and the embedded public key.
            let kp = ring::signature::Ed25519KeyPair::from_pkcs8(der)
                .map_err(|e| PkiError::malformed("Ed25519 private key", e))?;
            use ring::signature::KeyPair as _;
            if kp.public_key().as_ref() != id.public_key().as_slice() {
                return Err(bad("embedded public key does not match the private key"));
            }
        }
        Ok(id)
    }

    /// The PKCS#8 v1 DER encoding (secret: keep it private).
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        let mut v = PKCS8_V1_PREFIX.to_vec();
        v.extend_from_slice(self.keypair.secret().as_ref());
        v
    }

    /// The PKCS#8 v1 PEM encoding (secret: keep it private).
    pub fn to_pkcs8_pem(&self) -> String {
        files::to_pem(PEM_KEY, &self.to_pkcs8_der())
    }

    /// Loads an identity file: refuses group/other permissions and corrupt
    /// content with distinct errors.
    pub fn load(path: &Path) -> Result<Self, PkiError> {
        files::check_private_mode(path)?;
        let der = files::read_pem_or_der(path, PEM_KEY)?;
        Self::from_pkcs8_der(&der).map_err(|e| PkiError::corrupt(path, e.to_string()))
    }

    /// Writes a new identity file with mode 0600 (never overwrites),
    /// creating missing parent directories with mode 0700.
    pub fn save_new(&self, path: &Path) -> Result<(), PkiError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                use std::os::unix::fs::DirBuilderExt as _;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| PkiError::io(parent, e))?;
            }
        }
        files::write_private_new(path, self.to_pkcs8_pem().as_bytes())
    }

    /// Loads `path`, or creates a new identity there if it does not exist
    /// (first start). Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), PkiError> {
        match Self::load(path) {
            Ok(id) => Ok((id, false)),
            Err(PkiError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let id = Self::generate();
                match id.save_new(path) {
                    Ok(()) => Ok((id, true)),
                    // Lost a race with another process creating it.
                    Err(PkiError::AlreadyExists(_)) => Ok((Self::load(path)?, false)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The libp2p PeerId.
    pub fn peer_id(&self) -> PeerId {
        libp2p_identity::PublicKey::from(self.keypair.public()).to_peer_id()
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.keypair.public().to_bytes()
    }

    /// The key pair for libp2p (Noise, identify...).
    pub fn keypair(&self) -> libp2p_identity::Keypair {
        libp2p_identity::Keypair::from(self.keypair.clone())
    }

    /// Signs `msg` (Ed25519).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.keypair.sign(msg)
    }

    /// The same key for rcgen (signing CSRs).
    pub(crate) fn rcgen_key(&self) -> Result<rcgen::KeyPair, PkiError> {
        let der = self.to_pkcs8_der();
        rcgen::KeyPair::try_from(der.as_slice()).map_err(|e| PkiError::build("key pair", e))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn pkcs8_roundtrip_and_peer_id() {
        let id = NodeIdentity::generate();
        let back = NodeIdentity::from_pkcs8_der(&id.to_pkcs8_der()).unwrap();
        assert_eq!(back.peer_id(), id.peer_id());
        assert_eq!(peer_id_of(&id.public_key()).unwrap(), id.peer_id());
        assert_eq!(public_key_of(&id.peer_id()).unwrap(), id.public_key());
        assert_eq!(id.keypair().public().to_peer_id(), id.peer_id());
        let sig = id.sign(b"claim 10.77.0.5");
        assert!(verify_peer_signature(
            &id.peer_id(),
            b"claim 10.77.0.5",
            &sig
        ));
        assert!(!verify_peer_signature(
            &id.peer_id(),
            b"claim 10.77.0.6",
            &sig
        ));
        let other = NodeIdentity::generate().peer_id();
        assert!(!verify_peer_signature(&other, b"claim 10.77.0.5", &sig));
        // libp2p's own verification agrees.
        assert!(id.keypair().public().verify(b"claim 10.77.0.5", &sig));
        // ring's v2 encoding of another key is accepted and checked.
        let rng = ring::rand::SystemRandom::new();
        let v2 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        NodeIdentity::from_pkcs8_der(v2.as_ref()).unwrap();
        let mut bad = v2.as_ref().to_vec();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(NodeIdentity::from_pkcs8_der(&bad).is_err());
    }

    #[test]
    fn file_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state/groupvpn/node.key");
        let (id, created) = NodeIdentity::load_or_create(&p).unwrap();
        let dmode = std::fs::metadata(p.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        assert!(created);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = NodeIdentity::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(again.peer_id(), id.peer_id());

        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            NodeIdentity::load(&p),
            Err(PkiError::KeyPermissions { .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            &p,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = NodeIdentity::load(&p).unwrap_err();
        assert!(matches!(e, PkiError::CorruptFile { .. }), "{e}");
        std::fs::write(&p, "garbage").unwrap();
        assert!(matches!(
            NodeIdentity::load(&p),
            Err(PkiError::CorruptFile { .. })
        ));
    }

    #[test]
    fn peer_id_without_key() {
        // A sha2-256 PeerId (as RSA keys get) embeds no key.
        let mut bytes = vec![0x12, 0x20];
        bytes.extend_from_slice(&[7u8; 32]);
        let p = PeerId::from_bytes(&bytes).unwrap();
        assert!(matches!(
            public_key_of(&p),
            Err(PkiError::PeerIdWithoutKey(_))
        ));
    }
}
