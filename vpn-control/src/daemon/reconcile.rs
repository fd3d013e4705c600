//! Declarative reconciliation: what the data plane and the VPN interface
//! should look like, computed from the lab peers and the overlay's
//! [`GroupView`]. Pure functions; the daemon applies the result on every
//! view change (the data planes' `apply` and `netdev::ensure` only change
//! what differs).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use libp2p::PeerId;

use crate::config::values::prefix_contains;
use crate::config::InterfaceAddress;
use crate::dataplane::{DesiredPeer, DesiredState, Prefix};
use crate::overlay::GroupView;

/// Data-plane ids of overlay peers: assigned on first sight, after the lab
/// peers' ids, and never reused or changed for the daemon's lifetime (a
/// member that leaves and comes back keeps its id, so its counters in
/// `status` continue).
#[derive(Clone, Debug)]
pub struct PeerIds {
    next: u32,
    ids: HashMap<PeerId, u32>,
    peers: HashMap<u32, PeerId>,
}

impl PeerIds {
    /// Ids start at `first` (one above the highest lab id).
    pub fn new(first: u32) -> Self {
        Self {
            next: first.max(1),
            ids: HashMap::new(),
            peers: HashMap::new(),
        }
    }

    /// The id of `peer`, assigning the next free one on first use.
    pub fn id(&mut self, peer: &PeerId) -> u32 {
        if let Some(id) = self.ids.get(peer) {
            return *id;
        }
        let id = self.next;
        self.next += 1;
        self.ids.insert(*peer, id);
        self.peers.insert(id, *peer);
        id
    }

    /// The PeerId behind data-plane id `id`, if it is an overlay peer's.
    pub fn peer_of(&self, id: u32) -> Option<PeerId> {
        self.peers.get(&id).copied()
    }
}

/// A verified peer address left out of the data plane, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub peer: PeerId,
    pub addr: IpAddr,
    pub reason: &'static str,
}

fn host(addr: IpAddr) -> Prefix {
    Prefix {
        addr,
        len: if addr.is_ipv4() { 32 } else { 128 },
    }
}

/// The desired data-plane state: the lab peers unchanged, plus one peer per
/// member in the view with
/// - a stable id from `ids`,
/// - `allowed` = the host prefixes of its verified addresses (an address
///   outside the group's `ranges`, one of ours, already a lab peer's
///   prefix, or held by a member with a lower PeerId is left out and
///   reported in the second value),
/// - `endpoint` = its first endpoint candidate,
/// - `tx`/`rx` = its keys from the view.
pub fn desired(
    lab: &DesiredState,
    view: &GroupView,
    ranges: &[Prefix],
    own: &[IpAddr],
    ids: &mut PeerIds,
) -> (DesiredState, Vec<Skipped>) {
    let mut out = lab.clone();
    let mut skipped = Vec::new();
    let mut taken: BTreeSet<Prefix> = BTreeSet::new();
    for (peer, pv) in &view.peers {
        let id = ids.id(peer);
        let mut allowed = Vec::new();
        for addr in &pv.addresses {
            let p = host(*addr);
            let reason = if !ranges.iter().any(|r| prefix_contains(r, *addr)) {
                Some("it is outside the group's ranges")
            } else if own.contains(addr) {
                Some("it is this node's own address")
            } else if lab.peers.values().any(|l| l.allowed.contains(&p)) {
                Some("a lab peer owns it")
            } else if allowed.contains(&p) {
                None
            } else if !taken.insert(p) {
                Some("another member holds it")
            } else {
                allowed.push(p);
                None
            };
            if let Some(reason) = reason {
                skipped.push(Skipped {
                    peer: *peer,
                    addr: *addr,
                    reason,
                });
            }
        }
        out.peers.insert(
            id,
            DesiredPeer {
                id,
                name: pv.name.clone(),
                endpoint: pv.endpoints.first().copied(),
                allowed,
                tx: pv.keys.tx,
                rx: pv.keys.rx.clone(),
            },
        );
    }
    (out, skipped)
}

/// The VPN interface's addresses: the configured ones if any, else the
/// overlay's (fixed by the certificate, or allocated; with the group
/// range's prefix length).
pub fn interface_addresses(
    configured: &[InterfaceAddress],
    view: &GroupView,
) -> Vec<InterfaceAddress> {
    if !configured.is_empty() {
        return configured.to_vec();
    }
    view.addresses
        .iter()
        .map(|(addr, len)| InterfaceAddress {
            addr: *addr,
            len: *len,
        })
        .collect()
}

/// Whether the data plane can send to `dst` now: some peer owns it (longest
/// prefix) and has a sending key and an endpoint.
pub fn can_send(desired: &DesiredState, dst: IpAddr) -> bool {
    desired
        .peers
        .values()
        .flat_map(|p| p.allowed.iter().map(move |a| (a, p)))
        .filter(|(a, _)| prefix_contains(a, dst))
        .max_by_key(|(a, _)| a.len)
        .is_some_and(|(_, p)| p.tx.is_some() && p.endpoint.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{RxKey, TxKey};
    use crate::overlay::session_driver::PeerKeys;
    use crate::overlay::PeerView;

    fn pid(n: u8) -> PeerId {
        let id = vpn_pki::NodeIdentity::from_seed([n; 32]).unwrap();
        crate::overlay::ids::keypair_of(&id).public().to_peer_id()
    }

    fn keys(n: u8) -> PeerKeys {
        PeerKeys {
            tx: Some(TxKey {
                key: [n; 32],
                remote_index: u32::from(n) + 100,
                initial_counter: 0,
            }),
            rx: vec![RxKey {
                key: [n + 1; 32],
                local_index: u32::from(n) + 200,
            }],
        }
    }

    fn member(name: &str, addrs: &[&str], eps: &[&str], k: PeerKeys) -> PeerView {
        PeerView {
            name: name.into(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            endpoints: eps.iter().map(|a| a.parse().unwrap()).collect(),
            keys: k,
        }
    }

    fn ranges() -> Vec<Prefix> {
        vec![
            crate::config::values::parse_prefix("10.77.0.0/24").unwrap(),
            crate::config::values::parse_prefix("fd77::/64").unwrap(),
        ]
    }

    fn lab() -> DesiredState {
        let mut d = DesiredState::default();
        d.peers.insert(
            1,
            DesiredPeer {
                id: 1,
                name: "lab".into(),
                endpoint: Some("192.168.77.9:51830".parse().unwrap()),
                allowed: vec![host("10.77.0.9".parse().unwrap())],
                tx: Some(TxKey {
                    key: [9; 32],
                    remote_index: 9,
                    initial_counter: 12345,
                }),
                rx: vec![],
            },
        );
        d
    }

    #[test]
    fn members_become_peers_with_stable_ids() {
        let me = pid(1);
        let (a, b) = (pid(2), pid(3));
        let mut view = GroupView::empty(me);
        view.addresses = vec![("10.77.0.1".parse().unwrap(), 24)];
        view.peers.insert(
            a,
            member(
                "a",
                &["10.77.0.2", "fd77::2"],
                &["192.168.77.2:51830", "192.168.88.2:51830"],
                keys(2),
            ),
        );
        let own = ["10.77.0.1".parse().unwrap()];
        let mut ids = PeerIds::new(2);
        let (d, skipped) = desired(&lab(), &view, &ranges(), &own, &mut ids);
        assert!(skipped.is_empty());
        assert_eq!(d.peers.len(), 2);
        assert_eq!(d.peers[&1], lab().peers[&1], "lab peer untouched");
        let pa = &d.peers[&2];
        assert_eq!(pa.name, "a");
        assert_eq!(pa.endpoint, Some("192.168.77.2:51830".parse().unwrap()));
        assert_eq!(
            pa.allowed,
            vec![
                host("10.77.0.2".parse().unwrap()),
                host("fd77::2".parse().unwrap())
            ]
        );
        assert_eq!(pa.tx, keys(2).tx);
        assert_eq!(pa.rx, keys(2).rx);
        assert!(can_send(&d, "10.77.0.2".parse().unwrap()));
        assert!(!can_send(&d, "10.77.0.3".parse().unwrap()));

        // b appears (sorting before or after a does not matter): a keeps
        // its id; a leaves and comes back: same id again.
        view.peers
            .insert(b, member("b", &["10.77.0.3"], &[], PeerKeys::default()));
        let (d2, _) = desired(&lab(), &view, &ranges(), &own, &mut ids);
        assert_eq!(d2.peers[&2], d.peers[&2]);
        assert_eq!(d2.peers[&3].name, "b");
        assert_eq!(d2.peers[&3].endpoint, None);
        assert!(!can_send(&d2, "10.77.0.3".parse().unwrap()), "no keys yet");
        let removed = view.peers.remove(&a).unwrap();
        let (d3, _) = desired(&lab(), &view, &ranges(), &own, &mut ids);
        assert!(!d3.peers.contains_key(&2));
        view.peers.insert(a, removed);
        let (d4, _) = desired(&lab(), &view, &ranges(), &own, &mut ids);
        assert_eq!(d4, d2, "same input, same output (idempotent apply)");
        assert_eq!(ids.peer_of(3), Some(b));
        assert_eq!(ids.peer_of(1), None);
    }

    #[test]
    fn conflicting_addresses_are_left_out() {
        let me = pid(1);
        let (a, b) = (pid(2), pid(3));
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let mut view = GroupView::empty(me);
        view.peers.insert(
            lo,
            member(
                "lo",
                &["10.77.0.5", "10.77.0.1", "10.77.0.9", "192.0.2.1"],
                &[],
                keys(4),
            ),
        );
        view.peers
            .insert(hi, member("hi", &["10.77.0.5", "10.77.0.6"], &[], keys(5)));
        let own = ["10.77.0.1".parse().unwrap()];
        let mut ids = PeerIds::new(2);
        let (d, skipped) = desired(&lab(), &view, &ranges(), &own, &mut ids);
        let id_lo = ids.id(&lo);
        let id_hi = ids.id(&hi);
        assert_eq!(
            d.peers[&id_lo].allowed,
            vec![host("10.77.0.5".parse().unwrap())]
        );
        assert_eq!(
            d.peers[&id_hi].allowed,
            vec![host("10.77.0.6".parse().unwrap())]
        );
        let reasons: Vec<(PeerId, String, &str)> = skipped
            .iter()
            .map(|s| (s.peer, s.addr.to_string(), s.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (lo, "10.77.0.1".into(), "it is this node's own address"),
                (lo, "10.77.0.9".into(), "a lab peer owns it"),
                (lo, "192.0.2.1".into(), "it is outside the group's ranges"),
                (hi, "10.77.0.5".into(), "another member holds it"),
            ]
        );
    }

    #[test]
    fn interface_addresses_configured_or_from_the_view() {
        let mut view = GroupView::empty(pid(1));
        assert!(interface_addresses(&[], &view).is_empty());
        view.addresses = vec![("10.77.0.7".parse().unwrap(), 24)];
        assert_eq!(
            interface_addresses(&[], &view),
            vec!["10.77.0.7/24".parse().unwrap()]
        );
        let conf: Vec<InterfaceAddress> = vec!["10.77.0.7/16".parse().unwrap()];
        assert_eq!(interface_addresses(&conf, &view), conf);
    }
}
