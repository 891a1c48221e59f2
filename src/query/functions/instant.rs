//! Functions evaluated once per step over already evaluated arguments: math on every sample,
//! clamping and rounding, scalar helpers, dates, label rewriting, sorting and classic
//! histograms.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

use regex::Regex;

use super::time::{Civil, seconds_of};
use super::{Arg, histogram};
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
    /// `histogram_stdvar`: they read native histograms only, so floats give nothing.
    NativeHistogramOnly,
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
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => NativeHistogramOnly,
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

/// `l` with label `name` set to `value` (removed when `value` is empty). Names are not
/// re-validated: callers check the one they set.
pub(super) fn with_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut pairs = Vec::with_capacity(l.len() + 1);
    let mut placed = value.is_empty();
    for (n, v) in l.iter() {
        if n == name {
            continue;
        }
        if !placed && n > name {
            pairs.push((name.to_string(), value.to_string()));
            placed = true;
        }
        pairs.push((n.to_string(), v.to_string()));
    }
    if !placed {
        pairs.push((name.to_string(), value.to_string()));
    }
    Labels::from_sorted_unchecked(pairs)
}

/// Fails as Prometheus does when two samples of one step share a label set.
pub(super) fn check_unique(v: &Vector) -> Result<(), QueryError> {
    let mut seen = HashSet::with_capacity(v.len());
    if v.iter().all(|s| seen.insert(&*s.metric)) {
        Ok(())
    } else {
        Err(QueryError::Execution(
            "vector cannot contain metrics with the same labelset".into(),
        ))
    }
}

thread_local! {
    /// Recently compiled `label_replace` regexes: a range query calls it at every step.
    static REGEXES: Cell<Vec<(String, Regex)>> = const { Cell::new(Vec::new()) };
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
fn map_values(mut v: Vector, t: i64, op: impl Fn(f64) -> f64) -> Vector {
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
            let r = if v.len() == 1 { v[0].f } else { f64::NAN };
            return Ok(scalar(t, r));
        }
        ToVector => vec![Sample {
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
                s.t = t;
                s.drop_name = true;
            }
            v
        }
        StartTimestamp | NativeHistogramOnly => {
            take_vector(&mut args, 0, f)?;
            Vec::new()
        }
        LabelReplace => label_replace(take_vector(&mut args, 0, f)?, &args, t)?,
        LabelJoin => label_join(take_vector(&mut args, 0, f)?, &args, t)?,
        Sort | SortDesc => {
            let mut v = take_vector(&mut args, 0, f)?;
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
