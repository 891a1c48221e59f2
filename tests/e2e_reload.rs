//! The binary as an operator runs it: reload on SIGHUP (an invalid file keeps the old
//! configuration) and on POST /-/reload, SIGTERM exits cleanly, and a restart on the same data
//! directory finds every sample again.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::Agent;
#[path = "common/log.rs"]
mod log;
use log::wait_log;

/// A target that answers every request with a small exposition body.
async fn serve_target(body: &'static str) -> String {
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
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

fn start(cfg: &Path, data: &Path) -> Agent {
    Agent::start(&[
        "--enable-lifecycle".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
}

/// A plain HTTP client for the agent's API. reqwest is built without a default TLS provider,
/// so one is installed first (whichever test of this binary runs first).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn targets(http: &reqwest::Client, a: &Agent) -> Vec<(String, String)> {
    let Ok(r) = http.get(format!("{}/api/v1/targets", a.api)).send().await else {
        return vec![];
    };
    let v: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.unwrap_or_default()).unwrap_or_default();
    v["data"]["activeTargets"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    (
                        t["scrapePool"].as_str().unwrap_or("").to_string(),
                        t["health"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_targets(http: &reqwest::Client, a: &Agent, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(j, h)| (j.to_string(), h.to_string()))
        .collect();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let mut got = targets(http, a).await;
        got.sort();
        if got == want {
            return;
        }
        assert!(Instant::now() < end, "targets {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn dump(data: &Path) -> BTreeSet<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("dump")
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn config(jobs: &[(&str, &str)]) -> String {
    let mut s =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n");
    for (job, addr) in jobs {
        s.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [\"{addr}\"]\n"
        ));
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_shutdown_and_restart_keep_everything() {
    let http = http_client();
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, data) = (tmp.path().join("tidemark.yml"), tmp.path().join("data"));
    let one = serve_target("alpha_metric{k=\"v\"} 1\n").await;
    let two = serve_target("beta_metric 2\n").await;
    std::fs::write(&cfg, config(&[("one", &one)])).unwrap();

    let mut agent = start(&cfg, &data);
    wait_targets(&http, &agent, &[("one", "up")]).await;

    // An invalid file on SIGHUP is refused; the running configuration stays.
    std::fs::write(&cfg, "global:\n  scrape_interval: 1x\n").unwrap();
    agent.signal("-HUP");
    wait_log(&agent, "reload failed");
    wait_targets(&http, &agent, &[("one", "up")]).await;

    // A valid one over /-/reload adds the second job.
    std::fs::write(&cfg, config(&[("one", &one), ("two", &two)])).unwrap();
    let r = http
        .post(format!("{}/-/reload", agent.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_targets(&http, &agent, &[("one", "up"), ("two", "up")]).await;
    // The config shown is the one in force.
    let shown: serde_json::Value = serde_json::from_slice(
        &http
            .get(format!("{}/api/v1/status/config", agent.api))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(
        shown["data"]["yaml"]
            .as_str()
            .is_some_and(|y| y.contains("job_name: two")),
        "{shown}"
    );
    // A remote whose client cannot be built (a CA file that is not PEM) fails the reload's
    // answer, though the file passes validation.
    let bad_ca = tmp.path().join("ca.pem");
    std::fs::write(&bad_ca, "not a certificate\n").unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{}remote_write:\n  - url: https://127.0.0.1:1/api/v1/write\n    tls_config:\n      ca_file: {}\n",
            config(&[("one", &one), ("two", &two)]),
            bad_ca.display()
        ),
    )
    .unwrap();
    let r = http
        .post(format!("{}/-/reload", agent.api))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    std::fs::write(&cfg, config(&[("one", &one), ("two", &two)])).unwrap();

    // And SIGHUP with the same file keeps both.
    agent.signal("-HUP");
    wait_log(&agent, "configuration reloaded");
    wait_targets(&http, &agent, &[("one", "up"), ("two", "up")]).await;

    agent.stop();
    drop(agent);
    let before = dump(&data);
    assert!(
        before.iter().any(|l| l.starts_with("alpha_metric"))
            && before.iter().any(|l| l.starts_with("beta_metric"))
    );

    // Restart on the same directory: every sample is found again.
    let mut agent = start(&cfg, &data);
    wait_targets(&http, &agent, &[("one", "up"), ("two", "up")]).await;
    agent.stop();
    let after = dump(&data);
    let lost: Vec<&String> = before.difference(&after).collect();
    assert!(lost.is_empty(), "lost across restart: {lost:?}");
}

/// A target that records the `Authorization` header of every scrape.
async fn serve_recording_auth(seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(v) = req.lines().find_map(|l| {
                    l.strip_prefix("authorization: ")
                        .or_else(|| l.strip_prefix("Authorization: "))
                }) {
                    seen.lock().unwrap().push(v.to_string());
                }
                let body = "auth_metric 1\n";
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

/// Every spelling of a secret the shown configuration once leaked, in one file: each secret
/// must be absent from /api/v1/status/config, /metrics and the log, and a reload that changes
/// only an inline password must make the scrapes send the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_show_nowhere_and_a_changed_password_is_applied_on_reload() {
    let http = http_client();
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, data) = (tmp.path().join("tidemark.yml"), tmp.path().join("data"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let target = serve_recording_auth(seen.clone()).await;
    // A remote that refuses connections: its queue starts, retries and logs the failures.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = refused.local_addr().unwrap().to_string();
    drop(refused);
    let file = |pw: &str| {
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n\
             \x20 - job_name: flow\n    static_configs: [{{targets: ['{target}']}}]\n    basic_auth: {{username: u, password: {pw}}}\n\
             \x20 - {{job_name: whole-flow, static_configs: [{{targets: ['{target}']}}], basic_auth: {{username: u, password: job-flow-pw-31}}}}\n\
             \x20 - job_name: authz\n    static_configs: [{{targets: ['{target}']}}]\n    authorization: {{credentials: authz-flow-tok-55}}\n\
             \x20 - job_name: next-line\n    static_configs: [{{targets: ['{target}']}}]\n    basic_auth:\n      username: u\n      password:\n        next-line-pw-72\n\
             \x20 - job_name: quoted-key\n    static_configs: [{{targets: ['{target}']}}]\n    basic_auth:\n      \"username\": u\n      \"password\": quoted-key-pw-18\n\
             \x20 - job_name: multi-line\n    static_configs: [{{targets: ['{target}']}}]\n    basic_auth:\n      username: u\n      password: \"multi-first\n        multi-second-pw-64\"\n\
             remote_write:\n\
             \x20 - url: http://rw-user:url-pw-93@{dead}/api/v1/write\n    queue_config: {{min_backoff: 10ms, max_backoff: 100ms}}\n\
             \x20 - url: http://{dead}/other\n    name: flow-rw\n    basic_auth: {{username: rw, password: rw-flow-pw-27}}\n"
        )
    };
    let secrets = [
        "old-pw-4c1e",
        "job-flow-pw-31",
        "authz-flow-tok-55",
        "next-line-pw-72",
        "quoted-key-pw-18",
        "multi-first",
        "multi-second-pw-64",
        "url-pw-93",
        "rw-flow-pw-27",
    ];
    std::fs::write(&cfg, file("old-pw-4c1e")).unwrap();
    let mut agent = start(&cfg, &data);
    let mut log = Vec::new();
    let mut read_log_until = |agent: &Agent, needle: &str| {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < end, "log line {needle:?} not seen");
            if let Ok(l) = agent.lines.recv_timeout(Duration::from_millis(200)) {
                let found = l.contains(needle);
                log.push(l);
                if found {
                    return;
                }
            }
        }
    };
    read_log_until(&agent, "remote write queue started");
    read_log_until(&agent, "remote write failed");
    let get = async |path: &str| {
        let r = http.get(format!("{}{path}", agent.api)).send().await;
        r.unwrap().text().await.unwrap()
    };
    let shown_yaml = async || {
        let body = get("/api/v1/status/config").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (
            body,
            v["data"]["yaml"].as_str().unwrap_or_default().to_string(),
        )
    };
    let (body, shown) = shown_yaml().await;
    let metrics = get("/metrics").await;
    for s in secrets {
        assert!(
            !body.contains(s),
            "{s:?} in /api/v1/status/config:\n{shown}"
        );
        assert!(!metrics.contains(s), "{s:?} in /metrics");
        let leaked: Vec<&String> = log.iter().filter(|l| l.contains(s)).collect();
        assert!(leaked.is_empty(), "{s:?} in the log: {leaked:?}");
    }
    assert!(shown.contains("password: <secret>"), "{shown}");
    assert!(shown.contains("rw-user:xxxxx@"), "{shown}");
    let url_label = format!("url=\"http://{dead}/api/v1/write\"");
    assert!(
        metrics.contains(&url_label),
        "no {url_label} label:\n{metrics}"
    );

    // Only the inline password of job `flow` changes: the scrapes must send the new one.
    // (`dTpuZXctcHctOWIyZA==` is base64 of `u:new-pw-9b2d`.)
    std::fs::write(&cfg, file("new-pw-9b2d")).unwrap();
    let r = http
        .post(format!("{}/-/reload", agent.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    seen.lock().unwrap().clear();
    let end = Instant::now() + Duration::from_secs(30);
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|a| a == "Basic dTpuZXctcHctOWIyZA==")
    {
        assert!(
            Instant::now() < end,
            "the new password was never sent: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (body, shown) = shown_yaml().await;
    assert!(!body.contains("new-pw-9b2d"), "{shown}");
    agent.stop();
    log.extend(agent.lines.try_iter());
    for s in secrets.iter().chain(&["new-pw-9b2d"]) {
        let leaked: Vec<&String> = log.iter().filter(|l| l.contains(s)).collect();
        assert!(leaked.is_empty(), "{s:?} in the log: {leaked:?}");
    }
}

/// A reload applies what it can and says what it cannot: a changed restart-only key
/// (`query.timeout`) is logged as taking effect at the next restart, a changed job is applied,
/// and a changed setting a reload applies (`storage.remote_write_backlog_limit`) is not
/// reported as restart-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_jobs_and_names_each_restart_only_change() {
    let http = http_client();
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, data) = (tmp.path().join("tidemark.yml"), tmp.path().join("data"));
    let one = serve_target("alpha_metric 1\n").await;
    let two = serve_target("beta_metric 2\n").await;
    std::fs::write(&cfg, config(&[("one", &one)])).unwrap();
    let agent = start(&cfg, &data);
    wait_targets(&http, &agent, &[("one", "up")]).await;

    std::fs::write(
        &cfg,
        format!(
            "{}query:\n  timeout: 1m\nstorage:\n  remote_write_backlog_limit: 2GiB\n",
            config(&[("one", &one), ("two", &two)])
        ),
    )
    .unwrap();
    let r = http
        .post(format!("{}/-/reload", agent.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The warnings come before "configuration reloaded", from the same reload.
    let mut restart_only = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < end, "no \"configuration reloaded\" line");
        let Ok(l) = agent.lines.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if l.contains("configuration reloaded") {
            break;
        }
        if l.contains("takes effect at the next restart") {
            restart_only.push(l);
        }
    }
    assert_eq!(restart_only.len(), 1, "{restart_only:?}");
    assert!(
        restart_only[0].contains("query.timeout"),
        "{restart_only:?}"
    );
    wait_targets(&http, &agent, &[("one", "up"), ("two", "up")]).await;
}
