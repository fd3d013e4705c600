//! `vpn-control status --json`, as the daemon's contract defines it:
//! `{"interface","dataplane","mtu","peers":[{"name","id","endpoint",
//! "allowed_ips","path","tx_packets","tx_bytes","rx_packets","rx_bytes"}],
//! "counters":{...}}`.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

#[derive(Clone, Debug, serde::Deserialize)]
pub struct Status {
    pub interface: String,
    pub dataplane: String,
    pub mtu: u32,
    pub peers: Vec<PeerStatus>,
    /// Global counters by name (drop reasons and totals).
    pub counters: BTreeMap<String, u64>,
    /// The overlay's part (`null`, or absent from older daemons, without
    /// an `[overlay]` table).
    #[serde(default)]
    pub overlay: Option<OverlayStatus>,
}

/// `"overlay": {"peer_id","group","addresses","members","sessions","counters"}`
/// (`.work/overlay-config-contract.md`).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct OverlayStatus {
    pub peer_id: String,
    pub group: String,
    /// This node's virtual addresses with prefix length (`10.77.0.3/24`).
    pub addresses: Vec<String>,
    /// Verified members (other than this node).
    pub members: u64,
    /// Members with a session.
    pub sessions: u64,
    /// `OverlayStats` fields by name.
    #[serde(default)]
    pub counters: BTreeMap<String, serde_json::Value>,
}

impl OverlayStatus {
    /// This node's virtual IPv4 address, if it has one yet.
    pub fn v4(&self) -> Option<std::net::Ipv4Addr> {
        self.addresses
            .iter()
            .filter_map(|a| a.split('/').next()?.parse().ok())
            .next()
    }

    /// An overlay counter (0 if absent or not a number).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }
}

#[derive(Clone, Debug, serde::Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub id: u32,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    /// `kernel` or `userspace`.
    pub path: String,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

impl Status {
    pub fn parse(json: &str) -> Result<Self> {
        serde_json::from_str(json).map_err(|e| Error::Parse {
            what: "vpn-control status --json".into(),
            detail: format!("{e}; output was: {json}"),
        })
    }

    pub fn peer(&self, name: &str) -> Option<&PeerStatus> {
        self.peers.iter().find(|p| p.name == name)
    }

    /// A global counter by its `vpn_common::stats::Counter::name` (0 if absent).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Counters that must stay zero on a healthy lab link (authentication,
    /// replay and routing failures), with their values when non-zero.
    pub fn integrity_failures(&self) -> Vec<(String, u64)> {
        INTEGRITY_COUNTERS
            .iter()
            .map(|&k| (k.to_owned(), self.counter(k)))
            .filter(|(_, v)| *v != 0)
            .collect()
    }
}

/// Drop reasons that never occur between two correctly configured peers.
pub const INTEGRITY_COUNTERS: [&str; 5] = [
    "unknown_index",
    "bad_tag",
    "replay",
    "wrong_inner_source",
    "bad_type",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract() {
        let j = r#"{"interface":"vpn0","dataplane":"kernel","mtu":1440,
            "peers":[{"name":"b","id":1,"endpoint":"192.168.77.12:51830",
            "allowed_ips":["10.77.0.2/32"],"path":"kernel","tx_packets":3,
            "tx_bytes":300,"rx_packets":2,"rx_bytes":200}],
            "counters":{"rx_packets":2,"replay":1,"bad_tag":4}}"#;
        let s = Status::parse(j).unwrap();
        assert_eq!(s.peer("b").unwrap().path, "kernel");
        assert_eq!(s.counter("replay"), 1);
        assert_eq!(s.integrity_failures().len(), 2);
        assert!(Status::parse("{}").is_err());
        assert!(s.overlay.is_none());
    }

    #[test]
    fn parses_the_overlay_part() {
        let j = r#"{"interface":"vpn0","dataplane":"kernel","mtu":1440,"peers":[],
            "counters":{},"overlay":{"peer_id":"12D3KooWabc","group":"lab",
            "addresses":["10.77.0.3/24","fd77::3/64"],"members":3,"sessions":2,
            "counters":{"membership_refused":1,"records_forged":0}}}"#;
        let s = Status::parse(j).unwrap();
        let o = s.overlay.unwrap();
        assert_eq!((o.members, o.sessions), (3, 2));
        assert_eq!(o.v4(), Some("10.77.0.3".parse().unwrap()));
        assert_eq!(o.counter("membership_refused"), 1);
        assert_eq!(o.counter("missing"), 0);
        let null = r#"{"interface":"vpn0","dataplane":"kernel","mtu":1440,"peers":[],
            "counters":{},"overlay":null}"#;
        assert!(Status::parse(null).unwrap().overlay.is_none());
    }
}
