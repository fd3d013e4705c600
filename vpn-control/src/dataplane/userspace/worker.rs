//! The twin's two packet loops: TUN -> encrypt -> UDP, and
//! UDP -> decrypt -> TUN. Each works on batches, takes one snapshot of the
//! tables per batch, and touches shared state only through atomics.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use vpn_common::replay::ReplayError;
use vpn_common::stats::Counter;
use vpn_common::wire::{HEADER_LEN, MAX_INNER_LEN, TAG_LEN};

use super::io::{read_packet, wait_readable, write_packet, Batch};
use super::packet::{self, Malformed};
use super::state::{Counters, Tables};

/// Packets per batch.
pub const BATCH: usize = 64;
/// Buffer size per packet: header, the largest inner packet plus one byte
/// (to detect oversize reads), tag.
const SLOT: usize = HEADER_LEN + MAX_INNER_LEN + 1 + TAG_LEN;
/// How often a blocked worker looks at the stop flag.
pub const POLL_MS: i32 = 100;

/// What the workers share.
pub struct Shared {
    pub tables: RwLock<Arc<Tables>>,
    pub counters: Counters,
    pub stop: AtomicBool,
}

impl Shared {
    #[inline]
    pub fn snapshot(&self) -> Arc<Tables> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// TUN -> UDP. `tun` is non-blocking.
pub fn tx_loop(shared: &Shared, tun: RawFd, udp: RawFd) {
    let mut batch = Batch::new(BATCH, SLOT);
    let mut msgs: Vec<(usize, usize, usize)> = Vec::with_capacity(BATCH);
    let mut peer_of: Vec<u32> = vec![0; BATCH];
    let c = &shared.counters;
    while !shared.stop.load(Ordering::Relaxed) {
        if !wait_readable(tun, POLL_MS) {
            continue;
        }
        let tables = shared.snapshot();
        msgs.clear();
        let mut slot = 0;
        while slot < BATCH {
            let buf = batch.buf_mut(slot);
            let n = match read_packet(tun, &mut buf[HEADER_LEN..HEADER_LEN + MAX_INNER_LEN + 1]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("reading the TUN device: {e}");
                    break;
                }
            };
            if n > MAX_INNER_LEN {
                c.add(Counter::DropOversize, 1);
                continue;
            }
            let Some(dst) = packet::inner_dst(&buf[HEADER_LEN..HEADER_LEN + n]) else {
                continue;
            };
            // No peer owns the destination: not ours to send (not counted,
            // like a packet without a route).
            let Some(peer) = tables
                .routes
                .lookup(dst)
                .and_then(|id| tables.peers.get(&id))
            else {
                continue;
            };
            let (Some(tx), Some(ep)) = (peer.tx.as_ref(), peer.endpoint) else {
                c.add(Counter::NoSession, 1);
                continue;
            };
            let Some(counter) = tx.reserve(1) else {
                c.add(Counter::NoSession, 1);
                continue;
            };
            let len = packet::seal(&tx.cipher, tx.remote_index, counter, buf, n);
            batch.set_addr(slot, &ep);
            batch.lens[slot] = n;
            peer_of[slot] = peer.id;
            msgs.push((slot, 0, len));
            slot += 1;
        }
        if msgs.is_empty() {
            continue;
        }
        let mut failed: Vec<usize> = Vec::new();
        batch.send(udp, &msgs, |k, e| {
            tracing::debug!("sending a data packet: {e}");
            failed.push(k);
        });
        for (k, &(slot, _, _)) in msgs.iter().enumerate() {
            if failed.contains(&k) {
                c.add(Counter::TxError, 1);
                continue;
            }
            let inner = batch.lens[slot] as u64;
            c.add(Counter::TxPackets, 1);
            c.add(Counter::TxBytes, inner);
            if let Some(p) = tables.peers.get(&peer_of[slot]) {
                p.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                p.stats.tx_bytes.fetch_add(inner, Ordering::Relaxed);
            }
        }
    }
}

/// The verdict on one received datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver `buf[HEADER_LEN..HEADER_LEN + len]`, from peer `peer`.
    Deliver {
        peer: u32,
        len: usize,
    },
    Drop(Counter),
}

/// Validates, replay-checks, decrypts and cryptokey-checks one datagram in
/// place (pure apart from the replay window).
pub fn receive(tables: &Tables, buf: &mut [u8]) -> Verdict {
    let header = match packet::parse(buf) {
        Ok(h) => h,
        Err(Malformed::Truncated) => return Verdict::Drop(Counter::DropTruncated),
        Err(Malformed::BadType) => return Verdict::Drop(Counter::DropBadType),
        Err(Malformed::Oversize) => return Verdict::Drop(Counter::DropOversize),
    };
    let Some(session) = tables.rx.get(&header.receiver_index()) else {
        return Verdict::Drop(Counter::DropUnknownIndex);
    };
    let counter = header.counter();
    if session.check(counter).is_err() {
        return Verdict::Drop(Counter::DropReplay);
    }
    let Some(len) = packet::open(&session.cipher, buf) else {
        return Verdict::Drop(Counter::DropBadTag);
    };
    let Some((src, _)) = packet::inner_addrs(&buf[HEADER_LEN..HEADER_LEN + len]) else {
        return Verdict::Drop(Counter::DropBadInner);
    };
    if tables.routes.lookup(src) != Some(session.peer_id) {
        return Verdict::Drop(Counter::DropWrongInnerSource);
    }
    match session.check_and_set(counter) {
        Ok(()) => Verdict::Deliver {
            peer: session.peer_id,
            len,
        },
        Err(ReplayError::Replay | ReplayError::TooOld) => Verdict::Drop(Counter::DropReplay),
    }
}

/// UDP -> TUN. `udp` has a receive timeout of [`POLL_MS`].
pub fn rx_loop(shared: &Shared, tun: RawFd, udp: RawFd) {
    let mut batch = Batch::new(BATCH, SLOT);
    let c = &shared.counters;
    while !shared.stop.load(Ordering::Relaxed) {
        let n = match batch.recv(udp) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => {
                // ICMP errors reported on the socket (port unreachable) and
                // the like: nothing to do but go on.
                tracing::debug!("receiving data packets: {e}");
                continue;
            }
        };
        let tables = shared.snapshot();
        for i in 0..n {
            let len = batch.lens[i];
            let buf = &mut batch.buf_mut(i)[..len];
            if len >= SLOT {
                c.add(Counter::DropOversize, 1);
                continue;
            }
            match receive(&tables, buf) {
                Verdict::Deliver { peer, len } => {
                    match write_packet(tun, &buf[HEADER_LEN..HEADER_LEN + len]) {
                        Ok(_) => {
                            c.add(Counter::RxPackets, 1);
                            c.add(Counter::RxBytes, len as u64);
                            if let Some(p) = tables.peers.get(&peer) {
                                p.stats.rx_packets.fetch_add(1, Ordering::Relaxed);
                                p.stats.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            tracing::debug!("writing to the TUN device: {e}");
                            c.add(Counter::DropBadInner, 1);
                        }
                    }
                }
                Verdict::Drop(reason) => c.add(reason, 1),
            }
        }
    }
}
