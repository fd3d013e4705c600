//! Egress: seal one inner IP packet and send it to the peer's endpoint.
//!
//! Runs on TC ingress of `vpn0p`, where every packet is one inner IP packet
//! behind an Ethernet header (`vpn0` has TSO/GSO and checksum offload off).
//! Three steps, each its own BPF function so that no frame is large while
//! the cipher's is on the stack: [`prepare`], `crypto::seal`, [`emit`].

use aya_ebpf::{
    bindings::{
        __sk_buff, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
    },
    helpers::generated::{bpf_redirect_neigh, bpf_skb_adjust_room},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use vpn_common::{
    maps::{FAMILY_V4, FAMILY_V6},
    stats::Counter,
    wire::{DataHeader, MAX_INNER_LEN, TAG_LEN, TYPE_DATA},
};

use super::{
    crypto::{self, Work},
    headers::{
        encap_v4, encap_v6, udp6_checksum, ENCAP_V4_LEN, ENCAP_V6_LEN, ETH_LEN, ETH_P_IP,
        ETH_P_IPV6, IPV4_LEN, IPV6_LEN,
    },
    maps::{CONFIG, PEERS, ROUTES_V4, ROUTES_V6, SCRATCH, TX_SESSIONS},
    skb, stats, CONTINUE, PASS,
};

pub fn try_encrypt(ctx: &TcContext) -> i32 {
    let Some(w) = SCRATCH.get_ptr_mut(0) else {
        return PASS;
    };
    // SAFETY: this CPU's work area; nothing else touches it while the
    // program runs.
    let w = unsafe { &mut *w };
    let r = prepare(ctx.skb.skb, w);
    if r != CONTINUE {
        return r;
    }
    crypto::seal(w);
    emit(ctx.skb.skb, w)
}

/// Finds the peer that owns an inner packet's destination.
#[inline(always)]
fn route(ctx: &TcContext, inner_len: u32) -> Option<u32> {
    let proto: [u8; 2] = skb::load(ctx, 12)?;
    match u16::from_be_bytes(proto) {
        ETH_P_IP if inner_len >= IPV4_LEN => {
            let dst: [u8; 4] = skb::load(ctx, ETH_LEN + 16)?;
            ROUTES_V4.get(Key::new(32, dst)).map(|r| r.peer_id)
        }
        ETH_P_IPV6 if inner_len >= IPV6_LEN => {
            let dst: [u8; 16] = skb::load(ctx, ETH_LEN + 24)?;
            ROUTES_V6.get(Key::new(128, dst)).map(|r| r.peer_id)
        }
        _ => None,
    }
}

/// Classifies the packet, takes a counter and copies the plaintext into
/// `w`. Returns [`CONTINUE`] to seal, or the action to return.
#[inline(never)]
fn prepare(raw: *mut __sk_buff, w: &mut Work) -> i32 {
    let ctx = TcContext::new(raw);
    let Some(cfg) = CONFIG.get(0) else {
        return PASS;
    };
    let len = ctx.len();
    if len <= ETH_LEN {
        return PASS;
    }
    let inner_len = len - ETH_LEN;
    // Not a VPN destination: not ours.
    let Some(peer_id) = route(&ctx, inner_len) else {
        return PASS;
    };
    // A VPN destination without a session yet: the daemon reads it on vpn0p.
    let (Some(tx), Some(ep)) = (TX_SESSIONS.get_ptr_mut(peer_id), PEERS.get_ptr(peer_id)) else {
        stats::inc(Counter::NoSession, 1);
        return PASS;
    };
    if inner_len > cfg.mtu || inner_len > MAX_INNER_LEN as u32 {
        return stats::drop(Counter::DropOversize);
    }
    // SAFETY: map values, valid while the program runs.
    let ep = unsafe { &*ep };
    let family = match (cfg.local_family, ep.family) {
        (FAMILY_V4, FAMILY_V4) => FAMILY_V4,
        (FAMILY_V6, FAMILY_V6) => FAMILY_V6,
        // An endpoint of the other family than our underlay address.
        _ => return stats::drop(Counter::TxError),
    };
    if skb::load_to_scratch(&ctx, ETH_LEN, w, inner_len).is_err() {
        return stats::drop(Counter::TxError);
    }
    // Every packet takes a fresh counter, atomically, even when several
    // CPUs send on the same session.
    // SAFETY: an 8-byte aligned u64 inside a live map value; all
    // concurrent writers use atomics.
    let counter =
        unsafe { vpn_common::atomic::fetch_add(core::ptr::addr_of_mut!((*tx).counter), 1) };
    // SAFETY: plain reads of a live map value.
    let (key, remote_index) = unsafe { ((*tx).key, (*tx).remote_index) };
    w.key = key;
    w.counter = counter;
    w.len = inner_len;
    w.peer_id = peer_id;
    w.hdr = DataHeader::new(TYPE_DATA, remote_index, counter).to_bytes();
    w.family = family;
    if family == FAMILY_V4 {
        w.outer.hdr = w.hdr;
        encap_v4(
            &mut w.outer,
            &cfg.local_addr,
            &ep.addr,
            cfg.data_port,
            ep.port,
            inner_len,
        );
    } else {
        w.outer6.hdr = w.hdr;
        encap_v6(
            &mut w.outer6,
            &cfg.local_addr,
            &ep.addr,
            cfg.data_port,
            ep.port,
            inner_len,
        );
    }
    CONTINUE
}

/// Grows the packet, writes outer headers, ciphertext and tag, and
/// redirects it to the underlay.
///
/// One grow right after the Ethernet header makes room for the outer
/// headers and the tag; headers, ciphertext and tag (both already in `w`'s
/// region) are then written over the whole packet. This avoids
/// `bpf_skb_change_tail`, which refuses skbs marked `encapsulation`. The
/// Ethernet header stays as the 14-byte placeholder that
/// `bpf_redirect_neigh` needs; with the encap flags `bpf_skb_adjust_room`
/// also sets `skb->protocol` to the outer family, which the redirect routes
/// by. Over IPv6 the UDP checksum is mandatory and computed here.
#[inline(never)]
fn emit(raw: *mut __sk_buff, w: &mut Work) -> i32 {
    let ctx = TcContext::new(raw);
    let Some(cfg) = CONFIG.get(0) else {
        return stats::drop(Counter::TxError);
    };
    crypto::append_tag(w);
    let inner_len = w.len;
    let v4 = w.family == FAMILY_V4;
    let (l3, encap_len, proto) = if v4 {
        (BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, ENCAP_V4_LEN, ETH_P_IP)
    } else {
        (BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, ENCAP_V6_LEN, ETH_P_IPV6)
    };
    let flags = (l3 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP) as u64;
    let grow = encap_len + TAG_LEN as u32;
    // SAFETY: helper call on the program's own context.
    if unsafe { bpf_skb_adjust_room(raw, grow as i32, BPF_ADJ_ROOM_MAC, flags) } < 0 {
        return stats::drop(Counter::TxError);
    }
    let headers = if v4 {
        skb::store(&ctx, ETH_LEN, &w.outer)
    } else {
        let c = udp6_checksum(&w.outer6, &w.region, inner_len + TAG_LEN as u32);
        w.outer6.udp[6] = c[0];
        w.outer6.udp[7] = c[1];
        skb::store(&ctx, ETH_LEN, &w.outer6)
    };
    if headers.is_err()
        || skb::store(&ctx, 12, &proto.to_be_bytes()).is_err()
        || skb::store_from_scratch(&ctx, ETH_LEN + encap_len, w, inner_len + TAG_LEN as u32)
            .is_err()
    {
        return stats::drop(Counter::TxError);
    }
    stats::inc(Counter::TxPackets, 1);
    stats::inc(Counter::TxBytes, inner_len as u64);
    stats::peer(w.peer_id, inner_len as u64, true);
    // The kernel resolves the route and the neighbour (the first packet to
    // an unresolved neighbour is queued, not lost).
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_neigh(cfg.underlay_ifindex, core::ptr::null_mut(), 0, 0) as i32 }
}
