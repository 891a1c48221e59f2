//! The head's memory after ingest and after a WAL replay of the same samples, in two processes,
//! for the replay-memory bound of issue 13 (replay must not need more than the running agent).
//!
//! `replay_memory ingest DIR SERIES STEPS THREADS` commits the shape of
//! `examples/remote_write_gen.rs` (SERIES series, STEPS samples each at 30 s, 20 samples of 5,000
//! series per commit, windows in time order) into a fresh `Db` at DIR, the commits spread over
//! THREADS threads (0: the main thread), and prints what the process holds.
//! `replay_memory replay DIR` opens DIR (replaying its WAL on this thread, as `tidemark run`
//! does) and prints the same figures.
//!
//! Printed: bytes allocated and not freed (requested, and the allocator's usable sizes), live
//! allocations, RSS, and glibc's `mallinfo2` (bytes in use and free inside its arenas).

use std::path::Path;

use tidemark::model::Labels;
use tidemark::storage::{Db, Options};

#[path = "../benches/support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static A: counting_alloc::Counting = counting_alloc::Counting;

const INTERVAL_MS: i64 = 30_000;
const WINDOW: u64 = 20;
const BATCH: u64 = 5000;

#[path = "support/replay_shape.rs"]
mod replay_shape;
use replay_shape::value;

fn labels(i: u64) -> Labels {
    let pairs = replay_shape::label_pairs(i);
    Labels::new(pairs.iter().map(|(n, v)| (*n, v.as_str())))
        .unwrap_or_else(|e| panic!("labels: {e}"))
}

fn field(file: &str, key: &str) -> i64 {
    let s = std::fs::read_to_string(file).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<i64>().ok())
        .unwrap_or(0)
        * 1024
}

fn report(what: &str, series: i64) {
    // SAFETY: mallinfo2 only reads glibc's arena statistics.
    let mi = unsafe { libc::mallinfo2() };
    let mib = |b: i64| b as f64 / 1048576.0;
    let live = counting_alloc::live();
    let rss = field("/proc/self/status", "VmRSS:");
    let hwm = field("/proc/self/status", "VmHWM:");
    println!(
        "{what}: requested {:.1} MiB, usable {:.1} MiB, live allocs {}, RSS {:.1} MiB, HWM {:.1} MiB; \
         mallinfo2: arena {:.1} MiB, in use {:.1} MiB, free {:.1} MiB, mmapped {:.1} MiB; \
         per series: requested {:.0} B, usable {:.0} B, RSS {:.0} B",
        mib(live.bytes),
        mib(live.usable),
        live.allocations,
        mib(rss),
        mib(hwm),
        mib(mi.arena as i64),
        mib(mi.uordblks as i64),
        mib(mi.fordblks as i64),
        mib(mi.hblkhd as i64),
        live.bytes as f64 / series as f64,
        live.usable as f64 / series as f64,
        rss as f64 / series as f64,
    );
    if std::env::var_os("MALLOC_INFO").is_some() {
        // SAFETY: fdopen on stderr's descriptor, flushed by malloc_info; never closed.
        unsafe {
            let f = libc::fdopen(2, c"w".as_ptr());
            if !f.is_null() {
                libc::malloc_info(0, f);
                libc::fflush(f);
            }
        }
    }
}

fn commit_batch(db: &Db, series: u64, lo: u64, s0: u64, s1: u64, start: i64) {
    let mut app = db.appender();
    for i in lo..(lo + BATCH).min(series) {
        let l = labels(i);
        for step in s0..s1 {
            let t = start + step as i64 * INTERVAL_MS;
            app.append(&l, t, value(i, step))
                .unwrap_or_else(|e| panic!("append: {e}"));
        }
    }
    let want = app.len() as u64;
    let stats = app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
    assert_eq!(stats.appended, want, "{stats:?}");
}

fn ingest(dir: &Path, series: u64, steps: u64, threads: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let start = now / INTERVAL_MS * INTERVAL_MS - (steps as i64 - 1) * INTERVAL_MS;
    let db = Db::open(dir, Options::default()).unwrap_or_else(|e| panic!("open: {e}"));
    let batches: Vec<u64> = (0..series).step_by(BATCH as usize).collect();
    for s0 in (0..steps).step_by(WINDOW as usize) {
        let s1 = (s0 + WINDOW).min(steps);
        if threads == 0 {
            for &lo in &batches {
                commit_batch(&db, series, lo, s0, s1, start);
            }
        } else {
            std::thread::scope(|sc| {
                for k in 0..threads {
                    let (db, batches) = (&db, &batches);
                    sc.spawn(move || {
                        for &lo in batches.iter().skip(k as usize).step_by(threads as usize) {
                            commit_batch(db, series, lo, s0, s1, start);
                        }
                    });
                }
            });
        }
    }
    report("after ingest", series as i64);
    db.close().unwrap_or_else(|e| panic!("close: {e}"));
}

fn replay(dir: &Path) {
    let db = Db::open(dir, Options::default()).unwrap_or_else(|e| panic!("open: {e}"));
    let n = db.head().num_series() as i64;
    report("after replay", n);
    drop(db);
}

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let num = |s: &String| s.parse::<u64>().unwrap_or_else(|e| panic!("{s}: {e}"));
    match a.as_slice() {
        [m, dir, series, steps, threads] if m == "ingest" => {
            ingest(Path::new(dir), num(series), num(steps), num(threads))
        }
        [m, dir] if m == "replay" => replay(Path::new(dir)),
        _ => eprintln!("usage: replay_memory ingest DIR SERIES STEPS THREADS | replay DIR"),
    }
}
