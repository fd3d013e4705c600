//! A small deterministic generator for choosing lookup pairs (the bench
//! needs reproducible choices, not cryptographic randomness).

/// xorshift64*.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-enough in `0..n` (`n` > 0; the modulo bias is negligible
    /// for the small `n` used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_covers_it() {
        let mut r = XorShift::new(7);
        let mut hit = [false; 10];
        for _ in 0..1000 {
            let v = r.below(10);
            hit[v] = true;
        }
        assert!(hit.iter().all(|&h| h));
        assert_ne!(XorShift::new(1).next_u64(), XorShift::new(2).next_u64());
    }
}
