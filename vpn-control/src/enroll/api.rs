//! The group server's JSON API as the enrolment client sees it
//! (`.work/server-contract.md`, "JSON API").

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::EnrollError;

/// `POST` enrolment: blob secret + CSR.
pub const ENROLL_PATH: &str = "/api/v1/enroll";
/// `POST` renewal: CSR of a current member.
pub const RENEW_PATH: &str = "/api/v1/renew";

/// `GET` the group CA.
pub fn ca_path(group: &str) -> String {
    format!("/api/v1/groups/{group}/ca")
}

/// `GET` the group's current CRL.
pub fn crl_path(group: &str) -> String {
    format!("/api/v1/groups/{group}/crl")
}

/// Body of `POST /api/v1/enroll`.
#[derive(Serialize)]
pub struct EnrollRequest<'a> {
    /// The blob's secret.
    pub secret: &'a str,
    /// PKCS#10 request (PEM) for the node's PeerId.
    pub csr_pem: &'a str,
}

/// Body of `POST /api/v1/renew`.
#[derive(Serialize)]
pub struct RenewRequest<'a> {
    /// PKCS#10 request (PEM) for the node's PeerId.
    pub csr_pem: &'a str,
}

/// Answer to enrol and renew.
#[derive(Clone, Debug, Deserialize)]
pub struct Issued {
    /// The member certificate.
    pub certificate_pem: String,
    /// The group CA certificate.
    pub ca_pem: String,
    /// The group's current CRL.
    pub crl_pem: String,
    /// Group configuration for `groupvpn.toml`.
    pub group: GroupConfig,
    /// When the node should renew (RFC 3339).
    pub renew_after: String,
    /// When the certificate expires (RFC 3339).
    pub not_after: String,
}

/// The group configuration the server hands out.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct GroupConfig {
    /// Group name.
    pub name: String,
    /// Address ranges (CIDR).
    #[serde(default)]
    pub ranges: Vec<String>,
    /// Public DHT bootstrap multiaddrs.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Kademlia protocol of the public DHT.
    #[serde(default = "default_kad")]
    pub public_kad_protocol: String,
}

fn default_kad() -> String {
    "/ipfs/kad/1.0.0".to_owned()
}

/// Answer to `GET /api/v1/groups/{group}/crl`.
#[derive(Clone, Debug, Deserialize)]
pub struct CrlAnswer {
    /// The CRL (PEM).
    pub crl_pem: String,
    /// Its CRL number.
    pub number: u64,
    /// thisUpdate (RFC 3339).
    pub this_update: String,
    /// nextUpdate (RFC 3339).
    pub next_update: String,
}

/// Answer to `GET /api/v1/groups/{group}/ca`.
#[derive(Clone, Debug, Deserialize)]
pub struct CaAnswer {
    /// The CA certificate (PEM).
    pub ca_pem: String,
}

/// Parses an RFC 3339 time from the server.
pub fn parse_time(what: &str, s: &str) -> Result<SystemTime, EnrollError> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| EnrollError::Protocol(format!("{what} {s:?} is not an RFC 3339 time: {e}")))
}
