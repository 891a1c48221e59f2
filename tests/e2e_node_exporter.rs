//! End to end: the release-style binary scrapes Debian's prometheus-node-exporter, and every
//! series node_exporter exposes is served back through the HTTP API with `up` = 1.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidemark::scrape::parse::{Entry, Format, Parser};

mod common;
use common::Agent;

fn find(bin: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{bin} not found: install Debian's prometheus-node-exporter (.ci/run does)")
        })
}

fn free_port() -> u16 {
    // node_exporter cannot report a port it picked itself, so reserve one and release it.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn poll<T>(what: &str, deadline: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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
    let ne_port = free_port();
    let ne_addr = format!("127.0.0.1:{ne_port}");
    let _ne = Kill(
        Command::new(find("prometheus-node-exporter"))
            .arg(format!("--web.listen-address={ne_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
    agent.signal("-TERM");
    let status = poll("clean exit", Duration::from_secs(20), async || {
        agent.child.try_wait().unwrap()
    })
    .await;
    assert!(status.success(), "exit status {status:?}");
}
