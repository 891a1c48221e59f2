//! `tidemark import`: backfill OpenMetrics text with timestamps into blocks.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use super::{DataDir, Progress};
use crate::model::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use crate::model::{
    HistogramSample, HistogramValue, Labels, MAX_TIME, MIN_TIME, Sample, format_rfc3339,
    is_storable_time, parse_duration,
};
use crate::scrape::parse::{Entry, Format, Parser};
use crate::storage;

#[derive(clap::Args)]
pub(super) struct Args {
    #[command(flatten)]
    dir: DataDir,
    /// OpenMetrics text file; every sample must carry a timestamp. Ends with `# EOF`. Native
    /// histogram samples are read in the `{{...}}` form `tidemark dump` writes.
    file: PathBuf,
    /// Time span of each written block.
    #[arg(long, default_value = "2h")]
    block_duration: String,
}

/// Every series of an OpenMetrics body, each with its samples sorted by time. A sample outside
/// the storable range, or after `max_t` (the clock plus the future bound the agent applies),
/// refuses the whole body: a block from the future would make retention, counted from the
/// newest stored sample, delete every other block.
pub(crate) fn parse_openmetrics(
    body: &[u8],
    max_t: i64,
) -> anyhow::Result<Vec<(Labels, Vec<Sample>)>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut series: Vec<(Labels, Vec<(Sample, u32)>)> = Vec::new();
    let total_lines = body.iter().filter(|&&b| b == b'\n').count() as u64;
    let mut progress = Progress::new("parsing", total_lines);
    let mut lines = 0u64;
    for entry in Parser::new(body, Format::OpenMetrics) {
        let Entry::Sample(s) = entry? else { continue };
        let Some(t) = s.timestamp() else {
            bail!(
                "line {}: sample without a timestamp; import needs one on every sample",
                s.line()
            );
        };
        if !is_storable_time(t) {
            bail!(
                "line {}: timestamp {t} ms is outside the storable range {} to {} ({MIN_TIME} to {MAX_TIME} ms); nothing was imported",
                s.line(),
                format_rfc3339(MIN_TIME),
                format_rfc3339(MAX_TIME)
            );
        }
        if t > max_t {
            bail!(
                "line {}: timestamp {} is more than {} ahead of this machine's clock; nothing was imported (retention counts from the newest sample, so a block from the future would delete every older one)",
                s.line(),
                format_rfc3339(t),
                crate::model::format_duration(storage::MAX_AHEAD_MS)
            );
        }
        let i = match index.get(s.series()) {
            Some(&i) => i,
            None => {
                let labels = s.to_labels()?;
                series.push((labels, Vec::new()));
                index.insert(s.series(), series.len() - 1);
                series.len() - 1
            }
        };
        series[i].1.push((Sample::new(t, s.value()), s.line()));
        lines += 1;
        if lines.is_multiple_of(65_536) {
            progress.set(u64::from(s.line()));
        }
    }
    progress.finish();
    // One series may be spelled in two ways (label order, escapes): merge by identity.
    let mut merged: HashMap<Labels, Vec<(Sample, u32)>> = HashMap::new();
    for (l, s) in series {
        merged.entry(l).or_default().extend(s);
    }
    let mut out = Vec::with_capacity(merged.len());
    for (labels, mut samples) in merged {
        samples.sort_by_key(|(s, line)| (s.t, *line));
        let mut kept: Vec<Sample> = Vec::with_capacity(samples.len());
        let mut prev_line = 0;
        for (s, line) in samples {
            if let Some(last) = kept.last().filter(|last| last.t == s.t) {
                if last.v.to_bits() != s.v.to_bits() {
                    bail!(
                        "lines {prev_line} and {line}: two different values for {labels} at timestamp {} ms",
                        s.t
                    );
                }
                continue;
            }
            kept.push(s);
            prev_line = line;
        }
        out.push((labels, kept));
    }
    Ok(out)
}

/// [`parse_openmetrics`] of a body that may hold histogram samples in the text form `dump`
/// writes (`name{labels} {{...}} timestamp`): those lines are taken out and read here, the
/// rest is OpenMetrics as before. Every series with its floats and histograms, each sorted by
/// time; a float and a histogram at one time, or two different histograms, refuse the body.
pub(crate) fn parse_with_histograms(
    body: &[u8],
    max_t: i64,
) -> anyhow::Result<Vec<storage::SeriesSamples>> {
    let text = std::str::from_utf8(body).context("the file is not UTF-8")?;
    let mut floats = String::with_capacity(text.len());
    let mut hist: HashMap<Labels, Vec<(HistogramSample, usize)>> = HashMap::new();
    for (no, line) in text.lines().enumerate() {
        let Some((a, b)) = histogram_value_at(line) else {
            floats.push_str(line);
            floats.push('\n');
            continue;
        };
        let lineno = no + 1;
        let h = parse_histogram(&line[a..b]).map_err(|e| anyhow::anyhow!("line {lineno}: {e}"))?;
        // The series and timestamp read by the OpenMetrics parser, the value replaced.
        let one = format!("{}0{}\n# EOF\n", &line[..a], &line[b..]);
        let parsed = parse_openmetrics(one.as_bytes(), max_t)
            .map_err(|e| anyhow::anyhow!("line {lineno}: {e:#}"))?;
        let Some((labels, samples)) = parsed.into_iter().next() else {
            bail!("line {lineno}: no series");
        };
        let t = samples.first().map_or(0, |s| s.t);
        hist.entry(labels)
            .or_default()
            .push((HistogramSample { t, h }, lineno));
    }
    let mut out: HashMap<Labels, storage::SeriesSamples> =
        parse_openmetrics(floats.as_bytes(), max_t)?
            .into_iter()
            .map(|(labels, samples)| {
                (
                    labels.clone(),
                    storage::SeriesSamples {
                        labels,
                        samples,
                        histograms: Vec::new(),
                    },
                )
            })
            .collect();
    for (labels, mut hs) in hist {
        hs.sort_by_key(|(s, line)| (s.t, *line));
        let mut kept: Vec<HistogramSample> = Vec::with_capacity(hs.len());
        let mut prev_line = 0;
        for (s, line) in hs {
            if let Some(last) = kept.last().filter(|last| last.t == s.t) {
                if last.h != s.h {
                    bail!(
                        "lines {prev_line} and {line}: two different histograms for {labels} at timestamp {} ms",
                        s.t
                    );
                }
                continue;
            }
            kept.push(s);
            prev_line = line;
        }
        let entry = out
            .entry(labels.clone())
            .or_insert_with(|| storage::SeriesSamples {
                labels: labels.clone(),
                samples: Vec::new(),
                histograms: Vec::new(),
            });
        if let Some(s) = kept
            .iter()
            .find(|h| entry.samples.binary_search_by_key(&h.t, |x| x.t).is_ok())
        {
            bail!(
                "{labels} has a float and a histogram at timestamp {} ms",
                s.t
            );
        }
        entry.histograms = kept;
    }
    Ok(out.into_values().collect())
}

/// One token of the histogram text form: `key:value`, `key:[a b c]`, or a bare word.
fn histogram_tokens(body: &str) -> Result<Vec<(&str, Option<&str>)>, String> {
    let mut out = Vec::new();
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c == ':' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..end];
        rest = &rest[end..];
        if let Some(r) = rest.strip_prefix(':') {
            let (value, after) = if let Some(r) = r.strip_prefix('[') {
                let close = r
                    .find(']')
                    .ok_or_else(|| format!("{key}: list without ']'"))?;
                (&r[..close], &r[close + 1..])
            } else {
                let e = r.find(char::is_whitespace).unwrap_or(r.len());
                (&r[..e], &r[e..])
            };
            out.push((key, Some(value)));
            rest = after;
        } else {
            out.push((key, None));
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

fn parse_f64(key: &str, v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .map_err(|_| format!("{key}: {v:?} is not a number"))
}

fn parse_spans(key: &str, v: &str) -> Result<Vec<Span>, String> {
    v.split_whitespace()
        .map(|s| {
            let (o, l) = s
                .split_once(':')
                .ok_or_else(|| format!("{key}: {s:?} is not offset:length"))?;
            Ok(Span::new(
                o.parse().map_err(|_| format!("{key}: bad offset {o:?}"))?,
                l.parse().map_err(|_| format!("{key}: bad length {l:?}"))?,
            ))
        })
        .collect()
}

/// Reads the text form `tidemark dump` writes for a histogram (see `dump::format_histogram`);
/// Prometheus's test notation (`offset:`/`n_offset:` for one span per side, float counts) is
/// read too.
pub(crate) fn parse_histogram(text: &str) -> Result<HistogramValue, String> {
    let body = text
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .ok_or("a histogram is written {{...}}")?;
    let mut int = false;
    let (mut schema, mut sum, mut zw) = (0i32, 0.0f64, 0.0f64);
    let (mut count, mut zero) = ("0", "0");
    let (mut pos, mut neg): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
    let (mut pspans, mut nspans) = (None, None);
    let (mut poff, mut noff) = (0i32, 0i32);
    let mut hint = CounterResetHint::Unknown;
    let mut custom = Vec::new();
    for (k, v) in histogram_tokens(body)? {
        let Some(v) = v else {
            match k {
                "int" => int = true,
                _ => return Err(format!("unknown word {k:?}")),
            }
            continue;
        };
        match k {
            "schema" => schema = v.parse().map_err(|_| format!("schema: bad value {v:?}"))?,
            "sum" => sum = parse_f64(k, v)?,
            "count" => count = v,
            "z_bucket" => zero = v,
            "z_bucket_w" => zw = parse_f64(k, v)?,
            "buckets" => pos = v.split_whitespace().collect(),
            "n_buckets" => neg = v.split_whitespace().collect(),
            "spans" => pspans = Some(parse_spans(k, v)?),
            "n_spans" => nspans = Some(parse_spans(k, v)?),
            "offset" => poff = v.parse().map_err(|_| format!("offset: bad value {v:?}"))?,
            "n_offset" => {
                noff = v
                    .parse()
                    .map_err(|_| format!("n_offset: bad value {v:?}"))?
            }
            "counter_reset_hint" => {
                hint = match v {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => return Err(format!("counter_reset_hint: unknown {v:?}")),
                }
            }
            "custom_values" => {
                custom = v
                    .split_whitespace()
                    .map(|x| parse_f64(k, x))
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown key {k:?}")),
        }
    }
    let one_span = |off: i32, n: usize| {
        if n == 0 {
            Vec::new()
        } else {
            vec![Span::new(off, n as u32)]
        }
    };
    let positive_spans = pspans.unwrap_or_else(|| one_span(poff, pos.len()));
    let negative_spans = nspans.unwrap_or_else(|| one_span(noff, neg.len()));
    if int {
        let int_of = |k: &str, v: &str| -> Result<u64, String> {
            v.parse().map_err(|_| format!("{k}: {v:?} is not a count"))
        };
        let deltas = |abs: &[&str]| -> Result<Vec<i64>, String> {
            let mut prev = 0i64;
            abs.iter()
                .map(|x| {
                    let a: i64 = x
                        .parse()
                        .map_err(|_| format!("bucket {x:?} is not a count"))?;
                    let d = a.wrapping_sub(prev);
                    prev = a;
                    Ok(d)
                })
                .collect()
        };
        Ok(HistogramValue::Int(Box::new(Histogram {
            counter_reset_hint: hint,
            schema,
            zero_threshold: zw,
            zero_count: int_of("z_bucket", zero)?,
            count: int_of("count", count)?,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets: deltas(&pos)?,
            negative_buckets: deltas(&neg)?,
            custom_values: custom,
        })))
    } else {
        let floats = |v: &[&str]| -> Result<Vec<f64>, String> {
            v.iter().map(|x| parse_f64("buckets", x)).collect()
        };
        Ok(HistogramValue::Float(Box::new(FloatHistogram {
            counter_reset_hint: hint,
            schema,
            zero_threshold: zw,
            zero_count: parse_f64("z_bucket", zero)?,
            count: parse_f64("count", count)?,
            sum,
            positive_spans,
            negative_spans,
            positive_buckets: floats(&pos)?,
            negative_buckets: floats(&neg)?,
            custom_values: custom,
        })))
    }
}

/// Where a histogram line's value is: the byte range of its `{{...}}` in `line`, if the line
/// is a sample whose value is a histogram. The series part (name, then labels in braces whose
/// quoted values may hold any character) is skipped first.
fn histogram_value_at(line: &str) -> Option<(usize, usize)> {
    if line.starts_with('#') {
        return None;
    }
    let b = line.as_bytes();
    let mut i = b.iter().position(|&c| c == b'{' || c == b' ')?;
    if b[i] == b'{' {
        let mut quoted = false;
        let mut escaped = false;
        loop {
            i += 1;
            let c = *b.get(i)?;
            if escaped {
                escaped = false;
            } else if quoted {
                match c {
                    b'\\' => escaped = true,
                    b'"' => quoted = false,
                    _ => {}
                }
            } else {
                match c {
                    b'"' => quoted = true,
                    b'}' => break,
                    _ => {}
                }
            }
        }
        i += 1;
    }
    let rest = &line[i..];
    let start = i + (rest.len() - rest.trim_start().len());
    if !line[start..].starts_with("{{") {
        return None;
    }
    let end = start + line[start..].find("}}")? + 2;
    Some((start, end))
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    let bd = parse_duration(&a.block_duration)?;
    if bd <= 0 {
        bail!("--block-duration must be positive");
    }
    let body = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let max_t = now.saturating_add(storage::MAX_AHEAD_MS);
    let series =
        parse_with_histograms(&body, max_t).with_context(|| format!("{}", a.file.display()))?;
    let samples: u64 = series
        .iter()
        .map(|s| (s.samples.len() + s.histograms.len()) as u64)
        .sum();
    if samples == 0 {
        bail!("{}: no samples to import", a.file.display());
    }
    let n_series = series.len();
    let mut progress = Progress::new("writing", samples);
    let blocks =
        storage::write_series_blocks(&a.dir.data_dir, series, bd, |done| progress.set(done))?;
    progress.finish();
    let bytes: u64 = blocks.iter().map(|b| b.size_bytes).sum();
    println!(
        "imported {n_series} series, {samples} samples into {} blocks, {bytes} bytes ({:.3} bytes/sample) in {}",
        blocks.len(),
        bytes as f64 / samples as f64,
        a.dir.data_dir.join("blocks").display()
    );
    Ok(())
}
