//! From discovered target groups to scrape targets: Prometheus's label population, target
//! relabeling, `__address__` / `__scheme__` / `__metrics_path__` / `__param_*` / `instance`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{Labels, LabelsBuilder, format_duration, parse_duration};
use crate::relabel::{self, Rule};

/// A job's settings that shape its targets (from its `scrape_configs` entry).
#[derive(Debug, Clone)]
pub struct JobDefaults {
    /// `job_name`.
    pub job_name: String,
    /// `scheme`: http or https.
    pub scheme: String,
    /// `metrics_path`.
    pub metrics_path: String,
    /// `params`.
    pub params: BTreeMap<String, Vec<String>>,
    /// `scrape_interval`.
    pub interval: Duration,
    /// `scrape_timeout`.
    pub timeout: Duration,
    /// `relabel_configs`, validated.
    pub relabel: Vec<Rule>,
}

/// One target to scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The labels every series of the target gets (`job`, `instance`, …), no `__` labels.
    pub labels: Labels,
    /// The labels before relabeling, as `/api/v1/targets` shows them.
    pub discovered: Labels,
    /// The URL to scrape.
    pub url: String,
    /// Scrape interval (from `__scrape_interval__` after relabeling).
    pub interval: Duration,
    /// Scrape timeout (from `__scrape_timeout__` after relabeling).
    pub timeout: Duration,
}

/// Why a discovered target cannot be scraped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no address")]
    NoAddress,
    #[error("invalid host:port {0:?}")]
    InvalidAddress(String),
    #[error("invalid label: {0}")]
    Label(String),
    #[error("error parsing scrape {0}: {1}")]
    Duration(&'static str, String),
    #[error("scrape timeout {timeout} greater than scrape interval {interval}")]
    TimeoutOverInterval { timeout: String, interval: String },
}

/// A host:port (or bare host, or bracketed IPv6) with nothing else: no scheme, path or spaces.
fn valid_address(a: &str) -> bool {
    !a.is_empty() && !a.contains(['/', '?', '#', ' ', '@']) && !a.chars().any(char::is_control)
}

/// Builds the target for one discovered address with its group's and its own labels; `None`
/// when relabeling drops it.
pub fn populate(
    discovered: &BTreeMap<String, String>,
    job: &JobDefaults,
) -> Result<Option<Target>, TargetError> {
    let mut lb = LabelsBuilder::default();
    for (n, v) in discovered {
        lb.set(n, v.clone());
    }
    let defaults: [(&str, String); 5] = [
        ("job", job.job_name.clone()),
        (
            "__scrape_interval__",
            format_duration(job.interval.as_millis() as i64),
        ),
        (
            "__scrape_timeout__",
            format_duration(job.timeout.as_millis() as i64),
        ),
        ("__metrics_path__", job.metrics_path.clone()),
        ("__scheme__", job.scheme.clone()),
    ];
    for (n, v) in defaults {
        if lb.get(n).is_none() {
            lb.set(n, v);
        }
    }
    for (k, vs) in &job.params {
        let name = format!("__param_{k}");
        if let (None, Some(first)) = (lb.get(&name), vs.first()) {
            lb.set(&name, first.clone());
        }
    }
    let pre = lb.build().map_err(|e| TargetError::Label(e.to_string()))?;
    let Some(post) = relabel::process(&pre, &job.relabel) else {
        return Ok(None);
    };

    let address = post.get("__address__").unwrap_or("").to_string();
    if address.is_empty() {
        return Err(TargetError::NoAddress);
    }
    if !valid_address(&address) {
        return Err(TargetError::InvalidAddress(address));
    }
    let dur = |name: &'static str, label: &str| -> Result<Duration, TargetError> {
        let v = post.get(label).unwrap_or("");
        let ms = parse_duration(v).map_err(|e| TargetError::Duration(name, e.to_string()))?;
        if ms <= 0 {
            return Err(TargetError::Duration(
                name,
                format!("{v:?} is not positive"),
            ));
        }
        Ok(Duration::from_millis(ms as u64))
    };
    let interval = dur("interval", "__scrape_interval__")?;
    let timeout = dur("timeout", "__scrape_timeout__")?;
    if timeout > interval {
        return Err(TargetError::TimeoutOverInterval {
            timeout: format_duration(timeout.as_millis() as i64),
            interval: format_duration(interval.as_millis() as i64),
        });
    }

    let scheme = post.get("__scheme__").unwrap_or("http");
    let path = post.get("__metrics_path__").unwrap_or("/metrics");
    let mut params: BTreeMap<String, Vec<String>> = job.params.clone();
    for (n, v) in post.iter() {
        if let Some(k) = n.strip_prefix("__param_") {
            params.insert(k.to_string(), vec![v.to_string()]);
        }
    }
    let mut url = format!("{scheme}://{address}{path}");
    let mut first = true;
    for (k, vs) in &params {
        for v in vs {
            url.push(if first { '?' } else { '&' });
            first = false;
            url.push_str(&encode_query(k));
            url.push('=');
            url.push_str(&encode_query(v));
        }
    }

    // Meta labels end here; `instance` defaults to the address.
    let mut out = post.to_builder();
    for (n, _) in post.iter().filter(|(n, _)| n.starts_with("__")) {
        out.remove(n);
    }
    if post.get("instance").is_none() {
        out.set("instance", address);
    }
    let labels = out.build().map_err(|e| TargetError::Label(e.to_string()))?;
    Ok(Some(Target {
        labels,
        discovered: pre,
        url,
        interval,
        timeout,
    }))
}

/// Percent-encodes a query component (RFC 3986 unreserved characters kept).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relabel::{Action, RelabelConfig};

    fn job(relabel: Vec<Rule>) -> JobDefaults {
        JobDefaults {
            job_name: "node".into(),
            scheme: "http".into(),
            metrics_path: "/metrics".into(),
            params: BTreeMap::new(),
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(10),
            relabel,
        }
    }

    fn disc(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn static_target_gets_job_and_instance() {
        let t = populate(
            &disc(&[("__address__", "10.0.0.1:9100"), ("env", "prod")]),
            &job(vec![]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(t.url, "http://10.0.0.1:9100/metrics");
        assert_eq!(
            t.labels,
            Labels::new([
                ("job", "node"),
                ("instance", "10.0.0.1:9100"),
                ("env", "prod")
            ])
            .unwrap()
        );
        assert_eq!(t.discovered.get("__scheme__"), Some("http"));
        assert_eq!(t.discovered.get("__scrape_interval__"), Some("15s"));
        assert_eq!(
            (t.interval, t.timeout),
            (Duration::from_secs(15), Duration::from_secs(10))
        );
    }

    #[test]
    fn relabeling_rewrites_address_scheme_path_params_and_drops() {
        // The blackbox-exporter pattern: the target becomes a parameter, the exporter the address.
        let rules = vec![
            Rule::new(RelabelConfig {
                source_labels: vec!["__address__".into()],
                target_label: "__param_target".into(),
                ..Default::default()
            })
            .unwrap(),
            Rule::new(RelabelConfig {
                source_labels: vec!["__param_target".into()],
                target_label: "instance".into(),
                ..Default::default()
            })
            .unwrap(),
            Rule::new(RelabelConfig {
                target_label: "__address__".into(),
                replacement: "127.0.0.1:9115".into(),
                ..Default::default()
            })
            .unwrap(),
            Rule::new(RelabelConfig {
                target_label: "__metrics_path__".into(),
                replacement: "/probe".into(),
                ..Default::default()
            })
            .unwrap(),
            Rule::new(RelabelConfig {
                target_label: "__scheme__".into(),
                replacement: "https".into(),
                ..Default::default()
            })
            .unwrap(),
            Rule::new(RelabelConfig {
                source_labels: vec!["__address__".into()],
                regex: "drop.*".into(),
                action: Action::Drop,
                ..Default::default()
            })
            .unwrap(),
        ];
        let mut j = job(rules);
        j.params.insert("module".into(), vec!["http_2xx".into()]);
        let t = populate(&disc(&[("__address__", "https://example.org/a b")]), &j)
            .unwrap()
            .unwrap();
        assert_eq!(
            t.url,
            "https://127.0.0.1:9115/probe?module=http_2xx&target=https%3A%2F%2Fexample.org%2Fa%20b"
        );
        assert_eq!(t.labels.get("instance"), Some("https://example.org/a b"));
        assert!(t.labels.iter().all(|(n, _)| !n.starts_with("__")));
        let j = job(vec![
            Rule::new(RelabelConfig {
                source_labels: vec!["__address__".into()],
                regex: "drop.*".into(),
                action: Action::Drop,
                ..Default::default()
            })
            .unwrap(),
        ]);
        assert_eq!(
            populate(&disc(&[("__address__", "drop-me:1")]), &j).unwrap(),
            None
        );
    }

    #[test]
    fn bad_targets_are_errors() {
        assert_eq!(
            populate(&disc(&[]), &job(vec![])),
            Err(TargetError::NoAddress)
        );
        assert!(matches!(
            populate(&disc(&[("__address__", "http://x:1/")]), &job(vec![])),
            Err(TargetError::InvalidAddress(_))
        ));
        let r = populate(
            &disc(&[("__address__", "a:1"), ("__scrape_timeout__", "1m")]),
            &job(vec![]),
        );
        assert!(
            matches!(r, Err(TargetError::TimeoutOverInterval { .. })),
            "{r:?}"
        );
        let r = populate(
            &disc(&[("__address__", "a:1"), ("__scrape_interval__", "soon")]),
            &job(vec![]),
        );
        assert!(
            matches!(r, Err(TargetError::Duration("interval", _))),
            "{r:?}"
        );
    }
}
