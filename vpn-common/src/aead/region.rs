//! The AEAD over a fixed-size scratch region: the code the eBPF programs run.
//!
//! Shape, chosen for the BPF verifier and for register pressure:
//! - two bounded passes over the region, one of ChaCha20 blocks (at most 32)
//!   and one of Poly1305 blocks (at most 128): seal encrypts then MACs, open
//!   MACs, compares and only then decrypts;
//! - every access is a 64-bit word at an index masked into the region, so
//!   there is no bounds check and no panic path; whole blocks run without
//!   masks, and the one partial block at the end uses byte masks (a byte
//!   past `len` is XORed with zero, and zeroed before it reaches Poly1305,
//!   which is exactly `pad16`). Nothing past `len` changes;
//! - each pass is its own BPF function (`inline(never)` on BPF only): the
//!   verifier walks a pass once per exit of its loop, and whatever stale
//!   values those exits leave in the pass's stack frame (loop counters,
//!   running pointers) disappear with the frame on return, so the states
//!   after the call agree and are pruned. Inlined, the next pass was
//!   walked again for every exit of the previous one (over the 1M limit);
//! - one block function inlined in the loop body, reading key and nonce
//!   through volatile loads per block (see [`super::chacha20::block`]).

use super::chacha20::{self, Input};
use super::poly1305::{tag_bytes, tag_words, Poly1305};
use super::SCRATCH_LEN;

/// Number of 64-bit words in a scratch region.
const WORDS: usize = SCRATCH_LEN / 8;
const WORD_MASK: usize = WORDS - 1;
const _: () = assert!(WORDS.is_power_of_two());
/// Number of 64-byte ChaCha20 blocks in a region.
const BLOCKS: usize = SCRATCH_LEN / 64;
/// Number of 16-byte Poly1305 blocks in a region.
const CHUNKS: usize = SCRATCH_LEN / 16;

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

/// Mask of the low `n` bytes of a little-endian word, for `n` in 0..8.
#[inline(always)]
fn low_bytes(n: usize) -> u64 {
    (1u64 << ((n & 7) * 8)) - 1
}

/// Keystream words `2k` and `2k + 1` of a block as one little-endian u64.
#[inline(always)]
fn pair(ks: &[u32; 16], k: usize) -> u64 {
    (ks[(2 * k) & 15] as u64) | ((ks[(2 * k + 1) & 15] as u64) << 32)
}

/// XORs `region[..len]` with the ChaCha20 keystream starting at block 1.
///
/// Whole blocks in a loop without masks, then at most one partial block
/// whose words are masked (bytes past `len` are XORed with zero).
///
/// The shape is chosen so that the BPF verifier walks the block function
/// once per block and not once per (block, exit) pair:
/// - values derived from `len` use shifts and masks (`len >> 6`,
///   `len & 63`), never `len - constant`: the verifier links a register to
///   the one it was copied from when a constant is added, and narrowing the
///   copy in a comparison would then narrow `len` for the rest of the path;
/// - after the loop, `len` is re-read through [`opaque`], so LLVM cannot
///   reuse the loop bound the exit comparison narrowed; the tail's address
///   and counter then come out the same on every exit path, and the
///   verifier prunes all but the first.
#[cfg_attr(target_arch = "bpf", inline(never))]
#[cfg_attr(not(target_arch = "bpf"), inline(always))]
pub(crate) fn xor_keystream<R: Region + ?Sized>(input: &Input, region: &mut R, len: usize) {
    let full = opaque(len) >> 6;
    let mut b = 0;
    while b < full && b < BLOCKS {
        let ks = chacha20::block(input, b as u32 + 1);
        let base = b * 8;
        let mut k = 0;
        while k < 8 {
            region.store(base + k, region.load(base + k) ^ pair(&ks, k));
            k += 1;
        }
        b += 1;
    }
    let len = opaque(len);
    let rem = len & 63;
    if rem != 0 {
        let last = (len >> 6) & (BLOCKS - 1);
        let ks = chacha20::block(input, last as u32 + 1);
        let base = last * 8;
        let mut k = 0;
        while k < 8 {
            let pos = 8 * k;
            if rem <= pos {
                break;
            }
            let m = if rem - pos >= 8 {
                u64::MAX
            } else {
                low_bytes(rem - pos)
            };
            region.store(base + k, region.load(base + k) ^ (pair(&ks, k) & m));
            k += 1;
        }
    }
}

/// Runs Poly1305 over `aad || pad16(region[..len]) || le64(16) || le64(len)`
/// with the one-time key from ChaCha20 block 0, and writes the tag.
///
/// Same shape as [`xor_keystream`]: whole 16-byte blocks in a loop, then
/// at most one partial block whose bytes past `len` are masked to zero
/// (`pad16`).
#[cfg_attr(target_arch = "bpf", inline(never))]
#[cfg_attr(not(target_arch = "bpf"), inline(always))]
pub(crate) fn mac<R: Region + ?Sized>(
    input: &Input,
    aad: &[u8; 16],
    region: &R,
    len: usize,
    tag: &mut [u64; 2],
) {
    let mut p = Poly1305::new(&one_time_key(input));
    let (lo, hi) = split16(aad);
    p.block(lo, hi, 1 << 24);
    let full = opaque(len) >> 4;
    let mut c = 0;
    while c < full && c < CHUNKS {
        p.block(region.load(2 * c), region.load(2 * c + 1), 1 << 24);
        c += 1;
    }
    let len = opaque(len);
    let rem = len & 15;
    if rem != 0 {
        let w = ((len >> 4) & (CHUNKS - 1)) * 2;
        let lo = region.load(w);
        let hi = region.load(w + 1);
        let (lo, hi) = if rem >= 8 {
            (lo, hi & low_bytes(rem - 8))
        } else {
            (lo & low_bytes(rem), 0)
        };
        p.block(lo, hi, 1 << 24);
    }
    p.block(16, len as u64, 1 << 24);
    *tag = p.finish();
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

/// Returns `x` through a volatile load, so that LLVM cannot reuse values
/// derived from `x` earlier (see [`xor_keystream`]). Comparisons narrow
/// the verifier's idea of a value at each loop exit; a narrowed value
/// reaching the code after the loop would make the verifier walk that code
/// once per exit instead of once.
#[inline(always)]
fn opaque(x: usize) -> usize {
    // SAFETY: a volatile read of a local through a valid reference.
    unsafe { core::ptr::read_volatile(&x) }
}

/// Initial value of a tag out-parameter. Not all-zero on purpose: LLVM
/// turns a zeroed 16-byte local into a `memset` call, and the generic
/// `memset` BPF links in aligns its pointer with arithmetic the verifier
/// rejects ("misaligned stack access").
const TAG_INIT: [u64; 2] = [1, 1];

/// Constant-time equality of two tags.
#[inline(always)]
pub(crate) fn tags_equal(a: &[u64; 2], b: &[u64; 2]) -> bool {
    let d = (a[0] ^ b[0]) | (a[1] ^ b[1]);
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
    xor_keystream(&input, region, len);
    let mut tag = TAG_INIT;
    mac(&input, aad, region, len, &mut tag);
    tag_bytes(&tag)
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
    let mut expected = TAG_INIT;
    mac(&input, aad, region, len, &mut expected);
    if !tags_equal(&expected, &tag_words(tag)) {
        return false;
    }
    xor_keystream(&input, region, len);
    true
}
