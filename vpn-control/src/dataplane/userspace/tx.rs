//! TUN -> encrypt -> UDP. Reads packets until the TUN queue is empty or a
//! batch is full, cuts TCP super-packets when the device has offloads on,
//! seals each packet in its batch slot and sends the batch with one
//! `sendmmsg`.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

use vpn_common::stats::Counter;
use vpn_common::wire::{HEADER_LEN, MAX_INNER_LEN};

use super::io::{read_packet, wait_readable, Batch};
use super::offload::{finish_checksum, Segmenter, VnetHdr, VNET_HDR_LEN};
use super::packet;
use super::state::{Counters, Tables};
use super::worker::{Shared, BATCH, POLL_MS, SLOT};
use crate::dataplane::passup::PassUp;

/// Largest read from a TUN device with offloads (a 64 KB super-packet).
const BIG: usize = VNET_HDR_LEN + 65_536;
/// Packets read per wake-up before the batch is flushed regardless.
const READS_PER_ROUND: usize = BATCH;

/// The batch being filled.
struct TxBatch {
    batch: Batch,
    msgs: Vec<(usize, usize, usize)>,
    peer_of: Vec<u32>,
    failed: Vec<usize>,
}

impl TxBatch {
    fn new() -> Self {
        TxBatch {
            batch: Batch::new(BATCH, SLOT),
            msgs: Vec::with_capacity(BATCH),
            peer_of: vec![0; BATCH],
            failed: Vec::new(),
        }
    }

    fn full(&self) -> bool {
        self.msgs.len() == BATCH
    }

    /// The inner-packet area of the next free slot.
    fn slot(&mut self) -> &mut [u8] {
        let i = self.msgs.len();
        &mut self.batch.buf_mut(i)[HEADER_LEN..]
    }

    /// Routes and seals the `n`-byte inner packet in the next free slot
    /// and queues it (or counts why not, and hands a packet without a
    /// session to the daemon).
    fn commit(&mut self, t: &Tables, c: &Counters, up: &PassUp, n: usize) {
        if n > MAX_INNER_LEN {
            c.add(Counter::DropOversize, 1);
            return;
        }
        let i = self.msgs.len();
        let buf = self.batch.buf_mut(i);
        let Some(dst) = packet::inner_dst(&buf[HEADER_LEN..HEADER_LEN + n]) else {
            return;
        };
        match seal_for(t, dst, buf, n) {
            Sealed::Ok {
                peer,
                endpoint,
                len,
            } => {
                self.batch.set_addr(i, &endpoint);
                self.batch.lens[i] = n;
                self.peer_of[i] = peer;
                self.msgs.push((i, 0, len));
            }
            // No peer owns the destination (not counted, like a packet
            // without a route), or its peer has no session: the daemon may
            // start one.
            Sealed::NoPeer => up.offer(&buf[HEADER_LEN..HEADER_LEN + n]),
            Sealed::NoSession => {
                c.add(Counter::NoSession, 1);
                up.offer(&buf[HEADER_LEN..HEADER_LEN + n]);
            }
        }
    }

    fn flush(&mut self, udp: RawFd, t: &Tables, c: &Counters) {
        if self.msgs.is_empty() {
            return;
        }
        self.failed.clear();
        let failed = &mut self.failed;
        self.batch.send(udp, &self.msgs, |k, e| {
            tracing::debug!("sending a data packet: {e}");
            failed.push(k);
        });
        for (k, &(slot, _, _)) in self.msgs.iter().enumerate() {
            if self.failed.contains(&k) {
                c.add(Counter::TxError, 1);
                continue;
            }
            let inner = self.batch.lens[slot] as u64;
            c.add(Counter::TxPackets, 1);
            c.add(Counter::TxBytes, inner);
            if let Some(p) = t.peers.get(&self.peer_of[slot]) {
                p.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                p.stats.tx_bytes.fetch_add(inner, Ordering::Relaxed);
            }
        }
        self.msgs.clear();
    }
}

/// The outcome of [`seal_for`].
pub(super) enum Sealed {
    /// Sealed in place: send `buf[..len]` to `endpoint`.
    Ok {
        peer: u32,
        endpoint: std::net::SocketAddr,
        len: usize,
    },
    /// No peer owns the destination.
    NoPeer,
    /// Its peer has no sending key or endpoint (buffer untouched).
    NoSession,
}

/// Routes the `n`-byte inner packet at `buf[HEADER_LEN..]` to `dst`'s peer
/// and seals it in place with a fresh counter.
pub(super) fn seal_for(t: &Tables, dst: std::net::IpAddr, buf: &mut [u8], n: usize) -> Sealed {
    let Some(peer) = t.routes.lookup(dst).and_then(|id| t.peers.get(&id)) else {
        return Sealed::NoPeer;
    };
    let (Some(tx), Some(endpoint)) = (peer.tx.as_ref(), peer.endpoint) else {
        return Sealed::NoSession;
    };
    let Some(counter) = tx.reserve(1) else {
        return Sealed::NoSession;
    };
    let len = packet::seal(&tx.cipher, tx.remote_index, counter, buf, n);
    Sealed::Ok {
        peer: peer.id,
        endpoint,
        len,
    }
}

/// Seals and sends packets that waited for a session (the daemon's
/// re-injection), one `sendto` each; counted like the worker's packets.
pub(super) fn inject(
    shared: &Shared,
    udp: &std::net::UdpSocket,
    packets: &[Vec<u8>],
) -> Result<usize, crate::dataplane::DataplaneError> {
    let t = shared.snapshot();
    let c = &shared.counters;
    let mut buf = vec![0u8; SLOT];
    let mut sent = 0;
    for p in packets {
        let n = p.len();
        if n > MAX_INNER_LEN {
            c.add(Counter::DropOversize, 1);
            continue;
        }
        let Some(dst) = packet::inner_dst(p) else {
            continue;
        };
        buf[HEADER_LEN..HEADER_LEN + n].copy_from_slice(p);
        match seal_for(&t, dst, &mut buf, n) {
            Sealed::Ok {
                peer,
                endpoint,
                len,
            } => match udp.send_to(&buf[..len], endpoint) {
                Ok(_) => {
                    sent += 1;
                    c.add(Counter::TxPackets, 1);
                    c.add(Counter::TxBytes, n as u64);
                    if let Some(p) = t.peers.get(&peer) {
                        p.stats.tx_packets.fetch_add(1, Ordering::Relaxed);
                        p.stats.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::debug!("sending a re-injected packet: {e}");
                    c.add(Counter::TxError, 1);
                }
            },
            Sealed::NoPeer => shared.pass_up.offer(p),
            Sealed::NoSession => {
                c.add(Counter::NoSession, 1);
                shared.pass_up.offer(p);
            }
        }
    }
    Ok(sent)
}

enum Read {
    Packet(usize),
    Empty,
}

fn read_one(tun: RawFd, buf: &mut [u8]) -> Read {
    loop {
        return match read_packet(tun, buf) {
            Ok(n) => Read::Packet(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Read::Empty,
            Err(e) => {
                tracing::warn!("reading the TUN device: {e}");
                Read::Empty
            }
        };
    }
}

/// TUN -> UDP. `tun` is non-blocking; `vnet` says whether it was opened
/// with `IFF_VNET_HDR` (every read starts with a `virtio_net_hdr`).
pub fn tx_loop(shared: &Shared, tun: RawFd, udp: RawFd, vnet: bool) {
    let mut out = TxBatch::new();
    let mut big = if vnet { vec![0u8; BIG] } else { Vec::new() };
    let c = &shared.counters;
    let up = &shared.pass_up;
    while !shared.stop.load(Ordering::Relaxed) {
        if !wait_readable(tun, POLL_MS) {
            continue;
        }
        let t = shared.snapshot();
        for _ in 0..READS_PER_ROUND {
            if out.full() {
                out.flush(udp, &t, c);
            }
            if !vnet {
                let n = match read_one(tun, &mut out.slot()[..=MAX_INNER_LEN]) {
                    Read::Packet(n) => n,
                    Read::Empty => break,
                };
                out.commit(&t, c, up, n);
                continue;
            }
            let n = match read_one(tun, &mut big) {
                Read::Packet(n) => n,
                Read::Empty => break,
            };
            let Some(h) = VnetHdr::parse(&big[..n]) else {
                continue;
            };
            let pkt = &mut big[VNET_HDR_LEN..n];
            match Segmenter::new(&h, pkt) {
                Ok(None) => {
                    // Segments get fresh checksums; a single packet may
                    // carry a partial one to complete.
                    if finish_checksum(&h, pkt).is_err() {
                        c.add(Counter::TxError, 1);
                        continue;
                    }
                    if pkt.len() > MAX_INNER_LEN {
                        c.add(Counter::DropOversize, 1);
                        continue;
                    }
                    out.slot()[..pkt.len()].copy_from_slice(pkt);
                    out.commit(&t, c, up, pkt.len());
                }
                Ok(Some(s)) => {
                    if s.max_len() > MAX_INNER_LEN {
                        c.add(Counter::DropOversize, s.count() as u64);
                        continue;
                    }
                    for i in 0..s.count() {
                        if out.full() {
                            out.flush(udp, &t, c);
                        }
                        let n = s.write(pkt, i, out.slot());
                        out.commit(&t, c, up, n);
                    }
                }
                Err(_) => c.add(Counter::TxError, 1),
            }
        }
        out.flush(udp, &t, c);
    }
}
