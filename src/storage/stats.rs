//! Plain-atomic duration histograms that storage (and scraping, which may use storage) record
//! into and the agent's self-metrics read when they are collected.
//!
//! A leaf: it uses nothing else of storage, so every storage module, the WAL included, may use
//! it. Recording is a few relaxed atomic adds and never blocks or allocates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) for a WAL fsync: from a fast NVMe flush to a stalled disk.
pub const FSYNC_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds (seconds) for background work that writes whole blocks (flush, compaction).
pub const MAINTENANCE_BOUNDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Counts of durations per bucket, their sum and count, all in atomics.
#[derive(Debug)]
pub struct DurationHistogram {
    bounds: &'static [f64],
    /// One counter per bound, then one for everything above the last bound.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds in seconds, ascending.
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative); one more entry than `bounds`, the last for
    /// observations above every bound.
    pub buckets: Vec<u64>,
    /// Sum of the observations, in seconds.
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl DurationHistogram {
    /// An empty histogram with these upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        DurationHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // A bucket holds the observations at most its bound, as Prometheus's `le` says.
        let i = self.bounds.partition_point(|b| *b < secs);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Records one duration given in seconds; negative or NaN values count as zero.
    pub fn observe_secs(&self, secs: f64) {
        self.observe(Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO));
    }

    /// The current counts. Concurrent observations may be half-visible (a bucket counted, its
    /// duration not yet in the sum); the count is always the sum of the buckets.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = DurationHistogram::new(&[0.001, 0.01, 0.1]);
        for ms in [0.3, 1.0, 1.7, 9.99, 10.0, 64.0, 250.0, 4100.0] {
            h.observe(Duration::from_secs_f64(ms / 1000.0));
        }
        h.observe_secs(-3.0);
        h.observe_secs(f64::NAN);
        let s = h.snapshot();
        // 0.3 ms, 1.0 ms (on the bound), and the two clamped to zero; 1.7, 9.99, 10.0 ms; 64 ms;
        // 250 ms and 4.1 s above every bound.
        assert_eq!(s.buckets, vec![4, 3, 1, 2]);
        assert_eq!(s.count(), 10);
        let want = (0.3 + 1.0 + 1.7 + 9.99 + 10.0 + 64.0 + 250.0 + 4100.0) / 1000.0;
        assert!((s.sum_seconds - want).abs() < 1e-6, "{}", s.sum_seconds);
    }

    #[test]
    fn preset_bounds_ascend() {
        for b in [FSYNC_BOUNDS, MAINTENANCE_BOUNDS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
