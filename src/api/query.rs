//! PromQL over HTTP: `/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query` and
//! `/api/v1/query_exemplars`, with Prometheus's parameters, limits and error texts.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use promql_parser::parser::Expr;

use super::params::{MAX_TIME, MIN_TIME, Params, parse_duration_value};
use super::response::{json_response, success};
use super::{ApiError, ApiState, json, now_ms};
use crate::query::{QueryOutput, Value};

/// The `timeout` parameter; a zero or negative one expires at once, as a past deadline does
/// in Prometheus.
fn timeout_param(p: &Params) -> Result<Option<Duration>, ApiError> {
    let ms = p.duration("timeout")?;
    Ok(ms.map(|ms| Duration::from_millis(ms.max(0) as u64)))
}

/// The `lookback_delta` parameter. The engine applies one lookback to every query, so a
/// different one is refused with a warning rather than silently ignored.
fn lookback_warning(s: &ApiState, p: &Params) -> Result<Option<String>, ApiError> {
    let ms = p
        .duration("lookback_delta")
        .map_err(|e| ApiError::bad_data(format!("error parsing lookback delta duration: {e}")))?;
    let engine_ms = s.engine.options().lookback_delta.as_millis() as i64;
    Ok(ms.filter(|&ms| ms != engine_ms && ms != 0).map(|_| {
        format!(
            "lookback_delta is not adjustable per query here; the configured {} was used",
            crate::model::format_duration(engine_ms)
        )
    }))
}

/// Cuts a vector or matrix to `limit` series, as Prometheus's `limit` parameter does.
fn truncate(v: &mut Value, limit: usize) -> bool {
    match v {
        Value::Vector(vec) if limit > 0 && vec.len() > limit => {
            vec.truncate(limit);
            true
        }
        Value::Matrix(m) if limit > 0 && m.len() > limit => {
            m.truncate(limit);
            true
        }
        _ => false,
    }
}

/// Writes a query's success response: run by the engine on the query thread that evaluated
/// it, right after, so the answer is written and freed there (an async worker never spends a
/// large answer's time on it).
fn render(
    started: std::time::Instant,
    limit: usize,
    eval_time: Option<i64>,
    extra: Option<String>,
) -> impl FnOnce(QueryOutput) -> (f64, Vec<u8>) + Send + 'static {
    move |mut out| {
        let evaluated = started.elapsed().as_secs_f64();
        let mut warnings: Vec<String> = extra.into_iter().collect();
        if truncate(&mut out.value, limit) {
            warnings.push("results truncated due to limit".into());
        }
        let body = json::answer(&out.value, &out.annotations, &warnings, eval_time);
        (evaluated, body)
    }
}

/// The response to a query that ran (`res` carries the seconds it took to evaluate and the
/// body), counted in the self-metrics by outcome.
fn respond(
    kind: &str,
    started: std::time::Instant,
    res: Result<(f64, Vec<u8>), crate::query::QueryError>,
) -> Result<Response, ApiError> {
    let (secs, res) = match res {
        Ok((secs, body)) => (secs, Ok(body)),
        Err(e) => (started.elapsed().as_secs_f64(), Err(ApiError::from(e))),
    };
    let outcome = match &res {
        Ok(_) => "success",
        Err(e) => e.kind(),
    };
    crate::telemetry::observe_query(kind, outcome, secs);
    Ok(json_response(StatusCode::OK, res?))
}

pub async fn query(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &headers, &body);
    let limit = p.limit()?;
    let time = p.time("time", now_ms())?;
    let timeout = timeout_param(&p)?;
    let warning = lookback_warning(&s, &p)?;
    let expr = p.get("query").unwrap_or("").to_string();
    let started = std::time::Instant::now();
    let then = render(started, limit, Some(time), warning);
    let res = s
        .engine
        .instant_then(s.db.querier(), expr, time, timeout, then)
        .await;
    respond("instant", started, res)
}

/// `1,000,000` for 1000000, as Prometheus spells its point limit.
fn with_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub async fn query_range(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &headers, &body);
    let limit = p.limit()?;
    let start = p.required_time("start")?;
    let end = p.required_time("end")?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = parse_duration_value(p.get("step").unwrap_or(""))
        .map_err(|e| ApiError::invalid_param("step", e))?;
    if step <= 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    let max_points = s.engine.options().max_points_per_series;
    if (i128::from(end) - i128::from(start)) / i128::from(step) > max_points as i128 {
        return Err(ApiError::bad_data(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            with_thousands(max_points)
        )));
    }
    let timeout = timeout_param(&p)?;
    let warning = lookback_warning(&s, &p)?;
    let expr = p.get("query").unwrap_or("").to_string();
    let started = std::time::Instant::now();
    let then = render(started, limit, None, warning);
    let res = s
        .engine
        .range_then(s.db.querier(), expr, (start, end, step), timeout, then)
        .await;
    respond("range", started, res)
}

/// Parses and formats on a query thread under a query slot: a deep query would overflow an
/// async worker's stack, and `promql-parser`'s own `prettify` is cubic in the depth.
pub async fn format_query(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &headers, &body);
    let expr = p.get("query").unwrap_or("").to_string();
    let text = s
        .engine
        .with_parsed(expr, crate::query::prettify)
        .await
        .map_err(ApiError::from)?;
    Ok(success(text))
}

/// Whether the expression reads any series (Prometheus answers exemplar queries without one
/// with an empty 204).
fn has_selector(e: &Expr) -> bool {
    match e {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
        Expr::Aggregate(a) => has_selector(&a.expr) || a.param.as_deref().is_some_and(has_selector),
        Expr::Unary(u) => has_selector(&u.expr),
        Expr::Binary(b) => has_selector(&b.lhs) || has_selector(&b.rhs),
        Expr::Paren(p) => has_selector(&p.expr),
        Expr::Subquery(s) => has_selector(&s.expr),
        Expr::Call(c) => c.args.args.iter().any(|a| has_selector(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
    }
}

/// tidemark stores no exemplars: a valid request gets an empty list, an invalid one
/// Prometheus's error.
pub async fn query_exemplars(
    State(s): State<Arc<ApiState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::new(&uri, &headers, &body);
    let start = p.time("start", MIN_TIME)?;
    let end = p.time("end", MAX_TIME)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let expr = p.get("query").unwrap_or("").to_string();
    let selects = match s.engine.with_parsed(expr, has_selector).await {
        Ok(selects) => selects,
        Err(crate::query::QueryError::Parse(e)) => return Err(ApiError::bad_data(e)),
        Err(e) => return Err(e.into()),
    };
    if !selects {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(success(Vec::<()>::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(with_thousands(11_000), "11,000");
        assert_eq!(with_thousands(999), "999");
        assert_eq!(with_thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn selectors_found_anywhere() {
        for (q, want) in [
            ("1+1", false),
            ("vector(1)", false),
            ("up", true),
            ("sum by (job) (rate(x[5m]))", true),
            ("topk(3, 1 + -(y))", true),
            ("max_over_time((1 * z)[5m:1m])", true),
            ("\"str\"", false),
        ] {
            let e = promql_parser::parser::parse(q).unwrap();
            assert_eq!(has_selector(&e), want, "{q}");
        }
    }
}
