//! From a `scrape_configs` entry to what the manager runs: the HTTP client settings, the
//! target-shaping defaults, the ingestion options and the discovered targets.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use super::fetch::{self, FetchSettings, Fetcher};
use super::ingest::{IngestOptions, Limits};
use super::manager::JobSpec;
use super::parse::protobuf::ProtoOptions;
use super::parse::{ACCEPT_HEADER, Format};
use super::scrape_loop::Fetch;
use super::target::JobDefaults;
use crate::config::{ScrapeConfig, ScrapeProtocol};
use crate::http_client::ClientSettings;
use crate::relabel::Rule;

/// A job that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The HTTP client could not be built (TLS files, auth conflicts).
    #[error("job {job:?}: {source}")]
    Client {
        job: String,
        #[source]
        source: fetch::BuildError,
    },
    /// A relabel rule is invalid (config validation normally catches it first).
    #[error("job {job:?}: {reason}")]
    Relabel { job: String, reason: String },
}

impl Fetch for Fetcher {
    async fn fetch(&self, url: &str, timeout: Duration) -> Result<(Vec<u8>, Format), String> {
        Fetch::fetch_url(self, &fetch::ScrapeUrl::new(url), timeout).await
    }

    async fn fetch_url(
        &self,
        url: &fetch::ScrapeUrl,
        _timeout: Duration,
    ) -> Result<(Vec<u8>, Format), String> {
        Fetcher::fetch_url(self, url)
            .await
            .map(|f| (f.body, f.format))
            .map_err(|e| e.to_string())
    }
}

fn media_type(p: ScrapeProtocol) -> &'static str {
    match p {
        ScrapeProtocol::OpenMetricsText1_0_0 => {
            "application/openmetrics-text;version=1.0.0;escaping=underscores"
        }
        ScrapeProtocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
        ScrapeProtocol::PrometheusText1_0_0 => "text/plain;version=1.0.0;escaping=underscores",
        ScrapeProtocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
        ScrapeProtocol::PrometheusProto => {
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
        }
    }
}

/// The Accept header for a protocol preference list, weighted as Prometheus weights it; the
/// default list gives exactly [`ACCEPT_HEADER`].
pub fn accept_header(protocols: &[ScrapeProtocol]) -> String {
    if protocols.is_empty() {
        return ACCEPT_HEADER.to_string();
    }
    // Prometheus starts at one more than the number of protocols it knows (5) and counts down,
    // ending with `*/*`.
    let mut weight = 6usize;
    let mut parts = Vec::with_capacity(protocols.len() + 1);
    for p in protocols {
        parts.push(format!("{};q=0.{weight}", media_type(*p)));
        weight = weight.saturating_sub(1).max(1);
    }
    parts.push(format!("*/*;q=0.{weight}"));
    parts.join(",")
}

fn format_of(p: ScrapeProtocol) -> Format {
    match p {
        ScrapeProtocol::OpenMetricsText0_0_1 | ScrapeProtocol::OpenMetricsText1_0_0 => {
            Format::OpenMetrics
        }
        ScrapeProtocol::PrometheusProto => Format::Protobuf,
        ScrapeProtocol::PrometheusText0_0_4 | ScrapeProtocol::PrometheusText1_0_0 => {
            Format::PrometheusText
        }
    }
}

/// The finest schema whose buckets grow by at least `factor`, as Prometheus picks it for
/// `native_histogram_min_bucket_factor`; `None` (no reduction) for a factor up to 1 or one
/// that schema 8 already meets.
pub fn max_schema_for(factor: f64) -> Option<i32> {
    use crate::model::histogram::{MAX_SCHEMA, MIN_SCHEMA};
    if factor.is_nan() || factor <= 1.0 {
        return None;
    }
    // Schema s grows by 2^(2^-s) per bucket: the largest s with 2^(2^-s) >= factor.
    let s = (-factor.log2().log2()).floor();
    if s >= f64::from(MAX_SCHEMA) {
        None
    } else if s <= f64::from(MIN_SCHEMA) {
        Some(MIN_SCHEMA)
    } else {
        Some(s as i32)
    }
}

/// The HTTP client settings of a job.
pub fn fetch_settings(sc: &ScrapeConfig) -> FetchSettings {
    let c = ClientSettings::from_config(
        sc.basic_auth.as_ref(),
        sc.authorization.as_ref(),
        &sc.tls_config,
    );
    FetchSettings {
        timeout: sc.scrape_timeout.to_std(),
        body_size_limit: sc.body_size_limit.0,
        enable_compression: sc.enable_compression,
        accept: accept_header(&sc.scrape_protocols),
        fallback_format: sc.fallback_scrape_protocol.map(format_of),
        basic_auth: c.basic_auth,
        authorization: c.authorization,
        tls: c.tls,
        follow_redirects: sc.follow_redirects,
    }
}

/// A stable hash of everything in a job's configuration, secrets included, so any change to
/// the job restarts its loops and an unchanged job keeps them.
pub fn config_hash(sc: &ScrapeConfig) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // Debug shows every setting but writes secrets as `<secret>`: they are hashed as they are.
    format!("{sc:?}").hash(&mut h);
    let exposed = |s: &Option<crate::config::Secret>| s.as_ref().map(|s| s.expose().to_string());
    sc.basic_auth
        .as_ref()
        .map(|b| exposed(&b.password))
        .hash(&mut h);
    sc.authorization
        .as_ref()
        .map(|a| exposed(&a.credentials))
        .hash(&mut h);
    exposed(&sc.bearer_token).hash(&mut h);
    exposed(&sc.tls_config.key).hash(&mut h);
    h.finish()
}

fn rules(job: &str, cfgs: &[crate::relabel::RelabelConfig]) -> Result<Vec<Rule>, JobError> {
    cfgs.iter()
        .map(|c| {
            Rule::new(c.clone()).map_err(|e| JobError::Relabel {
                job: job.to_string(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Builds a job: its client and settings, with the targets of its static configs and of the
/// given file-discovered groups (`(targets, labels)` pairs).
pub fn build(
    sc: &ScrapeConfig,
    file_groups: &[(Vec<String>, BTreeMap<String, String>)],
) -> Result<JobSpec<Fetcher>, JobError> {
    let fetcher = Fetcher::new(&fetch_settings(sc)).map_err(|source| JobError::Client {
        job: sc.job_name.clone(),
        source,
    })?;
    let defaults = JobDefaults {
        job_name: sc.job_name.clone(),
        scheme: format!("{:?}", sc.scheme).to_lowercase(),
        metrics_path: sc.metrics_path.clone(),
        params: sc.params.clone(),
        interval: sc.scrape_interval.to_std(),
        timeout: sc.scrape_timeout.to_std(),
        relabel: rules(&sc.job_name, &sc.relabel_configs)?,
    };
    let ingest = IngestOptions {
        honor_labels: sc.honor_labels,
        honor_timestamps: sc.honor_timestamps,
        limits: Limits {
            sample_limit: sc.sample_limit as usize,
            label_limit: sc.label_limit as usize,
            label_name_length_limit: sc.label_name_length_limit as usize,
            label_value_length_limit: sc.label_value_length_limit as usize,
            bucket_limit: usize::try_from(sc.native_histogram_bucket_limit).unwrap_or(usize::MAX),
        },
        metric_relabel: rules(&sc.job_name, &sc.metric_relabel_configs)?,
        histograms: ProtoOptions {
            native_histograms: sc.scrape_native_histograms.unwrap_or(false),
            keep_classic: sc.always_scrape_classic_histograms.unwrap_or(false),
            convert_nhcb: sc.convert_classic_histograms_to_nhcb.unwrap_or(false),
        },
        max_schema: max_schema_for(sc.native_histogram_min_bucket_factor),
    };
    let groups = sc
        .static_configs
        .iter()
        .map(|s| (&s.targets, &s.labels))
        .chain(file_groups.iter().map(|(t, l)| (t, l)));
    let mut discovered = Vec::new();
    for (targets, labels) in groups {
        for addr in targets {
            let mut d = labels.clone();
            d.insert("__address__".to_string(), addr.clone());
            discovered.push(d);
        }
    }
    Ok(JobSpec {
        defaults,
        ingest,
        fetcher: Arc::new(fetcher),
        discovered,
        config_hash: config_hash(sc),
        target_limit: sc.target_limit as usize,
        keep_dropped_targets: sc.keep_dropped_targets as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_protocols_give_the_default_accept_header() {
        let g = crate::config::Config::default_embedded();
        let sc = &g.scrape_configs[0];
        let a = fetch_settings(sc).accept;
        assert!(a.starts_with("application/openmetrics-text"), "{a}");
        let custom = accept_header(&[ScrapeProtocol::PrometheusText0_0_4]);
        assert_eq!(custom, "text/plain;version=0.0.4;q=0.6,*/*;q=0.5");
        let default_list = [
            ScrapeProtocol::OpenMetricsText1_0_0,
            ScrapeProtocol::OpenMetricsText0_0_1,
            ScrapeProtocol::PrometheusText1_0_0,
            ScrapeProtocol::PrometheusText0_0_4,
        ];
        assert_eq!(accept_header(&default_list), ACCEPT_HEADER);
    }

    #[test]
    fn native_histograms_ask_for_protobuf_first_with_prometheus_weights() {
        let cfg = crate::config::Config::parse(
            "scrape_configs: [{job_name: j, scrape_native_histograms: true}]\n",
            "t",
        )
        .unwrap();
        let sc = &cfg.scrape_configs[0];
        assert_eq!(
            fetch_settings(sc).accept,
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,\
             application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.5,\
             application/openmetrics-text;version=0.0.1;q=0.4,\
             text/plain;version=1.0.0;escaping=underscores;q=0.3,\
             text/plain;version=0.0.4;q=0.2,*/*;q=0.1"
        );
        assert_eq!(format_of(ScrapeProtocol::PrometheusProto), Format::Protobuf);
    }

    #[test]
    fn the_min_bucket_factor_picks_prometheus_schema() {
        // Up to 1, or fine enough for schema 8: no reduction.
        for f in [0.0, -2.0, 1.0, 1.0027, f64::NAN] {
            assert_eq!(max_schema_for(f), None, "{f}");
        }
        // 2^(2^-s) per bucket: schema 3 grows by 1.0905, schema 2 by 1.1892.
        assert_eq!(max_schema_for(1.09), Some(3));
        assert_eq!(max_schema_for(1.1), Some(2));
        assert_eq!(max_schema_for(2.0), Some(0));
        assert_eq!(max_schema_for(4.0), Some(-1));
        assert_eq!(max_schema_for(1e300), Some(-4));
        assert_eq!(max_schema_for(f64::INFINITY), Some(-4));
    }

    #[test]
    fn a_changed_inline_secret_changes_the_job_hash() {
        let hash = |auth: &str| {
            let text = format!(
                "scrape_configs:\n  - job_name: j\n    static_configs: [{{targets: ['h:1']}}]\n{auth}"
            );
            let cfg = crate::config::Config::parse(&text, "t").unwrap();
            config_hash(&cfg.scrape_configs[0])
        };
        // A reload must restart the job's loops when only a password or token changed.
        assert_ne!(
            hash("    basic_auth: {username: u, password: old}\n"),
            hash("    basic_auth: {username: u, password: new}\n")
        );
        assert_ne!(
            hash("    authorization: {credentials: old}\n"),
            hash("    authorization: {credentials: new}\n")
        );
        assert_ne!(
            hash("    bearer_token: old\n"),
            hash("    bearer_token: new\n")
        );
        assert_eq!(
            hash("    basic_auth: {username: u, password: same}\n"),
            hash("    basic_auth: {username: u, password: same}\n")
        );
    }

    #[test]
    fn jobs_build_from_the_embedded_config() {
        let cfg = crate::config::Config::default_embedded();
        let job = build(&cfg.scrape_configs[0], &[]).unwrap();
        assert_eq!(job.defaults.job_name, "tidemark");
        assert_eq!(job.discovered.len(), 1);
        assert_eq!(job.discovered[0]["__address__"], "127.0.0.1:9595");
        assert_eq!(job.defaults.interval, Duration::from_secs(15));
        assert_eq!(
            config_hash(&cfg.scrape_configs[0]),
            config_hash(&cfg.scrape_configs[0])
        );
    }
}
