//! Evaluator tests over a real store in a temp directory, with irregular timestamps and values.

use std::time::Duration;

use super::{Deadline, Parallel, QueryTimes, Range, Settings, evaluate, step_index, step_span};
use crate::model::{Labels, STALE_NAN};
use crate::query::{Engine, EngineOptions, QueryError, Value};
use crate::storage::{Db, Options};

const S: i64 = 1000;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied()).unwrap()
}

/// A store holding `series`, each a label set and its (t, v) samples.
fn store(series: &[(Labels, Vec<(i64, f64)>)]) -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut app = db.appender();
    for (l, samples) in series {
        for &(t, v) in samples {
            app.append(l, t, v).unwrap();
        }
    }
    app.commit().unwrap();
    (dir, db)
}

fn engine(delayed: bool) -> Engine {
    Engine::new(EngineOptions {
        delayed_name_removal: delayed,
        ..EngineOptions::default()
    })
}

/// An instant query's vector as (labels text, value), in result order.
fn instant(db: &Db, e: &Engine, q: &str, t: i64) -> Vec<(String, f64)> {
    match e.instant_blocking(&db.querier(), q, t).unwrap().value {
        Value::Vector(v) => v.iter().map(|s| (s.metric.to_string(), s.f)).collect(),
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

/// A matrix as (labels text, [(t, v)]).
fn matrix(v: Value) -> Vec<(String, Vec<(i64, f64)>)> {
    match v {
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                (
                    s.metric.to_string(),
                    s.floats.iter().map(|p| (p.t, p.f)).collect(),
                )
            })
            .collect(),
        other => panic!("expected a matrix, got {other:?}"),
    }
}

fn range(
    db: &Db,
    e: &Engine,
    q: &str,
    start: i64,
    end: i64,
    step: i64,
) -> Vec<(String, Vec<(i64, f64)>)> {
    matrix(
        e.range_blocking(&db.querier(), q, start, end, step)
            .unwrap()
            .value,
    )
}

fn gauge() -> (tempfile::TempDir, Db) {
    store(&[
        (
            labels(&[("__name__", "g"), ("job", "a")]),
            vec![
                (7 * S, 1.5),
                (68 * S, -2.25),
                (131 * S, 7.0),
                (400 * S, 3.125),
            ],
        ),
        (
            labels(&[("__name__", "g"), ("job", "b")]),
            vec![(13 * S, 10.0), (77 * S, STALE_NAN), (190 * S, 11.5)],
        ),
    ])
}

#[test]
fn lookback_picks_the_newest_sample_and_staleness_ends_a_series() {
    let (_d, db) = gauge();
    let e = engine(false);
    assert_eq!(
        instant(&db, &e, "g", 70 * S),
        vec![
            (r#"g{job="a"}"#.into(), -2.25),
            (r#"g{job="b"}"#.into(), 10.0)
        ]
    );
    // b's staleness marker at 77s hides its 13s sample.
    assert_eq!(
        instant(&db, &e, "g", 80 * S),
        vec![(r#"g{job="a"}"#.into(), -2.25)]
    );
    // b's 190s sample is exactly 5m before 490s: outside the window (t - 5m, t].
    assert_eq!(
        instant(&db, &e, "g", 490 * S),
        vec![(r#"g{job="a"}"#.into(), 3.125)]
    );
    assert_eq!(
        instant(&db, &e, "g", 490 * S - 1),
        vec![
            (r#"g{job="a"}"#.into(), 3.125),
            (r#"g{job="b"}"#.into(), 11.5)
        ]
    );
    assert_eq!(instant(&db, &e, "g", 6 * S), vec![]);
    // a sample 5m minus 1ms old still counts.
    assert_eq!(
        instant(&db, &e, r#"g{job="a"}"#, 700 * S - 1),
        vec![(r#"g{job="a"}"#.into(), 3.125)]
    );
    assert_eq!(instant(&db, &e, r#"g{job="a"}"#, 700 * S), vec![]);
}

#[test]
fn offset_and_at_shift_the_evaluation_time() {
    let (_d, db) = gauge();
    let e = engine(false);
    let a = r#"g{job="a"}"#;
    assert_eq!(
        instant(&db, &e, "g{job='a'} offset 1m", 135 * S),
        vec![(a.into(), -2.25)]
    );
    assert_eq!(
        instant(&db, &e, "g{job='a'} offset -1m", 75 * S),
        vec![(a.into(), 7.0)]
    );
    assert_eq!(
        instant(&db, &e, "g{job='a'} @ 68.001", 999 * S),
        vec![(a.into(), -2.25)]
    );
    assert_eq!(
        instant(&db, &e, "g{job='a'} @ 68.001 offset 1s", 0),
        vec![(a.into(), 1.5)]
    );
    // @ start() and @ end() are the range query's ends, at every step.
    let got = range(&db, &e, "g{job='a'} @ start()", 70 * S, 190 * S, 60 * S);
    assert_eq!(
        got,
        vec![(
            a.into(),
            vec![(70 * S, -2.25), (130 * S, -2.25), (190 * S, -2.25)]
        )]
    );
    let got = range(&db, &e, "g{job='a'} @ end()", 70 * S, 190 * S, 60 * S);
    assert_eq!(
        got,
        vec![(
            a.into(),
            vec![(70 * S, 7.0), (130 * S, 7.0), (190 * S, 7.0)]
        )]
    );
    // Range vectors keep the samples' own timestamps under offset.
    let got = matrix(
        e.instant_blocking(&db.querier(), "g{job='a'}[2m] offset 10s", 141 * S)
            .unwrap()
            .value,
    );
    assert_eq!(got, vec![(a.into(), vec![(68 * S, -2.25), (131 * S, 7.0)])]);
    let got = matrix(
        e.instant_blocking(&db.querier(), "g{job='a'}[61s] @ 131", 0)
            .unwrap()
            .value,
    );
    assert_eq!(got, vec![(a.into(), vec![(131 * S, 7.0)])]);
}

#[test]
fn subquery_steps_are_multiples_of_their_step() {
    let (_d, db) = gauge();
    let e = engine(false);
    let a = r#"g{job="a"}"#;
    // Steps in (200s - 5m, 200s] on the 70s grid: 70s, 140s.
    let got = matrix(
        e.instant_blocking(&db.querier(), "g{job='a'}[5m:70s]", 200 * S)
            .unwrap()
            .value,
    );
    assert_eq!(got, vec![(a.into(), vec![(70 * S, -2.25), (140 * S, 7.0)])]);
    // With offset 30s the window is (-130s, 170s]: -70s has no sample yet, 0s neither.
    let got = matrix(
        e.instant_blocking(&db.querier(), "g{job='a'}[5m:70s] offset 30s", 200 * S)
            .unwrap()
            .value,
    );
    assert_eq!(got, vec![(a.into(), vec![(70 * S, -2.25), (140 * S, 7.0)])]);
    // Without a step, 1m; the window's lower end is exclusive (0s is out, 60s is in).
    let got = matrix(
        e.instant_blocking(&db.querier(), "g{job='a'}[3m:]", 180 * S)
            .unwrap()
            .value,
    );
    assert_eq!(
        got,
        vec![(
            a.into(),
            vec![(60 * S, 1.5), (120 * S, -2.25), (180 * S, 7.0)]
        )]
    );
    // Nested: the inner subquery is evaluated on its own grid for every outer step.
    let got = range(
        &db,
        &e,
        "absent_over_time(absent_over_time(nosuch[1m:20s])[3m:45s])",
        90 * S,
        180 * S,
        90 * S,
    );
    assert_eq!(got, vec![]);
    let got = range(
        &db,
        &e,
        "absent_over_time(g{job='a'}[50s:25s])",
        100 * S,
        200 * S,
        50 * S,
    );
    // g{job="a"} has a value at every 25s step from 25s on, so never absent.
    assert_eq!(got, vec![]);
}

#[test]
fn absent_reports_the_equality_matchers() {
    let (_d, db) = gauge();
    let e = engine(false);
    assert_eq!(instant(&db, &e, "absent(g)", 70 * S), vec![]);
    assert_eq!(
        instant(
            &db,
            &e,
            r#"absent(nosuch{job="x", env=~"p.*", zone="z"})"#,
            70 * S
        ),
        vec![(r#"{job="x", zone="z"}"#.into(), 1.0)]
    );
    assert_eq!(
        instant(&db, &e, r#"absent(nosuch{job="x", job="y"})"#, 70 * S),
        vec![("{}".into(), 1.0)]
    );
    let got = range(
        &db,
        &e,
        r#"absent_over_time(g{job="b"}[1m])"#,
        60 * S,
        300 * S,
        60 * S,
    );
    // b has samples at 13s and 190s (77s is a marker): absent at 120s, 180s and 300s.
    assert_eq!(
        got,
        vec![(
            r#"{job="b"}"#.into(),
            vec![(120 * S, 1.0), (180 * S, 1.0), (300 * S, 1.0)]
        )]
    );
}

#[test]
fn range_queries_return_sorted_matrices_without_empty_series() {
    let (_d, db) = gauge();
    let e = engine(false);
    let got = range(&db, &e, "g", 0, 240 * S, 80 * S);
    assert_eq!(
        got,
        vec![
            (
                r#"g{job="a"}"#.into(),
                vec![(80 * S, -2.25), (160 * S, 7.0), (240 * S, 7.0)]
            ),
            (r#"g{job="b"}"#.into(), vec![(240 * S, 11.5)]),
        ]
    );
    assert_eq!(range(&db, &e, "nosuch", 0, 240 * S, 80 * S), vec![]);
    // A scalar becomes one series without labels.
    assert_eq!(
        range(&db, &e, "-(2.5)", 0, 20 * S, 10 * S),
        vec![("{}".into(), vec![(0, -2.5), (10 * S, -2.5), (20 * S, -2.5)])]
    );
    let q = db.querier();
    assert!(matches!(
        e.range_blocking(&q, "g[1m]", 0, 60 * S, 10 * S),
        Err(QueryError::BadData(m)) if m.contains("\"range vector\"")
    ));
    assert!(matches!(
        e.range_blocking(&q, "g", 60 * S, 0, 10 * S),
        Err(QueryError::BadData(_))
    ));
    assert!(matches!(
        e.range_blocking(&q, "g", 0, 60 * S, 0),
        Err(QueryError::BadData(_))
    ));
}

#[test]
fn instant_results_take_the_expression_type() {
    let (_d, db) = gauge();
    let e = engine(false);
    let q = db.querier();
    match e.instant_blocking(&q, "-1.75", 42 * S).unwrap().value {
        Value::Scalar(p) => assert_eq!((p.t, p.f), (42 * S, -1.75)),
        other => panic!("{other:?}"),
    }
    match e.instant_blocking(&q, r#""tide""#, 42 * S).unwrap().value {
        Value::String { t, s } => assert_eq!((t, s.as_str()), (42 * S, "tide")),
        other => panic!("{other:?}"),
    }
    match e.instant_blocking(&q, "g", 70 * S).unwrap().value {
        Value::Vector(v) => assert!(v.iter().all(|s| s.t == 70 * S), "{v:?}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        e.instant_blocking(&q, "sum(g", 0),
        Err(QueryError::Parse(_))
    ));
}

#[test]
fn unary_minus_drops_the_name_now_or_at_the_end() {
    let (_d, db) = store(&[
        (
            labels(&[("__name__", "x"), ("k", "1")]),
            vec![(10 * S, 4.0), (100 * S, 5.0)],
        ),
        (
            labels(&[("__name__", "y"), ("k", "1")]),
            vec![(380 * S, 6.5)],
        ),
    ]);
    for delayed in [false, true] {
        let e = engine(delayed);
        assert_eq!(
            instant(&db, &e, "-x", 20 * S),
            vec![(r#"{k="1"}"#.into(), -4.0)]
        );
        // x and y lose their names and collide where both have a value…
        let err = e
            .instant_blocking(&db.querier(), r#"-{__name__=~"x|y"}"#, 390 * S)
            .unwrap_err();
        assert!(err.to_string().contains("same labelset"), "{err}");
        // …but merge into one series where they do not.
        let got = range(&db, &e, r#"-{__name__=~"x|y"}"#, 0, 800 * S, 200 * S);
        assert_eq!(
            got,
            vec![(
                r#"{k="1"}"#.into(),
                vec![(200 * S, -5.0), (400 * S, -6.5), (600 * S, -6.5)]
            )],
            "delayed={delayed}"
        );
    }
}

#[test]
fn max_samples_counts_what_is_held_at_once() {
    let series: Vec<_> = (0..4)
        .map(|i| {
            let l = labels(&[("__name__", "m"), ("i", &i.to_string())]);
            (
                l,
                (0..50)
                    .map(|k| (k * 7 * S + i * 13, (k * i) as f64 * 0.5))
                    .collect(),
            )
        })
        .collect();
    let (_d, db) = store(&series);
    let tight = |max_samples| {
        Engine::new(EngineOptions {
            max_samples,
            ..EngineOptions::default()
        })
    };
    let q = db.querier();
    let points = |v: Value| matrix(v).iter().map(|(_, p)| p.len()).sum::<usize>();
    // Series 0 has a point at all 11 steps, the others (13ms late) miss the first.
    let n = points(
        tight(1000)
            .range_blocking(&q, "m", 0, 300 * S, 30 * S)
            .unwrap()
            .value,
    );
    assert_eq!(n, 11 + 3 * 10);
    assert!(tight(n).range_blocking(&q, "m", 0, 300 * S, 30 * S).is_ok());
    let err = tight(n - 1)
        .range_blocking(&q, "m", 0, 300 * S, 30 * S)
        .unwrap_err();
    assert!(matches!(err, QueryError::TooManySamples(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
    // A range vector holds every point in its window (2s, 62s]: 7s, 14s, … 56s.
    let n = points(
        tight(1000)
            .instant_blocking(&q, "m[60s]", 62 * S)
            .unwrap()
            .value,
    );
    assert_eq!(n, 4 * 8);
    assert!(tight(n).instant_blocking(&q, "m[60s]", 62 * S).is_ok());
    assert!(tight(n - 1).instant_blocking(&q, "m[60s]", 62 * S).is_err());
}

#[test]
fn points_per_series_and_timeout_limits() {
    let (_d, db) = gauge();
    let e = engine(false);
    let q = db.querier();
    assert!(e.range_blocking(&q, "g", 0, 11_000 * S, S).is_ok());
    let err = e.range_blocking(&q, "g", 0, 11_001 * S, S).unwrap_err();
    assert_eq!(
        err.to_string(),
        "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query \
         resolution (?step=XX)"
    );
    assert!(matches!(err, QueryError::BadData(_)));

    let slow = Engine::new(EngineOptions {
        timeout: Duration::from_nanos(1),
        ..EngineOptions::default()
    });
    let err = slow.range_blocking(&q, "g", 0, 11_000 * S, S).unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
}

#[test]
fn a_big_query_is_cut_short_by_its_timeout() {
    let series: Vec<_> = (0..200)
        .map(|i| {
            let l = labels(&[("__name__", "big"), ("i", &i.to_string())]);
            (
                l,
                (0..100).map(|k| (k * 61 * S + i, (k ^ i) as f64)).collect(),
            )
        })
        .collect();
    let (_d, db) = store(&series);
    let e = Engine::new(EngineOptions {
        timeout: Duration::from_millis(20),
        ..EngineOptions::default()
    });
    // Nested subqueries at 1ms resolution: far more work than 20ms allows.
    let started = std::time::Instant::now();
    let err = e
        .instant_blocking(
            &db.querier(),
            "absent_over_time((-(-big))[100m:1ms])",
            6000 * S,
        )
        .unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_timeout_stops_a_range_function_inside_its_first_windows() {
    // One series of 4 million samples and 1,000 steps (fewer than the 1,024 between the old
    // step-counted checks), each step's window holding all of them: counted by steps, the
    // deadline was next looked at after the function had read 4 billion points (seconds past
    // the timeout); counted by points, within one window of it.
    const N: i64 = 4_000_000;
    let samples: Vec<(i64, f64)> = (0..N).map(|i| (i * S, i as f64)).collect();
    let (_d, db) = store(&[(labels(&[("__name__", "long")]), samples)]);
    let e = Engine::new(EngineOptions {
        timeout: Duration::from_millis(300),
        ..EngineOptions::default()
    });
    let started = std::time::Instant::now();
    let err = e
        .range_blocking(
            &db.querier(),
            "sum_over_time(long[100d])",
            (N - 1000) * S,
            (N - 1) * S,
            S,
        )
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    assert!(
        took < Duration::from_secs(2),
        "a 300ms timeout answered after {took:?}"
    );
}

#[test]
fn timestamp_reports_the_stored_time_of_selector_samples_only() {
    let (_d, db) = gauge();
    let e = engine(false);
    assert_eq!(
        instant(&db, &e, "timestamp(g)", 100 * S),
        vec![(r#"{job="a"}"#.into(), 68.0)]
    );
    // Through parentheses too, and with @ every step reports the pinned sample's time.
    let got = range(&db, &e, "timestamp((g{job='a'} @ 131))", 0, 120 * S, 60 * S);
    assert_eq!(
        got,
        vec![(
            r#"{job="a"}"#.into(),
            vec![(0, 131.0), (60 * S, 131.0), (120 * S, 131.0)]
        )]
    );
    // Anything else is evaluated at the step, whose time it reports.
    let got = range(&db, &e, "timestamp(-g{job='a'})", 60 * S, 120 * S, 60 * S);
    assert_eq!(
        got,
        vec![(
            r#"{job="a"}"#.into(),
            vec![(60 * S, 60.0), (120 * S, 120.0)]
        )]
    );
}

#[test]
fn delayed_name_removal_lets_later_operations_see_the_name() {
    let (_d, db) = store(&[(
        labels(&[("__name__", "req_total"), ("code", "200")]),
        vec![(3 * S, 10.0), (64 * S, 70.0), (125 * S, 130.0)],
    )]);
    let q = r#"label_replace(rate(req_total[2m]), "was", "$1", "__name__", "(.*)")"#;
    let now = instant(&db, &engine(false), q, 130 * S);
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].0, r#"{code="200"}"#);
    let delayed = instant(&db, &engine(true), q, 130 * S);
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].0, r#"{code="200", was="req_total"}"#);
    assert!((now[0].1 - delayed[0].1).abs() < 1e-12);
    // last_over_time keeps the name either way.
    for d in [false, true] {
        let got = instant(&db, &engine(d), "last_over_time(req_total[1m])", 130 * S);
        assert_eq!(got, vec![(r#"req_total{code="200"}"#.into(), 130.0)]);
    }
}

#[test]
fn aggregations_group_once_and_keep_first_appearance_order() {
    let (_d, db) = store(&[
        (
            labels(&[("__name__", "w"), ("job", "b"), ("i", "1")]),
            vec![(5 * S, 1.25)],
        ),
        (
            labels(&[("__name__", "w"), ("job", "a"), ("i", "2")]),
            vec![(6 * S, 2.5)],
        ),
        (
            labels(&[("__name__", "w"), ("job", "b"), ("i", "3")]),
            vec![(7 * S, 4.0)],
        ),
        (
            labels(&[("__name__", "w"), ("job", "a"), ("i", "4")]),
            vec![(8 * S, -8.0)],
        ),
    ]);
    let e = engine(false);
    // Storage order is by labels: i="1" (b) comes first, so group b does.
    assert_eq!(
        instant(&db, &e, "sum by (job) (w)", 10 * S),
        vec![(r#"{job="b"}"#.into(), 5.25), (r#"{job="a"}"#.into(), -5.5)]
    );
    assert_eq!(
        instant(&db, &e, "count without (i) (w)", 10 * S),
        vec![(r#"{job="b"}"#.into(), 2.0), (r#"{job="a"}"#.into(), 2.0)]
    );
    assert_eq!(instant(&db, &e, "max(w)", 10 * S), vec![("{}".into(), 4.0)]);
    // Without input, the parameter is still checked at every step.
    let out = e
        .instant_blocking(&db.querier(), "quantile(2, nosuch)", 10 * S)
        .unwrap();
    assert_eq!(out.annotations.warnings.len(), 1, "{:?}", out.annotations);
}

/// Irregular counters and gauges under two names, with resets, NaNs and staleness markers:
/// input for comparing a streamed aggregation with the step-by-step one.
fn mixed_store() -> (tempfile::TempDir, Db) {
    let mut series = Vec::new();
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    for (k, (name, job, i)) in [
        ("x", "a", "1"),
        ("x", "b", "2"),
        ("x", "a", "3"),
        ("y", "c", "1"),
        ("x", "c", "4"),
        ("y", "a", "5"),
        ("x", "b", "6"),
        ("y", "b", "2"),
    ]
    .into_iter()
    .enumerate()
    {
        let l = labels(&[("__name__", name), ("job", job), ("i", i)]);
        series.push((l, wandering((k as i64) * 3 * S + 1, &mut next)));
    }
    store(&series)
}

/// A xorshift64 generator from `seed`: the test stores' deterministic randomness.
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// One irregular series from `t` to 1,800 s: a counter-like walk with resets to 0, sign flips,
/// NaNs, staleness markers, and now and then a gap longer than the windows.
fn wandering(mut t: i64, next: &mut impl FnMut() -> u64) -> Vec<(i64, f64)> {
    let mut v = 0.0;
    let mut pts = Vec::new();
    while t < 1800 * S {
        let r = next();
        v = match r % 23 {
            0 => 0.0,
            1 => f64::NAN,
            2 => STALE_NAN,
            3 => -v,
            _ => v + (r % 1000) as f64 / 8.0,
        };
        pts.push((t, v));
        t += if r.is_multiple_of(31) {
            400 * S
        } else {
            10 * S + (r % 9_000) as i64
        };
    }
    pts
}

/// Evaluates `q` as a range query (`step` > 0) or an instant one, folding aggregations over
/// selectors and range functions series by series (`stream`) or step by step, and renders the
/// answer bit-exactly (NaNs alike), in result order.
fn evaluated(db: &Db, q: &str, delayed: bool, stream: bool, times: QueryTimes) -> String {
    let settings = Settings {
        delayed_name_removal: delayed,
        stream_aggregations: stream,
        ..settings(Parallel::Off)
    };
    evaluated_with(db, q, &settings, times)
}

/// The settings the engine evaluates with (streamed aggregations), sharing work as `parallel`
/// says.
fn settings(parallel: Parallel) -> Settings {
    Settings {
        lookback: 5 * 60 * S,
        max_samples: 50_000_000,
        delayed_name_removal: false,
        subquery_step: 60 * S,
        stream_aggregations: true,
        parallel,
        series_binary: true,
    }
}

/// [`evaluated`] with any settings, the view's storage warnings (blocks found corrupt) last.
fn evaluated_with(db: &Db, q: &str, settings: &Settings, times: QueryTimes) -> String {
    let querier = db.querier();
    let answer = answer(&querier, q, settings, times);
    format!("{answer}\nstorage warnings: {:?}", querier.warnings())
}

fn answer(
    querier: &crate::storage::Querier,
    q: &str,
    settings: &Settings,
    times: QueryTimes,
) -> String {
    let expr = crate::query::guard::parse(q).unwrap();
    let bits = |v: f64| match v.is_nan() {
        true => "NaN".to_string(),
        false => v.to_bits().to_string(),
    };
    match evaluate(querier, &expr, times, settings, &Deadline::default()) {
        Err(e) => format!("error: {e}"),
        Ok((value, ann)) => {
            let body = match value {
                Value::Matrix(m) => m
                    .iter()
                    .map(|s| {
                        let p: Vec<String> = s
                            .floats
                            .iter()
                            .map(|p| format!("{}@{}", bits(p.f), p.t))
                            .collect();
                        format!("{} {}", s.metric, p.join(","))
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                Value::Vector(v) => v
                    .iter()
                    .map(|s| format!("{} {}", s.metric, bits(s.f)))
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => format!("{other:?}"),
            };
            format!("{body}\n{ann:?}")
        }
    }
}

#[test]
fn a_streamed_aggregation_answers_as_the_step_by_step_one() {
    let (_d, db) = mixed_store();
    let mut compared = 0;
    let range = QueryTimes {
        start: 0,
        end: 1900 * S,
        step: 45 * S,
    };
    let instants = [0, 95 * S, 1000 * S].map(|t| QueryTimes {
        start: t,
        end: t,
        step: 0,
    });
    for delayed in [false, true] {
        for op in [
            "sum", "avg", "count", "group", "min", "max", "stddev", "stdvar",
        ] {
            for by in [
                "",
                " by (job)",
                " without (i)",
                " by (__name__)",
                " without (job)",
            ] {
                for f in [
                    "rate(x[1m])",
                    "increase({__name__=~\"x|y\"}[2m])",
                    "max_over_time(x[90s])",
                    "count_over_time({__name__=~\"x|y\", job!=\"c\"}[5m] offset 1m)",
                    "avg_over_time(y[3m])",
                    "resets(x[5m:30s])",
                    "x",
                    "{__name__=~\"x|y\"} offset 30s",
                ] {
                    let inner = format!("{op}{by} ({f})");
                    for q in [format!("sum({inner})"), inner] {
                        for t in std::iter::once(range).chain(instants) {
                            assert_eq!(
                                evaluated(&db, &q, delayed, true, t),
                                evaluated(&db, &q, delayed, false, t),
                                "{q} over {t:?} (delayed {delayed})"
                            );
                        }
                        compared += 1;
                    }
                }
            }
        }
    }
    assert_eq!(compared, 2 * 8 * 5 * 8 * 2);
}

#[test]
fn extrapolating_functions_answer_each_window_as_the_function_library_does() {
    // The evaluator's own loop for rate, increase and delta (the function inlined, resets
    // looked for only in series that have one) against the library's `eval_range` over the
    // same windows of the stored points, bit for bit: series with resets, NaNs, staleness
    // markers and gaps.
    use crate::model::{Matcher, is_stale_nan};
    use crate::query::FPoint;
    use crate::query::functions::{RangeFn, Window, eval_range};
    let (_d, db) = mixed_store();
    let r = Range {
        start: 0,
        end: 1900 * S,
        step: 45 * S,
    };
    let engine = Engine::new(EngineOptions::default());
    let stored = db
        .querier()
        .select(&[Matcher::equal("__name__", "x")], i64::MIN, i64::MAX)
        .unwrap();
    let mut compared = 0;
    for (name, f) in [
        ("rate", RangeFn::Rate),
        ("increase", RangeFn::Increase),
        ("delta", RangeFn::Delta),
    ] {
        for range in [60 * S, 150 * S, 400 * S] {
            let q = format!("{name}(x[{}s])", range / S);
            let got = engine
                .range_blocking(&db.querier(), &q, r.start, r.end, r.step)
                .unwrap();
            let mut want = Vec::new();
            for s in &stored {
                let points: Vec<FPoint> = s
                    .samples
                    .iter()
                    .filter(|x| !is_stale_nan(x.v))
                    .map(|x| FPoint { t: x.t, f: x.v })
                    .collect();
                let mut out = Vec::new();
                for i in 0..r.steps() {
                    let end = r.ts(i);
                    let start = end - range;
                    let lo = points.partition_point(|p| p.t <= start);
                    let hi = points.partition_point(|p| p.t <= end);
                    let w = Window {
                        points: &points[lo..hi],
                        start,
                        end,
                        eval_t: end,
                    };
                    let mut ann = Default::default();
                    if let Some(v) = eval_range(f, &w, &[], &mut ann) {
                        out.push((end, v));
                    }
                }
                if !out.is_empty() {
                    let l = Labels::from_sorted_unchecked(
                        s.labels
                            .as_slice()
                            .iter()
                            .filter(|(n, _)| n != "__name__")
                            .cloned()
                            .collect(),
                    );
                    want.push((l.to_string(), out));
                }
            }
            // Bits, every NaN alike, by label set.
            let bits = |m: Vec<(String, Vec<(i64, f64)>)>| -> std::collections::BTreeMap<_, _> {
                m.into_iter()
                    .map(|(l, p)| {
                        let p: Vec<(i64, u64)> = p
                            .into_iter()
                            .map(|(t, v)| (t, if v.is_nan() { 1 } else { v.to_bits() }))
                            .collect();
                        (l, p)
                    })
                    .collect()
            };
            compared += want
                .iter()
                .map(|(_, p): &(String, Vec<_>)| p.len())
                .sum::<usize>();
            assert_eq!(bits(matrix(got.value)), bits(want), "{q}");
        }
    }
    assert!(compared > 1000, "{compared}");
}

/// `topk`, `bottomk` and `limitk` shapes: ties (clamped and rounded values), NaNs, series
/// starting late and with gaps, k of 0, above the series count, NaN, fractional, negative,
/// overflowing and changing from step to step (NaN at some), grouping, label sets that
/// collide once names are dropped.
const SELECT_K_SHAPES: [&str; 24] = [
    "topk(2, x)",
    "bottomk(2, x)",
    "limitk(2, x)",
    "topk(3, {__name__=~\"x|y\"})",
    "topk(2, clamp_max(x, 50))",
    "bottomk(3, round(rate({__name__=~\"x|y\"}[2m]) / 10))",
    "topk by (job) (1, rate(x[1m]))",
    "bottomk without (i) (2, {__name__=~\"x|y\"})",
    "limitk by (__name__) (1, {__name__=~\"x|y\"} offset 30s)",
    "topk(0, x)",
    "topk(100, {__name__=~\"x|y\"})",
    "bottomk(NaN, x)",
    "topk(1.9, x)",
    "topk(-1, x)",
    "topk(9.3e18, x)",
    "topk(time() / 300 - 2, x)",
    "bottomk(scalar(x{i=\"1\"}) / 100, {__name__=~\"x|y\"})",
    "limitk(scalar(count(x)) - 3, x)",
    "topk(5, -{__name__=~\"x|y\"})",
    "bottomk(5, abs({__name__=~\"x|y\"}))",
    "topk(2, sum by (job) (rate({__name__=~\"x|y\"}[5m])))",
    "topk(1, max_over_time(x[90s]) > 100)",
    "topk(2, x) + 1",
    "sum(bottomk(2, y))",
];

#[test]
fn a_selection_from_the_input_series_answers_as_the_step_by_step_one() {
    let (_d, db) = mixed_store();
    let range = QueryTimes {
        start: 0,
        end: 1900 * S,
        step: 45 * S,
    };
    let instants = [0, 95 * S, 1000 * S].map(|t| QueryTimes {
        start: t,
        end: t,
        step: 0,
    });
    let (mut errors, mut answers) = (0, 0);
    for delayed in [false, true] {
        for q in SELECT_K_SHAPES {
            for t in std::iter::once(range).chain(instants) {
                let reference = evaluated(&db, q, delayed, false, t);
                let before = super::select::SELECTED.with(|n| n.get());
                assert_eq!(
                    evaluated(&db, q, delayed, true, t),
                    reference,
                    "{q} over {t:?} (delayed {delayed})"
                );
                // The range answer came from the input series' columns, not the steps (an
                // error may come before the selection is reached).
                if t.step > 0 && !reference.starts_with("error") {
                    let after = super::select::SELECTED.with(|n| n.get());
                    assert!(after > before, "{q}: not selected from the columns");
                }
                match reference.starts_with("error") {
                    true => errors += 1,
                    false => answers += 1,
                }
            }
        }
    }
    // k errors (NaN, overflow) and same-label-set errors are among the answers compared.
    assert!(errors >= 8 && answers >= 100, "{errors} {answers}");
}

#[test]
fn a_selection_from_the_input_series_fails_the_sample_limit_exactly_where_steps_do() {
    let (_d, db) = mixed_store();
    let range = QueryTimes {
        start: 0,
        end: 1900 * S,
        step: 45 * S,
    };
    for q in [
        "topk(2, x)",
        "bottomk(3, {__name__=~\"x|y\"})",
        "limitk by (job) (1, rate(x[1m]))",
        "topk(time() / 300 - 2, x)",
    ] {
        let with = |stream, max_samples| {
            let settings = Settings {
                max_samples,
                stream_aggregations: stream,
                ..settings(Parallel::Off)
            };
            evaluated_with(&db, q, &settings, range)
        };
        // The smallest limit the step-by-step evaluation passes.
        let (mut lo, mut hi) = (0usize, 1 << 20);
        assert!(!with(false, hi).starts_with("error"), "{q}");
        while lo < hi {
            let mid = (lo + hi) / 2;
            if with(false, mid).starts_with("error") {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        assert!(hi > 0, "{q}");
        for limit in [0, 1, hi / 2, hi - 1, hi, hi + 1] {
            assert_eq!(
                with(true, limit),
                with(false, limit),
                "{q} with limit {limit}"
            );
        }
        assert!(with(true, hi - 1).starts_with("error"), "{q}");
    }
}

#[test]
fn a_streamed_aggregation_counts_its_input_as_held_until_it_is_done() {
    let (_d, db) = mixed_store();
    let q = db.querier();
    let tight = |max_samples| {
        Engine::new(EngineOptions {
            max_samples,
            ..EngineOptions::default()
        })
    };
    let points = |v: Value| matrix(v).iter().map(|(_, p)| p.len()).sum::<usize>();
    let run = |limit, e: &str| tight(limit).range_blocking(&q, e, 0, 1900 * S, 45 * S);
    let input = points(run(1 << 30, "rate(x[1m])").unwrap().value);
    let output = points(run(1 << 30, "sum by (job) (rate(x[1m]))").unwrap().value);
    assert!(input > 0 && output > 0);
    // What evaluating the function first and aggregating its output would hold at its peak.
    let peak = input + output;
    assert!(run(peak, "sum by (job) (rate(x[1m]))").is_ok());
    let err = run(peak - 1, "sum by (job) (rate(x[1m]))").unwrap_err();
    assert!(matches!(err, QueryError::TooManySamples(_)), "{err}");
}

mod consistency {
    //! A range query must give, at each step, what an instant query at that time gives.

    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const EXPRS: &[&str] = &[
        "v",
        "v offset 37s",
        "v @ 100",
        "-v * 2",
        "v > 3",
        "rate(v[2m])",
        "deriv(v[5m] offset -1m)",
        "max_over_time(v[3m:40s])",
        "sum_over_time((v * 2)[2m:15s] offset 30s)",
        "sum by (job) (v)",
        "avg without (i) (rate(v[3m]))",
        "topk(1, v)",
        "quantile(0.3, v)",
        "count(v) / sum(v)",
        "v and on (job) v offset 1m",
        "timestamp(v)",
        "time() - timestamp(v)",
        "absent(nosuch{job=\"q\"})",
        "absent_over_time(v[1m])",
        "label_replace(v, \"dst\", \"$1\", \"job\", \"(.)\")",
        "scalar(sum(v)) + v",
    ];

    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]

        #[test]
        fn range_steps_equal_instant_queries(
            gaps in prop::collection::vec((1_000i64..95_000, -50.0f64..50.0, any::<bool>()), 10..40),
            start in 0i64..400_000,
            step in 7_000i64..90_000,
            steps in 1usize..12,
            delayed in any::<bool>(),
        ) {
            // Three series with irregular, partly stale samples.
            let mut series = Vec::new();
            for (n, (job, i)) in [("a", "1"), ("a", "2"), ("b", "3")].into_iter().enumerate() {
                let mut t = n as i64 * 1_337;
                let mut samples = Vec::new();
                for &(gap, v, stale) in &gaps {
                    t += gap + n as i64 * 911;
                    let v = if stale && n == 1 { STALE_NAN } else { v * (n as f64 + 1.0) };
                    samples.push((t, v));
                }
                series.push((labels(&[("__name__", "v"), ("job", job), ("i", i)]), samples));
            }
            let (_d, db) = store(&series);
            let e = engine(delayed);
            let end = start + step * (steps as i64 - 1);
            for q in EXPRS {
                let r = e.range_blocking(&db.querier(), q, start, end, step).unwrap();
                let mut by_step: BTreeMap<i64, BTreeMap<String, f64>> = BTreeMap::new();
                for (l, pts) in matrix(r.value) {
                    for (t, v) in pts {
                        by_step.entry(t).or_default().insert(l.clone(), v);
                    }
                }
                for k in 0..steps as i64 {
                    let t = start + k * step;
                    let want: BTreeMap<String, f64> = match e.instant_blocking(&db.querier(), q, t).unwrap().value {
                        Value::Vector(v) => v.iter().map(|s| (s.metric.to_string(), s.f)).collect(),
                        Value::Scalar(p) => [("{}".to_string(), p.f)].into(),
                        other => panic!("{q}: {other:?}"),
                    };
                    let got = by_step.remove(&t).unwrap_or_default();
                    prop_assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{} at {}", q, t);
                    for (l, v) in &want {
                        prop_assert!(same(got[l], *v), "{} at {}: {} got {} want {}", q, t, l, got[l], v);
                    }
                }
                prop_assert!(by_step.is_empty(), "{}: points off the grid {:?}", q, by_step.keys());
            }
        }
    }
}

#[test]
fn huge_subquery_ranges_visit_only_the_steps_that_have_data() {
    let (_d, db) = gauge();
    let e = Engine::new(EngineOptions {
        timeout: Duration::from_secs(20),
        ..EngineOptions::default()
    });
    // 100 years at 1ms is 3e12 steps; g has samples in its first 400 seconds only.
    let started = std::time::Instant::now();
    let got = instant(&db, &e, "count_over_time(g{job='a'}[100y:1ms])", 1_000 * S);
    // a answers from 7s until 400s + 5m; the subquery ends at 1000s.
    assert_eq!(
        got,
        vec![(r#"{job="a"}"#.into(), (700 - 7) as f64 * 1000.0)]
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // With a tight sample limit the same query fails instead of allocating.
    let tight = Engine::new(EngineOptions {
        max_samples: 10_000,
        ..EngineOptions::default()
    });
    assert!(matches!(
        tight.instant_blocking(&db.querier(), "count_over_time(g[100y:1ms])", 1_000 * S),
        Err(QueryError::TooManySamples(_))
    ));
}

#[test]
fn step_spans_cover_exactly_the_steps_in_a_half_open_interval() {
    let r = Range {
        start: 10,
        end: 100,
        step: 15,
    };
    // Steps: 10 25 40 55 70 85 100.
    assert_eq!(step_span(r, 0, 10), 0..0);
    assert_eq!(step_span(r, 0, 11), 0..1);
    assert_eq!(step_span(r, 25, 56), 1..4);
    assert_eq!(step_span(r, 26, 55), 2..3);
    assert_eq!(step_span(r, 100, i64::MAX), 6..7);
    assert_eq!(step_span(r, 101, i64::MAX), 0..0);
    assert_eq!(step_span(r, i64::MIN, i64::MAX), 0..7);
    assert_eq!(step_index(r, 55), Some(3));
    assert_eq!(step_index(r, 56), None);
    assert_eq!(step_index(r, i64::MIN), None);
}

/// 40 series like [`mixed_store`]'s (counters with resets, NaNs, staleness markers, gaps), the
/// first 1,000 s of each in blocks of 400 s, the rest in the head.
fn blocks_and_head_store() -> (tempfile::TempDir, Db) {
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for k in 0..40 {
        let name = ["x", "y"][k % 2];
        let job = ["a", "b", "c"][k % 3];
        let l = labels(&[
            ("__name__", name),
            ("job", job),
            ("i", &(k / 2).to_string()),
        ]);
        let (o, n): (Vec<_>, Vec<_>) = wandering((k as i64) * S + 1, &mut next)
            .into_iter()
            .partition(|&(t, _)| t < 1000 * S);
        let o = o.into_iter().map(|(t, v)| crate::model::Sample::new(t, v));
        old.push((l.clone(), o.collect()));
        new.push((l, n));
    }
    let dir = tempfile::tempdir().unwrap();
    crate::storage::write_blocks(dir.path(), old, 400 * S, |_| {}).unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert!(db.catalog().blocks.len() >= 3);
    let mut app = db.appender();
    for (l, samples) in &new {
        for &(t, v) in samples {
            app.append(l, t, v).unwrap();
        }
    }
    app.commit().unwrap();
    (dir, db)
}

/// Queries whose selections are read and windowed by several threads when sharing is forced.
const SHARED_SHAPES: [&str; 22] = [
    "rate(x[1m])",
    "increase({__name__=~\"x|y\"}[2m])",
    "irate(y[5m])",
    "delta(x[3m] offset 1m)",
    "deriv(y[4m])",
    "predict_linear(x[5m], 120)",
    "quantile_over_time(0.3, {__name__=~\"x|y\"}[5m])",
    "quantile_over_time(time() / 1000, x[5m])",
    "double_exponential_smoothing(x[5m], 0.5, 0.5)",
    "double_exponential_smoothing(x[5m], time() / 1000, 0.5)",
    "max_over_time(x[90s] @ 1000)",
    "avg_over_time({job=\"b\"}[10m])",
    "last_over_time(x[1m])",
    "resets(x[5m])",
    "changes({__name__=~\"x|y\"}[5m])",
    "rate({__name__=~\"x|y\"}[1m])",
    "sum by (job) (rate(x[1m]))",
    "avg without (i) (increase({__name__=~\"x|y\"}[3m]))",
    "stddev by (__name__) (max_over_time({__name__=~\"x|y\"}[2m]))",
    "sum by (job) (rate(x[1m])) / sum by (job) (rate({__name__=~\"x|y\"}[1m]))",
    "topk(3, sum by (i) (rate({__name__=~\"x|y\"}[5m])))",
    "count_over_time({__name__=~\"x|y\"}[5m:30s])",
];

#[test]
fn a_shared_evaluation_answers_as_the_one_thread_one() {
    let (_d, db) = blocks_and_head_store();
    let range = QueryTimes {
        start: 0,
        end: 1900 * S,
        step: 45 * S,
    };
    let instants = [0, 95 * S, 1000 * S, 1500 * S].map(|t| QueryTimes {
        start: t,
        end: t,
        step: 0,
    });
    let mut errors = 0;
    for delayed in [false, true] {
        let set = |p| Settings {
            delayed_name_removal: delayed,
            ..settings(p)
        };
        for q in SHARED_SHAPES {
            for t in std::iter::once(range).chain(instants) {
                let one = evaluated_with(&db, q, &set(Parallel::Off), t);
                assert_eq!(
                    evaluated_with(&db, q, &set(Parallel::Always), t),
                    one,
                    "{q} over {t:?} (delayed {delayed})"
                );
                errors += usize::from(one.starts_with("error"));
            }
        }
    }
    // Argument errors and same-label-set errors are among the answers compared.
    assert!(errors >= 4, "{errors}");
}

#[test]
fn a_shared_evaluation_fails_the_sample_limit_exactly_where_one_thread_does() {
    let (_d, db) = blocks_and_head_store();
    let range = QueryTimes {
        start: 0,
        end: 1900 * S,
        step: 45 * S,
    };
    let limited = |p, max_samples| Settings {
        max_samples,
        ..settings(p)
    };
    for q in [
        "rate(x[1m])",
        "sum by (job) (rate({__name__=~\"x|y\"}[1m]))",
        "max_over_time({__name__=~\"x|y\"}[10m])",
    ] {
        let passes =
            |n| !evaluated_with(&db, q, &limited(Parallel::Off, n), range).starts_with("error");
        // The smallest limit the query passes.
        let (mut lo, mut hi) = (0usize, 1 << 20);
        assert!(passes(hi));
        while lo < hi {
            let mid = (lo + hi) / 2;
            if passes(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        assert!(lo > 100, "{q}: {lo}");
        for n in [0, 1, 50, lo / 2, lo - 1, lo, lo + 1] {
            let one = evaluated_with(&db, q, &limited(Parallel::Off, n), range);
            assert_eq!(
                evaluated_with(&db, q, &limited(Parallel::Always, n), range),
                one,
                "{q} with at most {n} samples"
            );
            assert_eq!(one.starts_with("error"), n < lo, "{q}: {n} {one}");
        }
    }
}

#[test]
fn a_shared_evaluation_forgets_a_block_found_corrupt_midway_as_one_thread_does() {
    let (dir, db) = blocks_and_head_store();
    drop(db);
    // A chunk in the middle of the oldest block's series is damaged: series before it have
    // been handed over when it is met.
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    files.sort();
    let block = crate::storage::sstable::Block::open(&files[0]).unwrap();
    let (_, chunks) = block.series(block.num_series() / 2).unwrap();
    let at = chunks[0].offset + u64::from(chunks[0].len) / 2;
    drop(block);
    let range = QueryTimes {
        start: 0,
        end: 1900 * S,
        step: 45 * S,
    };
    for q in [
        "sum by (job) (rate({__name__=~\"x|y\"}[1m]))",
        "max_over_time({__name__=~\"x|y\"}[5m])",
    ] {
        let mut answers = Vec::new();
        for p in [Parallel::Off, Parallel::Always] {
            let copy = tempfile::tempdir().unwrap();
            let blocks = copy.path().join("blocks");
            std::fs::create_dir(&blocks).unwrap();
            for f in &files {
                std::fs::copy(f, blocks.join(f.file_name().unwrap())).unwrap();
            }
            let damaged = blocks.join(files[0].file_name().unwrap());
            let mut bytes = std::fs::read(&damaged).unwrap();
            bytes[at as usize] ^= 0x5a;
            std::fs::write(&damaged, bytes).unwrap();
            let db = Db::open(copy.path(), Options::default()).unwrap();
            let got = evaluated_with(&db, q, &settings(p), range);
            assert!(got.contains("corrupt"), "{q}: {got}");
            assert_eq!(db.quarantined_count(), 1, "{q}");
            // The next query does not meet the block at all, and answers the same.
            let again = evaluated_with(&db, q, &settings(p), range);
            assert!(!again.contains("corrupt"), "{q}: {again}");
            let body = |a: &str| a.rsplit_once("\nstorage warnings").unwrap().0.to_string();
            assert_eq!(body(&got), body(&again), "{q}");
            answers.push(got);
        }
        assert_eq!(answers[0], answers[1], "{q}");
    }
}

#[test]
fn a_shared_evaluation_stopped_early_leaves_no_thread_behind() {
    let (_d, db) = blocks_and_head_store();
    let db = std::sync::Arc::new(db);
    let range = QueryTimes {
        start: 0,
        end: 1900 * S,
        step: 45 * S,
    };
    // Stopped by the sample limit at its first series, by an argument error, by a
    // cancellation raised before it starts, and by one raised while a helper is computing a
    // batch (the query's thread holds back its first window until then): each returns, its
    // helpers joined.
    let cancelled = Deadline::new(None, Some(std::sync::Arc::new(true.into())));
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let raised = flag.clone();
    // One wait in all for a helper to get there (not ten seconds at every check).
    let until = std::sync::OnceLock::new();
    let mid_run = Deadline::new(None, Some(flag.clone())).on_work(move || {
        use std::sync::atomic::Ordering::SeqCst;
        if std::thread::current().name() == Some("query-helper") {
            raised.store(true, SeqCst);
            return;
        }
        let until = *until.get_or_init(|| std::time::Instant::now() + Duration::from_secs(10));
        while !raised.load(SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    for (q, max_samples, deadline, cancels) in [
        (
            "sum by (job) (rate({__name__=~\"x|y\"}[1m]))",
            10,
            Deadline::default(),
            false,
        ),
        (
            "double_exponential_smoothing(x[5m], 2, 0.5)",
            50_000_000,
            Deadline::default(),
            false,
        ),
        ("rate({__name__=~\"x|y\"}[1m])", 50_000_000, cancelled, true),
        ("rate({__name__=~\"x|y\"}[1m])", 50_000_000, mid_run, true),
    ] {
        let (tx, rx) = std::sync::mpsc::channel();
        let db = db.clone();
        std::thread::spawn(move || {
            let settings = Settings {
                max_samples,
                ..settings(Parallel::Always)
            };
            let expr = crate::query::guard::parse(q).unwrap();
            let r = evaluate(&db.querier(), &expr, range, &settings, &deadline).map(|_| ());
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{q}: no answer within a minute"));
        assert!(r.is_err(), "{q}");
        if cancels {
            assert!(matches!(r, Err(QueryError::Timeout(_))), "{q}: {r:?}");
        }
    }
    // The last one was cancelled by a helper in the middle of its batch.
    assert!(flag.load(std::sync::atomic::Ordering::SeqCst));
}

/// Operands for binary operators: `x` and `y` pairing on (job, i) but not everywhere (the
/// first `x` starts late, so it is not first in the output; one `y` ends early; gaps and
/// staleness markers from [`wandering`]), `z` with the awkward values (±Inf, ±0, NaN,
/// extremes) and `w`, whose labels are an `x`'s but for the name, so the two collide once the
/// name is dropped.
fn binary_store() -> (tempfile::TempDir, Db) {
    let mut next = xorshift(0x1234_5678_9abc_def1);
    let mut series = Vec::new();
    for (k, (name, job, i)) in [
        ("x", "a", "1"),
        ("x", "b", "2"),
        ("x", "a", "3"),
        ("x", "c", "4"),
        ("y", "a", "1"),
        ("y", "b", "2"),
        ("y", "c", "5"),
        ("y", "a", "3"),
        ("w", "a", "1"),
    ]
    .into_iter()
    .enumerate()
    {
        let l = labels(&[("__name__", name), ("job", job), ("i", i)]);
        let mut pts = wandering((k as i64) * 7 * S + 1, &mut next);
        match (name, i) {
            ("x", "1") => pts.retain(|&(t, _)| t > 600 * S),
            ("y", "3") => pts.retain(|&(t, _)| t < 900 * S),
            ("w", _) => pts.retain(|&(t, _)| !(400 * S..=1300 * S).contains(&t)),
            _ => {}
        }
        series.push((l, pts));
    }
    let odd = [
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        0.0,
        f64::NAN,
        f64::MAX,
        -f64::MIN_POSITIVE,
        3.0,
        -2.5,
        1e-300,
    ];
    for (i, job) in [("1", "a"), ("9", "s")] {
        let pts = (0..120)
            .map(|n| (n * 15 * S + 3, odd[(n as usize * 7 + i.len()) % odd.len()]))
            .collect();
        series.push((labels(&[("__name__", "z"), ("job", job), ("i", i)]), pts));
    }
    store(&series)
}

/// [`answer`] with binary operators series by series (`series`) or step by step.
fn binary_answer(
    db: &Db,
    q: &str,
    series: bool,
    delayed: bool,
    max: usize,
    t: QueryTimes,
) -> String {
    let settings = Settings {
        delayed_name_removal: delayed,
        series_binary: series,
        max_samples: max,
        ..settings(Parallel::Off)
    };
    answer(&db.querier(), q, &settings, t)
}

/// How many operators the series path has answered on this thread so far.
fn answered_by_series() -> usize {
    super::binseries::ANSWERED.with(|n| n.get())
}

const ARITH: [&str; 7] = ["+", "-", "*", "/", "%", "^", "atan2"];
const COMPARE: [&str; 12] = [
    "==", "!=", ">", "<", ">=", "<=", "== bool", "!= bool", "> bool", "< bool", ">= bool",
    "<= bool",
];

fn binary_times() -> [QueryTimes; 4] {
    let instant = |t| QueryTimes {
        start: t,
        end: t,
        step: 0,
    };
    [
        QueryTimes {
            start: 0,
            end: 1900 * S,
            step: 45 * S,
        },
        instant(0),
        instant(95 * S),
        instant(1000 * S),
    ]
}

/// Both paths give the same answer, bit for bit, errors included; returns how many of them
/// were errors.
fn compare_paths(db: &Db, queries: &[String]) -> usize {
    let mut errors = 0;
    for delayed in [false, true] {
        for q in queries {
            for t in binary_times() {
                let steps = binary_answer(db, q, false, delayed, 50_000_000, t);
                assert_eq!(
                    binary_answer(db, q, true, delayed, 50_000_000, t),
                    steps,
                    "{q} over {t:?} (delayed {delayed})"
                );
                errors += usize::from(steps.starts_with("error"));
            }
        }
    }
    errors
}

#[test]
fn a_vector_and_scalar_answer_series_by_series_as_step_by_step() {
    let (_d, db) = binary_store();
    let vectors = [
        "x",
        "{__name__=~\"x|z\"}",
        "rate(x[1m])",
        "{__name__=~\"x|w\"}",
        "nosuch",
    ];
    let scalars = ["3", "-0", "scalar(sum(z))", "time() / 100"];
    let mut queries = Vec::new();
    for op in ARITH.iter().chain(&COMPARE) {
        for v in vectors {
            for s in scalars {
                queries.push(format!("{v} {op} {s}"));
                queries.push(format!("{s} {op} {v}"));
            }
        }
    }
    // Nested: the outer operator sees marked and already renamed series.
    queries.extend(
        [
            "100 - 100 * x / 7",
            "100 * (1 - x / 9)",
            "-(x > 3) * 2",
            "sum(x * 2)",
            "sum by (job) (2 ^ x)",
            "(x > 3) + 1",
            "1 - avg by (job) (rate(x[1m]))",
            // Folds see the operator's output order: ties in topk keep the first series.
            "sum(x / 7)",
            "sum by (job) (x / 3 > 2)",
            "topk(1, x * 0)",
            "bottomk(2, 0 * x > bool 1)",
            "stddev(x / 7)",
            // Inside subqueries (their own step grid) and pinned with `@`.
            "max_over_time((x * 2)[5m:30s])",
            "sum_over_time((3 > bool x)[2m:15s] offset 30s)",
            "x @ 1000 - 1",
        ]
        .map(String::from),
    );
    let before = answered_by_series();
    let errors = compare_paths(&db, &queries);
    // The name-collision shapes fail at the end of a query with delayed name removal, or in
    // the binary operator itself (which the series path leaves to the step path).
    assert!(errors > 0, "{errors}");
    assert!(answered_by_series() > before + queries.len());
}

#[test]
fn two_vectors_matched_one_to_one_answer_series_by_series_as_step_by_step() {
    let (_d, db) = binary_store();
    let shapes = [
        "x {op} y",
        "x {op} on (job, i) y",
        "x {op} ignoring (job) y",
        "x {op} on (i) y",
        // Several series per group on a side: the errors of the step path.
        "x {op} on (job) y",
        "x {op} ignoring (i) y",
        "x {op} on (i) group_left (job) y",
        "x {op} on (job) group_left y",
        "y {op} x",
        "x {op} z",
        "z {op} on (job) x",
        "rate(x[1m]) {op} y",
        "x {op} y offset 1m",
        "{__name__=~\"x|w\"} {op} ignoring (job) y",
        "(x * 2) {op} on (job, i) (y / 3)",
        "x {op} nosuch",
        "nosuch {op} y",
        "sum by (job) (x) {op} sum by (job) (y)",
        "sum(x {op} ignoring (job) (y / 3))",
        "topk(1, (x {op} y) * 0)",
        "max_over_time((x {op} y)[5m:30s])",
        "x @ 1000 {op} y @ 1000",
    ];
    let mut queries = Vec::new();
    for op in ARITH.iter().chain(&COMPARE) {
        for s in shapes {
            queries.push(s.replace("{op}", op));
        }
    }
    for s in ["x and y", "x or on (job) y", "x unless on (i) y"] {
        queries.push(s.to_string());
    }
    let before = answered_by_series();
    let errors = compare_paths(&db, &queries);
    assert!(errors > 0, "{errors}");
    assert!(answered_by_series() > before + queries.len());
}

#[test]
fn the_series_path_leaves_colliding_and_many_to_many_shapes_to_the_steps() {
    let (_d, db) = binary_store();
    let range = binary_times()[0];
    for (q, delayed, series) in [
        ("x * 2", false, true),
        ("x > 2", false, true),
        ("x / y", false, true),
        ("x > ignoring (job) y", false, true),
        // Every operator kind with a scalar on either side, and the dashboards' shapes.
        ("2 < x", false, true),
        ("x == bool 3", true, true),
        ("2 ^ x", false, true),
        ("x != y", false, true),
        ("x >= bool on (job, i) y", false, true),
        ("x atan2 y", false, true),
        ("1 - avg by (job) (rate(x[1m]))", false, true),
        // `w` and the first `x` both become {job="a", i="1"}: merged by the step path.
        ("{__name__=~\"x|w\"} * 2", false, false),
        ("{__name__=~\"x|w\"} * 2", true, true),
        // Filtering keeps the names: no collision.
        ("{__name__=~\"x|w\"} > 2", false, true),
        ("x / on (job) y", false, false),
        ("x + on (i) group_left (job) y", false, false),
        ("x and y", false, false),
    ] {
        let before = answered_by_series();
        let ours = binary_answer(&db, q, true, delayed, 50_000_000, range);
        assert_eq!(
            answered_by_series() > before,
            series,
            "{q} (delayed {delayed})"
        );
        assert_eq!(
            ours,
            binary_answer(&db, q, false, delayed, 50_000_000, range),
            "{q}"
        );
    }
}

#[test]
fn the_series_path_fails_the_sample_limit_exactly_where_the_steps_do() {
    let (_d, db) = binary_store();
    for t in binary_times() {
        for q in [
            "x * 2",
            "2 - x",
            "x > bool 3",
            "x > 30",
            "x / y",
            "x > on (job, i) y",
            "sum(x) + 1",
            "nosuch * 2",
        ] {
            let passes = |n| !binary_answer(&db, q, false, false, n, t).starts_with("error");
            let (mut lo, mut hi) = (0usize, 1 << 20);
            assert!(passes(hi));
            while lo < hi {
                let mid = (lo + hi) / 2;
                if passes(mid) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            for n in [0, 1, lo / 2, lo.saturating_sub(1), lo, lo + 1] {
                let steps = binary_answer(&db, q, false, false, n, t);
                assert_eq!(
                    binary_answer(&db, q, true, false, n, t),
                    steps,
                    "{q} over {t:?} with at most {n} samples"
                );
                assert_eq!(steps.starts_with("error"), n < lo, "{q}: {n} {steps}");
            }
        }
    }
}
