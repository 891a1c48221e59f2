//! Functions evaluated once per step over already evaluated arguments: math on every sample,
//! clamping and rounding, scalar helpers, dates, label rewriting, sorting and classic
//! histograms.

use std::cell::Cell;
use std::cmp::Ordering;
use std::sync::Arc;

use regex::Regex;

use super::labels::{check_unique, with_label};
use super::time::{Civil, seconds_of};
use super::{Arg, histogram, native};
use crate::model::histogram::FloatHistogram;
use crate::model::{Labels, METRIC_NAME, is_valid_label_name};
use crate::query::{Annotations, FPoint, QueryError, Sample, Value, Vector};

/// A function of floats applied to every sample's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MathFn {
    /// `abs`.
    Abs,
    /// `ceil`.
    Ceil,
    /// `floor`.
    Floor,
    /// `exp`.
    Exp,
    /// `sqrt`.
    Sqrt,
    /// `ln`.
    Ln,
    /// `log2`.
    Log2,
    /// `log10`.
    Log10,
    /// `sin`.
    Sin,
    /// `cos`.
    Cos,
    /// `tan`.
    Tan,
    /// `asin`.
    Asin,
    /// `acos`.
    Acos,
    /// `atan`.
    Atan,
    /// `sinh`.
    Sinh,
    /// `cosh`.
    Cosh,
    /// `tanh`.
    Tanh,
    /// `asinh`.
    Asinh,
    /// `acosh`.
    Acosh,
    /// `atanh`.
    Atanh,
    /// `deg`: radians to degrees.
    Deg,
    /// `rad`: degrees to radians.
    Rad,
    /// `sgn`: -1, 1, or the value itself for zeros and NaN.
    Sgn,
}

impl MathFn {
    fn apply(self, v: f64) -> f64 {
        use MathFn::*;
        match self {
            Abs => v.abs(),
            Ceil => v.ceil(),
            Floor => v.floor(),
            Exp => v.exp(),
            Sqrt => v.sqrt(),
            Ln => v.ln(),
            Log2 => go_log2(v),
            Log10 => v.ln() * (1.0 / std::f64::consts::LN_10),
            Sin => v.sin(),
            Cos => v.cos(),
            Tan => v.tan(),
            Asin => v.asin(),
            Acos => v.acos(),
            Atan => v.atan(),
            Sinh => v.sinh(),
            Cosh => v.cosh(),
            Tanh => v.tanh(),
            Asinh => v.asinh(),
            Acosh => v.acosh(),
            Atanh => v.atanh(),
            Deg => v * 180.0 / std::f64::consts::PI,
            Rad => v * std::f64::consts::PI / 180.0,
            Sgn => {
                if v < 0.0 {
                    -1.0
                } else if v > 0.0 {
                    1.0
                } else {
                    v
                }
            }
        }
    }
}

/// A calendar function of a timestamp in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateFn {
    /// `day_of_month`.
    DayOfMonth,
    /// `day_of_week` (0 = Sunday).
    DayOfWeek,
    /// `day_of_year`.
    DayOfYear,
    /// `days_in_month`.
    DaysInMonth,
    /// `hour`.
    Hour,
    /// `minute`.
    Minute,
    /// `month`.
    Month,
    /// `year`.
    Year,
}

impl DateFn {
    fn apply(self, secs: i64) -> f64 {
        let c = Civil::from_unix(secs);
        match self {
            DateFn::DayOfMonth => f64::from(c.day),
            DateFn::DayOfWeek => f64::from(c.weekday()),
            DateFn::DayOfYear => f64::from(c.day_of_year()),
            DateFn::DaysInMonth => f64::from(c.days_in_month()),
            DateFn::Hour => f64::from(c.hour),
            DateFn::Minute => f64::from(c.minute),
            DateFn::Month => f64::from(c.month),
            DateFn::Year => c.year as f64,
        }
    }
}

/// A function of one native histogram giving a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NativeFn {
    Count,
    Sum,
    Avg,
    StdDev,
    StdVar,
}

impl NativeFn {
    fn apply(self, h: &FloatHistogram) -> f64 {
        match self {
            NativeFn::Count => h.count,
            NativeFn::Sum => h.sum,
            NativeFn::Avg => h.sum / h.count,
            NativeFn::StdDev => native::histogram_stddev(h),
            NativeFn::StdVar => native::histogram_stdvar(h),
        }
    }
}

/// A function evaluated per step over instant vectors, scalars and strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstantFn {
    /// A math function on every sample (drops the name).
    Math(MathFn),
    /// `round(v, to_nearest=1)`: ties round up.
    Round,
    /// `clamp(v, min, max)`: nothing when `min > max`.
    Clamp,
    /// `clamp_min(v, min)`.
    ClampMin,
    /// `clamp_max(v, max)`.
    ClampMax,
    /// `pi()`.
    Pi,
    /// `time()`: the step in seconds.
    Time,
    /// `min_of(a, b)`: the smaller scalar, NaN if either is.
    MinOf,
    /// `max_of(a, b)`: the larger scalar, NaN if either is.
    MaxOf,
    /// `vector(s)`.
    ToVector,
    /// `scalar(v)`: the only sample's value, otherwise NaN.
    ToScalar,
    /// `timestamp(v)`: each sample's time in seconds.
    Timestamp,
    /// `start_timestamp(v)`: tidemark stores no start timestamps, so always empty.
    StartTimestamp,
    /// `label_replace(v, dst, replacement, src, regex)`.
    LabelReplace,
    /// `label_join(v, dst, separator, src…)`.
    LabelJoin,
    /// `sort(v)`: ascending, NaN last.
    Sort,
    /// `sort_desc(v)`: descending, NaN last.
    SortDesc,
    /// `sort_by_label(v, label…)`: natural order of the label values.
    SortByLabel,
    /// `sort_by_label_desc(v, label…)`.
    SortByLabelDesc,
    /// A calendar function of `v` (seconds), or of the step when called without arguments.
    Date(DateFn),
    /// `histogram_quantile(φ, v)` over classic buckets.
    HistogramQuantile,
    /// `histogram_quantiles(v, label, φ…)` over classic buckets.
    HistogramQuantiles,
    /// `histogram_fraction(lower, upper, v)` over classic buckets.
    HistogramFraction,
    /// `histogram_count`, `histogram_sum`, `histogram_avg`, `histogram_stddev`,
    /// `histogram_stdvar`: a float of each native histogram; floats give nothing.
    NativeHistogram(NativeFn),
}

/// The per-step function called `name`, if it is one (range functions, `absent`, `info` and
/// the query-context functions are not).
pub(crate) fn instant_function(name: &str) -> Option<InstantFn> {
    use InstantFn::*;
    use MathFn::*;
    Some(match name {
        "abs" => Math(Abs),
        "ceil" => Math(Ceil),
        "floor" => Math(Floor),
        "exp" => Math(Exp),
        "sqrt" => Math(Sqrt),
        "ln" => Math(Ln),
        "log2" => Math(Log2),
        "log10" => Math(Log10),
        "sin" => Math(Sin),
        "cos" => Math(Cos),
        "tan" => Math(Tan),
        "asin" => Math(Asin),
        "acos" => Math(Acos),
        "atan" => Math(Atan),
        "sinh" => Math(Sinh),
        "cosh" => Math(Cosh),
        "tanh" => Math(Tanh),
        "asinh" => Math(Asinh),
        "acosh" => Math(Acosh),
        "atanh" => Math(Atanh),
        "deg" => Math(Deg),
        "rad" => Math(Rad),
        "sgn" => Math(Sgn),
        "round" => Round,
        "clamp" => Clamp,
        "clamp_min" => ClampMin,
        "clamp_max" => ClampMax,
        "pi" => Pi,
        "time" => Time,
        "min_of" => MinOf,
        "max_of" => MaxOf,
        "vector" => ToVector,
        "scalar" => ToScalar,
        "timestamp" => Timestamp,
        "start_timestamp" => StartTimestamp,
        "label_replace" => LabelReplace,
        "label_join" => LabelJoin,
        "sort" => Sort,
        "sort_desc" => SortDesc,
        "sort_by_label" => SortByLabel,
        "sort_by_label_desc" => SortByLabelDesc,
        "day_of_month" => Date(DateFn::DayOfMonth),
        "day_of_week" => Date(DateFn::DayOfWeek),
        "day_of_year" => Date(DateFn::DayOfYear),
        "days_in_month" => Date(DateFn::DaysInMonth),
        "hour" => Date(DateFn::Hour),
        "minute" => Date(DateFn::Minute),
        "month" => Date(DateFn::Month),
        "year" => Date(DateFn::Year),
        "histogram_quantile" => HistogramQuantile,
        "histogram_quantiles" => HistogramQuantiles,
        "histogram_fraction" => HistogramFraction,
        "histogram_count" => NativeHistogram(NativeFn::Count),
        "histogram_sum" => NativeHistogram(NativeFn::Sum),
        "histogram_avg" => NativeHistogram(NativeFn::Avg),
        "histogram_stddev" => NativeHistogram(NativeFn::StdDev),
        "histogram_stdvar" => NativeHistogram(NativeFn::StdVar),
        _ => return None,
    })
}

fn bad_args(f: InstantFn) -> QueryError {
    QueryError::Execution(format!("unexpected arguments for function {f:?}"))
}

fn take_vector(args: &mut [Arg], i: usize, f: InstantFn) -> Result<Vector, QueryError> {
    match args.get_mut(i) {
        Some(Arg::Vector(v)) => Ok(std::mem::take(v)),
        _ => Err(bad_args(f)),
    }
}

fn scalar_at(args: &[Arg], i: usize, f: InstantFn) -> Result<f64, QueryError> {
    match args.get(i) {
        Some(Arg::Scalar(s)) => Ok(*s),
        _ => Err(bad_args(f)),
    }
}

fn string_at(args: &[Arg], i: usize, f: InstantFn) -> Result<&str, QueryError> {
    match args.get(i) {
        Some(Arg::String(s)) => Ok(s),
        _ => Err(bad_args(f)),
    }
}

/// Go's `math.Min`: -Inf wins over NaN, NaN over numbers, -0 over +0.
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() { x } else { y }
    } else if x < y {
        x
    } else {
        y
    }
}

/// Go's `math.Max`: +Inf wins over NaN, NaN over numbers, +0 over -0.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && x == y {
        if x.is_sign_negative() { y } else { x }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Splits a finite non-zero `x` into a fraction in [0.5, 1) and a power of two.
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let (mut x, mut exp) = (x, 0);
    if x.abs() < f64::MIN_POSITIVE {
        x *= (1u64 << 52) as f64;
        exp = -52;
    }
    let bits = x.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// Go's `math.Log2`, exact for powers of two.
fn go_log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    frac.ln() * (1.0 / std::f64::consts::LN_2) + f64::from(exp)
}

thread_local! {
    /// Recently compiled `label_replace` regexes: a range query calls it at every step.
    static REGEXES: Cell<Vec<(String, Regex)>> = const { Cell::new(Vec::new()) };
}

/// Forgets the thread's compiled regexes.
pub(super) fn release_regexes() {
    drop(REGEXES.with(Cell::take));
}

/// The anchored regex for `label_replace`, compiled once per thread for repeated patterns.
fn anchored_regex(pattern: &str) -> Result<Regex, regex::Error> {
    REGEXES.with(|cell| {
        let mut cache = cell.take();
        let found = cache
            .iter()
            .find(|(p, _)| p == pattern)
            .map(|(_, r)| r.clone());
        let result = match found {
            Some(r) => Ok(r),
            None => Regex::new(&format!("^(?s:{pattern})$")).inspect(|r| {
                if cache.len() >= 16 {
                    cache.remove(0);
                }
                cache.push((pattern.to_string(), r.clone()));
            }),
        };
        cell.set(cache);
        result
    })
}

fn label_replace(mut v: Vector, args: &[Arg], t: i64) -> Result<Vector, QueryError> {
    let f = InstantFn::LabelReplace;
    let dst = string_at(args, 1, f)?;
    let replacement = string_at(args, 2, f)?;
    let src = string_at(args, 3, f)?;
    let pattern = string_at(args, 4, f)?;
    let re = anchored_regex(pattern).map_err(|_| {
        QueryError::Execution(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !is_valid_label_name(dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let mut expanded = String::new();
    for s in &mut v {
        s.t = t;
        let Some(caps) = re.captures(s.metric.get(src).unwrap_or("")) else {
            continue;
        };
        expanded.clear();
        caps.expand(replacement, &mut expanded);
        s.metric = Arc::new(with_label(&s.metric, dst, &expanded));
        if dst == METRIC_NAME {
            s.drop_name = false;
        }
    }
    check_unique(&v)?;
    Ok(v)
}

fn label_join(mut v: Vector, args: &[Arg], t: i64) -> Result<Vector, QueryError> {
    let f = InstantFn::LabelJoin;
    let dst = string_at(args, 1, f)?;
    let sep = string_at(args, 2, f)?;
    let srcs = (3..args.len())
        .map(|i| string_at(args, i, f))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(bad) = srcs.iter().find(|s| !is_valid_label_name(s)) {
        return Err(QueryError::Execution(format!(
            "invalid source label name in label_join(): {bad}"
        )));
    }
    if !is_valid_label_name(dst) {
        return Err(QueryError::Execution(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut joined = String::new();
    for s in &mut v {
        s.t = t;
        joined.clear();
        for (i, src) in srcs.iter().enumerate() {
            if i > 0 {
                joined.push_str(sep);
            }
            joined.push_str(s.metric.get(src).unwrap_or(""));
        }
        s.metric = Arc::new(with_label(&s.metric, dst, &joined));
        if dst == METRIC_NAME {
            s.drop_name = false;
        }
    }
    check_unique(&v)?;
    Ok(v)
}

/// Ascending by value with NaN after every number.
fn ascending_nan_last(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Descending by value with NaN after every number.
fn descending_nan_last(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        _ => ascending_nan_last(a, b),
    }
}

/// Natural order of label values as Prometheus's `sort_by_label` uses it: runs of ASCII digits
/// compare as numbers, everything else byte-wise, a value that is a prefix of another comes
/// first. Values equal under that order (`01` and `1`) fall back to byte order so that the
/// order is total.
pub(super) fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> impl Iterator<Item = &str> {
        let bytes = s.as_bytes();
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= bytes.len() {
                return None;
            }
            let digit = bytes[start].is_ascii_digit();
            let len = bytes[start..]
                .iter()
                .position(|c| c.is_ascii_digit() != digit)
                .unwrap_or(bytes.len() - start);
            // Digit runs are ASCII, so both ends fall on character boundaries.
            let chunk = s.get(start..start + len).unwrap_or("");
            start += len;
            Some(chunk)
        })
    }
    fn numeric(s: &str) -> Option<&str> {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.trim_start_matches('0'))
    }
    let (mut ca, mut cb) = (chunks(a), chunks(b));
    loop {
        let ord = match (ca.next(), cb.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match (numeric(x), numeric(y)) {
                (Some(nx), Some(ny)) => nx.len().cmp(&ny.len()).then_with(|| nx.cmp(ny)),
                _ => x.cmp(y),
            },
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

fn sort_by_label(v: &mut Vector, labels: &[&str], descending: bool) {
    v.sort_by(|a, b| {
        let ord = labels
            .iter()
            .map(|l| {
                let (x, y) = (a.metric.get(l).unwrap_or(""), b.metric.get(l).unwrap_or(""));
                if x == y {
                    Ordering::Equal
                } else {
                    natural_cmp(x, y)
                }
            })
            .find(|o| *o != Ordering::Equal)
            .unwrap_or_else(|| a.metric.cmp(&b.metric));
        if descending { ord.reverse() } else { ord }
    });
}

/// Sets every sample's value with `op`, marks it for name removal and stamps it with the step.
/// Histogram samples are left out: these functions are defined on floats only.
fn map_values(mut v: Vector, t: i64, op: impl Fn(f64) -> f64) -> Vector {
    if v.iter().any(|s| s.h.is_some()) {
        v.retain(|s| s.h.is_none());
    }
    for s in &mut v {
        s.f = op(s.f);
        s.t = t;
        s.drop_name = true;
    }
    v
}

fn scalar(t: i64, f: f64) -> Value {
    Value::Scalar(FPoint { t, f })
}

/// Evaluates the per-step function `f` at step `t` (ms).
pub(crate) fn eval_instant_fn(
    f: InstantFn,
    mut args: Vec<Arg>,
    t: i64,
    ann: &mut Annotations,
) -> Result<Value, QueryError> {
    use InstantFn::*;
    let v = match f {
        Pi => return Ok(scalar(t, std::f64::consts::PI)),
        Time => return Ok(scalar(t, t as f64 / 1000.0)),
        MinOf | MaxOf => {
            let (a, b) = (scalar_at(&args, 0, f)?, scalar_at(&args, 1, f)?);
            let r = if f == MinOf {
                go_min(a, b)
            } else {
                go_max(a, b)
            };
            return Ok(scalar(t, r));
        }
        ToScalar => {
            let v = take_vector(&mut args, 0, f)?;
            let mut floats = v.iter().filter(|s| s.h.is_none());
            let r = match (floats.next(), floats.next()) {
                (Some(s), None) => s.f,
                _ => f64::NAN,
            };
            return Ok(scalar(t, r));
        }
        ToVector => vec![Sample {
            h: None,
            metric: Arc::new(Labels::empty()),
            t,
            f: scalar_at(&args, 0, f)?,
            drop_name: false,
        }],
        Math(m) => map_values(take_vector(&mut args, 0, f)?, t, |x| m.apply(x)),
        Round => {
            let to_nearest = match args.len() {
                1 => 1.0,
                _ => scalar_at(&args, 1, f)?,
            };
            // Multiplying by the inverse loses less precision than dividing.
            let inverse = 1.0 / to_nearest;
            map_values(take_vector(&mut args, 0, f)?, t, |x| {
                (x * inverse + 0.5).floor() / inverse
            })
        }
        Clamp | ClampMin | ClampMax => {
            let (lo, hi) = match f {
                Clamp => (scalar_at(&args, 1, f)?, scalar_at(&args, 2, f)?),
                ClampMin => (scalar_at(&args, 1, f)?, f64::INFINITY),
                _ => (f64::NEG_INFINITY, scalar_at(&args, 1, f)?),
            };
            let v = take_vector(&mut args, 0, f)?;
            if hi < lo {
                Vec::new()
            } else {
                map_values(v, t, |x| go_max(lo, go_min(hi, x)))
            }
        }
        Timestamp => {
            let mut v = take_vector(&mut args, 0, f)?;
            for s in &mut v {
                s.f = s.t as f64 / 1000.0;
                s.h = None;
                s.t = t;
                s.drop_name = true;
            }
            v
        }
        StartTimestamp => {
            take_vector(&mut args, 0, f)?;
            Vec::new()
        }
        NativeHistogram(n) => {
            let v = take_vector(&mut args, 0, f)?;
            v.into_iter()
                .filter_map(|s| {
                    let h = s.h?;
                    Some(Sample {
                        f: n.apply(&h),
                        h: None,
                        t,
                        drop_name: true,
                        metric: s.metric,
                    })
                })
                .collect()
        }
        LabelReplace => label_replace(take_vector(&mut args, 0, f)?, &args, t)?,
        LabelJoin => label_join(take_vector(&mut args, 0, f)?, &args, t)?,
        Sort | SortDesc => {
            let mut v = take_vector(&mut args, 0, f)?;
            v.retain(|s| s.h.is_none());
            let cmp = if f == Sort {
                ascending_nan_last
            } else {
                descending_nan_last
            };
            v.sort_by(|a, b| cmp(a.f, b.f));
            v.iter_mut().for_each(|s| s.t = t);
            v
        }
        SortByLabel | SortByLabelDesc => {
            let mut v = take_vector(&mut args, 0, f)?;
            let labels = (1..args.len())
                .map(|i| string_at(&args, i, f))
                .collect::<Result<Vec<_>, _>>()?;
            sort_by_label(&mut v, &labels, f == SortByLabelDesc);
            v.iter_mut().for_each(|s| s.t = t);
            v
        }
        Date(d) => {
            if args.is_empty() {
                vec![Sample {
                    h: None,
                    metric: Arc::new(Labels::empty()),
                    t,
                    f: d.apply(t / 1000),
                    drop_name: false,
                }]
            } else {
                map_values(take_vector(&mut args, 0, f)?, t, |x| d.apply(seconds_of(x)))
            }
        }
        HistogramQuantile => {
            let q = scalar_at(&args, 0, f)?;
            histogram::histogram_quantile(q, &take_vector(&mut args, 1, f)?, t, ann)
        }
        HistogramQuantiles => {
            let v = take_vector(&mut args, 0, f)?;
            let label = string_at(&args, 1, f)?;
            let qs = (2..args.len())
                .map(|i| scalar_at(&args, i, f))
                .collect::<Result<Vec<_>, _>>()?;
            histogram::histogram_quantiles(&v, label, &qs, t, ann)?
        }
        HistogramFraction => {
            let (lower, upper) = (scalar_at(&args, 0, f)?, scalar_at(&args, 1, f)?);
            histogram::histogram_fraction(lower, upper, &take_vector(&mut args, 2, f)?, t, ann)
        }
    };
    Ok(Value::Vector(v))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Arg, eval_instant};
    use super::*;

    const T: i64 = 61_234;

    fn run(name: &str, args: Vec<Arg>) -> Result<(Value, Annotations), QueryError> {
        let mut ann = Annotations::default();
        eval_instant(name, args, T, &mut ann).map(|v| (v, ann))
    }

    fn vector(name: &str, args: Vec<Arg>) -> Vector {
        match run(name, args).unwrap().0 {
            Value::Vector(v) => v,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn scalar_of(name: &str, args: Vec<Arg>) -> f64 {
        match run(name, args).unwrap().0 {
            Value::Scalar(p) => {
                assert_eq!(p.t, T);
                p.f
            }
            other => panic!("{name}: {other:?}"),
        }
    }

    /// One sample per value, labelled `type="<index>"`, with a stored timestamp.
    fn typed(values: &[f64]) -> Vector {
        values
            .iter()
            .enumerate()
            .map(|(i, &f)| sample(&[("__name__", "data"), ("type", &i.to_string())], f, 5_000))
            .collect()
    }

    fn values(v: &Vector) -> Vec<f64> {
        v.iter().map(|s| s.f).collect()
    }

    #[track_caller]
    fn assert_values(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, *w), "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn math_functions_drop_the_name_and_take_the_step_time() {
        let inf = f64::INFINITY;
        let input = [2.5, 2.0, -2.5, -2.0, 0.0, -0.0, inf, -inf, f64::NAN];
        for (name, want) in [
            ("abs", [2.5, 2.0, 2.5, 2.0, 0.0, 0.0, inf, inf, f64::NAN]),
            (
                "ceil",
                [3.0, 2.0, -2.0, -2.0, 0.0, 0.0, inf, -inf, f64::NAN],
            ),
            (
                "floor",
                [2.0, 2.0, -3.0, -2.0, 0.0, 0.0, inf, -inf, f64::NAN],
            ),
            (
                "round",
                [3.0, 2.0, -2.0, -2.0, 0.0, 0.0, inf, -inf, f64::NAN],
            ),
            ("sgn", [1.0, 1.0, -1.0, -1.0, 0.0, 0.0, 1.0, -1.0, f64::NAN]),
        ] {
            let out = vector(name, vec![Arg::Vector(typed(&input))]);
            assert_values(&values(&out), &want);
            assert!(out.iter().all(|s| s.drop_name && s.t == T), "{name}");
            assert_eq!(out[3].metric.get("type"), Some("3"));
        }
        for (name, want) in [
            ("exp", [22026.465794806718, 485165195.4097903]),
            ("ln", [std::f64::consts::LN_10, 2.995732273553991]),
            ("sqrt", [3.1622776601683795, 4.47213595499958]),
            ("log2", [3.3219280948873626, 4.321928094887363]),
            ("log10", [1.0, 1.301029995663981]),
            ("sin", [-0.5440211108893699, 0.9129452507276277]),
            ("cos", [-0.8390715290764524, 0.40808206181339196]),
            ("tan", [0.6483608274590867, 2.2371609442247427]),
            ("atan", [1.4711276743037345, 1.5208379310729538]),
            // The script lists cosh(10) for sinh(10) too; its 1e-6 tolerance hides that.
            ("sinh", [11013.232874703393, 2.4258259770489514e+08]),
            ("cosh", [11013.232920103324, 2.4258259770489514e+08]),
            ("tanh", [0.9999999958776927, 1.0]),
            ("asinh", [2.99822295029797, 3.6895038689889055]),
            ("acosh", [2.993222846126381, 3.6882538673612966]),
            ("deg", [572.9577951308232, 1145.9155902616465]),
            ("rad", [0.17453292519943295, 0.3490658503988659]),
        ] {
            let out = vector(name, vec![Arg::Vector(typed(&[10.0, 20.0]))]);
            assert_values(&values(&out), &want);
        }
        let out = vector("asin", vec![Arg::Vector(typed(&[-0.1, 9.9]))]);
        assert_values(&values(&out), &[-0.10016742116155944, f64::NAN]);
        let out = vector("acos", vec![Arg::Vector(typed(&[-0.1]))]);
        assert_values(&values(&out), &[1.670963747956456]);
        let out = vector("atanh", vec![Arg::Vector(typed(&[0.5, 1.0, 2.0]))]);
        assert_values(
            &values(&out),
            &[0.5493061443340548, f64::INFINITY, f64::NAN],
        );
        let out = vector("ln", vec![Arg::Vector(typed(&[0.0, -10.0]))]);
        assert_values(&values(&out), &[-f64::INFINITY, f64::NAN]);
        // Go's formulas: exact powers of two, and log10 through ln.
        let out = vector(
            "log2",
            vec![Arg::Vector(typed(&[0.125, 1024.0, 5e-324, -1.0]))],
        );
        assert_values(&values(&out), &[-3.0, 10.0, -1074.0, f64::NAN]);
        assert_eq!(scalar_of("pi", vec![]), std::f64::consts::PI);
    }

    #[test]
    fn round_to_nearest_and_clamp() {
        let out = vector(
            "round",
            vec![
                Arg::Vector(typed(&[7.3, 12.5, -12.5, 0.047])),
                Arg::Scalar(5.0),
            ],
        );
        assert_values(&values(&out), &[5.0, 15.0, -10.0, 0.0]);
        let out = vector(
            "round",
            vec![Arg::Vector(typed(&[0.047, 1.23456])), Arg::Scalar(0.01)],
        );
        assert_values(&values(&out), &[0.05, 1.23]);
        let data = || Arg::Vector(typed(&[-50.0, 0.0, 100.0]));
        let clamp = |name: &str, bounds: &[f64]| {
            let mut args = vec![data()];
            args.extend(bounds.iter().map(|&b| Arg::Scalar(b)));
            values(&vector(name, args))
        };
        assert_values(&clamp("clamp_max", &[75.0]), &[-50.0, 0.0, 75.0]);
        assert_values(&clamp("clamp_min", &[-25.0]), &[-25.0, 0.0, 100.0]);
        assert_values(&clamp("clamp", &[-25.0, 75.0]), &[-25.0, 0.0, 75.0]);
        assert_values(&clamp("clamp", &[0.0, f64::NAN]), &[f64::NAN; 3]);
        assert_values(&clamp("clamp", &[f64::NAN, 0.0]), &[f64::NAN; 3]);
        assert_values(&clamp("clamp", &[5.0, -5.0]), &[]);
        assert_values(&clamp("clamp_min", &[f64::INFINITY]), &[f64::INFINITY; 3]);
    }

    #[test]
    fn scalar_helpers() {
        assert_eq!(scalar_of("time", vec![]), 61.234);
        for (name, a, b, want) in [
            ("min_of", 3.0, 5.0, 3.0),
            ("min_of", -2.0, -5.0, -5.0),
            ("max_of", 3.0, 5.0, 5.0),
            ("max_of", 0.0, 1.0, 1.0),
            ("min_of", f64::NAN, 3.0, f64::NAN),
            ("max_of", 3.0, f64::NAN, f64::NAN),
            ("max_of", f64::NAN, f64::INFINITY, f64::INFINITY),
            ("min_of", f64::NEG_INFINITY, f64::NAN, f64::NEG_INFINITY),
        ] {
            let got = scalar_of(name, vec![Arg::Scalar(a), Arg::Scalar(b)]);
            assert!(close(got, want), "{name}({a}, {b}) = {got}");
        }
        assert!(scalar_of("max_of", vec![Arg::Scalar(-0.0), Arg::Scalar(0.0)]).is_sign_positive());
        assert!(scalar_of("min_of", vec![Arg::Scalar(0.0), Arg::Scalar(-0.0)]).is_sign_negative());
        assert!(scalar_of("scalar", vec![Arg::Vector(typed(&[1.0, 2.0]))]).is_nan());
        assert!(scalar_of("scalar", vec![Arg::Vector(vec![])]).is_nan());
        assert_eq!(scalar_of("scalar", vec![Arg::Vector(typed(&[-4.5]))]), -4.5);
        let v = vector("vector", vec![Arg::Scalar(7.5)]);
        assert_eq!(v.len(), 1);
        assert!(v[0].metric.is_empty() && !v[0].drop_name && v[0].t == T && v[0].f == 7.5);
    }

    #[test]
    fn timestamp_reports_each_samples_own_time() {
        let mut input = typed(&[3.0, 4.0]);
        input[1].t = 1_453;
        let out = vector("timestamp", vec![Arg::Vector(input)]);
        assert_values(&values(&out), &[5.0, 1.453]);
        assert!(out.iter().all(|s| s.drop_name && s.t == T));
        assert!(vector("start_timestamp", vec![Arg::Vector(typed(&[1.0]))]).is_empty());
        assert!(vector("histogram_count", vec![Arg::Vector(typed(&[1.0]))]).is_empty());
        assert!(vector("histogram_stddev", vec![Arg::Vector(typed(&[1.0]))]).is_empty());
    }

    #[test]
    fn date_functions() {
        let at = |name: &str, secs: f64| {
            let out = vector(name, vec![Arg::Vector(typed(&[secs]))]);
            assert!(out[0].drop_name);
            out[0].f
        };
        assert_eq!(at("year", 1_136_239_445.0), 2006.0);
        assert_eq!(at("month", 1_136_239_445.0), 1.0);
        assert_eq!(at("day_of_month", 1_136_239_445.0), 2.0);
        assert_eq!(at("day_of_year", 1_136_239_445.0), 2.0);
        assert_eq!(at("day_of_week", 1_136_239_445.0), 1.0);
        assert_eq!(at("hour", 1_136_239_445.0), 22.0);
        assert_eq!(at("minute", 1_136_239_445.9), 4.0);
        assert_eq!(at("days_in_month", 1_454_284_800.0), 29.0);
        assert_eq!(at("days_in_month", 1_485_907_200.0), 28.0);
        assert_eq!(
            at("month", 1_456_790_399.0) + at("day_of_month", 1_456_790_399.0) / 100.0,
            2.29
        );
        // Without an argument: the step, as vector(time()) with no labels.
        let mut ann = Annotations::default();
        let Value::Vector(v) = eval_instant("day_of_week", vec![], 0, &mut ann).unwrap() else {
            panic!("not a vector");
        };
        assert_eq!(
            (v[0].f, v[0].metric.is_empty(), v[0].drop_name),
            (4.0, true, false)
        );
        let Value::Vector(v) = eval_instant("hour", vec![], 7_199_999, &mut ann).unwrap() else {
            panic!("not a vector");
        };
        assert_eq!(v[0].f, 1.0);
    }

    fn testmetric() -> Vector {
        vec![
            sample(
                &[
                    ("__name__", "testmetric"),
                    ("src", "source-value-10"),
                    ("dst", "original-destination-value"),
                ],
                0.0,
                1,
            ),
            sample(
                &[
                    ("__name__", "testmetric"),
                    ("src", "source-value-20"),
                    ("dst", "original-destination-value"),
                ],
                1.0,
                1,
            ),
        ]
    }

    fn replace(dst: &str, repl: &str, src: &str, re: &str) -> Result<Vector, QueryError> {
        let args = vec![
            Arg::Vector(testmetric()),
            Arg::String(dst.into()),
            Arg::String(repl.into()),
            Arg::String(src.into()),
            Arg::String(re.into()),
        ];
        run("label_replace", args).map(|(v, _)| match v {
            Value::Vector(v) => v,
            other => panic!("{other:?}"),
        })
    }

    fn label(v: &Vector, name: &str) -> Vec<Option<String>> {
        v.iter()
            .map(|s| s.metric.get(name).map(String::from))
            .collect()
    }

    #[test]
    fn label_replace_matches_whole_values() {
        let some = |a: &str, b: &str| vec![Some(a.to_string()), Some(b.to_string())];
        let orig = some("original-destination-value", "original-destination-value");
        let out = replace("dst", "destination-value-$1", "src", "source-value-(.*)").unwrap();
        assert_eq!(
            label(&out, "dst"),
            some("destination-value-10", "destination-value-20")
        );
        assert!(out.iter().all(|s| s.t == T && !s.drop_name));
        assert_eq!(out[0].metric.get("__name__"), Some("testmetric"));
        let out = replace("dst", "destination-value-$1", "src", "value-(.*)").unwrap();
        assert_eq!(label(&out, "dst"), orig);
        let out = replace("dst", "$1-value-$2", "src", "(.*)-value-(.*)").unwrap();
        assert_eq!(
            label(&out, "dst"),
            some("source-value-10", "source-value-20")
        );
        let out = replace("dst", "value-$1", "nonexistent-src", "source-value-(.*)").unwrap();
        assert_eq!(label(&out, "dst"), orig);
        let out = replace("dst", "value-$1", "nonexistent-src", "(.*)").unwrap();
        assert_eq!(label(&out, "dst"), some("value-", "value-"));
        let out = replace("dst", "", "dst", ".*").unwrap();
        assert_eq!(label(&out, "dst"), [None, None]);
        let out = replace("new", "${1}x$$", "src", "source-value-(\\d)0").unwrap();
        assert_eq!(label(&out, "new"), some("1x$", "2x$"));
        let out = replace("__name__", "renamed", "src", ".*").unwrap();
        assert!(
            out.iter()
                .all(|s| !s.drop_name && s.metric.metric_name() == Some("renamed"))
        );
        // A newline inside the value still matches `.`.
        let mut v = testmetric();
        v.truncate(1);
        v[0].metric = Arc::new(with_label(&v[0].metric, "src", "a\nb"));
        v[0].drop_name = true;
        let args = vec![
            Arg::Vector(v),
            Arg::String("dst".into()),
            Arg::String("$1".into()),
            Arg::String("src".into()),
            Arg::String("(.*)".into()),
        ];
        let Value::Vector(out) = run("label_replace", args).unwrap().0 else {
            panic!("not a vector")
        };
        assert_eq!(out[0].metric.get("dst"), Some("a\nb"));
        assert!(out[0].drop_name);
    }

    #[test]
    fn label_replace_errors_read_like_prometheus() {
        let err = replace("dst", "value-$1", "src", "(.*").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid regular expression in label_replace(): (.*"
        );
        let err = replace("\u{ff}", "", "src", "(.*)").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid destination label name in label_replace(): \u{ff}"
        );
        let err = replace("src", "", "", "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "vector cannot contain metrics with the same labelset"
        );
    }

    #[test]
    fn label_join_concatenates_in_order() {
        let m = |src: &str, src1: &str, src2: &str, f: f64| {
            sample(
                &[
                    ("__name__", "testmetric"),
                    ("src", src),
                    ("src1", src1),
                    ("src2", src2),
                ],
                f,
                1,
            )
        };
        let join = |dst: &str, sep: &str, srcs: &[&str]| {
            let mut args = vec![
                Arg::Vector(vec![m("a", "b", "c", 0.0), m("d", "e", "f", 1.0)]),
                Arg::String(dst.into()),
                Arg::String(sep.into()),
            ];
            args.extend(srcs.iter().map(|s| Arg::String(s.to_string())));
            run("label_join", args).map(|(v, _)| match v {
                Value::Vector(v) => label(&v, dst),
                other => panic!("{other:?}"),
            })
        };
        let some = |a: &str, b: &str| vec![Some(a.to_string()), Some(b.to_string())];
        assert_eq!(
            join("dst", "-", &["src", "src1", "src2"]).unwrap(),
            some("a-b-c", "d-e-f")
        );
        assert_eq!(
            join("dst", "-", &["src", "src3", "src1"]).unwrap(),
            some("a--b", "d--e")
        );
        assert_eq!(join("dst", "", &["emptysrc", "e1"]).unwrap(), [None, None]);
        assert_eq!(join("dst", ", ", &[]).unwrap(), [None, None]);
        assert_eq!(
            join("src", ",", &["src", "src"]).unwrap(),
            some("a,a", "d,d")
        );
        let err = join("dst", "-", &["src", "bad-name"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid source label name in label_join(): bad-name"
        );
        let err = join("", "-", &["src"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid destination label name in label_join(): "
        );
        let dup = vec![
            sample(
                &[("__name__", "dup"), ("label", "a"), ("this", "a")],
                1.0,
                1,
            ),
            sample(
                &[("__name__", "dup"), ("label", "b"), ("this", "a")],
                1.0,
                1,
            ),
        ];
        let args = vec![
            Arg::Vector(dup),
            Arg::String("label".into()),
            Arg::String("".into()),
            Arg::String("this".into()),
        ];
        let err = run("label_join", args).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vector cannot contain metrics with the same labelset"
        );
    }

    #[test]
    fn sort_by_value_puts_nan_last() {
        let input = typed(&[300.0, f64::NAN, -7.5, 800.0, 0.25, f64::NAN, 100.0]);
        let out = vector("sort", vec![Arg::Vector(input.clone())]);
        assert_values(
            &values(&out),
            &[-7.5, 0.25, 100.0, 300.0, 800.0, f64::NAN, f64::NAN],
        );
        assert!(out.iter().all(|s| s.t == T && !s.drop_name));
        let out = vector("sort_desc", vec![Arg::Vector(input)]);
        assert_values(
            &values(&out),
            &[800.0, 300.0, 100.0, 0.25, -7.5, f64::NAN, f64::NAN],
        );
    }

    fn sorted_by_label(name: &str, input: Vector, labels: &[&str], show: &str) -> Vec<String> {
        let mut args = vec![Arg::Vector(input)];
        args.extend(labels.iter().map(|l| Arg::String(l.to_string())));
        vector(name, args)
            .iter()
            .map(|s| {
                show.split(',')
                    .map(|l| s.metric.get(l).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    }

    #[test]
    fn sort_by_label_uses_natural_order() {
        let cpus: Vector = ["0", "1", "2", "3", "10", "11", "12", "20", "21", "100"]
            .iter()
            .rev()
            .map(|c| sample(&[("__name__", "cpu_time_total"), ("cpu", c)], 100.0, 1))
            .collect();
        assert_eq!(
            sorted_by_label("sort_by_label", cpus, &["cpu"], "cpu"),
            ["0", "1", "2", "3", "10", "11", "12", "20", "21", "100"]
        );
        let uname = || -> Vector {
            [("4m600", "1.2.3"), ("4m5", "1.11.3"), ("4m1000", "1.111.3")]
                .iter()
                .map(|(i, r)| sample(&[("instance", i), ("release", r)], 1.0, 1))
                .collect()
        };
        assert_eq!(
            sorted_by_label("sort_by_label", uname(), &["instance"], "instance"),
            ["4m5", "4m600", "4m1000"]
        );
        assert_eq!(
            sorted_by_label("sort_by_label", uname(), &["release"], "release"),
            ["1.2.3", "1.11.3", "1.111.3"]
        );
        let requests = || -> Vector {
            [
                ("production", "0", "api-server"),
                ("production", "1", "api-server"),
                ("canary", "0", "api-server"),
                ("canary", "1", "api-server"),
                ("canary", "2", "api-server"),
                ("production", "0", "app-server"),
                ("production", "1", "app-server"),
                ("canary", "0", "app-server"),
                ("canary", "1", "app-server"),
                ("production", "2", "api-server"),
            ]
            .iter()
            .map(|(g, i, j)| sample(&[("group", g), ("instance", i), ("job", j)], 1.0, 1))
            .collect()
        };
        let show = "group,instance,job";
        let by_instance = sorted_by_label("sort_by_label", requests(), &["instance"], show);
        assert_eq!(
            by_instance,
            [
                "canary/0/api-server",
                "canary/0/app-server",
                "production/0/api-server",
                "production/0/app-server",
                "canary/1/api-server",
                "canary/1/app-server",
                "production/1/api-server",
                "production/1/app-server",
                "canary/2/api-server",
                "production/2/api-server",
            ]
        );
        let desc = sorted_by_label("sort_by_label_desc", requests(), &["instance"], show);
        assert_eq!(desc, by_instance.iter().rev().cloned().collect::<Vec<_>>());
        let by_job = sorted_by_label(
            "sort_by_label",
            requests(),
            &["job", "instance", "group"],
            show,
        );
        assert_eq!(
            &by_job[..4],
            [
                "canary/0/api-server",
                "production/0/api-server",
                "canary/1/api-server",
                "production/1/api-server"
            ]
        );
    }

    #[test]
    fn natural_order_is_total() {
        use std::cmp::Ordering::*;
        assert_eq!(natural_cmp("a9", "a10"), Less);
        assert_eq!(natural_cmp("a10b", "a10a"), Greater);
        assert_eq!(natural_cmp("x", "x1"), Less);
        assert_eq!(natural_cmp("", "a"), Less);
        assert_eq!(natural_cmp("01", "1"), Less);
        assert_eq!(natural_cmp("1", "01"), Greater);
        // Longer than any integer type, still numeric.
        assert_eq!(natural_cmp("2", "100000000000000000000000"), Less);
        assert_eq!(
            natural_cmp("v99999999999999999999", "v100000000000000000000"),
            Less
        );
        // Digits against other characters compare as bytes.
        assert_eq!(natural_cmp("1a", "-a"), Greater);
        assert_eq!(natural_cmp("a1", "a-"), Less);
        assert_eq!(natural_cmp("é2", "é10"), Less);
        let mut words = vec!["b", "a10", "", "a9", "10", "9", "a", "01", "1", "a09", "Z"];
        words.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            words,
            ["", "01", "1", "9", "10", "Z", "a", "a09", "a9", "a10", "b"]
        );
    }

    #[test]
    fn wrong_arguments_are_errors_not_panics() {
        assert!(run("abs", vec![Arg::Scalar(1.0)]).is_err());
        assert!(run("clamp", vec![Arg::Vector(vec![]), Arg::Scalar(1.0)]).is_err());
        assert!(run("label_join", vec![Arg::Vector(vec![])]).is_err());
        assert!(run("histogram_quantile", vec![]).is_err());
        let err = run("absent", vec![Arg::Vector(vec![])]).unwrap_err();
        assert!(matches!(err, QueryError::Execution(_)));
        assert!(instant_function("rate").is_none());
    }

    mod props {
        use super::super::natural_cmp;
        use proptest::prelude::*;
        use std::cmp::Ordering;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn natural_order_is_a_total_order(
                words in prop::collection::vec("[a0-9é.-]{0,6}", 3..30),
            ) {
                for a in &words {
                    prop_assert_eq!(natural_cmp(a, a), Ordering::Equal);
                    for b in &words {
                        let ab = natural_cmp(a, b);
                        prop_assert_eq!(ab, natural_cmp(b, a).reverse());
                        prop_assert_eq!(ab == Ordering::Equal, a == b);
                        for c in &words {
                            if ab != Ordering::Greater && natural_cmp(b, c) != Ordering::Greater {
                                prop_assert_ne!(natural_cmp(a, c), Ordering::Greater);
                            }
                        }
                    }
                }
            }
        }
    }
}
