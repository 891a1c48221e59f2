//! Per-remote counters in atomics that the queue adds to and the self-metrics read.
//!
//! Process-wide ([`global`]) because `/metrics` reaches them without a handle on the queues.
//! A remote's counters live as long as the process, so a queue restarted by a reload
//! continues them; only remotes with a running queue are listed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::storage::stats::{DurationHistogram, HistogramSnapshot};

/// Upper bounds (seconds) of the request duration histogram.
pub const SEND_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Why samples read from the WAL were not sent, as metric label values.
pub const DROP_REASONS: [&str; 4] = ["relabel", "unknown_series", "too_old", "wal_released"];

/// Index of a reason in [`DROP_REASONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `write_relabel_configs` dropped the series.
    Relabel = 0,
    /// The WAL had no series record for the sample's ref.
    UnknownSeries = 1,
    /// Older than `queue_config.sample_age_limit`.
    TooOld = 2,
    /// The WAL segment was deleted under the backlog limit before it was sent.
    WalReleased = 3,
}

/// One remote's counters.
#[derive(Debug)]
pub struct QueueStats {
    /// Samples handed to shards.
    pub dispatched: AtomicU64,
    /// Samples the backend accepted.
    pub sent: AtomicU64,
    /// Samples in batches dropped on a non-retryable answer (4xx).
    pub failed: AtomicU64,
    /// Samples in attempts that failed and were retried.
    pub retried: AtomicU64,
    /// Of `dispatched`, `sent`, `failed` and `retried`: the histogram samples
    /// (`tidemark_remote_storage_histograms_*` beside the `samples_*` of float samples).
    pub histograms_dispatched: AtomicU64,
    /// Histogram samples the backend accepted.
    pub histograms_sent: AtomicU64,
    /// Histogram samples in batches dropped on a non-retryable answer.
    pub histograms_failed: AtomicU64,
    /// Histogram samples in attempts that failed and were retried.
    pub histograms_retried: AtomicU64,
    /// Samples not sent, by [`DropReason`] (float and histogram samples together).
    pub dropped: [AtomicU64; DROP_REASONS.len()],
    /// Compressed request bytes the backend accepted.
    pub bytes_sent: AtomicU64,
    /// Requests dropped on a non-retryable answer.
    pub batches_failed: AtomicU64,
    /// Shards running.
    pub shards: AtomicU64,
    /// Newest timestamp (ms) the backend accepted; `i64::MIN` before the first.
    pub highest_sent_ms: AtomicI64,
    /// Newest timestamp (ms) read from the WAL.
    pub highest_read_ms: AtomicI64,
    /// Duration of successful requests.
    pub send_durations: DurationHistogram,
    /// Time spent in successful requests, in nanoseconds (for resharding).
    pub send_nanos: AtomicU64,
    running: AtomicBool,
}

impl Default for QueueStats {
    fn default() -> Self {
        QueueStats {
            dispatched: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            histograms_dispatched: AtomicU64::new(0),
            histograms_sent: AtomicU64::new(0),
            histograms_failed: AtomicU64::new(0),
            histograms_retried: AtomicU64::new(0),
            dropped: Default::default(),
            bytes_sent: AtomicU64::new(0),
            batches_failed: AtomicU64::new(0),
            shards: AtomicU64::new(0),
            highest_sent_ms: AtomicI64::new(i64::MIN),
            highest_read_ms: AtomicI64::new(i64::MIN),
            send_durations: DurationHistogram::new(SEND_BOUNDS),
            send_nanos: AtomicU64::new(0),
            running: AtomicBool::new(false),
        }
    }
}

impl QueueStats {
    /// Adds `n` dropped samples.
    pub fn add_dropped(&self, why: DropReason, n: u64) {
        if n > 0 {
            self.dropped[why as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Samples (float and histogram) read and handed on but not yet sent or failed.
    pub fn pending(&self) -> u64 {
        let d = self.dispatched.load(Ordering::Relaxed);
        let done = self.sent.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        d.saturating_sub(done)
    }

    /// Marks the queue running or stopped (only running queues are listed).
    pub fn set_running(&self, on: bool) {
        self.running.store(on, Ordering::Relaxed);
    }

    /// A consistent-enough copy for rendering.
    pub fn snapshot(&self) -> QueueSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ts = |a: &AtomicI64| {
            let v = a.load(Ordering::Relaxed);
            (v != i64::MIN).then(|| v as f64 / 1000.0)
        };
        QueueSnapshot {
            pending: self.pending(),
            sent: l(&self.sent).saturating_sub(l(&self.histograms_sent)),
            failed: l(&self.failed).saturating_sub(l(&self.histograms_failed)),
            retried: l(&self.retried).saturating_sub(l(&self.histograms_retried)),
            histograms_sent: l(&self.histograms_sent),
            histograms_failed: l(&self.histograms_failed),
            histograms_retried: l(&self.histograms_retried),
            dropped: std::array::from_fn(|i| l(&self.dropped[i])),
            bytes_sent: l(&self.bytes_sent),
            batches_failed: l(&self.batches_failed),
            shards: l(&self.shards),
            highest_sent_seconds: ts(&self.highest_sent_ms),
            highest_read_seconds: ts(&self.highest_read_ms),
            send_durations: self.send_durations.snapshot(),
        }
    }
}

/// One remote's counters at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSnapshot {
    /// Samples read and not yet sent or failed.
    pub pending: u64,
    /// Float samples accepted by the backend.
    pub sent: u64,
    /// Float samples in batches dropped on a non-retryable answer.
    pub failed: u64,
    /// Float samples in attempts that were retried.
    pub retried: u64,
    /// Histogram samples accepted by the backend.
    pub histograms_sent: u64,
    /// Histogram samples in batches dropped on a non-retryable answer.
    pub histograms_failed: u64,
    /// Histogram samples in attempts that were retried.
    pub histograms_retried: u64,
    /// Samples not sent, indexed like [`DROP_REASONS`].
    pub dropped: [u64; DROP_REASONS.len()],
    /// Compressed bytes accepted.
    pub bytes_sent: u64,
    /// Requests dropped on a non-retryable answer.
    pub batches_failed: u64,
    /// Shards running.
    pub shards: u64,
    /// Newest timestamp sent, in seconds.
    pub highest_sent_seconds: Option<f64>,
    /// Newest timestamp read from the WAL, in seconds.
    pub highest_read_seconds: Option<f64>,
    /// Durations of successful requests.
    pub send_durations: HistogramSnapshot,
}

/// Every remote's counters, by (remote name, url).
#[derive(Debug, Default)]
pub struct RemoteStats {
    queues: Mutex<BTreeMap<(String, String), Arc<QueueStats>>>,
}

impl RemoteStats {
    /// The counters of a remote, created on first use.
    pub fn queue(&self, name: &str, url: &str) -> Arc<QueueStats> {
        let mut q = crate::sync::lock(&self.queues);
        q.entry((name.to_string(), url.to_string()))
            .or_default()
            .clone()
    }

    /// Snapshots of the running queues: `(remote name, url, counters)`.
    pub fn active(&self) -> Vec<(String, String, QueueSnapshot)> {
        let q = crate::sync::lock(&self.queues);
        q.iter()
            .filter(|(_, s)| s.running.load(Ordering::Relaxed))
            .map(|((n, u), s)| (n.clone(), u.clone(), s.snapshot()))
            .collect()
    }
}

/// The process-wide counters.
pub fn global() -> &'static RemoteStats {
    static G: OnceLock<RemoteStats> = OnceLock::new();
    G.get_or_init(RemoteStats::default)
}
