//! Aggregation operators (`sum`, `topk`, `quantile`, `count_values`, `limitk`, …) over one
//! step's instant vector, with Prometheus 3's semantics (delayed name removal included: a
//! sample's `__name__` may still be there with `drop_name` set, and groups by it like any
//! label). [`aggregate`] runs one step; an [`Aggregation`] kept for all the steps of a range
//! evaluation remembers each series' group, as Prometheus's evaluator does.
//!
//! This module owns grouping by `by`/`without`, the arithmetic of each operator and its
//! parameter checks. It never evaluates expressions, reads storage or strips `__name__` (the
//! evaluator does, from samples marked `drop_name`); it is also home to the label-key hashing
//! and Go-style formatting that `binary` shares.

mod fold;
pub(crate) mod gofmt;
pub(crate) mod key;
mod prom_hash;
mod stream;
mod topk;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use promql_parser::parser::LabelModifier;
use promql_parser::parser::token::{
    T_BOTTOMK, T_COUNT_VALUES, T_LIMIT_RATIO, T_LIMITK, T_QUANTILE, T_TOPK, TokenType,
};

pub(crate) use self::stream::SeriesFold;
pub(crate) use self::topk::RangeSelect;

use self::fold::Fold;
use self::key::{KeyIndex, KeyOrdinals, KeySpec, SeriesCache, Slots};
use super::functions::annotate;
use super::{Annotations, Metric, QueryError, Sample, Vector};
use crate::model::is_valid_label_name;

/// The parameter of `topk`, `quantile`, `count_values`, `limitk`, … evaluated at this step.
#[derive(Debug, Clone)]
pub(crate) enum AggParam {
    /// The operator takes none.
    None,
    /// A number (`topk`'s k, `quantile`'s φ, `limit_ratio`'s ratio).
    Scalar(f64),
    /// `count_values`' label name.
    String(String),
}

/// Aggregates `input` (one step, evaluation time `t` in ms) with the operator `op`,
/// grouped by `modifier` (`by`/`without`; none means everything in one group).
///
/// A one-step [`Aggregation`]; an evaluator running many steps of one node should keep an
/// [`Aggregation`] instead, which remembers each series' group between steps.
pub(crate) fn aggregate(
    op: TokenType,
    modifier: Option<&LabelModifier>,
    param: AggParam,
    input: Vector,
    t: i64,
    ann: &mut Annotations,
) -> Result<Vector, QueryError> {
    Aggregation::build(op, modifier, false).step(param, input, t, ann)
}

/// One aggregation node across the steps of an evaluation. It remembers, by the address of
/// each series' shared label set, which group the series belongs to, and builds each group's
/// output labels once: after the first step no labels are hashed or built, and the output
/// label sets are the same `Arc`s from step to step.
pub(crate) struct Aggregation<'a> {
    op: TokenType,
    modifier: Option<&'a LabelModifier>,
    keys: KeyOrdinals<'a>,
    /// Per group ordinal, the output labels once built.
    outputs: Vec<Option<Metric>>,
    slots: Slots,
    /// `limit_ratio`'s sampling offset of each series.
    offsets: SeriesCache<f64>,
    count_values: CountValues,
}

impl<'a> Aggregation<'a> {
    /// The aggregation `op` grouped by `modifier` (`by`/`without`; none means one group).
    pub(crate) fn new(op: TokenType, modifier: Option<&'a LabelModifier>) -> Self {
        Aggregation::build(op, modifier, true)
    }

    fn build(op: TokenType, modifier: Option<&'a LabelModifier>, remember: bool) -> Self {
        // No modifier: one group of everything.
        let spec = modifier.map_or(KeySpec::only([]), KeySpec::of);
        Aggregation {
            op,
            modifier,
            keys: KeyOrdinals::new(spec, remember),
            outputs: Vec::new(),
            slots: Slots::default(),
            offsets: if remember {
                SeriesCache::default()
            } else {
                SeriesCache::disabled()
            },
            count_values: CountValues::default(),
        }
    }

    /// One step: `input` at evaluation time `t` (ms), with this step's `param`.
    ///
    /// Output samples carry `t`. Groups come out in the order their first sample appears in
    /// `input`; `topk`/`bottomk` order each group's samples as Prometheus does for an instant
    /// query. The parameter is checked at every step, so call it even when `input` is empty:
    /// `topk(NaN, …)` fails and `quantile(2, …)` warns whatever the input.
    pub(crate) fn step(
        &mut self,
        param: AggParam,
        input: Vector,
        t: i64,
        ann: &mut Annotations,
    ) -> Result<Vector, QueryError> {
        let op = self.op;
        if !matches!(op.id(), T_LIMITK | T_LIMIT_RATIO | T_COUNT_VALUES)
            && input.iter().any(|s| s.h.is_some())
        {
            return self.step_with_histograms(param, input, t, ann);
        }
        let fold = match Fold::without_param(op) {
            Some(fold) => fold,
            None => match op.id() {
                T_QUANTILE => {
                    let q = scalar_param(op, &param)?;
                    if q.is_nan() || !(0.0..=1.0).contains(&q) {
                        ann.warn(format!(
                            "PromQL warning: quantile value should be between 0 and 1, got {}",
                            gofmt::fmt_g(q)
                        ));
                    }
                    Fold::Quantile(q)
                }
                T_TOPK | T_BOTTOMK | T_LIMITK => {
                    let Some(k) = k_param(scalar_param(op, &param)?)? else {
                        return Ok(Vector::new());
                    };
                    return Ok(topk::select_k(
                        op.id(),
                        k,
                        &mut self.keys,
                        &mut self.slots,
                        input,
                        t,
                    ));
                }
                T_LIMIT_RATIO => {
                    let Some(ratio) = ratio_param(scalar_param(op, &param)?, ann)? else {
                        return Ok(Vector::new());
                    };
                    return Ok(topk::limit_ratio(
                        ratio,
                        &mut self.keys,
                        &mut self.slots,
                        &mut self.offsets,
                        input,
                        t,
                    ));
                }
                T_COUNT_VALUES => {
                    let AggParam::String(label) = param else {
                        return Err(QueryError::Execution(format!(
                            "{op} expects a string parameter"
                        )));
                    };
                    return self.count_values.step(label, self.modifier, input, t);
                }
                _ => {
                    return Err(QueryError::Execution(format!(
                        "{op} is not an aggregation operator"
                    )));
                }
            },
        };
        Ok(fold::fold(
            fold,
            &mut self.keys,
            &mut self.outputs,
            &mut self.slots,
            &input,
            t,
        ))
    }
}

impl Aggregation<'_> {
    /// One step whose input holds native histograms: `sum` and `avg` add up groups of
    /// histograms (a group mixing floats and histograms gives nothing, with a warning),
    /// `count` and `group` count them like floats, the operators defined on floats only
    /// leave them out with an info. Float groups get the float path's answer.
    fn step_with_histograms(
        &mut self,
        param: AggParam,
        input: Vector,
        t: i64,
        ann: &mut Annotations,
    ) -> Result<Vector, QueryError> {
        use promql_parser::parser::token::{T_AVG, T_COUNT, T_GROUP, T_SUM};
        let op = self.op;
        match op.id() {
            T_COUNT | T_GROUP => {
                let input = input.into_iter().map(|s| Sample { h: None, ..s }).collect();
                self.step(param, input, t, ann)
            }
            T_SUM | T_AVG => {
                let spec = self.modifier.map_or(KeySpec::only([]), KeySpec::of);
                let mut index: std::collections::HashMap<crate::model::Labels, usize> =
                    std::collections::HashMap::new();
                // Per group: its key, its samples' positions, whether it has floats and
                // histograms.
                let mut groups: Vec<(crate::model::Labels, Vec<usize>, bool, bool)> = Vec::new();
                for (i, s) in input.iter().enumerate() {
                    let key = spec.key_labels(s.metric.as_slice());
                    let g = *index.entry(key.clone()).or_insert_with(|| {
                        groups.push((key, Vec::new(), false, false));
                        groups.len() - 1
                    });
                    groups[g].1.push(i);
                    if s.h.is_some() {
                        groups[g].3 = true;
                    } else {
                        groups[g].2 = true;
                    }
                }
                let mut floats = Vector::new();
                let mut out = Vector::new();
                let mut input: Vec<Option<Sample>> = input.into_iter().map(Some).collect();
                for (key, members, has_float, has_hist) in groups {
                    if has_float && has_hist {
                        annotate::mixed_floats_histograms_aggregation(ann);
                        continue;
                    }
                    if has_float {
                        floats.extend(members.iter().filter_map(|&i| input[i].take()));
                        continue;
                    }
                    let samples: Vec<Sample> =
                        members.iter().filter_map(|&i| input[i].take()).collect();
                    if let Some(h) = sum_histograms(&samples, op.id() == T_AVG, ann) {
                        out.push(Sample {
                            metric: Arc::new(key),
                            t,
                            f: 0.0,
                            h: Some(Arc::new(h)),
                            drop_name: samples.iter().any(|s| s.drop_name),
                        });
                    }
                }
                if !floats.is_empty() {
                    let mut done = self.step(param, floats, t, ann)?;
                    done.append(&mut out);
                    out = done;
                }
                Ok(out)
            }
            _ => {
                annotate::histogram_ignored_in_aggregation(ann, &op.to_string());
                let input = input.into_iter().filter(|s| s.h.is_none()).collect();
                self.step(param, input, t, ann)
            }
        }
    }
}

/// The sum (or the mean, with `mean`) of the histograms of `samples`, with Prometheus's
/// annotations; none when exponential and custom buckets meet.
fn sum_histograms(
    samples: &[Sample],
    mean: bool,
    ann: &mut Annotations,
) -> Option<crate::model::histogram::FloatHistogram> {
    use crate::model::histogram::CounterResetHint;
    let mut hs = samples.iter().filter_map(|s| s.h.as_deref());
    let mut sum = hs.next()?.clone();
    let (mut reset, mut not_reset, mut reconciled) = (false, false, false);
    for h in hs {
        match h.counter_reset_hint {
            CounterResetHint::Reset => reset = true,
            CounterResetHint::NotReset => not_reset = true,
            _ => {}
        }
        match sum.add(h) {
            Ok(o) => reconciled |= o.nhcb_bounds_reconciled,
            Err(_) => {
                let name = samples
                    .first()
                    .and_then(|s| s.metric.metric_name())
                    .unwrap_or("");
                annotate::mixed_exponential_custom(ann, name);
                return None;
            }
        }
    }
    if reset && not_reset {
        annotate::counter_reset_collision(ann, annotate::HistOp::Agg);
    }
    if reconciled {
        annotate::mismatched_custom_buckets(ann, annotate::HistOp::Agg);
    }
    if mean {
        sum.div(samples.len() as f64);
    }
    sum.compact(0);
    Some(sum)
}

fn scalar_param(op: TokenType, param: &AggParam) -> Result<f64, QueryError> {
    match param {
        AggParam::Scalar(f) => Ok(*f),
        _ => Err(QueryError::Execution(format!(
            "{op} expects a number parameter"
        ))),
    }
}

// Go's float64(math.MaxInt64), which rounds up to 2^63.
const MAX_INT64_F: f64 = 9_223_372_036_854_775_808.0;

/// `topk`/`bottomk`/`limitk`'s k at this step: `None` when it selects nothing.
///
/// Prometheus checks the parameter over the whole range before evaluating; per step the
/// outcome is the same except that a k at or below -2^63 yields nothing here where
/// Prometheus reports an underflow if another step's k is at least 1.
pub(crate) fn k_param(f: f64) -> Result<Option<usize>, QueryError> {
    if f.is_nan() {
        return Err(QueryError::Execution("Parameter value is NaN".into()));
    }
    if f >= MAX_INT64_F {
        return Err(QueryError::Execution(format!(
            "Scalar value {} overflows int64",
            gofmt::fmt_g(f)
        )));
    }
    // Truncation toward zero, as Go's int64(f).
    let k = f as i64;
    if k < 1 {
        return Ok(None);
    }
    Ok(Some(usize::try_from(k).unwrap_or(usize::MAX)))
}

/// `limit_ratio`'s ratio at this step, capped to [-1, 1] with Prometheus's warning; `None`
/// when it is 0 (nothing selected).
fn ratio_param(r: f64, ann: &mut Annotations) -> Result<Option<f64>, QueryError> {
    if r == 0.0 {
        return Ok(None);
    }
    if r.is_nan() {
        return Err(QueryError::Execution("Ratio value is NaN".into()));
    }
    let capped = r.clamp(-1.0, 1.0);
    if capped != r {
        ann.warn(format!(
            "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
            gofmt::fmt_g(r),
            gofmt::fmt_g(capped)
        ));
    }
    Ok(Some(capped))
}

/// `count_values(label, v)`: how many samples of each group have each value, the value
/// (formatted as Go's `strconv.FormatFloat(f, 'f', -1, 64)`) in `label`. Groups depend on
/// the values, so only their output labels are kept across steps.
#[derive(Default)]
struct CountValues {
    label: String,
    index: KeyIndex,
    /// Per group ordinal, its output labels.
    outputs: Vec<Metric>,
    slots: Slots,
    buf: Vec<u8>,
}

impl CountValues {
    fn step(
        &mut self,
        label: String,
        modifier: Option<&LabelModifier>,
        input: Vector,
        t: i64,
    ) -> Result<Vector, QueryError> {
        // Our label sets hold legacy names only, so that is what the output label must be.
        if !is_valid_label_name(&label) {
            return Err(QueryError::Execution(format!(
                "invalid label name {}",
                gofmt::quote_literal(&label)
            )));
        }
        if label != self.label {
            *self = CountValues {
                label,
                ..CountValues::default()
            };
        }
        let CountValues {
            label,
            index,
            outputs,
            slots,
            buf,
        } = self;
        let label = label.as_str();
        // The value label is part of a `by` key (it is what is being counted); `without`
        // keeps it unless it is listed.
        let spec = match modifier {
            None => KeySpec::only([label]),
            Some(LabelModifier::Include(ls)) => {
                KeySpec::only(ls.labels.iter().map(String::as_str).chain([label]))
            }
            Some(LabelModifier::Exclude(ls)) => {
                KeySpec::all_but(ls.labels.iter().map(String::as_str))
            }
        };
        let mut counts: Vec<(usize, f64)> = Vec::new();
        for s in &input {
            let value = match &s.h {
                Some(h) => histogram_text(h),
                None => gofmt::fmt_f(s.f),
            };
            let pairs = with_label(s.metric.as_slice(), label, &value);
            let hash = spec.hash(&pairs, buf);
            let (ord, new) =
                index.find_or_insert(hash, |o| spec.same_key(&pairs, outputs[o].as_slice()));
            if new {
                outputs.push(Arc::new(spec.key_labels(&pairs)));
            }
            match slots.get(ord) {
                Some(i) => counts[i].1 += 1.0,
                None => {
                    slots.set(ord, counts.len());
                    counts.push((ord, 1.0));
                }
            }
        }
        slots.reset(counts.iter().map(|(o, _)| *o));
        Ok(counts
            .into_iter()
            .map(|(ord, count)| Sample {
                h: None,
                metric: Arc::clone(&outputs[ord]),
                t,
                f: count,
                drop_name: false,
            })
            .collect())
    }
}

/// A histogram as Prometheus's `FloatHistogram.String` writes it (what `count_values`
/// counts histograms by): `{count:…, sum:…, <bucket>:<count>…}`, populated buckets from the
/// most negative up, each as `(lower,upper]` with brackets for inclusive bounds.
fn histogram_text(h: &crate::model::histogram::FloatHistogram) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{{count:{}, sum:{}",
        gofmt::fmt_g(h.count),
        gofmt::fmt_g(h.sum)
    );
    for b in h.all_bucket_iter() {
        if b.count == 0.0 {
            continue;
        }
        let _ = write!(
            out,
            ", {}{},{}{}:{}",
            if b.lower_inclusive { '[' } else { '(' },
            gofmt::fmt_g(b.lower),
            gofmt::fmt_g(b.upper),
            if b.upper_inclusive { ']' } else { ')' },
            gofmt::fmt_g(b.count)
        );
    }
    out.push('}');
    out
}

/// `pairs` (sorted) with `name` set to `value`, borrowed.
fn with_label<'a>(
    pairs: &'a [(String, String)],
    name: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::with_capacity(pairs.len() + 1);
    let mut placed = false;
    for (n, v) in pairs {
        if !placed && n.as_str() >= name {
            out.push((name, value));
            placed = true;
            if n == name {
                continue;
            }
        }
        out.push((n.as_str(), v.as_str()));
    }
    if !placed {
        out.push((name, value));
    }
    out
}
