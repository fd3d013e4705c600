//! Bad input and DHT faults, driving one allocator by hand.

use std::net::IpAddr;
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;

use super::harness::{one_free, owner, range, secs, test_config, GROUP, T0};
use crate::addr::{
    dht_key, Action, AddrError, Allocator, Assignment, Claim, Config, DhtFailure, RequestId,
    RngRandom, SignedRecord,
};

fn alloc(ranges: Vec<(crate::addr::Range, Assignment)>) -> Allocator {
    Allocator::new(
        GROUP,
        &owner(1),
        ranges,
        test_config(),
        Box::new(RngRandom(ChaCha8Rng::seed_from_u64(1))),
    )
    .unwrap()
}

fn actions(a: &mut Allocator) -> Vec<Action> {
    std::iter::from_fn(|| a.poll_action()).collect()
}

fn the_get(acts: &[Action]) -> (RequestId, Vec<u8>) {
    match acts {
        [Action::Get { id, key }] => (*id, key.clone()),
        other => panic!("expected one Get, got {other:?}"),
    }
}

fn the_put(acts: &[Action]) -> (RequestId, Claim) {
    match acts {
        [Action::Put { id, value, .. }] => (*id, Claim::decode(value).unwrap()),
        other => panic!("expected one Put, got {other:?}"),
    }
}

#[test]
fn a_failed_or_unanswered_get_is_retried_after_the_backoff() {
    let cfg = test_config();
    let mut a = alloc(vec![(one_free(), Assignment::Allocate)]);
    a.start(T0);
    let (id, key) = the_get(&actions(&mut a));
    assert_eq!(key, dht_key("10.9.0.2".parse().unwrap()));
    a.handle_get(id, T0, Err(DhtFailure("no peers".into())));
    assert!(actions(&mut a).is_empty());
    assert_eq!(a.poll_timeout(), Some(T0 + cfg.retry_backoff));
    a.handle_timeout(T0 + cfg.retry_backoff);
    let (id2, key2) = the_get(&actions(&mut a));
    assert_eq!(key2, key);
    // A late answer to the old request is ignored.
    a.handle_get(id, T0 + secs(6), Ok(vec![]));
    assert!(actions(&mut a).is_empty());
    // No answer at all: the request times out and is retried.
    let t = T0 + cfg.retry_backoff + cfg.request_timeout;
    assert_eq!(a.poll_timeout(), Some(t));
    a.handle_timeout(t);
    assert!(actions(&mut a).is_empty());
    a.handle_timeout(t + cfg.retry_backoff);
    let (id3, _) = the_get(&actions(&mut a));
    assert_ne!(id2, id3);
    assert_eq!(a.stats().failed_requests, 2);
}

#[test]
fn a_lone_node_walks_probe_put_settle_confirm_and_renews() {
    let cfg = test_config();
    let mut a = alloc(vec![(one_free(), Assignment::Allocate)]);
    a.start(T0);
    let (g, _) = the_get(&actions(&mut a));
    a.handle_get(g, T0, Ok(vec![]));
    let (p, claim) = the_put(&actions(&mut a));
    assert_eq!(claim.owner, owner(1));
    assert_eq!(claim.expiry - claim.lease_start, cfg.lease);
    assert!(!claim.fixed && !claim.released);
    // Even a failed put goes on to the confirm read.
    a.handle_put(p, T0, Err(DhtFailure("quorum failed".into())));
    assert_eq!(a.poll_timeout(), Some(T0 + cfg.settle));
    a.handle_timeout(T0 + cfg.settle);
    let (c, _) = the_get(&actions(&mut a));
    let rec = SignedRecord {
        owner: owner(1),
        value: claim.encode(),
    };
    a.handle_get(c, T0 + cfg.settle, Ok(vec![rec]));
    assert_eq!(
        actions(&mut a),
        vec![Action::AddressAcquired {
            addr: claim.addr,
            prefix: 30
        }]
    );
    // Checks every check_interval, renews at renew_after.
    let t = T0 + cfg.settle + cfg.check_interval;
    assert_eq!(a.poll_timeout(), Some(t));
    a.handle_timeout(t);
    let (chk, _) = the_get(&actions(&mut a));
    a.handle_get(chk, t, Ok(vec![]));
    // Nothing visible any more: our claim is put again at once.
    let (p2, c2) = the_put(&actions(&mut a));
    assert_eq!(c2.since, claim.since);
    assert!(c2.seq > claim.seq);
    a.handle_put(p2, t, Ok(()));
    assert_eq!(a.addresses(), vec![(claim.addr, 30)]);
}

#[test]
fn release_withdraws_a_claim_even_while_waiting_to_retry() {
    let cfg = test_config();
    let mut a = alloc(vec![(one_free(), Assignment::Allocate)]);
    a.start(T0);
    let (g, _) = the_get(&actions(&mut a));
    a.handle_get(g, T0, Ok(vec![]));
    let (p, claim) = the_put(&actions(&mut a));
    a.handle_put(p, T0, Ok(()));
    a.handle_timeout(T0 + cfg.settle);
    let (c, _) = the_get(&actions(&mut a));
    // The confirm read fails: the slot waits to re-probe, claim still out.
    a.handle_get(c, T0 + cfg.settle, Err(DhtFailure("timeout".into())));
    assert!(actions(&mut a).is_empty());
    a.release(T0 + secs(4));
    let (_, t) = the_put(&actions(&mut a));
    assert!(t.released);
    assert_eq!(t.addr, claim.addr);
    assert!(t.seq > claim.seq && t.expiry >= claim.expiry);
    // Nothing more happens after a release.
    assert_eq!(a.poll_timeout(), None);
    // Releasing before anything was claimed puts nothing.
    let mut b = alloc(vec![(one_free(), Assignment::Allocate)]);
    b.start(T0);
    let _ = actions(&mut b);
    b.release(T0);
    assert!(actions(&mut b).is_empty());
}

#[test]
fn setup_errors_are_reported() {
    let rng = || Box::new(RngRandom(ChaCha8Rng::seed_from_u64(1)));
    let two_v4 = vec![
        (range("10.0.0.0/24"), Assignment::Allocate),
        (range("10.1.0.0/24"), Assignment::Allocate),
    ];
    assert!(matches!(
        Allocator::new(GROUP, &owner(1), two_v4, test_config(), rng()),
        Err(AddrError::Setup(_))
    ));
    let outside = vec![(
        range("10.0.0.0/24"),
        Assignment::Fixed("10.0.1.1".parse().unwrap()),
    )];
    assert!(Allocator::new(GROUP, &owner(1), outside, test_config(), rng()).is_err());
    let bcast = vec![(
        range("10.0.0.0/24"),
        Assignment::Fixed("10.0.0.255".parse().unwrap()),
    )];
    assert!(Allocator::new(GROUP, &owner(1), bcast, test_config(), rng()).is_err());
    assert!(Allocator::new(GROUP, &owner(1), vec![], test_config(), rng()).is_err());
    assert!(Allocator::new(
        "",
        &owner(1),
        vec![(one_free(), Assignment::Allocate)],
        test_config(),
        rng()
    )
    .is_err());
    let bad = Config {
        renew_after: Duration::from_secs(600),
        ..test_config()
    };
    assert!(matches!(
        Allocator::new(
            GROUP,
            &owner(1),
            vec![(one_free(), Assignment::Allocate)],
            bad,
            rng()
        ),
        Err(AddrError::Config(_))
    ));
}

fn any_claim() -> impl Strategy<Value = Claim> {
    (
        "[a-z0-9][a-z0-9._-]{0,63}",
        any::<bool>(),
        any::<[u8; 16]>(),
        proptest::collection::vec(any::<u8>(), 1..=128),
        any::<(bool, bool)>(),
        0u64..1 << 50,
        0u64..1 << 40,
        1u64..=24 * 3600 * 1000,
        any::<u64>(),
    )
        .prop_map(
            |(group, v4, a, owner, (fixed, released), since, held, lease, seq)| {
                let addr: IpAddr = if v4 {
                    IpAddr::from([a[0], a[1], a[2], a[3]])
                } else {
                    IpAddr::from(a)
                };
                let since = Duration::from_millis(since);
                let lease_start = since + Duration::from_millis(held);
                Claim {
                    group,
                    addr,
                    owner,
                    fixed,
                    released,
                    since,
                    lease_start,
                    expiry: lease_start + Duration::from_millis(lease),
                    seq,
                }
            },
        )
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Claim::decode(&bytes);
        let mut with_magic = b"GVAC\x01".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = Claim::decode(&with_magic);
    }

    #[test]
    fn claims_roundtrip(c in any_claim()) {
        prop_assert_eq!(Claim::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn mutated_claims_decode_or_fail_cleanly(c in any_claim(), pos in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let mut v = c.encode();
        let i = pos % v.len();
        v[i] = byte;
        let _ = Claim::decode(&v);
        v.truncate(cut % (v.len() + 1));
        let _ = Claim::decode(&v);
    }

    #[test]
    fn garbage_records_never_break_the_allocator(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..6)) {
        let mut a = alloc(vec![(one_free(), Assignment::Allocate)]);
        a.start(T0);
        let (id, _) = the_get(&actions(&mut a));
        let n = values.len() as u64;
        let recs = values.into_iter().map(|value| SignedRecord { owner: owner(9), value }).collect();
        a.handle_get(id, T0, Ok(recs));
        // Garbage is no claim: the address is free and gets claimed.
        let (_, c) = the_put(&actions(&mut a));
        prop_assert_eq!(c.addr, "10.9.0.2".parse::<IpAddr>().unwrap());
        prop_assert_eq!(a.stats().malformed, n);
    }
}
