//! Validation of histograms with Prometheus 3's rules and error texts, so a refused sample
//! reads the same as Prometheus would report it.

use std::fmt;

use super::{
    CUSTOM_BUCKETS_SCHEMA, FloatHistogram, Histogram, MAX_SCHEMA, MIN_SCHEMA, Span,
    is_custom_buckets, is_exponential_schema,
};

/// Which rule a histogram broke (Prometheus's sentinel errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramErrorKind {
    /// The count is below the observations in the buckets (allowed only with a NaN sum).
    CountNotBigEnough,
    /// The count differs from the observations in the buckets.
    CountMismatch,
    /// The count is negative.
    NegativeCount,
    /// A bucket (or the zero bucket) has a negative count.
    NegativeBucketCount,
    /// A span other than the first has a negative offset (or any span, for custom buckets).
    SpanNegativeOffset,
    /// The spans describe a different number of buckets than there are.
    SpansBucketsMismatch,
    /// Fewer custom bounds than the spans need.
    CustomBucketsMismatch,
    /// Custom bounds not strictly increasing.
    CustomBucketsInvalid,
    /// A custom bound is infinite.
    CustomBucketsInfinite,
    /// A custom bound is NaN.
    CustomBucketsNaN,
    /// An operation on an exponential and a custom-bucket histogram.
    IncompatibleSchema,
    /// A custom-bucket histogram with a zero count.
    CustomBucketsZeroCount,
    /// A custom-bucket histogram with a zero threshold.
    CustomBucketsZeroThreshold,
    /// A custom-bucket histogram with negative spans.
    CustomBucketsNegativeSpans,
    /// A custom-bucket histogram with negative buckets.
    CustomBucketsNegativeBuckets,
    /// An exponential histogram with custom bounds.
    ExponentialSchemaCustomBounds,
    /// A schema that is neither -4..=8 nor -53.
    InvalidSchema,
}

impl HistogramErrorKind {
    /// Prometheus's text for the rule.
    pub fn text(self) -> String {
        use HistogramErrorKind::*;
        match self {
            CountNotBigEnough => "histogram's observation count should be at least the number of observations found in the buckets".into(),
            CountMismatch => "histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)".into(),
            NegativeCount => "histogram's observation count is negative".into(),
            NegativeBucketCount => "histogram has a bucket whose observation count is negative".into(),
            SpanNegativeOffset => "histogram has a span whose offset is negative".into(),
            SpansBucketsMismatch => "histogram spans specify different number of buckets than provided".into(),
            CustomBucketsMismatch => "histogram custom bounds are too few".into(),
            CustomBucketsInvalid => "histogram custom bounds must be in strictly increasing order".into(),
            CustomBucketsInfinite => "histogram custom bounds must be finite".into(),
            CustomBucketsNaN => "histogram custom bounds must not be NaN".into(),
            IncompatibleSchema => "cannot apply this operation on histograms with a mix of exponential and custom bucket schemas".into(),
            CustomBucketsZeroCount => "custom buckets: must have zero count of 0".into(),
            CustomBucketsZeroThreshold => "custom buckets: must have zero threshold of 0".into(),
            CustomBucketsNegativeSpans => "custom buckets: must not have negative spans".into(),
            CustomBucketsNegativeBuckets => "custom buckets: must not have negative buckets".into(),
            ExponentialSchemaCustomBounds => "histogram with exponential schema must not have custom bounds".into(),
            InvalidSchema => format!(
                "histogram has an invalid schema, which must be between {MIN_SCHEMA} and {MAX_SCHEMA} for exponential buckets, or {CUSTOM_BUCKETS_SCHEMA} for custom buckets"
            ),
        }
    }
}

/// A histogram refused by validation or an operation, with Prometheus's full message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramError {
    kind: HistogramErrorKind,
    message: String,
}

impl HistogramError {
    /// The error with just the rule's text.
    pub fn new(kind: HistogramErrorKind) -> Self {
        HistogramError {
            kind,
            message: kind.text(),
        }
    }

    /// The error with a detail before the rule's text (`detail: text`).
    fn detailed(kind: HistogramErrorKind, detail: impl fmt::Display) -> Self {
        HistogramError {
            kind,
            message: format!("{detail}: {}", kind.text()),
        }
    }

    /// As `detailed`, for the other files of this module.
    pub(crate) fn detailed_pub(kind: HistogramErrorKind, detail: impl fmt::Display) -> Self {
        Self::detailed(kind, detail)
    }

    /// An error of `kind` with a message of its own.
    pub(crate) fn with_message(kind: HistogramErrorKind, message: String) -> Self {
        HistogramError { kind, message }
    }

    /// The same error with `context: ` in front (`positive side`, `custom buckets`).
    fn within(mut self, context: &str) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Which rule was broken.
    pub fn kind(&self) -> HistogramErrorKind {
        self.kind
    }
}

impl fmt::Display for HistogramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HistogramError {}

/// A float as Go's `%v` and `%g` print it: shortest digits, exponent form below 1e-4 and from
/// 1e6 (`1e-05`, `123456`, `1.234567e+06`).
pub(crate) fn go_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.unsigned_abs());
    }
    format!("{f}")
}

/// A float as Go's `%f` prints it (six decimals).
fn go_f(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    format!("{f:.6}")
}

/// Spans of an exponential side: no negative offset after the first span, as many buckets as
/// the spans cover.
fn check_spans(spans: &[Span], n_buckets: usize) -> Result<(), HistogramError> {
    let mut need: u64 = 0;
    for (n, s) in spans.iter().enumerate() {
        if n > 0 && s.offset < 0 {
            return Err(HistogramError::detailed(
                HistogramErrorKind::SpanNegativeOffset,
                format!("span number {} with offset {}", n + 1, s.offset),
            ));
        }
        need += u64::from(s.length);
    }
    if need != n_buckets as u64 {
        return Err(HistogramError::detailed(
            HistogramErrorKind::SpansBucketsMismatch,
            format!("spans need {need} buckets, have {n_buckets} buckets"),
        ));
    }
    Ok(())
}

/// Custom bounds: no NaN, strictly increasing, no explicit `+Inf`; spans with no negative
/// offset, covering as many buckets as there are, within the bounds plus the `+Inf` bucket.
fn check_custom_bounds(
    bounds: &[f64],
    spans: &[Span],
    n_buckets: usize,
) -> Result<(), HistogramError> {
    let mut prev = f64::NEG_INFINITY;
    for (i, &cur) in bounds.iter().enumerate() {
        if cur.is_nan() {
            return Err(HistogramError::new(HistogramErrorKind::CustomBucketsNaN));
        }
        if i > 0 && cur <= prev {
            return Err(HistogramError::detailed(
                HistogramErrorKind::CustomBucketsInvalid,
                format!(
                    "previous bound is {} and current is {}",
                    go_f(prev),
                    go_f(cur)
                ),
            ));
        }
        prev = cur;
    }
    if prev == f64::INFINITY {
        return Err(HistogramError::detailed(
            HistogramErrorKind::CustomBucketsInfinite,
            "last +Inf bound must not be explicitly defined",
        ));
    }
    let mut need: u64 = 0;
    let mut total: i64 = 0;
    for (n, s) in spans.iter().enumerate() {
        if s.offset < 0 {
            return Err(HistogramError::detailed(
                HistogramErrorKind::SpanNegativeOffset,
                format!("span number {} with offset {}", n + 1, s.offset),
            ));
        }
        need += u64::from(s.length);
        total += i64::from(s.length) + i64::from(s.offset);
    }
    if need != n_buckets as u64 {
        return Err(HistogramError::detailed(
            HistogramErrorKind::SpansBucketsMismatch,
            format!("spans need {need} buckets, have {n_buckets} buckets"),
        ));
    }
    if (bounds.len() as i64 + 1) < total {
        return Err(HistogramError::detailed(
            HistogramErrorKind::CustomBucketsMismatch,
            format!(
                "only {} custom bounds defined which is insufficient to cover total span length of {total}",
                bounds.len()
            ),
        ));
    }
    Ok(())
}

fn negative_bucket_error(bucket: usize, count: impl fmt::Display) -> HistogramError {
    HistogramError::detailed(
        HistogramErrorKind::NegativeBucketCount,
        format!("bucket number {bucket} has observation count of {count}"),
    )
}

/// Sum of delta-coded integer buckets, refusing a negative running count.
fn int_bucket_total(deltas: &[i64]) -> Result<u128, HistogramError> {
    let mut running = 0i64;
    let mut total = 0u128;
    for (i, d) in deltas.iter().enumerate() {
        running = running.wrapping_add(*d);
        if running < 0 {
            return Err(negative_bucket_error(i + 1, running));
        }
        total += running as u128;
    }
    Ok(total)
}

/// Refuses a negative (absolute) float bucket count.
fn check_float_buckets(buckets: &[f64]) -> Result<(), HistogramError> {
    match buckets.iter().position(|c| *c < 0.0) {
        Some(i) => Err(negative_bucket_error(i + 1, go_v(buckets[i]))),
        None => Ok(()),
    }
}

/// The custom-bucket rules common to both kinds.
fn check_custom(
    custom_values: &[f64],
    positive_spans: &[Span],
    n_positive: usize,
    zero_count_is_zero: bool,
    zero_threshold: f64,
    negative_spans: &[Span],
    n_negative: usize,
) -> Result<(), HistogramError> {
    check_custom_bounds(custom_values, positive_spans, n_positive)
        .map_err(|e| e.within("custom buckets"))?;
    if !zero_count_is_zero {
        return Err(HistogramError::new(
            HistogramErrorKind::CustomBucketsZeroCount,
        ));
    }
    if zero_threshold != 0.0 {
        return Err(HistogramError::new(
            HistogramErrorKind::CustomBucketsZeroThreshold,
        ));
    }
    if !negative_spans.is_empty() {
        return Err(HistogramError::new(
            HistogramErrorKind::CustomBucketsNegativeSpans,
        ));
    }
    if n_negative > 0 {
        return Err(HistogramError::new(
            HistogramErrorKind::CustomBucketsNegativeBuckets,
        ));
    }
    Ok(())
}

fn invalid_schema(schema: i32) -> HistogramError {
    HistogramError {
        kind: HistogramErrorKind::InvalidSchema,
        message: format!(
            "{}, got schema {schema}",
            HistogramErrorKind::InvalidSchema.text()
        ),
    }
}

impl Histogram {
    /// Checks the histogram as Prometheus 3 does before storing it: a valid schema; for
    /// custom buckets valid bounds, no zero bucket and no negative side; for exponential
    /// schemas spans that match the buckets and no custom bounds; no negative bucket count;
    /// and a count equal to the observations in the buckets (at least that many when the sum
    /// is NaN, since NaN observations are counted but in no bucket).
    pub fn validate(&self) -> Result<(), HistogramError> {
        let mut negative = 0u128;
        if is_custom_buckets(self.schema) {
            check_custom(
                &self.custom_values,
                &self.positive_spans,
                self.positive_buckets.len(),
                self.zero_count == 0,
                self.zero_threshold,
                &self.negative_spans,
                self.negative_buckets.len(),
            )?;
        } else if is_exponential_schema(self.schema) {
            check_spans(&self.positive_spans, self.positive_buckets.len())
                .map_err(|e| e.within("positive side"))?;
            check_spans(&self.negative_spans, self.negative_buckets.len())
                .map_err(|e| e.within("negative side"))?;
            negative =
                int_bucket_total(&self.negative_buckets).map_err(|e| e.within("negative side"))?;
            if !self.custom_values.is_empty() {
                return Err(HistogramError::new(
                    HistogramErrorKind::ExponentialSchemaCustomBounds,
                ));
            }
        } else {
            return Err(invalid_schema(self.schema));
        }
        let positive =
            int_bucket_total(&self.positive_buckets).map_err(|e| e.within("positive side"))?;
        let in_buckets = negative + positive + u128::from(self.zero_count);
        let count = u128::from(self.count);
        if self.sum.is_nan() {
            if in_buckets > count {
                return Err(HistogramError::detailed(
                    HistogramErrorKind::CountNotBigEnough,
                    format!(
                        "{in_buckets} observations found in buckets, but the Count field is {count}"
                    ),
                ));
            }
        } else if in_buckets != count {
            return Err(HistogramError::detailed(
                HistogramErrorKind::CountMismatch,
                format!(
                    "{in_buckets} observations found in buckets, but the Count field is {count}"
                ),
            ));
        }
        Ok(())
    }
}

impl FloatHistogram {
    /// Checks the histogram as Prometheus 3 does: the schema, span and custom-bucket rules of
    /// [`Histogram::validate`], no negative count, zero count or bucket count. The count is
    /// not compared with the buckets (float rounding would refuse good histograms).
    pub fn validate(&self) -> Result<(), HistogramError> {
        if is_custom_buckets(self.schema) {
            check_custom(
                &self.custom_values,
                &self.positive_spans,
                self.positive_buckets.len(),
                self.zero_count == 0.0,
                self.zero_threshold,
                &self.negative_spans,
                self.negative_buckets.len(),
            )?;
        } else if is_exponential_schema(self.schema) {
            check_spans(&self.positive_spans, self.positive_buckets.len())
                .map_err(|e| e.within("positive side"))?;
            check_spans(&self.negative_spans, self.negative_buckets.len())
                .map_err(|e| e.within("negative side"))?;
            check_float_buckets(&self.negative_buckets).map_err(|e| e.within("negative side"))?;
            if self.zero_count < 0.0 {
                return Err(HistogramError::detailed(
                    HistogramErrorKind::NegativeBucketCount,
                    format!(
                        "zero bucket has observation count of {}",
                        go_v(self.zero_count)
                    ),
                ));
            }
            if !self.custom_values.is_empty() {
                return Err(HistogramError::new(
                    HistogramErrorKind::ExponentialSchemaCustomBounds,
                ));
            }
        } else {
            return Err(invalid_schema(self.schema));
        }
        if self.count < 0.0 {
            // Prometheus's text has the two spaces.
            return Err(HistogramError::detailed(
                HistogramErrorKind::NegativeCount,
                format!("observation count is  {}", go_v(self.count)),
            ));
        }
        check_float_buckets(&self.positive_buckets).map_err(|e| e.within("positive side"))
    }
}

pub(crate) fn incompatible() -> HistogramError {
    HistogramError::new(HistogramErrorKind::IncompatibleSchema)
}

pub(crate) fn spans_mismatch(need: usize, have: usize) -> HistogramError {
    HistogramError::detailed(
        HistogramErrorKind::SpansBucketsMismatch,
        format!("spans need {need} buckets, have {have} buckets"),
    )
}

pub(crate) fn negative_offset(n: usize, offset: i32) -> HistogramError {
    HistogramError::detailed(
        HistogramErrorKind::SpanNegativeOffset,
        format!("span number {n} with offset {offset}"),
    )
}
