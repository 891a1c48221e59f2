//! `tidemark query` and `tidemark series` through the real binary, against a data directory
//! made by `tidemark import`, and against a running agent's API over the same directory.
//! Expected answers are computed here from the generated samples, not taken from the engine.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use tidemark::model::format_rfc3339;

mod common;
use common::Agent;

const LOOKBACK: i64 = 300_000;

fn tidemark(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = tidemark(args);
    assert!(
        o.status.success(),
        "tidemark {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Fails and returns stderr.
fn fails(args: &[&str]) -> String {
    let o = tidemark(args);
    assert!(!o.status.success(), "tidemark {args:?} succeeded");
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr).unwrap()
}

/// One series of the test file: its text form, Prometheus's notation, labels and samples.
struct TestSeries {
    om: String,
    shown: String,
    labels: BTreeMap<String, String>,
    samples: Vec<(i64, f64)>,
}

/// Prometheus's text for a sample value.
fn value_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Counters with jittered 15 s scrapes (one with a 12-minute gap, one with a quote in a
/// label), and a 30 s gauge with negative values and a NaN, starting later.
fn data() -> Vec<TestSeries> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::new();
    let mut add = |name: &str, pairs: &[(&str, &str)], samples: Vec<(i64, f64)>| {
        let om_labels: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\"")))
            .collect();
        let mut sorted = pairs.to_vec();
        sorted.sort();
        let shown: Vec<String> = sorted
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('"', "\\\"")))
            .collect();
        let mut labels: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert("__name__".into(), name.into());
        out.push(TestSeries {
            om: format!("{name}{{{}}}", om_labels.join(",")),
            shown: format!("{name}{{{}}}", shown.join(", ")),
            labels,
            samples,
        });
    };
    let t0 = 1_700_000_000_000i64;
    for (path, code, gap) in [
        ("/", "200", false),
        ("/api", "200", false),
        ("/a\"b", "200", false),
        ("/api", "500", true),
    ] {
        let mut t = t0 + (rnd() % 15_000) as i64;
        let mut v = (rnd() % 1000) as f64;
        let mut s = Vec::new();
        for i in 0..700 {
            t += 15_000 + (rnd() % 1500) as i64 - 750;
            if gap && i == 300 {
                t += 720_000;
            }
            v += (rnd() % 40) as f64;
            s.push((t, v));
        }
        add("http_requests_total", &[("path", path), ("code", code)], s);
    }
    let mut t = t0 + 2 * 3_600_000 + 777;
    let mut s = Vec::new();
    for i in 0..300 {
        t += 30_000 + (rnd() % 400) as i64;
        let v = if i == 150 {
            f64::NAN
        } else {
            (rnd() % 50_000) as f64 / 1000.0 - 10.0
        };
        s.push((t, v));
    }
    add("temp", &[("room", "lab")], s);
    out
}

fn write_file(series: &[TestSeries], path: &Path) {
    let mut text = String::new();
    let mut family = "";
    for s in series {
        let name = s.labels["__name__"].as_str();
        if name != family {
            text.push_str(&format!("# TYPE {name} unknown\n"));
            family = name;
        }
        for &(t, v) in &s.samples {
            text.push_str(&format!(
                "{} {} {}.{:03}\n",
                s.om,
                value_text(v),
                t / 1000,
                t % 1000
            ));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(path, text).unwrap();
}

/// A data directory holding `data()`, imported from OpenMetrics.
fn imported() -> (tempfile::TempDir, Vec<TestSeries>) {
    let dir = tempfile::tempdir().unwrap();
    let series = data();
    let file = dir.path().join("in.om");
    write_file(&series, &file);
    let data_dir = dir.path().join("data");
    ok(&[
        "import",
        "--data-dir",
        data_dir.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    (dir, series)
}

/// The sample an instant selector sees at `t`: the newest in (t - 5m, t].
fn at(s: &TestSeries, t: i64) -> Option<f64> {
    s.samples
        .iter()
        .rev()
        .find(|(ts, _)| *ts <= t && *ts > t - LOOKBACK)
        .map(|&(_, v)| v)
}

fn data_dir(dir: &tempfile::TempDir) -> String {
    dir.path().join("data").to_str().unwrap().to_string()
}

/// `labels value` lines into a map.
fn parse_instant_table(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .map(|l| {
            let (labels, value) = l.rsplit_once(' ').unwrap();
            (labels.trim_end().to_string(), value.to_string())
        })
        .collect()
}

/// Label lines, each followed by indented `time value` rows.
fn parse_range_table(out: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut m: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for l in out.lines() {
        if let Some(row) = l.strip_prefix("  ") {
            let (t, v) = row.split_once("  ").unwrap();
            m.get_mut(&current)
                .unwrap()
                .push((t.to_string(), v.to_string()));
        } else {
            current = l.to_string();
            assert!(m.insert(current.clone(), Vec::new()).is_none(), "{l} twice");
        }
    }
    m
}

fn json_labels(v: &serde_json::Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// Milliseconds from the API's seconds.
fn ms(v: &serde_json::Value) -> i64 {
    (v.as_f64().unwrap() * 1000.0).round() as i64
}

#[test]
fn instant_queries_as_table_and_json() {
    let (dir, series) = imported();
    let d = data_dir(&dir);
    // Inside the gap of the 500 series: it has no sample in the last five minutes.
    let gap_series = &series[3];
    let gap_end = gap_series.samples[300].0;
    let t = gap_end - 60_000 - 321;
    assert!(at(gap_series, t).is_none());
    let time = format!("{}.{:03}", t / 1000, t % 1000);

    let out = ok(&[
        "query",
        "--data-dir",
        &d,
        "--time",
        &time,
        "http_requests_total",
    ]);
    let got = parse_instant_table(&out);
    let want: BTreeMap<String, String> = series
        .iter()
        .filter(|s| s.labels["__name__"] == "http_requests_total")
        .filter_map(|s| at(s, t).map(|v| (s.shown.clone(), value_text(v))))
        .collect();
    assert_eq!(want.len(), 3);
    assert_eq!(got, want);

    let out = ok(&[
        "query",
        "--data-dir",
        &d,
        "--time",
        &time,
        "--format",
        "json",
        "http_requests_total",
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["resultType"], "vector");
    let mut got = BTreeMap::new();
    for r in j["result"].as_array().unwrap() {
        assert_eq!(ms(&r["value"][0]), t, "stamped with the evaluation time");
        got.insert(
            json_labels(&r["metric"]),
            r["value"][1].as_str().unwrap().to_string(),
        );
    }
    let want: BTreeMap<_, _> = series
        .iter()
        .filter(|s| s.labels["__name__"] == "http_requests_total")
        .filter_map(|s| at(s, t).map(|v| (s.labels.clone(), value_text(v))))
        .collect();
    assert_eq!(got, want);

    // An aggregation, summed here from the raw samples.
    let out = ok(&[
        "query",
        "--data-dir",
        &d,
        "--time",
        &time,
        "sum by (code) (http_requests_total)",
    ]);
    let sum200: f64 = series[..3].iter().map(|s| at(s, t).unwrap()).sum();
    assert_eq!(
        parse_instant_table(&out),
        BTreeMap::from([("{code=\"200\"}".to_string(), value_text(sum200))])
    );

    // Grafana's "Save & test": a scalar at time 4; `--json` is `--format json`.
    assert_eq!(
        ok(&["query", "--data-dir", &d, "--time", "4", "1+1"]),
        "2\n"
    );
    let j: serde_json::Value = serde_json::from_str(&ok(&[
        "query",
        "--data-dir",
        &d,
        "--time",
        "4",
        "--json",
        "1+1",
    ]))
    .unwrap();
    assert_eq!(
        j,
        serde_json::json!({"resultType": "scalar", "result": [4, "2"]})
    );

    // A NaN sample is data, printed as Prometheus prints it.
    let temp = &series[4];
    let (nan_t, _) = temp.samples[150];
    let nan_time = format!("{}.{:03}", nan_t / 1000, nan_t % 1000);
    let out = ok(&["query", "--data-dir", &d, "--time", &nan_time, "temp"]);
    assert_eq!(parse_instant_table(&out)["temp{room=\"lab\"}"], "NaN");
}

#[test]
fn range_queries_as_table_and_json() {
    let (dir, series) = imported();
    let d = data_dir(&dir);
    // Across the 500 series' gap, ending after the gauge has started.
    let start = series[3].samples[250].0 + 1_234;
    let step = 37_000;
    let end = series[4].samples[20].0;
    let (s_arg, e_arg) = (
        format!("{}.{:03}", start / 1000, start % 1000),
        format!("{}.{:03}", end / 1000, end % 1000),
    );
    let steps: Vec<i64> = (0..)
        .map(|i| start + i * step)
        .take_while(|&t| t <= end)
        .collect();
    let want: BTreeMap<BTreeMap<String, String>, Vec<(i64, String)>> = series
        .iter()
        .map(|s| {
            let points: Vec<(i64, String)> = steps
                .iter()
                .filter_map(|&t| at(s, t).map(|v| (t, value_text(v))))
                .collect();
            (s.labels.clone(), points)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    assert_eq!(want.len(), 5);
    let gap = &want[&series[3].labels];
    assert!(gap.len() < steps.len() - 10, "the gap leaves steps empty");

    let out = ok(&[
        "query",
        "--data-dir",
        &d,
        "--start",
        &s_arg,
        "--end",
        &e_arg,
        "--step",
        "37s",
        r#"{__name__=~"http_requests_total|temp"}"#,
    ]);
    let got = parse_range_table(&out);
    let want_table: BTreeMap<String, Vec<(String, String)>> = series
        .iter()
        .filter_map(|s| {
            want.get(&s.labels).map(|p| {
                let rows = p
                    .iter()
                    .map(|(t, v)| (format_rfc3339(*t), v.clone()))
                    .collect();
                (s.shown.clone(), rows)
            })
        })
        .collect();
    assert_eq!(got, want_table);

    let out = ok(&[
        "query",
        "--data-dir",
        &d,
        "--start",
        &s_arg,
        "--end",
        &e_arg,
        "--step",
        "37s",
        "--format",
        "json",
        r#"{__name__=~"http_requests_total|temp"}"#,
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["resultType"], "matrix");
    let got: BTreeMap<_, _> = j["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let points: Vec<(i64, String)> = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (ms(&p[0]), p[1].as_str().unwrap().to_string()))
                .collect();
            (json_labels(&r["metric"]), points)
        })
        .collect();
    assert_eq!(got, want);

    // An instant query of a range selector gives the raw samples with their own timestamps.
    let t = series[4].samples[40].0 + 5;
    let time = format!("{}.{:03}", t / 1000, t % 1000);
    let out = ok(&[
        "query",
        "--data-dir",
        &d,
        "--time",
        &time,
        "--json",
        "temp[2m]",
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["resultType"], "matrix");
    let got: Vec<i64> = j["result"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ms(&p[0]))
        .collect();
    let want: Vec<i64> = series[4]
        .samples
        .iter()
        .map(|s| s.0)
        .filter(|&ts| ts <= t && ts > t - 120_000)
        .collect();
    assert!(want.len() >= 3);
    assert_eq!(got, want);
}

#[test]
fn series_listing_and_errors() {
    let (dir, series) = imported();
    let d = data_dir(&dir);
    let out = ok(&[
        "series",
        "--data-dir",
        &d,
        r#"http_requests_total{code="200"}"#,
        "temp",
    ]);
    let mut want: Vec<&str> = series
        .iter()
        .filter(|s| s.labels.get("code").is_none_or(|c| c == "200"))
        .map(|s| s.shown.as_str())
        .collect();
    want.sort();
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 4);

    // The gauge starts two hours in: a window before it leaves only the counters.
    let end = series[4].samples[0].0 - 1;
    let out = ok(&[
        "series",
        "--data-dir",
        &d,
        "--end",
        &format!("{}.{:03}", end / 1000, end % 1000),
        "--format",
        "json",
        r#"{__name__=~".+"}"#,
    ]);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<BTreeMap<String, String>> =
        j.as_array().unwrap().iter().map(json_labels).collect();
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|l| l["__name__"] == "http_requests_total"));

    let err = fails(&["query", "--data-dir", &d, "sum(rate(x[5m])"]);
    assert!(err.contains("unclosed left parenthesis"), "{err}");
    let err = fails(&["query", "--data-dir", &d, "--json", "rate(x[5m]"]);
    assert!(err.contains("invalid expression"), "{err}");
    let err = fails(&["series", "--data-dir", &d, "rate(x[5m])"]);
    assert!(err.contains("not a series selector"), "{err}");
    let err = fails(&[
        "query",
        "--data-dir",
        &d,
        "--start",
        "10",
        "--end",
        "5",
        "x",
    ]);
    assert!(err.contains("--end must not be before --start"), "{err}");
    let missing = dir.path().join("nothing-here");
    let err = fails(&["query", "--data-dir", missing.to_str().unwrap(), "x"]);
    assert!(err.contains("nothing-here"), "{err}");
}

/// An agent serving the imported data directory (no scrapes; retention off, since the
/// imported samples are from 2023), and that directory.
fn agent_on(dir: &tempfile::TempDir) -> (String, Agent) {
    let d = data_dir(dir);
    let config = dir.path().join("tidemark.yml");
    std::fs::write(&config, "scrape_configs: []\n").unwrap();
    let agent = Agent::start(&[
        OsStr::new("--config"),
        config.as_os_str(),
        OsStr::new("--data-dir"),
        OsStr::new(&d),
        OsStr::new("--retention-time"),
        OsStr::new("0"),
    ]);
    (d, agent)
}

#[test]
fn url_answers_match_the_data_directory() {
    let (dir, series) = imported();
    let (d, agent) = agent_on(&dir);
    let url = agent.api.as_str();

    let selectors = [r#"http_requests_total{path=~"/a.*"}"#, "temp"];
    let mut args = vec!["series", "--url", url];
    args.extend(selectors);
    let remote = ok(&args);
    args[1] = "--data-dir";
    args[2] = &d;
    assert_eq!(remote, ok(&args));
    assert_eq!(remote.lines().count(), 4, "{remote}");

    let t = series[0].samples[500].0 + 2_000;
    let time = format!("{}.{:03}", t / 1000, t % 1000);
    let local = ok(&[
        "query",
        "--data-dir",
        &d,
        "--time",
        &time,
        "http_requests_total",
    ]);
    let remote = ok(&[
        "query",
        "--url",
        url,
        "--time",
        &time,
        "http_requests_total",
    ]);
    assert_eq!(local.lines().count(), 4);
    assert_eq!(remote, local);

    let start = series[4].samples[3].0;
    let range = [
        "--start".to_string(),
        format!("{}.{:03}", start / 1000, start % 1000),
        "--end".to_string(),
        format!("{}", start / 1000 + 3600),
        "--step".to_string(),
        "1m".to_string(),
        "--json".to_string(),
        "sum by (code) (http_requests_total)".to_string(),
    ];
    let run = |src: &[&str]| -> serde_json::Value {
        let mut a: Vec<&str> = vec!["query"];
        a.extend(src);
        a.extend(range.iter().map(String::as_str));
        serde_json::from_str(&ok(&a)).unwrap()
    };
    let local = run(&["--data-dir", &d]);
    assert_eq!(local["result"].as_array().unwrap().len(), 2);
    assert_eq!(run(&["--url", url]), local);
    let time_args = ["--time", &time, "--json", "temp[3m]"];
    let local = ok(&[&["query", "--data-dir", &d][..], &time_args].concat());
    let remote = ok(&[&["query", "--url", url][..], &time_args].concat());
    assert!(
        local.starts_with(r#"{"resultType":"matrix","result":[{"metric":{"#),
        "{local}"
    );
    assert_eq!(remote, local, "the same bytes from either source");
    // Prometheus's number forms at the edges: exponents below 1e-6 and from 1e21 on.
    let edges = "vector(2.5e-7) or label_replace(vector(-3e21), \"a\", \"b\", \"\", \"\")";
    let local = ok(&["query", "--data-dir", &d, "--time", "7.5", "--json", edges]);
    let remote = ok(&["query", "--url", url, "--time", "7.5", "--json", edges]);
    assert_eq!(remote, local);
    // The API's timestamp form (`7.5`): the CLI's JSON is the API's bytes.
    assert!(local.contains(r#"[7.5,"2.5e-07"]"#), "{local}");
    assert!(local.contains(r#"[7.5,"-3e+21"]"#), "{local}");

    let err = fails(&["query", "--url", url, "sum(rate(x[5m])"]);
    assert!(err.contains("bad_data"), "{err}");
    assert!(err.contains("unclosed left parenthesis"), "{err}");
    let err = fails(&["query", "--url", "http://127.0.0.1:1", "up"]);
    assert!(err.contains("127.0.0.1:1"), "{err}");

    let mut agent = agent;
    agent.stop();
}

/// POSTs a form to the agent's API and returns the answer's body as it came.
fn api_post(base: &str, path: &str, form: &[(&str, &str)]) -> Vec<u8> {
    // reqwest is built without a default crypto provider; plain HTTP still needs one set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let resp = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path} {form:?}");
        resp.bytes().await.unwrap().to_vec()
    })
}

/// The `data` of a success answer without annotations, as the bytes the API wrote.
fn api_data(body: &[u8]) -> &[u8] {
    let head = br#"{"status":"success","data":"#;
    assert!(
        body.starts_with(head) && body.ends_with(b"}"),
        "{}",
        String::from_utf8_lossy(body)
    );
    &body[head.len()..body.len() - 1]
}

#[test]
fn json_output_is_the_apis_bytes() {
    let (dir, series) = imported();
    let (d, agent) = agent_on(&dir);
    let url = agent.api.as_str();
    let secs = |t: i64| format!("{}.{:03}", t / 1000, t % 1000);

    // Evaluation times on whole tenths of a second: the API writes `.5`, not `.500`.
    let t = series[4].samples[40].0 / 1000 * 1000 + 500;
    let time = secs(t);
    // Range queries: across the counters' gap with the gauge starting inside; and one that
    // ends before the gauge starts, so `temp`, selected, has no point in range while the
    // counters do (the engine leaves such a series out; a remote one without `values` is
    // covered by `url_answers_keep_series_without_values`).
    let (s1, e1) = (
        series[3].samples[250].0 / 1000 * 1000 + 1_250,
        series[4].samples[20].0,
    );
    let e2 = series[4].samples[0].0 / 1000 * 1000 - 500;
    let s2 = e2 - 3_600_000;
    let instant = [
        "http_requests_total",
        // Label values Prometheus's encoder escapes: `<`, `>`, `&`, U+2028.
        "label_replace(http_requests_total, \"note\", \"<a&b>\u{2028}é\", \"\", \"\")",
        "temp[3m]",
        "2.5e-7",
        "vector(2.5e-7) or label_replace(vector(-3e21), \"a\", \"b\", \"\", \"\")",
        "\"a<b\"",
        "nothing_here",
    ];
    let mut cases: Vec<(&str, Vec<(&str, String)>)> = instant
        .iter()
        .map(|q| {
            (
                "/api/v1/query",
                vec![("time", time.clone()), ("query", q.to_string())],
            )
        })
        .collect();
    for (start, end, step, q) in [
        (s1, e1, "37s", r#"{__name__=~"http_requests_total|temp"}"#),
        (s2, e2, "1m", r#"{__name__=~"http_requests_total|temp"}"#),
        (
            s1,
            e1,
            "1m",
            "sum by (code) (rate(http_requests_total[5m])) / 3",
        ),
        (s1, e1, "1m", "nothing_here"),
    ] {
        cases.push((
            "/api/v1/query_range",
            vec![
                ("start", secs(start)),
                ("end", secs(end)),
                ("step", step.to_string()),
                ("query", q.to_string()),
            ],
        ));
    }

    for (path, params) in &cases {
        let form: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = api_post(url, path, &form);
        let mut want = api_data(&body).to_vec();
        want.push(b'\n');
        let mut args: Vec<&str> = vec!["query", "--json"];
        for (k, v) in &form {
            if *k != "query" {
                args.push(flag(k));
                args.push(v);
            }
        }
        args.push(form.iter().find(|(k, _)| *k == "query").unwrap().1);
        for src in [["--data-dir", d.as_str()], ["--url", url]] {
            let mut a = args.clone();
            a.splice(1..1, src);
            let got = ok(&a);
            assert_eq!(
                got,
                String::from_utf8_lossy(&want),
                "tidemark {a:?} differs from {path} {form:?}"
            );
        }
    }

    let mut agent = agent;
    agent.stop();
}

/// `--start` for `start`, and so on.
fn flag(param: &str) -> &'static str {
    match param {
        "time" => "--time",
        "start" => "--start",
        "end" => "--end",
        "step" => "--step",
        other => panic!("no flag for {other}"),
    }
}

/// A one-route stand-in for a server's API: answers each connection with the next of
/// `bodies` (status 200, JSON) and hands over what was asked.
fn fake_api(bodies: Vec<String>) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for body in bodies {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then as much body as it announces.
            let head_end = loop {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed mid-request");
                req.extend_from_slice(&buf[..n]);
                if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&req[..head_end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while req.len() < head_end + len {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed mid-body");
                req.extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(answer.as_bytes()).unwrap();
        }
    });
    (format!("http://{addr}"), rx)
}

#[test]
fn url_answers_keep_series_without_values() {
    // What the API writes for a series without float points (Prometheus: one with only
    // native histograms): no `values`. The CLI must print it so, not as `"values":[]`.
    let data = r#"{"resultType":"matrix","result":[{"metric":{"__name__":"a"},"values":[[1700000000,"1"],[1700000060,"2"]]},{"metric":{"__name__":"b"}}]}"#;
    let answer = format!(r#"{{"status":"success","data":{data}}}"#);
    // A native histogram sample: passed through (as JSON, not byte for byte: it is read, not
    // understood), refused by the table.
    let hist_data = r#"{"resultType":"vector","result":[{"metric":{"__name__":"h"},"histogram":[1700000000,{"count":"2","sum":"3"}]}]}"#;
    let hist = format!(r#"{{"status":"success","data":{hist_data},"warnings":["w<"]}}"#);
    let (url, asked) = fake_api(vec![answer.clone(), answer, hist.clone(), hist]);
    let range = [
        "--start",
        "1700000000",
        "--end",
        "1700000060",
        "--step",
        "1m",
        "{__name__=~\"a|b\"}",
    ];
    let json = ok(&[&["query", "--url", &url, "--json"][..], &range].concat());
    assert_eq!(json, format!("{data}\n"));
    let req = asked.recv().unwrap();
    assert!(
        req.starts_with("POST /api/v1/query_range HTTP/1.1\r\n"),
        "{req}"
    );
    assert!(
        req.ends_with(
            "\r\n\r\nquery=%7B__name__%3D%7E%22a%7Cb%22%7D&start=1700000000&end=1700000060&step=60"
        ),
        "{req}"
    );
    let table = ok(&[&["query", "--url", &url][..], &range].concat());
    assert_eq!(
        table,
        "a\n  2023-11-14T22:13:20.000Z  1\n  2023-11-14T22:14:20.000Z  2\nb\n"
    );

    let instant = ["--time", "1700000000", "h"];
    let o = tidemark(&[&["query", "--url", &url, "--json"][..], &instant].concat());
    assert!(o.status.success());
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        got,
        serde_json::from_str::<serde_json::Value>(hist_data).unwrap()
    );
    assert_eq!(String::from_utf8(o.stderr).unwrap(), "warning: w<\n");
    let err = fails(&[&["query", "--url", &url][..], &instant].concat());
    assert!(err.contains("native histograms"), "{err}");
}
