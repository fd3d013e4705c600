//! The candidate search of an allocating slot: the hashed first choice,
//! then random probes, then (small ranges) a full scan from a random start.

use std::collections::HashSet;
use std::net::IpAddr;

use super::range::{index_from_bytes, Range};
use super::{Config, Random};

/// Where the candidate search stands.
#[derive(Clone, Debug, Default)]
pub(super) struct Search {
    hashed_done: bool,
    random_used: u32,
    /// Random start and progress of the full scan.
    scan: Option<(u128, u128)>,
    /// Addresses probed (or lost) in this search.
    pub(super) tried: HashSet<IpAddr>,
}

fn random_index(rng: &mut dyn Random, n: u128) -> u128 {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    index_from_bytes(&b, n)
}

impl Search {
    /// The next address to probe, or `None` when the range has nothing
    /// left (within `random_probes` for ranges above `scan_limit`).
    pub(super) fn pick(
        &mut self,
        range: &Range,
        group: &str,
        owner: &[u8],
        cfg: &Config,
        rng: &mut dyn Random,
    ) -> Option<IpAddr> {
        let n = range.host_count();
        let ok = |s: &Search, a: IpAddr| range.is_assignable(a) && !s.tried.contains(&a);
        if !self.hashed_done {
            self.hashed_done = true;
            let a = range.host(range.hashed_index(group, owner));
            if ok(self, a) {
                return Some(a);
            }
        }
        while self.random_used < cfg.random_probes {
            self.random_used += 1;
            let a = range.host(random_index(rng, n));
            if ok(self, a) {
                return Some(a);
            }
        }
        if n > cfg.scan_limit {
            return None;
        }
        let (start, mut pos) = match self.scan {
            Some(s) => s,
            None => (random_index(rng, n), 0),
        };
        while pos < n {
            let a = range.host(start + pos);
            pos += 1;
            if ok(self, a) {
                self.scan = Some((start, pos));
                return Some(a);
            }
        }
        self.scan = Some((start, pos));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::RngRandom;
    use rand::rngs::ChaCha8Rng;
    use rand::SeedableRng;

    #[test]
    fn visits_every_free_address_once_then_gives_up() {
        let mut r = Range::parse("10.0.0.0/27").unwrap();
        r.reserve("10.0.0.1".parse().unwrap());
        let cfg = Config {
            random_probes: 8,
            ..Config::default()
        };
        let mut rng = RngRandom(ChaCha8Rng::seed_from_u64(3));
        let mut s = Search::default();
        let mut seen = HashSet::new();
        while let Some(a) = s.pick(&r, "g", b"me", &cfg, &mut rng) {
            assert!(r.is_assignable(a));
            assert!(seen.insert(a), "{a} twice");
            s.tried.insert(a);
        }
        assert_eq!(seen.len(), 29);
        // The first choice is the hashed one.
        let mut s = Search::default();
        let first = s.pick(&r, "g", b"me", &cfg, &mut rng).unwrap();
        assert_eq!(first, r.host(r.hashed_index("g", b"me")));
    }

    #[test]
    fn large_ranges_give_up_after_the_random_probes() {
        let r = Range::parse("fd00::/64").unwrap();
        let cfg = Config {
            random_probes: 5,
            ..Config::default()
        };
        let mut rng = RngRandom(ChaCha8Rng::seed_from_u64(3));
        let mut s = Search::default();
        let mut n = 0;
        while let Some(a) = s.pick(&r, "g", b"me", &cfg, &mut rng) {
            s.tried.insert(a);
            n += 1;
        }
        assert_eq!(n, 6);
    }
}
