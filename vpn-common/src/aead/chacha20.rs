//! The ChaCha20 block function (RFC 8439 section 2.3).
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
/// The state lives in sixteen locals. On BPF (ten registers) LLVM's round
/// loop is about 300 instructions per double round, of which ~70 are
/// spills and ~40 extra moves. Measured alternatives, all no better in
/// `BPF_PROG_TEST_RUN` (seal of 1,400 bytes): the state in a volatile stack
/// array with one or two quarter rounds per load/store group (5-10% slower:
/// store-to-load forwarding lands on the dependency chain), the same as
/// hand-written BPF assembly (slower for the same reason), rotates as a
/// 64-bit multiply by 2^32 + 1 and one shift (2 instructions instead of 4,
/// but the multiply's latency is on the chain: slower), two double rounds
/// per iteration, and LLVM's other register allocators and schedulers.
///
/// `input` is read through volatile loads, once to set up the state and
/// once more for the final addition. This keeps LLVM from holding the
/// eleven key/nonce words in registers across the rounds and across the
/// caller's loop over blocks: on BPF, with ten registers, every such value
/// becomes a stack slot, and the 512-byte stack runs out. Re-reading costs
/// 22 loads per block, against roughly 600 instructions of rounds.
#[inline(always)]
pub(crate) fn block(input: &Input, counter: u32) -> [u32; 16] {
    let (mut x0, mut x1, mut x2, mut x3) = (SIGMA[0], SIGMA[1], SIGMA[2], SIGMA[3]);
    let (mut x4, mut x5, mut x6, mut x7) =
        (key(input, 0), key(input, 1), key(input, 2), key(input, 3));
    let (mut x8, mut x9, mut x10, mut x11) =
        (key(input, 4), key(input, 5), key(input, 6), key(input, 7));
    let (mut x12, mut x13, mut x14, mut x15) =
        (counter, nonce(input, 0), nonce(input, 1), nonce(input, 2));

    // Ten double rounds, as a loop: LLVM keeps it rolled on BPF, which
    // keeps the program (and the JIT image) small.
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
        x4.wrapping_add(key(input, 0)),
        x5.wrapping_add(key(input, 1)),
        x6.wrapping_add(key(input, 2)),
        x7.wrapping_add(key(input, 3)),
        x8.wrapping_add(key(input, 4)),
        x9.wrapping_add(key(input, 5)),
        x10.wrapping_add(key(input, 6)),
        x11.wrapping_add(key(input, 7)),
        x12.wrapping_add(counter),
        x13.wrapping_add(nonce(input, 0)),
        x14.wrapping_add(nonce(input, 1)),
        x15.wrapping_add(nonce(input, 2)),
    ]
}

/// Key word `i` (0..8) of `input`, read volatile (see [`block`]).
#[inline(always)]
fn key(input: &Input, i: usize) -> u32 {
    // SAFETY: `input` is a valid, aligned reference and `i & 7` is in
    // bounds; a volatile read of a plain integer from it is always sound.
    unsafe { core::ptr::read_volatile(&input.key[i & 7]) }
}

/// Nonce word `i` (0..3) of `input`, read volatile (see [`block`]).
#[inline(always)]
fn nonce(input: &Input, i: usize) -> u32 {
    // SAFETY: as in `key`; `i % 3` is in bounds.
    unsafe { core::ptr::read_volatile(&input.nonce[i % 3]) }
}
