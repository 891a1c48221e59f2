//! PromQL's function library over floats: functions of a range vector evaluated per window, and
//! functions of instant vectors and scalars evaluated per step. `absent` and
//! `absent_over_time` need the argument's selector and live in the evaluator.

use super::{Annotations, FPoint, QueryError, Value, Vector};
use crate::model::Labels;

/// A function over a range vector (`rate`, `*_over_time`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeFn {
    /// `rate`.
    Rate,
}

impl RangeFn {
    /// Whether the result keeps the input's metric name (`last_over_time`, `first_over_time`).
    pub(crate) fn keeps_name(self) -> bool {
        false
    }
}

/// The range function called `name`, if it is one.
pub(crate) fn range_function(name: &str) -> Option<RangeFn> {
    (name == "rate").then_some(RangeFn::Rate)
}

/// One series' samples for one evaluation step of a range function.
pub(crate) struct Window<'a> {
    /// Points with `start < t <= end`, in time order, staleness markers already removed.
    pub points: &'a [FPoint],
    /// Exclusive lower bound: the evaluation time minus the range (after offset and `@`).
    pub start: i64,
    /// Inclusive upper bound: the evaluation time (after offset and `@`).
    pub end: i64,
}

/// Evaluates `f` over one window. `args` are the scalar arguments besides the range vector in
/// call order (quantile_over_time's φ, predict_linear's t, double_exponential_smoothing's sf and
/// tf). `None` means no output sample at this step.
pub(crate) fn eval_range(
    f: RangeFn,
    w: &Window<'_>,
    args: &[f64],
    metric: &Labels,
    ann: &mut Annotations,
) -> Option<f64> {
    let _ = (f, w, args, metric, ann);
    None
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
    let _ = (args, t, ann);
    Err(QueryError::Execution(format!(
        "function {name} is not implemented yet"
    )))
}
