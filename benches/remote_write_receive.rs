//! The remote write receiver's decode + append path on one core: a snappy-compressed
//! `WriteRequest` as Prometheus sends it, through `remote_write::receive::receive` (decompress,
//! decode one series at a time, validate labels, append, one commit) into WAL + head.
//!
//! Workload: `TARGETS` node_exporter targets (benches/support/fleet.rs over the 507 series of
//! benches/support/node_day.rs), each series with its target labels, as a Prometheus forwarding
//! them would send them: one sample per series per request, `BATCH` series per request (the
//! `max_samples_per_send` of Prometheus 2.42 is 500, of later versions 2,000). Every
//! iteration sends the next request of a round; a new round moves time on 15 s, so every
//! sample is stored (the bench checks it). Encoding the request is outside the measurement.
//!
//! - `receive/<batch>`: the steady state, every series already in the head.
//! - `decompress/<batch>`: snappy alone, for the split.
//!
//! Throughput is samples per second. After each group the bench prints the rate over all its
//! iterations in wall time and in on-CPU time of the receiving thread (Linux schedstat).
//! `cargo bench --bench remote_write_receive -- --warm-up-time 1 --measurement-time 3`

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use tidemark::model::Labels;
use tidemark::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
use tidemark::remote_write::receive::{self, MAX_DECOMPRESSED_BYTES};
use tidemark::storage::{Db, Options};

#[path = "support/node_day.rs"]
mod node_day;

#[path = "support/workload.rs"]
mod workload;

#[path = "support/fleet.rs"]
mod fleet;

#[path = "support/tally.rs"]
mod tally;
use tally::Tally;

/// 20 targets × 507 series = 10,140 series.
const TARGETS: usize = 20;

/// Every series of the fleet as wire labels, and where time stands.
struct Load {
    series: Vec<Vec<Label>>,
    values: Vec<Vec<f64>>,
    /// Series per target.
    per_target: usize,
    t0: i64,
    about: String,
}

impl Load {
    fn new() -> Load {
        let day = workload::aligned_day();
        let base = workload::labels_of(&day);
        let mut series = Vec::new();
        let mut values = Vec::new();
        for k in 0..TARGETS {
            for (l, s) in base.iter().zip(&day) {
                series.push(wire(&fleet::target_labels(l, k)));
                values.push(s.samples.iter().map(|p| p.v).collect());
            }
        }
        Load {
            series,
            values,
            per_target: day.len(),
            t0: day[0].samples[0].t,
            about: workload::describe(&day),
        }
    }

    /// Request `i` of the endless sequence: `batch` consecutive series, each with its sample of
    /// the round the request falls in, compressed.
    fn request(&self, i: u64, batch: usize) -> (Vec<u8>, u64) {
        let per_round = self.series.len().div_ceil(batch) as u64;
        let round = i / per_round;
        let first = (i % per_round) as usize * batch;
        let t = self.t0 + round as i64 * fleet::SCRAPE_MS;
        let timeseries: Vec<TimeSeries> = (first..(first + batch).min(self.series.len()))
            .map(|j| {
                let vals = &self.values[j];
                let target = j / self.per_target;
                let at = (fleet::day_offset(target, vals.len()) + round as usize) % vals.len();
                TimeSeries {
                    labels: self.series[j].clone(),
                    samples: vec![Sample {
                        value: vals[at],
                        timestamp: t + fleet::scrape_offset(target),
                    }],
                    exemplars: vec![],
                    histograms: vec![],
                }
            })
            .collect();
        let n = timeseries.len() as u64;
        let raw = WriteRequest {
            timeseries,
            metadata: vec![],
        }
        .encode_to_vec();
        let body = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .unwrap_or_else(|e| panic!("compress: {e}"));
        (body, n)
    }
}

fn wire(l: &Labels) -> Vec<Label> {
    l.iter()
        .map(|(n, v)| Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let load = Load::new();
    let now = load.t0 + 86_400_000;
    for batch in [500usize, 2000] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let db = Db::open(dir.path(), Options::default()).unwrap_or_else(|e| panic!("open: {e}"));
        // Round 0 creates every series; the measured rounds find them in the head.
        let per_round = load.series.len().div_ceil(batch) as u64;
        let mut next = 0;
        while next < per_round {
            let (body, _) = load.request(next, batch);
            receive::receive(&db, &body, now).unwrap_or_else(|e| panic!("receive: {e}"));
            next += 1;
        }
        let (sample, n) = load.request(next, batch);
        println!(
            "remote_write_receive: {TARGETS} targets × {}; {} series, {batch} samples per request, {} bytes compressed, {} decompressed",
            load.about,
            load.series.len(),
            sample.len(),
            receive::decompress(&sample, MAX_DECOMPRESSED_BYTES)
                .map(|b| b.len())
                .unwrap_or(0)
        );

        let mut tally = Tally::default();
        let mut g = c.benchmark_group("receive");
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let (body, n) = load.request(next, batch);
                    next += 1;
                    spent += tally.time(n, || {
                        let r = receive::receive(&db, &body, now)
                            .unwrap_or_else(|e| panic!("receive: {e}"));
                        assert_eq!(r.appended, n, "every sample is stored: {r:?}");
                    });
                }
                spent
            })
        });
        g.finish();
        tally.report(&format!("receive/{batch}"));

        let mut tally = Tally::default();
        let mut g = c.benchmark_group("decompress");
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::from_parameter(batch), |b| {
            b.iter_custom(|iters| {
                tally.time(iters * n, || {
                    for _ in 0..iters {
                        let out = receive::decompress(&sample, MAX_DECOMPRESSED_BYTES)
                            .unwrap_or_else(|e| panic!("decompress: {e}"));
                        std::hint::black_box(out);
                    }
                })
            })
        });
        g.finish();
        tally.report(&format!("decompress/{batch}"));
        println!("head series after the run: {}", db.head().num_series());
        db.close().unwrap_or_else(|e| panic!("close: {e}"));
    }
}

criterion_group!(remote_write_receive_benches, benches);
criterion_main!(remote_write_receive_benches);
