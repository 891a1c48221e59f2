//! One remote's HTTP side: the POST remote write 1.0 prescribes, and what each answer means.
//!
//! 2xx is success. 5xx, 429 (when `retry_on_http_429`) and every failure before an answer
//! (refused connection, timeout, reset) are retried, with `Retry-After` honoured when the
//! backend sends it. Any other status (4xx, a redirect not followed) drops the batch: sending
//! it again would get the same answer.

use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};

use crate::config::{RemoteWriteConfig, url_without_userinfo};
use crate::http_client::{self, Authorization, BasicAuth, BuildError, ClientSettings, USER_AGENT};
use crate::model::parse_time;

/// The protocol version header remote write 1.0 sends.
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";
/// Its value for remote write 1.0.
pub const VERSION: &str = "0.1.0";
/// Most bytes of an error answer kept for the log.
const MAX_ERROR_BODY: usize = 1024;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TLS or HTTP client settings were refused.
    #[error("remote_write {url}: {source}")]
    Build {
        /// The endpoint, without user name and password.
        url: String,
        /// What was wrong.
        #[source]
        source: BuildError,
    },
    /// The URL or a header does not parse.
    #[error("remote_write {url}: {reason}")]
    Invalid {
        /// The endpoint, without user name and password.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again; `after` is the backend's `Retry-After`, if it sent one.
    Retry {
        /// The wait the backend asked for.
        after: Option<Duration>,
        /// What happened, for the log.
        reason: String,
    },
    /// Never worth retrying: the batch is dropped.
    Drop {
        /// The status and the start of the answer, for the log.
        reason: String,
    },
}

/// Posts snappy-compressed WriteRequests to one endpoint.
pub struct Sender {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
    timeout: Duration,
    retry_on_429: bool,
}

impl Sender {
    /// Builds the client for `rw`; TLS files are read now.
    pub fn new(rw: &RemoteWriteConfig) -> Result<Sender, ClientError> {
        // Errors are logged and answered to /-/reload: the URL without its credentials.
        let shown = url_without_userinfo(&rw.url);
        let invalid = |reason: String| ClientError::Invalid {
            url: shown.clone(),
            reason,
        };
        let url = Url::parse(&rw.url).map_err(|e| invalid(e.to_string()))?;
        let c = ClientSettings::from_config(
            rw.basic_auth.as_ref(),
            rw.authorization.as_ref(),
            &rw.tls_config,
        );
        let client = http_client::client(&c.tls, rw.follow_redirects).map_err(|source| {
            ClientError::Build {
                url: shown.clone(),
                source,
            }
        })?;
        let mut headers = HeaderMap::new();
        for (k, v) in &rw.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| invalid(format!("invalid header name {k:?}")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| invalid(format!("invalid value for header {k}")))?;
            headers.insert(name, value);
        }
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        headers.insert(VERSION_HEADER, HeaderValue::from_static(VERSION));
        Ok(Sender {
            client,
            url,
            headers,
            basic_auth: c.basic_auth,
            authorization: c.authorization,
            timeout: rw.remote_timeout.to_std(),
            retry_on_429: rw.queue_config.retry_on_http_429,
        })
    }

    /// Sends one request body; `attempt` counts earlier tries of the same batch.
    pub async fn send(&self, body: Vec<u8>, attempt: u32) -> Result<(), SendError> {
        let mut req = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .timeout(self.timeout)
            .body(body);
        if attempt > 0 {
            req = req.header("Retry-Attempt", attempt.to_string());
        }
        if let Some(b) = &self.basic_auth {
            let user = b
                .username
                .read()
                .map_err(|e| secret_error("username", &e))?;
            let password = match &b.password {
                Some(p) => p.read().map_err(|e| secret_error("password", &e))?,
                None => String::new(),
            };
            req = req.basic_auth(user, Some(password));
        }
        if let Some(a) = &self.authorization {
            let cred = a
                .credentials
                .read()
                .map_err(|e| secret_error("credentials", &e))?;
            let mut v = HeaderValue::from_str(&format!("{} {cred}", a.kind)).map_err(|_| {
                SendError::Drop {
                    reason: "authorization credentials are not a valid header value".into(),
                }
            })?;
            v.set_sensitive(true);
            req = req.header(header::AUTHORIZATION, v);
        }
        let resp = req.send().await.map_err(|e| SendError::Retry {
            after: None,
            reason: error_chain(&e),
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // The answer is read (a little of it) so the connection can be reused.
        let mut text = Vec::new();
        let mut resp = resp;
        while text.len() < MAX_ERROR_BODY {
            match resp.chunk().await {
                Ok(Some(c)) => text.extend_from_slice(&c),
                _ => break,
            }
        }
        text.truncate(MAX_ERROR_BODY);
        classify(
            status,
            retry_after,
            &String::from_utf8_lossy(&text),
            self.retry_on_429,
        )
    }
}

fn secret_error(what: &str, e: &std::io::Error) -> SendError {
    // A credentials file may be being rotated: try again.
    SendError::Retry {
        after: None,
        reason: format!("unable to read the {what} file: {e}"),
    }
}

/// What an answer means for the batch.
pub fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
    retry_on_429: bool,
) -> Result<(), SendError> {
    if status.is_success() {
        return Ok(());
    }
    let reason = format!("server returned HTTP status {status}: {}", body.trim());
    if status.is_server_error() || (retry_on_429 && status == StatusCode::TOO_MANY_REQUESTS) {
        Err(SendError::Retry {
            after: retry_after,
            reason,
        })
    } else {
        Err(SendError::Drop { reason })
    }
}

/// `Retry-After` as seconds or an HTTP date; a date in the past means no wait was asked.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = parse_http_date(v)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    (at > now).then(|| Duration::from_millis((at - now) as u64))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) in milliseconds since the epoch.
fn parse_http_date(v: &str) -> Option<i64> {
    let (_, rest) = v.split_once(", ")?;
    let mut p = rest.split(' ');
    let (day, mon, year, time, zone) = (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
    if zone != "GMT" || p.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| *x == mon)? + 1;
    let day: u32 = day.parse().ok()?;
    let year: u32 = year.parse().ok()?;
    parse_time(&format!("{year:04}-{m:02}-{day:02}T{time}Z")).ok()
}

/// An error and its causes joined by `: `.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let t = c.to_string();
        if parts.last().is_none_or(|l| !l.contains(&t)) {
            parts.push(t);
        }
        cause = c.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_as_prometheus_does() {
        let ok = |c: u16, r429| classify(StatusCode::from_u16(c).unwrap(), None, "", r429);
        assert_eq!(ok(200, true), Ok(()));
        assert_eq!(ok(204, true), Ok(()));
        for c in [500, 502, 503, 504] {
            assert!(matches!(ok(c, false), Err(SendError::Retry { .. })), "{c}");
        }
        assert!(matches!(ok(429, true), Err(SendError::Retry { .. })));
        assert!(matches!(ok(429, false), Err(SendError::Drop { .. })));
        for c in [400, 401, 403, 404, 409, 413, 301] {
            assert!(matches!(ok(c, true), Err(SendError::Drop { .. })), "{c}");
        }
        let r = classify(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(Duration::from_secs(7)),
            " busy \n",
            true,
        );
        assert_eq!(
            r,
            Err(SendError::Retry {
                after: Some(Duration::from_secs(7)),
                reason: "server returned HTTP status 503 Service Unavailable: busy".into()
            })
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("17"), Some(Duration::from_secs(17)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 CET"), None);
        let later = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT").unwrap();
        assert!(later > Duration::from_secs(86_400 * 365));
    }
}
