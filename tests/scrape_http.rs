//! The whole scrape path over real HTTP: config YAML, `scrape::job::build`, the manager's real
//! loops on a multi-thread runtime in real time, and a Db in a tempdir, against hand-rolled
//! HTTP/1.1 targets on 127.0.0.1. Checks that fixtures round-trip bit for bit, that every
//! failure mode marks the target down without storing part of the body, and staleness.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use tidemark::config::Config;
use tidemark::model::{Health, Labels, Matcher, is_stale_nan};
use tidemark::scrape::job;
use tidemark::scrape::manager::{Manager, TargetStatus, join_all};
use tidemark::scrape::parse::{Entry, Format, Parser};
use tidemark::storage::{Db, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "common/fixtures.rs"]
mod fixtures;

const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 target: one request per connection, then `Connection: close`.

#[derive(Clone)]
enum Reply {
    /// A whole response with `Content-Length`.
    Full {
        status: &'static str,
        content_type: &'static str,
        gzip: bool,
        body: Vec<u8>,
    },
    /// Reads the request and never answers.
    Silent,
    /// Valid exposition lines in chunks, forever.
    EndlessChunked,
}

fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Full {
        status: "200 OK",
        content_type,
        gzip: false,
        body: body.into(),
    }
}

const TEXT: &str = "text/plain; version=0.0.4";

/// What the target answers to its n-th request (0-based).
type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

async fn read_request(conn: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

async fn answer(mut conn: TcpStream, reply: Reply) {
    match reply {
        Reply::Full {
            status,
            content_type,
            gzip,
            body,
        } => {
            let enc = if gzip {
                "Content-Encoding: gzip\r\n"
            } else {
                ""
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{enc}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(&body).await;
            let _ = conn.shutdown().await;
        }
        Reply::Silent => {
            // Hold the connection open without a byte until the client gives up.
            let mut sink = [0u8; 64];
            while matches!(conn.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        Reply::EndlessChunked => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {TEXT}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            );
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for i in 0u64.. {
                let line = format!("endless_metric{{i=\"{i}\"}} {}.25\n", i * 7 + 3);
                let chunk = format!("{:x}\r\n{line}\r\n", line.len());
                if conn.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Serves `script` on 127.0.0.1; returns the address and the count of requests answered.
async fn serve(script: Script) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let script = script.clone();
            let c = c.clone();
            tokio::spawn(async move {
                if read_request(&mut conn).await {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    answer(conn, script(n)).await;
                }
            });
        }
    });
    (addr, count)
}

fn always(reply: Reply) -> Script {
    Arc::new(move |_| reply.clone())
}

// ---------------------------------------------------------------------------------------
// Config, manager and Db helpers.

/// One `scrape_configs` entry: job name, target address and extra YAML lines for the job.
fn job_yaml(name: &str, addr: &str, extra: &str) -> String {
    let mut s = format!(
        "  - job_name: {name}\n    scrape_interval: 1s\n    scrape_timeout: 500ms\n    static_configs:\n      - targets: [\"{addr}\"]\n"
    );
    for l in extra.lines() {
        s.push_str("    ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn jobs(
    entries: &[String],
) -> Vec<tidemark::scrape::manager::JobSpec<tidemark::scrape::fetch::Fetcher>> {
    let yaml = format!("scrape_configs:\n{}", entries.concat());
    let cfg = Config::parse(&yaml, "test.yml").unwrap();
    cfg.scrape_configs
        .iter()
        .map(|sc| job::build(sc, &[]).unwrap())
        .collect()
}

fn open_db() -> (tempfile::TempDir, Arc<Db>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    (dir, db)
}

/// Polls every 50 ms until `f` gives a value or `deadline` passes.
async fn poll<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every job in `names` has finished a scrape with the given health.
async fn wait_health(m: &Manager, names: &[&str], health: Health) -> Vec<TargetStatus> {
    poll(
        &format!("{names:?} {health}"),
        Duration::from_secs(8),
        || {
            let ts = m.targets();
            let done = names.iter().all(|n| {
                ts.iter().any(|t| {
                    t.job == *n && t.health.health == health && t.health.last_report.is_some()
                })
            });
            done.then_some(ts)
        },
    )
    .await
}

fn select_job(db: &Db, job: &str) -> BTreeMap<Labels, Vec<f64>> {
    db.querier()
        .select(&[Matcher::equal("job", job)], i64::MIN / 4, i64::MAX / 4)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.samples.into_iter().map(|x| x.v).collect()))
        .collect()
}

fn same_bits(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan() && is_stale_nan(a) == is_stale_nan(b)) || a.to_bits() == b.to_bits()
}

fn synthetic(job: &str, instance: &str, name: &str) -> Labels {
    Labels::new([("__name__", name), ("job", job), ("instance", instance)]).unwrap()
}

// ---------------------------------------------------------------------------------------
// 1. Fixtures round-trip.

fn fixture_dir() -> std::path::PathBuf {
    fixtures::shared("fixtures/exposition")
}

struct Fixture {
    job: &'static str,
    file: &'static str,
    content_type: &'static str,
    format: Format,
}

/// The fixture's samples as stored series: the target's job and instance added, clashing
/// scraped labels renamed `exported_*` (honor_labels is off). Also the sample count.
fn expected(body: &[u8], f: &Fixture, instance: &str) -> (BTreeMap<Labels, f64>, usize) {
    let mut out = BTreeMap::new();
    let mut n = 0;
    for e in Parser::new(body, f.format) {
        let Entry::Sample(s) = e.unwrap() else {
            continue;
        };
        n += 1;
        let l = s.to_labels().unwrap();
        let mut b = l.to_builder();
        for (name, v) in [("job", f.job), ("instance", instance)] {
            if let Some(old) = l.get(name) {
                b.set(&format!("exported_{name}"), old);
            }
            b.set(name, v);
        }
        let prev = out.insert(b.build().unwrap(), s.value());
        assert!(prev.is_none(), "{}: duplicate series", f.file);
    }
    (out, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixtures_are_stored_exactly_with_the_synthetic_series() {
    let fixtures = [
        Fixture {
            job: "node",
            file: "node_exporter-1.5.0.prom",
            content_type: TEXT,
            format: Format::PrometheusText,
        },
        Fixture {
            job: "prom",
            file: "prometheus-2.42.0.prom",
            content_type: TEXT,
            format: Format::PrometheusText,
        },
        Fixture {
            job: "vm",
            file: "victoria-metrics-1.79.5.prom",
            content_type: TEXT,
            format: Format::PrometheusText,
        },
        Fixture {
            job: "pytext",
            file: "python-client.prom",
            content_type: TEXT,
            format: Format::PrometheusText,
        },
        Fixture {
            job: "pyom",
            file: "python-client.openmetrics",
            content_type: "application/openmetrics-text; version=1.0.0",
            format: Format::OpenMetrics,
        },
    ];
    let (_dir, db) = open_db();
    let mut entries = Vec::new();
    let mut want = Vec::new();
    for f in &fixtures {
        let body = std::fs::read(fixture_dir().join(f.file)).unwrap();
        let (addr, _) = serve(always(ok(f.content_type, body.clone()))).await;
        entries.push(job_yaml(f.job, &addr, ""));
        want.push((expected(&body, f, &addr), addr));
    }
    // The fixtures exercise the hard cases this test claims to cover.
    let vm = &want[2].0.0;
    assert!(vm.keys().any(|l| l.iter().any(|(_, v)| v.contains('}'))));
    assert!(want.iter().any(|w| {
        w.0.0
            .keys()
            .any(|l| l.iter().any(|(_, v)| v.contains('"') || v.contains('\\')))
    }));

    let mut m = Manager::new(db.clone());
    join_all(m.apply(jobs(&entries))).await;
    let names: Vec<&str> = fixtures.iter().map(|f| f.job).collect();
    wait_health(&m, &names, Health::Up).await;
    // Shutdown writes no markers, so what is stored is exactly what the scrapes wrote.
    join_all(m.shutdown()).await;

    for (f, ((series, count), instance)) in fixtures.iter().zip(&want) {
        let got = select_job(&db, f.job);
        assert_eq!(
            got.len(),
            series.len() + SYNTHETIC.len(),
            "{}: stored series count",
            f.file
        );
        for (labels, v) in series {
            let stored = got
                .get(labels)
                .unwrap_or_else(|| panic!("{}: {labels} not stored", f.file));
            assert!(!stored.is_empty());
            for s in stored {
                assert!(
                    same_bits(*s, *v),
                    "{}: {labels} stored {s}, fixture {v}",
                    f.file
                );
            }
        }
        let first = |name: &str| got[&synthetic(f.job, instance, name)][0];
        assert_eq!(first("up"), 1.0, "{}", f.file);
        assert_eq!(first("scrape_samples_scraped"), *count as f64, "{}", f.file);
        assert_eq!(
            first("scrape_samples_post_metric_relabeling"),
            *count as f64,
            "{}",
            f.file
        );
        assert_eq!(
            first("scrape_series_added"),
            series.len() as f64,
            "{}",
            f.file
        );
        assert!(first("scrape_duration_seconds") >= 0.0);
    }
}

// ---------------------------------------------------------------------------------------
// 2. Failure modes.

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn lines(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{prefix}{{k=\"v{i}\"}} {}.5\n", i * 13 + 2))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_scrapes_mark_the_target_down_and_store_nothing_of_the_body() {
    let malformed = format!(
        "# TYPE malformed_metric gauge\n{}malformed_metric{{k=\"broken\" 7\n{}",
        lines("malformed_metric", 4),
        lines("malformed_other", 3)
    );
    // Identical lines compress several hundredfold: 184 KiB inflate from about half a KiB.
    let bomb = gzip("bomb_metric{k=\"v\"} 1.5\n".repeat(8 << 10).as_bytes());
    assert!(bomb.len() < 1024, "the gzip body itself fits the limit");
    // (job, reply, extra YAML, expected error substring)
    let cases: Vec<(&str, Reply, &str, &str)> = vec![
        (
            "status500",
            Reply::Full {
                status: "500 Internal Server Error",
                content_type: TEXT,
                gzip: false,
                body: lines("status_metric", 3).into_bytes(),
            },
            "",
            "server returned HTTP status 500",
        ),
        ("silent", Reply::Silent, "", "context deadline exceeded"),
        (
            "toolarge",
            ok(TEXT, lines("large_metric", 100)),
            "body_size_limit: 1KB",
            "body size limit exceeded",
        ),
        (
            "endless",
            Reply::EndlessChunked,
            "body_size_limit: 1KB",
            "body size limit exceeded",
        ),
        (
            "malformed",
            ok(TEXT, malformed),
            "",
            // The broken line is the sixth: the TYPE line and four good samples precede it.
            "line 6",
        ),
        (
            "gzipbomb",
            Reply::Full {
                status: "200 OK",
                content_type: TEXT,
                gzip: true,
                body: bomb,
            },
            "body_size_limit: 1KB",
            "body size limit exceeded",
        ),
        (
            "samplelimit",
            ok(TEXT, lines("many_metric", 9)),
            "sample_limit: 5",
            "sample limit exceeded",
        ),
        (
            "valuelength",
            ok(
                TEXT,
                "short_metric{k=\"ok\"} 1.5\nlong_metric{k=\"a-label-value-far-longer-than-twenty\"} 3\n",
            ),
            "label_value_length_limit: 20",
            "label_value_length_limit exceeded",
        ),
    ];
    let (_dir, db) = open_db();
    let mut entries = Vec::new();
    let mut addrs = BTreeMap::new();
    for (name, reply, extra, _) in &cases {
        let (addr, _) = serve(always(reply.clone())).await;
        entries.push(job_yaml(name, &addr, extra));
        addrs.insert(*name, addr);
    }
    let mut m = Manager::new(db.clone());
    join_all(m.apply(jobs(&entries))).await;
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let ts = wait_health(&m, &names, Health::Down).await;
    join_all(m.shutdown()).await;

    for (name, _, _, err) in &cases {
        let t = ts.iter().find(|t| t.job == *name).unwrap();
        assert!(
            t.health.last_error.contains(err),
            "{name}: lastError {:?} lacks {err:?}",
            t.health.last_error
        );
        let got = select_job(&db, name);
        let stored: Vec<&str> = got.keys().filter_map(|l| l.metric_name()).collect();
        let mut want_names = SYNTHETIC.to_vec();
        want_names.sort_unstable();
        let mut stored_sorted = stored.clone();
        stored_sorted.sort_unstable();
        assert_eq!(
            stored_sorted, want_names,
            "{name}: only the synthetic series"
        );
        let up = &got[&synthetic(name, &addrs[name], "up")];
        assert!(
            !up.is_empty() && up.iter().all(|v| *v == 0.0),
            "{name}: up {up:?}"
        );
        let scraped = &got[&synthetic(name, &addrs[name], "scrape_samples_scraped")];
        assert!(scraped.iter().all(|v| *v == 0.0), "{name}: {scraped:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. Staleness.

fn last_value(db: &Db, labels: &Labels) -> Option<f64> {
    let ms: Vec<Matcher> = labels.iter().map(|(n, v)| Matcher::equal(n, v)).collect();
    db.querier()
        .samples(&ms, i64::MIN / 4, i64::MAX / 4)
        .unwrap()
        .last()
        .map(|s| s.v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_series_and_removed_targets_get_staleness_markers() {
    let (_dir, db) = open_db();
    let changing: Script = Arc::new(|n| {
        if n == 0 {
            ok(TEXT, "kept_metric 1.25\nvanishing_metric{k=\"x\"} 7e-3\n")
        } else {
            ok(TEXT, format!("kept_metric {}.75\n", n * 3))
        }
    });
    let (addr_a, count_a) = serve(changing).await;
    let (addr_b, _) = serve(always(ok(
        TEXT,
        "removed_metric{k=\"p\"} 4.5\nremoved_metric{k=\"q\"} -2\n",
    )))
    .await;
    let entry_a = job_yaml("changing", &addr_a, "");
    let entry_b = job_yaml("removed", &addr_b, "");
    let mut m = Manager::new(db.clone());
    join_all(m.apply(jobs(&[entry_a.clone(), entry_b]))).await;

    let series = |job: &str, addr: &str, name: &str, k: Option<&str>| {
        let mut p = vec![("__name__", name), ("job", job), ("instance", addr)];
        if let Some(k) = k {
            p.push(("k", k));
        }
        Labels::new(p).unwrap()
    };
    let vanishing = series("changing", &addr_a, "vanishing_metric", Some("x"));
    let kept = series("changing", &addr_a, "kept_metric", None);

    // The second scrape lacks `vanishing_metric`: it ends with a marker, `kept_metric` goes on.
    poll(
        "the vanished series' marker",
        Duration::from_secs(8),
        || last_value(&db, &vanishing).filter(|v| is_stale_nan(*v)),
    )
    .await;
    assert!(count_a.load(Ordering::SeqCst) >= 2);
    let k = last_value(&db, &kept).unwrap();
    assert!(!k.is_nan() && k != 1.25, "kept_metric goes on: {k}");
    let first_vanishing = db
        .querier()
        .samples(
            &vanishing
                .iter()
                .map(|(n, v)| Matcher::equal(n, v))
                .collect::<Vec<_>>(),
            i64::MIN / 4,
            i64::MAX / 4,
        )
        .unwrap();
    assert_eq!(first_vanishing.len(), 2, "one sample, then one marker");
    assert_eq!(first_vanishing[0].v.to_bits(), 7e-3f64.to_bits());

    // Removing the other target ends all its series, the synthetic ones included.
    wait_health(&m, &["removed"], Health::Up).await;
    join_all(m.apply(jobs(&[entry_a]))).await;
    let gone = select_job(&db, "removed");
    assert_eq!(gone.len(), 2 + SYNTHETIC.len());
    for (l, vs) in &gone {
        let last = *vs.last().unwrap();
        assert!(
            is_stale_nan(last),
            "{l}: last sample {last} is not a marker"
        );
        assert!(vs.len() >= 2, "{l}: a value before the marker");
    }
    // The unchanged job kept running through the reload.
    assert_eq!(m.targets().len(), 1);
    assert_eq!(m.targets()[0].job, "changing");
    join_all(m.shutdown()).await;
    assert!(!is_stale_nan(last_value(&db, &kept).unwrap()));
}
