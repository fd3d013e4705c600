//! Prints the cost of the PKI operations a node and the group server run
//! often: `cargo run --release -p vpn-pki --example pki_cost`.

use std::time::{Duration, Instant, SystemTime};

use vpn_pki::{
    make_csr, sign_csr, verify_member, AddressAssignment, CaParams, CertProfile, GroupCa,
    NodeIdentity, RevocationReason, RevokedEntry, Role,
};

fn time<T>(what: &str, n: u32, mut f: impl FnMut() -> T) {
    // Warm up, then report the mean.
    for _ in 0..n / 10 {
        std::hint::black_box(f());
    }
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    let per = t.elapsed() / n;
    println!("{what:<44} {:>9.1} µs", per.as_secs_f64() * 1e6);
}

fn main() {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let ca = GroupCa::init(
        &CaParams {
            group: "lab".into(),
            ranges: vec!["10.77.0.0/16".parse().unwrap()],
            validity: 365 * day,
        },
        now,
    )
    .unwrap();
    let node = NodeIdentity::generate();
    let profile = CertProfile {
        name: "alice".into(),
        address: AddressAssignment::Allocate,
        roles: vec![Role::Member],
        validity: 90 * day,
    };
    let cert = ca.issue(&node.public_key(), &profile, now).unwrap();
    let revoked: Vec<RevokedEntry> = (0..1000u32)
        .map(|i| RevokedEntry {
            serial: vpn_pki::Serial::from_bytes(&(i + 1).to_be_bytes()),
            revoked_at: now,
            reason: RevocationReason::Unspecified,
        })
        .collect();
    let crl = ca.sign_crl(&revoked, 1, now, 7 * day).unwrap();
    let csr = make_csr(&node, "alice").unwrap();
    let peer = node.peer_id();

    println!(
        "certificate {} B, CSR {} B, CRL with 1000 entries {} B",
        cert.der().len(),
        csr.len(),
        crl.der().len()
    );
    time("verify_member (no CRL)", 2000, || {
        verify_member(cert.der(), ca.certificate(), None, &peer, "lab", now).unwrap()
    });
    time("verify_member (CRL of 1000 entries)", 500, || {
        verify_member(cert.der(), ca.certificate(), Some(&crl), &peer, "lab", now).unwrap()
    });
    time("Crl::from_der (1000 entries)", 200, || {
        vpn_pki::Crl::from_der(crl.der()).unwrap()
    });
    time("GroupCa::issue", 500, || {
        ca.issue(&node.public_key(), &profile, now).unwrap()
    });
    time("sign_csr (verify CSR + issue)", 500, || {
        sign_csr(&ca, &csr, &profile, now).unwrap()
    });
    time("sign_crl (1000 entries)", 50, || {
        ca.sign_crl(&revoked, 2, now, 7 * day).unwrap()
    });
}
