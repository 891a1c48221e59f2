//! Expectations from Prometheus's aggregators.test, limit.test and name_label_dropping.test,
//! with each step's input vector worked out by hand from the scripts' `load` lines.

use std::sync::Arc;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_LIMIT_RATIO, T_LIMITK, T_MAX, T_MIN,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUM, T_TOPK, TokenId, TokenType,
};
use promql_parser::parser::{self, Expr, LabelModifier};

use super::{AggParam, aggregate};
use crate::model::{Labels, METRIC_NAME};
use crate::query::{Annotations, QueryError, Sample, Vector};

/// The evaluation time handed to the operators; inputs carry other (stored) timestamps.
pub(crate) const T: i64 = 3_000_017;

/// A label set written as PromQL prints it: `name{a="b"}`, `{a="b"}` or `{}`.
pub(crate) fn labels(text: &str) -> Labels {
    if text.trim() == "{}" {
        return Labels::empty();
    }
    let Expr::VectorSelector(vs) = parser::parse(text).unwrap() else {
        panic!("{text} is not a selector");
    };
    let mut pairs: Vec<(String, String)> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    if let Some(n) = vs
        .name
        .filter(|_| pairs.iter().all(|(n, _)| n != METRIC_NAME))
    {
        pairs.push((METRIC_NAME.to_string(), n));
    }
    Labels::new(pairs).unwrap()
}

/// A sample as a selector would return it: its own (irregular) timestamp, no name dropping.
pub(crate) fn sample(text: &str, f: f64) -> Sample {
    Sample {
        h: None,
        metric: Arc::new(labels(text)),
        t: T - 1_234,
        f,
        drop_name: false,
    }
}

pub(crate) fn vector(items: &[(&str, f64)]) -> Vector {
    items.iter().map(|(l, f)| sample(l, *f)).collect()
}

/// What the evaluator makes of a result at the end of a query: `__name__` removed where
/// marked. Also checks that every sample carries the evaluation time.
pub(crate) fn finish(v: &Vector) -> Vec<(Labels, f64)> {
    v.iter()
        .map(|s| {
            assert_eq!(s.t, T, "{:?} keeps its input timestamp", s.metric);
            let mut l = (*s.metric).clone();
            if s.drop_name {
                let mut b = l.to_builder();
                b.remove(METRIC_NAME);
                l = b.build().unwrap();
            }
            (l, s.f)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || ((a - b).abs() <= 1e-9 * a.abs().max(b.abs()))
}

/// Compares a result (after [`finish`]) with `want`, in order or as sets.
pub(crate) fn assert_result(got: &Vector, want: &[(&str, f64)], ordered: bool) {
    let mut got = finish(got);
    let mut want: Vec<(Labels, f64)> = want.iter().map(|(l, f)| (labels(l), *f)).collect();
    if !ordered {
        got.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let ok = got.len() == want.len()
        && got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.0 == w.0 && close(g.1, w.1));
    assert!(ok, "got {got:?}\nwant {want:?}");
}

fn by(names: &[&str]) -> Option<LabelModifier> {
    Some(LabelModifier::include(names.to_vec()))
}

fn without(names: &[&str]) -> Option<LabelModifier> {
    Some(LabelModifier::exclude(names.to_vec()))
}

fn agg(op: TokenId, m: &Option<LabelModifier>, param: AggParam, input: Vector) -> Vector {
    let mut ann = Annotations::default();
    let out = aggregate(TokenType::new(op), m.as_ref(), param, input, T, &mut ann).unwrap();
    assert!(ann.warnings.is_empty() && ann.infos.is_empty(), "{ann:?}");
    out
}

fn agg_err(op: TokenId, param: AggParam, input: Vector) -> String {
    let mut ann = Annotations::default();
    let err = aggregate(TokenType::new(op), None, param, input, T, &mut ann).unwrap_err();
    assert!(matches!(err, QueryError::Execution(_)), "{err:?}");
    err.to_string()
}

/// `http_requests` of aggregators.test at 50m (each series is 0+Nx10 at 5m steps).
fn http_requests() -> Vector {
    vector(&[
        (
            r#"http_requests{job="api-server", instance="0", group="production"}"#,
            100.0,
        ),
        (
            r#"http_requests{job="api-server", instance="1", group="production"}"#,
            200.0,
        ),
        (
            r#"http_requests{job="api-server", instance="0", group="canary"}"#,
            300.0,
        ),
        (
            r#"http_requests{job="api-server", instance="1", group="canary"}"#,
            400.0,
        ),
        (
            r#"http_requests{job="app-server", instance="0", group="production"}"#,
            500.0,
        ),
        (
            r#"http_requests{job="app-server", instance="1", group="production"}"#,
            600.0,
        ),
        (
            r#"http_requests{job="app-server", instance="0", group="canary"}"#,
            700.0,
        ),
        (
            r#"http_requests{job="app-server", instance="1", group="canary"}"#,
            800.0,
        ),
    ])
}

fn api_server() -> Vector {
    http_requests()
        .into_iter()
        .filter(|s| s.metric.get("job") == Some("api-server"))
        .collect()
}

#[test]
fn sum_avg_count_by_group() {
    let got = agg(T_SUM, &by(&["group"]), AggParam::None, api_server());
    assert_result(
        &got,
        &[
            (r#"{group="canary"}"#, 700.0),
            (r#"{group="production"}"#, 300.0),
        ],
        false,
    );
    let got = agg(T_AVG, &by(&["group"]), AggParam::None, api_server());
    assert_result(
        &got,
        &[
            (r#"{group="canary"}"#, 350.0),
            (r#"{group="production"}"#, 150.0),
        ],
        false,
    );
    let got = agg(T_COUNT, &by(&["group"]), AggParam::None, api_server());
    assert_result(
        &got,
        &[
            (r#"{group="canary"}"#, 2.0),
            (r#"{group="production"}"#, 2.0),
        ],
        false,
    );
}

#[test]
fn groups_come_out_in_order_of_first_appearance() {
    let got = agg(T_SUM, &by(&["group"]), AggParam::None, api_server());
    assert_result(
        &got,
        &[
            (r#"{group="production"}"#, 300.0),
            (r#"{group="canary"}"#, 700.0),
        ],
        true,
    );
}

#[test]
fn without_by_empty_and_no_modifier() {
    let got = agg(T_SUM, &without(&["instance"]), AggParam::None, api_server());
    assert_result(
        &got,
        &[
            (r#"{group="canary",job="api-server"}"#, 700.0),
            (r#"{group="production",job="api-server"}"#, 300.0),
        ],
        false,
    );
    assert_result(
        &agg(T_SUM, &by(&[]), AggParam::None, api_server()),
        &[("{}", 1000.0)],
        false,
    );
    assert_result(
        &agg(T_SUM, &None, AggParam::None, api_server()),
        &[("{}", 1000.0)],
        false,
    );
    // `without ()` still drops the metric name.
    let production: Vector = api_server()
        .into_iter()
        .filter(|s| s.metric.get("group") == Some("production"))
        .collect();
    assert_result(
        &agg(T_SUM, &without(&[]), AggParam::None, production),
        &[
            (
                r#"{group="production",job="api-server",instance="0"}"#,
                100.0,
            ),
            (
                r#"{group="production",job="api-server",instance="1"}"#,
                200.0,
            ),
        ],
        false,
    );
    assert!(agg(T_SUM, &None, AggParam::None, Vector::new()).is_empty());
}

#[test]
fn without_with_mismatched_and_missing_labels() {
    let mut input = api_server();
    input.extend(vector(&[
        (
            r#"foo{job="api-server", instance="0", region="europe"}"#,
            900.0,
        ),
        (r#"foo{job="api-server"}"#, 1000.0),
    ]));
    assert_result(
        &agg(T_SUM, &without(&["instance"]), AggParam::None, input),
        &[
            (r#"{group="canary",job="api-server"}"#, 700.0),
            (r#"{group="production",job="api-server"}"#, 300.0),
            (r#"{region="europe",job="api-server"}"#, 900.0),
            (r#"{job="api-server"}"#, 1000.0),
        ],
        false,
    );
}

#[test]
fn by_job_min_max_avg_and_nonexistent_labels() {
    let m = by(&["job", "nonexistent"]);
    assert_result(
        &agg(T_SUM, &m, AggParam::None, http_requests()),
        &[
            (r#"{job="api-server"}"#, 1000.0),
            (r#"{job="app-server"}"#, 2600.0),
        ],
        false,
    );
    let m = by(&["job"]);
    assert_result(
        &agg(T_MIN, &m, AggParam::None, http_requests()),
        &[
            (r#"{job="api-server"}"#, 100.0),
            (r#"{job="app-server"}"#, 500.0),
        ],
        false,
    );
    assert_result(
        &agg(T_MAX, &m, AggParam::None, http_requests()),
        &[
            (r#"{job="api-server"}"#, 400.0),
            (r#"{job="app-server"}"#, 800.0),
        ],
        false,
    );
    assert_result(
        &agg(T_AVG, &m, AggParam::None, http_requests()),
        &[
            (r#"{job="api-server"}"#, 250.0),
            (r#"{job="app-server"}"#, 650.0),
        ],
        false,
    );
    assert_result(
        &agg(
            T_SUM,
            &by(&["job", "group"]),
            AggParam::None,
            http_requests(),
        ),
        &[
            (r#"{group="canary", job="api-server"}"#, 700.0),
            (r#"{group="canary", job="app-server"}"#, 1500.0),
            (r#"{group="production", job="api-server"}"#, 300.0),
            (r#"{group="production", job="app-server"}"#, 1100.0),
        ],
        false,
    );
}

#[test]
fn stddev_and_stdvar() {
    assert_result(
        &agg(T_STDDEV, &None, AggParam::None, http_requests()),
        &[("{}", 229.12878474779)],
        false,
    );
    assert_result(
        &agg(
            T_STDDEV,
            &by(&["instance"]),
            AggParam::None,
            http_requests(),
        ),
        &[
            (r#"{instance="0"}"#, 223.60679774998),
            (r#"{instance="1"}"#, 223.60679774998),
        ],
        false,
    );
    assert_result(
        &agg(T_STDVAR, &None, AggParam::None, http_requests()),
        &[("{}", 52500.0)],
        false,
    );
    assert_result(
        &agg(
            T_STDVAR,
            &by(&["instance"]),
            AggParam::None,
            http_requests(),
        ),
        &[
            (r#"{instance="0"}"#, 50000.0),
            (r#"{instance="1"}"#, 50000.0),
        ],
        false,
    );
    // 0+1.33x10 at 50m, three times: exactly zero spread.
    let v = 1.33 * 10.0;
    let same = vector(&[(r#"x{i="0"}"#, v), (r#"x{i="1"}"#, v), (r#"x{i="2"}"#, v)]);
    let got = agg(T_STDDEV, &None, AggParam::None, same.clone());
    assert_eq!(got[0].f, 0.0);
    let got = agg(T_STDVAR, &None, AggParam::None, same);
    assert_eq!(got[0].f, 0.0);
}

#[test]
fn stddev_with_nan_or_inf_anywhere_is_nan() {
    let names = ["a", "b", "c"];
    for special in [f64::NAN, f64::INFINITY] {
        for pos in 0..3 {
            // The special value at `pos`, 1 and 2 elsewhere in order.
            let mut plain = [1.0, 2.0].into_iter();
            let input: Vector = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let f = if i == pos {
                        special
                    } else {
                        plain.next().unwrap()
                    };
                    sample(&format!(r#"series{{label="{n}"}}"#), f)
                })
                .collect();
            for op in [T_STDDEV, T_STDVAR] {
                let got = agg(op, &None, AggParam::None, input.clone());
                assert!(got[0].f.is_nan(), "{special} at {pos}: {}", got[0].f);
                let got = agg(op, &by(&["label"]), AggParam::None, input.clone());
                assert_eq!(got.len(), 3);
                for s in &got {
                    let special_here = s.metric.get("label") == Some(names[pos]);
                    assert_eq!(s.f.is_nan(), special_here, "{:?}", s.metric);
                    if !special_here {
                        assert_eq!(s.f, 0.0);
                    }
                }
            }
        }
    }
    let lone = vector(&[("series", f64::INFINITY)]);
    assert!(agg(T_STDDEV, &None, AggParam::None, lone)[0].f.is_nan());
}

#[test]
fn grouping_key_keeps_names_and_values_apart() {
    let input = vector(&[
        (r#"label_grouping_test{a="aa", b="bb"}"#, 100.0),
        (r#"label_grouping_test{a="a", b="abb"}"#, 200.0),
    ]);
    assert_result(
        &agg(T_SUM, &by(&["a", "b"]), AggParam::None, input),
        &[
            (r#"{a="a", b="abb"}"#, 200.0),
            (r#"{a="aa", b="bb"}"#, 100.0),
        ],
        false,
    );
}

#[test]
fn min_and_max_skip_nan() {
    let input = vector(&[
        (
            r#"http_requests{job="api-server", instance="0", group="production"}"#,
            1.0,
        ),
        (
            r#"http_requests{job="api-server", instance="1", group="production"}"#,
            2.0,
        ),
        (
            r#"http_requests{job="api-server", instance="0", group="canary"}"#,
            f64::NAN,
        ),
        (
            r#"http_requests{job="api-server", instance="1", group="canary"}"#,
            3.0,
        ),
        (
            r#"http_requests{job="api-server", instance="2", group="canary"}"#,
            4.0,
        ),
    ]);
    assert_result(
        &agg(T_MAX, &None, AggParam::None, input.clone()),
        &[("{}", 4.0)],
        false,
    );
    assert_result(
        &agg(T_MIN, &None, AggParam::None, input.clone()),
        &[("{}", 1.0)],
        false,
    );
    assert_result(
        &agg(T_MAX, &by(&["group"]), AggParam::None, input.clone()),
        &[
            (r#"{group="production"}"#, 2.0),
            (r#"{group="canary"}"#, 4.0),
        ],
        false,
    );
    assert_result(
        &agg(T_MIN, &by(&["group"]), AggParam::None, input),
        &[
            (r#"{group="production"}"#, 1.0),
            (r#"{group="canary"}"#, 3.0),
        ],
        false,
    );
    let all_nan = vector(&[("a", f64::NAN), ("b", f64::NAN)]);
    assert!(agg(T_MAX, &None, AggParam::None, all_nan)[0].f.is_nan());
}

/// The topk/bottomk series of aggregators.test at 50m, floats only.
fn topk_input() -> Vector {
    let mut v = vector(&[
        (
            r#"http_requests{job="api-server", instance="0", group="production"}"#,
            100.0,
        ),
        (
            r#"http_requests{job="api-server", instance="1", group="production"}"#,
            200.0,
        ),
        (
            r#"http_requests{job="api-server", instance="2", group="production"}"#,
            f64::NAN,
        ),
    ]);
    v.extend(http_requests().into_iter().skip(2));
    v
}

#[test]
fn topk_and_bottomk_order_as_prometheus() {
    let k = |k: f64| AggParam::Scalar(k);
    assert_result(
        &agg(T_TOPK, &None, k(3.0), topk_input()),
        &[
            (
                r#"http_requests{group="canary", instance="1", job="app-server"}"#,
                800.0,
            ),
            (
                r#"http_requests{group="canary", instance="0", job="app-server"}"#,
                700.0,
            ),
            (
                r#"http_requests{group="production", instance="1", job="app-server"}"#,
                600.0,
            ),
        ],
        true,
    );
    assert_result(
        &agg(T_BOTTOMK, &None, k(3.0), topk_input()),
        &[
            (
                r#"http_requests{group="production", instance="0", job="api-server"}"#,
                100.0,
            ),
            (
                r#"http_requests{group="production", instance="1", job="api-server"}"#,
                200.0,
            ),
            (
                r#"http_requests{group="canary", instance="0", job="api-server"}"#,
                300.0,
            ),
        ],
        true,
    );
    let app_canary: Vector = topk_input()
        .into_iter()
        .filter(|s| {
            s.metric.get("group") == Some("canary") && s.metric.get("job") == Some("app-server")
        })
        .collect();
    assert_result(
        &agg(T_TOPK, &None, k(5.0), app_canary.clone()),
        &[
            (
                r#"http_requests{group="canary", instance="1", job="app-server"}"#,
                800.0,
            ),
            (
                r#"http_requests{group="canary", instance="0", job="app-server"}"#,
                700.0,
            ),
        ],
        true,
    );
    assert_result(
        &agg(T_BOTTOMK, &None, k(9_999_999_999.0), app_canary),
        &[
            (
                r#"http_requests{group="canary", instance="0", job="app-server"}"#,
                700.0,
            ),
            (
                r#"http_requests{group="canary", instance="1", job="app-server"}"#,
                800.0,
            ),
        ],
        true,
    );
}

#[test]
fn topk_sorts_nan_away_from_the_top_and_bottom() {
    let api_prod: Vector = topk_input().into_iter().take(3).collect();
    let k = AggParam::Scalar(3.0);
    assert_result(
        &agg(T_TOPK, &None, k.clone(), api_prod.clone()),
        &[
            (
                r#"http_requests{job="api-server", instance="1", group="production"}"#,
                200.0,
            ),
            (
                r#"http_requests{job="api-server", instance="0", group="production"}"#,
                100.0,
            ),
            (
                r#"http_requests{job="api-server", instance="2", group="production"}"#,
                f64::NAN,
            ),
        ],
        true,
    );
    assert_result(
        &agg(T_BOTTOMK, &None, k, api_prod.clone()),
        &[
            (
                r#"http_requests{job="api-server", instance="0", group="production"}"#,
                100.0,
            ),
            (
                r#"http_requests{job="api-server", instance="1", group="production"}"#,
                200.0,
            ),
            (
                r#"http_requests{job="api-server", instance="2", group="production"}"#,
                f64::NAN,
            ),
        ],
        true,
    );
    assert_result(
        &agg(T_TOPK, &None, AggParam::Scalar(9_999_999_999.0), api_prod),
        &[
            (
                r#"http_requests{job="api-server", instance="1", group="production"}"#,
                200.0,
            ),
            (
                r#"http_requests{job="api-server", instance="0", group="production"}"#,
                100.0,
            ),
            (
                r#"http_requests{job="api-server", instance="2", group="production"}"#,
                f64::NAN,
            ),
        ],
        true,
    );
}

#[test]
fn topk_and_bottomk_by_group() {
    assert_result(
        &agg(T_TOPK, &by(&["group"]), AggParam::Scalar(1.0), topk_input()),
        &[
            (
                r#"http_requests{group="production", instance="1", job="app-server"}"#,
                600.0,
            ),
            (
                r#"http_requests{group="canary", instance="1", job="app-server"}"#,
                800.0,
            ),
        ],
        false,
    );
    assert_result(
        &agg(
            T_BOTTOMK,
            &by(&["group"]),
            AggParam::Scalar(2.0),
            topk_input(),
        ),
        &[
            (
                r#"http_requests{group="canary", instance="0", job="api-server"}"#,
                300.0,
            ),
            (
                r#"http_requests{group="canary", instance="1", job="api-server"}"#,
                400.0,
            ),
            (
                r#"http_requests{group="production", instance="0", job="api-server"}"#,
                100.0,
            ),
            (
                r#"http_requests{group="production", instance="1", job="api-server"}"#,
                200.0,
            ),
        ],
        false,
    );
    // A group whose only sample is NaN still yields it.
    assert_result(
        &agg(
            T_TOPK,
            &by(&["instance"]),
            AggParam::Scalar(1.0),
            topk_input(),
        ),
        &[
            (
                r#"http_requests{group="canary", instance="0", job="app-server"}"#,
                700.0,
            ),
            (
                r#"http_requests{group="canary", instance="1", job="app-server"}"#,
                800.0,
            ),
            (
                r#"http_requests{group="production", instance="2", job="api-server"}"#,
                f64::NAN,
            ),
        ],
        false,
    );
}

#[test]
fn topk_follows_a_changing_k() {
    // count(topk(scalar(foo), http_requests)) over 0..50m: foo is 1+1x9 then 3, and every
    // step has the 9 series.
    let foo = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 3.0];
    let want = [1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 3];
    for (k, n) in foo.iter().zip(want) {
        assert_eq!(
            agg(T_TOPK, &None, AggParam::Scalar(*k), topk_input()).len(),
            n
        );
        assert_eq!(
            agg(T_BOTTOMK, &None, AggParam::Scalar(*k), topk_input()).len(),
            n
        );
    }
    // Fractions truncate; below one selects nothing.
    assert_eq!(
        agg(T_TOPK, &None, AggParam::Scalar(2.9), topk_input()).len(),
        2
    );
    assert!(agg(T_TOPK, &None, AggParam::Scalar(0.5), topk_input()).is_empty());
    assert!(agg(T_TOPK, &None, AggParam::Scalar(-1e30), topk_input()).is_empty());
}

#[test]
fn topk_ties_follow_go_heap_order() {
    // Go's heap: with k=2 over 1(a), 1(b), 2(c), `a` is the root that 2 replaces.
    let input = vector(&[
        (r#"x{i="a"}"#, 1.0),
        (r#"x{i="b"}"#, 1.0),
        (r#"x{i="c"}"#, 2.0),
    ]);
    assert_result(
        &agg(T_TOPK, &None, AggParam::Scalar(2.0), input),
        &[(r#"x{i="c"}"#, 2.0), (r#"x{i="b"}"#, 1.0)],
        true,
    );
}

#[test]
fn topk_over_long_groups_is_sorted() {
    let input: Vector = (0..40)
        .map(|i| {
            let f = if i % 7 == 3 {
                f64::NAN
            } else {
                f64::from((i * 37) % 41) * 0.5
            };
            sample(&format!(r#"x{{i="{i}"}}"#), f)
        })
        .collect();
    let top = agg(T_TOPK, &None, AggParam::Scalar(30.0), input.clone());
    assert_eq!(top.len(), 30);
    let vals: Vec<f64> = top.iter().map(|s| s.f).filter(|f| !f.is_nan()).collect();
    assert!(vals.windows(2).all(|w| w[0] >= w[1]), "{vals:?}");
    assert!(top.iter().skip(vals.len()).all(|s| s.f.is_nan()));
    // The 30 largest of 34 numbers: the smallest four are left out.
    let mut all: Vec<f64> = input.iter().map(|s| s.f).filter(|f| !f.is_nan()).collect();
    all.sort_by(f64::total_cmp);
    assert_eq!(vals.len(), 30);
    assert_eq!(*vals.last().unwrap(), all[4]);
    let bottom = agg(T_BOTTOMK, &None, AggParam::Scalar(13.0), input);
    let vals: Vec<f64> = bottom.iter().map(|s| s.f).collect();
    assert_eq!(vals, all[..13].to_vec());
}

#[test]
fn k_parameter_errors() {
    assert_eq!(
        agg_err(T_TOPK, AggParam::Scalar(f64::NAN), Vector::new()),
        "Parameter value is NaN"
    );
    assert_eq!(
        agg_err(T_LIMITK, AggParam::Scalar(f64::NAN), Vector::new()),
        "Parameter value is NaN"
    );
    assert_eq!(
        agg_err(T_LIMIT_RATIO, AggParam::Scalar(f64::NAN), Vector::new()),
        "Ratio value is NaN"
    );
    assert_eq!(
        agg_err(T_BOTTOMK, AggParam::Scalar(1e19), topk_input()),
        "Scalar value 1e+19 overflows int64"
    );
    assert_eq!(
        agg_err(T_TOPK, AggParam::Scalar(f64::INFINITY), topk_input()),
        "Scalar value +Inf overflows int64"
    );
    assert!(agg_err(T_TOPK, AggParam::None, topk_input()).contains("number parameter"));
}

#[test]
fn count_values_formats_values_as_go() {
    // version at 1m, floats only.
    let version = vector(&[
        (
            r#"version{job="api-server", instance="0", group="production"}"#,
            6.0,
        ),
        (
            r#"version{job="api-server", instance="1", group="production"}"#,
            6.0,
        ),
        (
            r#"version{job="api-server", instance="2", group="production"}"#,
            6.0,
        ),
        (
            r#"version{job="api-server", instance="0", group="canary"}"#,
            8.0,
        ),
        (
            r#"version{job="api-server", instance="1", group="canary"}"#,
            8.0,
        ),
        (
            r#"version{job="app-server", instance="0", group="production"}"#,
            6.0,
        ),
        (
            r#"version{job="app-server", instance="1", group="production"}"#,
            6.0,
        ),
        (
            r#"version{job="app-server", instance="0", group="canary"}"#,
            7.0,
        ),
        (
            r#"version{job="app-server", instance="1", group="canary"}"#,
            7.0,
        ),
    ]);
    let p = || AggParam::String("version".into());
    assert_result(
        &agg(T_COUNT_VALUES, &None, p(), version.clone()),
        &[
            (r#"{version="6"}"#, 5.0),
            (r#"{version="7"}"#, 2.0),
            (r#"{version="8"}"#, 2.0),
        ],
        false,
    );
    assert_result(
        &agg(
            T_COUNT_VALUES,
            &without(&["instance"]),
            p(),
            version.clone(),
        ),
        &[
            (
                r#"{job="api-server", group="production", version="6"}"#,
                3.0,
            ),
            (r#"{job="api-server", group="canary", version="8"}"#, 2.0),
            (
                r#"{job="app-server", group="production", version="6"}"#,
                2.0,
            ),
            (r#"{job="app-server", group="canary", version="7"}"#, 2.0),
        ],
        false,
    );
    // Overwriting a label with the output: `without` and `by` agree.
    let job = || AggParam::String("job".into());
    let want = [
        (r#"{job="6", group="production"}"#, 5.0),
        (r#"{job="8", group="canary"}"#, 2.0),
        (r#"{job="7", group="canary"}"#, 2.0),
    ];
    assert_result(
        &agg(
            T_COUNT_VALUES,
            &without(&["instance"]),
            job(),
            version.clone(),
        ),
        &want,
        false,
    );
    assert_result(
        &agg(T_COUNT_VALUES, &by(&["job", "group"]), job(), version),
        &want,
        false,
    );
    let odd = vector(&[
        (r#"x{i="a"}"#, 0.1 + 0.2),
        (r#"x{i="b"}"#, 1e21),
        (r#"x{i="c"}"#, f64::NEG_INFINITY),
        (r#"x{i="d"}"#, f64::NAN),
        (r#"x{i="e"}"#, 1e21),
    ]);
    assert_result(
        &agg(T_COUNT_VALUES, &None, AggParam::String("v".into()), odd),
        &[
            (r#"{v="0.30000000000000004"}"#, 1.0),
            (r#"{v="1000000000000000000000"}"#, 2.0),
            (r#"{v="-Inf"}"#, 1.0),
            (r#"{v="NaN"}"#, 1.0),
        ],
        false,
    );
}

#[test]
fn count_values_refuses_an_invalid_label_name() {
    // The label as promql-parser hands it over for the literal "a\xc5z".
    let Expr::Aggregate(a) = parser::parse(r#"count_values("a\xc5z", version)"#).unwrap() else {
        panic!("not an aggregation");
    };
    let Some(Expr::StringLiteral(s)) = a.param.as_deref() else {
        panic!("no string parameter");
    };
    let msg = agg_err(
        T_COUNT_VALUES,
        AggParam::String(s.val.clone()),
        vector(&[("version", 6.0)]),
    );
    assert_eq!(msg, r#"invalid label name "a\xc5z""#);
    // Checked even without input.
    let msg = agg_err(
        T_COUNT_VALUES,
        AggParam::String(String::new()),
        Vector::new(),
    );
    assert_eq!(msg, r#"invalid label name """#);
}

/// `data` of the quantile tests at 1m.
fn quantile_data() -> Vector {
    vector(&[
        (r#"data{test="two samples",point="a"}"#, 0.0),
        (r#"data{test="two samples",point="b"}"#, 1.0),
        (r#"data{test="three samples",point="a"}"#, 0.0),
        (r#"data{test="three samples",point="b"}"#, 1.0),
        (r#"data{test="three samples",point="c"}"#, 2.0),
        (r#"data{test="uneven samples",point="a"}"#, 0.0),
        (r#"data{test="uneven samples",point="b"}"#, 1.0),
        (r#"data{test="uneven samples",point="c"}"#, 4.0),
        (r#"data{test="NaN sample",point="a"}"#, 0.0),
        (r#"data{test="NaN sample",point="b"}"#, 1.0),
        (r#"data{test="NaN sample",point="c"}"#, f64::NAN),
    ])
}

#[test]
fn quantile_interpolates_with_nan_lowest() {
    let m = without(&["point"]);
    assert_result(
        &agg(T_QUANTILE, &m, AggParam::Scalar(0.8), quantile_data()),
        &[
            (r#"{test="two samples"}"#, 0.8),
            (r#"{test="three samples"}"#, 1.6),
            (r#"{test="uneven samples"}"#, 2.8),
            (r#"{test="NaN sample"}"#, 0.6),
        ],
        false,
    );
    assert_result(
        &agg(T_QUANTILE, &m, AggParam::Scalar(0.2), quantile_data()),
        &[
            (r#"{test="two samples"}"#, 0.2),
            (r#"{test="three samples"}"#, 0.4),
            (r#"{test="uneven samples"}"#, 0.4),
            (r#"{test="NaN sample"}"#, f64::NAN),
        ],
        false,
    );
    // quantile without(point)(scalar(foo), data) from 0 to 1m: foo is 0 1 0 1 0 1 0.8.
    for (q, two, three, uneven, nan) in [(0.0, 0.0, 0.0, 0.0, f64::NAN), (1.0, 1.0, 2.0, 4.0, 1.0)]
    {
        assert_result(
            &agg(T_QUANTILE, &m, AggParam::Scalar(q), quantile_data()),
            &[
                (r#"{test="two samples"}"#, two),
                (r#"{test="three samples"}"#, three),
                (r#"{test="uneven samples"}"#, uneven),
                (r#"{test="NaN sample"}"#, nan),
            ],
            false,
        );
    }
}

#[test]
fn quantile_out_of_range_warns_and_saturates() {
    let m = without(&["point"]);
    for (q, want, text) in [
        (f64::NAN, f64::NAN, "NaN"),
        (1.5, f64::INFINITY, "1.5"),
        (-0.25, f64::NEG_INFINITY, "-0.25"),
    ] {
        let mut ann = Annotations::default();
        let got = aggregate(
            TokenType::new(T_QUANTILE),
            m.as_ref(),
            AggParam::Scalar(q),
            quantile_data(),
            T,
            &mut ann,
        )
        .unwrap();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|s| close(s.f, want)), "{got:?}");
        let w = format!("PromQL warning: quantile value should be between 0 and 1, got {text}");
        assert!(ann.warnings.contains(&w), "{ann:?}");
        // Warned even when there is nothing to aggregate.
        let mut ann = Annotations::default();
        aggregate(
            TokenType::new(T_QUANTILE),
            None,
            AggParam::Scalar(q),
            Vector::new(),
            T,
            &mut ann,
        )
        .unwrap();
        assert!(ann.warnings.contains(&w));
    }
}

#[test]
fn group_is_one_per_group() {
    let data: Vector = quantile_data().into_iter().take(8).collect();
    assert_result(
        &agg(T_GROUP, &without(&["point"]), AggParam::None, data),
        &[
            (r#"{test="two samples"}"#, 1.0),
            (r#"{test="three samples"}"#, 1.0),
            (r#"{test="uneven samples"}"#, 1.0),
        ],
        false,
    );
    assert_result(
        &agg(T_GROUP, &None, AggParam::None, vector(&[("foo", 0.8)])),
        &[("{}", 1.0)],
        false,
    );
}

fn avg_of(vals: &[f64]) -> f64 {
    let input: Vector = vals
        .iter()
        .enumerate()
        .map(|(i, f)| sample(&format!(r#"data{{point="{i}"}}"#), *f))
        .collect();
    agg(T_AVG, &None, AggParam::None, input)[0].f
}

fn sum_of(vals: &[f64]) -> f64 {
    let input: Vector = vals
        .iter()
        .enumerate()
        .map(|(i, f)| sample(&format!(r#"data{{point="{i}"}}"#), *f))
        .collect();
    agg(T_SUM, &None, AggParam::None, input)[0].f
}

#[test]
fn avg_handles_infinities_and_overflow() {
    let inf = f64::INFINITY;
    let big = 9.988_465_674_311_58e307;
    // The series in label order, as the store returns them.
    assert_eq!(avg_of(&[8.0, 10.0, 12.0]), 10.0);
    assert_eq!(avg_of(&[0.0, inf, 0.0, inf]), inf);
    assert_eq!(avg_of(&[inf, 0.0, inf]), inf);
    assert!(avg_of(&[inf, inf, -inf]).is_nan());
    assert_eq!(avg_of(&[-inf, -inf, 0.0]), -inf);
    assert!(avg_of(&[-inf, -inf, inf]).is_nan());
    assert!(avg_of(&[-inf, 0.0, inf]).is_nan());
    assert_eq!(avg_of(&[big, big, big, big]), big);
    assert_eq!(avg_of(&[-big, -big, -big, -big]), -big);
    assert_eq!(avg_of(&[-big, -big, big, big]), 0.0);
    assert!(avg_of(&[1.0, f64::NAN, 2.0]).is_nan());
}

#[test]
fn sum_and_avg_use_kahan_summation() {
    assert_eq!(sum_of(&[2.0, 8.0, 1e100, -1e100]), 10.0);
    assert_eq!(avg_of(&[2.0, 8.0, 1e100, -1e100]), 2.5);
    let inf = f64::INFINITY;
    assert_eq!(sum_of(&[inf, 2.0]), inf);
    assert_eq!(sum_of(&[2.0, inf]), inf);
    assert_eq!(avg_of(&[2.0, inf]), inf);
    assert_eq!(sum_of(&[-inf, 2.0]), -inf);
    assert_eq!(avg_of(&[2.0, -inf]), -inf);
    assert!(sum_of(&[inf, -inf]).is_nan());
    assert!(avg_of(&[inf, -inf]).is_nan());
    assert!(sum_of(&[2.0, f64::NAN]).is_nan());
    assert!(avg_of(&[f64::NAN, 2.0]).is_nan());
    // Twelve times 52 averages to exactly 52, whatever subset topk passes on.
    for n in [12, 11, 10, 9, 8] {
        assert_eq!(avg_of(&vec![52.0; n]), 52.0);
    }
}

/// limit.test's `http_requests`, with the two histogram series as floats (only their labels
/// matter to the sampling), at step `i` (5m each).
fn limit_input(i: u32) -> Vector {
    let f = f64::from(i);
    vector(&[
        (
            r#"http_requests{job="api-server", instance="0", group="production"}"#,
            10.0 * f,
        ),
        (
            r#"http_requests{job="api-server", instance="1", group="production"}"#,
            20.0 * f,
        ),
        (
            r#"http_requests{job="api-server", instance="0", group="canary"}"#,
            30.0 * f,
        ),
        (
            r#"http_requests{job="api-server", instance="1", group="canary"}"#,
            40.0 * f,
        ),
        (
            r#"http_requests{job="api-server", instance="2", group="canary"}"#,
            50.0 * f,
        ),
        (
            r#"http_requests{job="api-server", instance="3", group="canary"}"#,
            60.0 * f,
        ),
        (
            r#"http_requests{job="api-server", instance="histogram_1", group="canary"}"#,
            1.0,
        ),
        (
            r#"http_requests{job="api-server", instance="histogram_2", group="canary"}"#,
            2.0,
        ),
    ])
}

fn limit(op: TokenId, m: &Option<LabelModifier>, p: f64, input: Vector) -> Vector {
    agg(op, m, AggParam::Scalar(p), input)
}

#[test]
fn limitk_keeps_k_input_samples_per_group() {
    let input = limit_input(10);
    assert!(limit(T_LIMITK, &by(&["group"]), 0.0, input.clone()).is_empty());
    assert!(limit(T_LIMITK, &by(&["group"]), -1.0, input.clone()).is_empty());
    for (k, n) in [(1.0, 2), (2.0, 4)] {
        let got = limit(T_LIMITK, &by(&["group"]), k, input.clone());
        assert_eq!(got.len(), n);
        // A subset of the input, labels and values untouched.
        for s in &got {
            assert!(input.iter().any(|i| i.metric == s.metric && i.f == s.f));
        }
    }
    assert_eq!(limit(T_LIMITK, &None, 100.0, input.clone()).len(), 8);
    // count(limitk(scalar(foo), http_requests)) over 0..50m: foo is 1+1x10.
    for i in 0..=10 {
        let got = limit(T_LIMITK, &None, f64::from(i + 1), limit_input(i));
        assert_eq!(got.len(), (i as usize + 1).min(8));
    }
    // The first k per group, in input order.
    let got = limit(T_LIMITK, &by(&["group"]), 1.0, input);
    let instances: Vec<_> = got.iter().map(|s| s.metric.get("instance")).collect();
    assert_eq!(instances, [Some("0"), Some("0")]);
}

fn count(op: TokenId, p: f64, input: Vector) -> usize {
    limit(op, &None, p, input).len()
}

#[test]
fn limit_ratio_selects_as_prometheus() {
    for i in 0..=10 {
        let input = limit_input(i);
        assert!(count(T_LIMIT_RATIO, 0.0, input.clone()) == 0);
        let half = count(T_LIMIT_RATIO, 0.5, input.clone());
        assert!((3..=5).contains(&half), "step {i}: {half}");
        assert_eq!(count(T_LIMIT_RATIO, 1.0, input.clone()), 8);
        assert_eq!(count(T_LIMIT_RATIO, -1.0, input.clone()), 8);
        // Complements: r and -(1 - r) split the input.
        let r17 = f64::from((i * 300) % 17) / 17.0;
        for r in [0.2, 0.5, 0.8, r17] {
            let a = limit(T_LIMIT_RATIO, &None, r, input.clone());
            let b = limit(T_LIMIT_RATIO, &None, -(1.0 - r), input.clone());
            assert_eq!(a.len() + b.len(), 8, "r={r}");
            assert!(a.iter().all(|x| b.iter().all(|y| x.metric != y.metric)));
        }
        // The poor man's normality check over the six float series.
        let floats: Vector = input.into_iter().take(6).collect();
        let avg = |v: Vector| {
            let got = agg(T_AVG, &None, AggParam::None, v);
            got.first().map_or(f64::NAN, |s| s.f)
        };
        let sel = avg(limit(T_LIMIT_RATIO, &None, 0.5, floats.clone()));
        let rest = avg(limit(T_LIMIT_RATIO, &None, -0.5, floats.clone()));
        let sd = agg(T_STDDEV, &None, AggParam::None, floats)[0].f;
        assert!((sel - rest).abs() <= sd, "step {i}: {sel} {rest} {sd}");
    }
}

#[test]
fn limit_ratio_caps_with_a_warning() {
    for (r, text) in [
        (1.1, "got 1.1, capping to 1"),
        (-1.1, "got -1.1, capping to -1"),
    ] {
        let mut ann = Annotations::default();
        let got = aggregate(
            TokenType::new(T_LIMIT_RATIO),
            None,
            AggParam::Scalar(r),
            limit_input(3),
            T,
            &mut ann,
        )
        .unwrap();
        assert_eq!(got.len(), 8);
        let w = format!("PromQL warning: ratio value should be between -1 and 1, {text}");
        assert_eq!(ann.warnings.iter().collect::<Vec<_>>(), [&w]);
    }
}

fn dropped(text: &str, f: f64) -> Sample {
    Sample {
        drop_name: true,
        ..sample(text, f)
    }
}

#[test]
fn aggregations_keep_pending_name_removal() {
    // sum by (__name__, env) (metric_total{env="1"}) keeps the name.
    let got = agg(
        T_SUM,
        &by(&["__name__", "env"]),
        AggParam::None,
        vector(&[(r#"metric_total{env="1"}"#, 120.0)]),
    );
    assert_result(&got, &[(r#"metric_total{env="1"}"#, 120.0)], false);
    assert!(!got[0].drop_name);
    // rate() marked both series: by (__name__) still splits them, and both keep the mark, so
    // the evaluator's final removal makes them collide (Prometheus's "expect fail").
    let rates = vec![
        dropped(r#"metric_total{env="1"}"#, 0.2),
        dropped(r#"another_metric_total{env="1"}"#, 0.2),
    ];
    let got = agg(T_SUM, &by(&["__name__"]), AggParam::None, rates.clone());
    assert_eq!(got.len(), 2);
    assert!(
        got.iter()
            .all(|s| s.drop_name && s.metric.metric_name().is_some())
    );
    // by (env) merges them.
    let got = agg(T_SUM, &by(&["env"]), AggParam::None, rates);
    assert_result(&got, &[(r#"{env="1"}"#, 0.4)], false);
    // One marked member marks the group: metric_total{env="1"} or rate(metric_total{env="2"}).
    let mixed = vec![
        sample(r#"metric_total{env="1"}"#, 10.0),
        dropped(r#"metric_total{env="2"}"#, 0.05),
    ];
    let got = agg(T_SUM, &by(&["__name__"]), AggParam::None, mixed.clone());
    assert_result(&got, &[("{}", 10.05)], false);
    let got = agg(
        T_SUM,
        &by(&["__name__"]),
        AggParam::None,
        mixed[..1].to_vec(),
    );
    assert_result(&got, &[("metric_total", 10.0)], false);
    // topk passes each sample's own mark on.
    let got = agg(T_TOPK, &None, AggParam::Scalar(10.0), mixed);
    assert_result(
        &got,
        &[(r#"metric_total{env="1"}"#, 10.0), (r#"{env="2"}"#, 0.05)],
        true,
    );
}

#[test]
fn unknown_operator_is_an_error() {
    let err = agg_err(
        promql_parser::parser::token::T_ADD,
        AggParam::None,
        Vector::new(),
    );
    assert!(err.contains("not an aggregation operator"), "{err}");
}

mod across_steps {
    use proptest::prelude::*;

    use super::*;
    use crate::query::aggregate::Aggregation;
    use crate::query::aggregate::key::SeriesCache;

    #[test]
    fn outputs_keep_their_label_sets_between_steps() {
        let m = by(&["group"]);
        let mut a = Aggregation::new(TokenType::new(T_SUM), m.as_ref());
        let mut ann = Annotations::default();
        let first = a.step(AggParam::None, api_server(), T, &mut ann).unwrap();
        // The next step lacks the production series and has a new group first.
        let mut next = vector(&[(r#"http_requests{job="x", group="staging"}"#, 5.0)]);
        next.extend(filter_group(api_server(), "canary"));
        let second = a.step(AggParam::None, next, T, &mut ann).unwrap();
        assert_result(
            &second,
            &[
                (r#"{group="staging"}"#, 5.0),
                (r#"{group="canary"}"#, 700.0),
            ],
            true,
        );
        let canary = |v: &Vector| {
            v.iter()
                .find(|s| s.metric.get("group") == Some("canary"))
                .map(|s| Arc::clone(&s.metric))
                .unwrap()
        };
        assert!(Arc::ptr_eq(&canary(&first), &canary(&second)));
    }

    fn filter_group(v: Vector, group: &str) -> Vector {
        v.into_iter()
            .filter(|s| s.metric.get("group") == Some(group))
            .collect()
    }

    #[test]
    fn a_series_cache_stands_aside_for_fresh_label_sets() {
        let mut cache: SeriesCache<u32> = SeriesCache::default();
        let base = labels(r#"x{a="1"}"#);
        let mut active_steps = 0;
        for _ in 0..40 {
            cache.bound(1000);
            active_steps += usize::from(cache.active());
            for i in 0..1000u32 {
                // New allocations every step, as an upstream node without caches makes.
                let m = Arc::new(base.clone());
                assert_eq!(cache.get_or_insert_with(&m, || i), i);
            }
        }
        // Two steps to notice, then two-step probes after bypasses of 4, 8, 16… steps.
        assert!((2..=8).contains(&active_steps), "{active_steps}");
        // Stable label sets bring it back and keep it.
        let stable: Vec<Metric> = (0..1000).map(|_| Arc::new(base.clone())).collect();
        let mut hits = 0;
        for _ in 0..600 {
            cache.bound(1000);
            for (i, m) in stable.iter().enumerate() {
                let mut computed = false;
                let v = cache.get_or_insert_with(m, || {
                    computed = true;
                    i as u32
                });
                assert_eq!(v, i as u32);
                hits += usize::from(!computed);
            }
        }
        assert!(hits > 500_000, "{hits}");
    }

    use crate::query::Metric;

    /// Eight distinct series; each step uses some of them, some as new allocations.
    const POOL: [&str; 8] = [
        r#"x{job="a", instance="0"}"#,
        r#"x{job="a", instance="1"}"#,
        r#"x{job="b", instance="0"}"#,
        r#"y{job="b", instance="1"}"#,
        r#"y{job="a", instance="0"}"#,
        r#"y{job="c"}"#,
        r#"x{instance="2"}"#,
        r#"z{job="c", instance="0", zone="eu"}"#,
    ];

    const VALUES: [f64; 8] = [0.0, -1.5, 3.25, 1e300, f64::NAN, f64::INFINITY, 7.0, 3.25];

    type Step = Vec<(usize, usize, bool, bool)>;

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let entry = (0..POOL.len(), 0..VALUES.len(), any::<bool>(), any::<bool>());
        proptest::collection::vec(proptest::collection::vec(entry, 0..12), 1..8)
    }

    fn make_step(pool: &[Metric], step: &Step) -> Vector {
        let mut used = [false; POOL.len()];
        let mut v = Vector::new();
        for &(i, val, fresh, drop_name) in step {
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
                t: T - 7,
                f: VALUES[val],
                drop_name,
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

    fn cases() -> Vec<(TokenId, Option<LabelModifier>, AggParam)> {
        let mut v = Vec::new();
        for m in [
            None,
            by(&["job"]),
            without(&["instance"]),
            by(&["__name__"]),
        ] {
            for op in [
                T_SUM, T_AVG, T_COUNT, T_GROUP, T_MIN, T_MAX, T_STDDEV, T_STDVAR,
            ] {
                v.push((op, m.clone(), AggParam::None));
            }
            v.push((T_QUANTILE, m.clone(), AggParam::Scalar(0.3)));
            v.push((T_TOPK, m.clone(), AggParam::Scalar(2.0)));
            v.push((T_BOTTOMK, m.clone(), AggParam::Scalar(2.0)));
            v.push((T_LIMITK, m.clone(), AggParam::Scalar(1.0)));
            v.push((T_LIMIT_RATIO, m.clone(), AggParam::Scalar(-0.5)));
            v.push((T_COUNT_VALUES, m.clone(), AggParam::String("v".into())));
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn stateful_steps_equal_fresh_steps(steps in steps()) {
            let pool: Vec<Metric> = POOL.iter().map(|l| Arc::new(labels(l))).collect();
            for (op, m, param) in cases() {
                let mut node = Aggregation::new(TokenType::new(op), m.as_ref());
                for step in &steps {
                    let input = make_step(&pool, step);
                    let mut ann_a = Annotations::default();
                    let mut ann_b = Annotations::default();
                    let kept = node
                        .step(param.clone(), input.clone(), T, &mut ann_a)
                        .map_err(|e| e.to_string());
                    let fresh = aggregate(TokenType::new(op), m.as_ref(), param.clone(), input, T, &mut ann_b)
                        .map_err(|e| e.to_string());
                    prop_assert!(same(&kept, &fresh), "{op:?} {m:?}\n{kept:?}\n{fresh:?}");
                    prop_assert_eq!(ann_a, ann_b);
                }
            }
        }
    }
}
