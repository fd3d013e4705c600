//! The BPF maps, named and laid out as `vpn_common::maps` says.

use super::crypto::Work;
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap},
};
use vpn_common::{
    maps::{
        DataplaneConfig, PeerEndpoint, PeerRef, PeerStats, RxSession, TxSession, MAX_PEERS,
        MAX_ROUTES, MAX_RX_SESSIONS,
    },
    stats::COUNTER_COUNT,
};

#[map]
pub static CONFIG: Array<DataplaneConfig> = Array::with_max_entries(1, 0);

#[map]
pub static ROUTES_V4: LpmTrie<[u8; 4], PeerRef> = LpmTrie::with_max_entries(MAX_ROUTES, 0);

#[map]
pub static ROUTES_V6: LpmTrie<[u8; 16], PeerRef> = LpmTrie::with_max_entries(MAX_ROUTES, 0);

#[map]
pub static PEERS: HashMap<u32, PeerEndpoint> = HashMap::with_max_entries(MAX_PEERS, 0);

/// Not preallocated: userspace replaces a session by inserting a new
/// element, and a program still holding the old one keeps a valid pointer
/// until the RCU grace period ends (no aliasing of recycled elements).
#[map]
pub static TX_SESSIONS: HashMap<u32, TxSession> =
    HashMap::with_max_entries(MAX_PEERS, BPF_F_NO_PREALLOC);

/// Not preallocated, for the same reason as [`TX_SESSIONS`].
#[map]
pub static RX_SESSIONS: HashMap<u32, RxSession> =
    HashMap::with_max_entries(MAX_RX_SESSIONS, BPF_F_NO_PREALLOC);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[map]
pub static PEER_STATS: PerCpuHashMap<u32, PeerStats> =
    PerCpuHashMap::with_max_entries(MAX_PEERS, 0);

/// One scratch region per CPU: packets are copied in, sealed or opened in
/// place, and copied back out.
#[map]
pub static SCRATCH: PerCpuArray<Work> = PerCpuArray::with_max_entries(1, 0);
