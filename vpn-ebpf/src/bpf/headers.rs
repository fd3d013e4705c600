//! Header layouts and constants for the outer (underlay) and inner packets.

use vpn_common::wire::HEADER_LEN;

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
