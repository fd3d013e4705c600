//! The eBPF object, built by `vpn-control/build.rs` and embedded here.

/// The bytes of the compiled `vpn-ebpf` object (ELF, BPF little-endian).
/// Empty when the build ran with `AYA_BUILD_SKIP=1`.
pub fn object_bytes() -> &'static [u8] {
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vpn-ebpf"))
}
