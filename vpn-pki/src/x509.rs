//! Small helpers over x509-parser shared by the certificate, CSR and CRL
//! readers: Ed25519-only key and signature checks, extension lookup, names.

use std::fmt;
use std::str::FromStr;

use x509_parser::der_parser::oid::Oid;
use x509_parser::extensions::{ParsedExtension, X509Extension};
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::PkiError;

/// id-Ed25519 (RFC 8410), both key and signature algorithm.
pub(crate) const OID_ED25519: [u64; 4] = [1, 3, 101, 112];

pub(crate) fn oid_is(oid: &Oid<'_>, want: &[u64]) -> bool {
    oid.iter().is_some_and(|it| it.eq(want.iter().copied()))
}

/// The raw Ed25519 key of a SubjectPublicKeyInfo.
pub(crate) fn ed25519_key(
    spki: &SubjectPublicKeyInfo<'_>,
    what: &'static str,
) -> Result<[u8; 32], PkiError> {
    if !oid_is(&spki.algorithm.algorithm, &OID_ED25519) {
        return Err(PkiError::UnsupportedAlgorithm(format!(
            "{what} key algorithm {}",
            spki.algorithm.algorithm
        )));
    }
    <[u8; 32]>::try_from(spki.subject_public_key.data.as_ref())
        .map_err(|_| PkiError::malformed(what, "Ed25519 key is not 32 bytes"))
}

/// Refuses any signature algorithm but Ed25519.
pub(crate) fn require_ed25519_sig(
    alg: &AlgorithmIdentifier<'_>,
    what: &'static str,
) -> Result<(), PkiError> {
    if oid_is(&alg.algorithm, &OID_ED25519) {
        Ok(())
    } else {
        Err(PkiError::UnsupportedAlgorithm(format!(
            "{what} signature algorithm {}",
            alg.algorithm
        )))
    }
}

/// Ed25519 signature check.
pub(crate) fn ed25519_verify(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
        .verify(msg, sig)
        .is_ok()
}

/// The value of the extension with `oid`, if present.
pub(crate) fn find_ext<'a>(exts: &'a [X509Extension<'a>], oid: &[u64]) -> Option<&'a [u8]> {
    exts.iter().find(|e| oid_is(&e.oid, oid)).map(|e| e.value)
}

/// The authority key identifier's keyIdentifier, if present.
pub(crate) fn authority_key_id(exts: &[X509Extension<'_>]) -> Option<Vec<u8>> {
    exts.iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(aki) => {
            aki.key_identifier.as_ref().map(|k| k.0.to_vec())
        }
        _ => None,
    })
}

/// The subject key identifier, if present.
pub(crate) fn subject_key_id(exts: &[X509Extension<'_>]) -> Option<Vec<u8>> {
    exts.iter().find_map(|e| match e.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
        _ => None,
    })
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 fingerprint as colon-separated upper-case hex (as `openssl x509
/// -fingerprint -sha256` prints it).
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let parts: Vec<String> = d.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    parts.join(":")
}

/// A certificate serial number: a positive integer, kept as its minimal
/// big-endian bytes; shown as lower-case hex without separators.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// From big-endian bytes (leading zero bytes are dropped).
    pub fn from_bytes(b: &[u8]) -> Self {
        let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        Self(b[start..].to_vec())
    }

    /// Big-endian bytes without leading zeros.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A random 128-bit serial (positive, no leading zero byte, so its DER
    /// content is exactly these 16 bytes).
    pub(crate) fn random() -> Result<Self, PkiError> {
        use ring::rand::SecureRandom as _;
        let mut b = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| PkiError::build("serial number", "no randomness"))?;
        b[0] = (b[0] & 0x7f) | 0x40;
        Ok(Self(b.to_vec()))
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("00")
        } else {
            f.write_str(&hex(&self.0))
        }
    }
}

impl FromStr for Serial {
    type Err = PkiError;

    /// Hex, with or without `0x` and `:` separators (`openssl` prints
    /// `4a:1f:...`), case-insensitive.
    fn from_str(s: &str) -> Result<Self, PkiError> {
        let t = s.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        let digits: String = t.chars().filter(|&c| c != ':').collect();
        if digits.is_empty() || digits.len() > 40 || !digits.chars().all(|c| c.is_ascii_hexdigit())
        {
            return Err(PkiError::input(
                "serial",
                format!("{s:?}: expected up to 20 bytes of hex"),
            ));
        }
        let padded = if digits.len() % 2 == 1 {
            format!("0{digits}")
        } else {
            digits
        };
        let bytes = (0..padded.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&padded[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| PkiError::input("serial", e.to_string()))?;
        Ok(Self::from_bytes(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials() {
        let s: Serial = "4A:1f:00".parse().unwrap();
        assert_eq!(s.to_string(), "4a1f00");
        assert_eq!("0x004a1f00".parse::<Serial>().unwrap(), s);
        assert_eq!("abc".parse::<Serial>().unwrap().as_bytes(), [0x0a, 0xbc]);
        for bad in ["", "xyz", "0x", &"ab".repeat(21)] {
            assert!(bad.parse::<Serial>().is_err(), "{bad}");
        }
        let r = Serial::random().unwrap();
        assert_eq!(r.as_bytes().len(), 16);
        assert_eq!(r.to_string().parse::<Serial>().unwrap(), r);
    }
}
