//! Binary operators: arithmetic, comparisons (filtering or `bool`), `atan2` and the set
//! operators, between scalars and vectors, with `on`/`ignoring` and `group_left`/`group_right`
//! matching, at one step.

use promql_parser::parser::BinModifier;
use promql_parser::parser::token::TokenType;

use super::{Annotations, QueryError, Vector};

/// `lhs op rhs` for two scalars; comparisons need `bool` (the parser enforces it) and give 0/1.
pub(crate) fn scalar_scalar(op: TokenType, lhs: f64, rhs: f64) -> Result<f64, QueryError> {
    let _ = (lhs, rhs);
    Err(QueryError::Execution(format!(
        "operator {op} is not implemented yet"
    )))
}

/// `v op s` (or `s op v` when `scalar_is_lhs`) at one step.
pub(crate) fn vector_scalar(
    op: TokenType,
    v: Vector,
    s: f64,
    scalar_is_lhs: bool,
    return_bool: bool,
    ann: &mut Annotations,
) -> Result<Vector, QueryError> {
    let _ = (v, s, scalar_is_lhs, return_bool, ann);
    Err(QueryError::Execution(format!(
        "operator {op} is not implemented yet"
    )))
}

/// `lhs op rhs` for two vectors at one step (evaluation time `t`, ms), matched as `modifier` says.
pub(crate) fn vector_vector(
    op: TokenType,
    lhs: Vector,
    rhs: Vector,
    modifier: Option<&BinModifier>,
    t: i64,
    ann: &mut Annotations,
) -> Result<Vector, QueryError> {
    let _ = (lhs, rhs, modifier, t, ann);
    Err(QueryError::Execution(format!(
        "operator {op} is not implemented yet"
    )))
}
