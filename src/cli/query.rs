//! `tidemark query`: evaluates PromQL against a data directory (read-only, safe beside a running
//! agent) or a running agent's HTTP API, and prints the result as a table or as Prometheus's
//! `data` JSON. Also holds what `series` shares with it: where to read and the output format.
//!
//! This file is argument handling and the table. The JSON is the API's own writer
//! (`api::json`), a remote answer is read back and written again by it, and the HTTP client is
//! `http_client`'s (through [`super::remote`]): the same query gives the same bytes from a data
//! directory, from `--url`, and from `/api/v1/query(_range)` itself.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use super::remote::Remote;
use crate::api::json;
use crate::model::{format_rfc3339, parse_duration, parse_time};
use crate::query::{Engine, EngineOptions, QueryError, Value};
use crate::storage::ReadOnlyDb;

#[derive(clap::Args)]
pub(super) struct Args {
    /// PromQL expression.
    expr: String,
    #[command(flatten)]
    source: Source,
    /// Evaluation time of an instant query (RFC 3339 or Unix seconds); default: now.
    #[arg(long, conflicts_with_all = ["start", "end", "step"])]
    time: Option<String>,
    /// Start of a range query (RFC 3339 or Unix seconds); any of --start/--end/--step makes
    /// the query a range query, and --start is then required.
    #[arg(long)]
    start: Option<String>,
    /// End of a range query, inclusive; default: now.
    #[arg(long)]
    end: Option<String>,
    /// Resolution of a range query (Prometheus duration, e.g. 15s, 1m); default: the range
    /// divided by 250, at least 1s.
    #[arg(long)]
    step: Option<String>,
    #[command(flatten)]
    output: Output,
    /// Query timeout (Prometheus duration); default: the engine's 2m.
    #[arg(long)]
    timeout: Option<String>,
}

/// Where the data comes from: a data directory, or an agent's HTTP API.
#[derive(clap::Args)]
pub(super) struct Source {
    /// Data directory, read without locking it (default ./data unless --url is given).
    #[arg(long, conflicts_with = "url")]
    data_dir: Option<PathBuf>,
    /// Base URL of a running agent or Prometheus server, e.g. http://127.0.0.1:9595.
    #[arg(long)]
    url: Option<String>,
}

/// How results are printed.
#[derive(clap::Args)]
pub(super) struct Output {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    Table,
    Json,
}

impl Output {
    pub(super) fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

/// A resolved [`Source`].
pub(super) enum Target {
    Dir(PathBuf),
    Url(String),
}

impl Source {
    pub(super) fn target(&self) -> Target {
        match (&self.url, &self.data_dir) {
            (Some(u), _) => Target::Url(u.clone()),
            (None, Some(d)) => Target::Dir(d.clone()),
            (None, None) => Target::Dir(PathBuf::from("./data")),
        }
    }
}

/// Opens a data directory read-only, telling stderr about blocks it had to leave out.
pub(super) fn open_dir(dir: &std::path::Path) -> anyhow::Result<ReadOnlyDb> {
    let db = ReadOnlyDb::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    for r in db.refused_blocks() {
        eprintln!(
            "warning: corrupt block {} left out: {}",
            r.path.display(),
            r.reason
        );
    }
    Ok(db)
}

/// What the user asked for, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Instant { time: i64 },
    Range { start: i64, end: i64, step: i64 },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn parse_time_flag(flag: &str, s: &str) -> anyhow::Result<i64> {
    parse_time(s).with_context(|| format!("--{flag}"))
}

impl Args {
    fn kind(&self, now: i64) -> anyhow::Result<Kind> {
        if self.start.is_none() && self.end.is_none() && self.step.is_none() {
            let time = match &self.time {
                Some(t) => parse_time_flag("time", t)?,
                None => now,
            };
            return Ok(Kind::Instant { time });
        }
        let Some(start) = &self.start else {
            bail!("a range query needs --start");
        };
        let start = parse_time_flag("start", start)?;
        let end = match &self.end {
            Some(e) => parse_time_flag("end", e)?,
            None => now,
        };
        if end < start {
            bail!("--end must not be before --start");
        }
        let step = match &self.step {
            Some(s) => parse_duration(s).with_context(|| "--step")?,
            // promtool's choice: about 250 points, whole seconds.
            None => ((end - start) / 250 / 1000).max(1) * 1000,
        };
        if step <= 0 {
            bail!("--step must be positive");
        }
        Ok(Kind::Range { start, end, step })
    }

    fn timeout(&self) -> anyhow::Result<Option<Duration>> {
        let Some(t) = &self.timeout else {
            return Ok(None);
        };
        let ms = parse_duration(t).with_context(|| "--timeout")?;
        if ms <= 0 {
            bail!("--timeout must be positive");
        }
        Ok(Some(Duration::from_millis(ms as u64)))
    }
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    let kind = a.kind(now_ms())?;
    let timeout = a.timeout()?;
    let format = a.output.format();
    match a.source.target() {
        Target::Dir(dir) => {
            let db = open_dir(&dir)?;
            let mut opts = EngineOptions::default();
            if let Some(t) = timeout {
                opts.timeout = t;
            }
            if let Kind::Range { start, end, step } = kind {
                check_resolution(start, end, step, opts.max_points_per_series)?;
            }
            let engine = Engine::new(opts);
            let querier = db.querier();
            let (out, eval_time) = match kind {
                Kind::Instant { time } => {
                    (engine.instant_blocking(&querier, &a.expr, time), Some(time))
                }
                Kind::Range { start, end, step } => (
                    engine.range_blocking(&querier, &a.expr, start, end, step),
                    None,
                ),
            };
            let out = out.map_err(|e| query_error(e, &a.expr))?;
            print_annotations(&out.annotations.warnings, &out.annotations.infos);
            match format {
                Format::Table => emit(table(&out.value)),
                Format::Json => emit(json_data(&out.value, eval_time)),
            }
        }
        Target::Url(url) => {
            let remote = Remote::new(&url, timeout)?;
            let mut params: Vec<(&str, String)> = vec![("query", a.expr.clone())];
            let path = match kind {
                Kind::Instant { time } => {
                    params.push(("time", json::format_ts(time)));
                    "/api/v1/query"
                }
                Kind::Range { start, end, step } => {
                    params.push(("start", json::format_ts(start)));
                    params.push(("end", json::format_ts(end)));
                    params.push(("step", json::format_ts(step)));
                    "/api/v1/query_range"
                }
            };
            if let Some(t) = &a.timeout {
                params.push(("timeout", t.clone()));
            }
            let answer = remote.post(path, &params)?;
            print_annotations(&answer.warnings, &answer.infos);
            let value = json::read_query_data(&answer.data);
            match format {
                // Read back and written by the API's writer, as a local answer is, so the two
                // compare byte for byte (the server stamped an instant answer already); what
                // a `Value` cannot hold (native histograms) passes through, re-serialized.
                Format::Json => match value {
                    Ok(v) => emit(json_data(&v, None)),
                    Err(_) => {
                        let mut out = json::to_vec(&answer.data);
                        out.push(b'\n');
                        emit(out)
                    }
                },
                Format::Table => {
                    let value =
                        value.with_context(|| format!("unexpected answer from {url}{path}"))?;
                    emit(table(&value))
                }
            }
        }
    }
}

/// Prometheus's limit on a range query's points per series, checked before any data is read.
fn check_resolution(start: i64, end: i64, step: i64, max: usize) -> anyhow::Result<()> {
    if (end - start) / step >= max as i64 {
        bail!(
            "exceeded maximum resolution of {max} points per timeseries. Try decreasing the query resolution (--step)"
        );
    }
    Ok(())
}

/// A parse error reads as the parser wrote it; anything else names the expression.
fn query_error(e: QueryError, expr: &str) -> anyhow::Error {
    match e {
        QueryError::Parse(_) => anyhow::Error::new(e).context("invalid expression"),
        e => anyhow::Error::new(e).context(format!("evaluating {expr:?}")),
    }
}

/// An answer's warnings and infos, on stderr.
pub(super) fn print_annotations<'a>(
    warnings: impl IntoIterator<Item = &'a String>,
    infos: impl IntoIterator<Item = &'a String>,
) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
    for i in infos {
        eprintln!("info: {i}");
    }
}

/// Writes to stdout; a reader that stops early (`| head`) is not an error of ours.
pub(super) fn emit(text: impl AsRef<[u8]>) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_ref()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// The result as text: instant vectors one `labels value` line per series, matrices the labels
/// then indented `time value` rows, scalars and strings plainly. Values are written as the
/// API's JSON writes sample values.
fn table(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Scalar(p) => out.push_str(&json::format_sample(p.f)),
        Value::String { s, .. } => out.push_str(s),
        Value::Vector(samples) => {
            let labels: Vec<String> = samples.iter().map(|s| s.metric.to_string()).collect();
            let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
            for (l, s) in labels.iter().zip(samples) {
                let pad = width - l.chars().count();
                let value = match &s.h {
                    Some(h) => json::format_histogram(h),
                    None => json::format_sample(s.f),
                };
                let _ = writeln!(out, "{l}{:pad$}  {value}", "");
            }
            return out;
        }
        Value::Matrix(series) => {
            for s in series {
                let _ = writeln!(out, "{}", s.metric);
                let mut rows: Vec<(i64, String)> = s
                    .floats
                    .iter()
                    .map(|p| (p.t, json::format_sample(p.f)))
                    .chain(
                        s.histograms
                            .iter()
                            .map(|p| (p.t, json::format_histogram(&p.h))),
                    )
                    .collect();
                rows.sort_by_key(|r| r.0);
                for (t, v) in rows {
                    let _ = writeln!(out, "  {}  {v}", format_rfc3339(t));
                }
            }
            return out;
        }
    }
    out.push('\n');
    out
}

/// Prometheus's `data` object, `{"resultType":…,"result":…}`, and a newline: written by the
/// API's own writer, so a local answer is byte for byte what the API gives. `eval_time` is an
/// instant query's time, which the answer is stamped with.
fn json_data(v: &Value, eval_time: Option<i64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    json::write_query_data(&mut out, v, eval_time);
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::query::{FPoint, Sample, Series};
    use clap::Parser;
    use std::sync::Arc;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: Args,
    }

    fn args(argv: &[&str]) -> Args {
        let mut v = vec!["query"];
        v.extend_from_slice(argv);
        Cli::try_parse_from(v).unwrap().a
    }

    fn metric(pairs: &[(&str, &str)]) -> Arc<Labels> {
        Arc::new(Labels::new(pairs.iter().copied()).unwrap())
    }

    #[test]
    fn instant_unless_a_range_flag_is_given() {
        let now = 1_700_000_123_456;
        assert_eq!(
            args(&["up"]).kind(now).unwrap(),
            Kind::Instant { time: now }
        );
        assert_eq!(
            args(&["up", "--time", "2023-11-14T22:13:20.5Z"])
                .kind(now)
                .unwrap(),
            Kind::Instant {
                time: 1_700_000_000_500
            }
        );
        assert_eq!(
            args(&[
                "up",
                "--start",
                "1700000000",
                "--end",
                "1700003600.25",
                "--step",
                "1m"
            ])
            .kind(now)
            .unwrap(),
            Kind::Range {
                start: 1_700_000_000_000,
                end: 1_700_003_600_250,
                step: 60_000
            }
        );
        // Without --end the range ends now; without --step it has about 250 points.
        assert_eq!(
            args(&["up", "--start", "1700000000"]).kind(now).unwrap(),
            Kind::Range {
                start: 1_700_000_000_000,
                end: now,
                step: 1000
            }
        );
        assert_eq!(
            args(&["up", "--start", "1699990000", "--end", "1700000000"])
                .kind(now)
                .unwrap(),
            Kind::Range {
                start: 1_699_990_000_000,
                end: 1_700_000_000_000,
                step: 40_000
            }
        );
    }

    #[test]
    fn bad_flags_are_refused() {
        let now = 1_700_000_000_000;
        assert!(args(&["up", "--end", "1700000000"]).kind(now).is_err());
        assert!(
            args(&["up", "--start", "1700000001", "--end", "1700000000"])
                .kind(now)
                .is_err()
        );
        assert!(
            args(&["up", "--start", "1", "--step", "0"])
                .kind(now)
                .is_err()
        );
        assert!(
            args(&["up", "--start", "1", "--step", "10"])
                .kind(now)
                .is_err()
        );
        assert!(args(&["up", "--time", "yesterday"]).kind(now).is_err());
        assert!(args(&["up", "--timeout", "0s"]).timeout().is_err());
        assert_eq!(
            args(&["up", "--timeout", "1m30s"]).timeout().unwrap(),
            Some(Duration::from_secs(90))
        );
        let mut v = vec!["query", "up", "--time", "1", "--start", "1"];
        assert!(Cli::try_parse_from(&v).is_err());
        v = vec!["query", "up", "--url", "http://x", "--data-dir", "d"];
        assert!(Cli::try_parse_from(&v).is_err());
        v = vec!["query", "up", "--json", "--format", "table"];
        assert!(Cli::try_parse_from(&v).is_err());
        assert!(check_resolution(0, 11_000_000, 1000, 11_000).is_err());
        assert!(check_resolution(0, 10_999_999, 1000, 11_000).is_ok());
    }

    #[test]
    fn tables_align_values_and_list_points() {
        let v = Value::Vector(vec![
            Sample {
                h: None,
                metric: metric(&[("__name__", "up"), ("instance", "host-17:9100")]),
                t: 0,
                f: 1.0,
                drop_name: false,
            },
            Sample {
                h: None,
                metric: metric(&[("job", "é")]),
                t: 0,
                f: 0.5,
                drop_name: false,
            },
        ]);
        assert_eq!(
            table(&v),
            "up{instance=\"host-17:9100\"}  1\n{job=\"é\"}                    0.5\n"
        );
        let m = Value::Matrix(vec![Series {
            histograms: Vec::new(),
            metric: metric(&[("__name__", "x")]),
            floats: vec![
                FPoint { t: 1_500, f: 3.0 },
                FPoint {
                    t: 86_401_000,
                    f: -0.125,
                },
            ],
            drop_name: false,
        }]);
        assert_eq!(
            table(&m),
            "x\n  1970-01-01T00:00:01.500Z  3\n  1970-01-02T00:00:01.000Z  -0.125\n"
        );
        assert_eq!(table(&Value::Scalar(FPoint { t: 0, f: 1e-3 })), "0.001\n");
        // Values as the API writes sample values: exponents below 1e-6 and from 1e21 on.
        assert_eq!(
            table(&Value::Scalar(FPoint { t: 0, f: -2.5e-7 })),
            "-2.5e-07\n"
        );
        assert_eq!(table(&Value::Scalar(FPoint { t: 0, f: 1e21 })), "1e+21\n");
        assert_eq!(table(&Value::Scalar(FPoint { t: 0, f: f64::NAN })), "NaN\n");
        assert_eq!(table(&Value::Vector(Vec::new())), "");
        assert_eq!(table(&Value::Matrix(Vec::new())), "");
    }
}
