//! A global allocator that passes every call to the system allocator and counts what is live:
//! bytes requested, the allocator's usable bytes (its rounding included, glibc only) and
//! allocations. Used by the memory figures (benches/head_memory.rs, examples/replay_memory.rs),
//! each of which installs it with `#[global_allocator]`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts live bytes and allocations; see the module docs.
pub struct Counting;

static BYTES: AtomicI64 = AtomicI64::new(0);
static USABLE: AtomicI64 = AtomicI64::new(0);
static LIVE: AtomicI64 = AtomicI64::new(0);

/// What is live now.
pub struct Live {
    /// Bytes requested and not freed.
    pub bytes: i64,
    /// The same in the allocator's usable sizes.
    pub usable: i64,
    /// Allocations not freed.
    pub allocations: i64,
}

/// Reads the counters.
pub fn live() -> Live {
    Live {
        bytes: BYTES.load(Ordering::Relaxed),
        usable: USABLE.load(Ordering::Relaxed),
        allocations: LIVE.load(Ordering::Relaxed),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn usable(p: *mut u8) -> i64 {
    // SAFETY: `p` is a live allocation of the system allocator.
    unsafe { libc::malloc_usable_size(p.cast()) as i64 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn usable(_: *mut u8) -> i64 {
    0
}

fn count(p: *mut u8, size: usize, sign: i64) {
    if !p.is_null() {
        BYTES.fetch_add(sign * size as i64, Ordering::Relaxed);
        USABLE.fetch_add(sign * usable(p), Ordering::Relaxed);
        LIVE.fetch_add(sign, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        count(p, l.size(), 1);
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        count(p, l.size(), 1);
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(p, l.size(), -1);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(p, l.size(), -1);
        let q = unsafe { System.realloc(p, l, new) };
        if q.is_null() {
            count(p, l.size(), 1);
        } else {
            count(q, new, 1);
        }
        q
    }
}
