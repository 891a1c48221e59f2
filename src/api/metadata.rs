//! `/api/v1/metadata`: the TYPE, HELP and UNIT of each metric family, as the active targets
//! last exposed them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use serde::Serialize;

use super::params::Params;
use super::response::success;
use super::{ApiError, ApiState};

#[derive(Serialize, PartialEq, Eq, Clone, PartialOrd, Ord)]
struct Entry {
    #[serde(rename = "type")]
    kind: String,
    help: String,
    unit: String,
}

/// `limit` and `limit_per_metric`: a number, negative meaning none (Prometheus's reading).
fn number(p: &Params, key: &str) -> Result<i64, ApiError> {
    match p.get(key) {
        None | Some("") => Ok(-1),
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::bad_data(format!("{key} must be a number"))),
    }
}

pub async fn metadata(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &headers, &axum::body::Bytes::new());
    let limit = number(&p, "limit")?;
    let per_metric = number(&p, "limit_per_metric")?;
    let metric = p.get("metric").filter(|m| !m.is_empty());
    // Unique entries per family, in the order targets reported them.
    let mut families: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    s.targets.metadata(metric, &mut |family, m| {
        let list = families.entry(family.to_string()).or_default();
        if per_metric > 0 && list.len() as i64 >= per_metric {
            return;
        }
        let seen = list
            .iter()
            .any(|e| e.kind == m.kind && e.help == m.help && e.unit == m.unit);
        if !seen {
            list.push(Entry {
                kind: m.kind.to_string(),
                help: m.help.to_string(),
                unit: m.unit.to_string(),
            });
        }
    });
    // Prometheus stops at `limit` families (0 gives none); which ones is up to its map order,
    // here the first by name.
    let families: BTreeMap<String, Vec<Entry>> = match usize::try_from(limit) {
        Ok(n) => families.into_iter().take(n).collect(),
        Err(_) => families,
    };
    Ok(success(families))
}
