//! What a full checksum pass over a block (`Block::verify`: every section and every chunk CRC,
//! the series order, the chunk tiling, the footer's counts and the postings) costs against
//! opening it (`Block::open`: header, footer and the index sections it loads), on one 24h block
//! of the node_exporter fleet (benches/support/fleet.rs over the 507 series of
//! benches/support/node_day.rs, 5,757 samples each at 15s): 20 targets (10,140 series) and 198
//! targets (100,386 series). This decides whether storage verifies every block at open or in a
//! background scrub (ARCHITECTURE.md, "Corrupt blocks"). Prints a table; not a criterion bench.
//!
//! Both are timed warm (the file in the page cache, as right after it was written or on a
//! restart of a host that kept its cache): the median of `RUNS` runs. A cold read costs the
//! block's size over the disk's sequential read rate on top, for `verify` (which reads every
//! byte) and not for `open` (which reads the index only); the size is printed so that cost can
//! be worked out for a given disk.
//!
//! `cargo bench --bench block_verify` (set `TIDEMARK_VERIFY_TARGETS=20` for the small block only)

use std::time::{Duration, Instant};

use tidemark::model::{Labels, Sample};
use tidemark::storage::sstable::{Block, BlockWriter};
use tidemark::storage::to_chunks;

#[path = "support/node_day.rs"]
mod node_day;

#[path = "support/workload.rs"]
mod workload;

#[path = "support/fleet.rs"]
mod fleet;

/// Timed runs of each operation; the median is printed.
const RUNS: usize = 7;

fn main() {
    let day = workload::aligned_day();
    let base = workload::labels_of(&day);
    let sizes: Vec<usize> = match std::env::var("TIDEMARK_VERIFY_TARGETS") {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().parse().expect("TIDEMARK_VERIFY_TARGETS: numbers"))
            .collect(),
        Err(_) => vec![20, 198],
    };
    println!(
        "{}, every {} s, one block per fleet",
        workload::describe(&day),
        fleet::SCRAPE_MS / 1000
    );
    println!(
        "{:>8} {:>12} {:>10} {:>12} {:>12} {:>10} {:>12}",
        "series", "samples", "MiB", "open ms", "verify ms", "verify/open", "verify MiB/s"
    );
    for targets in sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write_block(dir.path(), &day, &base, targets);
        let open = median((0..RUNS).map(|_| {
            let began = Instant::now();
            let b = Block::open(&path).expect("open");
            let d = began.elapsed();
            drop(b);
            d
        }));
        let block = Block::open(&path).expect("open");
        let verify = median((0..RUNS).map(|_| {
            let began = Instant::now();
            block.verify().expect("verify");
            began.elapsed()
        }));
        let m = block.meta();
        let mib = m.size_bytes as f64 / (1 << 20) as f64;
        println!(
            "{:>8} {:>12} {:>10.1} {:>12.1} {:>12.1} {:>10.1}x {:>12.0}",
            m.num_series,
            m.num_samples,
            mib,
            ms(open),
            ms(verify),
            verify.as_secs_f64() / open.as_secs_f64(),
            mib / verify.as_secs_f64(),
        );
    }
}

/// Writes the day of `targets` targets as one block; returns its path.
fn write_block(
    dir: &std::path::Path,
    day: &[node_day::Series],
    base: &[Labels],
    targets: usize,
) -> std::path::PathBuf {
    // The writer takes series in label order.
    let mut all: Vec<(Labels, usize, usize)> = (0..targets)
        .flat_map(|t| {
            base.iter()
                .enumerate()
                .map(move |(i, l)| (fleet::target_labels(l, t), t, i))
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = BlockWriter::new(dir, 2, Vec::new()).expect("writer");
    let mut samples: Vec<Sample> = Vec::new();
    for (labels, t, i) in &all {
        // Each target replays the day from its own point, at its own phase of the interval.
        let src = &day[*i].samples;
        let off = fleet::day_offset(*t, src.len());
        let phase = fleet::scrape_offset(*t);
        samples.clear();
        samples.extend(
            src.iter()
                .enumerate()
                .map(|(k, s)| Sample::new(s.t + phase, src[(k + off) % src.len()].v)),
        );
        w.add_series(labels, &to_chunks(&samples))
            .expect("add series");
    }
    w.finish().expect("finish").path
}

fn median(it: impl Iterator<Item = Duration>) -> Duration {
    let mut v: Vec<Duration> = it.collect();
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
