//! The anti-replay window, shared by the kernel path and the userspace twin.
//!
//! A sliding bitmap of [`REPLAY_SLOTS`] 64-bit slots. Each slot holds the low
//! 32 bits of a block number (`counter / 32`) in its upper half and a bitmap
//! of the 32 counters of that block in its lower half, so that checking and
//! setting a counter is a single 64-bit compare-and-swap: the window is
//! correct when several CPUs receive the same session at once, with no lock
//! and no per-CPU copies (a per-CPU window would let a replay through on
//! another CPU). A second word tracks the highest counter accepted.
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

/// Relation of a slot's stored block tag to the block we want.
#[inline(always)]
fn classify(old: u64, tag: u32) -> Slot {
    if old == 0 {
        return Slot::Empty;
    }
    let old_tag = (old >> 32) as u32;
    if old_tag == tag {
        return Slot::Same;
    }
    // A slot holding a later block than ours (by any amount) means our
    // counter has already slid out of the window: another CPU accepted a
    // counter at least `REPLAY_SLOTS - 1` blocks ahead, possibly after we
    // read the high-water mark, and possibly several times over while we
    // were preempted. Only an earlier block is stale and may be replaced;
    // the slot can then never have held our block (a slot only ever moves
    // to later blocks), so our counter is fresh. Tags are the low 32 bits of
    // the block number, compared as a signed distance: exact while the
    // blocks involved are less than 2^31 blocks (2^36 counters) apart,
    // which a sender counting packets one by one never reaches.
    if (old_tag.wrapping_sub(tag) as i32) > 0 {
        Slot::Newer
    } else {
        Slot::Stale
    }
}

enum Slot {
    Empty,
    Same,
    Newer,
    Stale,
}

#[inline(always)]
fn too_old(next: u64, counter: u64) -> bool {
    // highest = next - 1; reject counter + WINDOW < highest  <=>  counter + WINDOW + 1 < next
    next > REPLAY_WINDOW + 1 && counter < next - REPLAY_WINDOW - 1
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
    // SAFETY: per this function's contract.
    let next = unsafe { atomic::load(next_ptr(w)) };
    if too_old(next, counter) {
        return Err(ReplayError::TooOld);
    }
    // SAFETY: as above.
    let old = unsafe { atomic::load(slot_ptr(w, counter)) };
    let tag = (counter / SLOT_BITS) as u32;
    let bit = 1u64 << (counter % SLOT_BITS);
    match classify(old, tag) {
        Slot::Same if old & bit != 0 => Err(ReplayError::Replay),
        Slot::Newer => Err(ReplayError::TooOld),
        _ => Ok(()),
    }
}

/// Marks `counter` as seen; `Err` if it was seen already or is too old.
/// Call only for authenticated packets.
///
/// # Safety
/// As for [`check`].
#[inline(always)]
pub unsafe fn check_and_set(w: *mut ReplayWindow, counter: u64) -> Result<(), ReplayError> {
    if counter == u64::MAX {
        return Err(ReplayError::TooOld);
    }
    let next_a = next_ptr(w);
    // SAFETY: per this function's contract.
    if too_old(unsafe { atomic::load(next_a) }, counter) {
        return Err(ReplayError::TooOld);
    }
    let slot = slot_ptr(w, counter);
    let tag = (counter / SLOT_BITS) as u32;
    let bit = 1u64 << (counter % SLOT_BITS);
    let mut done = false;
    let mut tries = 0;
    while tries < CAS_TRIES {
        tries += 1;
        // SAFETY: as above.
        let old = unsafe { atomic::load(slot) };
        let new = match classify(old, tag) {
            Slot::Same => {
                if old & bit != 0 {
                    return Err(ReplayError::Replay);
                }
                old | bit
            }
            Slot::Empty | Slot::Stale => ((tag as u64) << 32) | bit,
            Slot::Newer => return Err(ReplayError::TooOld),
        };
        // SAFETY: as above.
        if unsafe { atomic::compare_exchange(slot, old, new) } {
            done = true;
            break;
        }
    }
    if !done {
        return Err(ReplayError::Replay);
    }
    // Advance the high-water mark (bounded CAS loop; a lost race only means
    // another CPU advanced it, possibly further).
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
    Ok(())
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

    #[test]
    fn a_stalled_receiver_never_accepts_a_replay() {
        // Receiver C read the high-water mark, then was preempted while
        // other CPUs accepted counters two and three slot-cycles ahead
        // (overwriting C's slot each time) and had not yet published the
        // new high-water mark. C's counter was accepted long ago: when C
        // resumes, the slot must read as "newer", never as stale.
        let cycle = REPLAY_SLOTS as u64 * SLOT_BITS;
        for k in 1..=5u64 {
            let mut w = ReplayWindow::new();
            let c = 10_000u64;
            assert_eq!(accept(&mut w, c), Ok(()));
            let stalled_next = w.next;
            for j in 1..=k {
                // SAFETY: exclusive access to a valid window.
                assert_eq!(unsafe { check_and_set(&mut w, c + j * cycle) }, Ok(()));
            }
            // What C saw before it stalled.
            w.next = stalled_next;
            // SAFETY: as above.
            let got = unsafe { check_and_set(&mut w, c) };
            assert_eq!(got, Err(ReplayError::TooOld), "{k} cycles ahead");
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
