//! The arithmetic of PromQL's native-histogram functions over one [`FloatHistogram`], as
//! Prometheus 3 computes it: `histogram_quantile`, `histogram_fraction`,
//! `histogram_stddev`, `histogram_stdvar`, `histogram_avg`, `histogram_count` and
//! `histogram_sum`.
//!
//! Each function takes the histogram (and its scalar arguments) and returns the float result;
//! `histogram_quantile` and `histogram_fraction` also add Prometheus's infos about NaN
//! observations (with the metric name, without a position) to the caller's annotations. The
//! evaluator owns selecting samples, labels, the invalid-quantile warning and positions;
//! `histogram_avg/count/sum` are one division or field read and live in the evaluator. Nothing
//! here allocates more than one histogram's bucket list.
//!
//! Interpolation inside a bucket is exponential (linear in the logarithm of the value) for
//! exponential buckets, linear in the zero bucket and in custom buckets. Logarithms are taken
//! as Go's `math.Log2` takes them (exact for powers of two), so bucket bounds give the same
//! results as in Prometheus.

use super::annotate::go_quote;
use crate::model::histogram::{Bucket, FloatHistogram};
use crate::query::Annotations;

/// Adds the info `text` (Prometheus's words) naming `metric_name` when there is one.
fn info(ann: &mut Annotations, text: &str, metric_name: &str) {
    let mut b = String::from(text);
    if !metric_name.is_empty() {
        b.push_str(" for metric name ");
        go_quote(&mut b, metric_name);
    }
    ann.infos.insert(b);
}

/// `histogram_quantile(q, h)` as the evaluator calls it: [`quantile`], with its NaN infos
/// added to `ann`.
pub(crate) fn histogram_quantile(
    q: f64,
    h: &FloatHistogram,
    metric_name: &str,
    ann: &mut Annotations,
) -> f64 {
    let (v, notes) = quantile(q, h);
    if notes.nan_result {
        info(
            ann,
            "PromQL info: input to histogram_quantile has NaN observations, result is NaN",
            metric_name,
        );
    }
    if notes.nan_skew {
        info(
            ann,
            "PromQL info: input to histogram_quantile has NaN observations, result is skewed higher",
            metric_name,
        );
    }
    v
}

/// `histogram_fraction(lower, upper, h)` as the evaluator calls it: [`fraction`], with its
/// NaN info added to `ann`.
pub(crate) fn histogram_fraction(
    lower: f64,
    upper: f64,
    h: &FloatHistogram,
    metric_name: &str,
    ann: &mut Annotations,
) -> f64 {
    let (v, nans) = fraction(lower, upper, h);
    if nans {
        info(
            ann,
            "PromQL info: input to histogram_fraction has NaN observations, which are excluded from all fractions",
            metric_name,
        );
    }
    v
}

/// What `histogram_quantile` noticed about one histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QuantileNotes {
    /// The quantile lies among NaN observations (the sum is NaN and the buckets hold fewer
    /// than the count): the result is NaN. Prometheus's info "quantile value is NaN because
    /// of NaN observations" (`NativeHistogramQuantileNaNResultInfo`).
    pub nan_result: bool,
    /// NaN observations are counted but in no bucket, so the result is skewed towards
    /// higher values (`NativeHistogramQuantileNaNSkewInfo`).
    pub nan_skew: bool,
}

/// The `q`-quantile estimated from the buckets. `q` below 0 gives
/// `-Inf`, above 1 `+Inf`, NaN (or an empty histogram) NaN; the caller adds the
/// invalid-quantile warning for those.
///
/// The bucket holding the quantile's rank is found walking up from the lowest bucket (for `q`
/// below 0.5, or when the sum is NaN) or down from the highest; inside it the value is
/// interpolated. A quantile in the zero bucket of a histogram with buckets on one side only
/// interpolates from (or to) zero; in the first custom bucket (lower bound `-Inf`) it is the
/// upper bound when that is not positive, else it interpolates from zero; in the `+Inf` custom
/// bucket it is that bucket's lower bound.
fn quantile(q: f64, h: &FloatHistogram) -> (f64, QuantileNotes) {
    let mut notes = QuantileNotes::default();
    if q < 0.0 {
        return (f64::NEG_INFINITY, notes);
    }
    if q > 1.0 {
        return (f64::INFINITY, notes);
    }
    if h.count == 0.0 || q.is_nan() {
        return (f64::NAN, notes);
    }
    let forward = h.sum.is_nan() || q < 0.5;
    let mut it: Box<dyn Iterator<Item = Bucket<f64>>> = if forward {
        Box::new(h.all_bucket_iter())
    } else {
        Box::new(h.all_bucket_iter_desc())
    };
    let mut rank = if forward {
        q * h.count
    } else {
        (1.0 - q) * h.count
    };
    let mut bucket = Bucket {
        lower: 0.0,
        upper: 0.0,
        lower_inclusive: false,
        upper_inclusive: false,
        count: 0.0,
        index: 0,
    };
    let mut count = 0.0;
    for b in it.by_ref() {
        bucket = b;
        if b.count == 0.0 {
            continue;
        }
        count += b.count;
        if count >= rank {
            break;
        }
    }
    let custom = h.uses_custom_buckets();
    if !custom && bucket.lower < 0.0 && bucket.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            bucket.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            bucket.upper = 0.0;
        }
    } else if custom {
        if bucket.lower == f64::NEG_INFINITY {
            if bucket.upper <= 0.0 {
                return (bucket.upper, notes);
            }
            bucket.lower = 0.0;
        } else if bucket.upper == f64::INFINITY {
            return (bucket.lower, notes);
        }
    }
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        if h.sum.is_nan() {
            notes.nan_result = true;
            return (f64::NAN, notes);
        }
        return (bucket.upper, notes);
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    if h.sum.is_nan() {
        let total = count + it.map(|b| b.count).sum::<f64>();
        if total < h.count {
            notes.nan_skew = true;
        }
    }
    let fraction = rank / bucket.count;
    if custom || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
        return (
            bucket.lower + (bucket.upper - bucket.lower) * fraction,
            notes,
        );
    }
    let log_lower = go_log2(bucket.lower.abs());
    let log_upper = go_log2(bucket.upper.abs());
    if bucket.lower > 0.0 {
        return (
            (log_lower + (log_upper - log_lower) * fraction).exp2(),
            notes,
        );
    }
    (
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2(),
        notes,
    )
}

/// The estimated fraction of observations between
/// `lower` and `upper`, interpolating inside the buckets the bounds fall into (exponentially
/// in exponential buckets, linearly in the zero bucket and custom buckets; nothing of a bucket
/// with an infinite bound). NaN for an empty histogram or a NaN bound, 0 when
/// `lower >= upper`. The flag is true when the sum is NaN and the buckets hold fewer
/// observations than the count (Prometheus's `NativeHistogramFractionNaNsInfo`).
fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> (f64, bool) {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return (f64::NAN, false);
    }
    if lower >= upper {
        return (0.0, false);
    }
    let custom = h.uses_custom_buckets();
    let only_positive = h.negative_buckets.is_empty() && !h.positive_buckets.is_empty();
    let only_negative = h.positive_buckets.is_empty() && !h.negative_buckets.is_empty();
    let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    let mut it = h.all_bucket_iter();
    for mut b in it.by_ref() {
        count += b.count;
        let mut zero_bucket = false;
        if b.lower <= 0.0 && b.upper >= 0.0 {
            zero_bucket = true;
            if only_positive {
                b.lower = 0.0;
            } else if only_negative {
                b.upper = 0.0;
            }
        }
        let linear = custom || zero_bucket;
        let rank_at = |v: f64| {
            if linear {
                if b.lower == f64::NEG_INFINITY {
                    return b.count;
                }
                rank + b.count * fraction_below(&b, v, true)
            } else {
                rank + b.count * fraction_below(&b, v, false)
            }
        };
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = rank_at(lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = rank_at(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    let mut nans = false;
    if h.sum.is_nan() {
        count += it.map(|b| b.count).sum::<f64>();
        nans = count < h.count;
    } else {
        count = h.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    ((upper_rank - lower_rank) / h.count, nans)
}

/// The fraction of bucket `b`'s width at or below `v` (strictly inside its finite bounds),
/// linear or on a logarithmic scale (negative buckets mirrored).
fn fraction_below(b: &Bucket<f64>, v: f64, linear: bool) -> f64 {
    if linear {
        return (v - b.lower) / (b.upper - b.lower);
    }
    let log_lower = go_log2(b.lower.abs());
    let log_upper = go_log2(b.upper.abs());
    let log_v = go_log2(v.abs());
    if v > 0.0 {
        return (log_v - log_lower) / (log_upper - log_lower);
    }
    1.0 - (log_v - log_upper) / (log_lower - log_upper)
}

/// `histogram_stdvar(h)`: the estimated variance of the observations, each bucket's
/// observations taken at one point: the arithmetic mean of the bounds for custom buckets, zero
/// in the zero bucket, the geometric mean of the bounds (negated on the negative side) in
/// exponential buckets. Compensated (Kahan-Neumaier) summation, as Prometheus.
pub(crate) fn histogram_stdvar(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let custom = h.uses_custom_buckets();
    let (mut variance, mut comp) = (0.0f64, 0.0f64);
    for b in h.all_bucket_iter() {
        if b.count == 0.0 {
            continue;
        }
        let val = if custom {
            (b.upper + b.lower) / 2.0
        } else if b.lower <= 0.0 && b.upper >= 0.0 {
            0.0
        } else {
            let g = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 { -g } else { g }
        };
        let delta = val - mean;
        let inc = b.count * delta * delta;
        let t = variance + inc;
        if t.is_infinite() {
            comp = 0.0;
        } else if variance.abs() >= inc.abs() {
            comp += (variance - t) + inc;
        } else {
            comp += (inc - t) + variance;
        }
        variance = t;
    }
    (variance + comp) / h.count
}

/// `histogram_stddev(h)`: the square root of [`histogram_stdvar`].
pub(crate) fn histogram_stddev(h: &FloatHistogram) -> f64 {
    histogram_stdvar(h).sqrt()
}

/// `log2(x)` as Go's `math.Log2`: the binary exponent plus the natural logarithm of the
/// mantissa in `[0.5, 1)` over ln 2, exact when `x` is a power of two.
fn go_log2(x: f64) -> f64 {
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return f64::from(exp - 1);
    }
    frac.ln() * std::f64::consts::LOG2_E + f64::from(exp)
}

/// `x` as `frac · 2^exp` with `frac` in `[0.5, 1)` (Go's `math.Frexp`); zero, infinities and
/// NaN come back as they are with exponent 0.
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let (x, adjust) = if x.abs() < f64::MIN_POSITIVE {
        (x * (1u64 << 52) as f64, -52)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1022 + adjust;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::histogram::{CUSTOM_BUCKETS_SCHEMA, Span};

    fn spans(s: &[(i32, u32)]) -> Vec<Span> {
        s.iter().map(|&(o, l)| Span::new(o, l)).collect()
    }

    /// Schema 0: zero bucket 2 (threshold 0.001), positive (0.5,1]:1 (1,2]:2 (4,8]:3,
    /// negative [-2,-1):0.5 [-1,-0.5):4. Count 12.5, sum 3.
    fn sample() -> FloatHistogram {
        FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 2.0,
            count: 12.5,
            sum: 3.0,
            positive_spans: spans(&[(0, 2), (1, 1)]),
            positive_buckets: vec![1.0, 2.0, 3.0],
            negative_spans: spans(&[(0, 2)]),
            negative_buckets: vec![4.0, 0.5],
            ..Default::default()
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn quantile_arguments_out_of_range() {
        let h = sample();
        assert_eq!(quantile(-0.1, &h).0, f64::NEG_INFINITY);
        assert_eq!(quantile(1.1, &h).0, f64::INFINITY);
        assert!(quantile(f64::NAN, &h).0.is_nan());
        assert_eq!(quantile(f64::NEG_INFINITY, &h).0, f64::NEG_INFINITY);
        assert!(quantile(0.5, &FloatHistogram::default()).0.is_nan());
    }

    #[test]
    fn quantile_interpolates_exponentially() {
        let h = sample();
        // Ascending cumulative: 0.5, 4.5, 6.5 (zero), 7.5, 9.5, 12.5.
        // q=0.9: from the top, rank 1.25 lies in (4,8] (3 observations): fraction from below
        // (3 - 1.25)/3; log2 interpolation between 2 and 3.
        let (v, notes) = quantile(0.9, &h);
        assert!(close(v, (2.0 + 1.75 / 3.0f64).exp2()), "{v}");
        assert_eq!(notes, QuantileNotes::default());
        // q=0.7: from the top rank 3.75: (4,8] holds 3, (1,2] the rest: 2 - 0.75 = 1.25 up
        // from 1 in a bucket of 2: fraction 0.625 in log scale between 0 and 1.
        let (v, _) = quantile(0.7, &h);
        assert!(close(v, 0.625f64.exp2()), "{v}");
        // q=0.2: rank 2.5 from below: past [-2,-1) (0.5), 2 into [-1,-0.5) (4): fraction
        // 0.5, mirrored: -2^(-1 + (0 - -1)·0.5) = -2^-0.5.
        let (v, _) = quantile(0.2, &h);
        assert!(close(v, -(0.5f64.sqrt())), "{v}");
    }

    #[test]
    fn quantile_in_the_zero_bucket_is_linear() {
        let h = sample();
        // q=0.5: rank 6.25 from the top: 3+2+1 = 6 in the positive buckets, 0.25 of the zero
        // bucket's 2 from its top: fraction 1.75/2 from -0.001 to 0.001.
        let (v, _) = quantile(0.5, &h);
        assert!(close(v, -0.001 + 0.002 * 0.875), "{v}");
        // Positive buckets only: the zero bucket starts at 0.
        let mut p = sample();
        p.negative_spans.clear();
        p.negative_buckets.clear();
        p.count = 8.0;
        let (v, _) = quantile(0.125, &p);
        assert!(close(v, 0.0005), "{v}");
        // Only a zero bucket: interpolated across it.
        let z = FloatHistogram {
            zero_threshold: 1.0,
            zero_count: 4.0,
            count: 4.0,
            ..Default::default()
        };
        assert!(close(quantile(0.75, &z).0, 0.5));
    }

    #[test]
    fn quantile_of_custom_buckets() {
        let h = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            custom_values: vec![1.0, 5.0],
            positive_spans: spans(&[(0, 3)]),
            positive_buckets: vec![2.0, 4.0, 2.0],
            count: 8.0,
            sum: 20.0,
            ..Default::default()
        };
        // q=0.5 from the top: rank 4: +Inf bucket 2, then 2 of (1,5]'s 4 from its top: 3.
        assert!(close(quantile(0.5, &h).0, 3.0));
        // In the first bucket (-Inf,1]: interpolated from 0: rank 1 of 2 → 0.5.
        assert!(close(quantile(0.125, &h).0, 0.5));
        // In the +Inf bucket: its lower bound.
        assert_eq!(quantile(0.99, &h).0, 5.0);
        // A first bucket with a negative bound gives that bound.
        let mut n = h.clone();
        n.custom_values = vec![-1.0, 5.0];
        assert_eq!(quantile(0.1, &n).0, -1.0);
    }

    #[test]
    fn quantile_with_nan_observations() {
        // Count 10 but 8 in buckets: NaN sum walks up from below.
        let mut h = sample();
        h.negative_spans.clear();
        h.negative_buckets.clear();
        h.count = 10.0;
        h.sum = f64::NAN;
        let (v, notes) = quantile(0.99, &h);
        assert!(v.is_nan());
        assert!(notes.nan_result);
        let (v, notes) = quantile(0.5, &h);
        // rank 5: zero 2, (0.5,1] 1, (1,2] 2 → reached exactly at the top of (1,2].
        assert!(close(v, 2.0), "{v}");
        assert!(notes.nan_skew && !notes.nan_result);
    }

    #[test]
    fn quantile_at_the_extremes() {
        let h = sample();
        // q=1: from the top, rank 0 is met by the highest populated bucket: its upper bound.
        assert!(close(quantile(1.0, &h).0, 8.0));
        // q=0: from below, rank 0: the lowest bucket's lower bound.
        assert!(close(quantile(0.0, &h).0, -2.0));
    }

    #[test]
    fn fraction_rules() {
        let h = sample();
        assert!(fraction(f64::NAN, 1.0, &h).0.is_nan());
        assert_eq!(fraction(1.0, 1.0, &h).0, 0.0);
        assert!(close(fraction(f64::NEG_INFINITY, f64::INFINITY, &h).0, 1.0));
        // Below 0: negative buckets 4.5 and half the zero bucket... 0 is the zero bucket's
        // middle: linear, 1 of its 2.
        assert!(close(fraction(f64::NEG_INFINITY, 0.0, &h).0, 5.5 / 12.5));
        // Exactly on bucket bounds: (1,2] and nothing between 2 and 4.
        assert!(close(fraction(1.0, 4.0, &h).0, 2.0 / 12.5));
        // Inside (4,8], log scale: 4→√32 is half the bucket.
        assert!(close(fraction(4.0, 32f64.sqrt(), &h).0, 1.5 / 12.5));
        // Inside a negative bucket, mirrored: [-2,-1) from -2 to -√2 is half.
        assert!(close(
            fraction(f64::NEG_INFINITY, -(2f64.sqrt()), &h).0,
            0.25 / 12.5
        ));
        assert!(fraction(0.0, 1.0, &FloatHistogram::default()).0.is_nan());
    }

    #[test]
    fn fraction_of_custom_buckets_skips_infinite_buckets() {
        let h = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            custom_values: vec![1.0, 5.0],
            positive_spans: spans(&[(0, 3)]),
            positive_buckets: vec![2.0, 4.0, 2.0],
            count: 8.0,
            sum: 20.0,
            ..Default::default()
        };
        // (1,5] linear: 1→3 is half of 4.
        assert!(close(fraction(1.0, 3.0, &h).0, 2.0 / 8.0));
        // Up to 0.5 in (-Inf,1]: the first bucket is taken from 0 (no negative buckets), so
        // half of it.
        assert!(close(fraction(f64::NEG_INFINITY, 0.5, &h).0, 1.0 / 8.0));
        // Up to 10 in (5,+Inf]: nothing of that bucket.
        assert!(close(fraction(f64::NEG_INFINITY, 10.0, &h).0, 6.0 / 8.0));
    }

    #[test]
    fn fraction_flags_nan_observations() {
        let mut h = sample();
        h.sum = f64::NAN;
        h.count = 20.0;
        let (v, nans) = fraction(f64::NEG_INFINITY, f64::INFINITY, &h);
        assert!(nans);
        assert!(close(v, 12.5 / 20.0));
        let (_, nans) = fraction(0.0, 1.0, &sample());
        assert!(!nans);
    }

    #[test]
    fn variance_uses_bucket_midpoints() {
        // Two buckets: (1,2] 1 observation at √2, (4,8] 1 at √32; zero bucket 2 at 0.
        let h = FloatHistogram {
            zero_threshold: 0.001,
            zero_count: 2.0,
            count: 4.0,
            sum: 8.0,
            positive_spans: spans(&[(1, 1), (1, 1)]),
            positive_buckets: vec![1.0, 1.0],
            ..Default::default()
        };
        let mean = 2.0;
        let want =
            (2.0 * mean * mean + (2f64.sqrt() - mean).powi(2) + (32f64.sqrt() - mean).powi(2))
                / 4.0;
        assert!(close(histogram_stdvar(&h), want));
        assert!(close(histogram_stddev(&h), want.sqrt()));
        // Negative buckets use the negated geometric mean.
        let n = FloatHistogram {
            count: 1.0,
            sum: -1.5,
            negative_spans: spans(&[(1, 1)]),
            negative_buckets: vec![1.0],
            ..Default::default()
        };
        assert!(close(histogram_stdvar(&n), (-(2f64.sqrt()) + 1.5).powi(2)));
        // Custom buckets use the arithmetic mean.
        let c = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            custom_values: vec![1.0, 3.0],
            positive_spans: spans(&[(1, 1)]),
            positive_buckets: vec![2.0],
            count: 2.0,
            sum: 5.0,
            ..Default::default()
        };
        assert!(close(histogram_stdvar(&c), 0.25));
        assert!(histogram_stdvar(&FloatHistogram::default()).is_nan());
    }

    #[test]
    fn nan_observations_raise_prometheus_infos() {
        let mut h = sample();
        h.negative_spans.clear();
        h.negative_buckets.clear();
        h.count = 10.0;
        h.sum = f64::NAN;
        let mut ann = Annotations::default();
        assert!(histogram_quantile(0.99, &h, "rpc_seconds", &mut ann).is_nan());
        histogram_quantile(0.5, &h, "", &mut ann);
        histogram_fraction(0.0, 1.0, &h, "a\"b", &mut ann);
        let infos: Vec<&str> = ann.infos.iter().map(String::as_str).collect();
        assert_eq!(
            infos,
            vec![
                "PromQL info: input to histogram_fraction has NaN observations, which are excluded from all fractions for metric name \"a\\\"b\"",
                "PromQL info: input to histogram_quantile has NaN observations, result is NaN for metric name \"rpc_seconds\"",
                "PromQL info: input to histogram_quantile has NaN observations, result is skewed higher",
            ]
        );
        assert!(ann.warnings.is_empty());
        let mut quiet = Annotations::default();
        histogram_quantile(0.5, &sample(), "x", &mut quiet);
        histogram_fraction(0.0, 1.0, &sample(), "x", &mut quiet);
        assert!(quiet.infos.is_empty());
    }

    #[test]
    fn go_log2_is_exact_on_powers_of_two() {
        for e in [-1022, -1, 0, 1, 52, 1023] {
            assert_eq!(go_log2(2f64.powi(e)), f64::from(e));
        }
        assert_eq!(go_log2(f64::from_bits(1)), -1074.0);
        assert_eq!(go_log2(0.0), f64::NEG_INFINITY);
        assert_eq!(go_log2(f64::INFINITY), f64::INFINITY);
        assert!(close(go_log2(10.0), 10f64.log2()));
        assert_eq!(frexp(f64::from_bits(3)), (0.75, -1072));
    }

    /// The answers of the conformance script's `load_with_nhcb` sections (classic buckets
    /// turned into custom-bucket histograms by `from_classic`) for histogram_quantile,
    /// histogram_fraction, histogram_stddev and histogram_stdvar at 50m, within the script
    /// runner's relative tolerance of 1e-6.
    #[test]
    fn conformance_script_answers() {
        use crate::model::histogram::{ClassicHistogram, HistogramValue};
        use std::collections::BTreeMap;

        let text = std::fs::read_to_string("../shared/promql-testdata/histograms.test")
            .expect("the conformance scripts are in ../shared");
        type Key = (String, BTreeMap<String, String>);
        let mut groups: BTreeMap<Key, ClassicHistogram> = BTreeMap::new();
        let parse_labels = |s: &str| -> BTreeMap<String, String> {
            s.split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect()
        };
        let num = |s: &str| -> f64 {
            match s.trim() {
                "Inf" | "+Inf" | "+inf" | "inf" => f64::INFINITY,
                "-Inf" | "-inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().unwrap_or(f64::NAN),
            }
        };
        let lines: Vec<&str> = text.lines().collect();
        let (mut checked, mut i) = (0, 0);
        while i < lines.len() {
            let line = lines[i];
            i += 1;
            if line.starts_with("clear") {
                groups.clear();
            } else if line == "load_with_nhcb 5m" {
                while i < lines.len() && lines[i].starts_with(char::is_whitespace) {
                    let l = lines[i].trim();
                    i += 1;
                    // name{labels} a+bx10: the value at 50m is a + 10b.
                    let Some((series, expr)) = l.split_once('}') else {
                        continue;
                    };
                    let Some((name, labels)) = series.split_once('{') else {
                        continue;
                    };
                    let expr = expr.trim();
                    let Some(body) = expr.strip_suffix("x10") else {
                        continue;
                    };
                    let Some(p) = body[1..].find(['+', '-']).map(|p| p + 1) else {
                        continue;
                    };
                    let (a, b) = (num(&body[..p]), num(&body[p + 1..]));
                    let v = if &body[p..=p] == "+" {
                        a + 10.0 * b
                    } else {
                        a - 10.0 * b
                    };
                    let mut labels = parse_labels(labels);
                    let le = labels.remove("le");
                    let (base, kind) = if let Some(b) = name.strip_suffix("_bucket") {
                        (b, 0)
                    } else if let Some(b) = name.strip_suffix("_count") {
                        (b, 1)
                    } else if let Some(b) = name.strip_suffix("_sum") {
                        (b, 2)
                    } else {
                        continue;
                    };
                    let h = groups.entry((base.to_string(), labels)).or_default();
                    let _ = match (kind, le) {
                        (0, Some(le)) if !num(&le).is_nan() => h.set_bucket(num(&le), v),
                        (1, _) => h.set_count(v),
                        (2, _) => h.set_sum(v),
                        _ => Ok(()),
                    };
                }
            } else if let Some(q) = line.strip_prefix("eval instant at 50m ") {
                let Some((func, args)) = q.split_once('(') else {
                    continue;
                };
                let args: Vec<&str> = args
                    .trim_end_matches(')')
                    .split(',')
                    .map(str::trim)
                    .collect();
                let Some(&name) = args.last() else { continue };
                if name.contains(['{', '[', '(']) || name.ends_with("_bucket") {
                    continue;
                }
                let eval = |h: &FloatHistogram| -> Option<f64> {
                    Some(match (func, args.len()) {
                        ("histogram_quantile", 2) => quantile(num(args[0]), h).0,
                        ("histogram_fraction", 3) => fraction(num(args[0]), num(args[1]), h).0,
                        ("histogram_stddev", 1) => histogram_stddev(h),
                        ("histogram_stdvar", 1) => histogram_stdvar(h),
                        _ => return None,
                    })
                };
                while i < lines.len() && lines[i].starts_with(char::is_whitespace) {
                    let l = lines[i].trim();
                    i += 1;
                    let Some(rest) = l.strip_prefix('{') else {
                        continue;
                    };
                    let Some((labels, want)) = rest.split_once('}') else {
                        continue;
                    };
                    let key = (name.to_string(), parse_labels(labels));
                    let Some(classic) = groups.get(&key) else {
                        continue;
                    };
                    let h = match classic.convert() {
                        Ok(HistogramValue::Int(h)) => h.to_float(),
                        Ok(HistogramValue::Float(h)) => *h,
                        Err(_) => continue,
                    };
                    let Some(got) = eval(&h) else { continue };
                    let want = num(want);
                    let ok = got == want
                        || (got.is_nan() && want.is_nan())
                        || (got - want).abs() <= 1e-6 * got.abs().max(want.abs());
                    assert!(ok, "{line} {labels}: got {got}, want {want}");
                    checked += 1;
                }
            }
        }
        assert!(checked >= 50, "only {checked} answers checked");
    }
}
