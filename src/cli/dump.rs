//! `tidemark dump`: stored samples as OpenMetrics text, re-importable by `tidemark import` and
//! `promtool tsdb create-blocks-from openmetrics`. Native histogram samples are written as
//! `name{labels} {{...}} timestamp` lines in an exact form of Prometheus's test notation
//! ([`format_histogram`]), which `tidemark import` reads back (promtool does not).

use std::io::{BufWriter, Write};

use anyhow::Context;

use super::{DataDir, parse_selector};
use crate::model::histogram::CounterResetHint;
use crate::model::{
    HistogramValue, Labels, METRIC_NAME, MatchOp, Matcher, is_stale_nan, parse_time,
};
use crate::storage::{ReadOnlyDb, SeriesSamples};

#[derive(clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    dir: DataDir,
    /// Series selector, e.g. `up{job="node"}` (repeatable; series matching any are dumped).
    #[arg(long = "match")]
    matchers: Vec<String>,
    /// Start time (RFC 3339 or Unix seconds); default: the oldest sample.
    #[arg(long)]
    start: Option<String>,
    /// End time (RFC 3339 or Unix seconds), inclusive; default: the newest sample.
    #[arg(long)]
    end: Option<String>,
}

/// Writes a float as OpenMetrics reads it back bit for bit: the shortest round-trip form.
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Milliseconds as OpenMetrics seconds with exactly three decimals.
pub(crate) fn format_timestamp(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let a = ms.unsigned_abs();
    format!("{sign}{}.{:03}", a / 1000, a % 1000)
}

/// Writes a histogram in the text form `dump` writes and `import` reads: Prometheus's test
/// scripts' `{{...}}` notation, made exact. Keys: `schema`, `sum`, `count`, `z_bucket` (zero
/// count), `z_bucket_w` (zero threshold), `buckets` and `n_buckets` (absolute counts, as the
/// test notation has them), `spans` and `n_spans` (`offset:length` each, as stored, where the
/// test notation has one `offset`), `counter_reset_hint` (`unknown`, `reset`, `not_reset`,
/// `gauge`), `custom_values`, and `int` for an integer histogram (whose counts are then
/// integers and whose stored deltas are the differences of consecutive counts).
pub(crate) fn format_histogram(h: &HistogramValue) -> String {
    use std::fmt::Write as _;
    let f = h.to_float();
    let mut s = String::from("{{");
    if matches!(h, HistogramValue::Int(_)) {
        s.push_str("int ");
    }
    let _ = write!(s, "schema:{}", f.schema);
    let _ = write!(s, " sum:{}", format_value(f.sum));
    match h {
        HistogramValue::Int(i) => {
            let _ = write!(s, " count:{} z_bucket:{}", i.count, i.zero_count);
        }
        HistogramValue::Float(_) => {
            let _ = write!(
                s,
                " count:{} z_bucket:{}",
                format_value(f.count),
                format_value(f.zero_count)
            );
        }
    }
    let _ = write!(s, " z_bucket_w:{}", format_value(f.zero_threshold));
    let list = |s: &mut String, key: &str, items: Vec<String>| {
        if !items.is_empty() {
            let _ = write!(s, " {key}:[{}]", items.join(" "));
        }
    };
    let counts = |deltas: &[i64], floats: &[f64]| -> Vec<String> {
        match h {
            HistogramValue::Int(_) => {
                let mut abs = 0i64;
                deltas
                    .iter()
                    .map(|d| {
                        abs = abs.wrapping_add(*d);
                        abs.to_string()
                    })
                    .collect()
            }
            HistogramValue::Float(_) => floats.iter().map(|v| format_value(*v)).collect(),
        }
    };
    let (pd, nd): (&[i64], &[i64]) = match h {
        HistogramValue::Int(i) => (&i.positive_buckets, &i.negative_buckets),
        HistogramValue::Float(_) => (&[], &[]),
    };
    list(&mut s, "buckets", counts(pd, &f.positive_buckets));
    list(
        &mut s,
        "spans",
        f.positive_spans.iter().map(|x| x.to_string()).collect(),
    );
    list(&mut s, "n_buckets", counts(nd, &f.negative_buckets));
    list(
        &mut s,
        "n_spans",
        f.negative_spans.iter().map(|x| x.to_string()).collect(),
    );
    let hint = match f.counter_reset_hint {
        CounterResetHint::Unknown => None,
        CounterResetHint::Reset => Some("reset"),
        CounterResetHint::NotReset => Some("not_reset"),
        CounterResetHint::Gauge => Some("gauge"),
    };
    if let Some(hint) = hint {
        let _ = write!(s, " counter_reset_hint:{hint}");
    }
    list(
        &mut s,
        "custom_values",
        f.custom_values.iter().map(|v| format_value(*v)).collect(),
    );
    s.push_str("}}");
    s
}

fn write_series_line(out: &mut impl Write, labels: &Labels) -> std::io::Result<()> {
    out.write_all(labels.metric_name().unwrap_or("").as_bytes())?;
    let mut first = true;
    for (n, v) in labels.iter().filter(|(n, _)| *n != METRIC_NAME) {
        out.write_all(if first { b"{" } else { b"," })?;
        first = false;
        write!(out, "{n}=\"")?;
        for c in v.chars() {
            match c {
                '\\' => out.write_all(b"\\\\")?,
                '"' => out.write_all(b"\\\"")?,
                '\n' => out.write_all(b"\\n")?,
                c => write!(out, "{c}")?,
            }
        }
        out.write_all(b"\"")?;
    }
    if !first {
        out.write_all(b"}")?;
    }
    Ok(())
}

/// Writes series as OpenMetrics, grouped by metric name (one family each, type unknown), a
/// series' histogram samples after its floats. Staleness markers (float or histogram) are
/// left out: the text formats cannot tell them from a NaN.
pub(crate) fn write_openmetrics(
    out: &mut impl Write,
    mut series: Vec<SeriesSamples>,
) -> std::io::Result<u64> {
    series.sort_by(|a, b| {
        (a.labels.metric_name(), &a.labels).cmp(&(b.labels.metric_name(), &b.labels))
    });
    let mut family: Option<String> = None;
    let mut n = 0;
    for s in &series {
        let name = s.labels.metric_name().unwrap_or("");
        if family.as_deref() != Some(name) {
            writeln!(out, "# TYPE {name} unknown")?;
            family = Some(name.to_string());
        }
        for x in s.samples.iter().filter(|x| !is_stale_nan(x.v)) {
            write_series_line(out, &s.labels)?;
            writeln!(out, " {} {}", format_value(x.v), format_timestamp(x.t))?;
            n += 1;
        }
        for x in s.histograms.iter().filter(|x| !x.h.is_stale_marker()) {
            write_series_line(out, &s.labels)?;
            writeln!(out, " {} {}", format_histogram(&x.h), format_timestamp(x.t))?;
            n += 1;
        }
    }
    out.write_all(b"# EOF\n")?;
    Ok(n)
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    let start = a
        .start
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(i64::MIN);
    let end = a
        .end
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(i64::MAX);
    let selectors: Vec<Vec<Matcher>> = if a.matchers.is_empty() {
        vec![vec![Matcher::new(MatchOp::Regex, METRIC_NAME, ".+")?]]
    } else {
        a.matchers
            .iter()
            .map(|m| parse_selector(m))
            .collect::<anyhow::Result<_>>()?
    };
    let db = ReadOnlyDb::open(&a.dir.data_dir)
        .with_context(|| format!("opening {}", a.dir.data_dir.display()))?;
    for r in db.refused_blocks() {
        eprintln!(
            "warning: corrupt block {} left out: {}",
            r.path.display(),
            r.reason
        );
    }
    let q = db.querier();
    let mut all: Vec<SeriesSamples> = Vec::new();
    for m in &selectors {
        all.extend(q.select(m, start, end)?);
    }
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    all.dedup_by(|a, b| a.labels == b.labels);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match write_openmetrics(&mut out, all).and_then(|_| out.flush()) {
        // A reader that stops early (`| head`) is not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r.map(drop)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_timestamps_round_trip_through_text() {
        for v in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-300,
            5e-324,
            1.7976931348623157e308,
            123456.789,
            -3e20,
        ] {
            let s = format_value(v);
            assert_eq!(
                s.parse::<f64>().unwrap().to_bits(),
                v.to_bits(),
                "{v} -> {s}"
            );
        }
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_timestamp(1_700_000_000_123), "1700000000.123");
        assert_eq!(format_timestamp(-1500), "-1.500");
        assert_eq!(format_timestamp(7), "0.007");
    }
}
