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

use super::io::{write_packet, Batch};
use super::offload::VNET_HDR_LEN;
use super::packet::{self, Malformed};
use super::state::{Counters, Tables};

/// Packets per batch.
pub const BATCH: usize = 64;
/// Buffer size per packet: header, the largest inner packet plus one byte
/// (to detect oversize reads), tag.
pub const SLOT: usize = HEADER_LEN + MAX_INNER_LEN + 1 + TAG_LEN;
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

/// UDP -> TUN. `udp` has a receive timeout of [`POLL_MS`]. With `vnet`,
/// every write to the TUN device starts with an all-zero `virtio_net_hdr`
/// (no offload: the packet is complete).
pub fn rx_loop(shared: &Shared, tun: RawFd, udp: RawFd, vnet: bool) {
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
                    // The header (already authenticated) makes room for the
                    // virtio header in front of the plaintext.
                    let from = if vnet {
                        let at = HEADER_LEN - VNET_HDR_LEN;
                        buf[at..HEADER_LEN].fill(0);
                        at
                    } else {
                        HEADER_LEN
                    };
                    match write_packet(tun, &buf[from..HEADER_LEN + len]) {
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
