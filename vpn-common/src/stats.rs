//! Counters kept by both data-plane implementations. The kernel path keeps
//! them in the per-CPU array [`crate::maps::STATS`] indexed by [`Counter`];
//! the userspace twin keeps the same set. `vpn-control status` reports them
//! by [`Counter::name`].

/// Index of a global counter in the `STATS` per-CPU array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum Counter {
    /// Data packets decrypted and delivered to the VPN interface.
    RxPackets = 0,
    /// Inner bytes delivered to the VPN interface.
    RxBytes = 1,
    /// Packets encrypted and sent to the underlay.
    TxPackets = 2,
    /// Inner bytes encrypted and sent.
    TxBytes = 3,
    /// Drop: shorter than the outer headers, the data header or the tag.
    DropTruncated = 4,
    /// Drop: no receive session with that receiver index.
    DropUnknownIndex = 5,
    /// Drop: Poly1305 tag did not verify (tampered, wrong key).
    DropBadTag = 6,
    /// Drop: counter already seen or older than the replay window.
    DropReplay = 7,
    /// Drop: the decrypted packet's source address is not owned by the peer.
    DropWrongInnerSource = 8,
    /// Drop: larger than the data plane can carry.
    DropOversize = 9,
    /// Drop: unknown message type on the data port.
    DropBadType = 10,
    /// Drop: the decrypted payload is not an IPv4/IPv6 packet.
    DropBadInner = 11,
    /// Egress: destination has a peer route but no established session;
    /// passed to the daemon.
    NoSession = 12,
    /// Egress: the packet could not be sent (encapsulation or redirect failed).
    TxError = 13,
    /// Ingress: a plaintext packet on the underlay claiming a VPN source address.
    DropSpoofedPlain = 14,
}

/// Number of counters; the size of the `STATS` array.
pub const COUNTER_COUNT: u32 = 15;

impl Counter {
    pub const ALL: [Counter; COUNTER_COUNT as usize] = [
        Counter::RxPackets,
        Counter::RxBytes,
        Counter::TxPackets,
        Counter::TxBytes,
        Counter::DropTruncated,
        Counter::DropUnknownIndex,
        Counter::DropBadTag,
        Counter::DropReplay,
        Counter::DropWrongInnerSource,
        Counter::DropOversize,
        Counter::DropBadType,
        Counter::DropBadInner,
        Counter::NoSession,
        Counter::TxError,
        Counter::DropSpoofedPlain,
    ];

    /// Stable name used in `status --json` and the docs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::RxPackets => "rx_packets",
            Counter::RxBytes => "rx_bytes",
            Counter::TxPackets => "tx_packets",
            Counter::TxBytes => "tx_bytes",
            Counter::DropTruncated => "truncated",
            Counter::DropUnknownIndex => "unknown_index",
            Counter::DropBadTag => "bad_tag",
            Counter::DropReplay => "replay",
            Counter::DropWrongInnerSource => "wrong_inner_source",
            Counter::DropOversize => "oversize",
            Counter::DropBadType => "bad_type",
            Counter::DropBadInner => "bad_inner",
            Counter::NoSession => "no_session",
            Counter::TxError => "tx_error",
            Counter::DropSpoofedPlain => "spoofed_plaintext",
        }
    }

    /// Whether this counter counts dropped packets.
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Counter::DropTruncated
                | Counter::DropUnknownIndex
                | Counter::DropBadTag
                | Counter::DropReplay
                | Counter::DropWrongInnerSource
                | Counter::DropOversize
                | Counter::DropBadType
                | Counter::DropBadInner
                | Counter::DropSpoofedPlain
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense_and_names_unique() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            for d in &Counter::ALL[i + 1..] {
                assert_ne!(c.name(), d.name());
            }
        }
    }
}
