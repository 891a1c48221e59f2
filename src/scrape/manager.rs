//! The scrape manager: one loop per target, started, kept or stopped as the configuration and
//! discovery change. A target whose identity and settings are unchanged keeps its loop, so a
//! reload loses no scrape of it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::ingest::IngestOptions;
use super::scrape_loop::{self, Control, Fetch, LoopSettings, TargetHealth};
use super::stats;
use super::target::{self, JobDefaults, Target};
use crate::model::{Health, Labels};
use crate::storage::Db;

/// Everything needed to scrape one job's targets.
pub struct JobSpec<F> {
    /// Target-shaping settings and `relabel_configs`.
    pub defaults: JobDefaults,
    /// How the job's samples become series.
    pub ingest: IngestOptions,
    /// The job's HTTP client.
    pub fetcher: Arc<F>,
    /// Discovered targets: each entry's labels, `__address__` included.
    pub discovered: Vec<BTreeMap<String, String>>,
    /// A hash of the job's whole configuration: a change restarts its loops.
    pub config_hash: u64,
    /// Most targets the job may have after relabeling (`target_limit`); 0 is no limit. Over
    /// it, none of the job's targets is scraped and each shows the error, as in Prometheus.
    pub target_limit: usize,
    /// Most dropped targets kept for display (`keep_dropped_targets`); 0 keeps all.
    pub keep_dropped_targets: usize,
}

/// A target as `/api/v1/targets` reports it.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    /// Job (scrape pool) name.
    pub job: String,
    /// The target.
    pub target: Target,
    /// Its health.
    pub health: TargetHealth,
}

/// A discovered target that relabeling dropped (or that could not be built).
#[derive(Debug, Clone)]
pub struct DroppedTarget {
    /// Job name.
    pub job: String,
    /// Its labels before relabeling.
    pub discovered: BTreeMap<String, String>,
    /// Why it is not scraped, when it was an error rather than a `drop`.
    pub error: Option<String>,
}

struct Running {
    job: String,
    target: Target,
    health: Arc<Mutex<TargetHealth>>,
    stop: watch::Sender<Control>,
    task: JoinHandle<()>,
}

/// Identity of a running loop: same job, same final labels, same URL and schedule, same config.
fn key(job: &str, t: &Target, config_hash: u64) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    job.hash(&mut h);
    t.labels.hash(&mut h);
    t.url.hash(&mut h);
    t.interval.hash(&mut h);
    t.timeout.hash(&mut h);
    config_hash.hash(&mut h);
    h.finish()
}

/// Runs every target's scrape loop.
pub struct Manager {
    db: Arc<Db>,
    running: HashMap<u64, Running>,
    dropped: Vec<DroppedTarget>,
    /// Targets of jobs over their `target_limit`: listed, not scraped.
    over_limit: Vec<TargetStatus>,
}

impl Manager {
    /// A manager with no targets.
    pub fn new(db: Arc<Db>) -> Self {
        Manager {
            db,
            running: HashMap::new(),
            dropped: Vec::new(),
            over_limit: Vec::new(),
        }
    }

    /// Makes the running loops match `jobs`: unchanged targets keep running untouched, removed
    /// ones are told to stop (their series get staleness markers), new ones start. Call it
    /// inside a tokio runtime; await the returned handles to know the removed loops finished
    /// (it does not wait itself, so callers may hold a lock around it).
    #[must_use = "await the stopping loops"]
    pub fn apply<F: Fetch>(&mut self, jobs: Vec<JobSpec<F>>) -> Vec<JoinHandle<()>> {
        let mut wanted: HashMap<u64, (String, Target, LoopSettings, Arc<F>)> = HashMap::new();
        let mut dropped = Vec::new();
        let mut over_limit = Vec::new();
        for job in jobs {
            let name = job.defaults.job_name.clone();
            let dropped_before = dropped.len();
            let mut built = Vec::new();
            for d in &job.discovered {
                match target::populate(d, &job.defaults) {
                    Ok(Some(t)) => built.push(t),
                    Ok(None) => dropped.push(DroppedTarget {
                        job: name.clone(),
                        discovered: d.clone(),
                        error: None,
                    }),
                    Err(e) => {
                        warn!(job = %name, error = %e, "target not scraped");
                        dropped.push(DroppedTarget {
                            job: name.clone(),
                            discovered: d.clone(),
                            error: Some(e.to_string()),
                        });
                    }
                }
            }
            if job.keep_dropped_targets > 0 {
                dropped.truncate(
                    dropped_before + job.keep_dropped_targets.min(dropped.len() - dropped_before),
                );
            }
            if job.target_limit > 0 && built.len() > job.target_limit {
                let error = format!(
                    "target_limit exceeded (number of targets: {}, limit: {})",
                    built.len(),
                    job.target_limit
                );
                warn!(job = %name, %error, "no target of the job is scraped");
                for target in built {
                    let health = TargetHealth {
                        health: Health::Down,
                        last_error: error.clone(),
                        ..TargetHealth::default()
                    };
                    over_limit.push(TargetStatus {
                        job: name.clone(),
                        target,
                        health,
                    });
                }
                continue;
            }
            let stats = stats::global().job(&name);
            for t in built {
                let settings = LoopSettings {
                    interval: t.interval,
                    timeout: t.timeout,
                    target: t.labels.clone(),
                    url: t.url.clone(),
                    ingest: job.ingest.clone(),
                    timestamp_tolerance: std::time::Duration::from_millis(2),
                    stats: stats.clone(),
                };
                let k = key(&name, &t, job.config_hash);
                wanted.insert(k, (name.clone(), t, settings, job.fetcher.clone()));
            }
        }
        self.over_limit = over_limit;
        self.dropped = dropped;
        let gone: Vec<u64> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(k))
            .copied()
            .collect();
        let mut stopping = Vec::new();
        for k in gone {
            if let Some(r) = self.running.remove(&k) {
                info!(job = %r.job, target = %r.target.labels, "stopping scrape loop");
                let _ = r.stop.send(Control::Remove);
                stopping.push(r.task);
            }
        }
        for (k, (job, target, settings, fetcher)) in wanted {
            if self.running.contains_key(&k) {
                continue;
            }
            let health = Arc::new(Mutex::new(TargetHealth::default()));
            let (stop, rx) = watch::channel(Control::Run);
            info!(job = %job, target = %target.labels, url = %target.url, "starting scrape loop");
            let task = tokio::spawn(scrape_loop::run(
                self.db.clone(),
                settings,
                fetcher,
                health.clone(),
                rx,
            ));
            self.running.insert(
                k,
                Running {
                    job,
                    target,
                    health,
                    stop,
                    task,
                },
            );
        }
        stopping
    }

    /// Every active target with its health, ordered by job then labels.
    pub fn targets(&self) -> Vec<TargetStatus> {
        let mut out: Vec<TargetStatus> = self
            .running
            .values()
            .map(|r| TargetStatus {
                job: r.job.clone(),
                target: r.target.clone(),
                health: crate::sync::lock(&r.health).clone(),
            })
            .chain(self.over_limit.iter().cloned())
            .collect();
        out.sort_by(|a, b| (&a.job, &a.target.labels).cmp(&(&b.job, &b.target.labels)));
        out
    }

    /// Targets that relabeling dropped or that could not be built.
    pub fn dropped(&self) -> &[DroppedTarget] {
        &self.dropped
    }

    /// Labels of the running targets (for tests and logs).
    pub fn target_labels(&self) -> Vec<Labels> {
        self.targets()
            .into_iter()
            .map(|t| t.target.labels)
            .collect()
    }

    /// Tells every loop to stop for shutdown; await the handles. No staleness markers: the
    /// series go on after a restart.
    #[must_use = "await the stopping loops"]
    pub fn shutdown(&mut self) -> Vec<JoinHandle<()>> {
        self.running
            .drain()
            .map(|(_, r)| {
                let _ = r.stop.send(Control::Shutdown);
                r.task
            })
            .collect()
    }
}

/// Waits for stopping loops.
pub async fn join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Matcher, is_stale_nan};
    use crate::scrape::parse::Format;
    use crate::storage::Options;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    struct Body(AtomicUsize);
    impl Fetch for Body {
        async fn fetch(&self, _: &str, _: Duration) -> Result<(Vec<u8>, Format), String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok((b"m 1\n".to_vec(), Format::PrometheusText))
        }
    }

    fn job(addrs: &[&str], fetcher: &Arc<Body>, hash: u64) -> JobSpec<Body> {
        JobSpec {
            defaults: JobDefaults {
                job_name: "j".into(),
                scheme: "http".into(),
                metrics_path: "/metrics".into(),
                params: BTreeMap::new(),
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
                relabel: vec![],
            },
            ingest: IngestOptions::default(),
            fetcher: fetcher.clone(),
            discovered: addrs
                .iter()
                .map(|a| BTreeMap::from([("__address__".to_string(), a.to_string())]))
                .collect(),
            config_hash: hash,
            target_limit: 0,
            keep_dropped_targets: 0,
        }
    }

    fn up_samples(db: &Db, instance: &str) -> Vec<crate::model::Sample> {
        db.querier()
            .samples(
                &[
                    Matcher::equal("__name__", "up"),
                    Matcher::equal("instance", instance),
                ],
                i64::MIN,
                i64::MAX,
            )
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn reload_keeps_unchanged_loops_and_swaps_changed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
        let mut m = Manager::new(db.clone());
        let f = Arc::new(Body(AtomicUsize::new(0)));
        join_all(m.apply(vec![job(&["a:1", "b:1"], &f, 1)])).await;
        assert_eq!(m.targets().len(), 2);
        tokio::time::sleep(Duration::from_secs(35)).await;
        let before = up_samples(&db, "a:1");
        assert!(before.len() >= 3);
        // Same config: a:1 keeps its loop (its schedule continues with no gap or extra scrape),
        // b:1 is removed, c:1 is new.
        join_all(m.apply(vec![job(&["a:1", "c:1"], &f, 1)])).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let after = up_samples(&db, "a:1");
        assert_eq!(
            after.len(),
            before.len() + 3,
            "exactly one scrape per interval across the reload"
        );
        for w in after.windows(2) {
            assert_eq!(w[1].t - w[0].t, 10_000);
        }
        assert!(
            is_stale_nan(up_samples(&db, "b:1").last().unwrap().v),
            "removed target's series end stale"
        );
        assert!(!up_samples(&db, "c:1").is_empty());
        let mut names: Vec<String> = m
            .target_labels()
            .iter()
            .map(|l| l.get("instance").unwrap().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["a:1", "c:1"]);
        // A changed job config restarts its loops.
        join_all(m.apply(vec![job(&["a:1"], &f, 2)])).await;
        assert!(is_stale_nan(up_samples(&db, "a:1").last().unwrap().v));
        assert_eq!(m.targets().len(), 1);
        join_all(m.shutdown()).await;
        assert!(m.targets().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_over_its_target_limit_scrapes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
        let mut m = Manager::new(db.clone());
        let f = Arc::new(Body(AtomicUsize::new(0)));
        let mut j = job(&["a:1", "b:1", "c:1"], &f, 1);
        j.target_limit = 2;
        join_all(m.apply(vec![j])).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(f.0.load(Ordering::SeqCst), 0, "no scrape");
        let t = m.targets();
        assert_eq!(t.len(), 3);
        assert!(t.iter().all(|t| t.health.health == Health::Down
            && t.health.last_error == "target_limit exceeded (number of targets: 3, limit: 2)"));
        join_all(m.apply(vec![job(&["a:1", "b:1"], &f, 1)])).await;
        assert_eq!(m.targets().len(), 2);
        join_all(m.shutdown()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_and_invalid_targets_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
        let mut m = Manager::new(db);
        let f = Arc::new(Body(AtomicUsize::new(0)));
        join_all(m.apply(vec![job(&["ok:1", "http://bad/"], &f, 1)])).await;
        assert_eq!(m.targets().len(), 1);
        assert_eq!(m.dropped().len(), 1);
        assert!(
            m.dropped()[0]
                .error
                .as_deref()
                .unwrap_or("")
                .contains("invalid host:port")
        );
        let mut j = job(&["ok:1", "http://bad/", "http://worse/"], &f, 1);
        j.keep_dropped_targets = 1;
        join_all(m.apply(vec![j])).await;
        assert_eq!(m.dropped().len(), 1, "keep_dropped_targets bounds the list");
        join_all(m.shutdown()).await;
    }
}
