//! Memory under series churn: N series replaced by N new ones (a redeploy renaming every pod),
//! then a flush that must garbage-collect the old ones. Prints the process's resident memory
//! (VmRSS), the head's series and label pairs at each stage, and how long the flush took.
//! Not a criterion bench: the figure is memory, and one run is the measurement.
//!
//! Workload: `CHURN_SERIES` (default 200,000) old series, five labels each (20 metric names,
//! one job, 50 namespaces, a pod and an instance unique to the series), one sample every
//! `CHURN_STEP_S` seconds (default 300) over [0, 1h); then as many new series (other pods) over
//! [1h, 3h], old and new committed side by side in the hour they overlap, in commits of 1,000
//! samples the way scrapes commit. The head then spans three hours, so one flush writes the
//! [0, 2h) window to a block and truncates the head there: every old series is left without
//! samples and is collected, every new one keeps its samples from 2h on.
//! `CHURN_BASELINE=1` skips the old series: the same run with only the active set, for the
//! size memory should return towards.
//!
//! `CHURN_SERIES=1000000 cargo bench --bench churn`

use std::time::Instant;

use tidemark::model::Labels;
use tidemark::storage::{Db, Options, SeriesRef};

const HOUR: i64 = 3_600_000;
const PER_COMMIT: usize = 1_000;

fn env_or(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a count: {e}")),
        Err(_) => default,
    }
}

/// Resident memory of this process, in MiB (0 where /proc is missing).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn series_labels(generation: &str, i: usize) -> Labels {
    let name = format!("churn_metric_{}", i % 20);
    let ns = format!("ns-{}", i % 50);
    let pod = format!("app-{generation}-{i:07}");
    let instance = format!("{generation}-{i:07}:9100");
    Labels::new([
        ("__name__", name.as_str()),
        ("job", "kubernetes-pods"),
        ("namespace", ns.as_str()),
        ("pod", pod.as_str()),
        ("instance", instance.as_str()),
    ])
    .unwrap_or_else(|e| panic!("labels: {e}"))
}

/// One generation of series and the refs the head gave them. Label sets are made for the
/// first scrape and not kept, so the bench's own memory is the refs alone.
struct Generation {
    name: &'static str,
    n: usize,
    refs: Vec<SeriesRef>,
}

impl Generation {
    fn new(name: &'static str, n: usize) -> Generation {
        Generation {
            name,
            n,
            refs: Vec::new(),
        }
    }

    /// One sample at `t` for every series, by labels the first time and by ref after.
    fn scrape(&mut self, db: &Db, t: i64) {
        let first = self.refs.is_empty();
        for start in (0..self.n).step_by(PER_COMMIT) {
            let end = (start + PER_COMMIT).min(self.n);
            let mut app = db.appender();
            for i in start..end {
                let v = (i as f64) + t as f64 / 1e3;
                if first {
                    let r = app
                        .append(&series_labels(self.name, i), t, v)
                        .unwrap_or_else(|e| panic!("append: {e}"));
                    self.refs.push(r);
                } else {
                    app.append_ref(self.refs[i], t, v)
                        .unwrap_or_else(|e| panic!("append_ref: {e}"));
                }
            }
            let n = app.len() as u64;
            let stats = app.commit().unwrap_or_else(|e| panic!("commit: {e}"));
            assert_eq!(stats.appended, n, "{stats:?}");
        }
    }
}

/// Seconds this thread has spent on a CPU, where Linux tells it (the steadier figure on a
/// shared machine).
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

fn report(stage: &str, db: &Db) {
    let head = db.head();
    let pairs = head.postings_stats("__name__", 0).num_label_pairs;
    println!(
        "{stage:<44} RSS {:>9.1} MiB   head series {:>9}   label pairs {:>9}",
        rss_mib(),
        head.num_series(),
        pairs
    );
}

fn main() {
    // `cargo bench` passes `--bench`; without it this is a test run (`cargo test --benches`),
    // too slow to do on the way. A name filter that is not ours is meant for another bench.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let foreign_filter = args
        .iter()
        .any(|a| !a.starts_with('-') && !"churn".contains(a.as_str()));
    if !args.iter().any(|a| a == "--bench") || foreign_filter {
        println!("churn: skipped (run it with `cargo bench --bench churn`)");
        return;
    }
    let n = env_or("CHURN_SERIES", 200_000);
    let step = env_or("CHURN_STEP_S", 300) as i64 * 1000;
    assert!(step > 0 && step <= HOUR, "CHURN_STEP_S must be in 1..=3600");
    let baseline = std::env::var("CHURN_BASELINE").is_ok_and(|v| v == "1");
    println!(
        "churn: {n} series replaced by {n} new ones, a sample every {}s{}",
        step / 1000,
        if baseline {
            " (baseline: new series only)"
        } else {
            ""
        }
    );

    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let db = Db::open(&tmp.path().join("data"), Options::default())
        .unwrap_or_else(|e| panic!("open: {e}"));
    report("start", &db);

    let began = Instant::now();
    let cpu = thread_cpu_s();
    let mut old = Generation::new("old", if baseline { 0 } else { n });
    let mut new = Generation::new("new", n);
    let mut t = 0;
    while t < HOUR {
        old.scrape(&db, t);
        t += step;
    }
    report("old series appended [0, 1h)", &db);
    let mut t = HOUR;
    while t <= 3 * HOUR {
        new.scrape(&db, t);
        t += step;
    }
    println!(
        "appends took {:.1}s, {:.1}s on CPU",
        began.elapsed().as_secs_f64(),
        thread_cpu_s() - cpu
    );
    report("new series appended [1h, 3h], old stale", &db);

    let began = Instant::now();
    let cpu = thread_cpu_s();
    let blocks = db.flush().unwrap_or_else(|e| panic!("flush: {e}"));
    let (took, cpu) = (began.elapsed().as_secs_f64(), thread_cpu_s() - cpu);
    report("after the flush of [0, 2h)", &db);
    println!(
        "flush wrote {} block(s) in {took:.1}s, {cpu:.1}s on CPU (block write, head truncation and GC, WAL checkpoint)",
        blocks.len()
    );
    assert_eq!(
        db.head().num_series(),
        n as u64,
        "the old series should be collected"
    );
}
