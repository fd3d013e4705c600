//! The contract between the group server (`vpn-server`) and the nodes
//! (`vpn-control join` / `renew` and the daemon's renewal task), written
//! once and used by both sides:
//!
//! * [`blob`]: the configuration blob an approved member downloads
//!   (`groupvpn1:` + base64url JSON: server URL, pinned certificate digest,
//!   group, node name, single-use secret), with the checks a pasted blob
//!   gets;
//! * [`url`]: the group server's `https://` URL as a blob carries it;
//! * [`messages`]: the JSON API's paths, requests and answers (enrol,
//!   renew, group CA, CRL).
//!
//! `docs/group-server.md` describes the API; the server publishes an
//! OpenAPI document of it.

pub mod blob;
pub mod messages;
pub mod url;

pub use blob::{
    hex, normalize_fingerprint, parse_fingerprint, Blob, BlobError, BLOB_PREFIX, SECRET_LEN,
};
pub use messages::{
    ca_path, crl_path, CaAnswer, CrlAnswer, EnrollRequest, GroupConfig, Issued, RenewRequest,
    ENROLL_PATH, PUBLIC_KAD_PROTOCOL, RENEW_PATH,
};
pub use url::ServerUrl;
