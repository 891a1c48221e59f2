//! The configuration file: a compatible subset of prometheus.yml (`global`, `scrape_configs`,
//! `remote_write`) plus tidemark's own `storage`, `web` and `query` sections.
//!
//! This module owns the YAML schema, Prometheus's defaults, validation, and errors that name
//! `file:line:column` and the key path (`scrape_configs[1].scrape_interval`). It also reads
//! file_sd target files (parsing only; watching them is the scrape manager's job). It must
//! never act on a config (open storage, start scrapes, bind sockets), and never ignore a key
//! silently: a key it does not know is an error, and so is a Prometheus key it cannot honour.
//!
//! Decisions:
//! - Defaults are Prometheus's (`scrape_interval` 1m, `scrape_timeout` 10s, ...). The agent's
//!   built-in config, [`Config::default_embedded`], scrapes itself every 15s.
//! - As in Prometheus, a zero interval, timeout or limit in a job means "inherit from
//!   `global`", and a zero global timeout means "10s, or the interval if shorter".
//! - Relative file names (password files, TLS files, file_sd patterns) are resolved against
//!   the directory of the config file by [`Config::load`], as Prometheus does. `storage.path`
//!   is not: like a `--data-dir` flag it is relative to the working directory.
//! - `bearer_token`/`bearer_token_file` are folded into `authorization` after validation, as
//!   Prometheus does, so consumers only look at `authorization`.

mod render;
mod yaml;

pub mod file_sd;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{format_duration, is_valid_label_name, parse_duration};
use crate::relabel::{RelabelConfig, RelabelError, Rule};
use yaml::{KeyPath, Node};

/// A duration in milliseconds, written in Prometheus's syntax (`15s`, `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub i64);

impl Duration {
    /// `n` seconds.
    pub const fn secs(n: i64) -> Duration {
        Duration(n * 1000)
    }

    /// Milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// As a `std::time::Duration` (negative values cannot be written, so never occur).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Duration).map_err(de::Error::custom)
    }
}

/// A size in bytes, written as Prometheus writes them (`512MB`, `1GiB`; both base 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, n) in SIZE_UNITS.iter().rev() {
            if self.0 != 0 && self.0.is_multiple_of(*n) {
                return write!(f, "{}{unit}", self.0 / n);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_size(&s).map(ByteSize).map_err(de::Error::custom)
    }
}

const SIZE_UNITS: [(&str, u64); 7] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("PiB", 1 << 50),
    ("EiB", 1 << 60),
];

/// Parses a size as Prometheus's `units.Base2Bytes` does: a sequence of numbers (fractions
/// allowed) each followed by a unit, `KiB` and `KB` both meaning 1024, one unit family per
/// value; `0` alone is zero.
pub fn parse_size(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    parse_size_in(s, true)
        .or_else(|_| parse_size_in(s, false))
        .map_err(|why| format!("invalid size {s:?}: {why} (want e.g. 512MB, 1GiB, 0)"))
}

/// One attempt of [`parse_size`] with the `KiB` (`binary`) or the `KB` unit names.
fn parse_size_in(s: &str, binary: bool) -> Result<u64, String> {
    let unit_of = |u: &str| -> Option<u64> {
        SIZE_UNITS.iter().find_map(|(name, n)| {
            let legacy = name.replace("iB", "B");
            let matches = if binary { *name == u } else { legacy == u };
            matches.then_some(*n)
        })
    };
    if s.is_empty() {
        return Err("empty".into());
    }
    let is_num = |c: &u8| c.is_ascii_digit() || *c == b'.';
    let mut rest = s;
    let mut total = 0u64;
    while !rest.is_empty() {
        let num_len = rest.bytes().take_while(is_num).count();
        let unit_len = rest[num_len..].bytes().take_while(|c| !is_num(c)).count();
        let (num, unit) = (&rest[..num_len], &rest[num_len..num_len + unit_len]);
        rest = &rest[num_len + unit_len..];
        let n = match unit_of(unit) {
            Some(n) => n,
            None if unit.is_empty() => return Err("missing unit".into()),
            None => return Err(format!("unknown unit {unit:?}")),
        };
        let value = match scaled(num, n) {
            Some(v) => v,
            None if num.trim_matches('.').is_empty() => return Err("expected a number".into()),
            None => return Err("too large".into()),
        };
        total = total.checked_add(value).ok_or("too large")?;
    }
    Ok(total)
}

/// `num` (digits with an optional fraction) times `unit`: exact for whole numbers, the
/// fraction rounded down to a byte.
fn scaled(num: &str, unit: u64) -> Option<u64> {
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().ok()?
    };
    whole
        .checked_mul(unit)?
        .checked_add((frac * unit as f64) as u64)
}

/// A credential: compared and moved like a string, never printed. It serializes as
/// `<secret>`, as Prometheus's does, so a configuration written back (for
/// `/api/v1/status/config`) cannot show it whatever the format.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The credential itself; call only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_SHOWN)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(SECRET_SHOWN)
    }
}

/// What is shown in place of a secret.
pub const SECRET_SHOWN: &str = "<secret>";

/// `url` as `/api/v1/status/config` shows it: a password replaced by `xxxxx`, as Prometheus
/// writes its URLs back (the user name stays, as in Prometheus).
pub fn url_password_hidden(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.cannot_be_a_base() => {
            if u.password().is_none() {
                url.to_string()
            } else if u.set_password(Some("xxxxx")).is_ok() {
                u.to_string()
            } else {
                url_without_userinfo(url)
            }
        }
        // Not a URL with a host (`user:pw@host/x` reads as scheme `user`).
        _ => url_without_userinfo(url),
    }
}

/// `url` without its `user:password@` part, for logs, error messages and metric labels.
pub fn url_without_userinfo(url: &str) -> String {
    if let Ok(mut u) = reqwest::Url::parse(url)
        && (u.password().is_some() || !u.username().is_empty())
        && u.set_password(None).is_ok()
        && u.set_username("").is_ok()
    {
        return u.to_string();
    }
    // Not a URL the client could use (`user:pw@host/x` has no scheme): cut by hand, the
    // authority ending at the first `/`, `?` or `#` and the user part at its last `@`.
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (&url[..scheme.len() + 3], rest),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn serialize_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url_password_hidden(url))
}

/// Header values may carry tokens (`X-API-Key`): their names are shown, not their values.
fn serialize_header_values<S: Serializer>(
    headers: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(headers.keys().map(|k| (k, SECRET_SHOWN)))
}

/// The scrape URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP (the default).
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

/// An exposition format a scrape may ask for, in Prometheus's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum ScrapeProtocol {
    /// Protobuf exposition; accepted in the schema, refused by validation (no parser).
    PrometheusProto,
    /// OpenMetrics 0.0.1.
    #[serde(rename = "OpenMetricsText0.0.1")]
    OpenMetricsText0_0_1,
    /// OpenMetrics 1.0.0.
    #[serde(rename = "OpenMetricsText1.0.0")]
    OpenMetricsText1_0_0,
    /// Prometheus text 0.0.4.
    #[serde(rename = "PrometheusText0.0.4")]
    PrometheusText0_0_4,
    /// Prometheus text 1.0.0 (quoted UTF-8 names).
    #[serde(rename = "PrometheusText1.0.0")]
    PrometheusText1_0_0,
}

impl ScrapeProtocol {
    /// Prometheus 3's default order when native histograms are off.
    pub const DEFAULT: [ScrapeProtocol; 4] = [
        ScrapeProtocol::OpenMetricsText1_0_0,
        ScrapeProtocol::OpenMetricsText0_0_1,
        ScrapeProtocol::PrometheusText1_0_0,
        ScrapeProtocol::PrometheusText0_0_4,
    ];

    /// The name used in YAML.
    pub fn name(self) -> &'static str {
        match self {
            ScrapeProtocol::PrometheusProto => "PrometheusProto",
            ScrapeProtocol::OpenMetricsText0_0_1 => "OpenMetricsText0.0.1",
            ScrapeProtocol::OpenMetricsText1_0_0 => "OpenMetricsText1.0.0",
            ScrapeProtocol::PrometheusText0_0_4 => "PrometheusText0.0.4",
            ScrapeProtocol::PrometheusText1_0_0 => "PrometheusText1.0.0",
        }
    }
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum TlsVersion {
    /// TLS 1.0.
    TLS10,
    /// TLS 1.1.
    TLS11,
    /// TLS 1.2.
    TLS12,
    /// TLS 1.3.
    TLS13,
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Defaults for every job, and external labels.
    pub global: GlobalConfig,
    /// One entry per job.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Where and how samples are stored.
    pub storage: StorageConfig,
    /// The HTTP server.
    pub web: WebConfig,
    /// Query limits.
    pub query: QueryConfig,
    /// Logging; the `--log-level` and `--log-format` flags override it.
    pub log: LogConfig,
    /// Remote-write destinations (Prometheus's schema).
    pub remote_write: Vec<RemoteWriteConfig>,
}

/// Prometheus's `global` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default = "GlobalConfig::unset", deny_unknown_fields)]
pub struct GlobalConfig {
    /// Default scrape interval (1m).
    pub scrape_interval: Duration,
    /// Default scrape timeout (10s, or the interval if shorter).
    pub scrape_timeout: Duration,
    /// Accepted for compatibility; tidemark evaluates no rules (1m).
    pub evaluation_interval: Duration,
    /// Labels added to series sent by remote write.
    pub external_labels: BTreeMap<String, String>,
    /// Default formats to negotiate, most preferred first.
    pub scrape_protocols: Vec<ScrapeProtocol>,
    /// Default body size limit; 0 is none.
    pub body_size_limit: ByteSize,
    /// Default sample limit per scrape; 0 is none.
    pub sample_limit: u64,
    /// Default limit of targets per job after relabeling; 0 is none.
    pub target_limit: u64,
    /// Default limit of labels per series; 0 is none.
    pub label_limit: u64,
    /// Default limit of label name length; 0 is none.
    pub label_name_length_limit: u64,
    /// Default limit of label value length; 0 is none.
    pub label_value_length_limit: u64,
    /// Default number of dropped targets kept for display; 0 is all.
    pub keep_dropped_targets: u64,
}

impl GlobalConfig {
    /// Every field unset, before defaults are resolved: what serde starts from.
    fn unset() -> GlobalConfig {
        GlobalConfig {
            scrape_interval: Duration(0),
            scrape_timeout: Duration(0),
            evaluation_interval: Duration(0),
            external_labels: BTreeMap::new(),
            scrape_protocols: Vec::new(),
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            target_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            keep_dropped_targets: 0,
        }
    }
}

impl Default for GlobalConfig {
    /// Prometheus's defaults, resolved.
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration::secs(60),
            scrape_timeout: Duration::secs(10),
            evaluation_interval: Duration::secs(60),
            scrape_protocols: ScrapeProtocol::DEFAULT.to_vec(),
            ..GlobalConfig::unset()
        }
    }
}

/// One job of Prometheus's `scrape_configs`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The job name: the `job` label and the key of the job; unique.
    pub job_name: String,
    /// Keep the target's labels on conflict with the job's (false).
    pub honor_labels: bool,
    /// Keep timestamps exposed by the target (true).
    pub honor_timestamps: bool,
    /// URL query parameters.
    pub params: BTreeMap<String, Vec<String>>,
    /// Interval; 0 in the file means the global one.
    pub scrape_interval: Duration,
    /// Timeout; 0 in the file means the global one, capped at the interval.
    pub scrape_timeout: Duration,
    /// Formats to negotiate; empty in the file means the global list.
    pub scrape_protocols: Vec<ScrapeProtocol>,
    /// Format assumed when the target sends no usable Content-Type.
    pub fallback_scrape_protocol: Option<ScrapeProtocol>,
    /// HTTP path (`/metrics`).
    pub metrics_path: String,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Ask for gzip (true).
    pub enable_compression: bool,
    /// Largest decompressed body; 0 means the global limit.
    pub body_size_limit: ByteSize,
    /// Most samples per scrape after metric relabeling; 0 means the global limit.
    pub sample_limit: u64,
    /// Most targets after relabeling; 0 means the global limit.
    pub target_limit: u64,
    /// Most labels per series; 0 means the global limit.
    pub label_limit: u64,
    /// Longest label name; 0 means the global limit.
    pub label_name_length_limit: u64,
    /// Longest label value; 0 means the global limit.
    pub label_value_length_limit: u64,
    /// Dropped targets kept for display; 0 means the global value.
    pub keep_dropped_targets: u64,
    /// Targets listed in the file.
    pub static_configs: Vec<StaticConfig>,
    /// Targets read from files.
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Rules applied to each target's labels.
    pub relabel_configs: Vec<RelabelConfig>,
    /// Rules applied to each scraped series.
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// The Authorization header (also holds a folded `bearer_token`).
    pub authorization: Option<Authorization>,
    /// Legacy bearer token; moved into `authorization` by validation.
    pub bearer_token: Option<Secret>,
    /// Legacy bearer token file; moved into `authorization` by validation.
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings for https targets.
    pub tls_config: TlsConfig,
    /// Follow HTTP redirects (true).
    pub follow_redirects: bool,
    /// Allow HTTP/2 (true).
    pub enable_http2: bool,
}

impl Default for ScrapeConfig {
    /// Prometheus's per-job defaults; inherited fields are left unset (0 / empty).
    fn default() -> Self {
        ScrapeConfig {
            job_name: String::new(),
            honor_labels: false,
            honor_timestamps: true,
            params: BTreeMap::new(),
            scrape_interval: Duration(0),
            scrape_timeout: Duration(0),
            scrape_protocols: Vec::new(),
            fallback_scrape_protocol: None,
            metrics_path: "/metrics".into(),
            scheme: Scheme::Http,
            enable_compression: true,
            body_size_limit: ByteSize(0),
            sample_limit: 0,
            target_limit: 0,
            label_limit: 0,
            label_name_length_limit: 0,
            label_value_length_limit: 0,
            keep_dropped_targets: 0,
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

/// Targets written in the config, with labels for all of them.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticConfig {
    /// `host:port` addresses.
    pub targets: Vec<String>,
    /// Labels added to each target.
    pub labels: BTreeMap<String, String>,
}

/// Targets read from JSON or YAML files matching glob patterns.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSdConfig {
    /// File names; the last path element may hold `*`, `?` and `[...]`.
    pub files: Vec<String>,
    /// How often files are re-read besides change notifications (5m).
    pub refresh_interval: Duration,
}

impl Default for FileSdConfig {
    fn default() -> Self {
        FileSdConfig {
            files: Vec::new(),
            refresh_interval: Duration::secs(300),
        }
    }
}

/// HTTP basic authentication.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// File holding the user name.
    pub username_file: Option<PathBuf>,
    /// Password.
    pub password: Option<Secret>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
}

/// The Authorization header: `<type> <credentials>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Authorization {
    /// The scheme (`Bearer`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The credentials.
    pub credentials: Option<Secret>,
    /// File holding the credentials.
    pub credentials_file: Option<PathBuf>,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization {
            kind: "Bearer".into(),
            credentials: None,
            credentials_file: None,
        }
    }
}

/// TLS client settings.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificates, PEM text.
    pub ca: Option<String>,
    /// CA certificates file.
    pub ca_file: Option<PathBuf>,
    /// Client certificate, PEM text.
    pub cert: Option<String>,
    /// Client certificate file.
    pub cert_file: Option<PathBuf>,
    /// Client key, PEM text.
    pub key: Option<Secret>,
    /// Client key file.
    pub key_file: Option<PathBuf>,
    /// Name checked against the server's certificate.
    pub server_name: Option<String>,
    /// Skip verification of the server's certificate (false).
    pub insecure_skip_verify: bool,
    /// Lowest TLS version accepted.
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version accepted.
    pub max_version: Option<TlsVersion>,
}

/// When the WAL is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalFsync {
    /// Before every commit is acknowledged.
    Always,
    /// Group commit: at most this often.
    Interval(Duration),
}

impl Serialize for WalFsync {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WalFsync::Always => s.serialize_str("always"),
            WalFsync::Interval(d) => d.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for WalFsync {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "always" {
            return Ok(WalFsync::Always);
        }
        parse_duration(&s)
            .map(|ms| WalFsync::Interval(Duration(ms)))
            .map_err(|_| {
                de::Error::custom(format!(
                    "invalid wal_fsync {s:?} (want \"always\" or a duration such as 1s)"
                ))
            })
    }
}

/// tidemark's storage section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Data directory (`./data`), relative to the working directory.
    pub path: PathBuf,
    /// WAL fsync policy (`1s`).
    pub wal_fsync: WalFsync,
    /// Time range of a block cut from the head (2h).
    pub block_duration: Duration,
    /// What is deleted, and when.
    pub retention: RetentionConfig,
    /// Most bytes of WAL segments kept only because a remote_write queue has not sent them
    /// (1GiB); past it the oldest are deleted and their unsent samples counted as dropped.
    pub remote_write_backlog_limit: ByteSize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("./data"),
            wal_fsync: WalFsync::Interval(Duration::secs(1)),
            block_duration: Duration::secs(2 * 3600),
            retention: RetentionConfig::default(),
            remote_write_backlog_limit: ByteSize(1 << 30),
        }
    }
}

/// Retention limits; blocks beyond either are deleted whole.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Age limit (15d); 0 is none.
    pub time: Duration,
    /// Size limit; 0 is none.
    pub size: ByteSize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            time: Duration::secs(15 * 86_400),
            size: ByteSize(0),
        }
    }
}

/// tidemark's HTTP server section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// `host:port` to listen on (`127.0.0.1:9595`).
    pub listen_address: String,
    /// Serve `/-/reload` and `/-/quit` (false).
    pub enable_lifecycle: bool,
    /// Serve the admin API (false).
    pub enable_admin_api: bool,
    /// Accept remote write at `/api/v1/write` (false).
    pub enable_remote_write_receiver: bool,
    /// Origins allowed to read the API from a browser: a regex, fully anchored as
    /// Prometheus's `--web.cors.origin`; empty (the default) sends no CORS headers.
    pub cors_origin: String,
    /// Largest request body any endpoint accepts (32MiB); 0 is no limit.
    pub max_request_body_size: ByteSize,
    /// Connections served at once (512, as Prometheus's `--web.max-connections`); beyond it
    /// new connections wait in the listen backlog until one closes. 0 is no limit.
    pub max_connections: usize,
    /// Longest a connection may take to send a request's headers (30s), counted from accept
    /// (the TLS handshake included) and, on a kept-alive connection, from the end of the
    /// previous response; a connection idle that long is closed.
    pub read_header_timeout: Duration,
    /// Serve HTTPS with this certificate.
    pub tls: Option<WebTlsConfig>,
    /// Users allowed in, with bcrypt hashes of their passwords; empty means no auth.
    pub basic_auth_users: BTreeMap<String, Secret>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen_address: "127.0.0.1:9595".into(),
            enable_lifecycle: false,
            enable_admin_api: false,
            enable_remote_write_receiver: false,
            cors_origin: String::new(),
            max_request_body_size: ByteSize(32 << 20),
            max_connections: 512,
            read_header_timeout: Duration::secs(30),
            tls: None,
            basic_auth_users: BTreeMap::new(),
        }
    }
}

impl WebConfig {
    /// `cors_origin` compiled and anchored at both ends; `None` when it is empty.
    pub fn cors_origin_regex(&self) -> Result<Option<regex::Regex>, String> {
        if self.cors_origin.is_empty() {
            return Ok(None);
        }
        regex::Regex::new(&format!("^(?:{})$", self.cors_origin))
            .map(Some)
            .map_err(|e| format!("invalid cors_origin regex {:?}: {e}", self.cors_origin))
    }
}

/// The server's certificate and what it asks of clients: a subset of the
/// `tls_server_config` of Prometheus's web configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebTlsConfig {
    /// Certificate chain, PEM (required).
    pub cert_file: PathBuf,
    /// Private key, PEM (required).
    pub key_file: PathBuf,
    /// CA certificates, PEM, that client certificates must chain to.
    pub client_ca_file: Option<PathBuf>,
    /// Whether clients must present a certificate (`NoClientCert`).
    pub client_auth_type: ClientAuthType,
    /// Oldest protocol version accepted (`TLS12`; `TLS13` is the other choice).
    pub min_version: TlsVersion,
}

impl Default for WebTlsConfig {
    fn default() -> Self {
        WebTlsConfig {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            client_ca_file: None,
            client_auth_type: ClientAuthType::NoClientCert,
            min_version: TlsVersion::TLS12,
        }
    }
}

/// Prometheus's `client_auth_type` values that tidemark supports: every certificate a client
/// presents is verified against `client_ca_file` (rustls has no "ask but do not verify").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum ClientAuthType {
    /// No client certificate is asked for.
    #[default]
    NoClientCert,
    /// A client may present a certificate; one it presents must verify.
    VerifyClientCertIfGiven,
    /// Every client must present a certificate that verifies (mutual TLS).
    RequireAndVerifyClientCert,
}

/// The `log` section.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or `target=level` directives joined by
    /// commas (`info`).
    pub level: String,
    /// Line format (`text`).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Checks a log level: a level name, or comma-separated `level` / `target=level` directives.
/// Stricter than a tracing filter, where a misspelt level reads as a target name and
/// silently logs nothing.
pub fn check_log_level(s: &str) -> Result<(), String> {
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
        Err(format!(
            "invalid log level {s:?} (want error, warn, info, debug or trace, or target=level directives)"
        ))
    }
}

/// Query limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Longest a query may run (2m).
    pub timeout: Duration,
    /// Most samples one query may hold in memory (50,000,000).
    pub max_samples: u64,
    /// How far back an instant selector looks (5m).
    pub lookback_delta: Duration,
    /// Queries run at once (20).
    pub max_concurrency: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout: Duration::secs(120),
            max_samples: 50_000_000,
            lookback_delta: Duration::secs(300),
            max_concurrency: 20,
        }
    }
}

/// One remote-write destination, in Prometheus's schema.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Endpoint URL (required); shown with its password hidden.
    #[serde(serialize_with = "serialize_url")]
    pub url: String,
    /// Name in metrics and logs; unique when set.
    pub name: String,
    /// Timeout of one request (30s).
    pub remote_timeout: Duration,
    /// Extra HTTP headers; their values are shown as secrets.
    #[serde(serialize_with = "serialize_header_values")]
    pub headers: BTreeMap<String, String>,
    /// Rules applied to each series before sending.
    pub write_relabel_configs: Vec<RelabelConfig>,
    /// Send exemplars (false; tidemark stores none).
    pub send_exemplars: bool,
    /// Send native histograms (false; tidemark stores none).
    pub send_native_histograms: bool,
    /// Wire message; only `prometheus.WriteRequest` (remote write 1.0).
    pub protobuf_message: String,
    /// Sharding and retry.
    pub queue_config: QueueConfig,
    /// Metadata sending.
    pub metadata_config: MetadataConfig,
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// The Authorization header (also holds a folded `bearer_token`).
    pub authorization: Option<Authorization>,
    /// Legacy bearer token; moved into `authorization` by validation.
    pub bearer_token: Option<Secret>,
    /// Legacy bearer token file; moved into `authorization` by validation.
    pub bearer_token_file: Option<PathBuf>,
    /// TLS settings.
    pub tls_config: TlsConfig,
    /// Follow HTTP redirects (true).
    pub follow_redirects: bool,
    /// Allow HTTP/2 (true).
    pub enable_http2: bool,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            url: String::new(),
            name: String::new(),
            remote_timeout: Duration::secs(30),
            headers: BTreeMap::new(),
            write_relabel_configs: Vec::new(),
            send_exemplars: false,
            send_native_histograms: false,
            protobuf_message: "prometheus.WriteRequest".into(),
            queue_config: QueueConfig::default(),
            metadata_config: MetadataConfig::default(),
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
        }
    }
}

/// Remote-write queue tuning, with Prometheus's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Samples buffered per shard (10000).
    pub capacity: u64,
    /// Most shards (50).
    pub max_shards: u64,
    /// Fewest shards (1).
    pub min_shards: u64,
    /// Samples per request (2000).
    pub max_samples_per_send: u64,
    /// Longest a sample waits for its batch to fill (5s).
    pub batch_send_deadline: Duration,
    /// First retry delay (30ms).
    pub min_backoff: Duration,
    /// Longest retry delay (5s).
    pub max_backoff: Duration,
    /// Retry on 429 like on 5xx (true).
    pub retry_on_http_429: bool,
    /// Drop samples older than this instead of sending; 0 is never.
    pub sample_age_limit: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 10_000,
            max_shards: 50,
            min_shards: 1,
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::secs(5),
            min_backoff: Duration(30),
            max_backoff: Duration::secs(5),
            retry_on_http_429: true,
            sample_age_limit: Duration(0),
        }
    }
}

/// Remote-write metadata settings (accepted for compatibility; tidemark sends no metadata).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// Send metadata (true).
    pub send: bool,
    /// How often (1m).
    pub send_interval: Duration,
    /// Entries per request (2000).
    pub max_samples_per_send: u64,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig {
            send: true,
            send_interval: Duration::secs(60),
            max_samples_per_send: 2000,
        }
    }
}

/// One thing wrong with a config file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Key path such as `scrape_configs[1].scrape_interval`; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A config (or file_sd) file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not valid; every problem found, in document order.
    #[error("{}", join_problems(.0))]
    Invalid(Vec<Problem>),
}

fn join_problems(ps: &[Problem]) -> String {
    ps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// A message on one line, so that each problem is one line of output.
fn one_line(msg: String) -> String {
    if msg.contains('\n') {
        msg.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        msg
    }
}

/// Turns a YAML-layer error into a problem of `file`.
fn problem_from(file: &str, e: yaml::DeError) -> Problem {
    let pos = e.pos.unwrap_or(yaml::Pos { line: 1, column: 1 });
    Problem {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        path: e.path.map(|p| p.to_string()).unwrap_or_default(),
        message: one_line(e.msg),
    }
}

/// The agent's built-in config, used when no file is given: tidemark scrapes itself.
pub const DEFAULT_CONFIG_YAML: &str = "\
global:
  scrape_interval: 15s
  scrape_timeout: 10s
scrape_configs:
  - job_name: tidemark
    static_configs:
      - targets: ['127.0.0.1:9595']
storage:
  path: ./data
";

impl Config {
    /// Parses and validates config text; `file_name` is used in error messages only.
    pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
        Self::parse_with_tree(text, file_name).map(|(c, _)| c)
    }

    fn parse_with_tree(text: &str, file: &str) -> Result<(Config, Option<Node>), ConfigError> {
        let root =
            yaml::parse(text).map_err(|e| ConfigError::Invalid(vec![problem_from(file, e)]))?;
        let mut config: Config = match &root {
            None => Config::default(),
            Some(node) => yaml::from_node(node)
                .map_err(|e| ConfigError::Invalid(vec![problem_from(file, e)]))?,
        };
        let mut check = Check {
            file,
            root: root.as_ref(),
            problems: Vec::new(),
        };
        check.config(&mut config);
        if check.problems.is_empty() {
            Ok((config, root))
        } else {
            Err(ConfigError::Invalid(check.problems))
        }
    }

    /// Reads, parses and validates a config file, resolving relative file names against its
    /// directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_tree(path).map(|(c, _)| c)
    }

    fn load_with_tree(path: &Path) -> Result<(Config, Option<Node>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let (mut config, root) = Self::parse_with_tree(&text, &path.display().to_string())?;
        let dir = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(dir);
        Ok((config, root))
    }

    /// What `tidemark check config` runs: [`Config::load`], then checks that every file the
    /// config names exists and that file_sd files matched by its patterns parse.
    pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
        let (config, root) = Self::load_with_tree(path)?;
        let file = path.display().to_string();
        let mut check = Check {
            file: &file,
            root: root.as_ref(),
            problems: Vec::new(),
        };
        for (at, f) in config.referenced_files() {
            if !f.is_file() {
                check.report(&at, format!("file {} does not exist", f.display()));
            }
        }
        for (i, sc) in config.scrape_configs.iter().enumerate() {
            for (j, sd) in sc.file_sd_configs.iter().enumerate() {
                let at = KeyPath::default()
                    .key("scrape_configs")
                    .index(i)
                    .key("file_sd_configs")
                    .index(j)
                    .key("files");
                match file_sd::expand(&sd.files) {
                    Ok(files) => {
                        for f in files {
                            if let Err(e) = file_sd::read_file(&f) {
                                check.nested(&at, e);
                            }
                        }
                    }
                    Err(e) => check.nested(&at, e),
                }
            }
        }
        if check.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(check.problems))
        }
    }

    /// The configuration as `/api/v1/status/config` shows it: this parsed configuration
    /// written back as YAML (defaults and inherited values filled in), every [`Secret`] as
    /// `<secret>`, passwords in URLs as `xxxxx` and header values hidden.
    pub fn render(&self) -> String {
        render::to_yaml(self)
            .unwrap_or_else(|e| format!("# the configuration cannot be shown: {e}\n"))
    }

    /// The config the agent runs with when given none: Prometheus's defaults, except that
    /// tidemark scrapes itself at `127.0.0.1:9595` every 15s. Equal to parsing
    /// [`DEFAULT_CONFIG_YAML`].
    pub fn default_embedded() -> Config {
        Config {
            global: GlobalConfig {
                scrape_interval: Duration::secs(15),
                ..GlobalConfig::default()
            },
            scrape_configs: vec![ScrapeConfig {
                job_name: "tidemark".into(),
                scrape_interval: Duration::secs(15),
                scrape_timeout: Duration::secs(10),
                scrape_protocols: ScrapeProtocol::DEFAULT.to_vec(),
                static_configs: vec![StaticConfig {
                    targets: vec!["127.0.0.1:9595".into()],
                    labels: BTreeMap::new(),
                }],
                ..ScrapeConfig::default()
            }],
            ..Config::default()
        }
    }

    /// Every file name in the config with its key path, for existence checks.
    fn referenced_files(&self) -> Vec<(KeyPath, PathBuf)> {
        let mut out = Vec::new();
        let root = KeyPath::default();
        for (i, sc) in self.scrape_configs.iter().enumerate() {
            let at = root.key("scrape_configs").index(i);
            http_files(
                &at,
                &sc.basic_auth,
                &sc.authorization,
                &sc.tls_config,
                &mut out,
            );
        }
        for (i, rw) in self.remote_write.iter().enumerate() {
            let at = root.key("remote_write").index(i);
            http_files(
                &at,
                &rw.basic_auth,
                &rw.authorization,
                &rw.tls_config,
                &mut out,
            );
        }
        if let Some(tls) = &self.web.tls {
            let at = root.key("web").key("tls");
            out.push((at.key("cert_file"), tls.cert_file.clone()));
            out.push((at.key("key_file"), tls.key_file.clone()));
            out.extend(
                tls.client_ca_file
                    .clone()
                    .map(|f| (at.key("client_ca_file"), f)),
            );
        }
        out
    }

    /// Makes relative file names relative to `dir`, as Prometheus does for its config.
    fn resolve_paths(&mut self, dir: &Path) {
        let join = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        let join_opt = |p: &mut Option<PathBuf>| {
            if let Some(p) = p {
                join(p);
            }
        };
        let http =
            |ba: &mut Option<BasicAuth>, auth: &mut Option<Authorization>, tls: &mut TlsConfig| {
                if let Some(ba) = ba {
                    join_opt(&mut ba.username_file);
                    join_opt(&mut ba.password_file);
                }
                if let Some(a) = auth {
                    join_opt(&mut a.credentials_file);
                }
                join_opt(&mut tls.ca_file);
                join_opt(&mut tls.cert_file);
                join_opt(&mut tls.key_file);
            };
        for sc in &mut self.scrape_configs {
            http(
                &mut sc.basic_auth,
                &mut sc.authorization,
                &mut sc.tls_config,
            );
            for sd in &mut sc.file_sd_configs {
                for f in &mut sd.files {
                    if Path::new(f.as_str()).is_relative() {
                        *f = dir.join(f.as_str()).display().to_string();
                    }
                }
            }
        }
        for rw in &mut self.remote_write {
            http(
                &mut rw.basic_auth,
                &mut rw.authorization,
                &mut rw.tls_config,
            );
        }
        if let Some(tls) = &mut self.web.tls {
            join(&mut tls.cert_file);
            join(&mut tls.key_file);
            join_opt(&mut tls.client_ca_file);
        }
    }
}

fn http_files(
    at: &KeyPath,
    ba: &Option<BasicAuth>,
    auth: &Option<Authorization>,
    tls: &TlsConfig,
    out: &mut Vec<(KeyPath, PathBuf)>,
) {
    if let Some(ba) = ba {
        let b = at.key("basic_auth");
        out.extend(
            ba.username_file
                .clone()
                .map(|f| (b.key("username_file"), f)),
        );
        out.extend(
            ba.password_file
                .clone()
                .map(|f| (b.key("password_file"), f)),
        );
    }
    if let Some(f) = auth.as_ref().and_then(|a| a.credentials_file.clone()) {
        out.push((at.key("authorization").key("credentials_file"), f));
    }
    let t = at.key("tls_config");
    for (k, f) in [
        ("ca_file", &tls.ca_file),
        ("cert_file", &tls.cert_file),
        ("key_file", &tls.key_file),
    ] {
        out.extend(f.clone().map(|f| (t.key(k), f)));
    }
}

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

/// Validation after deserialization: resolves inherited values and collects every problem,
/// each located through the document tree.
struct Check<'a> {
    file: &'a str,
    root: Option<&'a Node>,
    problems: Vec<Problem>,
}

impl Check<'_> {
    fn report(&mut self, path: &KeyPath, msg: impl Into<String>) {
        self.report_at(path, msg, false);
    }

    /// Reports a problem with the last key of `path` itself, pointing at the key.
    fn report_key(&mut self, path: &KeyPath, msg: impl Into<String>) {
        self.report_at(path, msg, true);
    }

    fn report_at(&mut self, path: &KeyPath, msg: impl Into<String>, key: bool) {
        let pos = match self.root {
            Some(r) if key => r.locate_key(path),
            Some(r) => r.locate(path),
            None => yaml::Pos { line: 1, column: 1 },
        };
        self.problems.push(Problem {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: one_line(msg.into()),
        });
    }

    fn line_of(&self, path: &KeyPath) -> usize {
        self.root.map_or(1, |r| r.locate(path).line)
    }

    /// Reports the problems of another file (a file_sd target file) as seen from `at`.
    fn nested(&mut self, at: &KeyPath, e: ConfigError) {
        match e {
            ConfigError::Read { path, source } => {
                self.report(at, format!("cannot read {}: {source}", path.display()));
            }
            ConfigError::Invalid(ps) => self.problems.extend(ps),
        }
    }

    fn config(&mut self, c: &mut Config) {
        let root = KeyPath::default();
        self.global(&root.key("global"), &mut c.global);
        let mut jobs: HashMap<String, usize> = HashMap::new();
        for (i, sc) in c.scrape_configs.iter_mut().enumerate() {
            let at = root.key("scrape_configs").index(i);
            if !sc.job_name.is_empty() {
                if let Some(first) = jobs.get(&sc.job_name) {
                    let first_line =
                        self.line_of(&root.key("scrape_configs").index(*first).key("job_name"));
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
            self.scrape(&at, sc, &c.global);
        }
        self.storage(&root.key("storage"), &c.storage);
        self.web(&root.key("web"), &c.web);
        self.query(&root.key("query"), &c.query);
        if let Err(why) = check_log_level(&c.log.level) {
            self.report(&root.key("log").key("level"), why);
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, rw) in c.remote_write.iter_mut().enumerate() {
            let at = root.key("remote_write").index(i);
            if !rw.name.is_empty() {
                if let Some(first) = names.get(&rw.name) {
                    let first_line =
                        self.line_of(&root.key("remote_write").index(*first).key("name"));
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
            if *p == ScrapeProtocol::PrometheusProto {
                self.report(
                    &at.index(i),
                    "PrometheusProto is not supported by tidemark (no protobuf exposition parser)",
                );
            } else if list[..i].contains(p) {
                self.report(&at.index(i), format!("duplicate protocol {}", p.name()));
            }
        }
    }

    fn global(&mut self, at: &KeyPath, g: &mut GlobalConfig) {
        self.labels(&at.key("external_labels"), &g.external_labels);
        let defaults = GlobalConfig::default();
        if g.scrape_interval.0 == 0 {
            g.scrape_interval = defaults.scrape_interval;
        }
        if g.scrape_timeout > g.scrape_interval {
            self.report(
                &at.key("scrape_timeout"),
                format!(
                    "scrape_timeout {} is greater than scrape_interval {}",
                    g.scrape_timeout, g.scrape_interval
                ),
            );
        }
        if g.scrape_timeout.0 == 0 {
            g.scrape_timeout = defaults.scrape_timeout.min(g.scrape_interval);
        }
        if g.evaluation_interval.0 == 0 {
            g.evaluation_interval = defaults.evaluation_interval;
        }
        if g.scrape_protocols.is_empty() {
            g.scrape_protocols = defaults.scrape_protocols;
        }
        self.protocols(&at.key("scrape_protocols"), &g.scrape_protocols);
    }

    fn scrape(&mut self, at: &KeyPath, sc: &mut ScrapeConfig, g: &GlobalConfig) {
        if sc.job_name.is_empty() {
            self.report(&at.key("job_name"), "job_name is empty or missing");
        }
        if sc.scrape_interval.0 == 0 {
            sc.scrape_interval = g.scrape_interval;
        }
        if sc.scrape_timeout > sc.scrape_interval {
            self.report(
                &at.key("scrape_timeout"),
                format!(
                    "scrape_timeout {} is greater than scrape_interval {} for job {:?}",
                    sc.scrape_timeout, sc.scrape_interval, sc.job_name
                ),
            );
        }
        if sc.scrape_timeout.0 == 0 {
            sc.scrape_timeout = g.scrape_timeout.min(sc.scrape_interval);
        }
        if !sc.metrics_path.starts_with('/') {
            self.report(
                &at.key("metrics_path"),
                format!("metrics_path {:?} must start with /", sc.metrics_path),
            );
        }
        let inherit = |v: &mut u64, g: u64| {
            if *v == 0 {
                *v = g;
            }
        };
        inherit(&mut sc.sample_limit, g.sample_limit);
        inherit(&mut sc.target_limit, g.target_limit);
        inherit(&mut sc.label_limit, g.label_limit);
        inherit(&mut sc.label_name_length_limit, g.label_name_length_limit);
        inherit(&mut sc.label_value_length_limit, g.label_value_length_limit);
        inherit(&mut sc.keep_dropped_targets, g.keep_dropped_targets);
        inherit(&mut sc.body_size_limit.0, g.body_size_limit.0);
        if sc.scrape_protocols.is_empty() {
            sc.scrape_protocols = g.scrape_protocols.clone();
        } else {
            self.protocols(&at.key("scrape_protocols"), &sc.scrape_protocols);
        }
        if sc.fallback_scrape_protocol == Some(ScrapeProtocol::PrometheusProto) {
            self.report(
                &at.key("fallback_scrape_protocol"),
                "PrometheusProto is not supported by tidemark (no protobuf exposition parser)",
            );
        }
        self.http(
            at,
            &sc.basic_auth,
            &mut sc.authorization,
            &mut sc.bearer_token,
            &mut sc.bearer_token_file,
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

    /// Prometheus's HTTP client rules, then the legacy bearer token folded into
    /// `authorization`.
    fn http(
        &mut self,
        at: &KeyPath,
        basic_auth: &Option<BasicAuth>,
        authorization: &mut Option<Authorization>,
        bearer_token: &mut Option<Secret>,
        bearer_token_file: &mut Option<PathBuf>,
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
            a.kind = a.kind.trim().to_string();
            if a.kind.is_empty() {
                a.kind = "Bearer".into();
            }
            if a.kind.eq_ignore_ascii_case("basic") {
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
        } else if has_bearer {
            *authorization = Some(Authorization {
                kind: "Bearer".into(),
                credentials: bearer_token.take(),
                credentials_file: bearer_token_file.take(),
            });
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

    fn remote_write(&mut self, at: &KeyPath, rw: &mut RemoteWriteConfig) {
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
            &mut rw.authorization,
            &mut rw.bearer_token,
            &mut rw.bearer_token_file,
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

/// Checks an http(s) URL with a host; what remote write can post to.
fn check_url(url: &str) -> Result<(), String> {
    // The message is logged and answered to /-/reload: the URL without its credentials.
    let shown = url_without_userinfo(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "{shown:?} is not a URL (want http://host:port/path)"
        ));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("{shown:?}: scheme must be http or https"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') || url.contains(char::is_whitespace) {
        return Err(format!("{shown:?} has no host"));
    }
    Ok(())
}

/// Checks a `host:port` listen address; the host may be empty (all interfaces) or bracketed
/// IPv6.
fn check_listen_address(addr: &str) -> Result<(), String> {
    let bad = || format!("{addr:?} is not a valid listen address (want host:port)");
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
