//! Classic histograms: grouping `le` buckets into histograms, `histogram_quantile(s)` and
//! `histogram_fraction` over them, with Prometheus's treatment of unsorted, duplicate and
//! non-monotonic buckets.

use std::sync::Arc;

use super::annotate;
use super::labels::{check_unique, with_label};
use crate::model::{Labels, METRIC_NAME};
use crate::query::aggregate::key::PrehashedMap;
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

/// A hash of every label but `le`; `buf` is scratch space reused between calls. Equal hashes
/// are confirmed with [`same_without_le`], so a collision only costs a comparison.
fn hash_without_le(l: &Labels, buf: &mut Vec<u8>) -> u64 {
    crate::query::aggregate::key::hash_pairs(l.iter().filter(|(n, _)| *n != BUCKET_LABEL), buf)
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
    let mut by_hash: PrehashedMap<u64, Vec<usize>> = PrehashedMap::default();
    let mut buf = Vec::new();
    for s in v {
        if s.h.is_some() {
            continue;
        }
        let le = s.metric.get(BUCKET_LABEL).unwrap_or("");
        let Some(upper) = parse_le(le) else {
            annotate::bad_bucket_label(ann, s.metric.metric_name().unwrap_or(""), le);
            continue;
        };
        let bucket = Bucket { upper, count: s.f };
        let candidates = by_hash
            .entry(hash_without_le(&s.metric, &mut buf))
            .or_default();
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

/// The native histograms of `v` and its classic bucket groups, as Prometheus sorts them
/// before `histogram_quantile` and `histogram_fraction`: a native histogram whose labels are
/// those of a classic group (`le` aside) is a mix, and both are left out with a warning.
fn split_native<'v>(v: &'v Vector, ann: &mut Annotations) -> (Vec<&'v Sample>, Vec<Group>) {
    let mut groups = group_buckets(v, ann);
    let mut natives: Vec<&Sample> = v.iter().filter(|s| s.h.is_some()).collect();
    if !natives.is_empty() && !groups.is_empty() {
        natives.retain(|s| {
            let Some(i) = groups
                .iter()
                .position(|g| !g.buckets.is_empty() && g.metric == *s.metric)
            else {
                return true;
            };
            annotate::mixed_classic_native(ann, s.metric.metric_name().unwrap_or(""));
            groups.remove(i);
            false
        });
    }
    (natives, groups)
}

/// `histogram_quantile(φ, v)` over native histograms and classic buckets.
pub(super) fn histogram_quantile(q: f64, v: &Vector, t: i64, ann: &mut Annotations) -> Vector {
    if !(0.0..=1.0).contains(&q) || q.is_nan() {
        annotate::invalid_quantile(ann, q);
    }
    let mut out = Vector::new();
    let (natives, groups) = split_native(v, ann);
    for s in natives {
        let Some(h) = &s.h else { continue };
        let name = s.metric.metric_name().unwrap_or("");
        out.push(Sample {
            h: None,
            metric: s.metric.clone(),
            t,
            f: super::native::histogram_quantile(q, h, name, ann),
            drop_name: true,
        });
    }
    for mut g in groups {
        let p = prepare(&mut g.buckets);
        let f = prepared_quantile(q, &p, &g.buckets);
        if p.forced_monotonic && (0.0..=1.0).contains(&q) {
            annotate::forced_monotonicity(ann, group_name(&g));
        }
        out.push(Sample {
            h: None,
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
    let (natives, mut groups) = split_native(v, ann);
    let prepared: Vec<Prepared> = groups.iter_mut().map(|g| prepare(&mut g.buckets)).collect();
    let mut out = Vector::with_capacity((natives.len() + groups.len()) * qs.len());
    for &q in qs {
        let value = annotate::openmetrics_float(q);
        for s in &natives {
            let Some(h) = &s.h else { continue };
            let name = s.metric.metric_name().unwrap_or("");
            out.push(Sample {
                h: None,
                metric: Arc::new(with_label(&s.metric, label, &value)),
                t,
                f: super::native::histogram_quantile(q, h, name, ann),
                drop_name: true,
            });
        }
        for (g, p) in groups.iter().zip(&prepared) {
            let f = prepared_quantile(q, p, &g.buckets);
            if p.forced_monotonic && (0.0..=1.0).contains(&q) {
                annotate::forced_monotonicity(ann, group_name(g));
            }
            out.push(Sample {
                h: None,
                metric: Arc::new(with_label(&g.metric, label, &value)),
                t,
                f,
                drop_name: true,
            });
        }
    }
    check_unique(&out)?;
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
    let (natives, groups) = split_native(v, ann);
    let mut out: Vector = natives
        .into_iter()
        .filter_map(|s| {
            let h = s.h.as_ref()?;
            let name = s.metric.metric_name().unwrap_or("");
            Some(Sample {
                h: None,
                metric: s.metric.clone(),
                t,
                f: super::native::histogram_fraction(lower, upper, h, name, ann),
                drop_name: true,
            })
        })
        .collect();
    out.extend(groups.into_iter().map(|mut g| {
        let f = bucket_fraction(lower, upper, &mut g.buckets);
        Sample {
            h: None,
            metric: Arc::new(g.metric),
            t,
            f,
            drop_name: true,
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    const INF: f64 = f64::INFINITY;
    const NAN: f64 = f64::NAN;

    /// Bucket samples of one histogram named `name` with extra labels.
    fn hist(name: &str, extra: &[(&str, &str)], buckets: &[(&str, f64)]) -> Vector {
        buckets
            .iter()
            .map(|(le, f)| {
                let mut l = vec![("__name__", name), ("le", *le)];
                l.extend_from_slice(extra);
                sample(&l, *f, 3_000_000)
            })
            .collect()
    }

    /// testhistogram3_bucket at 50m.
    fn testhistogram3() -> Vector {
        let mut v = hist(
            "testhistogram3_bucket",
            &[("start", "positive")],
            &[
                ("0", 0.0),
                ("0.1", 50.0),
                (".2", 70.0),
                ("1e0", 110.0),
                ("+Inf", 110.0),
            ],
        );
        v.extend(hist(
            "testhistogram3_bucket",
            &[("start", "negative")],
            &[
                ("-.25", 0.0),
                ("-.2", 10.0),
                ("-0.1", 20.0),
                ("0.3", 20.0),
                ("+Inf", 20.0),
            ],
        ));
        v
    }

    /// testhistogram_bucket at 50m.
    fn testhistogram() -> Vector {
        let mut v = hist(
            "testhistogram_bucket",
            &[("start", "positive")],
            &[("0.1", 50.0), (".2", 70.0), ("1e0", 110.0), ("+Inf", 120.0)],
        );
        v.extend(hist(
            "testhistogram_bucket",
            &[("start", "negative")],
            &[("-.2", 10.0), ("-0.1", 20.0), ("0.3", 20.0), ("+Inf", 30.0)],
        ));
        v
    }

    fn quantile_of(q: f64, v: &Vector) -> (Vec<(String, f64)>, Annotations) {
        let mut ann = Annotations::default();
        let out = histogram_quantile(q, v, 77, &mut ann);
        assert!(out.iter().all(|s| s.drop_name && s.t == 77));
        let got = out
            .iter()
            .map(|s| (s.metric.get("start").unwrap_or("").to_string(), s.f))
            .collect();
        (got, ann)
    }

    #[track_caller]
    fn assert_quantiles(q: f64, v: &Vector, want: &[f64]) -> Annotations {
        let (got, ann) = quantile_of(q, v);
        let got: Vec<f64> = got.into_iter().map(|(_, f)| f).collect();
        assert_eq!(got.len(), want.len(), "q={q}: {got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, *w), "q={q}: {got:?} vs {want:?}");
        }
        ann
    }

    #[test]
    fn quantiles_of_the_conformance_histograms() {
        let h3 = testhistogram3();
        for (q, want) in [
            (0.0, [0.0, -0.25]),
            (0.25, [0.055, -0.225]),
            (0.5, [0.125, -0.2]),
            (0.75, [0.45, -0.15]),
            (1.0, [1.0, -0.1]),
        ] {
            let ann = assert_quantiles(q, &h3, &want);
            assert_eq!(ann, Annotations::default());
        }
        let h = testhistogram();
        for (q, want) in [
            (0.0, [0.0, -0.2]),
            (1.0, [1.0, 0.3]),
            (0.2, [0.048, -0.2]),
            (0.5, [0.15, -0.15]),
            (0.8, [0.72, 0.3]),
        ] {
            assert_quantiles(q, &h, &want);
        }
        for (q, want, shown) in [(-0.1, -INF, "-0.1"), (1.01, INF, "1.01"), (NAN, NAN, "NaN")] {
            let ann = assert_quantiles(q, &h, &[want, want]);
            let text =
                format!("PromQL warning: quantile value should be between 0 and 1, got {shown}");
            assert_eq!(ann.warnings.into_iter().collect::<Vec<_>>(), [text]);
        }
        // The warning does not need any input.
        let (got, ann) = quantile_of(NAN, &Vec::new());
        assert!(got.is_empty() && ann.warnings.len() == 1);
        let h2 = hist(
            "testhistogram2_bucket",
            &[],
            &[
                ("0", 0.0),
                ("2", 1.0),
                ("4", 2.0),
                ("6", 3.0),
                ("+Inf", 3.0),
            ],
        );
        for (q, want) in [(1.0 / 6.0, 1.0), (0.5, 3.0), (5.0 / 6.0, 5.0)] {
            assert_quantiles(q, &h2, &[want]);
        }
        // sum by (le) of the four request_duration_seconds histograms.
        let summed = hist(
            "request_duration_seconds_bucket",
            &[],
            &[("0.1", 100.0), ("0.2", 190.0), ("+Inf", 250.0)],
        );
        assert_quantiles(0.3, &summed, &[0.075]);
        assert_quantiles(0.5, &summed, &[0.1277777777777778]);
    }

    #[test]
    fn non_monotonic_buckets_are_fixed_with_an_info() {
        let v = hist(
            "nonmonotonic_bucket",
            &[],
            &[
                ("0.1", 20.0),
                ("1", 10.0),
                ("10", 50.0),
                ("100", 40.0),
                ("1000", 90.0),
                ("+Inf", 80.0),
            ],
        );
        let info = "PromQL info: input to histogram_quantile needed to be fixed for monotonicity \
                    (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) \
                    for metric name \"nonmonotonic_bucket\"";
        for (q, want) in [(0.01, 0.0045), (0.5, 8.5), (0.99, 979.75)] {
            let ann = assert_quantiles(q, &v, &[want]);
            assert_eq!(ann.infos.into_iter().collect::<Vec<_>>(), [info]);
        }
        // Out-of-range φ never looks at the buckets, so nothing is fixed.
        assert!(assert_quantiles(2.0, &v, &[INF]).infos.is_empty());
        // Differences within 1e-12 are float noise: no info.
        let noisy = hist(
            "noisy_bucket",
            &[],
            &[("1", 10.000000000001), ("2", 10.0), ("+Inf", 20.0)],
        );
        assert!(assert_quantiles(0.25, &noisy, &[0.5]).infos.is_empty());
    }

    #[test]
    fn odd_bucket_layouts() {
        // Several spellings of one bound are merged.
        let mut mixed = hist(
            "mixed_bucket",
            &[("instance", "ins1")],
            &[
                ("0.1", 10.0),
                ("0.2", 10.0),
                ("2e-1", 10.0),
                ("2.0e-1", 10.0),
                ("+Inf", 40.0),
            ],
        );
        mixed.extend(hist(
            "mixed_bucket",
            &[("instance", "ins2")],
            &[("+inf", 0.0), ("+Inf", 0.0)],
        ));
        assert_quantiles(0.5, &mixed, &[0.15, NAN]);
        assert_quantiles(0.75, &mixed, &[0.2, NAN]);
        assert_quantiles(1.0, &mixed, &[0.2, NAN]);
        // No observations, no +Inf bucket, or a single bucket: NaN.
        let empty = hist(
            "e_bucket",
            &[],
            &[("0.1", 0.0), ("0.2", 0.0), ("+Inf", 0.0)],
        );
        assert_quantiles(0.2, &empty, &[NAN]);
        let open = hist("o_bucket", &[], &[("0.1", 3.0), ("0.2", 9.0)]);
        assert_quantiles(0.2, &open, &[NAN]);
        let single = hist("s_bucket", &[], &[("+Inf", 9.0)]);
        assert_quantiles(0.5, &single, &[NAN]);
        // Unsorted input with irregular bounds; the lowest bucket starts at 0.
        let shuffled = hist(
            "u_bucket",
            &[],
            &[("+Inf", 13.0), ("7.5", 12.0), ("0.25", 4.0), ("3", 10.0)],
        );
        assert_quantiles(0.25, &shuffled, &[0.25 * 3.25 / 4.0]);
        assert_quantiles(0.5, &shuffled, &[0.25 + 2.75 * 2.5 / 6.0]);
        assert_quantiles(0.99, &shuffled, &[7.5]);
        // A non-positive lowest bound is returned as is.
        let negative = hist("n_bucket", &[], &[("-1.5", 4.0), ("2", 8.0), ("+Inf", 8.0)]);
        assert_quantiles(0.25, &negative, &[-1.5]);
        assert_quantiles(0.75, &negative, &[-1.5 + 3.5 * 0.5]);
    }

    #[test]
    fn buckets_group_by_every_label_but_le() {
        let mut v = hist("a_bucket", &[("job", "x")], &[("1", 1.0), ("+Inf", 2.0)]);
        v.extend(hist(
            "b_bucket",
            &[("job", "x")],
            &[("1", 3.0), ("+Inf", 4.0)],
        ));
        v.push(sample(
            &[("__name__", "a_bucket"), ("job", "x"), ("le", "5")],
            1.5,
            1,
        ));
        let mut ann = Annotations::default();
        let groups = group_buckets(&v, &mut ann);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].metric.to_string(), r#"a_bucket{job="x"}"#);
        assert_eq!(groups[0].buckets.len(), 3);
        assert_eq!(groups[1].metric.to_string(), r#"b_bucket{job="x"}"#);
        assert!(ann.warnings.is_empty());
    }

    #[test]
    fn missing_or_malformed_le_is_skipped_with_a_warning() {
        let v = vec![
            sample(&[("__name__", "series"), ("ale", "0.1")], 2.0, 1),
            sample(&[("__name__", "series"), ("le", "Hello World")], 2.0, 1),
            sample(&[("le", "+NaN")], 2.0, 1),
        ];
        let (got, ann) = quantile_of(0.8, &v);
        assert!(got.is_empty());
        let want = [
            "PromQL warning: bucket label \"le\" is missing or has a malformed value of \"\" \
             for metric name \"series\"",
            "PromQL warning: bucket label \"le\" is missing or has a malformed value of \"+NaN\"",
            "PromQL warning: bucket label \"le\" is missing or has a malformed value of \
             \"Hello World\" for metric name \"series\"",
        ];
        assert_eq!(ann.warnings.into_iter().collect::<Vec<_>>(), want);
    }

    #[test]
    fn le_parses_as_go_parse_float() {
        for (s, want) in [
            ("+Inf", INF),
            ("+inf", INF),
            ("Infinity", INF),
            ("-inf", -INF),
            ("1e0", 1.0),
            (".2", 0.2),
            ("2.", 2.0),
            ("-0.1", -0.1),
            ("1e-400", 0.0),
        ] {
            assert_eq!(parse_le(s), Some(want), "{s}");
        }
        assert!(parse_le("NaN").is_some_and(f64::is_nan));
        for s in [
            "", "+NaN", "-nan", "1e400", "-1e400", " 1", "1_000", "infinit", "0.1s",
        ] {
            assert_eq!(parse_le(s), None, "{s}");
        }
    }

    #[test]
    fn histogram_quantiles_labels_each_quantile() {
        let mut ann = Annotations::default();
        let qs = [0.0, 0.25, 1.0, -0.1, NAN];
        let out = histogram_quantiles(&testhistogram3(), "q", &qs, 9, &mut ann).unwrap();
        let got: Vec<(String, String, f64)> = out
            .iter()
            .map(|s| {
                let g = |n| s.metric.get(n).unwrap_or("").to_string();
                (g("q"), g("start"), s.f)
            })
            .collect();
        let want = [
            ("0.0", "positive", 0.0),
            ("0.0", "negative", -0.25),
            ("0.25", "positive", 0.055),
            ("0.25", "negative", -0.225),
            ("1.0", "positive", 1.0),
            ("1.0", "negative", -0.1),
            ("-0.1", "positive", -INF),
            ("-0.1", "negative", -INF),
            ("NaN", "positive", NAN),
            ("NaN", "negative", NAN),
        ];
        assert_eq!(got.len(), want.len());
        for ((q, st, f), (wq, wst, wf)) in got.iter().zip(want) {
            assert_eq!((q.as_str(), st.as_str()), (wq, wst));
            assert!(close(*f, wf), "{q} {st}: {f} vs {wf}");
        }
        assert!(out.iter().all(|s| s.drop_name && s.t == 9));
        assert_eq!(ann.warnings.len(), 2);
        let err = histogram_quantiles(&testhistogram3(), "start", &[0.5], 9, &mut ann).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vector cannot contain metrics with the same labelset"
        );
    }

    #[test]
    fn fractions_of_classic_buckets() {
        /// Buckets, lower, upper, expected fraction.
        type Case<'a> = (&'a [(&'a str, f64)], f64, f64, f64);
        let table: &[Case] = &[
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                0.0,
                1.5,
                0.02,
            ),
            (
                &[("-3", 10.0), ("-2", 12.0), ("-1", 15.0), ("+Inf", 100.0)],
                -4.0,
                -2.0,
                0.02,
            ),
            (
                &[("-3", 10.0), ("-2", 12.0), ("-1", 15.0), ("+Inf", 100.0)],
                -INF,
                -1.5,
                0.135,
            ),
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                -INF,
                INF,
                1.0,
            ),
            (
                &[("-3", 10.0), ("-2", 12.0), ("-1", 15.0), ("+Inf", 100.0)],
                -INF,
                INF,
                1.0,
            ),
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                4.0,
                5.0,
                0.0,
            ),
            (
                &[("-3", 10.0), ("-2", 12.0), ("-1", 15.0), ("+Inf", 100.0)],
                0.0,
                1.0,
                0.0,
            ),
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                2.0,
                5.0,
                0.03,
            ),
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                400.0,
                INF,
                0.94,
            ),
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                2.0,
                2.0,
                0.0,
            ),
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                3.0,
                2.0,
                0.0,
            ),
            (&[("+Inf", 100.0)], 0.0, 1.0, 0.0),
            (
                &[("1", 0.0), ("2", 0.0), ("3", 0.0), ("+Inf", 0.0)],
                0.0,
                5.0,
                NAN,
            ),
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                2.0,
                3.5,
                0.03,
            ),
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                0.5,
                2.0,
                0.025,
            ),
            (
                &[("1", 1.0), ("2", 3.0), ("3", 6.0), ("+Inf", 100.0)],
                1.0,
                3.0,
                0.05,
            ),
            (
                &[("0.5", 2.5), ("1", 7.5), ("+Inf", 100.0)],
                0.1,
                0.75,
                0.045,
            ),
            (
                &[
                    ("-2", 5.0),
                    ("-1", 10.0),
                    ("0", 15.0),
                    ("1", 20.0),
                    ("+Inf", 100.0),
                ],
                -1.0,
                1.0,
                0.1,
            ),
            (&[("1", 1.0), ("+Inf", 100.0)], NAN, 1.0, NAN),
            (&[("1", 1.0), ("+Inf", 100.0)], 0.0, NAN, NAN),
            (&[("1", 1.0), ("2", 3.0), ("+Inf", 10.0)], -10.0, -5.0, 0.0),
            (&[("1", 1.0), ("2", 3.0), ("+Inf", 10.0)], 5.0, 10.0, 0.0),
        ];
        for (buckets, lower, upper, want) in table {
            let v = hist("h_bucket", &[], buckets);
            let mut ann = Annotations::default();
            let out = histogram_fraction(*lower, *upper, &v, 5, &mut ann);
            assert_eq!(out.len(), 1);
            assert!(
                close(out[0].f, *want),
                "{lower}..{upper} of {buckets:?}: {}",
                out[0].f
            );
            assert!(out[0].drop_name && out[0].t == 5 && ann == Annotations::default());
        }
        let h2 = hist(
            "testhistogram2_bucket",
            &[],
            &[
                ("0", 0.0),
                ("2", 10.0),
                ("4", 20.0),
                ("6", 30.0),
                ("+Inf", 30.0),
            ],
        );
        let mut ann = Annotations::default();
        for (upper, want) in [
            (4.0, 0.6666666666666666),
            (6.0, 1.0),
            (3.5, 0.5833333333333334),
        ] {
            let out = histogram_fraction(0.0, upper, &h2, 5, &mut ann);
            assert!(close(out[0].f, want), "{upper}: {}", out[0].f);
        }
        let out = histogram_fraction(0.0, 0.2, &testhistogram3(), 5, &mut ann);
        assert!(close(out[0].f, 0.6363636363636364) && out[1].f == 0.0);
        let open = hist("o_bucket", &[], &[("1", 3.0), ("2", 9.0)]);
        assert!(
            histogram_fraction(0.0, 1.0, &open, 5, &mut ann)[0]
                .f
                .is_nan()
        );
    }
}
