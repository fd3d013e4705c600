//! Tier 2: the decrypt program on crafted packets with `BPF_PROG_TEST_RUN`
//! (root): good packets, every drop reason with exactly its counter.

mod bpf_common;

use bpf_common::*;

// ---------- ingress ----------

#[test]
fn decrypt_good_ipv4_and_ipv6() {
    let Some(f) = Fixture::new("decrypt_good_ipv4_and_ipv6") else {
        return;
    };
    let inner = inner4(PEER4, ME4, 1400);
    let out = f.expect(
        "good v4",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 1, &inner),
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    assert_delivered(&out, &inner);
    let inner = inner6(PEER6, ME6, 1200);
    let out = f.expect(
        "good v6",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 2, &inner),
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    assert_delivered(&out, &inner);
    // Smallest inner packet.
    let inner = inner4(PEER4, ME4, 28);
    let out = f.expect(
        "good small",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 3, &inner),
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    assert_delivered(&out, &inner);
    let peer = f.dp.stats().unwrap().peers[&1];
    assert_eq!(peer.rx_packets, 3);
    assert_eq!(peer.rx_bytes, 1400 + 1200 + 28);
}

#[test]
fn decrypt_tampered_wrong_key_unknown_index() {
    let Some(f) = Fixture::new("decrypt_tampered_wrong_key_unknown_index") else {
        return;
    };
    let inner = inner4(PEER4, ME4, 600);
    let good = data_frame(&RX_KEY, LOCAL_INDEX, 10, &inner);
    let ct_start = 14 + 20 + 8 + 16;
    let mut t = good.clone();
    t[ct_start + 100] ^= 0x01;
    f.expect(
        "tampered ciphertext",
        DECRYPT,
        &t,
        TC_ACT_SHOT,
        &[(Counter::DropBadTag, 1)],
    );
    let mut t = good.clone();
    let last = t.len() - 1;
    t[last] ^= 0x80;
    f.expect(
        "tampered tag",
        DECRYPT,
        &t,
        TC_ACT_SHOT,
        &[(Counter::DropBadTag, 1)],
    );
    let mut t = good.clone();
    t[14 + 20 + 8 + 8] ^= 0x01; // the counter is authenticated data
    f.expect(
        "tampered header",
        DECRYPT,
        &t,
        TC_ACT_SHOT,
        &[(Counter::DropBadTag, 1)],
    );
    let t = data_frame(&[0x99; 32], LOCAL_INDEX, 10, &inner);
    f.expect(
        "wrong key",
        DECRYPT,
        &t,
        TC_ACT_SHOT,
        &[(Counter::DropBadTag, 1)],
    );
    let t = data_frame(&RX_KEY, 0xdead_beef, 10, &inner);
    f.expect(
        "unknown index",
        DECRYPT,
        &t,
        TC_ACT_SHOT,
        &[(Counter::DropUnknownIndex, 1)],
    );
    // None of the failures moved the window: the good packet still goes in.
    let out = f.expect(
        "good after failures",
        DECRYPT,
        &good,
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    assert_delivered(&out, &inner);
}

#[test]
fn decrypt_replay_window() {
    let Some(f) = Fixture::new("decrypt_replay_window") else {
        return;
    };
    let inner = inner4(PEER4, ME4, 300);
    let frame = |c: u64| data_frame(&RX_KEY, LOCAL_INDEX, c, &inner);
    f.expect(
        "first",
        DECRYPT,
        &frame(5000),
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    f.expect(
        "replayed",
        DECRYPT,
        &frame(5000),
        TC_ACT_SHOT,
        &[(Counter::DropReplay, 1)],
    );
    f.expect(
        "reordered within window",
        DECRYPT,
        &frame(4000),
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    f.expect(
        "reordered, oldest in window",
        DECRYPT,
        &frame(5000 - 2048),
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    f.expect(
        "reordered replayed",
        DECRYPT,
        &frame(4000),
        TC_ACT_SHOT,
        &[(Counter::DropReplay, 1)],
    );
    f.expect(
        "too old",
        DECRYPT,
        &frame(5000 - 2049),
        TC_ACT_SHOT,
        &[(Counter::DropReplay, 1)],
    );
    f.expect(
        "much too old",
        DECRYPT,
        &frame(3),
        TC_ACT_SHOT,
        &[(Counter::DropReplay, 1)],
    );
    f.expect(
        "newer",
        DECRYPT,
        &frame(5001),
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    // A session per peer: peer 2's index has its own window.
    let inner2 = inner4(OTHER4, ME4, 300);
    let t = data_frame(&PEER2_RX_KEY, PEER2_INDEX, 5000, &inner2);
    f.expect(
        "other session, same counter",
        DECRYPT,
        &t,
        TC_ACT_REDIRECT,
        &delivered(&inner2),
    );
}

#[test]
fn decrypt_truncated_at_every_boundary() {
    let Some(f) = Fixture::new("decrypt_truncated_at_every_boundary") else {
        return;
    };
    let inner = inner4(PEER4, ME4, 200);
    let good = data_frame(&RX_KEY, LOCAL_INDEX, 1, &inner);
    // Cut short without fixing the length fields (as a mangled capture would).
    // Before the ports are complete it is not recognisably ours and is left
    // to the stack. (The kernel's BPF_PROG_TEST_RUN itself refuses frames
    // shorter than Ethernet + a 20-byte IPv4 header, so cuts inside the
    // fixed IPv4 header cannot be run; a cut inside IPv4 options can.)
    for cut in [34, 36] {
        f.expect(
            &format!("cut at {cut}"),
            DECRYPT,
            &good[..cut],
            TC_ACT_OK,
            &[],
        );
    }
    let mut opts = good[..14].to_vec();
    let mut ip = good[14..34].to_vec();
    ip[0] = 0x4f; // IHL 15: 40 bytes of options
    opts.extend_from_slice(&ip);
    opts.extend_from_slice(&[1u8; 20]); // NOPs, cut inside the options
    f.expect("cut inside IPv4 options", DECRYPT, &opts, TC_ACT_OK, &[]);
    // From the destination port on, it is ours and truncated.
    let ends = [
        38,
        41,
        42,
        43,
        50,
        57,
        58,
        59,
        100,
        good.len() - 17,
        good.len() - 1,
    ];
    for cut in ends {
        f.expect(
            &format!("cut at {cut}"),
            DECRYPT,
            &good[..cut],
            TC_ACT_SHOT,
            &[(Counter::DropTruncated, 1)],
        );
    }
    // Consistent lengths, but too short for a header or a tag.
    let sealed = seal(&RX_KEY, TYPE_DATA, LOCAL_INDEX, 2, &inner);
    for keep in [0, 8, 15, 16, 20, 31] {
        let t = underlay_frame(&sealed[..keep]);
        f.expect(
            &format!("datagram of {keep}"),
            DECRYPT,
            &t,
            TC_ACT_SHOT,
            &[(Counter::DropTruncated, 1)],
        );
    }
    // A UDP length below 8.
    let mut t = good.clone();
    t[14 + 24..14 + 26].copy_from_slice(&4u16.to_be_bytes());
    f.expect(
        "UDP length 4",
        DECRYPT,
        &t,
        TC_ACT_SHOT,
        &[(Counter::DropTruncated, 1)],
    );
    // Link-layer padding after the datagram is ignored.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0u8; 6]);
    let out = f.expect(
        "trailing padding",
        DECRYPT,
        &padded,
        TC_ACT_REDIRECT,
        &delivered(&inner),
    );
    assert_delivered(&out, &inner);
}

#[test]
fn decrypt_oversize_bad_type_bad_inner() {
    let Some(f) = Fixture::new("decrypt_oversize_bad_type_bad_inner") else {
        return;
    };
    let big = inner4(PEER4, ME4, MTU as usize + 1);
    f.expect(
        "oversize",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 1, &big),
        TC_ACT_SHOT,
        &[(Counter::DropOversize, 1)],
    );
    let inner = inner4(PEER4, ME4, 100);
    for ty in [0u8, 5, 0x7f, 0xff] {
        let t = underlay_frame(&seal(&RX_KEY, ty, LOCAL_INDEX, 2, &inner));
        f.expect(
            &format!("type {ty}"),
            DECRYPT,
            &t,
            TC_ACT_SHOT,
            &[(Counter::DropBadType, 1)],
        );
    }
    // Reserved control types go to the daemon's socket.
    for ty in [wire::TYPE_KEEPALIVE, wire::TYPE_PROBE, wire::TYPE_HANDSHAKE] {
        let t = underlay_frame(&seal(&RX_KEY, ty, LOCAL_INDEX, 2, &inner));
        f.expect(&format!("type {ty}"), DECRYPT, &t, TC_ACT_OK, &[]);
    }
    // Authentic, but not an IP packet / inconsistent lengths.
    let mut not_ip = inner.clone();
    not_ip[0] = 0x55;
    f.expect(
        "version 5",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 3, &not_ip),
        TC_ACT_SHOT,
        &[(Counter::DropBadInner, 1)],
    );
    let mut long = inner.clone();
    long[2..4].copy_from_slice(&200u16.to_be_bytes());
    f.expect(
        "IPv4 length beyond payload",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 4, &long),
        TC_ACT_SHOT,
        &[(Counter::DropBadInner, 1)],
    );
    let mut v6 = inner6(PEER6, ME6, 100);
    v6[4..6].copy_from_slice(&100u16.to_be_bytes());
    f.expect(
        "IPv6 length beyond payload",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 5, &v6),
        TC_ACT_SHOT,
        &[(Counter::DropBadInner, 1)],
    );
    let tiny = vec![0x45u8; 12];
    f.expect(
        "shorter than an IPv4 header",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 6, &tiny),
        TC_ACT_SHOT,
        &[(Counter::DropBadInner, 1)],
    );
}

#[test]
fn decrypt_cryptokey_routing_and_spoofed_plaintext() {
    let Some(f) = Fixture::new("decrypt_cryptokey_routing_and_spoofed_plaintext") else {
        return;
    };
    // Peer 1's session carrying peer 2's address, or a non-VPN address.
    for (c, src) in [(1, OTHER4), (2, Ipv4Addr::new(198, 51, 100, 1))] {
        let inner = inner4(src, ME4, 300);
        f.expect(
            &format!("inner source {src}"),
            DECRYPT,
            &data_frame(&RX_KEY, LOCAL_INDEX, c, &inner),
            TC_ACT_SHOT,
            &[(Counter::DropWrongInnerSource, 1)],
        );
    }
    let inner = inner6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9), ME6, 300);
    f.expect(
        "inner v6 source",
        DECRYPT,
        &data_frame(&RX_KEY, LOCAL_INDEX, 3, &inner),
        TC_ACT_SHOT,
        &[(Counter::DropWrongInnerSource, 1)],
    );
    // Plaintext from a VPN address on the underlay.
    let plain = eth([0x02, 0, 0, 0, 0, 0x20], 0x0800, &inner4(PEER4, ME4, 100));
    f.expect(
        "spoofed plaintext v4",
        DECRYPT,
        &plain,
        TC_ACT_SHOT,
        &[(Counter::DropSpoofedPlain, 1)],
    );
    let plain = eth([0x02, 0, 0, 0, 0, 0x20], 0x86dd, &inner6(PEER6, ME6, 100));
    f.expect(
        "spoofed plaintext v6",
        DECRYPT,
        &plain,
        TC_ACT_SHOT,
        &[(Counter::DropSpoofedPlain, 1)],
    );
    // Ordinary underlay traffic passes, including UDP to other ports.
    let plain = eth(
        [0x02, 0, 0, 0, 0, 0x20],
        0x0800,
        &inner4(REMOTE, LOCAL, 100),
    );
    f.expect("other UDP", DECRYPT, &plain, TC_ACT_OK, &[]);
    let icmp = eth(
        [0x02, 0, 0, 0, 0, 0x20],
        0x0800,
        &ipv4(REMOTE, LOCAL, 1, &[8, 0, 0, 0, 0, 1, 0, 1]),
    );
    f.expect("ICMP", DECRYPT, &icmp, TC_ACT_OK, &[]);
}
