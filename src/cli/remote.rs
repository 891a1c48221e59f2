//! `--url` of `tidemark query` and `tidemark series`: requests to a running agent's (or
//! Prometheus's) HTTP API, with the client [`http_client::api_client`] builds, and its answers
//! unwrapped or turned into errors carrying the server's own text.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::http_client;

/// The largest answer read into memory: a server (or something else at `--url`) that sends more
/// is refused instead of exhausting memory.
const MAX_ANSWER_BYTES: usize = 1 << 30;

/// The response body as text, refused past `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> anyhow::Result<String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            bail!("the answer is larger than {limit} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

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
                Ok::<_, anyhow::Error>((status, read_limited(resp, MAX_ANSWER_BYTES).await?))
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// Serves one HTTP answer with a `len`-byte body on 127.0.0.1 and returns its URL.
    fn serve_once(len: usize) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n");
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&vec![b'x'; len]);
        });
        format!("http://{addr}/")
    }

    async fn fetch(url: &str, limit: usize) -> anyhow::Result<String> {
        let client = http_client::api_client(None)?;
        let resp = client.get(url).send().await?;
        read_limited(resp, limit).await
    }

    /// An answer past the limit is refused rather than read whole into memory; one at the
    /// limit is read.
    #[tokio::test]
    async fn answers_past_the_limit_are_refused() {
        let err = fetch(&serve_once(64 * 1024), 1024).await.unwrap_err();
        assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
        let body = fetch(&serve_once(1024), 1024).await.unwrap();
        assert_eq!(body.len(), 1024);
    }
}
