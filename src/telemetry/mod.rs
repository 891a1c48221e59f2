//! The agent's own metrics, in Prometheus's text format (0.0.4), served at `/metrics` and scraped
//! by the embedded default configuration.
//!
//! Built on `prometheus-client`. Each render fills a fresh `Registry` with the process-wide query
//! and HTTP families this module owns (`requests`: typed counters and histograms the API records
//! into; `receiver`: the remote write receiver's counters) and with values read at that moment
//! from where they live: storage's counters, WAL, catalog and duration histograms, the scrape
//! module's per-job counters, remote write's per-remote counters, the target counts the
//! caller passes, and `/proc/self`. Storage and scrape keep plain atomics and never call this
//! module; this module must never change a value it reads.

mod process;
mod receiver;
mod requests;
#[cfg(test)]
mod tests;
mod values;

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use receiver::observe_remote_write;
pub use requests::{
    ConnectionOpen, QueryInFlight, connection_limit_reached, connection_timed_out, http_metrics,
    observe_http, observe_query,
};

use crate::model::Health;
use crate::remote_write::stats::{self as rw_stats, DROP_REASONS};
use crate::scrape::ingest::Failure;
use crate::scrape::stats::{self as scrape_stats, ScrapeStats};
use crate::storage::Db;
use crate::storage::stats::HistogramSnapshot;
use values::{Histograms, LabelPairs, Values};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Target counts by job and health, supplied by whoever knows the targets.
pub struct TargetCounts(pub Vec<(String, Health, u64)>);

/// The revision tidemark was built from, when the build set `TIDEMARK_REVISION`.
const REVISION: &str = match option_env!("TIDEMARK_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Renders every self-metric.
pub fn render(db: &Db, targets: &TargetCounts, start_time_secs: f64) -> String {
    render_with(db, targets, start_time_secs, scrape_stats::global())
}

/// [`render`] over given scrape counters (tests use their own).
fn render_with(
    db: &Db,
    targets: &TargetCounts,
    start_time_secs: f64,
    scrapes: &ScrapeStats,
) -> String {
    let mut b = Page::default();
    b.build_and_process(start_time_secs);
    b.scrape(targets, scrapes);
    b.storage(db);
    b.remote_write(&rw_stats::global().active());
    requests::register(&mut b.reg);
    receiver::register(&mut b.reg);
    let mut out = String::with_capacity(16 << 10);
    // Writing to a String cannot fail, and every value here encodes.
    let _ = prometheus_text::encode(&mut out, &b.reg);
    out
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> LabelPairs {
    pairs.iter().map(|(n, v)| (*n, v.to_string())).collect()
}

/// One render's registry, with helpers for values read from elsewhere.
#[derive(Default)]
struct Page {
    reg: Registry,
}

impl Page {
    fn series<V>(&mut self, kind: MetricType, name: &str, help: &str, series: Vec<(LabelPairs, V)>)
    where
        Values<V>: prometheus_client::registry::Metric,
    {
        self.reg.register(name, help, Values { kind, series });
    }

    /// An unlabelled counter; `name` without `_total`, which the encoder appends.
    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.series(MetricType::Counter, name, help, vec![(Vec::new(), v)]);
    }

    fn gauge<V>(&mut self, name: &str, help: &str, v: V)
    where
        Values<V>: prometheus_client::registry::Metric,
    {
        self.series(MetricType::Gauge, name, help, vec![(Vec::new(), v)]);
    }

    fn histograms(&mut self, name: &str, help: &str, series: Vec<(LabelPairs, HistogramSnapshot)>) {
        self.reg.register(name, help, Histograms { series });
    }

    fn build_and_process(&mut self, start_time_secs: f64) {
        self.reg.register(
            "tidemark_build",
            "Build information; the value is 1",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", REVISION),
            ]),
        );
        self.gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            start_time_secs,
        );
        let p = process::read();
        if let Some(v) = p.cpu_seconds {
            self.series(
                MetricType::Counter,
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                vec![(Vec::new(), v)],
            );
        }
        if let Some(v) = p.resident_bytes {
            self.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                v,
            );
        }
        if let Some(v) = p.virtual_bytes {
            self.gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                v,
            );
        }
        if let Some(v) = p.open_fds {
            self.gauge("process_open_fds", "Number of open file descriptors", v);
        }
        if let Some(v) = p.max_fds {
            self.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors",
                v,
            );
        }
    }

    fn scrape(&mut self, targets: &TargetCounts, scrapes: &ScrapeStats) {
        self.series(
            MetricType::Gauge,
            "tidemark_scrape_targets",
            "Scrape targets by job and health (up, down, unknown)",
            targets
                .0
                .iter()
                .map(|(job, health, n)| (labels([("job", job), ("health", health.as_str())]), *n))
                .collect(),
        );
        let jobs = scrapes.active();
        let mut outcomes = Vec::new();
        let mut failures = Vec::new();
        let mut durations = Vec::new();
        let mut scraped = Vec::new();
        let mut rejected = Vec::new();
        for (job, s) in jobs {
            let failed: u64 = s.failed.iter().map(|(_, n)| n).sum();
            outcomes.push((labels([("job", &job), ("result", "success")]), s.succeeded));
            outcomes.push((labels([("job", &job), ("result", "failure")]), failed));
            for (f, n) in &s.failed {
                failures.push((labels([("job", &job), ("reason", f.as_str())]), *n));
            }
            for (reason, n) in &s.samples_rejected {
                rejected.push((labels([("job", &job), ("reason", reason)]), *n));
            }
            scraped.push((labels([("job", &job)]), s.samples_scraped));
            durations.push((labels([("job", &job)]), s.durations));
        }
        self.series(
            MetricType::Counter,
            "tidemark_scrapes",
            "Scrapes by job and result: success stored the body, failure stored only up = 0",
            outcomes,
        );
        self.series(
            MetricType::Counter,
            "tidemark_scrape_failures",
            &format!(
                "Failed scrapes by job and reason ({})",
                Failure::ALL.map(Failure::as_str).join(", ")
            ),
            failures,
        );
        self.histograms(
            "tidemark_scrape_duration_seconds",
            "Time to fetch a target's body, by job (the scrape_duration_seconds of each scrape)",
            durations,
        );
        self.series(
            MetricType::Counter,
            "tidemark_scrape_samples_scraped",
            "Samples in fetched bodies, stored or not, by job",
            scraped,
        );
        self.series(
            MetricType::Counter,
            "tidemark_scrape_samples_rejected",
            &format!(
                "Scraped samples not stored, by job and reason ({}); a failed scrape drops its whole body",
                scrape_stats::REJECT_REASONS.join(", ")
            ),
            rejected,
        );
    }

    /// Remote write, per remote (`remote_name`, `url`), in Prometheus's names.
    fn remote_write(&mut self, queues: &[(String, String, rw_stats::QueueSnapshot)]) {
        type Read<'a> = &'a dyn Fn(&rw_stats::QueueSnapshot) -> u64;
        let per = |f: Read<'_>| -> Vec<(LabelPairs, u64)> {
            queues
                .iter()
                .map(|(n, u, s)| (labels([("remote_name", n), ("url", u)]), f(s)))
                .collect()
        };
        let counters: [(&str, &str, Read<'_>); 8] = [
            (
                "tidemark_remote_storage_samples",
                "Float samples the remote accepted",
                &|s| s.sent,
            ),
            (
                "tidemark_remote_storage_samples_failed",
                "Samples in requests the remote refused for good (4xx other than a retried 429); those requests are dropped",
                &|s| s.failed,
            ),
            (
                "tidemark_remote_storage_samples_retried",
                "Samples in requests that failed (5xx, 429, network) and were sent again",
                &|s| s.retried,
            ),
            (
                "tidemark_remote_storage_histograms",
                "Native histogram samples the remote accepted",
                &|s| s.histograms_sent,
            ),
            (
                "tidemark_remote_storage_histograms_failed",
                "Native histogram samples in requests the remote refused for good; those requests are dropped",
                &|s| s.histograms_failed,
            ),
            (
                "tidemark_remote_storage_histograms_retried",
                "Native histogram samples in requests that failed (5xx, 429, network) and were sent again",
                &|s| s.histograms_retried,
            ),
            (
                "tidemark_remote_storage_bytes",
                "Compressed request bytes the remote accepted",
                &|s| s.bytes_sent,
            ),
            (
                "tidemark_remote_storage_batches_failed",
                "Requests the remote refused for good and that were dropped",
                &|s| s.batches_failed,
            ),
        ];
        for (name, help, f) in counters {
            self.series(MetricType::Counter, name, help, per(f));
        }
        self.series(
            MetricType::Gauge,
            "tidemark_remote_storage_samples_pending",
            "Samples read from the WAL and not yet sent or refused",
            per(&|s| s.pending),
        );
        self.series(
            MetricType::Gauge,
            "tidemark_remote_storage_shards",
            "Shards sending in parallel",
            per(&|s| s.shards),
        );
        let mut dropped = Vec::new();
        for (n, u, s) in queues {
            for (reason, v) in DROP_REASONS.iter().zip(s.dropped) {
                dropped.push((
                    labels([("remote_name", n), ("url", u), ("reason", reason)]),
                    v,
                ));
            }
        }
        self.series(
            MetricType::Counter,
            "tidemark_remote_storage_samples_dropped",
            &format!(
                "Samples read from the WAL and never sent, by reason ({})",
                DROP_REASONS.join(", ")
            ),
            dropped,
        );
        let times =
            |f: &dyn Fn(&rw_stats::QueueSnapshot) -> Option<f64>| -> Vec<(LabelPairs, f64)> {
                queues
                    .iter()
                    .filter_map(|(n, u, s)| Some((labels([("remote_name", n), ("url", u)]), f(s)?)))
                    .collect()
            };
        self.series(
            MetricType::Gauge,
            "tidemark_remote_storage_queue_highest_sent_timestamp_seconds",
            "Newest sample timestamp the remote accepted, in seconds since the epoch",
            times(&|s| s.highest_sent_seconds),
        );
        self.series(
            MetricType::Gauge,
            "tidemark_remote_storage_highest_read_timestamp_seconds",
            "Newest sample timestamp read from the WAL for the remote, in seconds since the epoch",
            times(&|s| s.highest_read_seconds),
        );
        self.histograms(
            "tidemark_remote_storage_sent_batch_duration_seconds",
            "Duration of requests the remote accepted",
            queues
                .iter()
                .map(|(n, u, s)| {
                    (
                        labels([("remote_name", n), ("url", u)]),
                        s.send_durations.clone(),
                    )
                })
                .collect(),
        );
    }

    fn storage(&mut self, db: &Db) {
        let c = db.counters();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.counter(
            "tidemark_samples_appended",
            "Samples stored",
            load(&c.appended),
        );
        self.series(
            MetricType::Counter,
            "tidemark_samples_rejected",
            "Samples not stored, by reason: duplicate (same timestamp, other value), out_of_order, out_of_bounds (older than the head accepts, or outside years 0000 to 9999), too_far_in_future (more than 10m ahead of the clock)",
            [
                ("duplicate", &c.duplicate),
                ("out_of_order", &c.out_of_order),
                ("out_of_bounds", &c.out_of_bounds),
                ("too_far_in_future", &c.too_far_in_future),
            ]
            .into_iter()
            .map(|(r, n)| (labels([("reason", r)]), load(n)))
            .collect(),
        );
        self.counter(
            "tidemark_samples_duplicate_ignored",
            "Samples identical to the newest of their series (same timestamp and value), ignored",
            load(&c.duplicates_ignored),
        );

        let head = db.head();
        self.gauge(
            "tidemark_head_series",
            "Series in the head",
            head.num_series(),
        );
        self.counter(
            "tidemark_head_series_created",
            "Series created in the head",
            head.series_created(),
        );
        self.counter(
            "tidemark_head_series_removed",
            "Series removed from the head by garbage collection",
            head.series_removed(),
        );
        self.gauge(
            "tidemark_head_chunks",
            "Chunks in the head, open ones included",
            head.num_chunks(),
        );
        self.counter(
            "tidemark_head_flushes",
            "Head block windows written to blocks",
            load(&c.flushes),
        );
        self.counter(
            "tidemark_head_flushes_failed",
            "Head flush runs that failed",
            load(&c.flushes_failed),
        );
        self.histograms(
            "tidemark_head_flush_duration_seconds",
            "Time to write one head block window to a block and checkpoint the WAL",
            vec![(Vec::new(), c.flush_durations.snapshot())],
        );

        let w = db.wal_stats();
        let replay = db.replay_stats();
        self.gauge("tidemark_wal_segments", "WAL segment files", w.segments);
        self.gauge(
            "tidemark_wal_bytes",
            "Bytes of WAL segments and checkpoint on disk",
            w.total_bytes,
        );
        self.counter(
            "tidemark_wal_written_bytes",
            "Bytes written to the WAL",
            w.bytes_written,
        );
        self.histograms(
            "tidemark_wal_fsync_duration_seconds",
            "Duration of WAL fsyncs",
            vec![(Vec::new(), db.wal_fsync_durations())],
        );
        self.counter(
            "tidemark_wal_corruptions",
            "Damaged WAL records found at open; each was repaired by truncating its segment there",
            replay.corruptions.len() as u64,
        );
        self.counter(
            "tidemark_wal_truncated_bytes",
            "Bytes cut off damaged WAL segments at open",
            replay.bytes_truncated,
        );

        let cat = db.catalog();
        self.gauge(
            "tidemark_blocks_loaded",
            "Blocks served to queries",
            cat.blocks.len() as u64,
        );
        self.gauge(
            "tidemark_blocks_bytes",
            "Bytes of the served blocks on disk",
            cat.size_bytes(),
        );
        self.gauge(
            "tidemark_blocks_refused",
            "Blocks refused as corrupt at open and left out of every query",
            db.refused_blocks().len() as u64,
        );
        self.counter(
            "tidemark_blocks_quarantined",
            "Blocks found corrupt (at open, by the background scrub, or by a query or compaction reading them) and moved into the quarantine directory",
            db.quarantined_count(),
        );
        self.counter(
            "tidemark_compactions",
            "Block compactions done",
            load(&c.compactions),
        );
        self.counter(
            "tidemark_compactions_failed",
            "Block compactions that failed",
            load(&c.compactions_failed),
        );
        self.histograms(
            "tidemark_compaction_duration_seconds",
            "Time to merge blocks into one",
            vec![(Vec::new(), c.compaction_durations.snapshot())],
        );
        self.counter(
            "tidemark_retention_deleted_blocks",
            "Blocks deleted by retention",
            load(&c.retention_deletes),
        );
    }
}
