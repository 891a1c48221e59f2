//! The requests Grafana's stock Prometheus data source makes, replayed against the API over a
//! temporary store: "Save & test", the metrics browser, variable queries, panel queries,
//! exemplars and rules, with the bodies and headers Grafana sends. Responses are compared
//! byte for byte where Grafana's parser depends on the shape.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tidemark::api::{ActiveTarget, ApiState, DroppedTarget, TargetsView, router};
use tidemark::model::Labels;
use tidemark::query::{Engine, EngineOptions};
use tidemark::storage::{Db, Options};
use tower::ServiceExt;

struct NoTargets;
impl TargetsView for NoTargets {
    fn targets(&self) -> (Vec<ActiveTarget>, Vec<DroppedTarget>) {
        (Vec::new(), Vec::new())
    }
}

/// Start of the test data (2023-11-14T22:13:20Z).
const T0: i64 = 1_700_000_000_000;

/// Irregular scrape offsets (ms after T0) and values of `http_requests_total` per job.
fn requests(job: &str) -> Vec<(i64, f64)> {
    let (offs, base): (&[i64], f64) = match job {
        "api" => (&[0, 14_870, 30_130, 45_002, 59_999, 75_411, 120_007], 3.5),
        _ => (&[2_100, 17_333, 31_950, 47_020, 90_555], 1000.0),
    };
    offs.iter()
        .enumerate()
        .map(|(i, o)| (T0 + o, base + (i * i) as f64 * 1.25 + *o as f64 / 7_919.0))
        .collect()
}

fn series_labels(name: &str, job: &str, inst: &str) -> Labels {
    Labels::new([("__name__", name), ("job", job), ("instance", inst)]).unwrap()
}

fn state_with(opts: EngineOptions) -> (tempfile::TempDir, Arc<ApiState>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let mut app = db.appender();
    for (job, inst) in [("api", "10.0.0.7:8080"), ("batch", "10.0.0.9:9100")] {
        let l = series_labels("http_requests_total", job, inst);
        for (t, v) in requests(job) {
            app.append(&l, t, v).unwrap();
        }
        let up = series_labels("up", job, inst);
        app.append(&up, T0 + 1_234, 1.0).unwrap();
    }
    app.commit().unwrap();
    let engine = Arc::new(Engine::new(opts));
    let mut st = ApiState::new(db, engine, Arc::new(NoTargets));
    st.ready = AtomicBool::new(true);
    (dir, Arc::new(st))
}

fn state() -> (tempfile::TempDir, Arc<ApiState>) {
    state_with(EngineOptions::default())
}

async fn call_raw(st: &Arc<ApiState>, req: Request<Body>) -> (StatusCode, String) {
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    if status != StatusCode::NO_CONTENT {
        let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
        assert_eq!(
            ct.as_ref().and_then(|c| c.to_str().ok()),
            Some("application/json"),
            "{status}"
        );
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn call(st: &Arc<ApiState>, req: Request<Body>) -> (StatusCode, Value) {
    let (code, body) = call_raw(st, req).await;
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// A GET as Grafana's backend sends it.
fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::USER_AGENT, "Grafana/11.3.0")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())
        .unwrap()
}

/// A form POST as Grafana's backend sends it (keys sorted, as Go's `url.Values.Encode`).
fn post(uri: &str, form: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::USER_AGENT, "Grafana/11.3.0")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::from(form.to_string()))
        .unwrap()
}

/// Grafana's `formatTime`: seconds with the shortest fraction.
fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

fn assert_error(code: StatusCode, v: &Value, status: StatusCode, kind: &str, msg: &str) {
    assert_eq!(code, status, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["errorType"], kind, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains(msg), "{err:?} lacks {msg:?}");
}

#[tokio::test]
async fn save_and_test() {
    let (_d, st) = state();
    let (code, v) = call(&st, get("/api/v1/status/buildinfo")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["status"], "success");
    assert!(v["data"]["version"].as_str().unwrap().starts_with("2."));

    // Grafana's health check: the instant query 1+1 at time 4.
    let (code, body) = call_raw(&st, post("/api/v1/query", "query=1%2B1&time=4")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
    );
    // The same as a GET (data sources set to GET, or Grafana's retry after a 400/405).
    let (code, body) = call_raw(&st, get("/api/v1/query?query=1%2B1&time=4&timeout=60s")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}"#
    );
}

#[tokio::test]
async fn metrics_browser_and_variables() {
    let (_d, st) = state();
    let (start, end) = (secs(T0 - 3_600_000), secs(T0 + 3_600_000));
    let (code, v) = call(&st, get(&format!("/api/v1/labels?start={start}&end={end}"))).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        v,
        json!({"status": "success", "data": ["__name__", "instance", "job"]})
    );

    let uri = format!(
        "/api/v1/label/__name__/values?match%5B%5D=%7Bjob%3D%22api%22%7D&start={start}&end={end}"
    );
    let (code, v) = call(&st, get(&uri)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["data"], json!(["http_requests_total", "up"]));

    // label_values(up, job) through the series endpoint, and label_values(job).
    let uri = format!("/api/v1/series?match%5B%5D=up&start={start}&end={end}");
    let (code, v) = call(&st, get(&uri)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        v["data"],
        json!([
            {"__name__": "up", "instance": "10.0.0.7:8080", "job": "api"},
            {"__name__": "up", "instance": "10.0.0.9:9100", "job": "batch"},
        ])
    );
    let uri =
        format!("/api/v1/label/job/values?match%5B%5D=http_requests_total&start={start}&end={end}");
    let (_, v) = call(&st, get(&uri)).await;
    assert_eq!(v["data"], json!(["api", "batch"]));
    // Newer Grafana POSTs the series lookups.
    let (code, v) = call(
        &st,
        post(
            "/api/v1/series",
            &format!("end={end}&match%5B%5D=up%7Bjob%3D%22batch%22%7D&start={start}"),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    // A limit cuts the list and says so.
    let (_, v) = call(&st, get("/api/v1/label/job/values?limit=1")).await;
    assert_eq!(
        v,
        json!({"status": "success", "data": ["api"], "warnings": ["results truncated due to limit"]})
    );
}

/// The newest sample at or before `t` within the 5m lookback, as Prometheus selects it.
fn at(samples: &[(i64, f64)], t: i64) -> Option<f64> {
    samples
        .iter()
        .rev()
        .find(|(st, _)| *st <= t && *st > t - 300_000)
        .map(|(_, v)| *v)
}

#[tokio::test]
async fn panel_range_query_as_grafana_posts_it() {
    let (_d, st) = state();
    let start = T0 - 30_000;
    let end = T0 + 450_000;
    let step = 15_000;
    let form = format!(
        "end={}&query=http_requests_total%7Bjob%3D~%22api%7Cbatch%22%7D&start={}&step=15&timeout=60s",
        secs(end),
        secs(start)
    );
    let (code, body) = call_raw(&st, post("/api/v1/query_range", &form)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // The expected body, written out from the data with Prometheus's formats.
    let mut want = String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (i, (job, inst)) in [("api", "10.0.0.7:8080"), ("batch", "10.0.0.9:9100")]
        .iter()
        .enumerate()
    {
        if i > 0 {
            want.push(',');
        }
        want.push_str(&format!(
            r#"{{"metric":{{"__name__":"http_requests_total","instance":"{inst}","job":"{job}"}},"values":["#
        ));
        let data = requests(job);
        let mut first = true;
        let mut t = start;
        while t <= end {
            if let Some(v) = at(&data, t) {
                if !first {
                    want.push(',');
                }
                first = false;
                want.push_str(&format!("[{},\"{}\"]", secs(t), v));
            }
            t += step;
        }
        want.push_str("]}");
    }
    want.push_str("]}}");
    assert_eq!(body, want);
    // Values are strings Grafana parses back to the stored floats.
    let v: Value = serde_json::from_str(&body).unwrap();
    let first = &v["data"]["result"][0]["values"][0];
    assert_eq!(first[0], json!(1_700_000_000));
    assert_eq!(first[1], json!("3.5"));
}

#[tokio::test]
async fn instant_vector_reports_the_evaluation_time() {
    let (_d, st) = state();
    let t = T0 + 61_500;
    let (code, body) = call_raw(
        &st,
        post(
            "/api/v1/query",
            &format!(
                "query=http_requests_total%7Bjob%3D%22api%22%7D&time={}",
                secs(t)
            ),
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let want_v = at(&requests("api"), t).unwrap();
    assert_eq!(
        body,
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"__name__":"http_requests_total","instance":"10.0.0.7:8080","job":"api"}},"value":[1700000061.5,"{want_v}"]}}]}}}}"#
        )
    );
    // A range selector gives a matrix of the raw samples, with their own timestamps.
    let (code, v) = call(
        &st,
        get(&format!(
            "/api/v1/query?query=http_requests_total%7Bjob%3D%22batch%22%7D%5B1m%5D&time={}",
            secs(T0 + 50_000)
        )),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["data"]["resultType"], "matrix");
    let values = v["data"]["result"][0]["values"].as_array().unwrap();
    let want: Vec<Value> = requests("batch")[..4]
        .iter()
        .map(|(t, f)| json!([*t as f64 / 1000.0, f.to_string()]))
        .collect();
    assert_eq!(values, &want);
    // RFC 3339 times work as well, and `limit` cuts series with a warning.
    let (code, v) = call(
        &st,
        get("/api/v1/query?query=up&time=2023-11-14T22:14:00.000Z&limit=1"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"]["result"][0]["value"], json!([1_700_000_040, "1"]));
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    // String literals.
    let (_, body) = call_raw(&st, get("/api/v1/query?query=%22a%3Cb%22&time=7.25")).await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"string","result":[7.25,"a\u003cb"]}}"#
    );
}

#[tokio::test]
async fn exemplars_rules_and_alerts_on_editor_start() {
    let (_d, st) = state();
    // Grafana sends milliseconds here; Prometheus reads them as (far-future) seconds.
    let uri = format!(
        "/api/v1/query_exemplars?query=http_requests_total&start={}&end={}",
        T0,
        T0 + 3_600_000
    );
    let (code, body) = call_raw(&st, get(&uri)).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, r#"{"status":"success","data":[]}"#);
    let (code, _) = call_raw(
        &st,
        post("/api/v1/query_exemplars", "end=4&query=up&start=1"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    // No series selector: nothing to look up, 204 as in Prometheus.
    let (code, body) = call_raw(&st, get("/api/v1/query_exemplars?query=1%2B1")).await;
    assert_eq!((code, body.as_str()), (StatusCode::NO_CONTENT, ""));
    for uri in [
        "/api/v1/query_exemplars?query=up&start=yesterday",
        "/api/v1/query_exemplars?query=up&start=10&end=5",
        "/api/v1/query_exemplars?query=up%7B",
    ] {
        let (code, v) = call(&st, get(uri)).await;
        assert_error(code, &v, StatusCode::BAD_REQUEST, "bad_data", "");
    }

    let (code, body) = call_raw(&st, get("/api/v1/rules")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, r#"{"status":"success","data":{"groups":[]}}"#);
    let (_, body) = call_raw(&st, get("/api/v1/rules?type=alert")).await;
    assert_eq!(body, r#"{"status":"success","data":{"groups":[]}}"#);
    let (code, v) = call(&st, get("/api/v1/rules?type=sideways")).await;
    assert_error(
        code,
        &v,
        StatusCode::BAD_REQUEST,
        "bad_data",
        r#"invalid parameter "type": not supported value "sideways""#,
    );
    let (code, body) = call_raw(&st, get("/api/v1/alerts")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body, r#"{"status":"success","data":{"alerts":[]}}"#);
}

#[tokio::test]
async fn query_errors_as_prometheus_reports_them() {
    let (_d, st) = state();
    let (code, v) = call(&st, post("/api/v1/query", "query=sum%28up&time=4")).await;
    // The parser's own words behind Prometheus's prefix.
    assert_error(
        code,
        &v,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"query\": unclosed left parenthesis",
    );
    let (code, v) = call(&st, get("/api/v1/query?time=4")).await;
    assert_error(
        code,
        &v,
        StatusCode::BAD_REQUEST,
        "bad_data",
        "invalid parameter \"query\": ",
    );
    let (code, v) = call(&st, get("/api/v1/query?query=up&time=tomorrow")).await;
    assert_error(
        code,
        &v,
        StatusCode::BAD_REQUEST,
        "bad_data",
        r#"invalid parameter "time": invalid time value for 'time': cannot parse "tomorrow" to a valid timestamp"#,
    );
    let (code, v) = call(&st, get("/api/v1/query?query=up&timeout=soon")).await;
    assert_error(
        code,
        &v,
        StatusCode::BAD_REQUEST,
        "bad_data",
        r#"invalid parameter "timeout": cannot parse "soon" to a valid duration"#,
    );
    let (code, v) = call(&st, get("/api/v1/query?query=up&limit=-3")).await;
    assert_error(
        code,
        &v,
        StatusCode::BAD_REQUEST,
        "bad_data",
        r#"invalid parameter "limit": limit must be non-negative"#,
    );

    let range = |extra: &str| post("/api/v1/query_range", &format!("query=up&{extra}"));
    for (form, msg) in [
        (
            "start=x&end=10&step=1",
            r#"invalid parameter "start": cannot parse "x" to a valid timestamp"#,
        ),
        (
            "start=1&end=&step=1",
            r#"invalid parameter "end": cannot parse "" to a valid timestamp"#,
        ),
        (
            "start=20&end=10&step=1",
            r#"invalid parameter "end": end timestamp must not be before start time"#,
        ),
        (
            "start=1&end=10&step=0",
            r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#,
        ),
        (
            "start=1&end=10&step=-15s",
            r#"invalid parameter "step": cannot parse "-15s" to a valid duration"#,
        ),
        (
            "start=1&end=10&step=-2.5",
            r#"invalid parameter "step": zero or negative query resolution step widths are not accepted. Try a positive integer"#,
        ),
        (
            "start=0&end=11001&step=1",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
    ] {
        let (code, v) = call(&st, range(form)).await;
        assert_error(code, &v, StatusCode::BAD_REQUEST, "bad_data", msg);
        assert_eq!(v["error"], msg, "{form}");
    }
    // Exactly 11,000 steps is allowed (Prometheus compares the quotient).
    let (code, _) = call(&st, range("start=0&end=11000&step=1")).await;
    assert_eq!(code, StatusCode::OK);
    // Durations in Prometheus's syntax.
    let (code, v) = call(&st, range("start=1700000005&end=1700000065&step=30s")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        v["data"]["result"][0]["values"].as_array().unwrap().len(),
        3
    );
}

#[tokio::test]
async fn a_heavy_query_past_its_timeout_is_503_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    // 200 series x 1,200 samples: enough that evaluating every step takes far longer than
    // a millisecond in a debug build.
    let mut app = db.appender();
    for i in 0..200 {
        let l = Labels::new([("__name__", "load"), ("i", &i.to_string())]).unwrap();
        for k in 0..1_200i64 {
            app.append(
                &l,
                T0 + k * 15_000 + (i * 7 + k * 3) % 997,
                (k * i) as f64 / 3.0,
            )
            .unwrap();
        }
    }
    app.commit().unwrap();
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    let st = Arc::new(ApiState::new(db, engine, Arc::new(NoTargets)));
    let form = format!(
        "query=load&start={}&end={}&step=2&timeout=0.001",
        secs(T0),
        secs(T0 + 1_200 * 15_000 - 1)
    );
    let (code, v) = call(&st, post("/api/v1/query_range", &form)).await;
    assert_error(
        code,
        &v,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "query timed out in ",
    );
}

#[tokio::test]
async fn too_many_samples_is_422_execution() {
    let (_d, st) = state_with(EngineOptions {
        max_samples: 5,
        ..EngineOptions::default()
    });
    let form = format!(
        "query=http_requests_total&start={}&end={}&step=15",
        secs(T0),
        secs(T0 + 120_000)
    );
    let (code, v) = call(&st, post("/api/v1/query_range", &form)).await;
    assert_error(
        code,
        &v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "execution",
        "query processing would load too many samples into memory in query execution",
    );
    // Small enough queries still answer.
    let (code, _) = call(&st, get("/api/v1/query?query=up&time=1700000002")).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn a_dashboard_rate_panel_agrees_with_instant_queries_at_each_step() {
    let (_d, st) = state();
    let q = "sum%20by%20%28job%29%20%28rate%28http_requests_total%5B1m%5D%29%29";
    let (start, end, step) = (T0 + 20_000, T0 + 140_000, 20_000);
    let form = format!(
        "end={}&query={q}&start={}&step=20&timeout=60s",
        secs(end),
        secs(start)
    );
    let (code, v) = call(&st, post("/api/v1/query_range", &form)).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2);
    let mut checked = 0;
    for series in result {
        let job = series["metric"]["job"].as_str().unwrap();
        assert_eq!(series["metric"].as_object().unwrap().len(), 1, "{series}");
        for point in series["values"].as_array().unwrap() {
            let t = (point[0].as_f64().unwrap() * 1000.0).round() as i64;
            assert!((start..=end).contains(&t) && (t - start) % step == 0);
            let rate: f64 = point[1].as_str().unwrap().parse().unwrap();
            assert!(rate > 0.0 && rate.is_finite(), "{point}");
            // The same expression as an instant query at that step gives the same string.
            let (code, iv) = call(
                &st,
                post("/api/v1/query", &format!("query={q}&time={}", secs(t))),
            )
            .await;
            assert_eq!(code, StatusCode::OK);
            let sample = iv["data"]["result"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["metric"]["job"] == job)
                .unwrap();
            assert_eq!(sample["value"], *point);
            checked += 1;
        }
    }
    assert!(checked >= 8, "{checked} points");
}
