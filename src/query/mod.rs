//! PromQL: parsing with `promql-parser` and evaluation over the storage's `Querier`.
//!
//! `query` may use `storage` and `model`; it must never call `api`, `scrape` or `cli`, and
//! never write to storage.

mod aggregate;
mod binary;
mod engine;
mod eval;
mod functions;
mod guard;
mod pretty;
mod value;

pub use engine::{Engine, EngineOptions, QueryOutput};
pub use guard::{MAX_DEPTH, parse};
pub use pretty::prettify;
pub use value::{Annotations, FPoint, HPoint, Matrix, Metric, Sample, Series, Value, Vector};

use crate::model::{METRIC_NAME, MatchOp, Matcher, MatcherError};

/// Why a query could not be answered. The API maps each kind to Prometheus's status code and
/// `errorType`: parse and argument errors are 400 `bad_data`, evaluation errors 422
/// `execution`, a timeout 503 `timeout`, a storage failure 500 `internal`.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text does not parse as PromQL; the message carries the parser's position.
    #[error("{0}")]
    Parse(String),
    /// A series selector was expected.
    #[error("{0:?} is not a series selector")]
    NotASelector(String),
    /// A matcher's regex does not compile.
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    /// The query is well-formed but asks for something invalid (an `@` time out of range, a
    /// zero subquery step, an invalid label name for `label_replace`…): 400 `bad_data`.
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed the way Prometheus fails it (many-to-many matching, duplicate series
    /// after dropping labels…): 422 `execution`.
    #[error("{0}")]
    Execution(String),
    /// The query would hold more samples in memory than allowed: 422 `execution`.
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran longer than its timeout: 503 `timeout`.
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// Reading the store failed: 500 `internal`.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// Parses a PromQL series selector (`up{job="node"}`, `{__name__=~"go_.*"}`) into matchers,
/// as `match[]` parameters and `--match` flags take them. A selector has no nesting, so
/// anything nested deeper than 32 levels is refused before parsing, and the
/// parse is cheap enough for any thread.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, QueryError> {
    use promql_parser::label::MatchOp as P;
    use promql_parser::parser::Expr;
    guard::check(s, guard::MAX_SELECTOR_DEPTH)?;
    guard::check_durations(s)?;
    let expr = promql_parser::parser::parse(s).map_err(QueryError::Parse)?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(QueryError::NotASelector(s.to_string()));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(QueryError::NotASelector(s.to_string()));
    }
    let mut out = Vec::new();
    let has_name_matcher = vs.matchers.matchers.iter().any(|m| m.name == METRIC_NAME);
    if let Some(name) = vs.name.as_ref().filter(|_| !has_name_matcher) {
        out.push(Matcher::equal(METRIC_NAME, name.clone()));
    }
    for m in &vs.matchers.matchers {
        let op = match m.op {
            P::Equal => MatchOp::Equal,
            P::NotEqual => MatchOp::NotEqual,
            P::Re(_) => MatchOp::Regex,
            P::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(op, m.name.clone(), m.value.clone())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_become_matchers() {
        let m = parse_selector(r#"up{job="node",instance=~"a.*"}"#).unwrap();
        let s: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert!(s.contains(&r#"__name__="up""#.to_string()), "{s:?}");
        assert!(s.contains(&r#"instance=~"a.*""#.to_string()));
        assert_eq!(parse_selector(r#"{__name__=~"go_.*"}"#).unwrap().len(), 1);
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector("up{").is_err());
        // A `match[]` on an async worker must not reach the parser's panicking conversions.
        for bad in ["x[1e30]", "x offset Inf", "x[5m:NaN]"] {
            let err = parse_selector(bad).unwrap_err().to_string();
            assert!(err.contains("duration out of range"), "{bad}: {err}");
        }
    }
}
