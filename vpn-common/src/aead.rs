//! ChaCha20-Poly1305 (RFC 8439), written once for the BPF verifier and the
//! host: fixed sizes, bounded loops, no heap, no `u128`, no recursion and
//! no panic path in the scratch-buffer entry points.
//!
//! Two families of entry points share the same block function and
//! Poly1305 limb code:
//! - [`seal`]/[`open`] (and the aligned [`seal_scratch`]/[`open_scratch`])
//!   work in place on a fixed-size scratch region of [`SCRATCH_LEN`] bytes
//!   with the data-plane nonce and 16-byte AAD. The eBPF programs call these.
//! - [`seal_detached`]/[`open_detached`], [`chacha20_block`],
//!   [`chacha20_xor`] and [`poly1305_mac`] take slices of any length, for
//!   userspace and the RFC 8439 test vectors. They are not built for BPF:
//!   BPF functions take at most five register arguments (a slice needs
//!   two) and cannot return aggregates or call `memcpy` with a runtime
//!   length.
//!
//! On BPF, [`seal`]/[`open`] inline into the caller and call two BPF
//! functions, the ChaCha20 pass and the Poly1305 pass (see `region.rs` for
//! why). Stack: the inlined part needs about 100 bytes of the caller's
//! frame, a pass about 200-250 bytes of its own; the BPF limit of 512 bytes
//! is for the whole call chain. Each of seal and open costs the verifier
//! about 130,000 processed instructions at the largest `len`.

mod chacha20;
mod poly1305;
mod region;
#[cfg(not(target_arch = "bpf"))]
mod slice;
#[cfg(test)]
mod tests;

#[cfg(not(target_arch = "bpf"))]
pub use slice::{chacha20_block, chacha20_xor, open_detached, poly1305_mac, seal_detached};

use crate::wire;

/// Size of the per-CPU scratch buffer the kernel path encrypts in.
pub const SCRATCH_LEN: usize = 2048;

/// The largest `len` the scratch entry points accept: room stays for a tag.
pub const MAX_SCRATCH_DATA: usize = SCRATCH_LEN - wire::TAG_LEN;

/// An 8-byte aligned scratch region. The aligned entry points move whole
/// 64-bit words (one BPF instruction each) instead of assembling words from
/// bytes, which matters on BPF where LLVM may not emit unaligned loads.
/// Suitable as the value type of a per-CPU array map.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Scratch {
    words: [u64; SCRATCH_LEN / 8],
}

const _: () = assert!(core::mem::size_of::<Scratch>() == SCRATCH_LEN);

impl Scratch {
    /// A zeroed region.
    pub const fn zeroed() -> Self {
        Self {
            words: [0; SCRATCH_LEN / 8],
        }
    }

    /// The region as bytes.
    pub fn bytes(&self) -> &[u8; SCRATCH_LEN] {
        // SAFETY: `Scratch` is `repr(C)` with exactly SCRATCH_LEN bytes of
        // plain integers (asserted above); `u8` has alignment 1 and every
        // bit pattern is valid, and the borrow is tied to `self`.
        unsafe { &*(self as *const Self).cast::<[u8; SCRATCH_LEN]>() }
    }

    /// The region as mutable bytes.
    pub fn bytes_mut(&mut self) -> &mut [u8; SCRATCH_LEN] {
        // SAFETY: as in `bytes`; any bytes written form valid `u64`s.
        unsafe { &mut *(self as *mut Self).cast::<[u8; SCRATCH_LEN]>() }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::zeroed()
    }
}

/// Clamps a caller-supplied length; `None` if it does not fit.
#[inline(always)]
fn checked_len(len: usize) -> Option<usize> {
    if len <= MAX_SCRATCH_DATA {
        Some(len)
    } else {
        None
    }
}

/// Encrypts `buf[..len]` in place with the data-plane nonce for `counter`
/// and returns the tag over `aad` and the ciphertext. Bytes from `len` on
/// are not modified.
///
/// `len` must be at most [`MAX_SCRATCH_DATA`]; a larger `len` leaves `buf`
/// untouched and returns an all-zero tag (it never panics or reads out of
/// bounds).
#[inline(always)]
pub fn seal(
    key: &[u8; 32],
    counter: u64,
    aad: &[u8; 16],
    buf: &mut [u8; SCRATCH_LEN],
    len: usize,
) -> [u8; 16] {
    match checked_len(len) {
        Some(len) => region::seal(key, &wire::nonce(counter), aad, buf, len),
        None => [0; 16],
    }
}

/// Verifies `tag` over `aad` and `buf[..len]` (constant-time comparison)
/// and only then decrypts `buf[..len]` in place. Returns `true` if the
/// message is authentic; on `false`, `buf` is unchanged. A `len` above
/// [`MAX_SCRATCH_DATA`] is rejected.
#[inline(always)]
pub fn open(
    key: &[u8; 32],
    counter: u64,
    aad: &[u8; 16],
    buf: &mut [u8; SCRATCH_LEN],
    len: usize,
    tag: &[u8; 16],
) -> bool {
    match checked_len(len) {
        Some(len) => region::open(key, &wire::nonce(counter), aad, buf, len, tag),
        None => false,
    }
}

/// [`seal`] on an aligned [`Scratch`] region: same result, fewer
/// instructions on BPF.
#[inline(always)]
pub fn seal_scratch(
    key: &[u8; 32],
    counter: u64,
    aad: &[u8; 16],
    buf: &mut Scratch,
    len: usize,
) -> [u8; 16] {
    match checked_len(len) {
        Some(len) => region::seal(key, &wire::nonce(counter), aad, &mut buf.words, len),
        None => [0; 16],
    }
}

/// [`open`] on an aligned [`Scratch`] region.
#[inline(always)]
pub fn open_scratch(
    key: &[u8; 32],
    counter: u64,
    aad: &[u8; 16],
    buf: &mut Scratch,
    len: usize,
    tag: &[u8; 16],
) -> bool {
    match checked_len(len) {
        Some(len) => region::open(key, &wire::nonce(counter), aad, &mut buf.words, len, tag),
        None => false,
    }
}
