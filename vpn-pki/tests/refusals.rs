//! Every refusal of `verify_member` has its own error variant.

mod common;

use std::time::Duration;

use common::*;
use vpn_pki::{verify_member, Crl, GroupCa, MemberCert, PkiError, RevocationReason, RevokedEntry};

struct Fixture {
    ca: GroupCa,
    node: vpn_pki::NodeIdentity,
    cert: MemberCert,
}

fn fixture() -> Fixture {
    let ca = ca("lab", t0());
    let node = node();
    let cert = ca
        .issue(&node.public_key(), &profile("alice"), t0())
        .unwrap();
    Fixture { ca, node, cert }
}

fn empty_crl(ca: &GroupCa) -> Crl {
    ca.sign_crl(&[], 1, t0(), 7 * DAY).unwrap()
}

#[test]
fn accepts_the_good_case() {
    let f = fixture();
    let crl = empty_crl(&f.ca);
    verify_member(
        f.cert.der(),
        f.ca.certificate(),
        Some(&crl),
        &f.node.peer_id(),
        "lab",
        t0() + DAY,
    )
    .unwrap();
}

#[test]
fn refuses_another_ca() {
    let f = fixture();
    // Another CA for another group, and another CA for the *same* group name
    // (same subject): both refused as another CA by the key identifier.
    for other in [ca("other", t0()), ca("lab", t0())] {
        let e = verify_member(
            f.cert.der(),
            other.certificate(),
            None,
            &f.node.peer_id(),
            other.certificate().group(),
            t0(),
        )
        .unwrap_err();
        assert!(matches!(e, PkiError::WrongCa { .. }), "{e}");
        assert!(e.to_string().contains("another CA"));
    }
}

#[test]
fn refuses_expired_and_not_yet_valid() {
    let f = fixture();
    let v = |now| {
        verify_member(
            f.cert.der(),
            f.ca.certificate(),
            None,
            &f.node.peer_id(),
            "lab",
            now,
        )
    };
    assert!(matches!(v(t0() + 91 * DAY), Err(PkiError::Expired { .. })));
    assert!(matches!(
        v(t0() - DAY),
        Err(PkiError::NotYetValid { .. }) | Err(PkiError::CaNotValid { .. })
    ));
    // A certificate issued later than the CA start is "not yet valid" before
    // its own start while the CA already is valid.
    let later =
        f.ca.issue(&f.node.public_key(), &profile("alice"), t0() + 10 * DAY)
            .unwrap();
    let e = verify_member(
        later.der(),
        f.ca.certificate(),
        None,
        &f.node.peer_id(),
        "lab",
        t0() + DAY,
    )
    .unwrap_err();
    assert!(matches!(e, PkiError::NotYetValid { .. }), "{e}");
    assert!(e.to_string().contains("not valid yet"));
    // The CA's own validity bounds everything.
    let e = v(t0() + 366 * DAY).unwrap_err();
    assert!(matches!(e, PkiError::CaNotValid { .. }), "{e}");
}

#[test]
fn refuses_other_group() {
    let f = fixture();
    let e = verify_member(
        f.cert.der(),
        f.ca.certificate(),
        None,
        &f.node.peer_id(),
        "other",
        t0(),
    )
    .unwrap_err();
    assert!(
        matches!(&e, PkiError::WrongGroup { expected, found } if expected == "other" && found == "lab"),
        "{e}"
    );
}

#[test]
fn refuses_peer_id_mismatch() {
    let f = fixture();
    let someone = node().peer_id();
    let e = verify_member(
        f.cert.der(),
        f.ca.certificate(),
        None,
        &someone,
        "lab",
        t0(),
    )
    .unwrap_err();
    assert!(matches!(e, PkiError::PeerMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&someone.to_string()));
}

#[test]
fn refuses_revoked() {
    let f = fixture();
    let crl =
        f.ca.sign_crl(
            &[RevokedEntry {
                serial: f.cert.info().serial.clone(),
                revoked_at: t0() + DAY,
                reason: RevocationReason::KeyCompromise,
            }],
            2,
            t0() + DAY,
            7 * DAY,
        )
        .unwrap();
    let e = verify_member(
        f.cert.der(),
        f.ca.certificate(),
        Some(&crl),
        &f.node.peer_id(),
        "lab",
        t0() + 2 * DAY,
    )
    .unwrap_err();
    assert!(
        matches!(&e, PkiError::Revoked { serial, .. } if *serial == f.cert.info().serial.to_string()),
        "{e}"
    );
}

#[test]
fn refuses_tampered_signature() {
    let f = fixture();
    let mut der = f.cert.der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x80;
    let e = verify_member(
        &der,
        f.ca.certificate(),
        None,
        &f.node.peer_id(),
        "lab",
        t0(),
    )
    .unwrap_err();
    assert!(matches!(e, PkiError::BadSignature), "{e}");

    // Tampering with the signed content (the name in the subject) too.
    let mut der = f.cert.der().to_vec();
    let pos = der
        .windows(5)
        .position(|w| w == b"alice")
        .expect("name in the DER");
    der[pos] = b'A';
    let e = verify_member(
        &der,
        f.ca.certificate(),
        None,
        &f.node.peer_id(),
        "lab",
        t0(),
    )
    .unwrap_err();
    assert!(matches!(e, PkiError::BadSignature), "{e}");

    // Garbage is malformed, not a panic.
    for junk in [&b""[..], b"\x30\x82\xff\xff", &f.cert.der()[..20]] {
        let e = verify_member(
            junk,
            f.ca.certificate(),
            None,
            &f.node.peer_id(),
            "lab",
            t0(),
        )
        .unwrap_err();
        assert!(matches!(e, PkiError::Malformed { .. }), "{e}");
    }
}

#[test]
fn refuses_crl_from_another_ca() {
    let f = fixture();
    let other = ca("lab", t0());
    let crl = empty_crl(&other);
    let e = verify_member(
        f.cert.der(),
        f.ca.certificate(),
        Some(&crl),
        &f.node.peer_id(),
        "lab",
        t0() + DAY,
    )
    .unwrap_err();
    assert!(matches!(e, PkiError::CrlWrongCa { .. }), "{e}");
}

#[test]
fn refuses_tampered_crl() {
    let f = fixture();
    let mut der = empty_crl(&f.ca).der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let crl = Crl::from_der(&der).unwrap();
    assert!(matches!(
        crl.verify(f.ca.certificate(), t0()),
        Err(PkiError::CrlBadSignature)
    ));
}

#[test]
fn refuses_stale_and_future_crl() {
    let f = fixture();
    let crl = empty_crl(&f.ca);
    let v = |now| {
        verify_member(
            f.cert.der(),
            f.ca.certificate(),
            Some(&crl),
            &f.node.peer_id(),
            "lab",
            now,
        )
    };
    let e = v(t0() + 8 * DAY).unwrap_err();
    assert!(matches!(e, PkiError::CrlStale { .. }), "{e}");
    assert!(e.to_string().contains("stale"));
    let future = f.ca.sign_crl(&[], 3, t0() + 3 * DAY, 7 * DAY).unwrap();
    assert!(matches!(
        future.verify(f.ca.certificate(), t0() + DAY),
        Err(PkiError::CrlNotYetValid { .. })
    ));
}

#[test]
fn crl_from_a_slightly_fast_issuer_clock_is_accepted() {
    // The issuer's clock may run ahead of the verifier's by up to BACKDATE
    // (a CRL signed a moment after the verifier read its clock is the
    // everyday case); one second further it is refused.
    let f = fixture();
    let issued = t0() + DAY;
    let crl = f.ca.sign_crl(&[], 4, issued, 7 * DAY).unwrap();
    let at = |now| crl.verify(f.ca.certificate(), now);
    at(issued - Duration::from_millis(1)).unwrap();
    at(issued - vpn_pki::BACKDATE).unwrap();
    assert!(matches!(
        at(issued - vpn_pki::BACKDATE - Duration::from_secs(1)),
        Err(PkiError::CrlNotYetValid { .. })
    ));
}

#[test]
fn distinct_messages() {
    // Each refusal prints something different and informative.
    let f = fixture();
    let msgs = [
        PkiError::BadSignature.to_string(),
        PkiError::CrlBadSignature.to_string(),
        PkiError::CsrBadSignature.to_string(),
    ];
    assert!(msgs[0] != msgs[1] && msgs[1] != msgs[2]);
    let e = verify_member(
        f.cert.der(),
        f.ca.certificate(),
        None,
        &f.node.peer_id(),
        "lab",
        t0() + 100 * DAY,
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("certificate expired at 2026-"),
        "{e}"
    );
}

#[test]
fn no_single_byte_change_or_truncation_is_accepted() {
    // Every truncation and every one-byte change of a valid certificate and
    // CRL is refused (never accepted, never a panic); CSRs likewise.
    let f = fixture();
    let ok_now = t0() + DAY;
    let der = f.cert.der().to_vec();
    let check = |d: &[u8]| {
        verify_member(
            d,
            f.ca.certificate(),
            None,
            &f.node.peer_id(),
            "lab",
            ok_now,
        )
    };
    check(&der).unwrap();
    for i in 0..der.len() {
        assert!(check(&der[..i]).is_err(), "truncated to {i}");
        let mut d = der.clone();
        d[i] ^= 0xff;
        assert!(check(&d).is_err(), "byte {i} flipped");
    }

    let crl_der = empty_crl(&f.ca).der().to_vec();
    for i in 0..crl_der.len() {
        let _ = Crl::from_der(&crl_der[..i]);
        let mut d = crl_der.clone();
        d[i] ^= 0xff;
        if let Ok(crl) = Crl::from_der(&d) {
            assert!(
                crl.verify(f.ca.certificate(), ok_now).is_err(),
                "CRL byte {i}"
            );
        }
    }

    let csr = vpn_pki::make_csr(&f.node, "alice").unwrap();
    for i in 0..csr.len() {
        let _ = vpn_pki::verify_csr(&csr[..i]);
        let mut d = csr.clone();
        d[i] ^= 0xff;
        if let Ok(info) = vpn_pki::verify_csr(&d) {
            panic!("CSR byte {i} flipped accepted: {info:?}");
        }
    }

    let ca_der = f.ca.certificate().der().to_vec();
    for i in 0..ca_der.len() {
        let mut d = ca_der.clone();
        d[i] ^= 0xff;
        assert!(
            vpn_pki::CaCertificate::from_der(&d).is_err(),
            "CA byte {i} flipped"
        );
    }
}
