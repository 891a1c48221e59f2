//! PromQL range queries over a day of data in one 24h block, through the engine directly.
//!
//! Setup: the day of `benches/support/query_data.rs` (9,000 counters `x`, 1,000 histogram
//! buckets `h_bucket`, 15 s for 24 h: 57.6M samples) written into one 24h block by
//! `storage::write_blocks` (what `tidemark import --block-duration 24h` does), then opened
//! read-only. Each query runs over the whole day at a 60 s step (1,441 steps):
//!
//! - `sum_rate`: `sum by (job) (rate(x[5m]))`, all 9,000 counters, 10 result series;
//! - `histogram_quantile`: `histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))`,
//!   all 1,000 buckets, one result series;
//! - `one_series`: a single-series selector.
//!
//! Group `dashboard_6h_step_60s`: the panels of `benches/support/dashboard_data.rs` (2,505
//! series of a demo service over 6 h, one 6h block), each over the 6 h at a 60 s step.
//!
//! The same day and queries run against Prometheus in scripts/bench-query-vs-prometheus.sh,
//! the dashboard in scripts/bench-dashboard.sh. Each data set is built only when one of its
//! benchmarks is selected (`cargo bench --bench query -- dashboard` builds the dashboard only).
//! Set `TIDEMARK_QUERY_OPENMETRICS_OUT=/path/day.om` to also write the day as OpenMetrics.
//!
//! `cargo bench --bench query` (10 samples, 1 s warm-up, 3 s measurement by default).

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tidemark::model::{Labels, Sample};
use tidemark::query::{Engine, EngineOptions, Value};
use tidemark::storage::{self, ReadOnlyDb};

#[path = "support/query_data.rs"]
mod query_data;

#[path = "support/dashboard_data.rs"]
mod dashboard_data;

use query_data::{DAY_MS, QUERIES};

/// 2024-01-01T00:00:00Z: the day fills exactly one 24h block window.
const START: i64 = 1_704_067_200_000;
const STEP: i64 = 60_000;

/// Writes the day into blocks under `dir` and returns how many samples it holds.
fn build(dir: &std::path::Path) -> u64 {
    if let Some(path) = std::env::var_os("TIDEMARK_QUERY_OPENMETRICS_OUT") {
        let f = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.to_string_lossy()));
        let mut out = std::io::BufWriter::new(f);
        query_data::write_openmetrics(START, &mut out)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.to_string_lossy()));
        eprintln!("wrote OpenMetrics day to {}", path.to_string_lossy());
    }
    let mut series = Vec::with_capacity(10_000);
    query_data::for_each_series(START, |s| series.push(s));
    write("query data", dir, series, DAY_MS)
}

/// Writes `generated` into blocks of `block_ms` under `dir` and returns how many samples it
/// holds.
fn write(
    what: &str,
    dir: &std::path::Path,
    generated: Vec<query_data::GenSeries>,
    block_ms: i64,
) -> u64 {
    let t0 = Instant::now();
    let mut series: Vec<(Labels, Vec<Sample>)> = Vec::with_capacity(generated.len());
    let mut samples = 0u64;
    for s in generated {
        let mut pairs: Vec<(&str, String)> = vec![("__name__", s.name.to_string())];
        pairs.extend(s.labels);
        let labels = Labels::new(pairs).unwrap_or_else(|e| panic!("generated labels: {e}"));
        samples += s.samples.len() as u64;
        series.push((
            labels,
            s.samples
                .into_iter()
                .map(|(t, v)| Sample::new(t, v))
                .collect(),
        ));
    }
    let n = series.len();
    let blocks = storage::write_blocks(dir, series, block_ms, |_| {})
        .unwrap_or_else(|e| panic!("writing blocks: {e}"));
    let bytes: u64 = blocks.iter().map(|b| b.size_bytes).sum();
    println!(
        "{what}: {n} series, {samples} samples in {} block(s) of {bytes} bytes, built in {:.1?}",
        blocks.len(),
        t0.elapsed()
    );
    samples
}

/// A data set in blocks, built the first time a benchmark asks for it.
struct Store {
    build: fn(&std::path::Path) -> u64,
    db: OnceLock<(tempfile::TempDir, ReadOnlyDb)>,
}

impl Store {
    fn new(build: fn(&std::path::Path) -> u64) -> Store {
        Store {
            build,
            db: OnceLock::new(),
        }
    }

    fn db(&self) -> &ReadOnlyDb {
        &self
            .db
            .get_or_init(|| {
                let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
                (self.build)(dir.path());
                let db =
                    ReadOnlyDb::open(dir.path()).unwrap_or_else(|e| panic!("opening blocks: {e}"));
                (dir, db)
            })
            .1
    }
}

/// Result series and points, to show what each query returns and catch an empty answer.
fn shape(v: &Value) -> (usize, usize) {
    match v {
        Value::Matrix(m) => (m.len(), m.iter().map(|s| s.floats.len()).sum()),
        Value::Vector(v) => (v.len(), v.len()),
        Value::Scalar(_) | Value::String { .. } => (1, 1),
    }
}

/// Benchmarks each of `queries` over [start, end] at `STEP` in group `group`, on `store`'s data
/// (built when the first of them runs).
fn bench_group(
    c: &mut Criterion,
    group: &str,
    store: &Store,
    queries: &[(&'static str, &'static str)],
    start: i64,
    end: i64,
) {
    let engine = Engine::new(EngineOptions::default());
    let mut g = c.benchmark_group(group);
    for &(name, q) in queries {
        // Criterion calls the routine for the warm-up and again for the measurement.
        let mut shown = false;
        g.bench_function(name, |b| {
            let db = store.db();
            if !shown {
                let out = engine
                    .range_blocking(&db.querier(), q, start, end, STEP)
                    .unwrap_or_else(|e| panic!("{name}: {q}: {e}"));
                let (series, points) = shape(&out.value);
                assert!(points > 0, "{name}: {q} returned nothing");
                println!("{name}: {q} -> {series} series, {points} points");
                shown = true;
            }
            b.iter(|| {
                // A fresh querier per run, as each API request takes one.
                let out = engine.range_blocking(&db.querier(), black_box(q), start, end, STEP);
                black_box(out.map(|o| shape(&o.value)))
            })
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    // Locals, so their temporary directories go when the benchmarks are done.
    let day = Store::new(build);
    let dashboard = Store::new(|dir| {
        write(
            "dashboard data",
            dir,
            dashboard_data::all_series(START),
            dashboard_data::SPAN_MS,
        )
    });
    bench_group(
        c,
        "range_24h_step_60s",
        &day,
        &QUERIES,
        START,
        START + DAY_MS,
    );
    bench_group(
        c,
        "dashboard_6h_step_60s",
        &dashboard,
        &dashboard_data::QUERIES,
        START,
        START + dashboard_data::SPAN_MS,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
