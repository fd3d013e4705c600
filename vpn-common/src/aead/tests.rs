//! Tests of the AEAD: RFC 8439 vectors, randomized differential tests
//! against the RustCrypto crates, tamper tests and a speed probe.

extern crate std;

mod differential;
mod vectors;

use super::*;

/// Hex without separators or whitespace to bytes.
pub(super) fn h(s: &str) -> std::vec::Vec<u8> {
    let clean: std::string::String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    hex::decode(clean).expect("valid hex in test vector")
}

pub(super) fn arr<const N: usize>(s: &str) -> [u8; N] {
    h(s).try_into().expect("vector length")
}

/// Nanoseconds this thread has run on a CPU (Linux), or wall time where
/// that is unavailable: on a loaded machine wall time counts the time the
/// thread waited for a CPU.
fn cpu_ns(wall: &std::time::Instant) -> u128 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u128>().ok())
        .unwrap_or_else(|| wall.elapsed().as_nanos())
}

/// Native speed of the scratch entry points (run with
/// `cargo test -p vpn-common --release -- --ignored --nocapture speed`).
/// Times are CPU time of the test thread per operation.
#[test]
#[ignore = "prints timings; not a pass/fail test"]
fn speed() {
    use std::time::Instant;
    let origin = Instant::now();
    let now = || cpu_ns(&origin);
    let key = [7u8; 32];
    let aad = [1u8; 16];
    for &(len, iters) in &[(64usize, 200_000u32), (1400, 50_000)] {
        let mut bytes = [0x5au8; SCRATCH_LEN];
        let mut aligned = Scratch::zeroed();
        let mut slice = std::vec![0x5au8; len];
        let mut sink = 0u8;
        let t = now();
        for i in 0..iters {
            sink ^= seal(&key, u64::from(i), &aad, &mut bytes, len)[0];
        }
        let bytes_ns = (now() - t) as f64 / f64::from(iters);
        let t = now();
        for i in 0..iters {
            sink ^= seal_scratch(&key, u64::from(i), &aad, &mut aligned, len)[0];
        }
        let aligned_ns = (now() - t) as f64 / f64::from(iters);
        let tag = seal_scratch(&key, 0, &aad, &mut aligned, len);
        let t = now();
        for _ in 0..iters {
            sink ^= u8::from(open_scratch(&key, 0, &aad, &mut aligned, len, &tag));
            // Re-encrypt so every iteration opens the same valid message.
            let _ = seal_scratch(&key, 0, &aad, &mut aligned, len);
        }
        let open_seal_ns = (now() - t) as f64 / f64::from(iters);
        let t = now();
        for i in 0..iters {
            sink ^= seal_detached(&key, &wire::nonce(u64::from(i)), &aad, &mut slice)[0];
        }
        let slice_ns = (now() - t) as f64 / f64::from(iters);
        // The RustCrypto crate on the same data, for a ratio that survives
        // a noisy machine.
        use chacha20poly1305::aead::{AeadInPlace, KeyInit};
        let reference = chacha20poly1305::ChaCha20Poly1305::new((&key).into());
        let t = now();
        for i in 0..iters {
            let nonce = wire::nonce(u64::from(i));
            let tag = reference
                .encrypt_in_place_detached((&nonce).into(), &aad, &mut slice)
                .expect("reference seal");
            sink ^= tag[0];
        }
        let crate_ns = (now() - t) as f64 / f64::from(iters);
        std::println!(
            "len {len}: seal bytes {bytes_ns:.0} ns, seal aligned {aligned_ns:.0} ns, \
             open+seal aligned {open_seal_ns:.0} ns, seal_detached {slice_ns:.0} ns, \
             chacha20poly1305 crate {crate_ns:.0} ns (sink {sink})"
        );
    }
}
