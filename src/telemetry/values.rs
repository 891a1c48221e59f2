//! Metric values read from elsewhere at collection time, in the shapes `prometheus-client`
//! encodes: labelled counters and gauges, and histograms from bucket snapshots.

use prometheus_client::encoding::{
    EncodeCounterValue, EncodeGaugeValue, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;

use crate::storage::stats::HistogramSnapshot;

/// Label names and values of one series; label names are fixed by this module, values may come
/// from configuration (job names) and are escaped by the encoder.
pub(super) type LabelPairs = Vec<(&'static str, String)>;

/// Counter or gauge series whose values were read when the page was rendered.
#[derive(Debug)]
pub(super) struct Values<V> {
    pub kind: MetricType,
    pub series: Vec<(LabelPairs, V)>,
}

impl<V> EncodeMetric for Values<V>
where
    V: EncodeCounterValue + EncodeGaugeValue,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, v) in &self.series {
            let mut e = encoder.encode_family(labels)?;
            if self.kind == MetricType::Counter {
                e.encode_counter::<NoLabelSet, _, u64>(v, None)?;
            } else {
                e.encode_gauge(v)?;
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Histogram series from bucket snapshots.
#[derive(Debug)]
pub(super) struct Histograms {
    pub series: Vec<(LabelPairs, HistogramSnapshot)>,
}

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, h) in &self.series {
            // Per-bucket counts; the encoder makes them cumulative and adds `+Inf` (the count).
            let buckets: Vec<(f64, u64)> = h
                .bounds
                .iter()
                .copied()
                .zip(h.buckets.iter().copied())
                .collect();
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count(), &buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}
