//! A tiny in-memory DHT model and an event-driven simulator that drives
//! many allocators against it.
//!
//! The model keeps, per key, one claim per owner (the highest `seq` wins,
//! as [`latest_per_owner`] prescribes) or, with `lww`, only the last value
//! written (plain Kademlia record semantics). A put becomes visible after a
//! random replication delay, or never with probability `loss` (the put is
//! still acknowledged `Ok`, the worst case for the core). Reads see what is
//! visible when they are answered; records past their expiry are gone.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::addr::{
    Action, AddrError, Allocator, Assignment, Claim, Config, LostReason, Range, RequestId,
    RngRandom, SignedRecord,
};

/// Model knobs.
#[derive(Clone, Debug)]
pub struct Knobs {
    /// Upper bound of the replication delay of a put.
    pub replication: Duration,
    /// Upper bound of the time to answer a request.
    pub latency: Duration,
    /// Probability that a put never becomes visible.
    pub loss: f64,
    /// Last-writer-wins store instead of a claim set per key.
    pub lww: bool,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            replication: Duration::from_millis(1500),
            latency: Duration::from_millis(200),
            loss: 0.0,
            lww: false,
        }
    }
}

#[derive(Clone, Debug)]
struct Stored {
    rec: SignedRecord,
    seq: u64,
    expires: Duration,
}

#[derive(Debug)]
enum Ev {
    GetReply {
        node: usize,
        id: RequestId,
        key: Vec<u8>,
    },
    PutAck {
        node: usize,
        id: RequestId,
    },
    Visible {
        key: Vec<u8>,
        stored: Stored,
    },
}

/// Everything a node reported.
#[derive(Debug, Default)]
pub struct NodeLog {
    pub acquired: Vec<(Duration, IpAddr)>,
    pub lost: Vec<(Duration, IpAddr, LostReason)>,
    pub errors: Vec<(Duration, AddrError)>,
}

pub struct Node {
    pub owner: Vec<u8>,
    pub alloc: Allocator,
    pub alive: bool,
    /// Addresses the node has configured (from its actions).
    pub held: HashSet<IpAddr>,
    pub log: NodeLog,
    /// The node's clock minus the true time, in ms.
    pub skew_ms: i64,
}

impl Node {
    /// The node's reading of the true time `t`.
    fn local(&self, t: Duration) -> Duration {
        shift(t, self.skew_ms)
    }

    /// The true time at which the node's clock reads `t`.
    fn global(&self, t: Duration) -> Duration {
        shift(t, -self.skew_ms)
    }
}

fn shift(t: Duration, ms: i64) -> Duration {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        t + d
    } else {
        t.saturating_sub(d)
    }
}

pub struct Sim {
    pub now: Duration,
    pub knobs: Knobs,
    pub nodes: Vec<Node>,
    store: HashMap<Vec<u8>, Vec<Stored>>,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: BTreeMap<u64, Ev>,
    ev_seq: u64,
    rng: ChaCha8Rng,
    seed: u64,
    /// Largest number of nodes holding one address at once, per address.
    pub max_holders: HashMap<IpAddr, usize>,
}

pub const GROUP: &str = "lab";
/// An arbitrary wall-clock origin (2026-01-01).
pub const T0: Duration = Duration::from_secs(1_767_225_600);

pub fn owner(i: usize) -> Vec<u8> {
    let mut o = b"\x00\x24peer-".to_vec();
    o.extend_from_slice(format!("{i:08}").as_bytes());
    o
}

pub fn test_config() -> Config {
    Config::default()
}

impl Sim {
    pub fn new(seed: u64, knobs: Knobs) -> Self {
        Self {
            now: T0,
            knobs,
            nodes: Vec::new(),
            store: HashMap::new(),
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            ev_seq: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seed,
            max_holders: HashMap::new(),
        }
    }

    /// Adds a node (not started) and returns its index.
    pub fn add(
        &mut self,
        owner_bytes: Vec<u8>,
        ranges: Vec<(Range, Assignment)>,
        cfg: Config,
    ) -> usize {
        let i = self.nodes.len();
        let rng = RngRandom(ChaCha8Rng::seed_from_u64(
            self.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
        ));
        let alloc = Allocator::new(GROUP, &owner_bytes, ranges, cfg, Box::new(rng)).unwrap();
        self.nodes.push(Node {
            owner: owner_bytes,
            alloc,
            alive: true,
            held: HashSet::new(),
            log: NodeLog::default(),
            skew_ms: 0,
        });
        i
    }

    pub fn start(&mut self, i: usize) {
        let now = self.nodes[i].local(self.now);
        self.nodes[i].alloc.start(now);
        self.drain(i);
    }

    /// The node stops without a word (crash, cable pulled).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        self.nodes[i].held.clear();
    }

    /// Clean shutdown: release, then the node is gone (its tombstones are
    /// in flight).
    pub fn release(&mut self, i: usize) {
        let now = self.nodes[i].local(self.now);
        self.nodes[i].alloc.release(now);
        self.drain(i);
        self.nodes[i].alive = false;
    }

    fn schedule(&mut self, at: Duration, ev: Ev) {
        self.ev_seq += 1;
        self.events.insert(self.ev_seq, ev);
        self.queue.push(Reverse((at, self.ev_seq)));
    }

    fn jitter(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        let us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.rng.random_range(0..=us))
    }

    fn drain(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].alloc.poll_action() {
            let now = self.now;
            match a {
                Action::Get { id, key } => {
                    let at = now + self.jitter(self.knobs.latency);
                    self.schedule(at, Ev::GetReply { node: i, id, key });
                }
                Action::Put {
                    id,
                    key,
                    value,
                    expires,
                } => {
                    let seq = Claim::decode(&value).map(|c| c.seq).unwrap_or(0);
                    let stored = Stored {
                        rec: SignedRecord {
                            owner: self.nodes[i].owner.clone(),
                            value,
                        },
                        seq,
                        expires,
                    };
                    if !self.rng.random_bool(self.knobs.loss) {
                        let at = now + self.jitter(self.knobs.replication);
                        self.schedule(at, Ev::Visible { key, stored });
                    }
                    let at = now + self.jitter(self.knobs.latency);
                    self.schedule(at, Ev::PutAck { node: i, id });
                }
                Action::AddressAcquired { addr, .. } => {
                    self.nodes[i].held.insert(addr);
                    self.nodes[i].log.acquired.push((now, addr));
                    self.note_holders(addr);
                }
                Action::AddressLost { addr, reason } => {
                    self.nodes[i].held.remove(&addr);
                    self.nodes[i].log.lost.push((now, addr, reason));
                }
                Action::Error(e) => self.nodes[i].log.errors.push((now, e)),
            }
        }
    }

    fn note_holders(&mut self, addr: IpAddr) {
        let n = self
            .nodes
            .iter()
            .filter(|n| n.alive && n.held.contains(&addr))
            .count();
        let m = self.max_holders.entry(addr).or_insert(0);
        *m = (*m).max(n);
    }

    /// Live records under `key` now.
    pub fn read(&self, key: &[u8]) -> Vec<SignedRecord> {
        self.store
            .get(key)
            .map(|v| {
                v.iter()
                    .filter(|s| s.expires > self.now)
                    .map(|s| s.rec.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Inserts a raw record as if some member had put it.
    pub fn inject(&mut self, key: Vec<u8>, rec: SignedRecord, expires: Duration) {
        let stored = Stored {
            rec,
            seq: u64::MAX,
            expires,
        };
        self.store.entry(key).or_default().push(stored);
    }

    fn apply(&mut self, key: Vec<u8>, stored: Stored) {
        let v = self.store.entry(key).or_default();
        if self.knobs.lww {
            *v = vec![stored];
            return;
        }
        match v.iter_mut().find(|s| s.rec.owner == stored.rec.owner) {
            Some(cur) if cur.seq >= stored.seq => {}
            Some(cur) => *cur = stored,
            None => v.push(stored),
        }
    }

    /// Runs until `until`.
    pub fn run_until(&mut self, until: Duration) {
        let mut spins = 0u32;
        let mut last = Duration::ZERO;
        loop {
            let next_ev = self.queue.peek().map(|r| r.0 .0);
            let next_timer = self
                .nodes
                .iter()
                .filter(|n| n.alive)
                .filter_map(|n| n.alloc.poll_timeout().map(|t| n.global(t)))
                .min();
            let next = match (next_ev, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            if next == last {
                spins += 1;
                assert!(
                    spins < 100_000,
                    "simulation stuck at {next:?} (now {:?}): {:?}",
                    self.now,
                    self.nodes
                        .iter()
                        .map(|n| (
                            n.alive,
                            n.skew_ms,
                            n.alloc.poll_timeout().map(|t| n.global(t))
                        ))
                        .collect::<Vec<_>>()
                );
            } else {
                spins = 0;
                last = next;
            }
            self.now = self.now.max(next);
            if next_ev == Some(next) {
                let Some(Reverse((_, seq))) = self.queue.pop() else {
                    break;
                };
                let Some(ev) = self.events.remove(&seq) else {
                    continue;
                };
                self.deliver(ev);
            } else {
                for i in 0..self.nodes.len() {
                    let n = &self.nodes[i];
                    let due = n.alive
                        && n.alloc
                            .poll_timeout()
                            .is_some_and(|t| n.global(t) <= self.now);
                    if due {
                        let now = n.local(self.now);
                        self.nodes[i].alloc.handle_timeout(now);
                        self.drain(i);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    fn deliver(&mut self, ev: Ev) {
        match ev {
            Ev::Visible { key, stored } => self.apply(key, stored),
            Ev::GetReply { node, id, key } => {
                if self.nodes[node].alive {
                    let now = self.nodes[node].local(self.now);
                    let recs = self.read(&key);
                    self.nodes[node].alloc.handle_get(id, now, Ok(recs));
                    self.drain(node);
                }
            }
            Ev::PutAck { node, id } => {
                if self.nodes[node].alive {
                    let now = self.nodes[node].local(self.now);
                    self.nodes[node].alloc.handle_put(id, now, Ok(()));
                    self.drain(node);
                }
            }
        }
    }

    /// Addresses held by live nodes, with their holders.
    pub fn holders(&self) -> HashMap<IpAddr, Vec<usize>> {
        let mut m: HashMap<IpAddr, Vec<usize>> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.alive {
                for a in &n.held {
                    m.entry(*a).or_default().push(i);
                }
            }
        }
        m
    }

    /// The winner of the claims stored under `addr`'s key now.
    pub fn dht_winner(&self, addr: IpAddr) -> Option<Vec<u8>> {
        let claims: Vec<Claim> = self
            .read(&crate::addr::dht_key(addr))
            .iter()
            .filter_map(|r| Claim::decode(&r.value).ok())
            .collect();
        crate::addr::resolve(&claims, self.now).map(|c| c.owner.clone())
    }
}

pub fn range(s: &str) -> Range {
    Range::parse(s).unwrap()
}

/// A /30 with one of its two hosts reserved: exactly one free address,
/// `10.9.0.2`.
pub fn one_free() -> Range {
    let mut r = range("10.9.0.0/30");
    r.reserve("10.9.0.1".parse().unwrap());
    r
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
