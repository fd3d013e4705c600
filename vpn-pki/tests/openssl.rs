//! Interoperability with OpenSSL: the files this library writes are read
//! and verified by `openssl` (Debian package `openssl`, installed by
//! `cargo xtask setup`). The tests fail, not skip, when it is missing.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::SystemTime;

use common::*;
use vpn_pki::{ext, RevocationReason, RevocationStore};

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl").args(args).output().unwrap_or_else(|e| {
        panic!("running openssl failed ({e}); install the Debian package `openssl` (cargo xtask setup does)")
    })
}

fn ok(args: &[&str]) -> String {
    let out = openssl(args);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openssl {args:?} failed:\n{text}");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn openssl_reads_and_verifies_what_we_write() {
    let now = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = ca("lab", now);
    ca.save_new(d).unwrap();
    let ca_crt = d.join("ca.crt");

    let ca_text = ok(&["x509", "-in", s(&ca_crt), "-text", "-noout"]);
    for want in [
        "Signature Algorithm: ED25519",
        "CA:TRUE",
        "Certificate Sign, CRL Sign",
        "O = lab",
        &ext::dotted(&ext::OID_GROUP),
    ] {
        assert!(ca_text.contains(want), "missing {want:?} in:\n{ca_text}");
    }
    // The CA key is a standard PKCS#8 Ed25519 key.
    let key_text = ok(&["pkey", "-in", s(&d.join("ca.key")), "-noout", "-text"]);
    assert!(key_text.contains("ED25519 Private-Key"), "{key_text}");

    let node = node();
    let cert = ca
        .issue(&node.public_key(), &profile("alice"), now)
        .unwrap();
    let node_crt = d.join("node.crt");
    std::fs::write(&node_crt, cert.to_pem()).unwrap();
    let text = ok(&["x509", "-in", s(&node_crt), "-text", "-noout"]);
    for want in [
        "CN = alice",
        "CA:FALSE",
        &format!("URI:libp2p:peer/{}", node.peer_id()),
        "IP Address:10.77.0.5",
        &ext::dotted(&ext::OID_MEMBER),
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let v = ok(&["verify", "-CAfile", s(&ca_crt), s(&node_crt)]);
    assert!(v.contains(": OK"), "{v}");
    let fp = ok(&[
        "x509",
        "-in",
        s(&node_crt),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    assert!(
        fp.contains(&cert.fingerprint()),
        "{fp} vs {}",
        cert.fingerprint()
    );

    // The node identity file is what `openssl genpkey -algorithm ed25519`
    // writes: openssl derives the same public key as the certificate's.
    let id_path = d.join("node.key");
    node.save_new(&id_path).unwrap();
    let pub_from_key = ok(&["pkey", "-in", s(&id_path), "-pubout"]);
    let pub_from_cert = ok(&["x509", "-in", s(&node_crt), "-noout", "-pubkey"]);
    assert_eq!(pub_from_key, pub_from_cert);

    // A certificate from another CA does not verify against ours.
    let other = common::ca("other", now);
    let foreign = other
        .issue(&node.public_key(), &profile("mallory"), now)
        .unwrap();
    let foreign_crt = d.join("foreign.crt");
    std::fs::write(&foreign_crt, foreign.to_pem()).unwrap();
    let out = openssl(&["verify", "-CAfile", s(&ca_crt), s(&foreign_crt)]);
    assert!(!out.status.success(), "foreign certificate verified");

    // CRL: empty, then with the node revoked.
    let mut store = RevocationStore::load(d).unwrap();
    let crl1 = store.issue_crl(&ca, now, 7 * DAY).unwrap();
    let crl_path = d.join("crl.pem");
    std::fs::write(&crl_path, crl1.to_pem()).unwrap();
    let v = ok(&[
        "verify",
        "-crl_check",
        "-CAfile",
        s(&ca_crt),
        "-CRLfile",
        s(&crl_path),
        s(&node_crt),
    ]);
    assert!(v.contains(": OK"), "{v}");

    store
        .revoke(
            cert.info().serial.clone(),
            now,
            RevocationReason::KeyCompromise,
        )
        .unwrap();
    let crl2 = store.issue_crl(&ca, now, 7 * DAY).unwrap();
    std::fs::write(&crl_path, crl2.to_pem()).unwrap();
    let crl_text = ok(&["crl", "-in", s(&crl_path), "-text", "-noout"]);
    let serial_upper = cert.info().serial.to_string().to_uppercase();
    for want in [
        "X509v3 CRL Number",
        "Next Update",
        "Key Compromise",
        serial_upper.as_str(),
    ] {
        assert!(crl_text.contains(want), "missing {want:?} in:\n{crl_text}");
    }
    let number = crl_text
        .lines()
        .skip_while(|l| !l.contains("X509v3 CRL Number"))
        .nth(1)
        .map(str::trim);
    assert_eq!(number, Some("2"), "{crl_text}");
    // openssl checks the CRL signature against the CA.
    let v = ok(&["crl", "-in", s(&crl_path), "-CAfile", s(&ca_crt), "-noout"]);
    assert!(v.contains("verify OK"), "{v}");
    let out = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        s(&ca_crt),
        "-CRLfile",
        s(&crl_path),
        s(&node_crt),
    ]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "revoked certificate verified:\n{text}"
    );
    assert!(text.contains("certificate revoked"), "{text}");
}

#[test]
fn we_read_what_openssl_writes() {
    // A CSR made by openssl from an openssl-generated Ed25519 key: our CSR
    // check accepts it and the identity loader reads the key.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = d.join("k.pem");
    ok(&["genpkey", "-algorithm", "ed25519", "-out", s(&key)]);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let id = vpn_pki::NodeIdentity::load(&key).unwrap();
    let uri = format!("subjectAltName=URI:libp2p:peer/{}", id.peer_id());
    let csr = d.join("req.pem");
    ok(&[
        "req",
        "-new",
        "-key",
        s(&key),
        "-subj",
        "/CN=dave",
        "-addext",
        &uri,
        "-out",
        s(&csr),
    ]);
    let der = vpn_pki::csr_from_pem_or_der(&std::fs::read(&csr).unwrap()).unwrap();
    let info = vpn_pki::verify_csr(&der).unwrap();
    assert_eq!(info.peer_id, id.peer_id());
    assert_eq!(info.name.as_deref(), Some("dave"));

    // A CSR whose SAN names someone else's PeerId is refused.
    let other = vpn_pki::NodeIdentity::generate();
    let uri = format!("subjectAltName=URI:libp2p:peer/{}", other.peer_id());
    ok(&[
        "req",
        "-new",
        "-key",
        s(&key),
        "-subj",
        "/CN=dave",
        "-addext",
        &uri,
        "-out",
        s(&csr),
    ]);
    let der = vpn_pki::csr_from_pem_or_der(&std::fs::read(&csr).unwrap()).unwrap();
    assert!(matches!(
        vpn_pki::verify_csr(&der),
        Err(vpn_pki::PkiError::CsrPeerMismatch { .. })
    ));
}
