//! Shared by the `BPF_PROG_TEST_RUN` tests: the fixture (the real object,
//! loaded unattached, maps filled from a desired state), and packet
//! crafting with the `chacha20poly1305` crate, an implementation
//! independent of the programs' cipher.
#![allow(dead_code, unused_imports)] // each test crate uses a different subset

pub use std::collections::BTreeMap;
pub use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use chacha20poly1305::aead::{AeadInPlace, KeyInit};
pub use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
pub use vpn_common::maps::programs::{DECRYPT, ENCRYPT};
pub use vpn_common::stats::Counter;
pub use vpn_common::wire::{self, DataHeader, TYPE_DATA};
pub use vpn_control::dataplane::kernel::{KernelDataplane, KernelParams};
pub use vpn_control::dataplane::{Dataplane, DesiredPeer, DesiredState, Prefix, RxKey, TxKey};

pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

pub const PORT: u16 = 51830;
pub const MTU: u32 = 1440;
pub const VPN_MAC: [u8; 6] = [0x02, 0x47, 0x56, 0, 0, 1];
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const REMOTE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const REMOTE_PORT: u16 = 40000;

pub const ME4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const PEER4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
pub const OTHER4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 3);
pub const NOSESSION4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 4);
pub const ME6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
pub const PEER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

/// Peer 1: full session. Peer 2 owns OTHER4 and has a session too.
/// Peer 3 owns NOSESSION4 but has no session.
pub const TX_KEY: [u8; 32] = [0x11; 32];
pub const RX_KEY: [u8; 32] = [0x22; 32];
pub const PEER2_RX_KEY: [u8; 32] = [0x33; 32];
pub const REMOTE_INDEX: u32 = 0x0a0b_0c0d;
pub const LOCAL_INDEX: u32 = 0x0102_0304;
pub const PEER2_INDEX: u32 = 0x0505_0505;
pub const INITIAL_COUNTER: u64 = 1_000;

pub fn params() -> KernelParams {
    KernelParams {
        underlay_ifindex: 1,
        vpn_ifindex: 1,
        vpn_peer_ifindex: 1,
        vpn_mac: VPN_MAC,
        local_addr: IpAddr::V4(LOCAL),
        data_port: PORT,
        mtu: MTU,
    }
}

pub fn prefix(addr: IpAddr, len: u8) -> Prefix {
    Prefix { addr, len }
}

pub fn desired() -> DesiredState {
    let mut peers = BTreeMap::new();
    peers.insert(
        1,
        DesiredPeer {
            id: 1,
            name: "alice".into(),
            endpoint: Some(SocketAddr::new(IpAddr::V4(REMOTE), REMOTE_PORT)),
            allowed: vec![
                prefix(IpAddr::V4(PEER4), 32),
                prefix(IpAddr::V6(PEER6), 128),
            ],
            tx: Some(TxKey {
                key: TX_KEY,
                remote_index: REMOTE_INDEX,
                initial_counter: INITIAL_COUNTER,
            }),
            rx: vec![RxKey {
                key: RX_KEY,
                local_index: LOCAL_INDEX,
            }],
        },
    );
    peers.insert(
        2,
        DesiredPeer {
            id: 2,
            name: "bob".into(),
            endpoint: Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)),
                PORT,
            )),
            allowed: vec![prefix(IpAddr::V4(OTHER4), 32)],
            tx: Some(TxKey {
                key: [0x44; 32],
                remote_index: 7,
                initial_counter: 0,
            }),
            rx: vec![RxKey {
                key: PEER2_RX_KEY,
                local_index: PEER2_INDEX,
            }],
        },
    );
    peers.insert(
        3,
        DesiredPeer {
            id: 3,
            name: "carol".into(),
            endpoint: None,
            allowed: vec![prefix(IpAddr::V4(NOSESSION4), 32)],
            tx: None,
            rx: vec![],
        },
    );
    DesiredState { peers }
}

pub struct Fixture {
    pub dp: KernelDataplane,
}

impl Fixture {
    /// Loads the object, or returns `None` when root tests are skipped.
    pub fn new(test: &str) -> Option<Self> {
        if !vpn_tests::require_root(test) {
            return None;
        }
        let mut dp = KernelDataplane::load_unattached(&params()).expect("load the eBPF object");
        dp.apply(&desired()).expect("fill the maps");
        Some(Self { dp })
    }

    pub fn counters(&self) -> BTreeMap<Counter, u64> {
        self.dp.stats().expect("read STATS").counters
    }

    /// Runs `program` once; returns the verdict and the output packet.
    pub fn run(&self, program: &str, input: &[u8]) -> (u32, Vec<u8>) {
        let mut out = vec![0u8; 4096];
        let r = self
            .dp
            .test_run(program, input, &mut out, 1)
            .unwrap_or_else(|e| panic!("{e} ({}-byte input)", input.len()));
        out.truncate(r.out_len);
        (r.verdict, out)
    }

    /// Runs `program` and asserts the verdict and that exactly `moved`
    /// counters changed, by exactly those amounts.
    pub fn expect(
        &self,
        what: &str,
        program: &str,
        input: &[u8],
        verdict: u32,
        moved: &[(Counter, u64)],
    ) -> Vec<u8> {
        let before = self.counters();
        let (v, out) = self.run(program, input);
        let after = self.counters();
        assert_eq!(v, verdict, "{what}: verdict");
        for c in Counter::ALL {
            let want = moved
                .iter()
                .filter(|(m, _)| *m == c)
                .map(|(_, n)| *n)
                .sum::<u64>();
            let got = after[&c] - before[&c];
            assert_eq!(
                got,
                want,
                "{what}: counter {} moved by {got}, expected {want}",
                c.name()
            );
        }
        out
    }
}

// ---------- packet crafting ----------

pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for ch in data.chunks(2) {
        let w = if ch.len() == 2 {
            u16::from_be_bytes([ch[0], ch[1]])
        } else {
            u16::from_be_bytes([ch[0], 0])
        };
        sum += w as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let tot = (20 + payload.len()) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&tot.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// A UDP datagram (checksum 0) with a recognisable payload.
pub fn udp(sport: u16, dport: u16, payload_len: usize) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload_len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend((0..payload_len).map(|i| (i * 7 + 3) as u8));
    u
}

/// An inner IPv4 packet of exactly `len` bytes from `src` to `dst`.
pub fn inner4(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Vec<u8> {
    ipv4(src, dst, 17, &udp(1234, 5678, len - 28))
}

/// An inner IPv6 packet of exactly `len` bytes.
pub fn inner6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Vec<u8> {
    ipv6(src, dst, 17, &udp(1234, 5678, len - 48))
}

pub fn eth(dst: [u8; 6], proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f.extend_from_slice(&proto.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn eth_for(inner: &[u8]) -> Vec<u8> {
    let proto = if inner[0] >> 4 == 6 { 0x86dd } else { 0x0800 };
    eth([0x02, 0, 0, 0, 0, 0x10], proto, inner)
}

/// Header + ciphertext + tag, sealed with the crate.
pub fn seal(key: &[u8; 32], msg_type: u8, index: u32, counter: u64, inner: &[u8]) -> Vec<u8> {
    let hdr = DataHeader::new(msg_type, index, counter).to_bytes();
    let mut buf = inner.to_vec();
    let tag = ChaCha20Poly1305::new(key.into())
        .encrypt_in_place_detached(Nonce::from_slice(&wire::nonce(counter)), &hdr, &mut buf)
        .expect("seal");
    let mut out = hdr.to_vec();
    out.extend_from_slice(&buf);
    out.extend_from_slice(&tag);
    out
}

/// Opens header + ciphertext + tag with the crate.
pub fn open(key: &[u8; 32], data: &[u8]) -> Option<(DataHeader, Vec<u8>)> {
    let hdr = DataHeader::parse(data)?;
    let (ct, tag) = data[16..].split_at(data.len() - 32);
    let mut buf = ct.to_vec();
    ChaCha20Poly1305::new(key.into())
        .decrypt_in_place_detached(
            Nonce::from_slice(&wire::nonce(hdr.counter())),
            &data[..16],
            &mut buf,
            Tag::from_slice(tag),
        )
        .ok()?;
    Some((hdr, buf))
}

/// A full underlay frame carrying `data` to the data port.
pub fn underlay_frame(data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&REMOTE_PORT.to_be_bytes());
    u.extend_from_slice(&PORT.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    eth(
        [0x02, 0, 0, 0, 0, 0x20],
        0x0800,
        &ipv4(REMOTE, LOCAL, 17, &u),
    )
}

pub fn data_frame(key: &[u8; 32], index: u32, counter: u64, inner: &[u8]) -> Vec<u8> {
    underlay_frame(&seal(key, TYPE_DATA, index, counter, inner))
}

pub fn delivered(inner: &[u8]) -> Vec<(Counter, u64)> {
    vec![
        (Counter::RxPackets, 1),
        (Counter::RxBytes, inner.len() as u64),
    ]
}

/// Checks a decrypted, decapsulated frame: addressed to vpn0, right
/// ethertype, exactly the inner packet.
pub fn assert_delivered(out: &[u8], inner: &[u8]) {
    assert_eq!(&out[..6], &VPN_MAC, "Ethernet destination is vpn0's MAC");
    let proto = if inner[0] >> 4 == 6 {
        0x86ddu16
    } else {
        0x0800
    };
    assert_eq!(u16::from_be_bytes([out[12], out[13]]), proto, "ethertype");
    assert_eq!(&out[14..], inner, "decrypted inner packet");
}
