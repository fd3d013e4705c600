//! Types and algorithms shared by the kernel data plane (`vpn-ebpf`) and
//! userspace (`vpn-control`): the wire format, the BPF map layouts, the
//! ChaCha20-Poly1305 AEAD written for the BPF verifier, and the anti-replay
//! window.
//!
//! Everything here is `#![no_std]`, allocation-free and uses only bounded
//! loops, so that the very same code runs inside BPF programs and on the host.
#![no_std]

pub mod aead;
pub mod maps;
pub mod replay;
pub mod stats;
pub mod wire;
