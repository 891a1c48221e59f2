//! Bytes on disk per sample for a day of 15s node_exporter scrapes: tidemark's blocks against
//! Prometheus's (`promtool tsdb create-blocks-from openmetrics`, if on PATH), plus the WAL and
//! what snappy over the chunk data would save. Prints a table; not a criterion bench.
//!
//! The day is benches/support/node_day.rs (507 series × 5,757 samples) moved to a UTC midnight
//! (benches/support/workload.rs), so it fills exactly twelve 2h windows and one 24h window on
//! both sides. It is appended through `Db` one scrape (507 samples) per commit, with a flush
//! every two hours of data as the agent does. One extra scrape two hours after the day pushes
//! the whole day out of the head; that scrape stays in the head and the WAL and is not counted.
//! Counted: the block files, which then hold every sample of the day and nothing else, first as
//! the twelve 2h blocks the flushes wrote, then as the one 24h block compaction makes of them.
//! Prometheus gets the same samples, labels and timestamps as OpenMetrics text.
//!
//! `cargo bench --bench disk`

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tidemark::storage::sstable::Block;
use tidemark::storage::{Db, Options, SeriesRef};

#[path = "support/node_day.rs"]
mod node_day;

#[path = "support/workload.rs"]
mod workload;

/// Scrapes between flushes: two hours.
const FLUSH_EVERY: usize = 480;
/// Bytes of the CRC32C after each chunk in a block (docs/format/block.md).
const CHUNK_CRC: u64 = 4;

/// Bytes of a set of blocks, split into chunk data and everything else.
#[derive(Default)]
struct Size {
    blocks: usize,
    files: usize,
    total: u64,
    chunks: u64,
    samples: u64,
}

impl Size {
    fn row(&self, what: &str, samples: u64) {
        let per = |b: u64| b as f64 / samples as f64;
        println!(
            "{what:<44} {:>6} {:>5} {:>9} {:>7.3} {:>7.3} {:>7.3}",
            self.blocks,
            self.files,
            self.total,
            per(self.total),
            per(self.chunks),
            per(self.total - self.chunks),
        );
    }
}

/// Sizes of our blocks, chunk section measured from the chunk metas.
fn our_size(blocks: &[std::sync::Arc<Block>]) -> Size {
    let mut s = Size::default();
    for b in blocks {
        s.blocks += 1;
        s.files += 1;
        s.total += b.meta().size_bytes;
        s.samples += b.meta().num_samples;
        for id in 0..b.num_series() {
            let (_, chunks) = b.series(id).unwrap_or_else(|e| panic!("{e}"));
            s.chunks += chunks
                .iter()
                .map(|c| u64::from(c.len) + CHUNK_CRC)
                .sum::<u64>();
        }
    }
    s
}

/// Raw chunk bytes, then snappy per chunk (keeping the raw bytes where snappy does not shrink
/// them, as a per-chunk flag would), then snappy over all chunks as one stream.
fn snappy_over_chunks(blocks: &[std::sync::Arc<Block>]) -> (u64, u64, u64) {
    let mut enc = snap::raw::Encoder::new();
    let (mut raw, mut per_chunk) = (0u64, 0u64);
    let mut all = Vec::new();
    let mut buf = Vec::new();
    for b in blocks {
        for id in 0..b.num_series() {
            let (_, chunks) = b.series(id).unwrap_or_else(|e| panic!("{e}"));
            for c in chunks {
                b.read_chunk_into(&c, &mut buf)
                    .unwrap_or_else(|e| panic!("{e}"));
                let z = enc.compress_vec(&buf).unwrap_or_else(|e| panic!("{e}"));
                raw += buf.len() as u64;
                per_chunk += z.len().min(buf.len()) as u64;
                all.extend_from_slice(&buf);
            }
        }
    }
    let whole = enc.compress_vec(&all).unwrap_or_else(|e| panic!("{e}"));
    (raw, per_chunk, whole.len() as u64)
}

fn dir_bytes(dir: &Path, chunks: &mut u64, files: &mut usize) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.unwrap_or_else(|e| panic!("{e}"));
        let meta = e.metadata().unwrap_or_else(|e| panic!("{e}"));
        if meta.is_dir() {
            total += dir_bytes(&e.path(), chunks, files);
        } else {
            *files += 1;
            total += meta.len();
            if e.path().parent().and_then(Path::file_name) == Some("chunks".as_ref()) {
                *chunks += meta.len();
            }
        }
    }
    total
}

/// Sizes of a Prometheus output directory: chunk files under `*/chunks/`, the rest is index,
/// meta.json and tombstones. Samples are read back from each block's meta.json.
fn prom_size(dir: &Path) -> Size {
    let mut s = Size::default();
    s.total = dir_bytes(dir, &mut s.chunks, &mut s.files);
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")) {
        let meta = e.unwrap_or_else(|e| panic!("{e}")).path().join("meta.json");
        let Ok(text) = std::fs::read_to_string(&meta) else {
            continue;
        };
        let n = text
            .split("\"numSamples\":")
            .nth(1)
            .and_then(|r| {
                r.split(|c: char| !c.is_ascii_digit())
                    .find(|x| !x.is_empty())
            })
            .and_then(|x| x.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no numSamples in {}", meta.display()));
        s.samples += n;
        s.blocks += 1;
    }
    s
}

/// Runs promtool's backfill into `out`; `None` when promtool is not installed.
fn promtool(input: &Path, out: &Path, extra: &[&str]) -> Option<Size> {
    let began = Instant::now();
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
        .args(extra)
        .arg(input)
        .arg(out)
        .status();
    match status {
        Ok(s) if s.success() => {
            println!(
                "promtool {} took {:.1}s",
                extra.join(" "),
                began.elapsed().as_secs_f64()
            );
            Some(prom_size(out))
        }
        Ok(s) => panic!("promtool failed: {s}"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("running promtool: {e}"),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; without it this is a test run (`cargo test --benches`),
    // too slow to do on the way. A name filter that is not ours is meant for another bench.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let foreign_filter = args
        .iter()
        .any(|a| !a.starts_with('-') && a.parse::<f64>().is_err() && !"disk".contains(a.as_str()));
    if !args.iter().any(|a| a == "--bench") || foreign_filter {
        println!("disk: skipped (run it with `cargo bench --bench disk`)");
        return;
    }
    let day = workload::aligned_day();
    let labels = workload::labels_of(&day);
    let scrapes = day[0].samples.len();
    let samples = (day.len() * scrapes) as u64;
    println!("data: {}", workload::describe(&day));
    println!(
        "      {samples} samples, every 15s from {} ms",
        day[0].samples[0].t
    );

    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let db_dir = tmp.path().join("tidemark");
    let db = Db::open(&db_dir, Options::default()).unwrap_or_else(|e| panic!("open: {e}"));
    let began = Instant::now();
    let mut refs: Vec<SeriesRef> = Vec::new();
    for k in 0..=scrapes {
        let t = day[0].samples.get(k).map_or(
            day[0].samples[0].t + workload::DAY_MS + 2 * 3_600_000,
            |p| p.t,
        );
        let mut app = db.appender();
        if refs.is_empty() {
            for (s, l) in day.iter().zip(&labels) {
                refs.push(
                    app.append(l, t, s.samples[k].v)
                        .unwrap_or_else(|e| panic!("append: {e}")),
                );
            }
        } else {
            for (s, &r) in day.iter().zip(&refs) {
                // The extra scrape repeats the day's last values.
                let v = s.samples[k.min(scrapes - 1)].v;
                app.append_ref(r, t, v)
                    .unwrap_or_else(|e| panic!("append_ref: {e}"));
            }
        }
        let n = app.len() as u64;
        let stats = app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
        assert_eq!(stats.appended, n, "{stats:?}");
        if k + 1 == scrapes {
            let w = db.wal_stats();
            println!(
                "WAL: the day's commits wrote {} bytes, {:.3} bytes/sample",
                w.bytes_written,
                w.bytes_written as f64 / samples as f64
            );
        }
        if k % FLUSH_EVERY == FLUSH_EVERY - 1 || k == scrapes {
            db.flush().unwrap_or_else(|e| panic!("flush: {e}"));
        }
    }
    println!(
        "ingest and flushes took {:.1}s",
        began.elapsed().as_secs_f64()
    );
    let two_hour = our_size(&db.catalog().blocks);
    let snappy_2h = snappy_over_chunks(&db.catalog().blocks);
    while db
        .compact()
        .unwrap_or_else(|e| panic!("compact: {e}"))
        .is_some()
    {}
    let blocks = db.catalog().blocks.clone();
    let one_day = our_size(&blocks);
    let snappy_24h = snappy_over_chunks(&blocks);
    for s in [&two_hour, &one_day] {
        assert_eq!(s.samples, samples, "blocks hold exactly the day");
    }
    let w = db.wal_stats();
    println!(
        "WAL on disk at the end (checkpoint of the head + newest segment): {} bytes",
        w.total_bytes
    );

    let om = tmp.path().join("day.om");
    node_day::write_openmetrics(&day, &om).unwrap_or_else(|e| panic!("writing {e}"));
    let prom2 = promtool(&om, &tmp.path().join("prom-2h"), &[]);
    // promtool rounds the maximum down to one of Prometheus's ranges (2h × 3^n: 18h for 24h,
    // 486h for 720h), aligned to multiples of itself: 24h gives two blocks for a day starting
    // at midnight, 720h one block holding the whole day.
    let prom_long: Vec<(String, Size)> = ["24h", "720h"]
        .iter()
        .filter(|_| prom2.is_some())
        .filter_map(|d| {
            let flag = format!("--max-block-duration={d}");
            let out = tmp.path().join(format!("prom-{d}"));
            promtool(&om, &out, &[&flag]).map(|s| (flag, s))
        })
        .collect();

    println!();
    println!(
        "{:<44} {:>6} {:>5} {:>9} {:>7} {:>7} {:>7}",
        "bytes per sample", "blocks", "files", "bytes", "total", "chunks", "index+"
    );
    two_hour.row("tidemark 2h blocks (as flushed)", samples);
    one_day.row("tidemark 24h block (compacted)", samples);
    match &prom2 {
        Some(p2) => {
            p2.row("promtool 2.42 (default 2h)", samples);
            for (flag, p) in &prom_long {
                p.row(&format!("promtool 2.42 {flag}"), samples);
            }
            for p in std::iter::once(p2).chain(prom_long.iter().map(|(_, p)| p)) {
                assert_eq!(p.samples, samples, "promtool stored every sample");
            }
            println!();
            let ratio = |ours: &Size, theirs: &Size| ours.total as f64 / theirs.total as f64;
            println!(
                "ours / prometheus: 2h blocks {:.3}; our 24h block / their 2h blocks {:.3}",
                ratio(&two_hour, p2),
                ratio(&one_day, p2),
            );
            for (flag, p) in &prom_long {
                println!(
                    "ours / prometheus: our 24h block / their {flag} blocks {:.3}",
                    ratio(&one_day, p)
                );
            }
        }
        None => println!("promtool not found on PATH: Prometheus comparison skipped"),
    }
    println!(
        "(index+ = all but chunk data: symbols, series, postings, footer; for Prometheus: \
         index, meta.json, tombstones)"
    );
    println!();
    for (what, (raw, per_chunk, whole)) in [("2h", snappy_2h), ("24h", snappy_24h)] {
        let pct = |x: u64| 100.0 * (1.0 - x as f64 / raw as f64);
        println!(
            "snappy over {what} chunk data: raw {raw} B; per chunk {per_chunk} B ({:.1}% saved); \
             whole section {whole} B ({:.1}% saved)",
            pct(per_chunk),
            pct(whole)
        );
    }
    db.close().unwrap_or_else(|e| panic!("close: {e}"));
}
