//! `tidemark import`, `dump` and `inspect` through the real binary.

use std::path::Path;
use std::process::Command;

fn tidemark(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(args)
        .output()
        .unwrap()
}

/// Irregular OpenMetrics with timestamps: three families, escaped labels, special values,
/// jittered timestamps, a single-sample series; returns the text and the sample count.
fn sample_file() -> (String, usize) {
    let mut out = String::new();
    let mut n = 0;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    out.push_str("# TYPE http_requests counter\n");
    for path in ["/", "/a\\\"b}", "/ü\\n"] {
        let mut v = 0u64;
        let mut t = 1_700_000_000_000i64;
        for _ in 0..1500 {
            t += 15_000 + (rnd() % 2000) as i64 - 1000;
            v += rnd() % 50;
            out.push_str(&format!(
                "http_requests_total{{path=\"{path}\",code=\"200\"}} {v} {}.{:03}\n",
                t / 1000,
                t % 1000
            ));
            n += 1;
        }
    }
    out.push_str("# TYPE temp gauge\n");
    let mut t = 1_700_003_000_000i64;
    for i in 0..700 {
        t += 30_000 + (rnd() % 500) as i64;
        let v = match i {
            100 => "NaN".to_string(),
            200 => "+Inf".to_string(),
            300 => "-Inf".to_string(),
            _ => format!("{:.3}", (rnd() % 100_000) as f64 / 997.0 - 20.0),
        };
        out.push_str(&format!(
            "temp{{room=\"lab\"}} {v} {}.{:03}\n",
            t / 1000,
            t % 1000
        ));
        n += 1;
    }
    out.push_str("# TYPE lonely gauge\nlonely 42 1700001234.567\n# EOF\n");
    (out, n + 1)
}

fn import(dir: &Path, file: &Path) -> String {
    let o = tidemark(&[
        "import",
        "--data-dir",
        dir.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn dump(dir: &Path) -> String {
    let o = tidemark(&["dump", "--data-dir", dir.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn sample_lines(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    v.sort_unstable();
    v
}

#[test]
fn dump_of_an_import_reimports_to_the_same_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let (text, n) = sample_file();
    let input = tmp.path().join("in.om");
    std::fs::write(&input, &text).unwrap();
    let summary = import(&tmp.path().join("a"), &input);
    assert!(summary.contains(&format!("{n} samples")), "{summary}");
    assert!(summary.contains("5 series"), "{summary}");

    let first = dump(&tmp.path().join("a"));
    assert_eq!(sample_lines(&first).len(), n);
    let again = tmp.path().join("again.om");
    std::fs::write(&again, &first).unwrap();
    import(&tmp.path().join("b"), &again);
    let second = dump(&tmp.path().join("b"));
    assert_eq!(first, second, "dump -> import -> dump is stable");

    // Every input sample comes back with the same value and millisecond timestamp.
    let parse = |l: &str| -> (String, f64, String) {
        let mut parts = l.rsplitn(3, ' ');
        let ts = parts.next().unwrap().to_string();
        let v: f64 = parts.next().unwrap().parse().unwrap();
        (parts.next().unwrap().to_string(), v, ts)
    };
    let mut want: Vec<(String, u64, String)> = sample_lines(&text)
        .iter()
        .map(|l| parse(l))
        .map(|(s, v, t)| {
            (
                s.replace("path=\"", "PATH").replace(",code=\"200\"", ""),
                v.to_bits(),
                t,
            )
        })
        .collect();
    let mut got: Vec<(String, u64, String)> = sample_lines(&first)
        .iter()
        .map(|l| parse(l))
        .map(|(s, v, t)| (s.replace("code=\"200\",path=\"", "PATH"), v.to_bits(), t))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn promtool_reads_our_dump() {
    let tmp = tempfile::tempdir().unwrap();
    let (text, n) = sample_file();
    let input = tmp.path().join("in.om");
    std::fs::write(&input, &text).unwrap();
    import(&tmp.path().join("a"), &input);
    let dumped = tmp.path().join("dump.om");
    std::fs::write(&dumped, dump(&tmp.path().join("a"))).unwrap();
    let promtool = which_promtool();
    let out = tmp.path().join("prom");
    let o = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&dumped)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "promtool refused our dump: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // `promtool tsdb dump` opens the directory as a TSDB, which wants a WAL directory.
    std::fs::create_dir_all(out.join("wal")).unwrap();
    let o = Command::new(&promtool)
        .args(["tsdb", "dump"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = String::from_utf8(o.stdout).unwrap().lines().count();
    assert_eq!(lines, n, "promtool stored every sample of our dump");
}

fn which_promtool() -> std::path::PathBuf {
    let p = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&p)
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file())
        .expect("promtool not found: install Debian's `prometheus` package (.ci/run does)")
}

#[test]
fn malformed_import_names_the_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("bad.om");
    std::fs::write(
        &input,
        "# TYPE a gauge\na 1 1700000000\na 2 1700000015\na{x=\"1} 3 1700000030\n# EOF\n",
    )
    .unwrap();
    let dir = tmp.path().join("d");
    let o = tidemark(&[
        "import",
        "--data-dir",
        dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 4"), "{err}");
    let blocks = dir.join("blocks");
    let n = std::fs::read_dir(&blocks).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "nothing written");

    std::fs::write(&input, "a 1 1700000000\na 1\n# EOF\n").unwrap();
    let o = tidemark(&[
        "import",
        "--data-dir",
        dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("line 2"));
    std::fs::write(&input, "a 1 1700000000\na 2 1700000000\n# EOF\n").unwrap();
    let o = tidemark(&[
        "import",
        "--data-dir",
        dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("two different values"));
    assert_eq!(
        std::fs::read_dir(&blocks).map(|d| d.count()).unwrap_or(0),
        0
    );
}

#[test]
fn import_refuses_timestamps_outside_the_storable_range_or_ahead_of_the_clock() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("extreme.om");
    let dir = tmp.path().join("d");
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cases = [
        // i64::MIN + 1 ms: before the range, and its window arithmetic wrapped.
        (
            "-9223372036854775.807".to_string(),
            "outside the storable range",
        ),
        ("9223372036854775".to_string(), "outside the storable range"),
        // One millisecond before 0000-01-01T00:00:00Z.
        ("-62167219200.001".to_string(), "outside the storable range"),
        // An hour ahead: retention, counted from the newest sample, would drop every block.
        ((now_s + 3600).to_string(), "ahead of this machine's clock"),
    ];
    for (ts, want) in &cases {
        std::fs::write(
            &input,
            format!("# TYPE a gauge\na 1 1700000000\na 2 {ts}\n# EOF\n"),
        )
        .unwrap();
        let o = tidemark(&[
            "import",
            "--data-dir",
            dir.to_str().unwrap(),
            input.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{ts}: {err}");
        assert!(err.contains("line 3") && err.contains(want), "{ts}: {err}");
        let blocks = std::fs::read_dir(dir.join("blocks"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(blocks, 0, "{ts}: nothing written");
    }
    // The first millisecond of year 0000 is storable.
    std::fs::write(&input, "# TYPE a gauge\na 1 -62167219200\n# EOF\n").unwrap();
    import(&dir, &input);
}

#[test]
fn inspect_reports_blocks_and_cardinality() {
    let tmp = tempfile::tempdir().unwrap();
    let (text, n) = sample_file();
    let input = tmp.path().join("in.om");
    std::fs::write(&input, &text).unwrap();
    let dir = tmp.path().join("a");
    import(&dir, &input);
    let o = tidemark(&["inspect", "--data-dir", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let samples: u64 = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(samples as usize, n);
    assert_eq!(v["series"], 5);
    assert_eq!(v["topMetricNames"][0]["name"], "http_requests_total");
    assert_eq!(v["topMetricNames"][0]["series"], 3);
    assert_eq!(v["topLabels"][0]["name"], "path");
    let o = tidemark(&["inspect", "--data-dir", dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("HIGHEST-CARDINALITY LABELS"));
}

#[test]
fn histograms_round_trip_through_dump_and_import_and_inspect_counts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut text = String::from("# TYPE rpc_seconds unknown\n");
    let mut n = 0;
    for i in 0..300i64 {
        let t = 1_700_000_000_000 + i * 15_000;
        text.push_str(&format!(
            "rpc_seconds{{job=\"a\\\"b\"}} {{{{int schema:3 sum:{}.25 count:{} z_bucket:{i} z_bucket_w:1e-128 buckets:[{} {} 3 {}] spans:[-2:3 4:1] n_buckets:[3] n_spans:[1:1] counter_reset_hint:not_reset}}}} {}.{:03}\n",
            i * 3,
            4 * i + 15,
            i,
            i + 2,
            i + 7,
            t / 1000,
            t % 1000
        ));
        n += 1;
    }
    // Float histograms with custom buckets, special values; and a series switching kinds.
    for i in 0..50i64 {
        let t = 1_700_000_000_500 + i * 60_000;
        text.push_str(&format!(
            "rpc_seconds{{job=\"nhcb\"}} {{{{schema:-53 sum:NaN count:{} z_bucket:0 z_bucket_w:0 buckets:[0.5 {} 1] spans:[0:3] counter_reset_hint:gauge custom_values:[0.1 1]}}}} {}.{:03}\n",
            1.5 + i as f64 / 8.0,
            i as f64 / 8.0,
            t / 1000,
            t % 1000
        ));
        n += 1;
        let v = if i % 2 == 0 {
            format!("{i}")
        } else {
            "{{int schema:0 sum:1 count:1 z_bucket:1 z_bucket_w:0}}".to_string()
        };
        text.push_str(&format!(
            "rpc_seconds{{job=\"mixed\"}} {v} {}.{:03}\n",
            t / 1000,
            t % 1000
        ));
        n += 1;
    }
    text.push_str("# EOF\n");
    let input = tmp.path().join("in.om");
    std::fs::write(&input, &text).unwrap();
    let summary = import(&tmp.path().join("a"), &input);
    assert!(summary.contains(&format!("{n} samples")), "{summary}");
    let first = dump(&tmp.path().join("a"));
    // What was written in the dump's own form comes back line for line.
    assert_eq!(sample_lines(&first), sample_lines(&text));
    let again = tmp.path().join("again.om");
    std::fs::write(&again, &first).unwrap();
    import(&tmp.path().join("b"), &again);
    assert_eq!(dump(&tmp.path().join("b")), first);

    let dir = tmp.path().join("a");
    let o = tidemark(&["inspect", "--data-dir", dir.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let sum = |k: &str| -> u64 {
        v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b[k].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("samples") as usize, n);
    assert_eq!(sum("histogramSamples"), 300 + 50 + 25);
    assert_eq!(v["series"], 3);

    // A histogram that breaks the rules names its line and writes nothing.
    let bad = tmp.path().join("bad.om");
    std::fs::write(
        &bad,
        "x {{int schema:0 sum:1 count:1 z_bucket:0 z_bucket_w:0 buckets:[1 2]}} 1700000000.000\nx {{schema:0 sum:1 count:1 z_bucket:0 z_bucket_w:0 wat:[1]}} 1700000001.000\n# EOF\n",
    )
    .unwrap();
    let o = tidemark(&[
        "import",
        "--data-dir",
        tmp.path().join("c").to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2") && err.contains("wat"), "{err}");
}
