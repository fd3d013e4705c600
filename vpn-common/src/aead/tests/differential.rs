//! Randomized differential tests against the RustCrypto crates, and tamper
//! tests of the scratch entry points.

extern crate std;

use std::vec::Vec;

use ::chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use proptest::prelude::*;

use super::super::*;

fn reference_seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .encrypt_in_place_detached(nonce.into(), aad, data)
        .expect("reference seal")
        .into()
}

fn scratch_from(fill: &[u8]) -> [u8; SCRATCH_LEN] {
    fill.try_into().expect("SCRATCH_LEN bytes")
}

fn aligned_from(fill: &[u8]) -> Scratch {
    let mut s = Scratch::zeroed();
    s.bytes_mut().copy_from_slice(fill);
    s
}

fn any_scratch() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), SCRATCH_LEN)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn slice_api_matches_reference(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 12]>(),
        aad in prop::collection::vec(any::<u8>(), 0..80),
        data in prop::collection::vec(any::<u8>(), 0..=1500),
    ) {
        let mut ours = data.clone();
        let mut theirs = data.clone();
        let tag = seal_detached(&key, &nonce, &aad, &mut ours);
        let expected = reference_seal(&key, &nonce, &aad, &mut theirs);
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(tag, expected);
        prop_assert!(open_detached(&key, &nonce, &aad, &mut ours, &tag));
        prop_assert_eq!(&ours, &data);
    }

    #[test]
    fn scratch_api_matches_reference(
        key in any::<[u8; 32]>(),
        counter in any::<u64>(),
        aad in any::<[u8; 16]>(),
        fill in any_scratch(),
        len in 0..=MAX_SCRATCH_DATA,
    ) {
        let mut expected = fill[..len].to_vec();
        let expected_tag = reference_seal(&key, &crate::wire::nonce(counter), &aad, &mut expected);

        let mut buf = scratch_from(&fill);
        let tag = seal(&key, counter, &aad, &mut buf, len);
        prop_assert_eq!(tag, expected_tag);
        prop_assert_eq!(&buf[..len], &expected[..]);
        prop_assert_eq!(&buf[len..], &fill[len..], "bytes past len changed");

        let mut aligned = aligned_from(&fill);
        prop_assert_eq!(seal_scratch(&key, counter, &aad, &mut aligned, len), expected_tag);
        prop_assert_eq!(&aligned.bytes()[..], &buf[..]);

        prop_assert!(open(&key, counter, &aad, &mut buf, len, &tag));
        prop_assert_eq!(&buf[..], &fill[..]);
        prop_assert!(open_scratch(&key, counter, &aad, &mut aligned, len, &tag));
        prop_assert_eq!(&aligned.bytes()[..], &fill[..]);
    }

    #[test]
    fn tampering_is_rejected_and_leaves_buffer_unchanged(
        key in any::<[u8; 32]>(),
        counter in any::<u64>(),
        aad in any::<[u8; 16]>(),
        fill in any_scratch(),
        len in 0..=MAX_SCRATCH_DATA,
        target in 0usize..3,
        pos in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut sealed = scratch_from(&fill);
        let mut tag = seal(&key, counter, &aad, &mut sealed, len);
        let mut aad = aad;
        match target {
            0 if len > 0 => sealed[pos.index(len)] ^= 1 << bit,
            1 => aad[pos.index(16)] ^= 1 << bit,
            _ => tag[pos.index(16)] ^= 1 << bit,
        }
        let mut buf = sealed;
        prop_assert!(!open(&key, counter, &aad, &mut buf, len, &tag));
        prop_assert_eq!(&buf[..], &sealed[..]);
        let mut aligned = aligned_from(&sealed);
        prop_assert!(!open_scratch(&key, counter, &aad, &mut aligned, len, &tag));
        prop_assert_eq!(&aligned.bytes()[..], &sealed[..]);
        // The wrong counter (nonce) or key fails too.
        let mut buf = sealed;
        prop_assert!(!open(&key, counter ^ 1, &aad, &mut buf, len, &tag));
        let mut other_key = key;
        other_key[pos.index(32)] ^= 1 << bit;
        prop_assert!(!open(&other_key, counter, &aad, &mut buf, len, &tag));
        prop_assert_eq!(&buf[..], &sealed[..]);
    }

    #[test]
    fn poly1305_matches_reference(
        key in any::<[u8; 32]>(),
        msg in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let expected: [u8; 16] = ::poly1305::Poly1305::new((&key).into())
            .compute_unpadded(&msg)
            .into();
        prop_assert_eq!(poly1305_mac(&key, &msg), expected);
    }

    #[test]
    fn chacha20_matches_reference(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 12]>(),
        counter in 0u32..(u32::MAX - 64),
        data in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut ours = data.clone();
        chacha20_xor(&key, counter, &nonce, &mut ours);
        let mut theirs = data;
        let mut c = ::chacha20::ChaCha20::new((&key).into(), (&nonce).into());
        c.seek(u64::from(counter) * 64);
        c.apply_keystream(&mut theirs);
        prop_assert_eq!(ours, theirs);
    }
}

/// Poly1305 with the values that stress carries and the final reduction:
/// the largest clamped `r`, `s` all ones, messages of all-ones bytes (and
/// all-ones mixed with zeros), at every length up to 200.
#[test]
fn poly1305_extreme_values_match_reference() {
    let keys = [[0xffu8; 32], {
        let mut k = [0xffu8; 32];
        k[16..].fill(0);
        k
    }];
    for key in keys {
        for len in 0..=200usize {
            for pattern in 0..3u8 {
                let msg: Vec<u8> = (0..len)
                    .map(|i| match pattern {
                        0 => 0xff,
                        1 => {
                            if i % 16 == 15 {
                                0
                            } else {
                                0xff
                            }
                        }
                        _ => {
                            if i % 3 == 0 {
                                0xfe
                            } else {
                                0xff
                            }
                        }
                    })
                    .collect();
                let expected: [u8; 16] = ::poly1305::Poly1305::new((&key).into())
                    .compute_unpadded(&msg)
                    .into();
                assert_eq!(
                    poly1305_mac(&key, &msg),
                    expected,
                    "len {len} pattern {pattern}"
                );
            }
        }
    }
}

/// Every length the scratch paths accept (aligned and byte regions),
/// against the reference.
#[test]
fn scratch_every_length() {
    let key: [u8; 32] = core::array::from_fn(|i| (i * 7 + 3) as u8);
    let aad: [u8; 16] = core::array::from_fn(|i| (i * 13) as u8);
    let fill: Vec<u8> = (0..SCRATCH_LEN).map(|i| (i * 31 + 5) as u8).collect();
    for len in 0..=MAX_SCRATCH_DATA {
        let counter = len as u64 * 0x0101_0101_0101;
        let mut expected = fill[..len].to_vec();
        let expected_tag = reference_seal(&key, &crate::wire::nonce(counter), &aad, &mut expected);
        let mut aligned = aligned_from(&fill);
        let tag = seal_scratch(&key, counter, &aad, &mut aligned, len);
        assert_eq!(tag, expected_tag, "len {len}");
        assert_eq!(&aligned.bytes()[..len], &expected[..], "len {len}");
        assert_eq!(&aligned.bytes()[len..], &fill[len..], "len {len}");
        assert!(open_scratch(&key, counter, &aad, &mut aligned, len, &tag));
        assert_eq!(&aligned.bytes()[..], &fill[..]);

        let mut bytes = scratch_from(&fill);
        assert_eq!(
            seal(&key, counter, &aad, &mut bytes, len),
            expected_tag,
            "len {len}"
        );
        assert_eq!(&bytes[..len], &expected[..], "len {len}");
        assert_eq!(&bytes[len..], &fill[len..], "len {len}");
        assert!(open(&key, counter, &aad, &mut bytes, len, &tag));
        assert_eq!(&bytes[..], &fill[..]);
    }
}

/// A `len` beyond the limit is refused without touching the buffer.
#[test]
fn oversize_len_is_refused() {
    let key = [9u8; 32];
    let aad = [3u8; 16];
    let fill: Vec<u8> = (0..SCRATCH_LEN).map(|i| i as u8).collect();
    for len in [
        MAX_SCRATCH_DATA + 1,
        SCRATCH_LEN,
        SCRATCH_LEN + 1,
        usize::MAX,
    ] {
        let mut buf = scratch_from(&fill);
        assert_eq!(seal(&key, 1, &aad, &mut buf, len), [0; 16]);
        assert_eq!(&buf[..], &fill[..]);
        assert!(!open(&key, 1, &aad, &mut buf, len, &[0; 16]));
        assert_eq!(&buf[..], &fill[..]);
        let mut aligned = aligned_from(&fill);
        assert_eq!(seal_scratch(&key, 1, &aad, &mut aligned, len), [0; 16]);
        assert!(!open_scratch(&key, 1, &aad, &mut aligned, len, &[0; 16]));
        assert_eq!(&aligned.bytes()[..], &fill[..]);
    }
}

/// The maximum length still round-trips (the last block ends exactly at
/// the tag room).
#[test]
fn max_length_round_trips() {
    let key = [0x42u8; 32];
    let aad = [0u8; 16];
    let mut buf = [0x17u8; SCRATCH_LEN];
    let tag = seal(&key, u64::MAX, &aad, &mut buf, MAX_SCRATCH_DATA);
    assert_ne!(&buf[..MAX_SCRATCH_DATA], &[0x17u8; MAX_SCRATCH_DATA][..]);
    assert!(open(&key, u64::MAX, &aad, &mut buf, MAX_SCRATCH_DATA, &tag));
    assert_eq!(buf, [0x17u8; SCRATCH_LEN]);
}
