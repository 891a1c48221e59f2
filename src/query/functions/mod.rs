//! PromQL's function library over floats: functions of a range vector evaluated per window, and
//! functions of instant vectors and scalars evaluated per step, with the warnings and infos
//! Prometheus raises for them (same wording, without the position suffix).
//!
//! It owns the arithmetic (Prometheus's extrapolation, Kahan sums, quantiles, classic-histogram
//! bucket interpolation), label rewriting for `label_replace`/`label_join`, and the ordering of
//! the `sort*` functions. It must never read storage or know about selectors and steps:
//! `absent`, `absent_over_time` and `start()/end()/step()/range()` live in the evaluator, which
//! also decides which windows exist. Range functions must not allocate per window.

pub(crate) mod annotate;
mod histogram;
mod hrange;
mod instant;
mod labels;
mod native;
mod range;
mod time;

use super::{Annotations, FPoint, QueryError, Value, Vector};
use crate::model::Labels;

pub(crate) use hrange::{RangeOut, eval_range_mixed, hist_equals};
pub(crate) use instant::{InstantFn, eval_instant_fn, instant_function};
pub(crate) use range::{Span, extrapolated_rate, has_decrease};

/// Drops what the library keeps per thread between calls (sorting space, formatting space,
/// compiled `label_replace` regexes), so a query thread kept for the next query holds no
/// more memory than a new one.
pub(crate) fn release_thread_caches() {
    range::release_scratch();
    annotate::release_text();
    instant::release_regexes();
}

/// A function over a range vector (`rate`, `*_over_time`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeFn {
    /// `rate`: per-second increase, extrapolated, counter resets handled.
    Rate,
    /// `increase`: as `rate`, not divided by the range.
    Increase,
    /// `delta`: extrapolated difference of a gauge.
    Delta,
    /// `irate`: per-second rate of the last two points.
    Irate,
    /// `idelta`: difference of the last two points.
    Idelta,
    /// `deriv`: least-squares slope per second.
    Deriv,
    /// `predict_linear(v, t)`: least-squares value `t` seconds after the step.
    PredictLinear,
    /// `resets`: number of decreases.
    Resets,
    /// `changes`: number of value changes.
    Changes,
    /// `avg_over_time`.
    AvgOverTime,
    /// `sum_over_time`.
    SumOverTime,
    /// `count_over_time`.
    CountOverTime,
    /// `min_over_time`.
    MinOverTime,
    /// `max_over_time`.
    MaxOverTime,
    /// `last_over_time` (keeps the name).
    LastOverTime,
    /// `first_over_time` (keeps the name).
    FirstOverTime,
    /// `ts_of_first_over_time`: timestamp in seconds of the first point.
    TsOfFirstOverTime,
    /// `ts_of_last_over_time`: timestamp in seconds of the last point.
    TsOfLastOverTime,
    /// `ts_of_min_over_time`: timestamp of the (last) minimum.
    TsOfMinOverTime,
    /// `ts_of_max_over_time`: timestamp of the (last) maximum.
    TsOfMaxOverTime,
    /// `present_over_time`: 1 for any point.
    PresentOverTime,
    /// `quantile_over_time(φ, v)`.
    QuantileOverTime,
    /// `stddev_over_time`: population standard deviation.
    StddevOverTime,
    /// `stdvar_over_time`: population variance.
    StdvarOverTime,
    /// `mad_over_time`: median absolute deviation.
    MadOverTime,
    /// `double_exponential_smoothing(v, sf, tf)` (Holt linear).
    DoubleExponentialSmoothing,
}

impl RangeFn {
    /// Whether the result keeps the input's metric name (`last_over_time`, `first_over_time`).
    pub(crate) fn keeps_name(self) -> bool {
        matches!(self, RangeFn::LastOverTime | RangeFn::FirstOverTime)
    }
}

/// The range function called `name`, if it is one.
pub(crate) fn range_function(name: &str) -> Option<RangeFn> {
    use RangeFn::*;
    Some(match name {
        "rate" => Rate,
        "increase" => Increase,
        "delta" => Delta,
        "irate" => Irate,
        "idelta" => Idelta,
        "deriv" => Deriv,
        "predict_linear" => PredictLinear,
        "resets" => Resets,
        "changes" => Changes,
        "avg_over_time" => AvgOverTime,
        "sum_over_time" => SumOverTime,
        "count_over_time" => CountOverTime,
        "min_over_time" => MinOverTime,
        "max_over_time" => MaxOverTime,
        "last_over_time" => LastOverTime,
        "first_over_time" => FirstOverTime,
        "ts_of_first_over_time" => TsOfFirstOverTime,
        "ts_of_last_over_time" => TsOfLastOverTime,
        "ts_of_min_over_time" => TsOfMinOverTime,
        "ts_of_max_over_time" => TsOfMaxOverTime,
        "present_over_time" => PresentOverTime,
        "quantile_over_time" => QuantileOverTime,
        "stddev_over_time" => StddevOverTime,
        "stdvar_over_time" => StdvarOverTime,
        "mad_over_time" => MadOverTime,
        "double_exponential_smoothing" => DoubleExponentialSmoothing,
        _ => return None,
    })
}

/// One series' samples for one evaluation step of a range function.
pub(crate) struct Window<'a> {
    /// Points with `start < t <= end`, in time order, staleness markers already removed.
    pub points: &'a [FPoint],
    /// Exclusive lower bound: the evaluation time minus the range (after offset and `@`).
    pub start: i64,
    /// Inclusive upper bound: the evaluation time (after offset and `@`).
    pub end: i64,
    /// The step's own evaluation time, before offset and `@`: `predict_linear` extrapolates
    /// from it, as Prometheus does.
    pub eval_t: i64,
}

/// Evaluates `f` over one window. `args` are the scalar arguments besides the range vector in
/// call order (quantile_over_time's φ, predict_linear's t, double_exponential_smoothing's sf and
/// tf). `None` means no output sample at this step. Per-series annotations come from
/// [`series_annotations`].
pub(crate) fn eval_range(
    f: RangeFn,
    w: &Window<'_>,
    args: &[f64],
    ann: &mut Annotations,
) -> Option<f64> {
    use RangeFn::*;
    let p = w.points;
    if p.is_empty() {
        return None;
    }
    let arg = |i: usize| args.get(i).copied();
    match f {
        Rate => range::extrapolated_rate(w, true, true, true, Span::of(w.end - w.start)),
        Increase => range::extrapolated_rate(w, true, false, true, Span::of(0)),
        Delta => range::extrapolated_rate(w, false, false, true, Span::of(0)),
        Irate => range::instant_value(p, true),
        Idelta => range::instant_value(p, false),
        Deriv => range::deriv(p),
        PredictLinear => range::predict_linear(p, w.eval_t, arg(0)?),
        Resets => Some(range::resets(p)),
        Changes => Some(range::changes(p)),
        AvgOverTime => Some(range::avg(p)),
        SumOverTime => Some(range::sum(p)),
        CountOverTime => Some(p.len() as f64),
        MinOverTime => Some(range::extreme(p, range::Extreme::Min).f),
        MaxOverTime => Some(range::extreme(p, range::Extreme::Max).f),
        LastOverTime => Some(p[p.len() - 1].f),
        FirstOverTime => Some(p[0].f),
        TsOfFirstOverTime => Some(p[0].t as f64 / 1000.0),
        TsOfLastOverTime => Some(p[p.len() - 1].t as f64 / 1000.0),
        TsOfMinOverTime => Some(range::extreme(p, range::Extreme::LastMin).t as f64 / 1000.0),
        TsOfMaxOverTime => Some(range::extreme(p, range::Extreme::LastMax).t as f64 / 1000.0),
        PresentOverTime => Some(1.0),
        QuantileOverTime => {
            let q = arg(0)?;
            if !(0.0..=1.0).contains(&q) {
                annotate::invalid_quantile(ann, q);
            }
            Some(range::quantile_over_time(p, q))
        }
        StddevOverTime => Some(range::variance(p).sqrt()),
        StdvarOverTime => Some(range::variance(p)),
        MadOverTime => Some(range::mad(p)),
        DoubleExponentialSmoothing => range::double_exponential_smoothing(p, arg(0)?, arg(1)?),
    }
}

/// Annotations `f` raises once per series that produced output: the "might not be a counter"
/// info of `rate` and `increase`. Called per series rather than per window, since it depends on
/// the metric name only.
pub(crate) fn series_annotations(f: RangeFn, metric: &Labels, ann: &mut Annotations) {
    if matches!(f, RangeFn::Rate | RangeFn::Increase) {
        annotate::possible_non_counter(ann, metric);
    }
}

/// Checks the scalar arguments of `f` the way Prometheus does before it evaluates a non-empty
/// window: `double_exponential_smoothing` fails the query when a factor lies outside (0, 1).
/// [`eval_range`] itself returns no sample for such arguments; the evaluator calls this for
/// each window that has points to turn them into the query error.
pub(crate) fn validate_range_args(f: RangeFn, args: &[f64]) -> Result<(), QueryError> {
    if f != RangeFn::DoubleExponentialSmoothing {
        return Ok(());
    }
    if let Some(&sf) = args.first()
        && !(sf > 0.0 && sf < 1.0)
    {
        return Err(QueryError::Execution(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
            annotate::go_fixed6(sf)
        )));
    }
    if let Some(&tf) = args.get(1)
        && !(tf > 0.0 && tf < 1.0)
    {
        return Err(QueryError::Execution(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {}",
            annotate::go_fixed6(tf)
        )));
    }
    Ok(())
}

/// An argument of a per-step function.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// An instant vector.
    Vector(Vector),
    /// A scalar.
    Scalar(f64),
    /// A string literal.
    String(String),
}

/// Evaluates the instant-vector or scalar function `name` at one step `t` (ms); returns
/// `Value::Vector` or `Value::Scalar`.
pub(crate) fn eval_instant(
    name: &str,
    args: Vec<Arg>,
    t: i64,
    ann: &mut Annotations,
) -> Result<Value, QueryError> {
    let resolved: Option<InstantFn> = instant_function(name);
    match resolved {
        Some(f) => eval_instant_fn(f, args, t, ann),
        None => Err(QueryError::Execution(format!(
            "function {name} is not evaluated per step by the function library"
        ))),
    }
}

#[cfg(test)]
pub(super) mod testutil {
    //! Builders shared by the function tests: the conformance scripts' load notation and
    //! windows cut the way the evaluator cuts them.

    use super::*;
    use crate::query::Sample;
    use std::sync::Arc;

    /// Milliseconds per second and per minute.
    pub const S: i64 = 1_000;
    pub const M: i64 = 60_000;

    fn number(s: &str) -> f64 {
        match s {
            "NaN" => f64::NAN,
            "Inf" | "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => s.parse().unwrap(),
        }
    }

    /// Expands a conformance `load` line (`0+10x3 _ 5 NaN 2x2`) into points `interval_ms`
    /// apart starting at 0; `_` leaves a step empty.
    pub fn load(interval_ms: i64, spec: &str) -> Vec<FPoint> {
        let mut values: Vec<Option<f64>> = Vec::new();
        for tok in spec.split_whitespace() {
            if tok == "_" {
                values.push(None);
                continue;
            }
            let Some((head, n)) = tok.rsplit_once('x') else {
                values.push(Some(number(tok)));
                continue;
            };
            let n: usize = n.parse().unwrap();
            let split = head
                .char_indices()
                .skip(1)
                .find(|&(i, c)| (c == '+' || c == '-') && !head[..i].ends_with(['e', 'E']));
            let (start, step) = match split {
                Some((i, _)) => (number(&head[..i]), number(&head[i..])),
                None => (number(head), 0.0),
            };
            for k in 0..=n {
                values.push(Some(start + step * k as f64));
            }
        }
        values
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|f| FPoint {
                    t: i as i64 * interval_ms,
                    f,
                })
            })
            .collect()
    }

    /// Evaluates `f` over `series[range] offset` at `at`, as the evaluator cuts the window.
    pub fn eval_offset(
        f: RangeFn,
        series: &[FPoint],
        at: i64,
        range: i64,
        offset: i64,
        args: &[f64],
    ) -> (Option<f64>, Annotations) {
        let end = at - offset;
        let start = end - range;
        let points: Vec<FPoint> = series
            .iter()
            .copied()
            .filter(|p| p.t > start && p.t <= end)
            .collect();
        let mut ann = Annotations::default();
        let w = Window {
            points: &points,
            start,
            end,
            eval_t: at,
        };
        (eval_range(f, &w, args, &mut ann), ann)
    }

    /// [`eval_offset`] without offset and annotations.
    pub fn eval(f: RangeFn, series: &[FPoint], at: i64, range: i64, args: &[f64]) -> Option<f64> {
        eval_offset(f, series, at, range, 0, args).0
    }

    /// True when both are NaN, both equal, or within a relative 1e-9 (the conformance
    /// scripts' tolerance is looser still).
    pub fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan())
            || a == b
            || ((a - b).abs() <= 1e-9 * a.abs().max(b.abs()) && a.is_finite() && b.is_finite())
    }

    /// Asserts `got` is a value close to `want`.
    #[track_caller]
    pub fn assert_close(got: Option<f64>, want: f64) {
        match got {
            Some(g) if close(g, want) => {}
            other => panic!("got {other:?}, want {want}"),
        }
    }

    /// A sample with these labels, value and timestamp.
    pub fn sample(labels: &[(&str, &str)], f: f64, t: i64) -> Sample {
        Sample {
            h: None,
            metric: Arc::new(Labels::new(labels.iter().copied()).unwrap()),
            t,
            f,
            drop_name: false,
        }
    }
}
