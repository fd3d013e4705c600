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

use super::coalesce;
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
    /// Packets without a session go to the daemon through this.
    pub pass_up: crate::dataplane::passup::PassUp,
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
/// every write to the TUN device starts with a `virtio_net_hdr`: all-zero
/// for a single packet, or describing a coalesced TCP super-packet.
pub fn rx_loop(shared: &Shared, tun: RawFd, udp: RawFd, vnet: bool) {
    let mut batch = Batch::new(BATCH, SLOT);
    let mut ready: Vec<(usize, usize, u32)> = Vec::with_capacity(BATCH);
    let mut merged: Vec<u8> = Vec::with_capacity(VNET_HDR_LEN + 65_536);
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
        ready.clear();
        for i in 0..n {
            let len = batch.lens[i];
            let buf = &mut batch.buf_mut(i)[..len];
            if len >= SLOT {
                c.add(Counter::DropOversize, 1);
                continue;
            }
            match receive(&tables, buf) {
                Verdict::Deliver { peer, len } => {
                    if vnet {
                        // The header (already authenticated) makes room
                        // for an all-zero virtio header in front.
                        buf[HEADER_LEN - VNET_HDR_LEN..HEADER_LEN].fill(0);
                    }
                    ready.push((i, len, peer));
                }
                Verdict::Drop(reason) => c.add(reason, 1),
            }
        }
        deliver(&batch, &ready, tun, vnet, &mut merged, &tables, c);
    }
}

/// Writes the decrypted packets to the TUN device: with `vnet`, runs of
/// segments of one TCP flow go as one super-packet.
fn deliver(
    batch: &Batch,
    ready: &[(usize, usize, u32)],
    tun: RawFd,
    vnet: bool,
    merged: &mut Vec<u8>,
    tables: &Tables,
    c: &Counters,
) {
    let from = if vnet {
        HEADER_LEN - VNET_HDR_LEN
    } else {
        HEADER_LEN
    };
    let whole = |k: usize| {
        let (i, len, _) = ready[k];
        &batch.buf(i)[from..HEADER_LEN + len]
    };
    let runs: Vec<std::ops::Range<usize>> = if vnet && ready.len() > 1 {
        let pkts: Vec<&[u8]> = ready
            .iter()
            .map(|&(i, len, _)| &batch.buf(i)[HEADER_LEN..HEADER_LEN + len])
            .collect();
        let runs = coalesce::plan(&pkts);
        for run in &runs {
            let res = if run.len() == 1 {
                write_packet(tun, whole(run.start))
            } else {
                coalesce::merge(&pkts[run.clone()], merged);
                write_packet(tun, merged)
            };
            account(&ready[run.clone()], res, tables, c);
        }
        return;
    } else {
        (0..ready.len()).map(|k| k..k + 1).collect()
    };
    for run in runs {
        let res = write_packet(tun, whole(run.start));
        account(&ready[run], res, tables, c);
    }
}

fn account(pkts: &[(usize, usize, u32)], res: io::Result<usize>, tables: &Tables, c: &Counters) {
    if let Err(e) = res {
        tracing::debug!("writing to the TUN device: {e}");
        c.add(Counter::DropBadInner, pkts.len() as u64);
        return;
    }
    for &(_, len, peer) in pkts {
        c.add(Counter::RxPackets, 1);
        c.add(Counter::RxBytes, len as u64);
        if let Some(p) = tables.peers.get(&peer) {
            p.stats.rx_packets.fetch_add(1, Ordering::Relaxed);
            p.stats.rx_bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
    }
}
