//! Property tests of the histogram math over random (bounded) histograms. Counts are small
//! whole numbers, so float sums are exact and results can be compared for equality.

use proptest::prelude::*;

use super::*;

/// Spans (first offset -20..20, later 0..4, lengths 0..5) and absolute counts 0..8 for them.
fn side() -> impl Strategy<Value = (Vec<Span>, Vec<u64>)> {
    prop::collection::vec((0i32..4, 0u32..5), 0..4).prop_flat_map(|raw| {
        let first = -20i32..20;
        let n: u32 = raw.iter().map(|s| s.1).sum();
        (first, prop::collection::vec(0u64..8, n as usize)).prop_map(move |(f, counts)| {
            let spans = raw
                .iter()
                .enumerate()
                .map(|(i, &(o, l))| Span::new(if i == 0 { f } else { o }, l))
                .collect();
            (spans, counts)
        })
    })
}

fn deltas(abs: &[u64]) -> Vec<i64> {
    let mut prev = 0i64;
    abs.iter()
        .map(|&c| {
            let d = c as i64 - prev;
            prev = c as i64;
            d
        })
        .collect()
}

/// A valid integer histogram of an exponential schema.
fn int_histogram() -> impl Strategy<Value = Histogram> {
    (
        MIN_SCHEMA..=MAX_SCHEMA,
        prop::sample::select(vec![0.0, 0.001, 0.3]),
        0u64..5,
        side(),
        side(),
    )
        .prop_map(|(schema, zero_threshold, zero_count, (ps, pc), (ns, nc))| {
            let count = zero_count + pc.iter().sum::<u64>() + nc.iter().sum::<u64>();
            Histogram {
                schema,
                zero_threshold,
                zero_count,
                count,
                sum: count as f64 * 1.5,
                positive_buckets: deltas(&pc),
                positive_spans: ps,
                negative_buckets: deltas(&nc),
                negative_spans: ns,
                ..Default::default()
            }
        })
}

fn float_histogram() -> impl Strategy<Value = FloatHistogram> {
    int_histogram().prop_map(|h| h.to_float())
}

/// The populated buckets as (index, count).
fn populated(spans: &[Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let h = FloatHistogram {
        positive_spans: spans.to_vec(),
        positive_buckets: buckets.to_vec(),
        ..Default::default()
    };
    h.positive_bucket_iter()
        .filter(|b| b.count != 0.0)
        .map(|b| (b.index, b.count))
        .collect()
}

fn total(h: &FloatHistogram) -> f64 {
    h.zero_count + h.positive_buckets.iter().sum::<f64>() + h.negative_buckets.iter().sum::<f64>()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_histograms_validate(h in int_histogram()) {
        prop_assert!(h.validate().is_ok());
        prop_assert!(h.to_float().validate().is_ok());
    }

    #[test]
    fn add_then_sub_gives_the_original_buckets(a in float_histogram(), b in float_histogram()) {
        let mut b = b;
        b.schema = a.schema;
        b.zero_threshold = a.zero_threshold;
        let mut s = a.clone();
        s.add(&b).unwrap();
        prop_assert_eq!(s.count, a.count + b.count);
        s.sub(&b).unwrap();
        prop_assert_eq!(s.schema, a.schema);
        prop_assert_eq!(s.count, a.count);
        prop_assert_eq!(s.zero_count, a.zero_count);
        prop_assert_eq!(
            populated(&s.positive_spans, &s.positive_buckets),
            populated(&a.positive_spans, &a.positive_buckets)
        );
        prop_assert_eq!(
            populated(&s.negative_spans, &s.negative_buckets),
            populated(&a.negative_spans, &a.negative_buckets)
        );
    }

    #[test]
    fn add_keeps_every_observation(a in float_histogram(), b in float_histogram()) {
        // With no zero bucket width, nothing is dropped whatever the schemas.
        let (mut a, mut b) = (a, b);
        a.zero_threshold = 0.0;
        b.zero_threshold = 0.0;
        let mut s = a.clone();
        s.add(&b).unwrap();
        prop_assert_eq!(s.schema, a.schema.min(b.schema));
        prop_assert_eq!(total(&s), total(&a) + total(&b));
        prop_assert!(s.validate().is_ok());
        // Adding observations never looks like a counter reset, at any schema.
        prop_assert!(!s.detect_reset(&a));
        prop_assert!(!a.detect_reset(&a));
    }

    #[test]
    fn add_across_zero_thresholds_keeps_the_count(a in float_histogram(), b in float_histogram()) {
        // Same schema: with different ones, a bucket merged into the zero bucket at its own
        // schema can come back as part of a coarser bucket reaching past the threshold, and
        // be counted twice, as in Prometheus.
        let mut b = b;
        b.schema = a.schema;
        let mut s = a.clone();
        s.add(&b).unwrap();
        prop_assert!(s.zero_threshold >= a.zero_threshold.max(b.zero_threshold));
        prop_assert_eq!(s.count, a.count + b.count);
        prop_assert!(s.validate().is_ok());
        // Buckets below the zero threshold are only those the receiver had already.
        prop_assert!(total(&s) <= total(&a) + total(&b));
    }

    #[test]
    fn reduce_resolution_keeps_counts(h in int_histogram(), down in 0i32..13) {
        let target = (h.schema - down).max(MIN_SCHEMA);
        prop_assume!(target < h.schema);
        let mut r = h.clone();
        r.reduce_resolution(target).unwrap();
        prop_assert_eq!(r.schema, target);
        prop_assert_eq!((r.count, r.zero_count, r.sum), (h.count, h.zero_count, h.sum));
        prop_assert!(r.validate().is_ok());
        // The same as reducing the float histogram.
        let mut f = h.to_float();
        f.reduce_resolution(target).unwrap();
        prop_assert_eq!(r.to_float(), f.clone());
        prop_assert_eq!(h.to_float().copy_to_schema(target).map(|c| c.positive_buckets), Some(f.positive_buckets));
    }

    #[test]
    fn compact_agrees_between_kinds(h in int_histogram(), max_empty in 0usize..4) {
        let mut i = h.clone();
        i.compact(max_empty);
        let mut f = h.to_float();
        f.compact(max_empty);
        prop_assert_eq!(i.to_float(), f.clone());
        prop_assert!(i.validate().is_ok());
        // Compacting twice changes nothing; no empty bucket is left at a span's edge.
        let mut g = f.clone();
        g.compact(max_empty);
        prop_assert_eq!(&g, &f);
        prop_assert_eq!(
            populated(&f.positive_spans, &f.positive_buckets),
            populated(&h.to_float().positive_spans, &h.to_float().positive_buckets)
        );
        if max_empty == 0 {
            prop_assert!(f.positive_buckets.iter().all(|c| *c != 0.0));
        }
    }

    #[test]
    fn all_buckets_ascend_and_hold_every_count(h in float_histogram()) {
        // Buckets inside a zero bucket get their bound cut at the threshold, so the order
        // only holds for histograms without such buckets.
        let mut h = h;
        h.zero_threshold = 0.0;
        let all: Vec<_> = h.all_bucket_iter().collect();
        for w in all.windows(2) {
            prop_assert!(w[0].upper <= w[1].lower, "{:?}", w);
        }
        for b in &all {
            prop_assert!(b.lower <= b.upper);
        }
        let sum: f64 = all.iter().map(|b| b.count).sum();
        prop_assert_eq!(sum, total(&h));
        let desc: Vec<_> = h.all_bucket_iter_desc().collect();
        prop_assert_eq!(desc.len(), all.len());
    }

    #[test]
    fn bounds_increase_with_the_index(schema in MIN_SCHEMA..=MAX_SCHEMA, idx in any::<i32>()) {
        let (a, b) = (exponential_bound(idx, schema), exponential_bound(idx.saturating_add(1), schema));
        prop_assert!(a <= b);
        prop_assert!(a < b || a == 0.0 || a == f64::INFINITY);
        // Merging into a smaller schema keeps a bound a bound.
        if schema > MIN_SCHEMA && (-10_000..10_000).contains(&idx) {
            let coarse = exponential_bound(idx, schema);
            if idx % 2 == 0 {
                prop_assert_eq!(coarse, exponential_bound(idx / 2, schema - 1));
            }
        }
    }

    #[test]
    fn classic_buckets_round_trip(
        mut les in prop::collection::btree_set(-1000i32..1000, 0..8),
        steps in prop::collection::vec(0u32..5, 8),
        extra in 0u32..3,
    ) {
        let les: Vec<f64> = std::mem::take(&mut les).into_iter().map(|l| f64::from(l) / 8.0).collect();
        let mut cum = Vec::new();
        let mut c = 0.0;
        for (i, le) in les.iter().enumerate() {
            c += f64::from(steps[i]);
            cum.push((*le, c));
        }
        let count = c + f64::from(extra);
        let h = from_classic(&cum, Some(count), 1.0).unwrap().to_float();
        prop_assert!(h.validate().is_ok());
        prop_assert_eq!(h.count, count);
        // The cumulative count at each bound is what was given.
        for &(le, want) in &cum {
            let got: f64 = h.positive_bucket_iter().filter(|b| b.upper <= le).map(|b| b.count).sum();
            prop_assert_eq!(got, want);
        }
        let all: f64 = h.positive_buckets.iter().sum();
        prop_assert_eq!(all, count);
    }
}
