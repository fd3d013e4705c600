//! The AEAD over a fixed-size scratch region: the code the eBPF programs run.
//!
//! Shape, chosen for the BPF verifier and for register pressure:
//! - two bounded passes over the region, one of ChaCha20 blocks (at most 32)
//!   and one of Poly1305 blocks (at most 128): seal encrypts then MACs, open
//!   MACs, compares and only then decrypts;
//! - every access is a 64-bit word at an index masked into the region, so
//!   there is no bounds check and no panic path; the last, partial block is
//!   handled with byte masks instead of a separate tail loop (a byte past
//!   `len` is XORed with zero, and zeroed before it reaches Poly1305, which
//!   is exactly `pad16`). Nothing past `len` changes;
//! - one block function inlined in the loop body, reading key and nonce
//!   through volatile loads per block (see [`super::chacha20::block`]).

use super::chacha20::{self, Input};
use super::poly1305::Poly1305;
use super::SCRATCH_LEN;

/// Number of 64-bit words in a scratch region.
const WORDS: usize = SCRATCH_LEN / 8;
const WORD_MASK: usize = WORDS - 1;
const _: () = assert!(WORDS.is_power_of_two());

/// Word access to a scratch region. `i` is a 64-bit word index; an
/// implementation masks it into range, so no access can fail.
pub(crate) trait Region {
    fn load(&self, i: usize) -> u64;
    fn store(&mut self, i: usize, v: u64);
}

/// Any byte alignment: each word is assembled from bytes (on BPF, eight
/// byte loads; on x86, one unaligned load).
impl Region for [u8; SCRATCH_LEN] {
    #[inline(always)]
    fn load(&self, i: usize) -> u64 {
        let o = (i & WORD_MASK) << 3;
        u64::from_le_bytes([
            self[o],
            self[o | 1],
            self[o | 2],
            self[o | 3],
            self[o | 4],
            self[o | 5],
            self[o | 6],
            self[o | 7],
        ])
    }

    #[inline(always)]
    fn store(&mut self, i: usize, v: u64) {
        let o = (i & WORD_MASK) << 3;
        let b = v.to_le_bytes();
        self[o] = b[0];
        self[o | 1] = b[1];
        self[o | 2] = b[2];
        self[o | 3] = b[3];
        self[o | 4] = b[4];
        self[o | 5] = b[5];
        self[o | 6] = b[6];
        self[o | 7] = b[7];
    }
}

/// 8-byte aligned: one load or store per word.
impl Region for [u64; WORDS] {
    #[inline(always)]
    fn load(&self, i: usize) -> u64 {
        u64::from_le(self[i & WORD_MASK])
    }

    #[inline(always)]
    fn store(&mut self, i: usize, v: u64) {
        self[i & WORD_MASK] = v.to_le();
    }
}

/// Mask of the bytes of the word starting at byte `pos` that lie before
/// `len` (little-endian: low bytes first).
#[inline(always)]
fn keep_mask(pos: usize, len: usize) -> u64 {
    let valid = len.saturating_sub(pos);
    if valid >= 8 {
        u64::MAX
    } else {
        // valid in 0..8: shift < 64.
        (1u64 << ((valid & 7) * 8)) - 1
    }
}

/// XORs `region[..len]` with the ChaCha20 keystream starting at block 1.
#[inline(always)]
pub(crate) fn xor_keystream<R: Region + ?Sized>(input: &Input, region: &mut R, len: usize) {
    let blocks = len.div_ceil(64);
    let mut b = 0;
    while b < blocks && b < SCRATCH_LEN / 64 {
        let ks = chacha20::block(input, b as u32 + 1);
        let base = b * 8;
        let mut k = 0;
        while k < 8 {
            let w = base + k;
            let stream = (ks[2 * k] as u64) | ((ks[2 * k + 1] as u64) << 32);
            let m = keep_mask(w * 8, len);
            region.store(w, region.load(w) ^ (stream & m));
            k += 1;
        }
        b += 1;
    }
}

/// Runs Poly1305 over `aad || pad16(region[..len]) || le64(16) || le64(len)`.
#[inline(always)]
pub(crate) fn mac<R: Region + ?Sized>(
    otk: &[u32; 8],
    aad: &[u8; 16],
    region: &R,
    len: usize,
) -> [u8; 16] {
    let mut p = Poly1305::new(otk);
    let (lo, hi) = split16(aad);
    p.block(lo, hi, 1 << 24);
    let chunks = len.div_ceil(16);
    let mut c = 0;
    while c < chunks && c < SCRATCH_LEN / 16 {
        let w = 2 * c;
        let lo = region.load(w) & keep_mask(w * 8, len);
        let hi = region.load(w + 1) & keep_mask(w * 8 + 8, len);
        p.block(lo, hi, 1 << 24);
        c += 1;
    }
    p.block(16, len as u64, 1 << 24);
    p.finish()
}

#[inline(always)]
fn split16(b: &[u8; 16]) -> (u64, u64) {
    (
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

/// The Poly1305 one-time key: the first half of ChaCha20 block 0.
#[inline(always)]
pub(crate) fn one_time_key(input: &Input) -> [u32; 8] {
    let b0 = chacha20::block(input, 0);
    [b0[0], b0[1], b0[2], b0[3], b0[4], b0[5], b0[6], b0[7]]
}

/// Constant-time equality of two tags.
#[inline(always)]
pub(crate) fn tags_equal(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let mut d = 0u8;
    let mut i = 0;
    while i < 16 {
        d |= a[i] ^ b[i];
        i += 1;
    }
    // Launder through a volatile read so the compiler cannot turn the
    // accumulation into an early-exit comparison.
    // SAFETY: reading a local through a valid reference.
    unsafe { core::ptr::read_volatile(&d) == 0 }
}

/// Seal over a region; `len` must already be clamped to `SCRATCH_LEN - 16`.
#[inline(always)]
pub(crate) fn seal<R: Region + ?Sized>(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8; 16],
    region: &mut R,
    len: usize,
) -> [u8; 16] {
    let input = Input::new(key, nonce);
    let otk = one_time_key(&input);
    xor_keystream(&input, region, len);
    mac(&otk, aad, region, len)
}

/// Open over a region; `len` must already be clamped to `SCRATCH_LEN - 16`.
#[inline(always)]
pub(crate) fn open<R: Region + ?Sized>(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8; 16],
    region: &mut R,
    len: usize,
    tag: &[u8; 16],
) -> bool {
    let input = Input::new(key, nonce);
    let otk = one_time_key(&input);
    let expected = mac(&otk, aad, region, len);
    if !tags_equal(&expected, tag) {
        return false;
    }
    xor_keystream(&input, region, len);
    true
}
