//! TUN offloads (`IFF_VNET_HDR` with `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`):
//! the kernel hands the twin TCP super-packets of up to 64 KB with a
//! `virtio_net_hdr` in front, and the twin cuts them into MTU-sized IP
//! packets itself (one read instead of ~45, and the sender's TCP stack does
//! far less per-packet work). Each segment is an ordinary IP packet with
//! complete checksums, so the wire format and the peers see no difference.

/// Size of `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;
const F_NEEDS_CSUM: u8 = 1;
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_ECN: u8 = 0x80;

/// A parsed `virtio_net_hdr` (native endian, as the TUN device uses it on
/// little-endian hosts without `TUNSETVNETBE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < VNET_HDR_LEN {
            return None;
        }
        let u = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

/// Why a packet from the TUN device could not be processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    Malformed,
    Unsupported,
}

/// One's complement sum of `data` (not folded, not complemented).
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = acc.overflowing_add(v);
        acc = s + u64::from(carry);
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u64::from(u16::from_be_bytes([rest[i], rest[i + 1]]));
        i += 2;
    }
    if i < rest.len() {
        acc += u64::from(rest[i]) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The Internet checksum of `data` (complemented).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Completes a checksum the kernel left partial (`VIRTIO_NET_HDR_F_NEEDS_CSUM`):
/// the field holds the pseudo-header sum; sum from `csum_start` and store.
pub fn finish_checksum(h: &VnetHdr, pkt: &mut [u8]) -> Result<(), OffloadError> {
    if h.flags & F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let start = usize::from(h.csum_start);
    let field = start + usize::from(h.csum_offset);
    if field + 2 > pkt.len() {
        return Err(OffloadError::Malformed);
    }
    let c = !fold(sum(&pkt[start..], 0));
    pkt[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The layout of a TCP super-packet to cut.
#[derive(Clone, Copy, Debug)]
pub struct Segmenter {
    v6: bool,
    ip_len: usize,
    tcp_len: usize,
    mss: usize,
    payload: usize,
}

impl Segmenter {
    /// `None` if `pkt` needs no segmentation (not a GSO packet).
    pub fn new(h: &VnetHdr, pkt: &[u8]) -> Result<Option<Self>, OffloadError> {
        let gso = h.gso_type & !GSO_ECN;
        if gso == GSO_NONE {
            return Ok(None);
        }
        if gso != GSO_TCPV4 && gso != GSO_TCPV6 {
            return Err(OffloadError::Unsupported);
        }
        let v6 = gso == GSO_TCPV6;
        let ip_len = if v6 {
            if pkt.len() < 40 || pkt[0] >> 4 != 6 || pkt[6] != 6 {
                return Err(OffloadError::Unsupported);
            }
            40
        } else {
            if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != 6 {
                return Err(OffloadError::Malformed);
            }
            usize::from(pkt[0] & 0x0f) * 4
        };
        if pkt.len() < ip_len + 20 {
            return Err(OffloadError::Malformed);
        }
        let tcp_len = usize::from(pkt[ip_len + 12] >> 4) * 4;
        let mss = usize::from(h.gso_size);
        if tcp_len < 20 || pkt.len() < ip_len + tcp_len || mss == 0 {
            return Err(OffloadError::Malformed);
        }
        Ok(Some(Segmenter {
            v6,
            ip_len,
            tcp_len,
            mss,
            payload: pkt.len() - ip_len - tcp_len,
        }))
    }

    /// Length of the largest segment.
    pub fn max_len(&self) -> usize {
        self.ip_len + self.tcp_len + self.mss.min(self.payload)
    }

    pub fn count(&self) -> usize {
        self.payload.div_ceil(self.mss).max(1)
    }

    /// Writes segment `i` of `pkt` into `out` (which must hold the
    /// headers plus one MSS) and returns its length.
    pub fn write(&self, pkt: &[u8], i: usize, out: &mut [u8]) -> usize {
        let hl = self.ip_len + self.tcp_len;
        let off = i * self.mss;
        let n = self.mss.min(self.payload - off.min(self.payload));
        let len = hl + n;
        out[..hl].copy_from_slice(&pkt[..hl]);
        out[hl..len].copy_from_slice(&pkt[hl + off..hl + off + n]);
        let last = i + 1 == self.count();
        // IP header.
        if self.v6 {
            out[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            let id = u16::from_be_bytes([pkt[4], pkt[5]]).wrapping_add(i as u16);
            out[4..6].copy_from_slice(&id.to_be_bytes());
            out[10..12].copy_from_slice(&[0, 0]);
            let c = checksum(&out[..self.ip_len]);
            out[10..12].copy_from_slice(&c.to_be_bytes());
        }
        // TCP header: sequence number, flags, checksum.
        let t = self.ip_len;
        let seq = u32::from_be_bytes([pkt[t + 4], pkt[t + 5], pkt[t + 6], pkt[t + 7]])
            .wrapping_add(off as u32);
        out[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
        const FIN: u8 = 0x01;
        const PSH: u8 = 0x08;
        const CWR: u8 = 0x80;
        if !last {
            out[t + 13] &= !(FIN | PSH);
        }
        if i > 0 {
            out[t + 13] &= !CWR;
        }
        out[t + 16..t + 18].copy_from_slice(&[0, 0]);
        let tcp_total = len - t;
        let mut acc = if self.v6 {
            sum(&out[8..40], 0)
        } else {
            sum(&out[12..20], 0)
        };
        acc += 6 + tcp_total as u64;
        let c = !fold(sum(&out[t..len], acc));
        out[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_ok(seg: &[u8], v6: bool) -> bool {
        let (t, mut acc) = if v6 {
            (40, sum(&seg[8..40], 0))
        } else {
            (usize::from(seg[0] & 0xf) * 4, sum(&seg[12..20], 0))
        };
        acc += 6 + (seg.len() - t) as u64;
        fold(sum(&seg[t..], acc)) == 0xffff
    }

    fn super_packet(v6: bool, payload: usize) -> Vec<u8> {
        let mut p = if v6 {
            let mut h = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
            h.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            h.extend_from_slice(&[0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            h
        } else {
            vec![
                0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2,
            ]
        };
        // TCP: ports, seq 0xfffffff0 (wraps), ack, data offset 8 (12 option bytes), flags PSH|ACK|FIN|CWR.
        p.extend_from_slice(&[
            0x13,
            0x88,
            0xc0,
            0x00,
            0xff,
            0xff,
            0xff,
            0xf0,
            0,
            0,
            0,
            1,
            0x80,
            0x89 | 0x80,
            0x10,
            0x00,
            0,
            0,
            0,
            0,
        ]);
        p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        p.extend((0..payload).map(|i| (i * 31 % 251) as u8));
        let total = p.len();
        if v6 {
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        } else {
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        }
        p
    }

    #[test]
    fn checksum_of_known_header() {
        // RFC 1071 style example: an IPv4 header whose checksum is known.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn vnet_header_roundtrip() {
        let h = VnetHdr {
            flags: 1,
            gso_type: 4,
            hdr_len: 72,
            gso_size: 1388,
            csum_start: 40,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
        assert_eq!(VnetHdr::parse(&[0; 9]), None);
    }

    #[test]
    fn segments_are_valid_packets() {
        for v6 in [false, true] {
            for payload in [1usize, 1388, 1389, 5000, 65000 - 72] {
                let p = super_packet(v6, payload);
                let mss = 1388;
                let h = VnetHdr {
                    gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
                    gso_size: mss as u16,
                    ..Default::default()
                };
                let s = Segmenter::new(&h, &p).unwrap().unwrap();
                assert_eq!(s.count(), payload.div_ceil(mss));
                let hl = if v6 { 40 + 32 } else { 20 + 32 };
                let mut joined = Vec::new();
                let mut out = vec![0u8; 2048];
                for i in 0..s.count() {
                    let n = s.write(&p, i, &mut out);
                    let seg = &out[..n];
                    assert!(n <= hl + mss);
                    assert!(
                        tcp_ok(seg, v6),
                        "v6={v6} payload={payload} segment {i}: TCP checksum"
                    );
                    let t = hl - 32;
                    if v6 {
                        assert_eq!(usize::from(u16::from_be_bytes([seg[4], seg[5]])), n - 40);
                    } else {
                        assert_eq!(usize::from(u16::from_be_bytes([seg[2], seg[3]])), n);
                        assert_eq!(checksum(&seg[..20]), 0, "IPv4 header checksum");
                        assert_eq!(u16::from_be_bytes([seg[4], seg[5]]), 0x1234 + i as u16);
                    }
                    let seq = u32::from_be_bytes([seg[t + 4], seg[t + 5], seg[t + 6], seg[t + 7]]);
                    assert_eq!(seq, 0xffff_fff0u32.wrapping_add((i * mss) as u32));
                    let last = i + 1 == s.count();
                    assert_eq!(
                        seg[t + 13] & 0x09 != 0,
                        last,
                        "FIN/PSH only on the last segment"
                    );
                    assert_eq!(seg[t + 13] & 0x80 != 0, i == 0, "CWR only on the first");
                    assert_eq!(&seg[t + 20..t + 32], &p[t + 20..t + 32], "options copied");
                    joined.extend_from_slice(&seg[hl..]);
                }
                assert_eq!(&joined[..], &p[hl..]);
            }
        }
    }

    #[test]
    fn partial_checksum_is_completed() {
        let mut p = super_packet(false, 100);
        // What the kernel leaves: the pseudo-header sum, not complemented.
        let tcp_total = p.len() - 20;
        let pseudo = fold(sum(&p[12..20], 6 + tcp_total as u64));
        p[36..38].copy_from_slice(&pseudo.to_be_bytes());
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 16,
            ..Default::default()
        };
        finish_checksum(&h, &mut p).unwrap();
        assert!(tcp_ok(&p, false));
        let bad = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 9000,
            ..Default::default()
        };
        assert_eq!(finish_checksum(&bad, &mut p), Err(OffloadError::Malformed));
        let udp = VnetHdr {
            gso_type: 3,
            gso_size: 1000,
            ..Default::default()
        };
        assert_eq!(
            Segmenter::new(&udp, &p).unwrap_err(),
            OffloadError::Unsupported
        );
        assert!(Segmenter::new(&VnetHdr::default(), &p).unwrap().is_none());
    }
}
