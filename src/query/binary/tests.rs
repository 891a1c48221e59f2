//! Expectations from Prometheus's operators.test, collision.test and fill-modifier.test, with
//! each step's operands worked out by hand. Modifiers come from parsing the test's query, so
//! they are exactly what the evaluator hands over.

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_MOD, T_MUL, T_NEQ,
    T_POW, T_SUB, TokenId, TokenType,
};
use promql_parser::parser::{self, BinModifier, Expr};

use super::{scalar_scalar, vector_scalar, vector_vector};
use crate::query::aggregate::tests::{T, assert_result, sample, vector};
use crate::query::{Annotations, QueryError, Sample, Vector};

/// The operator and modifier of `query`'s top-level binary expression.
fn parsed(query: &str) -> (TokenType, Option<BinModifier>) {
    let mut e = parser::parse(query).unwrap();
    while let Expr::Paren(p) = e {
        e = *p.expr;
    }
    let Expr::Binary(b) = e else {
        panic!("{query} is not a binary expression");
    };
    (b.op, b.modifier)
}

/// `lhs <query's operator and modifier> rhs`.
fn vv(query: &str, lhs: Vector, rhs: Vector) -> Result<Vector, QueryError> {
    let (op, m) = parsed(query);
    let mut ann = Annotations::default();
    let out = vector_vector(op, lhs, rhs, m.as_ref(), T, &mut ann);
    assert_eq!(ann, Annotations::default());
    out
}

fn vv_ok(query: &str, lhs: Vector, rhs: Vector) -> Vector {
    vv(query, lhs, rhs).unwrap()
}

fn vv_err(query: &str, lhs: Vector, rhs: Vector) -> String {
    match vv(query, lhs, rhs) {
        Err(e @ QueryError::Execution(_)) => e.to_string(),
        other => panic!("{query}: {other:?}"),
    }
}

fn vs(op: TokenId, v: Vector, s: f64, scalar_is_lhs: bool, return_bool: bool) -> Vector {
    let mut ann = Annotations::default();
    let out = vector_scalar(
        TokenType::new(op),
        v,
        s,
        scalar_is_lhs,
        return_bool,
        &mut ann,
    );
    let mut out = out.unwrap();
    // vector_scalar leaves timestamps to the evaluator.
    for s in &mut out {
        s.t = T;
    }
    out
}

fn filter(v: Vector, pred: impl Fn(&Sample) -> bool) -> Vector {
    v.into_iter().filter(|s| pred(s)).collect()
}

fn has(s: &Sample, name: &str, value: &str) -> bool {
    s.metric.get(name) == Some(value)
}

/// `http_requests_total` of operators.test at 50m.
fn http_requests_total() -> Vector {
    vector(&[
        (
            r#"http_requests_total{job="api-server", instance="0", group="production"}"#,
            100.0,
        ),
        (
            r#"http_requests_total{job="api-server", instance="1", group="production"}"#,
            200.0,
        ),
        (
            r#"http_requests_total{job="api-server", instance="0", group="canary"}"#,
            300.0,
        ),
        (
            r#"http_requests_total{job="api-server", instance="1", group="canary"}"#,
            400.0,
        ),
        (
            r#"http_requests_total{job="app-server", instance="0", group="production"}"#,
            500.0,
        ),
        (
            r#"http_requests_total{job="app-server", instance="1", group="production"}"#,
            600.0,
        ),
        (
            r#"http_requests_total{job="app-server", instance="0", group="canary"}"#,
            700.0,
        ),
        (
            r#"http_requests_total{job="app-server", instance="1", group="canary"}"#,
            800.0,
        ),
    ])
}

fn sum_by_job() -> Vector {
    vector(&[
        (r#"{job="api-server"}"#, 1000.0),
        (r#"{job="app-server"}"#, 2600.0),
    ])
}

#[test]
fn scalars() {
    let ss = |op, l, r| scalar_scalar(TokenType::new(op), l, r).unwrap();
    assert_eq!(ss(T_SUB, 2.0, 0.5), 1.5);
    assert_eq!(ss(T_POW, -2.0, -1.0), -0.5);
    assert_eq!(ss(T_DIV, 1.0, 0.0), f64::INFINITY);
    assert!(ss(T_MOD, 1.0, 0.0).is_nan());
    assert_eq!(ss(T_MOD, -7.5, 2.0), -1.5);
    assert_eq!(ss(T_EQLC, 0.0, 1.0), 0.0);
    assert_eq!(ss(T_EQLC, 1.0, 1.0), 1.0);
    assert_eq!(ss(T_LTE, 3.0, 3.0), 1.0);
    assert_eq!(ss(T_NEQ, f64::NAN, f64::NAN), 1.0);
    assert_eq!(ss(T_ATAN2, 10.0, 20.0), 0.4636476090008061);
    assert!(ss(T_ATAN2, 10.0, f64::NAN).is_nan());
    let err = scalar_scalar(TokenType::new(T_LAND), 1.0, 1.0).unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
}

#[test]
fn vector_vector_arithmetic_matches_on_all_labels() {
    let counts = vector(&[
        (r#"{job="api-server"}"#, 4.0),
        (r#"{job="app-server"}"#, 4.0),
    ]);
    let got = vv_ok("a - b", sum_by_job(), counts.clone());
    assert_result(
        &got,
        &[
            (r#"{job="api-server"}"#, 996.0),
            (r#"{job="app-server"}"#, 2596.0),
        ],
        false,
    );
    let got = vv_ok("a ^ b", counts.clone(), counts);
    assert_result(
        &got,
        &[
            (r#"{job="api-server"}"#, 256.0),
            (r#"{job="app-server"}"#, 256.0),
        ],
        false,
    );
    let got = vv_ok("a + b", sum_by_job(), sum_by_job());
    assert_result(
        &got,
        &[
            (r#"{job="api-server"}"#, 2000.0),
            (r#"{job="app-server"}"#, 5200.0),
        ],
        false,
    );
    // Names drop at once: the result has none to remove later.
    let got = vv_ok(
        "a + b",
        vector(&[(r#"metric_total{env="1"}"#, 120.0)]),
        vector(&[(r#"another_metric_total{env="1"}"#, 180.0)]),
    );
    assert_eq!(got[0].metric.metric_name(), None);
    assert_result(&got, &[(r#"{env="1"}"#, 300.0)], false);
    let got = vv_ok(
        "a atan2 b",
        vector(&[("trigy", 10.0)]),
        vector(&[("trigx", 20.0)]),
    );
    assert_result(&got, &[("{}", 0.4636476090008061)], false);
}

#[test]
fn vector_scalar_arithmetic_marks_names_for_removal() {
    assert_result(
        &vs(T_SUB, sum_by_job(), 2.0, true, false),
        &[
            (r#"{job="api-server"}"#, -998.0),
            (r#"{job="app-server"}"#, -2598.0),
        ],
        false,
    );
    assert_result(
        &vs(T_DIV, sum_by_job(), 1000.0, true, false),
        &[
            (r#"{job="api-server"}"#, 1.0),
            (r#"{job="app-server"}"#, 0.38461538461538464),
        ],
        false,
    );
    for (op, s, api, app) in [
        (T_MOD, 3.0, 1.0, 2.0),
        (T_MOD, 0.3, 0.1, 0.2),
        (T_POW, 2.0, 1e6, 6_760_000.0),
        (T_MOD, 512.0, 488.0, 40.0),
        (T_DIV, 0.0, f64::INFINITY, f64::INFINITY),
    ] {
        assert_result(
            &vs(op, sum_by_job(), s, false, false),
            &[
                (r#"{job="api-server"}"#, api),
                (r#"{job="app-server"}"#, app),
            ],
            false,
        );
    }
    let one = || {
        vector(&[(
            r#"http_requests_total{group="canary", instance="0", job="api-server"}"#,
            300.0,
        )])
    };
    let zeroed = vs(T_MUL, one(), 0.0, true, false);
    assert!(
        zeroed
            .iter()
            .all(|s| s.drop_name && s.metric.metric_name().is_some())
    );
    assert_result(
        &vs(T_DIV, zeroed, 0.0, false, false),
        &[(
            r#"{group="canary", instance="0", job="api-server"}"#,
            f64::NAN,
        )],
        false,
    );
    assert_result(
        &vs(
            T_DIV,
            vs(T_MUL, one(), -1.0, true, false),
            0.0,
            false,
            false,
        ),
        &[(
            r#"{group="canary", instance="0", job="api-server"}"#,
            f64::NEG_INFINITY,
        )],
        false,
    );
}

#[test]
fn vector_scalar_comparisons_filter_or_give_bools() {
    // left_floats at 0, 6m … 60m: 1 2 _ _ 3 stale 4 5 NaN Inf -Inf.
    let steps = [
        1.0,
        2.0,
        3.0,
        4.0,
        5.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let lf = |f: f64| vec![sample("left_floats", f)];
    let kept = |op, s: f64, lhs: bool| -> Vec<f64> {
        steps
            .iter()
            .flat_map(|f| vs(op, lf(*f), s, lhs, false))
            .map(|s| {
                assert!(!s.drop_name);
                assert_eq!(s.metric.metric_name(), Some("left_floats"));
                s.f
            })
            .collect()
    };
    let fmt = |v: Vec<f64>| format!("{v:?}");
    assert_eq!(fmt(kept(T_EQLC, 3.0, false)), "[3.0]");
    assert_eq!(
        fmt(kept(T_NEQ, 3.0, false)),
        "[1.0, 2.0, 4.0, 5.0, NaN, inf, -inf]"
    );
    assert_eq!(fmt(kept(T_GTR, 3.0, false)), "[4.0, 5.0, inf]");
    assert_eq!(fmt(kept(T_GTE, 3.0, false)), "[3.0, 4.0, 5.0, inf]");
    assert_eq!(fmt(kept(T_LSS, 3.0, false)), "[1.0, 2.0, -inf]");
    assert_eq!(fmt(kept(T_LTE, 3.0, false)), "[1.0, 2.0, 3.0, -inf]");
    assert_eq!(fmt(kept(T_EQLC, f64::NAN, false)), "[]");
    // Scalar on the left: `3 < v` keeps v's value.
    assert_eq!(fmt(kept(T_LSS, 3.0, true)), "[4.0, 5.0, inf]");
    assert_eq!(fmt(kept(T_GTE, 3.0, true)), "[1.0, 2.0, 3.0, -inf]");
    assert_eq!(fmt(kept(T_EQLC, f64::INFINITY, true)), "[inf]");
    let bools = |op, s: f64, lhs: bool| -> Vec<f64> {
        steps
            .iter()
            .flat_map(|f| vs(op, lf(*f), s, lhs, true))
            .map(|s| {
                assert!(s.drop_name);
                s.f
            })
            .collect()
    };
    assert_eq!(
        bools(T_EQLC, 3.0, false),
        [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        bools(T_EQLC, f64::INFINITY, true),
        [0., 0., 0., 0., 0., 0., 1., 0.]
    );
    assert_eq!(bools(T_EQLC, f64::NAN, true), [0.0; 8]);
    // Sum by job compared with 1000, both ways round.
    assert_result(
        &vs(T_GTR, sum_by_job(), 1000.0, false, false),
        &[(r#"{job="app-server"}"#, 2600.0)],
        false,
    );
    assert_result(
        &vs(T_LSS, sum_by_job(), 1000.0, true, false),
        &[(r#"{job="app-server"}"#, 2600.0)],
        false,
    );
    assert_result(
        &vs(T_EQLC, sum_by_job(), 1000.0, false, true),
        &[
            (r#"{job="api-server"}"#, 1.0),
            (r#"{job="app-server"}"#, 0.0),
        ],
        false,
    );
    let mut ann = Annotations::default();
    let err = vector_scalar(
        TokenType::new(T_LOR),
        sum_by_job(),
        1.0,
        false,
        false,
        &mut ann,
    );
    assert!(err.is_err());
}

#[test]
fn vector_vector_comparisons() {
    let got = vv_ok("a == bool b", sum_by_job(), sum_by_job());
    assert_result(
        &got,
        &[
            (r#"{job="api-server"}"#, 1.0),
            (r#"{job="app-server"}"#, 1.0),
        ],
        false,
    );
    let got = vv_ok("a != bool b", sum_by_job(), sum_by_job());
    assert_result(
        &got,
        &[
            (r#"{job="api-server"}"#, 0.0),
            (r#"{job="app-server"}"#, 0.0),
        ],
        false,
    );
    let total = || vector(&[(r#"test_total{instance="localhost"}"#, 50.0)]);
    let smaller = || vector(&[(r#"test_smaller{instance="localhost"}"#, 10.0)]);
    let got = vv_ok("a > bool b", total(), smaller());
    assert!(got[0].drop_name);
    assert_result(&got, &[(r#"{instance="localhost"}"#, 1.0)], false);
    let got = vv_ok("a > b", total(), smaller());
    assert!(!got[0].drop_name);
    assert_result(
        &got,
        &[(r#"test_total{instance="localhost"}"#, 50.0)],
        false,
    );
    assert_result(
        &vv_ok("a < bool b", total(), smaller()),
        &[(r#"{instance="localhost"}"#, 0.0)],
        false,
    );
    assert!(vv_ok("a < b", total(), smaller()).is_empty());
    // left_floats vs right_floats at 0, 24m, 36m, 42m, 48m, 54m, 60m.
    let pairs = [
        (1.0, 4.0),
        (3.0, 3.0),
        (4.0, -1.0),
        (5.0, 20.0),
        (f64::NAN, f64::NAN),
        (f64::INFINITY, f64::INFINITY),
        (f64::NEG_INFINITY, f64::NEG_INFINITY),
    ];
    let run = |q: &str| -> Vec<String> {
        pairs
            .iter()
            .map(|(l, r)| {
                let got = vv_ok(
                    q,
                    vec![sample("left_floats", *l)],
                    vec![sample("right_floats", *r)],
                );
                got.iter()
                    .map(|s| format!("{}{}", s.metric.metric_name().unwrap_or(""), s.f))
                    .collect::<String>()
            })
            .collect()
    };
    assert_eq!(
        run("a == b"),
        [
            "",
            "left_floats3",
            "",
            "",
            "",
            "left_floatsinf",
            "left_floats-inf"
        ]
    );
    assert_eq!(
        run("a == bool b"),
        [
            "left_floats0",
            "left_floats1",
            "left_floats0",
            "left_floats0",
            "left_floats0",
            "left_floats1",
            "left_floats1"
        ]
    );
    assert_eq!(
        run("a != b"),
        [
            "left_floats1",
            "",
            "left_floats4",
            "left_floats5",
            "left_floatsNaN",
            "",
            ""
        ]
    );
    assert_eq!(run("a > b"), ["", "", "left_floats4", "", "", "", ""]);
    assert_eq!(
        run("a <= b"),
        [
            "left_floats1",
            "left_floats3",
            "",
            "left_floats5",
            "",
            "left_floatsinf",
            "left_floats-inf"
        ]
    );
    assert!(vv_ok("a == b", vec![sample("left_floats", 1.0)], Vector::new()).is_empty());
}

#[test]
fn set_operators() {
    let canary = || filter(http_requests_total(), |s| has(s, "group", "canary"));
    let instance0 = || filter(http_requests_total(), |s| has(s, "instance", "0"));
    assert_result(
        &vv_ok("a and b", canary(), instance0()),
        &[
            (
                r#"http_requests_total{group="canary", instance="0", job="api-server"}"#,
                300.0,
            ),
            (
                r#"http_requests_total{group="canary", instance="0", job="app-server"}"#,
                700.0,
            ),
        ],
        false,
    );
    let plus1 = || vs(T_ADD, canary(), 1.0, false, false);
    let prod0 = || {
        filter(http_requests_total(), |s| {
            has(s, "instance", "0") && has(s, "group", "production")
        })
    };
    let want_plus1_0 = [
        (r#"{group="canary", instance="0", job="api-server"}"#, 301.0),
        (r#"{group="canary", instance="0", job="app-server"}"#, 701.0),
    ];
    assert_result(
        &vv_ok("a and b", plus1(), instance0()),
        &want_plus1_0,
        false,
    );
    for q in [
        "a and on(instance, job) b",
        "a and on(instance) b",
        "a and ignoring(group) b",
        "a and ignoring(group, job) b",
    ] {
        assert_result(&vv_ok(q, plus1(), prod0()), &want_plus1_0, false);
    }
    // On overlap `or` keeps the left-hand sample.
    let instance1 = filter(http_requests_total(), |s| has(s, "instance", "1"));
    assert_result(
        &vv_ok("a or b", plus1(), instance1),
        &[
            (r#"{group="canary", instance="0", job="api-server"}"#, 301.0),
            (r#"{group="canary", instance="0", job="app-server"}"#, 701.0),
            (r#"{group="canary", instance="1", job="api-server"}"#, 401.0),
            (r#"{group="canary", instance="1", job="app-server"}"#, 801.0),
            (
                r#"http_requests_total{group="production", instance="1", job="api-server"}"#,
                200.0,
            ),
            (
                r#"http_requests_total{group="production", instance="1", job="app-server"}"#,
                600.0,
            ),
        ],
        false,
    );
    // Matching only on instance takes in the series without one.
    let mut others = http_requests_total();
    others.extend(vector(&[
        (r#"vector_matching_a{l="x"}"#, 10.0),
        (r#"vector_matching_a{l="y"}"#, 20.0),
    ]));
    for q in ["a or on(instance) b", "a or ignoring(l, group, job) b"] {
        assert_result(
            &vv_ok(q, plus1(), others.clone()),
            &[
                (r#"{group="canary", instance="0", job="api-server"}"#, 301.0),
                (r#"{group="canary", instance="0", job="app-server"}"#, 701.0),
                (r#"{group="canary", instance="1", job="api-server"}"#, 401.0),
                (r#"{group="canary", instance="1", job="app-server"}"#, 801.0),
                (r#"vector_matching_a{l="x"}"#, 10.0),
                (r#"vector_matching_a{l="y"}"#, 20.0),
            ],
            false,
        );
    }
    let canary1 = [
        (
            r#"http_requests_total{group="canary", instance="1", job="api-server"}"#,
            400.0,
        ),
        (
            r#"http_requests_total{group="canary", instance="1", job="app-server"}"#,
            800.0,
        ),
    ];
    assert_result(&vv_ok("a unless b", canary(), instance0()), &canary1, false);
    assert!(vv_ok("a unless on(job) b", canary(), instance0()).is_empty());
    assert_result(
        &vv_ok("a unless on(job, instance) b", canary(), instance0()),
        &canary1,
        false,
    );
    assert!(
        vv_ok(
            "a unless ignoring(group, instance) b",
            canary(),
            instance0()
        )
        .is_empty()
    );
    assert_result(
        &vv_ok("a unless ignoring(group) b", canary(), instance0()),
        &canary1,
        false,
    );
    // AND ON (dummy) vector(1) and AND IGNORING (group, instance, job) vector(1): everything.
    for q in [
        "a and on(dummy) b",
        "a and ignoring(group, instance, job) b",
    ] {
        let got = vv_ok(q, http_requests_total(), vector(&[("{}", 1.0)]));
        assert_eq!(got.len(), 8);
        assert!(
            got.iter()
                .all(|s| s.metric.metric_name() == Some("http_requests_total"))
        );
    }
    // Empty sides.
    assert!(vv_ok("a and b", canary(), Vector::new()).is_empty());
    assert_eq!(vv_ok("a unless b", canary(), Vector::new()).len(), 4);
    assert_eq!(vv_ok("a or b", Vector::new(), canary()).len(), 4);
    assert!(vv_ok("a and on() b", canary(), Vector::new()).is_empty());
}

#[test]
fn or_matches_without_names_and_keeps_the_marks() {
    // -metric_a or -metric_b from 0 to 20m: {} -1 -4 _ (metric_a has no sample at 10m).
    let neg = |name: &str, f: f64| vs(T_MUL, vector(&[(name, f)]), -1.0, true, false);
    let got = vv_ok("a or b", neg("metric_a", 1.0), neg("metric_b", 3.0));
    assert_eq!(got.len(), 1);
    assert!(got[0].drop_name && got[0].t == T);
    assert_result(&got, &[("{}", -1.0)], false);
    let got = vv_ok("a or b", Vector::new(), neg("metric_b", 4.0));
    assert!(got[0].drop_name && got[0].t == T);
    assert_result(&got, &[("{}", -4.0)], false);
}

#[test]
fn one_to_one_on_and_ignoring() {
    let canary = filter(http_requests_total(), |s| has(s, "group", "canary"));
    let production = filter(http_requests_total(), |s| has(s, "group", "production"));
    let want = [
        (r#"{instance="0", job="api-server"}"#, 3.0),
        (r#"{instance="0", job="app-server"}"#, 1.4),
        (r#"{instance="1", job="api-server"}"#, 2.0),
        (r#"{instance="1", job="app-server"}"#, 1.3333333333333333),
    ];
    assert_result(
        &vv_ok("a / on(instance,job) b", canary.clone(), production.clone()),
        &want,
        false,
    );
    assert_result(
        &vv_ok("a / ignoring(group) b", canary, production),
        &want,
        false,
    );
    let random = || vector(&[(r#"random{foo="bar"}"#, 2.0)]);
    let a = || vector(&[(r#"metricA{baz="meh"}"#, 3.0)]);
    let b = || vector(&[(r#"metricB{baz="meh"}"#, 4.0)]);
    assert_result(&vv_ok("a + on() b", random(), a()), &[("{}", 5.0)], false);
    assert_result(
        &vv_ok("a + ignoring() b", a(), b()),
        &[(r#"{baz="meh"}"#, 7.0)],
        false,
    );
    assert_result(&vv_ok("a + b", a(), b()), &[(r#"{baz="meh"}"#, 7.0)], false);
    // A comparison with `on` keeps only the `on` labels, name included only if listed.
    let got = vv_ok("a > on(baz) b", b(), a());
    assert_result(&got, &[(r#"{baz="meh"}"#, 4.0)], false);
    let got = vv_ok("a > ignoring(foo) b", b(), a());
    assert_result(&got, &[(r#"metricB{baz="meh"}"#, 4.0)], false);
}

#[test]
fn one_to_one_refuses_many_matches_even_when_filtered() {
    let many = || {
        vector(&[
            (r#"many_side{label="foo",job="test"}"#, 0.0),
            (r#"many_side{label="bar",job="test"}"#, 1.0),
        ])
    };
    let one = || vector(&[(r#"one_side{job="test"}"#, 1.0)]);
    for q in [
        "a > on(job) b",
        "a >= on(job) b",
        "a <= on(job) b",
        "a + on(job) b",
    ] {
        assert_eq!(
            vv_err(q, many(), one()),
            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
            "{q}"
        );
    }
}

#[test]
fn duplicates_on_the_one_side_are_reported_in_order() {
    let scalar_metric = || vector(&[("scalar_metric", 3.0)]);
    // beta first in the input: the message still lists alpha first.
    let dup = || {
        vector(&[
            (r#"dup_metric{label="beta"}"#, 2.0),
            (r#"dup_metric{label="alpha"}"#, 1.0),
        ])
    };
    assert_eq!(
        vv_err("a > on() b", scalar_metric(), dup()),
        r#"found duplicate series for the match group {} on the right hand-side of the operation: [{__name__="dup_metric", label="alpha"}, {__name__="dup_metric", label="beta"}];many-to-many matching not allowed: matching labels must be unique on one side"#
    );
    // With group_right the "one" side is the left.
    let node = || {
        vector(&[
            (r#"node_meta{instance="a", rack="1"}"#, 1.0),
            (r#"node_meta{instance="a", rack="2"}"#, 2.0),
        ])
    };
    let cpu = || vector(&[(r#"cpu_info{instance="a", cpu="0"}"#, 1.0)]);
    assert_eq!(
        vv_err("a * on(instance) group_right b", node(), cpu()),
        r#"found duplicate series for the match group {instance="a"} on the left hand-side of the operation: [{__name__="node_meta", instance="a", rack="1"}, {__name__="node_meta", instance="a", rack="2"}];many-to-many matching not allowed: matching labels must be unique on one side"#
    );
    // `ignoring` match groups leave the name out.
    assert_eq!(
        vv_err("a * ignoring(rack) group_left b", cpu(), node()),
        r#"found duplicate series for the match group {instance="a"} on the right hand-side of the operation: [{__name__="node_meta", instance="a", rack="1"}, {__name__="node_meta", instance="a", rack="2"}];many-to-many matching not allowed: matching labels must be unique on one side"#
    );
}

#[test]
fn many_to_one_results_must_be_unique() {
    let msg = "multiple matches for labels: grouping labels must ensure unique matches";
    // Two left-hand series of one group that differ only by name: arithmetic drops it.
    let lhs = vector(&[(r#"a{x="1", y="1"}"#, 1.0), (r#"b{x="1", y="1"}"#, 2.0)]);
    let rhs = || vector(&[(r#"c{x="1", y="9"}"#, 10.0)]);
    assert_eq!(vv_err("a * on(x) group_left b", lhs.clone(), rhs()), msg);
    // Comparisons keep the names, so the results differ.
    assert_eq!(vv_ok("a < on(x) group_left b", lhs, rhs()).len(), 2);
    // Copying y from the one side makes them equal, filtered out or not.
    let lhs = vector(&[(r#"a{x="1", y="1"}"#, 1.0), (r#"a{x="1", y="2"}"#, 2.0)]);
    assert_eq!(vv_err("a > on(x) group_left(y) b", lhs.clone(), rhs()), msg);
    assert_eq!(vv_err("a * on(x) group_left(y) b", lhs, rhs()), msg);
}

/// group_left/group_right data of operators.test at 1m.
fn node_var() -> Vector {
    vector(&[(r#"node_var{instance="abc",job="node"}"#, 2.0)])
}
fn node_role() -> Vector {
    vector(&[(
        r#"node_role{instance="abc",job="node",role="prometheus"}"#,
        1.0,
    )])
}
fn node_cpu() -> Vector {
    vector(&[
        (r#"node_cpu{instance="abc",job="node",mode="idle"}"#, 3.0),
        (r#"node_cpu{instance="abc",job="node",mode="user"}"#, 1.0),
        (r#"node_cpu{instance="def",job="node",mode="idle"}"#, 8.0),
        (r#"node_cpu{instance="def",job="node",mode="user"}"#, 2.0),
    ])
}

#[test]
fn group_left_and_group_right_copy_labels_from_the_one_side() {
    let want = [(r#"{instance="abc",job="node",role="prometheus"}"#, 2.0)];
    assert_result(
        &vv_ok(
            "a * on (instance) group_right (role) b",
            node_role(),
            node_var(),
        ),
        &want,
        false,
    );
    assert_result(
        &vv_ok(
            "a * on (instance) group_left (role) b",
            node_var(),
            node_role(),
        ),
        &want,
        false,
    );
    assert_result(
        &vv_ok(
            "a * ignoring (role) group_left (role) b",
            node_var(),
            node_role(),
        ),
        &want,
        false,
    );
    assert_result(
        &vv_ok(
            "a * ignoring (role) group_right (role) b",
            node_role(),
            node_var(),
        ),
        &want,
        false,
    );
    let want = [
        (
            r#"{instance="abc",job="node",mode="idle",role="prometheus"}"#,
            3.0,
        ),
        (
            r#"{instance="abc",job="node",mode="user",role="prometheus"}"#,
            1.0,
        ),
    ];
    assert_result(
        &vv_ok(
            "a * ignoring (role, mode) group_left (role) b",
            node_cpu(),
            node_role(),
        ),
        &want,
        false,
    );
    assert_result(
        &vv_ok(
            "a * on (instance) group_left (role) b",
            node_cpu(),
            node_role(),
        ),
        &want,
        false,
    );
}

#[test]
fn ratios_of_totals() {
    let sums = vector(&[
        (r#"{instance="abc",job="node"}"#, 4.0),
        (r#"{instance="def",job="node"}"#, 10.0),
    ]);
    let want = [
        (r#"{instance="abc",job="node",mode="idle"}"#, 0.75),
        (r#"{instance="abc",job="node",mode="user"}"#, 0.25),
        (r#"{instance="def",job="node",mode="idle"}"#, 0.8),
        (r#"{instance="def",job="node",mode="user"}"#, 0.2),
    ];
    assert_result(
        &vv_ok("a / on (instance) group_left b", node_cpu(), sums.clone()),
        &want,
        false,
    );
    assert_result(
        &vv_ok("a / ignoring (mode) group_left b", node_cpu(), sums.clone()),
        &want,
        false,
    );
    assert_result(
        &vv_ok("a / ignoring (mode) group_left(dummy) b", node_cpu(), sums),
        &want,
        false,
    );
    let by_mode = vector(&[
        (r#"{job="node",mode="idle"}"#, 11.0),
        (r#"{job="node",mode="user"}"#, 3.0),
    ]);
    let total = vector(&[(r#"{job="node"}"#, 14.0)]);
    assert_result(
        &vv_ok("a / on (job) group_left b", by_mode.clone(), total.clone()),
        &[
            (r#"{job="node",mode="idle"}"#, 0.7857142857142857),
            (r#"{job="node",mode="user"}"#, 0.21428571428571427),
        ],
        false,
    );
    assert_result(
        &vv_ok("a / ignoring (mode) group_left b", by_mode, total),
        &[
            (r#"{job="node",mode="idle"}"#, 0.7857142857142857),
            (r#"{job="node",mode="user"}"#, 0.21428571428571427),
        ],
        false,
    );
}

#[test]
fn group_left_with_thresholds_and_defaults() {
    let random0 = vs(
        T_MUL,
        vector(&[(r#"random{foo="bar"}"#, 1.0)]),
        0.0,
        false,
        false,
    );
    assert_result(
        &vv_ok("a + on(dummy) group_left(foo) b", node_cpu(), random0),
        &[
            (r#"{instance="abc",job="node",mode="idle",foo="bar"}"#, 3.0),
            (r#"{instance="abc",job="node",mode="user",foo="bar"}"#, 1.0),
            (r#"{instance="def",job="node",mode="idle",foo="bar"}"#, 8.0),
            (r#"{instance="def",job="node",mode="user",foo="bar"}"#, 2.0),
        ],
        false,
    );
    let threshold = || {
        vector(&[(
            r#"threshold{instance="abc",job="node",target="a@b.com"}"#,
            0.0,
        )])
    };
    assert_result(
        &vv_ok(
            "a > on(job, instance) group_left(target) b",
            node_cpu(),
            threshold(),
        ),
        &[
            (
                r#"node_cpu{instance="abc",job="node",mode="idle",target="a@b.com"}"#,
                3.0,
            ),
            (
                r#"node_cpu{instance="abc",job="node",mode="user",target="a@b.com"}"#,
                1.0,
            ),
        ],
        false,
    );
    // threshold or on (job, instance) (sum by (job, instance)(node_cpu) * 0 + 1)
    let defaults = vector(&[
        (r#"{instance="abc",job="node"}"#, 1.0),
        (r#"{instance="def",job="node"}"#, 1.0),
    ]);
    let thresholds = vv_ok("a or on (job, instance) b", threshold(), defaults);
    assert_result(
        &vv_ok(
            "a > on(job, instance) group_left(target) b",
            node_cpu(),
            thresholds,
        ),
        &[
            (
                r#"node_cpu{instance="abc",job="node",mode="idle",target="a@b.com"}"#,
                3.0,
            ),
            (
                r#"node_cpu{instance="abc",job="node",mode="user",target="a@b.com"}"#,
                1.0,
            ),
            (r#"node_cpu{instance="def",job="node",mode="idle"}"#, 8.0),
            (r#"node_cpu{instance="def",job="node",mode="user"}"#, 2.0),
        ],
        false,
    );
}

#[test]
fn collision_test_group_left_node() {
    let counts = vector(&[
        (
            r#"{cpu="10",namespace="observability",pod="node-exporter-l454v"}"#,
            1.0,
        ),
        (
            r#"{cpu="35",namespace="observability",pod="node-exporter-l454v"}"#,
            1.0,
        ),
        (
            r#"{cpu="89",namespace="observability",pod="node-exporter-l454v"}"#,
            1.0,
        ),
    ]);
    let info = vector(&[(
        r#"{__name__="node_namespace_pod:kube_pod_info:",namespace="observability",node="gke-search-infra-custom-96-253440-fli-d135b119-jx00",pod="node-exporter-l454v"}"#,
        1.0,
    )]);
    let node = "gke-search-infra-custom-96-253440-fli-d135b119-jx00";
    let want: Vec<(String, f64)> = ["10", "35", "89"]
        .iter()
        .map(|cpu| {
            (
                format!(r#"{{cpu="{cpu}",namespace="observability",node="{node}",pod="node-exporter-l454v"}}"#),
                1.0,
            )
        })
        .collect();
    let want: Vec<(&str, f64)> = want.iter().map(|(l, f)| (l.as_str(), *f)).collect();
    assert_result(
        &vv_ok("a * on(namespace, pod) group_left(node) b", counts, info),
        &want,
        false,
    );
}

fn left_right() -> (Vector, Vector) {
    (
        vector(&[
            (r#"left_vector{label="a"}"#, 10.0),
            (r#"left_vector{label="b"}"#, 20.0),
            (r#"left_vector{label="c"}"#, 30.0),
        ]),
        vector(&[
            (r#"right_vector{label="a"}"#, 100.0),
            (r#"right_vector{label="b"}"#, 200.0),
            (r#"right_vector{label="d"}"#, 400.0),
        ]),
    )
}

#[test]
fn fill_modifiers_with_arithmetic() {
    let run = |q: &str, want: &[(&str, f64)]| {
        let (l, r) = left_right();
        assert_result(&vv_ok(q, l, r), want, false);
    };
    run(
        "a + fill(0) b",
        &[
            (r#"{label="a"}"#, 110.0),
            (r#"{label="b"}"#, 220.0),
            (r#"{label="c"}"#, 30.0),
            (r#"{label="d"}"#, 400.0),
        ],
    );
    run(
        "a + fill_left(0) b",
        &[
            (r#"{label="a"}"#, 110.0),
            (r#"{label="b"}"#, 220.0),
            (r#"{label="d"}"#, 400.0),
        ],
    );
    run(
        "a + fill_right(0) b",
        &[
            (r#"{label="a"}"#, 110.0),
            (r#"{label="b"}"#, 220.0),
            (r#"{label="c"}"#, 30.0),
        ],
    );
    run(
        "a + fill_left(5) fill_right(7) b",
        &[
            (r#"{label="a"}"#, 110.0),
            (r#"{label="b"}"#, 220.0),
            (r#"{label="c"}"#, 37.0),
            (r#"{label="d"}"#, 405.0),
        ],
    );
    run(
        "a + fill(NaN) b",
        &[
            (r#"{label="a"}"#, 110.0),
            (r#"{label="b"}"#, 220.0),
            (r#"{label="c"}"#, f64::NAN),
            (r#"{label="d"}"#, f64::NAN),
        ],
    );
    run(
        "a + fill(-Inf) b",
        &[
            (r#"{label="a"}"#, 110.0),
            (r#"{label="b"}"#, 220.0),
            (r#"{label="c"}"#, f64::NEG_INFINITY),
            (r#"{label="d"}"#, f64::NEG_INFINITY),
        ],
    );
}

#[test]
fn fill_modifiers_with_comparisons() {
    let run = |q: &str, want: &[(&str, f64)]| {
        let (l, r) = left_right();
        assert_result(&vv_ok(q, l, r), want, false);
    };
    run("a == fill(30) b", &[(r#"left_vector{label="c"}"#, 30.0)]);
    run(
        "a != fill(30) b",
        &[
            (r#"left_vector{label="a"}"#, 10.0),
            (r#"left_vector{label="b"}"#, 20.0),
            (r#"{label="d"}"#, 30.0),
        ],
    );
    run("a > fill(25) b", &[(r#"left_vector{label="c"}"#, 30.0)]);
    run(
        "a == bool fill(30) b",
        &[
            (r#"{label="a"}"#, 0.0),
            (r#"{label="b"}"#, 0.0),
            (r#"{label="c"}"#, 1.0),
            (r#"{label="d"}"#, 0.0),
        ],
    );
    run(
        "a != bool fill(30) b",
        &[
            (r#"{label="a"}"#, 1.0),
            (r#"{label="b"}"#, 1.0),
            (r#"{label="c"}"#, 0.0),
            (r#"{label="d"}"#, 1.0),
        ],
    );
    run(
        "a > bool fill(25) b",
        &[
            (r#"{label="a"}"#, 0.0),
            (r#"{label="b"}"#, 0.0),
            (r#"{label="c"}"#, 1.0),
            (r#"{label="d"}"#, 0.0),
        ],
    );
}

#[test]
fn fill_modifiers_with_on_and_ignoring() {
    let l = || {
        vector(&[
            (r#"left_vector{job="foo", instance="a"}"#, 10.0),
            (r#"left_vector{job="foo", instance="b"}"#, 20.0),
            (r#"left_vector{job="bar", instance="a"}"#, 30.0),
        ])
    };
    let r = || {
        vector(&[
            (r#"right_vector{job="foo", instance="a"}"#, 100.0),
            (r#"right_vector{job="foo", instance="c"}"#, 300.0),
        ])
    };
    assert_result(
        &vv_ok("a + on(job, instance) fill(0) b", l(), r()),
        &[
            (r#"{job="foo", instance="a"}"#, 110.0),
            (r#"{job="foo", instance="b"}"#, 20.0),
            (r#"{job="bar", instance="a"}"#, 30.0),
            (r#"{job="foo", instance="c"}"#, 300.0),
        ],
        false,
    );
    assert_result(
        &vv_ok("a + on(job, instance) fill_right(0) b", l(), r()),
        &[
            (r#"{job="foo", instance="a"}"#, 110.0),
            (r#"{job="foo", instance="b"}"#, 20.0),
            (r#"{job="bar", instance="a"}"#, 30.0),
        ],
        false,
    );
    assert_result(
        &vv_ok("a + on(job, instance) fill_left(0) b", l(), r()),
        &[
            (r#"{job="foo", instance="a"}"#, 110.0),
            (r#"{job="foo", instance="c"}"#, 300.0),
        ],
        false,
    );
    let r = vector(&[
        (r#"right_vector{instance="a"}"#, 100.0),
        (r#"right_vector{instance="c"}"#, 300.0),
    ]);
    assert_result(
        &vv_ok("a + ignoring(job) group_left fill(0) b", l(), r),
        &[
            (r#"{instance="a", job="foo"}"#, 110.0),
            (r#"{instance="a", job="bar"}"#, 130.0),
            (r#"{instance="b", job="foo"}"#, 20.0),
            (r#"{instance="c"}"#, 300.0),
        ],
        false,
    );
}

#[test]
fn fill_modifiers_with_group_left_and_group_right() {
    let requests = || {
        vector(&[
            (r#"requests{method="GET", status="200"}"#, 100.0),
            (r#"requests{method="POST", status="200"}"#, 200.0),
            (r#"requests{method="GET", status="500"}"#, 10.0),
            (r#"requests{method="POST", status="500"}"#, 20.0),
        ])
    };
    let limits = || {
        vector(&[
            (r#"limits{status="200"}"#, 1000.0),
            (r#"limits{status="404"}"#, 500.0),
            (r#"limits{status="500"}"#, 50.0),
        ])
    };
    assert_result(
        &vv_ok(
            "a / on(status) group_left fill_right(1) b",
            requests(),
            limits(),
        ),
        &[
            (r#"{method="GET", status="200"}"#, 0.1),
            (r#"{method="POST", status="200"}"#, 0.2),
            (r#"{method="GET", status="500"}"#, 0.2),
            (r#"{method="POST", status="500"}"#, 0.4),
        ],
        false,
    );
    for q in [
        "a + on(status) group_left fill_left(0) b",
        "a + on(status) group_left fill(0) b",
    ] {
        assert_result(
            &vv_ok(q, requests(), limits()),
            &[
                (r#"{method="GET", status="200"}"#, 1100.0),
                (r#"{method="POST", status="200"}"#, 1200.0),
                (r#"{method="GET", status="500"}"#, 60.0),
                (r#"{method="POST", status="500"}"#, 70.0),
                (r#"{status="404"}"#, 500.0),
            ],
            false,
        );
    }
    let cpu_info = || {
        vector(&[
            (r#"cpu_info{instance="a", cpu="0"}"#, 1.0),
            (r#"cpu_info{instance="a", cpu="1"}"#, 1.0),
            (r#"cpu_info{instance="b", cpu="0"}"#, 1.0),
        ])
    };
    let node_meta = || {
        vector(&[
            (r#"node_meta{instance="a"}"#, 100.0),
            (r#"node_meta{instance="c"}"#, 300.0),
        ])
    };
    // As in Prometheus, group_right swaps the sides before the fills apply.
    assert_result(
        &vv_ok(
            "a * on(instance) group_right fill_left(1) b",
            node_meta(),
            cpu_info(),
        ),
        &[
            (r#"{instance="a", cpu="0"}"#, 100.0),
            (r#"{instance="a", cpu="1"}"#, 100.0),
            (r#"{instance="c"}"#, 300.0),
        ],
        false,
    );
    assert_result(
        &vv_ok(
            "a * on(instance) group_right fill_right(0) b",
            node_meta(),
            cpu_info(),
        ),
        &[
            (r#"{instance="a", cpu="0"}"#, 100.0),
            (r#"{instance="a", cpu="1"}"#, 100.0),
            (r#"{instance="b", cpu="0"}"#, 0.0),
        ],
        false,
    );
    assert_result(
        &vv_ok(
            "a * on(instance) group_right fill(1) b",
            node_meta(),
            cpu_info(),
        ),
        &[
            (r#"{instance="a", cpu="0"}"#, 100.0),
            (r#"{instance="a", cpu="1"}"#, 100.0),
            (r#"{instance="b", cpu="0"}"#, 1.0),
            (r#"{instance="c"}"#, 300.0),
        ],
        false,
    );
    // A filled "one" side has no labels to copy.
    let requests = vector(&[
        (r#"requests{method="GET", status="200"}"#, 100.0),
        (r#"requests{method="POST", status="200"}"#, 200.0),
    ]);
    let limits = vector(&[
        (r#"limits{status="200", owner="team-a"}"#, 1000.0),
        (r#"limits{status="500", owner="team-b"}"#, 50.0),
    ]);
    assert_result(
        &vv_ok(
            "a + on(status) group_left(owner) fill_right(0) b",
            requests,
            limits,
        ),
        &[
            (r#"{method="GET", status="200", owner="team-a"}"#, 1100.0),
            (r#"{method="POST", status="200", owner="team-a"}"#, 1200.0),
        ],
        false,
    );
}

#[test]
fn fill_modifiers_at_the_edges() {
    let only_left = || {
        vector(&[
            (r#"only_left{label="a"}"#, 10.0),
            (r#"only_left{label="b"}"#, 20.0),
        ])
    };
    let only_right = || {
        vector(&[
            (r#"only_right{label="c"}"#, 30.0),
            (r#"only_right{label="d"}"#, 40.0),
        ])
    };
    assert_result(
        &vv_ok("a + fill(0) b", only_left(), only_right()),
        &[
            (r#"{label="a"}"#, 10.0),
            (r#"{label="b"}"#, 20.0),
            (r#"{label="c"}"#, 30.0),
            (r#"{label="d"}"#, 40.0),
        ],
        false,
    );
    assert_result(
        &vv_ok("a + fill_left(0) b", only_left(), only_right()),
        &[(r#"{label="c"}"#, 30.0), (r#"{label="d"}"#, 40.0)],
        false,
    );
    assert_result(
        &vv_ok("a + fill_right(0) b", only_left(), only_right()),
        &[(r#"{label="a"}"#, 10.0), (r#"{label="b"}"#, 20.0)],
        false,
    );
    // One side empty.
    let ab = [(r#"{label="a"}"#, 10.0), (r#"{label="b"}"#, 20.0)];
    assert_result(
        &vv_ok("a + fill_right(0) b", only_left(), Vector::new()),
        &ab,
        false,
    );
    assert!(vv_ok("a + fill_left(0) b", only_left(), Vector::new()).is_empty());
    assert_result(
        &vv_ok("a + fill_left(0) b", Vector::new(), only_left()),
        &ab,
        false,
    );
    assert!(vv_ok("a + fill_right(0) b", Vector::new(), only_left()).is_empty());
    assert_result(
        &vv_ok("a + fill(0) b", only_left(), Vector::new()),
        &ab,
        false,
    );
    assert_result(
        &vv_ok("a + fill(0) b", Vector::new(), only_left()),
        &ab,
        false,
    );
    // group_left fill_left at the step where the left side is missing (the regression
    // Prometheus guards against): matched_lhs + on(key) group_left fill_left(0) matched_rhs
    // at 5m.
    let rhs = vector(&[
        (r#"matched_rhs{key="a"}"#, 20.0),
        (r#"matched_rhs{key="b"}"#, 200.0),
    ]);
    assert_result(
        &vv_ok("a + on(key) group_left fill_left(0) b", Vector::new(), rhs),
        &[(r#"{key="a"}"#, 20.0), (r#"{key="b"}"#, 200.0)],
        false,
    );
}

#[test]
fn filled_left_series_that_share_a_group_are_many_matches() {
    let lhs = vector(&[(r#"x{job="a", i="1"}"#, 1.0), (r#"x{job="a", i="2"}"#, 2.0)]);
    let rhs = vector(&[(r#"y{job="b"}"#, 1.0)]);
    assert_eq!(
        vv_err("a + on(job) fill_right(0) b", lhs, rhs),
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    );
}

#[test]
fn comparisons_keep_the_pending_name_removal_of_their_left_side() {
    let marked = |text: &str, f: f64| Sample {
        drop_name: true,
        ..sample(text, f)
    };
    let got = vv_ok(
        "a > b",
        vec![marked(r#"a{env="1"}"#, 2.0)],
        vec![marked(r#"b{env="1"}"#, 1.0)],
    );
    assert!(got[0].drop_name);
    assert_result(&got, &[(r#"{env="1"}"#, 2.0)], false);
}

#[test]
fn results_carry_the_evaluation_time() {
    let got = vv_ok("a + b", sum_by_job(), sum_by_job());
    assert!(got.iter().all(|s| s.t == T));
    let got = vv_ok("a and b", sum_by_job(), sum_by_job());
    assert!(got.iter().all(|s| s.t == T));
}

#[test]
fn hash_collisions_cannot_merge_match_groups() {
    // Thousands of distinct groups on both sides: every one must find exactly its partner.
    let lhs: Vector = (0..3000)
        .map(|i| sample(&format!(r#"l{{k="{i}", side="l"}}"#), f64::from(i)))
        .collect();
    let rhs: Vector = (0..3000)
        .rev()
        .map(|i| sample(&format!(r#"r{{k="{i}"}}"#), 0.5))
        .collect();
    let got = vv_ok("a - on(k) b", lhs, rhs);
    assert_eq!(got.len(), 3000);
    for s in &got {
        let k: f64 = s.metric.get("k").unwrap().parse().unwrap();
        assert_eq!(s.f, k - 0.5);
        assert_eq!(s.metric.len(), 1);
    }
}

mod across_steps {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::query::Metric;
    use crate::query::aggregate::tests::labels;
    use crate::query::binary::VectorBinop;

    /// Runs `query`'s operator over the steps of a range query, one node kept throughout.
    fn range(query: &str, steps: Vec<(Vector, Vector)>) -> Vec<Vector> {
        let (op, m) = parsed(query);
        let mut node = VectorBinop::new(op, m.as_ref()).unwrap();
        let mut ann = Annotations::default();
        steps
            .into_iter()
            .map(|(l, r)| node.step(l, r, T, &mut ann).unwrap())
            .collect()
    }

    /// One series' values over the steps, `None` where it has no sample.
    fn series(out: &[Vector], text: &str) -> Vec<Option<f64>> {
        let want = labels(text);
        out.iter()
            .map(|v| v.iter().find(|s| *s.metric == want).map(|s| s.f))
            .collect()
    }

    #[test]
    fn fill_left_applies_at_every_step_of_a_range() {
        // matched_lhs{key="a"} 1 _ 3; matched_rhs{key="a"} 10 20 30, {key="b"} 100 200 300.
        let lhs = |f: Option<f64>| {
            f.map_or_else(Vector::new, |f| vec![sample(r#"matched_lhs{key="a"}"#, f)])
        };
        let rhs = |a: f64, b: f64| {
            vector(&[
                (r#"matched_rhs{key="a"}"#, a),
                (r#"matched_rhs{key="b"}"#, b),
            ])
        };
        let out = range(
            "a + on(key) group_left fill_left(0) b",
            vec![
                (lhs(Some(1.0)), rhs(10.0, 100.0)),
                (lhs(None), rhs(20.0, 200.0)),
                (lhs(Some(3.0)), rhs(30.0, 300.0)),
            ],
        );
        assert_eq!(
            series(&out, r#"{key="a"}"#),
            [Some(11.0), Some(20.0), Some(33.0)]
        );
        assert_eq!(
            series(&out, r#"{key="b"}"#),
            [Some(100.0), Some(200.0), Some(300.0)]
        );
    }

    #[test]
    fn fills_follow_intermittent_series() {
        // intermittent_left{label="a"} 1 _ 3 _ 5, {label="b"} _ 20 _ 40 _
        // intermittent_right{label="a"} _ 200 _ 400 _, {b} 100 _ 300 _ 500, {c} 1000 _ _ 4000 5000
        let left = [
            [Some(1.0), None],
            [None, Some(20.0)],
            [Some(3.0), None],
            [None, Some(40.0)],
            [Some(5.0), None],
        ];
        let right = [
            [None, Some(100.0), Some(1000.0)],
            [Some(200.0), None, None],
            [None, Some(300.0), None],
            [Some(400.0), None, Some(4000.0)],
            [None, Some(500.0), Some(5000.0)],
        ];
        let step = |i: usize| {
            let mut l = Vector::new();
            for (j, f) in left[i].iter().enumerate() {
                if let Some(f) = f {
                    l.push(sample(
                        &format!(r#"intermittent_left{{label="{}"}}"#, ["a", "b"][j]),
                        *f,
                    ));
                }
            }
            let mut r = Vector::new();
            for (j, f) in right[i].iter().enumerate() {
                if let Some(f) = f {
                    r.push(sample(
                        &format!(r#"intermittent_right{{label="{}"}}"#, ["a", "b", "c"][j]),
                        *f,
                    ));
                }
            }
            (l, r)
        };
        let out = range("a + fill(0) b", (0..5).map(step).collect());
        assert_eq!(
            series(&out, r#"{label="a"}"#),
            [Some(1.0), Some(200.0), Some(3.0), Some(400.0), Some(5.0)]
        );
        assert_eq!(
            series(&out, r#"{label="b"}"#),
            [
                Some(100.0),
                Some(20.0),
                Some(300.0),
                Some(40.0),
                Some(500.0)
            ]
        );
        assert_eq!(
            series(&out, r#"{label="c"}"#),
            [Some(1000.0), None, None, Some(4000.0), Some(5000.0)]
        );
        let out = range("a + fill_right(0) b", (0..5).map(step).collect());
        assert_eq!(
            series(&out, r#"{label="a"}"#),
            [Some(1.0), None, Some(3.0), None, Some(5.0)]
        );
        assert_eq!(
            series(&out, r#"{label="b"}"#),
            [None, Some(20.0), None, Some(40.0), None]
        );
        assert_eq!(series(&out, r#"{label="c"}"#), [None; 5]);
        let out = range("a + fill_left(0) b", (0..5).map(step).collect());
        assert_eq!(
            series(&out, r#"{label="a"}"#),
            [None, Some(200.0), None, Some(400.0), None]
        );
        assert_eq!(
            series(&out, r#"{label="b"}"#),
            [Some(100.0), None, Some(300.0), None, Some(500.0)]
        );
    }

    #[test]
    fn results_keep_their_label_sets_between_steps() {
        let (op, m) = parsed("a / on(instance) group_left b");
        let mut node = VectorBinop::new(op, m.as_ref()).unwrap();
        let mut ann = Annotations::default();
        let cpu = node_cpu();
        let sums = vector(&[
            (r#"{instance="abc",job="node"}"#, 4.0),
            (r#"{instance="def",job="node"}"#, 10.0),
        ]);
        let first = node.step(cpu.clone(), sums.clone(), T, &mut ann).unwrap();
        let second = node.step(cpu, sums, T, &mut ann).unwrap();
        assert_eq!(first.len(), 4);
        for (a, b) in first.iter().zip(&second) {
            assert!(Arc::ptr_eq(&a.metric, &b.metric));
        }
    }

    #[test]
    fn copied_labels_follow_the_series_matched_at_each_step() {
        let (op, m) = parsed("a + on(job) group_left(owner) b");
        let mut node = VectorBinop::new(op, m.as_ref()).unwrap();
        let mut ann = Annotations::default();
        let lhs = vector(&[(r#"x{job="a", i="1"}"#, 1.0)]);
        let first = vector(&[(r#"limits{job="a", owner="o1"}"#, 10.0)]);
        let second = vector(&[(r#"quotas{job="a", owner="o2"}"#, 20.0)]);
        let got = node.step(lhs.clone(), first, T, &mut ann).unwrap();
        assert_result(&got, &[(r#"{job="a", i="1", owner="o1"}"#, 11.0)], false);
        let got = node.step(lhs.clone(), second, T, &mut ann).unwrap();
        assert_result(&got, &[(r#"{job="a", i="1", owner="o2"}"#, 21.0)], false);
        let got = node
            .step(lhs, vector(&[(r#"quotas{job="a"}"#, 5.0)]), T, &mut ann)
            .unwrap();
        assert_result(&got, &[(r#"{job="a", i="1"}"#, 6.0)], false);
    }

    const LEFT: [&str; 6] = [
        r#"x{job="a", instance="0"}"#,
        r#"x{job="a", instance="1"}"#,
        r#"y{job="b", instance="0"}"#,
        r#"x{job="b", instance="1"}"#,
        r#"x{instance="2"}"#,
        r#"w{job="c", instance="0"}"#,
    ];
    const RIGHT: [&str; 5] = [
        r#"r{job="a", instance="0", owner="o1"}"#,
        r#"r{job="b", instance="0"}"#,
        r#"s{job="a", instance="1", owner="o2"}"#,
        r#"r{job="c"}"#,
        r#"x{job="a", instance="0"}"#,
    ];
    const VALUES: [f64; 6] = [0.0, 2.5, -4.0, f64::NAN, 2.5, 1e300];

    type Side = Vec<(usize, usize, bool)>;

    fn side(n: usize) -> impl Strategy<Value = Side> {
        proptest::collection::vec((0..n, 0..VALUES.len(), any::<bool>()), 0..8)
    }

    fn make(pool: &[Metric], picks: &Side) -> Vector {
        let mut used = vec![false; pool.len()];
        let mut v = Vector::new();
        for &(i, val, fresh) in picks {
            if std::mem::replace(&mut used[i], true) {
                continue;
            }
            let metric = if fresh {
                Arc::new((*pool[i]).clone())
            } else {
                Arc::clone(&pool[i])
            };
            v.push(Sample {
                h: None,
                metric,
                t: T - 3,
                f: VALUES[val],
                drop_name: val == 1,
            });
        }
        v
    }

    fn same(a: &Result<Vector, String>, b: &Result<Vector, String>) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => {
                a.len() == b.len()
                    && a.iter().zip(b).all(|(x, y)| {
                        x.metric == y.metric
                            && x.t == y.t
                            && x.drop_name == y.drop_name
                            && (x.f.to_bits() == y.f.to_bits() || x.f.is_nan() && y.f.is_nan())
                    })
            }
            (Err(a), Err(b)) => a == b,
            _ => false,
        }
    }

    const QUERIES: [&str; 14] = [
        "a + b",
        "a - on(job) b",
        "a * ignoring(instance, owner) b",
        "a > b",
        "a <= bool on(job, instance) b",
        "a / on(job) group_left b",
        "a + on(job, instance) group_left(owner) b",
        "a < ignoring(instance) group_right b",
        "a + on(job) fill(0) b",
        "a - on(job) group_left fill_left(1) fill_right(2) b",
        "a and on(job) b",
        "a or b",
        "a unless ignoring(instance) b",
        "a or on(instance) b",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn stateful_steps_equal_fresh_steps(steps in proptest::collection::vec((side(LEFT.len()), side(RIGHT.len())), 1..6)) {
            let left: Vec<Metric> = LEFT.iter().map(|l| Arc::new(labels(l))).collect();
            let right: Vec<Metric> = RIGHT.iter().map(|l| Arc::new(labels(l))).collect();
            for q in QUERIES {
                let (op, m) = parsed(q);
                let mut node = VectorBinop::new(op, m.as_ref()).unwrap();
                for (l, r) in &steps {
                    let (l, r) = (make(&left, l), make(&right, r));
                    let mut ann = Annotations::default();
                    let kept = node.step(l.clone(), r.clone(), T, &mut ann).map_err(|e| e.to_string());
                    let fresh = vector_vector(op, l, r, m.as_ref(), T, &mut ann).map_err(|e| e.to_string());
                    prop_assert!(same(&kept, &fresh), "{q}\n{kept:?}\n{fresh:?}");
                }
            }
        }
    }
}
