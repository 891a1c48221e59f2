//! Exposition parsing throughput on node_exporter's body: tidemark's parser on the scraper's
//! hot path (series text and value), on its slow path (a full label set per sample), and the
//! `prometheus-parse` crate as a baseline. Prints samples/s and allocations per body.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tidemark::scrape::parse::{Entry, Format, Parser};

/// Counts allocations so the bench can show the hot path makes none.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "../tests/common/fixtures.rs"]
mod fixtures;

fn node_exporter_body() -> Vec<u8> {
    let path = fixtures::shared("fixtures/exposition/node_exporter-1.5.0.prom");
    std::fs::read(path).expect("read fixture")
}

/// The scraper's hot path: series text (its cache key) and value of every sample.
fn ours_values(body: &[u8]) -> (usize, f64) {
    let mut n = 0;
    let mut sum = 0.0;
    for entry in Parser::new(body, Format::PrometheusText) {
        if let Entry::Sample(s) = entry.expect("fixture parses") {
            black_box(s.series());
            sum += s.value();
            n += 1;
        }
    }
    (n, sum)
}

/// The slow path for new series: the full validated label set of every sample.
fn ours_labels(body: &[u8]) -> usize {
    let mut n = 0;
    for entry in Parser::new(body, Format::PrometheusText) {
        if let Entry::Sample(s) = entry.expect("fixture parses") {
            n += s.to_labels().expect("valid labels").len();
        }
    }
    n
}

fn baseline(text: &str) -> usize {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines)
        .expect("baseline parses")
        .samples
        .len()
}

/// Samples per second of `f` over about `budget`.
fn rate(samples: usize, budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut iters = 0u64;
    while start.elapsed() < budget {
        f();
        iters += 1;
    }
    (samples as f64 * iters as f64) / start.elapsed().as_secs_f64()
}

fn bench(c: &mut Criterion) {
    let body = node_exporter_body();
    let text = String::from_utf8(body.clone()).expect("fixture is UTF-8");
    let samples = ours_values(&body).0;
    let baseline_samples = baseline(&text);

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    black_box(ours_values(&body));
    let hot_allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;

    let budget = Duration::from_millis(700);
    let ours = rate(samples, budget, || {
        black_box(ours_values(black_box(&body)));
    });
    let labels = rate(samples, budget, || {
        black_box(ours_labels(black_box(&body)));
    });
    let theirs = rate(samples, budget, || {
        black_box(baseline(black_box(&text)));
    });
    println!(
        "node_exporter body: {} bytes, {samples} samples (prometheus-parse returns {baseline_samples})",
        body.len()
    );
    println!(
        "  tidemark (series + value):  {:>6.2} M samples/s, {hot_allocs} allocations per body",
        ours / 1e6
    );
    println!(
        "  tidemark (+ to_labels):     {:>6.2} M samples/s",
        labels / 1e6
    );
    println!(
        "  prometheus-parse 0.2.5:     {:>6.2} M samples/s",
        theirs / 1e6
    );
    println!("  speed-up on the hot path:   {:>6.1}x", ours / theirs);

    let mut g = c.benchmark_group("parse/node_exporter");
    g.throughput(Throughput::Elements(samples as u64));
    g.bench_function("tidemark_values", |b| {
        b.iter(|| ours_values(black_box(&body)))
    });
    g.bench_function("tidemark_to_labels", |b| {
        b.iter(|| ours_labels(black_box(&body)))
    });
    g.bench_function("prometheus_parse", |b| {
        b.iter(|| baseline(black_box(&text)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
