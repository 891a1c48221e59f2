//! The Grafana dashboards in dashboards/: well-formed for Grafana (schema version, the
//! `DS_PROMETHEUS` data source variable, a layout without overlaps), and every query in them
//! answered by a running tidemark the way Grafana asks it.
//!
//! The live test starts the agent with a config that scrapes itself and Debian's
//! prometheus-node-exporter, resolves each dashboard's variables through the label API calls
//! Grafana makes for `label_values(...)`, then POSTs every panel query to
//! `/api/v1/query_range` as a form, as Grafana's Prometheus data source does. A query over
//! metrics that exist must return data; a query over a metric tidemark does not export yet
//! must at least run, and that metric must be listed in [`PROPOSED`], so a misspelt name
//! cannot pass as "not exported yet".

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use granit_parser::{Event, Parser};
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

mod common;
use common::Agent;
#[path = "common/exporter.rs"]
mod exporter;
use exporter::{NodeExporter, poll};

/// Self-metrics tidemark-self.json reads that tidemark does not export yet: the names this
/// dashboard proposes for them. Keep it short: a panel over a proposed metric stays empty.
const PROPOSED: &[&str] = &[];

/// Series every scrape writes besides the target's own.
const SCRAPE_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// What the Grafana variables `$__rate_interval` and friends stand for in the test: a range
/// query over 5 minutes with a 15s interval.
const BUILTINS: [(&str, &str); 6] = [
    ("__rate_interval", "1m"),
    ("__interval", "15s"),
    ("__interval_ms", "15000"),
    ("__range", "5m"),
    ("__range_s", "300"),
    ("__range_ms", "300000"),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every dashboard file with its JSON, by file name.
fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().to_string(), v)
        })
        .collect()
}

/// Every panel, those inside collapsed rows included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

fn variables(d: &Value) -> &Vec<Value> {
    d["templating"]["list"].as_array().unwrap()
}

/// A query variable's query: a string in older dashboards, `{query: ...}` in newer ones.
fn variable_query(v: &Value) -> &str {
    v["query"]
        .as_str()
        .or_else(|| v["query"]["query"].as_str())
        .unwrap_or_else(|| panic!("variable {} has no query", v["name"]))
}

/// `expr` with Grafana's variables replaced: `$name`, `${name}`, `${name:format}`,
/// `[[name]]`. An unknown variable fails the test.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let re = regex::Regex::new(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]").unwrap();
    re.replace_all(expr, |c: &regex::Captures| {
        let name = c
            .get(1)
            .or_else(|| c.get(2))
            .or_else(|| c.get(3))
            .unwrap()
            .as_str();
        BUILTINS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
            .or_else(|| vars.get(name).cloned())
            .unwrap_or_else(|| panic!("unknown variable ${name} in {expr}"))
    })
    .into_owned()
}

/// The metric names a PromQL expression selects.
fn metric_names(expr: &Expr) -> BTreeSet<String> {
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = ();
        fn pre_visit(&mut self, e: &Expr) -> Result<bool, ()> {
            let vs = match e {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            let by_matcher = vs
                .matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__")
                .map(|m| m.value.clone());
            self.0.extend(vs.name.clone().or(by_matcher));
            Ok(true)
        }
    }
    let mut n = Names(BTreeSet::new());
    let _ = walk_expr(&mut n, expr);
    n.0
}

/// `label_values(selector, label)` or `label_values(label)`: the selector, if any, and the
/// label.
fn parse_label_values(q: &str) -> (Option<String>, String) {
    let inner = q
        .trim()
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unsupported variable query {q:?}"));
    match inner.rsplit_once(',') {
        Some((sel, label)) => (Some(sel.trim().to_string()), label.trim().to_string()),
        None => (None, inner.trim().to_string()),
    }
}

struct Query<'a> {
    dashboard: &'a str,
    panel: String,
    ref_id: String,
    expr: String,
    instant: bool,
}

/// Every panel query of a dashboard.
fn queries<'a>(file: &'a str, d: &'a Value) -> Vec<Query<'a>> {
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                dashboard: file,
                panel: p["title"].as_str().unwrap_or("").to_string(),
                ref_id: t["refId"].as_str().unwrap_or("").to_string(),
                expr: t["expr"].as_str().unwrap_or("").to_string(),
                instant: t["instant"] == true && t["range"] != true,
            });
        }
    }
    out
}

// ---- Without a server ------------------------------------------------------------------------

#[test]
fn dashboards_are_well_formed_for_grafana() {
    let all = dashboards();
    let files: Vec<&str> = all.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(files, ["node-exporter-host.json", "tidemark-self.json"]);
    let ds = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let mut uids = BTreeSet::new();
    for (file, d) in &all {
        assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "{file}");
        assert!(!d["title"].as_str().unwrap().is_empty(), "{file}");
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_string()),
            "{file}"
        );

        let vars = variables(d);
        let ds_var = vars.iter().find(|v| v["name"] == "DS_PROMETHEUS");
        let ds_var = ds_var.unwrap_or_else(|| panic!("{file}: no DS_PROMETHEUS variable"));
        assert_eq!(ds_var["type"], "datasource", "{file}");
        assert_eq!(ds_var["query"], "prometheus", "{file}");
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(v["datasource"], ds, "{file}: variable {}", v["name"]);
            parse_label_values(variable_query(v));
        }

        let mut ids = BTreeSet::new();
        let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
        for p in panels(d) {
            let title = p["title"].as_str().unwrap_or("").to_string();
            assert!(ids.insert(p["id"].as_u64().unwrap()), "{file}: {title}: id");
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap());
            assert!(w > 0 && h > 0 && x + w <= 24, "{file}: {title}: {g}");
            for (other, [ox, oy, ow, oh]) in &boxes {
                let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
                assert!(apart, "{file}: {title} overlaps {other}");
            }
            boxes.push((title.clone(), [x, y, w, h]));
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(p["datasource"], ds, "{file}: {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title}");
            let mut ref_ids = BTreeSet::new();
            for t in targets {
                assert_eq!(t["datasource"], ds, "{file}: {title}");
                assert!(
                    ref_ids.insert(t["refId"].as_str().unwrap()),
                    "{file}: {title}"
                );
            }
        }

        // Every query parses once Grafana has filled in its variables.
        let vars: BTreeMap<String, String> = variables(d)
            .iter()
            .map(|v| (v["name"].as_str().unwrap().to_string(), "x".to_string()))
            .collect();
        for q in queries(file, d) {
            let expr = substitute(&q.expr, &vars);
            if let Err(e) = parser::parse(&expr) {
                panic!("{file}: {} {}: {expr}: {e}", q.panel, q.ref_id);
            }
        }
    }
}

/// A YAML document as JSON, every scalar a string: enough to read provisioning files.
fn yaml_to_json(text: &str) -> Value {
    enum Frame {
        Map(serde_json::Map<String, Value>, Option<String>),
        Seq(Vec<Value>),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut root = Value::Null;
    let mut put = |stack: &mut Vec<Frame>, v: Value| match stack.last_mut() {
        None => root = v,
        Some(Frame::Seq(items)) => items.push(v),
        Some(Frame::Map(m, key)) => match key.take() {
            None => *key = Some(v.as_str().unwrap_or_default().to_string()),
            Some(k) => {
                m.insert(k, v);
            }
        },
    };
    for ev in Parser::new_from_str(text) {
        match ev.unwrap().0 {
            Event::Scalar(s, ..) => put(&mut stack, Value::String(s.to_string())),
            Event::MappingStart(..) => stack.push(Frame::Map(serde_json::Map::new(), None)),
            Event::SequenceStart(..) => stack.push(Frame::Seq(Vec::new())),
            Event::MappingEnd | Event::SequenceEnd => {
                let v = match stack.pop() {
                    Some(Frame::Map(m, _)) => Value::Object(m),
                    Some(Frame::Seq(items)) => Value::Array(items),
                    None => panic!("unbalanced YAML"),
                };
                put(&mut stack, v);
            }
            _ => {}
        }
    }
    root
}

#[test]
fn provisioning_points_grafana_at_tidemark() {
    let read = |f: &str| {
        yaml_to_json(
            &std::fs::read_to_string(repo().join("dashboards/provisioning").join(f)).unwrap(),
        )
    };
    let ds = read("datasources/tidemark.yml");
    assert_eq!(ds["apiVersion"], "1");
    let [d] = ds["datasources"].as_array().unwrap().as_slice() else {
        panic!("{ds}");
    };
    assert_eq!(d["type"], "prometheus");
    assert_eq!(d["url"], "http://127.0.0.1:9595");
    assert_eq!(d["jsonData"]["timeInterval"], "15s");

    let dash = read("dashboards/tidemark.yml");
    let [p] = dash["providers"].as_array().unwrap().as_slice() else {
        panic!("{dash}");
    };
    assert_eq!(p["type"], "file");
    assert!(
        p["options"]["path"].as_str().unwrap().starts_with('/'),
        "{p}"
    );
}

// ---- Against a running tidemark ----------------------------------------------------------------

fn config(jobs: &[(&str, &str)]) -> String {
    let mut s =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for (job, addr) in jobs {
        s.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [\"{addr}\"]\n"
        ));
    }
    s
}

/// The sample names of an exposition body.
fn exposed_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or("").to_string())
        .collect()
}

/// Talks to the agent as Grafana's Prometheus data source does.
struct Grafana {
    http: reqwest::Client,
    api: String,
    start: i64,
    end: i64,
    step: i64,
}

impl Grafana {
    /// GETs `path` with query parameters; the decoded body, or why not.
    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let qs = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let r = self
            .http
            .get(format!("{}{path}?{qs}", self.api))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        decode(r).await
    }

    /// POSTs a form, as Grafana sends queries.
    async fn post(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        decode(r).await
    }

    fn range(&self) -> [(&'static str, String); 2] {
        [
            ("start", self.start.to_string()),
            ("end", self.end.to_string()),
        ]
    }

    /// The values of `label_values(selector, label)`, by both calls Grafana may make for it
    /// (which one depends on the Prometheus version it detects); they must agree.
    async fn label_values(&self, selector: Option<&str>, label: &str) -> Vec<String> {
        let [s, e] = self.range();
        let mut params = vec![(s.0, s.1.as_str()), (e.0, e.1.as_str())];
        if let Some(sel) = selector {
            params.push(("match[]", sel));
        }
        let path = format!("/api/v1/label/{label}/values");
        let v = self.get(&path, &params).await.unwrap();
        let mut values: Vec<String> = v["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {v}"))
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        values.sort();
        if let Some(sel) = selector {
            let v = self.get("/api/v1/series", &params).await.unwrap();
            let from_series: BTreeSet<String> = v["data"]
                .as_array()
                .unwrap_or_else(|| panic!("series {sel}: {v}"))
                .iter()
                .filter_map(|m| m[label].as_str().map(String::from))
                .collect();
            assert_eq!(
                from_series.into_iter().collect::<Vec<_>>(),
                values,
                "label_values({sel}, {label}): /series and /label/{label}/values disagree"
            );
        }
        values
    }

    /// Runs a panel query; its result, or why it failed.
    async fn query(&self, expr: &str, instant: bool) -> Result<Value, String> {
        let (start, end, step) = (
            self.start.to_string(),
            self.end.to_string(),
            self.step.to_string(),
        );
        let v = if instant {
            self.post("/api/v1/query", &[("query", expr), ("time", &end)])
                .await?
        } else {
            self.post(
                "/api/v1/query_range",
                &[
                    ("query", expr),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                ],
            )
            .await?
        };
        let want = if instant { "vector" } else { "matrix" };
        if v["data"]["resultType"] != want {
            return Err(format!("resultType is not {want}: {v}"));
        }
        Ok(v["data"]["result"].clone())
    }
}

/// A 200 with `status: success`, or the reason it is not.
async fn decode(r: reqwest::Response) -> Result<Value, String> {
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|_| format!("{status}: {}", String::from_utf8_lossy(&body)))?;
    if status != 200 || v["status"] != "success" {
        return Err(format!("{status}: {v}"));
    }
    Ok(v)
}

fn has_data(result: &Value) -> bool {
    result.as_array().is_some_and(|series| {
        series
            .iter()
            .any(|s| s["values"].as_array().is_some_and(|v| !v.is_empty()) || s["value"].is_array())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_runs_against_tidemark() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let tmp = tempfile::tempdir().unwrap();

    let ne = NodeExporter::start();
    let ne_addr = ne.addr.clone();
    let ne_url = format!("http://{ne_addr}/metrics");
    let ne_body = poll("node_exporter", Duration::from_secs(20), async || {
        let r = http.get(&ne_url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
    })
    .await;

    // The agent picks its port, so the self-scrape job is added by a reload once it is known.
    let cfg = tmp.path().join("tidemark.yml");
    // The remote-write panels: the agent forwards to a backend that accepts everything, and
    // its receiver is on (a start-time setting; the remote comes with the reload below).
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/api/v1/write",
            axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
        let _ = axum::serve(backend, app).await;
    });
    let receiver = "web:\n  enable_remote_write_receiver: true\n";
    std::fs::write(&cfg, format!("{}{receiver}", config(&[("node", &ne_addr)]))).unwrap();
    let data = tmp.path().join("data");
    let mut agent = Agent::start(&[
        "--enable-lifecycle".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let self_addr = agent.api.trim_start_matches("http://").to_string();
    std::fs::write(
        &cfg,
        format!(
            "{}{receiver}remote_write:\n  - url: http://{backend_addr}/api/v1/write\n    name: backend\n    queue_config:\n      batch_send_deadline: 1s\n",
            config(&[("node", &ne_addr), ("tidemark", &self_addr)])
        ),
    )
    .unwrap();
    let r = http
        .post(format!("{}/-/reload", agent.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "reload");

    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let mut g = Grafana {
        http: http.clone(),
        api: agent.api.clone(),
        start: 0,
        end: 0,
        step: 5,
    };
    // Enough history for rate() over every 5s step of the last few: a dozen scrapes of each.
    poll(
        "a dozen scrapes of both jobs",
        Duration::from_secs(60),
        async || {
            g.end = now();
            match g
                .query(
                    "min(count_over_time(up[1m])) >= 12 and count(up) == 2",
                    true,
                )
                .await
            {
                Ok(r) => has_data(&r).then_some(()),
                Err(e) if e.starts_with("404") || e.starts_with("405") => {
                    panic!("tidemark has no query API yet: {e}")
                }
                Err(_) => None,
            }
        },
    )
    .await;

    let tidemark_body = http
        .get(format!("{}/metrics", agent.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // What each dashboard's queries may read: its exporter's series and the scrape series.
    let exported_by = |body: &str| {
        let mut names = exposed_names(body);
        names.extend(SCRAPE_SERIES.map(String::from));
        names
    };
    let (self_names, node_names) = (exported_by(&tidemark_body), exported_by(&ne_body));

    // Grafana aligns the range to the step.
    let t = now();
    g.end = t - t % g.step;
    g.start = g.end - 300;

    let mut failures = Vec::new();
    let mut ran = 0;
    for (file, d) in &dashboards() {
        let (want, exposed): (BTreeMap<&str, &str>, _) = match d["uid"].as_str().unwrap() {
            "tidemark-self" => (
                [("job", "tidemark"), ("instance", self_addr.as_str())].into(),
                &self_names,
            ),
            "tidemark-node-exporter-host" => (
                [("job", "node"), ("instance", ne_addr.as_str())].into(),
                &node_names,
            ),
            uid => panic!("{file}: no expectations for dashboard {uid}"),
        };
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for v in variables(d) {
            let name = v["name"].as_str().unwrap().to_string();
            match v["type"].as_str().unwrap() {
                "datasource" => continue,
                "query" => {}
                other => panic!("{file}: variable {name} of type {other} is not handled here"),
            }
            let q = substitute(variable_query(v), &vars);
            let (selector, label) = parse_label_values(&q);
            let values = g.label_values(selector.as_deref(), &label).await;
            assert_eq!(
                values,
                [want[name.as_str()]],
                "{file}: variable {name} = {q}"
            );
            vars.insert(name, values[0].clone());
        }

        for q in queries(file, d) {
            ran += 1;
            let expr = substitute(&q.expr, &vars);
            let at = format!("{}: {} {}: {expr}", q.dashboard, q.panel, q.ref_id);
            let names = metric_names(&parser::parse(&expr).unwrap());
            let unknown: Vec<&String> = names
                .iter()
                .filter(|n| !exposed.contains(*n) && !PROPOSED.contains(&n.as_str()))
                .collect();
            if !unknown.is_empty() {
                failures.push(format!("{at}: neither exported nor proposed: {unknown:?}"));
            }
            match g.query(&expr, q.instant).await {
                Err(e) => failures.push(format!("{at}: {e}")),
                Ok(r) if names.iter().all(|n| exposed.contains(n)) && !has_data(&r) => {
                    failures.push(format!("{at}: no data, though every metric is exported"))
                }
                Ok(_) => {}
            }
        }
    }
    assert!(ran > 50, "only {ran} queries");
    assert!(
        failures.is_empty(),
        "{} of {ran} queries failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // A dashboard's worth of queries leaves the agent able to shut down cleanly.
    agent.stop();
}
