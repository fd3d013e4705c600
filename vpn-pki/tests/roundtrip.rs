//! Round trips: CA on disk, member certificates, CSRs, CRLs, the revocation
//! store.

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::*;
use vpn_pki::{
    make_csr, sign_csr, verify_csr, verify_member, AddressAssignment, CaCertificate, Crl, GroupCa,
    MemberCert, PkiError, RevocationReason, RevocationStore, Role, Serial,
};

#[test]
fn ca_saves_loads_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let cadir = dir.path().join("ca");
    let ca = ca("lab", t0());
    let (crt, key) = ca.save_new(&cadir).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&crt), 0o644);
    assert_eq!(mode(&cadir), 0o700);
    assert!(matches!(
        ca.save_new(&cadir),
        Err(PkiError::AlreadyExists(_))
    ));

    let loaded = GroupCa::load(&cadir).unwrap();
    let c = loaded.certificate();
    assert_eq!(c.der(), ca.certificate().der());
    assert_eq!(c.group(), "lab");
    assert_eq!(c.range_v4().unwrap().to_string(), "10.77.0.0/24");
    assert_eq!(c.range_v6().unwrap().to_string(), "fd77::/64");
    assert_eq!(c.not_after(), t0() + 365 * DAY);
    assert!(c.subject().contains("O=lab"), "{}", c.subject());

    // A certificate issued by the reloaded CA verifies against the original.
    let n = node();
    let cert = loaded.issue(&n.public_key(), &profile("a"), t0()).unwrap();
    verify_member(
        cert.der(),
        ca.certificate(),
        None,
        &n.peer_id(),
        "lab",
        t0(),
    )
    .unwrap();

    // The key file's permissions are checked.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        GroupCa::load(&cadir),
        Err(PkiError::KeyPermissions { .. })
    ));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A key of another CA is refused.
    std::fs::remove_file(&key).unwrap();
    std::fs::write(&key, common::ca("lab", t0()).key_pkcs8_pem()).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = GroupCa::load(&cadir).unwrap_err();
    assert!(matches!(e, PkiError::CorruptFile { .. }), "{e}");
    assert!(e.to_string().contains("does not belong"), "{e}");
}

#[test]
fn ca_init_validates_input() {
    let mut p = ca_params("lab");
    p.group = "bad group".into();
    assert!(matches!(
        GroupCa::init(&p, t0()),
        Err(PkiError::InvalidInput { .. })
    ));
    let mut p = ca_params("lab");
    p.ranges = vec!["fd77::/64".parse().unwrap()];
    assert!(GroupCa::init(&p, t0()).is_err());
    let mut p = ca_params("lab");
    p.ranges.push("10.78.0.0/24".parse().unwrap());
    assert!(GroupCa::init(&p, t0()).is_err());
}

#[test]
fn member_certificate_roundtrip() {
    let ca = ca("lab", t0());
    let n = node();
    let mut prof = profile("alice");
    prof.address = AddressAssignment::Fixed(vec![
        "10.77.0.5".parse().unwrap(),
        "fd77::5".parse().unwrap(),
    ]);
    let cert = ca.issue(&n.public_key(), &prof, t0()).unwrap();
    let info = verify_member(
        cert.der(),
        ca.certificate(),
        None,
        &n.peer_id(),
        "lab",
        t0() + DAY,
    )
    .unwrap();
    assert_eq!(info.peer_id, n.peer_id());
    assert_eq!(info.name, "alice");
    assert_eq!(info.group, "lab");
    assert_eq!(info.address, prof.address);
    assert_eq!(info.roles, vec![Role::Member, Role::Relay]);
    assert!(info.has_role(&Role::Relay) && !info.has_role(&Role::Gateway));
    assert_eq!(info.not_before, t0() - vpn_pki::BACKDATE);
    assert_eq!(info.not_after, t0() + 90 * DAY);
    assert_eq!(info.serial.as_bytes().len(), 16);

    // PEM round trip and parse-only view.
    let again = MemberCert::from_pem_or_der(cert.to_pem().as_bytes()).unwrap();
    assert_eq!(again.info(), &info);
    assert_eq!(again.public_key(), &n.public_key());
    assert!(again.subject().contains("CN=alice"));

    // Allocation instead of a fixed address; serials differ.
    let mut alloc = profile("bob");
    alloc.address = AddressAssignment::Allocate;
    let c2 = ca.issue(&n.public_key(), &alloc, t0()).unwrap();
    assert_eq!(c2.info().address, AddressAssignment::Allocate);
    assert_ne!(c2.info().serial, info.serial);
}

#[test]
fn issuing_refuses_bad_profiles() {
    let ca = ca("lab", t0());
    let key = node().public_key();
    let mut p = profile("alice");
    p.validity = 400 * DAY;
    assert!(matches!(
        ca.issue(&key, &p, t0()),
        Err(PkiError::OutlivesCa { .. })
    ));
    let mut p = profile("alice");
    p.address = AddressAssignment::Fixed(vec!["10.78.0.5".parse().unwrap()]);
    assert!(matches!(
        ca.issue(&key, &p, t0()),
        Err(PkiError::AddressOutsideRange { .. })
    ));
    let mut p = profile("alice");
    p.address = AddressAssignment::Fixed(vec!["10.77.0.255".parse().unwrap()]);
    assert!(ca.issue(&key, &p, t0()).is_err(), "broadcast address");
    let mut p = profile("alice");
    p.roles.clear();
    assert!(ca.issue(&key, &p, t0()).is_err());
    let mut p = profile("alice");
    p.name = "x/y".into();
    assert!(ca.issue(&key, &p, t0()).is_err());
}

#[test]
fn csr_flow() {
    let ca = ca("lab", t0());
    let n = node();
    let csr = make_csr(&n, "carol").unwrap();
    let info = verify_csr(&csr).unwrap();
    assert_eq!(info.peer_id, n.peer_id());
    assert_eq!(info.name.as_deref(), Some("carol"));
    let pem = vpn_pki::csr_to_pem(&csr);
    assert_eq!(vpn_pki::csr_from_pem_or_der(pem.as_bytes()).unwrap(), csr);

    let cert = sign_csr(&ca, &csr, &profile("carol"), t0()).unwrap();
    let m = verify_member(
        cert.der(),
        ca.certificate(),
        None,
        &n.peer_id(),
        "lab",
        t0(),
    )
    .unwrap();
    assert_eq!(m.peer_id, n.peer_id());

    // A tampered CSR (one bit of the signed part) fails its self-signature.
    let mut bad = csr.clone();
    let pos = bad.len() / 3;
    bad[pos] ^= 0x01;
    let e = sign_csr(&ca, &bad, &profile("carol"), t0()).unwrap_err();
    assert!(
        matches!(e, PkiError::CsrBadSignature | PkiError::Malformed { .. }),
        "{e}"
    );
    // Flipping a signature bit is always a signature failure.
    let mut bad = csr.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert!(matches!(verify_csr(&bad), Err(PkiError::CsrBadSignature)));
    assert!(matches!(
        verify_csr(b"\x30\x03garbage"),
        Err(PkiError::Malformed { .. })
    ));
}

#[test]
fn crl_roundtrip_and_store_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca("lab", t0());
    ca.save_new(dir.path()).unwrap();
    let n = node();
    let cert = ca.issue(&n.public_key(), &profile("a"), t0()).unwrap();
    let serial = cert.info().serial.clone();

    let mut store = RevocationStore::load(dir.path()).unwrap();
    assert_eq!(store.last_number(), 0);
    let crl1 = store.issue_crl(&ca, t0(), 7 * DAY).unwrap();
    assert_eq!(crl1.number(), Some(1));
    assert_eq!(crl1.entries().count(), 0);
    crl1.verify(ca.certificate(), t0() + DAY).unwrap();

    assert!(store
        .revoke(serial.clone(), t0() + DAY, RevocationReason::KeyCompromise)
        .unwrap());
    assert!(!store
        .revoke(serial.clone(), t0() + DAY, RevocationReason::KeyCompromise)
        .unwrap());
    let mut store = RevocationStore::load(dir.path()).unwrap();
    assert_eq!(store.entries().len(), 1);
    assert_eq!(store.last_number(), 1);
    let crl2 = store.issue_crl(&ca, t0() + DAY, 7 * DAY).unwrap();
    assert_eq!(crl2.number(), Some(2));
    assert_eq!(crl2.this_update(), t0() + DAY);
    assert_eq!(crl2.next_update(), Some(t0() + 8 * DAY));
    let parsed = Crl::from_pem_or_der(crl2.to_pem().as_bytes()).unwrap();
    let entries: Vec<_> = parsed.entries().collect();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].serial, serial);
    assert_eq!(entries[0].revoked_at, t0() + DAY);
    assert_eq!(entries[0].reason, RevocationReason::KeyCompromise);
    assert_eq!(parsed.revoked_at(&serial), Some(t0() + DAY));
    assert_eq!(parsed.revoked_at(&"01".parse::<Serial>().unwrap()), None);
    assert!(crl2.supersedes(&crl1) && !crl1.supersedes(&crl2) && !crl2.supersedes(&crl2));

    // Serials with the top bit set survive the DER sign byte.
    let high: Serial = "ff00".parse().unwrap();
    let crl = ca
        .sign_crl(
            &[vpn_pki::RevokedEntry {
                serial: high.clone(),
                revoked_at: t0(),
                reason: RevocationReason::Unspecified,
            }],
            9,
            t0(),
            DAY,
        )
        .unwrap();
    assert_eq!(crl.revoked_at(&high), Some(t0()));

    // A corrupt store is reported with its line.
    std::fs::write(dir.path().join(vpn_pki::REVOKED_FILE), "zz 1 unspecified\n").unwrap();
    let e = RevocationStore::load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn ca_certificate_parsing_refuses_non_cas() {
    let ca = ca("lab", t0());
    let n = node();
    let cert = ca.issue(&n.public_key(), &profile("a"), t0()).unwrap();
    assert!(CaCertificate::from_der(cert.der()).is_err());
    // And a CA certificate is not a member certificate.
    assert!(matches!(
        MemberCert::from_der(ca.certificate().der()),
        Err(PkiError::NotMemberCertificate(_))
    ));
    assert!(CaCertificate::from_pem_or_der(ca.certificate().to_pem().as_bytes()).is_ok());
}
