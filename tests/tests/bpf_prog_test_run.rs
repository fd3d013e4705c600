//! Tier 2: the real eBPF programs on crafted packets with
//! `BPF_PROG_TEST_RUN` (root). Every case checks the verdict, the output
//! packet where there is one, and that exactly the expected `STATS`
//! counters moved.
//!
//! This file: egress, roundtrips, reconciliation, IPv6 underlay and cost;
//! `bpf_ingress.rs`: the decrypt program's drop reasons.

mod bpf_common;

use bpf_common::*;

// ---------- egress ----------

/// Checks an encapsulated frame and returns its opened header and plaintext.
fn check_encapsulated(out: &[u8], inner_len: usize) -> (DataHeader, Vec<u8>) {
    assert_eq!(
        out.len(),
        14 + 20 + 8 + 16 + inner_len + 16,
        "encapsulated length"
    );
    assert_eq!(
        u16::from_be_bytes([out[12], out[13]]),
        0x0800,
        "outer ethertype"
    );
    let ip = &out[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(
        u16::from_be_bytes([ip[2], ip[3]]) as usize,
        out.len() - 14,
        "IPv4 total length"
    );
    assert_eq!(ip[9], 17, "UDP");
    assert_eq!(checksum(ip), 0, "IPv4 header checksum");
    assert_eq!(&ip[12..16], &LOCAL.octets(), "outer source");
    assert_eq!(&ip[16..20], &REMOTE.octets(), "outer destination");
    let u = &out[34..42];
    assert_eq!(
        u16::from_be_bytes([u[0], u[1]]),
        PORT,
        "source port is the data port"
    );
    assert_eq!(
        u16::from_be_bytes([u[2], u[3]]),
        REMOTE_PORT,
        "destination port"
    );
    assert_eq!(
        u16::from_be_bytes([u[4], u[5]]) as usize,
        out.len() - 34,
        "UDP length"
    );
    open(&TX_KEY, &out[42..]).expect("the crate opens what the program sealed")
}

#[test]
fn encrypt_ipv4_and_ipv6_open_with_the_crate() {
    let Some(f) = Fixture::new("encrypt_ipv4_and_ipv6_open_with_the_crate") else {
        return;
    };
    for (i, len) in [20usize + 8 + 1, 100, 1400, MTU as usize]
        .into_iter()
        .enumerate()
    {
        let inner = inner4(ME4, PEER4, len.max(28));
        let out = f.expect(
            "encrypt v4",
            ENCRYPT,
            &eth_for(&inner),
            TC_ACT_REDIRECT,
            &[
                (Counter::TxPackets, 1),
                (Counter::TxBytes, inner.len() as u64),
            ],
        );
        let (hdr, plain) = check_encapsulated(&out, inner.len());
        assert_eq!(hdr.msg_type, TYPE_DATA);
        assert_eq!(hdr.receiver_index(), REMOTE_INDEX);
        assert_eq!(
            hdr.counter(),
            INITIAL_COUNTER + i as u64,
            "counters advance by one per packet"
        );
        assert_eq!(plain, inner);
    }
    let inner = inner6(ME6, PEER6, 1300);
    let out = f.expect(
        "encrypt v6",
        ENCRYPT,
        &eth_for(&inner),
        TC_ACT_REDIRECT,
        &[
            (Counter::TxPackets, 1),
            (Counter::TxBytes, inner.len() as u64),
        ],
    );
    let (hdr, plain) = check_encapsulated(&out, inner.len());
    assert_eq!(hdr.counter(), INITIAL_COUNTER + 4);
    assert_eq!(plain, inner);
    let peer = f.dp.stats().unwrap().peers[&1];
    assert_eq!(peer.tx_packets, 5);
}

#[test]
fn encrypt_no_session_oversize_and_foreign() {
    let Some(f) = Fixture::new("encrypt_no_session_oversize_and_foreign") else {
        return;
    };
    // A VPN destination without a session passes up unchanged.
    let frame = eth_for(&inner4(ME4, NOSESSION4, 200));
    let out = f.expect(
        "no session",
        ENCRYPT,
        &frame,
        TC_ACT_OK,
        &[(Counter::NoSession, 1)],
    );
    assert_eq!(out, frame);
    // Not a VPN destination: passes, counts nothing.
    let frame = eth_for(&inner4(ME4, Ipv4Addr::new(198, 51, 100, 7), 200));
    let out = f.expect("foreign destination", ENCRYPT, &frame, TC_ACT_OK, &[]);
    assert_eq!(out, frame);
    // Non-IP frames pass.
    let arp = eth([0xff; 6], 0x0806, &[0u8; 28]);
    f.expect("non-IP", ENCRYPT, &arp, TC_ACT_OK, &[]);
    // Larger than the MTU: dropped.
    let frame = eth_for(&inner4(ME4, PEER4, MTU as usize + 1));
    f.expect(
        "oversize",
        ENCRYPT,
        &frame,
        TC_ACT_SHOT,
        &[(Counter::DropOversize, 1)],
    );
}

#[test]
fn encrypt_then_decrypt_roundtrip_through_both_programs() {
    if !vpn_tests::require_root("encrypt_then_decrypt_roundtrip_through_both_programs") {
        return;
    }
    // A node talking to itself: its send session is its receive session.
    let mut dp = KernelDataplane::load_unattached(&params()).expect("load");
    let mut d = desired();
    let p = d.peers.get_mut(&1).unwrap();
    p.tx = Some(TxKey {
        key: RX_KEY,
        remote_index: LOCAL_INDEX,
        initial_counter: 5,
    });
    dp.apply(&d).unwrap();
    let f = Fixture { dp };
    // Inner packets from the peer's address to the peer's address, so the
    // decrypt side's cryptokey routing accepts them.
    for inner in [
        inner4(PEER4, PEER4, 1400),
        inner6(PEER6, PEER6, 1400),
        inner4(PEER4, PEER4, 64),
    ] {
        let (v, wire_frame) = f.run(ENCRYPT, &eth_for(&inner));
        assert_eq!(v, TC_ACT_REDIRECT);
        // What the underlay receives: swap in a received frame's addresses.
        let mut rx = wire_frame.clone();
        rx[14 + 16..14 + 20].copy_from_slice(&LOCAL.octets());
        rx[14 + 22..14 + 24].copy_from_slice(&PORT.to_be_bytes());
        rx[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
        let c = checksum(&rx[14..34]);
        rx[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
        let out = f.expect(
            "roundtrip",
            DECRYPT,
            &rx,
            TC_ACT_REDIRECT,
            &delivered(&inner),
        );
        assert_delivered(&out, &inner);
    }
}

#[test]
fn reconcile_is_idempotent_and_keeps_counters() {
    let Some(mut f) = Fixture::new("reconcile_is_idempotent_and_keeps_counters") else {
        return;
    };
    let inner = inner4(ME4, PEER4, 100);
    let send = |f: &Fixture| {
        let (v, out) = f.run(ENCRYPT, &eth_for(&inner));
        assert_eq!(v, TC_ACT_REDIRECT);
        DataHeader::parse(&out[42..]).unwrap().counter()
    };
    assert_eq!(send(&f), INITIAL_COUNTER);
    // Re-applying the same state must not restart the send counter (nonce
    // reuse) nor reset the receive window.
    f.expect(
        "accept 77",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 77, &inner4(PEER4, ME4, 100)),
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    f.dp.apply(&desired()).unwrap();
    assert_eq!(send(&f), INITIAL_COUNTER + 1);
    f.expect(
        "replay after re-apply",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 77, &inner4(PEER4, ME4, 100)),
        TC_ACT_SHOT,
        &[(Counter::DropReplay, 1)],
    );
    // A new key starts a new session at its initial counter.
    let mut d = desired();
    d.peers.get_mut(&1).unwrap().tx = Some(TxKey {
        key: [0x55; 32],
        remote_index: REMOTE_INDEX,
        initial_counter: 42,
    });
    f.dp.apply(&d).unwrap();
    assert_eq!(send(&f), 42);
    // Removing the peer removes its routes and sessions.
    d.peers.remove(&1);
    f.dp.apply(&d).unwrap();
    f.expect(
        "removed peer: no route",
        ENCRYPT,
        &eth_for(&inner),
        TC_ACT_OK,
        &[],
    );
    f.expect(
        "removed peer: no rx session",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 78, &inner4(PEER4, ME4, 100)),
        TC_ACT_SHOT,
        &[(Counter::DropUnknownIndex, 1)],
    );
    assert!(!f.dp.stats().unwrap().peers.contains_key(&1));
}

/// Per-packet cost of each program on 1,400-byte inner packets, measured by
/// the kernel (`BPF_PROG_TEST_RUN` duration of single runs; a repeated run
/// would re-process the already rewritten packet). Every output is checked.
#[test]
fn per_packet_cost_1400_bytes() {
    let Some(f) = Fixture::new("per_packet_cost_1400_bytes") else {
        return;
    };
    const N: u64 = 2000;
    let median = |mut v: Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    let mut out = vec![0u8; 4096];
    let mut counter = 100;
    let mut report = Vec::new();
    for len in [64usize, 512, 1400] {
        let inner = inner4(ME4, PEER4, len);
        let frame = eth_for(&inner);
        let mut enc_ns = Vec::new();
        for _ in 0..N {
            let r = f.dp.test_run(ENCRYPT, &frame, &mut out, 1).unwrap();
            assert_eq!(r.verdict, TC_ACT_REDIRECT);
            enc_ns.push(r.duration.as_nanos() as u64);
        }
        let inner = inner4(PEER4, ME4, len);
        let frames: Vec<Vec<u8>> = (0..N)
            .map(|_| {
                counter += 1;
                data_frame(&RX_KEY, LOCAL_INDEX, counter, &inner)
            })
            .collect();
        let mut dec_ns = Vec::new();
        for fr in &frames {
            let r = f.dp.test_run(DECRYPT, fr, &mut out, 1).unwrap();
            assert_eq!(r.verdict, TC_ACT_REDIRECT);
            assert_eq!(&out[14..r.out_len], &inner[..]);
            dec_ns.push(r.duration.as_nanos() as u64);
        }
        report.push((len, median(enc_ns), median(dec_ns)));
    }
    // The cost of classifying alone: a VPN destination without a session.
    let frame = eth_for(&inner4(ME4, NOSESSION4, 1400));
    let pass: Vec<u64> = (0..N)
        .map(|_| {
            f.dp.test_run(ENCRYPT, &frame, &mut out, 1)
                .unwrap()
                .duration
                .as_nanos() as u64
        })
        .collect();
    for (len, e, d) in &report {
        eprintln!("per-packet cost, {len}-byte inner packets (median of {N} runs): encrypt {e} ns, decrypt {d} ns");
    }
    eprintln!("encrypt program, no-session pass: {} ns", median(pass));
    let verified = f.dp.verified_instructions();
    eprintln!("instructions processed by the verifier: {verified:?} (limit 1,000,000)");
    assert_eq!(verified.len(), 2);
    let c = f.counters();
    assert_eq!(c[&Counter::TxPackets], 3 * N);
    assert_eq!(c[&Counter::RxPackets], 3 * N);
}

/// IPv6 underlay: outer IPv6 + UDP with a valid (mandatory) checksum, the
/// crate opens the payload, and the decrypt program accepts it back.
#[test]
fn ipv6_underlay_encrypt_and_decrypt() {
    if !vpn_tests::require_root("ipv6_underlay_encrypt_and_decrypt") {
        return;
    }
    let local6: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let remote6: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let mut p = params();
    p.local_addr = IpAddr::V6(local6);
    let mut dp = KernelDataplane::load_unattached(&p).expect("load");
    let mut d = desired();
    let peer = d.peers.get_mut(&1).unwrap();
    peer.endpoint = Some(SocketAddr::new(IpAddr::V6(remote6), REMOTE_PORT));
    // Talk to ourselves, as in the IPv4 roundtrip.
    peer.tx = Some(TxKey {
        key: RX_KEY,
        remote_index: LOCAL_INDEX,
        initial_counter: 9,
    });
    dp.apply(&d).unwrap();
    let f = Fixture { dp };
    for (i, inner) in [
        inner4(PEER4, PEER4, 1400),
        inner6(PEER6, PEER6, 333),
        inner4(PEER4, PEER4, 29),
    ]
    .into_iter()
    .enumerate()
    {
        let out = f.expect(
            "encrypt over IPv6",
            ENCRYPT,
            &eth_for(&inner),
            TC_ACT_REDIRECT,
            &[
                (Counter::TxPackets, 1),
                (Counter::TxBytes, inner.len() as u64),
            ],
        );
        assert_eq!(out.len(), 14 + 40 + 8 + 16 + inner.len() + 16);
        assert_eq!(u16::from_be_bytes([out[12], out[13]]), 0x86dd);
        let ip = &out[14..54];
        assert_eq!(ip[0] >> 4, 6);
        assert_eq!(
            u16::from_be_bytes([ip[4], ip[5]]) as usize,
            out.len() - 54,
            "payload length"
        );
        assert_eq!(ip[6], 17);
        assert_eq!(&ip[8..24], &local6.octets());
        assert_eq!(&ip[24..40], &remote6.octets());
        let udp = &out[54..];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), PORT);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), REMOTE_PORT);
        assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, udp.len());
        // The checksum over pseudo-header + datagram verifies to zero.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&ip[8..40]);
        pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        pseudo.extend_from_slice(udp);
        assert_ne!(
            u16::from_be_bytes([udp[6], udp[7]]),
            0,
            "IPv6 UDP checksum present"
        );
        assert_eq!(checksum(&pseudo), 0, "IPv6 UDP checksum");
        let (hdr, plain) = open(&RX_KEY, &udp[8..]).expect("the crate opens it");
        assert_eq!(hdr.counter(), 9 + i as u64);
        assert_eq!(plain, inner);
        // Back in through the decrypt program, as the peer would receive it.
        let mut rx = out.clone();
        rx[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&PORT.to_be_bytes());
        let got = f.expect(
            "decrypt over IPv6",
            DECRYPT,
            &rx,
            TC_ACT_REDIRECT,
            &delivered(&inner),
        );
        assert_delivered(&got, &inner);
    }
    // An IPv4 endpoint while the underlay address is IPv6: cannot send.
    let mut d2 = d.clone();
    d2.peers.get_mut(&1).unwrap().endpoint = Some(SocketAddr::new(IpAddr::V4(REMOTE), REMOTE_PORT));
    let mut f = f;
    f.dp.apply(&d2).unwrap();
    f.expect(
        "family mismatch",
        ENCRYPT,
        &eth_for(&inner4(PEER4, PEER4, 100)),
        TC_ACT_SHOT,
        &[(Counter::TxError, 1)],
    );
}
