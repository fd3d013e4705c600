use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vpn_pki::{GroupCa, NodeIdentity};

use super::*;
use crate::overlay::ids::{from_pki_peer, keypair_of};
use crate::overlay::test_fixtures::{a, ca, issue, t0, DAY};

fn claim(id: &NodeIdentity, addr: IpAddr, fixed: bool, since: SystemTime, seq: u64) -> Claim {
    let s = since.duration_since(UNIX_EPOCH).unwrap();
    Claim {
        group: "lab".into(),
        addr,
        owner: from_pki_peer(&id.peer_id()).to_bytes(),
        fixed,
        released: false,
        since: s,
        lease_start: s,
        expiry: s + Duration::from_secs(600),
        seq,
    }
}

fn entry(c: &Claim, cert: &[u8], signer: &NodeIdentity) -> Vec<u8> {
    sign_entry(
        c.addr,
        &c.encode(),
        UNIX_EPOCH + c.expiry,
        cert,
        &keypair_of(signer),
    )
    .unwrap()
}

fn table(ca: &GroupCa) -> MemberTable {
    MemberTable::new("lab".into(), ca.certificate().clone(), None)
}

fn now() -> SystemTime {
    t0() + Duration::from_secs(60)
}

#[test]
fn fixed_and_allocated_claims_verify() {
    let ca = ca();
    let t = table(&ca);
    let f = NodeIdentity::generate();
    let fcert = issue(
        &ca,
        &f,
        AddressAssignment::Fixed(vec![a("10.77.0.5")]),
        30 * DAY,
    );
    let c = claim(&f, a("10.77.0.5"), true, t0(), 1);
    let (v, info) = check_entry(a("10.77.0.5"), &entry(&c, &fcert, &f), &t, now()).unwrap();
    assert_eq!(v.claim, c);
    assert_eq!(v.owner, from_pki_peer(&f.peer_id()));
    assert_eq!(v.cert, fcert);
    assert_eq!(info.name, "n1");
    let al = NodeIdentity::generate();
    let acert = issue(&ca, &al, AddressAssignment::Allocate, 30 * DAY);
    let c = claim(&al, a("10.77.0.9"), false, t0(), 1);
    assert!(check_entry(a("10.77.0.9"), &entry(&c, &acert, &al), &t, now()).is_ok());
}

#[test]
fn claims_that_do_not_fit_are_refused() {
    let ca = ca();
    let t = table(&ca);
    let id = NodeIdentity::generate();
    let fixed = issue(
        &ca,
        &id,
        AddressAssignment::Fixed(vec![a("10.77.0.5")]),
        30 * DAY,
    );
    let alloc_id = NodeIdentity::generate();
    let alloc = issue(&ca, &alloc_id, AddressAssignment::Allocate, 30 * DAY);
    let content = |r| matches!(r, Err(RecordRejection::Content(_)));
    // Replayed under another address's key.
    let c = claim(&id, a("10.77.0.5"), true, t0(), 1);
    assert!(matches!(
        check_entry(a("10.77.0.6"), &entry(&c, &fixed, &id), &t, now()),
        Err(RecordRejection::Forged(_))
    ));
    // A fixed claim for an address the certificate does not fix.
    let c = claim(&id, a("10.77.0.6"), true, t0(), 1);
    assert!(content(check_entry(
        a("10.77.0.6"),
        &entry(&c, &fixed, &id),
        &t,
        now()
    )));
    // A fixed certificate that allocates, an allocating one that claims
    // "fixed", an allocation outside the range or on its network address.
    let c = claim(&id, a("10.77.0.7"), false, t0(), 1);
    assert!(content(check_entry(
        a("10.77.0.7"),
        &entry(&c, &fixed, &id),
        &t,
        now()
    )));
    let c = claim(&alloc_id, a("10.77.0.7"), true, t0(), 1);
    assert!(content(check_entry(
        a("10.77.0.7"),
        &entry(&c, &alloc, &alloc_id),
        &t,
        now()
    )));
    for out in ["10.78.0.7", "10.77.0.0", "10.77.0.255"] {
        let c = claim(&alloc_id, a(out), false, t0(), 1);
        assert!(
            content(check_entry(
                a(out),
                &entry(&c, &alloc, &alloc_id),
                &t,
                now()
            )),
            "{out}"
        );
    }
    // Someone else's certificate and claim, signed by a thief.
    let thief = NodeIdentity::generate();
    let c = claim(&id, a("10.77.0.5"), true, t0(), 1);
    assert!(content(check_entry(
        a("10.77.0.5"),
        &entry(&c, &fixed, &thief),
        &t,
        now()
    )));
    // The thief's own claim with the victim's certificate.
    let c = claim(&thief, a("10.77.0.5"), true, t0(), 1);
    assert!(content(check_entry(
        a("10.77.0.5"),
        &entry(&c, &fixed, &thief),
        &t,
        now()
    )));
    // A certificate from another CA with the same group name.
    let other = self::ca();
    let foreign = issue(
        &other,
        &id,
        AddressAssignment::Fixed(vec![a("10.77.0.5")]),
        30 * DAY,
    );
    let c = claim(&id, a("10.77.0.5"), true, t0(), 1);
    assert!(content(check_entry(
        a("10.77.0.5"),
        &entry(&c, &foreign, &id),
        &t,
        now()
    )));
    // Another group's claim.
    let mut c = claim(&id, a("10.77.0.5"), true, t0(), 1);
    c.group = "other".into();
    assert!(content(check_entry(
        a("10.77.0.5"),
        &entry(&c, &fixed, &id),
        &t,
        now()
    )));
    // Expired.
    let c = claim(&id, a("10.77.0.5"), true, t0(), 1);
    assert!(matches!(
        check_entry(a("10.77.0.5"), &entry(&c, &fixed, &id), &t, t0() + DAY),
        Err(RecordRejection::Expired(_))
    ));
    // A live claim whose certificate has expired.
    let short = issue(
        &ca,
        &id,
        AddressAssignment::Fixed(vec![a("10.77.0.5")]),
        Duration::from_secs(30),
    );
    let c = claim(&id, a("10.77.0.5"), true, t0(), 1);
    assert!(content(check_entry(
        a("10.77.0.5"),
        &entry(&c, &short, &id),
        &t,
        now()
    )));
    // Garbage, truncated payloads.
    assert!(check_entry(a("10.77.0.5"), b"\x01\x01garbage", &t, now()).is_err());
    let kp = keypair_of(&id);
    for payload in [
        &b""[..],
        &b"\x00"[..],
        &b"\x00\x05abc"[..],
        &b"\x00\x01x"[..],
    ] {
        let e = sign_record(
            &address_key(a("10.77.0.5")),
            RecordKind::Address,
            payload,
            t0() + DAY,
            &kp,
        )
        .unwrap();
        assert!(check_entry(a("10.77.0.5"), &e, &t, now()).is_err());
    }
}

#[test]
fn sets_roundtrip_and_refuse_garbage() {
    let e1 = vec![1u8; 10];
    let e2 = vec![2u8; 300];
    let s = encode_set([e1.as_slice(), e2.as_slice()]);
    assert_eq!(decode_set(&s).unwrap(), vec![e1.as_slice(), e2.as_slice()]);
    assert!(decode_set(&s[..s.len() - 1]).is_err());
    let mut long = s.clone();
    long.push(0);
    assert!(decode_set(&long).is_err());
    assert!(decode_set(b"GVCS").is_err());
    assert!(decode_set(b"XXXX\x00").is_err());
    assert!(decode_set(b"GVCS\x09").is_err());
    assert_eq!(decode_set(b"GVCS\x00").unwrap().len(), 0);
    let many: Vec<Vec<u8>> = (0..20).map(|i| vec![i; 3]).collect();
    let s = encode_set(many.iter().map(Vec::as_slice));
    assert_eq!(decode_set(&s).unwrap().len(), MAX_ENTRIES);
}

#[test]
fn merge_keeps_latest_per_owner_and_the_winner_first() {
    let ca = ca();
    let t = table(&ca);
    let ids: Vec<NodeIdentity> = (0..3).map(|_| NodeIdentity::generate()).collect();
    let certs: Vec<Vec<u8>> = ids
        .iter()
        .map(|i| issue(&ca, i, AddressAssignment::Allocate, 30 * DAY))
        .collect();
    let addr = a("10.77.0.9");
    let v = |i: usize, since: u64, seq: u64, released: bool| {
        let mut c = claim(&ids[i], addr, false, t0() + Duration::from_secs(since), seq);
        c.released = released;
        check_entry(addr, &entry(&c, &certs[i], &ids[i]), &t, now())
            .unwrap()
            .0
    };
    // 0 claimed first, 1 later; 2's claim is superseded by its tombstone.
    let set = merge(
        [
            v(1, 20, 1, false),
            v(0, 10, 1, false),
            v(2, 5, 1, false),
            v(2, 5, 2, true),
        ],
        now(),
    );
    assert_eq!(set.len(), 3);
    assert_eq!(set[0].owner, from_pki_peer(&ids[0].peer_id()));
    assert!(set[2].claim.released);
    assert_eq!(winner(&set, now()).unwrap().owner, set[0].owner);
    // A newer claim of the same owner replaces the older one.
    let set = merge(set.into_iter().chain([v(0, 10, 3, false)]), now());
    assert_eq!(set.iter().filter(|c| c.owner == set[0].owner).count(), 1);
    assert_eq!(set[0].claim.seq, 3);
    // Expired claims are dropped; with all gone there is no winner.
    let later = t0() + Duration::from_secs(10_000);
    assert!(merge(set.clone(), later).is_empty());
    assert!(winner(&set, later).is_none());
    assert_eq!(set_expiry(&set), Some(t0() + Duration::from_secs(20 + 600)));
}
