//! Tests of validation, bounds, iterators and arithmetic, with hand-worked values.

use super::*;

fn fh(schema: i32, spans: &[(i32, u32)], buckets: &[f64]) -> FloatHistogram {
    FloatHistogram {
        schema,
        count: buckets.iter().sum(),
        positive_spans: spans.iter().map(|&(o, l)| Span::new(o, l)).collect(),
        positive_buckets: buckets.to_vec(),
        ..Default::default()
    }
}

fn custom(bounds: &[f64], spans: &[(i32, u32)], buckets: &[f64]) -> FloatHistogram {
    FloatHistogram {
        custom_values: bounds.to_vec(),
        ..fh(CUSTOM_BUCKETS_SCHEMA, spans, buckets)
    }
}

fn spans(s: &[(i32, u32)]) -> Vec<Span> {
    s.iter().map(|&(o, l)| Span::new(o, l)).collect()
}

fn pos(h: &FloatHistogram) -> Vec<(i32, f64)> {
    h.positive_bucket_iter()
        .map(|b| (b.index, b.count))
        .collect()
}

// ---- fractions and bounds ----

#[test]
fn fraction_tables_equal_prometheus_values() {
    // Values from Prometheus's table (model/histogram/generic.go), including entries that are
    // not the correctly rounded 2^(j/2^s - 1) (schema 8: 6, 19, 128).
    assert_eq!(fraction_table(0), vec![0.5]);
    assert_eq!(fraction_table(1), vec![0.5, 0.7071067811865475]);
    assert_eq!(
        fraction_table(2),
        vec![
            0.5,
            0.5946035575013605,
            0.7071067811865475,
            0.8408964152537144
        ]
    );
    let t3 = fraction_table(3);
    assert_eq!(t3[1], 0.5452538663326288);
    assert_eq!(t3[7], 0.9170040432046711);
    let t8 = fraction_table(8);
    assert_eq!(t8.len(), 256);
    let expect = [
        (1, 0.5013556375251013),
        (6, 0.5081891574554764),
        (10, 0.5137229745593818),
        (19, 0.526395386502313),
        (128, 0.7071067811865475),
        (129, 0.7090239421602076),
        (200, 0.8593096490612387),
        (255, 0.9972960560854698),
    ];
    for (j, v) in expect {
        assert_eq!(t8[j], v, "schema 8 fraction {j}");
    }
    // Each schema's table is every other entry of the next one's.
    for s in 0..8 {
        let (a, b) = (fraction_table(s), fraction_table(s + 1));
        assert!(a.iter().enumerate().all(|(j, v)| b[2 * j] == *v));
    }
    // And within a few ulps of the exact value, strictly increasing.
    for (j, v) in t8.iter().enumerate() {
        let exact = (j as f64 / 256.0 - 1.0).exp2();
        assert!((v - exact).abs() <= 4.0 * f64::EPSILON, "{j}");
        assert!(j == 0 || *v > t8[j - 1]);
    }
    assert!(fraction_table(9).is_empty() && fraction_table(-1).is_empty());
}

#[test]
fn exponential_bounds() {
    assert_eq!(exponential_bound(0, 0), 1.0);
    assert_eq!(exponential_bound(1, 0), 2.0);
    assert_eq!(exponential_bound(-1, 0), 0.5);
    assert_eq!(exponential_bound(1, 3), 1.0905077326652577);
    assert_eq!(exponential_bound(-1, 3), 0.9170040432046711);
    assert_eq!(exponential_bound(8, 3), 2.0);
    assert_eq!(exponential_bound(1, -4), 65536.0);
    assert_eq!(exponential_bound(-1, -4), 1.0 / 65536.0);
    assert_eq!(exponential_bound(1, -2), 16.0);
}

#[test]
fn last_finite_bucket_ends_at_max_float() {
    // Schema 0: bucket 1024 would end at 2^1024; it ends at f64::MAX and bucket 1025 counts
    // the infinities.
    assert_eq!(exponential_bound(1023, 0), 2f64.powi(1023));
    assert_eq!(exponential_bound(1024, 0), f64::MAX);
    assert_eq!(exponential_bound(1025, 0), f64::INFINITY);
    assert_eq!(exponential_bound(64, -4), f64::MAX);
    assert_eq!(exponential_bound(65, -4), f64::INFINITY);
    assert_eq!(exponential_bound(256, -2), f64::MAX);
    let last = 1024 * 256;
    assert!(exponential_bound(last - 1, 8) < f64::MAX);
    assert_eq!(exponential_bound(last, 8), f64::MAX);
    assert_eq!(exponential_bound(last + 1, 8), f64::INFINITY);
    // Far past either end.
    assert_eq!(exponential_bound(i32::MAX, 8), f64::INFINITY);
    assert_eq!(exponential_bound(i32::MAX, -4), f64::INFINITY);
    assert_eq!(exponential_bound(i32::MIN, -4), 0.0);
    assert_eq!(exponential_bound(i32::MIN, 8), 0.0);
}

#[test]
fn tiny_bounds_round_like_ldexp() {
    assert_eq!(exponential_bound(-1022, 0), 2f64.powi(-1022));
    // Subnormal: 2^-1074 is the smallest; 2^-1075 rounds to even, zero.
    assert_eq!(exponential_bound(-1073, 0), f64::from_bits(2));
    assert_eq!(exponential_bound(-1074, 0), f64::from_bits(1));
    assert_eq!(exponential_bound(-1075, 0), 0.0);
    // Schema 1: 1/√2 · 2^-1073 is 1.41 times the smallest subnormal, rounded once to it.
    assert_eq!(exponential_bound(-2147, 1), f64::from_bits(1));
    // 1/√2 · 2^-1072: 2.83 times, rounded to 3.
    assert_eq!(exponential_bound(-2145, 1), f64::from_bits(3));
}

#[test]
fn custom_bounds() {
    let cv = [1.0, 2.5];
    assert_eq!(bucket_bound(0, CUSTOM_BUCKETS_SCHEMA, &cv), 1.0);
    assert_eq!(bucket_bound(1, CUSTOM_BUCKETS_SCHEMA, &cv), 2.5);
    assert_eq!(bucket_bound(2, CUSTOM_BUCKETS_SCHEMA, &cv), f64::INFINITY);
    assert_eq!(bucket_bound(7, CUSTOM_BUCKETS_SCHEMA, &cv), f64::INFINITY);
    assert_eq!(
        bucket_bound(-1, CUSTOM_BUCKETS_SCHEMA, &cv),
        f64::NEG_INFINITY
    );
    assert_eq!(bucket_bound(1, 0, &cv), 2.0);
}

// ---- iterators ----

fn sample() -> FloatHistogram {
    FloatHistogram {
        schema: 0,
        zero_threshold: 0.001,
        zero_count: 2.0,
        count: 12.0,
        sum: 3.0,
        positive_spans: spans(&[(0, 2), (1, 1)]),
        positive_buckets: vec![1.0, 2.0, 3.0],
        negative_spans: spans(&[(0, 2)]),
        negative_buckets: vec![4.0, 0.5],
        ..Default::default()
    }
}

#[test]
fn positive_buckets_carry_bounds_and_indexes() {
    let h = sample();
    let b: Vec<_> = h.positive_bucket_iter().collect();
    assert_eq!(b.len(), 3);
    assert_eq!(
        (b[0].lower, b[0].upper, b[0].count, b[0].index),
        (0.5, 1.0, 1.0, 0)
    );
    assert!(!b[0].lower_inclusive && b[0].upper_inclusive);
    assert_eq!((b[1].lower, b[1].upper, b[1].index), (1.0, 2.0, 1));
    assert_eq!(
        (b[2].lower, b[2].upper, b[2].count, b[2].index),
        (4.0, 8.0, 3.0, 3)
    );
}

#[test]
fn negative_buckets_ascend_and_include_their_lower_bound() {
    let h = sample();
    let b: Vec<_> = h.negative_bucket_iter().collect();
    assert_eq!(
        (b[0].lower, b[0].upper, b[0].count, b[0].index),
        (-2.0, -1.0, 0.5, 1)
    );
    assert!(b[0].lower_inclusive && !b[0].upper_inclusive);
    assert_eq!((b[1].lower, b[1].upper, b[1].index), (-1.0, -0.5, 0));
    let out: Vec<_> = h.negative_bucket_iter_outward().map(|b| b.index).collect();
    assert_eq!(out, vec![0, 1]);
}

#[test]
fn all_buckets_ascend_through_the_zero_bucket() {
    let h = sample();
    let all: Vec<_> = h
        .all_bucket_iter()
        .map(|b| (b.lower, b.upper, b.count))
        .collect();
    assert_eq!(
        all,
        vec![
            (-2.0, -1.0, 0.5),
            (-1.0, -0.5, 4.0),
            (-0.001, 0.001, 2.0),
            (0.5, 1.0, 1.0),
            (1.0, 2.0, 2.0),
            (4.0, 8.0, 3.0),
        ]
    );
    let z = h.zero_bucket().unwrap();
    assert!(z.lower_inclusive && z.upper_inclusive);
    // An empty zero bucket is left out; buckets reaching into a wide zero bucket are cut.
    let mut w = sample();
    w.zero_count = 0.0;
    w.zero_threshold = 0.7;
    let all: Vec<_> = w.all_bucket_iter().map(|b| (b.lower, b.upper)).collect();
    assert_eq!(all[1], (-1.0, -0.7));
    assert_eq!(all[2], (0.7, 1.0));
    assert_eq!(all.len(), 5);
}

#[test]
fn custom_bucket_iteration() {
    let h = custom(&[1.0, 2.0], &[(0, 3)], &[1.0, 2.0, 3.0]);
    let b: Vec<_> = h.all_bucket_iter().collect();
    assert_eq!(b.len(), 3);
    assert_eq!((b[0].lower, b[0].upper), (f64::NEG_INFINITY, 1.0));
    assert!(b[0].lower_inclusive && b[0].upper_inclusive);
    assert_eq!((b[1].lower, b[1].upper), (1.0, 2.0));
    assert!(!b[1].lower_inclusive && b[1].upper_inclusive);
    assert_eq!(
        (b[2].lower, b[2].upper, b[2].count),
        (2.0, f64::INFINITY, 3.0)
    );
    assert!(h.zero_bucket().is_none());
}

#[test]
fn empty_and_zero_only_histograms_iterate() {
    let h = FloatHistogram::default();
    assert_eq!(h.all_bucket_iter().count(), 0);
    let z = FloatHistogram {
        zero_count: 5.0,
        count: 5.0,
        ..Default::default()
    };
    let all: Vec<_> = z.all_bucket_iter().collect();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].lower, all[0].upper, all[0].count), (0.0, 0.0, 5.0));
}

#[test]
fn iterators_stop_at_the_shorter_of_spans_and_buckets() {
    let h = fh(0, &[(0, 5)], &[1.0, 2.0]);
    assert_eq!(h.positive_bucket_iter().count(), 2);
    let h = fh(0, &[(0, 1), (3, 0), (1, 1)], &[1.0, 2.0, 3.0]);
    assert_eq!(pos(&h), vec![(0, 1.0), (5, 2.0)]);
}

#[test]
fn integer_iterators_give_absolute_counts() {
    let h = Histogram {
        schema: 1,
        positive_spans: spans(&[(-1, 3)]),
        positive_buckets: vec![2, 3, -4],
        negative_spans: spans(&[(0, 2)]),
        negative_buckets: vec![1, 1],
        ..Default::default()
    };
    let p: Vec<_> = h
        .positive_bucket_iter()
        .map(|b| (b.index, b.count))
        .collect();
    assert_eq!(p, vec![(-1, 2), (0, 5), (1, 1)]);
    let n: Vec<_> = h
        .negative_bucket_iter()
        .map(|b| (b.index, b.count))
        .collect();
    assert_eq!(n, vec![(1, 2), (0, 1)]);
    assert_eq!(h.zero_bucket().unwrap().count, 0);
}

// ---- validation ----

fn int(schema: i32, count: u64, sum: f64, sp: &[(i32, u32)], deltas: &[i64]) -> Histogram {
    Histogram {
        schema,
        count,
        sum,
        positive_spans: spans(sp),
        positive_buckets: deltas.to_vec(),
        ..Default::default()
    }
}

fn err(r: Result<(), HistogramError>) -> String {
    r.expect_err("should be refused").to_string()
}

#[test]
fn integer_validation_checks_count_against_buckets() {
    assert!(int(0, 3, 1.0, &[(0, 2)], &[1, 1]).validate().is_ok());
    assert_eq!(
        err(int(0, 4, 1.0, &[(0, 2)], &[1, 1]).validate()),
        "3 observations found in buckets, but the Count field is 4: histogram's observation count should equal the number of observations found in the buckets (in absence of NaN)"
    );
    // With a NaN sum, NaN observations may be counted but in no bucket.
    assert!(int(0, 4, f64::NAN, &[(0, 2)], &[1, 1]).validate().is_ok());
    let e = int(0, 2, f64::NAN, &[(0, 2)], &[1, 1])
        .validate()
        .unwrap_err();
    assert_eq!(e.kind(), HistogramErrorKind::CountNotBigEnough);
    assert_eq!(
        e.to_string(),
        "3 observations found in buckets, but the Count field is 2: histogram's observation count should be at least the number of observations found in the buckets"
    );
    let mut z = int(0, 5, 0.0, &[], &[]);
    z.zero_count = 5;
    assert!(z.validate().is_ok());
    // Sums beyond u64 do not wrap around into a match.
    let big = int(0, 0, 0.0, &[(0, 3)], &[i64::MAX, 0, 0]);
    assert_eq!(
        big.validate().unwrap_err().kind(),
        HistogramErrorKind::CountMismatch
    );
}

#[test]
fn validation_refuses_negative_buckets_and_bad_spans() {
    assert_eq!(
        err(int(0, 0, 0.0, &[(0, 2)], &[1, -2]).validate()),
        "positive side: bucket number 2 has observation count of -1: histogram has a bucket whose observation count is negative"
    );
    assert_eq!(
        err(int(0, 1, 0.0, &[(0, 2)], &[1]).validate()),
        "positive side: spans need 2 buckets, have 1 buckets: histogram spans specify different number of buckets than provided"
    );
    assert_eq!(
        err(int(0, 2, 0.0, &[(-5, 1), (-2, 1)], &[1, 0]).validate()),
        "positive side: span number 2 with offset -2: histogram has a span whose offset is negative"
    );
    let mut n = int(0, 1, 0.0, &[], &[]);
    n.negative_spans = spans(&[(0, 1)]);
    n.negative_buckets = vec![-1];
    assert_eq!(
        err(n.validate()),
        "negative side: bucket number 1 has observation count of -1: histogram has a bucket whose observation count is negative"
    );
    let mut e = int(0, 1, 0.0, &[(0, 1)], &[1]);
    e.custom_values = vec![1.0];
    assert_eq!(
        err(e.validate()),
        "histogram with exponential schema must not have custom bounds"
    );
    assert_eq!(
        err(int(9, 0, 0.0, &[], &[]).validate()),
        "histogram has an invalid schema, which must be between -4 and 8 for exponential buckets, or -53 for custom buckets, got schema 9"
    );
}

#[test]
fn validation_of_custom_buckets() {
    let ok = |b: &[f64], sp: &[(i32, u32)], n: usize| {
        // One observation per bucket: deltas 1, 0, 0, ...
        let mut deltas = vec![0; n];
        deltas[..n.min(1)].fill(1);
        let mut h = int(CUSTOM_BUCKETS_SCHEMA, n as u64, 0.0, sp, &deltas);
        h.custom_values = b.to_vec();
        h.validate()
    };
    assert!(ok(&[1.0, 2.0], &[(0, 3)], 3).is_ok());
    assert!(ok(&[], &[(0, 1)], 1).is_ok());
    assert_eq!(
        err(ok(&[1.0, 1.0], &[(0, 1)], 1)),
        "custom buckets: previous bound is 1.000000 and current is 1.000000: histogram custom bounds must be in strictly increasing order"
    );
    assert_eq!(
        err(ok(&[1.0, f64::INFINITY], &[(0, 1)], 1)),
        "custom buckets: last +Inf bound must not be explicitly defined: histogram custom bounds must be finite"
    );
    assert_eq!(
        err(ok(&[f64::NAN], &[(0, 1)], 1)),
        "custom buckets: histogram custom bounds must not be NaN"
    );
    assert_eq!(
        err(ok(&[1.0], &[(1, 2)], 2)),
        "custom buckets: only 1 custom bounds defined which is insufficient to cover total span length of 3: histogram custom bounds are too few"
    );
    assert_eq!(
        err(ok(&[1.0], &[(-1, 1)], 1)),
        "custom buckets: span number 1 with offset -1: histogram has a span whose offset is negative"
    );
    let mut z = int(CUSTOM_BUCKETS_SCHEMA, 1, 0.0, &[], &[]);
    z.zero_count = 1;
    assert_eq!(
        err(z.validate()),
        "custom buckets: must have zero count of 0"
    );
    let mut t = int(CUSTOM_BUCKETS_SCHEMA, 0, 0.0, &[], &[]);
    t.zero_threshold = 1e-128;
    assert_eq!(
        err(t.validate()),
        "custom buckets: must have zero threshold of 0"
    );
    let mut n = int(CUSTOM_BUCKETS_SCHEMA, 0, 0.0, &[], &[]);
    n.negative_spans = spans(&[(0, 0)]);
    assert_eq!(
        err(n.validate()),
        "custom buckets: must not have negative spans"
    );
    n.negative_spans.clear();
    n.negative_buckets = vec![0];
    assert_eq!(
        err(n.validate()),
        "custom buckets: must not have negative buckets"
    );
}

#[test]
fn float_validation() {
    assert!(sample().validate().is_ok());
    // The count is not compared with the buckets.
    let mut h = sample();
    h.count = 1.0;
    assert!(h.validate().is_ok());
    h.count = -1.0;
    assert_eq!(
        err(h.validate()),
        "observation count is  -1: histogram's observation count is negative"
    );
    let mut z = sample();
    z.zero_count = -0.5;
    assert_eq!(
        err(z.validate()),
        "zero bucket has observation count of -0.5: histogram has a bucket whose observation count is negative"
    );
    let mut b = sample();
    b.positive_buckets[2] = -1e-300;
    assert_eq!(
        err(b.validate()),
        "positive side: bucket number 3 has observation count of -1e-300: histogram has a bucket whose observation count is negative"
    );
    // NaN counts are not negative.
    let mut n = sample();
    n.positive_buckets[0] = f64::NAN;
    n.count = f64::NAN;
    assert!(n.validate().is_ok());
    assert!(custom(&[1.0], &[(0, 2)], &[1.0, 2.0]).validate().is_ok());
    let mut c = custom(&[1.0], &[(0, 2)], &[1.0, 2.0]);
    c.zero_count = 1.0;
    assert_eq!(
        err(c.validate()),
        "custom buckets: must have zero count of 0"
    );
}

#[test]
fn go_float_format() {
    use super::validate::go_v;
    assert_eq!(go_v(-1.0), "-1");
    assert_eq!(go_v(-0.5), "-0.5");
    assert_eq!(go_v(1e21), "1e+21");
    assert_eq!(go_v(1e20), "1e+20");
    assert_eq!(go_v(123456.0), "123456");
    assert_eq!(go_v(1234567.0), "1.234567e+06");
    assert_eq!(go_v(-2.5e-300), "-2.5e-300");
    assert_eq!(go_v(0.0001), "0.0001");
    assert_eq!(go_v(0.00001), "1e-05");
    assert_eq!(go_v(f64::NEG_INFINITY), "-Inf");
}

// ---- arithmetic ----

#[test]
fn add_reduces_to_the_smaller_schema() {
    let mut a = fh(1, &[(0, 2)], &[1.0, 2.0]);
    let b = fh(0, &[(0, 1)], &[3.0]);
    let out = a.add(&b).unwrap();
    assert_eq!(out, AddOutcome::default());
    assert_eq!(a.schema, 0);
    assert_eq!(pos(&a), vec![(0, 4.0), (1, 2.0)]);
    assert_eq!(a.count, 6.0);
    // The other way round: the other histogram is merged, the receiver stays at schema 0.
    let mut c = fh(0, &[(0, 1)], &[3.0]);
    c.add(&fh(1, &[(0, 2)], &[1.0, 2.0])).unwrap();
    assert_eq!(c.schema, 0);
    assert_eq!(pos(&c), vec![(0, 4.0), (1, 2.0)]);
}

#[test]
fn add_inserts_buckets_on_both_sides() {
    let mut a = sample();
    let mut b = sample();
    b.positive_spans = spans(&[(-3, 1), (5, 2)]);
    b.positive_buckets = vec![7.0, 1.0, 1.0];
    a.add(&b).unwrap();
    assert_eq!(
        pos(&a),
        vec![(-3, 7.0), (0, 1.0), (1, 2.0), (3, 4.0), (4, 1.0)]
    );
    assert_eq!(a.positive_spans, spans(&[(-3, 1), (2, 2), (1, 2)]));
    assert_eq!(a.negative_buckets, vec![8.0, 1.0]);
    assert_eq!((a.zero_count, a.count, a.sum), (4.0, 24.0, 6.0));
}

#[test]
fn add_widens_the_zero_bucket() {
    let mut a = FloatHistogram {
        zero_threshold: 0.001,
        zero_count: 1.0,
        positive_spans: spans(&[(-2, 1), (1, 1)]),
        positive_buckets: vec![1.0, 2.0],
        count: 4.0,
        ..Default::default()
    };
    let b = FloatHistogram {
        zero_threshold: 0.2,
        zero_count: 1.0,
        positive_spans: spans(&[(0, 1)]),
        positive_buckets: vec![1.0],
        count: 2.0,
        ..Default::default()
    };
    a.add(&b).unwrap();
    // 0.2 lies inside a's populated bucket (0.125, 0.25]: the threshold moves to 0.25 and
    // that bucket joins the zero bucket.
    assert_eq!(a.zero_threshold, 0.25);
    assert_eq!(a.zero_count, 3.0);
    assert_eq!(pos(&a), vec![(0, 3.0)]);
    assert_eq!(a.count, 6.0);
}

#[test]
fn add_drops_the_others_buckets_inside_the_zero_bucket() {
    let mut a = FloatHistogram {
        zero_threshold: 0.5,
        zero_count: 1.0,
        count: 1.0,
        ..Default::default()
    };
    let b = FloatHistogram {
        zero_threshold: 0.5,
        positive_spans: spans(&[(-3, 2), (1, 1)]),
        positive_buckets: vec![1.0, 1.0, 5.0],
        count: 7.0,
        ..Default::default()
    };
    a.add(&b).unwrap();
    // Buckets -3 and -2 end at or below 0.5 and are skipped; bucket 0 is kept.
    assert_eq!(pos(&a), vec![(0, 5.0)]);
    assert_eq!(a.count, 8.0);
}

#[test]
fn add_of_exponential_and_custom_is_refused() {
    let mut a = sample();
    let before = a.clone();
    let e = a.add(&custom(&[1.0], &[(0, 1)], &[1.0])).unwrap_err();
    assert_eq!(e.kind(), HistogramErrorKind::IncompatibleSchema);
    assert_eq!(
        e.to_string(),
        "cannot apply this operation on histograms with a mix of exponential and custom bucket schemas"
    );
    assert_eq!(a, before);
}

#[test]
fn custom_buckets_add_when_bounds_match() {
    let mut a = custom(&[1.0, 2.0], &[(0, 1), (1, 1)], &[1.0, 3.0]);
    a.add(&custom(&[1.0, 2.0], &[(1, 1)], &[2.0])).unwrap();
    assert_eq!(pos(&a), vec![(0, 1.0), (1, 2.0), (2, 3.0)]);
    assert_eq!(a.custom_values, vec![1.0, 2.0]);
}

#[test]
fn mismatched_custom_buckets_reconcile_to_common_bounds() {
    // From the conformance script: idelta over [1 10] buckets [1] and then [1] buckets [2].
    let mut now = custom(&[1.0, 10.0], &[(0, 1)], &[1.0]);
    let before = custom(&[1.0], &[(0, 1)], &[2.0]);
    let out = now.sub(&before).unwrap();
    assert!(out.nhcb_bounds_reconciled);
    assert_eq!(now.custom_values, vec![1.0]);
    assert_eq!(now.positive_spans, spans(&[(0, 1)]));
    assert_eq!(now.positive_buckets, vec![-1.0]);
    // Buckets go to the first common bound at or above their own: (1,5] and (5,10] of a
    // join (1,10], (10,+Inf] goes to +Inf; empty results are dropped.
    let mut a = custom(&[1.0, 5.0, 10.0], &[(0, 4)], &[1.0, 2.0, 3.0, 4.0]);
    let b = custom(&[1.0, 10.0, 20.0], &[(0, 4)], &[1.0, 0.0, 0.0, 1.0]);
    assert!(a.add(&b).unwrap().nhcb_bounds_reconciled);
    assert_eq!(a.custom_values, vec![1.0, 10.0]);
    assert_eq!(pos(&a), vec![(0, 2.0), (1, 5.0), (2, 5.0)]);
    // No bound in common: everything in the +Inf bucket.
    let mut c = custom(&[1.0], &[(0, 2)], &[1.0, 2.0]);
    c.add(&custom(&[3.0], &[(0, 1)], &[4.0])).unwrap();
    assert!(c.custom_values.is_empty());
    assert_eq!(pos(&c), vec![(0, 7.0)]);
}

#[test]
fn counter_reset_hints_combine() {
    use CounterResetHint::*;
    let cases = [
        (Unknown, Unknown, Unknown, false),
        (Gauge, Reset, Gauge, false),
        (Reset, Gauge, Gauge, false),
        (Unknown, NotReset, Unknown, false),
        (NotReset, Unknown, Unknown, false),
        (Reset, NotReset, Unknown, true),
        (NotReset, Reset, Unknown, true),
        (Reset, Reset, Reset, false),
    ];
    for (mine, theirs, want, collision) in cases {
        let mut a = sample();
        a.counter_reset_hint = mine;
        let mut b = sample();
        b.counter_reset_hint = theirs;
        let out = a.add(&b).unwrap();
        assert_eq!(
            (a.counter_reset_hint, out.counter_reset_collision),
            (want, collision),
            "{mine:?} + {theirs:?}"
        );
    }
}

#[test]
fn sub_negates_inserted_buckets() {
    let mut a = fh(0, &[(0, 1)], &[5.0]);
    a.sub(&fh(0, &[(2, 1)], &[2.0])).unwrap();
    assert_eq!(pos(&a), vec![(0, 5.0), (2, -2.0)]);
    assert_eq!(a.count, 3.0);
}

#[test]
fn mul_and_div_by_scalars() {
    let mut h = sample();
    h.mul(2.0);
    assert_eq!(h.positive_buckets, vec![2.0, 4.0, 6.0]);
    assert_eq!((h.count, h.zero_count, h.sum), (24.0, 4.0, 6.0));
    assert_eq!(h.counter_reset_hint, CounterResetHint::Unknown);
    h.div(-4.0);
    assert_eq!(h.positive_buckets, vec![-0.5, -1.0, -1.5]);
    assert_eq!(h.negative_buckets, vec![-2.0, -0.25]);
    assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
    let mut z = sample();
    z.div(0.0);
    assert!(z.positive_buckets.is_empty() && z.positive_spans.is_empty());
    assert!(z.negative_buckets.is_empty() && z.negative_spans.is_empty());
    assert_eq!(z.count, f64::INFINITY);
    let mut e = FloatHistogram::default();
    e.div(0.0);
    assert!(e.count.is_nan());
}

#[test]
fn compact_cuts_empty_buckets_and_joins_close_spans() {
    let raw = fh(
        0,
        &[(0, 2), (0, 1), (2, 0), (1, 3)],
        &[0.0, 1.0, 0.0, 0.0, 0.0, 5.0],
    );
    let mut c = raw.clone();
    c.compact(0);
    assert_eq!(c.positive_spans, spans(&[(1, 1), (6, 1)]));
    assert_eq!(c.positive_buckets, vec![1.0, 5.0]);
    let mut c = raw.clone();
    c.compact(6);
    assert_eq!(c.positive_spans, spans(&[(1, 8)]));
    assert_eq!(
        c.positive_buckets,
        vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0]
    );
    let mut c = raw.clone();
    c.compact(5);
    assert_eq!(c.positive_spans, spans(&[(1, 1), (6, 1)]));
    // A NaN bucket is not empty.
    let mut n = fh(0, &[(0, 2)], &[f64::NAN, 0.0]);
    n.compact(0);
    assert_eq!(n.positive_spans, spans(&[(0, 1)]));
    // All empty: nothing left.
    let mut e = fh(0, &[(3, 2)], &[0.0, 0.0]);
    e.compact(2);
    assert!(e.positive_spans.is_empty() && e.positive_buckets.is_empty());
}

#[test]
fn integer_compact_rewrites_deltas() {
    let mut h = int(
        0,
        6,
        0.0,
        &[(0, 2), (0, 1), (2, 0), (1, 3)],
        &[0, 1, -1, 0, 0, 5],
    );
    h.compact(0);
    assert_eq!(h.positive_spans, spans(&[(1, 1), (6, 1)]));
    assert_eq!(h.positive_buckets, vec![1, 4]);
    h.compact(6);
    assert_eq!(h.positive_spans, spans(&[(1, 8)]));
    assert_eq!(h.positive_buckets, vec![1, -1, 0, 0, 0, 0, 0, 5]);
    assert!(h.validate().is_ok());
}

#[test]
fn reduce_resolution_merges_buckets() {
    // Schema 2 buckets -3..=2 into schema 0: -3..=0 lie in (0.5, 1], 1 and 2 in (1, 2].
    let mut h = int(2, 21, 1.0, &[(-3, 6)], &[1, 1, 1, 1, 1, 1]);
    h.reduce_resolution(0).unwrap();
    assert_eq!(h.schema, 0);
    assert_eq!(h.positive_spans, spans(&[(0, 2)]));
    assert_eq!(h.positive_buckets, vec![10, 1]);
    assert!(h.validate().is_ok());
    let mut f = fh(8, &[(0, 1), (300, 2)], &[1.0, 2.0, 3.0]);
    f.reduce_resolution(-4).unwrap();
    assert_eq!(pos(&f), vec![(0, 1.0), (1, 5.0)]);
    assert!(f.reduce_resolution(-4).is_err());
    assert!(custom(&[1.0], &[], &[]).reduce_resolution(0).is_err());
    let mut bad = int(2, 0, 0.0, &[(0, 1), (-1, 1)], &[1, 0]);
    assert_eq!(
        bad.reduce_resolution(0).unwrap_err().to_string(),
        "span number 2 with offset -1: histogram has a span whose offset is negative"
    );
    let mut short = int(2, 0, 0.0, &[(0, 3)], &[1]);
    assert_eq!(
        short.reduce_resolution(0).unwrap_err().kind(),
        HistogramErrorKind::SpansBucketsMismatch
    );
}

#[test]
fn copy_to_schema() {
    let mut h = fh(3, &[(-7, 16)], &[1.0; 16]);
    h.counter_reset_hint = CounterResetHint::NotReset;
    let c = h.copy_to_schema(0).unwrap();
    assert_eq!(pos(&c), vec![(0, 8.0), (1, 8.0)]);
    assert_eq!(c.counter_reset_hint, CounterResetHint::Unknown);
    assert_eq!(h.copy_to_schema(3).unwrap(), h);
    assert!(h.copy_to_schema(4).is_none());
    assert!(custom(&[1.0], &[], &[]).copy_to_schema(0).is_none());
}

#[test]
fn detect_reset_rules() {
    let prev = sample();
    assert!(!sample().detect_reset(&prev));
    let mut grown = sample();
    grown.positive_buckets[2] += 1.0;
    grown.count += 1.0;
    assert!(!grown.detect_reset(&prev));
    let mut shrunk = sample();
    shrunk.positive_buckets[1] -= 1.0;
    assert!(shrunk.detect_reset(&prev));
    shrunk.counter_reset_hint = CounterResetHint::NotReset;
    assert!(!shrunk.detect_reset(&prev));
    let mut hinted = sample();
    hinted.counter_reset_hint = CounterResetHint::Reset;
    assert!(hinted.detect_reset(&prev));
    let mut fewer = sample();
    fewer.count -= 1.0;
    assert!(fewer.detect_reset(&prev));
    let mut zero = sample();
    zero.zero_count -= 1.0;
    assert!(zero.detect_reset(&prev));
    let mut thr = sample();
    thr.zero_threshold /= 2.0;
    assert!(thr.detect_reset(&prev));
    // A populated bucket missing now is a reset; an empty one is not.
    let mut missing = sample();
    missing.positive_spans = spans(&[(0, 2)]);
    missing.positive_buckets = vec![1.0, 2.0];
    assert!(missing.detect_reset(&prev));
    let mut prev_empty = sample();
    prev_empty.positive_buckets[2] = 0.0;
    assert!(!missing.detect_reset(&prev_empty));
    // Negative side too.
    let mut neg = sample();
    neg.negative_buckets[1] = 0.0;
    assert!(neg.detect_reset(&prev));
    // Higher resolution now: reset; lower: compared after merging.
    let mut finer = sample();
    finer.schema = 1;
    assert!(finer.detect_reset(&prev));
    let p1 = fh(1, &[(0, 2)], &[1.0, 2.0]);
    let c0 = fh(0, &[(0, 2)], &[1.0, 2.0]);
    assert!(!c0.detect_reset(&p1));
    let mut c0 = fh(0, &[(0, 2)], &[2.0, 1.0]);
    c0.count = 3.0;
    assert!(c0.detect_reset(&p1));
}

#[test]
fn detect_reset_with_a_wider_zero_bucket() {
    let prev = FloatHistogram {
        zero_threshold: 0.001,
        zero_count: 1.0,
        positive_spans: spans(&[(-2, 1), (1, 1)]),
        positive_buckets: vec![1.0, 2.0],
        count: 4.0,
        ..Default::default()
    };
    // Threshold 0.25 swallows bucket (0.125, 0.25]: zero count 2 needed.
    let mut now = FloatHistogram {
        zero_threshold: 0.25,
        zero_count: 2.0,
        positive_spans: spans(&[(0, 1)]),
        positive_buckets: vec![2.0],
        count: 4.0,
        ..Default::default()
    };
    assert!(!now.detect_reset(&prev));
    now.zero_count = 1.5;
    assert!(now.detect_reset(&prev));
    // Threshold 0.2 cuts through the populated bucket: reset.
    now.zero_threshold = 0.2;
    now.zero_count = 2.0;
    assert!(now.detect_reset(&prev));
}

#[test]
fn detect_reset_across_custom_bounds() {
    let prev = custom(&[1.0, 2.0], &[(0, 3)], &[1.0, 1.0, 1.0]);
    assert!(!custom(&[1.0, 3.0], &[(0, 3)], &[1.0, 0.0, 2.0]).detect_reset(&prev));
    assert!(custom(&[1.0, 3.0], &[(0, 3)], &[0.5, 1.0, 2.0]).detect_reset(&prev));
    assert!(custom(&[1.0, 2.0], &[(0, 3)], &[1.0, 0.5, 2.0]).detect_reset(&prev));
    let mut c = custom(&[1.0, 2.0], &[(0, 3)], &[1.0, 1.0, 1.0]);
    c.count = 100.0;
    assert!(c.detect_reset(&sample()));
    // From custom to exponential buckets: compared as exponential histograms.
    let mut e = sample();
    e.count = 100.0;
    assert!(!e.detect_reset(&sample()));
}

#[test]
fn zero_bucket_widening_across_schemas_is_prometheus_faithful() {
    // b's bucket (0.25, 0.5] straddles a's threshold 0.3: the threshold moves to 0.5 and the
    // bucket joins the zero count; merged into schema -2 it is part of (1/16, 1], whose upper
    // bound is past 0.5, so it is added as a bucket too. Prometheus does the same.
    let mut a = FloatHistogram {
        schema: -2,
        zero_threshold: 0.3,
        ..Default::default()
    };
    let b = fh(0, &[(-1, 1)], &[1.0]);
    a.add(&b).unwrap();
    assert_eq!((a.zero_threshold, a.zero_count, a.count), (0.5, 1.0, 1.0));
    assert_eq!(pos(&a), vec![(0, 1.0)]);
}
