//! Writing a range query's answer as JSON (`api::json::answer`, what `/api/v1/query_range`
//! sends): the dashboard's panel shapes, 6 h at a 60 s step (361 points per series).
//!
//! - `rates_15x361`: 15 series of fractional values (a rate, an average), 5,415 points;
//! - `bytes_15x361`: 15 series of whole numbers (memory sizes), 5,415 points;
//! - `rates_150x361`: 150 series of fractional values, 54,150 points;
//! - `ragged_15x361`: as `rates_15x361` with times off the whole second (a step of 60.25 s).
//!
//! `cargo bench --bench json`. With `TIDEMARK_JSON_ITERS=N` set, each case is instead written
//! N times and the bench exits, so `perf stat -e instructions` over the bench binary gives a
//! figure per answer that a loaded machine does not blur (the setup's share is measured with
//! N=0).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tidemark::api::json;
use tidemark::model::Labels;
use tidemark::query::{Annotations, FPoint, Series, Value};

/// 2026-12-07T12:00:00Z, the dashboard data's start.
const START_MS: i64 = 1_796_644_800_000;

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn matrix(series: usize, points: usize, step_ms: i64, whole: bool) -> Value {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    Value::Matrix(
        (0..series)
            .map(|i| {
                let instance = format!("host-{i:03}:9100");
                let metric = Arc::new(Labels::new([("instance", instance.as_str())]).unwrap());
                let floats = (0..points)
                    .map(|k| {
                        let r = xorshift(&mut seed);
                        let f = if whole {
                            (8 << 30) as f64 + (r % (1 << 30)) as f64
                        } else {
                            (r % 1_000_000_000) as f64 / 997.0
                        };
                        FPoint {
                            t: START_MS + k as i64 * step_ms,
                            f,
                        }
                    })
                    .collect();
                Series {
                    histograms: Vec::new(),
                    metric,
                    floats,
                    drop_name: false,
                }
            })
            .collect(),
    )
}

fn cases() -> [(&'static str, Value); 4] {
    [
        ("rates_15x361", matrix(15, 361, 60_000, false)),
        ("bytes_15x361", matrix(15, 361, 60_000, true)),
        ("rates_150x361", matrix(150, 361, 60_000, false)),
        ("ragged_15x361", matrix(15, 361, 60_250, false)),
    ]
}

/// `TIDEMARK_JSON_ITERS=N`: writes the case named by `TIDEMARK_JSON_CASE` (all when unset) N
/// times; true if it did.
fn counted_run() -> bool {
    let Some(n) = std::env::var("TIDEMARK_JSON_ITERS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return false;
    };
    let only = std::env::var("TIDEMARK_JSON_CASE").ok();
    for (name, v) in cases() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        for _ in 0..n {
            black_box(json::answer(
                black_box(&v),
                &Annotations::default(),
                &[],
                None,
            ));
        }
    }
    true
}

fn bench(c: &mut Criterion) {
    if counted_run() {
        return;
    }
    let mut g = c.benchmark_group("json_answer");
    for (name, v) in cases() {
        let points = match &v {
            Value::Matrix(m) => m.iter().map(|s| s.floats.len()).sum::<usize>(),
            _ => 0,
        };
        let bytes = json::answer(&v, &Annotations::default(), &[], None).len();
        println!("{name}: {points} points, {bytes} bytes");
        g.throughput(Throughput::Elements(points as u64));
        g.bench_function(name, |b| {
            b.iter(|| json::answer(black_box(&v), &Annotations::default(), &[], None))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
