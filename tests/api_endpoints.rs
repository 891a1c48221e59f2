//! The endpoints around queries: metadata from scrapes, TSDB status, flags, format_query,
//! federation, OPTIONS, and one exchange over a real socket with the exact bytes Grafana sends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tidemark::api::{ActiveTarget, ApiState, DroppedTarget, MetadataRef, TargetsView, router};
use tidemark::model::{Labels, STALE_NAN};
use tidemark::query::{Engine, EngineOptions};
use tidemark::storage::{Db, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

/// Two targets' metadata, as the scrape loops would report it.
struct Scraped;

impl TargetsView for Scraped {
    fn targets(&self) -> (Vec<ActiveTarget>, Vec<DroppedTarget>) {
        (Vec::new(), Vec::new())
    }

    fn metadata(&self, metric: Option<&str>, f: &mut dyn FnMut(&str, MetadataRef<'_>)) {
        let targets: [&[(&str, &str, &str, &str)]; 2] = [
            &[
                ("go_goroutines", "gauge", "Number of goroutines.", ""),
                ("http_requests_total", "counter", "Requests <served>.", ""),
                ("process_cpu_seconds", "counter", "CPU time.", "seconds"),
            ],
            &[
                ("go_goroutines", "gauge", "Number of goroutines.", ""),
                ("http_requests_total", "counter", "Requests, by code.", ""),
            ],
        ];
        for t in targets {
            for (name, kind, help, unit) in t {
                if metric.is_none_or(|m| m == *name) {
                    f(name, MetadataRef { kind, help, unit });
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn state() -> (tempfile::TempDir, Arc<ApiState>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let now = now_ms();
    let mut app = db.appender();
    let l = |pairs: &[(&str, &str)]| Labels::new(pairs.iter().copied()).unwrap();
    // Recent samples (federation looks back 5 minutes from now), irregularly spaced.
    let reqs = l(&[
        ("__name__", "http_requests_total"),
        ("code", "200"),
        ("job", "api"),
    ]);
    for (dt, v) in [(-250_013, 17.0), (-120_777, 19.5), (-4_321, 23.25)] {
        app.append(&reqs, now + dt, v).unwrap();
    }
    let reqs5 = l(&[
        ("__name__", "http_requests_total"),
        ("code", "500"),
        ("job", "api"),
    ]);
    app.append(&reqs5, now - 61_003, 2.0).unwrap();
    // A series that ended: its last sample is a staleness marker.
    let gone = l(&[
        ("__name__", "http_requests_total"),
        ("code", "404"),
        ("job", "api"),
    ]);
    app.append(&gone, now - 90_000, 1.0).unwrap();
    app.append(&gone, now - 30_000, STALE_NAN).unwrap();
    // Too old for the lookback.
    let old = l(&[("__name__", "old_metric"), ("job", "api")]);
    app.append(&old, now - 400_000, 5.0).unwrap();
    let g = l(&[
        ("__name__", "go_goroutines"),
        ("instance", "h\"1"),
        ("job", "api"),
    ]);
    app.append(&g, now - 7_777, 1_234_567.0).unwrap();
    app.commit().unwrap();
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    let mut st = ApiState::new(db, engine, Arc::new(Scraped));
    st.ready = AtomicBool::new(true);
    st.flags = BTreeMap::from([
        ("query.timeout".to_string(), "2m".to_string()),
        (
            "storage.tsdb.path".to_string(),
            "/var/lib/tidemark".to_string(),
        ),
    ]);
    st.external_labels = BTreeMap::from([("dc".to_string(), "eu-1".to_string())]);
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

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn metadata_from_scrapes() {
    let (_d, st) = state();
    let (code, body) = call(&st, get("/api/v1/metadata")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        parse(&body)["data"],
        json!({
            "go_goroutines": [{"type": "gauge", "help": "Number of goroutines.", "unit": ""}],
            "http_requests_total": [
                {"type": "counter", "help": "Requests <served>.", "unit": ""},
                {"type": "counter", "help": "Requests, by code.", "unit": ""},
            ],
            "process_cpu_seconds": [{"type": "counter", "help": "CPU time.", "unit": "seconds"}],
        })
    );
    // Help texts come from targets: escaped for HTML as Prometheus escapes them.
    assert!(body.contains(r#""Requests \u003cserved\u003e.""#), "{body}");

    let (_, body) = call(&st, get("/api/v1/metadata?metric=go_goroutines")).await;
    assert_eq!(
        parse(&body)["data"],
        json!({"go_goroutines": [{"type": "gauge", "help": "Number of goroutines.", "unit": ""}]})
    );
    let (_, body) = call(&st, get("/api/v1/metadata?limit=2&limit_per_metric=1")).await;
    assert_eq!(
        parse(&body)["data"],
        json!({
            "go_goroutines": [{"type": "gauge", "help": "Number of goroutines.", "unit": ""}],
            "http_requests_total": [{"type": "counter", "help": "Requests <served>.", "unit": ""}],
        })
    );
    let (_, body) = call(&st, get("/api/v1/metadata?metric=nope")).await;
    assert_eq!(body, r#"{"status":"success","data":{}}"#);
    let (code, body) = call(&st, get("/api/v1/metadata?limit=many")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(parse(&body)["error"], "limit must be a number");
}

#[tokio::test]
async fn tsdb_status_and_flags() {
    let (_d, st) = state();
    let (code, body) = call(&st, get("/api/v1/status/tsdb")).await;
    assert_eq!(code, StatusCode::OK);
    let v = parse(&body)["data"].clone();
    assert_eq!(v["headStats"]["numSeries"], 5);
    // __name__ has 3 values, code 3, job 1, instance 1.
    assert_eq!(v["headStats"]["numLabelPairs"], 8);
    assert!(v["headStats"]["chunkCount"].as_u64().unwrap() >= 5);
    let (min, max) = (
        v["headStats"]["minTime"].as_i64().unwrap(),
        v["headStats"]["maxTime"].as_i64().unwrap(),
    );
    assert!(max - min >= 395_000 && max - min < 400_000, "{min} {max}");
    assert_eq!(
        v["seriesCountByMetricName"],
        json!([
            {"name": "http_requests_total", "value": 3},
            {"name": "go_goroutines", "value": 1},
            {"name": "old_metric", "value": 1},
        ])
    );
    assert_eq!(
        v["labelValueCountByLabelName"][0],
        json!({"name": "__name__", "value": 3})
    );
    assert_eq!(
        v["seriesCountByLabelValuePair"][0],
        json!({"name": "job=api", "value": 5})
    );
    assert!(v["memoryInBytesByLabelName"].as_array().unwrap().len() == 4);
    let (_, body) = call(&st, get("/api/v1/status/tsdb?limit=1")).await;
    assert_eq!(
        parse(&body)["data"]["seriesCountByMetricName"],
        json!([{"name": "http_requests_total", "value": 3}])
    );
    for (q, msg) in [
        ("limit=0", "limit must be a positive number"),
        ("limit=x", "limit must be a positive number"),
        ("limit=10001", "limit must not exceed 10000"),
    ] {
        let (code, body) = call(&st, get(&format!("/api/v1/status/tsdb?{q}"))).await;
        assert_eq!(code, StatusCode::BAD_REQUEST);
        assert_eq!(parse(&body)["error"], msg);
    }

    let (code, body) = call(&st, get("/api/v1/status/flags")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"status":"success","data":{"query.timeout":"2m","storage.tsdb.path":"/var/lib/tidemark"}}"#
    );
}

#[tokio::test]
async fn format_query_prettifies_or_reports_the_parse_error() {
    let (_d, st) = state();
    let (code, body) = call(
        &st,
        get("/api/v1/format_query?query=sum%28rate%28http_requests_total%7Bjob%3D%22api%22%7D%5B5m%5D%29%29by%28code%29"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        parse(&body)["data"],
        r#"sum by (code) (rate(http_requests_total{job="api"}[5m]))"#
    );
    let req = Request::post("/api/v1/format_query")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("query=up%7B"))
        .unwrap();
    let (code, body) = call(&st, req).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let v = parse(&body);
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": "),
        "{v}"
    );
}

#[tokio::test]
async fn federation_serves_the_latest_sample_per_series() {
    let (_d, st) = state();
    let (code, body) = call(
        &st,
        get("/federate?match[]=%7Bjob%3D%22api%22%7D&match[]=http_requests_total"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let lines: Vec<&str> = body.lines().collect();
    // Timestamps are "now"-relative: check them loosely, everything else exactly.
    let stripped: Vec<String> = lines
        .iter()
        .map(|l| match l.rsplit_once(' ') {
            Some((rest, ts)) if !l.starts_with('#') => {
                let ts: i64 = ts.parse().unwrap();
                assert!((now_ms() - ts) < 300_000, "{l}");
                rest.to_string()
            }
            _ => l.to_string(),
        })
        .collect();
    assert_eq!(
        stripped,
        vec![
            "# TYPE go_goroutines untyped",
            r#"go_goroutines{instance="h\"1",job="api",dc="eu-1"} 1.234567e+06"#,
            "# TYPE http_requests_total untyped",
            r#"http_requests_total{code="200",job="api",dc="eu-1",instance=""} 23.25"#,
            r#"http_requests_total{code="500",job="api",dc="eu-1",instance=""} 2"#,
        ]
    );
    let resp = router(st.clone())
        .oneshot(get("/federate?match[]=up"))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    // Without match[] nothing is selected: an empty page, as in Prometheus.
    let (code, body) = call(&st, get("/federate")).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, ""));
    for uri in [
        "/federate?match[]=up%7B",
        "/federate?match[]=%7Bjob%3D%22%22%7D",
    ] {
        let (code, body) = call(&st, get(uri)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}");
        assert!(body.ends_with('\n') && body.len() > 1, "{body:?}");
    }
}

#[tokio::test]
async fn options_and_head_where_prometheus_answers_them() {
    let (_d, st) = state();
    for uri in [
        "/api/v1/query",
        "/api/v1/label/job/values",
        "/api/v1/anything",
    ] {
        let req = Request::builder()
            .method(Method::OPTIONS)
            .uri(uri)
            .header(header::ORIGIN, "http://grafana.local")
            .body(Body::empty())
            .unwrap();
        let resp = router(st.clone()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{uri}");
        // No CORS unless configured.
        assert!(resp.headers().get("access-control-allow-origin").is_none());
    }
    for uri in ["/-/healthy", "/-/ready"] {
        let req = Request::head(uri).body(Body::empty()).unwrap();
        let (code, body) = call(&st, req).await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, ""), "{uri}");
    }
    // Label values are GET only in Prometheus; Grafana knows and never POSTs there.
    let req = Request::post("/api/v1/label/job/values")
        .body(Body::empty())
        .unwrap();
    let (code, _) = call(&st, req).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
}

/// Sends `request` as-is over a fresh connection and returns the status code and body.
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

#[tokio::test]
async fn save_and_test_over_a_real_socket_byte_for_byte() {
    let (_d, st) = state();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(axum::serve(listener, router(st)).into_future());
    let (code, body) = raw_exchange(
        addr,
        format!(
            "GET /api/v1/status/buildinfo HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Grafana/11.3.0\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(code, 200);
    assert!(body.contains(r#""version":"2."#), "{body}");
    // Grafana's health check: a form POST of `1+1` at time 4 (its backend sets no timeout
    // unless the data source has one).
    let form = "query=1%2B1&time=4";
    let (code, body) = raw_exchange(
        addr,
        format!(
            "POST /api/v1/query HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Grafana/11.3.0\r\nContent-Length: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
    );
    server.abort();
}
