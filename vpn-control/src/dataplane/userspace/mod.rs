//! The userspace twin: a TUN device and a UDP socket on the data port,
//! speaking byte for byte the kernel path's wire format
//! (`vpn_common::wire`) with the `chacha20poly1305` crate, the same replay
//! window (`vpn_common::replay`), the same counters and cryptokey routing.
//!
//! Two worker threads, one per direction, batch their syscalls
//! (`recvmmsg`/`sendmmsg`, TUN reads until the queue is empty), do the
//! crypto outside any lock and count with atomics. With TUN offloads
//! (`IFF_VNET_HDR`), the sender cuts the kernel's TCP super-packets into
//! MTU-sized packets itself (`offload.rs`) and the receiver merges runs of
//! segments of one TCP flow back into super-packets (`coalesce.rs`); the
//! wire carries ordinary one-packet datagrams either way.
//! [`Dataplane::apply`] swaps in a new immutable table snapshot; sessions
//! whose key did not change are carried over with their counters and
//! replay windows.

mod coalesce;
mod io;
mod offload;
mod packet;
mod state;
mod tx;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use vpn_common::stats::Counter;

use super::{
    Dataplane, DataplaneError, DataplaneStats, DesiredState, PacketSink, PassUpStats, PathKind,
};
use state::{Counters, PeerStats, Tables};
use worker::Shared;

pub use packet::{inner_addrs, open, parse, seal, Cipher};

/// The userspace data plane. Dropping it stops and joins its workers.
pub struct UserspaceDataplane {
    shared: Arc<Shared>,
    peer_stats: BTreeMap<u32, Arc<PeerStats>>,
    workers: Vec<JoinHandle<()>>,
    _tun: Arc<OwnedFd>,
    _udp: Arc<UdpSocket>,
}

impl UserspaceDataplane {
    /// Starts the twin over a packet device (a TUN device opened with
    /// `IFF_NO_PI`; any fd with one packet per read/write works) and a UDP
    /// socket bound to the data port. `vnet`: the device was opened with
    /// `IFF_VNET_HDR` (see `netdev::tun::open`), so reads may be TCP
    /// super-packets to cut and writes carry a `virtio_net_hdr`.
    pub fn start(tun: OwnedFd, udp: UdpSocket, vnet: bool) -> Result<Self, DataplaneError> {
        io::set_nonblocking(tun.as_raw_fd())?;
        udp.set_read_timeout(Some(Duration::from_millis(worker::POLL_MS as u64)))?;
        let shared = Arc::new(Shared {
            tables: RwLock::new(Arc::new(Tables::default())),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            pass_up: Default::default(),
        });
        let tun = Arc::new(tun);
        let udp = Arc::new(udp);
        let mut workers = Vec::new();
        for dir in ["tx", "rx"] {
            let (s, t, u) = (shared.clone(), tun.clone(), udp.clone());
            let h = std::thread::Builder::new()
                .name(format!("twin-{dir}"))
                .spawn(move || {
                    if dir == "tx" {
                        tx::tx_loop(&s, t.as_raw_fd(), u.as_raw_fd(), vnet)
                    } else {
                        worker::rx_loop(&s, t.as_raw_fd(), u.as_raw_fd(), vnet)
                    }
                })?;
            workers.push(h);
        }
        Ok(UserspaceDataplane {
            shared,
            peer_stats: BTreeMap::new(),
            workers,
            _tun: tun,
            _udp: udp,
        })
    }

    /// Stops the workers (also done on drop).
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for UserspaceDataplane {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Dataplane for UserspaceDataplane {
    fn path(&self) -> PathKind {
        PathKind::Userspace
    }

    fn apply(&mut self, desired: &DesiredState) -> Result<(), DataplaneError> {
        let mut guard = self
            .shared
            .tables
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let next = state::build(desired, &guard, &mut self.peer_stats);
        *guard = Arc::new(next);
        Ok(())
    }

    fn stats(&self) -> Result<DataplaneStats, DataplaneError> {
        let counters = Counter::ALL
            .iter()
            .map(|&c| (c, self.shared.counters.get(c)))
            .collect();
        let peers = self
            .peer_stats
            .iter()
            .map(|(id, s)| (*id, s.snapshot()))
            .collect();
        Ok(DataplaneStats { counters, peers })
    }

    fn set_packet_sink(&mut self, sink: PacketSink) {
        self.shared.pass_up.set(sink);
    }

    fn pass_up_stats(&self) -> PassUpStats {
        self.shared.pass_up.stats()
    }

    fn inject(&self, packets: &[Vec<u8>]) -> Result<usize, DataplaneError> {
        tx::inject(&self.shared, &self._udp, packets)
    }
}
