//! Memory per active series in the head, printed as figures (not a timing bench).
//!
//! Workload: the append bench's fleet (benches/support/fleet.rs): 198 node_exporter targets ×
//! 507 series = 100,386 series, labels `__name__`, the exporter's own (cpu, mode, device, …),
//! `instance`, `job`, `env`, `zone`; values replayed from the generated day, one scrape per
//! target per 15 s round with a few milliseconds of jitter, committed through a `Db` (WAL and
//! head) by cached ref, the way the scraper commits.
//!
//! After 1, 10, 60, 130 and 250 samples per series (and `HEAD_MEMORY_SAMPLES`) it prints, per
//! series: the bytes the process has allocated and not freed (requested sizes, and the
//! allocator's usable sizes, which add its rounding), live allocations, and RSS, each above
//! what the process held before the `Db` was opened; then the head's chunks (closed and open)
//! and the bytes its chunk file (`chunks_head/`, closed chunks out of the heap) takes on disk.
//! It also prints what a plain clone of the label sets costs, for comparison with what the head
//! keeps per series for its labels.
//!
//! `cargo bench --bench head_memory`

use tidemark::model::Labels;
use tidemark::model::Matcher;
use tidemark::storage::{Db, Options, Selected, SeriesRef};

#[path = "support/node_day.rs"]
mod node_day;

#[path = "support/workload.rs"]
mod workload;

#[path = "support/fleet.rs"]
mod fleet;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static A: counting_alloc::Counting = counting_alloc::Counting;

/// 198 targets × 507 series = 100,386 series.
const TARGETS: usize = 198;

/// Sample counts per series at which figures are printed; `HEAD_MEMORY_SAMPLES=n` adds one
/// more (e.g. 1440, two hours of 5 s scrapes: twelve closed chunks per series).
const CHECKPOINTS: [usize; 5] = [1, 10, 60, 130, 250];

/// Segments of the head chunk file and the bytes they take on disk (allocated blocks: the
/// segment being written is sized up front, sparse).
fn chunk_file(data: &std::path::Path) -> (usize, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(dir) = std::fs::read_dir(data.join("chunks_head")) else {
        return (0, 0);
    };
    let sizes: Vec<u64> = dir
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.blocks() * 512)
        .collect();
    (sizes.len(), sizes.iter().sum())
}

#[derive(Clone, Copy)]
struct Mem {
    bytes: i64,
    usable: i64,
    live: i64,
    rss: i64,
}

fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn now() -> Mem {
    let l = counting_alloc::live();
    Mem {
        bytes: l.bytes,
        usable: l.usable,
        live: l.allocations,
        rss: rss(),
    }
}

fn per(a: Mem, b: Mem, n: usize) -> (f64, f64, f64, f64) {
    let n = n as f64;
    (
        (b.bytes - a.bytes) as f64 / n,
        (b.usable - a.usable) as f64 / n,
        (b.live - a.live) as f64 / n,
        (b.rss - a.rss) as f64 / n,
    )
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter this bench has no use for.
    let day = workload::aligned_day();
    let base = workload::labels_of(&day);
    let labels: Vec<Vec<Labels>> = (0..TARGETS)
        .map(|k| base.iter().map(|l| fleet::target_labels(l, k)).collect())
        .collect();
    let n: usize = labels.iter().map(Vec::len).sum();
    let pairs: usize = labels.iter().flatten().map(Labels::len).sum();
    println!(
        "head_memory: {TARGETS} targets × {}; {n} series, {:.2} label pairs per series",
        workload::describe(&day),
        pairs as f64 / n as f64
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let t0 = day[0].samples[0].t;
    let start = now();
    let db = Db::open(dir.path(), Options::default()).unwrap_or_else(|e| panic!("open: {e}"));
    let mut refs: Vec<Vec<SeriesRef>> = Vec::with_capacity(TARGETS);
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>14} {:>9}",
        "samples",
        "B requested",
        "B usable",
        "allocs",
        "RSS B",
        "chunks",
        "chunk file B",
        "segments"
    );
    let mut checkpoints = CHECKPOINTS.to_vec();
    if let Some(more) = std::env::var("HEAD_MEMORY_SAMPLES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        checkpoints.push(more);
        checkpoints.sort_unstable();
    }
    for round in 0..checkpoints.last().copied().unwrap_or(0) {
        for (k, target) in labels.iter().enumerate() {
            // A few milliseconds of jitter, as real scrapes have.
            let t = t0
                + round as i64 * fleet::SCRAPE_MS
                + fleet::scrape_offset(k)
                + ((round * 7 + k) % 5) as i64;
            let mut app = db.appender_at(t);
            let value = |j: usize| {
                let s = &day[j].samples;
                s[(fleet::day_offset(k, s.len()) + round) % s.len()].v
            };
            if round == 0 {
                let got = target
                    .iter()
                    .enumerate()
                    .map(|(j, l)| {
                        app.append(l, t, value(j))
                            .unwrap_or_else(|e| panic!("append: {e}"))
                    })
                    .collect();
                refs.push(got);
            } else {
                for (j, &r) in refs[k].iter().enumerate() {
                    app.append_ref(r, t, value(j))
                        .unwrap_or_else(|e| panic!("append_ref: {e}"));
                }
            }
            let want = app.len() as u64;
            let stats = app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
            assert_eq!(stats.appended, want, "every sample stored: {stats:?}");
        }
        if checkpoints.contains(&(round + 1)) {
            let (b, u, l, r) = per(start, now(), n);
            let (segments, disk) = chunk_file(dir.path());
            println!(
                "{:>8} {b:>12.0} {u:>12.0} {l:>12.2} {r:>12.0} {:>12.2} {:>14.0} {segments:>9}",
                round + 1,
                db.head().num_chunks() as f64 / n as f64,
                disk as f64 / n as f64,
            );
        }
    }
    // A read of every sample maps the chunk file's pages into the process (page cache, counted
    // in RSS until released); `Head::release_chunk_pages` (run by `Db::maintain`) unmaps them.
    let read_at = now();
    let mut samples = 0usize;
    for m in 0..TARGETS {
        let inst = Matcher::equal("instance", fleet::instance(m));
        let _ = db
            .querier()
            .select_each(&[&[inst]], i64::MIN, i64::MAX, &mut |s| {
                if let Selected::Series(s) = s {
                    samples += s.samples.len();
                }
                Ok::<(), tidemark::storage::StorageError>(())
            });
    }
    let read = now();
    db.head().release_chunk_pages();
    let released = now();
    println!(
        "after reading all {samples} samples: RSS {:+.0} B per series (heap {:+.0}); after \
         release_chunk_pages: RSS {:+.0} B per series",
        per(read_at, read, n).3,
        per(read_at, read, n).0,
        per(read_at, released, n).3,
    );
    // Measured last: memory it freed before the `Db` was opened would be reused by the head
    // and hide part of its RSS.
    let before = now();
    let copy: Vec<Vec<Labels>> = labels.clone();
    let after = now();
    let (b, u, l, _) = per(before, after, n);
    println!(
        "reference: a clone of the label sets as `Labels`: {b:.0} B requested, {u:.0} B usable, \
         {l:.1} allocations per series"
    );
    drop(copy);
    drop(db);
}
