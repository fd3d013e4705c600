//! Header layouts and constants for the outer (underlay) and inner packets.

use vpn_common::{aead::SCRATCH_LEN, wire::HEADER_LEN};

pub const ETH_LEN: u32 = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const IPV4_LEN: u32 = 20;
pub const IPV6_LEN: u32 = 40;
pub const UDP_LEN: u32 = 8;
pub const IPPROTO_UDP: u8 = 17;
/// Bytes pushed between the Ethernet header and the inner packet over an
/// IPv4 underlay: outer IPv4, UDP, data header.
pub const ENCAP_V4_LEN: u32 = IPV4_LEN + UDP_LEN + HEADER_LEN as u32;
const OUTER_TTL: u8 = 64;

/// Outer IPv4 + UDP + data header, written in one store.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct EncapV4 {
    pub ip: [u8; 20],
    pub udp: [u8; 8],
    pub hdr: [u8; HEADER_LEN],
}
const _: () = assert!(core::mem::size_of::<EncapV4>() == ENCAP_V4_LEN as usize);

/// Internet checksum of a 20-byte IPv4 header whose checksum field is zero.
#[inline(always)]
pub fn ipv4_checksum(h: &[u8; 20]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < 20 {
        sum += u16::from_be_bytes([h[i], h[i + 1]]) as u32;
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Writes the outer headers of an IPv4-underlay data packet carrying
/// `inner_len` bytes of ciphertext (plus the tag) into `out`; the data
/// header must already be in `out.hdr`. The UDP checksum is 0, which IPv4
/// allows; the AEAD tag authenticates the payload.
#[inline(always)]
pub fn encap_v4(
    out: &mut EncapV4,
    src: &[u8; 16],
    dst: &[u8; 16],
    sport: u16,
    dport: u16,
    inner_len: u32,
) {
    let udp_len =
        (UDP_LEN + HEADER_LEN as u32 + inner_len + vpn_common::wire::TAG_LEN as u32) as u16;
    let tot_len = (IPV4_LEN as u16) + udp_len;
    let tl = tot_len.to_be_bytes();
    out.ip = [
        0x45,
        0,
        tl[0],
        tl[1], // version/IHL, DSCP, total length
        0,
        0,
        0x40,
        0, // id, flags (DF), fragment offset
        OUTER_TTL,
        IPPROTO_UDP,
        0,
        0, // TTL, protocol, checksum
        src[0],
        src[1],
        src[2],
        src[3],
        dst[0],
        dst[1],
        dst[2],
        dst[3],
    ];
    let c = ipv4_checksum(&out.ip).to_be_bytes();
    out.ip[10] = c[0];
    out.ip[11] = c[1];
    let sp = sport.to_be_bytes();
    let dp = dport.to_be_bytes();
    let ul = udp_len.to_be_bytes();
    out.udp = [sp[0], sp[1], dp[0], dp[1], ul[0], ul[1], 0, 0];
}

/// Bytes pushed between the Ethernet header and the inner packet over an
/// IPv6 underlay: outer IPv6, UDP, data header.
pub const ENCAP_V6_LEN: u32 = IPV6_LEN + UDP_LEN + HEADER_LEN as u32;

/// Outer IPv6 + UDP + data header, written in one store.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct EncapV6 {
    pub ip: [u8; 40],
    pub udp: [u8; 8],
    pub hdr: [u8; HEADER_LEN],
}
const _: () = assert!(core::mem::size_of::<EncapV6>() == ENCAP_V6_LEN as usize);

/// Writes the outer headers of an IPv6-underlay data packet into `out`,
/// except the UDP checksum (mandatory over IPv6), which [`udp6_checksum`]
/// computes once the payload is sealed.
#[inline(always)]
pub fn encap_v6(
    out: &mut EncapV6,
    src: &[u8; 16],
    dst: &[u8; 16],
    sport: u16,
    dport: u16,
    inner_len: u32,
) {
    let udp_len =
        (UDP_LEN + HEADER_LEN as u32 + inner_len + vpn_common::wire::TAG_LEN as u32) as u16;
    let pl = udp_len.to_be_bytes();
    out.ip[..8].copy_from_slice(&[0x60, 0, 0, 0, pl[0], pl[1], IPPROTO_UDP, OUTER_TTL]);
    out.ip[8..24].copy_from_slice(src);
    out.ip[24..40].copy_from_slice(dst);
    let sp = sport.to_be_bytes();
    let dp = dport.to_be_bytes();
    out.udp = [sp[0], sp[1], dp[0], dp[1], pl[0], pl[1], 0, 0];
}

/// Adds `b` as little-endian 16-bit words (RFC 1071: a one's-complement sum
/// in swapped byte order is the swapped sum, so everything is summed
/// little-endian and swapped once at the end).
#[inline(always)]
fn sum_le<const N: usize>(b: &[u8; N], mut acc: u64) -> u64 {
    let mut i = 0;
    while i + 1 < N {
        acc += (b[i] as u64) | ((b[i + 1] as u64) << 8);
        i += 2;
    }
    acc
}

/// The UDP checksum of an IPv6-underlay packet: pseudo-header, UDP header
/// and data header from `out`, then `payload[..len]` (ciphertext and tag,
/// starting at an even offset of the datagram). Returns the two bytes to
/// store in the checksum field.
#[inline(always)]
pub fn udp6_checksum(out: &EncapV6, payload: &vpn_common::aead::Scratch, len: u32) -> [u8; 2] {
    let mut src = [0u8; 32];
    src.copy_from_slice(&out.ip[8..40]);
    let mut acc = sum_le(&src, 0);
    // Upper-layer length (32-bit) and next header, as in RFC 8200 8.1.
    let l = (UDP_LEN + HEADER_LEN as u32 + len).to_be_bytes();
    acc = sum_le(&[l[0], l[1], l[2], l[3], 0, 0, 0, IPPROTO_UDP], acc);
    acc = sum_le(&out.udp, acc);
    acc = sum_le(&out.hdr, acc);
    // The payload as 64-bit little-endian words; bytes past `len` masked.
    let b = payload.bytes();
    let n = (len as usize).div_ceil(8);
    let mut i = 0;
    while i < n && i < SCRATCH_LEN / 8 {
        let valid = (len as usize).saturating_sub(i * 8);
        let mask = if valid >= 8 {
            u64::MAX
        } else {
            (1u64 << ((valid & 7) * 8)) - 1
        };
        let o = (i * 8) & (SCRATCH_LEN - 8);
        let v = u64::from_le_bytes([
            b[o],
            b[o | 1],
            b[o | 2],
            b[o | 3],
            b[o | 4],
            b[o | 5],
            b[o | 6],
            b[o | 7],
        ]) & mask;
        acc += (v & 0xffff_ffff) + (v >> 32);
        i += 1;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    let mut c = !(acc as u16);
    if c == 0 {
        c = 0xffff; // zero means "no checksum", forbidden over IPv6
    }
    c.to_le_bytes()
}
