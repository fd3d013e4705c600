//! The GroupVPN kernel data plane.
//!
//! Two TC classifiers, built for `bpfel-unknown-none` with the nightly
//! toolchain and embedded in `vpn-control`:
//! - [`vpn_encrypt`] on TC ingress of `vpn0p` (the wire end of the `vpn0`
//!   veth pair): every packet is one already-segmented inner IP packet,
//!   which is sealed, encapsulated in UDP and redirected to the underlay;
//! - [`vpn_decrypt`] on TC ingress of the underlay: data packets on the data
//!   port are validated, replay-checked, opened, decapsulated and delivered
//!   into `vpn0`'s receive path.
//!
//! The entry points stay thin; parsing, encapsulation and the crypto glue
//! live in their own modules. On the host this crate is an empty binary so
//! that the workspace builds with the stable toolchain.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
mod bpf;

#[cfg(not(target_arch = "bpf"))]
fn main() {}
