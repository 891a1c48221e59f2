//! One target's scrape loop: a fixed schedule offset by a hash of the target, never two scrapes
//! of one target at once, the timeout enforced, each result stored as one batch.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, warn};

use super::fetch::ScrapeUrl;
use super::ingest::{IngestOptions, ScrapeReport, ScrapeState};
use super::parse::Format;
use super::stats::JobStats;
use crate::model::{Health, Labels};
use crate::storage::Db;
use crate::sync::lock;

/// Fetches one target's body; the scrape loop calls it once per interval.
pub trait Fetch: Send + Sync + 'static {
    /// The body at `url` and its format, or the error text the target's state shows.
    fn fetch(
        &self,
        url: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(Vec<u8>, Format), String>> + Send;

    /// [`Fetch::fetch`] of a URL the loop parsed once when it started; a fetcher that parses
    /// URLs itself takes the parse from here instead of repeating it every scrape.
    fn fetch_url(
        &self,
        url: &ScrapeUrl,
        timeout: Duration,
    ) -> impl Future<Output = Result<(Vec<u8>, Format), String>> + Send {
        self.fetch(url.as_str(), timeout)
    }
}

/// Stores one fetched body, or the failure to fetch it, through the target's scrape state.
fn ingest(
    st: &mut ScrapeState,
    db: &Db,
    target: &Labels,
    body: &Result<(Vec<u8>, Format), String>,
    t: i64,
    duration: f64,
    opts: &IngestOptions,
) -> Result<ScrapeReport, crate::storage::StorageError> {
    let body = body
        .as_ref()
        .map(|(b, f)| (b.as_slice(), *f))
        .map_err(Clone::clone);
    st.ingest(db, target, body, t, duration, opts)
}

/// The fetcher enforces the scrape timeout itself (with Prometheus's error text); the loop's
/// own deadline is a backstop a little later, so the two never race.
const FETCH_GRACE: Duration = Duration::from_millis(500);

/// Largest body stored on the scrape loop's own task rather than on a blocking thread: about
/// 3,000 series, a millisecond or two of work (a node_exporter body is 50-150 KiB).
const INLINE_BODY_BYTES: usize = 256 * 1024;

/// Most series a target may have cached for its scrape to be stored on the loop's own task: a
/// failed scrape writes a staleness marker for each.
const INLINE_SERIES: usize = 4096;

/// Whether this scrape is stored on the loop's task: a small batch whose commit waits for no
/// fsync of its own (only, rarely, for the one of a flush cutting the WAL). Anything larger, or
/// under `fsync: always`, goes to a blocking thread so it never holds up the runtime's workers,
/// which run every other scrape and the HTTP API.
fn inline_ingest(db: &Db, st: &ScrapeState, body: &Result<(Vec<u8>, Format), String>) -> bool {
    let large = matches!(body, Ok((b, _)) if b.len() > INLINE_BODY_BYTES);
    !large && st.cached_series() <= INLINE_SERIES && !db.commits_wait_for_fsync()
}

/// A target's health as `/api/v1/targets` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetHealth {
    /// `Unknown` before the first scrape, then `Up` or `Down`.
    pub health: Health,
    /// The last scrape's error, empty when it succeeded.
    pub last_error: String,
    /// Start of the last scrape, ms since the epoch.
    pub last_scrape_ms: i64,
    /// How long the last scrape took, in seconds.
    pub last_scrape_duration: f64,
    /// What the last scrape stored.
    pub last_report: Option<ScrapeReport>,
}

/// How one target is scraped.
#[derive(Debug, Clone)]
pub struct LoopSettings {
    /// Time between scrapes.
    pub interval: Duration,
    /// Longest a scrape may take.
    pub timeout: Duration,
    /// The target's labels (job, instance, and those from discovery and relabeling).
    pub target: Labels,
    /// The URL to scrape.
    pub url: String,
    /// How samples become series.
    pub ingest: IngestOptions,
    /// Snap scrape timestamps to the schedule when this close to it (Prometheus: 2 ms), so
    /// timestamps of regular scrapes compress to nothing.
    pub timestamp_tolerance: Duration,
    /// The job's counters, which every scrape adds to.
    pub stats: Arc<JobStats>,
}

/// Where in each interval this target is scraped: a stable hash of its labels, so targets spread
/// over the interval and a restart keeps each one's phase.
pub fn offset(target: &Labels, interval: Duration) -> Duration {
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(target.stable_hash() % ms)
}

/// The loop's run state, sent by its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep scraping.
    Run,
    /// The target was removed: stop and end its series with staleness markers.
    Remove,
    /// The agent is shutting down: stop without markers, so series continue after a restart.
    Shutdown,
}

/// Maps tokio's clock (paused in tests) to wall-clock milliseconds.
#[derive(Clone, Copy)]
struct Clock {
    wall_ms: i64,
    at: Instant,
}

impl Clock {
    fn new() -> Self {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Clock {
            wall_ms,
            at: Instant::now(),
        }
    }

    fn ms(&self, i: Instant) -> i64 {
        self.wall_ms + i.saturating_duration_since(self.at).as_millis() as i64
    }
}

/// Runs the loop until `stop` leaves [`Control::Run`]; on [`Control::Remove`] it then writes
/// staleness markers for everything the target stored last. Returns when done.
pub async fn run<F: Fetch>(
    db: Arc<Db>,
    settings: LoopSettings,
    fetcher: Arc<F>,
    health: Arc<Mutex<TargetHealth>>,
    mut stop: watch::Receiver<Control>,
) {
    let clock = Clock::new();
    let interval = settings.interval.max(Duration::from_millis(1));
    let now = Instant::now();
    // First scrape at the target's phase within the interval, counted from the epoch so every
    // process agrees on it.
    let phase = offset(&settings.target, interval).as_millis() as i64;
    let iv_ms = interval.as_millis() as i64;
    let wait = (phase - clock.ms(now)).rem_euclid(iv_ms);
    let mut ticker = tokio::time::interval_at(now + Duration::from_millis(wait as u64), interval);
    // A scrape that overruns its interval delays the next one instead of stacking them.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut state = Some(ScrapeState::default());
    let url = ScrapeUrl::new(&settings.url);
    lock(&health).health = Health::Unknown;
    loop {
        let scheduled = tokio::select! {
            t = ticker.tick() => t,
            _ = stop.changed() => break,
        };
        if *stop.borrow() != Control::Run {
            break;
        }
        let started = Instant::now();
        let mut t = clock.ms(started);
        if started.saturating_duration_since(scheduled) <= settings.timestamp_tolerance {
            t = clock.ms(scheduled);
        }
        let result = tokio::select! {
            r = tokio::time::timeout(settings.timeout + FETCH_GRACE, fetcher.fetch_url(&url, settings.timeout)) => r,
            _ = stop.changed() => break,
        };
        let body = match result {
            Ok(r) => r,
            Err(_) => Err(format!("scrape timed out after {:?}", settings.timeout)),
        };
        let duration = started.elapsed().as_secs_f64();
        let Some(mut st) = state.take() else { break };
        let (st, report) = if inline_ingest(&db, &st, &body) {
            // A small batch costs less than handing it to a blocking thread and back.
            let r = ingest(
                &mut st,
                &db,
                &settings.target,
                &body,
                t,
                duration,
                &settings.ingest,
            );
            (st, r)
        } else {
            let db2 = db.clone();
            let target = settings.target.clone();
            let opts = settings.ingest.clone();
            let joined = tokio::task::spawn_blocking(move || {
                let r = ingest(&mut st, &db2, &target, &body, t, duration, &opts);
                (st, r)
            })
            .await;
            let Ok(done) = joined else {
                warn!(target = %settings.target, "scrape ingestion task failed");
                break;
            };
            done
        };
        state = Some(st);
        settings.stats.record(duration, report.as_ref().ok());
        let mut h = lock(&health);
        h.last_scrape_ms = t;
        h.last_scrape_duration = duration;
        match report {
            Ok(r) => {
                h.health = if r.up { Health::Up } else { Health::Down };
                h.last_error = r.error.clone().unwrap_or_default();
                if let Some(e) = &r.error {
                    debug!(target = %settings.target, error = %e, "scrape failed");
                }
                let c = &r.commit;
                if c.out_of_bounds + c.too_far_in_future > 0 {
                    // Prometheus's warning for the same refusal, with the counts split.
                    warn!(
                        target = %settings.target,
                        out_of_bounds = c.out_of_bounds,
                        too_far_in_future = c.too_far_in_future,
                        "samples refused: too old (before the head or year 0000) or too far in the future (more than 10m ahead of the scrape)"
                    );
                }
                h.last_report = Some(r);
            }
            Err(e) => {
                h.health = Health::Down;
                h.last_error = format!("storage: {e}");
                warn!(target = %settings.target, error = %e, "storing scrape failed");
            }
        }
    }
    let removed = *stop.borrow() == Control::Remove;
    if let (Some(mut st), true) = (state, removed) {
        let t = clock.ms(Instant::now());
        let db2 = db.clone();
        let ended = tokio::task::spawn_blocking(move || st.end(&db2, t)).await;
        if !matches!(ended, Ok(Ok(_))) {
            warn!(target = %settings.target, "could not write staleness markers for a removed target");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Matcher;
    use crate::storage::Options;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fake target: counts calls, tracks overlap, takes `delay` to answer, or never answers.
    struct Fake {
        calls: AtomicUsize,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
        delay: Duration,
        hang: bool,
    }

    impl Fake {
        fn new(delay: Duration, hang: bool) -> Arc<Self> {
            Arc::new(Fake {
                calls: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
                delay,
                hang,
            })
        }
    }

    impl Fetch for Fake {
        async fn fetch(&self, _url: &str, _timeout: Duration) -> Result<(Vec<u8>, Format), String> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let f = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(f, Ordering::SeqCst);
            if self.hang {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok((format!("m {n}\n").into_bytes(), Format::PrometheusText))
        }
    }

    fn settings(interval: u64, timeout: u64) -> LoopSettings {
        LoopSettings {
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(timeout),
            target: Labels::new([("job", "j"), ("instance", "a:1")]).unwrap(),
            url: "http://a:1/metrics".into(),
            ingest: IngestOptions::default(),
            timestamp_tolerance: Duration::from_millis(2),
            stats: Arc::default(),
        }
    }

    struct Running {
        _dir: tempfile::TempDir,
        db: Arc<Db>,
        health: Arc<Mutex<TargetHealth>>,
        tx: watch::Sender<Control>,
        h: tokio::task::JoinHandle<()>,
    }

    /// A loop over a fresh store, running until `tx` says otherwise.
    fn start(settings: LoopSettings, fake: &Arc<Fake>) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
        let health = Arc::new(Mutex::new(TargetHealth::default()));
        let (tx, rx) = watch::channel(Control::Run);
        let h = tokio::spawn(run(db.clone(), settings, fake.clone(), health.clone(), rx));
        Running {
            _dir: dir,
            db,
            health,
            tx,
            h,
        }
    }

    async fn wait_for(mut cond: impl FnMut() -> bool) {
        // Paused time: each sleep advances the clock instantly; the bound keeps a bug from
        // hanging the test.
        for _ in 0..100_000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test(start_paused = true)]
    async fn scrapes_every_interval_without_overlap_and_stales_on_stop() {
        // Each scrape takes longer than the interval: the next one waits, never overlaps.
        let fake = Fake::new(Duration::from_secs(12), false);
        let Running {
            _dir,
            db,
            health,
            tx,
            h,
        } = start(settings(10, 15), &fake);
        wait_for(|| fake.calls.load(Ordering::SeqCst) >= 5).await;
        assert_eq!(fake.max_in_flight.load(Ordering::SeqCst), 1);
        wait_for(|| lock(&health).health == Health::Up).await;
        tx.send(Control::Remove).unwrap();
        h.await.unwrap();
        let q = db.querier();
        let m = q
            .samples(&[Matcher::equal("__name__", "m")], i64::MIN, i64::MAX)
            .unwrap();
        assert!(m.len() >= 4);
        // An overrunning scrape is followed at once by the next, never by a burst.
        for w in m.windows(2) {
            assert!(w[1].t - w[0].t >= 10_000, "{m:?}");
        }
        assert!(
            crate::model::is_stale_nan(m.last().unwrap().v),
            "removed target's series end stale"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timestamps_sit_on_the_schedule() {
        let fake = Fake::new(Duration::from_millis(300), false);
        let Running {
            _dir, db, tx, h, ..
        } = start(settings(10, 5), &fake);
        wait_for(|| fake.calls.load(Ordering::SeqCst) >= 6).await;
        tx.send(Control::Remove).unwrap();
        h.await.unwrap();
        let up = db
            .querier()
            .samples(&[Matcher::equal("__name__", "up")], i64::MIN, i64::MAX)
            .unwrap();
        let live: Vec<_> = up
            .iter()
            .filter(|s| !crate::model::is_stale_nan(s.v))
            .collect();
        assert!(live.len() >= 5);
        for w in live.windows(2) {
            assert_eq!(
                w[1].t - w[0].t,
                10_000,
                "one scrape per interval, on the grid"
            );
        }
        let phase = offset(&settings(10, 5).target, Duration::from_secs(10)).as_millis() as i64;
        assert_eq!(
            live[0].t.rem_euclid(10_000),
            phase,
            "the target's phase in the interval"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_target_that_never_answers_times_out_and_is_down() {
        let fake = Fake::new(Duration::ZERO, true);
        let Running {
            _dir,
            db,
            health,
            tx,
            h,
        } = start(settings(15, 5), &fake);
        wait_for(|| lock(&health).health == Health::Down).await;
        let hl = lock(&health).clone();
        assert!(hl.last_error.contains("timed out"), "{hl:?}");
        assert!(hl.last_scrape_duration >= 5.0 && hl.last_scrape_duration < 6.0);
        tx.send(Control::Remove).unwrap();
        h.await.unwrap();
        let up = db
            .querier()
            .samples(&[Matcher::equal("__name__", "up")], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(up[0].v, 0.0);
    }

    #[test]
    fn offsets_spread_targets_and_are_stable() {
        let iv = Duration::from_secs(15);
        let offs: Vec<Duration> = (0..50)
            .map(|i| {
                offset(
                    &Labels::new([("instance", format!("h{i}:9100"))]).unwrap(),
                    iv,
                )
            })
            .collect();
        assert!(offs.iter().all(|o| *o < iv));
        let distinct: std::collections::HashSet<_> = offs.iter().collect();
        assert!(distinct.len() > 40);
        let l = Labels::new([("instance", "h1:9100")]).unwrap();
        assert_eq!(offset(&l, iv), offset(&l, iv));
    }
}
