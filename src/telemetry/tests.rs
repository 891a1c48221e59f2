use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use super::*;
use crate::model::{Health, Labels};
use crate::scrape::ingest::ScrapeReport;
use crate::scrape::parse::{Entry, Format, Parser};
use crate::storage::wal::FsyncPolicy;
use crate::storage::{CommitStats, Options};

/// Runs `promtool check metrics` on a page; any parse error or lint problem fails.
fn promtool_check(page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (CI installs it too)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n--- page ---\n{page}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// Every sample of a page by its labels (`__name__` included), parsed with the scraper's own
/// parser, which rejects duplicate series.
fn parse(page: &str) -> BTreeMap<Labels, f64> {
    let mut out = BTreeMap::new();
    for e in Parser::new(page.as_bytes(), Format::PrometheusText) {
        if let Entry::Sample(s) = e.unwrap() {
            let prev = out.insert(s.to_labels().unwrap(), s.value());
            assert!(prev.is_none(), "duplicate series {}", s.series());
        }
    }
    out
}

fn get(m: &BTreeMap<Labels, f64>, name: &str, pairs: &[(&str, &str)]) -> f64 {
    let l = Labels::new(std::iter::once(("__name__", name)).chain(pairs.iter().copied())).unwrap();
    *m.get(&l)
        .unwrap_or_else(|| panic!("no series {l} on the page"))
}

/// The count in the bucket whose bound equals `le`, compared by value (the encoder writes
/// bounds as Go does: `1.0`, `0.0001`).
fn bucket(m: &BTreeMap<Labels, f64>, name: &str, pairs: &[(&str, &str)], le: f64) -> f64 {
    let bucket_name = format!("{name}_bucket");
    let hits: Vec<f64> = m
        .iter()
        .filter(|(l, _)| {
            l.get("__name__") == Some(bucket_name.as_str())
                && l.get("le").and_then(|v| v.parse::<f64>().ok()) == Some(le)
                && pairs.iter().all(|(n, v)| l.get(n) == Some(*v))
        })
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(hits.len(), 1, "{name} le={le}: {hits:?}");
    hits[0]
}

fn la(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied()).unwrap()
}

/// A store that has appended, rejected, flushed and compacted, with figures known exactly.
fn busy_db(dir: &std::path::Path) -> Db {
    let db = Db::open(
        dir,
        Options {
            fsync: FsyncPolicy::Always,
            block_duration: 1000,
            retention_time: 0,
            ..Options::default()
        },
    )
    .unwrap();
    let one = la(&[("__name__", "load"), ("cpu", "1")]);
    let two = la(&[("__name__", "load"), ("cpu", "2")]);
    let ts = [
        13, 388, 702, 1190, 1544, 2031, 2417, 2999, 3310, 3862, 4217, 4705,
    ];
    let mut app = db.appender();
    for (i, t) in ts.iter().enumerate() {
        app.append(&one, *t, (i as f64 * 1.37).sin() * 80.0)
            .unwrap();
        app.append(&two, *t, 0.25 + (i * i) as f64 / 7.0).unwrap();
    }
    assert_eq!(app.commit().unwrap().appended, 24);
    let mut app = db.appender();
    let newest = (11.0_f64 * 1.37).sin() * 80.0;
    app.append(&one, 4705, newest).unwrap(); // identical: ignored
    app.append(&two, 4705, -3.5).unwrap(); // same time, other value: duplicate
    app.append(&one, 4000, 1.0).unwrap(); // older than the newest: out of order
    let s = app.commit().unwrap();
    assert_eq!(
        (s.duplicates_ignored, s.duplicate, s.out_of_order),
        (1, 1, 1)
    );
    // Windows [0,1000) … [3000,4000) are complete: four flushes, then the head starts at 4000.
    assert_eq!(db.flush().unwrap().len(), 4);
    let mut app = db.appender();
    app.append(&la(&[("__name__", "late")]), 3500, 9.0).unwrap();
    assert_eq!(app.commit().unwrap().out_of_bounds, 1);
    // The 3 s window holding the first three blocks is complete: one compaction.
    assert!(db.compact().unwrap().is_some());
    assert!(db.compact().unwrap().is_none());
    db
}

#[test]
fn the_page_passes_promtool_and_reports_storage_scrapes_and_queries() {
    let dir = tempfile::tempdir().unwrap();
    let db = busy_db(dir.path());

    let scrapes = ScrapeStats::default();
    // Job names come from configuration: quotes, backslashes and newlines must be escaped.
    let odd = "edge \"west\"\\2\nb";
    let node = scrapes.job("node");
    let odd_stats = scrapes.job(odd);
    node.record(
        0.0042,
        Some(&ScrapeReport {
            up: true,
            samples_scraped: 812,
            commit: CommitStats {
                appended: 809,
                out_of_order: 2,
                duplicate: 1,
                ..CommitStats::default()
            },
            ..ScrapeReport::default()
        }),
    );
    node.record(
        0.31,
        Some(&ScrapeReport {
            failure: Some(Failure::SampleLimit),
            samples_dropped: 1500,
            ..ScrapeReport::default()
        }),
    );
    odd_stats.record(
        10.5,
        Some(&ScrapeReport {
            failure: Some(Failure::Fetch),
            ..ScrapeReport::default()
        }),
    );
    let targets = TargetCounts(vec![
        ("node".into(), Health::Up, 97),
        (odd.into(), Health::Down, 3),
    ]);
    observe_query("range", "success", 0.0173);
    observe_query("range", "success", 3.2);
    observe_query("instant", "timeout", 61.0);
    observe_query("sideways", "exploded", 0.001);

    let page = render_with(&db, &targets, 1_700_000_123.25, &scrapes);
    promtool_check(&page);
    assert!(
        page.contains(r#"job="edge \"west\"\\2\nb""#),
        "label values escaped"
    );
    let m = parse(&page);

    // Build and process.
    assert_eq!(
        get(
            &m,
            "tidemark_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("revision", REVISION)
            ]
        ),
        1.0
    );
    assert_eq!(get(&m, "process_start_time_seconds", &[]), 1_700_000_123.25);
    if cfg!(target_os = "linux") {
        assert!(get(&m, "process_resident_memory_bytes", &[]) > 1e6);
        assert!(get(&m, "process_open_fds", &[]) >= 3.0);
        assert!(get(&m, "process_max_fds", &[]) >= get(&m, "process_open_fds", &[]));
        assert!(get(&m, "process_cpu_seconds_total", &[]) >= 0.0);
        assert!(get(&m, "process_virtual_memory_bytes", &[]) > 1e6);
    }

    // Storage.
    assert_eq!(get(&m, "tidemark_samples_appended_total", &[]), 24.0);
    for (reason, n) in [
        ("duplicate", 1.0),
        ("out_of_order", 1.0),
        ("out_of_bounds", 1.0),
    ] {
        assert_eq!(
            get(&m, "tidemark_samples_rejected_total", &[("reason", reason)]),
            n,
            "{reason}"
        );
    }
    assert_eq!(
        get(&m, "tidemark_samples_duplicate_ignored_total", &[]),
        1.0
    );
    // The out-of-bounds sample's series was created before its sample was refused.
    assert_eq!(get(&m, "tidemark_head_series", &[]), 3.0);
    // Every series still has samples in the head: none collected yet.
    assert_eq!(get(&m, "tidemark_head_series_created_total", &[]), 3.0);
    assert_eq!(get(&m, "tidemark_head_series_removed_total", &[]), 0.0);
    assert_eq!(
        get(&m, "tidemark_head_chunks", &[]),
        db.head().num_chunks() as f64
    );
    assert!(get(&m, "tidemark_head_chunks", &[]) >= 2.0);
    assert_eq!(get(&m, "tidemark_head_flushes_total", &[]), 4.0);
    assert_eq!(get(&m, "tidemark_head_flushes_failed_total", &[]), 0.0);
    assert_eq!(
        get(&m, "tidemark_head_flush_duration_seconds_count", &[]),
        4.0
    );
    assert_eq!(get(&m, "tidemark_compactions_total", &[]), 1.0);
    assert_eq!(get(&m, "tidemark_compactions_failed_total", &[]), 0.0);
    assert_eq!(
        get(&m, "tidemark_compaction_duration_seconds_count", &[]),
        1.0
    );
    assert_eq!(get(&m, "tidemark_retention_deleted_blocks_total", &[]), 0.0);
    assert_eq!(get(&m, "tidemark_blocks_loaded", &[]), 2.0);
    let cat = db.catalog();
    assert_eq!(
        get(&m, "tidemark_blocks_bytes", &[]),
        cat.size_bytes() as f64
    );
    assert!(cat.size_bytes() > 0);
    assert_eq!(get(&m, "tidemark_blocks_refused", &[]), 0.0);
    let w = db.wal_stats();
    assert_eq!(get(&m, "tidemark_wal_segments", &[]), w.segments as f64);
    assert_eq!(get(&m, "tidemark_wal_bytes", &[]), w.total_bytes as f64);
    assert_eq!(
        get(&m, "tidemark_wal_written_bytes_total", &[]),
        w.bytes_written as f64
    );
    // Every commit was fsynced (policy `always`), and the histogram saw each fsync.
    let fsyncs = get(&m, "tidemark_wal_fsync_duration_seconds_count", &[]);
    assert!(fsyncs >= 3.0, "{fsyncs}");
    assert_eq!(
        get(
            &m,
            "tidemark_wal_fsync_duration_seconds_bucket",
            &[("le", "+Inf")]
        ),
        fsyncs
    );
    assert!(
        (get(&m, "tidemark_wal_fsync_duration_seconds_sum", &[])
            - db.wal_fsync_durations().sum_seconds)
            .abs()
            < 1e-6
    );
    assert_eq!(get(&m, "tidemark_wal_corruptions_total", &[]), 0.0);
    assert_eq!(get(&m, "tidemark_wal_truncated_bytes_total", &[]), 0.0);

    // Scrapes.
    assert_eq!(
        get(
            &m,
            "tidemark_scrape_targets",
            &[("job", "node"), ("health", "up")]
        ),
        97.0
    );
    assert_eq!(
        get(
            &m,
            "tidemark_scrape_targets",
            &[("job", odd), ("health", "down")]
        ),
        3.0
    );
    let node_l = [("job", "node")];
    assert_eq!(
        get(
            &m,
            "tidemark_scrapes_total",
            &[("job", "node"), ("result", "success")]
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "tidemark_scrapes_total",
            &[("job", "node"), ("result", "failure")]
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "tidemark_scrapes_total",
            &[("job", odd), ("result", "failure")]
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "tidemark_scrape_failures_total",
            &[("job", "node"), ("reason", "sample_limit")]
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "tidemark_scrape_failures_total",
            &[("job", odd), ("reason", "fetch")]
        ),
        1.0
    );
    assert_eq!(
        get(&m, "tidemark_scrape_samples_scraped_total", &node_l),
        2312.0
    );
    for (reason, n) in [
        ("sample_limit", 1500.0),
        ("out_of_order", 2.0),
        ("duplicate", 1.0),
        ("label_limit", 0.0),
    ] {
        assert_eq!(
            get(
                &m,
                "tidemark_scrape_samples_rejected_total",
                &[("job", "node"), ("reason", reason)]
            ),
            n,
            "{reason}"
        );
    }
    // 4.2 ms and 310 ms: cumulative buckets.
    assert_eq!(
        bucket(&m, "tidemark_scrape_duration_seconds", &node_l, 0.005),
        1.0
    );
    assert_eq!(
        bucket(&m, "tidemark_scrape_duration_seconds", &node_l, 0.25),
        1.0
    );
    assert_eq!(
        bucket(&m, "tidemark_scrape_duration_seconds", &node_l, 0.5),
        2.0
    );
    assert_eq!(
        get(&m, "tidemark_scrape_duration_seconds_count", &node_l),
        2.0
    );
    assert!((get(&m, "tidemark_scrape_duration_seconds_sum", &node_l) - 0.3142).abs() < 1e-9);
    assert_eq!(
        bucket(
            &m,
            "tidemark_scrape_duration_seconds",
            &[("job", odd)],
            10.0
        ),
        0.0
    );

    // Queries: unknown kinds and outcomes are folded into `other`.
    let q = |kind, result| {
        get(
            &m,
            "tidemark_queries_total",
            &[("kind", kind), ("result", result)],
        )
    };
    assert_eq!(q("range", "success"), 2.0);
    assert_eq!(q("instant", "timeout"), 1.0);
    assert_eq!(q("other", "other"), 1.0);
    assert_eq!(
        bucket(
            &m,
            "tidemark_query_duration_seconds",
            &[("kind", "range")],
            0.025
        ),
        1.0
    );
    assert_eq!(
        bucket(
            &m,
            "tidemark_query_duration_seconds",
            &[("kind", "instant")],
            60.0
        ),
        0.0
    );
    assert_eq!(
        get(
            &m,
            "tidemark_query_duration_seconds_count",
            &[("kind", "instant")]
        ),
        1.0
    );
}

#[test]
fn a_scrape_job_without_running_loops_is_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let scrapes = ScrapeStats::default();
    let held = scrapes.job("kept");
    held.record(0.01, None);
    scrapes.job("gone").record(0.02, None);
    let page = render_with(&db, &TargetCounts(Vec::new()), 0.0, &scrapes);
    promtool_check(&page);
    let m = parse(&page);
    assert_eq!(
        get(
            &m,
            "tidemark_scrape_failures_total",
            &[("job", "kept"), ("reason", "storage")]
        ),
        1.0
    );
    assert!(
        !page.contains("job=\"gone\""),
        "a job nobody scrapes any more is left out"
    );
    assert!(!page.contains("tidemark_scrape_targets{"));
    drop(held);
}

#[tokio::test]
async fn the_middleware_labels_requests_by_route_pattern() {
    use axum::routing::get as route;
    use tower::ServiceExt;

    let app = axum::Router::new()
        .route("/telemetry-test/{id}", route(|| async { "ok" }))
        .layer(axum::middleware::from_fn(http_metrics));
    for uri in [
        "/telemetry-test/1",
        "/telemetry-test/22",
        "/nowhere-telemetry",
    ] {
        let req = axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let page = render_with(&db, &TargetCounts(Vec::new()), 0.0, &ScrapeStats::default());
    promtool_check(&page);
    let m = parse(&page);
    let route_l = [("handler", "/telemetry-test/{id}")];
    assert_eq!(
        get(
            &m,
            "tidemark_http_requests_total",
            &[("handler", "/telemetry-test/{id}"), ("code", "200")]
        ),
        2.0,
        "one series for the route, whatever the id"
    );
    assert!(
        get(
            &m,
            "tidemark_http_requests_total",
            &[("handler", "other"), ("code", "404")]
        ) >= 1.0
    );
    assert_eq!(
        get(&m, "tidemark_http_request_duration_seconds_count", &route_l),
        2.0
    );
    assert!(!page.contains("/telemetry-test/22"));
}

#[test]
fn render_keeps_the_public_entry_point() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let job = scrape_stats::global().job("telemetry-entry-point-test");
    job.record(0.125, None);
    let page = render(&db, &TargetCounts(Vec::new()), 12.5);
    promtool_check(&page);
    let m = parse(&page);
    assert_eq!(
        get(
            &m,
            "tidemark_scrape_duration_seconds_count",
            &[("job", "telemetry-entry-point-test")]
        ),
        1.0,
        "the process-wide scrape counters are on the page"
    );
    assert_eq!(get(&m, "process_start_time_seconds", &[]), 12.5);
    drop(job);
}

#[test]
fn queries_in_flight_counts_live_guards() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let in_flight = || {
        let page = render_with(&db, &TargetCounts(Vec::new()), 0.0, &ScrapeStats::default());
        promtool_check(&page);
        assert!(
            page.contains("# TYPE tidemark_queries_in_flight gauge"),
            "{page}"
        );
        get(&parse(&page), "tidemark_queries_in_flight", &[])
    };
    // Other tests of this process may run queries meanwhile, so the held guards are a floor
    // (a query of theirs cannot end the guards held here).
    let guards: Vec<QueryInFlight> = (0..3).map(|_| QueryInFlight::start()).collect();
    assert!(in_flight() >= 3.0);
    drop(guards);
    assert!(in_flight() >= 0.0);
}

#[test]
fn remote_write_queues_are_on_the_page_while_running() {
    use crate::remote_write::stats::{self as rw, DropReason};
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let q = rw::global().queue("telemetry-rw", "http://vm:8428/api/v1/write");
    q.set_running(true);
    q.dispatched.fetch_add(1_000, Ordering::Relaxed);
    q.sent.fetch_add(700, Ordering::Relaxed);
    q.failed.fetch_add(120, Ordering::Relaxed);
    // Of those, histograms: counted in both totals, shown apart.
    q.histograms_sent.fetch_add(40, Ordering::Relaxed);
    q.histograms_failed.fetch_add(20, Ordering::Relaxed);
    q.add_dropped(DropReason::Relabel, 33);
    q.highest_sent_ms
        .fetch_max(1_712_000_000_250, Ordering::Relaxed);
    q.send_durations
        .observe(std::time::Duration::from_millis(3));
    let page = render(&db, &TargetCounts(Vec::new()), 1.0);
    promtool_check(&page);
    let m = parse(&page);
    let l = [
        ("remote_name", "telemetry-rw"),
        ("url", "http://vm:8428/api/v1/write"),
    ];
    assert_eq!(get(&m, "tidemark_remote_storage_samples_total", &l), 660.0);
    assert_eq!(
        get(&m, "tidemark_remote_storage_samples_failed_total", &l),
        100.0
    );
    assert_eq!(
        get(&m, "tidemark_remote_storage_histograms_total", &l),
        40.0
    );
    assert_eq!(
        get(&m, "tidemark_remote_storage_histograms_failed_total", &l),
        20.0
    );
    assert_eq!(
        get(&m, "tidemark_remote_storage_histograms_retried_total", &l),
        0.0
    );
    assert_eq!(
        get(&m, "tidemark_remote_storage_samples_pending", &l),
        180.0
    );
    let mut dropped = l.to_vec();
    dropped.push(("reason", "relabel"));
    assert_eq!(
        get(
            &m,
            "tidemark_remote_storage_samples_dropped_total",
            &dropped
        ),
        33.0
    );
    assert_eq!(
        get(
            &m,
            "tidemark_remote_storage_queue_highest_sent_timestamp_seconds",
            &l
        ),
        1_712_000_000.25
    );
    assert_eq!(
        get(
            &m,
            "tidemark_remote_storage_sent_batch_duration_seconds_count",
            &l
        ),
        1.0
    );
    q.set_running(false);
    let page = render(&db, &TargetCounts(Vec::new()), 1.0);
    assert!(!page.contains("telemetry-rw"));
}
