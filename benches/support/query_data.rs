//! The query benchmark's day: 10,000 series scraped every 15 s for 24 h (57.6M samples), the
//! same for `benches/query.rs` (built into blocks in-process) and for
//! `scripts/bench-query-vs-prometheus.sh` (written as OpenMetrics text, loaded by
//! `tidemark import` and `promtool tsdb create-blocks-from openmetrics`).
//!
//! - 9,000 counters `x{job="job-J",instance="node-NNN:9100"}`, 10 jobs of 900 instances: each
//!   starts where a long-running process would be, grows at its own rate (0.1 to 300 per second,
//!   log-uniform) with a daily swing, per-scrape noise and rare bursts, and about one in ten
//!   resets to zero once during the day (a restart).
//! - 1,000 histogram buckets `h_bucket{job=…,instance="api-NN:8080",le=…}`: 100 targets × 10
//!   buckets (5 ms … 2.5 s, +Inf) of a log-normal latency whose median drifts over the day;
//!   every scrape adds an irregular number of observations, so buckets stay cumulative.
//!
//! Each target has its own phase within the 15 s interval, as spread scrapes do. Everything is
//! drawn from per-series seeded generators: the data does not depend on the order it is read.
//! This file uses std only, so the script can compile its generator with plain `rustc`.

use std::io::Write;

/// Milliseconds in a day: the span of the data, and of every benchmarked query.
pub const DAY_MS: i64 = 86_400_000;

/// Scrape interval.
const STEP_MS: i64 = 15_000;
/// Scrapes per series.
const SCRAPES: i64 = DAY_MS / STEP_MS;
const JOBS: u64 = 10;
const INSTANCES_PER_JOB: u64 = 900;
const HIST_TARGETS: u64 = 100;
/// Bucket bounds in seconds; the last is +Inf.
const LE: [f64; 10] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    f64::INFINITY,
];

/// The benchmarked queries, each run over the whole day at a 60 s step: name and PromQL.
pub const QUERIES: [(&str, &str); 3] = [
    ("sum_rate", "sum by (job) (rate(x[5m]))"),
    (
        "histogram_quantile",
        "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))",
    ),
    ("one_series", r#"x{job="job-3",instance="node-042:9100"}"#),
];

/// One generated series.
pub struct GenSeries {
    /// Metric name.
    pub name: &'static str,
    /// The other labels.
    pub labels: Vec<(&'static str, String)>,
    /// `(ms, value)` in time order.
    pub samples: Vec<(i64, f64)>,
}

/// xorshift64*: fast, and good enough to make data irregular.
pub struct Rng(u64);

impl Rng {
    pub fn new(stream: u64) -> Rng {
        // SplitMix64 of the stream number, so neighbouring series are unrelated.
        let mut z = stream.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f()
    }
}

/// Standard normal CDF (Abramowitz & Stegun 7.1.26 for erf, error below 1.5e-7).
pub fn phi(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// Adds `n` observations to `counts` (per bucket, not cumulative), spread over the buckets with
/// upper bounds `le` (the last `+Inf`) as a log-normal distribution of median `e^mu` puts them,
/// each bucket's share jittered, renormalised so the shares sum to `n` and the tail stays the tail.
pub fn spread(rng: &mut Rng, n: f64, mu: f64, sigma: f64, le: &[f64], counts: &mut [f64]) {
    let mut weights = [0f64; 16];
    let weights = &mut weights[..le.len()];
    let mut below = 0.0;
    for (w, &le) in weights.iter_mut().zip(le) {
        let p = if le.is_infinite() {
            1.0
        } else {
            phi((le.ln() - mu) / sigma)
        };
        *w = (p - below) * rng.range(0.85, 1.15);
        below = p;
    }
    let sum: f64 = weights.iter().sum();
    let mut added = 0.0;
    for (b, w) in weights.iter().enumerate() {
        let share = if b == le.len() - 1 {
            n - added
        } else {
            (n * w / sum + rng.f()).floor().min(n - added)
        };
        added += share;
        counts[b] += share;
    }
}

/// A daily swing between 0.5 and 1.5 with its own phase.
fn diurnal(t_in_day: i64, phase: f64) -> f64 {
    1.0 + 0.5 * (std::f64::consts::TAU * t_in_day as f64 / DAY_MS as f64 + phase).sin()
}

fn counter(start: i64, i: u64) -> GenSeries {
    let mut rng = Rng::new(i);
    let rate = 10f64.powf(rng.range(-1.0, 2.5));
    let swing = rng.range(0.0, std::f64::consts::TAU);
    let offset = (rng.next() % STEP_MS as u64) as i64;
    let reset_at = if rng.f() < 0.1 {
        (rng.next() % SCRAPES as u64) as i64
    } else {
        -1
    };
    let mut v = (rng.range(0.0, 1e5) * rate).floor();
    let mut samples = Vec::with_capacity(SCRAPES as usize);
    for n in 0..SCRAPES {
        let dt = n * STEP_MS + offset;
        let burst = if rng.f() < 0.01 {
            rng.range(3.0, 8.0)
        } else {
            1.0
        };
        let inc = rate * 15.0 * diurnal(dt, swing) * rng.range(0.3, 1.7) * burst;
        if n == reset_at {
            v = 0.0;
        }
        v += (inc + rng.f()).floor();
        samples.push((start + dt, v));
    }
    GenSeries {
        name: "x",
        labels: vec![
            ("job", format!("job-{}", i / INSTANCES_PER_JOB)),
            (
                "instance",
                format!("node-{:03}:9100", i % INSTANCES_PER_JOB),
            ),
        ],
        samples,
    }
}

/// The ten bucket series of one histogram target.
fn histogram(start: i64, k: u64) -> Vec<GenSeries> {
    let mut rng = Rng::new(1 << 40 | k);
    let rate = rng.range(5.0, 50.0);
    let median = rng.range(0.04, 0.15);
    let sigma = rng.range(0.5, 0.9);
    let swing = rng.range(0.0, std::f64::consts::TAU);
    let offset = (rng.next() % STEP_MS as u64) as i64;
    let mut cum = [0f64; LE.len()];
    let first = rng.range(1e4, 1e6).floor();
    let mut out: Vec<GenSeries> = LE
        .iter()
        .map(|&le| GenSeries {
            name: "h_bucket",
            labels: vec![
                ("job", format!("job-{}", k % JOBS)),
                ("instance", format!("api-{k:02}:8080")),
                (
                    "le",
                    if le.is_infinite() {
                        "+Inf".to_string()
                    } else {
                        le.to_string()
                    },
                ),
            ],
            samples: Vec::with_capacity(SCRAPES as usize),
        })
        .collect();
    for n in 0..SCRAPES {
        let dt = n * STEP_MS + offset;
        let load = diurnal(dt, swing);
        // Busy hours are also slow hours.
        let mu = (median * load).ln();
        let total = if n == 0 {
            first
        } else {
            (rate * 15.0 * load * rng.range(0.7, 1.3) + rng.f()).floor()
        };
        // Each bucket's share of this scrape's observations: the distribution's mass in it,
        // jittered, renormalised so the shares sum to one and the tail stays the tail.
        spread(&mut rng, total, mu, sigma, &LE, &mut cum);
        // Cumulative across buckets: each bucket counts everything at or below its bound.
        let mut acc = 0.0;
        for (b, s) in out.iter_mut().enumerate() {
            acc += cum[b];
            s.samples.push((start + dt, acc));
        }
    }
    out
}

/// Calls `f` with every series of the day starting at `start` (ms), counters first.
pub fn for_each_series(start: i64, mut f: impl FnMut(GenSeries)) {
    for i in 0..JOBS * INSTANCES_PER_JOB {
        f(counter(start, i));
    }
    for k in 0..HIST_TARGETS {
        for s in histogram(start, k) {
            f(s);
        }
    }
}

/// Writes the day as OpenMetrics text with timestamps, one series after another.
pub fn write_openmetrics(start: i64, out: &mut impl Write) -> std::io::Result<u64> {
    write_text(|f| for_each_series(start, f), false, out)
}

/// Writes the series `each` hands over (grouped by metric name: a name's series must follow one
/// another) as text, one series after another, and returns how many samples it wrote. The text
/// is OpenMetrics 1.0 (`# TYPE` lines, timestamps in seconds, `# EOF`: for `tidemark import` and
/// `promtool tsdb create-blocks-from openmetrics`), or with `prometheus_text` Prometheus text
/// 0.0.4 with timestamps in milliseconds and no comments (for VictoriaMetrics'
/// `/api/v1/import/prometheus`).
pub fn write_text(
    each: impl FnOnce(&mut dyn FnMut(GenSeries)),
    prometheus_text: bool,
    out: &mut impl Write,
) -> std::io::Result<u64> {
    let mut family = "";
    let mut n = 0;
    let mut err = Ok(());
    let mut line = Vec::with_capacity(1 << 16);
    each(&mut |s: GenSeries| {
        if err.is_err() {
            return;
        }
        line.clear();
        if s.name != family {
            family = s.name;
            if !prometheus_text {
                let _ = writeln!(line, "# TYPE {} unknown", s.name);
            }
        }
        let mut id = format!("{}{{", s.name);
        for (i, (k, v)) in s.labels.iter().enumerate() {
            if i > 0 {
                id.push(',');
            }
            id.push_str(&format!("{k}=\"{v}\""));
        }
        id.push('}');
        for &(t, v) in &s.samples {
            // `{v}` is the shortest text that reads back as the same f64.
            let _ = if prometheus_text {
                writeln!(line, "{id} {v} {t}")
            } else {
                writeln!(line, "{id} {v} {}.{:03}", t / 1000, t % 1000)
            };
        }
        n += s.samples.len() as u64;
        err = out.write_all(&line);
    });
    err?;
    if !prometheus_text {
        out.write_all(b"# EOF\n")?;
    }
    Ok(n)
}
