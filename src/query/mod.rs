//! PromQL: parsing with `promql-parser` and evaluation over the storage's `Querier`.
//!
//! `query` may use `storage` and `model`; it must never call `api`, `scrape` or `cli`, and
//! never write to storage.

use crate::model::{METRIC_NAME, MatchOp, Matcher, MatcherError};

/// A query or selector that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The text does not parse as PromQL.
    #[error("{0}")]
    Parse(String),
    /// A series selector was expected.
    #[error("{0:?} is not a series selector")]
    NotASelector(String),
    /// A matcher's regex does not compile.
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// Parses a PromQL series selector (`up{job="node"}`, `{__name__=~"go_.*"}`) into matchers,
/// as `match[]` parameters and `--match` flags take them.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, QueryError> {
    use promql_parser::label::MatchOp as P;
    use promql_parser::parser::Expr;
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
    }
}
