use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A shared exposition fixture.
fn fixture(name: &str) -> Vec<u8> {
    let path = crate::fixtures::shared(&format!("fixtures/exposition/{name}"));
    std::fs::read(path).unwrap()
}

fn parse_all(body: &[u8], format: Format) -> Result<Vec<Entry<'_>>, ParseError> {
    Parser::new(body, format).collect()
}

fn samples(body: &[u8], format: Format) -> Vec<SampleEntry<'_>> {
    parse_all(body, format)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Sample(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn first_error(body: &[u8], format: Format) -> ParseError {
    match parse_all(body, format) {
        Ok(entries) => panic!(
            "{:?} parsed without error into {} entries",
            String::from_utf8_lossy(body),
            entries.len()
        ),
        Err(e) => e,
    }
}

fn labels_of(s: &SampleEntry<'_>) -> Vec<(String, String)> {
    s.labels()
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect()
}

fn find<'s, 'a>(samples: &'s [SampleEntry<'a>], series: &str) -> &'s SampleEntry<'a> {
    samples
        .iter()
        .find(|s| s.series() == series)
        .unwrap_or_else(|| panic!("no series {series}"))
}

/// Sample lines counted by classification alone, independent of the parser.
fn count_sample_lines(body: &[u8]) -> usize {
    String::from_utf8_lossy(body)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

// ---------------------------------------------------------------------------------------------
// Fixtures

#[test]
fn fixtures_parse_with_every_sample_line() {
    let cases = [
        ("node_exporter-1.5.0.prom", Format::PrometheusText),
        ("prometheus-2.42.0.prom", Format::PrometheusText),
        ("victoria-metrics-1.79.5.prom", Format::PrometheusText),
        ("python-client.prom", Format::PrometheusText),
        ("python-client.openmetrics", Format::OpenMetrics),
    ];
    for (name, format) in cases {
        let body = fixture(name);
        let expected = count_sample_lines(&body);
        let got = samples(&body, format);
        assert_eq!(got.len(), expected, "{name}");
        assert!(expected > 40, "{name} has too few samples to mean anything");
        // Line numbers are 1-based and strictly increasing, and point at the sample's text.
        let lines: Vec<&str> = std::str::from_utf8(&body).unwrap().lines().collect();
        let mut prev = 0;
        for s in &got {
            assert!(s.line() > prev, "{name}: line numbers must increase");
            prev = s.line();
            assert!(
                lines[s.line() as usize - 1].starts_with(s.series()),
                "{name}: line {} is not {:?}",
                s.line(),
                s.series()
            );
            let labels = s.to_labels().unwrap();
            assert_eq!(labels.metric_name(), Some(&*s.name()), "{name}");
        }
    }
}

#[test]
fn node_exporter_spot_checks() {
    let body = fixture("node_exporter-1.5.0.prom");
    let entries = parse_all(&body, Format::PrometheusText).unwrap();
    let s: Vec<_> = samples(&body, Format::PrometheusText);

    let idle = find(&s, r#"node_cpu_seconds_total{cpu="0",mode="idle"}"#);
    assert_eq!(idle.value(), 312.78);
    assert_eq!(idle.name(), "node_cpu_seconds_total");
    assert_eq!(idle.kind(), MetricType::Counter);
    assert_eq!(idle.timestamp(), None);
    assert_eq!(idle.line(), 105);
    assert_eq!(
        labels_of(idle),
        [("cpu".into(), "0".into()), ("mode".into(), "idle".into())]
    );
    let labels = idle.to_labels().unwrap();
    assert_eq!(labels.len(), 3);
    assert_eq!(labels.get("mode"), Some("idle"));

    assert_eq!(find(&s, "node_boot_time_seconds").value(), 1.795474978e9);
    assert_eq!(find(&s, "go_memstats_sys_bytes").value(), 1.4398728e7);
    assert_eq!(find(&s, "go_memstats_sys_bytes").kind(), MetricType::Gauge);

    // Summary quantiles are normalised to OpenMetrics float text in the label set only.
    let q = find(&s, r#"go_gc_duration_seconds{quantile="1"}"#);
    assert_eq!(q.kind(), MetricType::Summary);
    assert_eq!(labels_of(q), [("quantile".into(), "1".into())]);
    assert_eq!(q.to_labels().unwrap().get("quantile"), Some("1.0"));
    assert_eq!(
        find(&s, "go_gc_duration_seconds_count").kind(),
        MetricType::Summary
    );

    let help = entries.iter().find_map(|e| match e {
        Entry::Help { name, help, line } if name == "node_disk_info" => Some((help, *line)),
        _ => None,
    });
    let (help, line) = help.unwrap();
    assert_eq!(help, "Info of /sys/block/<block_device>.");
    assert_eq!(line, 145);
    let types = entries
        .iter()
        .filter(|e| matches!(e, Entry::Type { .. }))
        .count();
    assert!(types > 100);
}

#[test]
fn prometheus_fixture_special_floats_and_histograms() {
    let body = fixture("prometheus-2.42.0.prom");
    let s = samples(&body, Format::PrometheusText);
    let nan = find(
        &s,
        r#"prometheus_engine_query_duration_seconds{slice="inner_eval",quantile="0.99"}"#,
    );
    assert!(nan.value().is_nan());
    assert_eq!(nan.value().to_bits(), number::NORMAL_NAN_BITS);
    assert!(!crate::model::is_stale_nan(nan.value()));

    let build = find(
        &s,
        r#"prometheus_build_info{branch="debian/sid",goarch="amd64",goos="linux",goversion="go1.19.8",revision="2.42.0+ds-5+deb12u1",version="2.42.0+ds"}"#,
    );
    assert_eq!(build.value(), 1.0);
    assert_eq!(build.labels().count(), 6);
    assert_eq!(
        build.to_labels().unwrap().get("revision"),
        Some("2.42.0+ds-5+deb12u1")
    );

    let inf_buckets: Vec<_> = s
        .iter()
        .filter(|x| x.series().contains(r#"le="+Inf""#))
        .collect();
    assert!(!inf_buckets.is_empty());
    for b in inf_buckets {
        assert_eq!(b.kind(), MetricType::Histogram, "{}", b.series());
        assert_eq!(b.to_labels().unwrap().get("le"), Some("+Inf"));
    }
}

#[test]
fn victoria_metrics_values_with_braces_and_blanks() {
    let body = fixture("victoria-metrics-1.79.5.prom");
    let s = samples(&body, Format::PrometheusText);
    let with_braces: Vec<_> = s
        .iter()
        .filter(|x| x.labels().any(|(_, v)| v.contains('}')))
        .collect();
    assert_eq!(with_braces.len(), 2);
    for x in &with_braces {
        assert_eq!(
            labels_of(x),
            [("path".into(), "/api/v1/label/{}/values".into())]
        );
        assert_eq!(x.value(), 0.0);
    }
    assert_eq!(with_braces[0].name(), "vm_http_request_errors_total");
    assert_eq!(with_braces[1].name(), "vm_http_requests_total");

    // `, ` between labels is accepted in the text format.
    let csv = find(
        &s,
        r#"vm_http_request_errors_total{path="/api/v1/import/csv", protocol="csvimport"}"#,
    );
    assert_eq!(csv.to_labels().unwrap().get("protocol"), Some("csvimport"));
    assert_eq!(
        find(&s, "process_memory_limit_bytes").value(),
        25_276_502_016.0
    );
}

#[test]
fn python_client_text_escapes_and_specials() {
    let body = fixture("python-client.prom");
    let s = samples(&body, Format::PrometheusText);
    let kitchen = find(&s, r#"temperature_celsius{room="kitchen \"main\""}"#);
    assert_eq!(kitchen.value(), 21.5);
    assert_eq!(
        labels_of(kitchen),
        [("room".into(), "kitchen \"main\"".into())]
    );
    let hall = find(&s, r#"temperature_celsius{room="hall\\way\nnorth"}"#);
    assert_eq!(hall.value(), -3.25);
    assert_eq!(
        hall.to_labels().unwrap().get("room"),
        Some("hall\\way\nnorth")
    );
    assert!(
        find(&s, r#"temperature_celsius{room="nan"}"#)
            .value()
            .is_nan()
    );
    assert_eq!(
        find(&s, r#"temperature_celsius{room="inf"}"#).value(),
        f64::INFINITY
    );
    // The unescaped room is owned, the plain ones are borrowed.
    assert!(matches!(hall.labels().next(), Some((_, Cow::Owned(_)))));
    assert!(matches!(
        find(&s, r#"temperature_celsius{room="nan"}"#)
            .labels()
            .next(),
        Some((Cow::Borrowed(_), Cow::Borrowed(_)))
    ));
}

#[test]
fn python_client_openmetrics() {
    let body = fixture("python-client.openmetrics");
    let entries = parse_all(&body, Format::OpenMetrics).unwrap();
    let s = samples(&body, Format::OpenMetrics);

    // _created lines are samples by default, typed as their family.
    let created = find(&s, r#"http_requests_created{code="200",method="GET"}"#);
    assert_eq!(created.value(), 1.7954753317395918e9);
    assert_eq!(created.kind(), MetricType::Counter);
    assert_eq!(
        s.iter().filter(|x| x.name().ends_with("_created")).count(),
        6
    );

    let total = find(&s, r#"http_requests_total{code="404",method="GET"}"#);
    assert_eq!(total.value(), 12.0);
    assert_eq!(total.kind(), MetricType::Counter);
    let ex = total.exemplar().unwrap();
    assert_eq!(ex.value(), 12.0);
    assert_eq!(ex.timestamp(), Some(1_795_475_331_739));
    let ex_labels: Vec<_> = ex.labels().collect();
    assert_eq!(ex_labels, [("trace_id".into(), "abc123".into())]);
    assert_eq!(ex.to_labels().unwrap().get("trace_id"), Some("abc123"));
    assert!(
        find(&s, r#"http_requests_total{code="200",method="GET"}"#)
            .exemplar()
            .is_none()
    );

    let bucket = find(
        &s,
        r#"request_duration_seconds_bucket{le="0.005",path="/metrics"}"#,
    );
    assert_eq!(bucket.kind(), MetricType::Histogram);
    assert_eq!(bucket.exemplar().unwrap().value(), 0.001);
    assert_eq!(
        bucket.exemplar().unwrap().timestamp(),
        Some(1_795_475_331_739)
    );

    let kitchen = find(&s, r#"temperature_celsius{room="kitchen \"main\""}"#);
    assert_eq!(
        labels_of(kitchen),
        [("room".into(), "kitchen \"main\"".into())]
    );
    assert_eq!(
        find(&s, r#"temperature_celsius{room="inf"}"#).value(),
        f64::INFINITY
    );

    let info = find(&s, r#"build_info{revision="deadbeef",version="1.2.3"}"#);
    assert_eq!(info.kind(), MetricType::Info);
    let state = find(&s, r#"task_state{task_state="running"}"#);
    assert_eq!(state.kind(), MetricType::StateSet);
    assert_eq!(state.value(), 1.0);

    let units: Vec<_> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Unit { name, unit, .. } => Some((name.to_string(), *unit)),
            _ => None,
        })
        .collect();
    assert_eq!(
        units,
        [
            ("temperature_celsius".to_string(), "celsius"),
            ("request_duration_seconds".to_string(), "seconds"),
            ("payload_size_bytes".to_string(), "bytes"),
        ]
    );
    let kinds: Vec<_> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Type { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::Summary,
            MetricType::Info,
            MetricType::StateSet
        ]
    );
}

#[test]
fn skipping_created_series_mirrors_prometheus_option() {
    let body = fixture("python-client.openmetrics");
    let all = samples(&body, Format::OpenMetrics).len();
    let kept: Vec<_> = Parser::new(&body, Format::OpenMetrics)
        .skip_created_series(true)
        .map(|e| e.unwrap())
        .filter_map(|e| match e {
            Entry::Sample(s) => Some(s.name().into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(kept.len(), all - 6);
    assert!(kept.iter().all(|n| !n.ends_with("_created")));

    // Only counter, histogram and summary families lose their `_created`.
    let body = b"# TYPE x gauge\nx_created 5\n# TYPE y counter\ny_total 1\ny_created 7\n# EOF\n";
    let kept: Vec<_> = Parser::new(body, Format::OpenMetrics)
        .skip_created_series(true)
        .filter_map(|e| match e.unwrap() {
            Entry::Sample(s) => Some(s.series()),
            _ => None,
        })
        .collect();
    assert_eq!(kept, ["x_created", "y_total"]);
}

// ---------------------------------------------------------------------------------------------
// Format details

#[test]
fn openmetrics_eof_rules() {
    let ok = b"a 1\n# EOF\n";
    assert_eq!(samples(ok, Format::OpenMetrics).len(), 1);
    assert_eq!(samples(b"a 1\n# EOF", Format::OpenMetrics).len(), 1);
    assert_eq!(samples(b"# EOF\n", Format::OpenMetrics).len(), 0);

    let e = first_error(b"a 1\nb 2\n", Format::OpenMetrics);
    assert_eq!(e.line, 3);
    assert!(e.message.contains("does not end with # EOF"), "{e}");
    assert_eq!(first_error(b"", Format::OpenMetrics).line, 1);
    let e = first_error(b"a 1\nb 2", Format::OpenMetrics);
    assert_eq!(e.line, 2);
    assert!(e.message.contains("# EOF"), "{e}");

    let e = first_error(b"a 1\n# EOF\nb 2\n", Format::OpenMetrics);
    assert_eq!(e.line, 3);
    assert!(e.message.contains("after # EOF"), "{e}");
    assert_eq!(first_error(b"a 1\n# EOF\n\n", Format::OpenMetrics).line, 3);

    // Everything before the bad tail is yielded first, then the error.
    let mut p = Parser::new(b"a 1\n# EOF\nx", Format::OpenMetrics);
    assert!(matches!(p.next(), Some(Ok(Entry::Sample(_)))));
    assert!(matches!(p.next(), Some(Err(_))));
    assert!(p.next().is_none());
}

#[test]
fn openmetrics_timestamps_are_float_seconds() {
    let body =
        b"a 1 1700000000\nb 2 1700000000.123\nc 3 1.5\nd 4 1.001\ne 5 -2.5\nf 6 1.7e9\n# EOF\n";
    let ts: Vec<_> = samples(body, Format::OpenMetrics)
        .iter()
        .map(|s| s.timestamp().unwrap())
        .collect();
    assert_eq!(
        ts,
        [
            1_700_000_000_000,
            1_700_000_000_123,
            1500,
            1001,
            -2500,
            1_700_000_000_000
        ]
    );
    for bad in [
        "a 1 NaN\n# EOF\n",
        "a 1 +Inf\n# EOF\n",
        "a 1 1e30\n# EOF\n",
        "a 1 12ab\n# EOF\n",
    ] {
        let e = first_error(bad.as_bytes(), Format::OpenMetrics);
        assert_eq!(e.line, 1, "{bad}");
        assert!(e.message.contains("timestamp"), "{e}");
    }
}

#[test]
fn text_timestamps_are_integer_millis() {
    let body = b"a 1 1395066363000\nb{x=\"y\"} 2\t\t-1\n";
    let e = first_error(body, Format::PrometheusText);
    assert_eq!(e.line, 2);
    let s = samples(b"a 1 1395066363000\nb 2  17 \n", Format::PrometheusText);
    assert_eq!(s[0].timestamp(), Some(1_395_066_363_000));
    assert_eq!(s[1].timestamp(), Some(17));
}

#[test]
fn exemplar_forms() {
    let body = concat!(
        "# TYPE foo histogram\n",
        "foo_bucket{le=\"0.5\"} 3 # {trace_id=\"a\",span=\"b\\\"c\"} 0.25\n",
        "foo_bucket{le=\"1\"} 4 1700000000.5 # {} 1 1700000000.25\n",
        "foo_bucket{le=\"+Inf\"} 5 # {x=\"y\"} NaN 1.25\n",
        "# EOF\n"
    );
    let s = samples(body.as_bytes(), Format::OpenMetrics);
    let e0 = s[0].exemplar().unwrap();
    assert_eq!(e0.value(), 0.25);
    assert_eq!(e0.timestamp(), None);
    let l: Vec<_> = e0.labels().collect();
    assert_eq!(
        l,
        [
            ("trace_id".into(), "a".into()),
            ("span".into(), "b\"c".into())
        ]
    );
    assert_eq!(s[0].timestamp(), None);
    let e1 = s[1].exemplar().unwrap();
    assert_eq!(s[1].timestamp(), Some(1_700_000_000_500));
    assert_eq!(e1.labels().count(), 0);
    assert_eq!(e1.timestamp(), Some(1_700_000_000_250));
    assert!(e1.to_labels().unwrap().is_empty());
    assert!(s[2].exemplar().unwrap().value().is_nan());
    assert_eq!(s[2].exemplar().unwrap().timestamp(), Some(1250));

    for (bad, what) in [
        ("a 1 # {x=\"y\"}\n# EOF\n", "exemplar"),
        (
            "a 1 # {x=\"y\"} 1 2 3\n# EOF\n",
            "after the exemplar timestamp",
        ),
        ("a 1 # {\"q\"} 1\n# EOF\n", "not allowed in exemplar"),
        ("a 1 # {x=\"y\"} 1 nan\n# EOF\n", "exemplar timestamp"),
        ("a 1 # {x=\"y\"} abc\n# EOF\n", "exemplar value"),
        ("a 1 # x\n# EOF\n", "timestamp"),
    ] {
        let e = first_error(bad.as_bytes(), Format::OpenMetrics);
        assert_eq!(e.line, 1, "{bad}");
        assert!(e.message.contains(what), "{bad}: {e}");
    }
    let e = first_error(b"a 1 # {x=\"y\"} 1\n", Format::PrometheusText);
    assert!(e.message.contains("only allowed in OpenMetrics"), "{e}");
}

#[test]
fn text_format_leniency_matches_prometheus() {
    let body = concat!(
        "  # leading blanks before a comment\n",
        "#HELPnotmeta\n",
        "# Hrandom comment\n",
        "#\n",
        "\n",
        "  \t \n",
        "# HELP nohelp\n",
        "a{ x = \"1\" , y=\"2\", } 1\n",
        "a {x=\"1\"} 2\n",
        "a{x=\"1\" y=\"2\"} 3\n",
        "a{x=\"1\"}4\n",
        "some:aggregate:rate5m{a_b=\"c\"}\t5\n",
        "\t b 6  \t 123\t\n",
        "_underscore 7\n",
        "last 8",
    );
    let entries = parse_all(body.as_bytes(), Format::PrometheusText).unwrap();
    let help: Vec<_> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Help { name, help, .. } => Some((name.to_string(), help.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(help, [("nohelp".to_string(), String::new())]);
    let s = samples(body.as_bytes(), Format::PrometheusText);
    let v: Vec<_> = s.iter().map(|x| x.value()).collect();
    assert_eq!(v, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    assert_eq!(
        labels_of(&s[0]),
        [("x".into(), "1".into()), ("y".into(), "2".into())]
    );
    assert_eq!(labels_of(&s[2]), labels_of(&s[0]));
    assert_eq!(s[1].series(), "a {x=\"1\"}");
    assert_eq!(s[4].name(), "some:aggregate:rate5m");
    assert_eq!(s[5].series(), "b");
    assert_eq!(s[5].timestamp(), Some(123));
    assert_eq!(s[5].line(), 13);
    assert_eq!(s[7].line(), 15);
    // The two label sets of series 0 and 2 differ only in layout.
    assert_eq!(s[0].to_labels().unwrap(), s[2].to_labels().unwrap());
}

#[test]
fn help_escapes_differ_between_formats() {
    let text = b"# HELP m a \\\\ b \\n c \\\" d \\t\n";
    let om = b"# HELP m a \\\\ b \\n c \\\" d \\t\n# EOF\n";
    let help = |body: &[u8], f| match parse_all(body, f).unwrap().remove(0) {
        Entry::Help { help, .. } => help.into_owned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(help(text, Format::PrometheusText), "a \\ b \n c \\\" d \\t");
    assert_eq!(help(om, Format::OpenMetrics), "a \\ b \n c \" d \\t");
    // Prometheus keeps the separator after the first one in text HELP.
    assert_eq!(help(b"# HELP m  two\n", Format::PrometheusText), " two");
}

#[test]
fn quoted_utf8_names() {
    let body = concat!(
        "# TYPE \"my.metric\" gauge\n",
        "{\"my.metric\", a=\"b\"} 1\n",
        "{a=\"b\", \"my.metric\"} 2\n",
        "{\"my.metric\"} 3\n",
        "legacy{\"a.b\"=\"c\", \"d\\\"e\"=\"f\"} 4\n",
        "{\"ok_name\"} 5\n",
    );
    let s = samples(body.as_bytes(), Format::PrometheusText);
    assert_eq!(s[0].name(), "my.metric");
    assert_eq!(s[0].kind(), MetricType::Gauge);
    assert_eq!(labels_of(&s[0]), [("a".into(), "b".into())]);
    assert_eq!(labels_of(&s[1]), [("a".into(), "b".into())]);
    assert_eq!(s[1].name(), "my.metric");
    assert_eq!(s[2].labels().count(), 0);
    assert_eq!(
        labels_of(&s[3]),
        [("a.b".into(), "c".into()), ("d\"e".into(), "f".into())]
    );
    // The model stores legacy names only: clear errors, not silent mangling.
    let e = s[0].to_labels().unwrap_err();
    assert_eq!(e.line, 2);
    assert!(
        e.message.contains("my.metric") && e.message.contains("legacy"),
        "{e}"
    );
    let e = s[3].to_labels().unwrap_err();
    assert!(e.message.contains("a.b"), "{e}");
    assert_eq!(s[4].to_labels().unwrap().metric_name(), Some("ok_name"));

    let om = "{\"my.metric\",a=\"b\"} 1\n# EOF\n";
    assert_eq!(
        samples(om.as_bytes(), Format::OpenMetrics)[0].name(),
        "my.metric"
    );
}

#[test]
fn duplicate_label_names_fail_in_to_labels() {
    // Prometheus parses these and its TSDB refuses them on append; we refuse in to_labels.
    let body = b"a{x=\"1\",x=\"2\"} 1\nb{__name__=\"c\"} 2\n";
    let s = samples(body, Format::PrometheusText);
    let e = s[0].to_labels().unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.message.contains("duplicate label name \"x\""), "{e}");
    let e = s[1].to_labels().unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("__name__"), "{e}");
}

#[test]
fn bucket_labels_normalised_only_for_histograms_and_summaries() {
    let body = concat!(
        "# TYPE h histogram\n",
        "h_bucket{le=\"1\"} 1\n",
        "h_bucket{le=\"0.50\"} 1\n",
        "h_bucket{le=\"1e6\"} 1\n",
        "h_bucket{le=\"+inf\"} 1\n",
        "h_bucket{le=\"abc\"} 1\n",
        "# TYPE s summary\n",
        "s{quantile=\"0\"} 1\n",
        "# TYPE g gauge\n",
        "g{le=\"1\",quantile=\"1\"} 1\n",
        "other{le=\"1\"} 1\n",
    );
    let got: Vec<_> = samples(body.as_bytes(), Format::PrometheusText)
        .iter()
        .map(|s| {
            let l = s.to_labels().unwrap();
            format!(
                "{}:{}",
                l.get("le").unwrap_or("-"),
                l.get("quantile").unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "1.0:-", "0.5:-", "1e+06:-", "+Inf:-", "abc:-", "-:0.0", "1:1", "1:-"
        ]
    );
}

#[test]
fn family_type_applies_only_to_its_own_samples() {
    let body = concat!(
        "# TYPE go_goroutines gauge\n",
        "go_goroutines 33\n",
        "different_metric_total 12\n",
        "go_goroutines_total 1\n",
        "# TYPE c_total counter\n",
        "c_total 1\n",
        "# TYPE h histogram\n",
        "h_bucket{le=\"1\"} 1\n",
        "h_sum 1\n",
        "h_count 1\n",
        "hx 1\n",
    );
    let kinds: Vec<_> = samples(body.as_bytes(), Format::PrometheusText)
        .iter()
        .map(|s| s.kind())
        .collect();
    use MetricType::*;
    assert_eq!(
        kinds,
        [
            Gauge, Unknown, Gauge, Counter, Histogram, Histogram, Histogram, Unknown
        ]
    );
}

#[test]
fn special_float_values() {
    let body = b"a 0\nb -0\nc NaN\nd +Inf\ne -Inf\nf Inf\ng 1e-400\nh -1.5E+3\ni .5\nj 00012\n";
    let v: Vec<_> = samples(body, Format::PrometheusText)
        .iter()
        .map(|s| s.value())
        .collect();
    assert_eq!(v[0].to_bits(), 0f64.to_bits());
    assert_eq!(v[1].to_bits(), (-0f64).to_bits());
    assert_eq!(v[2].to_bits(), number::NORMAL_NAN_BITS);
    assert_eq!(
        &v[3..],
        &[
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            0.0,
            -1500.0,
            0.5,
            12.0
        ]
    );
}

#[test]
fn unit_must_be_a_suffix() {
    let ok = b"# UNIT foo_seconds seconds\n# UNIT foo \n# EOF\n";
    let units: Vec<_> = parse_all(ok, Format::OpenMetrics)
        .unwrap()
        .into_iter()
        .map(|e| match e {
            Entry::Unit { unit, .. } => unit,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(units, ["seconds", ""]);
    for bad in [
        "# UNIT foo seconds\n# EOF\n",
        "# UNIT seconds seconds\n# EOF\n",
        "# UNIT fooseconds seconds\n# EOF\n",
    ] {
        let e = first_error(bad.as_bytes(), Format::OpenMetrics);
        assert!(e.message.contains("not a suffix"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed input: every case is refused at the right line with a telling message.

#[test]
fn malformed_inputs_are_refused_with_their_line() {
    use Format::{OpenMetrics as Om, PrometheusText as Text};
    let cases: &[(Format, &str, u32, &str)] = &[
        (Text, "ok 1\nfoo{a=\"b} 1\n", 2, "unterminated label value"),
        (Text, "foo{a=\"b\n", 1, "unterminated label value"),
        (Text, "ok 1\n\nfoo{a=\"b\"}\n", 3, "expected a value"),
        (Text, "foo\n", 1, "expected a value"),
        (Text, "foo 1.2.3\n", 1, "invalid value \"1.2.3\""),
        (Text, "foo 0x1A\n", 1, "invalid value"),
        (Text, "foo 1_000\n", 1, "invalid value"),
        (Text, "foo -NaN\n", 1, "NaN takes no sign"),
        (Text, "foo 1e309\n", 1, "out of range"),
        (Text, "foo 1\r\n", 1, "CRLF"),
        (
            Text,
            "foo{a=\"\\t\"} 1\n",
            1,
            "invalid escape sequence '\\t'",
        ),
        (Text, "foo{a=\"x\\\"} 1\n", 1, "unterminated label value"),
        (
            Text,
            "foo{a=\"b\",a=} 1\n",
            1,
            "expected '\"' to open the label value",
        ),
        (Text, "9foo 1\n", 1, "expected a metric name"),
        (
            Text,
            "foo-bar 1\n",
            1,
            "invalid character '-' in metric name",
        ),
        (
            Text,
            "foo.bar{a=\"b\"} 1\n",
            1,
            "invalid character '.' in metric name",
        ),
        (Text, "föo 1\n", 1, "invalid character 'ö' in metric name"),
        (
            Text,
            "foo{1a=\"b\"} 1\n",
            1,
            "expected a label name, found '1'",
        ),
        (
            Text,
            "foo{a:b=\"c\"} 1\n",
            1,
            "expected '=' after the label name",
        ),
        (Text, "foo{a=\"b\"\n", 1, "unterminated label set"),
        (
            Text,
            "foo{a=b} 1\n",
            1,
            "expected '\"' to open the label value",
        ),
        (Text, "{a=\"b\"} 1\n", 1, "missing metric name"),
        (Text, "foo{\"bar\"} 1\n", 1, "metric name given twice"),
        (Text, "{\"a\",\"b\"} 1\n", 1, "metric name given twice"),
        (
            Text,
            "foo 1 123 456\n",
            1,
            "unexpected \"456\" after the timestamp",
        ),
        (Text, "foo 1 123abc\n", 1, "invalid timestamp"),
        (Text, "foo 1 1.5\n", 1, "invalid timestamp"),
        (Text, "foo 1 99999999999999999999\n", 1, "invalid timestamp"),
        (Text, "foo 1{\n", 1, "invalid timestamp"),
        (
            Text,
            "# TYPE foo countr\n",
            1,
            "invalid metric type \"countr\"",
        ),
        (
            Text,
            "# TYPE foo gaugehistogram\n",
            1,
            "invalid metric type",
        ),
        (Text, "# TYPE foo\n", 1, "invalid metric type \"\""),
        (Text, "# TYPE foo counter \n", 1, "invalid metric type"),
        (
            Text,
            "# HELP 1foo x\n",
            1,
            "expected a metric name after HELP",
        ),
        (Text, "# TYPE \n", 1, "expected a metric name after TYPE"),
        (Text, "# HELP foo.bar x\n", 1, "invalid character '.'"),
        (Text, "x 1\n-1 2\n", 2, "expected a metric name, found '-'"),
        (Om, "foo 1\n\nbar 2\n# EOF\n", 2, "blank lines"),
        (Om, "# a comment\n# EOF\n", 1, "unexpected comment"),
        (Om, "foo  1\n# EOF\n", 1, "expected a value, found a blank"),
        (
            Om,
            "foo 1 \n# EOF\n",
            1,
            "expected a timestamp, found a blank",
        ),
        (
            Om,
            " foo 1\n# EOF\n",
            1,
            "expected a metric name, found ' '",
        ),
        (
            Om,
            "foo{a=\"b\", c=\"d\"} 1\n# EOF\n",
            1,
            "expected a label name, found ' '",
        ),
        (
            Om,
            "foo{a=\"b\"c=\"d\"} 1\n# EOF\n",
            1,
            "expected ',' or '}'",
        ),
        (
            Om,
            "foo\t1\n# EOF\n",
            1,
            "invalid character '\\t' in metric name",
        ),
        (
            Om,
            "foo{a=\"b\"}\t1\n# EOF\n",
            1,
            "expected a space before the value",
        ),
        (
            Om,
            "foo 1 2 3\n# EOF\n",
            1,
            "unexpected \"3\" after the timestamp",
        ),
        (
            Om,
            "# TYPE foo untyped\n# EOF\n",
            1,
            "invalid metric type \"untyped\"",
        ),
        (Om, "# TYPE foo\n# EOF\n", 1, "expected a space and text"),
        (Om, "# HELP foo\n# EOF\n", 1, "expected a space and text"),
        (
            Om,
            "# HELP  foo x\n# EOF\n",
            1,
            "expected a metric name after HELP",
        ),
        (
            Om,
            "foo{a=\"\\x\"} 1\n# EOF\n",
            1,
            "invalid escape sequence '\\x'",
        ),
        (Om, "foo 1\n# EOF \n", 2, "unexpected comment"),
        (Om, "foo 1\n#EOF\n", 2, "unexpected comment"),
    ];
    for (format, body, line, needle) in cases {
        let e = first_error(body.as_bytes(), *format);
        assert_eq!(e.line, *line, "{body:?}: {e}");
        assert!(
            e.message.contains(needle),
            "{body:?}: {e} (wanted {needle:?})"
        );
        assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
    }
}

#[test]
fn malformed_bytes_are_refused_with_their_line() {
    // Byte strings that cannot be written as &str literals.
    let cases: &[(Format, &[u8], u32, &str)] = &[
        (
            Format::PrometheusText,
            b"a 1\nb{c=\"\xc0\xaf\"} 1\n",
            2,
            "invalid UTF-8",
        ),
        (
            Format::OpenMetrics,
            b"# HELP a \xff\n# EOF\n",
            1,
            "invalid UTF-8",
        ),
        (Format::PrometheusText, b"a\x00 1\n", 1, "invalid character"),
        (
            Format::PrometheusText,
            b"a 1\nfoo{a=\"\xff\"} 1\n",
            2,
            "invalid UTF-8",
        ),
        (
            Format::PrometheusText,
            b"# HELP foo bad \xc3\x28\n",
            1,
            "invalid UTF-8",
        ),
        (
            Format::OpenMetrics,
            b"a 1\nfoo 1 \xe2\x82\n# EOF\n",
            2,
            "invalid UTF-8",
        ),
    ];
    for (format, body, line, needle) in cases {
        let e = first_error(body, *format);
        assert_eq!(e.line, *line, "{e}");
        assert!(e.message.contains(needle), "{e}");
    }
    // Text comments are skipped unread, even when not UTF-8, as Prometheus does.
    let s = samples(b"# \xff\xfe comment\na 1\n", Format::PrometheusText);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].line(), 2);
}

#[test]
fn errors_carry_the_byte_offset_of_the_problem_in_the_body() {
    use Format::{OpenMetrics as Om, PrometheusText as Text};
    // (format, body, line, offset in the body, message)
    let cases: &[(Format, &[u8], u32, usize, &str)] = &[
        // The offending token: a value on line 2 (which starts at byte 5).
        (
            Text,
            b"ok 1\nfoo{a=\"b\"} x\n",
            2,
            16,
            "invalid value \"x\": not a number",
        ),
        (
            Text,
            b"foo-bar 1\n",
            1,
            3,
            "invalid character '-' in metric name",
        ),
        (
            Text,
            b"ok 1\nfoo{1a=\"b\"} 1\n",
            2,
            9,
            "expected a label name, found '1'",
        ),
        // A quoted string that never closes points at its opening quote.
        (Text, b"foo{a=\"b\n", 1, 6, "unterminated label value"),
        (
            Text,
            b"# TYPE foo gauges\n",
            1,
            11,
            "invalid metric type \"gauges\"",
        ),
        (
            Text,
            b"foo 1 # {x=\"y\"} 1\n",
            1,
            6,
            "exemplars are only allowed in OpenMetrics",
        ),
        // The first byte that is not UTF-8.
        (
            Text,
            b"a 1\nb{c=\"\xff\"} 1\n",
            2,
            9,
            "invalid UTF-8 at byte 6 of the line",
        ),
        (
            Om,
            b"a 1\nfoo 1 1e30\n# EOF\n",
            2,
            10,
            "timestamp \"1e30\" is out of range",
        ),
        (
            Om,
            b"a{\"x\",\"y\"} 1\n# EOF\n",
            1,
            6,
            "metric name given twice inside the braces",
        ),
        (
            Om,
            b"a 1 # {\"q\"} 1\n# EOF\n",
            1,
            7,
            "a quoted metric name is not allowed in exemplar labels",
        ),
        // Whole lines: their start; a missing # EOF: the end of the body.
        (
            Om,
            b"a 1\n# EOF\nb 1\n",
            3,
            10,
            "unexpected data after # EOF",
        ),
        (Om, b"a 1\n", 2, 4, "data does not end with # EOF"),
        (
            Om,
            b"a 1\n\n# EOF\n",
            2,
            4,
            "blank lines are not allowed in OpenMetrics",
        ),
    ];
    for (format, body, line, offset, needle) in cases {
        let e = first_error(body, *format);
        assert_eq!((e.line, e.offset), (*line, Some(*offset)), "{e}");
        assert!(e.message.contains(needle), "{e} (wanted {needle:?})");
    }
    // A label set refused after parsing knows its line, not its offset.
    let s = samples(b"ok 1\na{b=\"1\",b=\"2\"} 1\n", Format::PrometheusText);
    let e = s[1].to_labels().unwrap_err();
    assert_eq!((e.line, e.offset), (2, None), "{e}");
}

#[test]
fn error_message_quotes_the_line() {
    let e = first_error(b"ok 1\nfoo{a=\"b} 1\n", Format::PrometheusText);
    assert_eq!(
        e.to_string(),
        "line 2: unterminated label value: missing closing '\"' in \"foo{a=\\\"b} 1\""
    );
    let long = format!("x{} 1", "a".repeat(500)) + " zz\n";
    let e = first_error(long.as_bytes(), Format::PrometheusText);
    assert!(e.message.len() < 300, "{}", e.message.len());
}

// ---------------------------------------------------------------------------------------------
// Round trip and robustness properties

#[derive(Debug, Clone)]
struct Rendered {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
    ts: Option<i64>,
}

fn escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn render_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v:?}")
    }
}

fn arb_sample() -> impl Strategy<Value = Rendered> {
    let value = prop_oneof![
        4 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        2 => (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 8.0),
    ];
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,15}",
        proptest::collection::btree_map(
            "[a-zA-Z_][a-zA-Z0-9_]{0,8}".prop_filter("reserved", |n| n != "__name__"),
            "(\\PC|[\"\\\\\n}{,=# \t])*",
            0..5,
        ),
        value,
        proptest::option::of(0i64..4_000_000_000_000),
    )
        .prop_map(|(name, labels, value, ts)| Rendered {
            name,
            labels,
            value,
            ts,
        })
}

fn render(samples: &[Rendered], format: Format, loose: bool) -> String {
    let mut out = String::new();
    let sep = if loose { " \t" } else { " " };
    for s in samples {
        out.push_str(&s.name);
        if !s.labels.is_empty() || loose {
            out.push('{');
            for (n, v) in &s.labels {
                if loose {
                    out.push_str(&format!(" {n} = \"{}\" ,", escape(v)));
                } else {
                    out.push_str(&format!("{n}=\"{}\",", escape(v)));
                }
            }
            if !loose && out.ends_with(',') {
                out.pop();
            }
            out.push('}');
        }
        out.push_str(sep);
        out.push_str(&render_value(s.value));
        if let Some(ts) = s.ts {
            out.push_str(sep);
            match format {
                Format::PrometheusText | Format::Protobuf => out.push_str(&ts.to_string()),
                Format::OpenMetrics => out.push_str(&format!("{}.{:03}", ts / 1000, ts % 1000)),
            }
        }
        out.push('\n');
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn check_round_trip(want: &[Rendered], body: &str, format: Format) -> Result<(), TestCaseError> {
    let got = Parser::new(body.as_bytes(), format)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TestCaseError::fail(format!("{e}\n{body}")))?;
    prop_assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let Entry::Sample(g) = g else {
            return Err(TestCaseError::fail("not a sample"));
        };
        prop_assert_eq!(g.name(), w.name.as_str());
        let labels: BTreeMap<String, String> = g
            .labels()
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        prop_assert_eq!(&labels, &w.labels);
        if w.value.is_nan() {
            prop_assert_eq!(g.value().to_bits(), number::NORMAL_NAN_BITS);
        } else {
            prop_assert_eq!(g.value().to_bits(), w.value.to_bits());
        }
        prop_assert_eq!(g.timestamp(), w.ts);
        let full = g
            .to_labels()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(full.metric_name(), Some(w.name.as_str()));
        let non_empty = w.labels.values().filter(|v| !v.is_empty()).count();
        prop_assert_eq!(full.len(), non_empty + 1);
    }
    Ok(())
}

/// Bytes that mutate a fixture into plausible-but-broken exposition text.
fn arb_mutations() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    let byte = prop_oneof![
        Just(b'"'),
        Just(b'\\'),
        Just(b'{'),
        Just(b'}'),
        Just(b'\n'),
        Just(b' '),
        Just(b'#'),
        Just(b','),
        Just(b'='),
        Just(0xff),
        any::<u8>(),
    ];
    proptest::collection::vec((any::<usize>(), 0u8..3, byte), 1..8)
}

fn mutate(body: &[u8], muts: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut b = body.to_vec();
    for &(pos, op, byte) in muts {
        let at = pos % (b.len() + 1);
        match op {
            0 if at < b.len() => b[at] = byte,
            1 => b.insert(at, byte),
            _ if at < b.len() => {
                b.remove(at);
            }
            _ => b.push(byte),
        }
    }
    b
}

/// Drives every accessor on every entry; must never panic, whatever the bytes.
fn exercise(body: &[u8], format: Format) -> usize {
    let mut n = 0;
    for e in Parser::new(body, format) {
        let Ok(e) = e else { break };
        n += 1;
        if let Entry::Sample(s) = e {
            let _ = (s.series(), s.name(), s.value(), s.timestamp(), s.kind());
            n += s.labels().count();
            let _ = s.to_labels();
            if let Some(x) = s.exemplar() {
                n += x.labels().count();
                let _ = x.to_labels();
            }
        }
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rendered_samples_parse_back_equal(samples in proptest::collection::vec(arb_sample(), 1..8), loose in any::<bool>()) {
        let text = render(&samples, Format::PrometheusText, loose);
        check_round_trip(&samples, &text, Format::PrometheusText)?;
        let om = render(&samples, Format::OpenMetrics, false);
        check_round_trip(&samples, &om, Format::OpenMetrics)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        exercise(&body, Format::PrometheusText);
        exercise(&body, Format::OpenMetrics);
    }

    #[test]
    fn exposition_like_text_never_panics(body in "([a-z_:{}\"=,. #\\\\\n\t0-9eE+-]|HELP |TYPE |UNIT |EOF|NaN|Inf){0,120}") {
        exercise(body.as_bytes(), Format::PrometheusText);
        exercise(body.as_bytes(), Format::OpenMetrics);
    }

    #[test]
    fn mutated_fixtures_never_panic(muts in arb_mutations(), which in 0usize..3) {
        let (name, format) = [
            ("python-client.prom", Format::PrometheusText),
            ("python-client.openmetrics", Format::OpenMetrics),
            ("victoria-metrics-1.79.5.prom", Format::PrometheusText),
        ][which];
        let body = mutate(&fixture(name), &muts);
        exercise(&body, format);
        exercise(&body, if format == Format::OpenMetrics { Format::PrometheusText } else { Format::OpenMetrics });
    }
}
