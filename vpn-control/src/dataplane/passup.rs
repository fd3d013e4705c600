//! Handing packets without a session to the daemon, shared by the kernel
//! path's `vpn0p` reader and the twin's TUN worker.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::{PacketSink, PassUpStats};

/// The hand-over point: set once, then offered every packet without a
/// session, from any thread.
#[derive(Debug, Default)]
pub struct PassUp {
    sink: OnceLock<PacketSink>,
    passed: AtomicU64,
    dropped: AtomicU64,
}

impl PassUp {
    /// Sets the sink (the first one set stays).
    pub fn set(&self, sink: PacketSink) {
        let _ = self.sink.set(sink);
    }

    /// Whether a sink is set.
    pub fn active(&self) -> bool {
        self.sink.get().is_some()
    }

    /// Offers one inner IP packet: copied to the sink if there is one and
    /// its destination is unicast (multicast, broadcast and link-local
    /// traffic never belongs to a peer). Never blocks.
    pub fn offer(&self, pkt: &[u8]) {
        let Some(sink) = self.sink.get() else {
            return;
        };
        if !destination(pkt).is_some_and(unicast_global) {
            return;
        }
        match sink.try_send(pkt.to_vec()) {
            Ok(()) => self.passed.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }

    pub fn stats(&self) -> PassUpStats {
        PassUpStats {
            passed: self.passed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The destination of an inner IP packet.
pub fn destination(p: &[u8]) -> Option<IpAddr> {
    match p.first()? >> 4 {
        4 if p.len() >= 20 => Some(IpAddr::from(<[u8; 4]>::try_from(&p[16..20]).ok()?)),
        6 if p.len() >= 40 => Some(IpAddr::from(<[u8; 16]>::try_from(&p[24..40]).ok()?)),
        _ => None,
    }
}

/// Whether a destination could be a peer's address: multicast, broadcast
/// and link-local traffic (MLD, router solicitations that `vpn0` sends on
/// its own) is never routed to a peer.
pub fn unicast_global(dst: IpAddr) -> bool {
    match dst {
        IpAddr::V4(a) => !(a.is_multicast() || a.is_broadcast() || a.is_link_local()),
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unicast_link_local()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn offers_unicast_only_and_counts_a_full_sink() {
        let up = PassUp::default();
        up.offer(&v4([10, 77, 0, 2]));
        assert_eq!(up.stats(), PassUpStats::default(), "no sink: nothing");
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        up.set(tx);
        assert!(up.active());
        up.offer(&v4([224, 0, 0, 1]));
        up.offer(&v4([255, 255, 255, 255]));
        up.offer(&[0x45, 0, 0]);
        up.offer(&v4([10, 77, 0, 2]));
        up.offer(&v4([10, 77, 0, 3]));
        assert_eq!(
            up.stats(),
            PassUpStats {
                passed: 1,
                dropped: 1
            }
        );
        assert_eq!(
            destination(&rx.try_recv().unwrap()),
            Some("10.77.0.2".parse().unwrap())
        );
    }
}
