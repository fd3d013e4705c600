//! The `[overlay]` table: certificates, the libp2p overlay's addresses and
//! the session timers (`.work/overlay-config-contract.md`, docs/config.md).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde::Deserialize;

use super::values::Parsed;
use super::ConfigError;

/// Default overlay listen address.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/4001";
/// Smallest accepted `rekey_after` (the session core's retry timer is 5 s).
pub const MIN_REKEY_AFTER: Duration = Duration::from_secs(5);
/// Largest accepted `neighbours`.
pub const MAX_NEIGHBOURS: usize = 1024;

/// A validated `[overlay]` table. Paths are absolute once the file was
/// loaded with [`super::load`] (relative ones are resolved against the
/// configuration file's directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlaySection {
    /// The node key (its PeerId); created with mode 0600 if absent.
    pub identity: PathBuf,
    /// This node's member certificate (PEM or DER).
    pub certificate: PathBuf,
    /// The group CA certificate.
    pub ca: PathBuf,
    /// The CRL, if any.
    pub crl: Option<PathBuf>,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Public DHT bootstrap peers, each ending in `/p2p/<PeerId>`.
    pub bootstrap: Vec<Multiaddr>,
    /// The public Kademlia protocol name.
    pub public_kad_protocol: String,
    /// Announce the listen addresses as external addresses.
    pub announce_listen_addrs: bool,
    /// Session timers.
    pub rekey_after: Duration,
    pub reject_after: Duration,
    /// Members discovery connects to and verifies from the provider records.
    pub neighbours: usize,
    /// Serve the public DHT (false: client mode).
    pub public_dht_server: bool,
}

impl OverlaySection {
    /// Resolves relative paths against `dir`.
    pub fn resolve_paths(&mut self, dir: &Path) {
        for p in [&mut self.identity, &mut self.certificate, &mut self.ca] {
            *p = resolve(dir, p);
        }
        if let Some(p) = &mut self.crl {
            *p = resolve(dir, p);
        }
    }

    /// The session core's timers: WireGuard's defaults with `rekey_after`
    /// and `reject_after` from the file. The responder's extra rekey delay
    /// and the previous key's grace window (10 s each by default) shrink
    /// to half the gap between the two when the gap is short, so that the
    /// core's `rekey_after + responder_rekey_delay < reject_after` holds
    /// (e.g. the namespace test's 10 s / 20 s).
    pub fn session_config(&self) -> vpn_core::session::Config {
        let mut c = vpn_core::session::Config {
            rekey_after_time: self.rekey_after,
            reject_after_time: self.reject_after,
            ..Default::default()
        };
        let half_gap = (self.reject_after - self.rekey_after) / 2;
        c.responder_rekey_delay = c.responder_rekey_delay.min(half_gap);
        c.previous_grace = c.previous_grace.min(half_gap);
        c
    }

    /// The IPs of the bootstrap addresses (DNS ones left out), in order.
    pub fn bootstrap_ips(&self) -> Vec<std::net::IpAddr> {
        self.bootstrap
            .iter()
            .filter_map(|m| {
                m.iter().find_map(|p| match p {
                    Protocol::Ip4(a) => Some(a.into()),
                    Protocol::Ip6(a) => Some(a.into()),
                    _ => None,
                })
            })
            .collect()
    }
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverlay {
    identity: PathBuf,
    certificate: PathBuf,
    ca: PathBuf,
    crl: Option<PathBuf>,
    listen: Option<Vec<Parsed<MultiaddrValue>>>,
    #[serde(default)]
    bootstrap: Vec<Parsed<MultiaddrValue>>,
    public_kad_protocol: Option<String>,
    #[serde(default = "yes")]
    announce_listen_addrs: bool,
    rekey_after: Option<Parsed<DurationValue>>,
    reject_after: Option<Parsed<DurationValue>>,
    neighbours: Option<i64>,
    #[serde(default = "yes")]
    public_dht_server: bool,
}

fn yes() -> bool {
    true
}

/// A multiaddr as a configuration value.
pub(super) struct MultiaddrValue(Multiaddr);

impl FromStr for MultiaddrValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        s.trim()
            .parse()
            .map(MultiaddrValue)
            .map_err(|e| format!("{s:?} is not a multiaddr ({e})"))
    }
}

/// A duration such as "10s", "2m".
pub(super) struct DurationValue(Duration);

impl FromStr for DurationValue {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        vpn_pki::parse_duration(s)
            .map(DurationValue)
            .map_err(|e| match e {
                vpn_pki::PkiError::InvalidInput { reason, .. } => reason,
                other => other.to_string(),
            })
    }
}

impl RawOverlay {
    pub(super) fn validate(self) -> Result<OverlaySection, ConfigError> {
        let session = vpn_core::session::Config::default();
        let rekey_after = self
            .rekey_after
            .map_or(session.rekey_after_time, |d| d.0 .0);
        let reject_after = self
            .reject_after
            .map_or(session.reject_after_time, |d| d.0 .0);
        for (key, p) in [
            ("identity", Some(&self.identity)),
            ("certificate", Some(&self.certificate)),
            ("ca", Some(&self.ca)),
            ("crl", self.crl.as_ref()),
        ] {
            if p.is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(ConfigError::new(format!("overlay.{key}"), "empty path"));
            }
        }
        let listen: Vec<Multiaddr> = match self.listen {
            Some(l) => l.into_iter().map(|m| m.0 .0).collect(),
            None => vec![DEFAULT_LISTEN.parse().expect("default listen address")],
        };
        if listen.is_empty() {
            return Err(ConfigError::new(
                "overlay.listen",
                "at least one listen address is required",
            ));
        }
        let bootstrap: Vec<Multiaddr> = self.bootstrap.into_iter().map(|m| m.0 .0).collect();
        for (n, b) in bootstrap.iter().enumerate() {
            if !matches!(b.iter().last(), Some(Protocol::P2p(_))) {
                return Err(ConfigError::new(
                    format!("overlay.bootstrap[{n}]"),
                    format!("{b} does not end in /p2p/<PeerId>"),
                ));
            }
        }
        let public_kad_protocol = self
            .public_kad_protocol
            .unwrap_or_else(|| crate::overlay::ids::DEFAULT_PUBLIC_KAD_PROTOCOL.to_owned());
        if !public_kad_protocol.starts_with('/') {
            return Err(ConfigError::new(
                "overlay.public_kad_protocol",
                format!("{public_kad_protocol:?} must start with '/'"),
            ));
        }
        if rekey_after < MIN_REKEY_AFTER {
            return Err(ConfigError::new(
                "overlay.rekey_after",
                format!(
                    "{}s is below the minimum of {}s",
                    rekey_after.as_secs(),
                    MIN_REKEY_AFTER.as_secs()
                ),
            ));
        }
        if reject_after <= rekey_after {
            return Err(ConfigError::new(
                "overlay.reject_after",
                format!(
                    "{}s must be greater than rekey_after ({}s)",
                    reject_after.as_secs(),
                    rekey_after.as_secs()
                ),
            ));
        }
        let neighbours = match self.neighbours {
            None => crate::overlay::DEFAULT_NEIGHBOURS,
            Some(n) if (1..=MAX_NEIGHBOURS as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(ConfigError::new(
                    "overlay.neighbours",
                    format!("{n} is outside 1..={MAX_NEIGHBOURS}"),
                ))
            }
        };
        Ok(OverlaySection {
            identity: self.identity,
            certificate: self.certificate,
            ca: self.ca,
            crl: self.crl,
            listen,
            bootstrap,
            public_kad_protocol,
            announce_listen_addrs: self.announce_listen_addrs,
            rekey_after,
            reject_after,
            neighbours,
            public_dht_server: self.public_dht_server,
        })
    }
}
