//! Shared fixtures for the vpn-pki integration tests.
#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use vpn_pki::{AddressAssignment, CaParams, CertProfile, GroupCa, NodeIdentity, Role};

pub const DAY: Duration = Duration::from_secs(86_400);

/// A fixed "now" for the library tests: 2026-01-01T00:00:00Z.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

pub fn ca_params(group: &str) -> CaParams {
    CaParams {
        group: group.into(),
        ranges: vec![
            "10.77.0.0/24".parse().unwrap(),
            "fd77::/64".parse().unwrap(),
        ],
        validity: 365 * DAY,
    }
}

pub fn ca(group: &str, now: SystemTime) -> GroupCa {
    GroupCa::init(&ca_params(group), now).unwrap()
}

pub fn profile(name: &str) -> CertProfile {
    CertProfile {
        name: name.into(),
        address: AddressAssignment::Fixed(vec!["10.77.0.5".parse().unwrap()]),
        roles: vec![Role::Member, Role::Relay],
        validity: 90 * DAY,
    }
}

pub fn node() -> NodeIdentity {
    NodeIdentity::generate()
}
