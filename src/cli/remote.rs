//! `--url` of `tidemark query` and `tidemark series`: requests to a running agent's (or
//! Prometheus's) HTTP API, with the client [`http_client::api_client`] builds, and its answers
//! unwrapped or turned into errors carrying the server's own text.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::http_client;

/// A client of Prometheus's HTTP API at one base URL.
pub(super) struct Remote {
    base: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// A success answer: its `data`, and the annotations it listed, in its order.
pub(super) struct Answer {
    pub(super) data: serde_json::Value,
    pub(super) warnings: Vec<String>,
    pub(super) infos: Vec<String>,
}

impl Remote {
    /// A client for `url`; `timeout` bounds each request (plus a margin, so the server's own
    /// timeout error arrives first).
    pub(super) fn new(url: &str, timeout: Option<Duration>) -> anyhow::Result<Remote> {
        let parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url:?}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--url {url:?}: want an http:// or https:// URL");
        }
        let client = http_client::api_client(timeout.map(|t| t + Duration::from_secs(5)))
            .context("building the HTTP client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the HTTP client's runtime")?;
        Ok(Remote {
            base: url.trim_end_matches('/').to_string(),
            client,
            runtime,
        })
    }

    /// POSTs `params` as a form to `path`; an error answer becomes an error carrying the
    /// server's own text.
    pub(super) fn post(&self, path: &str, params: &[(&str, String)]) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (status, text) = self
            .runtime
            .block_on(async {
                let resp = self
                    .client
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                Ok::<_, reqwest::Error>((status, resp.text().await?))
            })
            .with_context(|| format!("POST {url}"))?;
        let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let Some(mut answer) = parsed.filter(serde_json::Value::is_object) else {
            let shown: String = text.trim().chars().take(500).collect();
            if shown.is_empty() {
                bail!("{url} answered {status}");
            }
            bail!("{url} answered {status}: {shown}");
        };
        if answer["status"] != "success" {
            let kind = answer["errorType"].as_str().unwrap_or("error");
            let msg = answer["error"].as_str().unwrap_or("(no error text)");
            bail!("{url} answered {status}: {kind}: {msg}");
        }
        let strings = |k: &str| -> Vec<String> {
            answer[k]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (warnings, infos) = (strings("warnings"), strings("infos"));
        let data = answer
            .as_object_mut()
            .and_then(|o| o.remove("data"))
            .unwrap_or_default();
        Ok(Answer {
            data,
            warnings,
            infos,
        })
    }
}
