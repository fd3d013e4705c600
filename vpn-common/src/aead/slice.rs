//! The slice-based API for the host: any lengths, any nonce and AAD. It
//! shares the block function and the Poly1305 limb code with the scratch
//! path the eBPF programs run, but is not built for BPF (see the module
//! documentation of [`super`]).

use super::chacha20::{block, Input};
use super::poly1305::{tag_bytes, tag_words, Poly1305};
use super::region;

/// Serializes keystream words little-endian.
#[inline(always)]
fn words_to_bytes(w: &[u32; 16]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (chunk, word) in out.chunks_exact_mut(4).zip(w.iter()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// The ChaCha20 block function of RFC 8439 section 2.3: 64 bytes of
/// keystream for `key`, `block_counter` and `nonce`.
pub fn chacha20_block(key: &[u8; 32], block_counter: u32, nonce: &[u8; 12]) -> [u8; 64] {
    words_to_bytes(&block(&Input::new(key, nonce), block_counter))
}

/// ChaCha20 encryption (RFC 8439 section 2.4): XORs `data` in place with
/// the keystream starting at block `initial_counter`.
///
/// The 32-bit block counter wraps after 256 GiB; callers never come close
/// (the AEAD limits messages far below that).
pub fn chacha20_xor(key: &[u8; 32], initial_counter: u32, nonce: &[u8; 12], data: &mut [u8]) {
    let input = Input::new(key, nonce);
    let mut counter = initial_counter;
    for chunk in data.chunks_mut(64) {
        let ks = words_to_bytes(&block(&input, counter));
        for (d, k) in chunk.iter_mut().zip(ks.iter()) {
            *d ^= k;
        }
        counter = counter.wrapping_add(1);
    }
}

impl Poly1305 {
    /// Absorbs a message of any length (RFC 8439 section 2.5: a final
    /// partial block gets a 0x01 byte appended and no 2^128 bit).
    pub(crate) fn update(&mut self, msg: &[u8]) {
        let rest = self.update_full_blocks(msg);
        if !rest.is_empty() {
            let (lo, hi) = le_partial(rest);
            // The appended 0x01 byte, at position rest.len() (< 16).
            let n = rest.len();
            let (lo, hi) = if n < 8 {
                (lo | 1 << (8 * n), hi)
            } else {
                (lo, hi | 1 << (8 * (n - 8)))
            };
            self.block(lo, hi, 0);
        }
    }

    /// Absorbs `msg` zero-padded to a multiple of 16 bytes, every block with
    /// the 2^128 bit: the `pad16` form the AEAD construction uses.
    pub(crate) fn update_padded(&mut self, msg: &[u8]) {
        let rest = self.update_full_blocks(msg);
        if !rest.is_empty() {
            let (lo, hi) = le_partial(rest);
            self.block(lo, hi, 1 << 24);
        }
    }

    /// Absorbs the whole 16-byte blocks of `msg`; returns the rest.
    fn update_full_blocks<'m>(&mut self, msg: &'m [u8]) -> &'m [u8] {
        let mut chunks = msg.chunks_exact(16);
        for c in &mut chunks {
            let (lo, hi) = le_partial(c);
            self.block(lo, hi, 1 << 24);
        }
        chunks.remainder()
    }
}

/// Up to 16 bytes, zero-extended, as two little-endian 64-bit words.
/// Assembled with shifts rather than copied into a buffer, so that no
/// variable-length `memcpy` (which BPF cannot call) is emitted.
#[inline(always)]
fn le_partial(b: &[u8]) -> (u64, u64) {
    let mut lo = 0u64;
    let mut hi = 0u64;
    for (i, &byte) in b.iter().take(16).enumerate() {
        if i < 8 {
            lo |= u64::from(byte) << (8 * i);
        } else {
            hi |= u64::from(byte) << (8 * (i - 8));
        }
    }
    (lo, hi)
}

/// The one-time authenticator of RFC 8439 section 2.5.
pub fn poly1305_mac(key: &[u8; 32], msg: &[u8]) -> [u8; 16] {
    let mut words = [0u32; 8];
    for (w, c) in words.iter_mut().zip(key.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    let mut p = Poly1305::new(&words);
    p.update(msg);
    tag_bytes(&p.finish())
}

/// Runs Poly1305 over `pad16(aad) || pad16(ct) || le64(|aad|) || le64(|ct|)`
/// (RFC 8439 section 2.8).
fn aead_mac(otk: &[u32; 8], aad: &[u8], ct: &[u8]) -> [u64; 2] {
    let mut p = Poly1305::new(otk);
    p.update_padded(aad);
    p.update_padded(ct);
    p.block(aad.len() as u64, ct.len() as u64, 1 << 24);
    p.finish()
}

/// AEAD_CHACHA20_POLY1305 encryption (RFC 8439 section 2.8) of `data` in
/// place with any nonce and AAD; returns the tag.
///
/// `data` longer than 256 GiB would wrap the block counter; no caller comes
/// near that.
pub fn seal_detached(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
    let input = Input::new(key, nonce);
    let otk = region::one_time_key(&input);
    chacha20_xor(key, 1, nonce, data);
    tag_bytes(&aead_mac(&otk, aad, data))
}

/// AEAD_CHACHA20_POLY1305 decryption: verifies `tag` (constant time), then
/// decrypts `data` in place. On `false`, `data` is unchanged.
pub fn open_detached(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    data: &mut [u8],
    tag: &[u8; 16],
) -> bool {
    let input = Input::new(key, nonce);
    let otk = region::one_time_key(&input);
    if !region::tags_equal(&aead_mac(&otk, aad, data), &tag_words(tag)) {
        return false;
    }
    chacha20_xor(key, 1, nonce, data);
    true
}
