//! Placeholder for histmath's `native.rs` (the pure math of `histogram_quantile`,
//! `histogram_fraction`, `histogram_stddev` and `histogram_stdvar` over one native histogram):
//! until it lands these answer NaN. Replaced whole by histmath's file at the merge.

use crate::model::histogram::FloatHistogram;
use crate::query::Annotations;

/// `histogram_quantile` of one native histogram (NaN until histmath's math lands).
pub(crate) fn histogram_quantile(
    _q: f64,
    _h: &FloatHistogram,
    _metric_name: &str,
    _ann: &mut Annotations,
) -> f64 {
    f64::NAN
}

/// `histogram_fraction` of one native histogram (NaN until histmath's math lands).
pub(crate) fn histogram_fraction(
    _lower: f64,
    _upper: f64,
    _h: &FloatHistogram,
    _metric_name: &str,
    _ann: &mut Annotations,
) -> f64 {
    f64::NAN
}

/// `histogram_stddev` of one native histogram (NaN until histmath's math lands).
pub(crate) fn histogram_stddev(_h: &FloatHistogram) -> f64 {
    f64::NAN
}

/// `histogram_stdvar` of one native histogram (NaN until histmath's math lands).
pub(crate) fn histogram_stdvar(_h: &FloatHistogram) -> f64 {
    f64::NAN
}
