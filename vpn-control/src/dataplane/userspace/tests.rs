use std::collections::BTreeMap;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use vpn_common::stats::Counter;
use vpn_common::wire::{self, DataHeader, HEADER_LEN, MAX_INNER_LEN, TAG_LEN};

use super::packet::{self, Cipher};
use super::state::{self, Tables};
use super::worker::{receive, Verdict};
use super::*;
use crate::dataplane::{DesiredPeer, Prefix, RxKey, TxKey};

const K_AB: [u8; 32] = [0x11; 32];
const K_BA: [u8; 32] = [0x22; 32];

fn pfx(s: &str) -> Prefix {
    crate::config::values::parse_prefix(s).unwrap()
}

/// An IPv4 packet from `src` to `dst` with `payload`.
fn ipv4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        0,
        0x40,
        0,
        64,
        17,
        0,
        0,
    ];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

fn ipv6(src: u128, dst: u128, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![
        0x60,
        0,
        0,
        0,
        (payload.len() >> 8) as u8,
        payload.len() as u8,
        17,
        64,
    ];
    p.extend_from_slice(&src.to_be_bytes());
    p.extend_from_slice(&dst.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Node B's view: peer 1 = A owning 10.0.0.1/32 and fd00::1/128, sending
/// to us with K_AB at our index 5.
fn b_state(endpoint: Option<std::net::SocketAddr>) -> DesiredState {
    let mut d = DesiredState::default();
    d.peers.insert(
        1,
        DesiredPeer {
            id: 1,
            name: "a".into(),
            endpoint,
            allowed: vec![pfx("10.0.0.1/32"), pfx("fd00::1/128")],
            tx: Some(TxKey {
                key: K_BA,
                remote_index: 4,
                initial_counter: 1000,
            }),
            rx: vec![RxKey {
                key: K_AB,
                local_index: 5,
            }],
        },
    );
    d
}

fn a_state(endpoint: Option<std::net::SocketAddr>) -> DesiredState {
    let mut d = DesiredState::default();
    d.peers.insert(
        1,
        DesiredPeer {
            id: 1,
            name: "b".into(),
            endpoint,
            allowed: vec![pfx("10.0.0.2/32"), pfx("fd00::2/128")],
            tx: Some(TxKey {
                key: K_AB,
                remote_index: 5,
                initial_counter: 1 << 60,
            }),
            rx: vec![RxKey {
                key: K_BA,
                local_index: 4,
            }],
        },
    );
    d
}

fn sealed(key: &[u8; 32], index: u32, counter: u64, inner: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN + inner.len() + TAG_LEN];
    buf[HEADER_LEN..HEADER_LEN + inner.len()].copy_from_slice(inner);
    let n = packet::seal(&Cipher::new(key), index, counter, &mut buf, inner.len());
    assert_eq!(n, buf.len());
    buf
}

#[test]
fn seal_matches_the_wire_format() {
    let inner = ipv4([10, 0, 0, 1], [10, 0, 0, 2], b"hello");
    let got = sealed(&K_AB, 0x0102_0304, 77, &inner);
    // Independently: header || AEAD(key, nonce(77), aad = header, inner).
    let header = DataHeader::new(wire::TYPE_DATA, 0x0102_0304, 77).to_bytes();
    let ct = ChaCha20Poly1305::new(&K_AB.into())
        .encrypt(
            &wire::nonce(77).into(),
            Payload {
                msg: &inner,
                aad: &header,
            },
        )
        .unwrap();
    assert_eq!(&got[..HEADER_LEN], &header);
    assert_eq!(&got[..4], &[1, 0, 0, 0]);
    assert_eq!(&got[4..8], &[4, 3, 2, 1]);
    assert_eq!(&got[HEADER_LEN..], &ct[..]);
    assert_eq!(got.len(), inner.len() + wire::CRYPTO_OVERHEAD);
}

#[test]
fn open_roundtrip_all_lengths() {
    let c = Cipher::new(&K_AB);
    for len in [0usize, 1, 15, 16, 17, 63, 64, 65, 1419, 1420, MAX_INNER_LEN] {
        let inner: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut buf = sealed(&K_AB, 9, len as u64, &inner);
        assert!(packet::parse(&buf).is_ok());
        assert_eq!(packet::open(&c, &mut buf), Some(len));
        assert_eq!(&buf[HEADER_LEN..HEADER_LEN + len], &inner[..]);
    }
}

fn tables_b() -> Tables {
    let mut stats = BTreeMap::new();
    state::build(&b_state(None), &Tables::default(), &mut stats)
}

fn verdict(t: &Tables, mut pkt: Vec<u8>) -> Verdict {
    receive(t, &mut pkt)
}

#[test]
fn receive_verdicts() {
    let t = tables_b();
    let good = ipv4([10, 0, 0, 1], [10, 0, 0, 2], b"payload");
    let d = |c| Verdict::Drop(c);

    // Good, then replayed.
    let pkt = sealed(&K_AB, 5, 10_000, &good);
    assert_eq!(
        verdict(&t, pkt.clone()),
        Verdict::Deliver {
            peer: 1,
            len: good.len()
        }
    );
    assert_eq!(verdict(&t, pkt.clone()), d(Counter::DropReplay));
    // Reordered within the window: accepted once.
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 9_000, &good)),
        Verdict::Deliver {
            peer: 1,
            len: good.len()
        }
    );
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 9_000, &good)),
        d(Counter::DropReplay)
    );
    // Too old.
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 10_000 - 3000, &good)),
        d(Counter::DropReplay)
    );
    // Tampered ciphertext, tampered tag, tampered header (AAD).
    let mut p = sealed(&K_AB, 5, 10_001, &good);
    p[HEADER_LEN + 3] ^= 1;
    assert_eq!(verdict(&t, p), d(Counter::DropBadTag));
    let mut p = sealed(&K_AB, 5, 10_002, &good);
    let l = p.len();
    p[l - 1] ^= 0x80;
    assert_eq!(verdict(&t, p), d(Counter::DropBadTag));
    let mut p = sealed(&K_AB, 5, 10_003, &good);
    p[1] = 1;
    assert_eq!(verdict(&t, p), d(Counter::DropBadTag));
    // A forged packet did not move the window: the genuine one still passes.
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 10_003, &good)),
        Verdict::Deliver {
            peer: 1,
            len: good.len()
        }
    );
    // Wrong key, unknown index.
    assert_eq!(
        verdict(&t, sealed(&K_BA, 5, 10_004, &good)),
        d(Counter::DropBadTag)
    );
    assert_eq!(
        verdict(&t, sealed(&K_AB, 6, 10_005, &good)),
        d(Counter::DropUnknownIndex)
    );
    // Inner source not owned by the peer.
    let spoof = ipv4([10, 0, 0, 9], [10, 0, 0, 2], b"x");
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 10_006, &spoof)),
        d(Counter::DropWrongInnerSource)
    );
    // IPv6 inner.
    let v6 = ipv6(0xfd00 << 112 | 1, 0xfd00 << 112 | 2, b"six");
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 10_007, &v6)),
        Verdict::Deliver {
            peer: 1,
            len: v6.len()
        }
    );
    let v6bad = ipv6(0xfd00 << 112 | 3, 0xfd00 << 112 | 2, b"six");
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 10_008, &v6bad)),
        d(Counter::DropWrongInnerSource)
    );
    // Not an IP packet inside; length field disagreeing with the payload.
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 10_009, &[0x10; 40])),
        d(Counter::DropBadInner)
    );
    let mut short = good.clone();
    short[3] += 1;
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 10_010, &short)),
        d(Counter::DropBadInner)
    );
    // Unknown type.
    let mut p = sealed(&K_AB, 5, 10_011, &good);
    p[0] = wire::TYPE_KEEPALIVE + 40;
    assert_eq!(verdict(&t, p), d(Counter::DropBadType));
    // Truncated at every header boundary and inside the tag.
    let full = sealed(&K_AB, 5, 10_012, &good);
    for cut in [0, 1, 4, 8, 15, 16, 20, 31] {
        assert_eq!(
            verdict(&t, full[..cut].to_vec()),
            d(Counter::DropTruncated),
            "cut at {cut}"
        );
    }
    // Cut inside the ciphertext: a valid length, but the tag fails.
    assert_eq!(
        verdict(&t, full[..full.len() - 1].to_vec()),
        d(Counter::DropBadTag)
    );
    // Oversize.
    let big = vec![0u8; MAX_INNER_LEN + 1];
    assert_eq!(
        verdict(&t, sealed(&K_AB, 5, 10_013, &big)),
        d(Counter::DropOversize)
    );
}

fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for two descriptors.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0);
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn recv_timeout(fd: &OwnedFd, ms: i32) -> Option<Vec<u8>> {
    use std::os::fd::AsRawFd;
    if !super::io::wait_readable(fd.as_raw_fd(), ms) {
        return None;
    }
    let mut buf = vec![0u8; 4096];
    let n = super::io::read_packet(fd.as_raw_fd(), &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Two twins over loopback UDP, with socket pairs standing in for TUN devices.
#[test]
fn twin_to_twin_over_loopback() {
    use std::os::fd::AsRawFd;
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ub = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (ea, eb) = (ua.local_addr().unwrap(), ub.local_addr().unwrap());
    let (tun_a, host_a) = seqpacket_pair();
    let (tun_b, host_b) = seqpacket_pair();
    let mut a = UserspaceDataplane::start(tun_a, ua, false).unwrap();
    let mut b = UserspaceDataplane::start(tun_b, ub, false).unwrap();
    a.apply(&a_state(Some(eb))).unwrap();
    b.apply(&b_state(Some(ea))).unwrap();

    let mut sent = 0u64;
    for i in 0..200u32 {
        let p = ipv4([10, 0, 0, 1], [10, 0, 0, 2], &i.to_le_bytes().repeat(100));
        super::io::write_packet(host_a.as_raw_fd(), &p).unwrap();
        let got = recv_timeout(&host_b, 2000).expect("packet through the tunnel");
        assert_eq!(got, p);
        sent += p.len() as u64;
        if i == 100 {
            // Re-applying the same state mid-stream resets nothing.
            a.apply(&a_state(Some(eb))).unwrap();
            b.apply(&b_state(Some(ea))).unwrap();
        }
    }
    // And back, IPv6.
    let p = ipv6(0xfd00 << 112 | 2, 0xfd00 << 112 | 1, b"reply");
    super::io::write_packet(host_b.as_raw_fd(), &p).unwrap();
    assert_eq!(recv_timeout(&host_a, 2000).unwrap(), p);
    // A packet for nobody is not sent; one from a spoofed source is dropped at B.
    super::io::write_packet(
        host_a.as_raw_fd(),
        &ipv4([10, 0, 0, 1], [10, 0, 0, 77], b"x"),
    )
    .unwrap();
    super::io::write_packet(
        host_a.as_raw_fd(),
        &ipv4([10, 0, 0, 66], [10, 0, 0, 2], b"x"),
    )
    .unwrap();
    assert_eq!(recv_timeout(&host_b, 300), None);

    let sa = a.stats().unwrap();
    let sb = b.stats().unwrap();
    assert_eq!(sa.counters[&Counter::TxPackets], 201);
    assert_eq!(sa.peers[&1].tx_packets, 201);
    assert_eq!(sa.peers[&1].rx_packets, 1);
    assert_eq!(sb.counters[&Counter::RxPackets], 200);
    assert_eq!(sb.peers[&1].rx_bytes, sent);
    assert_eq!(sb.counters[&Counter::DropWrongInnerSource], 1);
    assert_eq!(sb.counters[&Counter::DropReplay], 0);
    a.stop();
    b.stop();
}

/// The twin and `vpn_common::aead` (the cipher the eBPF programs run)
/// produce identical bytes and open each other's packets.
#[test]
fn interop_with_vpn_common_aead() {
    use vpn_common::aead::{self, SCRATCH_LEN};
    let t = tables_b();
    for (n, len) in [20usize, 21, 64, 100, 1300, 1420, MAX_INNER_LEN]
        .into_iter()
        .enumerate()
    {
        let mut payload = vec![0xab; len - 20];
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 7 + n) as u8);
        let inner = ipv4([10, 0, 0, 1], [10, 0, 0, 2], &payload);
        let counter = 500 + n as u64;
        // Kernel-side seal.
        let header = DataHeader::new(wire::TYPE_DATA, 5, counter).to_bytes();
        let mut scratch = [0u8; SCRATCH_LEN];
        scratch[..len].copy_from_slice(&inner);
        let tag = aead::seal(&K_AB, counter, &header, &mut scratch, len);
        let mut theirs = header.to_vec();
        theirs.extend_from_slice(&scratch[..len]);
        theirs.extend_from_slice(&tag);
        // Same bytes as the twin's seal, and the twin accepts them.
        assert_eq!(sealed(&K_AB, 5, counter, &inner), theirs, "len {len}");
        assert_eq!(verdict(&t, theirs), Verdict::Deliver { peer: 1, len });
        // Twin seal, kernel-side open.
        let ours = sealed(&K_BA, 4, counter, &inner);
        let mut buf = [0u8; SCRATCH_LEN];
        buf[..len].copy_from_slice(&ours[HEADER_LEN..HEADER_LEN + len]);
        let tag: [u8; 16] = ours[HEADER_LEN + len..].try_into().unwrap();
        let hdr: [u8; 16] = ours[..HEADER_LEN].try_into().unwrap();
        assert!(aead::open(&K_BA, counter, &hdr, &mut buf, len, &tag));
        assert_eq!(&buf[..len], &inner[..]);
    }
}

/// With TUN offloads on both sides: a TCP super-packet read on A arrives
/// at B as MTU-sized segments, each behind an all-zero virtio header.
#[test]
fn twin_to_twin_with_tun_offloads() {
    use super::offload::{checksum, VnetHdr, VNET_HDR_LEN};
    use std::os::fd::AsRawFd;
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ub = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (ea, eb) = (ua.local_addr().unwrap(), ub.local_addr().unwrap());
    let (tun_a, host_a) = seqpacket_pair();
    let (tun_b, host_b) = seqpacket_pair();
    let mut a = UserspaceDataplane::start(tun_a, ua, true).unwrap();
    let mut b = UserspaceDataplane::start(tun_b, ub, true).unwrap();
    a.apply(&a_state(Some(eb))).unwrap();
    b.apply(&b_state(Some(ea))).unwrap();

    // IPv4 + TCP (20 bytes, ACK|PSH) + 3500 bytes, MSS 1000.
    let payload: Vec<u8> = (0..3500u32).map(|i| (i % 253) as u8).collect();
    let mut tcp = vec![
        0x13, 0x88, 0xc0, 0x00, 0, 0, 0x10, 0, 0, 0, 0, 1, 0x50, 0x18, 0x10, 0, 0, 0, 0, 0,
    ];
    tcp.extend_from_slice(&payload);
    let mut sup = ipv4([10, 0, 0, 1], [10, 0, 0, 2], &tcp);
    sup[9] = 6; // TCP
    let h = VnetHdr {
        gso_type: 1,
        gso_size: 1000,
        hdr_len: 40,
        ..Default::default()
    };
    let mut msg = h.to_bytes().to_vec();
    msg.extend_from_slice(&sup);
    super::io::write_packet(host_a.as_raw_fd(), &msg).unwrap();
    // B writes either single segments (all-zero virtio header) or runs of
    // them coalesced into one super-packet; cut those to compare.
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let mut super_packets = 0;
    while segs.len() < 4 {
        let got = recv_timeout(&host_b, 2000).expect("segment through the tunnel");
        let h = VnetHdr::parse(&got).unwrap();
        let mut pkt = got[VNET_HDR_LEN..].to_vec();
        if h == VnetHdr::default() {
            segs.push(pkt);
            continue;
        }
        super_packets += 1;
        assert_eq!(h.gso_size, 1000);
        super::offload::finish_checksum(&h, &mut pkt).unwrap();
        let s = super::offload::Segmenter::new(&h, &pkt).unwrap().unwrap();
        for i in 0..s.count() {
            let mut o = vec![0u8; 2048];
            let n = s.write(&pkt, i, &mut o);
            o.truncate(n);
            segs.push(o);
        }
    }
    assert_eq!(segs.len(), 4, "{super_packets} super-packets");
    let mut joined = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        assert_eq!(seg.len(), 40 + if i < 3 { 1000 } else { 500 });
        assert_eq!(checksum(&seg[..20]), 0);
        let seq = u32::from_be_bytes([seg[24], seg[25], seg[26], seg[27]]);
        assert_eq!(seq, 0x1000 + 1000 * i as u32);
        joined.extend_from_slice(&seg[40..]);
    }
    assert_eq!(joined, payload);
    // A plain packet (no GSO) passes unchanged.
    let p = ipv4([10, 0, 0, 1], [10, 0, 0, 2], b"plain");
    let mut msg = VnetHdr::default().to_bytes().to_vec();
    msg.extend_from_slice(&p);
    super::io::write_packet(host_a.as_raw_fd(), &msg).unwrap();
    assert_eq!(
        &recv_timeout(&host_b, 2000).unwrap()[VNET_HDR_LEN..],
        &p[..]
    );
    // The counter moves right after the write that we just read.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while b.stats().unwrap().counters[&Counter::RxPackets] < 5
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(b.stats().unwrap().counters[&Counter::RxPackets], 5);
    a.stop();
    b.stop();
}

/// A packet without a session goes to the sink; once keys are applied,
/// `inject` seals and sends it, and the other twin delivers it.
#[test]
fn packets_without_a_session_are_passed_up_then_injected() {
    use std::os::fd::AsRawFd;
    let ua = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ub = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (ea, eb) = (ua.local_addr().unwrap(), ub.local_addr().unwrap());
    let (tun_a, host_a) = seqpacket_pair();
    let (tun_b, host_b) = seqpacket_pair();
    let mut a = UserspaceDataplane::start(tun_a, ua, false).unwrap();
    let mut b = UserspaceDataplane::start(tun_b, ub, false).unwrap();
    b.apply(&b_state(Some(ea))).unwrap();
    let (sink, mut rx) = tokio::sync::mpsc::channel(8);
    a.set_packet_sink(sink);
    // No peer at all, then a peer without a sending key: both passed up.
    let p1 = ipv4([10, 0, 0, 1], [10, 0, 0, 2], b"first");
    super::io::write_packet(host_a.as_raw_fd(), &p1).unwrap();
    let mut keyless = a_state(Some(eb));
    keyless.peers.get_mut(&1).unwrap().tx = None;
    let got = (0..200)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            rx.try_recv().ok()
        })
        .expect("passed up");
    assert_eq!(got, p1);
    a.apply(&keyless).unwrap();
    let p2 = ipv4([10, 0, 0, 1], [10, 0, 0, 2], b"second");
    super::io::write_packet(host_a.as_raw_fd(), &p2).unwrap();
    let got2 = (0..200)
        .find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            rx.try_recv().ok()
        })
        .expect("passed up");
    assert_eq!(got2, p2);
    assert_eq!(a.stats().unwrap().counters[&Counter::NoSession], 1);
    assert_eq!(a.pass_up_stats().passed, 2);
    assert_eq!(recv_timeout(&host_b, 200), None, "nothing sent yet");
    // Keys: the queued packets go out in order and arrive.
    a.apply(&a_state(Some(eb))).unwrap();
    assert_eq!(a.inject(&[got, got2]).unwrap(), 2);
    assert_eq!(recv_timeout(&host_b, 2000).unwrap(), p1);
    assert_eq!(recv_timeout(&host_b, 2000).unwrap(), p2);
    assert_eq!(a.stats().unwrap().peers[&1].tx_packets, 2);
    // Injecting for a destination nobody owns passes it up again.
    let p3 = ipv4([10, 0, 0, 1], [10, 0, 0, 77], b"nobody");
    assert_eq!(a.inject(std::slice::from_ref(&p3)).unwrap(), 0);
    assert_eq!(rx.try_recv().unwrap(), p3);
    a.stop();
    b.stop();
}
