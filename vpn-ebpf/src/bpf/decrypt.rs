//! Ingress: accept only data packets for us, validate every length, check
//! the replay window, open, enforce cryptokey routing, decapsulate, and
//! deliver into `vpn0`'s receive path.
//!
//! Runs on TC ingress of the underlay. Anything that is not UDP to the data
//! port passes untouched, except plaintext claiming a VPN source address.
//! Three steps, each its own BPF function (see `crypto`): [`parse`],
//! `crypto::open`, [`deliver`].

use aya_ebpf::{
    bindings::{
        __sk_buff, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4,
        BPF_F_ADJ_ROOM_DECAP_L3_IPV6, BPF_F_INGRESS,
    },
    helpers::generated::{bpf_redirect, bpf_skb_adjust_room},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use vpn_common::{
    replay,
    stats::Counter,
    wire::{DataHeader, HEADER_LEN, MAX_INNER_LEN, MIN_INNER_LEN, TAG_LEN, TYPE_DATA},
};

use super::{
    crypto::{self, Work},
    headers::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, IPV4_LEN, IPV6_LEN, UDP_LEN},
    maps::{CONFIG, ROUTES_V4, ROUTES_V6, RX_SESSIONS, SCRATCH},
    skb, stats, CONTINUE, PASS,
};

pub fn try_decrypt(ctx: &TcContext) -> i32 {
    let Some(w) = SCRATCH.get_ptr_mut(0) else {
        return PASS;
    };
    // SAFETY: this CPU's work area; nothing else touches it while the
    // program runs.
    let w = unsafe { &mut *w };
    let r = parse(ctx.skb.skb, w);
    if r != CONTINUE {
        return r;
    }
    if crypto::open(w) != 1 {
        return stats::drop(Counter::DropBadTag);
    }
    deliver(ctx.skb.skb, w)
}

/// The outer source, for the plaintext spoofing check.
enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
}

#[inline(always)]
fn owner_v4(a: [u8; 4]) -> Option<u32> {
    ROUTES_V4.get(Key::new(32, a)).map(|r| r.peer_id)
}

#[inline(always)]
fn owner_v6(a: [u8; 16]) -> Option<u32> {
    ROUTES_V6.get(Key::new(128, a)).map(|r| r.peer_id)
}

/// Passes a packet that is not ours, unless it is plaintext from a VPN
/// address (DESIGN decision 5: such packets must only ever arrive
/// decrypted on `vpn0`).
#[inline(always)]
fn not_ours(src: Source) -> i32 {
    let owned = match src {
        Source::V4(a) => owner_v4(a).is_some(),
        Source::V6(a) => owner_v6(a).is_some(),
    };
    if owned {
        stats::drop(Counter::DropSpoofedPlain)
    } else {
        PASS
    }
}

/// Validates the outer headers and the data header, pre-checks the replay
/// window and copies ciphertext, tag and key into `w`. Returns [`CONTINUE`]
/// to open, or the action to return.
#[inline(never)]
fn parse(raw: *mut __sk_buff, w: &mut Work) -> i32 {
    let ctx = TcContext::new(raw);
    let ctx = &ctx;
    let Some(cfg) = CONFIG.get(0) else {
        return PASS;
    };
    let Some(proto) = skb::load::<[u8; 2]>(ctx, 12) else {
        return PASS;
    };
    // Outer network header: where UDP starts, the source for the spoofing
    // check, and whether this is UDP at all.
    let (l4, src, udp) = match u16::from_be_bytes(proto) {
        ETH_P_IP => {
            let Some(ip) = skb::load::<[u8; 20]>(ctx, ETH_LEN) else {
                return PASS;
            };
            let ihl = (ip[0] & 0x0f) as u32 * 4;
            if ip[0] >> 4 != 4 || ihl < IPV4_LEN {
                return PASS;
            }
            let src = Source::V4([ip[12], ip[13], ip[14], ip[15]]);
            // Fragments of anything are left to the stack.
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            (ETH_LEN + ihl, src, ip[9] == IPPROTO_UDP && !fragment)
        }
        ETH_P_IPV6 => {
            let Some(ip) = skb::load::<[u8; 40]>(ctx, ETH_LEN) else {
                return PASS;
            };
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            // Extension headers are left to the stack.
            (ETH_LEN + IPV6_LEN, Source::V6(a), ip[6] == IPPROTO_UDP)
        }
        _ => return PASS,
    };
    if !udp {
        return not_ours(src);
    }
    // Destination port first: only the data port is ours.
    let Some(ports) = skb::load::<[u8; 4]>(ctx, l4) else {
        return not_ours(src);
    };
    if u16::from_be_bytes([ports[2], ports[3]]) != cfg.data_port {
        return not_ours(src);
    }
    let Some(udp_hdr) = skb::load::<[u8; 8]>(ctx, l4) else {
        return stats::drop(Counter::DropTruncated);
    };
    let udp_len = u16::from_be_bytes([udp_hdr[4], udp_hdr[5]]) as u32;
    // The UDP length bounds the datagram (trailing link padding is ignored).
    if udp_len < UDP_LEN || l4 + udp_len > ctx.len() {
        return stats::drop(Counter::DropTruncated);
    }
    let payload = udp_len - UDP_LEN;
    let hdr_off = l4 + UDP_LEN;
    if payload < HEADER_LEN as u32 {
        return stats::drop(Counter::DropTruncated);
    }
    let Some(hdr_bytes) = skb::load::<[u8; HEADER_LEN]>(ctx, hdr_off) else {
        return stats::drop(Counter::DropTruncated);
    };
    let Some(hdr) = DataHeader::parse(&hdr_bytes) else {
        return stats::drop(Counter::DropTruncated);
    };
    if hdr.msg_type != TYPE_DATA {
        // Keepalives, probes and handshakes are for the daemon's data
        // socket; anything else is garbage on our port.
        return if (2..=4).contains(&hdr.msg_type) {
            PASS
        } else {
            stats::drop(Counter::DropBadType)
        };
    }
    if payload < (HEADER_LEN + TAG_LEN) as u32 {
        return stats::drop(Counter::DropTruncated);
    }
    let ct_len = payload - (HEADER_LEN + TAG_LEN) as u32;
    if ct_len > cfg.mtu || ct_len > MAX_INNER_LEN as u32 {
        return stats::drop(Counter::DropOversize);
    }
    let index = hdr.receiver_index();
    let Some(rx) = RX_SESSIONS.get_ptr_mut(index) else {
        return stats::drop(Counter::DropUnknownIndex);
    };
    let counter = hdr.counter();
    // SAFETY: the window lives in a live, 8-byte aligned map value and is
    // only accessed through atomics.
    if unsafe { replay::check(core::ptr::addr_of_mut!((*rx).replay), counter) }.is_err() {
        return stats::drop(Counter::DropReplay);
    }
    if ct_len < MIN_INNER_LEN as u32 {
        return stats::drop(Counter::DropBadInner);
    }
    let ct_off = hdr_off + HEADER_LEN as u32;
    let Some(tag) = skb::load::<[u8; TAG_LEN]>(ctx, ct_off + ct_len) else {
        return stats::drop(Counter::DropTruncated);
    };
    if skb::load_to_scratch(ctx, ct_off, w, ct_len).is_err() {
        return stats::drop(Counter::DropTruncated);
    }
    // SAFETY: plain reads of a live map value.
    let (key, peer_id) = unsafe { ((*rx).key, (*rx).peer_id) };
    w.key = key;
    w.peer_id = peer_id;
    w.tag = tag;
    w.hdr = hdr_bytes;
    w.counter = counter;
    w.len = ct_len;
    w.ct_off = ct_off;
    w.index = index;
    CONTINUE
}

/// After the tag verified: moves the replay window, checks the inner packet
/// and its source (cryptokey routing), decapsulates and redirects into
/// `vpn0`'s receive path.
#[inline(never)]
fn deliver(raw: *mut __sk_buff, w: &mut Work) -> i32 {
    let ctx = TcContext::new(raw);
    let ctx = &ctx;
    let Some(cfg) = CONFIG.get(0) else {
        return PASS;
    };
    // The session may have been replaced while we decrypted: a missing one
    // is a stale index now.
    let Some(rx) = RX_SESSIONS.get_ptr_mut(w.index) else {
        return stats::drop(Counter::DropUnknownIndex);
    };
    // Authentic: now the counter may move the window.
    // SAFETY: as for `check` in `parse`.
    if unsafe { replay::check_and_set(core::ptr::addr_of_mut!((*rx).replay), w.counter) }.is_err() {
        return stats::drop(Counter::DropReplay);
    }
    let ct_len = w.len;
    let plain = w.region.bytes();
    let (inner_len, owner, eth_proto, decap_flag) = match plain[0] >> 4 {
        4 => {
            let tot = u16::from_be_bytes([plain[2], plain[3]]) as u32;
            if plain[0] & 0x0f < 5 || tot < IPV4_LEN || tot > ct_len {
                return stats::drop(Counter::DropBadInner);
            }
            let src = [plain[12], plain[13], plain[14], plain[15]];
            (tot, owner_v4(src), ETH_P_IP, BPF_F_ADJ_ROOM_DECAP_L3_IPV4)
        }
        6 => {
            let tot = u16::from_be_bytes([plain[4], plain[5]]) as u32 + IPV6_LEN;
            if ct_len < IPV6_LEN || tot > ct_len {
                return stats::drop(Counter::DropBadInner);
            }
            let mut src = [0u8; 16];
            src.copy_from_slice(&plain[8..24]);
            (tot, owner_v6(src), ETH_P_IPV6, BPF_F_ADJ_ROOM_DECAP_L3_IPV6)
        }
        _ => return stats::drop(Counter::DropBadInner),
    };
    // Cryptokey routing: a peer may only send from addresses it owns.
    if owner != Some(w.peer_id) {
        return stats::drop(Counter::DropWrongInnerSource);
    }

    // One shrink right after the Ethernet header removes everything but
    // `inner_len` bytes (outer IP, UDP, data header, and as many bytes as
    // the tag and any link padding take at the end); the plaintext is then
    // written over what is left. `bpf_skb_change_tail` is not an option: it
    // refuses skbs marked `encapsulation`, which a packet encapsulated by a
    // BPF program on another host of a veth underlay still is. Without
    // BPF_F_ADJ_ROOM_NO_CSUM_RESET the helper also drops the outer packet's
    // checksum state, so the stack verifies the inner checksums itself.
    let remove = ctx.len() - ETH_LEN - inner_len;
    // SAFETY: helper call on the program's own context.
    if unsafe { bpf_skb_adjust_room(raw, -(remove as i32), BPF_ADJ_ROOM_MAC, decap_flag as u64) }
        < 0
    {
        return stats::drop(Counter::DropTruncated);
    }
    let m = cfg.vpn_mac;
    let p = eth_proto.to_be_bytes();
    // Addressed to vpn0, or the stack drops it as PACKET_OTHERHOST.
    let eth = [
        m[0], m[1], m[2], m[3], m[4], m[5], m[0], m[1], m[2], m[3], m[4], m[5], p[0], p[1],
    ];
    if skb::store_from_scratch(ctx, ETH_LEN, w, inner_len).is_err()
        || skb::store(ctx, 0, &eth).is_err()
    {
        return stats::drop(Counter::DropTruncated);
    }
    stats::inc(Counter::RxPackets, 1);
    stats::inc(Counter::RxBytes, inner_len as u64);
    stats::peer(w.peer_id, inner_len as u64, false);
    // SAFETY: plain helper call.
    unsafe { bpf_redirect(cfg.vpn_ifindex, BPF_F_INGRESS as u64) as i32 }
}
