//! The TSDB admin API: delete series (hidden at once from every read, and for good: across a
//! crash, flushes, compactions), clean tombstones (deleted data physically gone, the rest
//! unchanged), snapshots (the same answers, deleted data absent), and the API off by default.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};
use tidemark::api::{ActiveTarget, ApiState, DroppedTarget, TargetsView, router};
use tidemark::model::{Labels, MatchOp, Matcher};
use tidemark::query::{Engine, EngineOptions};
use tidemark::storage::{Db, Options, ReadOnlyDb};
use tower::ServiceExt;

const H: i64 = 3_600_000;
/// 803 s into a block window, so the first block does not start at the data.
const T0: i64 = 1_700_000_003_000;
const ROUNDS: i64 = 250;

type Model = BTreeMap<Labels, Vec<(i64, f64)>>;

struct NoTargets;

impl TargetsView for NoTargets {
    fn targets(&self) -> (Vec<ActiveTarget>, Vec<DroppedTarget>) {
        (Vec::new(), Vec::new())
    }
}

fn opts() -> Options {
    Options {
        block_duration: H,
        retention_time: 0,
        ..Options::default()
    }
}

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied()).unwrap()
}

fn all_series() -> Vec<Labels> {
    vec![
        l(&[("__name__", "temp"), ("room", "a")]),
        l(&[("__name__", "temp"), ("room", "b")]),
        l(&[("__name__", "hum"), ("room", "h")]),
        l(&[("__name__", "temp"), ("room", "c"), ("floor", "2")]),
    ]
}

/// Time of round `r` of series `i`: about a minute apart, never regular.
fn ts(r: i64, i: usize) -> i64 {
    T0 + r * 61_000 + (r * 7919 % 4999) + i as i64 * 311
}

/// Appends `rounds` of every series; ~4.3 hours for the full 250 rounds.
fn append(db: &Db, rounds: std::ops::Range<i64>, model: &mut Model) {
    for r in rounds {
        let mut app = db.appender();
        for (i, labels) in all_series().iter().enumerate() {
            let t = ts(r, i);
            let v = ((r * 37 + i as i64 * 11) % 101) as f64 * 0.125 - 3.0;
            app.append(labels, t, v).unwrap();
            model.entry(labels.clone()).or_default().push((t, v));
        }
        assert_eq!(app.commit().unwrap().appended, all_series().len() as u64);
    }
}

/// A data directory with three hours in blocks and the rest in the head.
fn loaded(dir: &Path) -> (Arc<Db>, Model) {
    let db = Db::open(dir, opts()).unwrap();
    let mut model = Model::new();
    append(&db, 0..ROUNDS, &mut model);
    assert_eq!(db.flush().unwrap().len(), 3);
    (Arc::new(db), model)
}

/// Opens `dir` again after the test dropped its `Db`. Another test of this binary may be
/// starting a process at that moment, and a forked child holds a copy of the lock file's
/// descriptor (so the lock) until it execs: wait for that, with a deadline.
fn reopen(dir: &Path) -> Db {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Db::open(dir, opts()) {
            Err(tidemark::storage::StorageError::Locked { .. })
                if std::time::Instant::now() < end =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r.unwrap(),
        }
    }
}

fn state(db: Arc<Db>, admin: bool) -> Arc<ApiState> {
    let engine = Arc::new(Engine::new(EngineOptions::default()));
    Arc::new(ApiState {
        admin_api: admin,
        ..ApiState::new(db, engine, Arc::new(NoTargets))
    })
}

async fn call(st: &Arc<ApiState>, method: Method, uri: &str, form: &str) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if !form.is_empty() {
        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let resp = router(st.clone())
        .oneshot(req.body(Body::from(form.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 26)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn get(st: &Arc<ApiState>, uri: &str) -> Value {
    let (code, body) = call(st, Method::GET, uri, "").await;
    assert_eq!(code, StatusCode::OK, "{uri}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Milliseconds as the API's float seconds.
fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn labels_of(metric: &Value) -> Labels {
    let m = metric.as_object().unwrap();
    Labels::new(
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
    )
    .unwrap()
}

fn points(values: &Value) -> Vec<(i64, f64)> {
    values
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            (t, p[1].as_str().unwrap().parse().unwrap())
        })
        .collect()
}

/// Every raw sample through `/api/v1/query` of `{__name__=~".+"}[1y]`.
async fn raw(st: &Arc<ApiState>) -> Model {
    let q = enc(r#"{__name__=~".+"}[1y]"#);
    let v = get(
        st,
        &format!("/api/v1/query?query={q}&time={}", secs(ts(ROUNDS * 3, 0))),
    )
    .await;
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (labels_of(&s["metric"]), points(&s["values"])))
        .collect()
}

fn nonempty(model: &Model) -> Model {
    model
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(l, v)| (l.clone(), v.clone()))
        .collect()
}

fn delete(model: &mut Model, matchers: &[Matcher], start: i64, end: i64) -> usize {
    let mut n = 0;
    for (labels, samples) in model.iter_mut() {
        if matchers.iter().all(|m| m.matches_labels(labels)) {
            let before = samples.len();
            samples.retain(|&(t, _)| t < start || t > end);
            n += before - samples.len();
        }
    }
    n
}

/// What a range query of `name` answers from the model: at each step the newest sample of
/// the 5 minutes before it.
fn model_range(model: &Model, name: &str, start: i64, end: i64, step: i64) -> Model {
    let mut out = Model::new();
    for (labels, samples) in model.iter().filter(|(l, _)| l.metric_name() == Some(name)) {
        let mut pts = Vec::new();
        let mut t = start;
        while t <= end {
            let i = samples.partition_point(|&(st, _)| st <= t);
            if i > 0 && samples[i - 1].0 > t - 300_000 {
                pts.push((t, samples[i - 1].1));
            }
            t += step;
        }
        if !pts.is_empty() {
            out.insert(labels.clone(), pts);
        }
    }
    out
}

async fn range(st: &Arc<ApiState>, name: &str, start: i64, end: i64, step: i64) -> Model {
    let v = get(
        st,
        &format!(
            "/api/v1/query_range?query={name}&start={}&end={}&step={}",
            secs(start),
            secs(end),
            secs(step)
        ),
    )
    .await;
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (labels_of(&s["metric"]), points(&s["values"])))
        .collect()
}

async fn strings(st: &Arc<ApiState>, uri: &str) -> Vec<String> {
    get(st, uri).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

async fn series(st: &Arc<ApiState>, selector: &str, range: Option<(i64, i64)>) -> Vec<Labels> {
    let mut uri = format!("/api/v1/series?match[]={}", enc(selector));
    if let Some((s, e)) = range {
        uri += &format!("&start={}&end={}", secs(s), secs(e));
    }
    get(st, &uri).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(labels_of)
        .collect()
}

/// Samples in the blocks, as `tidemark inspect --json` reports them.
fn inspect_block_samples(dir: &Path) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["inspect", "--json", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["samples"].as_u64().unwrap())
        .sum()
}

fn every() -> Vec<Matcher> {
    vec![Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()]
}

fn stored(q: &tidemark::storage::Querier) -> Model {
    q.select(&every(), i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.samples.iter().map(|x| (x.t, x.v)).collect()))
        .collect()
}

#[tokio::test]
async fn delete_hides_exactly_the_matching_series_and_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut model) = loaded(dir.path());
    let st = state(db.clone(), true);
    assert_eq!(
        raw(&st).await,
        model,
        "the API serves the data before any deletion"
    );

    // Part of temp{room="a"}: from inside the second block to inside the head.
    let (start, end) = (ts(97, 0) + 123, ts(201, 0) - 7);
    assert!(start < db.head().min_valid() && end > db.head().min_valid());
    let form = format!(
        "match[]={}&start={}&end={}",
        enc(r#"temp{room="a"}"#),
        secs(start),
        secs(end)
    );
    let (code, body) = call(&st, Method::POST, "/api/v1/admin/tsdb/delete_series", &form).await;
    assert_eq!((code, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let a = vec![
        Matcher::equal("__name__", "temp"),
        Matcher::equal("room", "a"),
    ];
    assert!(delete(&mut model, &a, start, end) > 90);
    // All of hum, by PUT with the selector in the URL.
    let (code, _) = call(
        &st,
        Method::PUT,
        &format!("/api/v1/admin/tsdb/delete_series?match[]={}", enc("hum")),
        "",
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    delete(
        &mut model,
        &[Matcher::equal("__name__", "hum")],
        i64::MIN,
        i64::MAX,
    );

    let want = nonempty(&model);
    assert_eq!(raw(&st).await, want);
    assert_eq!(
        stored(&db.querier()),
        want,
        "the engine and the storage agree"
    );
    // Steps across the deleted interval's edges: the gap shows after 5 minutes of lookback.
    let (rs, re, step) = (ts(90, 0) + 17_000, ts(210, 0), 97_000);
    let got = range(&st, "temp", rs, re, step).await;
    let expected = model_range(&model, "temp", rs, re, step);
    assert_eq!(got, expected);
    let a_pts = &got[&l(&[("__name__", "temp"), ("room", "a")])];
    assert!(a_pts.len() < got[&l(&[("__name__", "temp"), ("room", "b")])].len());

    // Series, labels, label values: hum is gone everywhere.
    let all: Vec<Labels> = want.keys().cloned().collect();
    assert_eq!(series(&st, r#"{__name__=~".+"}"#, None).await, all);
    assert!(series(&st, "hum", None).await.is_empty());
    // Inside the deleted interval, room a has no series.
    assert_eq!(
        series(&st, "temp", Some((start + 60_000, end - 60_000))).await,
        vec![
            l(&[("__name__", "temp"), ("room", "c"), ("floor", "2")]),
            l(&[("__name__", "temp"), ("room", "b")]),
        ]
    );
    assert_eq!(
        strings(&st, "/api/v1/label/__name__/values").await,
        vec!["temp"]
    );
    assert_eq!(
        strings(&st, "/api/v1/label/room/values").await,
        vec!["a", "b", "c"]
    );
    assert_eq!(
        strings(
            &st,
            &format!("/api/v1/label/room/values?match[]={}", enc("hum"))
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        strings(&st, "/api/v1/labels").await,
        vec!["__name__", "floor", "room"]
    );
    // The command line reads the same directory beside the running Db, tombstones included.
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["dump", "--match", r#"{__name__=~".+"}"#, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let dumped = String::from_utf8(out.stdout).unwrap();
    let lines = dumped.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(lines, want.values().map(Vec::len).sum::<usize>());
    assert!(!dumped.contains("hum"));
    assert!(!dumped.contains(&format!(" {}\n", secs(ts(150, 0)))));
    let (code, body) = call(
        &st,
        Method::GET,
        &format!("/api/v1/query?query=hum&time={}", secs(ts(120, 2))),
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["data"]["result"],
        json!([])
    );
}

#[tokio::test]
async fn deletion_leaves_federation_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), opts()).unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut app = db.appender();
    app.append(&l(&[("__name__", "up"), ("job", "x")]), now - 7_321, 1.0)
        .unwrap();
    app.append(&l(&[("__name__", "up"), ("job", "y")]), now - 9_877, 0.0)
        .unwrap();
    app.commit().unwrap();
    let st = state(db, true);
    let fed = format!("/federate?match[]={}", enc("up"));
    let (_, before) = call(&st, Method::GET, &fed, "").await;
    assert!(before.contains(r#"job="x""#) && before.contains(r#"job="y""#));
    let (code, _) = call(
        &st,
        Method::POST,
        "/api/v1/admin/tsdb/delete_series",
        &format!("match[]={}", enc(r#"up{job="x"}"#)),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (_, after) = call(&st, Method::GET, &fed, "").await;
    assert!(!after.contains(r#"job="x""#), "{after}");
    assert!(after.contains(r#"job="y""#), "{after}");
}

#[tokio::test]
async fn deletion_survives_a_crash_flushes_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut model) = loaded(dir.path());
    let st = state(db, true);
    // Every series, from the first block into the head; and one series entirely.
    let (start, end) = (ts(40, 0) - 1, ts(230, 3) + 1);
    let form = format!(
        "match[]={}&match[]={}&start={}&end={}",
        enc(r#"{room=~"a|c"}"#),
        enc(r#"temp{room="b"}"#),
        secs(start),
        secs(end)
    );
    let (code, _) = call(&st, Method::POST, "/api/v1/admin/tsdb/delete_series", &form).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (code, _) = call(
        &st,
        Method::POST,
        "/api/v1/admin/tsdb/delete_series",
        &format!("match[]={}", enc(r#"temp{floor="2"}"#)),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    delete(
        &mut model,
        &[Matcher::new(MatchOp::Regex, "room", "a|c").unwrap()],
        start,
        end,
    );
    delete(&mut model, &[Matcher::equal("room", "b")], start, end);
    delete(
        &mut model,
        &[Matcher::equal("floor", "2")],
        i64::MIN,
        i64::MAX,
    );
    let want = nonempty(&model);
    assert_eq!(raw(&st).await, want);

    // A crash: the Db is dropped without close; the WAL replays the deleted head samples.
    drop(st);
    let db = Arc::new(reopen(dir.path()));
    assert!(
        db.head().time_range().is_some_and(|(lo, _)| lo < end),
        "the head came back from the WAL with deleted samples in it"
    );
    let st = state(db.clone(), true);
    assert_eq!(raw(&st).await, want);
    assert_eq!(
        strings(&st, "/api/v1/label/floor/values").await,
        Vec::<String>::new()
    );

    // More data, then flushes and compactions write the deleted head samples out (without
    // them) and merge the old blocks (without them).
    append(&db, ROUNDS..ROUNDS + 200, &mut model);
    let want = nonempty(&model);
    assert!(!db.flush().unwrap().is_empty());
    let mut compacted = 0;
    while db.compact().unwrap().is_some() {
        compacted += 1;
    }
    assert!(compacted > 0, "the test needs a compaction");
    assert_eq!(raw(&st).await, want);
    let in_blocks: u64 = db
        .catalog()
        .blocks
        .iter()
        .map(|b| b.meta().num_samples)
        .sum();
    let kept_in_blocks = model
        .values()
        .flatten()
        .filter(|(t, _)| *t < db.head().min_valid())
        .count();
    assert_eq!(
        in_blocks, kept_in_blocks as u64,
        "the compacted and flushed blocks hold exactly the samples not deleted"
    );
    drop(st);
    drop(db);
    let db = Arc::new(reopen(dir.path()));
    let st = state(db, true);
    assert_eq!(raw(&st).await, want);
}

#[tokio::test]
async fn clean_tombstones_removes_deleted_data_and_keeps_the_rest_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut model) = loaded(dir.path());
    let st = state(db.clone(), true);
    // Queries over the series no deletion touches.
    let untouched = [
        format!(
            "/api/v1/query?query={}&time={}",
            enc(r#"temp{room="b"}[1y]"#),
            secs(ts(ROUNDS, 0))
        ),
        format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=41.3",
            enc(r#"{room=~"b|h"}"#),
            secs(ts(0, 0)),
            secs(ts(ROUNDS, 0))
        ),
        format!(
            "/api/v1/query?query={}&time={}",
            enc(r#"sum by (room) (rate({room=~"b|h"}[10m]))"#),
            secs(ts(150, 0))
        ),
    ];
    let mut before = Vec::new();
    for u in &untouched {
        before.push(call(&st, Method::GET, u, "").await);
    }
    let blocks_before = inspect_block_samples(dir.path());

    // Inside the blocks only for room a; everything of room c (blocks and head).
    let (start, end) = (ts(20, 0) + 5, ts(150, 0) - 5);
    let min_valid = db.head().min_valid();
    assert!(end < min_valid);
    for form in [
        format!(
            "match[]={}&start={}&end={}",
            enc(r#"temp{room="a"}"#),
            secs(start),
            secs(end)
        ),
        format!("match[]={}", enc(r#"{room="c"}"#)),
    ] {
        let (code, _) = call(&st, Method::POST, "/api/v1/admin/tsdb/delete_series", &form).await;
        assert_eq!(code, StatusCode::NO_CONTENT);
    }
    let gone_a = delete(&mut model, &[Matcher::equal("room", "a")], start, end);
    let gone_c_blocks = model[&all_series()[3]]
        .iter()
        .filter(|(t, _)| *t < min_valid)
        .count();
    delete(
        &mut model,
        &[Matcher::equal("room", "c")],
        i64::MIN,
        i64::MAX,
    );
    assert_eq!(
        inspect_block_samples(dir.path()),
        blocks_before,
        "a deletion alone rewrites nothing"
    );

    let (code, body) = call(&st, Method::PUT, "/api/v1/admin/tsdb/clean_tombstones", "").await;
    assert_eq!((code, body.as_str()), (StatusCode::NO_CONTENT, ""));
    assert_eq!(
        inspect_block_samples(dir.path()),
        blocks_before - (gone_a + gone_c_blocks) as u64,
        "the blocks no longer hold the deleted samples"
    );
    // Room a's tombstone covered blocks only and is dropped; room c's head samples still
    // need theirs.
    let left: Vec<Labels> = db.tombstones().iter().map(|(l, _)| l.clone()).collect();
    assert_eq!(left, vec![all_series()[3].clone()]);
    assert_eq!(raw(&st).await, nonempty(&model));
    for (u, b) in untouched.iter().zip(&before) {
        assert!(&call(&st, Method::GET, u, "").await == b, "{u}");
    }
    // And again after a restart.
    drop(st);
    drop(db);
    let db = Arc::new(reopen(dir.path()));
    let st = state(db, true);
    assert_eq!(raw(&st).await, nonempty(&model));
    for (u, b) in untouched.iter().zip(&before) {
        assert!(&call(&st, Method::GET, u, "").await == b, "{u}");
    }
}

#[tokio::test]
async fn snapshot_opens_with_the_same_answers_and_no_deleted_data() {
    let dir = tempfile::tempdir().unwrap();
    let (db, mut model) = loaded(dir.path());
    let st = state(db.clone(), true);
    let (start, end) = (ts(100, 1) - 3, ts(220, 1) + 3);
    let (code, _) = call(
        &st,
        Method::POST,
        "/api/v1/admin/tsdb/delete_series",
        &format!(
            "match[]={}&start={}&end={}",
            enc(r#"temp{room="b"}"#),
            secs(start),
            secs(end)
        ),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    delete(&mut model, &[Matcher::equal("room", "b")], start, end);
    let want = nonempty(&model);

    let (code, body) = call(&st, Method::POST, "/api/v1/admin/tsdb/snapshot", "").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    let name = v["data"]["name"].as_str().unwrap().to_string();
    let re = regex::Regex::new(r"^\d{8}T\d{6}Z-[0-9a-f]{16}$").unwrap();
    assert!(re.is_match(&name), "{name}");
    let snap = dir.path().join("snapshots").join(&name);
    assert_eq!(stored(&ReadOnlyDb::open(&snap).unwrap().querier()), want);
    {
        let opened = Db::open(&snap, opts()).unwrap();
        assert_eq!(stored(&opened.querier()), want);
        // The snapshot's head became blocks: the deleted samples are not in them either.
        opened.clean_tombstones().unwrap();
        assert!(opened.tombstones().is_empty());
        assert_eq!(stored(&opened.querier()), want);
    }

    // Without the head: only what the blocks hold.
    let (code, body) = call(
        &st,
        Method::PUT,
        "/api/v1/admin/tsdb/snapshot?skip_head=true",
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let name2 = v["data"]["name"].as_str().unwrap();
    assert_ne!(name2, name);
    let min_valid = db.head().min_valid();
    let blocks_only: Model = nonempty(
        &model
            .iter()
            .map(|(l, v)| {
                (
                    l.clone(),
                    v.iter().copied().filter(|(t, _)| *t < min_valid).collect(),
                )
            })
            .collect(),
    );
    let snap2 = dir.path().join("snapshots").join(name2);
    assert_eq!(
        stored(&ReadOnlyDb::open(&snap2).unwrap().querier()),
        blocks_only
    );

    let (code, body) = call(
        &st,
        Method::POST,
        "/api/v1/admin/tsdb/snapshot?skip_head=maybe",
        "",
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"skip_head\"")
    );
    // The live data is untouched by the snapshots.
    assert_eq!(raw(&st).await, want);
}

#[tokio::test]
async fn admin_api_off_answers_403_everywhere_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, model) = loaded(dir.path());
    let st = state(db, false);
    for path in [
        "/api/v1/admin/tsdb/delete_series?match[]=temp",
        "/api/v1/admin/tsdb/clean_tombstones",
        "/api/v1/admin/tsdb/snapshot",
    ] {
        for m in [Method::POST, Method::PUT] {
            let (code, body) = call(&st, m.clone(), path, "").await;
            assert_eq!(code, StatusCode::FORBIDDEN, "{m} {path}");
            assert_eq!(
                body,
                r#"{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}"#
            );
        }
    }
    // Even a request that would be malformed is refused as disabled first.
    let (code, _) = call(&st, Method::POST, "/api/v1/admin/tsdb/delete_series", "").await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(raw(&st).await, model);
    assert!(!dir.path().join("snapshots").exists());
    assert!(!dir.path().join("tombstones").exists());
}

#[tokio::test]
async fn malformed_deletions_are_refused_as_bad_data() {
    let dir = tempfile::tempdir().unwrap();
    let (db, model) = loaded(dir.path());
    let st = state(db, true);
    let url = "/api/v1/admin/tsdb/delete_series";
    let (code, body) = call(&st, Method::POST, url, "").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        r#"{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}"#
    );
    for (form, param) in [
        (format!("match[]={}", enc("temp{")), "match[]"),
        (format!("match[]={}", enc(r#"{room=""}"#)), "match[]"),
        (format!("match[]={}", enc("rate(temp[5m])")), "match[]"),
        ("match[]=temp&start=yesterday".to_string(), "start"),
        (format!("match[]=temp&end={}", enc("12:00")), "end"),
    ] {
        let (code, body) = call(&st, Method::POST, url, &form).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{form}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["errorType"], "bad_data", "{form}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.starts_with(&format!("invalid parameter \"{param}\"")),
            "{form}: {msg}"
        );
    }
    let (code, _) = call(&st, Method::GET, url, "").await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(raw(&st).await, model, "nothing was deleted");
}

#[test]
fn a_corrupt_tombstones_file_stops_the_open_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = loaded(dir.path());
    db.delete_series(&[vec![Matcher::equal("room", "a")]], ts(3, 0), ts(9, 0))
        .unwrap();
    drop(db);
    let path = dir.path().join("tombstones");
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    for bytes in [bad, good[..good.len() - 1].to_vec(), Vec::new()] {
        std::fs::write(&path, &bytes).unwrap();
        let e = Db::open(dir.path(), opts()).err().unwrap().to_string();
        assert!(e.contains("corrupt tombstones file"), "{e}");
        assert!(e.contains(&path.display().to_string()), "{e}");
        let e = ReadOnlyDb::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(["inspect", "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("tombstones"));
    }
    // Put back, it opens and still hides the interval.
    std::fs::write(&path, &good).unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let a = db
        .querier()
        .select(&[Matcher::equal("room", "a")], ts(3, 0), ts(9, 0))
        .unwrap();
    assert!(a.is_empty());
}
