//! A synthetic but realistic day of node_exporter scrapes, shared by the storage benches.
//!
//! Every sample line of `shared/fixtures/exposition/node_exporter-1.5.0.prom` becomes one series
//! (its raw `name{labels}` text is the id) with 5760 samples: a 15s grid starting at
//! [`EPOCH_MS`], minus a few scrapes missed by the whole target (about one in 1200, chosen by a
//! fixed hash, as a busy host occasionally times out).
//!
//! How values move, so a reader can judge whether it is realistic:
//! - **Precision.** Each series keeps the precision and arithmetic of its fixture value: integer
//!   values stay integers (byte values that are multiples of 512..4096 keep that granule, like
//!   pages and sectors); decimals keep their digits. Where node_exporter derives a value by float
//!   arithmetic the generator does the same, so the last-bit noise is real: CPU seconds are
//!   `ticks / 100`, disk seconds `ms * 0.001`, pressure seconds `us / 1000 / 1000`.
//! - **Constants.** Info metrics, build/OS/config gauges (sizes, limits, MTUs, flags, ids, boot
//!   and start times, MemTotal-like totals, timex settings) and 0/1 status gauges stay at their
//!   fixture value all day. Counters at 0 (idle devices, error and drop counters) stay at 0.
//! - **Counters.** A counter's rate is its fixture value over the fixture host's uptime
//!   (`node_time_seconds - node_boot_time_seconds`, about 5.5 min after boot). Time counters
//!   (`*_seconds_total`) keep that rate; other counters run at a fifth of it, because the boot
//!   burst overstates steady-state I/O. Each scrape adds a non-negative increment: Poisson for
//!   slow counters (under 20 units per scrape, so most scrapes add 0 or 1), otherwise the mean
//!   with multiplicative noise (coefficient of variation 0.25 for time counters, 0.6 for bursty
//!   byte and packet counters).
//! - **Gauges.** Levels (memory, fds, goroutines, load, sockets) random-walk at their precision:
//!   half the scrapes move by a normal step of 0.05% of the level (at least one unit) and every
//!   scrape reverts 2% towards the fixture level. Durations (`*_duration_seconds`) are fresh
//!   measurements each scrape: the fixture value times a log-normal factor (sigma 0.35), at
//!   nanosecond precision as Go's `Duration.Seconds()` gives. `node_time_seconds` is the scrape
//!   time plus a sub-millisecond offset, at nanosecond precision.
//!
//! Randomness is a splitmix64 stream seeded from a fixed seed and the series id, so the day is
//! identical on every run and independent of series order.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use tidemark::model::Sample;

#[path = "../../tests/common/fixtures.rs"]
mod fixtures;

/// First scrape of the day, in milliseconds; a multiple of the scrape interval.
pub const EPOCH_MS: i64 = 1_700_000_010_000;
const SCRAPE_MS: i64 = 15_000;
const SCRAPES: usize = 5_760;
const SEED: u64 = 0x7469_6465_6d61_726b;

/// Metric type of a series, from the fixture's `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Summary,
    Untyped,
}

/// One generated series.
pub struct Series {
    /// Raw series text from the fixture, `name{labels}`.
    pub id: String,
    /// Metric family name as in the fixture's `# TYPE` line.
    pub family: String,
    /// Type of the family.
    pub kind: Kind,
    /// A day of samples, strictly increasing timestamps.
    pub samples: Vec<Sample>,
}

fn fixture_path() -> PathBuf {
    fixtures::shared("fixtures/exposition/node_exporter-1.5.0.prom")
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn poisson(&mut self, mean: f64) -> i64 {
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.unit();
        while p > limit {
            k += 1;
            p *= self.unit();
        }
        k
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How an integer count of units becomes the exported float.
#[derive(Clone, Copy)]
enum Repr {
    /// `units * quantum`, an integer value.
    Int { quantum: i64 },
    /// `units / 10^e`.
    Div { e: i32 },
    /// `units * 10^-e` with the rounded constant, as `x * 0.001` in Go.
    Mul { e: i32 },
    /// Microseconds to seconds by two divisions by 1000.
    DivDiv,
}

impl Repr {
    fn value(self, units: i64) -> f64 {
        match self {
            Repr::Int { quantum } => (units * quantum) as f64,
            Repr::Div { e } => units as f64 / 10f64.powi(e),
            Repr::Mul { e } => units as f64 * [1.0, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6][e as usize],
            Repr::DivDiv => units as f64 / 1000.0 / 1000.0,
        }
    }

    /// Units of the fixture value under this representation.
    fn units(self, v: f64) -> i64 {
        match self {
            Repr::Int { quantum } => (v / quantum as f64).round() as i64,
            Repr::Div { e } | Repr::Mul { e } => (v * 10f64.powi(e)).round() as i64,
            Repr::DivDiv => (v * 1e6).round() as i64,
        }
    }

    /// Decimal precision of a fixture value, preferring how node_exporter computes the metric.
    fn detect(name: &str, v: f64) -> Repr {
        if v.fract() == 0.0 && v.abs() < 9e15 {
            let i = v as i64;
            let bytes = name.contains("bytes") && i.abs() >= 1 << 16;
            let quantum = if bytes {
                (0..=12)
                    .rev()
                    .map(|b| 1i64 << b)
                    .find(|q| i % q == 0)
                    .unwrap_or(1)
            } else {
                1
            };
            return Repr::Int {
                quantum: if quantum >= 512 { quantum } else { 1 },
            };
        }
        let fits = |r: Repr| r.value(r.units(v)).to_bits() == v.to_bits();
        if name.starts_with("node_pressure_") && fits(Repr::DivDiv) {
            return Repr::DivDiv;
        }
        if name.starts_with("node_disk_") && fits(Repr::Mul { e: 3 }) {
            return Repr::Mul { e: 3 };
        }
        (1..=9)
            .map(|e| Repr::Div { e })
            .chain((1..=6).map(|e| Repr::Mul { e }))
            .find(|&r| fits(r))
            .unwrap_or(Repr::Div { e: 9 })
    }
}

enum Model {
    Constant,
    Counter { mean: f64, cv: f64 },
    Walk { sigma: f64 },
    Measure,
    Clock,
}

const CONSTANT_MARKERS: &[&str] = &[
    "_info",
    "MemTotal",
    "SwapTotal",
    "VmallocTotal",
    "CommitLimit",
    "DirectMap",
    "Hugepagesize",
    "HugePages_",
    "_size_bytes",
    "filesystem_files{",
    "_maximum",
    "_limit",
    "mtu_",
    "iface_",
    "_flags",
    "speed_bytes",
    "max_fds",
    "_max_bytes",
    "start_time",
    "boot_time",
    "pool_size",
    "entropy_available",
    "queue_length",
    "assign_type",
    "dev_group",
    "link_mode",
    "device_id",
    "protocol_type",
    "os_version",
    "Forwarding",
    "node_timex_",
    "zone_offset",
    "sockstat_TCP_mem",
];

const DYNAMIC_SMALL: &[&str] = &[
    "procs_running",
    "procs_blocked",
    "io_now",
    "in_flight",
    "CurrEstab",
    "_inuse",
    "_alloc",
    "sockets_used",
    "conntrack_entries{",
];

fn model(name: &str, id: &str, kind: Kind, v: f64, units: i64, uptime: f64) -> Model {
    if name == "node_time_seconds" {
        return Model::Clock;
    }
    let counter = match kind {
        Kind::Counter => true,
        // node_netstat_* and node_vmstat_* are untyped counters, apart from a few levels.
        Kind::Untyped => !id.contains("CurrEstab") && !id.contains("Forwarding"),
        Kind::Summary => name.ends_with("_sum") || name.ends_with("_count"),
        Kind::Gauge => false,
    };
    if counter {
        if units <= 0 {
            return Model::Constant;
        }
        let time = name.ends_with("_seconds_total");
        let activity = if time { 1.0 } else { 0.2 };
        return Model::Counter {
            mean: units as f64 / uptime * (SCRAPE_MS as f64 / 1000.0) * activity,
            cv: if time { 0.25 } else { 0.6 },
        };
    }
    if CONSTANT_MARKERS.iter().any(|m| id.contains(m)) {
        return Model::Constant;
    }
    if (v == 0.0 || v == 1.0) && !DYNAMIC_SMALL.iter().any(|m| id.contains(m)) {
        return Model::Constant;
    }
    if name.ends_with("_duration_seconds") {
        return if v == 0.0 {
            Model::Constant
        } else {
            Model::Measure
        };
    }
    Model::Walk {
        sigma: (units.abs() as f64 * 0.0005).max(1.0),
    }
}

struct Line {
    id: String,
    name: String,
    family: String,
    kind: Kind,
    value: f64,
}

fn parse_fixture(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut family = String::new();
    let mut kind = Kind::Untyped;
    for raw in text.lines() {
        let raw = raw.trim();
        if let Some(rest) = raw.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            family = it.next().unwrap_or_default().to_string();
            kind = match it.next() {
                Some("counter") => Kind::Counter,
                Some("gauge") => Kind::Gauge,
                Some("summary") => Kind::Summary,
                _ => Kind::Untyped,
            };
            continue;
        }
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        // Label values may hold spaces, so the value starts after the closing brace.
        let id_end = match raw.find('{') {
            Some(_) => raw.rfind('}').map_or(raw.len(), |i| i + 1),
            None => raw.find(' ').unwrap_or(raw.len()),
        };
        let id = raw[..id_end].to_string();
        let name = id.split('{').next().unwrap_or_default().to_string();
        let Some(value) = raw[id_end..]
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<f64>().ok())
        else {
            panic!("unparseable fixture line: {raw}");
        };
        let (fam, k) = if name.starts_with(family.as_str()) && !family.is_empty() {
            (family.clone(), kind)
        } else {
            (name.clone(), Kind::Untyped)
        };
        lines.push(Line {
            id,
            name,
            family: fam,
            kind: k,
            value,
        });
    }
    lines
}

/// Scrape timestamps of the day: the 15s grid with the target's missed scrapes removed.
fn timestamps() -> Vec<i64> {
    (0..SCRAPES)
        .filter(|&i| {
            let mut r = Rng(SEED ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            i == 0 || !r.next().is_multiple_of(1200)
        })
        .map(|i| EPOCH_MS + i as i64 * SCRAPE_MS)
        .collect()
}

/// Generates the day for every sample line of the fixture, in fixture order.
pub fn day() -> Vec<Series> {
    let path = fixture_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    let lines = parse_fixture(&text);
    let find = |n: &str| lines.iter().find(|l| l.id == n).map(|l| l.value);
    let uptime = match (find("node_time_seconds"), find("node_boot_time_seconds")) {
        (Some(now), Some(boot)) if now > boot => now - boot,
        _ => 300.0,
    };
    let ts = timestamps();
    lines
        .iter()
        .map(|l| {
            let repr = Repr::detect(&l.name, l.value);
            let start = repr.units(l.value);
            let m = model(&l.name, &l.id, l.kind, l.value, start, uptime);
            let mut rng = Rng(SEED ^ fnv1a(&l.id));
            let mut units = start;
            let mut last_t = ts[0] - SCRAPE_MS;
            let samples = ts
                .iter()
                .map(|&t| {
                    let intervals = ((t - last_t) / SCRAPE_MS) as usize;
                    last_t = t;
                    let v = match m {
                        Model::Constant => l.value,
                        Model::Counter { mean, cv } => {
                            for _ in 0..intervals {
                                units += if mean < 20.0 {
                                    rng.poisson(mean)
                                } else {
                                    (mean * (1.0 + cv * rng.normal())).max(0.0).round() as i64
                                };
                            }
                            repr.value(units)
                        }
                        Model::Walk { sigma } => {
                            for _ in 0..intervals {
                                if rng.unit() < 0.5 {
                                    units += (sigma * rng.normal()).round() as i64;
                                }
                                units += ((start - units) as f64 * 0.02).round() as i64;
                                if start >= 0 {
                                    units = units.max(0);
                                }
                            }
                            repr.value(units)
                        }
                        Model::Measure => {
                            let x = (start as f64 * (0.35 * rng.normal()).exp()).round() as i64;
                            repr.value(x.max(1))
                        }
                        Model::Clock => {
                            let ns = t * 1_000_000 + (rng.next() % 900_000) as i64;
                            ns as f64 / 1e9
                        }
                    };
                    Sample::new(t, v)
                })
                .collect();
            Series {
                id: l.id.clone(),
                family: l.family.clone(),
                kind: l.kind,
                samples,
            }
        })
        .collect()
}

fn om_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        // Rust's shortest round-trip form, so the parser gets the exact bits back.
        format!("{v:?}")
    }
}

/// Writes the series as OpenMetrics text with timestamps, the input of
/// `promtool tsdb create-blocks-from openmetrics` and `tidemark import`.
pub fn write_openmetrics(series: &[Series], path: &Path) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut i = 0;
    while i < series.len() {
        let fam = &series[i].family;
        let mut j = i;
        while j < series.len() && series[j].family == *fam {
            j += 1;
        }
        let (name, ty) = match series[i].kind {
            // OpenMetrics names a counter family without the `_total` its samples carry.
            Kind::Counter => match fam.strip_suffix("_total") {
                Some(base) => (base, "counter"),
                None => (fam.as_str(), "unknown"),
            },
            Kind::Gauge => (fam.as_str(), "gauge"),
            Kind::Summary => (fam.as_str(), "summary"),
            Kind::Untyped => (fam.as_str(), "unknown"),
        };
        writeln!(out, "# TYPE {name} {ty}")?;
        // One timestamp at a time across the family, so each summary point stays together.
        let mut line = String::new();
        let n = series[i].samples.len();
        for k in 0..n {
            line.clear();
            for s in &series[i..j] {
                let p = s.samples[k];
                let _ = writeln!(
                    line,
                    "{} {} {}.{:03}",
                    s.id,
                    om_value(p.v),
                    p.t.div_euclid(1000),
                    p.t.rem_euclid(1000)
                );
            }
            out.write_all(line.as_bytes())?;
        }
        i = j;
    }
    writeln!(out, "# EOF")?;
    out.flush()
}
