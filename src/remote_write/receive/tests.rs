use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::model::histogram::{CounterResetHint, HistogramValue, Span};
use crate::model::{Labels, MatchOp, Matcher, STALE_NAN, Sample as ModelSample};
use crate::remote_write::proto::{Exemplar, MetricType, Sample, WriteRequest};
use crate::storage::Options;

/// A fixed "now" for the future bound: 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000_000;

fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    (dir, db)
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

fn request(ts: Vec<TimeSeries>) -> Vec<u8> {
    WriteRequest {
        timeseries: ts,
        metadata: vec![],
    }
    .encode_to_vec()
}

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

/// Every stored series with its samples.
fn stored(db: &Db) -> BTreeMap<Labels, Vec<ModelSample>> {
    db.querier()
        .select(
            &[Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()],
            i64::MIN,
            i64::MAX,
        )
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.samples))
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied()).unwrap()
}

#[test]
fn a_valid_request_is_stored_in_one_commit_with_stale_markers_bit_exact() {
    let (_d, db) = db();
    let a = [
        (NOW - 61_337, 0.25),
        (NOW - 45_002, -3.5e9),
        (NOW - 29_871, f64::NAN),
        (NOW - 14_990, STALE_NAN),
    ];
    let b = [(NOW - 60_001, 1e-300), (NOW - 1, f64::INFINITY)];
    // Labels arrive unsorted; an empty value means "no such label", as in Prometheus.
    let body = request(vec![
        series(&[("job", "x"), ("__name__", "a_total"), ("zone", "")], &a),
        series(&[("__name__", "b"), ("path", "/π \"q\"\n")], &b),
    ]);
    let wal_before = db.wal_stats().bytes_written;
    let r = receive(&db, &snappy(&body), NOW).unwrap();
    assert_eq!(r.rejection(), None);
    assert_eq!((r.series, r.samples, r.appended), (2, 6, 6));
    assert!(db.wal_stats().bytes_written > wal_before);
    let got = stored(&db);
    let want: BTreeMap<Labels, Vec<ModelSample>> = [
        (
            labels(&[("__name__", "a_total"), ("job", "x")]),
            a.iter().map(|&(t, v)| ModelSample::new(t, v)).collect(),
        ),
        (
            labels(&[("__name__", "b"), ("path", "/π \"q\"\n")]),
            b.iter().map(|&(t, v)| ModelSample::new(t, v)).collect(),
        ),
    ]
    .into_iter()
    .collect();
    // Sample equality is bit equality: the stale marker stays a stale marker, NaN stays NaN.
    assert_eq!(got, want);
}

#[test]
fn bad_snappy_and_empty_bodies_are_refused_with_snappy_errors() {
    let (_d, db) = db();
    for body in [&b""[..], b"\xff\xff\xff", b"\x0a\x00\x01\x02"] {
        let e = receive(&db, body, NOW).unwrap_err();
        assert!(matches!(e, ReceiveError::Snappy(_)), "{e:?}");
        assert!(e.to_string().starts_with("snappy: "), "{e}");
    }
    // A compressed empty message is an empty request: nothing to store, nothing refused.
    let r = receive(&db, &snappy(b""), NOW).unwrap();
    assert_eq!((r.series, r.samples, r.rejection()), (0, 0, None));
}

#[test]
fn a_small_body_announcing_a_huge_one_is_refused_before_allocating() {
    let (_d, db) = db();
    // Snappy's header is the decompressed length as a varint: 1 GiB, then a few bytes.
    let mut body = Vec::new();
    let mut n: u64 = 1 << 30;
    while n >= 0x80 {
        body.push((n as u8) | 0x80);
        n >>= 7;
    }
    body.push(n as u8);
    body.extend_from_slice(&[0u8; 16]);
    let e = receive(&db, &body, NOW).unwrap_err();
    assert!(
        matches!(
            e,
            ReceiveError::TooLarge {
                size: 1_073_741_824,
                limit: MAX_DECOMPRESSED_BYTES
            }
        ),
        "{e:?}"
    );
    // Just under the cap is decompressed (and then found to be short).
    let ok = decompress(&snappy(&[7u8; 1000]), 1000).unwrap();
    assert_eq!(ok, vec![7u8; 1000]);
    assert!(matches!(
        decompress(&snappy(&[7u8; 1001]), 1000),
        Err(ReceiveError::TooLarge {
            size: 1001,
            limit: 1000
        })
    ));
}

#[test]
fn bad_protobuf_stores_nothing_even_after_valid_series() {
    let (_d, db) = db();
    let good = request(vec![series(&[("__name__", "kept_not")], &[(NOW, 1.0)])]);
    let mut invalid_utf8 = request(vec![series(
        &[("__name__", "m"), ("a", "zz")],
        &[(NOW, 2.0)],
    )]);
    let at = invalid_utf8.windows(2).position(|w| w == b"zz").unwrap();
    invalid_utf8[at] = 0xff;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            [good.clone(), vec![0x0a, 0x05, 0x01]].concat(),
            "past the end",
        ),
        ([good.clone(), vec![0x0a]].concat(), "truncated varint"),
        ([good.clone(), vec![0x28]].concat(), "truncated varint"),
        ([good.clone(), vec![0x09, 0x01]].concat(), "wire type 1"),
        (
            [good.clone(), vec![0x00]].concat(),
            "invalid field number 0",
        ),
        ([good.clone(), vec![0x17]].concat(), "invalid wire type 7"),
        (
            [good.clone(), vec![0x2b, 0x0a, 0x00]].concat(),
            "not closed",
        ),
        ([good.clone(), vec![0x24]].concat(), "without a start"),
        ([good.clone(), invalid_utf8].concat(), "UTF-8"),
        (
            [good.clone(), vec![0x0a, 0x02, 0x0a, 0x07]].concat(),
            "Protobuf",
        ),
    ];
    for (body, want) in cases {
        let e = receive(&db, &snappy(&body), NOW).unwrap_err();
        let ReceiveError::Protobuf { offset, .. } = &e else {
            panic!("{want}: {e:?}");
        };
        assert!(e.to_string().starts_with("protobuf: "), "{e}");
        assert!(e.to_string().contains(want), "{want}: {e}");
        assert_eq!(
            *offset,
            good.len(),
            "{want}: the failing field starts after the good one"
        );
    }
    assert!(
        stored(&db).is_empty(),
        "a request that does not decode stores nothing"
    );
}

#[test]
fn a_varint_beyond_64_bits_is_refused_not_wrapped() {
    let (_d, db) = db();
    let good = request(vec![series(&[("__name__", "kept_not")], &[(NOW, 1.0)])]);
    // The key of field 5 (a varint) in ten bytes, the last carrying bits past the 64th. The
    // receiver's own varint reader dropped those bits, read field 5, skipped it and stored
    // the request.
    let mut key = vec![0xa8];
    key.extend([0x80; 8]);
    key.push(0x02);
    let body = [good.clone(), key, vec![0x01]].concat();
    let e = receive(&db, &snappy(&body), NOW).unwrap_err();
    let at = good.len();
    assert!(
        matches!(
            e,
            ReceiveError::Protobuf {
                offset,
                error: ProtoError::VarintOverflow { at: a },
            } if offset == at && a == at
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("varint overflows 64 bits"), "{e}");
    // The same inside a length prefix.
    let mut len = vec![0x52];
    len.extend([0xff; 9]);
    len.push(0x7f);
    let e = receive(&db, &snappy(&[good.clone(), len].concat()), NOW).unwrap_err();
    assert!(
        matches!(
            e,
            ReceiveError::Protobuf {
                error: ProtoError::VarintOverflow { at: a },
                ..
            } if a == at + 1
        ),
        "{e:?}"
    );
    assert!(stored(&db).is_empty());
}

#[test]
fn decode_errors_keep_the_field_and_the_offset() {
    let (_d, db) = db();
    let good = request(vec![series(&[("__name__", "kept_not")], &[(NOW, 1.0)])]);
    let at = good.len();
    let cases: Vec<(Vec<u8>, ProtoError)> = vec![
        (
            vec![0x0a, 0x05, 0x01],
            ProtoError::PastEnd {
                at: at + 2,
                needed: 5,
                left: 1,
            },
        ),
        (
            vec![0x39, 1, 2, 3],
            ProtoError::PastEnd {
                at: at + 1,
                needed: 8,
                left: 3,
            },
        ),
        (vec![0x0a], ProtoError::TruncatedVarint { at: at + 1 }),
        (
            vec![0x09, 0x01],
            ProtoError::NotDelimited { field: 1, wire: 1 },
        ),
        (
            vec![0x1d, 0, 0, 0, 0],
            ProtoError::NotDelimited { field: 3, wire: 5 },
        ),
        (
            vec![0x2e],
            ProtoError::InvalidWireType { field: 5, wire: 6 },
        ),
        (
            vec![0x2b, 0x34],
            ProtoError::GroupMismatch { open: 5, closed: 6 },
        ),
        (vec![0x2b], ProtoError::GroupNotClosed { field: 5 }),
        (vec![0x2c], ProtoError::EndWithoutStart { field: 5 }),
        (
            vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            ProtoError::InvalidFieldNumber(1 << 32),
        ),
    ];
    for (tail, want) in cases {
        let e = receive(&db, &snappy(&[good.clone(), tail].concat()), NOW).unwrap_err();
        let ReceiveError::Protobuf { offset, error } = &e else {
            panic!("{want:?}: {e:?}");
        };
        assert_eq!((*offset, error), (at, &want));
    }
    // Groups nest at most MAX_GROUP_DEPTH deep.
    let deep = vec![0x2b; MAX_GROUP_DEPTH + 1];
    let e = receive(&db, &snappy(&[good.clone(), deep].concat()), NOW).unwrap_err();
    assert!(
        matches!(
            e,
            ReceiveError::Protobuf {
                error: ProtoError::GroupTooDeep { field: 5 },
                ..
            }
        ),
        "{e:?}"
    );
    // A message prost refuses names the field it was in.
    for (field, tail) in [(1, [0x0a, 0x02, 0x0a, 0x07]), (3, [0x1a, 0x02, 0x08, 0x80])] {
        let e = receive(&db, &snappy(&[good.clone(), tail.to_vec()].concat()), NOW).unwrap_err();
        assert!(
            matches!(
                &e,
                ReceiveError::Protobuf {
                    error: ProtoError::Message { field: f, .. },
                    ..
                } if *f == field
            ),
            "{e:?}"
        );
    }
    assert!(stored(&db).is_empty());
}

#[test]
fn unknown_fields_are_skipped_exemplars_and_metadata_counted_and_ignored() {
    let (_d, db) = db();
    let mut ts = series(
        &[("__name__", "req_total")],
        &[(NOW - 3_001, 7.0), (NOW - 7, 9.0)],
    );
    ts.exemplars = vec![Exemplar {
        labels: vec![Label {
            name: "trace_id".into(),
            value: "abc".into(),
        }],
        value: 1.5,
        timestamp: NOW - 50,
    }];
    let mut body = WriteRequest {
        timeseries: vec![ts],
        metadata: vec![MetricMetadata {
            r#type: MetricType::Counter as i32,
            metric_family_name: "req".into(),
            help: "Requests.".into(),
            unit: String::new(),
        }],
    }
    .encode_to_vec();
    // Fields a later protocol version might add: a varint, a fixed64, a fixed32, a nested
    // group, bytes.
    body.extend_from_slice(&[0x28, 0x96, 0x01]);
    body.extend_from_slice(&[0x31, 1, 2, 3, 4, 5, 6, 7, 8]);
    body.extend_from_slice(&[0x3d, 1, 2, 3, 4]);
    body.extend_from_slice(&[0x43, 0x4b, 0x08, 0x01, 0x4c, 0x44]);
    body.extend_from_slice(&[0x52, 0x02, 0xaa, 0xbb]);
    let r = receive(&db, &snappy(&body), NOW).unwrap();
    assert_eq!(r.rejection(), None);
    assert_eq!(
        (r.series, r.samples, r.appended, r.exemplars, r.metadata),
        (1, 2, 2, 1, 1)
    );
    assert_eq!(
        stored(&db)[&labels(&[("__name__", "req_total")])],
        vec![
            ModelSample::new(NOW - 3_001, 7.0),
            ModelSample::new(NOW - 7, 9.0)
        ]
    );
}

#[test]
fn invalid_series_are_skipped_and_reported_while_valid_ones_are_stored() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (
            &[("__name__", "m"), ("bad-name", "1")],
            "invalid label name \"bad-name\"",
        ),
        (
            &[("__name__", "m"), ("a", "1"), ("a", "2")],
            "duplicate label name \"a\"",
        ),
        (&[("job", "x")], "no metric name (__name__ label)"),
        (
            &[("__name__", ""), ("job", "x")],
            "no metric name (__name__ label)",
        ),
        (&[("__name__", "1up")], "invalid metric name \"1up\""),
        (&[], "no metric name (__name__ label)"),
    ];
    for (bad, want) in cases {
        let (_d, db) = db();
        let body = request(vec![
            series(&[("__name__", "before")], &[(NOW - 2_000, 1.0)]),
            series(bad, &[(NOW - 1_500, 2.0), (NOW - 900, 3.0)]),
            series(&[("__name__", "after")], &[(NOW - 1_000, 4.0)]),
        ]);
        let r = receive(&db, &snappy(&body), NOW).unwrap();
        assert_eq!(r.rejected(Reject::InvalidLabels), 2, "{want}");
        assert_eq!((r.invalid_series, r.appended), (1, 2), "{want}");
        let msg = r.rejection().unwrap();
        assert!(msg.starts_with("2 of 4 samples rejected"), "{msg}");
        assert!(msg.contains("invalid labels for series {"), "{msg}");
        assert!(msg.contains(want), "{want}: {msg}");
        let got: Vec<_> = stored(&db).into_keys().collect();
        assert_eq!(
            got,
            vec![
                labels(&[("__name__", "after")]),
                labels(&[("__name__", "before")])
            ]
        );
    }
}

#[test]
fn the_message_names_the_first_invalid_series_and_counts_the_others() {
    let (_d, db) = db();
    let long = "v".repeat(5000);
    let body = request(vec![
        series(&[("__name__", "m"), ("x-y", &long)], &[(NOW, 1.0)]),
        series(&[("__name__", "m"), ("a.b", "1")], &[(NOW, 1.0)]),
        series(&[("le", "1")], &[(NOW, 1.0)]),
    ]);
    let r = receive(&db, &snappy(&body), NOW).unwrap();
    assert_eq!(r.invalid_series, 3);
    let msg = r.rejection().unwrap();
    assert!(msg.contains("\"x-y\""), "{msg}");
    assert!(msg.contains("(and 2 more series)"), "{msg}");
    assert!(
        msg.len() < 600,
        "a sender's huge label stays out of the response: {msg}"
    );
}

#[test]
fn refused_samples_are_counted_and_the_rest_of_the_request_is_stored() {
    let (_d, db) = db();
    let s = |t: i64, v: f64| (NOW + t, v);
    let first = request(vec![
        series(&[("__name__", "a")], &[s(-30_000, 1.0), s(-20_000, 2.0)]),
        series(&[("__name__", "b")], &[s(-25_000, 5.0)]),
    ]);
    receive(&db, &snappy(&first), NOW).unwrap();
    // a: one older than stored (out of order), one identical to the newest (a sender's retry:
    // ignored), then a newer one; b: same timestamp, other value (duplicate), then newer ones,
    // one of them too far ahead of the clock; c: new, fine.
    let second = request(vec![
        series(
            &[("__name__", "a")],
            &[s(-25_000, 1.5), s(-20_000, 2.0), s(-10_000, 3.0)],
        ),
        series(
            &[("__name__", "b")],
            &[s(-25_000, 6.0), s(-5_000, 7.0), s(MAX_AHEAD_MS + 1, 8.0)],
        ),
        series(&[("__name__", "c")], &[s(MAX_AHEAD_MS, 9.0)]),
    ]);
    let r = receive(&db, &snappy(&second), NOW).unwrap();
    assert_eq!(r.samples, 7);
    assert_eq!(r.appended, 3);
    assert_eq!(r.duplicates_ignored, 1);
    assert_eq!(
        Reject::ALL.map(|x| r.rejected(x)),
        [0, 1, 1, 1, 0, 0],
        "invalid, future, out of order, duplicate, out of bounds, invalid histogram"
    );
    let msg = r.rejection().unwrap();
    assert_eq!(
        msg,
        "3 of 7 samples rejected, the others were stored: \
         out of bounds: timestamp is too far in the future: 1 samples; \
         out of order sample: 1 samples; duplicate sample for timestamp: 1 samples"
    );
    let got = stored(&db);
    let vals = |n: &str| -> Vec<(i64, f64)> {
        got[&labels(&[("__name__", n)])]
            .iter()
            .map(|x| (x.t - NOW, x.v))
            .collect()
    };
    assert_eq!(
        vals("a"),
        vec![(-30_000, 1.0), (-20_000, 2.0), (-10_000, 3.0)]
    );
    assert_eq!(vals("b"), vec![(-25_000, 5.0), (-5_000, 7.0)]);
    assert_eq!(vals("c"), vec![(MAX_AHEAD_MS, 9.0)]);
}

#[test]
fn samples_before_the_head_are_out_of_bounds() {
    let (_d, db) = db();
    db.head().set_min_valid(NOW - 3_600_000);
    let body = request(vec![series(
        &[("__name__", "old")],
        &[(NOW - 7_200_123, 1.0), (NOW - 60_000, 2.0)],
    )]);
    let r = receive(&db, &snappy(&body), NOW).unwrap();
    assert_eq!((r.rejected(Reject::OutOfBounds), r.appended), (1, 1));
    assert!(r.rejection().unwrap().contains("out of bounds: 1 samples"));
}

#[test]
fn samples_outside_the_storable_range_are_out_of_bounds_and_the_head_still_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        block_duration: 60_000,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts).unwrap();
    let body = request(vec![
        series(
            &[("__name__", "extreme")],
            &[(i64::MIN + 1, 1.0), (i64::MIN, 2.0)],
        ),
        series(&[("__name__", "late")], &[(i64::MAX - 1, 3.0)]),
        series(&[("__name__", "ok")], &[(NOW - 100_000, 4.0)]),
    ]);
    let r = receive(&db, &snappy(&body), NOW).unwrap();
    assert_eq!(
        (r.rejected(Reject::OutOfBounds), r.appended),
        (3, 1),
        "{r:?}"
    );
    // Prometheus's answer to a partial refusal: 400 with what was refused, the rest stored.
    assert_eq!(
        r.rejection().unwrap(),
        "3 of 4 samples rejected, the others were stored: out of bounds: 3 samples"
    );
    let more: Vec<(i64, f64)> = (0..100).map(|i| (NOW - 99_000 + i * 1_000, 5.0)).collect();
    let body = request(vec![series(&[("__name__", "ok")], &more)]);
    assert_eq!(receive(&db, &snappy(&body), NOW).unwrap().appended, 100);
    assert!(!db.flush().unwrap().is_empty(), "the head cut no block");
    let got = stored(&db);
    assert!(!got.contains_key(&labels(&[("__name__", "extreme")])));
    assert!(!got.contains_key(&labels(&[("__name__", "late")])));
}

#[test]
fn a_series_repeated_in_one_request_keeps_its_samples_in_order() {
    let (_d, db) = db();
    let body = request(vec![
        series(&[("__name__", "r"), ("i", "1")], &[(NOW - 9_000, 1.0)]),
        series(&[("i", "1"), ("__name__", "r")], &[(NOW - 4_000, 2.0)]),
        series(&[("__name__", "r"), ("i", "1")], &[(NOW - 6_000, 3.0)]),
    ]);
    let r = receive(&db, &snappy(&body), NOW).unwrap();
    assert_eq!((r.appended, r.rejected(Reject::OutOfOrder)), (2, 1));
    let got = stored(&db);
    assert_eq!(
        got[&labels(&[("__name__", "r"), ("i", "1")])],
        vec![
            ModelSample::new(NOW - 9_000, 1.0),
            ModelSample::new(NOW - 4_000, 2.0)
        ]
    );
}

/// A series as the property test draws it: a name, one more label, time steps, values.
fn arb_series() -> impl Strategy<Value = (String, String, Vec<(i64, f64)>)> {
    (
        "[a-z_][a-z0-9_]{0,6}",
        "[a-zA-Z0-9 ]{0,4}",
        prop::collection::vec((1i64..90_000, -1e6f64..1e6), 0..12),
    )
        .prop_map(|(name, v, steps)| {
            let mut t = NOW - 5_000_000;
            let samples = steps
                .into_iter()
                .map(|(dt, v)| {
                    t += dt;
                    (t, v)
                })
                .collect();
            (name, v, samples)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Against a naive model: a request of valid series stores exactly its samples, merged
    /// per label set in time order, later ones at or before a series' newest refused.
    #[test]
    fn stores_what_a_naive_model_predicts(all in prop::collection::vec(arb_series(), 0..8)) {
        let (_d, db) = db();
        let mut model: BTreeMap<Labels, Vec<ModelSample>> = BTreeMap::new();
        let mut refused = 0u64;
        let mut ts = Vec::new();
        for (name, v, samples) in &all {
            let l = labels(&[("__name__", name), ("v", v)]);
            let kept = model.entry(l).or_default();
            for &(t, val) in samples {
                match kept.last() {
                    // Identical to the newest: a retry, ignored rather than refused.
                    Some(last) if last.t == t && last.v.to_bits() == val.to_bits() => {}
                    Some(last) if last.t >= t => refused += 1,
                    _ => kept.push(ModelSample::new(t, val)),
                }
            }
            ts.push(series(&[("v", v), ("__name__", name)], samples));
        }
        model.retain(|_, s| !s.is_empty());
        let r = receive(&db, &snappy(&request(ts)), NOW).unwrap();
        prop_assert_eq!(r.total_rejected(), refused);
        prop_assert_eq!(stored(&db), model);
    }

    /// Whatever the bytes, decoding answers with an error or a count, never a panic.
    #[test]
    fn arbitrary_bodies_never_panic(raw in prop::collection::vec(any::<u8>(), 0..256)) {
        let (_d, db) = db();
        let _ = receive(&db, &raw, NOW);
        if let Ok(r) = receive(&db, &snappy(&raw), NOW) {
            prop_assert!(r.appended + r.total_rejected() + r.duplicates_ignored <= r.samples);
        }
    }
}

// ---- native histograms ----

fn int_histogram(t: i64, counts: &[i64]) -> proto::Histogram {
    let mut deltas = Vec::new();
    let mut prev = 0;
    for c in counts {
        deltas.push(c - prev);
        prev = *c;
    }
    let total: i64 = counts.iter().sum::<i64>() + 2;
    proto::Histogram {
        count: Some(HistogramCount::Int(total as u64)),
        sum: 17.25,
        schema: 2,
        zero_threshold: 0.001,
        zero_count: Some(HistogramZeroCount::Int(2)),
        positive_spans: vec![proto::BucketSpan {
            offset: -3,
            length: counts.len() as u32,
        }],
        positive_deltas: deltas,
        reset_hint: 2,
        timestamp: t,
        ..Default::default()
    }
}

fn stored_histograms(db: &Db, name: &str) -> Vec<crate::model::histogram::HistogramSample> {
    db.querier()
        .select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
        .unwrap()
        .pop()
        .map(|s| s.histograms)
        .unwrap_or_default()
}

#[test]
fn native_histograms_are_received_bit_exact_integer_float_and_custom() {
    let (_d, db) = db();
    let mut ints = series(&[("__name__", "rt")], &[]);
    ints.histograms = vec![
        int_histogram(NOW - 2_000, &[1, 4, 2]),
        int_histogram(NOW - 1_000, &[2, 5, 2]),
    ];
    let mut floats = series(&[("__name__", "ratio")], &[]);
    floats.histograms = vec![proto::Histogram {
        count: Some(HistogramCount::Float(3.5)),
        sum: -1.25,
        schema: 0,
        zero_threshold: 0.0,
        zero_count: Some(HistogramZeroCount::Float(0.5)),
        negative_spans: vec![proto::BucketSpan {
            offset: 1,
            length: 2,
        }],
        negative_counts: vec![1.0, 2.0],
        reset_hint: 3,
        timestamp: NOW - 500,
        ..Default::default()
    }];
    let mut custom = series(&[("__name__", "nhcb")], &[]);
    custom.histograms = vec![proto::Histogram {
        count: Some(HistogramCount::Int(6)),
        sum: 3.0,
        schema: -53,
        positive_spans: vec![proto::BucketSpan {
            offset: 0,
            length: 3,
        }],
        positive_deltas: vec![1, 2, -1],
        custom_values: vec![0.1, 0.5],
        timestamp: NOW - 100,
        ..Default::default()
    }];
    let r = receive(&db, &snappy(&request(vec![ints, floats, custom])), NOW).unwrap();
    assert_eq!(r.rejection(), None, "{r:?}");
    assert_eq!((r.histograms, r.appended), (4, 4));

    let rt = stored_histograms(&db, "rt");
    assert_eq!(rt.len(), 2);
    let HistogramValue::Int(h) = &rt[1].h else {
        panic!("{rt:?}")
    };
    assert_eq!(rt[1].t, NOW - 1_000);
    assert_eq!(
        (h.schema, h.count, h.zero_count, h.sum, h.zero_threshold),
        (2, 11, 2, 17.25, 0.001)
    );
    assert_eq!(h.positive_spans, [Span::new(-3, 3)]);
    assert_eq!(h.positive_buckets, [2, 3, -3]);
    assert_eq!(h.counter_reset_hint, CounterResetHint::NotReset);

    let ratio = stored_histograms(&db, "ratio");
    let HistogramValue::Float(f) = &ratio[0].h else {
        panic!("{ratio:?}")
    };
    assert_eq!((f.count, f.zero_count, f.sum), (3.5, 0.5, -1.25));
    assert_eq!(f.negative_buckets, [1.0, 2.0]);
    assert_eq!(f.counter_reset_hint, CounterResetHint::Gauge);

    let nhcb = stored_histograms(&db, "nhcb");
    let HistogramValue::Int(c) = &nhcb[0].h else {
        panic!("{nhcb:?}")
    };
    assert_eq!(
        (c.schema, c.custom_values.as_slice()),
        (-53, &[0.1, 0.5][..])
    );
}

#[test]
fn invalid_histograms_are_refused_one_by_one_and_named() {
    let (_d, db) = db();
    let mut ts = series(&[("__name__", "rt")], &[(NOW - 5_000, 1.0)]);
    let mut too_few = int_histogram(NOW - 3_000, &[1, 4, 2]);
    too_few.count = Some(HistogramCount::Int(3));
    let mut bad_hint = int_histogram(NOW - 2_500, &[1]);
    bad_hint.reset_hint = 9;
    let mut spans = int_histogram(NOW - 2_200, &[1, 1]);
    spans.positive_deltas.pop();
    ts.histograms = vec![
        too_few,
        bad_hint,
        spans,
        int_histogram(NOW - 2_000, &[1, 4, 2]),
    ];
    let r = receive(&db, &snappy(&request(vec![ts])), NOW).unwrap();
    assert_eq!(r.rejected(Reject::InvalidHistogram), 3);
    assert_eq!(r.appended, 2, "the float sample and the valid histogram");
    let msg = r.rejection().unwrap();
    assert!(msg.starts_with("3 of 5 samples rejected"), "{msg}");
    assert!(
        msg.contains("invalid histogram for series rt at 1699999997000: 9 observations"),
        "{msg}"
    );
    assert_eq!(stored_histograms(&db, "rt").len(), 1);
}

#[test]
fn histograms_follow_the_append_rules_and_finer_schemas_become_8() {
    let (_d, db) = db();
    let mut ts = series(&[("__name__", "rt")], &[]);
    let mut fine = int_histogram(NOW - 1_000, &[1, 1, 1, 1]);
    fine.schema = 12;
    fine.positive_spans[0].offset = 0;
    // The same histogram again (a retry: ignored), then an older one (out of order).
    ts.histograms = vec![fine.clone(), fine, int_histogram(NOW - 9_000, &[1])];
    let r = receive(&db, &snappy(&request(vec![ts])), NOW).unwrap();
    assert_eq!(r.appended, 1);
    assert_eq!(r.duplicates_ignored, 1);
    assert_eq!(r.rejected(Reject::OutOfOrder), 1);
    let HistogramValue::Int(h) = &stored_histograms(&db, "rt")[0].h else {
        panic!()
    };
    // Index 0 at schema 12 stays index 0 at schema 8; 1..=3 fall into index 1.
    assert_eq!((h.schema, h.count), (8, 6));
    assert_eq!(h.positive_spans, [Span::new(0, 2)]);
    assert_eq!(h.positive_buckets, [1, 2]);
    // Invalid labels refuse the histograms too.
    let mut bad = series(&[("__name__", "0bad")], &[]);
    bad.histograms = vec![int_histogram(NOW, &[1])];
    let r = receive(&db, &snappy(&request(vec![bad])), NOW).unwrap();
    assert_eq!(r.rejected(Reject::InvalidLabels), 1);
}
