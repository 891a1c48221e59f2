//! Remote write of native histograms through the public API: integer, float and custom-bucket
//! histograms and their staleness markers appended to a Db reach a backend that decodes every
//! request with the prost types, bit for bit as prompb carries them, batched with the float
//! samples under `max_samples_per_send`, with external labels and write relabeling applied; a
//! clean stop and a reopened Db resume from a position that covers the histogram frames, so
//! nothing is sent twice and nothing is lost.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use tidemark::config::Config;
use tidemark::model::histogram::{
    CUSTOM_BUCKETS_SCHEMA, CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span,
};
use tidemark::model::{Labels, STALE_NAN};
use tidemark::remote_write::proto::{self, WriteRequest};
use tidemark::remote_write::{RemoteWrite, stats};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options};

type Got = Arc<Mutex<Vec<WriteRequest>>>;

/// A backend answering 200 to every write, keeping each decoded request.
fn backend() -> (String, Got) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/api/v1/write", l.local_addr().unwrap());
    let got: Got = Arc::default();
    let rec = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let rec = rec.clone();
            std::thread::spawn(move || serve(s, &rec));
        }
    });
    (url, got)
}

fn serve(mut s: TcpStream, rec: &Mutex<Vec<WriteRequest>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        rec.lock()
            .unwrap()
            .push(WriteRequest::decode(raw.as_slice()).unwrap());
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
}

/// Integer bucket counts as deltas.
fn deltas(counts: &[i64]) -> Vec<i64> {
    let mut prev = 0;
    counts
        .iter()
        .map(|&c| {
            let d = c - prev;
            prev = c;
            d
        })
        .collect()
}

/// The k-th sample of histogram series `kind` (0 integer, 1 float, 2 custom buckets).
fn hist(kind: usize, k: i64) -> HistogramValue {
    let hint = match k % 4 {
        0 => CounterResetHint::Unknown,
        1 => CounterResetHint::NotReset,
        2 => CounterResetHint::Reset,
        _ => CounterResetHint::Gauge,
    };
    match kind {
        0 => {
            let pos = [k + 1, 2 * k, 3, k % 5, 7];
            let neg = [k % 3, 1];
            let zero = (k % 4) as u64;
            let count = pos.iter().chain(&neg).sum::<i64>() as u64 + zero;
            HistogramValue::Int(Box::new(Histogram {
                counter_reset_hint: hint,
                schema: (k % 13 - 4) as i32,
                zero_threshold: 2.938735877055719e-39,
                zero_count: zero,
                count,
                sum: k as f64 * 1.1 - 3.0,
                positive_spans: vec![Span::new(-3, 2), Span::new(4, 3)],
                negative_spans: vec![Span::new(1, 2)],
                positive_buckets: deltas(&pos),
                negative_buckets: deltas(&neg),
                custom_values: vec![],
            }))
        }
        1 => HistogramValue::Float(Box::new(FloatHistogram {
            counter_reset_hint: hint,
            schema: 8,
            zero_threshold: 0.001,
            zero_count: k as f64 / 3.0,
            count: 1e300 + k as f64,
            sum: -(k as f64) / 7.0,
            positive_spans: vec![Span::new(100, 1), Span::new(0, 1)],
            negative_spans: vec![Span::new(-50, 1)],
            positive_buckets: vec![0.1 * k as f64, 5e-324],
            negative_buckets: vec![1.0 / 3.0],
            custom_values: vec![],
        })),
        _ => {
            let counts = [k, 1, 0, k * 2];
            HistogramValue::Int(Box::new(Histogram {
                counter_reset_hint: hint,
                schema: CUSTOM_BUCKETS_SCHEMA,
                zero_threshold: 0.0,
                zero_count: 0,
                count: counts.iter().sum::<i64>() as u64,
                sum: k as f64 * 0.25,
                positive_spans: vec![Span::new(0, 2), Span::new(1, 2)],
                negative_spans: vec![],
                positive_buckets: deltas(&counts),
                negative_buckets: vec![],
                custom_values: vec![0.005, 0.5, 1.0, 60.0],
            }))
        }
    }
}

fn stale(kind: usize) -> HistogramValue {
    match kind {
        1 => HistogramValue::Float(Box::new(FloatHistogram {
            schema: 8,
            sum: STALE_NAN,
            ..FloatHistogram::default()
        })),
        _ => HistogramValue::Int(Box::new(Histogram {
            schema: if kind == 2 { CUSTOM_BUCKETS_SCHEMA } else { 0 },
            sum: STALE_NAN,
            custom_values: if kind == 2 { vec![0.005] } else { vec![] },
            ..Histogram::default()
        })),
    }
}

fn spans(s: &[Span]) -> Vec<proto::BucketSpan> {
    s.iter()
        .map(|s| proto::BucketSpan {
            offset: s.offset,
            length: s.length,
        })
        .collect()
}

/// What prompb carries for a histogram sample, built here independently of the sender.
fn want_proto(t: i64, h: &HistogramValue) -> proto::Histogram {
    let hint = |h: CounterResetHint| match h {
        CounterResetHint::Unknown => 0,
        CounterResetHint::Reset => 1,
        CounterResetHint::NotReset => 2,
        CounterResetHint::Gauge => 3,
    };
    let mut p = proto::Histogram {
        timestamp: t,
        ..proto::Histogram::default()
    };
    match h {
        HistogramValue::Int(h) => {
            p.count = Some(proto::HistogramCount::Int(h.count));
            p.zero_count = Some(proto::HistogramZeroCount::Int(h.zero_count));
            (p.sum, p.schema, p.zero_threshold) = (h.sum, h.schema, h.zero_threshold);
            p.negative_spans = spans(&h.negative_spans);
            p.positive_spans = spans(&h.positive_spans);
            p.negative_deltas = h.negative_buckets.clone();
            p.positive_deltas = h.positive_buckets.clone();
            p.reset_hint = hint(h.counter_reset_hint);
            p.custom_values = h.custom_values.clone();
        }
        HistogramValue::Float(h) => {
            p.count = Some(proto::HistogramCount::Float(h.count));
            p.zero_count = Some(proto::HistogramZeroCount::Float(h.zero_count));
            (p.sum, p.schema, p.zero_threshold) = (h.sum, h.schema, h.zero_threshold);
            p.negative_spans = spans(&h.negative_spans);
            p.positive_spans = spans(&h.positive_spans);
            p.negative_counts = h.negative_buckets.clone();
            p.positive_counts = h.positive_buckets.clone();
            p.reset_hint = hint(h.counter_reset_hint);
            p.custom_values = h.custom_values.clone();
        }
    }
    p
}

type Key = (BTreeMap<String, String>, i64);
/// Histograms by key: (times received, encoded bytes).
type Hists = HashMap<Key, (usize, Vec<u8>)>;

/// Every histogram received, by series and timestamp, as its encoded bytes (equal bytes:
/// bit-exact), counting duplicates; and every float sample.
fn received(got: &Got) -> (Hists, HashMap<Key, usize>) {
    let (mut hs, mut fs) = (HashMap::new(), HashMap::new());
    for req in got.lock().unwrap().iter() {
        for ts in &req.timeseries {
            let l: BTreeMap<String, String> = ts
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            for h in &ts.histograms {
                let e = hs
                    .entry((l.clone(), h.timestamp))
                    .or_insert((0, h.encode_to_vec()));
                e.0 += 1;
            }
            for s in &ts.samples {
                *fs.entry((l.clone(), s.timestamp)).or_insert(0) += 1;
            }
        }
    }
    (hs, fs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histograms_arrive_bit_exact_once_across_a_restart() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (url, got) = backend();
    let opts = || Options {
        fsync: FsyncPolicy::Interval(Duration::from_secs(60)),
        ..Options::default()
    };
    let cfg = Config::parse(
        &format!(
            "global:\n  external_labels: {{dc: x}}\nremote_write:\n  - url: {url}\n    name: hist\n    queue_config:\n      batch_send_deadline: 20ms\n      max_samples_per_send: 7\n    write_relabel_configs:\n      - source_labels: [job]\n        regex: dropme\n        action: drop\n"
        ),
        "hist.yml",
    )
    .unwrap();
    let names = ["h_int", "h_float", "h_custom"];
    let series =
        |kind: usize, job: &str| Labels::new([("__name__", names[kind]), ("job", job)]).unwrap();
    let t0 = 1_712_000_000_000i64;
    // What the backend must get: series (with the external label), timestamp, prompb bytes.
    let mut want: HashMap<Key, Vec<u8>> = HashMap::new();
    let mut want_floats = 0usize;
    let mut append = |db: &Db, from: i64, to: i64, stale_at_end: bool| {
        for k in from..to {
            let t = t0 + k * 15_000;
            let mut app = db.appender();
            for kind in 0..3 {
                let h = if stale_at_end && k == to - 1 {
                    stale(kind)
                } else {
                    hist(kind, k)
                };
                for job in ["a", "dropme"] {
                    app.append_histogram(&series(kind, job), t, h.clone())
                        .unwrap();
                }
                let mut l: BTreeMap<String, String> = series(kind, "a")
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                l.insert("dc".into(), "x".into());
                want.insert((l, t), want_proto(t, &h).encode_to_vec());
            }
            app.append(
                &Labels::new([("__name__", "f"), ("job", "a")]).unwrap(),
                t,
                k as f64,
            )
            .unwrap();
            want_floats += 1;
            app.commit().unwrap();
        }
        (want.clone(), want_floats)
    };
    let wait = |n: usize, floats: usize| {
        let got = got.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(30);
            loop {
                let (hs, fs) = received(&got);
                if hs.len() >= n && fs.len() >= floats {
                    return;
                }
                assert!(
                    Instant::now() < end,
                    "{} of {n} histograms received",
                    hs.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    let db = Db::open(&dir, opts()).unwrap();
    let mut rw = RemoteWrite::new(db.wal_follower());
    rw.apply(&cfg).await.unwrap();
    let (w, f) = append(&db, 0, 40, true);
    wait(w.len(), f).await;
    rw.stop().await;
    db.close().unwrap();

    // Reopened: the recorded position is past every histogram frame already sent.
    let db = Db::open(&dir, opts()).unwrap();
    let mut rw = RemoteWrite::new(db.wal_follower());
    rw.apply(&cfg).await.unwrap();
    let (want, floats) = append(&db, 40, 75, false);
    wait(want.len(), floats).await;
    rw.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    db.close().unwrap();

    let (hs, fs) = received(&got);
    assert_eq!(
        hs.len(),
        want.len(),
        "every histogram, none of the dropped job"
    );
    for (k, bytes) in &want {
        let (n, got_bytes) = hs.get(k).unwrap_or_else(|| panic!("missing {k:?}"));
        assert_eq!(*n, 1, "{k:?} sent {n} times");
        assert_eq!(got_bytes, bytes, "{k:?} differs");
    }
    assert_eq!(fs.len(), floats);
    assert!(fs.values().all(|&n| n == 1));
    // Histograms count as samples against max_samples_per_send.
    for req in got.lock().unwrap().iter() {
        let n: usize = req
            .timeseries
            .iter()
            .map(|ts| ts.samples.len() + ts.histograms.len())
            .sum();
        assert!((1..=7).contains(&n), "a request of {n} samples");
    }
    // Stale markers went as histograms with the staleness NaN as their sum.
    let stale_n = got
        .lock()
        .unwrap()
        .iter()
        .flat_map(|r| &r.timeseries)
        .flat_map(|ts| &ts.histograms)
        .filter(|h| h.sum.to_bits() == STALE_NAN.to_bits())
        .count();
    assert_eq!(stale_n, 3);
    let snap = stats::global().queue("hist", &url).snapshot();
    assert_eq!(snap.histograms_sent, want.len() as u64);
    assert_eq!(snap.sent, floats as u64);
    assert_eq!(snap.pending, 0);
    // The dropped job's histograms: relabeling.
    assert_eq!(snap.dropped[0], 3 * 75);
}
