//! 64-bit atomics on raw pointers that work on the host and in BPF.
//!
//! The `bpfel-unknown-none` target only advertises atomic loads and stores,
//! so `AtomicU64::fetch_add`/`compare_exchange` do not exist there, although
//! the instructions do (BPF_ATOMIC with BPF_FETCH / BPF_CMPXCHG, kernel 5.12,
//! `-C target-cpu=v3`). On BPF these functions use the compiler intrinsics,
//! which LLVM lowers to those instructions; on the host, `AtomicU64`.
//! All read-modify-write operations are sequentially consistent (BPF's
//! fetching atomics are full barriers anyway).

#[cfg(not(target_arch = "bpf"))]
use core::sync::atomic::{AtomicU64, Ordering};

/// Atomically loads `*p` (relaxed on BPF, acquire on the host).
///
/// # Safety
/// `p` must point to a live, 8-byte aligned `u64` that is only accessed
/// atomically while this runs.
#[inline(always)]
pub unsafe fn load(p: *mut u64) -> u64 {
    #[cfg(target_arch = "bpf")]
    {
        // SAFETY: per the caller's contract; an aligned 64-bit load is
        // single-copy atomic on BPF.
        unsafe { core::ptr::read_volatile(p) }
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        // SAFETY: per the caller's contract.
        unsafe { AtomicU64::from_ptr(p) }.load(Ordering::Acquire)
    }
}

/// Atomically adds `v` to `*p` and returns the previous value.
///
/// # Safety
/// As for [`load`].
#[inline(always)]
pub unsafe fn fetch_add(p: *mut u64, v: u64) -> u64 {
    #[cfg(target_arch = "bpf")]
    {
        use core::intrinsics::AtomicOrdering::SeqCst;
        // SAFETY: per the caller's contract.
        unsafe { core::intrinsics::atomic_xadd::<u64, u64, { SeqCst }>(p, v) }
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        // SAFETY: per the caller's contract.
        unsafe { AtomicU64::from_ptr(p) }.fetch_add(v, Ordering::SeqCst)
    }
}

/// Atomically replaces `*p` with `new` if it equals `old`; returns whether
/// it did.
///
/// # Safety
/// As for [`load`].
#[inline(always)]
pub unsafe fn compare_exchange(p: *mut u64, old: u64, new: u64) -> bool {
    #[cfg(target_arch = "bpf")]
    {
        use core::intrinsics::AtomicOrdering::SeqCst;
        // SAFETY: per the caller's contract.
        unsafe { core::intrinsics::atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(p, old, new) }.1
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        // SAFETY: per the caller's contract.
        unsafe { AtomicU64::from_ptr(p) }
            .compare_exchange(old, new, Ordering::SeqCst, Ordering::Acquire)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_semantics() {
        let mut x = 5u64;
        // SAFETY: exclusive, aligned local.
        unsafe {
            assert_eq!(fetch_add(&mut x, 3), 5);
            assert_eq!(load(&mut x), 8);
            assert!(!compare_exchange(&mut x, 7, 1));
            assert!(compare_exchange(&mut x, 8, 1));
            assert_eq!(load(&mut x), 1);
        }
    }
}
