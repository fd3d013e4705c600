//! Per-CPU counters: global ([`super::maps::STATS`]) and per peer.

use vpn_common::{maps::PeerStats, stats::Counter};

use super::maps::{PEER_STATS, STATS};

/// Adds `n` to a global counter of this CPU.
#[inline(always)]
pub fn inc(c: Counter, n: u64) {
    if let Some(p) = STATS.get_ptr_mut(c as u32) {
        // SAFETY: a per-CPU array slot, only touched by this CPU while the
        // program runs (BPF programs do not migrate).
        unsafe { *p += n };
    }
}

/// Counts a dropped packet under its reason; returns the drop action.
#[inline(always)]
pub fn drop(reason: Counter) -> i32 {
    inc(reason, 1);
    super::SHOT
}

/// Counts one packet of `bytes` inner bytes for `peer`, sent or received.
#[inline(always)]
pub fn peer(peer: u32, bytes: u64, tx: bool) {
    match PEER_STATS.get_ptr_mut(peer) {
        Some(p) => {
            // SAFETY: this CPU's copy of a per-CPU hash value.
            let p = unsafe { &mut *p };
            if tx {
                p.tx_packets += 1;
                p.tx_bytes += bytes;
            } else {
                p.rx_packets += 1;
                p.rx_bytes += bytes;
            }
        }
        None => {
            // Userspace creates the entries when it installs a peer; this is
            // only a fallback (a failed insert just loses one count).
            let mut s = PeerStats::default();
            if tx {
                s.tx_packets = 1;
                s.tx_bytes = bytes;
            } else {
                s.rx_packets = 1;
                s.rx_bytes = bytes;
            }
            let _ = PEER_STATS.insert(peer, s, 0);
        }
    }
}
