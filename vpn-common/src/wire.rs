//! The data-plane wire format, shared byte for byte by the kernel path and
//! the userspace twin. See `docs/wire-format.md`.
//!
//! ```text
//!  0      1      2      3      4                8                      16
//! +------+------+------+------+----------------+----------------------+
//! | type |   reserved (0)     | receiver index |  counter (u64, LE)   |
//! +------+--------------------+----------------+----------------------+
//! | ciphertext (same length as the inner IP packet) ...               |
//! +-------------------------------------------------------------------+
//! | Poly1305 tag (16 bytes)                                           |
//! +-------------------------------------------------------------------+
//! ```
//!
//! The whole 16-byte header is the AEAD's associated data; the nonce is four
//! zero bytes followed by the counter in little-endian order.

/// Data packet: an encrypted inner IP packet.
pub const TYPE_DATA: u8 = 1;
/// Reserved for the NAT-traversal issue: an authenticated keepalive (empty payload).
pub const TYPE_KEEPALIVE: u8 = 2;
/// Reserved for the NAT-traversal issue: an endpoint probe.
pub const TYPE_PROBE: u8 = 3;
/// Reserved for the overlay issue: handshake messages on the data port.
pub const TYPE_HANDSHAKE: u8 = 4;

/// Length of the data header (type, reserved, receiver index, counter).
pub const HEADER_LEN: usize = 16;
/// Length of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes the encryption adds to an inner packet, without outer IP/UDP.
pub const CRYPTO_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Outer IPv4 header (no options) + UDP header.
pub const OUTER_V4_LEN: usize = 20 + 8;
/// Outer IPv6 header + UDP header.
pub const OUTER_V6_LEN: usize = 40 + 8;
/// Total per-packet overhead over an IPv4 underlay.
pub const OVERHEAD_V4: usize = OUTER_V4_LEN + CRYPTO_OVERHEAD;
/// Total per-packet overhead over an IPv6 underlay.
pub const OVERHEAD_V6: usize = OUTER_V6_LEN + CRYPTO_OVERHEAD;
/// Default UDP port of the data plane (separate from the libp2p port).
pub const DEFAULT_DATA_PORT: u16 = 51830;

/// The largest inner packet either implementation accepts. Larger packets
/// are dropped and counted as `oversize` (the kernel path encrypts in a
/// fixed-size per-CPU scratch buffer of [`crate::aead::SCRATCH_LEN`] bytes).
pub const MAX_INNER_LEN: usize = crate::aead::SCRATCH_LEN - TAG_LEN;

/// The smallest inner packet worth parsing (an IPv4 header).
pub const MIN_INNER_LEN: usize = 20;

/// Computes the VPN interface MTU for an underlay MTU, given whether the
/// underlay path is IPv6. Clamped to what the data plane can carry.
pub const fn vpn_mtu(underlay_mtu: u32, underlay_v6: bool) -> u32 {
    let overhead = if underlay_v6 {
        OVERHEAD_V6
    } else {
        OVERHEAD_V4
    } as u32;
    let mtu = underlay_mtu.saturating_sub(overhead);
    if mtu > MAX_INNER_LEN as u32 {
        MAX_INNER_LEN as u32
    } else {
        mtu
    }
}

/// The 16-byte header in front of every data packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct DataHeader {
    pub msg_type: u8,
    pub reserved: [u8; 3],
    /// The receiver's session index, little-endian on the wire.
    pub receiver_index: [u8; 4],
    /// The sender's per-session counter, little-endian on the wire; the nonce.
    pub counter: [u8; 8],
}
const _: () = assert!(core::mem::size_of::<DataHeader>() == HEADER_LEN);

impl DataHeader {
    pub const fn new(msg_type: u8, receiver_index: u32, counter: u64) -> Self {
        Self {
            msg_type,
            reserved: [0; 3],
            receiver_index: receiver_index.to_le_bytes(),
            counter: counter.to_le_bytes(),
        }
    }

    pub const fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.msg_type;
        let mut i = 0;
        while i < 4 {
            b[4 + i] = self.receiver_index[i];
            i += 1;
        }
        let mut i = 0;
        while i < 8 {
            b[8 + i] = self.counter[i];
            i += 1;
        }
        b
    }

    /// Parses a header; `None` if the buffer is shorter than a header.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(Self {
            msg_type: buf[0],
            reserved: [buf[1], buf[2], buf[3]],
            receiver_index: [buf[4], buf[5], buf[6], buf[7]],
            counter: [
                buf[8], buf[9], buf[10], buf[11], buf[12], buf[13], buf[14], buf[15],
            ],
        })
    }

    pub const fn receiver_index(&self) -> u32 {
        u32::from_le_bytes(self.receiver_index)
    }

    pub const fn counter(&self) -> u64 {
        u64::from_le_bytes(self.counter)
    }
}

/// The 12-byte ChaCha20-Poly1305 nonce for a counter.
pub const fn nonce(counter: u64) -> [u8; 12] {
    let c = counter.to_le_bytes();
    [0, 0, 0, 0, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = DataHeader::new(TYPE_DATA, 0xdead_beef, 0x0102_0304_0506_0708);
        let b = h.to_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(&b[4..8], &[0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(b[8], 0x08);
        let p = DataHeader::parse(&b).unwrap();
        assert_eq!(p, h);
        assert_eq!(p.receiver_index(), 0xdead_beef);
        assert_eq!(p.counter(), 0x0102_0304_0506_0708);
        assert!(DataHeader::parse(&b[..15]).is_none());
    }

    #[test]
    fn mtu_arithmetic() {
        assert_eq!(OVERHEAD_V4, 60);
        assert_eq!(OVERHEAD_V6, 80);
        assert_eq!(vpn_mtu(1500, false), 1440);
        assert_eq!(vpn_mtu(1500, true), 1420);
        assert_eq!(vpn_mtu(9000, false), MAX_INNER_LEN as u32);
        assert_eq!(vpn_mtu(40, false), 0);
    }

    #[test]
    fn nonce_layout() {
        assert_eq!(nonce(1), [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
