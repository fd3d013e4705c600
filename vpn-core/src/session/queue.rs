//! Packets waiting for a session: bounded per peer and in total.
//!
//! The daemon pushes the first packets to a peer without a sending key here,
//! calls [`super::SessionManager::connect`], drains the peer's queue on
//! [`super::Event::Established`] and clears it on
//! [`super::Event::HandshakeFailed`] or teardown. When a bound is hit the
//! oldest packet goes (of the same peer, or of the longest queue when the
//! total is full), as WireGuard drops the oldest staged packet: the newest
//! packets are the ones a retransmitting sender still cares about.

use std::collections::{BTreeMap, VecDeque};

/// A bounded FIFO per peer.
#[derive(Debug)]
pub struct PendingQueue<P, T> {
    per_peer: usize,
    total: usize,
    len: usize,
    queues: BTreeMap<P, VecDeque<T>>,
}

impl<P: Ord + Clone, T> PendingQueue<P, T> {
    /// At most `per_peer` packets per peer and `total` overall (both at
    /// least 1).
    pub fn new(per_peer: usize, total: usize) -> Self {
        Self {
            per_peer: per_peer.max(1),
            total: total.max(1),
            len: 0,
            queues: BTreeMap::new(),
        }
    }

    /// Queues `item` for `peer`; returns the packet dropped to make room.
    pub fn push(&mut self, peer: &P, item: T) -> Option<T> {
        let mut dropped = None;
        let own = self.queues.get(peer).map_or(0, VecDeque::len);
        if own >= self.per_peer {
            dropped = self.pop_front_of(peer);
        } else if self.len >= self.total {
            let longest = self
                .queues
                .iter()
                .max_by_key(|(_, q)| q.len())
                .map(|(p, _)| p.clone());
            if let Some(l) = longest {
                dropped = self.pop_front_of(&l);
            }
        }
        self.queues.entry(peer.clone()).or_default().push_back(item);
        self.len += 1;
        dropped
    }

    fn pop_front_of(&mut self, peer: &P) -> Option<T> {
        let q = self.queues.get_mut(peer)?;
        let item = q.pop_front();
        if item.is_some() {
            self.len -= 1;
        }
        if q.is_empty() {
            self.queues.remove(peer);
        }
        item
    }

    /// Removes and returns the peer's packets, oldest first.
    pub fn take(&mut self, peer: &P) -> Vec<T> {
        let q = self.queues.remove(peer).unwrap_or_default();
        self.len -= q.len();
        q.into()
    }

    /// Packets queued for `peer`.
    pub fn len_of(&self, peer: &P) -> usize {
        self.queues.get(peer).map_or(0, VecDeque::len)
    }

    /// Packets queued overall.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn per_peer_bound_drops_oldest() {
        let mut q = PendingQueue::new(3, 100);
        for i in 0..3 {
            assert_eq!(q.push(&'a', i), None);
        }
        assert_eq!(q.push(&'a', 3), Some(0));
        assert_eq!(q.take(&'a'), vec![1, 2, 3]);
        assert!(q.is_empty());
        assert_eq!(q.take(&'a'), Vec::<i32>::new());
    }

    #[test]
    fn total_bound_drops_from_longest_queue() {
        let mut q = PendingQueue::new(10, 4);
        q.push(&'a', 1);
        q.push(&'a', 2);
        q.push(&'a', 3);
        q.push(&'b', 10);
        assert_eq!(q.push(&'c', 20), Some(1), "a is the longest");
        assert_eq!(q.len(), 4);
        assert_eq!(q.len_of(&'a'), 2);
        assert_eq!(q.take(&'c'), vec![20]);
        assert_eq!(q.take(&'b'), vec![10]);
        assert_eq!(q.take(&'a'), vec![2, 3]);
        assert!(q.is_empty());
    }

    proptest! {
        #[test]
        fn bounds_hold_and_order_is_kept(ops in proptest::collection::vec((0u8..4, any::<bool>()), 0..200)) {
            let mut q = PendingQueue::new(5, 12);
            let mut next = 0u32;
            for (peer, take) in ops {
                if take {
                    let v = q.take(&peer);
                    prop_assert!(v.windows(2).all(|w| w[0] < w[1]));
                } else {
                    q.push(&peer, next);
                    next += 1;
                }
                prop_assert!(q.len() <= 12);
                for p in 0..4 {
                    prop_assert!(q.len_of(&p) <= 5);
                }
                let sum: usize = (0..4).map(|p| q.len_of(&p)).sum();
                prop_assert_eq!(sum, q.len());
            }
        }
    }
}
