//! The values PromQL expressions evaluate to, and the annotations (warnings and infos) a query
//! collects on the way.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::Labels;
use crate::model::histogram::FloatHistogram;

/// A series' label set, shared between the many samples of a range evaluation.
pub type Metric = Arc<Labels>;

/// One float point of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FPoint {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value.
    pub f: f64,
}

/// One histogram point of a series. The histogram is shared: a value repeated over many steps
/// (a selector's lookback, a step-invariant node) is one allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct HPoint {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value.
    pub h: Arc<FloatHistogram>,
}

/// One element of an instant vector.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The labels, `__name__` included until something drops it.
    pub metric: Metric,
    /// The evaluation time, except for samples straight out of a vector selector, where it is
    /// the stored sample's own timestamp (what `timestamp()` reports).
    pub t: i64,
    /// The value, when `h` is `None`.
    pub f: f64,
    /// The value, when it is a histogram (`f` is then meaningless).
    pub h: Option<Arc<FloatHistogram>>,
    /// Set by operations that remove the metric name (arithmetic, most functions). The engine
    /// strips `__name__` from such samples when the node is done, or at the very end of the
    /// query when delayed name removal is on.
    pub drop_name: bool,
}

/// An instant vector: at most one sample per label set.
pub type Vector = Vec<Sample>;

/// One series of a range vector or of a range query's result.
#[derive(Debug, Clone)]
pub struct Series {
    /// The labels.
    pub metric: Metric,
    /// Float points in time order.
    pub floats: Vec<FPoint>,
    /// Histogram points in time order; never at a time `floats` has a point at.
    pub histograms: Vec<HPoint>,
    /// As [`Sample::drop_name`].
    pub drop_name: bool,
}

impl Series {
    /// A series of float points only.
    pub fn floats(metric: Metric, floats: Vec<FPoint>, drop_name: bool) -> Series {
        Series {
            metric,
            floats,
            histograms: Vec::new(),
            drop_name,
        }
    }

    /// Float and histogram points together.
    pub fn len(&self) -> usize {
        self.floats.len() + self.histograms.len()
    }

    /// True without any point.
    pub fn is_empty(&self) -> bool {
        self.floats.is_empty() && self.histograms.is_empty()
    }
}

impl Sample {
    /// A float sample.
    pub fn float(metric: Metric, t: i64, f: f64, drop_name: bool) -> Sample {
        Sample {
            metric,
            t,
            f,
            h: None,
            drop_name,
        }
    }
}

/// A range vector, or the result of a range query.
pub type Matrix = Vec<Series>;

/// What a query returns.
#[derive(Debug, Clone)]
pub enum Value {
    /// A single number at a time.
    Scalar(FPoint),
    /// A string literal at a time.
    String {
        /// Milliseconds.
        t: i64,
        /// The string.
        s: String,
    },
    /// An instant vector.
    Vector(Vector),
    /// A range vector (instant query of a range selector) or a range query's result.
    Matrix(Matrix),
}

impl Value {
    /// Prometheus's `resultType` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Warnings and infos of one query, deduplicated, in the words Prometheus uses
/// (`PromQL warning: …`, `PromQL info: …`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    /// Shown by Grafana as warnings.
    pub warnings: BTreeSet<String>,
    /// Shown by Grafana as infos.
    pub infos: BTreeSet<String>,
}

impl Annotations {
    /// Adds a warning.
    pub fn warn(&mut self, text: impl Into<String>) {
        self.warnings.insert(text.into());
    }

    /// Adds an info.
    pub fn info(&mut self, text: impl Into<String>) {
        self.infos.insert(text.into());
    }

    /// Adds everything `other` holds.
    pub fn merge(&mut self, other: Annotations) {
        self.warnings.extend(other.warnings);
        self.infos.extend(other.infos);
    }
}
