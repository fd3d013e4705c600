//! Thin wrappers over the skb helpers with lengths the verifier can bound.
//!
//! aya's `load_bytes` clamps its length in a way the verifier cannot follow,
//! so variable-length copies go through [`bounded`], which proves `len` is in
//! `1..=MAX_SCRATCH_DATA` with an explicit check LLVM cannot rewrite.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{bpf_skb_load_bytes, bpf_skb_store_bytes},
    programs::TcContext,
};
use vpn_common::aead::{MAX_SCRATCH_DATA, SCRATCH_LEN};

use super::crypto::Work;

/// Returns `len` if it is in `1..=MAX`, else 0. The comparison is written
/// in BPF assembly so that the verifier sees the bound on the very register
/// that is later passed to a helper (LLVM would fold or rewrite a Rust
/// comparison so that the bound lands on another register).
#[inline(always)]
pub fn bounded<const MAX: usize>(len: u32) -> u32 {
    let mut v = len as u64;
    // SAFETY: pure register arithmetic.
    unsafe {
        core::arch::asm!(
            "if {v} <= {max} goto +1",
            "{v} = 0",
            v = inout(reg) v,
            max = const MAX,
            options(pure, nomem, nostack),
        );
    }
    v as u32
}

#[inline(always)]
fn raw(ctx: &TcContext) -> *mut __sk_buff {
    ctx.skb.skb
}

/// Copies `len` packet bytes at `off` into the start of `dst`.
#[inline(always)]
pub fn load_to_scratch(ctx: &TcContext, off: u32, dst: *mut Work, len: u32) -> Result<(), ()> {
    let n = bounded::<MAX_SCRATCH_DATA>(len);
    if n == 0 {
        return Err(());
    }
    // SAFETY: `dst` is a map value whose region has SCRATCH_LEN bytes and `n` is at most
    // MAX_SCRATCH_DATA < SCRATCH_LEN; the helper checks the packet side.
    let r = unsafe {
        bpf_skb_load_bytes(
            raw(ctx) as *const c_void,
            off,
            core::ptr::addr_of_mut!((*dst).region) as *mut c_void,
            n,
        )
    };
    if r < 0 {
        Err(())
    } else {
        Ok(())
    }
}

/// Copies the first `len` bytes of `src`'s region (up to all of it) into
/// the packet at `off`.
#[inline(always)]
pub fn store_from_scratch(ctx: &TcContext, off: u32, src: *const Work, len: u32) -> Result<(), ()> {
    let n = bounded::<SCRATCH_LEN>(len);
    if n == 0 {
        return Err(());
    }
    // SAFETY: as in `load_to_scratch`, with `n` at most SCRATCH_LEN.
    let r = unsafe {
        bpf_skb_store_bytes(
            raw(ctx),
            off,
            core::ptr::addr_of!((*src).region) as *const c_void,
            n,
            0,
        )
    };
    if r < 0 {
        Err(())
    } else {
        Ok(())
    }
}

/// Loads a fixed-size value (a header) from the packet.
#[inline(always)]
pub fn load<T: Copy>(ctx: &TcContext, off: u32) -> Option<T> {
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: the helper writes exactly size_of::<T>() bytes or fails.
    let r = unsafe {
        bpf_skb_load_bytes(
            raw(ctx) as *const c_void,
            off,
            v.as_mut_ptr() as *mut c_void,
            core::mem::size_of::<T>() as u32,
        )
    };
    if r < 0 {
        None
    } else {
        // SAFETY: fully initialised by the helper.
        Some(unsafe { v.assume_init() })
    }
}

/// Stores a fixed-size value into the packet.
#[inline(always)]
pub fn store<T: Copy>(ctx: &TcContext, off: u32, v: &T) -> Result<(), ()> {
    // SAFETY: reads size_of::<T>() bytes from a valid reference.
    let r = unsafe {
        bpf_skb_store_bytes(
            raw(ctx),
            off,
            v as *const T as *const c_void,
            core::mem::size_of::<T>() as u32,
            0,
        )
    };
    if r < 0 {
        Err(())
    } else {
        Ok(())
    }
}
