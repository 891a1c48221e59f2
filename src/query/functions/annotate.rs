//! The warnings and infos of the function library in Prometheus's words, and the bits of Go
//! formatting (`%q`, `%g`, `%f`) those words need.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt::Write;

use crate::model::Labels;
use crate::query::Annotations;

thread_local! {
    /// Formatting space for annotations raised per window, kept between calls.
    static TEXT: Cell<String> = const { Cell::new(String::new()) };
}

/// Frees the thread's formatting space.
pub(super) fn release_text() {
    drop(TEXT.with(Cell::take));
}

/// Adds the text `write` produces to `set` unless it is there already. Range functions raise
/// the same annotation for window after window; formatting into a reused buffer keeps that
/// free of allocations once the text is known.
fn add(set: &mut BTreeSet<String>, write: impl FnOnce(&mut String)) {
    TEXT.with(|cell| {
        let mut buf = cell.take();
        buf.clear();
        write(&mut buf);
        if !set.contains(buf.as_str()) {
            set.insert(buf.clone());
        }
        cell.set(buf);
    });
}

/// The info `rate` and `increase` raise for a series whose name does not look like a counter.
pub(super) fn possible_non_counter(ann: &mut Annotations, metric: &Labels) {
    let Some(name) = metric.metric_name() else {
        return;
    };
    if name.is_empty()
        || ["_total", "_sum", "_count", "_bucket"]
            .iter()
            .any(|s| name.ends_with(s))
    {
        return;
    }
    add(&mut ann.infos, |b| {
        b.push_str(
            "PromQL info: metric might not be a counter, name does not end in \
             _total/_sum/_count/_bucket: ",
        );
        go_quote(b, name);
    });
}

/// The warning for a φ outside [0, 1].
pub(super) fn invalid_quantile(ann: &mut Annotations, q: f64) {
    add(&mut ann.warnings, |b| {
        b.push_str("PromQL warning: quantile value should be between 0 and 1, got ");
        go_g(b, q);
    });
}

/// The warning for a classic-histogram bucket whose `le` is missing or not a number.
pub(super) fn bad_bucket_label(ann: &mut Annotations, metric_name: &str, le: &str) {
    add(&mut ann.warnings, |b| {
        b.push_str("PromQL warning: bucket label \"le\" is missing or has a malformed value of ");
        go_quote(b, le);
        for_metric_name(b, metric_name);
    });
}

/// The info for buckets whose counts had to be made monotonic. Prometheus appends the bucket
/// range and time span it merged over the whole query; set semantics cannot merge, so only
/// the fixed part is kept.
pub(super) fn forced_monotonicity(ann: &mut Annotations, metric_name: &str) {
    add(&mut ann.infos, |b| {
        b.push_str(
            "PromQL info: input to histogram_quantile needed to be fixed for monotonicity \
             (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)",
        );
        for_metric_name(b, metric_name);
    });
}

/// A histogram operation named in an annotation, in Prometheus's words.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HistOp {
    Add,
    Sub,
    Agg,
}

impl HistOp {
    fn word(self) -> &'static str {
        match self {
            HistOp::Add => "addition",
            HistOp::Sub => "subtraction",
            HistOp::Agg => "aggregation",
        }
    }
}

/// A warning or info that names a metric: `<text> "<name>"`.
fn named(set: &mut BTreeSet<String>, text: &str, metric_name: &str) {
    add(set, |b| {
        b.push_str(text);
        go_quote(b, metric_name);
    });
}

/// A range function's window (or an instant vector) held floats and histograms at once.
pub(crate) fn mixed_floats_histograms(ann: &mut Annotations, metric_name: &str) {
    named(
        &mut ann.warnings,
        "PromQL warning: encountered a mix of histograms and floats for metric name ",
        metric_name,
    );
}

/// An aggregation group held floats and histograms at once.
pub(crate) fn mixed_floats_histograms_aggregation(ann: &mut Annotations) {
    add(&mut ann.warnings, |b| {
        b.push_str("PromQL warning: encountered a mix of histograms and floats for aggregation")
    });
}

/// A function over floats ignored the histograms beside them in a window.
pub(crate) fn histograms_ignored_in_range(ann: &mut Annotations, metric_name: &str) {
    named(
        &mut ann.infos,
        "PromQL info: ignored histograms in a range containing both floats and histograms for \
         metric name ",
        metric_name,
    );
}

/// An aggregation over floats ignored histograms.
pub(crate) fn histogram_ignored_in_aggregation(ann: &mut Annotations, aggregation: &str) {
    add(&mut ann.infos, |b| {
        b.push_str("PromQL info: ignored histogram in ");
        b.push_str(aggregation);
        b.push_str(" aggregation");
    });
}

/// A counter function over a histogram marked as a gauge.
pub(crate) fn not_a_counter(ann: &mut Annotations, metric_name: &str) {
    named(
        &mut ann.warnings,
        "PromQL warning: this native histogram metric is not a counter: ",
        metric_name,
    );
}

/// A gauge function over a histogram not marked as a gauge.
pub(crate) fn not_a_gauge(ann: &mut Annotations, metric_name: &str) {
    named(
        &mut ann.warnings,
        "PromQL warning: this native histogram metric is not a gauge: ",
        metric_name,
    );
}

/// Exponential and custom-bucket histograms met in one operation.
pub(crate) fn mixed_exponential_custom(ann: &mut Annotations, metric_name: &str) {
    named(
        &mut ann.warnings,
        "PromQL warning: vector contains a mix of histograms with exponential and custom \
         buckets schemas for metric name ",
        metric_name,
    );
}

/// Custom-bucket histograms with different bounds were added or subtracted over their
/// common bounds.
pub(crate) fn mismatched_custom_buckets(ann: &mut Annotations, op: HistOp) {
    add(&mut ann.infos, |b| {
        b.push_str("PromQL info: mismatched custom buckets were reconciled during ");
        b.push_str(op.word());
    });
}

/// One operand said counter reset, the other not.
pub(crate) fn counter_reset_collision(ann: &mut Annotations, op: HistOp) {
    add(&mut ann.warnings, |b| {
        b.push_str("PromQL warning: conflicting counter resets during histogram ");
        b.push_str(op.word());
    });
}

/// A binary operator between sample types it does not combine.
pub(crate) fn incompatible_types_in_binop(ann: &mut Annotations, op: &str, lhs: &str, rhs: &str) {
    add(&mut ann.infos, |b| {
        b.push_str("PromQL info: incompatible sample types encountered for binary operator ");
        go_quote(b, op);
        let _ = write!(b, ": {lhs} {op} {rhs}");
    });
}

/// Classic buckets and native histograms of one metric met in `histogram_quantile` or
/// `histogram_fraction`.
pub(crate) fn mixed_classic_native(ann: &mut Annotations, metric_name: &str) {
    add(&mut ann.warnings, |b| {
        b.push_str("PromQL warning: vector contains a mix of classic and native histograms");
        for_metric_name(b, metric_name);
    });
}

fn for_metric_name(b: &mut String, metric_name: &str) {
    if !metric_name.is_empty() {
        b.push_str(" for metric name ");
        go_quote(b, metric_name);
    }
}

/// Appends `s` quoted as Go's `%q` does: backslash escapes for quotes, backslashes and control
/// characters, non-printing characters as `\u` escapes.
pub(super) fn go_quote(b: &mut String, s: &str) {
    b.push('"');
    for c in s.chars() {
        match c {
            '"' => b.push_str("\\\""),
            '\\' => b.push_str("\\\\"),
            '\x07' => b.push_str("\\a"),
            '\x08' => b.push_str("\\b"),
            '\x0c' => b.push_str("\\f"),
            '\n' => b.push_str("\\n"),
            '\r' => b.push_str("\\r"),
            '\t' => b.push_str("\\t"),
            '\x0b' => b.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(b, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                if (c as u32) <= 0xffff {
                    let _ = write!(b, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(b, "\\U{:08x}", c as u32);
                }
            }
            c => b.push(c),
        }
    }
    b.push('"');
}

/// Appends `f` as Go's `%g` prints it: the shortest digits that round-trip, in exponent form
/// (`1e+06`, `1.5e-05`) when the exponent is below -4 or at least 6.
pub(super) fn go_g(b: &mut String, f: f64) {
    if f.is_nan() {
        b.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        b.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if f == 0.0 {
        b.push_str(if f.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits: lay them out as Go does.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if f < 0.0 {
        b.push('-');
    }
    if !(-4..6).contains(&exp) {
        b.push_str(&digits[..1]);
        if digits.len() > 1 {
            b.push('.');
            b.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(b, "e{sign}{:02}", exp.abs());
    } else if exp < 0 {
        b.push_str("0.");
        for _ in 0..(-exp - 1) {
            b.push('0');
        }
        b.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() > int_len {
            b.push_str(&digits[..int_len]);
            b.push('.');
            b.push_str(&digits[int_len..]);
        } else {
            b.push_str(&digits);
            for _ in digits.len()..int_len {
                b.push('0');
            }
        }
    }
}

/// `f` as Prometheus renders a quantile label value (`FormatOpenMetricsFloat`): `%g`, with
/// `.0` appended when that has neither a point nor an exponent.
pub(super) fn openmetrics_float(f: f64) -> String {
    let mut b = String::new();
    go_g(&mut b, f);
    if f.is_finite() && !b.contains(['.', 'e']) {
        b.push_str(".0");
    }
    b
}

/// `f` as Go's `%f` prints it: six decimals, `NaN`, `+Inf`, `-Inf`.
pub(super) fn go_fixed6(f: f64) -> String {
    if f.is_nan() {
        "NaN".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{f:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(f: f64) -> String {
        let mut b = String::new();
        go_g(&mut b, f);
        b
    }

    #[test]
    fn go_g_matches_go_for_shortest_formatting() {
        assert_eq!(g(-0.1), "-0.1");
        assert_eq!(g(1.01), "1.01");
        assert_eq!(g(2.0), "2");
        assert_eq!(g(999999.0), "999999");
        assert_eq!(g(1e6), "1e+06");
        assert_eq!(g(123456789.5), "1.234567895e+08");
        assert_eq!(g(0.0001), "0.0001");
        assert_eq!(g(0.00001234), "1.234e-05");
        assert_eq!(g(-2.5e-300), "-2.5e-300");
        assert_eq!(g(f64::NAN), "NaN");
        assert_eq!(g(f64::NEG_INFINITY), "-Inf");
        assert_eq!(g(-0.0), "-0");
    }

    #[test]
    fn openmetrics_float_marks_integers() {
        assert_eq!(openmetrics_float(0.0), "0.0");
        assert_eq!(openmetrics_float(1.0), "1.0");
        assert_eq!(openmetrics_float(0.25), "0.25");
        assert_eq!(openmetrics_float(-0.1), "-0.1");
        assert_eq!(openmetrics_float(1e6), "1e+06");
        assert_eq!(openmetrics_float(100000.0), "100000.0");
        assert_eq!(openmetrics_float(f64::NAN), "NaN");
        assert_eq!(openmetrics_float(f64::INFINITY), "+Inf");
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        let mut b = String::new();
        go_quote(&mut b, "a\"b\\c\n\u{1}\u{85}é\u{a0}");
        assert_eq!(b, r#""a\"b\\c\n\x01\u0085é\u00a0""#);
    }

    #[test]
    fn repeated_annotations_are_kept_once() {
        let mut ann = Annotations::default();
        let m = Labels::new([("__name__", "queue_depth")]).unwrap();
        for _ in 0..3 {
            possible_non_counter(&mut ann, &m);
        }
        assert_eq!(
            ann.infos.iter().collect::<Vec<_>>(),
            [
                "PromQL info: metric might not be a counter, name does not end in \
                 _total/_sum/_count/_bucket: \"queue_depth\""
            ]
        );
        for name in ["a_total", "b_sum", "c_count", "d_bucket"] {
            let mut ann = Annotations::default();
            possible_non_counter(&mut ann, &Labels::new([("__name__", name)]).unwrap());
            assert!(ann.infos.is_empty(), "{name}");
        }
        invalid_quantile(&mut ann, -0.5);
        invalid_quantile(&mut ann, f64::NAN);
        assert!(
            ann.warnings
                .contains("PromQL warning: quantile value should be between 0 and 1, got -0.5")
        );
        assert!(
            ann.warnings
                .contains("PromQL warning: quantile value should be between 0 and 1, got NaN")
        );
        assert_eq!(go_fixed6(1.5), "1.500000");
        assert_eq!(go_fixed6(f64::INFINITY), "+Inf");
    }
}
