//! Classic histograms (cumulative `le` buckets, `_count`, `_sum`) turned into custom-bucket
//! native histograms (schema -53, "NHCB"), as Prometheus converts them for
//! `convert_classic_histograms_to_nhcb` and its test scripts' `load_with_nhcb`.
//!
//! The rules are Prometheus's: buckets may arrive in any order (a bucket repeated with the
//! same bound is ignored), cumulative counts must not decrease with the bound and must not be
//! negative, a NaN bound is an error. Without a `+Inf` bucket one is added holding the count;
//! without a count, the highest bucket's count is the count. The result is an integer
//! histogram when every count is a whole number (compacted keeping runs of up to two empty
//! buckets), a float histogram otherwise (compacted fully). The count must equal the `+Inf`
//! bucket's.

use std::fmt;

use super::validate::go_v;
use super::{CUSTOM_BUCKETS_SCHEMA, FloatHistogram, Histogram, HistogramValue, Span};

/// Why a classic histogram cannot be converted (Prometheus's texts).
#[derive(Debug, Clone, PartialEq)]
pub enum ClassicError {
    /// A bucket bound is NaN.
    NaNBound,
    /// A bucket's cumulative count is negative.
    NegativeBucketCount {
        /// The bucket's bound.
        le: f64,
        /// Its count.
        count: f64,
    },
    /// A cumulative count is below the one of a lower bound (`smaller < larger`), or above the
    /// one of a higher bound (`larger > smaller` with `above`).
    NotCumulative {
        /// The count of the bucket being set.
        count: f64,
        /// The neighbour's count it conflicts with.
        neighbour: f64,
        /// True when the neighbour is the next higher bound.
        above: bool,
    },
    /// The `_count` is negative.
    NegativeCount(f64),
    /// The count differs from the `+Inf` bucket's (whole-number counts).
    IntCountMismatch {
        /// The count.
        count: u64,
        /// The highest bucket's bound.
        le: f64,
        /// Its count.
        bucket: f64,
    },
    /// The count differs from the `+Inf` bucket's.
    CountMismatch {
        /// The count.
        count: f64,
        /// The highest bucket's bound.
        le: f64,
        /// Its count.
        bucket: f64,
    },
}

impl fmt::Display for ClassicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassicError::NaNBound => f.write_str("bucket boundary must not be NaN"),
            ClassicError::NegativeBucketCount { le, count } => write!(
                f,
                "bucket count must be non-negative: le={}, count={}",
                go_v(*le),
                go_v(*count)
            ),
            ClassicError::NotCumulative {
                count,
                neighbour,
                above,
            } => write!(
                f,
                "count is not cumulative: {} {} {}",
                go_v(*count),
                if *above { '>' } else { '<' },
                go_v(*neighbour)
            ),
            ClassicError::NegativeCount(c) => {
                write!(f, "count must be non-negative: count={}", go_v(*c))
            }
            ClassicError::IntCountMismatch { count, le, bucket } => write!(
                f,
                "count mismatch: count={count} != le={} count={}",
                go_v(*le),
                go_v(*bucket)
            ),
            ClassicError::CountMismatch { count, le, bucket } => write!(
                f,
                "count mismatch: count={} != le={} count={}",
                go_v(*count),
                go_v(*le),
                go_v(*bucket)
            ),
        }
    }
}

impl std::error::Error for ClassicError {}

/// A classic histogram collected piece by piece (buckets, count and sum in any order), then
/// converted with [`ClassicHistogram::convert`]. The first error sticks: later calls return it.
#[derive(Debug, Clone, Default)]
pub struct ClassicHistogram {
    /// (bound, cumulative count), sorted by bound.
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
    err: Option<ClassicError>,
}

impl ClassicHistogram {
    /// An empty classic histogram.
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(&mut self, e: ClassicError) -> Result<(), ClassicError> {
        self.err = Some(e.clone());
        Err(e)
    }

    /// Sets the cumulative count of the bucket with upper bound `le`. A bound set before is
    /// left as it was.
    pub fn set_bucket(&mut self, le: f64, count: f64) -> Result<(), ClassicError> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        if le.is_nan() {
            return self.fail(ClassicError::NaNBound);
        }
        if count < 0.0 {
            return self.fail(ClassicError::NegativeBucketCount { le, count });
        }
        let i = self.buckets.partition_point(|b| b.0 < le);
        if self.buckets.get(i).is_some_and(|b| b.0 == le) {
            return Ok(());
        }
        if i > 0 && count < self.buckets[i - 1].1 {
            let neighbour = self.buckets[i - 1].1;
            return self.fail(ClassicError::NotCumulative {
                count,
                neighbour,
                above: false,
            });
        }
        if let Some(&(_, next)) = self.buckets.get(i)
            && count > next
        {
            return self.fail(ClassicError::NotCumulative {
                count,
                neighbour: next,
                above: true,
            });
        }
        self.buckets.insert(i, (le, count));
        Ok(())
    }

    /// Sets the count of observations.
    pub fn set_count(&mut self, count: f64) -> Result<(), ClassicError> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        if count < 0.0 {
            return self.fail(ClassicError::NegativeCount(count));
        }
        self.count = Some(count);
        Ok(())
    }

    /// Sets the sum of observations.
    pub fn set_sum(&mut self, sum: f64) -> Result<(), ClassicError> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        self.sum = sum;
        Ok(())
    }

    /// The custom-bucket histogram: integer when all counts are whole numbers, float
    /// otherwise.
    pub fn convert(&self) -> Result<HistogramValue, ClassicError> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        let mut buckets = self.buckets.clone();
        let count = self
            .count
            .unwrap_or_else(|| buckets.last().map_or(0.0, |b| b.1));
        if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
            buckets.push((f64::INFINITY, count));
        }
        let whole = |c: f64| c == c.round() && c.abs() < 9.2e18;
        if buckets.iter().all(|b| whole(b.1)) && whole(count) {
            self.to_int(&buckets, count as u64)
                .map(HistogramValue::from)
        } else {
            self.to_float(&buckets, count).map(HistogramValue::from)
        }
    }

    fn to_int(&self, buckets: &[(f64, f64)], count: u64) -> Result<Histogram, ClassicError> {
        let (last_le, last) = buckets[buckets.len() - 1];
        if count != last as u64 {
            return Err(ClassicError::IntCountMismatch {
                count,
                le: last_le,
                bucket: last,
            });
        }
        let (mut prev_count, mut prev_delta) = (0i64, 0i64);
        let deltas = buckets
            .iter()
            .map(|&(_, c)| {
                let c = c as i64;
                let delta = c.wrapping_sub(prev_count);
                let out = delta.wrapping_sub(prev_delta);
                (prev_count, prev_delta) = (c, delta);
                out
            })
            .collect();
        let mut h = Histogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count,
            sum: self.sum,
            positive_spans: vec![Span::new(0, buckets.len() as u32)],
            positive_buckets: deltas,
            custom_values: custom_values(buckets),
            ..Default::default()
        };
        h.compact(2);
        Ok(h)
    }

    fn to_float(&self, buckets: &[(f64, f64)], count: f64) -> Result<FloatHistogram, ClassicError> {
        let (last_le, last) = buckets[buckets.len() - 1];
        if count != last {
            return Err(ClassicError::CountMismatch {
                count,
                le: last_le,
                bucket: last,
            });
        }
        let mut prev = 0.0;
        let counts = buckets
            .iter()
            .map(|&(_, c)| {
                let d = c - prev;
                prev = c;
                d
            })
            .collect();
        let mut h = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count,
            sum: self.sum,
            positive_spans: vec![Span::new(0, buckets.len() as u32)],
            positive_buckets: counts,
            custom_values: custom_values(buckets),
            ..Default::default()
        };
        h.compact(0);
        Ok(h)
    }
}

/// The bounds without the final `+Inf`.
fn custom_values(buckets: &[(f64, f64)]) -> Vec<f64> {
    buckets
        .iter()
        .map(|b| b.0)
        .filter(|le| *le != f64::INFINITY)
        .collect()
}

impl From<Histogram> for HistogramValue {
    fn from(h: Histogram) -> Self {
        HistogramValue::Int(Box::new(h))
    }
}

impl From<FloatHistogram> for HistogramValue {
    fn from(h: FloatHistogram) -> Self {
        HistogramValue::Float(Box::new(h))
    }
}

/// A classic histogram as a custom-bucket native histogram: `buckets` are (upper bound,
/// cumulative count) in any order, `count` the `_count` if there is one, `sum` the `_sum`.
pub fn from_classic(
    buckets: &[(f64, f64)],
    count: Option<f64>,
    sum: f64,
) -> Result<HistogramValue, ClassicError> {
    let mut c = ClassicHistogram::new();
    for &(le, n) in buckets {
        c.set_bucket(le, n)?;
    }
    if let Some(n) = count {
        c.set_count(n)?;
    }
    c.set_sum(sum)?;
    c.convert()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: HistogramValue) -> Histogram {
        match v {
            HistogramValue::Int(h) => *h,
            HistogramValue::Float(h) => panic!("expected an integer histogram, got {h:?}"),
        }
    }

    fn float(v: HistogramValue) -> FloatHistogram {
        match v {
            HistogramValue::Float(h) => *h,
            HistogramValue::Int(h) => panic!("expected a float histogram, got {h:?}"),
        }
    }

    #[test]
    fn whole_counts_make_an_integer_histogram() {
        let h = int(from_classic(
            &[(0.1, 1.0), (0.5, 3.0), (1.0, 6.0), (f64::INFINITY, 10.0)],
            Some(10.0),
            7.5,
        )
        .unwrap());
        assert_eq!(h.schema, CUSTOM_BUCKETS_SCHEMA);
        assert_eq!(h.custom_values, vec![0.1, 0.5, 1.0]);
        assert_eq!(h.positive_spans, vec![Span::new(0, 4)]);
        // Bucket counts 1, 2, 3, 4 as deltas.
        assert_eq!(h.positive_buckets, vec![1, 1, 1, 1]);
        assert_eq!((h.count, h.sum), (10, 7.5));
        assert!(h.validate().is_ok());
    }

    #[test]
    fn buckets_in_any_order_and_duplicates_ignored() {
        let h = int(from_classic(
            &[(1.0, 6.0), (0.1, 1.0), (0.5, 3.0), (0.5, 99.0)],
            Some(10.0),
            0.0,
        )
        .unwrap());
        assert_eq!(h.custom_values, vec![0.1, 0.5, 1.0]);
        assert_eq!(h.positive_buckets, vec![1, 1, 1, 1]);
    }

    #[test]
    fn missing_inf_bucket_takes_the_count_and_missing_count_the_top_bucket() {
        let h = int(from_classic(&[(1.0, 2.0)], Some(5.0), 0.0).unwrap());
        assert_eq!(h.custom_values, vec![1.0]);
        let f = h.to_float();
        assert_eq!(f.positive_buckets, vec![2.0, 3.0]);
        let h = int(from_classic(&[(1.0, 2.0), (f64::INFINITY, 4.0)], None, 0.0).unwrap());
        assert_eq!(h.count, 4);
        let h = int(from_classic(&[(1.0, 2.0)], None, 0.0).unwrap());
        assert_eq!((h.count, h.positive_buckets.clone()), (2, vec![2]));
        // Nothing at all: an empty histogram.
        let h = int(from_classic(&[], None, 0.0).unwrap());
        assert!(h.positive_spans.is_empty() && h.custom_values.is_empty() && h.count == 0);
    }

    #[test]
    fn empty_buckets_are_compacted() {
        // Counts per bucket 1, 0, 0, 0, 2: a run of three empty buckets is cut (integer
        // histograms keep runs of up to two).
        let h = int(from_classic(
            &[(1.0, 1.0), (2.0, 1.0), (3.0, 1.0), (4.0, 1.0), (5.0, 3.0)],
            Some(3.0),
            0.0,
        )
        .unwrap());
        assert_eq!(h.positive_spans, vec![Span::new(0, 1), Span::new(3, 1)]);
        assert_eq!(h.custom_values, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let h = int(from_classic(
            &[(1.0, 1.0), (2.0, 1.0), (3.0, 1.0), (4.0, 3.0)],
            Some(3.0),
            0.0,
        )
        .unwrap());
        assert_eq!(h.positive_spans, vec![Span::new(0, 4)]);
        assert_eq!(h.positive_buckets, vec![1, -1, 0, 2]);
        assert!(h.validate().is_ok());
    }

    #[test]
    fn fractional_counts_make_a_float_histogram() {
        let f = float(from_classic(&[(1.0, 0.5), (2.0, 0.5), (3.0, 2.0)], Some(2.5), 1.0).unwrap());
        assert_eq!(f.custom_values, vec![1.0, 2.0, 3.0]);
        assert_eq!(f.positive_spans, vec![Span::new(0, 1), Span::new(1, 2)]);
        assert_eq!(f.positive_buckets, vec![0.5, 1.5, 0.5]);
        assert!(f.validate().is_ok());
        // A NaN count is not whole, and then does not match.
        let e = from_classic(&[(1.0, 1.0)], Some(f64::NAN), 0.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "count mismatch: count=NaN != le=+Inf count=NaN"
        );
    }

    #[test]
    fn refusals_read_as_prometheus_writes_them() {
        let e = |b: &[(f64, f64)], c: Option<f64>| from_classic(b, c, 0.0).unwrap_err().to_string();
        assert_eq!(
            e(&[(f64::NAN, 1.0)], None),
            "bucket boundary must not be NaN"
        );
        assert_eq!(
            e(&[(1.0, -1.0)], None),
            "bucket count must be non-negative: le=1, count=-1"
        );
        assert_eq!(
            e(&[(1.0, 5.0), (2.0, 3.0)], None),
            "count is not cumulative: 3 < 5"
        );
        assert_eq!(
            e(&[(2.0, 3.0), (1.0, 5.0)], None),
            "count is not cumulative: 5 > 3"
        );
        assert_eq!(
            e(&[(1.0, 1.0)], Some(-2.0)),
            "count must be non-negative: count=-2"
        );
        assert_eq!(
            e(&[(1.0, 1.0), (f64::INFINITY, 4.0)], Some(5.0)),
            "count mismatch: count=5 != le=+Inf count=4"
        );
        assert_eq!(
            e(&[(1.0, 1.0), (f64::INFINITY, 4.0)], Some(4.5)),
            "count mismatch: count=4.5 != le=+Inf count=4"
        );
        // The first error sticks.
        let mut c = ClassicHistogram::new();
        assert!(c.set_bucket(f64::NAN, 1.0).is_err());
        assert!(c.set_bucket(1.0, 1.0).is_err());
        assert!(c.set_sum(1.0).is_err());
        assert_eq!(c.convert().unwrap_err(), ClassicError::NaNBound);
    }

    #[test]
    fn huge_counts_stay_floats() {
        let f = float(from_classic(&[(1.0, 1e19)], None, 0.0).unwrap());
        assert_eq!(f.positive_buckets, vec![1e19]);
        let h = int(from_classic(&[(1.0, 9e18)], None, 0.0).unwrap());
        assert_eq!(h.count, 9_000_000_000_000_000_000);
    }
}
