//! The configuration blob an approved member downloads from the group server
//! (`docs/group-server.md`, "The blob"):
//!
//! `groupvpn1:` + base64url (no padding) of
//! `{"v":1,"server":"https://HOST:PORT","server_cert_sha256":"<64 hex>",
//!   "group":"lab","node_name":"alice","secret":"<base64url 32 bytes>"}`.
//!
//! The blob carries everything `vpn-control join` needs: where the server
//! is, the SHA-256 of its TLS certificate (pinned: no web PKI), the group and
//! node name, and a single-use secret that authenticates the member once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// What every blob starts with; the digit is the format version.
pub const BLOB_PREFIX: &str = "groupvpn1:";

/// Length of the enrolment secret in bytes.
pub const SECRET_LEN: usize = 32;

/// Why a blob was refused. The messages are for people who pasted it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    /// Empty input.
    #[error("the blob is empty")]
    Empty,
    /// A `groupvpnN:` blob of another format version.
    #[error("blob format version {0} is not supported by this vpn-control (it reads groupvpn1: blobs); update vpn-control")]
    UnsupportedVersion(String),
    /// Not a blob at all.
    #[error("not a GroupVPN blob: it should start with \"{BLOB_PREFIX}\" (copy it whole from the group server's blob page)")]
    MissingPrefix,
    /// The part after the prefix is not base64url.
    #[error(
        "the blob is damaged (not base64url after \"{BLOB_PREFIX}\": {0}); copy it again, whole"
    )]
    Base64(String),
    /// The decoded part is not the expected JSON.
    #[error("the blob is damaged (its content is not valid blob JSON: {0})")]
    Json(String),
    /// A field has a bad value.
    #[error("the blob's {field} is invalid: {reason}")]
    Field {
        /// The JSON field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn field(field: &'static str, reason: impl Into<String>) -> BlobError {
    BlobError::Field {
        field,
        reason: reason.into(),
    }
}

/// A parsed and checked blob.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// Format version (1).
    pub v: u32,
    /// Base URL of the group server, `https://HOST[:PORT]`.
    pub server: String,
    /// SHA-256 of the server's TLS certificate (DER), 64 lower-case hex.
    pub server_cert_sha256: String,
    /// Group name.
    pub group: String,
    /// The node name the administrator approved.
    pub node_name: String,
    /// Single-use enrolment secret, base64url of 32 bytes.
    pub secret: String,
}

impl std::fmt::Debug for Blob {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("v", &self.v)
            .field("server", &self.server)
            .field("server_cert_sha256", &self.server_cert_sha256)
            .field("group", &self.group)
            .field("node_name", &self.node_name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Blob {
    /// Parses a blob as pasted: surrounding and embedded ASCII whitespace
    /// (line breaks from a wrapped terminal or e-mail) is ignored.
    pub fn parse(text: &str) -> Result<Self, BlobError> {
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        if compact.is_empty() {
            return Err(BlobError::Empty);
        }
        let Some(payload) = compact.strip_prefix(BLOB_PREFIX) else {
            return Err(match version_of(&compact) {
                Some(v) => BlobError::UnsupportedVersion(v),
                None => BlobError::MissingPrefix,
            });
        };
        // Accept (and ignore) '=' padding some tools add.
        let payload = payload.trim_end_matches('=');
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| BlobError::Base64(e.to_string()))?;
        let blob: Blob =
            serde_json::from_slice(&json).map_err(|e| BlobError::Json(e.to_string()))?;
        blob.check()
    }

    /// The blob as text (`groupvpn1:...`).
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a blob serializes");
        format!("{BLOB_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Validates every field and normalises the fingerprint to lower-case
    /// hex without separators.
    fn check(mut self) -> Result<Self, BlobError> {
        if self.v != 1 {
            return Err(BlobError::UnsupportedVersion(self.v.to_string()));
        }
        check_server_url(&self.server)?;
        self.server_cert_sha256 = normalize_fingerprint(&self.server_cert_sha256)
            .map_err(|r| field("server_cert_sha256", r))?;
        vpn_pki::validate_group_name(&self.group).map_err(|e| field("group", e.to_string()))?;
        vpn_pki::validate_node_name(&self.node_name)
            .map_err(|e| field("node_name", e.to_string()))?;
        let secret = URL_SAFE_NO_PAD
            .decode(self.secret.trim_end_matches('='))
            .map_err(|e| field("secret", format!("not base64url: {e}")))?;
        if secret.len() != SECRET_LEN {
            return Err(field(
                "secret",
                format!("{} bytes, expected {SECRET_LEN}", secret.len()),
            ));
        }
        Ok(self)
    }

    /// The pinned certificate digest as bytes.
    pub fn pin(&self) -> [u8; 32] {
        parse_fingerprint(&self.server_cert_sha256).expect("checked when parsed")
    }
}

/// `groupvpnN:` with N other than 1: the version text.
fn version_of(s: &str) -> Option<String> {
    let rest = s.strip_prefix("groupvpn")?;
    let (v, _) = rest.split_once(':')?;
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_digit())).then(|| v.to_owned())
}

/// The server URL must be `https://HOST[:PORT][/PATH]`.
pub fn check_server_url(url: &str) -> Result<(), BlobError> {
    crate::url::ServerUrl::parse(url)
        .map(|_| ())
        .map_err(|r| field("server", r))
}

/// Accepts 64 hex digits, upper or lower case, optionally separated by `:`
/// (as `openssl x509 -fingerprint -sha256` prints them); returns lower-case
/// hex without separators.
pub fn normalize_fingerprint(s: &str) -> Result<String, String> {
    let hex: String = s.chars().filter(|&c| c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "expected the SHA-256 of the server certificate as 64 hex digits, got {s:?}"
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

/// 64 hex digits (`:` separators allowed) to 32 bytes.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let hex = normalize_fingerprint(s)?;
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
