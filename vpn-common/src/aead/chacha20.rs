//! The ChaCha20 block function (RFC 8439 section 2.3) and a slice-based
//! stream cipher on top of it.
//!
//! The block function works on sixteen `u32` words held in locals so that
//! LLVM can keep as many as possible in registers; it has no loops over
//! runtime bounds, no indexing that can fail and no rotate instruction
//! requirement (BPF has none: `rotate_left` lowers to two shifts and an or).

/// "expand 32-byte k", the ChaCha constants.
pub(crate) const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// The per-call inputs of the block function that stay fixed across blocks:
/// the key and the nonce as little-endian words.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Input {
    pub(crate) key: [u32; 8],
    pub(crate) nonce: [u32; 3],
}

impl Input {
    #[inline(always)]
    pub(crate) fn new(key: &[u8; 32], nonce: &[u8; 12]) -> Self {
        Self {
            key: [
                le32(key, 0),
                le32(key, 4),
                le32(key, 8),
                le32(key, 12),
                le32(key, 16),
                le32(key, 20),
                le32(key, 24),
                le32(key, 28),
            ],
            nonce: [
                u32::from_le_bytes([nonce[0], nonce[1], nonce[2], nonce[3]]),
                u32::from_le_bytes([nonce[4], nonce[5], nonce[6], nonce[7]]),
                u32::from_le_bytes([nonce[8], nonce[9], nonce[10], nonce[11]]),
            ],
        }
    }
}

#[inline(always)]
fn le32(b: &[u8; 32], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

macro_rules! quarter {
    ($a:ident, $b:ident, $c:ident, $d:ident) => {
        $a = $a.wrapping_add($b);
        $d = ($d ^ $a).rotate_left(16);
        $c = $c.wrapping_add($d);
        $b = ($b ^ $c).rotate_left(12);
        $a = $a.wrapping_add($b);
        $d = ($d ^ $a).rotate_left(8);
        $c = $c.wrapping_add($d);
        $b = ($b ^ $c).rotate_left(7);
    };
}

/// One ChaCha20 block: the 16 keystream words for `counter`.
///
/// `input` is read through volatile loads: inside a loop over blocks this
/// stops LLVM from hoisting the eleven key/nonce words into long-lived
/// registers (on BPF they would all be spilled and, once several blocks are
/// inlined, overflow the 512-byte stack). Re-reading them costs eleven loads
/// per block.
#[inline(always)]
pub(crate) fn block(input: &Input, counter: u32) -> [u32; 16] {
    // SAFETY: `input` is a valid, aligned reference; volatile reads of plain
    // integers from it are always sound.
    let k = |i: usize| unsafe { core::ptr::read_volatile(&input.key[i & 7]) };
    // SAFETY: as above.
    let n = |i: usize| unsafe { core::ptr::read_volatile(&input.nonce[i % 3]) };
    let (k0, k1, k2, k3, k4, k5, k6, k7) = (k(0), k(1), k(2), k(3), k(4), k(5), k(6), k(7));
    let (n0, n1, n2) = (n(0), n(1), n(2));

    let (mut x0, mut x1, mut x2, mut x3) = (SIGMA[0], SIGMA[1], SIGMA[2], SIGMA[3]);
    let (mut x4, mut x5, mut x6, mut x7) = (k0, k1, k2, k3);
    let (mut x8, mut x9, mut x10, mut x11) = (k4, k5, k6, k7);
    let (mut x12, mut x13, mut x14, mut x15) = (counter, n0, n1, n2);

    // Ten double rounds. Kept as a loop (not unrolled by hand): LLVM decides,
    // and a rolled loop keeps the JIT image small.
    let mut i = 0;
    while i < 10 {
        quarter!(x0, x4, x8, x12);
        quarter!(x1, x5, x9, x13);
        quarter!(x2, x6, x10, x14);
        quarter!(x3, x7, x11, x15);
        quarter!(x0, x5, x10, x15);
        quarter!(x1, x6, x11, x12);
        quarter!(x2, x7, x8, x13);
        quarter!(x3, x4, x9, x14);
        i += 1;
    }

    [
        x0.wrapping_add(SIGMA[0]),
        x1.wrapping_add(SIGMA[1]),
        x2.wrapping_add(SIGMA[2]),
        x3.wrapping_add(SIGMA[3]),
        x4.wrapping_add(k0),
        x5.wrapping_add(k1),
        x6.wrapping_add(k2),
        x7.wrapping_add(k3),
        x8.wrapping_add(k4),
        x9.wrapping_add(k5),
        x10.wrapping_add(k6),
        x11.wrapping_add(k7),
        x12.wrapping_add(counter),
        x13.wrapping_add(n0),
        x14.wrapping_add(n1),
        x15.wrapping_add(n2),
    ]
}

/// Serializes keystream words little-endian.
#[inline(always)]
pub(crate) fn words_to_bytes(w: &[u32; 16]) -> [u8; 64] {
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
