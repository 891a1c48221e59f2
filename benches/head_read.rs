//! Reading the head: closed chunks in the head chunk file (`chunks_head/`, read through a memory
//! map, checksum checked per chunk) against the same chunks in memory, same binary, same data.
//!
//! Setup: 2,000 series (100 names × 20 instances), 1,440 samples each at 5 s (two hours: twelve
//! closed chunks per series), random-walk values, appended through a `Db` and never flushed.
//! The same directory is then read by that `Db` (its head keeps closed chunks in the file) and
//! by a `ReadOnlyDb` (WAL replayed into a head that keeps them in memory, as the head did
//! before the chunk file). Both answer every case identically (checked before timing).
//!
//! - `one_series`: one series, all 1,440 samples.
//! - `name_20`: one name, 20 series, all samples.
//! - `all_last_hour`: all 2,000 series over the last hour (six chunks each).
//!
//! `cargo bench --bench head_read -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tidemark::model::{Labels, MatchOp, Matcher};
use tidemark::storage::{Db, Options, Querier, ReadOnlyDb};

const NAMES: usize = 100;
const INSTANCES: usize = 20;
const SAMPLES: i64 = 1_440;
const STEP: i64 = 5_000;
const T0: i64 = 1_700_000_000_000;

fn fill(db: &Db) {
    let labels: Vec<Labels> = (0..NAMES * INSTANCES)
        .map(|i| {
            let name = format!("m_{}", i / INSTANCES);
            let inst = format!("host-{}:9100", i % INSTANCES);
            Labels::new([("__name__", name.as_str()), ("instance", inst.as_str())])
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let mut v = vec![100.0f64; labels.len()];
    let mut k = 1u64;
    for n in 0..SAMPLES {
        let mut app = db.appender_at(T0 + n * STEP);
        for (l, v) in labels.iter().zip(&mut v) {
            k = k
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *v += ((k >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 3.0;
            app.append(
                l,
                T0 + n * STEP + (k % 3) as i64,
                (*v * 100.0).round() / 100.0,
            )
            .unwrap_or_else(|e| panic!("append: {e}"));
        }
        app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
    }
}

fn bits(q: &Querier, m: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, u64)>)> {
    q.select(m, mint, maxt)
        .unwrap_or_else(|e| panic!("select: {e}"))
        .into_iter()
        .map(|s| {
            (
                s.labels,
                s.samples.iter().map(|p| (p.t, p.v.to_bits())).collect(),
            )
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let db = Db::open(dir.path(), Options::default()).unwrap_or_else(|e| panic!("open: {e}"));
    fill(&db);
    let mem = ReadOnlyDb::open(dir.path()).unwrap_or_else(|e| panic!("read-only open: {e}"));
    println!(
        "head: {} series, {} chunks",
        db.head().num_series(),
        db.head().num_chunks()
    );
    let end = T0 + SAMPLES * STEP;
    let cases = [
        (
            "one_series",
            vec![
                Matcher::equal("__name__", "m_7"),
                Matcher::equal("instance", "host-3:9100"),
            ],
            T0,
            1,
        ),
        ("name_20", vec![Matcher::equal("__name__", "m_42")], T0, 20),
        (
            "all_last_hour",
            vec![
                Matcher::new(MatchOp::Regex, "__name__", "m_.*").unwrap_or_else(|e| panic!("{e}")),
            ],
            end - 3_600_000,
            NAMES * INSTANCES,
        ),
    ];
    let mut g = c.benchmark_group("head_read");
    for (id, m, mint, want) in &cases {
        let a = bits(&db.querier(), m, *mint, end);
        assert_eq!(a.len(), *want, "{id}: series selected");
        assert!(
            a == bits(&mem.querier(), m, *mint, end),
            "{id}: file and memory agree"
        );
        let samples: usize = a.iter().map(|s| s.1.len()).sum();
        g.throughput(Throughput::Elements(samples as u64));
        g.bench_function(BenchmarkId::new(*id, "file"), |b| {
            b.iter(|| black_box(db.querier().select(black_box(m), *mint, end)))
        });
        g.bench_function(BenchmarkId::new(*id, "memory"), |b| {
            b.iter(|| black_box(mem.querier().select(black_box(m), *mint, end)))
        });
    }
    g.finish();
}

criterion_group!(head_read_benches, benches);
criterion_main!(head_read_benches);
