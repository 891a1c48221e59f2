//! The query engine: limits, the bounded pool queries run on, and the entry points the API and
//! the CLI call. Evaluation itself lives in `eval`.

use std::time::Duration;

use super::{Annotations, QueryError, Value};
use crate::storage::Querier;

/// Limits and defaults of one engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (5m).
    pub lookback_delta: Duration,
    /// Longest a query may run before it is cancelled (2m).
    pub timeout: Duration,
    /// Most samples a query may hold in memory at once (50,000,000).
    pub max_samples: usize,
    /// Most points one series of a range query may have (11,000).
    pub max_points_per_series: usize,
    /// Queries evaluated at once; more wait for a slot (20).
    pub max_concurrent: usize,
    /// Keep `__name__` until the end of the query and drop it only from samples that were
    /// marked (Prometheus's `promql-delayed-name-removal`); off as in Prometheus's default.
    pub delayed_name_removal: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_points_per_series: 11_000,
            max_concurrent: 20,
            delayed_name_removal: false,
        }
    }
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    /// The result.
    pub value: Value,
    /// Warnings and infos collected while evaluating.
    pub annotations: Annotations,
}

/// Evaluates PromQL over a [`Querier`].
#[derive(Debug)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    /// An engine with these limits.
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts }
    }

    /// The limits in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `expr` at `time` (ms) on the calling thread, within the engine's timeout.
    pub fn instant_blocking(
        &self,
        querier: &Querier,
        expr: &str,
        time: i64,
    ) -> Result<QueryOutput, QueryError> {
        let _ = (querier, expr, time);
        Err(QueryError::Execution("not implemented yet".into()))
    }

    /// Evaluates `expr` at every `step` (ms) from `start` to `end` (ms, inclusive) on the calling
    /// thread, within the engine's timeout. The result is always a matrix.
    pub fn range_blocking(
        &self,
        querier: &Querier,
        expr: &str,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryOutput, QueryError> {
        let _ = (querier, expr, start, end, step);
        Err(QueryError::Execution("not implemented yet".into()))
    }

    /// [`Engine::instant_blocking`] on the blocking pool, at most `max_concurrent` at once;
    /// `timeout` (capped by the engine's) cancels it.
    pub async fn instant(
        &self,
        querier: Querier,
        expr: String,
        time: i64,
        timeout: Option<Duration>,
    ) -> Result<QueryOutput, QueryError> {
        let _ = timeout;
        self.instant_blocking(&querier, &expr, time)
    }

    /// [`Engine::range_blocking`] on the blocking pool, as [`Engine::instant`].
    pub async fn range(
        &self,
        querier: Querier,
        expr: String,
        start: i64,
        end: i64,
        step: i64,
        timeout: Option<Duration>,
    ) -> Result<QueryOutput, QueryError> {
        let _ = timeout;
        self.range_blocking(&querier, &expr, start, end, step)
    }
}
