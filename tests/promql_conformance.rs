//! Prometheus's own PromQL conformance scripts (../shared/promql-testdata, format in FORMAT.md),
//! run against tidemark's engine over a fresh store per script.
//!
//! Every eval must pass unless it is listed in tests/promql_known_failures.txt with a reason; a
//! listed eval that passes fails the test too, so the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tidemark::model::histogram::{
    CounterResetHint, FloatHistogram, HistogramValue, Span, from_classic,
};
use tidemark::model::{Labels, STALE_NAN};
use tidemark::query::{Engine, EngineOptions, QueryOutput, Series, Value};
use tidemark::storage::{Db, Options};

#[path = "common/fixtures.rs"]
mod fixtures;

const KNOWN_FAILURES: &str = "tests/promql_known_failures.txt";

fn testdata_dir() -> PathBuf {
    fixtures::shared("promql-testdata")
}

/// One point's value: a float, or a native histogram and whether the script gave its
/// counter-reset hint (compared only then, as Prometheus's promqltest does).
#[derive(Debug, Clone)]
enum Pt {
    F(f64),
    H(Box<FloatHistogram>, bool),
}

/// One expected series: labels and one value per point (`None` for `_`).
#[derive(Debug, Clone)]
struct ExpectedSeries {
    labels: Labels,
    values: Vec<Option<Pt>>,
}

#[derive(Debug, Default)]
struct Eval {
    line: usize,
    query: String,
    /// Instant time, or range start/end/step, in ms.
    instant: Option<i64>,
    range: Option<(i64, i64, i64)>,
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    warn: Option<bool>,
    warn_msg: Option<String>,
    warn_regex: Option<String>,
    info: Option<bool>,
    info_regex: Option<String>,
    string: Option<String>,
    /// `expect range vector from a to b step s`.
    range_vector: Option<(i64, i64, i64)>,
    scalar: Option<f64>,
    series: Vec<ExpectedSeries>,
    /// The expectation could not be read.
    unreadable: Option<String>,
}

enum Command {
    Load {
        interval: i64,
        lines: Vec<String>,
        nhcb: bool,
    },
    Clear,
    Eval(Box<Eval>),
}

fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok((secs * 1000.0).round() as i64);
    }
    tidemark::model::parse_duration(s).map_err(|e| format!("bad time {s:?}: {e}"))
}

/// Splits a series line into its description and the rest, honouring quotes and braces.
fn split_series(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut depth = 0;
    let mut in_quote = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if in_quote {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_quote = false;
            }
        } else if c == b'"' {
            in_quote = true;
        } else if c == b'{' {
            depth += 1;
        } else if c == b'}' {
            depth -= 1;
            if depth == 0 {
                return (&line[..=i], &line[i + 1..]);
            }
        } else if depth == 0 && c.is_ascii_whitespace() {
            return (&line[..i], &line[i..]);
        }
        i += 1;
    }
    (line, "")
}

/// Reads `name{a="b", c="d"}`, `{__name__="x"}` or `{}` into labels.
fn parse_labels(desc: &str) -> Result<Labels, String> {
    let desc = desc.trim();
    let (name, rest) = match desc.find('{') {
        Some(i) => (&desc[..i], &desc[i..]),
        None => (desc, ""),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        pairs.push(("__name__".into(), name.to_string()));
    }
    if !rest.is_empty() {
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| format!("bad series {desc:?}"))?;
        let mut chars = inner.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut lname = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                lname = read_quoted(&mut chars)?;
            } else {
                while let Some(&c) = chars.peek() {
                    if c == '=' || c.is_whitespace() || c == ',' {
                        break;
                    }
                    lname.push(c);
                    chars.next();
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() != Some(&'=') {
                // A quoted metric name alone: {"metric.name"}.
                pairs.push(("__name__".into(), lname));
                continue;
            }
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('"') {
                return Err(format!("bad label value in {desc:?}"));
            }
            let value = read_quoted(&mut chars)?;
            pairs.push((lname, value));
        }
    }
    pairs.sort();
    Ok(Labels::from_sorted_unchecked(pairs))
}

fn read_quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, String> {
    let mut out = String::new();
    loop {
        match chars.next() {
            None => return Err("unterminated string".into()),
            Some('"') => return Ok(out),
            Some('\\') => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(c) => out.push(c),
                None => return Err("unterminated string".into()),
            },
            Some(c) => out.push(c),
        }
    }
}

fn parse_number(s: &str) -> Result<f64, String> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        "stale" => Ok(STALE_NAN),
        _ => s
            .parse::<f64>()
            .map_err(|e| format!("bad number {s:?}: {e}")),
    }
}

/// Reads the inside of `{{...}}`: `schema:1 sum:2 count:3 z_bucket:1 z_bucket_w:0.001
/// buckets:[1 2] offset:1 n_buckets:[..] n_offset:0 custom_values:[..]
/// counter_reset_hint:gauge`, as Prometheus's test parser builds a float histogram.
fn parse_histogram(desc: &str) -> Result<(FloatHistogram, bool), String> {
    let mut h = FloatHistogram::default();
    let mut hint_set = false;
    let (mut buckets, mut offset, mut nbuckets, mut noffset) = (Vec::new(), 0i32, Vec::new(), 0);
    let mut rest = desc.trim();
    let list =
        |v: &str| -> Result<Vec<f64>, String> { v.split_whitespace().map(parse_number).collect() };
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once(':')
            .ok_or_else(|| format!("bad histogram {desc:?}"))?;
        let after = after.trim_start();
        let (value, next) = if let Some(inner) = after.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| format!("bad histogram {desc:?}"))?;
            (&inner[..end], &inner[end + 1..])
        } else {
            match after.find(char::is_whitespace) {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        let int = |v: &str| v.parse::<i32>().map_err(|e| format!("{key}: {e}"));
        match key.trim() {
            "schema" => h.schema = int(value)?,
            "sum" => h.sum = parse_number(value)?,
            "count" => h.count = parse_number(value)?,
            "z_bucket" => h.zero_count = parse_number(value)?,
            "z_bucket_w" => h.zero_threshold = parse_number(value)?,
            "buckets" => buckets = list(value)?,
            "n_buckets" => nbuckets = list(value)?,
            "offset" => offset = int(value)?,
            "n_offset" => noffset = int(value)?,
            "custom_values" => h.custom_values = list(value)?,
            "counter_reset_hint" => {
                hint_set = true;
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(format!("bad counter_reset_hint {other:?}")),
                };
            }
            other => return Err(format!("unknown histogram key {other:?}")),
        }
        rest = next.trim_start();
    }
    if !buckets.is_empty() {
        h.positive_spans = vec![Span::new(offset, buckets.len() as u32)];
        h.positive_buckets = buckets;
    }
    if !nbuckets.is_empty() {
        h.negative_spans = vec![Span::new(noffset, nbuckets.len() as u32)];
        h.negative_buckets = nbuckets;
    }
    Ok((h, hint_set))
}

/// Reads `{{...}}` at the start of `s`: the histogram and the rest of `s`.
fn take_histogram(s: &str) -> Result<((FloatHistogram, bool), &str), String> {
    let inner = s.strip_prefix("{{").ok_or("expected {{")?;
    let end = inner.find("}}").ok_or("unterminated {{")?;
    Ok((parse_histogram(&inner[..end])?, &inner[end + 2..]))
}

/// Reads `x<n>` at the start of `s`: n and the rest.
fn take_times(s: &str) -> Result<(usize, &str), String> {
    let digits = s.strip_prefix('x').ok_or("expected x<n>")?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let n = digits[..end]
        .parse()
        .map_err(|_| format!("bad count {s:?}"))?;
    Ok((n, &digits[end..]))
}

/// Expands `{{h}}`, `{{h}}x3` (four copies) and `{{h}}+{{d}}x3` / `{{h}}-{{d}}x3` (h, then
/// d added or subtracted three times) from the start of `s`, into `out`; returns the rest.
fn expand_histograms<'a>(s: &'a str, out: &mut Vec<Option<Pt>>) -> Result<&'a str, String> {
    let ((base, hint_set), rest) = take_histogram(s)?;
    if rest.starts_with('x') {
        let (n, rest) = take_times(rest)?;
        for _ in 0..=n {
            out.push(Some(Pt::H(Box::new(base.clone()), hint_set)));
        }
        return Ok(rest);
    }
    let sign = rest.chars().next();
    if matches!(sign, Some('+') | Some('-')) && rest[1..].starts_with("{{") {
        let ((inc, _), after) = take_histogram(&rest[1..])?;
        let (n, after) = take_times(after)?;
        let mut cur = base;
        out.push(Some(Pt::H(Box::new(cur.clone()), hint_set)));
        for _ in 0..n {
            if cur.schema > inc.schema {
                return Err(format!(
                    "error combining histograms: cannot merge from schema {} to {}",
                    inc.schema, cur.schema
                ));
            }
            let done = if sign == Some('+') {
                cur.add(&inc)
            } else {
                cur.sub(&inc)
            };
            done.map_err(|e| e.to_string())?;
            out.push(Some(Pt::H(Box::new(cur.clone()), hint_set)));
        }
        return Ok(after);
    }
    out.push(Some(Pt::H(Box::new(base), hint_set)));
    Ok(rest)
}

/// Expands `1+2x3 _ stale 5x2 _x3 {{schema:0 sum:1}}x2` into points.
fn expand_values(text: &str) -> Result<Vec<Option<Pt>>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            rest = expand_histograms(rest, &mut out)?.trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (tok, after) = rest.split_at(end);
        rest = after.trim_start();
        if tok == "_" {
            out.push(None);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad token {tok:?}"))?;
            out.extend(std::iter::repeat_n(None, n + 1));
            continue;
        }
        // start[+-]step x n, or value x n.
        if let Some(xpos) = tok.rfind('x').filter(|&p| p > 0) {
            let n: usize = tok[xpos + 1..]
                .parse()
                .map_err(|_| format!("bad token {tok:?}"))?;
            let head = &tok[..xpos];
            // The sign of the step is the last + or - not at the start and not after an 'e'.
            let split = head
                .char_indices()
                .filter(|&(i, c)| {
                    i > 0
                        && (c == '+' || c == '-')
                        && !matches!(head.as_bytes()[i - 1], b'e' | b'E')
                })
                .map(|(i, _)| i)
                .next_back();
            match split {
                Some(i) => {
                    let start = parse_number(&head[..i])?;
                    let step = parse_number(&head[i + 1..])?;
                    let step = if head.as_bytes()[i] == b'-' {
                        -step
                    } else {
                        step
                    };
                    let mut v = start;
                    for k in 0..=n {
                        // Prometheus adds the step repeatedly; keep its rounding.
                        out.push(Some(Pt::F(v)));
                        if k < n {
                            v += step;
                        }
                    }
                }
                None => {
                    let v = parse_number(head)?;
                    out.extend(std::iter::repeat_n(Some(Pt::F(v)), n + 1));
                }
            }
            continue;
        }
        out.push(Some(Pt::F(parse_number(tok)?)));
    }
    Ok(out)
}

fn indented(line: &str) -> bool {
    line.starts_with(' ') || line.starts_with('\t')
}

fn parse_script(text: &str) -> Result<Vec<Command>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let line = raw.trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lineno = i;
        let mut body = Vec::new();
        while i < lines.len() && (indented(lines[i]) || lines[i].trim().starts_with('#')) {
            let l = lines[i].trim();
            if !l.is_empty() && !l.starts_with('#') {
                body.push(l.to_string());
            }
            if lines[i].trim().is_empty() {
                break;
            }
            i += 1;
        }
        let word = line.split_whitespace().next().unwrap_or("");
        match word {
            "load" | "load_with_nhcb" => {
                let arg = line
                    .split_whitespace()
                    .nth(1)
                    .ok_or("load without interval")?;
                let interval = parse_time(arg)?;
                cmds.push(Command::Load {
                    interval,
                    lines: body,
                    nhcb: word == "load_with_nhcb",
                });
            }
            "clear" => cmds.push(Command::Clear),
            "eval" | "eval_fail" | "eval_ordered" | "eval_warn" | "eval_info" => {
                cmds.push(Command::Eval(Box::new(parse_eval(line, lineno, &body)?)));
            }
            _ => return Err(format!("line {lineno}: unknown command {line:?}")),
        }
    }
    Ok(cmds)
}

fn parse_eval(line: &str, lineno: usize, body: &[String]) -> Result<Eval, String> {
    let mut e = Eval {
        line: lineno,
        ..Eval::default()
    };
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    match word {
        "eval_fail" => e.fail = true,
        "eval_ordered" => e.ordered = true,
        "eval_warn" => e.warn = Some(true),
        "eval_info" => e.info = Some(true),
        _ => {}
    }
    let rest = rest.trim();
    if let Some(r) = rest.strip_prefix("instant at ") {
        let (t, q) = r
            .trim()
            .split_once(char::is_whitespace)
            .ok_or("eval without query")?;
        e.instant = Some(parse_time(t)?);
        e.query = q.trim().to_string();
    } else if let Some(r) = rest.strip_prefix("range from ") {
        let parts: Vec<&str> = r.trim().splitn(6, char::is_whitespace).collect();
        if parts.len() < 6 || parts[1] != "to" || parts[3] != "step" {
            return Err(format!("line {lineno}: bad range eval {line:?}"));
        }
        e.range = Some((
            parse_time(parts[0])?,
            parse_time(parts[2])?,
            parse_time(parts[4])?,
        ));
        e.query = parts[5].trim().to_string();
    } else {
        return Err(format!("line {lineno}: bad eval {line:?}"));
    }
    for l in body {
        if let Some(x) = l.strip_prefix("expect ") {
            let x = x.trim();
            if let Some(m) = x.strip_prefix("fail") {
                e.fail = true;
                let m = m.trim();
                if let Some(msg) = m.strip_prefix("msg:") {
                    e.fail_msg = Some(msg.trim().to_string());
                } else if let Some(re) = m.strip_prefix("regex:") {
                    e.fail_regex = Some(re.trim().to_string());
                }
            } else if x == "ordered" {
                e.ordered = true;
            } else if let Some(m) = x.strip_prefix("warn") {
                e.warn = Some(true);
                let m = m.trim();
                if let Some(msg) = m.strip_prefix("msg:") {
                    e.warn_msg = Some(msg.trim().to_string());
                } else if let Some(re) = m.strip_prefix("regex:") {
                    e.warn_regex = Some(re.trim().to_string());
                }
            } else if x == "no_warn" {
                e.warn = Some(false);
            } else if let Some(m) = x.strip_prefix("info") {
                e.info = Some(true);
                if let Some(re) = m.trim().strip_prefix("regex:") {
                    e.info_regex = Some(re.trim().to_string());
                }
            } else if x == "no_info" {
                e.info = Some(false);
            } else if let Some(s) = x.strip_prefix("string ") {
                let s = s.trim();
                e.string = Some(
                    if let Some(raw) = s.strip_prefix('`').and_then(|s| s.strip_suffix('`')) {
                        raw.to_string()
                    } else {
                        let unq = s
                            .strip_prefix('"')
                            .and_then(|s| s.strip_suffix('"'))
                            .ok_or_else(|| format!("line {lineno}: bad expect string"))?;
                        unq.replace("\\\"", "\"").replace("\\\\", "\\")
                    },
                );
            } else if let Some(r) = x.strip_prefix("range vector from ") {
                let parts: Vec<&str> = r.split_whitespace().collect();
                if parts.len() != 5 || parts[1] != "to" || parts[3] != "step" {
                    return Err(format!("line {lineno}: bad expect range {x:?}"));
                }
                e.range_vector = Some((
                    parse_time(parts[0])?,
                    parse_time(parts[2])?,
                    parse_time(parts[4])?,
                ));
            } else {
                return Err(format!("line {lineno}: unknown expectation {l:?}"));
            }
            continue;
        }
        if e.series.is_empty()
            && e.scalar.is_none()
            && let Ok(v) = parse_number(l)
        {
            e.scalar = Some(v);
            continue;
        }
        let (desc, vals) = split_series(l);
        match (parse_labels(desc), expand_values(vals)) {
            (Ok(labels), Ok(values)) => e.series.push(ExpectedSeries { labels, values }),
            (Err(err), _) | (_, Err(err)) => e.unreadable = Some(err),
        }
    }
    Ok(e)
}

fn load(db: &Db, interval: i64, lines: &[String], nhcb: bool) -> Result<(), String> {
    // A series listed twice in one load takes the later line's value at a shared timestamp, as
    // Prometheus's loader does.
    let mut series: BTreeMap<Labels, BTreeMap<i64, Pt>> = BTreeMap::new();
    for l in lines {
        let (desc, vals) = split_series(l);
        let labels = parse_labels(desc)?;
        let points = series.entry(labels).or_default();
        for (k, v) in expand_values(vals)?.into_iter().enumerate() {
            if let Some(v) = v {
                points.insert(k as i64 * interval, v);
            }
        }
    }
    let converted = if nhcb {
        classic_to_nhcb(&series)?
    } else {
        Vec::new()
    };
    let mut app = db.appender();
    for (labels, points) in &series {
        for (&t, v) in points {
            match v {
                Pt::F(f) => app.append(labels, t, *f).map(|_| ()),
                Pt::H(h, _) => app
                    .append_histogram(labels, t, HistogramValue::Float(h.clone()))
                    .map(|_| ()),
            }
            .map_err(|e| e.to_string())?;
        }
    }
    for (labels, points) in converted {
        for (t, h) in points {
            app.append_histogram(&labels, t, HistogramValue::Float(Box::new(h)))
                .map_err(|e| e.to_string())?;
        }
    }
    app.commit().map_err(|e| e.to_string())?;
    Ok(())
}

/// One series' histograms by timestamp.
type HistogramPoints = Vec<(i64, FloatHistogram)>;

/// What `load_with_nhcb` adds besides the classic series, as Prometheus's promqltest does:
/// each classic histogram (`<name>_bucket{le=...}`, `<name>_count`, `<name>_sum` with the
/// same other labels) as one series `<name>{...}` of custom-bucket native histograms, one per
/// timestamp any of its float series has a sample at.
fn classic_to_nhcb(
    series: &BTreeMap<Labels, BTreeMap<i64, Pt>>,
) -> Result<Vec<(Labels, HistogramPoints)>, String> {
    #[derive(Default)]
    struct Parts {
        buckets: Vec<(f64, f64)>,
        count: Option<f64>,
        sum: f64,
    }
    let mut by_base: BTreeMap<Labels, BTreeMap<i64, Parts>> = BTreeMap::new();
    for (labels, points) in series {
        let name = labels.metric_name().unwrap_or("");
        let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
            (b, 0)
        } else if let Some(b) = name.strip_suffix("_count") {
            (b, 1)
        } else if let Some(b) = name.strip_suffix("_sum") {
            (b, 2)
        } else {
            continue;
        };
        let le = if kind == 0 {
            match labels.get("le").map(parse_number) {
                Some(Ok(le)) if !le.is_nan() => Some(le),
                _ => continue,
            }
        } else {
            None
        };
        let mut pairs: Vec<(String, String)> = labels
            .iter()
            .filter(|(n, _)| *n != "le" && *n != "__name__")
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        pairs.push(("__name__".into(), base.to_string()));
        pairs.sort();
        let key = Labels::from_sorted_unchecked(pairs);
        let at = by_base.entry(key).or_default();
        for (&t, v) in points {
            let Pt::F(f) = v else { continue };
            let p = at.entry(t).or_default();
            match (kind, le) {
                (0, Some(le)) => p.buckets.push((le, *f)),
                (1, _) => p.count = Some(*f),
                _ => p.sum = *f,
            }
        }
    }
    let mut out = Vec::new();
    for (labels, times) in by_base {
        let mut points = Vec::new();
        for (t, mut p) in times {
            p.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let h = from_classic(&p.buckets, p.count, p.sum)
                .map_err(|e| format!("{labels} at {t}: {e}"))?;
            points.push((t, h.to_float()));
        }
        out.push((labels, points));
    }
    Ok(out)
}

/// Prometheus's test tolerance: relative 1e-6, NaN equals NaN.
fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 1e-6;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPSILON * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

fn fmt_points(points: &[Option<Pt>]) -> String {
    points
        .iter()
        .map(|p| match p {
            None => "_".to_string(),
            Some(Pt::F(v)) => v.to_string(),
            Some(Pt::H(h, _)) => fmt_histogram(h),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt_histogram(h: &FloatHistogram) -> String {
    format!(
        "{{{{schema:{} count:{} sum:{} z_bucket:{} z_bucket_w:{} buckets:{:?} n_buckets:{:?} \
         custom_values:{:?} hint:{:?}}}}}",
        h.schema,
        h.count,
        h.sum,
        h.zero_count,
        h.zero_threshold,
        nonempty(&h.positive_spans, &h.positive_buckets),
        nonempty(&h.negative_spans, &h.negative_buckets),
        h.custom_values,
        h.counter_reset_hint
    )
}

/// The populated buckets of one side as (index, count): what is left after Prometheus's
/// `Compact(0)`, whatever the spans' split.
fn nonempty(spans: &[Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::new();
    let mut idx = 0i32;
    let mut k = 0usize;
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 { s.offset } else { idx + s.offset };
        for _ in 0..s.length {
            if let Some(&c) = buckets.get(k)
                && c != 0.0
            {
                out.push((idx, c));
            }
            k += 1;
            idx += 1;
        }
    }
    out
}

/// promqltest's histogram comparison: schema, count, sum, zero bucket, custom bounds and
/// populated buckets (floats within its tolerance), the hint only when the script gave one.
fn same_histogram(exp: &FloatHistogram, got: &FloatHistogram, hint_set: bool) -> bool {
    let buckets_match = |a: Vec<(i32, f64)>, b: Vec<(i32, f64)>| {
        a.len() == b.len()
            && a.iter()
                .zip(&b)
                .all(|(x, y)| x.0 == y.0 && almost_equal(x.1, y.1))
    };
    exp.schema == got.schema
        && almost_equal(exp.count, got.count)
        && almost_equal(exp.sum, got.sum)
        && (exp.schema != tidemark::model::histogram::CUSTOM_BUCKETS_SCHEMA
            || exp.custom_values == got.custom_values)
        && exp.zero_threshold == got.zero_threshold
        && almost_equal(exp.zero_count, got.zero_count)
        && buckets_match(
            nonempty(&exp.negative_spans, &exp.negative_buckets),
            nonempty(&got.negative_spans, &got.negative_buckets),
        )
        && buckets_match(
            nonempty(&exp.positive_spans, &exp.positive_buckets),
            nonempty(&got.positive_spans, &got.positive_buckets),
        )
        && (!hint_set || exp.counter_reset_hint == got.counter_reset_hint)
}

fn same_point(got: &Option<Pt>, exp: &Option<Pt>) -> bool {
    match (got, exp) {
        (None, None) => true,
        (Some(Pt::F(a)), Some(Pt::F(b))) => almost_equal(*a, *b),
        (Some(Pt::H(a, _)), Some(Pt::H(b, hint_set))) => same_histogram(b, a, *hint_set),
        _ => false,
    }
}

fn compare_series(
    expected: &[ExpectedSeries],
    actual: Vec<(Labels, Vec<Option<Pt>>)>,
    ordered: bool,
) -> Result<(), String> {
    if ordered {
        let exp: Vec<&Labels> = expected.iter().map(|s| &s.labels).collect();
        let act: Vec<&Labels> = actual.iter().map(|s| &s.0).collect();
        if exp != act {
            return Err(format!("order differs: expected {exp:?}, got {act:?}"));
        }
    }
    let mut got: BTreeMap<String, Vec<Option<Pt>>> = BTreeMap::new();
    for (l, v) in actual {
        let key = l.to_string();
        if got.insert(key.clone(), v).is_some() {
            return Err(format!("duplicate series {key} in result"));
        }
    }
    let mut errs = String::new();
    for e in expected {
        let key = e.labels.to_string();
        match got.remove(&key) {
            None => {
                let _ = writeln!(errs, "missing {key} {}", fmt_points(&e.values));
            }
            Some(v) => {
                // Expected points may stop before the grid ends: the rest are absent.
                let mut e = e.clone();
                if e.values.len() < v.len() {
                    e.values.resize(v.len(), None);
                }
                let same = v.len() == e.values.len()
                    && v.iter().zip(&e.values).all(|(a, b)| same_point(a, b));
                if !same {
                    let _ = writeln!(
                        errs,
                        "{key}: expected {} got {}",
                        fmt_points(&e.values),
                        fmt_points(&v)
                    );
                }
            }
        }
    }
    for (k, v) in got {
        let _ = writeln!(errs, "unexpected {k} {}", fmt_points(&v));
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Points of one series on the grid `start..=end` by `step`.
fn on_grid(s: &Series, start: i64, end: i64, step: i64) -> Result<Vec<Option<Pt>>, String> {
    let n = ((end - start) / step + 1) as usize;
    let mut out = vec![None; n];
    let points = s.floats.iter().map(|p| (p.t, Pt::F(p.f))).chain(
        s.histograms
            .iter()
            .map(|p| (p.t, Pt::H(Box::new((*p.h).clone()), false))),
    );
    for (t, v) in points {
        if t < start || t > end || (t - start) % step != 0 {
            return Err(format!(
                "point at {t} ms is off the grid {start}..{end} step {step}"
            ));
        }
        out[((t - start) / step) as usize] = Some(v);
    }
    Ok(out)
}

fn check_annotations(e: &Eval, out: &QueryOutput) -> Result<(), String> {
    let a = &out.annotations;
    match e.warn {
        Some(true) if a.warnings.is_empty() => return Err("expected a warning, got none".into()),
        Some(false) if !a.warnings.is_empty() => {
            return Err(format!("expected no warning, got {:?}", a.warnings));
        }
        _ => {}
    }
    if let Some(msg) = &e.warn_msg
        && !a.warnings.contains(msg)
    {
        return Err(format!("expected warning {msg:?}, got {:?}", a.warnings));
    }
    if let Some(re) = &e.warn_regex {
        let re = regex::Regex::new(re).map_err(|x| x.to_string())?;
        if !a.warnings.iter().any(|w| re.is_match(w)) {
            return Err(format!("no warning matches {re}: {:?}", a.warnings));
        }
    }
    match e.info {
        Some(true) if a.infos.is_empty() => return Err("expected an info, got none".into()),
        Some(false) if !a.infos.is_empty() => {
            return Err(format!("expected no info, got {:?}", a.infos));
        }
        _ => {}
    }
    if let Some(re) = &e.info_regex {
        let re = regex::Regex::new(re).map_err(|x| x.to_string())?;
        if !a.infos.iter().any(|w| re.is_match(w)) {
            return Err(format!("no info matches {re}: {:?}", a.infos));
        }
    }
    Ok(())
}

fn run_eval(engine: &Engine, db: &Db, e: &Eval) -> Result<(), String> {
    if let Some(err) = &e.unreadable {
        return Err(format!("expectation unreadable: {err}"));
    }
    let querier = db.querier();
    let result = match (e.instant, e.range) {
        (Some(t), _) => engine.instant_blocking(&querier, &e.query, t),
        (_, Some((s, end, step))) => engine.range_blocking(&querier, &e.query, s, end, step),
        _ => return Err("eval without time".into()),
    };
    let out = match result {
        Err(err) => {
            if !e.fail {
                return Err(format!("unexpected error: {err}"));
            }
            let msg = err.to_string();
            if let Some(want) = &e.fail_msg
                && &msg != want
            {
                return Err(format!("error {msg:?}, expected {want:?}"));
            }
            if let Some(re) = &e.fail_regex {
                let re = regex::Regex::new(re).map_err(|x| x.to_string())?;
                if !re.is_match(&msg) {
                    return Err(format!("error {msg:?} does not match {re}"));
                }
            }
            return Ok(());
        }
        Ok(out) => out,
    };
    if e.fail {
        return Err(format!("expected an error, got {:?}", out.value));
    }
    check_annotations(e, &out)?;
    match (&out.value, e.range) {
        (Value::Matrix(m), Some((start, end, step))) => {
            let actual = m
                .iter()
                .map(|s| on_grid(s, start, end, step).map(|v| ((*s.metric).clone(), v)))
                .collect::<Result<Vec<_>, _>>()?;
            compare_series(&e.series, actual, e.ordered)
        }
        (Value::Matrix(m), None) => {
            let (start, end, step) = e
                .range_vector
                .ok_or("got a range vector; the eval does not expect one")?;
            let actual = m
                .iter()
                .map(|s| on_grid(s, start, end, step).map(|v| ((*s.metric).clone(), v)))
                .collect::<Result<Vec<_>, _>>()?;
            compare_series(&e.series, actual, e.ordered)
        }
        (Value::Vector(v), None) => {
            if e.range_vector.is_some() {
                return Err("expected a range vector, got an instant vector".into());
            }
            if e.scalar.is_some() {
                return Err(format!("expected a scalar, got a vector {v:?}"));
            }
            let actual = v
                .iter()
                .map(|s| {
                    let v = match &s.h {
                        Some(h) => Pt::H(Box::new((**h).clone()), false),
                        None => Pt::F(s.f),
                    };
                    ((*s.metric).clone(), vec![Some(v)])
                })
                .collect();
            compare_series(&e.series, actual, e.ordered)
        }
        (Value::Scalar(p), None) => match e.scalar {
            Some(want) if almost_equal(want, p.f) => Ok(()),
            want => Err(format!("expected {want:?}, got scalar {}", p.f)),
        },
        (Value::String { s, .. }, None) => match &e.string {
            Some(want) if want == s => Ok(()),
            want => Err(format!("expected {want:?}, got string {s:?}")),
        },
        (v, Some(_)) => Err(format!("range query returned a {}", v.type_name())),
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    skipped: usize,
}

fn run_file(path: &Path, failures: &mut BTreeMap<String, String>) -> Tally {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cmds = parse_script(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let opts = EngineOptions {
        delayed_name_removal: true,
        ..EngineOptions::default()
    };
    let engine = Engine::new(opts);
    let mut tally = Tally::default();
    let mut dir = tempfile::tempdir().unwrap();
    let mut db = Db::open(dir.path(), Options::default()).unwrap();
    for cmd in cmds {
        match cmd {
            Command::Clear => {
                db.close().unwrap();
                dir = tempfile::tempdir().unwrap();
                db = Db::open(dir.path(), Options::default()).unwrap();
            }
            Command::Load {
                interval,
                lines,
                nhcb,
            } => {
                load(&db, interval, &lines, nhcb).unwrap_or_else(|e| panic!("{name}: load: {e}"));
            }
            Command::Eval(e) => match run_eval(&engine, &db, &e) {
                Ok(()) => tally.passed += 1,
                Err(why) => {
                    tally.failed += 1;
                    failures.insert(
                        format!("{name}:{}", e.line),
                        format!(
                            "{}\n    {}",
                            e.query,
                            why.trim_end().replace('\n', "\n    ")
                        ),
                    );
                }
            },
        }
    }
    db.close().unwrap();
    tally
}

fn known_failures() -> BTreeMap<String, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(KNOWN_FAILURES);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(char::is_whitespace) {
            Some((k, reason)) => (k.to_string(), reason.trim().to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

#[test]
fn promql_conformance_scripts() {
    let dir = testdata_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let mut failures = BTreeMap::new();
    let mut total = Tally::default();
    for f in &files {
        let t = run_file(f, &mut failures);
        println!(
            "{:<28} {} passed, {} failed, {} skipped",
            f.file_name().unwrap().to_string_lossy(),
            t.passed,
            t.failed,
            t.skipped
        );
        total.passed += t.passed;
        total.failed += t.failed;
        total.skipped += t.skipped;
    }
    let all = total.passed + total.failed + total.skipped;
    println!(
        "{:<28} {} passed, {} failed, {} skipped ({:.1}% of {} evals pass)",
        "total",
        total.passed,
        total.failed,
        total.skipped,
        100.0 * total.passed as f64 / all.max(1) as f64,
        all
    );
    let known = known_failures();
    let unexpected: Vec<_> = failures
        .keys()
        .filter(|k| !known.contains_key(*k))
        .collect();
    let fixed: BTreeSet<_> = known
        .keys()
        .filter(|k| !failures.contains_key(*k))
        .collect();
    let mut report = String::new();
    for k in &unexpected {
        let _ = writeln!(report, "FAIL {k}: {}", failures[*k]);
    }
    for k in &fixed {
        let _ = writeln!(
            report,
            "PASSES NOW {k} (remove it from {KNOWN_FAILURES}): {}",
            known[*k]
        );
    }
    if std::env::var_os("PROMQL_SHOW_KNOWN").is_some() {
        for (k, why) in &failures {
            if known.contains_key(k) {
                println!("known {k}: {why}");
            }
        }
    }
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "{} unexpected failures, {} listed failures now pass:\n{report}",
        unexpected.len(),
        fixed.len()
    );
}
