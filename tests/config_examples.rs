//! The configuration files shipped in config/ (except the parser's own test data): the
//! binary's `check config` accepts each, config/tidemark.yml documents every key the schema
//! accepts with its real default, and the examples shape targets as their comments say.
//!
//! The list of keys is not written down here: it is read from the schema itself, by
//! deserializing `Config` with a probe that records the field names serde asks for. A key
//! added to any struct of the schema is therefore missing from tidemark.yml until someone
//! documents it there.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use granit_parser::{Event, Parser};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use tidemark::config::{
    Config, Duration, FileSdConfig, GlobalConfig, RemoteWriteConfig, ScrapeConfig, ScrapeProtocol,
    StaticConfig, StorageConfig, TlsConfig, WebConfig, file_sd,
};
use tidemark::scrape::{job, target};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn reference_text() -> String {
    std::fs::read_to_string(config_dir().join("tidemark.yml")).unwrap()
}

/// Every `.yml` config under `dir`, except the parser's test data and file_sd target files
/// (those are checked through the configs that name them).
fn shipped_configs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if name != "testdata" && name != "targets" {
                shipped_configs(&p, out);
            }
        } else if name.ends_with(".yml") {
            out.push(p);
        }
    }
}

#[test]
fn check_config_accepts_every_shipped_config() {
    let root = config_dir();
    let mut files = Vec::new();
    shipped_configs(&root, &mut files);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    for want in [
        "tidemark.yml",
        "examples/node_exporter.yml",
        "examples/file_sd.yml",
        "examples/remote_write_mimir.yml",
        "examples/remote_write_victoriametrics.yml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["check", "config"])
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in &files {
        assert!(stdout.contains(&format!("{}: OK", f.display())), "{stdout}");
    }
}

// ---- The schema's keys, read from serde's derived code -------------------------------------

/// Ends a probe; whatever was recorded before it stays recorded.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probe stopped")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Stop
    }
}

/// A deserializer that walks down `rest` (one key per struct level; options, lists and their
/// items are passed through) and records the field list of the struct it finds at the end.
/// Anything else (a scalar, an enum, a free-form map) stops it: that key is a leaf.
#[derive(Clone, Copy)]
struct Probe<'a> {
    rest: &'a [&'static str],
    found: &'a Cell<Option<&'static [&'static str]>>,
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_some(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Stop> {
        v.visit_seq(OneItem(Some(self)))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Stop> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Stop> {
        match self.rest.split_first() {
            None => {
                self.found.set(Some(fields));
                Err(Stop)
            }
            Some((key, rest)) => v.visit_map(OneEntry {
                key: Some(key),
                value: Some(Probe {
                    rest,
                    found: self.found,
                }),
            }),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct tuple tuple_struct map enum identifier ignored_any
    }
}

struct OneItem<'a>(Option<Probe<'a>>);

impl<'de> SeqAccess<'de> for OneItem<'_> {
    type Error = Stop;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Stop> {
        self.0.take().map(|p| seed.deserialize(p)).transpose()
    }
}

struct OneEntry<'a> {
    key: Option<&'static str>,
    value: Option<Probe<'a>>,
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        self.key
            .take()
            .map(|k| seed.deserialize(IntoDeserializer::<Stop>::into_deserializer(k)))
            .transpose()
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        match self.value.take() {
            Some(p) => seed.deserialize(p),
            None => Err(Stop),
        }
    }
}

/// Every key path the schema accepts (`remote_write.queue_config.capacity`; list items are
/// transparent), each with whether it holds a struct of further keys.
fn schema_keys() -> BTreeMap<String, bool> {
    let fields_at = |path: &[&'static str]| {
        let found = Cell::new(None);
        let _ = Config::deserialize(Probe {
            rest: path,
            found: &found,
        });
        found.get()
    };
    let mut out = BTreeMap::new();
    let mut todo: Vec<Vec<&'static str>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let Some(fields) = fields_at(&path) else {
            continue;
        };
        if !path.is_empty() {
            out.insert(path.join("."), true);
        }
        for f in fields {
            let mut p = path.clone();
            p.push(f);
            out.insert(p.join("."), false);
            todo.push(p);
        }
    }
    out
}

#[test]
fn the_schema_probe_sees_nested_keys() {
    let keys = schema_keys();
    for (key, is_struct) in [
        ("global.scrape_interval", false),
        ("scrape_configs", true),
        ("scrape_configs.basic_auth.password_file", false),
        ("scrape_configs.authorization.type", false),
        ("scrape_configs.relabel_configs.action", false),
        ("scrape_configs.file_sd_configs.refresh_interval", false),
        ("storage.retention.size", false),
        ("web.tls.cert_file", false),
        ("web.basic_auth_users", false),
        ("remote_write.queue_config", true),
        ("remote_write.tls_config.max_version", false),
    ] {
        assert_eq!(keys.get(key), Some(&is_struct), "{key} in {keys:#?}");
    }
    assert!(keys.len() > 120, "{}", keys.len());
}

// ---- What tidemark.yml documents ------------------------------------------------------------

/// Removes one level of commenting from a line that is a commented-out setting: `#key: v`,
/// `#  continuation` (two or more spaces), `##alternative`. `# prose` (one space) is not.
fn uncomment_once(line: &str) -> Option<String> {
    let indent = line.len() - line.trim_start().len();
    let rest = line[indent..].strip_prefix('#')?;
    let setting = rest.starts_with("  ") || rest.starts_with(|c: char| !c.is_whitespace());
    setting.then(|| format!("{}{rest}", &line[..indent]))
}

/// tidemark.yml with every commented-out setting and alternative enabled.
fn uncomment_all(text: &str) -> String {
    text.lines()
        .map(|l| {
            let mut l = l.to_string();
            while let Some(next) = uncomment_once(&l) {
                l = next;
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every mapping key path in a YAML document, list items transparent.
fn yaml_key_paths(text: &str) -> BTreeSet<String> {
    enum Frame {
        Map { key: Option<String>, want_key: bool },
        Seq,
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = BTreeSet::new();
    // A value (scalar, alias or finished collection) was read: the parent map wants a key.
    let value_done = |stack: &mut Vec<Frame>| {
        if let Some(Frame::Map { want_key, .. }) = stack.last_mut() {
            *want_key = true;
        }
    };
    for ev in Parser::new_from_str(text) {
        let (ev, _) = ev.unwrap_or_else(|e| panic!("not YAML once uncommented: {e:?}"));
        match ev {
            Event::Scalar(v, ..) => {
                let is_key = matches!(stack.last(), Some(Frame::Map { want_key: true, .. }));
                if !is_key {
                    value_done(&mut stack);
                    continue;
                }
                let mut path: Vec<&str> = stack[..stack.len() - 1]
                    .iter()
                    .filter_map(|f| match f {
                        Frame::Map { key: Some(k), .. } => Some(k.as_str()),
                        _ => None,
                    })
                    .collect();
                path.push(&v);
                out.insert(path.join("."));
                if let Some(Frame::Map { key, want_key }) = stack.last_mut() {
                    *key = Some(v.to_string());
                    *want_key = false;
                }
            }
            Event::Alias(_) => value_done(&mut stack),
            Event::MappingStart(..) => stack.push(Frame::Map {
                key: None,
                want_key: true,
            }),
            Event::SequenceStart(..) => stack.push(Frame::Seq),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                value_done(&mut stack);
            }
            _ => {}
        }
    }
    out
}

#[test]
fn yaml_key_paths_follow_nesting_through_lists() {
    let got = yaml_key_paths("a:\n  - b: 1\n    c: {d: [x, y], e: f}\ng: h\n");
    let want: BTreeSet<String> = ["a", "a.b", "a.c", "a.c.d", "a.c.e", "g"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(got, want);
    assert_eq!(uncomment_once("  #  x: 1").as_deref(), Some("    x: 1"));
    assert_eq!(uncomment_once("  ##x: 1").as_deref(), Some("  #x: 1"));
    assert_eq!(uncomment_once("  # prose"), None);
    assert_eq!(uncomment_once("  key: 1"), None);
}

/// Lists of relabel rules documented once: their rules' keys are explained under
/// `scrape_configs.relabel_configs`.
const RELABEL_LISTS: [&str; 3] = [
    "scrape_configs.relabel_configs",
    "scrape_configs.metric_relabel_configs",
    "remote_write.write_relabel_configs",
];

/// `path` with a relabel list's rule keys moved under the list where they are documented.
fn documented_as(path: &str) -> String {
    for list in &RELABEL_LISTS[1..] {
        if let Some(key) = path.strip_prefix(&format!("{list}.")) {
            return format!("{}.{key}", RELABEL_LISTS[0]);
        }
    }
    path.to_string()
}

#[test]
fn relabel_lists_share_one_rule_schema() {
    let keys = schema_keys();
    let rule_keys = |list: &str| -> Vec<String> {
        keys.keys()
            .filter_map(|k| k.strip_prefix(&format!("{list}.")).map(String::from))
            .collect()
    };
    let first = rule_keys(RELABEL_LISTS[0]);
    assert!(first.contains(&"modulus".to_string()), "{first:?}");
    for list in &RELABEL_LISTS[1..] {
        assert_eq!(rule_keys(list), first, "{list}");
    }
}

#[test]
fn tidemark_yml_documents_every_key_and_no_other() {
    let schema = schema_keys();
    let documented = yaml_key_paths(&uncomment_all(&reference_text()));
    let missing: Vec<&String> = schema
        .keys()
        .filter(|k| !documented.contains(&documented_as(k)))
        .collect();
    assert!(
        missing.is_empty(),
        "config/tidemark.yml does not document {missing:?}"
    );
    // Keys below a leaf are user data (label names, header names, user names).
    let unknown: Vec<&String> = documented
        .iter()
        .filter(|d| {
            !schema.contains_key(*d)
                && !schema
                    .iter()
                    .any(|(k, is_struct)| !is_struct && d.starts_with(&format!("{k}.")))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "config/tidemark.yml documents keys the schema lacks: {unknown:?}"
    );
}

/// The job config that the shipped file and the embedded default both give a static target.
fn job_with_defaults(name: &str, target: &str) -> ScrapeConfig {
    ScrapeConfig {
        job_name: name.into(),
        scrape_interval: Duration::secs(15),
        scrape_timeout: Duration::secs(10),
        scrape_protocols: ScrapeProtocol::DEFAULT.to_vec(),
        // Resolved from global, as the interval and timeout are.
        scrape_native_histograms: Some(false),
        always_scrape_classic_histograms: Some(false),
        convert_classic_histograms_to_nhcb: Some(false),
        static_configs: vec![StaticConfig {
            targets: vec![target.into()],
            labels: BTreeMap::new(),
        }],
        ..ScrapeConfig::default()
    }
}

#[test]
fn tidemark_yml_active_values_are_the_defaults() {
    let got = Config::load(&config_dir().join("tidemark.yml")).unwrap();
    // The only departures from the schema's defaults: a 15s interval, the two targets, and
    // the data directory the systemd unit uses.
    let want = Config {
        global: GlobalConfig {
            scrape_interval: Duration::secs(15),
            ..GlobalConfig::default()
        },
        scrape_configs: vec![
            job_with_defaults("tidemark", "127.0.0.1:9595"),
            job_with_defaults("node", "127.0.0.1:9100"),
        ],
        storage: StorageConfig {
            path: "/var/lib/tidemark".into(),
            ..StorageConfig::default()
        },
        ..Config::default()
    };
    assert_eq!(got, want);
    assert_eq!(
        got.scrape_configs[0],
        Config::default_embedded().scrape_configs[0],
        "the shipped self-scrape job differs from the embedded default's"
    );
}

fn is_conflict(message: &str) -> bool {
    message.starts_with("at most one of")
        || message.starts_with("exactly one of")
        || message.contains("is not compatible with")
}

/// Removes line `i` and the lines nested under it.
fn remove_block(lines: &mut Vec<String>, i: usize) {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let own = indent(&lines[i]);
    let mut end = i + 1;
    while end < lines.len() {
        let l = lines[end].trim_start();
        if !(l.is_empty() || l.starts_with('#') || indent(&lines[end]) > own) {
            break;
        }
        end += 1;
    }
    lines.drain(i..end);
}

/// Parses text whose only problems may be mutually exclusive settings, dropping the setting
/// each such problem points at until the rest parses. Any other problem fails the test.
fn parse_dropping_alternatives(text: &str) -> Config {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for _ in 0..10 {
        let e = match Config::parse(&lines.join("\n"), "tidemark.yml (uncommented)") {
            Ok(c) => return c,
            Err(e) => e,
        };
        let mut at: Vec<usize> = e
            .problems()
            .iter()
            .map(|p| {
                assert!(is_conflict(&p.message), "not an alternative: {p}");
                p.line - 1
            })
            .collect();
        assert!(!at.is_empty(), "{e}");
        at.sort_unstable();
        at.dedup();
        for i in at.into_iter().rev() {
            remove_block(&mut lines, i);
        }
    }
    panic!("alternatives never resolved");
}

#[test]
fn tidemark_yml_commented_settings_are_valid_and_claimed_defaults_hold() {
    let c = parse_dropping_alternatives(&uncomment_all(&reference_text()));

    assert!(!c.global.external_labels.is_empty());
    assert_eq!(
        c.global,
        GlobalConfig {
            scrape_interval: Duration::secs(15),
            external_labels: c.global.external_labels.clone(),
            ..GlobalConfig::default()
        }
    );

    // The commented inherited values are what the job inherits; the rest are examples, except
    // the defaults written inside them.
    let j = &c.scrape_configs[0];
    assert!(j.fallback_scrape_protocol.is_some() && !j.relabel_configs.is_empty());
    assert_eq!(
        j.file_sd_configs[0].refresh_interval,
        FileSdConfig::default().refresh_interval
    );
    let examples = ScrapeConfig {
        params: j.params.clone(),
        fallback_scrape_protocol: j.fallback_scrape_protocol,
        native_histogram_bucket_limit: j.native_histogram_bucket_limit,
        static_configs: j.static_configs.clone(),
        file_sd_configs: j.file_sd_configs.clone(),
        relabel_configs: j.relabel_configs.clone(),
        metric_relabel_configs: j.metric_relabel_configs.clone(),
        basic_auth: j.basic_auth.clone(),
        authorization: j.authorization.clone(),
        bearer_token: j.bearer_token.clone(),
        bearer_token_file: j.bearer_token_file.clone(),
        tls_config: TlsConfig {
            insecure_skip_verify: false,
            ..j.tls_config.clone()
        },
        ..job_with_defaults("tidemark", "127.0.0.1:9595")
    };
    assert_eq!(*j, examples);

    assert!(c.web.tls.is_some() && !c.web.basic_auth_users.is_empty());
    assert_eq!(
        c.web,
        WebConfig {
            tls: c.web.tls.clone(),
            basic_auth_users: c.web.basic_auth_users.clone(),
            ..WebConfig::default()
        }
    );

    let [rw] = c.remote_write.as_slice() else {
        panic!("want one remote_write example, got {:?}", c.remote_write);
    };
    assert!(!rw.headers.is_empty() && !rw.write_relabel_configs.is_empty());
    assert_eq!(
        *rw,
        RemoteWriteConfig {
            url: rw.url.clone(),
            name: rw.name.clone(),
            headers: rw.headers.clone(),
            write_relabel_configs: rw.write_relabel_configs.clone(),
            basic_auth: rw.basic_auth.clone(),
            authorization: rw.authorization.clone(),
            bearer_token: rw.bearer_token.clone(),
            bearer_token_file: rw.bearer_token_file.clone(),
            tls_config: TlsConfig {
                insecure_skip_verify: false,
                ..rw.tls_config.clone()
            },
            ..RemoteWriteConfig::default()
        }
    );
}

// ---- The examples do what their comments say ------------------------------------------------

/// The targets a job of an example config scrapes, after file discovery and relabeling.
fn targets(file: &str, job_name: &str) -> Vec<target::Target> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = Config::load(&config_dir().join("examples").join(file)).unwrap();
    let sc = cfg
        .scrape_configs
        .iter()
        .find(|s| s.job_name == job_name)
        .unwrap();
    let groups: Vec<(Vec<String>, BTreeMap<String, String>)> = sc
        .file_sd_configs
        .iter()
        .flat_map(|sd| file_sd::load(&sd.files).unwrap())
        .map(|g| (g.targets, g.labels))
        .collect();
    let spec = job::build(sc, &groups).unwrap();
    spec.discovered
        .iter()
        .filter_map(|d| target::populate(d, &spec.defaults).unwrap())
        .collect()
}

fn label<'a>(t: &'a target::Target, name: &str) -> &'a str {
    t.labels.get(name).unwrap_or("")
}

#[test]
fn node_exporter_example_names_instances_by_short_host_name() {
    let ts = targets("node_exporter.yml", "node");
    let got: Vec<(&str, &str, &str)> = ts
        .iter()
        .map(|t| (label(t, "instance"), label(t, "role"), t.url.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("web-1", "web", "http://web-1.example.internal:9100/metrics"),
            ("web-2", "web", "http://web-2.example.internal:9100/metrics"),
            ("db-1", "db", "http://db-1.example.internal:9100/metrics"),
            ("10.0.3.17", "db", "http://10.0.3.17:9100/metrics"),
        ]
    );
}

#[test]
fn file_sd_example_reads_both_target_files() {
    let nodes = targets("file_sd.yml", "node");
    let got: Vec<(&str, &str)> = nodes
        .iter()
        .map(|t| (label(t, "instance"), label(t, "role")))
        .collect();
    assert_eq!(got, [("web-1", "web"), ("web-2", "web"), ("db-1", "db")]);

    let apps = targets("file_sd.yml", "apps");
    let got: Vec<(&str, &str, &str, &str)> = apps
        .iter()
        .map(|t| {
            (
                label(t, "instance"),
                label(t, "service"),
                label(t, "source"),
                t.url.as_str(),
            )
        })
        .collect();
    // The group labelled scrape: "false" is dropped; the batch group sets its own path.
    assert_eq!(
        got,
        [
            (
                "api-1.example.internal:8080",
                "api",
                "apps",
                "http://api-1.example.internal:8080/metrics"
            ),
            (
                "api-2.example.internal:8080",
                "api",
                "apps",
                "http://api-2.example.internal:8080/metrics"
            ),
            (
                "batch.example.internal:9102",
                "batch",
                "apps",
                "http://batch.example.internal:9102/internal/metrics"
            ),
        ]
    );
}

#[test]
fn remote_write_examples_target_the_documented_endpoints() {
    let load = |f: &str| Config::load(&config_dir().join("examples").join(f)).unwrap();
    let mimir = load("remote_write_mimir.yml");
    let [rw] = mimir.remote_write.as_slice() else {
        panic!("{:?}", mimir.remote_write);
    };
    assert!(rw.url.ends_with("/api/v1/push"), "{}", rw.url);
    assert!(rw.headers.contains_key("X-Scope-OrgID"));
    let password = rw
        .basic_auth
        .as_ref()
        .and_then(|b| b.password_file.as_ref())
        .unwrap();
    assert!(password.is_file(), "{}", password.display());

    let vm = load("remote_write_victoriametrics.yml");
    let urls: Vec<&str> = vm.remote_write.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(urls.len(), 2);
    assert!(urls[0].ends_with(":8480/insert/0/prometheus/api/v1/write"));
    assert!(urls[1].ends_with(":8428/api/v1/write"));
}
