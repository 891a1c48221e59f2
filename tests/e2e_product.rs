//! The README's story end to end, with the binary `cargo test --release` builds: `tidemark run`
//! with a config that scrapes a local target, ready at /-/ready, queried the way Grafana's
//! Prometheus data source queries it, a changed config applied on SIGHUP, SIGTERM, a second
//! instance refused while the first holds the data directory, and a restart on the same data
//! directory that finds every sample again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::Agent;

/// A target whose values change on every scrape, irregularly: a counter that grows by uneven
/// steps and a gauge that wanders, so that two different decodings cannot agree by accident.
async fn serve_changing_target() -> String {
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
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let i = n.fetch_add(1, Ordering::SeqCst);
                let counter: f64 = (0..=i).map(|k| ((k * 7919) % 13) as f64 + 0.25).sum();
                let gauge = ((i * i * 7919 + 13) % 997) as f64 / 7.0 - 40.0;
                let body = format!(
                    "# TYPE e2e_requests counter\ne2e_requests_total{{path=\"/a\"}} {counter}\n\
                     # TYPE e2e_temperature gauge\ne2e_temperature{{room=\"lab\"}} {gauge}\n"
                );
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

fn config(target: &str, extra_label: Option<&str>) -> String {
    let labels = extra_label.map_or(String::new(), |v| {
        format!("        labels:\n          stage: \"{v}\"\n")
    });
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n  \
         - job_name: app\n    static_configs:\n      - targets: [\"{target}\"]\n{labels}"
    )
}

fn start(cfg: &Path, data: &Path) -> Agent {
    Agent::start(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ])
}

/// Polls `f` until it returns `Some`, failing the test after `secs`.
async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> F,
) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// POSTs a form the way Grafana does and returns the decoded `data`, asserting success.
async fn grafana_post(
    http: &reqwest::Client,
    a: &Agent,
    path: &str,
    form: &[(&str, String)],
) -> serde_json::Value {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let r = http
        .post(format!("{}{path}", a.api))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Grafana-Org-Id", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(status, 200, "{path} {form:?}: {v}");
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

async fn get_json(http: &reqwest::Client, a: &Agent, path: &str) -> serde_json::Value {
    let r = http.get(format!("{}{path}", a.api)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

type Raw = BTreeSet<(String, i64, u64)>;

/// Every raw sample of the e2e series in the 10 minutes before `at` (seconds), through a range
/// selector at an instant, as (labels, ms, value bits).
async fn raw_samples(http: &reqwest::Client, a: &Agent, at: f64) -> Raw {
    let data = grafana_post(
        http,
        a,
        "/api/v1/query",
        &[
            ("query", "{__name__=~\"e2e_.+\"}[10m]".into()),
            ("time", format!("{at:.3}")),
        ],
    )
    .await;
    assert_eq!(data["resultType"], "matrix");
    let mut out = Raw::new();
    for s in data["result"].as_array().unwrap() {
        let labels = s["metric"].to_string();
        for p in s["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().unwrap().parse().unwrap();
            out.insert((labels.clone(), t, v.to_bits()));
        }
    }
    out
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_query_reload_stop_restart_as_an_operator_does() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, data) = (tmp.path().join("tidemark.yml"), tmp.path().join("data"));
    let target = serve_changing_target().await;
    std::fs::write(&cfg, config(&target, None)).unwrap();

    let mut agent = start(&cfg, &data);
    poll("/-/ready", 20, || async {
        let r = http
            .get(format!("{}/-/ready", agent.api))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // A second agent on the same data directory is refused with a message naming the lock.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!second.status.success(), "a second instance started");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another tidemark process"), "{err}");

    // Grafana's "Save & test", then its metrics browser.
    let t0 = now_s();
    let d = grafana_post(
        &http,
        &agent,
        "/api/v1/query",
        &[("query", "1+1".into()), ("time", format!("{t0:.3}"))],
    )
    .await;
    assert_eq!(d["result"][1], "2");
    let info = get_json(&http, &agent, "/api/v1/status/buildinfo").await;
    assert!(info["version"].as_str().is_some_and(|v| !v.is_empty()));
    // Enough scrapes for a rate over several points.
    let names = poll("scraped samples", 30, || async {
        let d = get_json(&http, &agent, "/api/v1/label/__name__/values").await;
        let names: Vec<String> = serde_json::from_value(d).ok()?;
        let n = raw_samples(&http, &agent, now_s()).await.len();
        (n >= 16).then_some(names)
    })
    .await;
    for want in ["e2e_requests_total", "e2e_temperature", "up"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let series = grafana_post(
        &http,
        &agent,
        "/api/v1/series",
        &[
            ("match[]", "e2e_temperature".into()),
            ("start", format!("{:.0}", t0 - 3600.0)),
            ("end", format!("{:.0}", now_s() + 1.0)),
        ],
    )
    .await;
    assert_eq!(series[0]["room"], "lab");
    assert_eq!(series[0]["job"], "app");
    let meta = get_json(&http, &agent, "/api/v1/metadata?metric=e2e_temperature").await;
    assert_eq!(meta["e2e_temperature"][0]["type"], "gauge");

    // A dashboard panel: query_range over the last minute, step 1s, compared point by point
    // with the raw samples (each step shows the newest sample at or before it).
    let end = now_s().floor();
    let start_t = end - 60.0;
    let raw = raw_samples(&http, &agent, end).await;
    let gauge: BTreeMap<i64, f64> = raw
        .iter()
        .filter(|(l, _, _)| l.contains("e2e_temperature"))
        .map(|(_, t, v)| (*t, f64::from_bits(*v)))
        .collect();
    let panel = grafana_post(
        &http,
        &agent,
        "/api/v1/query_range",
        &[
            ("query", "e2e_temperature{room=\"lab\"}".into()),
            ("start", format!("{start_t}")),
            ("end", format!("{end}")),
            ("step", "1".into()),
        ],
    )
    .await;
    let points = panel["result"][0]["values"].as_array().unwrap();
    assert!(points.len() >= 5, "{panel}");
    for p in points {
        let t = (p[0].as_f64().unwrap() * 1000.0) as i64;
        let want = gauge.range(..=t).next_back().map(|(_, v)| *v).unwrap();
        let got: f64 = p[1].as_str().unwrap().parse().unwrap();
        assert_eq!(got, want, "panel point at {t}");
    }
    let rate = grafana_post(
        &http,
        &agent,
        "/api/v1/query_range",
        &[
            (
                "query",
                "sum by (path) (rate(e2e_requests_total[5s]))".into(),
            ),
            ("start", format!("{start_t}")),
            ("end", format!("{end}")),
            ("step", "2".into()),
        ],
    )
    .await;
    let rates = rate["result"][0]["values"].as_array().unwrap();
    assert!(!rates.is_empty(), "{rate}");
    assert!(
        rates
            .iter()
            .all(|p| p[1].as_str().unwrap().parse::<f64>().unwrap() > 0.0),
        "a counter that only grows has a positive rate: {rate}"
    );

    // SIGHUP with a changed config: the new static label appears on new samples.
    std::fs::write(&cfg, config(&target, Some("two"))).unwrap();
    agent.signal("-HUP");
    poll("relabeled series after SIGHUP", 30, || async {
        let d = get_json(
            &http,
            &agent,
            "/api/v1/query?query=e2e_temperature%7Bstage%3D%22two%22%7D",
        )
        .await;
        (!d["result"].as_array()?.is_empty()).then_some(())
    })
    .await;

    let at = now_s();
    let before = raw_samples(&http, &agent, at).await;
    assert!(raw.is_subset(&before));
    assert!(
        before
            .iter()
            .any(|(l, _, _)| l.contains("\"stage\":\"two\"")),
        "samples scraped under the reloaded config"
    );
    agent.stop();
    drop(agent);

    // Restart on the same directory: the API answers with every sample seen before.
    let mut agent = start(&cfg, &data);
    poll("/-/ready after restart", 20, || async {
        let r = http
            .get(format!("{}/-/ready", agent.api))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    let after = raw_samples(&http, &agent, at).await;
    let lost: Vec<_> = before.difference(&after).collect();
    assert!(lost.is_empty(), "lost across restart: {lost:?}");
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_deletion_survives_sigkill_and_snapshots_restore() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, data) = (tmp.path().join("tidemark.yml"), tmp.path().join("data"));
    let target = serve_changing_target().await;
    std::fs::write(&cfg, config(&target, None)).unwrap();
    let args = |cfg: &Path, data: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "--enable-admin-api".into(),
            "--config".into(),
            cfg.into(),
            "--data-dir".into(),
            data.into(),
        ]
    };
    let a = args(&cfg, &data);
    let agent = Agent::start(&a.iter().map(|s| s.as_os_str()).collect::<Vec<_>>());
    poll("a few scrapes", 30, || async {
        (raw_samples(&http, &agent, now_s()).await.len() >= 8).then_some(())
    })
    .await;

    // Delete the gauge; the counter stays.
    let r = http
        .post(format!(
            "{}/api/v1/admin/tsdb/delete_series?match[]=e2e_temperature",
            agent.api
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let at = now_s();
    let kept = raw_samples(&http, &agent, at).await;
    assert!(!kept.is_empty());
    assert!(
        kept.iter().all(|(l, _, _)| !l.contains("e2e_temperature")),
        "deleted series still answered"
    );

    // `inspect` beside the running agent reports the deletion.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["inspect", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["tombstonedSeries"], 1, "{v}");

    // A snapshot through the admin API, named as Prometheus names it.
    let r = http
        .post(format!("{}/api/v1/admin/tsdb/snapshot", agent.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let name = v["data"]["name"].as_str().unwrap().to_string();
    let snap = data.join("snapshots").join(&name);
    assert!(snap.is_dir(), "{}", snap.display());

    // SIGKILL: no clean shutdown; the deletion and every kept sample survive.
    agent.signal("-KILL");
    drop(agent);
    let agent = Agent::start(&a.iter().map(|s| s.as_os_str()).collect::<Vec<_>>());
    let after = raw_samples(&http, &agent, at).await;
    assert!(
        after.iter().all(|(l, _, _)| !l.contains("e2e_temperature")),
        "a deletion came back after SIGKILL"
    );
    let lost: Vec<_> = kept.difference(&after).collect();
    assert!(lost.is_empty(), "lost after SIGKILL: {lost:?}");
    drop(agent);

    // The snapshot restores: an agent started on it answers the kept samples, not the deleted.
    let sdata = tmp.path().join("restored");
    std::fs::rename(&snap, &sdata).unwrap();
    std::fs::write(&cfg, "scrape_configs: []\n").unwrap();
    let b = args(&cfg, &sdata);
    let agent = Agent::start(&b.iter().map(|s| s.as_os_str()).collect::<Vec<_>>());
    let restored = raw_samples(&http, &agent, at).await;
    assert!(
        restored
            .iter()
            .all(|(l, _, _)| !l.contains("e2e_temperature"))
    );
    let missing: Vec<_> = kept.difference(&restored).collect();
    assert!(missing.is_empty(), "snapshot lacks: {missing:?}");
}
