//! Secrets: random tokens and ids, hashes, Argon2id passwords, and the
//! server key that encrypts the group CA keys at rest.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ring::rand::{SecureRandom as _, SystemRandom};

/// Environment variable holding the server key (base64 of 32 bytes).
pub const SERVER_KEY_ENV: &str = "GROUPVPN_SERVER_KEY";
/// File name of the server key in the data directory.
pub const SERVER_KEY_FILE: &str = "server.key";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The system random generator failed.
    #[error("system random number generator failed")]
    Random,
    /// The server key could not be read or created.
    #[error("server key {0}")]
    ServerKey(String),
    /// A ciphertext did not decrypt (wrong server key or corrupt data).
    #[error("cannot decrypt {0}: wrong server key or corrupt data")]
    Decrypt(String),
    /// Password hashing failed.
    #[error("password hashing: {0}")]
    Password(String),
}

/// `N` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| CryptoError::Random)?;
    Ok(b)
}

/// A random positive row id below 2^53 (exact in JSON numbers).
pub fn random_id() -> Result<i64, CryptoError> {
    let b = random_bytes::<8>()?;
    let v = (u64::from_le_bytes(b) & ((1u64 << 53) - 1)).max(1);
    Ok(i64::try_from(v).unwrap_or(1))
}

/// 32 random bytes, base64url without padding (session ids, CSRF tokens,
/// blob secrets).
pub fn token() -> Result<String, CryptoError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// SHA-256 as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    vpn_api::hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Equality that takes the same time wherever the inputs differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key that encrypts CA keys in the database. It never enters the
/// database: it comes from [`SERVER_KEY_ENV`] or `DATA_DIR/server.key`.
#[derive(Clone)]
pub struct ServerKey([u8; 32]);

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

impl ServerKey {
    /// From base64 (standard or URL-safe, padding optional) of 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let t = text.trim();
        let bytes = STANDARD
            .decode(t)
            .or_else(|_| URL_SAFE_NO_PAD.decode(t.trim_end_matches('=')))
            .map_err(|_| CryptoError::ServerKey("is not base64".into()))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CryptoError::ServerKey("must be 32 bytes".into()))?;
        Ok(Self(key))
    }

    /// The key from the environment if set, else `DIR/server.key`, created
    /// (mode 0600) on first start. Refuses a key file others can read.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, CryptoError> {
        if let Ok(v) = std::env::var(SERVER_KEY_ENV) {
            return Self::from_base64(&v)
                .map_err(|e| CryptoError::ServerKey(format!("in ${SERVER_KEY_ENV}: {e}")));
        }
        let path = data_dir.join(SERVER_KEY_FILE);
        let shown = path.display();
        match fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(CryptoError::ServerKey(format!(
                        "{shown} has mode {mode:04o}: run chmod 600 {shown}"
                    )));
                }
                let text = fs::read_to_string(&path)
                    .map_err(|e| CryptoError::ServerKey(format!("{shown}: {e}")))?;
                Self::from_base64(&text)
                    .map_err(|e| CryptoError::ServerKey(format!("{shown}: {e}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = random_bytes::<32>()?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| CryptoError::ServerKey(format!("creating {shown}: {e}")))?;
                f.write_all(format!("{}\n", STANDARD.encode(key)).as_bytes())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| CryptoError::ServerKey(format!("writing {shown}: {e}")))?;
                Ok(Self(key))
            }
            Err(e) => Err(CryptoError::ServerKey(format!("{shown}: {e}"))),
        }
    }

    /// Encrypts `plain` bound to `context` (e.g. the group name, so a
    /// ciphertext cannot be moved to another row): base64(nonce || ct).
    pub fn seal(&self, plain: &[u8], context: &str) -> Result<String, CryptoError> {
        let nonce = random_bytes::<12>()?;
        let ct = ChaCha20Poly1305::new(Key::from_slice(&self.0))
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt(context.into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(STANDARD.encode(out))
    }

    /// Decrypts what [`ServerKey::seal`] produced for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        let bad = || CryptoError::Decrypt(context.into());
        let raw = STANDARD.decode(sealed).map_err(|_| bad())?;
        if raw.len() < 12 + 16 {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(12);
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| bad())
    }
}

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Hashes and checks passwords with Argon2id.
#[derive(Clone, Debug)]
pub struct Passwords {
    params: argon2::Params,
    /// A hash of a random password: checked when the user does not exist,
    /// so that the answer takes as long as for a wrong password.
    dummy: String,
}

impl Passwords {
    /// With these costs.
    pub fn new(p: Argon2Params) -> Result<Self, CryptoError> {
        let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None)
            .map_err(|e| CryptoError::Password(e.to_string()))?;
        let mut s = Self {
            params,
            dummy: String::new(),
        };
        s.dummy = s.hash(&token()?)?;
        Ok(s)
    }

    fn argon2(&self) -> argon2::Argon2<'static> {
        argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            self.params.clone(),
        )
    }

    /// The PHC string of `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> Result<String, CryptoError> {
        let salt = SaltString::encode_b64(&random_bytes::<16>()?)
            .map_err(|e| CryptoError::Password(e.to_string()))?;
        self.argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| CryptoError::Password(e.to_string()))
    }

    /// Whether `password` matches `phc` (the parameters stored in the hash
    /// are used, so raising the costs later keeps old hashes valid).
    /// `None` checks against a dummy hash and returns false.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let target = phc.unwrap_or(&self.dummy);
        let Ok(parsed) = PasswordHash::new(target) else {
            return false;
        };
        let ok = self
            .argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && phc.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_bound_to_context() {
        let k = ServerKey(random_bytes().unwrap());
        let s = k.seal(b"secret key", "lab").unwrap();
        assert_eq!(k.open(&s, "lab").unwrap(), b"secret key");
        assert!(k.open(&s, "other").is_err());
        let k2 = ServerKey(random_bytes().unwrap());
        assert!(k2.open(&s, "lab").is_err());
        assert!(k.open("AAAA", "lab").is_err());
    }

    #[test]
    fn passwords() {
        let p = Passwords::new(Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap();
        let h = p.hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(p.verify("correct horse", Some(&h)));
        assert!(!p.verify("wrong", Some(&h)));
        assert!(!p.verify("correct horse", None));
        assert!(!p.verify("x", Some("garbage")));
    }

    #[test]
    fn server_key_file_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = ServerKey::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(SERVER_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = ServerKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.0, b.0);
        fs::set_permissions(
            dir.path().join(SERVER_KEY_FILE),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        assert!(ServerKey::load_or_create(dir.path()).is_err());
        assert!(ServerKey::from_base64("c2hvcnQ=").is_err());
    }
}
