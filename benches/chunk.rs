//! Chunk codec: encode/decode throughput and a size table against a Gorilla XOR baseline, on a
//! day of node_exporter scrapes (benches/support/node_day.rs).
//!
//! Set `TIDEMARK_OPENMETRICS_OUT=/path/day.om` to also write the day as OpenMetrics text, the
//! input for `promtool tsdb create-blocks-from openmetrics` when comparing with Prometheus.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tidemark::model::Sample;
use tidemark::storage::chunk;

#[path = "support/node_day.rs"]
mod node_day;

use node_day::{Kind, Series};

/// Prometheus-style Gorilla chunk, written only to count its bytes: 2-byte sample count, first
/// timestamp as a signed varint and value as 64 raw bits, first delta as an unsigned varint and
/// XOR value, then delta-of-delta buckets (1, 2+14, 3+17, 4+20 or 4+64 bits) and XOR values
/// (5-bit leading zeros, 6-bit significant length).
mod gorilla {
    use tidemark::model::Sample;

    struct Bits {
        bytes: Vec<u8>,
        free: u32,
    }

    impl Bits {
        fn bit(&mut self, b: bool) {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            self.free -= 1;
            if let Some(last) = self.bytes.last_mut().filter(|_| b) {
                *last |= 1 << self.free;
            }
        }

        fn bits(&mut self, x: u64, n: u32) {
            for i in (0..n).rev() {
                self.bit((x >> i) & 1 == 1);
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

    pub fn encoded_len(s: &[Sample]) -> usize {
        let mut w = Bits {
            bytes: vec![0, 0],
            free: 0,
        };
        let (mut pt, mut pd, mut pv) = (0i64, 0i64, 0u64);
        let (mut lead, mut trail) = (u32::MAX, 0u32);
        for (i, x) in s.iter().enumerate() {
            let v = x.v.to_bits();
            match i {
                0 => {
                    varint(&mut w.bytes, ((x.t << 1) ^ (x.t >> 63)) as u64);
                    w.bytes.extend_from_slice(&v.to_be_bytes());
                    w.free = 0;
                }
                1 => {
                    pd = x.t - pt;
                    varint(&mut w.bytes, pd as u64);
                    xor(&mut w, v ^ pv, &mut lead, &mut trail);
                }
                _ => {
                    let d = x.t - pt;
                    let dod = d - pd;
                    pd = d;
                    match dod {
                        0 => w.bit(false),
                        -8191..=8192 => {
                            w.bits(0b10, 2);
                            w.bits(dod as u64 & 0x3fff, 14);
                        }
                        -65535..=65536 => {
                            w.bits(0b110, 3);
                            w.bits(dod as u64 & 0x1_ffff, 17);
                        }
                        -524_287..=524_288 => {
                            w.bits(0b1110, 4);
                            w.bits(dod as u64 & 0xf_ffff, 20);
                        }
                        _ => {
                            w.bits(0b1111, 4);
                            w.bits(dod as u64, 64);
                        }
                    }
                    xor(&mut w, v ^ pv, &mut lead, &mut trail);
                }
            }
            pt = x.t;
            pv = v;
        }
        w.bytes.len()
    }

    fn xor(w: &mut Bits, x: u64, lead: &mut u32, trail: &mut u32) {
        if x == 0 {
            w.bit(false);
            return;
        }
        w.bit(true);
        let l = x.leading_zeros().min(31);
        let t = x.trailing_zeros();
        if *lead != u32::MAX && l >= *lead && t >= *trail {
            w.bit(false);
            w.bits(x >> *trail, 64 - *lead - *trail);
        } else {
            *lead = l;
            *trail = t;
            let sig = 64 - l - t;
            w.bit(true);
            w.bits(u64::from(l), 5);
            w.bits(u64::from(sig & 63), 6);
            w.bits(x >> t, sig);
        }
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Summary => "summary",
        Kind::Untyped => "untyped",
    }
}

fn chunks_of(series: &[Series], size: usize) -> impl Iterator<Item = (&Series, &[Sample])> {
    series
        .iter()
        .flat_map(move |s| s.samples.chunks(size).map(move |c| (s, c)))
}

fn size_table(series: &[Series]) {
    println!();
    println!(
        "chunk size on a day of node_exporter scrapes ({} series)",
        series.len()
    );
    println!(
        "{:>6} {:>9} {:>10} {:>12} {:>12} {:>7}  modes xor/div/mul",
        "chunk", "kind", "samples", "ours B/smp", "gorilla B/smp", "ratio"
    );
    for size in [120usize, 480, 1000] {
        let kinds = [
            Some(Kind::Counter),
            Some(Kind::Gauge),
            Some(Kind::Untyped),
            Some(Kind::Summary),
            None,
        ];
        for k in kinds {
            let (mut n, mut ours, mut theirs) = (0usize, 0usize, 0usize);
            let mut modes = [0usize; 3];
            for (s, c) in chunks_of(series, size) {
                if k.is_some_and(|k| k != s.kind) {
                    continue;
                }
                let enc = chunk::encode(c);
                modes[usize::from(enc[0] & 0x0f).min(2)] += 1;
                n += c.len();
                ours += enc.len();
                theirs += gorilla::encoded_len(c);
            }
            if n == 0 {
                continue;
            }
            println!(
                "{:>6} {:>9} {:>10} {:>12.3} {:>12.3} {:>7.3}  {}/{}/{}",
                size,
                k.map_or("all", kind_name),
                n,
                ours as f64 / n as f64,
                theirs as f64 / n as f64,
                ours as f64 / theirs as f64,
                modes[0],
                modes[1],
                modes[2]
            );
        }
    }
    println!();
}

/// The costliest series at 480 samples per chunk, to see where the bytes go.
fn worst_series(series: &[Series]) {
    let mut per: Vec<(f64, f64, &str)> = series
        .iter()
        .map(|s| {
            let (mut o, mut g) = (0, 0);
            for c in s.samples.chunks(480) {
                o += chunk::encode(c).len();
                g += gorilla::encoded_len(c);
            }
            let n = s.samples.len() as f64;
            (o as f64 / n, g as f64 / n, s.id.as_str())
        })
        .collect();
    per.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("costliest series at 480/chunk: ours B/smp, gorilla B/smp, series");
    for (o, g, id) in per.iter().take(12) {
        println!("  {o:>7.3} {g:>7.3}  {id}");
    }
    println!();
}

fn benches(c: &mut Criterion) {
    let series = node_day::day();
    if let Some(path) = std::env::var_os("TIDEMARK_OPENMETRICS_OUT") {
        let path = Path::new(&path);
        node_day::write_openmetrics(&series, path)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        eprintln!("wrote OpenMetrics day to {}", path.display());
    }
    size_table(&series);
    worst_series(&series);

    // Throughput on the first four hours of every series, so an iteration stays short.
    let window: Vec<Series> = series
        .iter()
        .map(|s| Series {
            id: s.id.clone(),
            family: s.family.clone(),
            kind: s.kind,
            samples: s.samples[..960].to_vec(),
        })
        .collect();
    let mut g = c.benchmark_group("chunk");
    for size in [120usize, 480] {
        let raw: Vec<&[Sample]> = chunks_of(&window, size).map(|(_, c)| c).collect();
        let encoded: Vec<Vec<u8>> = raw.iter().map(|c| chunk::encode(c)).collect();
        let total: usize = raw.iter().map(|c| c.len()).sum();
        g.throughput(Throughput::Elements(total as u64));
        g.bench_with_input(BenchmarkId::new("encode", size), &raw, |b, raw| {
            let mut buf = Vec::with_capacity(8192);
            b.iter(|| {
                for c in raw {
                    buf.clear();
                    chunk::encode_into(c, &mut buf);
                    black_box(&buf);
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("decode", size), &encoded, |b, enc| {
            let mut out = Vec::with_capacity(size);
            b.iter(|| {
                for e in enc {
                    out.clear();
                    chunk::decode(e, &mut out).unwrap_or_else(|e| panic!("{e}"));
                    black_box(&out);
                }
            })
        });
    }
    g.finish();

    // Single 480-sample chunks of typical shapes: the per-chunk decode latency a query pays.
    let mut g = c.benchmark_group("decode_one_480");
    for id in [
        "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}",
        "node_network_receive_bytes_total{device=\"eth0\"}",
        "node_memory_MemFree_bytes",
        "node_scrape_collector_duration_seconds{collector=\"cpu\"}",
        "node_memory_MemTotal_bytes",
    ] {
        let Some(s) = series.iter().find(|s| s.id == id) else {
            continue;
        };
        let enc = chunk::encode(&s.samples[..480]);
        g.throughput(Throughput::Elements(480));
        g.bench_with_input(BenchmarkId::from_parameter(&s.id), &enc, |b, enc| {
            let mut out = Vec::with_capacity(480);
            b.iter(|| {
                out.clear();
                chunk::decode(black_box(enc), &mut out).unwrap_or_else(|e| panic!("{e}"));
                black_box(&out);
            })
        });
    }
    g.finish();
}

criterion_group!(chunk_benches, benches);
criterion_main!(chunk_benches);
