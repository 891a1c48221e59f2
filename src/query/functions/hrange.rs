//! Range functions over windows that hold native histograms (and maybe floats), as Prometheus
//! 3 defines them: `rate`/`increase`/`delta` with counter resets and schema reduction,
//! `irate`/`idelta`, `resets`/`changes`, `sum`/`avg`/`count`/`last`/`first_over_time` and
//! friends, and the annotations of functions that ignore histograms or refuse a mix. The
//! float-only windows never come here: they keep the allocation-free path of `range.rs`.

use std::sync::Arc;

use super::annotate::{self, HistOp};
use super::{RangeFn, Window, eval_range};
use crate::model::histogram::{CounterResetHint, FloatHistogram};
use crate::query::{Annotations, HPoint};

/// One window's answer: a float or a histogram.
pub(crate) enum RangeOut {
    Float(f64),
    Hist(Arc<FloatHistogram>),
}

/// Evaluates `f` over a window whose floats are `w.points` and whose histograms are `h` (not
/// empty, or the float path would have been taken). `metric_name` names the series in
/// annotations.
pub(crate) fn eval_range_mixed(
    f: RangeFn,
    w: &Window<'_>,
    h: &[HPoint],
    args: &[f64],
    metric_name: &str,
    ann: &mut Annotations,
) -> Option<RangeOut> {
    use RangeFn::*;
    let fl = w.points;
    if h.is_empty() {
        return eval_range(f, w, args, ann).map(RangeOut::Float);
    }
    match f {
        Rate | Increase | Delta => {
            if !fl.is_empty() {
                annotate::mixed_floats_histograms(ann, metric_name);
                return None;
            }
            let is_counter = f != Delta;
            let r = histogram_extrapolated_rate(w, h, is_counter, f == Rate, metric_name, ann)?;
            Some(RangeOut::Hist(Arc::new(r)))
        }
        Irate | Idelta => instant_value(fl, h, f == Irate, metric_name, ann),
        Resets | Changes => {
            let mut n = 0usize;
            let mut prev: Option<Value<'_>> = None;
            for cur in merged(fl, h) {
                if let Some(p) = prev {
                    let counted = match (p, cur) {
                        (Value::F(a), Value::F(b)) => {
                            if f == Resets {
                                b < a
                            } else {
                                b != a && !(a.is_nan() && b.is_nan())
                            }
                        }
                        (Value::H(a), Value::H(b)) => {
                            if f == Resets {
                                b.detect_reset(a)
                            } else {
                                !hist_equals(a, b)
                            }
                        }
                        _ => true,
                    };
                    n += usize::from(counted);
                }
                prev = Some(cur);
            }
            Some(RangeOut::Float(n as f64))
        }
        SumOverTime | AvgOverTime => {
            if !fl.is_empty() {
                annotate::mixed_floats_histograms(ann, metric_name);
                return None;
            }
            let (mut reset_seen, mut not_reset_seen) = (false, false);
            let mut sum = (*h[0].h).clone();
            let mut reconciled = false;
            for p in h {
                match p.h.counter_reset_hint {
                    CounterResetHint::Reset => reset_seen = true,
                    CounterResetHint::NotReset => not_reset_seen = true,
                    _ => {}
                }
            }
            for p in &h[1..] {
                match sum.add(&p.h) {
                    Ok(o) => reconciled |= o.nhcb_bounds_reconciled,
                    Err(_) => {
                        annotate::mixed_exponential_custom(ann, metric_name);
                        return None;
                    }
                }
            }
            if reset_seen && not_reset_seen {
                annotate::counter_reset_collision(ann, HistOp::Agg);
            }
            if reconciled {
                annotate::mismatched_custom_buckets(ann, HistOp::Agg);
            }
            if f == AvgOverTime {
                sum.div(h.len() as f64);
            }
            sum.compact(0);
            Some(RangeOut::Hist(Arc::new(sum)))
        }
        CountOverTime => Some(RangeOut::Float((fl.len() + h.len()) as f64)),
        PresentOverTime => Some(RangeOut::Float(1.0)),
        LastOverTime | TsOfLastOverTime => {
            let hl = &h[h.len() - 1];
            let float_later = fl.last().filter(|p| p.t > hl.t);
            Some(match (f, float_later) {
                (TsOfLastOverTime, Some(p)) => RangeOut::Float(p.t as f64 / 1000.0),
                (TsOfLastOverTime, None) => RangeOut::Float(hl.t as f64 / 1000.0),
                (_, Some(p)) => RangeOut::Float(p.f),
                (_, None) => RangeOut::Hist(hl.h.clone()),
            })
        }
        FirstOverTime | TsOfFirstOverTime => {
            let hf = &h[0];
            let float_earlier = fl.first().filter(|p| p.t < hf.t);
            Some(match (f, float_earlier) {
                (TsOfFirstOverTime, Some(p)) => RangeOut::Float(p.t as f64 / 1000.0),
                (TsOfFirstOverTime, None) => RangeOut::Float(hf.t as f64 / 1000.0),
                (_, Some(p)) => RangeOut::Float(p.f),
                (_, None) => RangeOut::Hist(hf.h.clone()),
            })
        }
        // The rest work on floats only: histograms beside floats are ignored with an info,
        // histograms alone give nothing.
        _ => {
            if fl.is_empty() {
                return None;
            }
            let out = eval_range(f, w, args, ann)?;
            annotate::histograms_ignored_in_range(ann, metric_name);
            Some(RangeOut::Float(out))
        }
    }
}

/// A point of a merged float/histogram window.
#[derive(Clone, Copy)]
enum Value<'a> {
    F(f64),
    H(&'a FloatHistogram),
}

/// The floats and histograms of a window in time order.
fn merged<'a>(
    fl: &'a [crate::query::FPoint],
    h: &'a [HPoint],
) -> impl Iterator<Item = Value<'a>> + 'a {
    let (mut i, mut j) = (0usize, 0usize);
    std::iter::from_fn(move || {
        let take_float = match (fl.get(i), h.get(j)) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a.t < b.t,
        };
        if take_float {
            i += 1;
            Some(Value::F(fl[i - 1].f))
        } else {
            j += 1;
            Some(Value::H(&h[j - 1].h))
        }
    })
}

/// `irate` and `idelta` over the last two samples of a window holding histograms.
fn instant_value(
    fl: &[crate::query::FPoint],
    h: &[HPoint],
    is_rate: bool,
    metric_name: &str,
    ann: &mut Annotations,
) -> Option<RangeOut> {
    if fl.len() + h.len() < 2 {
        return None;
    }
    // The last two samples of either kind.
    #[derive(Clone, Copy)]
    struct S<'a> {
        t: i64,
        v: Value<'a>,
    }
    let mut last: Vec<S<'_>> = Vec::with_capacity(4);
    last.extend(fl[fl.len().saturating_sub(2)..].iter().map(|p| S {
        t: p.t,
        v: Value::F(p.f),
    }));
    last.extend(h[h.len().saturating_sub(2)..].iter().map(|p| S {
        t: p.t,
        v: Value::H(&p.h),
    }));
    last.sort_by_key(|s| s.t);
    let (a, b) = (last[last.len() - 2], last[last.len() - 1]);
    let interval = b.t - a.t;
    if interval == 0 {
        return None;
    }
    match (a.v, b.v) {
        (Value::F(x), Value::F(y)) => {
            let mut v = y;
            if !is_rate || y >= x || x.is_nan() || y.is_nan() {
                v = y - x;
            }
            if is_rate {
                v /= interval as f64 / 1000.0;
            }
            Some(RangeOut::Float(v))
        }
        (Value::H(x), Value::H(y)) => {
            let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
            if is_rate && (gauge(x) || gauge(y)) {
                annotate::not_a_counter(ann, metric_name);
            }
            if !is_rate && (!gauge(x) || !gauge(y)) {
                annotate::not_a_gauge(ann, metric_name);
            }
            let mut out = y.clone();
            if !is_rate || !y.detect_reset(x) {
                match out.sub(x) {
                    Ok(o) => {
                        if o.nhcb_bounds_reconciled {
                            annotate::mismatched_custom_buckets(ann, HistOp::Sub);
                        }
                    }
                    Err(_) => {
                        annotate::mixed_exponential_custom(ann, metric_name);
                        return None;
                    }
                }
            }
            out.counter_reset_hint = CounterResetHint::Gauge;
            out.compact(0);
            if is_rate {
                out.div(interval as f64 / 1000.0);
            }
            Some(RangeOut::Hist(Arc::new(out)))
        }
        _ => {
            annotate::mixed_floats_histograms(ann, metric_name);
            None
        }
    }
}

/// `rate`, `increase` (`is_counter`) and `delta` over a window of histograms only, with
/// Prometheus's extrapolation (the counter's zero point taken from the counts).
fn histogram_extrapolated_rate(
    w: &Window<'_>,
    h: &[HPoint],
    is_counter: bool,
    is_rate: bool,
    metric_name: &str,
    ann: &mut Annotations,
) -> Option<FloatHistogram> {
    if h.len() < 2 {
        return None;
    }
    let mut result = histogram_rate(h, is_counter, metric_name, ann)?;
    let (first_t, last_t) = (h[0].t, h[h.len() - 1].t);
    let mut to_start = (first_t - w.start) as f64 / 1000.0;
    let mut to_end = (w.end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / (h.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter && result.count > 0.0 && h[0].h.count >= 0.0 {
        let to_zero = sampled * (h[0].h.count / result.count);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = 1.0;
    if sampled != 0.0 {
        factor = (sampled + to_start + to_end) / sampled;
    }
    if is_rate {
        factor /= (w.end - w.start) as f64 / 1000.0;
    }
    result.mul(factor);
    Some(result)
}

/// The increase of a histogram counter (or the difference of a gauge) over `points`, counter
/// resets added back, in the smallest schema the points use.
fn histogram_rate(
    points: &[HPoint],
    is_counter: bool,
    metric_name: &str,
    ann: &mut Annotations,
) -> Option<FloatHistogram> {
    let gauge = |h: &FloatHistogram| h.counter_reset_hint == CounterResetHint::Gauge;
    let mut prev: FloatHistogram = (*points[0].h).clone();
    let last = &points[points.len() - 1].h;
    let mut custom = prev.uses_custom_buckets();
    if is_counter && (gauge(&prev) || gauge(last)) {
        annotate::not_a_counter(ann, metric_name);
    }
    let mut first_left_out = false;
    if is_counter {
        let second = &points[1].h;
        if second.detect_reset(&prev) {
            first_left_out = true;
            // The first sample does not count: its layout does not matter.
            prev = FloatHistogram {
                schema: second.schema,
                custom_values: second.custom_values.clone(),
                ..FloatHistogram::default()
            };
            custom = second.uses_custom_buckets();
        }
    }
    if last.uses_custom_buckets() != custom {
        annotate::mixed_exponential_custom(ann, metric_name);
        return None;
    }
    let mut min_schema = last.schema.min(prev.schema);
    for p in &points[1..points.len() - 1] {
        if !is_counter {
            continue;
        }
        if gauge(&p.h) {
            annotate::not_a_counter(ann, metric_name);
        }
        min_schema = min_schema.min(p.h.schema);
        if p.h.uses_custom_buckets() != custom {
            annotate::mixed_exponential_custom(ann, metric_name);
            return None;
        }
    }
    let mut h = if custom {
        (**last).clone()
    } else {
        last.copy_to_schema(min_schema)
            .unwrap_or_else(|| (**last).clone())
    };
    match h.sub(&prev) {
        Ok(o) => {
            if o.nhcb_bounds_reconciled {
                annotate::mismatched_custom_buckets(ann, HistOp::Sub);
            }
        }
        Err(_) => {
            annotate::mixed_exponential_custom(ann, metric_name);
            return None;
        }
    }
    if is_counter {
        // From the first sample, or from nothing when it was left out above.
        let mut prev: &FloatHistogram = if first_left_out { &prev } else { &points[0].h };
        for p in &points[1..] {
            if p.h.detect_reset(prev) {
                match h.add(prev) {
                    Ok(o) => {
                        if o.nhcb_bounds_reconciled {
                            annotate::mismatched_custom_buckets(ann, HistOp::Add);
                        }
                    }
                    Err(_) => {
                        annotate::mixed_exponential_custom(ann, metric_name);
                        return None;
                    }
                }
            }
            prev = &p.h;
        }
    } else if !gauge(&points[0].h) || !gauge(last) {
        annotate::not_a_gauge(ann, metric_name);
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    h.compact(0);
    Some(h)
}

/// Prometheus's `FloatHistogram.Equals`: every field equal (the sum by bit pattern when NaN),
/// spans compared after dropping empty ones and joining adjacent ones, the counter-reset hint
/// left out.
pub(crate) fn hist_equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let same_sum = a.sum == b.sum || (a.sum.is_nan() && b.sum.is_nan());
    a.schema == b.schema
        && a.zero_threshold == b.zero_threshold
        && a.zero_count == b.zero_count
        && a.count == b.count
        && same_sum
        && a.custom_values == b.custom_values
        && same_buckets(
            &a.positive_spans,
            &a.positive_buckets,
            &b.positive_spans,
            &b.positive_buckets,
        )
        && same_buckets(
            &a.negative_spans,
            &a.negative_buckets,
            &b.negative_spans,
            &b.negative_buckets,
        )
}

/// The (index, count) pairs of a side of a histogram.
pub(crate) fn indexed(spans: &[crate::model::histogram::Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx = 0i32;
    let mut k = 0usize;
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 {
            s.offset
        } else {
            idx.saturating_add(s.offset)
        };
        for _ in 0..s.length {
            if let Some(c) = buckets.get(k) {
                out.push((idx, *c));
            }
            k += 1;
            idx = idx.saturating_add(1);
        }
    }
    out
}

fn same_buckets(
    sa: &[crate::model::histogram::Span],
    ba: &[f64],
    sb: &[crate::model::histogram::Span],
    bb: &[f64],
) -> bool {
    indexed(sa, ba) == indexed(sb, bb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::histogram::Span;
    use crate::query::FPoint;

    fn hist(count: f64, buckets: &[f64]) -> Arc<FloatHistogram> {
        Arc::new(FloatHistogram {
            schema: 0,
            count,
            sum: count,
            positive_spans: vec![Span::new(0, buckets.len() as u32)],
            positive_buckets: buckets.to_vec(),
            ..FloatHistogram::default()
        })
    }

    fn window(points: &[FPoint], end: i64) -> Window<'_> {
        Window {
            points,
            start: end - 60_000,
            end,
            eval_t: end,
        }
    }

    fn eval(f: RangeFn, fl: &[FPoint], h: &[HPoint]) -> (Option<RangeOut>, Annotations) {
        let mut ann = Annotations::default();
        let w = window(fl, 60_000);
        (eval_range_mixed(f, &w, h, &[], "m", &mut ann), ann)
    }

    #[test]
    fn increase_of_a_steady_histogram_counter() {
        let h: Vec<HPoint> = (0..4)
            .map(|i| HPoint {
                t: 15_000 * (i + 1),
                h: hist(i as f64 * 3.0, &[i as f64, 2.0 * i as f64]),
            })
            .collect();
        let (out, ann) = eval(RangeFn::Increase, &[], &h);
        let Some(RangeOut::Hist(r)) = out else {
            panic!("no histogram")
        };
        // 9 over 45 s; the first sample is at zero, so nothing is added before it, and the
        // last is at the window's end.
        assert!((r.count - 9.0).abs() < 1e-9, "{}", r.count);
        assert_eq!(r.counter_reset_hint, CounterResetHint::Gauge);
        assert!(ann.warnings.is_empty());
    }

    #[test]
    fn mixed_windows_warn_or_ignore() {
        let fl = [FPoint { t: 1_000, f: 1.0 }, FPoint { t: 2_000, f: 2.0 }];
        let h = [HPoint {
            t: 3_000,
            h: hist(1.0, &[1.0]),
        }];
        let (out, ann) = eval(RangeFn::Rate, &fl, &h);
        assert!(out.is_none());
        assert_eq!(ann.warnings.len(), 1);
        let (out, ann) = eval(RangeFn::MaxOverTime, &fl, &h);
        assert!(matches!(out, Some(RangeOut::Float(v)) if v == 2.0));
        assert_eq!(ann.infos.len(), 1);
        let (out, _) = eval(RangeFn::CountOverTime, &fl, &h);
        assert!(matches!(out, Some(RangeOut::Float(v)) if v == 3.0));
        let (out, _) = eval(RangeFn::LastOverTime, &fl, &h);
        assert!(matches!(out, Some(RangeOut::Hist(_))));
        let (out, _) = eval(RangeFn::Changes, &fl, &h);
        assert!(matches!(out, Some(RangeOut::Float(v)) if v == 2.0));
        let (out, _) = eval(RangeFn::MaxOverTime, &[], &h);
        assert!(out.is_none());
    }

    #[test]
    fn equality_ignores_span_splits() {
        let a = hist(3.0, &[1.0, 2.0]);
        let mut b = (*a).clone();
        b.positive_spans = vec![Span::new(0, 1), Span::new(0, 1)];
        assert!(hist_equals(&a, &b));
        b.positive_buckets[1] = 3.0;
        assert!(!hist_equals(&a, &b));
    }
}
