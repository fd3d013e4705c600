//! The twin's tables: routes (cryptokey routing), send and receive
//! sessions, counters. Workers read an immutable snapshot ([`Tables`]) that
//! `apply` replaces as a whole; everything that must survive a replacement
//! (send counters, replay windows, traffic counters) lives in shared,
//! reference-counted entries that `apply` carries over.

use std::cell::UnsafeCell;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use vpn_common::replay::{self, ReplayError, ReplayWindow};
use vpn_common::stats::{Counter, COUNTER_COUNT};

use super::packet::Cipher;
use crate::dataplane::{DesiredState, PeerCounters, Prefix};

/// Global counters, indexed by [`Counter`].
pub struct Counters([AtomicU64; COUNTER_COUNT as usize]);

impl Default for Counters {
    fn default() -> Self {
        Counters(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl Counters {
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        self.0[c as usize].fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize].load(Ordering::Relaxed)
    }
}

/// Per-peer traffic counters.
#[derive(Default)]
pub struct PeerStats {
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
}

impl PeerStats {
    pub fn snapshot(&self) -> PeerCounters {
        PeerCounters {
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            tx_bytes: self.tx_bytes.load(Ordering::Relaxed),
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            rx_bytes: self.rx_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The sending half of a session. The counter only moves forward.
pub struct TxSession {
    key: [u8; 32],
    pub remote_index: u32,
    pub cipher: Cipher,
    counter: AtomicU64,
}

impl TxSession {
    fn new(key: [u8; 32], remote_index: u32, initial_counter: u64) -> Self {
        TxSession {
            key,
            remote_index,
            cipher: Cipher::new(&key),
            counter: AtomicU64::new(initial_counter),
        }
    }

    /// Reserves `n` consecutive counters; `None` when the key is exhausted.
    #[inline]
    pub fn reserve(&self, n: u64) -> Option<u64> {
        // Never wraps: u64::MAX is never a valid counter (the replay window
        // refuses it), and once exhausted the session stays exhausted.
        self.counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                c.checked_add(n).filter(|&end| end < u64::MAX)
            })
            .ok()
    }

    #[cfg(test)]
    pub fn next_counter(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }
}

/// The receiving half of a session, with its replay window on the heap.
pub struct RxSession {
    key: [u8; 32],
    pub peer_id: u32,
    pub cipher: Cipher,
    window: Box<UnsafeCell<ReplayWindow>>,
}

// SAFETY: the replay window is only accessed through `vpn_common::replay`,
// which uses atomics exclusively; the other fields are immutable.
unsafe impl Sync for RxSession {}

impl RxSession {
    fn new(key: [u8; 32], peer_id: u32) -> Self {
        RxSession {
            key,
            peer_id,
            cipher: Cipher::new(&key),
            window: Box::new(UnsafeCell::new(ReplayWindow::new())),
        }
    }

    /// Cheap pre-check before decryption.
    #[inline]
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        // SAFETY: the window is live for `self`'s lifetime, 8-byte aligned
        // (heap allocation of a u64 struct) and only accessed atomically.
        unsafe { replay::check(self.window.get(), counter) }
    }

    /// Marks an authenticated counter as seen.
    #[inline]
    pub fn check_and_set(&self, counter: u64) -> Result<(), ReplayError> {
        // SAFETY: as in `check`.
        unsafe { replay::check_and_set(self.window.get(), counter) }
    }
}

/// A peer as the workers see it.
pub struct Peer {
    pub id: u32,
    pub endpoint: Option<SocketAddr>,
    pub tx: Option<Arc<TxSession>>,
    pub stats: Arc<PeerStats>,
}

/// Longest-prefix match over a few prefix lengths: one hash map per length.
#[derive(Default)]
pub struct RouteTable {
    /// (prefix length, network as u128 (IPv4 in the low 32 bits) -> peer id),
    /// longest first.
    v4: Vec<(u8, HashMap<u128, u32>)>,
    v6: Vec<(u8, HashMap<u128, u32>)>,
}

fn addr_bits(a: IpAddr) -> (bool, u128, u8) {
    match a {
        IpAddr::V4(a) => (true, u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (false, u128::from(a), 128),
    }
}

fn mask_bits(bits: u128, width: u8, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let m = if width == 32 {
            u128::from(u32::MAX << (32 - u32::from(len)))
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        bits & m
    }
}

impl RouteTable {
    pub fn insert(&mut self, p: Prefix, peer: u32) {
        let (v4, bits, width) = addr_bits(p.addr);
        let list = if v4 { &mut self.v4 } else { &mut self.v6 };
        let net = mask_bits(bits, width, p.len);
        match list.iter_mut().find(|(l, _)| *l == p.len) {
            Some((_, m)) => {
                m.insert(net, peer);
            }
            None => {
                list.push((p.len, HashMap::from([(net, peer)])));
                list.sort_by_key(|e| std::cmp::Reverse(e.0));
            }
        }
    }

    #[inline]
    pub fn lookup(&self, a: IpAddr) -> Option<u32> {
        let (v4, bits, width) = addr_bits(a);
        let list = if v4 { &self.v4 } else { &self.v6 };
        list.iter()
            .find_map(|(len, m)| m.get(&mask_bits(bits, width, *len)).copied())
    }
}

/// One immutable snapshot of everything the workers need.
#[derive(Default)]
pub struct Tables {
    pub routes: RouteTable,
    pub peers: HashMap<u32, Peer>,
    pub rx: HashMap<u32, Arc<RxSession>>,
}

/// Builds the next snapshot from `desired`, carrying over every session
/// whose key did not change (so its counter or replay window continues)
/// and every peer's traffic counters.
pub fn build(
    desired: &DesiredState,
    old: &Tables,
    stats: &mut BTreeMap<u32, Arc<PeerStats>>,
) -> Tables {
    let mut t = Tables::default();
    stats.retain(|id, _| desired.peers.contains_key(id));
    for (id, p) in &desired.peers {
        let prev = old.peers.get(id);
        let tx = p.tx.map(|want| match prev.and_then(|q| q.tx.as_ref()) {
            Some(cur) if cur.key == want.key && cur.remote_index == want.remote_index => {
                cur.clone()
            }
            _ => Arc::new(TxSession::new(
                want.key,
                want.remote_index,
                want.initial_counter,
            )),
        });
        for a in &p.allowed {
            t.routes.insert(*a, *id);
        }
        for rk in &p.rx {
            let s = match old.rx.get(&rk.local_index) {
                Some(cur) if cur.key == rk.key && cur.peer_id == *id => cur.clone(),
                _ => Arc::new(RxSession::new(rk.key, *id)),
            };
            t.rx.insert(rk.local_index, s);
        }
        let st = stats.entry(*id).or_default().clone();
        t.peers.insert(
            *id,
            Peer {
                id: *id,
                endpoint: p.endpoint,
                tx,
                stats: st,
            },
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{DesiredPeer, RxKey, TxKey};

    fn pfx(s: &str) -> Prefix {
        crate::config::values::parse_prefix(s).unwrap()
    }

    fn state(key: u8, counter: u64) -> DesiredState {
        let mut d = DesiredState::default();
        d.peers.insert(
            1,
            DesiredPeer {
                id: 1,
                name: "b".into(),
                endpoint: Some("192.0.2.1:1".parse().unwrap()),
                allowed: vec![pfx("10.0.0.0/8"), pfx("10.1.0.0/16"), pfx("fd00::/8")],
                tx: Some(TxKey {
                    key: [key; 32],
                    remote_index: 7,
                    initial_counter: counter,
                }),
                rx: vec![RxKey {
                    key: [key + 1; 32],
                    local_index: 9,
                }],
            },
        );
        d.peers.insert(
            2,
            DesiredPeer {
                id: 2,
                name: "c".into(),
                endpoint: None,
                allowed: vec![pfx("10.1.2.0/24"), pfx("fd00::5/128")],
                tx: None,
                rx: vec![],
            },
        );
        d
    }

    #[test]
    fn longest_prefix_wins() {
        let mut stats = BTreeMap::new();
        let t = build(&state(1, 0), &Tables::default(), &mut stats);
        let r = |a: &str| t.routes.lookup(a.parse().unwrap());
        assert_eq!(r("10.9.9.9"), Some(1));
        assert_eq!(r("10.1.9.9"), Some(1));
        assert_eq!(r("10.1.2.3"), Some(2));
        assert_eq!(r("11.0.0.1"), None);
        assert_eq!(r("fd00::5"), Some(2));
        assert_eq!(r("fd00::6"), Some(1));
        assert_eq!(r("fe00::6"), None);
        let mut rt = RouteTable::default();
        rt.insert(pfx("0.0.0.0/0"), 3);
        assert_eq!(rt.lookup("1.2.3.4".parse().unwrap()), Some(3));
        assert_eq!(rt.lookup("::1".parse().unwrap()), None);
    }

    #[test]
    fn reapply_keeps_counters_and_windows() {
        let mut stats = BTreeMap::new();
        let t1 = build(&state(1, 100), &Tables::default(), &mut stats);
        let tx = t1.peers[&1].tx.clone().unwrap();
        assert_eq!(tx.reserve(5), Some(100));
        t1.rx[&9].check_and_set(42).unwrap();
        t1.peers[&1]
            .stats
            .tx_packets
            .fetch_add(3, Ordering::Relaxed);
        // Same keys, even with a different initial counter (a restart-style
        // recomputation): nothing resets.
        let t2 = build(&state(1, 0), &t1, &mut stats);
        assert_eq!(t2.peers[&1].tx.as_ref().unwrap().next_counter(), 105);
        assert!(t2.rx[&9].check_and_set(42).is_err());
        assert_eq!(t2.peers[&1].stats.snapshot().tx_packets, 3);
        // New key: new session from its own initial counter, fresh window.
        let t3 = build(&state(3, 7), &t2, &mut stats);
        assert_eq!(t3.peers[&1].tx.as_ref().unwrap().next_counter(), 7);
        assert!(t3.rx[&9].check_and_set(42).is_ok());
        // Removed peer: gone, with its stats.
        let mut d = state(3, 7);
        d.peers.remove(&1);
        let t4 = build(&d, &t3, &mut stats);
        assert!(!t4.peers.contains_key(&1) && t4.rx.is_empty());
        assert!(!stats.contains_key(&1));
        assert_eq!(t4.routes.lookup("10.9.9.9".parse().unwrap()), None);
    }

    #[test]
    fn counter_exhaustion() {
        let s = TxSession::new([1; 32], 1, u64::MAX - 3);
        assert_eq!(s.reserve(1), Some(u64::MAX - 3));
        assert_eq!(s.reserve(2), None);
        assert_eq!(s.reserve(1), Some(u64::MAX - 2));
        assert_eq!(s.reserve(1), None);
        assert_eq!(s.reserve(1), None);
    }
}
