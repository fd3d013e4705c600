//! Polling with a deadline instead of fixed sleeps.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const POLL: Duration = Duration::from_millis(50);

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    wait_until_ok(what, timeout, || f().ok_or("not yet"))
}

/// Polls `f` every 50 ms until it returns `Ok`, or fails after `timeout`
/// with the last error in the message.
pub fn wait_until_ok<T, E: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> std::result::Result<T, E>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_owned(),
                secs: timeout.as_secs_f64(),
                last: format!("; last: {last}"),
            });
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_first_success() {
        let mut n = 0;
        let v = wait_until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            (n >= 3).then_some(n)
        })
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn times_out_with_last_error() {
        let err = wait_until_ok("never", Duration::from_millis(120), || {
            Err::<(), _>("still broken")
        })
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("never") && msg.contains("still broken"),
            "{msg}"
        );
    }
}
