//! Prometheus's response envelope: `{"status":"success","data":…}` and the error shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::json;
use crate::query::{Annotations, QueryError};

/// A failed request, rendered as Prometheus renders it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    /// Prometheus's `errorType`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// 400 `bad_data`: the request itself is wrong.
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }

    /// 400 `bad_data` for one parameter: `invalid parameter "start": …`.
    pub fn invalid_param(param: &str, message: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter \"{param}\": {message}"))
    }

    /// 422 `execution`: the request is fine but evaluating it failed.
    pub fn execution(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "execution",
            message: message.into(),
        }
    }

    /// 503 `timeout`: the query ran out of time.
    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "timeout",
            message: message.into(),
        }
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: message.into(),
        }
    }

    /// 500 `internal` for a failing store. The error names files and offsets, which stay in
    /// the log: a client is told what failed, never where on this host's disk.
    pub fn storage(context: &str, e: &crate::storage::StorageError) -> Self {
        tracing::error!(error = %e, context, "storage error answered with 500");
        Self::internal(format!(
            "{context}: {} (the agent's log has the details)",
            storage_kind(e)
        ))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<QueryError> for ApiError {
    /// Prometheus's mapping: what the parser or the arguments reject is the caller's mistake
    /// (400, and the parser's text behind `invalid parameter "query"` as Prometheus reports
    /// what it rejects before evaluating); evaluation failures are 422; running out of time is
    /// 503 `timeout`; a failing store is 500.
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Parse(_) | QueryError::NotASelector(_) | QueryError::Matcher(_) => {
                ApiError::invalid_param("query", e)
            }
            QueryError::BadData(_) => ApiError::bad_data(e.to_string()),
            QueryError::Execution(_) | QueryError::TooManySamples(_) => {
                ApiError::execution(e.to_string())
            }
            QueryError::Timeout(_) => ApiError::timeout(e.to_string()),
            QueryError::Storage(e) => ApiError::storage("reading storage failed", &e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(self.message.len() + 64);
        body.extend_from_slice(b"{\"status\":\"error\",\"errorType\":");
        json::write_str(&mut body, self.kind);
        body.extend_from_slice(b",\"error\":");
        json::write_str(&mut body, &self.message);
        body.push(b'}');
        json_response(self.status, body)
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        ApiError::storage("reading storage failed", &e)
    }
}

/// What kind of storage failure `e` is, in words that name no file.
fn storage_kind(e: &crate::storage::StorageError) -> &'static str {
    use crate::storage::StorageError as E;
    match e {
        E::Wal(_) => "write-ahead log error",
        E::Block(crate::storage::sstable::SstError::Io { .. }) | E::Io { .. } => "I/O error",
        E::Block(_) | E::CorruptChunk { .. } => "corrupt block",
        E::CorruptTombstones { .. } => "corrupt tombstones file",
        E::Locked { .. } => "data directory locked",
        E::UnknownRef(_) | E::EmptyLabels | E::InvalidHistogram(_) => "invalid request to storage",
        E::OutOfBounds { .. } => "sample outside the storable time range",
    }
}

/// A JSON body with its content type.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `{"status":"success","data":data}`.
pub fn success<T: Serialize>(data: T) -> Response {
    success_with_warnings(data, &[])
}

/// `{"status":"success","data":data,"warnings":[…]}`, the list left out when empty.
pub fn success_with_warnings<T: Serialize>(data: T, warnings: &[String]) -> Response {
    let body = json::envelope(&json::to_vec(&data), &Annotations::default(), warnings);
    json_response(StatusCode::OK, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageError;
    use crate::storage::sstable::{Section, SstError};

    #[test]
    fn storage_errors_reach_clients_without_paths() {
        let path = std::path::PathBuf::from("/var/lib/tidemark/blocks/1-2-01H.sst");
        let errors = || {
            [
                StorageError::Block(SstError::Corrupt {
                    path: path.clone(),
                    section: Section::Chunks,
                    offset: 8,
                    reason: "chunk CRC32C mismatch".into(),
                }),
                StorageError::CorruptChunk {
                    path: path.clone(),
                    offset: 8,
                    reason: "truncated".into(),
                },
                StorageError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("input/output error"),
                },
            ]
        };
        for (direct, through_query) in errors().into_iter().zip(errors()) {
            // The error itself names the file, for the log.
            assert!(direct.to_string().contains("/var/lib/tidemark"));
            for api in [
                ApiError::from(direct),
                ApiError::from(QueryError::Storage(through_query)),
            ] {
                assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
                assert_eq!(api.kind(), "internal");
                assert!(
                    !api.message.contains("/var/lib") && !api.message.contains(".sst"),
                    "{}",
                    api.message
                );
                assert!(api.message.contains("log"), "{}", api.message);
            }
        }
    }
}
