//! `tidemark query`: evaluates PromQL against a data directory (read-only, safe beside a running
//! agent) or a running agent's HTTP API, and prints the result as a table or as Prometheus's
//! `data` JSON. Also holds what `series` shares with it: where to read, the output format and
//! the HTTP client.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};

use crate::model::{Labels, format_rfc3339, parse_duration, parse_time};
use crate::query::{Engine, EngineOptions, FPoint, QueryError, Sample, Series, Value};
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
            let out = match kind {
                Kind::Instant { time } => engine.instant_blocking(&querier, &a.expr, time),
                Kind::Range { start, end, step } => {
                    engine.range_blocking(&querier, &a.expr, start, end, step)
                }
            }
            .map_err(|e| query_error(e, &a.expr))?;
            let value = match kind {
                Kind::Instant { time } => at_eval_time(out.value, time),
                Kind::Range { .. } => out.value,
            };
            print_annotations(
                out.annotations.warnings.iter().map(String::as_str),
                out.annotations.infos.iter().map(String::as_str),
            );
            match format {
                Format::Table => emit(&table(&value)),
                Format::Json => emit(&(json_value(&value) + "\n")),
            }
        }
        Target::Url(url) => {
            let remote = Remote::new(&url, timeout)?;
            let mut params: Vec<(&str, String)> = vec![("query", a.expr.clone())];
            let path = match kind {
                Kind::Instant { time } => {
                    params.push(("time", seconds(time)));
                    "/api/v1/query"
                }
                Kind::Range { start, end, step } => {
                    params.push(("start", seconds(start)));
                    params.push(("end", seconds(end)));
                    params.push(("step", seconds(step)));
                    "/api/v1/query_range"
                }
            };
            if let Some(t) = &a.timeout {
                params.push(("timeout", t.clone()));
            }
            let data = remote.post(path, &params)?;
            match format {
                // Written by the same code as a local answer, so the two compare byte for
                // byte; what this build cannot read (native histograms) passes through as is.
                Format::Json => match value_from_json(&data) {
                    Ok(v) => emit(&(json_value(&v) + "\n")),
                    Err(_) => emit(&(data.to_string() + "\n")),
                },
                Format::Table => {
                    let value = value_from_json(&data)
                        .with_context(|| format!("unexpected answer from {url}{path}"))?;
                    emit(&table(&value))
                }
            }
        }
    }
}

/// An instant query's answer is stamped with the evaluation time, as Prometheus's API does;
/// only a range vector's points keep their own timestamps.
fn at_eval_time(v: Value, time: i64) -> Value {
    match v {
        Value::Scalar(p) => Value::Scalar(FPoint { t: time, f: p.f }),
        Value::String { s, .. } => Value::String { t: time, s },
        Value::Vector(mut v) => {
            for s in &mut v {
                s.t = time;
            }
            Value::Vector(v)
        }
        m @ Value::Matrix(_) => m,
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

fn print_annotations<'a>(
    warnings: impl Iterator<Item = &'a str>,
    infos: impl Iterator<Item = &'a str>,
) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
    for i in infos {
        eprintln!("info: {i}");
    }
}

/// Writes to stdout; a reader that stops early (`| head`) is not an error of ours.
pub(super) fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Milliseconds as the seconds the API takes and gives: `1435781451.781`, `-1.5` → `-1.500`,
/// integers without a fraction, as Prometheus writes them.
pub(super) fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    if a.is_multiple_of(1000) {
        format!("{sign}{}", a / 1000)
    } else {
        format!("{sign}{}.{:03}", a / 1000, a % 1000)
    }
}

/// A float as Prometheus writes sample values: the shortest digits that read back exactly,
/// positional, but with an exponent (Go's `2.5e-07`, `1e+21`) below 1e-6 and from 1e21 on.
fn value_text(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        // Rust writes `2.5e-7`; Go signs the exponent and gives it at least two digits.
        let e = format!("{f:e}");
        if let Some((mantissa, exp)) = e.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            return format!("{mantissa}e{sign}{digits:0>2}");
        }
        return e;
    }
    // Positional: Rust's Display and Go's FormatFloat(f, 'f', -1, 64) give the same digits.
    format!("{f}")
}

/// The result as text: instant vectors one `labels value` line per series, matrices the labels
/// then indented `time value` rows, scalars and strings plainly.
fn table(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Scalar(p) => out.push_str(&value_text(p.f)),
        Value::String { s, .. } => out.push_str(s),
        Value::Vector(samples) => {
            let labels: Vec<String> = samples.iter().map(|s| s.metric.to_string()).collect();
            let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
            for (l, s) in labels.iter().zip(samples) {
                let pad = width - l.chars().count();
                let _ = writeln!(out, "{l}{:pad$}  {}", "", value_text(s.f));
            }
            return out;
        }
        Value::Matrix(series) => {
            for s in series {
                let _ = writeln!(out, "{}", s.metric);
                for p in &s.floats {
                    let _ = writeln!(out, "  {}  {}", format_rfc3339(p.t), value_text(p.f));
                }
            }
            return out;
        }
    }
    out.push('\n');
    out
}

fn json_string(s: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

fn json_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, (n, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}:{}", json_string(n), json_string(v));
    }
    out.push('}');
}

fn json_point(out: &mut String, t: i64, f: f64) {
    let _ = write!(out, "[{},\"{}\"]", seconds(t), value_text(f));
}

/// Prometheus's `data` object: `{"resultType":…,"result":…}`, byte for byte as its API writes
/// it (timestamps in seconds with millisecond decimals, values as strings).
fn json_value(v: &Value) -> String {
    let mut out = format!("{{\"resultType\":\"{}\",\"result\":", v.type_name());
    match v {
        Value::Scalar(p) => json_point(&mut out, p.t, p.f),
        Value::String { t, s } => {
            let _ = write!(out, "[{},{}]", seconds(*t), json_string(s));
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                json_labels(&mut out, &s.metric);
                out.push_str(",\"value\":");
                json_point(&mut out, s.t, s.f);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                json_labels(&mut out, &s.metric);
                out.push_str(",\"values\":[");
                for (j, p) in s.floats.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    json_point(&mut out, p.t, p.f);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    out
}

/// A label set from the API's `{"name":"value",…}`, taken as the server wrote it (names are
/// not re-validated: a newer server may allow what this build's rules do not).
pub(super) fn labels_from_json(v: &serde_json::Value) -> anyhow::Result<Labels> {
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("labels are not an object"))?;
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(obj.len());
    for (n, v) in obj {
        let v = v
            .as_str()
            .ok_or_else(|| anyhow!("label {n:?} is not a string"))?;
        if !v.is_empty() {
            pairs.push((n.clone(), v.to_string()));
        }
    }
    // Object keys are unique, so sorting leaves the invariant `from_sorted_unchecked` wants.
    pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Labels::from_sorted_unchecked(pairs))
}

fn point_from_json(v: &serde_json::Value) -> anyhow::Result<(i64, &serde_json::Value)> {
    let [t, x] = v
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| anyhow!("a point is not an array"))?
    else {
        bail!("a point is not a [time, value] pair");
    };
    let t = t
        .as_f64()
        .ok_or_else(|| anyhow!("a point's time is not a number"))?;
    Ok(((t * 1000.0).round() as i64, x))
}

fn float_point(v: &serde_json::Value) -> anyhow::Result<FPoint> {
    let (t, x) = point_from_json(v)?;
    let s = x
        .as_str()
        .ok_or_else(|| anyhow!("a value is not a string"))?;
    let f = s
        .parse::<f64>()
        .map_err(|_| anyhow!("value {s:?} is not a number"))?;
    Ok(FPoint { t, f })
}

/// Reads the API's `data` object back into a [`Value`], so remote answers print like local ones.
fn value_from_json(data: &serde_json::Value) -> anyhow::Result<Value> {
    let kind = data["resultType"]
        .as_str()
        .ok_or_else(|| anyhow!("no resultType"))?;
    let result = &data["result"];
    let list = || {
        result
            .as_array()
            .ok_or_else(|| anyhow!("result is not an array"))
    };
    Ok(match kind {
        "scalar" => Value::Scalar(float_point(result)?),
        "string" => {
            let (t, s) = point_from_json(result)?;
            let s = s
                .as_str()
                .ok_or_else(|| anyhow!("string is not a string"))?;
            Value::String {
                t,
                s: s.to_string(),
            }
        }
        "vector" => {
            let mut v = Vec::new();
            for e in list()? {
                let p = float_point(&e["value"]).context("native histograms are not shown")?;
                v.push(Sample {
                    metric: Arc::new(labels_from_json(&e["metric"])?),
                    t: p.t,
                    f: p.f,
                    drop_name: false,
                });
            }
            Value::Vector(v)
        }
        "matrix" => {
            let mut m = Vec::new();
            for e in list()? {
                let values = e["values"].as_array().map_or(&[][..], Vec::as_slice);
                m.push(Series {
                    metric: Arc::new(labels_from_json(&e["metric"])?),
                    floats: values.iter().map(float_point).collect::<Result<_, _>>()?,
                    drop_name: false,
                });
            }
            Value::Matrix(m)
        }
        other => bail!("unknown resultType {other:?}"),
    })
}

/// A client of Prometheus's HTTP API.
pub(super) struct Remote {
    base: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// A client for `url`; `timeout` bounds each request (plus a margin, so the server's own
    /// timeout error arrives first).
    pub(super) fn new(url: &str, timeout: Option<Duration>) -> anyhow::Result<Remote> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--url {url:?}: want an http:// or https:// URL");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            // A system certificate rustls cannot use is no reason to fail a query.
            let _ = roots.add(cert);
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .tls_backend_preconfigured(tls);
        if let Some(t) = timeout {
            builder = builder.timeout(t + Duration::from_secs(5));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP client's runtime")?;
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            client: builder.build().context("building the HTTP client")?,
            runtime,
        })
    }

    /// POSTs `params` as a form to `path` and returns the answer's `data`; an error answer
    /// becomes an error carrying the server's own text. Warnings and infos go to stderr.
    pub(super) fn post(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (status, text) = self
            .runtime
            .block_on(async {
                let resp = self
                    .client
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                Ok::<_, reqwest::Error>((status, resp.text().await?))
            })
            .with_context(|| format!("POST {url}"))?;
        let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let Some(mut answer) = parsed.filter(serde_json::Value::is_object) else {
            let shown: String = text.trim().chars().take(500).collect();
            if shown.is_empty() {
                bail!("{url} answered {status}");
            }
            bail!("{url} answered {status}: {shown}");
        };
        if answer["status"] != "success" {
            let kind = answer["errorType"].as_str().unwrap_or("error");
            let msg = answer["error"].as_str().unwrap_or("(no error text)");
            bail!("{url} answered {status}: {kind}: {msg}");
        }
        let strings = |k: &str| -> Vec<String> {
            answer[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (warnings, infos) = (strings("warnings"), strings("infos"));
        print_annotations(
            warnings.iter().map(String::as_str),
            infos.iter().map(String::as_str),
        );
        Ok(answer
            .as_object_mut()
            .and_then(|o| o.remove("data"))
            .unwrap_or_default())
    }
}

/// Label sets as the API lists them, for `series --format json`.
pub(super) fn json_label_list(all: &[Labels]) -> String {
    let mut out = String::from("[");
    for (i, l) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_labels(&mut out, l);
    }
    out.push_str("]\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
    fn seconds_and_values_as_prometheus_writes_them() {
        assert_eq!(seconds(1_435_781_451_781), "1435781451.781");
        assert_eq!(seconds(1_435_781_451_000), "1435781451");
        assert_eq!(seconds(1_050), "1.050");
        assert_eq!(seconds(-1_500), "-1.500");
        assert_eq!(seconds(7), "0.007");
        assert_eq!(value_text(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(value_text(1e21), "1e+21");
        assert_eq!(value_text(9.99e20), "999000000000000000000");
        assert_eq!(value_text(-2.5e-7), "-2.5e-07");
        assert_eq!(value_text(1e-6), "0.000001");
        assert_eq!(
            value_text(1.7976931348623157e308),
            "1.7976931348623157e+308"
        );
        assert_eq!(value_text(5e-324), "5e-324");
        assert_eq!(value_text(-0.0), "-0");
        assert_eq!(value_text(0.0), "0");
        assert_eq!(value_text(f64::NAN), "NaN");
        assert_eq!(value_text(f64::INFINITY), "+Inf");
        assert_eq!(value_text(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn json_is_prometheus_data_and_reads_back() {
        let v = Value::Vector(vec![
            Sample {
                metric: metric(&[("__name__", "up"), ("job", "a\"b"), ("Z", "é")]),
                t: 1_700_000_000_123,
                f: 1.0,
                drop_name: false,
            },
            Sample {
                metric: metric(&[("job", "c")]),
                t: 1_700_000_000_000,
                f: f64::NEG_INFINITY,
                drop_name: false,
            },
        ]);
        let text = json_value(&v);
        assert_eq!(
            text,
            r#"{"resultType":"vector","result":[{"metric":{"Z":"é","__name__":"up","job":"a\"b"},"value":[1700000000.123,"1"]},{"metric":{"job":"c"},"value":[1700000000,"-Inf"]}]}"#
        );
        let back = value_from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(table(&back), table(&v));
        let Value::Vector(b) = back else { panic!() };
        assert_eq!(b[0].metric.get("job"), Some("a\"b"));
        assert_eq!(b[1].f, f64::NEG_INFINITY);

        let m = Value::Matrix(vec![Series {
            metric: metric(&[("__name__", "x"), ("i", "1")]),
            floats: vec![
                FPoint {
                    t: 1_700_000_000_007,
                    f: 0.25,
                },
                FPoint {
                    t: 1_700_000_060_000,
                    f: f64::NAN,
                },
            ],
            drop_name: false,
        }]);
        let text = json_value(&m);
        assert_eq!(
            text,
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"x","i":"1"},"values":[[1700000000.007,"0.25"],[1700000060,"NaN"]]}]}"#
        );
        let back = value_from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(table(&back), table(&m));

        let s = Value::Scalar(FPoint { t: 4_000, f: 2.0 });
        assert_eq!(
            json_value(&s),
            r#"{"resultType":"scalar","result":[4,"2"]}"#
        );
        let st = Value::String {
            t: 4_500,
            s: "a\nb".into(),
        };
        assert_eq!(
            json_value(&st),
            r#"{"resultType":"string","result":[4.500,"a\nb"]}"#
        );
        let back = value_from_json(&serde_json::from_str(&json_value(&st)).unwrap()).unwrap();
        assert!(matches!(back, Value::String { t: 4_500, ref s } if s == "a\nb"));
    }

    #[test]
    fn tables_align_values_and_list_points() {
        let v = Value::Vector(vec![
            Sample {
                metric: metric(&[("__name__", "up"), ("instance", "host-17:9100")]),
                t: 0,
                f: 1.0,
                drop_name: false,
            },
            Sample {
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
        assert_eq!(table(&Value::Vector(Vec::new())), "");
    }

    #[test]
    fn instant_answers_carry_the_evaluation_time() {
        let v = Value::Vector(vec![Sample {
            metric: metric(&[("__name__", "up")]),
            t: 1_699_999_990_123,
            f: 1.0,
            drop_name: false,
        }]);
        let Value::Vector(v) = at_eval_time(v, 1_700_000_000_000) else {
            panic!()
        };
        assert_eq!(v[0].t, 1_700_000_000_000);
        let m = Value::Matrix(vec![Series {
            metric: metric(&[("__name__", "up")]),
            floats: vec![FPoint { t: 5, f: 1.0 }],
            drop_name: false,
        }]);
        let Value::Matrix(m) = at_eval_time(m, 9) else {
            panic!()
        };
        assert_eq!(m[0].floats[0].t, 5);
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for bad in [
            r#"{}"#,
            r#"{"resultType":"vector","result":{}}"#,
            r#"{"resultType":"vector","result":[{"metric":{},"value":[1]}]}"#,
            r#"{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"1"]}]}"#,
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}"#,
            r#"{"resultType":"scalar","result":["1","1"]}"#,
            r#"{"resultType":"histogram","result":[]}"#,
        ] {
            let v: serde_json::Value = serde_json::from_str(bad).unwrap();
            assert!(value_from_json(&v).is_err(), "{bad}");
        }
    }
}
