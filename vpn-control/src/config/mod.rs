//! The configuration file (`docs/config.md` is the contract): parsed once
//! into typed structures. Every error names the key path and the problem.

mod lab;
pub mod overlay;
mod validate;
pub mod values;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use overlay::OverlaySection;
pub use values::{HexKey, InterfaceAddress};

use crate::dataplane::Prefix;
use values::{AllowedPrefix, Parsed};

/// Which data plane to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneMode {
    Kernel,
    Userspace,
    #[default]
    Auto,
}

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub interface: InterfaceConfig,
    pub peers: Vec<PeerConfig>,
    /// The group overlay (certificates); `None` for a lab-only config.
    pub overlay: Option<OverlaySection>,
}

/// The `[interface]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    /// Configured addresses. May be empty with `[overlay]`: the addresses
    /// then come from the certificate or the group's allocation.
    pub addresses: Vec<InterfaceAddress>,
    pub dataplane: DataplaneMode,
    pub listen_port: u16,
    pub underlay: Option<String>,
    pub mtu: Option<u32>,
    pub control_socket: PathBuf,
}

impl InterfaceConfig {
    /// Name of the wire end of the kernel path's veth pair.
    pub fn peer_name(&self) -> String {
        format!("{}p", self.name)
    }
}

/// One `[[peer]]` (lab configuration: static keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub name: String,
    pub endpoint: SocketAddr,
    pub allowed_ips: Vec<Prefix>,
    pub local_index: u32,
    pub remote_index: u32,
    pub send_key: HexKey,
    pub recv_key: HexKey,
}

/// A configuration error: the key path (`interface.mtu`, `peer[0].send_key`)
/// and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// Dotted key path; `.` for the document itself.
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Errors of [`load`].
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
}

/// Reads and validates a configuration file. Relative paths in
/// `[overlay]` are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut cfg = Config::parse(&text).map_err(|source| LoadError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    if let Some(o) = &mut cfg.overlay {
        o.resolve_paths(&dir);
    }
    Ok(cfg)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    interface: RawInterface,
    #[serde(default)]
    peer: Vec<RawPeer>,
    overlay: Option<overlay::RawOverlay>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterface {
    name: String,
    #[serde(default)]
    addresses: Vec<Parsed<InterfaceAddress>>,
    #[serde(default)]
    dataplane: DataplaneMode,
    #[serde(default = "default_port")]
    listen_port: u16,
    underlay: Option<String>,
    mtu: Option<u32>,
    control_socket: Option<PathBuf>,
}

fn default_port() -> u16 {
    vpn_common::wire::DEFAULT_DATA_PORT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: String,
    endpoint: Parsed<SocketAddrValue>,
    allowed_ips: Vec<Parsed<AllowedPrefix>>,
    local_index: u32,
    remote_index: u32,
    send_key: Parsed<HexKey>,
    recv_key: Parsed<HexKey>,
}

struct SocketAddrValue(SocketAddr);

impl std::str::FromStr for SocketAddrValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map(SocketAddrValue)
            .map_err(|_| format!("{s:?} is not IP:PORT (IPv6 as [ADDR]:PORT)"))
    }
}

/// Default control socket path for an interface name.
pub fn default_control_socket(name: &str) -> PathBuf {
    PathBuf::from(format!("/run/groupvpn/{name}.sock"))
}

impl Config {
    /// Parses and validates a configuration document.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, ".", &e))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            toml_error(text, &key, e.inner())
        })?;
        let overlay = raw.overlay.map(|o| o.validate()).transpose()?;
        let name = raw.interface.name;
        let cfg = Config {
            interface: InterfaceConfig {
                control_socket: raw
                    .interface
                    .control_socket
                    .unwrap_or_else(|| default_control_socket(&name)),
                name,
                addresses: raw.interface.addresses.into_iter().map(|a| a.0).collect(),
                dataplane: raw.interface.dataplane,
                listen_port: raw.interface.listen_port,
                underlay: raw.interface.underlay,
                mtu: raw.interface.mtu,
            },
            peers: raw
                .peer
                .into_iter()
                .map(|p| PeerConfig {
                    name: p.name,
                    endpoint: p.endpoint.0 .0,
                    allowed_ips: p.allowed_ips.into_iter().map(|a| a.0 .0).collect(),
                    local_index: p.local_index,
                    remote_index: p.remote_index,
                    send_key: p.send_key.0,
                    recv_key: p.recv_key.0,
                })
                .collect(),
            overlay,
        };
        validate::validate(&cfg)?;
        Ok(cfg)
    }
}

fn toml_error(text: &str, key: &str, e: &toml::de::Error) -> ConfigError {
    let mut problem = e.message().trim().to_owned();
    if let Some(span) = e.span() {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        problem.push_str(&format!(" (line {line})"));
    }
    ConfigError::new(key, problem)
}
