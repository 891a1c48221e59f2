//! The remote write receiver (`POST /api/v1/write`): requests built by hand through the router
//! (what is stored, what each kind of bad request is answered), then a real Prometheus
//! remote-writing what it scrapes to the real binary, compared sample by sample with what
//! Prometheus itself stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use prost::Message;
use serde_json::Value;
use tidemark::api::{ActiveTarget, ApiState, DroppedTarget, TargetsView, router};
use tidemark::model::{Labels, MatchOp, Matcher, STALE_NAN, is_stale_nan};
use tidemark::query::{Engine, EngineOptions};
use tidemark::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
use tidemark::storage::{Db, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

mod common;
use common::Agent;

struct NoTargets;

impl TargetsView for NoTargets {
    fn targets(&self) -> (Vec<ActiveTarget>, Vec<DroppedTarget>) {
        (Vec::new(), Vec::new())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An agent's API over a fresh data directory, ready, receiver as given.
fn state(receiver: bool) -> (tempfile::TempDir, Arc<ApiState>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    let mut st = ApiState::new(db, engine, Arc::new(NoTargets));
    st.ready = AtomicBool::new(true);
    st.remote_write_receiver = receiver;
    (dir, Arc::new(st))
}

async fn call(st: &Arc<ApiState>, req: Request<Body>) -> (StatusCode, String) {
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The request Prometheus sends: snappy-compressed protobuf with its three headers.
fn post(body: Vec<u8>) -> Request<Body> {
    Request::post("/api/v1/write")
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(header::CONTENT_ENCODING, "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(Body::from(body))
        .unwrap()
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

fn encode(ts: Vec<TimeSeries>) -> Vec<u8> {
    let raw = WriteRequest {
        timeseries: ts,
        metadata: vec![],
    }
    .encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A JSON timestamp (seconds, up to ms precision) back to milliseconds.
fn ms(v: &Value) -> i64 {
    (v.as_f64().unwrap() * 1000.0).round() as i64
}

/// Prometheus's value strings ("NaN", "+Inf", "1.5") as floats; NaNs compare by bits.
fn value(v: &Value) -> u64 {
    let s = v.as_str().unwrap();
    let f: f64 = s.parse().unwrap_or_else(|_| panic!("value {s:?}"));
    if f.is_nan() {
        f64::NAN.to_bits()
    } else {
        f.to_bits()
    }
}

/// A matrix or vector result as series → [(t, value bits)], for exact comparison.
type Series = BTreeMap<BTreeMap<String, String>, Vec<(i64, u64)>>;

fn result(body: &Value) -> Series {
    assert_eq!(body["status"], "success", "{body}");
    let mut out = Series::new();
    for s in body["data"]["result"].as_array().unwrap() {
        let metric: BTreeMap<String, String> = serde_json::from_value(s["metric"].clone()).unwrap();
        let points: Vec<(i64, u64)> = match s.get("values") {
            Some(vals) => vals
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (ms(&p[0]), value(&p[1])))
                .collect(),
            None => vec![(ms(&s["value"][0]), value(&s["value"][1]))],
        };
        out.insert(metric, points);
    }
    out
}

#[tokio::test]
async fn samples_posted_by_hand_come_back_from_the_query_api_exactly() {
    let (_d, st) = state(true);
    let t0 = now_ms() - 200_000;
    // Irregular timestamps and values; one series ends with a staleness marker, one sends its
    // labels unsorted with an empty one (which is no label at all).
    let jobs = [
        (
            vec![
                ("__name__", "rw_requests_total"),
                ("code", "200"),
                ("job", "api"),
            ],
            vec![
                (t0 + 1_013, 3.0),
                (t0 + 16_297, 17.5),
                (t0 + 31_004, 18.25),
                (t0 + 77_777, 1e6),
            ],
        ),
        (
            vec![("job", "api"), ("__name__", "rw_temperature"), ("room", "")],
            vec![
                (t0 + 2_500, -4.75),
                (t0 + 9_001, 1e-9),
                (t0 + 60_999, f64::NAN),
            ],
        ),
        (
            vec![("__name__", "rw_gone"), ("job", "api")],
            vec![
                (t0 + 5_555, 42.0),
                (t0 + 20_020, 43.5),
                (t0 + 33_333, STALE_NAN),
            ],
        ),
    ];
    let body = encode(jobs.iter().map(|(l, s)| series(l, s)).collect());
    let (code, text) = call(&st, post(body)).await;
    assert_eq!((code, text.as_str()), (StatusCode::NO_CONTENT, ""));

    // The stale marker is stored as the marker, bit for bit.
    let gone = st
        .db
        .querier()
        .samples(&[Matcher::equal("__name__", "rw_gone")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(gone.len(), 3);
    assert!(is_stale_nan(gone[2].v) && gone[2].t == t0 + 33_333);
    let names = st
        .db
        .querier()
        .series(
            &[Matcher::new(MatchOp::Regex, "__name__", "rw_.+").unwrap()],
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
    assert!(
        names.contains(&Labels::new([("__name__", "rw_temperature"), ("job", "api")]).unwrap()),
        "{names:?}"
    );

    // Raw samples through a range selector (which leaves staleness markers out, as in
    // Prometheus).
    let at = t0 + 100_000;
    let uri = format!(
        "/api/v1/query?query=%7B__name__%3D~%22rw_.%2B%22%7D%5B10m%5D&time={}",
        secs(at)
    );
    let (code, text) = call(&st, Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let got = result(&serde_json::from_str(&text).unwrap());
    let mut want = Series::new();
    for (l, s) in &jobs {
        let metric = l
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let pts = s
            .iter()
            .filter(|(_, v)| !is_stale_nan(*v))
            .map(|&(t, v)| {
                (
                    t,
                    if v.is_nan() {
                        f64::NAN.to_bits()
                    } else {
                        v.to_bits()
                    },
                )
            })
            .collect();
        want.insert(metric, pts);
    }
    assert_eq!(got, want);

    // query_range at 1s steps: each step sees the newest sample within the 5m lookback, and
    // nothing once that sample is the staleness marker.
    let (start, end) = (t0, t0 + 90_000);
    let uri = format!(
        "/api/v1/query_range?query=%7B__name__%3D~%22rw_.%2B%22%7D&start={}&end={}&step=1",
        secs(start),
        secs(end)
    );
    let (code, text) = call(&st, Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let got = result(&serde_json::from_str(&text).unwrap());
    let mut want = Series::new();
    for (l, s) in &jobs {
        let metric: BTreeMap<String, String> = l
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let mut pts = Vec::new();
        let mut t = start;
        while t <= end {
            if let Some(&(_, v)) = s.iter().rev().find(|(ts, _)| *ts <= t && *ts > t - 300_000)
                && !is_stale_nan(v)
            {
                pts.push((
                    t,
                    if v.is_nan() {
                        f64::NAN.to_bits()
                    } else {
                        v.to_bits()
                    },
                ));
            }
            t += 1000;
        }
        want.insert(metric, pts);
    }
    assert_eq!(got, want);
}

/// A counter of the receiver's self-metrics, read through `/metrics`.
async fn counter(st: &Arc<ApiState>, line_start: &str) -> f64 {
    let (_, text) = call(st, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn bad_requests_get_prometheus_status_codes_and_a_reason() {
    let (_d, st) = state(true);
    let now = now_ms();
    let rejected = |r: &str| {
        format!("tidemark_remote_write_received_samples_rejected_total{{reason=\"{r}\"}}")
    };
    let invalid_before = counter(&st, &rejected("invalid_labels")).await;
    let ooo_before = counter(&st, &rejected("out_of_order")).await;

    // Off: 404, as Prometheus answers without --web.enable-remote-write-receiver.
    let (_d2, off) = state(false);
    let good = encode(vec![series(&[("__name__", "m")], &[(now - 5_000, 1.0)])]);
    let (code, text) = call(&off, post(good.clone())).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(text.contains("web.enable_remote_write_receiver"), "{text}");
    // Starting or stopping: 503, which a sender retries.
    let (_d3, starting) = state(true);
    starting.ready.store(false, Ordering::Release);
    assert_eq!(
        call(&starting, post(good.clone())).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Only POST.
    let (code, _) = call(
        &st,
        Request::get("/api/v1/write").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);

    // Another protocol or encoding: 415.
    for (ct, ce) in [
        (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "snappy",
        ),
        ("application/json", "snappy"),
        ("application/x-protobuf", "zstd"),
    ] {
        let req = Request::post("/api/v1/write")
            .header(header::CONTENT_TYPE, ct)
            .header(header::CONTENT_ENCODING, ce)
            .body(Body::from(good.clone()))
            .unwrap();
        let (code, text) = call(&st, req).await;
        assert_eq!(
            code,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{ct} {ce}: {text}"
        );
    }

    // Bodies that do not decode: 400 with the decoder's reason, nothing stored.
    let (code, text) = call(&st, post(b"not snappy at all".to_vec())).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(text.starts_with("snappy: "), "{text}");
    let (code, text) = call(&st, post(Vec::new())).await;
    assert_eq!(
        (code, text.as_str()),
        (StatusCode::BAD_REQUEST, "snappy: corrupt input (empty)\n")
    );
    let garbage = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\x09\x0a\x07")
        .unwrap();
    let (code, text) = call(&st, post(garbage)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(text.starts_with("protobuf: "), "{text}");
    // A snappy bomb: a few bytes announcing 64 MiB.
    let (code, text) = call(&st, post(vec![0x80, 0x80, 0x80, 0x20, 0x00])).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(
        st.db
            .querier()
            .series(&[], i64::MIN, i64::MAX)
            .unwrap()
            .is_empty()
    );

    // A series with an invalid label: 400 naming it; the valid series are stored.
    let body = encode(vec![
        series(
            &[("__name__", "ok_a")],
            &[(now - 9_000, 1.0), (now - 4_000, 2.0)],
        ),
        series(
            &[("__name__", "bad"), ("le", "1"), ("le", "2")],
            &[(now - 3_000, 3.0)],
        ),
        series(&[("__name__", "ok_b"), ("x", "y")], &[(now - 2_000, 4.0)]),
    ]);
    let (code, text) = call(&st, post(body)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        text,
        "1 of 4 samples rejected, the others were stored: invalid labels for series \
         {\"__name__\"=\"bad\", \"le\"=\"1\", \"le\"=\"2\"}: duplicate label name \"le\"\n"
    );
    let stored = |name: &str| {
        st.db
            .querier()
            .samples(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
            .unwrap()
            .len()
    };
    assert_eq!((stored("ok_a"), stored("bad"), stored("ok_b")), (2, 0, 1));

    // Out of order: 400 (the sender drops the batch instead of retrying it); the request's
    // valid samples are stored, as a scrape's are.
    let body = encode(vec![
        series(
            &[("__name__", "ok_a")],
            &[(now - 6_000, 9.0), (now - 1_000, 5.0)],
        ),
        series(&[("__name__", "ok_c")], &[(now - 1_500, 6.0)]),
    ]);
    let (code, text) = call(&st, post(body)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        text,
        "1 of 3 samples rejected, the others were stored: out of order sample: 1 samples\n"
    );
    assert_eq!((stored("ok_a"), stored("ok_c")), (3, 1));

    // A retry of what was stored is not an error.
    let body = encode(vec![series(&[("__name__", "ok_c")], &[(now - 1_500, 6.0)])]);
    assert_eq!(call(&st, post(body)).await.0, StatusCode::NO_CONTENT);

    // Self-metrics: refused samples by reason (other tests in this binary only add to them).
    assert!(counter(&st, &rejected("invalid_labels")).await >= invalid_before + 1.0);
    assert!(counter(&st, &rejected("out_of_order")).await >= ooo_before + 1.0);
    assert!(
        counter(
            &st,
            "tidemark_http_requests_total{handler=\"/api/v1/write\",code=\"415\"}"
        )
        .await
            >= 3.0
    );
}

// ---- A real Prometheus remote-writing to the real binary ----

/// The scrape target: every scrape answers other values; `rw_gone` is there for the first two
/// scrapes only (so Prometheus writes a staleness marker), `rw_late` from the third on.
async fn serve_target() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let n = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let n = n.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = 0;
                // Read the request head (Prometheus sends no body).
                while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") && got < buf.len() {
                    match s.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => got += k,
                    }
                }
                let i = n.fetch_add(1, Ordering::Relaxed);
                let x = i as f64;
                let mut body = format!(
                    "# TYPE rw_requests_total counter\n\
                     rw_requests_total{{path=\"/a\"}} {}\n\
                     rw_requests_total{{path=\"/b \\\"q\\\"\"}} {}\n\
                     # TYPE rw_temperature gauge\n\
                     rw_temperature{{room=\"k\u{fc}che\",empty=\"\"}} {}\n\
                     rw_special{{kind=\"nan\"}} NaN\n\
                     rw_special{{kind=\"inf\"}} +Inf\n\
                     rw_special{{kind=\"tiny\"}} {:e}\n",
                    3 * i * i + 7,
                    x * 0.37 + 1e9,
                    (x * 1.618).sin() * 40.0 - 3.25,
                    1e-300 * (x + 1.0),
                );
                if i < 2 {
                    body.push_str(&format!("rw_gone{{phase=\"early\"}} {}\n", 42.5 - x));
                } else {
                    body.push_str(&format!("rw_late {}\n", x * x - 0.5));
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// Debian's prometheus on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    api: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

fn find_prometheus() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("prometheus not found: install Debian's prometheus (.ci/run does)")
        })
}

/// Starts Prometheus and waits until it is ready. It cannot report a port it picked, so one
/// is reserved and released first; should another process take it meanwhile, the start is
/// tried once more on another port.
async fn start_prometheus(http: &reqwest::Client, config: &Path, dir: &Path) -> Prometheus {
    for attempt in 0..2 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join(format!("prometheus-{attempt}.log"));
        let child = Command::new(find_prometheus())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join(format!("tsdb-{attempt}")).display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut p = Prometheus {
            child,
            api: format!("http://127.0.0.1:{port}"),
            log,
        };
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                let tail = p.log_tail();
                assert!(
                    attempt == 0 && tail.contains("address already in use"),
                    "prometheus exited ({status}):\n{tail}"
                );
                break;
            }
            if let Ok(r) = http.get(format!("{}/-/ready", p.api)).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return p;
            }
            assert!(
                Instant::now() < end,
                "prometheus not ready:\n{}",
                p.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    unreachable!("the second attempt either returns or fails the test")
}

async fn query(http: &reqwest::Client, api: &str, expr: &str, at: i64) -> Series {
    let q: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    let r = http
        .get(format!("{api}/api/v1/query?query={q}&time={}", secs(at)))
        .send()
        .await
        .unwrap();
    result(&serde_json::from_slice(&r.bytes().await.unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_remote_writes_its_samples_into_tidemark() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let target = serve_target().await;

    let tm_cfg = dir.path().join("tidemark.yml");
    std::fs::write(
        &tm_cfg,
        "scrape_configs: []\nweb:\n  enable_remote_write_receiver: true\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let agent = Agent::start(&[
        "--config".as_ref(),
        tm_cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);

    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 200ms\n  scrape_timeout: 150ms\n\
             scrape_configs:\n  - job_name: rwtarget\n    static_configs:\n      - targets: ['{target}']\n\
             remote_write:\n  - url: {}/api/v1/write\n    queue_config:\n      batch_send_deadline: 50ms\n      min_backoff: 20ms\n      max_backoff: 200ms\n    metadata_config:\n      send_interval: 500ms\n",
            agent.api
        ),
    )
    .unwrap();
    let prom = start_prometheus(&http, &prom_cfg, dir.path()).await;

    // Wait for Prometheus's fourth scrape: by then rw_gone has ended (a staleness marker) and
    // rw_late has begun. Everything up to that scrape's timestamp is compared. (Prometheus 2.42
    // throttles target discovery to 5 s, so the first scrape comes about 5 s after its start.)
    let end = Instant::now() + Duration::from_secs(30);
    let at = loop {
        let up = query(&http, &prom.api, "up{job=\"rwtarget\"}[1h]", now_ms()).await;
        if let Some(pts) = up.values().next()
            && pts.len() >= 4
        {
            break pts[3].0;
        }
        assert!(
            Instant::now() < end,
            "prometheus did not scrape:\n{}",
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let everything = "{job=\"rwtarget\"}[1h]";
    let want = query(&http, &prom.api, everything, at).await;
    let names: Vec<&str> = want.keys().map(|m| m["__name__"].as_str()).collect();
    for n in [
        "up",
        "rw_requests_total",
        "rw_temperature",
        "rw_special",
        "rw_gone",
        "rw_late",
        "scrape_duration_seconds",
    ] {
        assert!(
            names.contains(&n),
            "{n} not in Prometheus's result: {names:?}"
        );
    }
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let got = query(&http, &agent.api, everything, at).await;
        if got == want {
            break;
        }
        assert!(
            Instant::now() < end,
            "tidemark's samples differ from Prometheus's at {at}\n got: {got:?}\nwant: {want:?}\n{}",
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The staleness marker came across: at `at`, within the lookback of rw_gone's last sample,
    // both answer nothing for it, and the same for the rest.
    let instant = "{job=\"rwtarget\"}";
    let now_p = query(&http, &prom.api, instant, at).await;
    let now_t = query(&http, &agent.api, instant, at).await;
    assert!(
        !now_p.keys().any(|m| m["__name__"] == "rw_gone"),
        "{now_p:?}"
    );
    assert_eq!(now_t, now_p);

    // Nothing was refused, and Prometheus saw no failure.
    let metrics = http
        .get(format!("{}/metrics", agent.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("tidemark_remote_write_received_samples_rejected_total"))
    {
        assert!(line.ends_with(" 0"), "{line}");
    }
    let received = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("tidemark_remote_write_received_samples_total ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap();
    let stored: usize = want.values().map(Vec::len).sum();
    assert!(
        received >= stored as f64,
        "received {received}, stored {stored}"
    );
    let prom_metrics = http
        .get(format!("{}/metrics", prom.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failed: f64 = prom_metrics
        .lines()
        .filter(|l| l.starts_with("prometheus_remote_storage_samples_failed_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(failed, 0.0, "Prometheus reports failed sends");

    // Receiving leaves nothing in the way of a clean shutdown.
    drop(prom);
    let mut agent = agent;
    agent.stop();
}
