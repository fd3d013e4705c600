//! BPF map names and the layouts of their keys and values, shared by
//! `vpn-ebpf` (which declares the maps) and `vpn-control` (which fills them).
//!
//! Every type is `#[repr(C)]`, `Copy`, has explicit padding (no implicit
//! holes, no `bool`) and a size assertion; `aya::Pod` is implemented behind
//! the `user` feature.

use crate::replay::ReplayWindow;

/// `Array<DataplaneConfig>` with one entry (index 0).
pub const CONFIG: &str = "CONFIG";
/// `LpmTrie<[u8; 4], PeerRef>`: inner IPv4 prefix -> owning peer. Used for
/// egress (destination -> peer) and for cryptokey routing on ingress (the
/// decrypted source must map back to the session's peer).
pub const ROUTES_V4: &str = "ROUTES_V4";
/// `LpmTrie<[u8; 16], PeerRef>`: inner IPv6 prefix -> owning peer.
pub const ROUTES_V6: &str = "ROUTES_V6";
/// `HashMap<u32 /* peer id */, PeerEndpoint>`: where to send a peer's packets.
pub const PEERS: &str = "PEERS";
/// `HashMap<u32 /* peer id */, TxSession>`: the current sending session.
pub const TX_SESSIONS: &str = "TX_SESSIONS";
/// `HashMap<u32 /* local receiver index */, RxSession>`: receiving sessions
/// (several per peer while a rekey's grace window is open).
pub const RX_SESSIONS: &str = "RX_SESSIONS";
/// `PerCpuArray<u64>` of [`crate::stats::COUNTER_COUNT`] global counters.
pub const STATS: &str = "STATS";
/// `PerCpuHashMap<u32 /* peer id */, PeerStats>`: per-peer traffic.
pub const PEER_STATS: &str = "PEER_STATS";

/// Capacity of the peer-keyed maps.
pub const MAX_PEERS: u32 = 4096;
/// Capacity of each route trie.
pub const MAX_ROUTES: u32 = 16384;
/// Capacity of the receive-session map (current + previous key per peer).
pub const MAX_RX_SESSIONS: u32 = 2 * MAX_PEERS;

/// Names of the BPF programs in the object, as `vpn-control` attaches them.
pub mod programs {
    /// Encrypt and encapsulate: on `vpn0p` (TC ingress), every packet is one
    /// already-segmented inner IP packet.
    pub const ENCRYPT: &str = "vpn_encrypt";
    /// Validate, replay-check, decrypt, deliver: on the underlay.
    pub const DECRYPT: &str = "vpn_decrypt";
}

/// Address family tags used in map values.
pub const FAMILY_NONE: u8 = 0;
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Global settings of the data plane (the single entry of `CONFIG`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct DataplaneConfig {
    /// Interface index of the underlay (physical) device.
    pub underlay_ifindex: u32,
    /// Interface index of `vpn0`, the user-visible end of the veth pair.
    pub vpn_ifindex: u32,
    /// Interface index of `vpn0p`, the wire end where encryption runs.
    pub vpn_peer_ifindex: u32,
    /// UDP data port, host byte order.
    pub data_port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`]: the family of `local_addr`.
    pub local_family: u8,
    pub _pad0: u8,
    /// Source address for outer packets (IPv4 in the first 4 bytes).
    pub local_addr: [u8; 16],
    /// MAC address of `vpn0`: decrypted frames are addressed to it.
    pub vpn_mac: [u8; 6],
    pub _pad1: [u8; 2],
    /// Largest inner packet accepted (the VPN MTU).
    pub mtu: u32,
    pub _pad2: u32,
}
const _: () = assert!(core::mem::size_of::<DataplaneConfig>() == 48);

/// Value of the route tries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PeerRef {
    pub peer_id: u32,
}
const _: () = assert!(core::mem::size_of::<PeerRef>() == 4);

/// A peer's current underlay endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PeerEndpoint {
    /// IPv4 in the first 4 bytes, or IPv6.
    pub addr: [u8; 16],
    /// UDP port, host byte order.
    pub port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    pub _pad0: u8,
    pub _pad1: u32,
}
const _: () = assert!(core::mem::size_of::<PeerEndpoint>() == 24);

/// The sending half of a session.
///
/// `counter` is advanced atomically by the data plane for every packet sent.
/// The reconciler writes an entry only when the key changes (a new key starts
/// a new nonce sequence), never to "refresh" one: rewriting an entry with the
/// same key and a lower counter would reuse nonces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct TxSession {
    pub key: [u8; 32],
    /// The peer's receiver index for this session.
    pub remote_index: u32,
    pub _pad0: u32,
    /// Next counter to use.
    pub counter: u64,
}
const _: () = assert!(core::mem::size_of::<TxSession>() == 48);

/// The receiving half of a session, keyed by our receiver index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct RxSession {
    pub key: [u8; 32],
    /// The peer this session belongs to (checked against the inner source).
    pub peer_id: u32,
    pub _pad0: u32,
    pub replay: ReplayWindow,
}
const _: () =
    assert!(core::mem::size_of::<RxSession>() == 40 + core::mem::size_of::<ReplayWindow>());

/// Per-peer traffic counters (per CPU in the kernel; summed by userspace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct PeerStats {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<PeerStats>() == 32);

impl PeerStats {
    pub fn add(&mut self, o: &PeerStats) {
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made only of integers
    // and byte arrays, with explicit padding fields and no implicit holes
    // (checked by the size assertions above), so every bit pattern is valid.
    unsafe impl aya::Pod for super::DataplaneConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeerRef {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeerEndpoint {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TxSession {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RxSession {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeerStats {}
}
