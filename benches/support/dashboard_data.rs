//! The dashboard benchmark's data: 15 instances of a demo-like web service scraped every 15 s
//! for 6 h (2,505 series, 3.6M samples), and the panels of a Grafana dashboard over it. Used by
//! `scripts/bench-dashboard.sh` (written as text by `scripts/gen-query-data.rs`, loaded into
//! tidemark, Prometheus and VictoriaMetrics) and by `benches/query.rs` (built into a block
//! in-process).
//!
//! Per instance (`job="demo"`, `instance="demo-NN:8080"`), 167 series:
//! - `node_cpu_seconds_total{cpu,mode}`: 2 CPUs x 8 modes, counters in 1/100 s ticks whose
//!   busy share follows the instance's load;
//! - `node_memory_{MemTotal,MemAvailable,MemFree,Cached,Buffers}_bytes`: page-sized gauges;
//! - `node_filesystem_{size,avail}_bytes{device,mountpoint,fstype}`: 3 filesystems, filling
//!   slowly with noise; `node_disk_{read,written}_bytes_total{device}`: 2 disks;
//! - `http_requests_total{path,code}`: 8 paths x codes 200, 404, 500;
//! - `http_request_duration_seconds_{bucket,sum,count}{path}`: 12 buckets (5 ms … 10 s,
//!   +Inf) of a log-normal latency per path, slower when busy.
//!
//! Every series is drawn from its own seeded generator (the query data's), so the data does not
//! depend on the order it is read. Series come out grouped by metric name. std only, like
//! query_data.rs; include it next to `query_data` (it uses `super::query_data`).

use super::query_data::{GenSeries, Rng, spread};

/// Milliseconds the data spans: 6 h, one block window on every side.
pub const SPAN_MS: i64 = 6 * 3_600_000;
const STEP_MS: i64 = 15_000;
const SCRAPES: i64 = SPAN_MS / STEP_MS;
const INSTANCES: u64 = 15;
const CPUS: u64 = 2;
const MODES: [&str; 8] = [
    "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
];
/// Share of one CPU each non-idle mode takes at full load (idle takes the rest).
const MODE_SHARE: [f64; 8] = [0.0, 0.04, 0.005, 0.01, 0.02, 0.005, 0.2, 0.5];
const PATHS: [&str; 8] = [
    "/",
    "/api/cart",
    "/api/checkout",
    "/api/login",
    "/api/products",
    "/api/search",
    "/healthz",
    "/static",
];
const CODES: [&str; 3] = ["200", "404", "500"];
const LE: [f64; 12] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];
const FILESYSTEMS: [(&str, &str, &str); 3] = [
    ("/dev/vda1", "/", "ext4"),
    ("/dev/vdb1", "/data", "xfs"),
    ("tmpfs", "/run", "tmpfs"),
];
const DISKS: [&str; 2] = ["vda", "vdb"];
const PAGE: f64 = 4096.0;

/// The panels, each run over the whole span at a 60 s step: name and PromQL. The last is the
/// issue's histogram_quantile figure, reported beside the panels' median.
pub const QUERIES: [(&str, &str); 11] = [
    (
        "cpu_by_mode",
        "sum by (instance, mode) (rate(node_cpu_seconds_total[5m]))",
    ),
    (
        "cpu_busy",
        r#"1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))"#,
    ),
    (
        "mem_used_pct",
        "100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)",
    ),
    (
        "mem_avg_10m",
        "avg_over_time(node_memory_MemAvailable_bytes[10m])",
    ),
    (
        "disk_used_pct",
        r#"100 - 100 * node_filesystem_avail_bytes{fstype!="tmpfs"} / node_filesystem_size_bytes{fstype!="tmpfs"}"#,
    ),
    (
        "disk_write",
        "sum by (instance) (rate(node_disk_written_bytes_total[5m]))",
    ),
    ("req_rate", "sum by (path) (rate(http_requests_total[5m]))"),
    (
        "error_ratio",
        r#"sum by (path) (rate(http_requests_total{code=~"5.."}[5m])) / sum by (path) (rate(http_requests_total[5m]))"#,
    ),
    (
        "p50_by_path",
        "histogram_quantile(0.5, sum by (le, path) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    (
        "topk_instances",
        "topk(5, sum by (instance) (rate(http_request_duration_seconds_count[5m])))",
    ),
    (
        "hq_p99",
        "histogram_quantile(0.99, sum by (le, path) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
];

/// A slow swing between 0.5 and 1.5 with its own phase and a period of about the span.
fn load(dt: i64, phase: f64) -> f64 {
    1.0 + 0.5 * (std::f64::consts::TAU * dt as f64 / SPAN_MS as f64 + phase).sin()
}

struct Instance {
    name: String,
    offset: i64,
    phase: f64,
    /// Requests per second at average load.
    traffic: f64,
    mem_total: f64,
}

fn instance(i: u64) -> Instance {
    let mut rng = Rng::new(2 << 40 | i);
    Instance {
        name: format!("demo-{i:02}:8080"),
        offset: (rng.next() % STEP_MS as u64) as i64,
        phase: rng.range(0.0, std::f64::consts::TAU),
        traffic: rng.range(20.0, 200.0),
        mem_total: (rng.range(4.0, 16.0).floor() * (1u64 << 30) as f64),
    }
}

fn series(name: &'static str, inst: &Instance, labels: &[(&'static str, &str)]) -> GenSeries {
    let mut l = vec![("instance", inst.name.clone()), ("job", "demo".to_string())];
    l.extend(labels.iter().map(|&(k, v)| (k, v.to_string())));
    GenSeries {
        name,
        labels: l,
        samples: Vec::with_capacity(SCRAPES as usize),
    }
}

/// Scrape times of an instance, with the offset from the start.
fn scrapes(start: i64, inst: &Instance) -> impl Iterator<Item = (i64, i64)> + '_ {
    (0..SCRAPES).map(move |n| {
        let dt = n * STEP_MS + inst.offset;
        (start + dt, dt)
    })
}

fn cpu(start: i64, i: u64, inst: &Instance, out: &mut Vec<GenSeries>) {
    for c in 0..CPUS {
        let cpu = c.to_string();
        let mut rng = Rng::new(3 << 40 | i << 8 | c);
        let mut ticks = [0f64; MODES.len()];
        for t in &mut ticks {
            *t = rng.range(1e6, 1e8).floor();
        }
        let mut s: Vec<GenSeries> = MODES
            .iter()
            .map(|&m| {
                series(
                    "node_cpu_seconds_total",
                    inst,
                    &[("cpu", &cpu), ("mode", m)],
                )
            })
            .collect();
        for (t, dt) in scrapes(start, inst) {
            let busy = load(dt, inst.phase) * inst.traffic / 200.0;
            let mut used = 0.0;
            for (m, share) in MODE_SHARE.iter().enumerate().skip(1) {
                let d = (1500.0 * share * busy * rng.range(0.5, 1.5)).floor();
                ticks[m] += d;
                used += d;
            }
            ticks[0] += (1500.0 - used).max(0.0);
            for (m, ser) in s.iter_mut().enumerate() {
                ser.samples.push((t, ticks[m] / 100.0));
            }
        }
        out.append(&mut s);
    }
}

fn memory(start: i64, i: u64, inst: &Instance, out: &mut Vec<GenSeries>) {
    let mut rng = Rng::new(4 << 40 | i);
    let mut s: Vec<GenSeries> = [
        "node_memory_MemTotal_bytes",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemFree_bytes",
        "node_memory_Cached_bytes",
        "node_memory_Buffers_bytes",
    ]
    .into_iter()
    .map(|name| series(name, inst, &[]))
    .collect();
    let pages = |b: f64| (b / PAGE).floor() * PAGE;
    let mut cached = inst.mem_total * rng.range(0.2, 0.4);
    for (t, dt) in scrapes(start, inst) {
        let used = inst.mem_total * (0.3 + 0.25 * load(dt, inst.phase)) * rng.range(0.97, 1.03);
        cached = (cached * rng.range(0.995, 1.006)).min(inst.mem_total - used);
        let buffers = inst.mem_total * 0.02 * rng.range(0.9, 1.1);
        let free = (inst.mem_total - used - cached - buffers).max(0.0);
        let vals = [
            inst.mem_total,
            pages(free + cached + buffers),
            pages(free),
            pages(cached),
            pages(buffers),
        ];
        for (ser, v) in s.iter_mut().zip(vals) {
            ser.samples.push((t, v));
        }
    }
    out.append(&mut s);
}

fn disk(start: i64, i: u64, inst: &Instance, out: &mut Vec<GenSeries>) {
    for (f, &(device, mountpoint, fstype)) in FILESYSTEMS.iter().enumerate() {
        let mut rng = Rng::new(5 << 40 | i << 8 | f as u64);
        let labels = [
            ("device", device),
            ("fstype", fstype),
            ("mountpoint", mountpoint),
        ];
        let mut size = series("node_filesystem_size_bytes", inst, &labels);
        let mut avail = series("node_filesystem_avail_bytes", inst, &labels);
        let total = rng.range(20.0, 500.0).floor() * (1u64 << 30) as f64;
        let mut free = total * rng.range(0.1, 0.9);
        for (t, _) in scrapes(start, inst) {
            free = (free - rng.range(-2e5, 1e6) * 15.0).clamp(0.0, total);
            size.samples.push((t, total));
            avail.samples.push((t, (free / PAGE).floor() * PAGE));
        }
        out.push(size);
        out.push(avail);
    }
    for (d, &device) in DISKS.iter().enumerate() {
        let mut rng = Rng::new(6 << 40 | i << 8 | d as u64);
        let mut read = series("node_disk_read_bytes_total", inst, &[("device", device)]);
        let mut written = series("node_disk_written_bytes_total", inst, &[("device", device)]);
        let (mut r, mut w) = (rng.range(1e9, 1e12).floor(), rng.range(1e9, 1e12).floor());
        for (t, dt) in scrapes(start, inst) {
            let l = load(dt, inst.phase);
            r += (rng.range(0.0, 4e6) * l).floor() * 512.0;
            w += (rng.range(0.0, 2e6) * l).floor() * 512.0;
            read.samples.push((t, r));
            written.samples.push((t, w));
        }
        out.push(read);
        out.push(written);
    }
}

fn http(start: i64, i: u64, inst: &Instance, out: &mut Vec<GenSeries>) {
    for (p, &path) in PATHS.iter().enumerate() {
        let mut rng = Rng::new(7 << 40 | i << 8 | p as u64);
        // Each path's share of the traffic, its latency and its error rate.
        let share = rng.range(0.02, 0.3);
        let median = rng.range(0.005, 0.3);
        let sigma = rng.range(0.4, 1.0);
        let not_found = rng.range(0.0, 0.05);
        let errors = if rng.f() < 0.5 {
            0.0
        } else {
            rng.range(0.0, 0.02)
        };
        let mut by_code: Vec<GenSeries> = CODES
            .iter()
            .map(|&c| series("http_requests_total", inst, &[("code", c), ("path", path)]))
            .collect();
        let mut buckets: Vec<GenSeries> = LE
            .iter()
            .map(|&le| {
                let le = if le.is_infinite() {
                    "+Inf".to_string()
                } else {
                    le.to_string()
                };
                series(
                    "http_request_duration_seconds_bucket",
                    inst,
                    &[("le", &le), ("path", path)],
                )
            })
            .collect();
        let mut sum = series("http_request_duration_seconds_sum", inst, &[("path", path)]);
        let mut count = series(
            "http_request_duration_seconds_count",
            inst,
            &[("path", path)],
        );
        let first = rng.range(1e4, 1e6).floor();
        let mut codes = [0f64; CODES.len()];
        let mut cum = [0f64; LE.len()];
        let mut total_sum = 0.0;
        for (n_scrape, (t, dt)) in scrapes(start, inst).enumerate() {
            let l = load(dt, inst.phase);
            // The first scrape holds what the process served before the span.
            let n = if n_scrape == 0 {
                first
            } else {
                (inst.traffic * share * 15.0 * l * rng.range(0.7, 1.3) + rng.f()).floor()
            };
            let e = (n * errors * l * rng.range(0.0, 2.0)).floor().min(n);
            let nf = (n * not_found * rng.range(0.5, 1.5)).floor().min(n - e);
            codes[0] += n - e - nf;
            codes[1] += nf;
            codes[2] += e;
            let mu = (median * l).ln();
            spread(&mut rng, n, mu, sigma, &LE, &mut cum);
            // Observed seconds, kept to whole milliseconds so the sum stays a short decimal.
            total_sum += (n * median * l * 1000.0 * rng.range(0.9, 1.3)).floor();
            // Cumulative across buckets: each counts everything at or below its bound.
            let mut acc = 0.0;
            for (b, s) in buckets.iter_mut().enumerate() {
                acc += cum[b];
                s.samples.push((t, acc));
            }
            sum.samples.push((t, total_sum / 1000.0));
            count.samples.push((t, acc));
            for (c, s) in by_code.iter_mut().enumerate() {
                s.samples.push((t, codes[c]));
            }
        }
        out.append(&mut by_code);
        out.append(&mut buckets);
        out.push(sum);
        out.push(count);
    }
}

/// Every series of the span starting at `start` (ms), grouped by metric name.
pub fn all_series(start: i64) -> Vec<GenSeries> {
    let mut out = Vec::with_capacity(2_600);
    for i in 0..INSTANCES {
        let inst = instance(i);
        cpu(start, i, &inst, &mut out);
        memory(start, i, &inst, &mut out);
        disk(start, i, &inst, &mut out);
        http(start, i, &inst, &mut out);
    }
    // Stable: within a name, instances and their series keep their order.
    out.sort_by_key(|s| s.name);
    out
}
