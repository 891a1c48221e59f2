//! Health, readiness, build and runtime information, configuration, flags, TSDB status,
//! targets, and the (empty) rules and alerts.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::params::Params;
use super::response::success;
use super::{ApiError, ApiState};
use crate::model::Health;

/// The Prometheus API level tidemark implements. Grafana switches features on the reported
/// version (below 2.24 it avoids the `match[]` label APIs), so this is what `version` says;
/// tidemark's own version is in `tidemarkVersion`.
pub const PROMETHEUS_API_VERSION: &str = "2.53.0";

pub async fn healthy() -> &'static str {
    "tidemark is Healthy.\n"
}

pub async fn ready(State(s): State<Arc<ApiState>>) -> Response {
    if s.is_ready() {
        "tidemark is Ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
    }
}

/// Prometheus's answer to a lifecycle endpoint while the lifecycle API is off.
fn lifecycle_off() -> Response {
    (StatusCode::FORBIDDEN, "Lifecycle API is not enabled.").into_response()
}

/// GET on `/-/reload` or `/-/quit`, answered as Prometheus does.
pub async fn lifecycle_get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "Only POST or PUT requests allowed",
    )
        .into_response()
}

/// Asks the agent to shut down as SIGTERM does; the response is sent before it stops.
pub async fn quit(State(s): State<Arc<ApiState>>) -> Response {
    let Some(tx) = &s.quit else {
        return lifecycle_off();
    };
    // One request is enough: later ones (or ones racing it) find the slot taken or the
    // agent gone.
    match tx.try_send(()) {
        Ok(()) => "Requesting termination... Goodbye!".into_response(),
        Err(_) => "Termination already in progress.".into_response(),
    }
}

pub async fn reload(State(s): State<Arc<ApiState>>) -> Response {
    let Some(tx) = &s.reload else {
        return lifecycle_off();
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    if tx.send(reply).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    match rx.await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}"),
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response(),
    }
}

pub async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    let (active, _) = s.targets.targets();
    let mut counts = std::collections::BTreeMap::<(String, Health), u64>::new();
    for t in active {
        *counts.entry((t.scrape_pool, t.health)).or_default() += 1;
    }
    let counts =
        crate::telemetry::TargetCounts(counts.into_iter().map(|((j, h), n)| (j, h, n)).collect());
    let start = s
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let body = crate::telemetry::render(&s.db, &counts, start);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::telemetry::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

pub async fn buildinfo() -> Response {
    success(json!({
        "version": PROMETHEUS_API_VERSION,
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
        "tidemarkVersion": env!("CARGO_PKG_VERSION"),
    }))
}

pub async fn config(State(s): State<Arc<ApiState>>) -> Response {
    let yaml = crate::sync::read(&s.config_yaml).clone();
    success(json!({ "yaml": yaml }))
}

pub async fn runtimeinfo(State(s): State<Arc<ApiState>>) -> Response {
    let started = crate::model::format_rfc3339(
        s.started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    );
    let wal = s.db.wal_stats();
    success(json!({
        "startTime": started,
        "CWD": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": true,
        "lastConfigTime": started,
        "storageRetention": "",
        "walSegments": wal.segments,
        "headSeries": s.db.head().num_series(),
    }))
}

#[derive(serde::Deserialize)]
pub struct TargetsQuery {
    state: Option<String>,
    #[serde(rename = "scrapePool")]
    scrape_pool: Option<String>,
}

pub async fn targets(
    State(s): State<Arc<ApiState>>,
    Query(q): Query<TargetsQuery>,
) -> Result<Response, ApiError> {
    let (mut active, mut dropped) = s.targets.targets();
    if let Some(pool) = q.scrape_pool.as_deref().filter(|p| !p.is_empty()) {
        active.retain(|t| t.scrape_pool == pool);
        dropped.retain(|t| t.scrape_pool == pool);
    }
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for d in &dropped {
        *counts.entry(d.scrape_pool.clone()).or_default() += 1;
    }
    let state = q.state.as_deref().unwrap_or("any").to_ascii_lowercase();
    let (show_active, show_dropped) = match state.as_str() {
        "active" => (true, false),
        "dropped" => (false, true),
        "any" | "" => (true, true),
        other => return Err(ApiError::bad_data(format!("invalid state {other:?}"))),
    };
    let mut data = serde_json::Map::new();
    if show_active {
        data.insert("activeTargets".into(), json!(active));
    }
    if show_dropped {
        data.insert("droppedTargets".into(), json!(dropped));
        data.insert("droppedTargetCounts".into(), json!(counts));
    }
    Ok(success(data))
}

/// The effective settings under Prometheus's flag names.
pub async fn flags(State(s): State<Arc<ApiState>>) -> Response {
    success(&s.flags)
}

/// Most entries `/api/v1/status/tsdb` may be asked for.
const MAX_TSDB_LIMIT: usize = 10_000;

pub async fn tsdb(State(s): State<Arc<ApiState>>, uri: Uri) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &HeaderMap::new(), &Bytes::new());
    let limit = match p.get("limit") {
        None | Some("") => 10,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_TSDB_LIMIT).contains(&n) => n,
            Ok(n) if n > MAX_TSDB_LIMIT => {
                return Err(ApiError::bad_data(format!(
                    "limit must not exceed {MAX_TSDB_LIMIT}"
                )));
            }
            _ => return Err(ApiError::bad_data("limit must be a positive number")),
        },
    };
    let head = s.db.head();
    let st = head.postings_stats(crate::model::METRIC_NAME, limit);
    // An empty head reports the inverted range Prometheus's empty head has.
    let (min_time, max_time) = head.time_range().unwrap_or((i64::MAX, i64::MIN));
    let list = |v: Vec<(String, u64)>| -> Vec<serde_json::Value> {
        v.into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect()
    };
    Ok(success(json!({
        "headStats": {
            "numSeries": head.num_series(),
            "numLabelPairs": st.num_label_pairs,
            "chunkCount": head.num_chunks(),
            "minTime": min_time,
            "maxTime": max_time,
        },
        "seriesCountByMetricName": list(st.series_count_by_metric_name),
        "labelValueCountByLabelName": list(st.label_value_count_by_label_name),
        "memoryInBytesByLabelName": list(st.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": list(st.series_count_by_label_value_pair),
    })))
}

/// No rules are evaluated yet: an empty list of groups, with Prometheus's check of `type`.
pub async fn rules(uri: Uri) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &HeaderMap::new(), &Bytes::new());
    p.matchers()
        .map_err(|e| ApiError::bad_data(e.to_string()))?;
    let kind = p.get("type").unwrap_or_default().to_ascii_lowercase();
    if !matches!(kind.as_str(), "" | "alert" | "record") {
        return Err(ApiError::invalid_param(
            "type",
            format!("not supported value {kind:?}"),
        ));
    }
    Ok(success(json!({ "groups": [] })))
}

/// No alerting rules: no alerts.
pub async fn alerts() -> Response {
    success(json!({ "alerts": [] }))
}
