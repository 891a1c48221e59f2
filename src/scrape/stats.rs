//! Per-job scrape counters: outcomes, durations and samples, kept in atomics that each target's
//! loop adds to and the agent's self-metrics read when they are collected.
//!
//! The counters are process-wide (one [`ScrapeStats`], [`global`]) because the `/metrics`
//! handler reaches them without a handle on the scrape manager. A job's counters live as long as
//! the process, so a job that comes back after a reload continues its counters rather than
//! restarting them; only jobs with a running loop are listed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::ingest::{Failure, ScrapeReport};
use crate::storage::stats::{DurationHistogram, HistogramSnapshot};

/// Upper bounds (seconds) of the scrape duration histogram: a local exporter answers in a few
/// milliseconds, a slow one runs into its timeout (10 s by default, at most the interval).
pub const DURATION_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Why samples that reached the agent were not stored, as metric label values: the failures
/// that drop a whole body, then storage's verdicts on single samples.
pub const REJECT_REASONS: [&str; 8] = [
    "parse_error",
    "sample_limit",
    "label_limit",
    "bucket_limit",
    "out_of_order",
    "duplicate",
    "out_of_bounds",
    "too_far_in_future",
];

/// One job's counters.
#[derive(Debug)]
pub struct JobStats {
    succeeded: AtomicU64,
    /// Failed scrapes, indexed like [`Failure::ALL`].
    failed: [AtomicU64; Failure::ALL.len()],
    durations: DurationHistogram,
    samples_scraped: AtomicU64,
    /// Samples not stored, indexed like [`REJECT_REASONS`].
    rejected: [AtomicU64; REJECT_REASONS.len()],
}

impl Default for JobStats {
    fn default() -> Self {
        JobStats {
            succeeded: AtomicU64::new(0),
            failed: Default::default(),
            durations: DurationHistogram::new(DURATION_BOUNDS),
            samples_scraped: AtomicU64::new(0),
            rejected: Default::default(),
        }
    }
}

/// One job's counters read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSnapshot {
    /// Scrapes whose body was stored.
    pub succeeded: u64,
    /// Failed scrapes by cause, every cause listed.
    pub failed: Vec<(Failure, u64)>,
    /// Scrape (fetch) durations.
    pub durations: HistogramSnapshot,
    /// Samples in the fetched bodies, stored or not.
    pub samples_scraped: u64,
    /// Samples not stored, by reason ([`REJECT_REASONS`]), every reason listed.
    pub samples_rejected: Vec<(&'static str, u64)>,
}

fn reject_index(reason: &str) -> usize {
    REJECT_REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

impl JobStats {
    fn add(&self, reason: &str, n: u64) {
        if n > 0 {
            self.rejected[reject_index(reason)].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records one scrape: how long its fetch took and what ingesting it reported; `None` when
    /// storing it failed.
    pub fn record(&self, duration_secs: f64, report: Option<&ScrapeReport>) {
        self.durations.observe_secs(duration_secs);
        let Some(r) = report else {
            self.failed[failure_index(Failure::Storage)].fetch_add(1, Ordering::Relaxed);
            return;
        };
        match r.failure {
            None => {
                self.succeeded.fetch_add(1, Ordering::Relaxed);
            }
            Some(f) => {
                self.failed[failure_index(f)].fetch_add(1, Ordering::Relaxed);
                match f {
                    Failure::Parse
                    | Failure::SampleLimit
                    | Failure::LabelLimit
                    | Failure::BucketLimit => {
                        self.add(f.as_str(), r.samples_dropped);
                    }
                    Failure::Fetch | Failure::Storage => {}
                }
            }
        }
        self.samples_scraped
            .fetch_add(r.samples_scraped + r.samples_dropped, Ordering::Relaxed);
        self.add("out_of_order", r.commit.out_of_order);
        self.add("duplicate", r.commit.duplicate);
        self.add("out_of_bounds", r.commit.out_of_bounds);
        self.add("too_far_in_future", r.commit.too_far_in_future);
    }

    /// The counters now.
    pub fn snapshot(&self) -> JobSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        JobSnapshot {
            succeeded: load(&self.succeeded),
            failed: Failure::ALL
                .iter()
                .zip(&self.failed)
                .map(|(f, n)| (*f, load(n)))
                .collect(),
            durations: self.durations.snapshot(),
            samples_scraped: load(&self.samples_scraped),
            samples_rejected: REJECT_REASONS
                .iter()
                .zip(&self.rejected)
                .map(|(r, n)| (*r, load(n)))
                .collect(),
        }
    }
}

fn failure_index(f: Failure) -> usize {
    Failure::ALL.iter().position(|x| *x == f).unwrap_or(0)
}

/// Every job's counters, by job name.
#[derive(Debug, Default)]
pub struct ScrapeStats {
    jobs: Mutex<BTreeMap<String, Arc<JobStats>>>,
}

impl ScrapeStats {
    /// The counters of job `name`, created on first use; loops hold them while they run.
    pub fn job(&self, name: &str) -> Arc<JobStats> {
        let mut jobs = crate::sync::lock(&self.jobs);
        if let Some(j) = jobs.get(name) {
            return j.clone();
        }
        let j = Arc::new(JobStats::default());
        jobs.insert(name.to_string(), j.clone());
        j
    }

    /// Snapshots of the jobs whose counters something besides this table holds (a running
    /// loop), by job name: a job removed from the configuration drops out once its loops end.
    pub fn active(&self) -> Vec<(String, JobSnapshot)> {
        let jobs = crate::sync::lock(&self.jobs);
        jobs.iter()
            .filter(|(_, j)| Arc::strong_count(j) > 1)
            .map(|(n, j)| (n.clone(), j.snapshot()))
            .collect()
    }
}

/// The process's scrape counters.
pub fn global() -> &'static ScrapeStats {
    static STATS: OnceLock<ScrapeStats> = OnceLock::new();
    STATS.get_or_init(ScrapeStats::default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::CommitStats;

    fn rejected(s: &JobSnapshot, reason: &str) -> u64 {
        s.samples_rejected
            .iter()
            .find(|(r, _)| *r == reason)
            .unwrap()
            .1
    }

    fn failed(s: &JobSnapshot, f: Failure) -> u64 {
        s.failed.iter().find(|(x, _)| *x == f).unwrap().1
    }

    #[test]
    fn outcomes_samples_and_rejections_add_up_per_cause() {
        let stats = ScrapeStats::default();
        let j = stats.job("node");
        j.record(
            0.0131,
            Some(&ScrapeReport {
                up: true,
                samples_scraped: 37,
                commit: CommitStats {
                    appended: 33,
                    out_of_order: 3,
                    out_of_bounds: 1,
                    duplicates_ignored: 5,
                    ..CommitStats::default()
                },
                ..ScrapeReport::default()
            }),
        );
        j.record(
            0.27,
            Some(&ScrapeReport {
                failure: Some(Failure::SampleLimit),
                samples_dropped: 412,
                ..ScrapeReport::default()
            }),
        );
        j.record(
            10.4,
            Some(&ScrapeReport {
                failure: Some(Failure::Fetch),
                ..ScrapeReport::default()
            }),
        );
        j.record(0.004, None);
        let s = j.snapshot();
        assert_eq!(s.succeeded, 1);
        assert_eq!(failed(&s, Failure::SampleLimit), 1);
        assert_eq!(failed(&s, Failure::Fetch), 1);
        assert_eq!(failed(&s, Failure::Storage), 1);
        assert_eq!(failed(&s, Failure::Parse), 0);
        assert_eq!(s.samples_scraped, 37 + 412);
        assert_eq!(rejected(&s, "sample_limit"), 412);
        assert_eq!(rejected(&s, "out_of_order"), 3);
        assert_eq!(rejected(&s, "out_of_bounds"), 1);
        assert_eq!(
            rejected(&s, "duplicate"),
            0,
            "identical samples are not rejections"
        );
        assert_eq!(s.durations.count(), 4);
        assert!((s.durations.sum_seconds - (0.0131 + 0.27 + 10.4 + 0.004)).abs() < 1e-6);
    }

    #[test]
    fn only_jobs_someone_holds_are_listed_and_counters_survive_a_gap() {
        let stats = ScrapeStats::default();
        let a = stats.job("a");
        let b = stats.job("b");
        a.record(0.02, None);
        drop(b);
        let names: Vec<String> = stats.active().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a"]);
        drop(a);
        assert!(stats.active().is_empty());
        let again = stats.job("a");
        assert_eq!(stats.active()[0].1.durations.count(), 1);
        assert!(Arc::ptr_eq(&again, &stats.job("a")));
    }
}
