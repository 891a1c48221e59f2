//! End to end: the release-style binary scrapes Debian's prometheus-node-exporter, and every
//! series node_exporter exposes is served back through the HTTP API with `up` = 1.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use tidemark::scrape::parse::{Entry, Format, Parser};

mod common;
use common::Agent;
#[path = "common/exporter.rs"]
mod exporter;
use exporter::{NodeExporter, poll};

fn series_set(body: &[u8], job: &str, instance: &str) -> BTreeSet<String> {
    Parser::new(body, Format::PrometheusText)
        .filter_map(|e| match e.unwrap() {
            Entry::Sample(s) => {
                let l = s.to_labels().unwrap();
                let mut b = l.to_builder();
                b.set("job", job);
                b.set("instance", instance);
                Some(b.build().unwrap().to_string())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_exporter_series_is_stored_with_up_1() {
    let tmp = tempfile::tempdir().unwrap();
    let ne = NodeExporter::start();
    let ne_addr = ne.addr.clone();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let ne_url = format!("http://{ne_addr}/metrics");
    poll("node_exporter", Duration::from_secs(20), async || {
        http.get(&ne_url)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    })
    .await;

    let cfg = tmp.path().join("tidemark.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: [\"{ne_addr}\"]\n"
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let mut agent = Agent::start(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let api = agent.api.clone();

    // The target comes up.
    poll("target up", Duration::from_secs(30), async || {
        let b = http
            .get(format!("{api}/api/v1/targets"))
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
        (v["data"]["activeTargets"][0]["health"] == "up").then_some(())
    })
    .await;

    // Every series node_exporter exposes is stored, with the target's job and instance.
    let body = http
        .get(&ne_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let want = series_set(&body, "node", &ne_addr);
    assert!(
        want.len() > 200,
        "node_exporter exposes hundreds of series, got {}",
        want.len()
    );
    let missing = poll("every series stored", Duration::from_secs(30), async || {
        let b = http
            .get(format!(
                "{api}/api/v1/series?match%5B%5D=%7Bjob%3D%22node%22%7D"
            ))
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
        let got: BTreeSet<String> = v["data"]
            .as_array()?
            .iter()
            .map(|m| {
                let pairs = m
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()));
                tidemark::model::Labels::new(pairs).unwrap().to_string()
            })
            .collect();
        let missing: Vec<&String> = want.difference(&got).collect();
        missing.is_empty().then_some(missing.len())
    })
    .await;
    assert_eq!(missing, 0);

    // `up` is 1: read back the stored samples with `tidemark dump`, safe beside a running agent.
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["dump", "--match", "up{job=\"node\"}", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let ups: Vec<&str> = text.lines().filter(|l| l.starts_with("up{")).collect();
    assert!(!ups.is_empty(), "{text}");
    assert!(
        ups.iter().all(|l| l.split(' ').nth(1) == Some("1")),
        "{text}"
    );

    // SIGTERM shuts down cleanly.
    agent.stop();
}
