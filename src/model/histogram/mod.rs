//! Native histograms: the sparse, exponential-bucket histograms of Prometheus (schemas -4 to 8)
//! and their custom-bucket form (schema -53, "NHCB"), as integer histograms (what a client
//! library exposes and a scrape stores) and float histograms (what PromQL computes, and what a
//! remote writer may push).
//!
//! A histogram's buckets are sparse: `spans` say which bucket indexes are present (each span
//! skips `offset` indexes after the previous span's end, the first counting from index 0, then
//! covers `length` consecutive indexes), and the bucket values follow in index order. An integer
//! histogram keeps its bucket counts as deltas (the first bucket's count, then each bucket's
//! difference from the one before); a float histogram keeps absolute counts.
//!
//! For an exponential schema `s`, bucket `i` covers `(2^((i-1)·2^-s), 2^(i·2^-s)]` on the
//! positive side and the mirror image on the negative side; observations within
//! `zero_threshold` of zero go to the zero bucket. For the custom-bucket schema, bucket `i`'s
//! upper bound is `custom_values[i]` (`+Inf` for the last), its lower bound the previous one
//! (`-Inf` for the first); there are no negative or zero buckets.

use std::fmt;

mod bounds;
mod convert;
#[cfg(test)]
mod math_tests;
mod ops;
#[cfg(test)]
mod prop_tests;
mod validate;

pub use bounds::{Bucket, bucket_bound, exponential_bound, fraction_table};
pub use convert::{ClassicError, ClassicHistogram, from_classic};
pub use ops::AddOutcome;
pub use validate::{HistogramError, HistogramErrorKind};

/// The smallest exponential schema: bucket boundaries grow by a factor of 2^16 per bucket.
pub const MIN_SCHEMA: i32 = -4;
/// The largest exponential schema: boundaries grow by a factor of 2^(1/256) per bucket.
pub const MAX_SCHEMA: i32 = 8;
/// The schema of a histogram with custom bucket boundaries (`custom_values`).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// True for a schema tidemark stores: -4..=8 or the custom-bucket schema.
pub fn is_valid_schema(schema: i32) -> bool {
    is_exponential_schema(schema) || schema == CUSTOM_BUCKETS_SCHEMA
}

/// True for an exponential schema, -4..=8.
pub fn is_exponential_schema(schema: i32) -> bool {
    (MIN_SCHEMA..=MAX_SCHEMA).contains(&schema)
}

/// True for the custom-bucket schema.
pub fn is_custom_buckets(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
}

/// A run of consecutive buckets that are present: `offset` bucket indexes after the end of the
/// previous span (after index 0 for the first span, so its offset may be negative), `length`
/// buckets long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// Gap from the previous span's end (or the index of the first bucket, for the first span).
    pub offset: i32,
    /// Number of consecutive buckets.
    pub length: u32,
}

impl Span {
    /// A span of `length` buckets starting `offset` indexes after the previous one.
    pub const fn new(offset: i32, length: u32) -> Span {
        Span { offset, length }
    }
}

/// What the writer of a histogram sample knows about a counter reset before it, as Prometheus
/// records it. The numbers are Prometheus's (`as_u8`/`from_u8`), used by every wire and file
/// format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CounterResetHint {
    /// Nothing known: the reader decides by comparing with the previous sample.
    #[default]
    Unknown,
    /// A counter reset happened right before this sample.
    Reset,
    /// No counter reset happened right before this sample.
    NotReset,
    /// A gauge histogram: it may go up and down, resets do not apply.
    Gauge,
}

impl CounterResetHint {
    /// Prometheus's number for the hint (0 unknown, 1 reset, 2 not reset, 3 gauge).
    pub const fn as_u8(self) -> u8 {
        match self {
            CounterResetHint::Unknown => 0,
            CounterResetHint::Reset => 1,
            CounterResetHint::NotReset => 2,
            CounterResetHint::Gauge => 3,
        }
    }

    /// The hint numbered `n`, if it is one.
    pub const fn from_u8(n: u8) -> Option<CounterResetHint> {
        match n {
            0 => Some(CounterResetHint::Unknown),
            1 => Some(CounterResetHint::Reset),
            2 => Some(CounterResetHint::NotReset),
            3 => Some(CounterResetHint::Gauge),
            _ => None,
        }
    }
}

/// An integer histogram: counts of observations, bucket counts as deltas.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// What is known about a counter reset before this sample.
    pub counter_reset_hint: CounterResetHint,
    /// -4..=8, or [`CUSTOM_BUCKETS_SCHEMA`].
    pub schema: i32,
    /// Observations with an absolute value up to this go to the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// All observations (NaN observations included, which are in no bucket).
    pub count: u64,
    /// The sum of all observations. A staleness marker is a histogram whose sum is
    /// [`crate::model::STALE_NAN`].
    pub sum: f64,
    /// Which positive buckets are present.
    pub positive_spans: Vec<Span>,
    /// Which negative buckets are present (none for custom buckets).
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts as deltas: the first absolute, each next one relative to the one
    /// before.
    pub positive_buckets: Vec<i64>,
    /// Negative bucket counts as deltas, as `positive_buckets`.
    pub negative_buckets: Vec<i64>,
    /// The upper bounds of the custom buckets, strictly increasing, without the final `+Inf`;
    /// empty for an exponential schema.
    pub custom_values: Vec<f64>,
}

/// A float histogram: counts as floats, bucket counts absolute.
#[derive(Debug, Clone, Default)]
pub struct FloatHistogram {
    /// What is known about a counter reset before this sample.
    pub counter_reset_hint: CounterResetHint,
    /// -4..=8, or [`CUSTOM_BUCKETS_SCHEMA`].
    pub schema: i32,
    /// Observations with an absolute value up to this go to the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// All observations.
    pub count: f64,
    /// The sum of all observations.
    pub sum: f64,
    /// Which positive buckets are present.
    pub positive_spans: Vec<Span>,
    /// Which negative buckets are present (none for custom buckets).
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, absolute.
    pub positive_buckets: Vec<f64>,
    /// Negative bucket counts, absolute.
    pub negative_buckets: Vec<f64>,
    /// As [`Histogram::custom_values`].
    pub custom_values: Vec<f64>,
}

/// Floats compared by bit pattern, so a histogram equals its own copy even with a NaN sum.
fn same_floats(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Equal when every field is equal, floats by bit pattern (so a NaN sum equals itself and the
/// staleness marker differs from an ordinary NaN). Spans are compared as written: two
/// histograms with the same buckets in differently split spans are not equal here.
impl PartialEq for Histogram {
    fn eq(&self, o: &Self) -> bool {
        self.counter_reset_hint == o.counter_reset_hint
            && self.schema == o.schema
            && self.zero_threshold.to_bits() == o.zero_threshold.to_bits()
            && self.zero_count == o.zero_count
            && self.count == o.count
            && self.sum.to_bits() == o.sum.to_bits()
            && self.positive_spans == o.positive_spans
            && self.negative_spans == o.negative_spans
            && self.positive_buckets == o.positive_buckets
            && self.negative_buckets == o.negative_buckets
            && same_floats(&self.custom_values, &o.custom_values)
    }
}

/// As for [`Histogram`]: every field, floats by bit pattern.
impl PartialEq for FloatHistogram {
    fn eq(&self, o: &Self) -> bool {
        self.counter_reset_hint == o.counter_reset_hint
            && self.schema == o.schema
            && self.zero_threshold.to_bits() == o.zero_threshold.to_bits()
            && self.zero_count.to_bits() == o.zero_count.to_bits()
            && self.count.to_bits() == o.count.to_bits()
            && self.sum.to_bits() == o.sum.to_bits()
            && self.positive_spans == o.positive_spans
            && self.negative_spans == o.negative_spans
            && same_floats(&self.positive_buckets, &o.positive_buckets)
            && same_floats(&self.negative_buckets, &o.negative_buckets)
            && same_floats(&self.custom_values, &o.custom_values)
    }
}

/// Absolute counts from deltas, wrapping as Prometheus's int64 arithmetic does (validation
/// refuses a histogram whose running count goes negative).
fn absolute(deltas: &[i64]) -> Vec<f64> {
    let mut running = 0i64;
    deltas
        .iter()
        .map(|d| {
            running = running.wrapping_add(*d);
            running as f64
        })
        .collect()
}

impl Histogram {
    /// The same histogram with float counts (absolute bucket counts).
    pub fn to_float(&self) -> FloatHistogram {
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: absolute(&self.positive_buckets),
            negative_buckets: absolute(&self.negative_buckets),
            custom_values: self.custom_values.clone(),
        }
    }

    /// True for a staleness marker: the sum is [`crate::model::STALE_NAN`].
    pub fn is_stale_marker(&self) -> bool {
        crate::model::is_stale_nan(self.sum)
    }
}

impl FloatHistogram {
    /// True for a staleness marker: the sum is [`crate::model::STALE_NAN`].
    pub fn is_stale_marker(&self) -> bool {
        crate::model::is_stale_nan(self.sum)
    }
}

/// A stored histogram value: integer or float. Boxed, so a sample stays two words.
#[derive(Debug, Clone, PartialEq)]
pub enum HistogramValue {
    /// An integer histogram, as scraped or pushed.
    Int(Box<Histogram>),
    /// A float histogram, as pushed or as a recording rule computes it.
    Float(Box<FloatHistogram>),
}

impl HistogramValue {
    /// The value as a float histogram (a copy for an integer one).
    pub fn to_float(&self) -> FloatHistogram {
        match self {
            HistogramValue::Int(h) => h.to_float(),
            HistogramValue::Float(h) => (**h).clone(),
        }
    }

    /// The counter-reset hint.
    pub fn counter_reset_hint(&self) -> CounterResetHint {
        match self {
            HistogramValue::Int(h) => h.counter_reset_hint,
            HistogramValue::Float(h) => h.counter_reset_hint,
        }
    }

    /// The schema.
    pub fn schema(&self) -> i32 {
        match self {
            HistogramValue::Int(h) => h.schema,
            HistogramValue::Float(h) => h.schema,
        }
    }

    /// True for a staleness marker.
    pub fn is_stale_marker(&self) -> bool {
        match self {
            HistogramValue::Int(h) => h.is_stale_marker(),
            HistogramValue::Float(h) => h.is_stale_marker(),
        }
    }
}

/// One histogram point of a series: milliseconds since the Unix epoch and a histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Timestamp in milliseconds since the Unix epoch.
    pub t: i64,
    /// The histogram.
    pub h: HistogramValue,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.offset, self.length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN;

    fn int() -> Histogram {
        Histogram {
            schema: 1,
            zero_threshold: 0.001,
            zero_count: 2,
            count: 12,
            sum: 18.4,
            positive_spans: vec![Span::new(0, 2), Span::new(1, 2)],
            positive_buckets: vec![1, 1, -1, 0],
            negative_spans: vec![Span::new(0, 1)],
            negative_buckets: vec![4],
            ..Default::default()
        }
    }

    #[test]
    fn to_float_turns_deltas_into_absolute_counts() {
        let f = int().to_float();
        assert_eq!(f.positive_buckets, vec![1.0, 2.0, 1.0, 1.0]);
        assert_eq!(f.negative_buckets, vec![4.0]);
        assert_eq!((f.count, f.zero_count, f.sum), (12.0, 2.0, 18.4));
        assert_eq!(f.positive_spans, int().positive_spans);
    }

    #[test]
    fn equality_is_bitwise_on_floats() {
        let mut a = int();
        a.sum = f64::NAN;
        assert_eq!(a, a.clone());
        let mut b = a.clone();
        b.sum = STALE_NAN;
        assert_ne!(a, b);
        assert!(b.is_stale_marker() && !a.is_stale_marker());
        let mut c = int().to_float();
        c.zero_threshold = -0.0;
        let mut d = c.clone();
        d.zero_threshold = 0.0;
        assert_ne!(c, d);
    }

    #[test]
    fn hints_keep_prometheus_numbers() {
        for n in 0..4u8 {
            assert_eq!(CounterResetHint::from_u8(n).map(|h| h.as_u8()), Some(n));
        }
        assert_eq!(CounterResetHint::from_u8(4), None);
        assert_eq!(CounterResetHint::Gauge.as_u8(), 3);
    }

    #[test]
    fn schemas() {
        assert!(is_valid_schema(-4) && is_valid_schema(8) && is_valid_schema(-53));
        assert!(!is_valid_schema(-5) && !is_valid_schema(9) && !is_valid_schema(-52));
        assert!(is_custom_buckets(CUSTOM_BUCKETS_SCHEMA) && !is_exponential_schema(-53));
    }

    #[test]
    fn a_sample_stays_small() {
        assert!(std::mem::size_of::<HistogramSample>() <= 24);
    }
}
