use super::*;
use crate::scrape::parse::proto_types::{
    Bucket, BucketSpan, Counter, Gauge, Histogram as PbHistogram, MetricFamily, Quantile, Summary,
    Untyped,
};

fn lp(n: &str, v: &str) -> LabelPair {
    LabelPair {
        name: n.into(),
        value: v.into(),
    }
}

fn family(name: &str, kind: pb::MetricType, metric: Vec<Metric>) -> MetricFamily {
    MetricFamily {
        name: name.into(),
        help: format!("help of {name}"),
        r#type: kind as i32,
        metric,
        unit: String::new(),
    }
}

fn body(families: &[MetricFamily]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in families {
        f.encode_length_delimited(&mut out).unwrap();
    }
    out
}

/// What the parser yields, as text: `META kind name text` and `series value [@t]`.
#[derive(Debug, Clone, PartialEq)]
enum Out {
    Meta(String),
    Float(String, u64, Option<i64>),
    Hist(String, HistogramValue, Option<i64>),
}

fn parse(body: &[u8], opts: ProtoOptions) -> Result<Vec<Out>, ProtoError> {
    let mut p = ProtoParser::new(body, opts);
    let mut out = Vec::new();
    while let Some(item) = p.next_item() {
        match item? {
            ProtoItem::Meta(Entry::Help { name, help, .. }) => {
                out.push(Out::Meta(format!("HELP {name} {help}")))
            }
            ProtoItem::Meta(Entry::Unit { name, unit, .. }) => {
                out.push(Out::Meta(format!("UNIT {name} {unit}")))
            }
            ProtoItem::Meta(Entry::Type { name, kind, .. }) => {
                out.push(Out::Meta(format!("TYPE {name} {}", kind.as_str())))
            }
            ProtoItem::Meta(Entry::Sample(_)) => unreachable!(),
            ProtoItem::Sample(s) => {
                let labels = s.to_labels()?.to_string();
                let t = s.timestamp();
                match s.into_value() {
                    ProtoValue::Float(v) => out.push(Out::Float(labels, v.to_bits(), t)),
                    ProtoValue::Histogram(h) => out.push(Out::Hist(labels, h, t)),
                }
            }
        }
    }
    Ok(out)
}

fn floats(out: &[Out]) -> Vec<(String, f64)> {
    out.iter()
        .filter_map(|o| match o {
            Out::Float(l, v, _) => Some((l.clone(), f64::from_bits(*v))),
            _ => None,
        })
        .collect()
}

fn native_opts() -> ProtoOptions {
    ProtoOptions {
        native_histograms: true,
        ..Default::default()
    }
}

fn metric(labels: Vec<LabelPair>) -> Metric {
    Metric {
        label: labels,
        ..Default::default()
    }
}

fn classic_hist() -> PbHistogram {
    PbHistogram {
        sample_count: 7,
        sample_sum: 12.5,
        bucket: vec![
            Bucket {
                cumulative_count: 2,
                upper_bound: 0.5,
                ..Default::default()
            },
            Bucket {
                cumulative_count: 5,
                upper_bound: 1.0,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

fn native_hist() -> PbHistogram {
    PbHistogram {
        sample_count: 9,
        sample_sum: -3.25,
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: 1,
        positive_span: vec![
            BucketSpan {
                offset: -2,
                length: 2,
            },
            BucketSpan {
                offset: 3,
                length: 1,
            },
        ],
        positive_delta: vec![2, -1, 3],
        negative_span: vec![BucketSpan {
            offset: 0,
            length: 1,
        }],
        negative_delta: vec![1],
        ..Default::default()
    }
}

#[test]
fn every_metric_type_gives_prometheus_series_in_prometheus_order() {
    let mut counter = metric(vec![lp("path", "/a")]);
    counter.counter = Some(Counter {
        value: 17.0,
        ..Default::default()
    });
    counter.timestamp_ms = 1_700_000_000_123;
    let mut gauge = metric(vec![]);
    gauge.gauge = Some(Gauge { value: -0.5 });
    let mut untyped = metric(vec![lp("x", "y")]);
    untyped.untyped = Some(Untyped { value: 3.0 });
    let mut summary = metric(vec![]);
    summary.summary = Some(Summary {
        sample_count: 4,
        sample_sum: 8.5,
        quantile: vec![
            Quantile {
                quantile: 0.5,
                value: 1.5,
            },
            Quantile {
                quantile: 1.0,
                value: 4.0,
            },
        ],
        start_timestamp: None,
    });
    let mut hist = metric(vec![lp("code", "200")]);
    hist.histogram = Some(classic_hist());
    let mut unit_family = family("req_seconds", pb::MetricType::Gauge, vec![gauge]);
    unit_family.unit = "seconds".into();
    let b = body(&[
        family("hits_total", pb::MetricType::Counter, vec![counter]),
        unit_family,
        family("free", pb::MetricType::Untyped, vec![untyped]),
        family("rpc", pb::MetricType::Summary, vec![summary]),
        family("lat", pb::MetricType::Histogram, vec![hist]),
    ]);
    let out = parse(&b, ProtoOptions::default()).unwrap();
    let metas: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Out::Meta(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        metas,
        [
            "HELP hits_total help of hits_total",
            "TYPE hits_total counter",
            "HELP req_seconds help of req_seconds",
            "UNIT req_seconds seconds",
            "TYPE req_seconds gauge",
            "HELP free help of free",
            "TYPE free unknown",
            "HELP rpc help of rpc",
            "TYPE rpc summary",
            "HELP lat help of lat",
            "TYPE lat histogram",
        ]
    );
    let got = floats(&out);
    let want: Vec<(String, f64)> = [
        (r#"hits_total{path="/a"}"#, 17.0),
        ("req_seconds", -0.5),
        (r#"free{x="y"}"#, 3.0),
        ("rpc_count", 4.0),
        ("rpc_sum", 8.5),
        (r#"rpc{quantile="0.5"}"#, 1.5),
        (r#"rpc{quantile="1.0"}"#, 4.0),
        (r#"lat_count{code="200"}"#, 7.0),
        (r#"lat_sum{code="200"}"#, 12.5),
        (r#"lat_bucket{code="200", le="0.5"}"#, 2.0),
        (r#"lat_bucket{code="200", le="1.0"}"#, 5.0),
        (r#"lat_bucket{code="200", le="+Inf"}"#, 7.0),
    ]
    .into_iter()
    .map(|(l, v)| (l.to_string(), v))
    .collect();
    assert_eq!(got, want);
    // Only the counter carried a timestamp; 0 means none.
    let stamps: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Out::Float(_, _, t) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(stamps[0], Some(1_700_000_000_123));
    assert!(stamps[1..].iter().all(Option::is_none));
}

#[test]
fn a_given_inf_bucket_ends_the_buckets_and_float_counts_win() {
    let mut h = classic_hist();
    h.bucket.push(Bucket {
        cumulative_count: 7,
        upper_bound: f64::INFINITY,
        ..Default::default()
    });
    // After +Inf, nothing is read (Prometheus stops there too).
    h.bucket.push(Bucket {
        cumulative_count: 9,
        upper_bound: 100.0,
        ..Default::default()
    });
    h.bucket[0].cumulative_count_float = 2.5;
    h.sample_count_float = 7.25;
    let mut m = metric(vec![]);
    m.histogram = Some(h);
    let b = body(&[family("h", pb::MetricType::Histogram, vec![m])]);
    let got = floats(&parse(&b, ProtoOptions::default()).unwrap());
    let names: Vec<_> = got.iter().map(|(l, v)| format!("{l} {v}")).collect();
    assert_eq!(
        names,
        [
            "h_count 7.25",
            "h_sum 12.5",
            r#"h_bucket{le="0.5"} 2.5"#,
            r#"h_bucket{le="1.0"} 5"#,
            r#"h_bucket{le="+Inf"} 7"#,
        ]
    );
}

#[test]
fn native_histograms_are_read_when_asked_and_classic_otherwise() {
    let mut h = native_hist();
    h.bucket = classic_hist().bucket;
    let mut m = metric(vec![lp("svc", "a")]);
    m.histogram = Some(h);
    m.timestamp_ms = 42;
    let b = body(&[family("rt", pb::MetricType::Histogram, vec![m])]);

    let out = parse(&b, native_opts()).unwrap();
    let hists: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Out::Hist(l, h, t) => Some((l.clone(), h.clone(), *t)),
            _ => None,
        })
        .collect();
    assert_eq!(hists.len(), 1);
    assert!(
        floats(&out).is_empty(),
        "classic buckets not kept by default"
    );
    let (labels, h, t) = &hists[0];
    assert_eq!(labels, r#"rt{svc="a"}"#);
    assert_eq!(*t, Some(42));
    let HistogramValue::Int(h) = h else {
        panic!("integer histogram expected, got {h:?}")
    };
    assert_eq!(h.schema, 3);
    assert_eq!(h.count, 9);
    assert_eq!(h.zero_count, 1);
    assert_eq!(h.sum, -3.25);
    assert_eq!(h.zero_threshold, 1e-128);
    assert_eq!(h.positive_spans, [Span::new(-2, 2), Span::new(3, 1)]);
    assert_eq!(h.positive_buckets, [2, -1, 3]);
    assert_eq!(h.negative_spans, [Span::new(0, 1)]);
    assert_eq!(h.negative_buckets, [1]);
    assert_eq!(h.counter_reset_hint, CounterResetHint::Unknown);

    // always_scrape_classic_histograms: the native one, then its classic series.
    let keep = ProtoOptions {
        keep_classic: true,
        ..native_opts()
    };
    let out = parse(&b, keep).unwrap();
    assert!(matches!(out[2], Out::Hist(..)));
    assert_eq!(floats(&out).len(), 5);

    // Native histograms not scraped: the classic series only.
    let out = parse(&b, ProtoOptions::default()).unwrap();
    assert!(!out.iter().any(|o| matches!(o, Out::Hist(..))));
    assert_eq!(floats(&out).len(), 5);
}

#[test]
fn a_native_only_histogram_read_as_classic_is_count_sum_and_inf() {
    let mut m = metric(vec![]);
    m.histogram = Some(native_hist());
    let b = body(&[family("rt", pb::MetricType::Histogram, vec![m])]);
    let got = floats(&parse(&b, ProtoOptions::default()).unwrap());
    let names: Vec<_> = got.iter().map(|(l, v)| format!("{l} {v}")).collect();
    assert_eq!(
        names,
        ["rt_count 9", "rt_sum -3.25", r#"rt_bucket{le="+Inf"} 9"#]
    );
    // With always_scrape_classic_histograms, a native histogram without classic buckets
    // adds no classic series.
    let keep = ProtoOptions {
        keep_classic: true,
        ..native_opts()
    };
    let out = parse(&b, keep).unwrap();
    assert_eq!(out.iter().filter(|o| matches!(o, Out::Hist(..))).count(), 1);
    assert!(floats(&out).is_empty());
}

#[test]
fn float_and_gauge_histograms() {
    let h = PbHistogram {
        sample_count_float: 2.5,
        sample_sum: 1.0,
        schema: 0,
        zero_threshold: 0.001,
        zero_count_float: 0.5,
        positive_span: vec![BucketSpan {
            offset: 1,
            length: 2,
        }],
        positive_count: vec![1.0, 1.0],
        ..Default::default()
    };
    let mut m = metric(vec![]);
    m.histogram = Some(h);
    let b = body(&[family("g", pb::MetricType::GaugeHistogram, vec![m])]);
    let out = parse(&b, native_opts()).unwrap();
    let Some(Out::Hist(_, HistogramValue::Float(fh), None)) = out.last() else {
        panic!("float histogram expected: {out:?}")
    };
    assert_eq!(fh.count, 2.5);
    assert_eq!(fh.zero_count, 0.5);
    assert_eq!(fh.positive_buckets, [1.0, 1.0]);
    assert_eq!(fh.counter_reset_hint, CounterResetHint::Gauge);
    assert!(out.contains(&Out::Meta("TYPE g gaugehistogram".into())));
}

#[test]
fn an_empty_native_histogram_is_marked_by_an_empty_span() {
    let h = PbHistogram {
        positive_span: vec![BucketSpan {
            offset: 0,
            length: 0,
        }],
        ..Default::default()
    };
    let mut m = metric(vec![]);
    m.histogram = Some(h);
    let b = body(&[family("e", pb::MetricType::Histogram, vec![m])]);
    let out = parse(&b, native_opts()).unwrap();
    assert!(matches!(out.last(), Some(Out::Hist(..))), "{out:?}");
}

#[test]
fn spans_that_disagree_with_the_buckets_fail_at_the_metric() {
    let mut h = native_hist();
    h.positive_delta.pop();
    let mut m = metric(vec![]);
    m.histogram = Some(h);
    let b = body(&[family("rt", pb::MetricType::Histogram, vec![m])]);
    let e = parse(&b, native_opts()).unwrap_err();
    assert!(
        e.message
            .contains("positive side: spans require 3 buckets, have 2"),
        "{e}"
    );
    // The metric field starts after the family's length (1 byte), name (4 bytes), help (12)
    // and type (2).
    assert_eq!(e.offset, 1 + 4 + 12 + 2);
    // Read as classic, the native buckets do not matter.
    assert!(parse(&b, ProtoOptions::default()).is_ok());
}

#[test]
fn families_without_series_are_skipped_whole() {
    let mut g = metric(vec![]);
    g.gauge = Some(Gauge { value: 1.0 });
    let b = body(&[
        family("empty", pb::MetricType::Gauge, vec![]),
        MetricFamily::default(),
        family("g", pb::MetricType::Gauge, vec![g]),
    ]);
    let out = parse(&b, ProtoOptions::default()).unwrap();
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[0], Out::Meta("HELP g help of g".into()));
    assert!(parse(&[], ProtoOptions::default()).unwrap().is_empty());
}

#[test]
fn series_keys_differ_whenever_label_sets_differ() {
    let mut a = metric(vec![lp("a", "1:b"), lp("c", "")]);
    a.gauge = Some(Gauge { value: 1.0 });
    let mut b = metric(vec![lp("a", "1"), lp("b", ":c")]);
    b.gauge = Some(Gauge { value: 2.0 });
    let body = body(&[family("k", pb::MetricType::Gauge, vec![a, b])]);
    let mut p = ProtoParser::new(&body, ProtoOptions::default());
    let mut keys = Vec::new();
    while let Some(item) = p.next_item() {
        if let ProtoItem::Sample(s) = item.unwrap() {
            keys.push(s.series().to_string());
        }
    }
    assert_eq!(keys.len(), 2);
    assert_ne!(keys[0], keys[1]);
}

#[test]
fn invalid_names_fail_with_the_metric_offset() {
    let mut g = metric(vec![lp("bad-name", "x")]);
    g.gauge = Some(Gauge { value: 1.0 });
    let b = body(&[family("g", pb::MetricType::Gauge, vec![g])]);
    let e = parse(&b, ProtoOptions::default()).unwrap_err();
    assert!(e.message.contains("bad-name"), "{e}");
    assert_eq!(e.offset, 1 + 3 + 11 + 2);
    let mut g = metric(vec![]);
    g.gauge = Some(Gauge { value: 1.0 });
    let b = body(&[family("my.metric", pb::MetricType::Gauge, vec![g])]);
    let e = parse(&b, ProtoOptions::default()).unwrap_err();
    assert!(e.to_string().contains("legacy names only"), "{e}");
}

// ---- hostile bodies ----

fn parse_err(body: &[u8]) -> ProtoError {
    parse(body, native_opts()).expect_err("must fail")
}

#[test]
fn a_truncated_body_names_where_it_ends() {
    let mut g = metric(vec![lp("a", "b")]);
    g.gauge = Some(Gauge { value: 1.0 });
    let full = body(&[
        family("g", pb::MetricType::Gauge, vec![g.clone()]),
        family("h", pb::MetricType::Gauge, vec![g]),
    ]);
    let first_len = full[0] as usize + 1;
    for cut in 1..full.len() {
        let r = parse(&full[..cut], native_opts());
        if cut == first_len {
            assert!(r.is_ok(), "a cut between families is a shorter body");
            continue;
        }
        let e = r.expect_err("a cut inside a family fails");
        let start = if cut < first_len { 0 } else { first_len };
        assert_eq!(e.offset, start, "cut at {cut}: {e}");
        assert!(
            e.message.contains("remain") || e.message.contains("truncated"),
            "{e}"
        );
    }
}

#[test]
fn huge_declared_lengths_fail_before_anything_is_read() {
    // A family claiming 2^63 bytes, and one claiming more than a u64 holds.
    let mut b = Vec::new();
    encoding::put_uvarint(&mut b, 1 << 63);
    b.extend_from_slice(b"\x0a\x01g");
    let e = parse_err(&b);
    assert_eq!(e.offset, 0);
    assert!(
        e.message.contains("declares 9223372036854775808 bytes"),
        "{e}"
    );
    let e = parse_err(&[0xff; 11]);
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("overflows"), "{e}");
    // A metric inside a family claiming more than the family holds.
    let mut inner = vec![0x0a, 0x01, b'g', 0x22];
    encoding::put_uvarint(&mut inner, u64::from(u32::MAX));
    let mut b = Vec::new();
    encoding::put_uvarint_bytes(&mut b, &inner);
    let e = parse_err(&b);
    assert_eq!(e.offset, 4, "{e}");
}

#[test]
fn odd_fields_are_skipped_or_refused_clearly() {
    // Unknown fields of every wire type are skipped.
    let mut fam = Vec::new();
    fam.extend_from_slice(b"\x0a\x01g"); // name
    fam.extend_from_slice(b"\x18\x01"); // type gauge
    fam.extend_from_slice(&[0x30, 0x96, 0x01]); // field 6 varint
    fam.extend_from_slice(&[0x39, 1, 2, 3, 4, 5, 6, 7, 8]); // field 7 fixed64
    fam.extend_from_slice(&[0x45, 1, 2, 3, 4]); // field 8 fixed32
    fam.extend_from_slice(&[0x4a, 0x02, 0xff, 0xff]); // field 9 bytes
    fam.extend_from_slice(&[0x22, 0x04, 0x12, 0x02, 0x09, 0x00]); // metric, gauge{} truncated?
    let mut b = Vec::new();
    encoding::put_uvarint_bytes(&mut b, &fam);
    // The gauge message's double is cut: prost refuses the metric, at the metric's offset.
    let e = parse_err(&b);
    assert_eq!(e.offset, 1 + fam.len() - 6, "{e}");

    for (bytes, want) in [
        (&b"\x0a\x01g\x33"[..], "unsupported wire type 3"),
        (&b"\x0a\x01g\x07"[..], "field number 0"),
        (&b"\x0a\x01g\x18\x09\x22\x00"[..], "unknown metric type 9"),
        (&b"\x08\x01"[..], "field 1 has wire type 0"),
        (&b"\x0a\x02\xc3\x28"[..], "invalid UTF-8"),
    ] {
        let mut b = Vec::new();
        encoding::put_uvarint_bytes(&mut b, bytes);
        let e = parse_err(&b);
        assert!(e.message.contains(want), "{want}: {e}");
    }
}

#[test]
fn deeply_nested_groups_inside_a_metric_are_refused_not_recursed_forever() {
    // 100,000 nested start-group keys of an unknown field inside a Metric.
    let mut metric = vec![0x0b_u8; 100_000];
    metric.extend(std::iter::repeat_n(0x0c_u8, 100_000));
    let mut fam = b"\x0a\x01g\x18\x01".to_vec();
    fam.push(0x22);
    encoding::put_uvarint_bytes(&mut fam, &metric);
    let mut b = Vec::new();
    encoding::put_uvarint_bytes(&mut b, &fam);
    let e = parse_err(&b);
    assert!(e.message.starts_with("metric:"), "{e}");
}

#[test]
fn a_metric_larger_than_the_bound_is_refused() {
    let mut m = metric(vec![lp("big", &"x".repeat(MAX_METRIC_BYTES))]);
    m.gauge = Some(Gauge { value: 1.0 });
    let b = body(&[family("g", pb::MetricType::Gauge, vec![m])]);
    let e = parse_err(&b);
    assert!(e.message.contains("larger than"), "{e}");
}

#[test]
fn many_empty_families_and_metrics_stay_linear() {
    // 200,000 empty families, then 100,000 empty metrics in one family: parsed in one pass,
    // the metrics each a gauge of 0.
    let mut b = vec![0u8; 200_000];
    let mut fam = b"\x0a\x01g\x18\x01".to_vec();
    for _ in 0..100_000 {
        fam.extend_from_slice(&[0x22, 0x00]);
    }
    encoding::put_uvarint_bytes(&mut b, &fam);
    let mut p = ProtoParser::new(&b, native_opts());
    let mut n = 0;
    while let Some(item) = p.next_item() {
        if let ProtoItem::Sample(s) = item.unwrap() {
            assert_eq!(s.value(), &ProtoValue::Float(0.0));
            n += 1;
        }
    }
    assert_eq!(n, 100_000);
}

#[test]
fn after_an_error_the_parser_stays_done() {
    let mut p = ProtoParser::new(&[0x05, 0x0a], native_opts());
    assert!(matches!(p.next_item(), Some(Err(_))));
    assert!(p.next_item().is_none());
    assert!(p.next_item().is_none());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Any bytes: an answer or an error, never a panic; errors point inside the body.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        match parse(&bytes, native_opts()) {
            Ok(_) => {}
            Err(e) => proptest::prop_assert!(e.offset <= bytes.len()),
        }
    }

    /// A valid body with one byte changed: never a panic.
    #[test]
    fn mutated_bodies_never_panic(at in 0usize..400, byte in proptest::prelude::any::<u8>()) {
        let mut m = metric(vec![lp("a", "b")]);
        let mut h = native_hist();
        h.bucket = classic_hist().bucket;
        m.histogram = Some(h);
        let mut b = body(&[family("h", pb::MetricType::Histogram, vec![m])]);
        let i = at % b.len();
        b[i] = byte;
        let _ = parse(&b, ProtoOptions { native_histograms: true, keep_classic: true, convert_nhcb: false });
    }
}

#[test]
fn classic_histograms_convert_to_custom_buckets_when_asked() {
    let mut m = metric(vec![lp("code", "200")]);
    m.histogram = Some(classic_hist());
    let b = body(&[family("lat", pb::MetricType::Histogram, vec![m])]);
    let nhcb = ProtoOptions {
        convert_nhcb: true,
        ..Default::default()
    };
    let out = parse(&b, nhcb).unwrap();
    assert!(
        floats(&out).is_empty(),
        "no classic series without keep_classic"
    );
    let Some(Out::Hist(labels, HistogramValue::Int(h), None)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(labels, r#"lat{code="200"}"#);
    assert_eq!(h.schema, crate::model::histogram::CUSTOM_BUCKETS_SCHEMA);
    assert_eq!(h.custom_values, [0.5, 1.0]);
    assert_eq!((h.count, h.sum), (7, 12.5));
    // Bucket counts 2, 3, 2 (the +Inf bucket from the count) as deltas.
    assert_eq!(h.positive_buckets, [2, 1, -1]);
    // With keep_classic, the classic series come first, then the converted histogram.
    let both = ProtoOptions {
        convert_nhcb: true,
        keep_classic: true,
        ..Default::default()
    };
    let out = parse(&b, both).unwrap();
    assert_eq!(floats(&out).len(), 5);
    assert!(matches!(out.last(), Some(Out::Hist(..))));
    // A native histogram is not converted.
    let mut m = metric(vec![]);
    m.histogram = Some(native_hist());
    let b = body(&[family("rt", pb::MetricType::Histogram, vec![m])]);
    let out = parse(
        &b,
        ProtoOptions {
            native_histograms: true,
            convert_nhcb: true,
            keep_classic: false,
        },
    )
    .unwrap();
    let Some(Out::Hist(_, HistogramValue::Int(h), _)) = out.last() else {
        panic!("{out:?}")
    };
    assert_eq!(h.schema, 3);
}

#[test]
fn a_classic_histogram_that_is_not_cumulative_fails_its_conversion() {
    let mut h = classic_hist();
    h.bucket[1].cumulative_count = 1;
    let mut m = metric(vec![]);
    m.histogram = Some(h);
    let b = body(&[family("lat", pb::MetricType::Histogram, vec![m])]);
    let nhcb = ProtoOptions {
        convert_nhcb: true,
        ..Default::default()
    };
    let e = parse(&b, nhcb).unwrap_err();
    assert!(
        e.message.contains("cannot be converted to custom buckets"),
        "{e}"
    );
}
