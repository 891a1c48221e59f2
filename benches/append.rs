//! Append throughput into WAL + head, single-threaded, on a fleet of node_exporter targets.
//!
//! Workload: `TARGETS` targets (benches/support/fleet.rs) each exposing the 507 series of the
//! node_exporter day (benches/support/node_day.rs), 100,386 series in all, values replayed from
//! the generated day. One commit per target per round, the way the scraper commits one scrape;
//! each round advances time by 15s. The default `Options` are used: WAL fsync every second on
//! a background thread, 128 MiB segments.
//!
//! - `append/ref`: the scraper's steady state, `Appender::append_ref` with cached refs.
//! - `append/labels`: the slow path, `Appender::append` with the full label set (hash, lookup).
//! - `create/labels`: first-time series creation: a fresh `Db` per iteration, every series
//!   appended once by labels (series records in the WAL, postings, maps).
//!
//! Throughput is samples per second. After each group the bench also prints the rate over all
//! its iterations in wall time and in on-CPU time of the appending thread (Linux schedstat): on
//! a machine shared with other work the second is the code's own speed.
//! `cargo bench --bench append -- --warm-up-time 1 --measurement-time 5`

use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use tidemark::model::Labels;
use tidemark::storage::{Db, Options, SeriesRef};

#[path = "support/node_day.rs"]
mod node_day;

#[path = "support/workload.rs"]
mod workload;

#[path = "support/fleet.rs"]
mod fleet;

#[path = "support/tally.rs"]
mod tally;
use tally::Tally;

use node_day::Series;

/// 198 targets × 507 series = 100,386 series.
const TARGETS: usize = 198;

/// The fleet and where its time stands.
struct Load {
    day: Vec<Series>,
    /// Label sets per target, in day order.
    labels: Vec<Vec<Labels>>,
    t0: i64,
}

impl Load {
    fn new() -> Load {
        let day = workload::aligned_day();
        let base = workload::labels_of(&day);
        let labels = (0..TARGETS)
            .map(|k| base.iter().map(|l| fleet::target_labels(l, k)).collect())
            .collect();
        let t0 = day[0].samples[0].t;
        Load { day, labels, t0 }
    }

    fn num_series(&self) -> usize {
        self.labels.iter().map(Vec::len).sum()
    }

    fn time(&self, round: usize, target: usize) -> i64 {
        self.t0 + round as i64 * fleet::SCRAPE_MS + fleet::scrape_offset(target)
    }

    fn value(&self, round: usize, target: usize, series: usize) -> f64 {
        let s = &self.day[series].samples;
        s[(fleet::day_offset(target, s.len()) + round) % s.len()].v
    }

    /// One round: every target's scrape committed, by ref when `refs` is given, else by labels.
    /// Returns the refs per target.
    fn round(&self, db: &Db, round: usize, refs: Option<&[Vec<SeriesRef>]>) -> Vec<Vec<SeriesRef>> {
        let mut out = Vec::new();
        for (k, labels) in self.labels.iter().enumerate() {
            let t = self.time(round, k);
            let mut app = db.appender();
            match refs {
                Some(refs) => {
                    for (j, &r) in refs[k].iter().enumerate() {
                        app.append_ref(r, t, self.value(round, k, j))
                            .unwrap_or_else(|e| panic!("append_ref: {e}"));
                    }
                }
                None => {
                    let mut got = Vec::with_capacity(labels.len());
                    for (j, l) in labels.iter().enumerate() {
                        let r = app
                            .append(l, t, self.value(round, k, j))
                            .unwrap_or_else(|e| panic!("append: {e}"));
                        got.push(r);
                    }
                    out.push(got);
                }
            }
            let n = app.len() as u64;
            let stats = app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
            assert_eq!(stats.appended, n, "every sample must be stored: {stats:?}");
        }
        out
    }
}

fn benches(c: &mut Criterion) {
    let setup = Instant::now();
    let load = Load::new();
    let n = load.num_series() as u64;
    println!(
        "append workload: {} targets × {}; {n} series",
        TARGETS,
        workload::describe(&load.day)
    );

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let db = Db::open(dir.path(), Options::default()).unwrap_or_else(|e| panic!("open: {e}"));
    let refs = load.round(&db, 0, None);
    println!("setup {:.1}s", setup.elapsed().as_secs_f64());
    let mut round = 1;

    let (mut by_ref, mut by_labels, mut created) =
        (Tally::default(), Tally::default(), Tally::default());
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(n));
    g.bench_function(BenchmarkId::new("ref", n), |b| {
        b.iter_custom(|iters| {
            by_ref.time(iters * n, || {
                for _ in 0..iters {
                    load.round(&db, round, Some(&refs));
                    round += 1;
                }
            })
        })
    });
    g.bench_function(BenchmarkId::new("labels", n), |b| {
        b.iter_custom(|iters| {
            by_labels.time(iters * n, || {
                for _ in 0..iters {
                    load.round(&db, round, None);
                    round += 1;
                }
            })
        })
    });
    g.finish();
    by_ref.report("append/ref");
    by_labels.report("append/labels");
    let wal = db.wal_stats();
    println!(
        "after {round} rounds: {} head series, WAL {:.2} bytes/sample written, {} fsyncs",
        db.head().num_series(),
        wal.bytes_written as f64 / (round as f64 * n as f64),
        wal.fsyncs
    );
    db.close().unwrap_or_else(|e| panic!("close: {e}"));

    let mut g = c.benchmark_group("create");
    g.throughput(Throughput::Elements(n));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("labels", n), |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
                let db = Db::open(dir.path(), Options::default())
                    .unwrap_or_else(|e| panic!("open: {e}"));
                spent += created.time(n, || {
                    load.round(&db, 0, None);
                });
                db.close().unwrap_or_else(|e| panic!("close: {e}"));
            }
            spent
        })
    });
    g.finish();
    created.report("create/labels");
}

criterion_group!(append_benches, benches);
criterion_main!(append_benches);
