//! The TSDB admin API, `/api/v1/admin/tsdb/…`: delete series, clean tombstones, snapshot.
//! Off unless the agent enables it; storage work runs on the blocking pool.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::params::Params;
use super::response::{json_response, success};
use super::{ApiError, ApiState, now_ms};

/// Prometheus's body for a disabled admin API, under 403 (Prometheus answers 503; a disabled
/// endpoint is refused, not unavailable for a while).
const DISABLED_BODY: &[u8] =
    br#"{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}"#;

fn disabled() -> Response {
    json_response(StatusCode::FORBIDDEN, DISABLED_BODY.to_vec())
}

/// Runs storage work on the blocking pool; a failure is a 500 saying `context` and the kind of
/// failure (its paths go to the log only).
async fn blocking<T: Send + 'static>(
    context: &'static str,
    f: impl FnOnce() -> Result<T, crate::storage::StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::storage(context, &e)),
        Err(e) => Err(ApiError::internal(format!("{context}: {e}"))),
    }
}

/// `POST|PUT /api/v1/admin/tsdb/delete_series`: `match[]` (one or more), optional `start` and
/// `end` (all time by default). 204 once the deletion is durable.
pub async fn delete_series(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !s.admin_api {
        return Ok(disabled());
    }
    let p = Params::new(&uri, &headers, &body);
    if p.all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let start = p.time("start", i64::MIN)?;
    let end = p.time("end", i64::MAX)?;
    let selectors = p.matchers()?;
    let db = s.db.clone();
    blocking("delete series", move || {
        db.delete_series(&selectors, start, end)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST|PUT /api/v1/admin/tsdb/clean_tombstones`: rewrites the blocks holding deleted data.
pub async fn clean_tombstones(State(s): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    if !s.admin_api {
        return Ok(disabled());
    }
    let db = s.db.clone();
    blocking("clean tombstones", move || db.clean_tombstones()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// 63 random bits, as Prometheus's `rand.Int63()` in snapshot names. Not for secrets: it only
/// keeps two snapshots of the same second apart.
fn random_u63() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.finish() >> 1
}

/// `<YYYYMMDDTHHMMSSZ>-<16 hex digits>`, UTC.
fn snapshot_name(now_ms: i64, random: u64) -> String {
    let rfc = crate::model::format_rfc3339(now_ms);
    let stamp: String = rfc
        .chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{stamp}Z-{random:016x}")
}

/// `POST|PUT /api/v1/admin/tsdb/snapshot?skip_head=<bool>`: a copy of the blocks (and the
/// head unless skipped) under `<data dir>/snapshots/<name>`; answers the name.
pub async fn snapshot(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !s.admin_api {
        return Ok(disabled());
    }
    let p = Params::new(&uri, &headers, &body);
    let skip_head = match p.get("skip_head") {
        None | Some("") => false,
        Some(v) => parse_bool(v).ok_or_else(|| {
            ApiError::invalid_param(
                "skip_head",
                format!(
                    "unable to parse boolean: strconv.ParseBool: parsing {v:?}: invalid syntax"
                ),
            )
        })?,
    };
    let name = snapshot_name(now_ms(), random_u63());
    let dir = s.db.dir().join("snapshots").join(&name);
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::internal(format!("create snapshot directory: {e}")))?;
    let db = s.db.clone();
    let out = dir.clone();
    let r = blocking("create snapshot", move || db.snapshot(&out, !skip_head)).await;
    if r.is_err() {
        // A partial copy is no snapshot; leave nothing that looks like one.
        let _ = std::fs::remove_dir_all(&dir);
    }
    r?;
    Ok(success(serde_json::json!({ "name": name })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_as_prometheus() {
        // 2015-07-01T20:10:51.781Z
        assert_eq!(
            snapshot_name(1_435_781_451_781, 0x1f),
            "20150701T201051Z-000000000000001f"
        );
        assert!(random_u63() < 1 << 63);
        assert_ne!(random_u63(), random_u63());
    }

    #[test]
    fn booleans_as_go_reads_them() {
        assert_eq!(parse_bool("T"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
