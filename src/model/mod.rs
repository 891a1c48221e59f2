//! The data model shared by every module: label sets, samples, matchers, the staleness marker
//! and a scrape target's health.
//!
//! `model` owns the definitions and their validation. It must never depend on any other tidemark
//! module, do I/O, or know how anything is stored.

mod health;
pub mod histogram;
mod labels;
mod matcher;
mod sample;
mod time;

pub use health::Health;
pub use histogram::{
    CounterResetHint, FloatHistogram, Histogram, HistogramSample, HistogramValue, Span,
};
pub use labels::{
    LabelError, Labels, LabelsBuilder, METRIC_NAME, is_valid_label_name, is_valid_metric_name,
};
pub use matcher::{MatchOp, Matcher, MatcherError};
pub use sample::{STALE_NAN, STALE_NAN_BITS, Sample, is_stale_nan};
pub use time::{
    DurationError, MAX_TIME, MIN_TIME, TimeError, format_duration, format_rfc3339,
    is_storable_time, parse_duration, parse_time,
};
