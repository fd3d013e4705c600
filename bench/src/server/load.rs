//! Bounded closed-loop load: N client threads, each doing one request after
//! another until the deadline (or until the work runs out), recording each
//! request's latency. This process is the load generator; the server is
//! another process on loopback.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What one worker call reports.
pub enum Outcome {
    /// The request succeeded after this long.
    Ok(Duration),
    /// It failed (the text is the error's kind).
    Err(String),
    /// No more work (the blob pool is empty).
    Exhausted,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(sorted_ms: &[f64]) -> Option<Self> {
        if sorted_ms.is_empty() {
            return None;
        }
        let pct = |p: f64| {
            // Nearest-rank percentile.
            let rank = ((p / 100.0) * sorted_ms.len() as f64).ceil() as usize;
            sorted_ms[rank.clamp(1, sorted_ms.len()) - 1]
        };
        Some(Self {
            p50_ms: round3(pct(50.0)),
            p90_ms: round3(pct(90.0)),
            p99_ms: round3(pct(99.0)),
            max_ms: round3(*sorted_ms.last().expect("not empty")),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The result of one load phase.
#[derive(Clone, Debug, Serialize)]
pub struct LoadResult {
    /// Concurrent clients.
    pub clients: usize,
    /// Wall time from start until the last client stopped (s).
    pub elapsed_s: f64,
    /// Successful requests.
    pub ok: usize,
    /// Failed requests by kind.
    pub errors: BTreeMap<String, usize>,
    /// Successful requests per second over `elapsed_s`.
    pub per_sec: f64,
    /// Latency of the successful requests.
    pub latency: Option<Latency>,
    /// The work ran out before the deadline.
    pub exhausted: bool,
}

/// Runs `work(client_index)` in `clients` threads until `duration` has
/// passed or a call reports [`Outcome::Exhausted`].
pub fn run<F>(clients: usize, duration: Duration, work: F) -> LoadResult
where
    F: Fn(usize) -> Outcome + Sync,
{
    let start = Instant::now();
    let deadline = start + duration;
    let lat = Mutex::new(Vec::<f64>::new());
    let errors = Mutex::new(BTreeMap::<String, usize>::new());
    let exhausted = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..clients {
            let (work, lat, errors, exhausted) = (&work, &lat, &errors, &exhausted);
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    let mut mine = Vec::new();
                    while Instant::now() < deadline && exhausted.load(Ordering::Relaxed) == 0 {
                        match work(i) {
                            Outcome::Ok(d) => mine.push(d.as_secs_f64() * 1000.0),
                            Outcome::Err(kind) => {
                                *errors.lock().expect("lock").entry(kind).or_default() += 1;
                            }
                            Outcome::Exhausted => {
                                exhausted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    lat.lock().expect("lock").extend(mine);
                })
                .expect("spawning a client thread");
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = lat.into_inner().expect("lock");
    lat.sort_by(f64::total_cmp);
    LoadResult {
        clients,
        elapsed_s: round3(elapsed),
        ok: lat.len(),
        errors: errors.into_inner().expect("lock"),
        per_sec: round3(lat.len() as f64 / elapsed.max(1e-9)),
        latency: Latency::of(&lat),
        exhausted: exhausted.load(Ordering::Relaxed) > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = Latency::of(&xs).unwrap();
        assert_eq!(
            (l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert!(Latency::of(&[]).is_none());
    }

    #[test]
    fn stops_when_exhausted_and_counts() {
        let left = AtomicUsize::new(50);
        let r = run(4, Duration::from_secs(30), |_| {
            if left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                Outcome::Ok(Duration::from_millis(1))
            } else {
                Outcome::Exhausted
            }
        });
        assert!(r.exhausted);
        assert_eq!(r.ok, 50);
        assert!(r.elapsed_s < 10.0);
    }
}
