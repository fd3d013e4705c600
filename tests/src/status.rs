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
    }
}
