//! Series and label metadata: `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use super::params::Params;
use super::response::success_with_warnings;
use super::{ApiError, ApiState};
use crate::model::{Labels, Matcher, is_valid_label_name};

fn range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p.time("start", i64::MIN)?;
    let end = p.time("end", i64::MAX)?;
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

/// Cuts `v` to `limit` entries (0 is no limit); the warning says when something was cut.
fn truncate<T>(mut v: Vec<T>, limit: usize) -> (Vec<T>, Vec<String>) {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        return (v, vec!["results truncated due to limit".to_string()]);
    }
    (v, Vec::new())
}

pub async fn series(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &headers, &body);
    if p.all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let limit = p.limit()?;
    let (start, end) = range(&p)?;
    let selectors = p.matchers()?;
    let q = s.db.querier();
    let mut all: Vec<Labels> = Vec::new();
    for m in &selectors {
        all.extend(q.series(m, start, end)?);
    }
    all.sort_unstable();
    all.dedup();
    let (all, mut warnings) = truncate(all, limit);
    warnings.extend(q.warnings());
    let data: Vec<serde_json::Map<String, serde_json::Value>> = all
        .iter()
        .map(|l| {
            l.iter()
                .map(|(n, v)| (n.to_string(), serde_json::Value::String(v.to_string())))
                .collect()
        })
        .collect();
    Ok(success_with_warnings(data, &warnings))
}

/// Union over selectors (or everything without any) of the strings `f` draws from a querier,
/// and the querier's warnings (blocks it left out as corrupt).
fn union(
    s: &ApiState,
    selectors: &[Vec<Matcher>],
    f: impl Fn(
        &crate::storage::Querier,
        &[Matcher],
    ) -> Result<Vec<String>, crate::storage::StorageError>,
) -> Result<(Vec<String>, Vec<String>), ApiError> {
    let q = s.db.querier();
    let mut out = Vec::new();
    if selectors.is_empty() {
        out = f(&q, &[])?;
    } else {
        for m in selectors {
            out.extend(f(&q, m)?);
        }
        out.sort_unstable();
        out.dedup();
    }
    Ok((out, q.warnings()))
}

pub async fn labels(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &headers, &body);
    let limit = p.limit()?;
    let (start, end) = range(&p)?;
    let selectors = p
        .matchers()
        .map_err(|e| ApiError::bad_data(e.to_string()))?;
    let (names, skipped) = union(&s, &selectors, |q, m| q.label_names(m, start, end))?;
    let (names, mut warnings) = truncate(names, limit);
    warnings.extend(skipped);
    Ok(success_with_warnings(names, &warnings))
}

pub async fn label_values(
    State(s): State<Arc<ApiState>>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &headers, &Bytes::new());
    if !is_valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let limit = p.limit()?;
    let (start, end) = range(&p)?;
    let selectors = p
        .matchers()
        .map_err(|e| ApiError::bad_data(e.to_string()))?;
    let (values, skipped) = union(&s, &selectors, |q, m| q.label_values(&name, m, start, end))?;
    let (values, mut warnings) = truncate(values, limit);
    warnings.extend(skipped);
    Ok(success_with_warnings(values, &warnings))
}
