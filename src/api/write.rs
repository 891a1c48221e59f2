//! `POST /api/v1/write`: Prometheus remote write 1.0 into local storage, off unless
//! `web.enable_remote_write_receiver` is set. Answers as Prometheus's receiver does: 204 when
//! everything was stored, plain-text errors otherwise — 400 for a body that does not decode and
//! for refused samples (so the sender drops the batch rather than retrying it), 415 for another
//! protocol or encoding, 500 when storage fails (the sender retries; nothing was stored).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::{error, warn};

use super::{ApiState, now_ms};
use crate::remote_write::receive::{self, ReceiveError};

/// The media type of a remote write body.
const PROTOBUF: &str = "application/x-protobuf";
/// The `proto` parameter naming remote write 1.0's message.
const V1_MESSAGE: &str = "prometheus.WriteRequest";
/// Remote write 2.0's message, which this receiver does not take.
const V2_MESSAGE: &str = "io.prometheus.write.v2.Request";

pub(super) async fn write(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Prometheus checks readiness first: a sender retries a 503, so nothing sent while the
    // agent starts or stops is lost.
    if !s.is_ready() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    if !s.remote_write_receiver {
        return text(
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with web.enable_remote_write_receiver: true",
        );
    }
    if let Err(why) = check_headers(&headers) {
        return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, &why.to_string());
    }
    let db = s.db.clone();
    let now = now_ms();
    let outcome = tokio::task::spawn_blocking(move || receive::receive(&db, &body, now)).await;
    match outcome {
        Ok(Ok(r)) => {
            crate::telemetry::observe_remote_write(&r);
            match r.rejection() {
                None => StatusCode::NO_CONTENT.into_response(),
                Some(why) => {
                    warn!(reason = %why, "remote write request partly refused");
                    text(StatusCode::BAD_REQUEST, &why)
                }
            }
        }
        Ok(Err(ReceiveError::Storage(e))) => {
            // The sender retries a 500, and may: a failed commit stored nothing. Paths in the
            // error stay in the log, not in a response to a remote client.
            error!(error = %e, "storing a remote write request failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storing the request failed; nothing of it was stored (the agent's log says why)",
            )
        }
        Ok(Err(e)) => {
            let status = match e {
                ReceiveError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            warn!(error = %e, status = status.as_u16(), "remote write request refused");
            text(status, &e.to_string())
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("remote write ingestion failed: {e}"),
        ),
    }
}

/// Why a request is not remote write 1.0 over snappy (415).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Unsupported {
    #[error("{0} is not ASCII")]
    NotAscii(header::HeaderName),
    #[error("expected {PROTOBUF} as the first (media) part, got {content_type} content-type")]
    MediaType { content_type: String },
    #[error("expected parameters to be key-values, got {param} in {content_type} content-type")]
    Parameter { param: String, content_type: String },
    #[error(
        "{V2_MESSAGE} protobuf message is not accepted by this server; accepted [{V1_MESSAGE}]"
    )]
    RemoteWrite2,
    #[error(
        "got {content_type} content type; unknown remote write protobuf message {message}, supported: {V1_MESSAGE}"
    )]
    UnknownMessage {
        message: String,
        content_type: String,
    },
    #[error("{0} encoding (compression) is not accepted by this server; only snappy is acceptable")]
    Encoding(String),
}

/// Remote write 1.0 over snappy, or why not. A missing `Content-Type` or `Content-Encoding` is
/// taken as 1.0 and snappy, as Prometheus does for early senders that set neither.
fn check_headers(headers: &HeaderMap) -> Result<(), Unsupported> {
    let header_str = |name: header::HeaderName| -> Result<&str, Unsupported> {
        match headers.get(&name).map(|v| v.to_str()) {
            None => Ok(""),
            Some(Ok(v)) => Ok(v.trim()),
            Some(Err(_)) => Err(Unsupported::NotAscii(name)),
        }
    };
    let content_type = header_str(header::CONTENT_TYPE)?;
    if !content_type.is_empty() {
        let mut parts = content_type.split(';');
        let media = parts.next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(PROTOBUF) {
            return Err(Unsupported::MediaType {
                content_type: content_type.into(),
            });
        }
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                return Err(Unsupported::Parameter {
                    param: p.into(),
                    content_type: content_type.into(),
                });
            };
            if k.trim() != "proto" {
                continue;
            }
            match v.trim() {
                V1_MESSAGE => {}
                V2_MESSAGE => return Err(Unsupported::RemoteWrite2),
                other => {
                    return Err(Unsupported::UnknownMessage {
                        message: other.into(),
                        content_type: content_type.into(),
                    });
                }
            }
        }
    }
    let encoding = header_str(header::CONTENT_ENCODING)?;
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("snappy") {
        return Err(Unsupported::Encoding(encoding.into()));
    }
    Ok(())
}

/// A plain-text error, as Go's `http.Error` writes it.
fn text(status: StatusCode, message: &str) -> Response {
    let mut r = (status, format!("{message}\n")).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(n.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn content_type_and_encoding_are_checked_like_prometheus() {
        let ct = header::CONTENT_TYPE;
        let ce = header::CONTENT_ENCODING;
        let ok = [
            headers(&[]),
            headers(&[(ct.clone(), "application/x-protobuf")]),
            headers(&[
                (
                    ct.clone(),
                    "application/x-protobuf; proto=prometheus.WriteRequest",
                ),
                (ce.clone(), "snappy"),
            ]),
            headers(&[
                (ct.clone(), "Application/X-Protobuf;charset=x"),
                (ce.clone(), "SNAPPY"),
            ]),
        ];
        for h in &ok {
            assert_eq!(check_headers(h), Ok(()), "{h:?}");
        }
        let bad = [
            (
                headers(&[(ct.clone(), "application/json")]),
                "expected application/x-protobuf",
            ),
            (
                headers(&[(
                    ct.clone(),
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                )]),
                "io.prometheus.write.v2.Request protobuf message is not accepted",
            ),
            (
                headers(&[(ct.clone(), "application/x-protobuf;proto=foo.Bar")]),
                "unknown remote write protobuf message foo.Bar",
            ),
            (
                headers(&[(ct.clone(), "application/x-protobuf;proto")]),
                "expected parameters to be key-values",
            ),
            (
                headers(&[(ce.clone(), "gzip")]),
                "gzip encoding (compression) is not accepted",
            ),
        ];
        for (h, want) in &bad {
            let got = check_headers(h).unwrap_err().to_string();
            assert!(got.contains(want), "{h:?}: {got}");
        }
    }
}
