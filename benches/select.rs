//! `Querier::select` latency over a day of data held in blocks.
//!
//! Setup: `INSTANCES` node_exporter targets (benches/support/fleet.rs), each with the 507 series
//! of the generated day (benches/support/node_day.rs, moved to a UTC midnight), 10,140 series
//! and 58.4M samples in all, appended scrape by scrape through `Db` (WAL + head) with a flush
//! every two hours of data, as the agent does. One more scrape two hours after the day pushes
//! the whole day out of the head; compaction then merges the day's twelve 2h blocks into one
//! 24h block. Every query reads the day [midnight, midnight + 24h) through a fresh querier, so
//! it also asks the head (which holds only the extra scrape).
//!
//! - `one_series/*`: one series, 5,757 samples in 12 chunks of 480 (decoded whole): by its
//!   unique `nodename` (an info series, constant), and by name and instance for a random-walk
//!   gauge (`node_memory_MemFree_bytes`) and the clock (`node_time_seconds`, nanosecond noise,
//!   the costliest series to decode).
//! - `regex_100`: one regex matcher on `__name__` selecting 100 series.
//!
//! `cargo bench --bench select -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tidemark::model::{MatchOp, Matcher};
use tidemark::storage::{Db, Options, SeriesRef};

#[path = "support/node_day.rs"]
mod node_day;

#[path = "support/workload.rs"]
mod workload;

#[path = "support/fleet.rs"]
mod fleet;

/// 20 targets × 507 series = 10,140 series.
const INSTANCES: usize = 20;
/// Scrapes between flushes: two hours.
const FLUSH_EVERY: usize = 480;

/// Appends the day for every instance, then one scrape two hours past it; flushes as it goes
/// and compacts at the end. Returns the day's first timestamp and its number of scrapes.
fn build(db: &Db) -> (i64, usize) {
    let day = workload::aligned_day();
    println!(
        "select data: {INSTANCES} targets × {}",
        workload::describe(&day)
    );
    let base = workload::labels_of(&day);
    let start = day[0].samples[0].t;
    let scrapes = day[0].samples.len();
    let mut refs: Vec<Vec<SeriesRef>> = Vec::new();
    let began = Instant::now();
    for k in 0..=scrapes {
        for i in 0..INSTANCES {
            // The extra scrape at `scrapes` lands two hours after the day.
            let t = match day[0].samples.get(k) {
                Some(p) => p.t,
                None => start + workload::DAY_MS + 2 * 3_600_000,
            } + fleet::scrape_offset(i);
            let at =
                |s: &node_day::Series| s.samples[(k + fleet::day_offset(i, scrapes)) % scrapes].v;
            let mut app = db.appender();
            match refs.get(i) {
                Some(r) => {
                    for (s, &r) in day.iter().zip(r) {
                        app.append_ref(r, t, at(s))
                            .unwrap_or_else(|e| panic!("append_ref: {e}"));
                    }
                }
                None => {
                    let mut r = Vec::with_capacity(day.len());
                    for (s, l) in day.iter().zip(&base) {
                        let l = fleet::target_labels(l, i);
                        r.push(
                            app.append(&l, t, at(s))
                                .unwrap_or_else(|e| panic!("append: {e}")),
                        );
                    }
                    refs.push(r);
                }
            }
            let n = app.len() as u64;
            let stats = app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
            assert_eq!(stats.appended, n, "{stats:?}");
        }
        if k % FLUSH_EVERY == FLUSH_EVERY - 1 || k == scrapes {
            db.flush().unwrap_or_else(|e| panic!("flush: {e}"));
        }
    }
    let ingest = began.elapsed();
    while db
        .compact()
        .unwrap_or_else(|e| panic!("compact: {e}"))
        .is_some()
    {}
    let n = (INSTANCES * day.len() * (scrapes + 1)) as f64;
    println!(
        "ingest with flushes: {n} samples in {:.1}s ({:.2}M samples/s); compaction {:.1}s",
        ingest.as_secs_f64(),
        n / ingest.as_secs_f64() / 1e6,
        (began.elapsed() - ingest).as_secs_f64()
    );
    (start, scrapes)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let db = Db::open(dir.path(), Options::default()).unwrap_or_else(|e| panic!("open: {e}"));
    let setup = Instant::now();
    let (mint, scrapes) = build(&db);
    let maxt = mint + workload::DAY_MS - 1;
    println!("built in {:.1}s; blocks:", setup.elapsed().as_secs_f64());
    let catalog = db.catalog();
    for b in &catalog.blocks {
        let m = b.meta();
        println!(
            "  [{}, {}] level {} series {} samples {} chunks {} bytes {}",
            m.mint, m.maxt, m.level, m.num_series, m.num_samples, m.num_chunks, m.size_bytes
        );
    }
    let in_day: Vec<_> = catalog
        .blocks
        .iter()
        .filter(|b| b.meta().mint <= maxt && b.meta().maxt >= mint)
        .collect();
    assert_eq!(in_day.len(), 1, "the day must sit in one compacted block");
    println!("head: {} series", db.head().num_series());

    let name = |n: &str| Matcher::equal("__name__", n);
    let inst = fleet::instance(7);
    let cases = [
        (
            "one_series/nodename",
            vec![Matcher::equal("nodename", fleet::host(7))],
            1,
        ),
        (
            "one_series/memfree",
            vec![
                name("node_memory_MemFree_bytes"),
                Matcher::equal("instance", &inst),
            ],
            1,
        ),
        (
            "one_series/time_seconds",
            vec![name("node_time_seconds"), Matcher::equal("instance", &inst)],
            1,
        ),
        (
            "regex_100",
            vec![
                Matcher::new(
                    MatchOp::Regex,
                    "__name__",
                    "node_load(1|5|15)|node_procs_(blocked|running)",
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ],
            100,
        ),
    ];
    let mut g = c.benchmark_group("select");
    for (id, matchers, want) in &cases {
        let got = db
            .querier()
            .select(matchers, mint, maxt)
            .unwrap_or_else(|e| panic!("select: {e}"));
        assert_eq!(got.len(), *want, "{id}: series selected");
        let samples: usize = got.iter().map(|s| s.samples.len()).sum();
        assert_eq!(samples, want * scrapes, "{id}: the whole day is returned");
        g.throughput(Throughput::Elements(samples as u64));
        g.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                let q = db.querier();
                black_box(
                    q.select(black_box(matchers), mint, maxt)
                        .unwrap_or_else(|e| panic!("select: {e}")),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(select_benches, benches);
criterion_main!(select_benches);
