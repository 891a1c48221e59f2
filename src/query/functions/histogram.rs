//! Classic histograms: grouping `le` buckets into histograms, `histogram_quantile(s)` and
//! `histogram_fraction` over them, with Prometheus's treatment of unsorted, duplicate and
//! non-monotonic buckets.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::annotate;
use crate::model::{Labels, METRIC_NAME};
use crate::query::{Annotations, QueryError, Sample, Vector};

/// The label holding a classic bucket's upper bound.
const BUCKET_LABEL: &str = "le";

/// Relative difference between neighbouring bucket counts treated as float noise, not as a
/// decrease (Prometheus's `smallDeltaTolerance`).
const SMALL_DELTA_TOLERANCE: f64 = 1e-12;

/// One classic bucket: observations at most `upper`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Bucket {
    /// The `le` bound.
    pub upper: f64,
    /// Cumulative count.
    pub count: f64,
}

/// The buckets of one classic histogram: every sample with the same labels apart from `le`.
#[derive(Debug)]
pub(super) struct Group {
    /// The shared labels, `le` removed (`__name__` kept for the evaluator to drop).
    pub metric: Labels,
    /// Buckets in input order.
    pub buckets: Vec<Bucket>,
}

/// Parses an `le` value as Go's `strconv.ParseFloat` does: decimal or special values, with
/// out-of-range numbers refused rather than turned into infinities.
fn parse_le(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.len() != s.len() && unsigned.eq_ignore_ascii_case("nan") {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() && !unsigned.to_ascii_lowercase().starts_with("inf") {
        return None;
    }
    Some(v)
}

fn hash_without_le(l: &Labels) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (n, v) in l.iter().filter(|(n, _)| *n != BUCKET_LABEL) {
        n.hash(&mut h);
        v.hash(&mut h);
    }
    h.finish()
}

fn same_without_le(grouped: &Labels, l: &Labels) -> bool {
    grouped
        .iter()
        .eq(l.iter().filter(|(n, _)| *n != BUCKET_LABEL))
}

fn without_le(l: &Labels) -> Labels {
    Labels::from_sorted_unchecked(
        l.iter()
            .filter(|(n, _)| *n != BUCKET_LABEL)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

/// Groups the samples of `v` into classic histograms by all labels but `le`, in order of first
/// appearance. A sample whose `le` is missing or not a number is left out with a warning.
pub(super) fn group_buckets(v: &Vector, ann: &mut Annotations) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    for s in v {
        let le = s.metric.get(BUCKET_LABEL).unwrap_or("");
        let Some(upper) = parse_le(le) else {
            annotate::bad_bucket_label(ann, s.metric.metric_name().unwrap_or(""), le);
            continue;
        };
        let bucket = Bucket { upper, count: s.f };
        let candidates = by_hash.entry(hash_without_le(&s.metric)).or_default();
        match candidates
            .iter()
            .find(|&&i| same_without_le(&groups[i].metric, &s.metric))
        {
            Some(&i) => groups[i].buckets.push(bucket),
            None => {
                candidates.push(groups.len());
                groups.push(Group {
                    metric: without_le(&s.metric),
                    buckets: vec![bucket],
                });
            }
        }
    }
    groups
}

/// Sorts by bound and merges buckets with equal bounds (`le="0.2"` and `le="2e-1"`).
fn sort_and_coalesce(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| a.upper.total_cmp(&b.upper));
    buckets.dedup_by(|later, kept| {
        if later.upper == kept.upper {
            kept.count += later.count;
            true
        } else {
            false
        }
    });
}

/// Prometheus's `almost.Equal`: equal, both NaN, or within `epsilon` relative difference.
fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    use crate::model::is_stale_nan;
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < epsilon * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Removes decreases between neighbouring cumulative counts: tiny ones (float noise) silently,
/// real ones by raising the later count; returns whether a real decrease was fixed.
fn ensure_monotonic(buckets: &mut [Bucket]) -> bool {
    let mut forced = false;
    let mut prev = buckets[0].count;
    for b in buckets.iter_mut().skip(1) {
        let curr = b.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, SMALL_DELTA_TOLERANCE) {
            b.count = prev;
            continue;
        }
        if curr < prev {
            b.count = prev;
            forced = true;
            continue;
        }
        prev = curr;
    }
    forced
}

/// Go's `sort.Search`: the first index in `0..n` where `pred` holds, assuming it is false then
/// true; kept as Go's exact bisection so that unordered input (NaN counts) picks the same index.
fn search(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut i, mut j) = (0, n);
    while i < j {
        let h = i + (j - i) / 2;
        if !pred(h) {
            i = h + 1;
        } else {
            j = h;
        }
    }
    i
}

/// Classic buckets made ready for quantiles: sorted, merged, monotonic.
pub(super) struct Prepared {
    /// False when the highest bucket is not `+Inf`: every quantile is NaN.
    valid: bool,
    /// Whether a decrease in the counts had to be removed.
    pub forced_monotonic: bool,
}

/// Readies `buckets` in place for [`prepared_quantile`].
pub(super) fn prepare(buckets: &mut Vec<Bucket>) -> Prepared {
    sort_and_coalesce(buckets);
    if buckets.last().is_none_or(|b| b.upper != f64::INFINITY) {
        return Prepared {
            valid: false,
            forced_monotonic: false,
        };
    }
    let forced_monotonic = ensure_monotonic(buckets);
    Prepared {
        valid: true,
        forced_monotonic,
    }
}

/// The φ-quantile of classic buckets, interpolating linearly inside the bucket it falls in
/// (from 0 for the lowest bucket if its bound is positive). A quantile in the `+Inf` bucket is
/// the second-highest bound. NaN for φ NaN, fewer than two buckets, no observations or no
/// `+Inf` bucket; ±Inf for φ outside [0, 1].
pub(super) fn prepared_quantile(q: f64, p: &Prepared, buckets: &[Bucket]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if !p.valid || buckets.len() < 2 {
        return f64::NAN;
    }
    let n = buckets.len();
    let observations = buckets[n - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = search(n - 1, |i| buckets[i].count >= rank);
    if b == n - 1 {
        return buckets[n - 2].upper;
    }
    if b == 0 && buckets[0].upper <= 0.0 {
        return buckets[0].upper;
    }
    let end = buckets[b].upper;
    let mut start = 0.0;
    let mut count = buckets[b].count;
    if b > 0 {
        start = buckets[b - 1].upper;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// The estimated fraction of observations between `lower` and `upper`, interpolating linearly
/// inside buckets (none from the infinite ones). NaN without a `+Inf` bucket, without
/// observations or for a NaN bound; 0 when `lower >= upper`.
pub(super) fn bucket_fraction(lower: f64, upper: f64, buckets: &mut Vec<Bucket>) -> f64 {
    sort_and_coalesce(buckets);
    let Some(last) = buckets.last() else {
        return f64::NAN;
    };
    if last.upper != f64::INFINITY {
        return f64::NAN;
    }
    let count = last.count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let mut rank = 0.0;
    let mut lower_rank = 0.0;
    let mut upper_rank = 0.0;
    let mut lower_set = false;
    let mut upper_set = false;
    let mut lower_bound = if buckets[0].upper <= 0.0 {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            lower_bound = buckets[i - 1].upper;
        }
        let upper_bound = b.upper;
        let interpolate = |v: f64| {
            if lower_bound == f64::NEG_INFINITY {
                b.count
            } else {
                rank + (b.count - rank) * (v - lower_bound) / (upper_bound - lower_bound)
            }
        };
        if !lower_set && lower_bound >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lower_bound >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lower_bound < lower && upper_bound > lower {
            lower_rank = interpolate(lower);
            lower_set = true;
        }
        if !upper_set && lower_bound < upper && upper_bound > upper {
            upper_rank = interpolate(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = b.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}

/// The metric name annotations mention for a group (empty when the name is gone).
fn group_name(g: &Group) -> &str {
    g.metric.get(METRIC_NAME).unwrap_or("")
}

/// `histogram_quantile(φ, v)` over classic buckets.
pub(super) fn histogram_quantile(q: f64, v: &Vector, t: i64, ann: &mut Annotations) -> Vector {
    if !(0.0..=1.0).contains(&q) {
        annotate::invalid_quantile(ann, q);
    }
    let mut out = Vector::new();
    for mut g in group_buckets(v, ann) {
        let p = prepare(&mut g.buckets);
        let f = prepared_quantile(q, &p, &g.buckets);
        if p.forced_monotonic && (0.0..=1.0).contains(&q) {
            annotate::forced_monotonicity(ann, group_name(&g));
        }
        out.push(Sample {
            metric: Arc::new(g.metric),
            t,
            f,
            drop_name: true,
        });
    }
    out
}

/// `histogram_quantiles(v, label, φ…)`: one output series per quantile and histogram, the
/// quantile written to `label` as Prometheus formats it (`0.0`, `0.25`, `1.0`, `NaN`).
pub(super) fn histogram_quantiles(
    v: &Vector,
    label: &str,
    qs: &[f64],
    t: i64,
    ann: &mut Annotations,
) -> Result<Vector, QueryError> {
    for &q in qs {
        if !(0.0..=1.0).contains(&q) {
            annotate::invalid_quantile(ann, q);
        }
    }
    let mut groups = group_buckets(v, ann);
    let prepared: Vec<Prepared> = groups.iter_mut().map(|g| prepare(&mut g.buckets)).collect();
    let mut out = Vector::with_capacity(groups.len() * qs.len());
    for &q in qs {
        let value = annotate::openmetrics_float(q);
        for (g, p) in groups.iter().zip(&prepared) {
            let f = prepared_quantile(q, p, &g.buckets);
            if p.forced_monotonic && (0.0..=1.0).contains(&q) {
                annotate::forced_monotonicity(ann, group_name(g));
            }
            out.push(Sample {
                metric: Arc::new(super::instant::with_label(&g.metric, label, &value)),
                t,
                f,
                drop_name: true,
            });
        }
    }
    super::instant::check_unique(&out)?;
    Ok(out)
}

/// `histogram_fraction(lower, upper, v)` over classic buckets.
pub(super) fn histogram_fraction(
    lower: f64,
    upper: f64,
    v: &Vector,
    t: i64,
    ann: &mut Annotations,
) -> Vector {
    group_buckets(v, ann)
        .into_iter()
        .map(|mut g| {
            let f = bucket_fraction(lower, upper, &mut g.buckets);
            Sample {
                metric: Arc::new(g.metric),
                t,
                f,
                drop_name: true,
            }
        })
        .collect()
}
