//! Fixtures shared by the overlay's unit tests: a fixed clock, a group CA
//! for `lab` (10.77.0.0/24) and member certificates.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vpn_pki::{AddressAssignment, CaParams, CertProfile, GroupCa, NodeIdentity, Role};

pub(crate) const DAY: Duration = Duration::from_secs(86_400);

/// The tests' "now" (2026-01-01).
pub(crate) fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// A CA for the group `lab`, range 10.77.0.0/24, valid a year from `t0`.
pub(crate) fn ca() -> GroupCa {
    GroupCa::init(
        &CaParams {
            group: "lab".into(),
            ranges: vec!["10.77.0.0/24".parse().unwrap()],
            validity: 365 * DAY,
        },
        t0(),
    )
    .unwrap()
}

pub(crate) fn a(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A member certificate (DER) named `n1` for `id`, issued at `t0`.
pub(crate) fn issue(
    ca: &GroupCa,
    id: &NodeIdentity,
    address: AddressAssignment,
    validity: Duration,
) -> Vec<u8> {
    ca.issue(
        &id.public_key(),
        &CertProfile {
            name: "n1".into(),
            address,
            roles: vec![Role::Member],
            validity,
        },
        t0(),
    )
    .unwrap()
    .der()
    .to_vec()
}
