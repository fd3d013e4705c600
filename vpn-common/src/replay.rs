//! The anti-replay window, shared by the kernel path and the userspace twin.
//!
//! A sliding bitmap of [`REPLAY_SLOTS`] 64-bit slots. Each slot holds the low
//! 32 bits of a block number (`counter / 32`) in its upper half and a bitmap
//! of the 32 counters of that block in its lower half, so that checking and
//! setting a counter is a single 64-bit compare-and-swap: the window is
//! correct when several CPUs receive the same session at once, with no lock
//! and no per-CPU copies (a per-CPU window would let a replay through on
//! another CPU). A second word, the high-water mark, tracks the highest
//! counter seen; it is raised before the counter's slot is written, which
//! is what makes the window exact under races (see
//! [`check_and_set_observed`]).
//!
//! Guarantees: every counter within [`REPLAY_WINDOW`] of the highest accepted
//! counter is accepted at most once, in any order; counters older than that
//! are rejected. Every loop is bounded (the BPF verifier demands it); when a
//! compare-and-swap loses [`CAS_TRIES`] races in a row the packet is rejected
//! as a replay, which is the safe direction.
//!
//! Callers must authenticate a packet before calling [`check_and_set`], so
//! that forged packets cannot move the window; [`check`] is the cheap
//! read-only pre-check done before decryption.

use crate::atomic;

/// Counters per slot.
const SLOT_BITS: u64 = 32;
/// Number of slots. `(REPLAY_SLOTS - 1) * SLOT_BITS` must be at least
/// [`REPLAY_WINDOW`] so that a slot is never reused inside the window.
pub const REPLAY_SLOTS: usize = 68;
/// Counters below `highest - REPLAY_WINDOW` are rejected as too old.
pub const REPLAY_WINDOW: u64 = 2048;
/// Bound on compare-and-swap retries.
pub const CAS_TRIES: u32 = 8;

const _: () = assert!((REPLAY_SLOTS as u64 - 1) * SLOT_BITS >= REPLAY_WINDOW + SLOT_BITS);

/// The window's state, stored inside [`crate::maps::RxSession`]. All-zero is
/// the initial state. Only accessed through atomics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ReplayWindow {
    /// Highest counter accepted, plus one (0: nothing accepted yet).
    pub next: u64,
    pub slots: [u64; REPLAY_SLOTS],
}
const _: () = assert!(core::mem::size_of::<ReplayWindow>() == 8 * (1 + REPLAY_SLOTS));

impl ReplayWindow {
    pub const fn new() -> Self {
        Self {
            next: 0,
            slots: [0; REPLAY_SLOTS],
        }
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a counter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Seen before (or lost too many races, which is treated the same).
    Replay,
    /// Older than the window.
    TooOld,
}

#[inline(always)]
fn slot_ptr(w: *mut ReplayWindow, counter: u64) -> *mut u64 {
    let idx = ((counter / SLOT_BITS) % REPLAY_SLOTS as u64) as usize;
    // The BPF verifier does not bound the result of a modulo: hide the
    // value from LLVM and bound it again with a comparison it can follow.
    #[cfg(target_arch = "bpf")]
    let idx = match core::hint::black_box(idx) {
        i if i < REPLAY_SLOTS => i,
        _ => 0,
    };
    // SAFETY: `idx < REPLAY_SLOTS`, so the pointer stays inside `slots`.
    unsafe { (core::ptr::addr_of_mut!((*w).slots) as *mut u64).add(idx) }
}

#[inline(always)]
fn next_ptr(w: *mut ReplayWindow) -> *mut u64 {
    // SAFETY: field projection on a valid pointer.
    unsafe { core::ptr::addr_of_mut!((*w).next) }
}

#[inline(always)]
fn too_old(next: u64, counter: u64) -> bool {
    // highest = next - 1; reject counter + WINDOW < highest  <=>  counter + WINDOW + 1 < next
    next > REPLAY_WINDOW + 1 && counter < next - REPLAY_WINDOW - 1
}

/// Where [`check_and_set_observed`] lets a test interleave other receivers
/// (deterministically, instead of hoping for a preemption).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The high-water mark was read and the counter is not too old by it.
    ReadMark,
    /// The counter's slot was read (before the mark is read again).
    ReadSlot,
}

/// Read-only pre-check: `Err` if `counter` is certainly refused.
///
/// # Safety
/// `w` must point to a live, 8-byte aligned `ReplayWindow` that is only
/// accessed atomically while this runs.
#[inline(always)]
pub unsafe fn check(w: *mut ReplayWindow, counter: u64) -> Result<(), ReplayError> {
    if counter == u64::MAX {
        return Err(ReplayError::TooOld);
    }
    // Slot first, then the mark: the mark read covers every block the slot
    // can hold (see `check_and_set_observed`).
    // SAFETY: per this function's contract.
    let old = unsafe { atomic::load(slot_ptr(w, counter)) };
    // SAFETY: as above.
    let next = unsafe { atomic::load(next_ptr(w)) };
    if too_old(next, counter) {
        return Err(ReplayError::TooOld);
    }
    let bit = 1u64 << (counter % SLOT_BITS);
    if old != 0 && (old >> 32) as u32 == (counter / SLOT_BITS) as u32 && old & bit != 0 {
        return Err(ReplayError::Replay);
    }
    Ok(())
}

/// Marks `counter` as seen; `Err` if it was seen already or is too old.
/// Call only for authenticated packets.
///
/// # Safety
/// As for [`check`].
#[inline(always)]
pub unsafe fn check_and_set(w: *mut ReplayWindow, counter: u64) -> Result<(), ReplayError> {
    // SAFETY: per this function's contract.
    unsafe { check_and_set_observed(w, counter, |_| {}) }
}

/// [`check_and_set`], calling `step` at the points where other receivers
/// may interleave (tests; a no-op closure compiles away).
///
/// The invariant that makes it exact: a receiver raises the high-water mark
/// to `counter + 1` *before* it writes the counter's slot. So once a slot
/// holds block `o`, the mark is already above every counter of `o`; a
/// receiver that reads the slot and *then* the mark sees a mark that makes
/// its own counter too old whenever the slot holds a later block (a slot is
/// only reused `REPLAY_SLOTS` blocks later, more than the window), however
/// many times other CPUs lapped the slot while it was preempted. Any other
/// block in the slot is older than the window: it is replaced. Block tags
/// are the low 32 bits of the block number; they only decide "same block or
/// not" for a block inside the window, so a sender's counter may jump by
/// any amount (a lab peer restarting from the clock). A jump by an exact
/// multiple of 2^37 counters can make a single fresh counter look like a
/// replay (refused), never the reverse.
///
/// # Safety
/// As for [`check`].
#[doc(hidden)]
#[inline(always)]
pub unsafe fn check_and_set_observed(
    w: *mut ReplayWindow,
    counter: u64,
    mut step: impl FnMut(Step),
) -> Result<(), ReplayError> {
    if counter == u64::MAX {
        return Err(ReplayError::TooOld);
    }
    let next_a = next_ptr(w);
    // SAFETY: per this function's contract.
    if too_old(unsafe { atomic::load(next_a) }, counter) {
        return Err(ReplayError::TooOld);
    }
    step(Step::ReadMark);
    // Raise the high-water mark first (bounded CAS loop; a lost race means
    // another receiver raised it, possibly further). For a replay of an
    // accepted counter it is already at least `counter + 1`.
    let want = counter + 1;
    let mut tries = 0;
    while tries < CAS_TRIES {
        tries += 1;
        // SAFETY: as above.
        let cur = unsafe { atomic::load(next_a) };
        if cur >= want {
            break;
        }
        // SAFETY: as above.
        if unsafe { atomic::compare_exchange(next_a, cur, want) } {
            break;
        }
    }
    let slot = slot_ptr(w, counter);
    let tag = (counter / SLOT_BITS) as u32;
    let bit = 1u64 << (counter % SLOT_BITS);
    let mut tries = 0;
    while tries < CAS_TRIES {
        tries += 1;
        // SAFETY: as above.
        let old = unsafe { atomic::load(slot) };
        step(Step::ReadSlot);
        // SAFETY: as above.
        if too_old(unsafe { atomic::load(next_a) }, counter) {
            return Err(ReplayError::TooOld);
        }
        let new = if old != 0 && (old >> 32) as u32 == tag {
            if old & bit != 0 {
                return Err(ReplayError::Replay);
            }
            old | bit
        } else {
            // Empty, or a block older than the window.
            ((tag as u64) << 32) | bit
        };
        // SAFETY: as above.
        if unsafe { atomic::compare_exchange(slot, old, new) } {
            return Ok(());
        }
    }
    // Lost every race: refuse, the safe direction.
    Err(ReplayError::Replay)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn accept(w: &mut ReplayWindow, c: u64) -> Result<(), ReplayError> {
        // SAFETY: exclusive access to a valid window.
        unsafe {
            check(w, c)?;
            check_and_set(w, c)
        }
    }

    #[test]
    fn in_order_then_replays() {
        let mut w = ReplayWindow::new();
        for c in 0..5000 {
            assert_eq!(accept(&mut w, c), Ok(()), "counter {c}");
        }
        for c in 5000 - 2048..5000 {
            assert_eq!(accept(&mut w, c), Err(ReplayError::Replay), "counter {c}");
        }
        assert_eq!(accept(&mut w, 100), Err(ReplayError::TooOld));
        assert_eq!(accept(&mut w, 5000 - 2050), Err(ReplayError::TooOld));
    }

    #[test]
    fn reordered_within_window() {
        let mut w = ReplayWindow::new();
        assert_eq!(accept(&mut w, 3000), Ok(()));
        // Everything within 2048 below the highest is still acceptable once.
        for c in (3000 - 2048..3000).rev() {
            assert_eq!(accept(&mut w, c), Ok(()), "counter {c}");
        }
        for c in 3000 - 2048..=3000 {
            assert_eq!(accept(&mut w, c), Err(ReplayError::Replay));
        }
        assert_eq!(accept(&mut w, 3000 - 2049), Err(ReplayError::TooOld));
    }

    #[test]
    fn big_jumps_and_large_start() {
        let mut w = ReplayWindow::new();
        let base = 1_764_000_000_000_000_000u64; // nanoseconds-based start
        assert_eq!(accept(&mut w, base), Ok(()));
        assert_eq!(accept(&mut w, base), Err(ReplayError::Replay));
        assert_eq!(accept(&mut w, base + 1), Ok(()));
        let later = base + (1u64 << 40) + 7;
        assert_eq!(accept(&mut w, later), Ok(()));
        assert_eq!(accept(&mut w, base + 2), Err(ReplayError::TooOld));
        assert_eq!(accept(&mut w, later - 5), Ok(()));
        assert_eq!(accept(&mut w, later - 5), Err(ReplayError::Replay));
        assert_eq!(accept(&mut w, u64::MAX), Err(ReplayError::TooOld));
    }

    #[test]
    fn model_check_random_sequences() {
        // Compare with a simple set-based model over a pseudo-random walk.
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut highest: Option<u64> = None;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut base = 10_000u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base += x % 3;
            let c = base.saturating_sub(x % 2300) + (x >> 60) % 4;
            let got = accept(&mut w, c);
            let old = highest.is_some_and(|h| c + REPLAY_WINDOW < h);
            if seen.contains(&c) {
                assert!(got.is_err(), "replay of {c} accepted");
            } else if !old {
                assert_eq!(
                    got,
                    Ok(()),
                    "fresh counter {c} refused (highest {highest:?})"
                );
            }
            if got.is_ok() {
                seen.insert(c);
                highest = Some(highest.map_or(c, |h| h.max(c)));
            }
        }
    }

    /// Runs `check_and_set` for `counter`, letting `others` run at `at`
    /// (the first time only), as another CPU would while this one stalls.
    fn stalled(
        w: &mut ReplayWindow,
        counter: u64,
        at: Step,
        others: &mut dyn FnMut(*mut ReplayWindow),
    ) -> Result<(), ReplayError> {
        let p: *mut ReplayWindow = w;
        let mut done = false;
        // SAFETY: one thread; the interleaved calls use the same pointer.
        unsafe {
            check_and_set_observed(p, counter, |s| {
                if s == at && !done {
                    done = true;
                    others(p);
                }
            })
        }
    }

    #[test]
    fn a_stalled_receiver_never_accepts_a_replay() {
        // A receiver holds a replay of counter c (accepted long ago) and
        // stalls after one of its reads while other CPUs accept counters
        // one to five slot-cycles ahead, overwriting c's slot each time.
        // When it resumes it must refuse c. (The previous rule, which only
        // took a slot up to two cycles ahead as "newer", accepted this
        // replay; a 4-thread stress test caught it once under load.)
        let cycle = REPLAY_SLOTS as u64 * SLOT_BITS;
        for at in [Step::ReadMark, Step::ReadSlot] {
            for k in 1..=5u64 {
                let mut w = ReplayWindow::new();
                let c = 10_000u64;
                assert_eq!(accept(&mut w, c), Ok(()));
                let got = stalled(&mut w, c, at, &mut |p| {
                    for j in 1..=k {
                        // SAFETY: valid window.
                        assert_eq!(unsafe { check_and_set(p, c + j * cycle) }, Ok(()));
                    }
                });
                assert!(got.is_err(), "replay accepted ({at:?}, {k} cycles ahead)");
            }
        }
    }

    #[test]
    fn a_stalled_receiver_still_accepts_a_fresh_counter_once() {
        // While it stalls, another CPU accepts the very same counter (a
        // duplicated packet): exactly one of the two succeeds.
        for at in [Step::ReadMark, Step::ReadSlot] {
            let mut w = ReplayWindow::new();
            assert_eq!(accept(&mut w, 500), Ok(()));
            let mut other = None;
            let got = stalled(&mut w, 501, at, &mut |p| {
                // SAFETY: valid window.
                other = Some(unsafe { check_and_set(p, 501) });
            });
            assert_eq!(other, Some(Ok(())), "{at:?}");
            assert_eq!(got, Err(ReplayError::Replay), "{at:?}");
            assert_eq!(accept(&mut w, 502), Ok(()));
        }
    }

    #[test]
    fn a_sender_that_jumps_far_ahead_is_not_refused() {
        // Lab peers restart their counters from the clock in nanoseconds:
        // after a restart the counter jumps by the downtime (100 s is about
        // 2^36.5 counters). Every fresh counter after the jump must pass,
        // whatever the old slots' tags look like modulo 2^32 blocks.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..50 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut w = ReplayWindow::new();
            let base = 1_764_000_000_000_000_000u64 + (x >> 20);
            for c in base..base + 3000 {
                assert_eq!(accept(&mut w, c), Ok(()));
            }
            let jump = (1u64 << 36) + (x % (1u64 << 44));
            let after = base + 3000 + jump;
            for c in after..after + 3000 {
                assert_eq!(
                    accept(&mut w, c),
                    Ok(()),
                    "jump {jump}, counter {}",
                    c - after
                );
            }
            assert_eq!(accept(&mut w, base + 2999), Err(ReplayError::TooOld));
        }
    }

    #[test]
    fn concurrent_receivers_accept_each_counter_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Shared(std::cell::UnsafeCell<ReplayWindow>);
        // SAFETY: the window is only touched through atomics.
        unsafe impl Sync for Shared {}
        let w = Arc::new(Shared(std::cell::UnsafeCell::new(ReplayWindow::new())));
        let accepted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                let accepted = accepted.clone();
                std::thread::spawn(move || {
                    // Every thread tries every counter, in a different order.
                    for i in 0..20_000u64 {
                        let c = if t % 2 == 0 { i } else { i ^ 1 };
                        // SAFETY: valid window, atomic access only.
                        if unsafe { check_and_set(w.0.get(), c) }.is_ok() {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Never more than once per counter. (Some may be refused as too old
        // when one thread races ahead, which is allowed.)
        assert!(accepted.load(Ordering::Relaxed) <= 20_000);
        assert!(accepted.load(Ordering::Relaxed) > 15_000);
    }
}
