//! Validation: every rule a config as written must meet, each broken one reported with its
//! position and key path, all of them at once, in the order checked.
//!
//! Read-only: it looks at the config as deserialized (before [`resolve`]) and changes
//! nothing. Where a rule is about a value a job inherits (a timeout longer than the interval
//! in force), it computes that value with [`resolve`]'s own functions.
//!
//! Never ignore a key silently: a Prometheus key tidemark cannot honour is refused here.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use super::error::{Problem, Reporter};
use super::file_sd;
use super::resolve;
use super::schema::{
    Authorization, BasicAuth, ClientAuthType, Config, GlobalConfig, QueryConfig, RemoteWriteConfig,
    ScrapeConfig, ScrapeProtocol, StorageConfig, TlsConfig, TlsVersion, WalFsync, WebConfig,
};
use super::units::{Secret, url_without_userinfo};
use super::yaml::{KeyPath, Node};
use crate::model::is_valid_label_name;
use crate::relabel::{RelabelConfig, RelabelError, Rule};

/// Every problem of `config` (as written in `file`, whose document tree is `root`), in the
/// order checked; empty when it is valid.
pub(super) fn validate(config: &Config, file: &str, root: Option<&Node>) -> Vec<Problem> {
    let mut check = Check(Reporter::new(file, root));
    check.config(config);
    check.0.into_problems()
}

/// Checks a log level: a level name, or comma-separated `level` / `target=level` directives.
/// Stricter than a tracing filter, where a misspelt level reads as a target name and
/// silently logs nothing.
pub fn check_log_level(s: &str) -> Result<(), LogLevelError> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let ok = !s.is_empty()
        && s.split(',').all(|d| {
            let level = d.rsplit_once('=').map_or(
                d,
                |(target, l)| {
                    if target.trim().is_empty() { "" } else { l }
                },
            );
            LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        });
    if ok {
        Ok(())
    } else {
        Err(LogLevelError(s.to_string()))
    }
}

/// A log level [`check_log_level`] refuses, as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid log level {0:?} (want error, warn, info, debug or trace, or target=level directives)"
)]
pub struct LogLevelError(pub String);

/// Headers remote write sets itself, which Prometheus refuses to let a config override.
const RESERVED_HEADERS: [&str; 12] = [
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "x-prometheus-remote-write-version",
];

/// The validator: the checks, reporting into a [`Reporter`].
struct Check<'a>(Reporter<'a>);

impl Check<'_> {
    fn report(&mut self, path: &KeyPath, msg: impl fmt::Display) {
        self.0.report(path, msg);
    }

    fn report_key(&mut self, path: &KeyPath, msg: impl fmt::Display) {
        self.0.report_key(path, msg);
    }

    fn config(&mut self, c: &Config) {
        let root = KeyPath::default();
        // What jobs inherit: `global` with its defaults.
        let global = resolve::global(c.global.clone());
        self.global(&root.key("global"), &c.global, &global);
        let mut jobs: HashMap<String, usize> = HashMap::new();
        for (i, sc) in c.scrape_configs.iter().enumerate() {
            let at = root.key("scrape_configs").index(i);
            if !sc.job_name.is_empty() {
                if let Some(first) = jobs.get(&sc.job_name) {
                    let first_line = self
                        .0
                        .line_of(&root.key("scrape_configs").index(*first).key("job_name"));
                    self.report(
                        &at.key("job_name"),
                        format!(
                            "duplicate job_name {:?} (first defined at line {first_line})",
                            sc.job_name
                        ),
                    );
                } else {
                    jobs.insert(sc.job_name.clone(), i);
                }
            }
            self.scrape(&at, sc, &global);
        }
        self.storage(&root.key("storage"), &c.storage);
        self.web(&root.key("web"), &c.web);
        self.query(&root.key("query"), &c.query);
        if let Err(why) = check_log_level(&c.log.level) {
            self.report(&root.key("log").key("level"), why);
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, rw) in c.remote_write.iter().enumerate() {
            let at = root.key("remote_write").index(i);
            if !rw.name.is_empty() {
                if let Some(first) = names.get(&rw.name) {
                    let first_line = self
                        .0
                        .line_of(&root.key("remote_write").index(*first).key("name"));
                    self.report(
                        &at.key("name"),
                        format!(
                            "duplicate remote_write name {:?} (first defined at line {first_line})",
                            rw.name
                        ),
                    );
                } else {
                    names.insert(rw.name.clone(), i);
                }
            }
            self.remote_write(&at, rw);
        }
    }

    fn labels(&mut self, at: &KeyPath, labels: &BTreeMap<String, String>) {
        for name in labels.keys() {
            if !is_valid_label_name(name) {
                self.report_key(&at.key(name), format!("{name:?} is not a valid label name"));
            }
        }
    }

    fn protocols(&mut self, at: &KeyPath, list: &[ScrapeProtocol]) {
        for (i, p) in list.iter().enumerate() {
            if list[..i].contains(p) {
                self.report(&at.index(i), format!("duplicate protocol {}", p.name()));
            }
        }
    }

    /// `g` as written; `resolved` with its defaults.
    fn global(&mut self, at: &KeyPath, g: &GlobalConfig, resolved: &GlobalConfig) {
        self.labels(&at.key("external_labels"), &g.external_labels);
        if g.scrape_timeout > resolved.scrape_interval {
            self.report(
                &at.key("scrape_timeout"),
                format!(
                    "scrape_timeout {} is greater than scrape_interval {}",
                    g.scrape_timeout, resolved.scrape_interval
                ),
            );
        }
        self.protocols(&at.key("scrape_protocols"), &resolved.scrape_protocols);
    }

    /// One job as written; `g` is the resolved `global` it inherits from.
    fn scrape(&mut self, at: &KeyPath, sc: &ScrapeConfig, g: &GlobalConfig) {
        if sc.job_name.is_empty() {
            self.report(&at.key("job_name"), "job_name is empty or missing");
        }
        let interval = resolve::inherit(sc.scrape_interval, g.scrape_interval);
        if sc.scrape_timeout > interval {
            self.report(
                &at.key("scrape_timeout"),
                format!(
                    "scrape_timeout {} is greater than scrape_interval {} for job {:?}",
                    sc.scrape_timeout, interval, sc.job_name
                ),
            );
        }
        if !sc.metrics_path.starts_with('/') {
            self.report(
                &at.key("metrics_path"),
                format!("metrics_path {:?} must start with /", sc.metrics_path),
            );
        }
        // An empty list inherits the global one, checked with `global`.
        self.protocols(&at.key("scrape_protocols"), &sc.scrape_protocols);
        let factor = sc.native_histogram_min_bucket_factor;
        if !factor.is_finite() {
            self.report(
                &at.key("native_histogram_min_bucket_factor"),
                format!("native_histogram_min_bucket_factor {factor} must be a finite number"),
            );
        }
        self.http(
            at,
            &sc.basic_auth,
            &sc.authorization,
            &sc.bearer_token,
            &sc.bearer_token_file,
            &sc.tls_config,
        );
        for (j, st) in sc.static_configs.iter().enumerate() {
            let st_at = at.key("static_configs").index(j);
            for (k, t) in st.targets.iter().enumerate() {
                if t.trim().is_empty() {
                    self.report(&st_at.key("targets").index(k), "empty target");
                } else if sc.relabel_configs.is_empty() && t.contains('/') {
                    // Prometheus's check: a URL here is a common mistake; with relabeling,
                    // the address may legitimately be rewritten.
                    self.report(
                        &st_at.key("targets").index(k),
                        format!(
                            "{t:?} is not a valid host:port (put the scheme and path in `scheme` and `metrics_path`)"
                        ),
                    );
                }
            }
            self.labels(&st_at.key("labels"), &st.labels);
        }
        for (j, sd) in sc.file_sd_configs.iter().enumerate() {
            let sd_at = at.key("file_sd_configs").index(j);
            if sd.files.is_empty() {
                self.report(
                    &sd_at.key("files"),
                    "file_sd_configs needs at least one file name",
                );
            }
            for (k, f) in sd.files.iter().enumerate() {
                if let Err(why) = file_sd::check_pattern(f) {
                    self.report(&sd_at.key("files").index(k), why);
                }
            }
            if sd.refresh_interval.0 <= 0 {
                self.report(
                    &sd_at.key("refresh_interval"),
                    "refresh_interval must be positive",
                );
            }
        }
        self.relabel(&at.key("relabel_configs"), &sc.relabel_configs);
        self.relabel(
            &at.key("metric_relabel_configs"),
            &sc.metric_relabel_configs,
        );
    }

    fn relabel(&mut self, at: &KeyPath, rules: &[RelabelConfig]) {
        for (i, r) in rules.iter().enumerate() {
            if let Err(e) = Rule::new(r.clone()) {
                let key = match &e {
                    RelabelError::Regex { .. } => "regex",
                    RelabelError::MissingTarget(_) | RelabelError::InvalidTarget(..) => {
                        "target_label"
                    }
                    RelabelError::ZeroModulus => "modulus",
                    RelabelError::InvalidLabelMapReplacement(_) => "replacement",
                    RelabelError::OnlyRegex(_) | RelabelError::OnlySourceAndTarget(_) => "action",
                };
                let msg = match &e {
                    // The regex crate draws the error under the pattern on several lines; a
                    // problem is one line, so keep the verdict only.
                    RelabelError::Regex { regex, reason } => {
                        let why = reason.lines().rev().find(|l| !l.trim().is_empty());
                        let why = why.unwrap_or(reason).trim();
                        format!(
                            "invalid regex {regex:?}: {}",
                            why.strip_prefix("error: ").unwrap_or(why)
                        )
                    }
                    _ => e.to_string(),
                };
                self.report(&at.index(i).key(key), msg);
            }
        }
    }

    /// Prometheus's HTTP client rules (the legacy bearer token is folded into
    /// `authorization` by [`resolve`] once they hold).
    fn http(
        &mut self,
        at: &KeyPath,
        basic_auth: &Option<BasicAuth>,
        authorization: &Option<Authorization>,
        bearer_token: &Option<Secret>,
        bearer_token_file: &Option<PathBuf>,
        tls: &TlsConfig,
    ) {
        let has_bearer = bearer_token.is_some() || bearer_token_file.is_some();
        if bearer_token.is_some() && bearer_token_file.is_some() {
            self.report(
                &at.key("bearer_token_file"),
                "at most one of bearer_token & bearer_token_file must be configured",
            );
        }
        if let Some(ba) = basic_auth {
            let b = at.key("basic_auth");
            if has_bearer {
                self.report(
                    &b,
                    "at most one of basic_auth, bearer_token & bearer_token_file must be configured",
                );
            }
            if !ba.username.is_empty() && ba.username_file.is_some() {
                self.report(
                    &b.key("username_file"),
                    "at most one of basic_auth username & username_file must be configured",
                );
            }
            if ba.password.is_some() && ba.password_file.is_some() {
                self.report(
                    &b.key("password_file"),
                    "at most one of basic_auth password & password_file must be configured",
                );
            }
        }
        if let Some(a) = authorization {
            let au = at.key("authorization");
            if has_bearer {
                self.report(
                    &au,
                    "authorization is not compatible with bearer_token & bearer_token_file",
                );
            }
            if a.credentials.is_some() && a.credentials_file.is_some() {
                self.report(
                    &au.key("credentials_file"),
                    "at most one of authorization credentials & credentials_file must be configured",
                );
            }
            if resolve::auth_type(&a.kind).eq_ignore_ascii_case("basic") {
                self.report(
                    &au.key("type"),
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead",
                );
            }
            if basic_auth.is_some() {
                self.report(
                    &au,
                    "at most one of basic_auth & authorization must be configured",
                );
            }
        }
        let t = at.key("tls_config");
        for (inline, file, key) in [
            (tls.ca.is_some(), tls.ca_file.is_some(), "ca"),
            (tls.cert.is_some(), tls.cert_file.is_some(), "cert"),
            (tls.key.is_some(), tls.key_file.is_some(), "key"),
        ] {
            if inline && file {
                self.report(
                    &t.key(&format!("{key}_file")),
                    format!("at most one of {key} and {key}_file must be configured"),
                );
            }
        }
        let has_cert = tls.cert.is_some() || tls.cert_file.is_some();
        let has_key = tls.key.is_some() || tls.key_file.is_some();
        if has_cert && !has_key {
            self.report(
                &t,
                "exactly one of key or key_file must be configured when a client certificate is configured",
            );
        } else if has_key && !has_cert {
            self.report(
                &t,
                "exactly one of cert or cert_file must be configured when a client key is configured",
            );
        }
        if let (Some(lo), Some(hi)) = (tls.min_version, tls.max_version)
            && lo > hi
        {
            self.report(
                &t.key("max_version"),
                "max_version is lower than min_version",
            );
        }
    }

    fn remote_write(&mut self, at: &KeyPath, rw: &RemoteWriteConfig) {
        if rw.url.is_empty() {
            self.report(&at.key("url"), "url for remote_write is empty or missing");
        } else if let Err(why) = check_url(&rw.url) {
            self.report(&at.key("url"), why);
        }
        if rw.remote_timeout.0 <= 0 {
            self.report(&at.key("remote_timeout"), "remote_timeout must be positive");
        }
        for name in rw.headers.keys() {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                self.report_key(
                    &at.key("headers").key(name),
                    format!("{name} is a reserved header and cannot be set"),
                );
            } else if name.is_empty()
                || !name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
            {
                self.report_key(
                    &at.key("headers").key(name),
                    format!("{name:?} is not a valid HTTP header name"),
                );
            }
        }
        if rw.protobuf_message != "prometheus.WriteRequest" {
            self.report(
                &at.key("protobuf_message"),
                format!(
                    "protobuf_message {:?} is not supported; tidemark speaks remote write 1.0 (prometheus.WriteRequest)",
                    rw.protobuf_message
                ),
            );
        }
        let q = &rw.queue_config;
        let qa = at.key("queue_config");
        if q.capacity == 0 {
            self.report(&qa.key("capacity"), "capacity must be positive");
        }
        if q.min_shards == 0 {
            self.report(&qa.key("min_shards"), "min_shards must be at least 1");
        }
        if q.max_shards < q.min_shards {
            self.report(&qa.key("max_shards"), "max_shards is lower than min_shards");
        }
        if q.max_samples_per_send == 0 {
            self.report(
                &qa.key("max_samples_per_send"),
                "max_samples_per_send must be positive",
            );
        }
        if q.batch_send_deadline.0 <= 0 {
            self.report(
                &qa.key("batch_send_deadline"),
                "batch_send_deadline must be positive",
            );
        }
        if q.min_backoff > q.max_backoff {
            self.report(
                &qa.key("max_backoff"),
                "max_backoff is lower than min_backoff",
            );
        }
        self.relabel(&at.key("write_relabel_configs"), &rw.write_relabel_configs);
        self.http(
            at,
            &rw.basic_auth,
            &rw.authorization,
            &rw.bearer_token,
            &rw.bearer_token_file,
            &rw.tls_config,
        );
    }

    fn storage(&mut self, at: &KeyPath, s: &StorageConfig) {
        if s.path.as_os_str().is_empty() {
            self.report(&at.key("path"), "path is empty");
        }
        if let WalFsync::Interval(d) = s.wal_fsync
            && d.0 <= 0
        {
            self.report(
                &at.key("wal_fsync"),
                "wal_fsync interval must be positive (use \"always\" to sync every commit)",
            );
        }
        if s.block_duration.0 < 60_000 {
            self.report(
                &at.key("block_duration"),
                "block_duration must be at least 1m",
            );
        }
    }

    fn web(&mut self, at: &KeyPath, w: &WebConfig) {
        if let Err(why) = check_listen_address(&w.listen_address) {
            self.report(&at.key("listen_address"), why);
        }
        if let Some(tls) = &w.tls {
            let t = at.key("tls");
            if tls.cert_file.as_os_str().is_empty() {
                self.report(&t.key("cert_file"), "tls needs cert_file");
            }
            if tls.key_file.as_os_str().is_empty() {
                self.report(&t.key("key_file"), "tls needs key_file");
            }
            if tls.min_version < TlsVersion::TLS12 {
                self.report(
                    &t.key("min_version"),
                    "TLS 1.0 and 1.1 are not served (want TLS12 or TLS13)",
                );
            }
            let verifies = tls.client_auth_type != ClientAuthType::NoClientCert;
            match (&tls.client_ca_file, verifies) {
                (Some(_), false) => self.report(
                    &t.key("client_ca_file"),
                    "client_ca_file is set but client_auth_type is NoClientCert (want RequireAndVerifyClientCert or VerifyClientCertIfGiven)",
                ),
                (None, true) => self.report(
                    &t.key("client_auth_type"),
                    format!(
                        "client_auth_type {:?} needs client_ca_file to verify client certificates",
                        tls.client_auth_type
                    ),
                ),
                _ => {}
            }
        }
        if let Err(why) = w.cors_origin_regex() {
            self.report(&at.key("cors_origin"), why);
        }
        if w.read_header_timeout.0 <= 0 {
            self.report(
                &at.key("read_header_timeout"),
                "read_header_timeout must be positive",
            );
        }
        for (user, hash) in &w.basic_auth_users {
            let u = at.key("basic_auth_users").key(user);
            if user.is_empty() || user.contains(':') {
                self.report_key(&u, format!("{user:?} is not a valid user name"));
            }
            if !is_bcrypt_hash(hash.expose()) {
                self.report(
                    &u,
                    "not a bcrypt hash (want $2a$, $2b$ or $2y$, a cost, and 53 characters)",
                );
            }
        }
    }

    fn query(&mut self, at: &KeyPath, q: &QueryConfig) {
        for (key, ok) in [
            ("timeout", q.timeout.0 > 0),
            ("max_samples", q.max_samples > 0),
            ("lookback_delta", q.lookback_delta.0 > 0),
            ("max_concurrency", q.max_concurrency > 0),
        ] {
            if !ok {
                self.report(&at.key(key), format!("{key} must be positive"));
            }
        }
    }
}

/// A remote-write URL that cannot be posted to; each holds the URL without its credentials
/// (the message is logged and answered to /-/reload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum UrlError {
    /// No `scheme://`.
    #[error("{0:?} is not a URL (want http://host:port/path)")]
    NotAUrl(String),
    /// A scheme other than http and https.
    #[error("{0:?}: scheme must be http or https")]
    Scheme(String),
    /// Nothing, or only a port, between `://` and the path.
    #[error("{0:?} has no host")]
    NoHost(String),
}

/// Checks an http(s) URL with a host; what remote write can post to.
fn check_url(url: &str) -> Result<(), UrlError> {
    let shown = url_without_userinfo(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(UrlError::NotAUrl(shown));
    };
    if scheme != "http" && scheme != "https" {
        return Err(UrlError::Scheme(shown));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') || url.contains(char::is_whitespace) {
        return Err(UrlError::NoHost(shown));
    }
    Ok(())
}

/// A listen address that is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid listen address (want host:port)")]
struct ListenAddressError(String);

/// Checks a `host:port` listen address; the host may be empty (all interfaces) or bracketed
/// IPv6.
fn check_listen_address(addr: &str) -> Result<(), ListenAddressError> {
    let bad = || ListenAddressError(addr.to_string());
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if port.parse::<u16>().is_err() {
        return Err(bad());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(bad());
    }
    Ok(())
}

/// A bcrypt hash as `htpasswd -B` writes it: `$2y$10$` then 53 characters of bcrypt base64.
fn is_bcrypt_hash(h: &str) -> bool {
    let b = h.as_bytes();
    b.len() == 60
        && matches!(&b[..4], b"$2a$" | b"$2b$" | b"$2y$")
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_write_urls_are_checked_and_shown_without_credentials() {
        assert_eq!(check_url("https://u:pw@mimir:9009/api/v1/push"), Ok(()));
        assert_eq!(
            check_url("mimir:9009/push"),
            Err(UrlError::NotAUrl("mimir:9009/push".into()))
        );
        assert_eq!(
            check_url("ftp://u:pw@h/x"),
            Err(UrlError::Scheme("ftp://h/x".into()))
        );
        assert_eq!(
            check_url("http://:9009/x"),
            Err(UrlError::NoHost("http://:9009/x".into()))
        );
        let e = check_url("http://u:secret-pw@/x").unwrap_err();
        assert!(matches!(e, UrlError::NoHost(_)), "{e:?}");
        assert!(!e.to_string().contains("secret-pw"), "{e}");
        assert_eq!(
            check_url("http://h x/").map_err(|e| e.to_string()),
            Err("\"http://h x/\" has no host".into())
        );
    }

    #[test]
    fn listen_addresses_are_host_and_port() {
        for ok in [":9595", "0.0.0.0:0", "[::1]:9595", "localhost:65535"] {
            assert_eq!(check_listen_address(ok), Ok(()), "{ok}");
        }
        for bad in ["9595", "::1:9595", "h:65536", "h:", "h:-1", ""] {
            assert_eq!(
                check_listen_address(bad),
                Err(ListenAddressError(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            ListenAddressError("h".into()).to_string(),
            "\"h\" is not a valid listen address (want host:port)"
        );
    }

    /// Validation reads the config as written (the job's interval unset), and compares the
    /// timeout with the interval the job inherits.
    #[test]
    fn validation_sees_the_config_as_written() {
        let text = "global: {scrape_interval: 20s}\nscrape_configs:\n  - job_name: a\n    \
                    scrape_timeout: 30s\n    bearer_token: t\n";
        let root = crate::config::yaml::parse(text).unwrap();
        let written: Config = crate::config::yaml::from_node(root.as_ref().unwrap()).unwrap();
        let problems = validate(&written, "v.yml", root.as_ref());
        assert_eq!(
            problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "v.yml:4:21: scrape_configs[0].scrape_timeout: scrape_timeout 30s is greater than \
              scrape_interval 20s for job \"a\""
            ]
        );
    }
}
