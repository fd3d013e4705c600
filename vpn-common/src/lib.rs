//! Types and algorithms shared by the kernel data plane (`vpn-ebpf`) and
//! userspace (`vpn-control`): the wire format, the BPF map layouts, the
//! ChaCha20-Poly1305 AEAD written for the BPF verifier, and the anti-replay
//! window.
//!
//! Everything here is `#![no_std]`, allocation-free and uses only bounded
//! loops, so that the very same code runs inside BPF programs and on the host.
#![no_std]
// BPF only advertises atomic loads/stores; `atomic` reaches the fetch-add
// and compare-exchange instructions through the intrinsics.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

pub mod aead;
pub mod atomic;
pub mod maps;
pub mod replay;
pub mod stats;
pub mod wire;
