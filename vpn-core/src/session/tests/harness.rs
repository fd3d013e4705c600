//! A deterministic in-memory world: session cores, a simulated data plane
//! per node (index -> key maps fed by `Install`/`Remove`), a control channel
//! with request-response semantics, per-direction latencies and a drop
//! filter, and a data path whose packets must decrypt under an installed key.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Duration;

use rand::rngs::ChaCha8Rng;
use rand::{Rng, SeedableRng};
use ring::agreement::{EphemeralPrivateKey, X25519};

use crate::session::wire::Message;
use crate::session::{
    Action, Config, Entropy, Event, Identity, PendingQueue, SessionError, SessionManager, TxKey,
};

/// Seeded randomness; 4-byte fills (index draws) can be forced.
pub struct TestEntropy {
    rng: ChaCha8Rng,
    pub forced_indices: VecDeque<u32>,
}

impl TestEntropy {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            forced_indices: VecDeque::new(),
        }
    }
}

impl Entropy for TestEntropy {
    fn fill(&mut self, dest: &mut [u8]) {
        if dest.len() == 4 {
            if let Some(i) = self.forced_indices.pop_front() {
                dest.copy_from_slice(&i.to_le_bytes());
                return;
            }
        }
        self.rng.fill_bytes(dest);
    }

    fn ephemeral_key(&mut self) -> Result<EphemeralPrivateKey, SessionError> {
        let mut seed = [0; 32];
        self.rng.fill_bytes(&mut seed);
        // ring builds keys only from its own sealed sources; its test source
        // replays the seed so runs are reproducible.
        #[allow(deprecated)]
        let src = ring::test::rand::FixedSliceRandom { bytes: &seed };
        EphemeralPrivateKey::generate(&X25519, &src).map_err(|_| SessionError::Crypto)
    }
}

pub type Core = SessionManager<usize, TestEntropy>;

pub fn identity(n: usize) -> Identity {
    Identity {
        peer_id: format!("peer-{n}").into_bytes(),
        cert_fingerprint: vec![n as u8; 32],
    }
}

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

pub fn secs(v: u64) -> Duration {
    Duration::from_secs(v)
}

/// What the simulated data plane of one node holds.
#[derive(Default, Debug)]
pub struct Dp {
    pub tx: BTreeMap<usize, TxKey>,
    /// index -> (peer, key)
    pub rx: BTreeMap<u32, (usize, [u8; 32])>,
}

impl Dp {
    fn install(&mut self, peer: usize, tx: Option<TxKey>, rx: &[crate::session::RxKey]) {
        self.remove(peer);
        if let Some(t) = tx {
            assert_eq!(t.initial_counter, 0, "fresh keys start at 0");
            self.tx.insert(peer, t);
        }
        for r in rx {
            assert_ne!(r.local_index, 0);
            let prev = self.rx.insert(r.local_index, (peer, r.key));
            assert!(prev.is_none(), "index {} installed twice", r.local_index);
            if let Some(t) = tx {
                assert_ne!(t.key, r.key, "a direction shares a key");
            }
        }
    }

    fn remove(&mut self, peer: usize) {
        self.tx.remove(&peer);
        self.rx.retain(|_, (p, _)| *p != peer);
    }
}

#[derive(Debug)]
enum Flight {
    Req {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Resp {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Data {
        from: usize,
        to: usize,
        index: u32,
        key: [u8; 32],
    },
}

pub struct Node {
    pub core: Core,
    pub dp: Dp,
    pub events: Vec<(Duration, usize, Event)>,
    pub queue: PendingQueue<usize, u64>,
    pub errors: Vec<(Duration, SessionError)>,
    /// Packets handed to the data plane since the last traffic report, per peer.
    unreported: BTreeMap<usize, (u64, u64)>,
}

/// Drop filter for control messages: (now, from, to, message) -> drop?
pub type DropFn = Box<dyn FnMut(Duration, usize, usize, &Message) -> bool>;

pub struct World {
    pub now: Duration,
    pub nodes: Vec<Node>,
    /// Control latency per (from, to); default `ctrl`.
    pub ctrl_latency: BTreeMap<(usize, usize), Duration>,
    pub ctrl: Duration,
    pub data: Duration,
    pub drop: DropFn,
    /// Directed pairs with traffic, and the packet interval.
    pub traffic: Vec<(usize, usize)>,
    pub interval: Duration,
    heap: BinaryHeap<Reverse<(Duration, u64)>>,
    flights: BTreeMap<u64, Flight>,
    seq: u64,
    pub sent: u64,
    pub delivered: u64,
    /// (time, from, to, index) of packets that found no matching key.
    pub lost: Vec<(Duration, usize, usize, u32)>,
    /// Every control message delivered: (time, from, to, message).
    pub log: Vec<(Duration, usize, usize, Message)>,
    /// Every control message the drop filter took: (send time, from, to, message).
    pub dropped: Vec<(Duration, usize, usize, Message)>,
    /// Distinct sending keys seen per directed pair.
    pub tx_keys: BTreeMap<(usize, usize), Vec<[u8; 32]>>,
}

impl World {
    pub fn new(n: usize, cfg: &Config) -> Self {
        let nodes = (0..n)
            .map(|i| Self::make_node(i, n, cfg, 1000 + i as u64))
            .collect();
        Self {
            now: Duration::ZERO,
            nodes,
            ctrl_latency: BTreeMap::new(),
            ctrl: ms(20),
            data: ms(20),
            drop: Box::new(|_, _, _, _| false),
            traffic: Vec::new(),
            interval: ms(10),
            heap: BinaryHeap::new(),
            flights: BTreeMap::new(),
            seq: 0,
            sent: 0,
            delivered: 0,
            lost: Vec::new(),
            log: Vec::new(),
            dropped: Vec::new(),
            tx_keys: BTreeMap::new(),
        }
    }

    fn make_node(i: usize, n: usize, cfg: &Config, seed: u64) -> Node {
        let mut core = Core::new(cfg.clone(), identity(i), TestEntropy::new(seed)).unwrap();
        for j in (0..n).filter(|&j| j != i) {
            core.admit(j, identity(j));
        }
        Node {
            core,
            dp: Dp::default(),
            events: Vec::new(),
            queue: PendingQueue::new(64, 256),
            errors: Vec::new(),
            unreported: BTreeMap::new(),
        }
    }

    /// Replaces node `i` by a fresh process (no keys, new randomness).
    pub fn restart(&mut self, i: usize, seed: u64) {
        let cfg = self.nodes[i].core.config().clone();
        let n = self.nodes.len();
        self.nodes[i] = Self::make_node(i, n, &cfg, seed);
    }

    fn push(&mut self, at: Duration, f: Flight) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq)));
        self.flights.insert(self.seq, f);
    }

    fn ctrl_to(&self, from: usize, to: usize) -> Duration {
        *self.ctrl_latency.get(&(from, to)).unwrap_or(&self.ctrl)
    }

    fn send_ctrl(&mut self, from: usize, to: usize, bytes: Vec<u8>, request: bool) {
        let msg = Message::decode(&bytes).expect("cores emit valid messages");
        if (self.drop)(self.now, from, to, &msg) {
            self.dropped.push((self.now, from, to, msg));
            return;
        }
        let at = self.now + self.ctrl_to(from, to);
        let f = if request {
            Flight::Req { from, to, bytes }
        } else {
            Flight::Resp { from, to, bytes }
        };
        self.push(at, f);
    }

    fn send_data(&mut self, from: usize, to: usize) -> bool {
        let Some(tx) = self.nodes[from].dp.tx.get(&to).copied() else {
            return false;
        };
        let keys = self.tx_keys.entry((from, to)).or_default();
        if !keys.contains(&tx.key) {
            keys.push(tx.key);
        }
        self.sent += 1;
        self.nodes[from].unreported.entry(to).or_default().0 += 1;
        let at = self.now + self.data;
        self.push(
            at,
            Flight::Data {
                from,
                to,
                index: tx.remote_index,
                key: tx.key,
            },
        );
        true
    }

    /// Applies node `n`'s queued actions in order.
    pub fn drain(&mut self, n: usize) {
        while let Some(a) = self.nodes[n].core.poll_action() {
            match a {
                Action::Send { peer, request } => self.send_ctrl(n, peer, request, true),
                Action::Install { peer, tx, rx } => self.nodes[n].dp.install(peer, tx, &rx),
                Action::Remove { peer } => self.nodes[n].dp.remove(peer),
                Action::Event { peer, event } => {
                    let now = self.now;
                    self.nodes[n].events.push((now, peer, event));
                    match event {
                        Event::Established => {
                            for _ in self.nodes[n].queue.take(&peer) {
                                assert!(self.send_data(n, peer));
                            }
                        }
                        Event::HandshakeFailed if !self.nodes[n].dp.tx.contains_key(&peer) => {
                            self.nodes[n].queue.take(&peer);
                        }
                        _ => {}
                    }
                }
            }
        }
        self.nodes[n].core.check_invariants();
    }

    fn deliver(&mut self, f: Flight) {
        let now = self.now;
        match f {
            Flight::Req { from, to, bytes } => {
                self.log
                    .push((now, from, to, Message::decode(&bytes).unwrap()));
                let r = self.nodes[to].core.handle_request(now, &from, &bytes);
                self.drain(to);
                match r {
                    Ok(resp) => self.send_ctrl(to, from, resp, false),
                    Err(e) => self.nodes[to].errors.push((now, e)),
                }
            }
            Flight::Resp { from, to, bytes } => {
                self.log
                    .push((now, from, to, Message::decode(&bytes).unwrap()));
                if let Err(e) = self.nodes[to].core.handle_response(now, &from, &bytes) {
                    self.nodes[to].errors.push((now, e));
                }
                self.drain(to);
            }
            Flight::Data {
                from,
                to,
                index,
                key,
            } => match self.nodes[to].dp.rx.get(&index) {
                Some(&(p, k)) if p == from && k == key => {
                    self.delivered += 1;
                    self.nodes[to].unreported.entry(from).or_default().1 += 1;
                }
                _ => self.lost.push((now, from, to, index)),
            },
        }
    }

    /// Packet for `to` from node `from`: send, or queue and connect.
    pub fn offer_packet(&mut self, from: usize, to: usize) {
        if !self.send_data(from, to) {
            let seq = self.seq;
            self.nodes[from].queue.push(&to, seq);
            let now = self.now;
            if let Err(e) = self.nodes[from].core.connect(now, &to) {
                self.nodes[from].errors.push((now, e));
            }
            self.drain(from);
        }
    }

    /// One millisecond of simulated time.
    pub fn step(&mut self) {
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > self.now {
                break;
            }
            self.heap.pop();
            let f = self.flights.remove(&id).unwrap();
            self.deliver(f);
        }
        for n in 0..self.nodes.len() {
            if self.nodes[n]
                .core
                .poll_timeout()
                .is_some_and(|t| t <= self.now)
            {
                let now = self.now;
                if let Err(e) = self.nodes[n].core.handle_timeout(now) {
                    self.nodes[n].errors.push((now, e));
                }
                self.drain(n);
            }
        }
        let tick = self.now.as_millis() as u64;
        if tick.is_multiple_of(self.interval.as_millis() as u64) {
            for (from, to) in self.traffic.clone() {
                self.offer_packet(from, to);
            }
        }
        // Counters reach the daemon once a second.
        if tick.is_multiple_of(1000) {
            for n in 0..self.nodes.len() {
                let reports = std::mem::take(&mut self.nodes[n].unreported);
                for (peer, (s, r)) in reports {
                    let now = self.now;
                    if let Err(e) = self.nodes[n].core.on_traffic(now, &peer, s, r) {
                        self.nodes[n].errors.push((now, e));
                    }
                }
                self.drain(n);
            }
        }
        self.now += ms(1);
    }

    pub fn run_until(&mut self, t: Duration) {
        while self.now < t {
            self.step();
        }
    }

    /// Runs until nothing is in flight (or `limit`).
    pub fn settle(&mut self, limit: Duration) {
        let end = self.now + limit;
        while !self.heap.is_empty() && self.now < end {
            self.step();
        }
    }

    /// Asserts that `a`'s sending key to `b` is installed at `b` for receiving.
    pub fn assert_paired(&self, a: usize, b: usize) {
        let tx = self.nodes[a].dp.tx.get(&b).expect("a has a sending key");
        assert_eq!(
            self.nodes[b].dp.rx.get(&tx.remote_index),
            Some(&(a, tx.key)),
            "{a}'s sending key is not installed at {b}"
        );
    }

    pub fn count_msgs(&self, f: impl Fn(&Message) -> bool) -> usize {
        self.log.iter().filter(|(_, _, _, m)| f(m)).count()
    }

    pub fn events(&self, n: usize, e: Event) -> usize {
        self.nodes[n].events.iter().filter(|x| x.2 == e).count()
    }
}
