//! Sealing and opening data packets in the shared wire format
//! (`vpn_common::wire`), in place, with the `chacha20poly1305` crate.

use std::net::IpAddr;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use vpn_common::wire::{self, DataHeader, HEADER_LEN, TAG_LEN};

/// A session key ready for use.
pub struct Cipher(ChaCha20Poly1305);

impl Cipher {
    pub fn new(key: &[u8; 32]) -> Self {
        Cipher(ChaCha20Poly1305::new(key.into()))
    }
}

/// Encrypts the inner packet at `buf[HEADER_LEN..HEADER_LEN + inner_len]`
/// in place, writes the header in front and the tag behind it, and returns
/// the length of the data packet (`HEADER_LEN + inner_len + TAG_LEN`).
///
/// `buf` must hold at least that many bytes.
pub fn seal(
    cipher: &Cipher,
    receiver_index: u32,
    counter: u64,
    buf: &mut [u8],
    inner_len: usize,
) -> usize {
    let header = DataHeader::new(wire::TYPE_DATA, receiver_index, counter).to_bytes();
    let (head, rest) = buf.split_at_mut(HEADER_LEN);
    head.copy_from_slice(&header);
    let (body, tail) = rest.split_at_mut(inner_len);
    let tag = cipher
        .0
        .encrypt_in_place_detached(&wire::nonce(counter).into(), &header, body)
        .expect("ChaCha20-Poly1305 accepts any packet-sized message");
    tail[..TAG_LEN].copy_from_slice(&tag);
    HEADER_LEN + inner_len + TAG_LEN
}

/// Why an incoming packet was refused before decryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a header plus a tag.
    Truncated,
    /// Not a data packet.
    BadType,
    /// Inner packet larger than the data plane carries.
    Oversize,
}

/// Parses the header of a received datagram.
pub fn parse(buf: &[u8]) -> Result<DataHeader, Malformed> {
    let header = DataHeader::parse(buf).ok_or(Malformed::Truncated)?;
    if header.msg_type != wire::TYPE_DATA {
        return Err(Malformed::BadType);
    }
    if buf.len() < HEADER_LEN + TAG_LEN {
        return Err(Malformed::Truncated);
    }
    if buf.len() - HEADER_LEN - TAG_LEN > wire::MAX_INNER_LEN {
        return Err(Malformed::Oversize);
    }
    Ok(header)
}

/// Verifies and decrypts a data packet in place. On success the plaintext
/// is `buf[HEADER_LEN..HEADER_LEN + n]` and `n` is returned. `buf` must have
/// passed [`parse`].
pub fn open(cipher: &Cipher, buf: &mut [u8]) -> Option<usize> {
    let (head, rest) = buf.split_at_mut(HEADER_LEN);
    let n = rest.len() - TAG_LEN;
    let (body, tag) = rest.split_at_mut(n);
    let counter = u64::from_le_bytes(head[8..16].try_into().ok()?);
    cipher
        .0
        .decrypt_in_place_detached(&wire::nonce(counter).into(), head, body, (&*tag).into())
        .ok()?;
    Some(n)
}

/// Source and destination of an inner IP packet, if it is a well-formed
/// IPv4 or IPv6 header whose length field matches the buffer.
pub fn inner_addrs(p: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            let ihl = usize::from(p[0] & 0x0f) * 4;
            if total != p.len() || ihl < 20 || ihl > total {
                return None;
            }
            let s: [u8; 4] = p[12..16].try_into().ok()?;
            let d: [u8; 4] = p[16..20].try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        6 if p.len() >= 40 => {
            let payload = usize::from(u16::from_be_bytes([p[4], p[5]]));
            if payload + 40 != p.len() {
                return None;
            }
            let s: [u8; 16] = p[8..24].try_into().ok()?;
            let d: [u8; 16] = p[24..40].try_into().ok()?;
            Some((IpAddr::from(s), IpAddr::from(d)))
        }
        _ => None,
    }
}

/// Destination of an outgoing packet (lenient: only the header is read).
pub fn inner_dst(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let d: [u8; 4] = p[16..20].try_into().ok()?;
            Some(IpAddr::from(d))
        }
        6 if p.len() >= 40 => {
            let d: [u8; 16] = p[24..40].try_into().ok()?;
            Some(IpAddr::from(d))
        }
        _ => None,
    }
}
