//! The real binary: what a scrape declares reaches `/api/v1/metadata`, the scraped samples
//! answer PromQL, and the `query:` settings are the engine's (visible in status/flags).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::Agent;

const BODY: &str = "# HELP jobs_done_total Jobs finished, by queue.\n# TYPE jobs_done_total counter\njobs_done_total{queue=\"a\"} 17\njobs_done_total{queue=\"b\"} 4\n# TYPE temp_celsius gauge\ntemp_celsius 21.5\n";

/// A target that answers every request with `BODY`.
async fn serve_target() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    match http.get(url).send().await {
        Ok(r) => serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_metadata_and_samples_reach_the_api() {
    let target = serve_target().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tidemark.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n  - job_name: work\n    static_configs:\n      - targets: ['{target}']\nquery:\n  timeout: 45s\n  max_samples: 1234567\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut agent = Agent::start(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    // reqwest is built without a default crypto provider; plain HTTP still needs one set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let api = agent.api.clone();
    let end = Instant::now() + Duration::from_secs(20);
    let meta = loop {
        let v = get_json(&http, &format!("{api}/api/v1/metadata")).await;
        if v["data"]["temp_celsius"].is_array() {
            break v;
        }
        assert!(Instant::now() < end, "no metadata after 20 s: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        meta["data"],
        serde_json::json!({
            "jobs_done_total": [{"type": "counter", "help": "Jobs finished, by queue.", "unit": ""}],
            "temp_celsius": [{"type": "gauge", "help": "", "unit": ""}],
        })
    );
    let v = get_json(
        &http,
        &format!("{api}/api/v1/query?query=jobs_done_total%7Bqueue%3D%22a%22%7D"),
    )
    .await;
    assert_eq!(v["status"], "success", "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "17");
    assert_eq!(v["data"]["result"][0]["metric"]["job"], "work");
    let v = get_json(&http, &format!("{api}/api/v1/status/flags")).await;
    assert_eq!(v["data"]["query.timeout"], "45s");
    assert_eq!(v["data"]["query.max-samples"], "1234567");
    assert_eq!(v["data"]["storage.tsdb.path"], data.display().to_string());
    agent.stop();
}
