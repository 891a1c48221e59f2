//! `/api/v1` metadata endpoints answered as Prometheus answers them, as Grafana calls them.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tidemark::api::{ActiveTarget, ApiState, DroppedTarget, ReloadError, TargetsView, router};
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

fn state() -> (tempfile::TempDir, Arc<ApiState>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let mut app = db.appender();
    for (name, job, inst, t) in [
        ("up", "node", "a:9100", 1_700_000_000_000i64),
        ("up", "prom", "b:9090", 1_700_000_000_000),
        ("node_load1", "node", "a:9100", 1_700_000_100_000),
    ] {
        let l = Labels::new([("__name__", name), ("job", job), ("instance", inst)]).unwrap();
        app.append(&l, t, 1.0).unwrap();
    }
    app.commit().unwrap();
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    let mut st = ApiState::new(db, engine, Arc::new(NoTargets));
    st.config_yaml = "global: {}\n".to_string().into();
    st.ready = AtomicBool::new(true);
    (dir, Arc::new(st))
}

async fn call(st: &Arc<ApiState>, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn series_labels_and_values_as_grafana_asks() {
    let (_d, st) = state();
    let (code, v) = call(
        &st,
        get("/api/v1/series?match%5B%5D=up&start=1699999000&end=1700001000"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["__name__"], "up");

    // Grafana's metrics browser POSTs form-encoded.
    let req = Request::post("/api/v1/labels")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            "match%5B%5D=%7Bjob%3D%22node%22%7D&start=1699999000&end=1700001000",
        ))
        .unwrap();
    let (code, v) = call(&st, req).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "instance", "job"])
    );

    let (_, v) = call(&st, get("/api/v1/label/__name__/values")).await;
    assert_eq!(v["data"], serde_json::json!(["node_load1", "up"]));
    let (_, v) = call(&st, get("/api/v1/label/job/values?match[]=node_load1")).await;
    assert_eq!(v["data"], serde_json::json!(["node"]));
    // The time range filters: the load sample is 100 s after the up samples.
    let (_, v) = call(
        &st,
        get("/api/v1/label/__name__/values?start=1700000050&end=1700000200"),
    )
    .await;
    assert_eq!(v["data"], serde_json::json!(["node_load1"]));
    let (_, v) = call(&st, get("/api/v1/label/instance/values?limit=1")).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_requests_get_bad_data() {
    let (_d, st) = state();
    for uri in [
        "/api/v1/series",
        "/api/v1/series?match[]=up{",
        "/api/v1/series?match[]=up&start=yesterday",
        "/api/v1/labels?start=10&end=5",
        "/api/v1/label/1bad/values",
        "/api/v1/label/job/values?limit=-1",
        "/api/v1/targets?state=sideways",
    ] {
        let (code, v) = call(&st, get(uri)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["status"], "error", "{uri}");
        assert_eq!(v["errorType"], "bad_data", "{uri}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn buildinfo_health_and_readiness() {
    let (_d, st) = state();
    let (code, v) = call(&st, get("/api/v1/status/buildinfo")).await;
    assert_eq!(code, StatusCode::OK);
    let version = v["data"]["version"].as_str().unwrap();
    let major_minor: Vec<u32> = version
        .split('.')
        .take(2)
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(
        major_minor >= vec![2, 24],
        "Grafana needs 2.24+ for match[] label APIs"
    );
    assert_eq!(v["data"]["tidemarkVersion"], env!("CARGO_PKG_VERSION"));
    // The agent's own metrics parse as the text format it scrapes.
    let resp = router(st.clone()).oneshot(get("/metrics")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let mut n = 0;
    for e in
        tidemark::scrape::parse::Parser::new(&body, tidemark::scrape::parse::Format::PrometheusText)
    {
        if let tidemark::scrape::parse::Entry::Sample(s) = e.unwrap() {
            n += 1;
            if s.name() == "tidemark_samples_appended_total" {
                assert_eq!(s.value(), 3.0);
            }
        }
    }
    assert!(n > 15, "{n} self-metrics");
    let resp = router(st.clone()).oneshot(get("/-/healthy")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    st.ready.store(false, std::sync::atomic::Ordering::Release);
    let resp = router(st.clone()).oneshot(get("/-/ready")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (_, v) = call(&st, get("/api/v1/targets")).await;
    assert_eq!(v["data"]["activeTargets"], serde_json::json!([]));
    let resp = router(st.clone())
        .oneshot(Request::post("/-/reload").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "lifecycle API off by default"
    );
}

#[tokio::test]
async fn a_failed_reload_answers_500_with_its_reason() {
    let (_d, st) = state();
    let mut st = Arc::into_inner(st).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    st.reload = Some(tx);
    let st = Arc::new(st);
    tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            let reason = "loading config.yml: global: scrape_interval: bad duration".to_string();
            let _ = reply.send(Err(ReloadError::Config(reason)));
        }
    });
    let resp = router(st.clone())
        .oneshot(Request::post("/-/reload").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        &body[..],
        b"failed to reload config: loading config.yml: global: scrape_interval: bad duration"
    );
}
