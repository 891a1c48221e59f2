//! The configuration file's structure: one struct per section with Prometheus's defaults,
//! as serde reads it (unknown keys refused) and writes it back for `/api/v1/status/config`.
//!
//! A struct here holds what the file says. Fields where 0 or empty means "inherit from
//! `global`" keep that 0 until [`super::resolve`] fills them in; nothing here checks values
//! (that is [`super::validate`]) or touches the file system.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use super::units::{ByteSize, Duration, SECRET_SHOWN, Secret, url_password_hidden};
use crate::model::parse_duration;
use crate::relabel::RelabelConfig;

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
    /// The delimited protobuf exposition (`io.prometheus.client.MetricFamily`), the one
    /// that carries native histograms.
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

    /// Prometheus 3's default order for a job that scrapes native histograms (and sets no
    /// list of its own, nor the global one): protobuf first.
    pub const PROTO_FIRST: [ScrapeProtocol; 5] = [
        ScrapeProtocol::PrometheusProto,
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
    /// Defaults for every job, and external labels. Unset when the file has no `global`, so
    /// what it did not write stays distinguishable until resolved.
    #[serde(default = "GlobalConfig::unset")]
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
    /// Scrape native histograms by default (false, as in Prometheus 3 without the
    /// `native-histograms` feature flag); unset in the file means false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_native_histograms: Option<bool>,
    /// Keep the classic series of histograms that also have native buckets (false).
    pub always_scrape_classic_histograms: bool,
    /// Store classic histograms as custom-bucket native histograms (false).
    pub convert_classic_histograms_to_nhcb: bool,
}

impl GlobalConfig {
    /// Every field unset, before defaults are resolved: what serde starts from.
    pub(super) fn unset() -> GlobalConfig {
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
            scrape_native_histograms: None,
            always_scrape_classic_histograms: false,
            convert_classic_histograms_to_nhcb: false,
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
            scrape_native_histograms: Some(false),
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
    /// Scrape native histograms; unset means the global setting. Decides the default
    /// protocol list (protobuf first) when neither the job nor `global` sets one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_native_histograms: Option<bool>,
    /// Keep the classic series of histograms that also have native buckets; unset means
    /// the global setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always_scrape_classic_histograms: Option<bool>,
    /// Store classic histograms as custom-bucket native histograms; unset means the global
    /// setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convert_classic_histograms_to_nhcb: Option<bool>,
    /// Most buckets of a native histogram: more are merged (the schema lowered) until it
    /// fits, and a histogram that cannot fit fails the scrape; 0 means no limit.
    pub native_histogram_bucket_limit: u64,
    /// Smallest growth factor from one native bucket to the next: a finer schema is lowered
    /// to the finest one with at least this factor; 0 (or anything up to 1) means no limit.
    pub native_histogram_min_bucket_factor: f64,
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
    /// Legacy bearer token; moved into `authorization` by `resolve`.
    pub bearer_token: Option<Secret>,
    /// Legacy bearer token file; moved into `authorization` by `resolve`.
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
            scrape_native_histograms: None,
            always_scrape_classic_histograms: None,
            convert_classic_histograms_to_nhcb: None,
            native_histogram_bucket_limit: 0,
            native_histogram_min_bucket_factor: 0.0,
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
    pub fn cors_origin_regex(&self) -> Result<Option<regex::Regex>, CorsError> {
        if self.cors_origin.is_empty() {
            return Ok(None);
        }
        regex::Regex::new(&format!("^(?:{})$", self.cors_origin))
            .map(Some)
            .map_err(|source| CorsError {
                pattern: self.cors_origin.clone(),
                source,
            })
    }
}

/// `web.cors_origin` is not a regular expression.
#[derive(Debug, thiserror::Error)]
#[error("invalid cors_origin regex {pattern:?}: {source}")]
pub struct CorsError {
    /// The pattern as written.
    pub pattern: String,
    /// Why it does not compile.
    pub source: regex::Error,
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
    /// Legacy bearer token; moved into `authorization` by `resolve`.
    pub bearer_token: Option<Secret>,
    /// Legacy bearer token file; moved into `authorization` by `resolve`.
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
                scrape_native_histograms: Some(false),
                always_scrape_classic_histograms: Some(false),
                convert_classic_histograms_to_nhcb: Some(false),
                static_configs: vec![StaticConfig {
                    targets: vec!["127.0.0.1:9595".into()],
                    labels: BTreeMap::new(),
                }],
                ..ScrapeConfig::default()
            }],
            ..Config::default()
        }
    }
}
