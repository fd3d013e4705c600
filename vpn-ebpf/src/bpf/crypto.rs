//! Glue to the shared ChaCha20-Poly1305 (`vpn_common::aead`) and the
//! per-CPU working memory of a program run.
//!
//! The programs seal and open in this CPU's [`Work`] area (a per-CPU map
//! value), never on the packet itself, so non-linear skbs work and the
//! cipher sees fixed-size, aligned memory. The cipher runs in its own BPF
//! function (not inlined): BPF gives a call chain 512 bytes of stack in
//! total, and the cipher's frame is large, so the programs keep their own
//! frames small by keeping their state in `Work` and splitting their
//! one-time work into separate functions too.

use vpn_common::aead::{open_scratch, seal_scratch, Scratch, SCRATCH_LEN};

use super::headers::{EncapV4, EncapV6};

/// Per-CPU working memory of one program run.
#[repr(C)]
pub struct Work {
    /// The packet payload, sealed or opened in place.
    pub region: Scratch,
    /// Session key, copied from the session map value.
    pub key: [u8; 32],
    /// The 16-byte data header: the AEAD's associated data.
    pub hdr: [u8; 16],
    /// The tag: output of `seal`, input of `open`.
    pub tag: [u8; 16],
    /// Outer headers of the packet being encapsulated (IPv4 underlay).
    pub outer: EncapV4,
    /// 4 or 6: the underlay family of the packet being encapsulated.
    pub family: u8,
    pub _pad: [u8; 3],
    /// Outer headers of the packet being encapsulated (IPv6 underlay).
    pub outer6: EncapV6,
    /// The data header's counter.
    pub counter: u64,
    /// Length of the inner packet (plaintext or ciphertext without tag).
    pub len: u32,
    /// The peer the packet belongs to.
    pub peer_id: u32,
    /// Offset of the ciphertext in the received packet.
    pub ct_off: u32,
    /// Our receiver index of the received packet.
    pub index: u32,
}

/// Encrypts `w.region[..w.len]` in place and writes the tag to `w.tag`.
#[inline(never)]
pub fn seal(w: &mut Work) {
    let tag = seal_scratch(&w.key, w.counter, &w.hdr, &mut w.region, w.len as usize);
    w.tag = tag;
}

/// Appends `w.tag` to the ciphertext in the region, so that ciphertext and
/// tag leave in one store (and are summed in one pass for IPv6's UDP
/// checksum). Done outside [`seal`] on purpose: a variable offset makes the
/// verifier track `len` exactly, which inside the cipher's loops would stop
/// it from pruning states.
#[inline(always)]
pub fn append_tag(w: &mut Work) {
    let len = w.len as usize;
    let tag = w.tag;
    let b = w.region.bytes_mut();
    let mut i = 0;
    while i < 16 {
        // Masked: always in bounds, no panic path (`len` is at most
        // MAX_SCRATCH_DATA, so the mask never wraps a real index).
        b[(len + i) & (SCRATCH_LEN - 1)] = tag[i];
        i += 1;
    }
}

/// Verifies `w.tag` and only then decrypts `w.region[..w.len]` in place.
/// Returns 1 if authentic (a plain integer: BPF-to-BPF calls return in r0).
#[inline(never)]
pub fn open(w: &mut Work) -> u32 {
    open_scratch(
        &w.key,
        w.counter,
        &w.hdr,
        &mut w.region,
        w.len as usize,
        &w.tag,
    ) as u32
}
