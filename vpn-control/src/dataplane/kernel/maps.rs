//! Typed handles on the object's maps and the reconciliation of a
//! [`DesiredState`] into them.
//!
//! [`Maps`] mirrors what it wrote, so `apply` only touches entries that
//! differ: a send session is rewritten only when its key or remote index
//! changes (rewriting it would restart its counter and reuse nonces), a
//! receive session only when its key or peer changes (rewriting it would
//! reset its replay window).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use aya::maps::{
    lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues,
};
use aya::Ebpf;
use vpn_common::maps::{
    self as m, DataplaneConfig, PeerEndpoint, PeerRef, PeerStats, RxSession, TxSession, FAMILY_V4,
    FAMILY_V6,
};
use vpn_common::replay::ReplayWindow;
use vpn_common::stats::Counter;

use crate::dataplane::{
    DataplaneError, DataplaneStats, DesiredState, PeerCounters, Prefix, RxKey, TxKey,
};

/// A route trie entry in normalised form (host bits cleared).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    V4 { addr: [u8; 4], len: u8 },
    V6 { addr: [u8; 16], len: u8 },
}

impl Route {
    fn from_prefix(p: &Prefix) -> Self {
        match p.addr {
            IpAddr::V4(a) => {
                let len = p.len.min(32);
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                Route::V4 {
                    addr: (u32::from(a) & mask).to_be_bytes(),
                    len,
                }
            }
            IpAddr::V6(a) => {
                let len = p.len.min(128);
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                Route::V6 {
                    addr: (u128::from(a) & mask).to_be_bytes(),
                    len,
                }
            }
        }
    }
}

/// What `Maps` last wrote for a receive session.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RxEntry {
    key: [u8; 32],
    peer: u32,
}

/// What `Maps` last wrote for a send session.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TxEntry {
    key: [u8; 32],
    remote_index: u32,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |e| DataplaneError::Map {
        map,
        source: Box::new(e),
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, DataplaneError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| DataplaneError::Load(format!("the eBPF object has no map {name}")))?;
    T::try_from(map).map_err(map_err(name))
}

/// The maps of a loaded object, and a mirror of their contents.
pub struct Maps {
    config: Array<MapData, DataplaneConfig>,
    routes_v4: LpmTrie<MapData, [u8; 4], PeerRef>,
    routes_v6: LpmTrie<MapData, [u8; 16], PeerRef>,
    peers: HashMap<MapData, u32, PeerEndpoint>,
    tx: HashMap<MapData, u32, TxSession>,
    rx: HashMap<MapData, u32, RxSession>,
    stats: PerCpuArray<MapData, u64>,
    peer_stats: PerCpuHashMap<MapData, u32, PeerStats>,
    nr_cpus: usize,
    cur_routes: BTreeMap<Route, u32>,
    cur_peers: BTreeMap<u32, PeerEndpoint>,
    cur_tx: BTreeMap<u32, TxEntry>,
    cur_rx: BTreeMap<u32, RxEntry>,
    cur_stat_peers: BTreeSet<u32>,
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DataplaneError> {
        let nr_cpus = aya::util::nr_cpus()
            .map_err(|(what, e)| DataplaneError::Other(format!("counting CPUs ({what}): {e}")))?;
        Ok(Self {
            config: take(ebpf, m::CONFIG)?,
            routes_v4: take(ebpf, m::ROUTES_V4)?,
            routes_v6: take(ebpf, m::ROUTES_V6)?,
            peers: take(ebpf, m::PEERS)?,
            tx: take(ebpf, m::TX_SESSIONS)?,
            rx: take(ebpf, m::RX_SESSIONS)?,
            stats: take(ebpf, m::STATS)?,
            peer_stats: take(ebpf, m::PEER_STATS)?,
            nr_cpus,
            cur_routes: BTreeMap::new(),
            cur_peers: BTreeMap::new(),
            cur_tx: BTreeMap::new(),
            cur_rx: BTreeMap::new(),
            cur_stat_peers: BTreeSet::new(),
        })
    }

    /// Writes the single `CONFIG` entry.
    pub fn set_config(&mut self, cfg: &DataplaneConfig) -> Result<(), DataplaneError> {
        self.config.set(0, cfg, 0).map_err(map_err(m::CONFIG))
    }

    /// Brings the maps to `desired`, touching only entries that differ.
    pub fn apply(&mut self, desired: &DesiredState) -> Result<(), DataplaneError> {
        // Routes: later peers (higher ids) win a prefix claimed twice; the
        // configuration layer rejects overlaps before it gets here.
        let mut routes = BTreeMap::new();
        let mut peers = BTreeMap::new();
        let mut tx = BTreeMap::new();
        let mut rx = BTreeMap::new();
        for (id, p) in &desired.peers {
            for prefix in &p.allowed {
                routes.insert(Route::from_prefix(prefix), *id);
            }
            if let Some(ep) = p.endpoint {
                peers.insert(*id, endpoint(ep));
            }
            if let Some(t) = &p.tx {
                tx.insert(*id, *t);
            }
            for r in &p.rx {
                rx.insert(r.local_index, (*r, *id));
            }
        }
        self.apply_stat_peers(desired)?;
        self.apply_peers(&peers)?;
        self.apply_rx(&rx)?;
        self.apply_tx(&tx)?;
        // Routes last: traffic is steered to a peer only once its session
        // and endpoint are in place.
        self.apply_routes(&routes)
    }

    fn apply_routes(&mut self, want: &BTreeMap<Route, u32>) -> Result<(), DataplaneError> {
        let stale: Vec<Route> = self
            .cur_routes
            .keys()
            .filter(|r| !want.contains_key(r))
            .copied()
            .collect();
        for r in stale {
            let res = match r {
                Route::V4 { addr, len } => self.routes_v4.remove(&Key::new(len.into(), addr)),
                Route::V6 { addr, len } => self.routes_v6.remove(&Key::new(len.into(), addr)),
            };
            ignore_missing(res).map_err(map_err(route_map(&r)))?;
            self.cur_routes.remove(&r);
        }
        for (r, id) in want {
            if self.cur_routes.get(r) == Some(id) {
                continue;
            }
            let v = PeerRef { peer_id: *id };
            let res = match *r {
                Route::V4 { addr, len } => self.routes_v4.insert(&Key::new(len.into(), addr), v, 0),
                Route::V6 { addr, len } => self.routes_v6.insert(&Key::new(len.into(), addr), v, 0),
            };
            res.map_err(map_err(route_map(r)))?;
            self.cur_routes.insert(*r, *id);
        }
        Ok(())
    }

    fn apply_peers(&mut self, want: &BTreeMap<u32, PeerEndpoint>) -> Result<(), DataplaneError> {
        let stale: Vec<u32> = self
            .cur_peers
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for id in stale {
            ignore_missing(self.peers.remove(&id)).map_err(map_err(m::PEERS))?;
            self.cur_peers.remove(&id);
        }
        for (id, ep) in want {
            if self.cur_peers.get(id) == Some(ep) {
                continue;
            }
            self.peers.insert(id, ep, 0).map_err(map_err(m::PEERS))?;
            self.cur_peers.insert(*id, *ep);
        }
        Ok(())
    }

    fn apply_tx(&mut self, want: &BTreeMap<u32, TxKey>) -> Result<(), DataplaneError> {
        let stale: Vec<u32> = self
            .cur_tx
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for id in stale {
            ignore_missing(self.tx.remove(&id)).map_err(map_err(m::TX_SESSIONS))?;
            self.cur_tx.remove(&id);
        }
        for (id, t) in want {
            let entry = TxEntry {
                key: t.key,
                remote_index: t.remote_index,
            };
            if self.cur_tx.get(id) == Some(&entry) {
                // Same session: never touch it (its counter lives in the map).
                continue;
            }
            let v = TxSession {
                key: t.key,
                remote_index: t.remote_index,
                _pad0: 0,
                counter: t.initial_counter,
            };
            self.tx.insert(id, v, 0).map_err(map_err(m::TX_SESSIONS))?;
            self.cur_tx.insert(*id, entry);
        }
        Ok(())
    }

    fn apply_rx(&mut self, want: &BTreeMap<u32, (RxKey, u32)>) -> Result<(), DataplaneError> {
        let stale: Vec<u32> = self
            .cur_rx
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for idx in stale {
            ignore_missing(self.rx.remove(&idx)).map_err(map_err(m::RX_SESSIONS))?;
            self.cur_rx.remove(&idx);
        }
        for (idx, (k, peer)) in want {
            let entry = RxEntry {
                key: k.key,
                peer: *peer,
            };
            if self.cur_rx.get(idx) == Some(&entry) {
                // Same session: keep its replay window.
                continue;
            }
            let v = RxSession {
                key: k.key,
                peer_id: *peer,
                _pad0: 0,
                replay: ReplayWindow::new(),
            };
            self.rx.insert(idx, v, 0).map_err(map_err(m::RX_SESSIONS))?;
            self.cur_rx.insert(*idx, entry);
        }
        Ok(())
    }

    /// Creates zeroed per-peer counters for new peers (so the programs
    /// never insert on the packet path) and removes those of gone peers.
    fn apply_stat_peers(&mut self, desired: &DesiredState) -> Result<(), DataplaneError> {
        let stale: Vec<u32> = self
            .cur_stat_peers
            .iter()
            .filter(|k| !desired.peers.contains_key(k))
            .copied()
            .collect();
        for id in stale {
            ignore_missing(self.peer_stats.remove(&id)).map_err(map_err(m::PEER_STATS))?;
            self.cur_stat_peers.remove(&id);
        }
        for id in desired.peers.keys() {
            if self.cur_stat_peers.contains(id) {
                continue;
            }
            let zero = PerCpuValues::try_from(vec![PeerStats::default(); self.nr_cpus])
                .map_err(DataplaneError::Io)?;
            self.peer_stats
                .insert(id, zero, 0)
                .map_err(map_err(m::PEER_STATS))?;
            self.cur_stat_peers.insert(*id);
        }
        Ok(())
    }

    /// Sums the per-CPU counters.
    pub fn stats(&self) -> Result<DataplaneStats, DataplaneError> {
        let mut out = DataplaneStats::default();
        for c in Counter::ALL {
            let v = self.stats.get(&(c as u32), 0).map_err(map_err(m::STATS))?;
            out.counters.insert(c, v.iter().sum());
        }
        for id in &self.cur_stat_peers {
            let v = match self.peer_stats.get(id, 0) {
                Ok(v) => v,
                Err(aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(map_err(m::PEER_STATS)(e)),
            };
            let mut s = PeerStats::default();
            for cpu in v.iter() {
                s.add(cpu);
            }
            out.peers.insert(
                *id,
                PeerCounters {
                    tx_packets: s.tx_packets,
                    tx_bytes: s.tx_bytes,
                    rx_packets: s.rx_packets,
                    rx_bytes: s.rx_bytes,
                },
            );
        }
        Ok(out)
    }
}

fn route_map(r: &Route) -> &'static str {
    match r {
        Route::V4 { .. } => m::ROUTES_V4,
        Route::V6 { .. } => m::ROUTES_V6,
    }
}

fn endpoint(ep: std::net::SocketAddr) -> PeerEndpoint {
    let mut addr = [0u8; 16];
    let family = match ep.ip() {
        IpAddr::V4(a) => {
            addr[..4].copy_from_slice(&a.octets());
            FAMILY_V4
        }
        IpAddr::V6(a) => {
            addr.copy_from_slice(&a.octets());
            FAMILY_V6
        }
    };
    PeerEndpoint {
        addr,
        port: ep.port(),
        family,
        _pad0: 0,
        _pad1: 0,
    }
}

/// A removal of an entry that is already gone is not an error.
fn ignore_missing(r: Result<(), aya::maps::MapError>) -> Result<(), aya::maps::MapError> {
    match r {
        Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        r => r,
    }
}
