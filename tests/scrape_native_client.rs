//! Native histograms from a real client library: the official Rust client
//! (`prometheus-client`, its Prometheus protobuf exposition) served over HTTP on 127.0.0.1,
//! fetched with the Accept header a job scraping native histograms sends, parsed and stored by
//! tidemark, and read back bucket for bucket against the observations made.

use std::collections::BTreeMap;

use prometheus_client::encoding::prometheus_protobuf::encode_to_vec;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, NativeHistogramConfig};
use prometheus_client::registry::Registry;
use tidemark::config::ScrapeProtocol;
use tidemark::model::histogram::{HistogramSample, HistogramValue};
use tidemark::model::{Labels, Matcher};
use tidemark::scrape::fetch::{FetchSettings, Fetcher};
use tidemark::scrape::ingest::{IngestOptions, ScrapeState};
use tidemark::scrape::job::accept_header;
use tidemark::scrape::parse::Format;
use tidemark::scrape::parse::protobuf::ProtoOptions;
use tidemark::storage::{Db, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Serves `body` to every request; each request's Accept header goes to the channel.
async fn serve(body: Vec<u8>) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let accept = text
                .lines()
                .find_map(|l| l.strip_prefix("accept: ").or(l.strip_prefix("Accept: ")))
                .unwrap_or("")
                .to_string();
            let _ = tx.send(accept);
            let header = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(header.as_bytes()).await;
            let _ = conn.write_all(&body).await;
        }
    });
    (url, rx)
}

/// Bucket index of `v` in schema `s`: the `i` with 2^((i-1)/2^s) < v <= 2^(i/2^s), computed
/// in exact arithmetic on the frexp form for the values used here (none on a boundary).
fn index(v: f64, schema: i32) -> i32 {
    (v.log2() * f64::from(1 << schema)).ceil() as i32
}

/// Absolute counts by bucket index from spans and deltas.
fn absolute(spans: &[tidemark::model::histogram::Span], deltas: &[i64]) -> BTreeMap<i32, i64> {
    let mut out = BTreeMap::new();
    let (mut idx, mut k, mut count) = (0i32, 0usize, 0i64);
    for (n, s) in spans.iter().enumerate() {
        idx += s.offset;
        if n > 0 {
            // Offsets after the first count from the previous span's end.
        }
        for _ in 0..s.length {
            count += deltas[k];
            k += 1;
            out.insert(idx, count);
            idx += 1;
        }
    }
    out
}

#[tokio::test]
async fn a_real_client_library_native_histogram_is_stored_bucket_for_bucket() {
    const SCHEMA: i32 = 3;
    let mut registry = Registry::default();
    let latency = Histogram::new_native(NativeHistogramConfig::with_schema(SCHEMA as i8));
    registry.register("rpc_latency_seconds", "RPC latency", latency.clone());
    let calls: Counter = Counter::default();
    registry.register("rpc_calls", "RPCs made", calls.clone());
    let observations = [0.0123, 0.5003, 0.513, 3.7, 3.71, 120.4, 0.0, -2.53, 7e-5];
    for v in observations {
        latency.observe(v);
        calls.inc();
    }
    let (url, mut accepts) = serve(encode_to_vec(&registry).unwrap()).await;

    let settings = FetchSettings {
        accept: accept_header(&ScrapeProtocol::PROTO_FIRST),
        ..FetchSettings::default()
    };
    let fetched = Fetcher::new(&settings).unwrap().fetch(&url).await.unwrap();
    let accept = accepts.recv().await.unwrap();
    assert!(
        accept.starts_with("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,"),
        "{accept}"
    );
    assert_eq!(fetched.format, Format::Protobuf);

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let target = Labels::new([("job", "rpc"), ("instance", "127.0.0.1")]).unwrap();
    let opts = IngestOptions {
        histograms: ProtoOptions {
            native_histograms: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut st = ScrapeState::default();
    let t = 1_700_000_000_000;
    let r = st
        .ingest(
            &db,
            &target,
            Ok((&fetched.body, fetched.format)),
            t,
            0.01,
            &opts,
        )
        .unwrap();
    assert!(r.up, "{r:?}");
    assert_eq!(r.samples_scraped, 2, "one native histogram and one counter");

    let q = db.querier();
    let counter = q
        .select(
            &[Matcher::equal("__name__", "rpc_calls_total")],
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(counter[0].samples[0].v, observations.len() as f64);
    let hist = q
        .select(
            &[Matcher::equal("__name__", "rpc_latency_seconds")],
            0,
            i64::MAX,
        )
        .unwrap();
    assert_eq!(hist.len(), 1, "no classic series beside the native one");
    assert_eq!(hist[0].labels.get("job"), Some("rpc"));
    let [HistogramSample { t: got_t, h }] = hist[0].histograms.as_slice() else {
        panic!("{:?}", hist[0].histograms)
    };
    assert_eq!(*got_t, t);
    let HistogramValue::Int(h) = h else {
        panic!("an integer histogram: {h:?}")
    };
    assert_eq!(h.schema, SCHEMA);
    assert_eq!(h.count, observations.len() as u64);
    assert_eq!(h.sum, observations.iter().sum::<f64>());
    assert_eq!(h.zero_count, 1, "only 0.0 is within the zero threshold");
    let mut want_pos = BTreeMap::new();
    let mut want_neg = BTreeMap::new();
    for v in observations {
        if v > 0.0 {
            *want_pos.entry(index(v, SCHEMA)).or_insert(0i64) += 1;
        } else if v < 0.0 {
            *want_neg.entry(index(-v, SCHEMA)).or_insert(0i64) += 1;
        }
    }
    assert_eq!(absolute(&h.positive_spans, &h.positive_buckets), want_pos);
    assert_eq!(absolute(&h.negative_spans, &h.negative_buckets), want_neg);

    // The metadata the client declared is kept as for text.
    let meta = &r.metadata;
    assert_eq!(meta["rpc_latency_seconds"].help, "RPC latency.");
    assert_eq!(meta["rpc_latency_seconds"].kind.as_str(), "histogram");
}
