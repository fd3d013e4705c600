//! The JSON API between nodes and the group server: paths, requests and
//! answers. Requests refuse unknown fields (the server answers 400); answers
//! tolerate them (an older node reads a newer server).

use serde::{Deserialize, Serialize};

/// `POST`: blob secret + CSR → certificate and group configuration.
pub const ENROLL_PATH: &str = "/api/v1/enroll";
/// `POST`: CSR of a current member → a fresh certificate.
pub const RENEW_PATH: &str = "/api/v1/renew";

/// The public Kademlia protocol the overlay discovers members on (the IPFS
/// DHT's), the group configuration's default.
pub const PUBLIC_KAD_PROTOCOL: &str = "/ipfs/kad/1.0.0";

/// `GET` the group CA.
pub fn ca_path(group: &str) -> String {
    format!("/api/v1/groups/{group}/ca")
}

/// `GET` the group's current CRL.
pub fn crl_path(group: &str) -> String {
    format!("/api/v1/groups/{group}/crl")
}

/// Body of `POST /api/v1/enroll`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The blob's secret.
    pub secret: String,
    /// PKCS#10 request (PEM) for the node's PeerId.
    pub csr_pem: String,
}

/// Body of `POST /api/v1/renew`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// PKCS#10 request (PEM) for the node's PeerId, signed with its key.
    pub csr_pem: String,
    /// The group, when the key is enrolled in several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Answer to enrol and renew.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Issued {
    /// The member certificate (PEM).
    pub certificate_pem: String,
    /// The group CA certificate (PEM).
    pub ca_pem: String,
    /// The group's current CRL (PEM).
    pub crl_pem: String,
    /// Group configuration for `groupvpn.toml`.
    pub group: GroupConfig,
    /// When the node should renew (RFC 3339): two thirds into the validity.
    pub renew_after: String,
    /// When the certificate expires (RFC 3339).
    pub not_after: String,
}

/// The group configuration the server hands out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    PUBLIC_KAD_PROTOCOL.to_owned()
}

/// Answer to `GET /api/v1/groups/{group}/crl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaAnswer {
    /// The CA certificate (PEM).
    pub ca_pem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refuse_unknown_fields_and_answers_tolerate_them() {
        let ok: EnrollRequest = serde_json::from_str(r#"{"secret":"s","csr_pem":"p"}"#).unwrap();
        assert_eq!((ok.secret.as_str(), ok.csr_pem.as_str()), ("s", "p"));
        assert!(
            serde_json::from_str::<EnrollRequest>(r#"{"secret":"s","csr_pem":"p","x":1}"#).is_err()
        );
        let r: RenewRequest = serde_json::from_str(r#"{"csr_pem":"p"}"#).unwrap();
        assert_eq!(r.group, None);
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"csr_pem":"p"}"#);
        let a: CrlAnswer = serde_json::from_str(
            r#"{"crl_pem":"c","number":3,"this_update":"t","next_update":"n","new":true}"#,
        )
        .unwrap();
        assert_eq!(a.number, 3);
        let g: GroupConfig = serde_json::from_str(r#"{"name":"lab"}"#).unwrap();
        assert_eq!(g.public_kad_protocol, PUBLIC_KAD_PROTOCOL);
        assert_eq!(ca_path("lab"), "/api/v1/groups/lab/ca");
        assert_eq!(crl_path("lab"), "/api/v1/groups/lab/crl");
    }
}
