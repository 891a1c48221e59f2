//! Bytes per native histogram sample: tidemark's histogram chunks beside Prometheus 2.42's,
//! on the same samples.
//!
//! A generated latency histogram (buckets filling in as observations spread, counts growing
//! by a random amount each scrape) is served in the protobuf exposition format to a real
//! `prometheus` (`--enable-feature=native-histograms`), which scrapes it every 100 ms. The
//! chunks Prometheus cuts are read back from its `chunks_head/` file (each full head chunk is
//! written there), and the same samples, cut at the same boundaries, are encoded with
//! tidemark's histogram codec (timestamps: when each scrape arrived). Prints both, in bytes
//! per sample of chunk data.
//! `cargo bench --bench histogram_bytes` (needs `prometheus` on the PATH; skips without it).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidemark::model::histogram::{CounterResetHint, Histogram, Span};
use tidemark::model::{HistogramSample, HistogramValue};
use tidemark::storage::chunk::histogram as codec;

/// Observations of one scrape interval spread over buckets; the state of a client library's
/// native histogram (schema 2, no negative observations).
struct Gen {
    x: u64,
    counts: [i64; 24],
    lo: usize,
    hi: usize,
    zero: u64,
    sum: f64,
}

impl Gen {
    fn new() -> Gen {
        Gen {
            x: 7,
            counts: [0; 24],
            lo: 10,
            hi: 14,
            zero: 0,
            sum: 0.0,
        }
    }

    fn rnd(&mut self) -> u64 {
        self.x = self
            .x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.x >> 33
    }

    /// The histogram after one more interval of observations.
    fn next(&mut self) -> Histogram {
        for _ in 0..(50 + self.rnd() % 30) {
            let mut b =
                (10 + (self.rnd() % 5) as i64 + (self.rnd() % 3) as i64 - 2).clamp(0, 23) as usize;
            if self.rnd().is_multiple_of(97) {
                b = (self.rnd() % 24) as usize;
            }
            self.counts[b] += 1;
            self.lo = self.lo.min(b);
            self.hi = self.hi.max(b);
            self.sum +=
                (b as f64 / 4.0).exp2() * 0.001 * (1.0 + (self.rnd() % 1000) as f64 / 5000.0);
        }
        self.zero += self.rnd() % 2;
        let buckets = &self.counts[self.lo..=self.hi];
        let mut prev = 0;
        let deltas: Vec<i64> = buckets
            .iter()
            .map(|&c| {
                let d = c - prev;
                prev = c;
                d
            })
            .collect();
        Histogram {
            counter_reset_hint: CounterResetHint::NotReset,
            schema: 2,
            zero_threshold: 1e-128,
            zero_count: self.zero,
            count: buckets.iter().sum::<i64>() as u64 + self.zero,
            sum: self.sum,
            positive_spans: vec![Span::new(self.lo as i32 - 40, buckets.len() as u32)],
            positive_buckets: deltas,
            ..Histogram::default()
        }
    }
}

fn varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push(x as u8 | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn key(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, field << 3 | wire);
}

fn zig(x: i64) -> u64 {
    ((x << 1) ^ (x >> 63)) as u64
}

fn bytes_field(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// One length-delimited `io.prometheus.client.MetricFamily` holding `h` as a native
/// histogram named `rpc_latency_seconds`.
fn exposition(h: &Histogram) -> Vec<u8> {
    let mut hist = Vec::new();
    key(&mut hist, 1, 0);
    varint(&mut hist, h.count);
    key(&mut hist, 2, 1);
    hist.extend_from_slice(&h.sum.to_le_bytes());
    key(&mut hist, 5, 0);
    varint(&mut hist, zig(i64::from(h.schema)));
    key(&mut hist, 6, 1);
    hist.extend_from_slice(&h.zero_threshold.to_le_bytes());
    key(&mut hist, 7, 0);
    varint(&mut hist, h.zero_count);
    for s in &h.positive_spans {
        let mut span = Vec::new();
        key(&mut span, 1, 0);
        varint(&mut span, zig(i64::from(s.offset)));
        key(&mut span, 2, 0);
        varint(&mut span, u64::from(s.length));
        bytes_field(&mut hist, 12, &span);
    }
    let mut deltas = Vec::new();
    for d in &h.positive_buckets {
        varint(&mut deltas, zig(*d));
    }
    bytes_field(&mut hist, 13, &deltas);
    let mut metric = Vec::new();
    bytes_field(&mut metric, 7, &hist);
    let mut family = Vec::new();
    bytes_field(&mut family, 1, b"rpc_latency_seconds");
    key(&mut family, 3, 0);
    varint(&mut family, 4);
    bytes_field(&mut family, 4, &metric);
    let mut out = Vec::new();
    varint(&mut out, family.len() as u64);
    out.extend_from_slice(&family);
    out
}

/// Serves the generator's next histogram to every request; records what it served.
fn serve(listener: TcpListener, served: Arc<Mutex<Vec<(i64, Histogram)>>>) {
    let mut g = Gen::new();
    for conn in listener.incoming() {
        let Ok(mut c) = conn else { continue };
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 4096];
        let mut req = Vec::new();
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        // When the scrape arrived: Prometheus stamps the sample with its scrape's start, a
        // moment before, so the timestamp columns see the same jitter.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let h = g.next();
        let body = exposition(&h);
        served.lock().unwrap().push((now, h));
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = c.write_all(head.as_bytes());
        let _ = c.write_all(&body);
    }
}

/// The chunks of Prometheus's head chunk files: (encoding byte, data). Record layout: series
/// ref (8), mint (8), maxt (8), encoding (1), data length (uvarint), data, CRC32 (4), after
/// an 8-byte file header.
fn prometheus_chunks(dir: &std::path::Path) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let b = std::fs::read(&f).unwrap_or_default();
        let mut p = 8;
        while p + 25 < b.len() {
            if b[p..p + 8].iter().all(|&x| x == 0) {
                break;
            }
            let enc = b[p + 24];
            let mut q = p + 25;
            let (mut len, mut shift) = (0usize, 0);
            while q < b.len() {
                let x = b[q];
                q += 1;
                len |= usize::from(x & 0x7f) << shift;
                shift += 7;
                if x < 0x80 {
                    break;
                }
            }
            if q + len + 4 > b.len() {
                break;
            }
            out.push((enc, b[q..q + len].to_vec()));
            p = q + len + 4;
        }
    }
    out
}

fn main() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("prometheus not found: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let served = Arc::new(Mutex::new(Vec::new()));
    let s2 = served.clone();
    std::thread::spawn(move || serve(listener, s2));
    let web = TcpListener::bind("127.0.0.1:0").unwrap();
    let web_addr = web.local_addr().unwrap();
    drop(web);
    let config = tmp.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 100ms\n  scrape_timeout: 90ms\nscrape_configs:\n  - job_name: h\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={web_addr}"))
        .arg("--enable-feature=native-histograms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let want = 4 * 120 + 30;
    let deadline = Instant::now() + Duration::from_secs(240);
    while served.lock().unwrap().len() < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the last cut chunk reach the file, then stop Prometheus.
    std::thread::sleep(Duration::from_secs(2));
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    let chunks = prometheus_chunks(&data.join("chunks_head"));
    let served = served.lock().unwrap().clone();
    // Histogram chunks start with their sample count, 2 bytes big-endian.
    let hist: Vec<&(u8, Vec<u8>)> = chunks.iter().filter(|(e, _)| *e == 2).collect();
    let counts: Vec<usize> = hist
        .iter()
        .map(|(_, d)| usize::from(u16::from_be_bytes([d[0], d[1]])))
        .collect();
    let prom_bytes: usize = hist.iter().map(|(_, d)| d.len()).sum();
    let prom_samples: usize = counts.iter().sum();
    println!(
        "served {} histograms; Prometheus cut {} histogram chunks ({prom_samples} samples, {:?})",
        served.len(),
        hist.len(),
        counts
    );
    if prom_samples == 0 || prom_samples > served.len() {
        println!("no full Prometheus chunk to compare with");
        return;
    }
    // The same samples, cut at the same places, at the times they were served.
    let samples: Vec<HistogramSample> = served
        .iter()
        .map(|(t, h)| HistogramSample {
            t: *t,
            h: HistogramValue::Int(Box::new(h.clone())),
        })
        .collect();
    let mut ours = 0usize;
    let mut at = 0;
    for n in &counts {
        ours += codec::encode(&samples[at..at + n]).len();
        at += n;
    }
    let per = |b: usize| b as f64 / prom_samples as f64;
    println!(
        "bytes/sample of chunk data, same {prom_samples} samples, same chunks: Prometheus 2.42 {:.2}, tidemark {:.2} (ratio {:.2})",
        per(prom_bytes),
        per(ours),
        ours as f64 / prom_bytes as f64
    );
    let mut block = 0usize;
    for c in samples[..prom_samples].chunks(480) {
        block += codec::encode(c).len();
    }
    println!(
        "tidemark in 480-sample block chunks: {:.2} bytes/sample",
        per(block)
    );
}
