//! Remote write's CPU path without the network: WAL records → series lookup → batches →
//! protobuf → snappy, on node_exporter-shaped series (5 labels, ~110 bytes of labels).
//!
//! - `encode/hand`: one request of 2,000 samples of 2,000 series (the steady state: a scrape's
//!   samples, one per series) encoded by `remote_write::encode` and compressed.
//! - `encode/prost`: the same request built as `proto::WriteRequest` and encoded by prost, then
//!   compressed: what hand-encoding is measured against.
//! - `encode/backlog`: 2,000 samples of 100 series (catching up after an outage: 20 samples
//!   per series in a request).
//! - `pipeline/tail`: 200,000 samples read back from a WAL on disk with the tailer, resolved by
//!   ref, batched 2,000 at a time and encoded and compressed, as a queue does.
//!
//! Throughput is samples per second. `cargo bench --bench remote_write -- --warm-up-time 1
//! --measurement-time 3`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use tidemark::model::Labels;
use tidemark::remote_write::encode::{Batch, Encoder, encode_labels};
use tidemark::remote_write::proto;
use tidemark::storage::wal::{FsyncPolicy, TailEvent, WalFollower, WalPosition};
use tidemark::storage::{Db, Options};

const PER_REQUEST: usize = 2000;

fn series(n: usize) -> Vec<Labels> {
    (0..n)
        .map(|i| {
            Labels::new([
                ("__name__", "node_cpu_seconds_total".to_string()),
                ("cpu", (i / 8).to_string()),
                ("instance", format!("host-{:03}.example.org:9100", i / 64)),
                ("job", "node".to_string()),
                (
                    "mode",
                    [
                        "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
                    ][i % 8]
                        .to_string(),
                ),
            ])
            .unwrap_or_else(|e| panic!("labels: {e}"))
        })
        .collect()
}

fn value(i: usize, k: usize) -> f64 {
    ((i * 7_919 + k * 104_729) % 1_000_003) as f64 / 8.0
}

fn benches(c: &mut Criterion) {
    let steady = series(PER_REQUEST);
    let enc: Vec<Arc<[u8]>> = steady.iter().map(|l| Arc::from(encode_labels(l))).collect();
    let t0 = 1_712_000_000_000i64;

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(PER_REQUEST as u64));
    let mut batch = Batch::default();
    let mut e = Encoder::default();
    g.bench_function("hand", |b| {
        b.iter(|| {
            batch.clear();
            for i in 0..PER_REQUEST {
                batch.push(i as u32, t0 + (i % 7) as i64, value(i, 1));
            }
            e.encode(&batch, |s| &enc[s as usize]).len()
        })
    });
    let mut snappy = snap::raw::Encoder::new();
    g.bench_function("prost", |b| {
        b.iter(|| {
            let req = proto::WriteRequest {
                timeseries: steady
                    .iter()
                    .enumerate()
                    .map(|(i, l)| proto::TimeSeries {
                        labels: l
                            .iter()
                            .map(|(n, v)| proto::Label {
                                name: n.to_string(),
                                value: v.to_string(),
                            })
                            .collect(),
                        samples: vec![proto::Sample {
                            value: value(i, 1),
                            timestamp: t0 + (i % 7) as i64,
                        }],
                        exemplars: vec![],
                        histograms: vec![],
                    })
                    .collect(),
                metadata: vec![],
            };
            let raw = req.encode_to_vec();
            snappy.compress_vec(&raw).map(|v| v.len()).unwrap_or(0)
        })
    });
    let backlog = 100;
    g.bench_function("backlog", |b| {
        b.iter(|| {
            batch.clear();
            for k in 0..PER_REQUEST / backlog {
                for i in 0..backlog {
                    batch.push(i as u32, t0 + k as i64 * 15_000, value(i, k));
                }
            }
            e.encode(&batch, |s| &enc[s as usize]).len()
        })
    });
    let raw = {
        batch.clear();
        for i in 0..PER_REQUEST {
            batch.push(i as u32, t0, value(i, 1));
        }
        let n = e.encode(&batch, |s| &enc[s as usize]).len();
        (e.raw_len(), n)
    };
    println!(
        "steady request of {PER_REQUEST} samples: {} bytes protobuf, {} bytes snappy ({:.1} B/sample)",
        raw.0,
        raw.1,
        raw.1 as f64 / PER_REQUEST as f64
    );
    g.finish();

    // A WAL of 100 scrapes of 2,000 series.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let opts = Options {
        fsync: FsyncPolicy::Interval(Duration::from_secs(60)),
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts).unwrap_or_else(|e| panic!("open: {e}"));
    let f = db.wal_follower();
    let start = f.end();
    let rounds = 100;
    for k in 0..rounds {
        let mut app = db.appender();
        for (i, l) in steady.iter().enumerate() {
            app.append(l, t0 + k as i64 * 15_000, value(i, k))
                .unwrap_or_else(|e| panic!("append: {e}"));
        }
        app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
    }
    let total = (rounds * PER_REQUEST) as u64;
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(total));
    g.sample_size(10);
    g.bench_function("tail", |b| {
        b.iter(|| pipeline(&f, start, &mut Encoder::default()))
    });
    g.finish();
    db.close().unwrap_or_else(|e| panic!("close: {e}"));
}

/// Reads everything from `start`, resolves refs to slots, and encodes and compresses a request
/// per 2,000 samples; returns the compressed bytes.
fn pipeline(f: &WalFollower, start: WalPosition, e: &mut Encoder) -> usize {
    let mut t = f.tail(start);
    let mut slots: HashMap<u64, u32> = HashMap::new();
    let mut labels: Vec<Arc<[u8]>> = Vec::new();
    let mut batch = Batch::default();
    let mut bytes = 0;
    while let Some(ev) = t.read().unwrap_or_else(|e| panic!("tail: {e}")) {
        match ev {
            TailEvent::Series(list) => {
                for s in list {
                    slots.entry(s.sref).or_insert_with(|| {
                        labels.push(Arc::from(encode_labels(&s.labels)));
                        labels.len() as u32 - 1
                    });
                }
            }
            TailEvent::Samples { samples, .. } => {
                for s in samples {
                    if let Some(&slot) = slots.get(&s.sref) {
                        batch.push(slot, s.t, s.v);
                        if batch.len() >= PER_REQUEST {
                            bytes += e.encode(&batch, |x| &labels[x as usize]).len();
                            batch.clear();
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if !batch.is_empty() {
        bytes += e.encode(&batch, |x| &labels[x as usize]).len();
    }
    bytes
}

criterion_group!(remote_write_benches, benches);
criterion_main!(remote_write_benches);
