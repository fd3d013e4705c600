//! Receive-side coalescing (GRO in userspace): consecutive decrypted TCP
//! segments of one flow are written to the TUN device as one super-packet
//! with a `virtio_net_hdr` (`gso_type` TCPv4/TCPv6, partial checksum), so
//! the receiving TCP stack handles one packet instead of dozens. Only
//! segments that the kernel's own GRO would merge are merged: same
//! addresses, ports, TCP options, ACK, window and IP fields; contiguous
//! sequence numbers; plain ACK segments of one size (the last one may be
//! shorter or carry PSH).

use std::ops::Range;

use super::offload::{VnetHdr, VNET_HDR_LEN};

const F_NEEDS_CSUM: u8 = 1;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
/// Largest coalesced IP packet.
const MAX_SUPER: usize = 65_535;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

/// Header layout of a TCP segment eligible for coalescing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tcp {
    v6: bool,
    ip_len: usize,
    tcp_len: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

fn parse(p: &[u8]) -> Option<Tcp> {
    let (v6, ip_len) = match p.first()? >> 4 {
        // No IP options, TCP, not a fragment.
        4 if p.len() >= 20
            && p[0] == 0x45
            && p[9] == 6
            && (u16::from_be_bytes([p[6], p[7]]) & 0x3fff) == 0 =>
        {
            (false, 20)
        }
        6 if p.len() >= 40 && p[6] == 6 => (true, 40),
        _ => return None,
    };
    if p.len() < ip_len + 20 {
        return None;
    }
    let t = ip_len;
    let tcp_len = usize::from(p[t + 12] >> 4) * 4;
    if tcp_len < 20 || p.len() < ip_len + tcp_len {
        return None;
    }
    Some(Tcp {
        v6,
        ip_len,
        tcp_len,
        payload: p.len() - ip_len - tcp_len,
        seq: u32::from_be_bytes([p[t + 4], p[t + 5], p[t + 6], p[t + 7]]),
        flags: p[t + 13],
    })
}

/// Whether `next` may follow `prev` in a group that starts with `first`.
fn joins(first: &[u8], f: &Tcp, prev: &Tcp, next: &[u8], n: &Tcp, total: usize) -> bool {
    let t = f.ip_len;
    n.v6 == f.v6
        && n.tcp_len == f.tcp_len
        && prev.flags == ACK
        && (n.flags == ACK || n.flags == ACK | PSH)
        && prev.payload == f.payload
        && n.payload > 0
        && n.payload <= f.payload
        && n.seq == prev.seq.wrapping_add(prev.payload as u32)
        && total + n.payload <= MAX_SUPER
        // Addresses (and for IPv4 TOS/TTL/DF), ports, ACK number, window,
        // urgent pointer and options identical.
        && if f.v6 {
            first[..4] == next[..4] && first[6..40] == next[6..40]
        } else {
            first[1] == next[1] && first[6..10] == next[6..10] && first[12..20] == next[12..20]
        }
        && first[t..t + 4] == next[t..t + 4]
        && first[t + 8..t + 12] == next[t + 8..t + 12]
        && first[t + 14..t + 16] == next[t + 14..t + 16]
        && first[t + 18..t + f.tcp_len] == next[t + 18..t + f.tcp_len]
}

/// Splits `pkts` (in order) into runs that can be merged. Runs of one are
/// written as they are.
pub fn plan(pkts: &[&[u8]]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pkts.len() {
        let start = i;
        i += 1;
        if let Some(f) = parse(pkts[start]).filter(|f| f.payload > 0) {
            let mut prev = f;
            let mut total = pkts[start].len();
            while i < pkts.len() {
                match parse(pkts[i]) {
                    Some(n) if joins(pkts[start], &f, &prev, pkts[i], &n, total) => {
                        total += n.payload;
                        prev = n;
                        i += 1;
                    }
                    _ => break,
                }
            }
        }
        out.push(start..i);
    }
    out
}

fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut i = 0;
    while i + 1 < data.len() {
        acc += u64::from(u16::from_be_bytes([data[i], data[i + 1]]));
        i += 2;
    }
    if i < data.len() {
        acc += u64::from(data[i]) << 8;
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Builds the super-packet of a run (more than one segment) into `out`,
/// virtio header first; returns its length.
pub fn merge(run: &[&[u8]], out: &mut Vec<u8>) -> usize {
    let first = run[0];
    let f = parse(first).expect("plan() only groups TCP segments");
    let hl = f.ip_len + f.tcp_len;
    out.clear();
    out.extend_from_slice(&[0; VNET_HDR_LEN]);
    out.extend_from_slice(&first[..hl]);
    for p in run {
        out.extend_from_slice(&p[hl..]);
    }
    let last = run[run.len() - 1];
    let ip = VNET_HDR_LEN;
    let len = out.len() - VNET_HDR_LEN;
    let t = ip + f.ip_len;
    // Flags of the last segment (PSH).
    out[t + 13] = last[f.ip_len + 13];
    if f.v6 {
        out[ip + 4..ip + 6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    } else {
        out[ip + 2..ip + 4].copy_from_slice(&(len as u16).to_be_bytes());
        out[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
        let c = !fold(sum(&out[ip..ip + 20], 0));
        out[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    }
    // Partial checksum: the pseudo-header sum, completed by the kernel
    // (or not at all: the data was authenticated by the AEAD).
    let tcp_total = len - f.ip_len;
    let pseudo = if f.v6 {
        sum(&out[ip + 8..ip + 40], 0)
    } else {
        sum(&out[ip + 12..ip + 20], 0)
    } + 6
        + tcp_total as u64;
    out[t + 16..t + 18].copy_from_slice(&fold(pseudo).to_be_bytes());
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if f.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: hl as u16,
        gso_size: f.payload as u16,
        csum_start: f.ip_len as u16,
        csum_offset: 16,
    };
    out[..VNET_HDR_LEN].copy_from_slice(&h.to_bytes());
    out.len()
}

#[cfg(test)]
mod tests {
    use super::super::offload::{finish_checksum, Segmenter};
    use super::*;

    fn super_packet(v6: bool, payload: usize, flags: u8) -> Vec<u8> {
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
        p.extend_from_slice(&[
            0x13, 0x88, 0xc0, 0x00, 0xff, 0xff, 0xff, 0x00, 0, 0, 0, 1, 0x80, flags, 0x10, 0x00, 0,
            0, 0, 0,
        ]);
        p.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        p.extend((0..payload).map(|i| (i * 7 % 251) as u8));
        let total = p.len();
        if v6 {
            p[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        } else {
            p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        }
        p
    }

    fn cut(v6: bool, payload: usize, mss: u16, flags: u8) -> Vec<Vec<u8>> {
        let p = super_packet(v6, payload, flags);
        let h = VnetHdr {
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            gso_size: mss,
            ..Default::default()
        };
        let s = Segmenter::new(&h, &p).unwrap().unwrap();
        (0..s.count())
            .map(|i| {
                let mut out = vec![0u8; 2048];
                let n = s.write(&p, i, &mut out);
                out.truncate(n);
                out
            })
            .collect()
    }

    #[test]
    fn segments_merge_back_into_the_super_packet() {
        for v6 in [false, true] {
            let segs = cut(v6, 10_000, 1388, ACK | PSH);
            let refs: Vec<&[u8]> = segs.iter().map(|s| &s[..]).collect();
            assert_eq!(plan(&refs), vec![0..segs.len()]);
            let mut out = Vec::new();
            let n = merge(&refs, &mut out);
            let h = VnetHdr::parse(&out[..n]).unwrap();
            assert_eq!(h.gso_size, 1388);
            let mut pkt = out[VNET_HDR_LEN..n].to_vec();
            // Completing the checksum and cutting again gives the same segments.
            finish_checksum(&h, &mut pkt).unwrap();
            let s = Segmenter::new(&h, &pkt).unwrap().unwrap();
            assert_eq!(s.count(), segs.len());
            for (i, seg) in segs.iter().enumerate() {
                let mut o = vec![0u8; 2048];
                let m = s.write(&pkt, i, &mut o);
                // (IPv4 ids of the recut segments count up from the first
                // one, as the originals did.)
                assert_eq!(&o[..m], &seg[..], "v6={v6} segment {i}");
            }
        }
    }

    #[test]
    fn what_must_not_merge() {
        let segs = cut(false, 5000, 1000, ACK);
        let r = |v: &[Vec<u8>]| v.iter().map(|s| s.to_vec()).collect::<Vec<_>>();
        // Gap in sequence numbers.
        let mut v = r(&segs);
        v.remove(2);
        let refs: Vec<&[u8]> = v.iter().map(|s| &s[..]).collect();
        assert_eq!(plan(&refs), vec![0..2, 2..4]);
        // A different flow (port) in between.
        let mut v = r(&segs);
        v[1][20] ^= 1;
        let refs: Vec<&[u8]> = v.iter().map(|s| &s[..]).collect();
        assert_eq!(plan(&refs), vec![0..1, 1..2, 2..5]);
        // Options differ (timestamp moved): segment 3 matches neither side.
        let mut v = r(&segs);
        v[3][20 + 27] ^= 1;
        let refs: Vec<&[u8]> = v.iter().map(|s| &s[..]).collect();
        assert_eq!(plan(&refs), vec![0..3, 3..4, 4..5]);
        // A pure ACK, UDP, a FIN: alone.
        let ack = cut(false, 0, 1000, ACK);
        let fin = cut(false, 10, 1000, ACK | 0x01);
        let mut udp = segs[0].clone();
        udp[9] = 17;
        let refs: Vec<&[u8]> = vec![&ack[0], &segs[0], &fin[0], &udp, &segs[1]];
        assert_eq!(plan(&refs), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
        // A short segment ends a run; PSH ends it too.
        let segs2 = cut(false, 2500, 1000, ACK | PSH);
        let refs: Vec<&[u8]> = segs2.iter().chain(segs.iter()).map(|s| &s[..]).collect();
        assert_eq!(plan(&refs)[0], 0..3);
    }
}
