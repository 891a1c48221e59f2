//! Tests of the config schema: one test per file of config/testdata, then the values and
//! behaviours behind them.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::model::Labels;
use crate::relabel::{Rule, process};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/testdata")
}

fn load(name: &str) -> Config {
    Config::check_file(&testdata().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A good file passes every check `tidemark check config` runs, and comes out resolved.
fn check_good(stem: &str) {
    let c = load(&format!("{stem}.good.yml"));
    assert!(c.global.scrape_interval.0 > 0 && c.global.scrape_timeout.0 > 0);
    assert!(c.global.scrape_timeout <= c.global.scrape_interval);
    for sc in &c.scrape_configs {
        assert!(sc.scrape_interval.0 > 0, "{stem}: {}", sc.job_name);
        assert!(sc.scrape_timeout.0 > 0 && sc.scrape_timeout <= sc.scrape_interval);
        assert!(!sc.scrape_protocols.is_empty());
        assert!(sc.bearer_token.is_none() && sc.bearer_token_file.is_none());
        for r in sc.relabel_configs.iter().chain(&sc.metric_relabel_configs) {
            assert!(Rule::new(r.clone()).is_ok());
        }
    }
}

/// A bad file starts with `# error: <substring>` and `# line: <n>` (and `# file: <name>`
/// when the problem is in another file); some problem must match all of them.
fn check_bad(stem: &str) {
    let path = testdata().join(format!("{stem}.bad.yml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let header = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
            .map(str::to_string)
    };
    let want = header("error").unwrap_or_else(|| panic!("{stem}: no `# error:` line"));
    let line: usize = header("line")
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("{stem}: no `# line:` line"));
    let file = match header("file") {
        Some(f) => testdata().join(f).display().to_string(),
        None => path.display().to_string(),
    };
    let err = Config::check_file(&path).expect_err(stem);
    let problems = err.problems();
    assert!(!problems.is_empty(), "{stem}: {err}");
    let found = problems
        .iter()
        .any(|p| p.line == line && p.file == file && p.to_string().contains(&want));
    assert!(
        found,
        "{stem}: want line {line} in {file} containing {want:?}, got:\n{err}"
    );
}

macro_rules! testdata_files {
    (good: [$($g:ident),* $(,)?], bad: [$($b:ident),* $(,)?] $(,)?) => {
        mod good {
            $(#[test] fn $g() { super::check_good(stringify!($g)); })*
        }
        mod bad {
            $(#[test] fn $b() { super::check_bad(stringify!($b)); })*
        }
        const LISTED: &[&str] = &[
            $(concat!(stringify!($g), ".good.yml"),)*
            $(concat!(stringify!($b), ".bad.yml"),)*
        ];
    };
}

testdata_files! {
    good: [
        anchors_merge,
        auth_authorization,
        auth_basic,
        auth_bearer_legacy,
        empty,
        file_sd,
        flow_style,
        https_params,
        inherit_timeout,
        limits,
        minimal,
        native_histograms,
        prometheus_docs_example,
        relabel_every_action,
        remote_write_mimir,
        remote_write_victoriametrics,
        scrape_protocols,
        tidemark_sections,
        tls,
        wal_fsync_always,
        web_security,
    ],
    bad: [
        authorization_basic_type,
        authorization_with_bearer,
        bad_duration,
        bad_duration_fraction,
        bad_regex,
        bad_scheme,
        bad_size,
        bearer_token_and_file,
        bearer_with_basic_auth,
        block_duration_zero,
        duplicate_job,
        duplicate_protocol,
        duplicate_yaml_key,
        empty_target,
        file_sd_bad_extension,
        file_sd_bad_target_file,
        file_sd_glob_in_directory,
        hashmod_without_modulus,
        invalid_external_label,
        invalid_label_name,
        invalid_relabel_action,
        job_timeout_gt_global_interval,
        labeldrop_with_source,
        log_bad_level,
        metrics_path_relative,
        missing_job_name,
        multiple_documents,
        negative_limit,
        null_relabel_entry,
        query_zero_concurrency,
        referenced_file_missing,
        remote_write_bad_url,
        remote_write_duplicate_name,
        remote_write_no_url,
        remote_write_reserved_header,
        remote_write_v2,
        replace_without_target,
        size_without_unit,
        timeout_gt_global_interval,
        timeout_gt_interval,
        tls_cert_without_key,
        unknown_key_global,
        unknown_key_job,
        unknown_key_queue,
        unknown_key_relabel,
        unknown_key_static,
        unknown_key_tls,
        unknown_key_top,
        unsupported_alerting,
        unsupported_kubernetes_sd,
        unsupported_oauth2,
        unsupported_rule_files,
        url_as_target,
        wal_fsync_bad,
        web_bad_cors,
        web_bad_hash,
        web_bad_listen,
        web_tls_ca_without_auth_type,
        web_tls_client_ca_missing,
        web_tls_old_version,
        web_tls_unknown_auth_type,
        web_tls_verify_without_ca,
        web_zero_header_timeout,
        wrong_type_bool,
        wrong_type_list,
        yaml_syntax,
    ],
}

#[test]
fn every_testdata_file_has_its_own_test() {
    let mut unlisted = Vec::new();
    for entry in std::fs::read_dir(testdata()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let is_case = name.ends_with(".good.yml") || name.ends_with(".bad.yml");
        if is_case && !LISTED.contains(&name.as_str()) {
            unlisted.push(name);
        }
    }
    assert!(unlisted.is_empty(), "add to testdata_files!: {unlisted:?}");
    for name in LISTED {
        assert!(
            testdata().join(name).is_file(),
            "listed but missing: {name}"
        );
    }
}

fn job<'a>(c: &'a Config, name: &str) -> &'a ScrapeConfig {
    c.scrape_configs
        .iter()
        .find(|s| s.job_name == name)
        .unwrap_or_else(|| panic!("no job {name}"))
}

#[test]
fn an_empty_file_gives_prometheus_defaults() {
    let c = Config::parse("", "empty.yml").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.global.scrape_interval, Duration::secs(60));
    assert_eq!(c.global.scrape_timeout, Duration::secs(10));
    assert_eq!(c.global.evaluation_interval, Duration::secs(60));
    assert_eq!(c.global.scrape_protocols, ScrapeProtocol::DEFAULT.to_vec());
    assert_eq!(c.storage.path, PathBuf::from("./data"));
    assert_eq!(c.storage.wal_fsync, WalFsync::Interval(Duration::secs(1)));
    assert_eq!(c.storage.block_duration, Duration::secs(7200));
    assert_eq!(c.storage.retention.time, Duration::secs(15 * 86_400));
    assert_eq!(c.web.listen_address, "127.0.0.1:9595");
    assert!(!c.web.enable_lifecycle && !c.web.enable_admin_api);
    assert!(!c.web.enable_remote_write_receiver);
    assert_eq!(c.query.timeout, Duration::secs(120));
    assert_eq!(c.query.max_samples, 50_000_000);
    assert_eq!(c.query.lookback_delta, Duration::secs(300));
    assert_eq!(c.query.max_concurrency, 20);
    // Explicit empty sections mean the same as absent ones.
    let c2 = Config::parse("global:\nstorage:\nweb: {}\nscrape_configs: []\n", "e.yml").unwrap();
    assert_eq!(c2, c);
}

#[test]
fn job_defaults_are_prometheus_defaults() {
    let c = load("minimal.good.yml");
    let j = &c.scrape_configs[0];
    assert_eq!(j.scrape_interval, Duration::secs(60));
    assert_eq!(j.scrape_timeout, Duration::secs(10));
    assert_eq!(j.metrics_path, "/metrics");
    assert_eq!(j.scheme, Scheme::Http);
    assert!(!j.honor_labels && j.honor_timestamps && j.enable_compression);
    assert!(j.follow_redirects && j.enable_http2);
    assert_eq!(j.body_size_limit, ByteSize(0));
    assert_eq!(j.sample_limit, 0);
    assert_eq!(j.static_configs[0].targets, vec!["localhost:9100"]);
}

#[test]
fn embedded_default_scrapes_tidemark_every_15s() {
    let c = Config::default_embedded();
    assert_eq!(c, Config::parse(DEFAULT_CONFIG_YAML, "default").unwrap());
    let j = job(&c, "tidemark");
    assert_eq!(j.scrape_interval, Duration::secs(15));
    assert_eq!(j.scrape_timeout, Duration::secs(10));
    assert_eq!(j.static_configs[0].targets, vec!["127.0.0.1:9595"]);
    assert_eq!(c.storage.path, PathBuf::from("./data"));
}

#[test]
fn timeouts_inherit_and_cap_like_prometheus() {
    let c = load("inherit_timeout.good.yml");
    // A 5s global interval caps the 10s default timeout.
    assert_eq!(c.global.scrape_timeout, Duration::secs(5));
    assert_eq!(job(&c, "fast").scrape_interval, Duration::secs(5));
    assert_eq!(job(&c, "fast").scrape_timeout, Duration::secs(5));
    assert_eq!(job(&c, "slow").scrape_interval, Duration::secs(120));
    assert_eq!(job(&c, "slow").scrape_timeout, Duration::secs(5));
    let docs = load("prometheus_docs_example.good.yml");
    assert_eq!(docs.global.scrape_interval, Duration::secs(15));
    assert_eq!(docs.global.evaluation_interval, Duration::secs(15));
    assert_eq!(docs.global.external_labels["monitor"], "codelab-monitor");
    let node = job(&docs, "node");
    assert_eq!(node.scrape_timeout, Duration::secs(5));
    assert_eq!(node.static_configs[1].labels["group"], "canary");
}

#[test]
fn limits_inherit_from_global_unless_set() {
    let c = load("limits.good.yml");
    let a = job(&c, "inherits");
    assert_eq!(a.body_size_limit, ByteSize(50 << 20));
    assert_eq!(a.sample_limit, 20_000);
    assert_eq!(a.label_limit, 64);
    assert_eq!(a.label_name_length_limit, 128);
    assert_eq!(a.label_value_length_limit, 2048);
    assert_eq!(a.scrape_timeout, Duration::secs(10));
    let b = job(&c, "overrides");
    assert_eq!(b.body_size_limit, ByteSize((1 << 30) + (512 << 20)));
    assert_eq!(b.sample_limit, 500_000);
    assert_eq!(b.target_limit, 100);
    assert_eq!(b.label_limit, 30);
    assert_eq!(b.label_value_length_limit, 2048);
    assert!(!b.enable_compression);
}

#[test]
fn credentials_keep_their_text_and_files_resolve_against_the_config_dir() {
    let dir = testdata();
    let c = load("auth_basic.good.yml");
    let inline = job(&c, "basic-inline").basic_auth.as_ref().unwrap();
    // Quoted digits stay a string, leading zero included.
    assert_eq!(inline.password.as_ref().unwrap().expose(), "0123");
    let files = job(&c, "basic-files").basic_auth.as_ref().unwrap();
    assert_eq!(files.username_file, Some(dir.join("files/username.txt")));
    assert_eq!(files.password_file, Some(dir.join("files/password.txt")));
    assert!(!format!("{c:?}").contains("0123"), "secrets must not print");

    let c = load("auth_authorization.good.yml");
    let a = job(&c, "bearer-inline").authorization.as_ref().unwrap();
    assert_eq!(a.kind, "Bearer");
    assert!(a.credentials.as_ref().unwrap().expose().starts_with("eyJ"));
    let t = job(&c, "custom-type-from-file")
        .authorization
        .as_ref()
        .unwrap();
    assert_eq!(t.kind, "Token");
    assert_eq!(t.credentials_file, Some(dir.join("files/token.txt")));

    let c = load("tls.good.yml");
    let tls = &job(&c, "mtls").tls_config;
    assert_eq!(tls.ca_file, Some(dir.join("files/ca.pem")));
    assert_eq!(tls.key_file, Some(dir.join("files/client.key")));
    assert_eq!(tls.server_name.as_deref(), Some("metrics.internal"));
    assert_eq!(tls.min_version, Some(TlsVersion::TLS12));
    assert!(job(&c, "self-signed").tls_config.insecure_skip_verify);
}

#[test]
fn legacy_bearer_tokens_fold_into_authorization() {
    let c = load("auth_bearer_legacy.good.yml");
    let inline = job(&c, "legacy-token");
    let a = inline.authorization.as_ref().unwrap();
    assert_eq!(a.kind, "Bearer");
    assert_eq!(
        a.credentials.as_ref().unwrap().expose(),
        "legacy-inline-token"
    );
    let file = job(&c, "legacy-token-file").authorization.as_ref().unwrap();
    assert_eq!(
        file.credentials_file,
        Some(testdata().join("files/token.txt"))
    );
    assert!(file.credentials.is_none());
}

#[test]
fn anchors_and_merge_keys_share_settings() {
    let c = load("anchors_merge.good.yml");
    let first = job(&c, "first");
    let second = job(&c, "second");
    assert_eq!(second.scrape_interval, Duration::secs(20));
    assert!(second.honor_labels);
    // Keys written in the mapping win over merged ones, wherever they are written.
    assert_eq!(second.scrape_timeout, Duration::secs(5));
    assert_eq!(first.scrape_timeout, Duration::secs(15));
    assert_eq!(second.metrics_path, "/probe");
    assert_eq!(second.static_configs, first.static_configs);
    assert_eq!(job(&c, "third").static_configs, first.static_configs);
}

#[test]
fn every_relabel_action_loads_and_applies() {
    let c = load("relabel_every_action.good.yml");
    let j = job(&c, "relabel");
    let rules: Vec<Rule> = j
        .relabel_configs
        .iter()
        .map(|r| Rule::new(r.clone()).unwrap())
        .collect();
    assert_eq!(rules.len(), 10);
    let target = Labels::new([
        ("__address__", "app-1.internal:8080"),
        ("__meta_zone", "eu-west-1b"),
        ("__meta_role", "API"),
        ("job", "relabel"),
    ])
    .unwrap();
    let out = process(&target, &rules).unwrap();
    assert_eq!(out.get("host"), Some("app-1.internal"));
    assert_eq!(out.get("placement"), Some("eu-west-1b/app-1.internal"));
    assert_eq!(out.get("role"), Some("api"));
    assert_eq!(out.get("zone_upper"), Some("EU-WEST-1B"));
    assert_eq!(out.get("meta_zone"), Some("eu-west-1b"));
    let shard: u64 = out.get("__tmp_shard").unwrap().parse().unwrap();
    assert!(shard < 4);
    let other = Labels::new([("__address__", "db-1.internal:5432")]).unwrap();
    assert_eq!(process(&other, &rules), None, "keep drops non-app targets");
    assert_eq!(j.metric_relabel_configs.len(), 3);
}

#[test]
fn file_sd_patterns_find_and_parse_target_files() {
    let c = load("file_sd.good.yml");
    let sd = &job(&c, "from-files").file_sd_configs;
    assert_eq!(sd[0].refresh_interval, Duration::secs(60));
    assert_eq!(sd[1].refresh_interval, Duration::secs(300));
    let groups = file_sd::load(&sd[0].files).unwrap();
    let json = testdata().join("file_sd/web.json").display().to_string();
    let yml = testdata().join("file_sd/db.yml").display().to_string();
    let sources: Vec<&str> = groups.iter().map(|g| g.source.as_str()).collect();
    assert_eq!(
        sources,
        vec![
            format!("{json}:0"),
            format!("{json}:1"),
            format!("{yml}:0"),
            format!("{yml}:1"),
        ]
    );
    assert_eq!(groups[0].targets.len(), 2);
    assert_eq!(groups[0].labels["team"], "frontend");
    assert_eq!(groups[0].labels[file_sd::FILEPATH_LABEL], json);
    assert_eq!(groups[2].labels["role"], "database");
    assert_eq!(groups[3].targets, vec!["10.1.7.23:9187"]);
    assert_eq!(groups[3].labels.len(), 1, "only the file path label");
    assert!(file_sd::load(&sd[1].files).unwrap().is_empty());
}

#[test]
fn file_sd_errors_name_the_target_file_and_line() {
    let err = file_sd::parse(
        "[{\"targets\": [\"a:1\"]},\n {\"targets\": [\"b:2\"], \"lables\": {}}]",
        "t.json",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.json:2:23: [1].lables: unknown key `lables`; did you mean `labels`?"
    );
    assert!(file_sd::parse("", "empty.yml").unwrap().is_empty());
    let err = file_sd::parse("- targets: ['']\n", "e.yml").unwrap_err();
    assert_eq!(err.to_string(), "e.yml:1:13: [0].targets[0]: empty target");
}

#[test]
fn glob_patterns_match_like_go() {
    for (p, name, want) in [
        ("*.json", "a.json", true),
        ("*.json", "a.yml", false),
        ("tg_*.yml", "tg_web.yml", true),
        ("tg_*.yml", "xtg_web.yml", false),
        ("*_*.yml", "a_b_c.yml", true),
        ("?.yml", "a.yml", true),
        ("?.yml", "ab.yml", false),
        ("[ab]*.json", "b1.json", true),
        ("[!ab]*.json", "b1.json", false),
        ("[a-c]x.yml", "cx.yml", true),
        ("[a-c]x.yml", "dx.yml", false),
        ("\\*.yml", "*.yml", true),
        ("\\*.yml", "a.yml", false),
        ("*", "", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
        ("[a-", "a", false),
    ] {
        assert_eq!(file_sd::glob_match(p, name), want, "{p} vs {name}");
    }
    assert!(file_sd::check_pattern("dir/sub/*.yaml").is_ok());
    assert!(file_sd::check_pattern("dir/tg.JSON").is_ok());
    assert!(file_sd::check_pattern("dir/*/tg.json").is_err());
    assert!(file_sd::check_pattern("dir/[x.json").is_err());
    assert!(file_sd::check_pattern("dir/").is_err());
}

#[test]
fn a_bad_file_sd_pattern_says_which_rule_it_breaks() {
    use file_sd::{PatternError, check_pattern};
    assert_eq!(
        check_pattern("dir/targets.txt"),
        Err(PatternError::NotATargetFile("dir/targets.txt".into()))
    );
    assert_eq!(
        check_pattern("dir/"),
        Err(PatternError::NotATargetFile("dir/".into()))
    );
    assert_eq!(
        check_pattern("d?r/tg.json"),
        Err(PatternError::PatternInDirectory("d?r/tg.json".into()))
    );
    assert_eq!(
        check_pattern("dir/[x.json"),
        Err(PatternError::Malformed("dir/[x.json".into()))
    );
    assert_eq!(
        check_pattern("dir/[x.json").map_err(|e| e.to_string()),
        Err("\"dir/[x.json\": malformed pattern".into())
    );
}

#[test]
fn tidemark_sections_parse() {
    let c = load("tidemark_sections.good.yml");
    assert_eq!(c.storage.path, PathBuf::from("/var/lib/tidemark"));
    assert_eq!(c.storage.wal_fsync, WalFsync::Interval(Duration(250)));
    assert_eq!(c.storage.retention.time, Duration::secs(90 * 86_400));
    assert_eq!(c.storage.retention.size, ByteSize(512 << 30));
    assert_eq!(c.web.listen_address, "0.0.0.0:9595");
    assert!(c.web.enable_lifecycle && c.web.enable_remote_write_receiver);
    assert_eq!(
        c.web.tls.as_ref().unwrap().cert_file,
        testdata().join("files/client.pem")
    );
    assert_eq!(c.web.basic_auth_users.len(), 2);
    assert_eq!(c.query.timeout, Duration::secs(30));
    assert_eq!(c.query.max_samples, 20_000_000);
    assert_eq!(c.query.max_concurrency, 8);

    let c = load("wal_fsync_always.good.yml");
    assert_eq!(c.storage.wal_fsync, WalFsync::Always);
    assert_eq!(c.storage.retention.time, Duration(0));
    assert_eq!(c.storage.retention.size, ByteSize(3 << 39));
}

#[test]
fn web_security_and_log_keys_parse_with_their_defaults() {
    let c = Config::parse("", "empty.yml").unwrap();
    assert_eq!(c.web.cors_origin, "");
    assert!(c.web.cors_origin_regex().unwrap().is_none());
    assert_eq!(c.web.max_request_body_size, ByteSize(32 << 20));
    assert_eq!(c.web.max_connections, 512);
    assert_eq!(c.web.read_header_timeout, Duration::secs(30));
    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);
    let t = Config::parse("web: {tls: {cert_file: a, key_file: b}}", "t.yml").unwrap();
    let tls = t.web.tls.unwrap();
    assert_eq!(tls.client_auth_type, ClientAuthType::NoClientCert);
    assert_eq!(tls.min_version, TlsVersion::TLS12);
    assert_eq!(tls.client_ca_file, None);

    let c = load("web_security.good.yml");
    let re = c.web.cors_origin_regex().unwrap().unwrap();
    for (origin, ok) in [
        ("https://grafana.example.org", true),
        ("http://localhost:3000", true),
        // Anchored at both ends, as Prometheus anchors --web.cors.origin.
        ("https://grafana.example.org.evil.net", false),
        ("evil://https://grafana.example.org", false),
        ("https://grafanaXexample.org", false),
    ] {
        assert_eq!(re.is_match(origin), ok, "{origin}");
    }
    assert_eq!(c.web.max_request_body_size, ByteSize(4 << 20));
    assert_eq!(c.web.max_connections, 64);
    assert_eq!(c.web.read_header_timeout, Duration::secs(10));
    let tls = c.web.tls.as_ref().unwrap();
    assert_eq!(tls.client_ca_file, Some(testdata().join("files/ca.pem")));
    assert_eq!(
        tls.client_auth_type,
        ClientAuthType::RequireAndVerifyClientCert
    );
    assert_eq!(tls.min_version, TlsVersion::TLS13);
    assert_eq!(c.log.level, "warn,tidemark::scrape=debug");
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn log_levels_are_checked_strictly() {
    for ok in [
        "info",
        "DEBUG",
        "off",
        "warn,tidemark=trace",
        "tidemark::api=debug,error",
    ] {
        assert!(check_log_level(ok).is_ok(), "{ok}");
    }
    // A misspelt level would read as a target name in a tracing filter and log nothing.
    for bad in [
        "",
        "verbose",
        "inf",
        "tidemark=loud",
        "=debug",
        "info,",
        "warning",
    ] {
        assert!(check_log_level(bad).is_err(), "{bad}");
    }
}

#[test]
fn remote_write_keeps_prometheus_schema_and_defaults() {
    let c = load("remote_write_mimir.good.yml");
    let rw = &c.remote_write[0];
    assert_eq!(rw.name, "mimir");
    assert_eq!(rw.remote_timeout, Duration::secs(45));
    assert_eq!(rw.headers["X-Scope-OrgID"], "tenant-eu-prod");
    assert_eq!(rw.queue_config.capacity, 20_000);
    assert_eq!(rw.queue_config.min_backoff, Duration(50));
    assert_eq!(rw.queue_config.sample_age_limit, Duration(0));
    assert_eq!(rw.metadata_config.send_interval, Duration::secs(120));
    assert_eq!(rw.metadata_config.max_samples_per_send, 2000);
    assert_eq!(c.global.external_labels["__replica__"], "replica-a");

    let c = load("remote_write_victoriametrics.good.yml");
    assert_eq!(c.remote_write[0].write_relabel_configs.len(), 1);
    assert!(!c.remote_write[0].metadata_config.send);
    let plain = &c.remote_write[1];
    assert_eq!(plain.url, "http://victoria-single:8428/api/v1/write");
    assert_eq!(plain.remote_timeout, Duration::secs(30));
    assert_eq!(plain.queue_config, QueueConfig::default());
    assert_eq!(plain.queue_config.max_shards, 50);
    assert_eq!(plain.queue_config.max_backoff, Duration::secs(5));
    assert!(plain.queue_config.retry_on_http_429);
    assert_eq!(plain.protobuf_message, "prometheus.WriteRequest");
}

#[test]
fn scrape_protocols_inherit_and_fall_back() {
    let c = load("scrape_protocols.good.yml");
    use ScrapeProtocol as P;
    assert_eq!(
        job(&c, "global-protocols").scrape_protocols,
        vec![P::PrometheusText0_0_4, P::OpenMetricsText1_0_0]
    );
    let own = job(&c, "own-protocols");
    assert_eq!(
        own.scrape_protocols,
        vec![P::OpenMetricsText1_0_0, P::PrometheusText1_0_0]
    );
    assert_eq!(own.fallback_scrape_protocol, Some(P::PrometheusText0_0_4));
}

#[test]
fn native_histogram_keys_inherit_and_pick_the_protocols_as_prometheus_3() {
    let c = load("native_histograms.good.yml");
    use ScrapeProtocol as P;
    // Unset everywhere: no native histograms, the text formats.
    let plain = job(&c, "plain");
    assert_eq!(plain.scrape_native_histograms, Some(false));
    assert_eq!(plain.scrape_protocols, P::DEFAULT.to_vec());
    assert_eq!(plain.always_scrape_classic_histograms, Some(true));
    assert_eq!(plain.convert_classic_histograms_to_nhcb, Some(false));
    assert_eq!(plain.native_histogram_bucket_limit, 0);
    // Native histograms on for the job: protobuf first.
    let native = job(&c, "native");
    assert_eq!(native.scrape_native_histograms, Some(true));
    assert_eq!(native.scrape_protocols, P::PROTO_FIRST.to_vec());
    assert_eq!(native.always_scrape_classic_histograms, Some(false));
    assert_eq!(native.convert_classic_histograms_to_nhcb, Some(true));
    assert_eq!(native.native_histogram_bucket_limit, 160);
    assert_eq!(native.native_histogram_min_bucket_factor, 1.1);
    // A list of its own wins over the native default.
    let own = job(&c, "own-list");
    assert_eq!(
        own.scrape_protocols,
        vec![P::PrometheusProto, P::PrometheusText0_0_4]
    );
    assert_eq!(own.fallback_scrape_protocol, Some(P::PrometheusProto));

    // A global list, when written, wins over the native default of jobs without one.
    let text = "global: {scrape_protocols: [PrometheusText0.0.4]}\n\
                scrape_configs: [{job_name: a, scrape_native_histograms: true}]\n";
    let c = Config::parse(text, "t.yml").unwrap();
    assert_eq!(
        c.scrape_configs[0].scrape_protocols,
        vec![P::PrometheusText0_0_4]
    );
    // A global switch reaches the jobs.
    let text = "global: {scrape_native_histograms: true}\nscrape_configs: [{job_name: a}]\n";
    let c = Config::parse(text, "t.yml").unwrap();
    assert_eq!(
        c.scrape_configs[0].scrape_protocols,
        P::PROTO_FIRST.to_vec()
    );
    assert_eq!(c.scrape_configs[0].scrape_native_histograms, Some(true));
    // The old Prometheus 2 name is refused with a clear message.
    let e = Config::parse("global: {scrape_classic_histograms: true}\n", "t.yml").unwrap_err();
    assert!(e.to_string().contains("scrape_classic_histograms"), "{e}");
    let e = Config::parse(
        "scrape_configs: [{job_name: a, native_histogram_min_bucket_factor: .nan}]\n",
        "t.yml",
    )
    .unwrap_err();
    assert!(e.to_string().contains("must be a finite number"), "{e}");
}

#[test]
fn https_params_and_url_targets_behind_relabeling() {
    let c = load("https_params.good.yml");
    let bb = job(&c, "blackbox");
    assert_eq!(bb.scheme, Scheme::Https);
    assert_eq!(bb.params["target"].len(), 2);
    assert!(bb.honor_labels && !bb.honor_timestamps && !bb.follow_redirects);
    assert_eq!(
        job(&c, "federate").params["match[]"][1],
        "{__name__=~\"job:.*\"}"
    );
    let c = load("flow_style.good.yml");
    assert_eq!(c.global.external_labels["dc"], "fra1");
    assert_eq!(c.scrape_configs[0].scrape_interval, Duration::secs(10));
}

#[test]
fn errors_read_file_line_column_path_message() {
    let text = "\
global:
  scrape_interval: 30s
scrape_configs:
  - job_name: a
  - job_name: b
    scrape_interval: 15x
";
    let err = Config::parse(text, "prometheus.yml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "prometheus.yml:6:22: scrape_configs[1].scrape_interval: invalid duration \"15x\" \
         (want Prometheus syntax such as 15s, 1h30m, 2d, 0)"
    );
    // Validation reports every problem at once, in the order it checks them.
    let text = "\
scrape_configs:
  - job_name: a
    scrape_interval: 10s
    scrape_timeout: 11s
  - job_name: a
    static_configs:
      - labels: {bad-label: x}
";
    let err = Config::parse(text, "p.yml").unwrap_err();
    let lines: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "p.yml:4:21: scrape_configs[0].scrape_timeout: scrape_timeout 11s is greater than \
             scrape_interval 10s for job \"a\"",
            "p.yml:5:15: scrape_configs[1].job_name: duplicate job_name \"a\" (first defined at line 2)",
            "p.yml:7:18: scrape_configs[1].static_configs[0].labels.bad-label: \"bad-label\" is \
             not a valid label name",
        ]
    );
}

#[test]
fn yaml_layer_types_scalars_only_when_asked() {
    let c = Config::parse(
        "scrape_configs:\n  - job_name: 2024\n    honor_labels: yes\n    sample_limit: 1_000\n    \
         params: {q: [!!str 10, 007]}\n",
        "t.yml",
    )
    .unwrap();
    let j = &c.scrape_configs[0];
    assert_eq!(j.job_name, "2024");
    assert!(j.honor_labels);
    assert_eq!(j.sample_limit, 1000);
    assert_eq!(j.params["q"], vec!["10", "007"]);
    let err = Config::parse("scrape_configs:\n  - job_name: [a]\n", "t.yml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.yml:2:5: scrape_configs[0].job_name: expected a string, found a list"
    );
    let err = Config::parse("global: 5\n", "t.yml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "t.yml:1:9: global: expected a mapping, found \"5\""
    );
}

#[test]
fn hostile_yaml_is_refused_not_expanded() {
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        bomb.push_str(&format!(
            "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    let err = Config::parse(&bomb, "bomb.yml").unwrap_err();
    assert!(err.to_string().contains("too many nodes"), "{err}");
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let err = Config::parse(&deep, "deep.yml").unwrap_err();
    assert!(err.to_string().contains("nesting deeper"), "{err}");
    // Aliases of deep anchors, chained, would nest far deeper than the text does.
    let mut chain = format!("a0: &a0 {}x{}\n", "[".repeat(40), "]".repeat(40));
    for i in 1..50 {
        chain.push_str(&format!(
            "a{i}: &a{i} {}*a{}{}\n",
            "[".repeat(40),
            i - 1,
            "]".repeat(40)
        ));
    }
    let err = Config::parse(&chain, "chain.yml").unwrap_err();
    assert!(err.to_string().contains("through an alias"), "{err}");
    let err = Config::parse("*nowhere\n", "alias.yml").unwrap_err();
    assert!(err.to_string().starts_with("alias.yml:1:"), "{err}");
}

#[test]
fn sizes_parse_as_prometheus_base2_bytes() {
    for (s, want) in [
        ("0", 0u64),
        ("1B", 1),
        ("1KB", 1024),
        ("1KiB", 1024),
        ("10MB", 10 << 20),
        ("1.5GB", 3 << 29),
        ("1GiB512MiB", (1 << 30) + (512 << 20)),
        ("2TB", 2 << 40),
        ("1EiB", 1 << 60),
    ] {
        assert_eq!(parse_size(s), Ok(want), "{s}");
    }
    for bad in [
        "",
        "10",
        "1XB",
        "-1MB",
        "MB",
        "1GiB512MB",
        "1 MB",
        "1kb",
        "16EiB",
    ] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
    // Whole byte counts are exact, beyond f64's 53 bits.
    assert_eq!(
        parse_size("143533689960756161B"),
        Ok(143_533_689_960_756_161)
    );
    assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
    assert_eq!(ByteSize(1000).to_string(), "1000B");
    assert_eq!(ByteSize(0).to_string(), "0B");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sizes_round_trip_through_display(n in 0u64..(1 << 62)) {
        prop_assert_eq!(parse_size(&ByteSize(n).to_string()), Ok(n));
    }

    #[test]
    fn durations_round_trip_through_a_config(ms in 1i64..(400 * 86_400_000)) {
        let text = format!("scrape_configs:\n  - job_name: j\n    scrape_interval: {}\n", Duration(ms));
        let c = Config::parse(&text, "p.yml").unwrap();
        prop_assert_eq!(c.scrape_configs[0].scrape_interval, Duration(ms));
        prop_assert!(c.scrape_configs[0].scrape_timeout <= Duration(ms));
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[ -~\\n\\t]{0,200}") {
        let _ = Config::parse(&text, "fuzz.yml");
        let _ = file_sd::parse(&text, "fuzz.json");
    }
}

// ---- the configuration shown at /api/v1/status/config ----------------------------------------

/// The configuration shown for `text`; asserts that `secret` appears nowhere in it.
fn shown_without(text: &str, secret: &str) -> String {
    let c = Config::parse(text, "shown.yml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let shown = c.render();
    assert!(!shown.contains(secret), "{secret:?} shown:\n{shown}");
    shown
}

const JOB: &str = "scrape_configs:\n  - job_name: j\n    static_configs: [{targets: ['h:1']}]\n";

#[test]
fn shown_config_hides_a_basic_auth_flow_map() {
    let y = format!("{JOB}    basic_auth: {{username: u, password: hunter2}}\n");
    let s = shown_without(&y, "hunter2");
    assert!(
        s.contains("  basic_auth:\n    username: u\n    password: <secret>\n"),
        "{s}"
    );
}

#[test]
fn shown_config_hides_secrets_of_a_job_written_as_a_flow_map() {
    let y = "scrape_configs:\n  - {job_name: j, static_configs: [{targets: ['h:1']}], basic_auth: {username: u, password: flow-job-pw}}\n";
    let s = shown_without(y, "flow-job-pw");
    assert!(s.contains("- job_name: j\n"), "{s}");
}

#[test]
fn shown_config_hides_an_authorization_flow_map() {
    let y = format!("{JOB}    authorization: {{type: Token, credentials: tok-9f3a}}\n");
    let s = shown_without(&y, "tok-9f3a");
    assert!(
        s.contains("  authorization:\n    type: Token\n    credentials: <secret>\n"),
        "{s}"
    );
}

#[test]
fn shown_config_hides_a_password_on_the_line_after_its_key() {
    let y =
        format!("{JOB}    basic_auth:\n      username: u\n      password:\n        next-line-pw\n");
    shown_without(&y, "next-line-pw");
}

#[test]
fn shown_config_hides_a_password_under_a_quoted_key() {
    let y =
        format!("{JOB}    basic_auth:\n      \"username\": u\n      \"password\": quoted-key-pw\n");
    shown_without(&y, "quoted-key-pw");
    let single = format!("{JOB}    'bearer_token': single-quoted-tok\n");
    shown_without(&single, "single-quoted-tok");
}

#[test]
fn shown_config_hides_every_line_of_a_quoted_multi_line_value() {
    let y = format!(
        "{JOB}    basic_auth:\n      username: u\n      password: \"first-half\n        second-half-pw\"\n"
    );
    let c = Config::parse(&y, "t").unwrap();
    let pw = c.scrape_configs[0]
        .basic_auth
        .as_ref()
        .unwrap()
        .password
        .as_ref();
    assert_eq!(pw.map(Secret::expose), Some("first-half second-half-pw"));
    shown_without(&y, "first-half");
    shown_without(&y, "second-half-pw");
}

#[test]
fn shown_config_hides_a_remote_write_basic_auth_flow_map() {
    let y = "remote_write:\n  - url: http://vm:8428/api/v1/write\n    basic_auth: {username: rw, password: rw-flow-pw}\n";
    let s = shown_without(y, "rw-flow-pw");
    assert!(s.contains("url: http://vm:8428/api/v1/write\n"), "{s}");
}

#[test]
fn shown_config_hides_the_password_of_a_remote_write_url() {
    let y = "remote_write:\n  - url: https://alice:url-pw-77@vm.example:8428/api/v1/write\n";
    let s = shown_without(y, "url-pw-77");
    // As Prometheus writes its URLs back.
    assert!(
        s.contains("url: https://alice:xxxxx@vm.example:8428/api/v1/write\n"),
        "{s}"
    );
}

#[test]
fn shown_config_hides_tokens_keys_hashes_and_header_values() {
    let hash = "$2y$10$PtYgjmUhBel31iEl2hpChYgCfrL1spNxnyVmihA/2O76UMFxFkM/R";
    let y = format!(
        "{JOB}    bearer_token: legacy-tok\n    tls_config:\n      cert: |\n        -----BEGIN CERTIFICATE-----\n      key: |\n        -----BEGIN PRIVATE KEY-----\n        c2VjcmV0LWtleQ==\n\
         remote_write:\n  - url: http://vm/w\n    headers: {{X-Api-Key: header-tok}}\n\
         web:\n  basic_auth_users: {{grafana: '{hash}'}}\n"
    );
    let s = shown_without(&y, "legacy-tok");
    for secret in ["c2VjcmV0LWtleQ", "header-tok", "$2y$"] {
        assert!(!s.contains(secret), "{secret:?} shown:\n{s}");
    }
    assert!(
        s.contains("X-Api-Key: <secret>") && s.contains("grafana: <secret>"),
        "{s}"
    );
}

/// `c` with every secret replaced by what the shown configuration writes for it.
fn as_shown(mut c: Config) -> Config {
    let hide = |s: &mut Option<Secret>| {
        if s.is_some() {
            *s = Some(Secret::new(SECRET_SHOWN));
        }
    };
    let http = |ba: &mut Option<BasicAuth>, a: &mut Option<Authorization>, t: &mut TlsConfig| {
        if let Some(b) = ba {
            hide(&mut b.password);
        }
        if let Some(a) = a {
            hide(&mut a.credentials);
        }
        hide(&mut t.key);
    };
    for sc in &mut c.scrape_configs {
        http(
            &mut sc.basic_auth,
            &mut sc.authorization,
            &mut sc.tls_config,
        );
    }
    for rw in &mut c.remote_write {
        http(
            &mut rw.basic_auth,
            &mut rw.authorization,
            &mut rw.tls_config,
        );
        rw.url = url_password_hidden(&rw.url);
        for v in rw.headers.values_mut() {
            *v = SECRET_SHOWN.into();
        }
    }
    c
}

#[test]
fn the_shown_config_reads_back_as_the_config_in_force() {
    let mut seen = 0;
    for entry in std::fs::read_dir(testdata()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".good.yml") {
            continue;
        }
        let mut c = load(&name);
        // `<secret>` is not a bcrypt hash: the users' hashes cannot be read back.
        c.web.basic_auth_users.clear();
        let shown = c.render();
        let back = Config::parse(&shown, "shown.yml")
            .unwrap_or_else(|e| panic!("{name}: the shown config does not load: {e}\n{shown}"));
        assert_eq!(back, as_shown(c), "{name}:\n{shown}");
        seen += 1;
    }
    assert!(seen > 10, "{seen} good files");
    let embedded = Config::default_embedded().render();
    assert!(
        embedded.contains("  scrape_interval: 15s\n") && embedded.contains("  - 127.0.0.1:9595\n"),
        "{embedded}"
    );
}

#[test]
fn urls_lose_their_credentials_for_logs_and_labels() {
    for (url, hidden, stripped) in [
        (
            "https://alice:pw@vm:8428/api/v1/write?x=1",
            "https://alice:xxxxx@vm:8428/api/v1/write?x=1",
            "https://vm:8428/api/v1/write?x=1",
        ),
        ("http://bob@vm/w", "http://bob@vm/w", "http://vm/w"),
        ("http://vm:8428/w", "http://vm:8428/w", "http://vm:8428/w"),
        // Not a URL the client accepts: still no password.
        ("http://u:p@[h/x", "http://[h/x", "http://[h/x"),
        ("u:p@h:1/x", "h:1/x", "h:1/x"),
    ] {
        assert_eq!(url_password_hidden(url), hidden, "{url}");
        assert_eq!(url_without_userinfo(url), stripped, "{url}");
    }
    // A URL refused by validation is named without its password.
    let bad = "remote_write:\n  - url: ftp://u:bad-url-pw@h/x\n  - url: http://u:bad-url-pw@:80/x\n  - url: u:bad-url-pw@h/x\n";
    let err = Config::parse(bad, "t").unwrap_err().to_string();
    assert!(
        err.contains("scheme must be") && err.contains("has no host") && err.contains("not a URL"),
        "{err}"
    );
    assert!(!err.contains("bad-url-pw"), "{err}");
}
