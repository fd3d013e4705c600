//! A model of the private group overlay: libp2p Kademlia routing tables as
//! they form when members join one after another and learn peers through
//! lookups, plus greedy XOR routing over those tables.
//!
//! Modelled (libp2p-kad defaults): 256-bit keys (SHA-256 of the peer id, so
//! uniform); 256 k-buckets, `k` = 20; a peer enters a routing table when a
//! connection to it is established, in either direction, if its bucket has
//! room (`BucketInserts::OnConnected`); a full bucket keeps its entries (the
//! newcomer would only replace an entry that stopped answering, and nothing
//! fails here). A joining member connects to the bootstrap member (the first
//! to join) and runs Kademlia's bootstrap: an iterative lookup of its own key,
//! then one lookup of a random key in every bucket farther than its closest
//! neighbour's. A lookup queries, closest first, the `k` closest peers it
//! knows of the target until all of them have answered; every queried peer
//! is connected to (so both sides may insert each other) and answers with
//! the `k` closest peers of its own table. After everyone has joined, each
//! member runs `refresh_rounds` more bootstraps (libp2p's periodic bootstrap).
//!
//! Not modelled: churn, failures, lookup parallelism (`alpha` changes the
//! order of queries, hardly the tables), connection limits, and the fact that
//! libp2p keeps disconnected entries: here every table entry is a live,
//! measured connection (the neighbour set of the relay core).

use core::time::Duration;

use rand::{Rng, RngExt};

/// Number of bits of a key.
pub const KEY_BITS: usize = 256;

/// A 256-bit Kademlia key, most significant word first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub [u64; 4]);

impl Key {
    /// A uniformly random key.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Key {
        Key([rng.random(), rng.random(), rng.random(), rng.random()])
    }

    /// XOR distance (compare distances with `Ord`).
    #[must_use]
    pub fn distance(&self, other: &Key) -> Key {
        let mut d = [0u64; 4];
        for (i, w) in d.iter_mut().enumerate() {
            *w = self.0[i] ^ other.0[i];
        }
        Key(d)
    }

    /// Index of the bucket `other` falls into in a table owned by `self`
    /// (`floor(log2(distance))`), `None` for the key itself.
    #[must_use]
    pub fn bucket(&self, other: &Key) -> Option<usize> {
        let d = self.distance(other);
        let mut lz = 0usize;
        for w in d.0 {
            if w == 0 {
                lz += 64;
            } else {
                lz += w.leading_zeros() as usize;
                return Some(KEY_BITS - 1 - lz);
            }
        }
        None
    }

    /// A random key that falls into bucket `b` of a table owned by `self`.
    pub fn random_in_bucket<R: Rng + ?Sized>(&self, b: usize, rng: &mut R) -> Key {
        let mut d = Key::random(rng).0;
        let bit_from_top = KEY_BITS - 1 - b;
        let (word, bit) = (bit_from_top / 64, 63 - bit_from_top % 64);
        for (i, w) in d.iter_mut().enumerate() {
            if i < word {
                *w = 0;
            } else if i == word {
                let mask = if bit == 63 {
                    u64::MAX
                } else {
                    (1u64 << (bit + 1)) - 1
                };
                *w = (*w & mask) | (1u64 << bit);
            }
        }
        let mut k = self.0;
        for (i, w) in k.iter_mut().enumerate() {
            *w ^= d[i];
        }
        Key(k)
    }
}

/// Parameters of the overlay model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverlayParams {
    /// Bucket size (libp2p-kad `K_VALUE`).
    pub k: usize,
    /// Simulated time between two members joining.
    pub join_interval: Duration,
    /// Bootstraps every member runs after all have joined.
    pub refresh_rounds: usize,
}

impl Default for OverlayParams {
    fn default() -> Self {
        OverlayParams {
            k: 20,
            join_interval: Duration::from_secs(10),
            refresh_rounds: 1,
        }
    }
}

/// A routing-table entry: a neighbour and when the connection to it began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Member index.
    pub node: u32,
    /// Connection start (simulated time).
    pub since: Duration,
}

#[derive(Clone, Debug)]
struct Table {
    entries: Vec<Entry>,
    bucket_len: Vec<u16>,
}

/// The overlay of `n` members (indices `0..n`) after joining and refreshing.
#[derive(Clone, Debug)]
pub struct Overlay {
    k: usize,
    keys: Vec<Key>,
    tables: Vec<Table>,
    member: Vec<bool>,
    /// Simulated time when the last refresh finished.
    pub settled_at: Duration,
}

impl Overlay {
    /// Forms the overlay: members join in index order (member 0 is the
    /// bootstrap member), then refresh. Keys are drawn from `rng`.
    pub fn build<R: Rng + ?Sized>(n: usize, params: OverlayParams, rng: &mut R) -> Overlay {
        let keys = (0..n).map(|_| Key::random(rng)).collect();
        let mut o = Overlay {
            k: params.k.max(1),
            keys,
            tables: (0..n)
                .map(|_| Table {
                    entries: Vec::new(),
                    bucket_len: vec![0; KEY_BITS],
                })
                .collect(),
            member: vec![false; n * n],
            settled_at: Duration::ZERO,
        };
        let mut t = Duration::ZERO;
        for j in 1..n {
            t = params.join_interval * u32::try_from(j).unwrap_or(u32::MAX);
            o.connect(j, 0, t);
            o.bootstrap(j, t, rng);
        }
        for _ in 0..params.refresh_rounds {
            for i in 0..n {
                t += params.join_interval;
                o.bootstrap(i, t, rng);
            }
        }
        o.settled_at = t;
        for table in &mut o.tables {
            table.entries.sort_unstable_by_key(|e| e.node);
        }
        o
    }

    /// Number of members.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the overlay is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Member `i`'s key.
    #[must_use]
    pub fn key(&self, i: usize) -> Key {
        self.keys[i]
    }

    /// Member `i`'s routing table (its neighbour set), sorted by member index.
    #[must_use]
    pub fn neighbours(&self, i: usize) -> &[Entry] {
        &self.tables[i].entries
    }

    /// Whether `b` is in `a`'s routing table.
    #[must_use]
    pub fn knows(&self, a: usize, b: usize) -> bool {
        self.member[a * self.len() + b]
    }

    fn insert(&mut self, a: usize, b: usize, t: Duration) {
        if a == b || self.knows(a, b) {
            return;
        }
        let Some(bucket) = self.keys[a].bucket(&self.keys[b]) else {
            return;
        };
        let table = &mut self.tables[a];
        if usize::from(table.bucket_len[bucket]) >= self.k {
            return;
        }
        table.bucket_len[bucket] += 1;
        table.entries.push(Entry {
            node: u32::try_from(b).unwrap_or(u32::MAX),
            since: t,
        });
        let n = self.keys.len();
        self.member[a * n + b] = true;
    }

    /// A connection between `a` and `b` at `t`: both may insert the other.
    fn connect(&mut self, a: usize, b: usize, t: Duration) {
        self.insert(a, b, t);
        self.insert(b, a, t);
    }

    /// The `k` members of `i`'s table closest to `target`, closest first.
    fn closest_in_table(&self, i: usize, target: &Key) -> Vec<(Key, u32)> {
        let mut v: Vec<(Key, u32)> = self.tables[i]
            .entries
            .iter()
            .map(|e| (self.keys[e.node as usize].distance(target), e.node))
            .collect();
        if v.len() > self.k {
            v.select_nth_unstable(self.k);
            v.truncate(self.k);
        }
        v.sort_unstable();
        v
    }

    /// Iterative lookup of `target` by member `i` at time `t`.
    fn lookup(&mut self, i: usize, target: &Key, t: Duration) {
        let n = self.len();
        let mut seen = vec![false; n];
        seen[i] = true;
        // (distance, node, queried), sorted by distance.
        let mut cands: Vec<(Key, u32, bool)> = Vec::new();
        for (d, node) in self.closest_in_table(i, target) {
            seen[node as usize] = true;
            cands.push((d, node, false));
        }
        loop {
            let next = cands.iter_mut().take(self.k).find(|c| !c.2);
            let Some(c) = next else { break };
            c.2 = true;
            let peer = c.1 as usize;
            self.connect(i, peer, t);
            for (d, node) in self.closest_in_table(peer, target) {
                if !seen[node as usize] {
                    seen[node as usize] = true;
                    let pos = cands.partition_point(|x| x.0 < d);
                    cands.insert(pos, (d, node, false));
                }
            }
        }
    }

    /// libp2p-kad's bootstrap for member `i`.
    fn bootstrap<R: Rng + ?Sized>(&mut self, i: usize, t: Duration, rng: &mut R) {
        let own = self.keys[i];
        self.lookup(i, &own, t);
        let closest = self.tables[i]
            .entries
            .iter()
            .filter_map(|e| own.bucket(&self.keys[e.node as usize]))
            .min();
        if let Some(c) = closest {
            for b in c + 1..KEY_BITS {
                let target = own.random_in_bucket(b, rng);
                self.lookup(i, &target, t);
            }
        }
    }

    /// The overlay path from `src` to `dst` by greedy XOR routing: each hop
    /// goes to the routing-table entry closest to `dst`. `None` if a member
    /// has no entry closer to `dst` than itself (never seen with intact
    /// tables). The path includes both ends.
    #[must_use]
    pub fn route(&self, src: usize, dst: usize) -> Option<Vec<usize>> {
        let target = self.keys[dst];
        let mut path = vec![src];
        let mut cur = src;
        while cur != dst {
            let next = if self.knows(cur, dst) {
                dst
            } else {
                let here = self.keys[cur].distance(&target);
                let (d, node) = self.tables[cur]
                    .entries
                    .iter()
                    .map(|e| {
                        (
                            self.keys[e.node as usize].distance(&target),
                            e.node as usize,
                        )
                    })
                    .min()?;
                if d >= here {
                    return None;
                }
                node
            };
            path.push(next);
            cur = next;
        }
        Some(path)
    }
}
