//! Test vectors from RFC 8439 (sections 2.3.2, 2.4.2, 2.5.2, 2.6.2, 2.8.2
//! and appendices A.1, A.3, A.5).

extern crate std;

use super::super::*;
use super::{arr, h};

const SUNSCREEN: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you only \
one tip for the future, sunscreen would be it.";

fn key_0_to_31() -> [u8; 32] {
    core::array::from_fn(|i| i as u8)
}

#[test]
fn block_function_2_3_2() {
    let nonce = arr::<12>("000000090000004a00000000");
    let out = chacha20_block(&key_0_to_31(), 1, &nonce);
    let expected = h(
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e
                      d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e",
    );
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn block_function_a_1() {
    // Test vector #1: all-zero key and nonce, counter 0.
    let out = chacha20_block(&[0; 32], 0, &[0; 12]);
    let expected = h(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7
                      da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586",
    );
    assert_eq!(&out[..], &expected[..]);
    // Test vector #2: counter 1.
    let out = chacha20_block(&[0; 32], 1, &[0; 12]);
    let expected = h(
        "9f07e7be5551387a98ba977c732d080dcb0f29a048e3656912c6533e32ee7aed
                      29b721769ce64e43d57133b074d839d531ed1f28510afb45ace10a1f4b794d6f",
    );
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn encryption_2_4_2() {
    let nonce = arr::<12>("000000000000004a00000000");
    let mut data = SUNSCREEN.to_vec();
    chacha20_xor(&key_0_to_31(), 1, &nonce, &mut data);
    let expected = h(
        "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b
                      f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8
                      07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736
                      5af90bbf74a35be6b40b8eedf2785e42874d",
    );
    assert_eq!(data, expected);
    chacha20_xor(&key_0_to_31(), 1, &nonce, &mut data);
    assert_eq!(data, SUNSCREEN);
}

#[test]
fn poly1305_2_5_2() {
    let key = arr::<32>("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b");
    let tag = poly1305_mac(&key, b"Cryptographic Forum Research Group");
    assert_eq!(tag, arr::<16>("a8061dc1305136c6c22b8baf0c0127a9"));
}

#[test]
fn poly1305_key_generation_2_6_2() {
    let key = arr::<32>("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce = arr::<12>("000000000001020304050607");
    let block = chacha20_block(&key, 0, &nonce);
    let expected = h("8ad5a08b905f81cc815040274ab29471a833b637e3fd0da508dbb8e2fdd1a646");
    assert_eq!(&block[..32], &expected[..]);
}

/// Appendix A.3: Poly1305 vectors, many of them aimed at the carry and
/// final-reduction edge cases.
#[test]
fn poly1305_a_3() {
    let ff16 = "ffffffffffffffffffffffffffffffff";
    let cases: &[(&str, &str, &str)] = &[
        // #1: all-zero key.
        (
            &"00".repeat(32),
            &"00".repeat(64),
            "00000000000000000000000000000000",
        ),
        // #5: h reaches p exactly.
        (
            "0200000000000000000000000000000000000000000000000000000000000000",
            ff16,
            "03000000000000000000000000000000",
        ),
        // #6: s overflows 2^128.
        (
            "02000000000000000000000000000000ffffffffffffffffffffffffffffffff",
            "02000000000000000000000000000000",
            "03000000000000000000000000000000",
        ),
        // #7
        (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "fffffffffffffffffffffffffffffffff0ffffffffffffffffffffffffffffff\
             11000000000000000000000000000000",
            "05000000000000000000000000000000",
        ),
        // #8
        (
            "0100000000000000000000000000000000000000000000000000000000000000",
            "fffffffffffffffffffffffffffffffffbfefefefefefefefefefefefefefefe\
             01010101010101010101010101010101",
            "00000000000000000000000000000000",
        ),
        // #9
        (
            "0200000000000000000000000000000000000000000000000000000000000000",
            "fdffffffffffffffffffffffffffffff",
            "faffffffffffffffffffffffffffffff",
        ),
        // #10
        (
            "0100000000000000040000000000000000000000000000000000000000000000",
            "e33594d7505e43b900000000000000003394d7505e4379cd0100000000000000\
             0000000000000000000000000000000001000000000000000000000000000000",
            "14000000000000005500000000000000",
        ),
        // #11
        (
            "0100000000000000040000000000000000000000000000000000000000000000",
            "e33594d7505e43b900000000000000003394d7505e4379cd0100000000000000\
             00000000000000000000000000000000",
            "13000000000000000000000000000000",
        ),
    ];
    for (i, (key, msg, tag)) in cases.iter().enumerate() {
        let got = poly1305_mac(&arr::<32>(key), &h(msg));
        assert_eq!(got, arr::<16>(tag), "case {i}");
    }
}

#[test]
fn aead_2_8_2() {
    let key = arr::<32>("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let nonce = arr::<12>("070000004041424344454647");
    let aad = h("50515253c0c1c2c3c4c5c6c7");
    let expected_ct = h(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
                         3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
                         92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
                         3ff4def08e4b7a9de576d26586cec64b6116",
    );
    let expected_tag = arr::<16>("1ae10b594f09e26a7e902ecbd0600691");

    let mut data = SUNSCREEN.to_vec();
    let tag = seal_detached(&key, &nonce, &aad, &mut data);
    assert_eq!(data, expected_ct);
    assert_eq!(tag, expected_tag);

    assert!(open_detached(&key, &nonce, &aad, &mut data, &tag));
    assert_eq!(data, SUNSCREEN);
}

#[test]
fn aead_decryption_a_5() {
    let key = arr::<32>("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0");
    let nonce = arr::<12>("000000000102030405060708");
    let aad = h("f33388860000000000004e91");
    let tag = arr::<16>("eead9d67890cbb22392336fea1851f38");
    let mut data = h(
        "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2
                      4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf
                      332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855
                      9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4
                      b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e
                      af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a
                      0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10
                      49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29
                      a6ad5cb4022b02709b",
    );
    let plaintext = "Internet-Drafts are draft documents valid for a maximum of six \
months and may be updated, replaced, or obsoleted by other documents at any time. It is \
inappropriate to use Internet-Drafts as reference material or to cite them other than as \
/\u{201c}work in progress./\u{201d}";
    assert_eq!(data.len(), 265);
    assert!(open_detached(&key, &nonce, &aad, &mut data, &tag));
    assert_eq!(std::string::String::from_utf8(data).unwrap(), plaintext);
}

/// The 2.8.2 vector through the scratch entry points: its AAD is 12 bytes,
/// so it cannot go through `seal` directly; instead check that the scratch
/// path agrees with the slice path, whose vectors pass above, at every
/// length of the sunscreen text.
#[test]
fn scratch_matches_slice_on_vector_inputs() {
    let key = arr::<32>("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    let aad: [u8; 16] = core::array::from_fn(|i| 0x50 + i as u8);
    for len in 0..=SUNSCREEN.len() {
        let mut slice = SUNSCREEN[..len].to_vec();
        let tag = seal_detached(&key, &crate::wire::nonce(7), &aad, &mut slice);
        let mut buf = [0xeeu8; SCRATCH_LEN];
        buf[..len].copy_from_slice(&SUNSCREEN[..len]);
        assert_eq!(seal(&key, 7, &aad, &mut buf, len), tag);
        assert_eq!(&buf[..len], &slice[..]);
        assert!(
            buf[len..].iter().all(|&b| b == 0xee),
            "bytes past len changed"
        );
    }
}
