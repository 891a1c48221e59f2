//! Hostile and merely large PromQL against the real binary: deep expressions that real
//! dashboards and generated queries reach evaluate, anything nested beyond the documented
//! limit gets 400 `bad_data` from every endpoint that parses PromQL, and none of it takes the
//! process down or stalls the rest of the API.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

mod common;
use common::Agent;

fn start(dir: &std::path::Path) -> Agent {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = dir.join("tidemark.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\nscrape_configs: []\n").unwrap();
    let data = dir.join("data");
    Agent::start(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
}

/// POSTs `form` (already encoded) to `path`; the status and the JSON body.
async fn post(
    http: &reqwest::Client,
    api: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let r = http
        .post(format!("{api}{path}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// The instant query's single scalar or sample value.
fn value(v: &serde_json::Value) -> f64 {
    let data = &v["data"];
    let pair = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        _ => &data["result"][0]["value"],
    };
    pair[1].as_str().unwrap().parse().unwrap()
}

fn nested(open: &str, inner: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), ")".repeat(n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_queries_that_prometheus_evaluates_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start(dir.path());
    let http = reqwest::Client::new();
    let api = agent.api.clone();
    let q = |s: String| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let form = [("query", s.as_str()), ("time", "1700000000")];
            post(&http, &api, "/api/v1/query", &form).await
        }
    };
    // 445 terms killed the agent (stack overflow on a tokio worker).
    let (code, v) = q(format!("1{}", "+1".repeat(444))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(value(&v), 445.0);
    let (code, v) = q(nested("abs(", "vector(1)", 507)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(value(&v), 1.0);
    let (code, v) = q(nested("-(", "1", 801)).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(value(&v), -1.0);
    // Thousands of terms, as generated queries have, up to the limit.
    // (`vector(` is a level of its own.)
    let terms = tidemark::query::MAX_DEPTH - 1;
    let (code, v) = q(format!("vector(1){}", " + vector(1)".repeat(terms - 1))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(value(&v), terms as f64);
    // A range query over the same sort of chain.
    let chain = format!("1{}", "+1".repeat(999));
    let (code, v) = post(
        &http,
        &agent.api,
        "/api/v1/query_range",
        &[
            ("query", &chain),
            ("start", "1700000000"),
            ("end", "1700003600"),
            ("step", "60"),
        ],
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let values = v["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 61);
    assert!(values.iter().all(|p| p[1] == "1000"), "{v}");
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_beyond_the_limit_is_refused_by_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start(dir.path());
    let http = reqwest::Client::new();
    let parens = nested("(", "up", 100_000);
    let limit = tidemark::query::MAX_DEPTH;
    let just_over = format!("1{}", "+1".repeat(limit));
    for (path, key, q) in [
        ("/api/v1/series", "match[]", &parens),
        ("/api/v1/labels", "match[]", &parens),
        ("/api/v1/label/job/values", "match[]", &parens),
        ("/federate", "match[]", &parens),
        ("/api/v1/query_exemplars", "query", &parens),
        ("/api/v1/format_query", "query", &parens),
        ("/api/v1/query", "query", &parens),
        ("/api/v1/query_range", "query", &parens),
        ("/api/v1/query", "query", &just_over),
        ("/api/v1/format_query", "query", &just_over),
    ] {
        let form = [
            (key, q.as_str()),
            ("start", "1700000000"),
            ("end", "1700000600"),
            ("step", "60"),
        ];
        let (code, v) = if path.starts_with("/api/v1/label/") || path == "/federate" {
            // GET only: as deep as a request line allows.
            let url = format!("{}{path}?match[]={}", agent.api, "(".repeat(60_000));
            let r = http.get(url).send().await.unwrap();
            let code = r.status().as_u16();
            let body = r.text().await.unwrap();
            (code, serde_json::from_str(&body).unwrap_or(body.into()))
        } else {
            post(&http, &agent.api, path, &form).await
        };
        assert_eq!(code, 400, "{path}: {v}");
        if path != "/federate" {
            assert_eq!(v["errorType"], "bad_data", "{path}: {v}");
        }
        let text = v.to_string();
        assert!(text.contains("too deeply nested"), "{path}: {text}");
        if q == &just_over {
            assert!(text.contains(&limit.to_string()), "{path}: {text}");
        }
        assert!(
            agent.child.try_wait().unwrap().is_none(),
            "{path} killed it"
        );
    }
    let r = http
        .get(format!("{}/-/healthy", agent.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_query_near_the_limit_completes_and_the_api_stays_responsive() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start(dir.path());
    let http = reqwest::Client::new();
    let depth = tidemark::query::MAX_DEPTH - 2;
    let (code, v) = post(
        &http,
        &agent.api,
        "/api/v1/format_query",
        &[("query", &nested("abs(", "vector(1)", depth))],
    )
    .await;
    assert_eq!(code, 200);
    let text = v["data"].as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // One `abs(` per line, indented by its depth, until the rest fits in 100 characters:
    // `abs(` 18 times around `vector(1)` does.
    let split = depth - 18;
    assert_eq!(lines.len(), 2 * split + 1);
    assert_eq!(lines[0], "abs(");
    assert_eq!(lines[split - 1], format!("{}abs(", "  ".repeat(split - 1)));
    assert_eq!(
        lines[split],
        format!("{}{}", "  ".repeat(split), nested("abs(", "vector(1)", 18))
    );
    assert_eq!(lines[2 * split], ")");

    // Deep queries in flight do not stall the rest of the API: `/-/healthy` answers while
    // they are still running.
    let chain = Arc::new(format!(
        "x{}",
        " + x".repeat(tidemark::query::MAX_DEPTH - 1)
    ));
    let done = Arc::new(AtomicUsize::new(0));
    let n = 6;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (http, api, chain, done) =
            (http.clone(), agent.api.clone(), chain.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/api/v1/format_query"
            } else {
                "/api/v1/query"
            };
            let (code, _) = post(&http, &api, path, &[("query", chain.as_str())]).await;
            done.fetch_add(1, Ordering::SeqCst);
            code
        }));
    }
    let mut answered_while_busy = false;
    for _ in 0..5 {
        let r = http
            .get(format!("{}/-/healthy", agent.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        answered_while_busy |= done.load(Ordering::SeqCst) < n;
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert!(
        answered_while_busy,
        "/-/healthy only answered once every deep query was done"
    );
    agent.stop();
}
