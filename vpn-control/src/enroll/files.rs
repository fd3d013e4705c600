//! The node directory `vpn-control join` fills (`.work/server-contract.md`,
//! "Files"): `node.key`, `node.crt`, `ca.crt`, `ca.crl`, `server.json` and
//! `groupvpn.toml`. Every file is replaced atomically.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vpn_pki::{AddressAssignment, CaCertificate, MemberInfo};

use super::api::GroupConfig;
use super::EnrollError;

/// The node identity (PeerId key), 0600.
pub const NODE_KEY: &str = "node.key";
/// The member certificate.
pub const NODE_CRT: &str = "node.crt";
/// The group CA certificate.
pub const CA_CRT: &str = "ca.crt";
/// The group CRL.
pub const CA_CRL: &str = "ca.crl";
/// Where to renew and refresh the CRL.
pub const SERVER_JSON: &str = "server.json";
/// The node configuration for `vpn-control up -c`.
pub const CONFIG_TOML: &str = "groupvpn.toml";

/// Default interface name in the generated configuration.
pub const DEFAULT_INTERFACE: &str = "vpn0";
/// Default data port in the generated configuration.
pub const DEFAULT_LISTEN_PORT: u16 = 51830;
/// Default overlay listen address in the generated configuration.
pub const DEFAULT_OVERLAY_LISTEN: &str = "/ip4/0.0.0.0/tcp/4001";

/// `server.json`: which server (and pin) this node renews with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Base URL of the group server.
    pub server: String,
    /// SHA-256 of its TLS certificate (64 hex).
    pub server_cert_sha256: String,
    /// The group.
    pub group: String,
    /// When the server asked the node to renew (RFC 3339), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_after: Option<String>,
}

/// Paths inside a node directory.
#[derive(Clone, Debug)]
pub struct NodeDir {
    dir: PathBuf,
}

impl NodeDir {
    /// The directory (not touched yet).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `dir/name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates the directory (mode 0700 for new folders) if missing.
    pub fn create(&self) -> Result<(), EnrollError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| EnrollError::Io {
                path: self.dir.clone(),
                source,
            })
    }

    /// Writes a public file (0644) atomically.
    pub fn write_public(&self, name: &str, data: &[u8]) -> Result<PathBuf, EnrollError> {
        let p = self.file(name);
        vpn_pki::write_atomic(&p, data, 0o644)?;
        Ok(p)
    }

    /// Reads `server.json`.
    pub fn server_info(&self) -> Result<ServerInfo, EnrollError> {
        let p = self.file(SERVER_JSON);
        let bytes = std::fs::read(&p).map_err(|e| EnrollError::NotEnrolled {
            dir: self.dir.clone(),
            reason: format!("{}: {e}", p.display()),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| EnrollError::NotEnrolled {
            dir: self.dir.clone(),
            reason: format!("{}: {e}", p.display()),
        })
    }

    /// Writes `server.json`.
    pub fn write_server_info(&self, info: &ServerInfo) -> Result<PathBuf, EnrollError> {
        let mut text = serde_json::to_string_pretty(info).expect("serializable");
        text.push('\n');
        self.write_public(SERVER_JSON, text.as_bytes())
    }
}

/// The interface addresses for the configuration: each fixed address of the
/// certificate with the prefix length of the group range that holds it.
/// Empty when the certificate says "allocate" (the daemon then allocates).
pub fn interface_addresses(info: &MemberInfo, ca: &CaCertificate) -> Vec<String> {
    match &info.address {
        AddressAssignment::Allocate => Vec::new(),
        AddressAssignment::Fixed(addrs) => addrs
            .iter()
            .map(|a: &IpAddr| {
                let prefix = ca
                    .ranges()
                    .iter()
                    .find(|r| r.contains(*a))
                    .map_or(if a.is_ipv4() { 32 } else { 128 }, |r| r.prefix());
                format!("{a}/{prefix}")
            })
            .collect(),
    }
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", parts.join(", "))
}

/// The `groupvpn.toml` of an enrolled node: `[interface]` and `[overlay]`
/// as in docs/config.md and `.work/overlay-config-contract.md`, paths
/// relative to the file's folder.
pub fn render_config(
    info: &MemberInfo,
    server: &str,
    addresses: &[String],
    group: &GroupConfig,
) -> String {
    let mut s = format!(
        "# GroupVPN node configuration written by `vpn-control join`\n\
         # for {name} in group {grp} (group server {server}).\n\
         # Start the node with: vpn-control up -c groupvpn.toml\n\
         # Renew the certificate and refresh the CRL: vpn-control renew --dir <this folder>\n\n\
         [interface]\n\
         name = {iface}\n",
        name = q(&info.name),
        grp = q(&info.group),
        iface = q(DEFAULT_INTERFACE),
    );
    if addresses.is_empty() {
        s.push_str("# addresses: allocated from the group range at start.\n");
    } else {
        s.push_str(&format!(
            "# The certificate's fixed address.\naddresses = {}\n",
            list(addresses)
        ));
    }
    s.push_str(&format!(
        "dataplane = \"auto\"\nlisten_port = {DEFAULT_LISTEN_PORT}\n\n\
         [overlay]\n\
         identity = {key}\n\
         certificate = {crt}\n\
         ca = {ca}\n\
         crl = {crl}\n\
         listen = {listen}\n\
         bootstrap = {boot}\n\
         public_kad_protocol = {kad}\n",
        key = q(NODE_KEY),
        crt = q(NODE_CRT),
        ca = q(CA_CRT),
        crl = q(CA_CRL),
        listen = list(&[DEFAULT_OVERLAY_LISTEN.to_owned()]),
        boot = list(&group.bootstrap),
        kad = q(&group.public_kad_protocol),
    ));
    s
}
