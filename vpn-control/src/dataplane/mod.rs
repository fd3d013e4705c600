//! The data plane behind one narrow interface: the control plane computes a
//! [`DesiredState`] (peers, endpoints, routes, session keys) and a
//! [`Dataplane`] brings the kernel maps or the userspace twin to it,
//! idempotently. Only this module (and its children) touch aya, BPF maps,
//! TUN devices and data sockets.

pub mod kernel;
pub mod passup;
pub mod userspace;

use std::collections::BTreeMap;
use std::net::SocketAddr;

/// An IP prefix owned by a peer (cryptokey routing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    pub addr: std::net::IpAddr,
    pub len: u8,
}

/// Send and receive keys as the session core (`vpn_core::session`) produces
/// them and the data planes install them: one definition for both.
pub use vpn_core::session::{RxKey, TxKey};

/// One peer as the control plane wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredPeer {
    /// Stable small integer id (the key of the peer maps).
    pub id: u32,
    pub name: String,
    pub endpoint: Option<SocketAddr>,
    pub allowed: Vec<Prefix>,
    /// Current sending session, if established.
    pub tx: Option<TxKey>,
    /// Receiving sessions (current, and the previous one during a rekey grace window).
    pub rx: Vec<RxKey>,
}

/// Everything the data plane should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub peers: BTreeMap<u32, DesiredPeer>,
}

/// Which implementation carries a peer's packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    Kernel,
    Userspace,
}

/// Traffic counters of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerCounters {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

/// A snapshot of the data plane's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneStats {
    /// Global counters by `vpn_common::stats::Counter` (summed over CPUs).
    pub counters: BTreeMap<vpn_common::stats::Counter, u64>,
    pub peers: BTreeMap<u32, PeerCounters>,
}

/// Errors of a data-plane implementation.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the eBPF data plane failed: {0}")]
    Load(String),
    #[error("updating BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{0}")]
    Other(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where a data plane hands the inner packets it could not send because
/// their destination has no session yet (the first packets to a member):
/// the daemon starts the session and gives them back through
/// [`Dataplane::inject`]. Bounded; a full channel drops the packet (the
/// data planes count it in [`PassUpStats::dropped`]).
pub type PacketSink = tokio::sync::mpsc::Sender<Vec<u8>>;

/// Counters of the hand-over to the daemon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassUpStats {
    /// Packets handed to the [`PacketSink`].
    pub passed: u64,
    /// Packets dropped because the sink was full.
    pub dropped: u64,
}

/// A data plane that can be reconciled to a desired state.
pub trait Dataplane: Send {
    /// Which path this implementation is.
    fn path(&self) -> PathKind;
    /// Brings the data plane to `desired`. Idempotent: applying the same
    /// state twice changes nothing (in particular it never rewrites a send
    /// session whose key did not change, which would reset its counter).
    fn apply(&mut self, desired: &DesiredState) -> Result<(), DataplaneError>;
    /// Current counters.
    fn stats(&self) -> Result<DataplaneStats, DataplaneError>;
    /// From now on, hand inner packets to a destination without a session
    /// (no peer owns it, or its peer has no sending key) to `sink`. Without
    /// a sink they are only counted (lab configurations).
    fn set_packet_sink(&mut self, sink: PacketSink);
    /// What went to the sink so far.
    fn pass_up_stats(&self) -> PassUpStats;
    /// Sends inner IP packets (that waited for a session) through the
    /// encrypt path as if they had just been routed into the interface.
    /// Returns how many were handed on; a packet whose destination still has
    /// no session is passed up again or counted as without session.
    fn inject(&self, packets: &[Vec<u8>]) -> Result<usize, DataplaneError>;
}
