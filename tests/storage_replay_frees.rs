//! WAL replay decodes records on a thread of its own and applies them on the caller's. The
//! records must be freed on the decoding thread: freed on the applying thread, their small
//! allocations (label strings) enter that thread's allocator cache (glibc's tcache holds freed
//! chunks per thread, whatever arena they came from), the head's next allocations of those
//! sizes reuse them, and long-lived head data ends up scattered through the decoder's arena
//! (at 1M series the replayed head took ~85 MiB more RSS than the running agent's).
//!
//! An allocator tagging every allocation with the thread that made it counts, on a watched
//! thread, the frees of allocations another thread made.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tidemark::model::Labels;
use tidemark::storage::{Db, Options};

struct Tagging;

thread_local! {
    /// Its address names the thread.
    static TOKEN: u8 = const { 0 };
    static WATCHED: Cell<bool> = const { Cell::new(false) };
    static FOREIGN_FREES: Cell<u64> = const { Cell::new(0) };
}

fn token() -> usize {
    TOKEN.try_with(|t| t as *const u8 as usize).unwrap_or(0)
}

/// Room in front of every allocation for its thread's token, keeping the alignment asked for.
fn header(l: Layout) -> usize {
    l.align().max(16)
}

fn outer(l: Layout) -> Layout {
    // The caller's layout is valid, so adding at most its alignment (or 16) stays valid short
    // of overflow, which allocation would refuse anyway.
    Layout::from_size_align(l.size() + header(l), header(l)).unwrap_or(l)
}

// SAFETY: every allocation is the system allocator's, `header(l)` bytes past its start; the
// token is written in and read from those bytes only.
unsafe impl GlobalAlloc for Tagging {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let base = unsafe { System.alloc(outer(l)) };
        if base.is_null() {
            return base;
        }
        unsafe {
            base.cast::<usize>().write(token());
            base.add(header(l))
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let base = unsafe { p.sub(header(l)) };
        let owner = unsafe { base.cast::<usize>().read() };
        if WATCHED.try_with(Cell::get).unwrap_or(false) && owner != token() {
            let _ = FOREIGN_FREES.try_with(|n| n.set(n.get() + 1));
        }
        unsafe { System.dealloc(base, outer(l)) }
    }
}

#[global_allocator]
static A: Tagging = Tagging;

/// Runs `f` on this thread, watched; returns its result and the allocations of other threads
/// it freed here.
fn watched<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = FOREIGN_FREES.with(Cell::get);
    WATCHED.with(|w| w.set(true));
    let out = f();
    WATCHED.with(|w| w.set(false));
    (out, FOREIGN_FREES.with(Cell::get) - before)
}

#[test]
fn replay_frees_no_record_of_the_decoding_thread_on_the_applying_thread() {
    // The counter sees a free of another thread's allocation.
    let other = std::thread::spawn(|| vec![String::from("made elsewhere")])
        .join()
        .unwrap();
    let ((), seen) = watched(|| drop(other));
    assert_eq!(seen, 2, "a Vec and its String made on another thread");

    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let series = 3000;
    {
        let db = Db::open(dir.path(), Options::default()).unwrap();
        for step in 0..3i64 {
            let mut app = db.appender();
            for i in 0..series {
                let name = format!("m{}", i % 7);
                let idx = i.to_string();
                let l = Labels::new([("__name__", name.as_str()), ("idx", idx.as_str())]).unwrap();
                app.append(&l, now - 60_000 + step * 15_000, i as f64)
                    .unwrap();
            }
            app.commit().unwrap();
        }
        db.close().unwrap();
    }
    let (db, foreign) = watched(|| Db::open(dir.path(), Options::default()).unwrap());
    assert_eq!(db.head().num_series(), series);
    assert_eq!(db.replay_stats().samples, 3 * series);
    // The channels' own bookkeeping (a waiting list a blocked decoder registered in) may be
    // freed here, once per replay; a record's allocations would be thousands (a label set is
    // five allocations, times 3,000 series).
    assert!(
        foreign < 16,
        "the applying thread freed {foreign} allocations of the decoding thread"
    );
}
