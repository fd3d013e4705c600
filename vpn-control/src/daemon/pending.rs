//! Packets waiting for a session, per destination address, and the
//! decisions around them (sans-IO: `now` is passed in):
//! - queue the first packets to a member without a session (bounded per
//!   destination and in total; the oldest goes first);
//! - start one `connect_ip` per destination at a time;
//! - after a failure, drop that destination's packets and refuse new ones
//!   for a backoff (1 s, doubling up to 30 s); report the first failure so
//!   that it is logged once;
//! - hand the queued packets back once the data plane can send them;
//! - drop packets that waited longer than [`MAX_WAIT`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use vpn_core::session::PendingQueue;

/// Packets kept per destination.
pub const PER_DESTINATION: usize = 16;
/// Packets kept overall.
pub const TOTAL: usize = 512;
/// First backoff after a failed connect.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Longest time a packet waits (a connect that succeeded but left the
/// destination unreachable, e.g. the owner's address changed meanwhile).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Destinations remembered (for backoff and logging) beyond which idle
/// ones are forgotten.
const MAX_DESTINATIONS: usize = 4096;

/// Counters shown by `status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingStats {
    /// Packets waiting now.
    pub queued: u64,
    /// Packets that waited and were sent once the session was up.
    pub delivered: u64,
    /// Packets dropped: queue full, connect failed, in backoff, waited too
    /// long.
    pub dropped: u64,
    /// `connect_ip` calls started.
    pub connects: u64,
    /// `connect_ip` calls that failed.
    pub connect_failures: u64,
}

#[derive(Debug, Default)]
struct Dest {
    connecting: bool,
    failures: u32,
    retry_at: Option<Instant>,
    /// A failure was reported (logged) since the last success.
    reported: bool,
    /// When the oldest queued packet arrived.
    since: Option<Instant>,
}

/// What to do after [`Pending::on_packet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnPacket {
    /// Queued; call `connect_ip(dst)` now.
    Connect,
    /// Queued; a connect is already running.
    Wait,
    /// Dropped: the destination is in backoff after a failure.
    Backoff,
}

/// What a failure means for logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    /// First failure since the last success: log it (at warn).
    pub first: bool,
    /// Queued packets dropped.
    pub dropped: usize,
    /// The next connect is refused until then.
    pub backoff: Duration,
}

/// The queue and per-destination state.
#[derive(Debug)]
pub struct Pending {
    queue: PendingQueue<IpAddr, Vec<u8>>,
    dests: HashMap<IpAddr, Dest>,
    stats: PendingStats,
}

impl Default for Pending {
    fn default() -> Self {
        Self::new(PER_DESTINATION, TOTAL)
    }
}

fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    (BACKOFF_MIN * (1u32 << shift)).min(BACKOFF_MAX)
}

impl Pending {
    pub fn new(per_destination: usize, total: usize) -> Self {
        Self {
            queue: PendingQueue::new(per_destination, total),
            dests: HashMap::new(),
            stats: PendingStats::default(),
        }
    }

    /// A packet to `dst` that the data plane could not send.
    pub fn on_packet(&mut self, now: Instant, dst: IpAddr, pkt: Vec<u8>) -> OnPacket {
        let d = self.dests.entry(dst).or_default();
        if d.retry_at.is_some_and(|t| now < t) {
            self.stats.dropped += 1;
            return OnPacket::Backoff;
        }
        if self.queue.push(&dst, pkt).is_some() {
            self.stats.dropped += 1;
        }
        d.since.get_or_insert(now);
        if d.connecting {
            OnPacket::Wait
        } else {
            d.connecting = true;
            d.retry_at = None;
            self.stats.connects += 1;
            OnPacket::Connect
        }
    }

    /// `connect_ip(dst)` succeeded.
    pub fn on_connected(&mut self, dst: IpAddr) {
        if let Some(d) = self.dests.get_mut(&dst) {
            d.connecting = false;
            d.failures = 0;
            d.retry_at = None;
            d.reported = false;
        }
    }

    /// `connect_ip(dst)` failed.
    pub fn on_failed(&mut self, now: Instant, dst: IpAddr) -> Failure {
        self.stats.connect_failures += 1;
        let d = self.dests.entry(dst).or_default();
        d.connecting = false;
        d.failures = d.failures.saturating_add(1);
        let wait = backoff(d.failures);
        d.retry_at = Some(now + wait);
        d.since = None;
        let first = !d.reported;
        d.reported = true;
        let dropped = self.queue.take(&dst).len();
        self.stats.dropped += dropped as u64;
        Failure {
            first,
            dropped,
            backoff: wait,
        }
    }

    /// Removes and returns the queued packets (oldest first, per
    /// destination) of every destination `ready` accepts.
    pub fn take_ready(&mut self, ready: impl Fn(IpAddr) -> bool) -> Vec<Vec<u8>> {
        let dsts: Vec<IpAddr> = self
            .dests
            .iter()
            .filter(|(a, d)| d.since.is_some() && ready(**a))
            .map(|(a, _)| *a)
            .collect();
        let mut out = Vec::new();
        for dst in dsts {
            let pkts = self.queue.take(&dst);
            self.stats.delivered += pkts.len() as u64;
            out.extend(pkts);
            if let Some(d) = self.dests.get_mut(&dst) {
                d.since = None;
            }
        }
        out
    }

    /// Drops packets that waited longer than [`MAX_WAIT`] and forgets idle
    /// destinations when there are many. Returns how many were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut dropped = 0;
        for (dst, d) in &mut self.dests {
            if !d.connecting && d.since.is_some_and(|t| now.duration_since(t) >= MAX_WAIT) {
                dropped += self.queue.take(dst).len();
                d.since = None;
            }
        }
        self.stats.dropped += dropped as u64;
        if self.dests.len() > MAX_DESTINATIONS {
            self.dests.retain(|_, d| {
                d.connecting || d.since.is_some() || d.retry_at.is_some_and(|t| now < t)
            });
        }
        dropped
    }

    /// Whether any packet waits (the daemon then checks [`Self::expire`]
    /// periodically).
    pub fn is_empty(&self) -> bool {
        self.queue.len() == 0
    }

    pub fn stats(&self) -> PendingStats {
        PendingStats {
            queued: self.queue.len() as u64,
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_connect_per_destination_then_delivery_in_order() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        let (a, b) = (ip("10.77.0.2"), ip("10.77.0.3"));
        assert_eq!(p.on_packet(t0, a, vec![1]), OnPacket::Connect);
        assert_eq!(p.on_packet(t0, a, vec![2]), OnPacket::Wait);
        assert_eq!(p.on_packet(t0, b, vec![3]), OnPacket::Connect);
        assert_eq!(p.stats().queued, 3);
        assert_eq!(p.stats().connects, 2);
        assert!(p.take_ready(|_| false).is_empty());
        p.on_connected(a);
        assert_eq!(p.take_ready(|d| d == a), vec![vec![1], vec![2]]);
        assert_eq!(p.stats().queued, 1);
        assert_eq!(p.stats().delivered, 2);
        // A later packet (session expired since): a new connect.
        assert_eq!(p.on_packet(t0, a, vec![4]), OnPacket::Connect);
    }

    #[test]
    fn bounded_per_destination_and_in_total() {
        let t0 = Instant::now();
        let mut p = Pending::new(2, 3);
        let (a, b) = (ip("10.77.0.2"), ip("10.77.0.3"));
        for n in 0..4 {
            p.on_packet(t0, a, vec![n]);
        }
        assert_eq!(p.stats().queued, 2);
        assert_eq!(p.stats().dropped, 2);
        p.on_packet(t0, b, vec![10]);
        p.on_packet(t0, b, vec![11]);
        assert_eq!(p.stats().queued, 3);
        assert_eq!(p.stats().dropped, 3);
        // The oldest packets went.
        assert_eq!(p.take_ready(|d| d == a), vec![vec![3]]);
        assert_eq!(p.take_ready(|d| d == b), vec![vec![10], vec![11]]);
    }

    #[test]
    fn failure_drops_backs_off_and_is_reported_once() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        let a = ip("10.77.0.2");
        p.on_packet(t0, a, vec![1]);
        p.on_packet(t0, a, vec![2]);
        let f = p.on_failed(t0, a);
        assert_eq!(
            f,
            Failure {
                first: true,
                dropped: 2,
                backoff: BACKOFF_MIN
            }
        );
        assert_eq!(p.stats().queued, 0);
        assert_eq!(p.stats().dropped, 2);
        assert_eq!(p.stats().connect_failures, 1);
        // In backoff: dropped, no connect.
        assert_eq!(
            p.on_packet(t0 + Duration::from_millis(500), a, vec![3]),
            OnPacket::Backoff
        );
        assert_eq!(p.stats().dropped, 3);
        // After it: retried; a second failure doubles the backoff and is
        // not reported again.
        let t1 = t0 + BACKOFF_MIN;
        assert_eq!(p.on_packet(t1, a, vec![4]), OnPacket::Connect);
        let f = p.on_failed(t1, a);
        assert!(!f.first);
        assert_eq!(f.backoff, 2 * BACKOFF_MIN);
        for _ in 0..10 {
            p.on_failed(t1, a);
        }
        assert_eq!(p.on_failed(t1, a).backoff, BACKOFF_MAX);
        // Success resets everything: the next failure is reported again.
        let t2 = t1 + BACKOFF_MAX;
        assert_eq!(p.on_packet(t2, a, vec![5]), OnPacket::Connect);
        p.on_connected(a);
        assert_eq!(p.on_packet(t2, a, vec![6]), OnPacket::Connect);
        let f = p.on_failed(t2, a);
        assert!(f.first);
        assert_eq!(f.backoff, BACKOFF_MIN);
    }

    #[test]
    fn packets_that_wait_too_long_are_dropped() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        let a = ip("10.77.0.2");
        p.on_packet(t0, a, vec![1]);
        assert_eq!(p.expire(t0 + MAX_WAIT), 0, "still connecting");
        p.on_connected(a);
        assert!(!p.is_empty());
        assert_eq!(p.expire(t0 + MAX_WAIT / 2), 0);
        assert_eq!(p.expire(t0 + MAX_WAIT), 1);
        assert!(p.is_empty());
        assert_eq!(p.stats().dropped, 1);
    }
}
