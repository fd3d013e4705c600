//! Poly1305 (RFC 8439 section 2.5) in five 26-bit limbs.
//!
//! BPF has only a 64-bit multiply that keeps the low half, so the classic
//! 32-bit "donna" layout is the natural fit: every product of a limb
//! (< 2^27) and a pre-multiplied key limb (< 2^29) fits in 56 bits and a sum
//! of five of them in 59 bits. No `u128`, no tables, no data-dependent
//! branches.

const MASK26: u64 = 0x03ff_ffff;

/// Poly1305 accumulator and key. `#[repr(C)]` plain data so that the kernel
/// path can keep it in memory between blocks.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Poly1305 {
    /// Accumulator limbs.
    h: [u64; 5],
    /// Clamped `r` limbs.
    r: [u64; 5],
    /// `5 * r[1..5]` (index 0 unused).
    s: [u64; 5],
    /// The `s` half of the one-time key, as little-endian words.
    pad: [u32; 4],
}

impl Poly1305 {
    /// Starts a MAC from a 32-byte one-time key given as eight LE words.
    #[inline(always)]
    pub(crate) fn new(key: &[u32; 8]) -> Self {
        let (t0, t1, t2, t3) = (key[0] as u64, key[1] as u64, key[2] as u64, key[3] as u64);
        // r &= 0x0ffffffc0ffffffc0ffffffc0fffffff, split into 26-bit limbs.
        let r0 = t0 & 0x03ff_ffff;
        let r1 = ((t0 >> 26) | (t1 << 6)) & 0x03ff_ff03;
        let r2 = ((t1 >> 20) | (t2 << 12)) & 0x03ff_c0ff;
        let r3 = ((t2 >> 14) | (t3 << 18)) & 0x03f0_3fff;
        let r4 = (t3 >> 8) & 0x000f_ffff;
        Self {
            h: [0; 5],
            r: [r0, r1, r2, r3, r4],
            s: [0, r1 * 5, r2 * 5, r3 * 5, r4 * 5],
            pad: [key[4], key[5], key[6], key[7]],
        }
    }

    /// Absorbs one 16-byte block given as two little-endian 64-bit words.
    /// `hibit` is `1 << 24` for a full block and 0 for a final padded one.
    #[inline(always)]
    pub(crate) fn block(&mut self, lo: u64, hi: u64, hibit: u64) {
        let [r0, r1, r2, r3, r4] = self.r;
        let [_, s1, s2, s3, s4] = self.s;
        let h0 = self.h[0] + (lo & MASK26);
        let h1 = self.h[1] + ((lo >> 26) & MASK26);
        let h2 = self.h[2] + (((lo >> 52) | (hi << 12)) & MASK26);
        let h3 = self.h[3] + ((hi >> 14) & MASK26);
        let h4 = self.h[4] + ((hi >> 40) | hibit);

        let d0 = h0 * r0 + h1 * s4 + h2 * s3 + h3 * s2 + h4 * s1;
        let mut d1 = h0 * r1 + h1 * r0 + h2 * s4 + h3 * s3 + h4 * s2;
        let mut d2 = h0 * r2 + h1 * r1 + h2 * r0 + h3 * s4 + h4 * s3;
        let mut d3 = h0 * r3 + h1 * r2 + h2 * r1 + h3 * r0 + h4 * s4;
        let mut d4 = h0 * r4 + h1 * r3 + h2 * r2 + h3 * r1 + h4 * r0;

        d1 += d0 >> 26;
        let mut h0 = d0 & MASK26;
        d2 += d1 >> 26;
        let h1 = d1 & MASK26;
        d3 += d2 >> 26;
        let h2 = d2 & MASK26;
        d4 += d3 >> 26;
        let h3 = d3 & MASK26;
        let c = d4 >> 26;
        let h4 = d4 & MASK26;
        h0 += c * 5;
        let h1 = h1 + (h0 >> 26);
        h0 &= MASK26;
        self.h = [h0, h1, h2, h3, h4];
    }

    /// Finishes the MAC: reduces modulo 2^130 - 5 and adds the pad. The
    /// tag comes out as two little-endian 64-bit words (8-byte aligned, so
    /// that BPF code never needs byte-wise copies of it).
    #[inline(always)]
    pub(crate) fn finish(&self) -> [u64; 2] {
        let [mut h0, mut h1, mut h2, mut h3, mut h4] = self.h;
        // Full carry.
        let mut c = h1 >> 26;
        h1 &= MASK26;
        h2 += c;
        c = h2 >> 26;
        h2 &= MASK26;
        h3 += c;
        c = h3 >> 26;
        h3 &= MASK26;
        h4 += c;
        c = h4 >> 26;
        h4 &= MASK26;
        h0 += c * 5;
        c = h0 >> 26;
        h0 &= MASK26;
        h1 += c;

        // g = h + 5 - 2^130; keep g if it did not borrow (h >= p).
        let mut g0 = h0 + 5;
        c = g0 >> 26;
        g0 &= MASK26;
        let mut g1 = h1 + c;
        c = g1 >> 26;
        g1 &= MASK26;
        let mut g2 = h2 + c;
        c = g2 >> 26;
        g2 &= MASK26;
        let mut g3 = h3 + c;
        c = g3 >> 26;
        g3 &= MASK26;
        let g4 = (h4 + c).wrapping_sub(1 << 26);

        // mask = all ones if g4 did not underflow (use g), else zero (use h).
        let mask = (g4 >> 63).wrapping_sub(1);
        let h0 = (h0 & !mask) | (g0 & mask);
        let h1 = (h1 & !mask) | (g1 & mask);
        let h2 = (h2 & !mask) | (g2 & mask);
        let h3 = (h3 & !mask) | (g3 & mask);
        let h4 = (h4 & !mask) | (g4 & mask & MASK26);

        // h mod 2^128 as four 32-bit words.
        let w0 = (h0 | (h1 << 26)) & 0xffff_ffff;
        let w1 = ((h1 >> 6) | (h2 << 20)) & 0xffff_ffff;
        let w2 = ((h2 >> 12) | (h3 << 14)) & 0xffff_ffff;
        let w3 = ((h3 >> 18) | (h4 << 8)) & 0xffff_ffff;

        // + s, mod 2^128.
        let f0 = w0 + self.pad[0] as u64;
        let f1 = w1 + self.pad[1] as u64 + (f0 >> 32);
        let f2 = w2 + self.pad[2] as u64 + (f1 >> 32);
        let f3 = w3 + self.pad[3] as u64 + (f2 >> 32);

        [
            (f0 & 0xffff_ffff) | (f1 << 32),
            (f2 & 0xffff_ffff) | (f3 << 32),
        ]
    }
}

/// A tag's bytes from its two little-endian words.
#[inline(always)]
pub(crate) fn tag_bytes(t: &[u64; 2]) -> [u8; 16] {
    let (a, b) = (t[0].to_le_bytes(), t[1].to_le_bytes());
    [
        a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1], b[2], b[3], b[4], b[5], b[6],
        b[7],
    ]
}

/// A tag's two little-endian words from its bytes.
#[inline(always)]
pub(crate) fn tag_words(b: &[u8; 16]) -> [u64; 2] {
    [
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    ]
}
