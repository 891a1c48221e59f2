//! Aggregation operators (`sum`, `topk`, `quantile`, `count_values`, `limitk`, …) over one
//! step's instant vector.

use promql_parser::parser::LabelModifier;
use promql_parser::parser::token::TokenType;

use super::{Annotations, QueryError, Vector};

/// The parameter of `topk`, `quantile`, `count_values`, `limitk`, … evaluated at this step.
#[derive(Debug, Clone)]
pub(crate) enum AggParam {
    /// The operator takes none.
    None,
    /// A number (`topk`'s k, `quantile`'s φ, `limit_ratio`'s ratio).
    Scalar(f64),
    /// `count_values`' label name.
    String(String),
}

/// Aggregates `input` (one step, evaluation time `t` in ms) with the operator `op`,
/// grouped by `modifier` (`by`/`without`; none means everything in one group).
pub(crate) fn aggregate(
    op: TokenType,
    modifier: Option<&LabelModifier>,
    param: AggParam,
    input: Vector,
    t: i64,
    ann: &mut Annotations,
) -> Result<Vector, QueryError> {
    let _ = (modifier, param, input, t, ann);
    Err(QueryError::Execution(format!(
        "aggregation {op} is not implemented yet"
    )))
}
