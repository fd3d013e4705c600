//! The local control protocol between `vpn-control status`/`down` and a
//! running daemon: a Unix stream socket (mode 0600), one JSON request line,
//! one JSON response line.
//!
//! `{"cmd":"status"}` answers `{"ok":true,"status":{...}}` where the status
//! has the shape documented on [`Status`]; `{"cmd":"down"}` answers
//! `{"ok":true}` once the daemon has torn everything down.

mod render;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vpn_common::stats::Counter;

use crate::dataplane::{DataplaneStats, DesiredState, PathKind};

pub use render::render_table;

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Down,
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Response {
    pub fn ok() -> Self {
        Response {
            ok: true,
            error: None,
            status: None,
        }
    }
    pub fn error(e: impl Into<String>) -> Self {
        Response {
            ok: false,
            error: Some(e.into()),
            status: None,
        }
    }
    pub fn status(s: Status) -> Self {
        Response {
            ok: true,
            error: None,
            status: Some(s),
        }
    }
}

/// `vpn-control status --json` (`overlay` is `null` without `[overlay]`, see
/// [`OverlayStatus`]):
/// `{"interface":"vpn0","dataplane":"kernel","mtu":1440,"peers":[{"name":"b",
/// "id":1,"endpoint":"192.168.77.2:51830","allowed_ips":["10.77.0.2/32"],
/// "path":"kernel","tx_packets":0,"tx_bytes":0,"rx_packets":0,"rx_bytes":0}],
/// "counters":{"rx_packets":0,"truncated":0,...}}`. Counters are keyed by
/// `vpn_common::stats::Counter::name`, every counter always present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub interface: String,
    pub dataplane: PathKind,
    pub mtu: u32,
    pub peers: Vec<PeerStatus>,
    pub counters: BTreeMap<String, u64>,
    /// The group overlay; `null` for a lab-only configuration.
    #[serde(default)]
    pub overlay: Option<OverlayStatus>,
}

/// The `"overlay"` object of [`Status`]:
/// `{"peer_id":"12D3KooW...","group":"lab","addresses":["10.77.0.3/24"],
/// "members":3,"connected":3,"neighbours":3,"sessions":3,
/// "counters":{"membership_refused":0,...},
/// "pending":{"queued":0,"delivered":1,"dropped":0,"connects":1,
/// "connect_failures":0,"passed_up":1,"pass_up_dropped":0}}`.
/// `members`: verified members (the overlay's count; the view's while the
/// overlay does not answer); `connected`: those with an open overlay
/// connection now; `neighbours`: members chosen from the provider records
/// or that chose this node (kept connected); `sessions`: members with a
/// sending key. `counters`: the overlay's
/// `OverlayStats` by field name. `pending`: the first-packet queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayStatus {
    pub peer_id: String,
    pub group: String,
    pub addresses: Vec<String>,
    pub members: u64,
    #[serde(default)]
    pub connected: u64,
    #[serde(default)]
    pub neighbours: u64,
    pub sessions: u64,
    pub counters: BTreeMap<String, u64>,
    #[serde(default)]
    pub pending: PendingStatus,
}

/// The first-packet queue's counters (see `daemon::pending`), plus the
/// data plane's hand-over to the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStatus {
    /// Packets waiting for a session now.
    pub queued: u64,
    /// Packets sent after their session came up.
    pub delivered: u64,
    /// Packets dropped while waiting (queue full, connect failed, backoff,
    /// waited too long).
    pub dropped: u64,
    /// Session requests started (`connect_ip`).
    pub connects: u64,
    /// Session requests that failed.
    pub connect_failures: u64,
    /// Packets the data plane handed to the daemon.
    pub passed_up: u64,
    /// Packets the data plane dropped because the daemon was behind.
    pub pass_up_dropped: u64,
}

/// The overlay's counters by field name.
pub fn overlay_counters(s: &crate::overlay::OverlayStats) -> BTreeMap<String, u64> {
    let crate::overlay::OverlayStats {
        membership_refused,
        refused_by_peer,
        private_requests_refused,
        records_forged,
        records_unsigned,
        records_expired,
        records_malformed,
        records_content,
        members_expelled,
        events_dropped,
        crls_received,
        crls_learned,
        ..
    } = s.clone();
    [
        ("membership_refused", membership_refused),
        ("refused_by_peer", refused_by_peer),
        ("private_requests_refused", private_requests_refused),
        ("records_forged", records_forged),
        ("records_unsigned", records_unsigned),
        ("records_expired", records_expired),
        ("records_malformed", records_malformed),
        ("records_content", records_content),
        ("members_expelled", members_expelled),
        ("events_dropped", events_dropped),
        ("crls_received", crls_received),
        ("crls_learned", crls_learned),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One peer in [`Status`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub name: String,
    pub id: u32,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    pub path: PathKind,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

impl Status {
    /// Builds the status from the desired state and a counter snapshot.
    pub fn build(
        interface: &str,
        path: PathKind,
        mtu: u32,
        desired: &DesiredState,
        stats: &DataplaneStats,
    ) -> Status {
        let peers = desired
            .peers
            .values()
            .map(|p| {
                let c = stats.peers.get(&p.id).copied().unwrap_or_default();
                PeerStatus {
                    name: p.name.clone(),
                    id: p.id,
                    endpoint: p.endpoint.map(|e| e.to_string()),
                    allowed_ips: p
                        .allowed
                        .iter()
                        .map(|a| format!("{}/{}", a.addr, a.len))
                        .collect(),
                    path,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                }
            })
            .collect();
        let counters = Counter::ALL
            .iter()
            .map(|c| {
                (
                    c.name().to_owned(),
                    stats.counters.get(c).copied().unwrap_or(0),
                )
            })
            .collect();
        Status {
            interface: interface.to_owned(),
            dataplane: path,
            mtu,
            peers,
            counters,
            overlay: None,
        }
    }
}

/// Errors talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens on the socket (no daemon, or a stale socket file).
    #[error("no daemon is listening on {path}: {source}")]
    NotRunning {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad answer from the daemon: {0}")]
    Protocol(String),
    #[error("the daemon refused: {0}")]
    Refused(String),
}

/// Sends one request and waits for the answer (up to `timeout`).
pub fn request(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::NotRunning {
        path: socket.display().to_string(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    let resp: Response = serde_json::from_str(answer.trim())
        .map_err(|e| ClientError::Protocol(format!("{e}: {answer:?}")))?;
    if !resp.ok {
        return Err(ClientError::Refused(resp.error.unwrap_or_default()));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{DesiredPeer, PeerCounters, Prefix};

    fn sample() -> Status {
        let mut d = DesiredState::default();
        d.peers.insert(
            1,
            DesiredPeer {
                id: 1,
                name: "b".into(),
                endpoint: Some("192.168.77.2:51830".parse().unwrap()),
                allowed: vec![Prefix {
                    addr: "10.77.0.2".parse().unwrap(),
                    len: 32,
                }],
                tx: None,
                rx: vec![],
            },
        );
        let mut s = DataplaneStats::default();
        s.counters.insert(Counter::DropReplay, 3);
        s.counters.insert(Counter::RxPackets, 10);
        s.peers.insert(
            1,
            PeerCounters {
                tx_packets: 5,
                tx_bytes: 500,
                rx_packets: 10,
                rx_bytes: 1000,
            },
        );
        Status::build("vpn0", PathKind::Kernel, 1440, &d, &s)
    }

    #[test]
    fn status_json_shape() {
        let v: serde_json::Value = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["interface"], "vpn0");
        assert_eq!(v["dataplane"], "kernel");
        assert_eq!(v["mtu"], 1440);
        let p = &v["peers"][0];
        assert_eq!(p["name"], "b");
        assert_eq!(p["id"], 1);
        assert_eq!(p["endpoint"], "192.168.77.2:51830");
        assert_eq!(p["allowed_ips"][0], "10.77.0.2/32");
        assert_eq!(p["path"], "kernel");
        assert_eq!(p["tx_packets"], 5);
        assert_eq!(p["tx_bytes"], 500);
        assert_eq!(p["rx_packets"], 10);
        assert_eq!(p["rx_bytes"], 1000);
        let c = v["counters"].as_object().unwrap();
        assert_eq!(c.len(), Counter::ALL.len());
        assert_eq!(c["replay"], 3);
        assert_eq!(c["rx_packets"], 10);
        assert_eq!(c["truncated"], 0);
        assert!(v["overlay"].is_null(), "null without [overlay]");
    }

    #[test]
    fn overlay_section_shape() {
        let mut s = sample();
        s.overlay = Some(OverlayStatus {
            peer_id: "12D3KooWx".into(),
            group: "lab".into(),
            addresses: vec!["10.77.0.3/24".into()],
            members: 3,
            connected: 2,
            neighbours: 1,
            sessions: 2,
            counters: overlay_counters(&crate::overlay::OverlayStats {
                records_forged: 7,
                ..Default::default()
            }),
            pending: PendingStatus {
                dropped: 4,
                ..Default::default()
            },
        });
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        let o = &v["overlay"];
        assert_eq!(o["peer_id"], "12D3KooWx");
        assert_eq!(o["group"], "lab");
        assert_eq!(o["addresses"][0], "10.77.0.3/24");
        assert_eq!(o["members"], 3);
        assert_eq!(o["connected"], 2);
        assert_eq!(o["neighbours"], 1);
        assert_eq!(o["sessions"], 2);
        assert_eq!(o["counters"]["records_forged"], 7);
        assert_eq!(o["counters"]["membership_refused"], 0);
        assert_eq!(o["pending"]["dropped"], 4);
        // Old answers (no overlay key) still parse.
        let mut old = serde_json::to_value(sample()).unwrap();
        old.as_object_mut().unwrap().remove("overlay");
        let back: Status = serde_json::from_value(old).unwrap();
        assert_eq!(back.overlay, None);
        let t = render_table(&s);
        assert!(t.contains("group lab"), "{t}");
        assert!(t.contains("12D3KooWx"), "{t}");
        assert!(t.contains("10.77.0.3/24"), "{t}");
        assert!(t.contains("records_forged 7"), "{t}");
        assert!(t.contains("dropped 4"), "{t}");
    }

    #[test]
    fn protocol_roundtrip() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::Down).unwrap(),
            r#"{"cmd":"down"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"cmd":"down"}"#).unwrap(),
            Request::Down
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        let r = Response::status(sample());
        let back: Response = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            serde_json::to_string(&Response::ok()).unwrap(),
            r#"{"ok":true}"#
        );
        let e: Response = serde_json::from_str(r#"{"ok":false,"error":"x"}"#).unwrap();
        assert_eq!(e.error.as_deref(), Some("x"));
    }

    #[test]
    fn table_mentions_peers_and_drops() {
        let t = render_table(&sample());
        assert!(t.contains("vpn0"), "{t}");
        assert!(t.contains("kernel"), "{t}");
        assert!(t.contains("192.168.77.2:51830"), "{t}");
        assert!(t.contains("replay"), "{t}");
        assert!(t.contains("3"), "{t}");
    }

    #[test]
    fn client_reports_not_running() {
        let dir = std::env::temp_dir().join(format!("gv-ctl-{}", std::process::id()));
        let e = request(
            &dir.join("none.sock"),
            &Request::Status,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(e, ClientError::NotRunning { .. }), "{e}");
    }
}
