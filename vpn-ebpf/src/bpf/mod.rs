//! The programs proper (compiled only for the BPF target).

mod crypto;
mod decrypt;
mod encrypt;
mod headers;
mod maps;
mod skb;
mod stats;

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};

/// Encrypt and encapsulate (TC ingress on `vpn0p`). Name:
/// `vpn_common::maps::programs::ENCRYPT`.
#[classifier]
pub fn vpn_encrypt(ctx: TcContext) -> i32 {
    encrypt::try_encrypt(&ctx)
}

/// Validate, replay-check, decrypt and deliver (TC ingress on the underlay).
/// Name: `vpn_common::maps::programs::DECRYPT`.
#[classifier]
pub fn vpn_decrypt(ctx: TcContext) -> i32 {
    decrypt::try_decrypt(&ctx)
}

/// A step's "go on" result; any other value is the TC action to return.
/// (Steps are separate BPF functions, which return one scalar.)
pub(crate) const CONTINUE: i32 = -1;
/// Not ours, or no session yet: let the stack have it.
pub(crate) const PASS: i32 = TC_ACT_OK;
/// Dropped (always counted by reason first, see `stats::drop`).
pub(crate) const SHOT: i32 = TC_ACT_SHOT;

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects any reachable path to this loop, so a program
    // that loads cannot panic.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
