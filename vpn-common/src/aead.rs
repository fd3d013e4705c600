//! ChaCha20-Poly1305 (RFC 8439), written for the BPF verifier: fixed sizes,
//! bounded loops, no heap, no panics on the hot path.
//!
//! PLACEHOLDER API (being implemented): the eBPF programs encrypt in a
//! per-CPU scratch buffer of `SCRATCH_LEN` bytes.

/// Size of the per-CPU scratch buffer the kernel path encrypts in.
pub const SCRATCH_LEN: usize = 2048;
