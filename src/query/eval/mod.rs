//! Evaluation of a parsed PromQL expression over a range of steps, the way Prometheus's engine
//! does it: every node is evaluated once for the whole step range into one series per label
//! set; selectors read each series once, one series at a time (`Querier::select_each`: it is
//! decoded, all its steps computed, then dropped); per-step operators (functions of instant
//! vectors, aggregations, binary operators) are driven step by step from their children's
//! results, and functions of range vectors slide a window over each series. A folding
//! aggregation directly over a selector or a range function folds each series into its groups
//! as it comes (`streamed_aggregation`), so `sum by (job) (rate(x[5m]))` holds the groups'
//! steps and one input series, never all the samples it reads.
//!
//! `eval` owns the evaluation order, `@` and `offset`, subqueries, the sample limit, deadline
//! checks and name dropping. The operators' semantics live in `functions`, `aggregate` and
//! `binary`. It must never write to storage, and must not hold more than Prometheus would: a
//! node's inputs are released once its output is built, and every buffer sized by a step
//! count is checked against the sample limit first.

mod binseries;
mod names;
mod par;
mod range;
mod select;
mod steps;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::parser::token::T_COUNT_VALUES;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, Offset, VectorSelector,
};

use super::aggregate::{AggParam, Aggregation, RangeSelect, SeriesFold, aggregate};
use super::binary::{VectorBinop, scalar_scalar, vector_scalar, vector_vector};
use super::functions::{Arg, eval_instant};
use super::{Annotations, FPoint, HPoint, Matrix, QueryError, Sample, Series, Value, Vector};
use crate::model::histogram::FloatHistogram;
use crate::model::{Labels, METRIC_NAME, MatchOp, Matcher};
use crate::storage::{Querier, Selected};
pub(crate) use par::Parallel;

/// Where Prometheus reports a timeout or cancellation noticed while evaluating.
const IN_EVALUATION: &str = "expression evaluation";

/// When to give up: a deadline and a flag another thread may raise (the caller went away or
/// its own timer fired first).
#[derive(Debug, Clone, Default)]
pub(crate) struct Deadline {
    at: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
    /// Called at every [`Deadline::check_work`], on whichever thread makes it: a test raises
    /// `cancel` through it at the moment it wants.
    #[cfg(test)]
    on_work: Option<OnWork>,
}

/// A test's hook into [`Deadline::check_work`].
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct OnWork(Arc<dyn Fn() + Send + Sync>);

#[cfg(test)]
impl std::fmt::Debug for OnWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnWork")
    }
}

impl Deadline {
    /// Gives up at `at` (never if `None`), or as soon as `cancel` is raised.
    pub(crate) fn new(at: Option<Instant>, cancel: Option<Arc<AtomicBool>>) -> Deadline {
        Deadline {
            at,
            cancel,
            #[cfg(test)]
            on_work: None,
        }
    }

    /// This deadline, calling `f` at every [`Deadline::check_work`].
    #[cfg(test)]
    pub(crate) fn on_work(self, f: impl Fn() + Send + Sync + 'static) -> Deadline {
        Deadline {
            on_work: Some(OnWork(Arc::new(f))),
            ..self
        }
    }

    /// Fails with Prometheus's timeout error once the deadline has passed or the flag is up.
    pub(crate) fn check(&self, stage: &'static str) -> Result<(), QueryError> {
        let cancelled = self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed));
        if cancelled || self.at.is_some_and(|at| Instant::now() >= at) {
            return Err(QueryError::Timeout(stage));
        }
        Ok(())
    }

    /// Counts `n` more units of work and checks the deadline each time 65,536 have added up,
    /// so a hot loop pays for the clock rarely.
    pub(crate) fn check_work(&self, work: &mut usize, n: usize) -> Result<(), QueryError> {
        #[cfg(test)]
        if let Some(f) = &self.on_work {
            (f.0)();
        }
        *work = work.saturating_add(n);
        if *work >= 1 << 16 {
            *work = 0;
            self.check(IN_EVALUATION)?;
        }
        Ok(())
    }
}

/// The query's own times: what `@ start()`, `@ end()`, `start()`, `end()`, `range()` and
/// `step()` refer to, inside subqueries too.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryTimes {
    /// First evaluation time (ms).
    pub start: i64,
    /// Last evaluation time (ms).
    pub end: i64,
    /// Resolution (ms); 0 for an instant query.
    pub step: i64,
}

/// The limits and switches of one evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// How far back an instant selector looks (ms).
    pub lookback: i64,
    /// Most samples held at once.
    pub max_samples: usize,
    /// Keep `__name__` until the end and drop it from marked samples only.
    pub delayed_name_removal: bool,
    /// Resolution of subqueries written without a step (ms).
    pub subquery_step: i64,
    /// Fold an aggregation directly over a selector or range function series by series, as
    /// its input is read, and select `topk`/`bottomk`/`limitk` from their input's series
    /// without a sample vector per step (off: collect the input first, then aggregate step by
    /// step: the same answer, which tests compare with).
    pub stream_aggregations: bool,
    /// Whether large streamed parts are shared between threads (the answer is the same).
    pub parallel: Parallel,
    /// Evaluate vector/scalar operators and one-to-one vector/vector ones series by series
    /// where that answers as the per-step path does (off: always step by step, the same
    /// answer, which tests compare with).
    pub series_binary: bool,
}

/// The evaluation times of one node: `start`, `start + step`, … up to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: i64,
    end: i64,
    step: i64,
}

impl Range {
    fn instant(t: i64) -> Range {
        Range {
            start: t,
            end: t,
            step: 1,
        }
    }

    /// Number of evaluation times (0 when `end < start`, as an empty subquery window has).
    fn steps(&self) -> usize {
        if self.end < self.start || self.step <= 0 {
            return 0;
        }
        let n = (i128::from(self.end) - i128::from(self.start)) / i128::from(self.step) + 1;
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    fn ts(&self, i: usize) -> i64 {
        self.start
            .saturating_add((i as i64).saturating_mul(self.step))
    }

    /// The last evaluation time actually reached (`end` rounded down onto the grid).
    fn last(&self) -> i64 {
        match self.steps() {
            0 => self.start,
            n => self.ts(n - 1),
        }
    }
}

/// What a node evaluates to inside the evaluator. Instant vectors and scalars are matrices
/// with at most one point per evaluation time (a scalar is one series without labels);
/// range vectors at the top of an instant query are matrices of raw points.
enum Val {
    Matrix(Matrix),
    String(String),
}

/// Evaluates one query.
pub(crate) struct Evaluator<'a> {
    querier: &'a Querier,
    settings: &'a Settings,
    deadline: &'a Deadline,
    times: QueryTimes,
    /// Samples held right now, counted the way Prometheus counts them.
    samples: usize,
    ann: Annotations,
    /// Each node's type and whether it is step-invariant, worked out once: asking the tree at
    /// every node walks its subtree each time, quadratic in a long operator chain.
    nodes: HashMap<*const Expr, Node>,
}

/// What the evaluator asks of a node before evaluating it.
#[derive(Clone, Copy)]
struct Node {
    ty: ValueType,
    invariant: bool,
}

/// Records the [`Node`] of `e` and of everything under it, in one pass.
fn classify(e: &Expr, nodes: &mut HashMap<*const Expr, Node>) -> Node {
    let mut child = |c: &Expr| classify(c, nodes);
    let node = match e {
        Expr::Paren(p) => child(&p.expr),
        Expr::Unary(u) => child(&u.expr),
        Expr::Binary(b) => {
            let (l, r) = (child(&b.lhs), child(&b.rhs));
            Node {
                ty: if l.ty == ValueType::Scalar && r.ty == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                },
                invariant: l.invariant && r.invariant,
            }
        }
        Expr::Aggregate(a) => {
            let inner = child(&a.expr);
            let param = a.param.as_deref().map(&mut child);
            Node {
                ty: ValueType::Vector,
                invariant: inner.invariant && param.is_none_or(|p| p.invariant),
            }
        }
        Expr::Call(c) => {
            let mut args_invariant = true;
            for a in &c.args.args {
                args_invariant &= child(a).invariant;
            }
            Node {
                ty: e.value_type(),
                invariant: call_is_step_invariant(c, args_invariant),
            }
        }
        Expr::Subquery(sq) => {
            child(&sq.expr);
            Node {
                ty: ValueType::Matrix,
                invariant: sq.at.is_some(),
            }
        }
        Expr::VectorSelector(vs) => Node {
            ty: ValueType::Vector,
            invariant: vs.at.is_some(),
        },
        Expr::MatrixSelector(ms) => Node {
            ty: ValueType::Matrix,
            invariant: ms.vs.at.is_some(),
        },
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Node {
            ty: e.value_type(),
            invariant: true,
        },
        Expr::Extension(_) => Node {
            ty: e.value_type(),
            invariant: false,
        },
    };
    nodes.insert(e as *const Expr, node);
    node
}

/// Evaluates `expr` at `times` (an instant query when `times.step` is 0) and shapes the result
/// as Prometheus's API does: an instant query answers with the expression's own type, a range
/// query with a matrix sorted by labels.
pub(crate) fn evaluate(
    querier: &Querier,
    expr: &Expr,
    times: QueryTimes,
    settings: &Settings,
    deadline: &Deadline,
) -> Result<(Value, Annotations), QueryError> {
    let mut ev = Evaluator {
        querier,
        settings,
        deadline,
        times,
        samples: 0,
        ann: Annotations::default(),
        nodes: HashMap::new(),
    };
    classify(expr, &mut ev.nodes);
    let value = ev.top(expr)?;
    Ok((value, ev.ann))
}

impl Evaluator<'_> {
    /// The type of `e`, a node of the query.
    fn ty(&self, e: &Expr) -> ValueType {
        match self.nodes.get(&(e as *const Expr)) {
            Some(n) => n.ty,
            None => e.value_type(),
        }
    }

    /// Whether `e`, a node of the query, evaluates to the same thing at every step.
    fn invariant(&self, e: &Expr) -> bool {
        match self.nodes.get(&(e as *const Expr)) {
            Some(n) => n.invariant,
            None => classify(e, &mut HashMap::new()).invariant,
        }
    }

    fn top(&mut self, expr: &Expr) -> Result<Value, QueryError> {
        self.deadline.check("query execution")?;
        let t = self.times;
        let range = if t.step == 0 {
            Range::instant(t.start)
        } else {
            Range {
                start: t.start,
                end: t.end,
                step: t.step,
            }
        };
        let val = self.eval(expr, range)?;
        let mat = match val {
            Val::String(s) => return Ok(Value::String { t: t.start, s }),
            Val::Matrix(m) => m,
        };
        let delayed = self.settings.delayed_name_removal;
        if t.step == 0 {
            match self.ty(expr) {
                ValueType::Scalar => {
                    let f = mat
                        .first()
                        .and_then(|s| s.floats.first())
                        .map_or(f64::NAN, |p| p.f);
                    return Ok(Value::Scalar(FPoint { t: t.start, f }));
                }
                ValueType::Vector => {
                    let vec: Vector = mat
                        .into_iter()
                        .filter_map(|s| {
                            let (f, h) = match (s.floats.first(), s.histograms.first()) {
                                (Some(p), _) => (p.f, None),
                                (None, Some(h)) => (0.0, Some(h.h.clone())),
                                (None, None) => return None,
                            };
                            Some(Sample {
                                h,
                                metric: s.metric,
                                t: t.start,
                                f,
                                drop_name: s.drop_name,
                            })
                        })
                        .collect();
                    let vec = if delayed {
                        names::cleanup_vector(vec)?
                    } else {
                        vec
                    };
                    return Ok(Value::Vector(vec));
                }
                _ => {}
            }
        }
        let mut mat = if delayed {
            names::cleanup_matrix(mat)?
        } else {
            mat
        };
        mat.retain(|s| !s.is_empty());
        mat.sort_by(|a, b| a.metric.cmp(&b.metric));
        Ok(Value::Matrix(mat))
    }

    /// Fails once the query has run out of time.
    fn check(&self) -> Result<(), QueryError> {
        self.deadline.check(IN_EVALUATION)
    }

    /// Counts `n` more samples held, failing past the limit.
    fn hold(&mut self, n: usize) -> Result<(), QueryError> {
        self.samples = self.samples.saturating_add(n);
        self.within_limit(0)
    }

    /// How many more samples may be held.
    fn budget(&self) -> usize {
        self.settings.max_samples.saturating_sub(self.samples)
    }

    /// Fails if `extra` samples on top of those held would exceed the limit.
    fn within_limit(&self, extra: usize) -> Result<(), QueryError> {
        if self.samples.saturating_add(extra) > self.settings.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        Ok(())
    }

    fn eval(&mut self, expr: &Expr, r: Range) -> Result<Val, QueryError> {
        self.check()?;
        if let Expr::StringLiteral(s) = expr {
            return Ok(Val::String(s.val.clone()));
        }
        if r.steps() == 0 {
            return Ok(Val::Matrix(Vec::new()));
        }
        if r.steps() > 1
            && matches!(self.ty(expr), ValueType::Vector | ValueType::Scalar)
            && self.invariant(expr)
        {
            return self.eval_once_and_repeat(expr, r);
        }
        match expr {
            Expr::NumberLiteral(n) => self.scalar_series(r, |_| n.val).map(Val::Matrix),
            Expr::StringLiteral(s) => Ok(Val::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, r),
            Expr::Unary(u) => {
                let m = self.eval_matrix(&u.expr, r)?;
                self.negate(m).map(Val::Matrix)
            }
            Expr::VectorSelector(vs) => self.vector_selector(vs, r, false).map(Val::Matrix),
            Expr::MatrixSelector(_) | Expr::Subquery(_) => {
                if r.steps() != 1 {
                    return Err(QueryError::Execution(
                        "cannot do range evaluation of a range vector".into(),
                    ));
                }
                self.range_vector(expr, r).map(Val::Matrix)
            }
            Expr::Call(c) => self.call(c, r).map(Val::Matrix),
            Expr::Aggregate(a) => self.aggregation(a, r).map(Val::Matrix),
            Expr::Binary(b) => self.binary(b, r).map(Val::Matrix),
            Expr::Extension(_) => Err(QueryError::Execution(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// Evaluates a node that is not a string literal.
    fn eval_matrix(&mut self, expr: &Expr, r: Range) -> Result<Matrix, QueryError> {
        match self.eval(expr, r)? {
            Val::Matrix(m) => Ok(m),
            Val::String(_) => Err(QueryError::Execution(format!(
                "expected a vector or scalar, got the string {expr}"
            ))),
        }
    }

    /// Evaluates a scalar node into one value per step (NaN where it has none).
    fn eval_scalar(&mut self, expr: &Expr, r: Range) -> Result<Vec<f64>, QueryError> {
        let m = self.eval_matrix(expr, r)?;
        let mut out = vec![f64::NAN; r.steps()];
        if let Some(s) = m.first() {
            for p in &s.floats {
                if let Some(i) = step_index(r, p.t) {
                    out[i] = p.f;
                }
            }
        }
        let held: usize = m.iter().map(|s| s.floats.len()).sum();
        self.samples = self.samples.saturating_sub(held);
        Ok(out)
    }

    /// A node whose value does not depend on the evaluation time (everything it reads is pinned
    /// with `@`, or it is made of literals): evaluated at the first step and repeated, as
    /// Prometheus's step-invariant nodes are.
    fn eval_once_and_repeat(&mut self, expr: &Expr, r: Range) -> Result<Val, QueryError> {
        let once = Range::instant(r.start);
        let mut m = match self.eval(expr, once)? {
            Val::Matrix(m) => m,
            s @ Val::String(_) => return Ok(s),
        };
        let steps = r.steps();
        for s in &mut m {
            if let Some(first) = s.histograms.first().cloned() {
                self.hold(steps - 1)?;
                s.histograms.reserve(steps - 1);
                for i in 1..steps {
                    self.check_every(i)?;
                    s.histograms.push(HPoint {
                        t: r.ts(i),
                        h: first.h.clone(),
                    });
                }
                continue;
            }
            let Some(first) = s.floats.first().copied() else {
                continue;
            };
            self.hold(steps - 1)?;
            s.floats.reserve(steps - 1);
            for i in 1..steps {
                self.check_every(i)?;
                s.floats.push(FPoint {
                    t: r.ts(i),
                    f: first.f,
                });
            }
        }
        Ok(Val::Matrix(m))
    }

    /// Checks the deadline once `n` more units of work (points visited) bring `work` past
    /// 65,536: for loops whose iterations cost very different amounts, such as windows of a
    /// range function, where counting iterations let a timed-out query run on for seconds.
    fn check_work(&self, work: &mut usize, n: usize) -> Result<(), QueryError> {
        self.deadline.check_work(work, n)
    }

    /// Checks the deadline every 1024 iterations of a hot loop.
    fn check_every(&self, i: usize) -> Result<(), QueryError> {
        if i.is_multiple_of(1024) {
            self.check()?;
        }
        Ok(())
    }

    /// A scalar: one series without labels and a point at every step.
    fn scalar_series(
        &mut self,
        r: Range,
        mut value: impl FnMut(usize) -> f64,
    ) -> Result<Matrix, QueryError> {
        let steps = r.steps();
        self.hold(steps)?;
        let mut floats = Vec::with_capacity(steps);
        for i in 0..steps {
            self.check_every(i)?;
            floats.push(FPoint {
                t: r.ts(i),
                f: value(i),
            });
        }
        Ok(vec![Series {
            histograms: Vec::new(),
            metric: Arc::new(Labels::empty()),
            floats,
            drop_name: false,
        }])
    }

    /// Unary minus: negates every value and drops the metric name.
    fn negate(&mut self, mut m: Matrix) -> Result<Matrix, QueryError> {
        for s in &mut m {
            for p in &mut s.floats {
                p.f = -p.f;
            }
            for p in &mut s.histograms {
                let mut h = (*p.h).clone();
                h.mul(-1.0);
                p.h = Arc::new(h);
            }
            s.drop_name = true;
        }
        if self.settings.delayed_name_removal {
            return Ok(m);
        }
        for s in &mut m {
            s.metric = names::without_name(&s.metric);
        }
        names::merge_same_labels(m)
    }

    /// The `@` time of a selector or subquery, in ms.
    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        at.as_ref().map(|a| match a {
            AtModifier::Start => self.times.start,
            AtModifier::End => self.times.end,
            AtModifier::At(t) => system_time_ms(*t),
        })
    }

    /// An instant vector selector over `r`: at each step, the newest sample in the lookback
    /// window `(t - lookback, t]` (after `offset` and `@`), unless it is a staleness marker.
    /// With `stamps`, a point's value is the sample's own timestamp instead of its value (what
    /// `timestamp()` needs).
    fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        r: Range,
        stamps: bool,
    ) -> Result<Matrix, QueryError> {
        let mut out = Vec::new();
        self.vector_selector_each(vs, r, stamps, &mut |e| {
            match e {
                range::Emit::Series(s) => out.push(s),
                range::Emit::Restart => out.clear(),
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Evaluator::vector_selector`] handing each output series to `emit` as soon as it is
    /// built, the stored series read one at a time. The output is counted as held samples (and
    /// left counted) just as if it were collected.
    fn vector_selector_each(
        &mut self,
        vs: &VectorSelector,
        r: Range,
        stamps: bool,
        emit: &mut dyn FnMut(range::Emit) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let lookback = self.settings.lookback;
        let steps = r.steps();
        let (first, last) = match at {
            Some(t) => (t, t),
            None => (r.start, r.last()),
        };
        let mint = first
            .saturating_sub(offset)
            .saturating_sub(lookback)
            .saturating_add(1);
        let maxt = last.saturating_sub(offset);
        let groups = selector_matchers(vs)?;
        let held_before = self.samples;
        stream(self.querier, &groups, mint, maxt, &mut |sel| {
            let s = match sel {
                Selected::Series(s) => s,
                Selected::Restart => {
                    self.samples = held_before;
                    return emit(range::Emit::Restart);
                }
            };
            self.check()?;
            if !s.histograms.is_empty() {
                let (floats, histograms) =
                    self.mixed_selection(&s.samples, &s.histograms, r, at, offset, stamps)?;
                if floats.is_empty() && histograms.is_empty() {
                    return Ok(());
                }
                self.hold(floats.len() + histograms.len())?;
                return emit(range::Emit::Series(Series {
                    metric: Arc::new(s.labels),
                    floats,
                    histograms,
                    drop_name: false,
                }));
            }
            let pick = |x: &crate::model::Sample| {
                if stamps { x.t as f64 } else { x.v }
            };
            let mut floats = Vec::new();
            if let Some(t) = at {
                if let Some(x) = latest(&s.samples, t.saturating_sub(offset), lookback) {
                    self.within_limit(steps)?;
                    floats.reserve_exact(steps);
                    floats.extend((0..steps).map(|i| FPoint {
                        t: r.ts(i),
                        f: pick(x),
                    }));
                }
            } else if let (Some(a), Some(b)) = (s.samples.first(), s.samples.last()) {
                // A sample can only answer steps in [its time, its time + lookback): only those
                // steps are visited, however long the range.
                let span = step_span(
                    r,
                    a.t.saturating_add(offset),
                    b.t.saturating_add(offset).saturating_add(lookback),
                );
                let budget = self.budget();
                floats.reserve_exact(span.len().min(budget.saturating_add(1)));
                let samples = &s.samples;
                let mut j = 0;
                for i in span {
                    self.check_every(i)?;
                    let ts = r.ts(i);
                    let rt = ts.saturating_sub(offset);
                    while j < samples.len() && samples[j].t <= rt {
                        j += 1;
                    }
                    if j == 0 {
                        continue;
                    }
                    let x = &samples[j - 1];
                    if x.t > rt.saturating_sub(lookback) && !crate::model::is_stale_nan(x.v) {
                        if floats.len() == budget {
                            return Err(QueryError::TooManySamples("query execution"));
                        }
                        floats.push(FPoint { t: ts, f: pick(x) });
                    }
                }
            }
            if floats.is_empty() {
                return Ok(());
            }
            self.hold(floats.len())?;
            emit(range::Emit::Series(Series {
                histograms: Vec::new(),
                metric: Arc::new(s.labels),
                floats,
                drop_name: false,
            }))
        })
    }

    /// The steps of an instant selector over a series holding histograms (and maybe floats):
    /// at each step the newest sample of either kind in the lookback window, unless it is a
    /// staleness marker of its kind. With `stamps`, every point is a float holding the
    /// sample's timestamp. The float-only case has its own loop in
    /// [`Evaluator::vector_selector_each`].
    fn mixed_selection(
        &self,
        samples: &[crate::model::Sample],
        histograms: &[crate::model::HistogramSample],
        r: Range,
        at: Option<i64>,
        offset: i64,
        stamps: bool,
    ) -> Result<(Vec<FPoint>, Vec<HPoint>), QueryError> {
        let lookback = self.settings.lookback;
        let budget = self.budget();
        let mut floats = Vec::new();
        let mut hpoints: Vec<HPoint> = Vec::new();
        // Each stored histogram converted once, however many steps repeat it.
        let mut converted: Vec<Option<Arc<FloatHistogram>>> = vec![None; histograms.len()];
        let first = samples
            .first()
            .map_or(i64::MAX, |x| x.t)
            .min(histograms[0].t);
        let last = samples
            .last()
            .map_or(i64::MIN, |x| x.t)
            .max(histograms[histograms.len() - 1].t);
        let span = match at {
            Some(_) => 0..r.steps(),
            None => step_span(
                r,
                first.saturating_add(offset),
                last.saturating_add(offset).saturating_add(lookback),
            ),
        };
        let (mut j, mut k) = (0usize, 0usize);
        for i in span {
            self.check_every(i)?;
            let ts = r.ts(i);
            let rt = at.unwrap_or(ts).saturating_sub(offset);
            if at.is_some() {
                j = samples.partition_point(|x| x.t <= rt);
                k = histograms.partition_point(|x| x.t <= rt);
            } else {
                while j < samples.len() && samples[j].t <= rt {
                    j += 1;
                }
                while k < histograms.len() && histograms[k].t <= rt {
                    k += 1;
                }
            }
            let f = j.checked_sub(1).map(|j| &samples[j]);
            let h = k.checked_sub(1).map(|k| (k, &histograms[k]));
            let newest_is_hist = match (f, h) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(f), Some((_, h))) => h.t > f.t,
            };
            if floats.len() + hpoints.len() >= budget {
                return Err(QueryError::TooManySamples("query execution"));
            }
            if newest_is_hist {
                let Some((k, h)) = h else { continue };
                if h.t <= rt.saturating_sub(lookback) || h.h.is_stale_marker() {
                    continue;
                }
                if stamps {
                    floats.push(FPoint {
                        t: ts,
                        f: h.t as f64,
                    });
                } else {
                    let fh = converted[k]
                        .get_or_insert_with(|| Arc::new(h.h.to_float()))
                        .clone();
                    hpoints.push(HPoint { t: ts, h: fh });
                }
            } else if let Some(x) = f
                && x.t > rt.saturating_sub(lookback)
                && !crate::model::is_stale_nan(x.v)
            {
                floats.push(FPoint {
                    t: ts,
                    f: if stamps { x.t as f64 } else { x.v },
                });
            }
        }
        Ok((floats, hpoints))
    }

    fn call(&mut self, c: &Call, r: Range) -> Result<Matrix, QueryError> {
        let name = c.func.name;
        let args: Vec<&Expr> = c.args.args.iter().map(|a| unparen(a)).collect();
        match name {
            "start" | "end" | "range" | "step" => {
                let t = self.times;
                let v = match name {
                    "start" => t.start as f64 / 1000.0,
                    "end" => t.end as f64 / 1000.0,
                    "range" => t.end.saturating_sub(t.start) as f64 / 1000.0,
                    _ => t.step as f64 / 1000.0,
                };
                return self.scalar_series(r, |_| v);
            }
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" if r.start != r.end => {
                self.ann.warn(
                    "PromQL warning: sort is ineffective for range queries since results are \
                     always ordered by labels",
                );
            }
            _ => {}
        }
        if let Some(mi) = args
            .iter()
            .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
        {
            return self.range_function(c, &args, mi, r);
        }
        if name == "absent" {
            let labels = Arc::new(
                args.first()
                    .map_or_else(Labels::empty, |a| absent_labels(a)),
            );
            let before = self.samples;
            let input = match args.first() {
                Some(a) => self.eval_matrix(a, r)?,
                None => Vec::new(),
            };
            return self.range_eval(r, vec![input], before, move |_, _, ts, mut vecs| {
                let present = vecs.pop().is_some_and(|v| !v.is_empty());
                Ok(if present {
                    Vec::new()
                } else {
                    vec![Sample {
                        h: None,
                        metric: labels.clone(),
                        t: ts,
                        f: 1.0,
                        drop_name: false,
                    }]
                })
            });
        }

        // Per-step function: vector arguments are gathered each step, scalars read from their
        // dense series, strings passed as they are.
        enum Slot {
            Vector(usize),
            Stamps(usize),
            Scalar(Vec<f64>),
            Str(String),
        }
        let before = self.samples;
        let mut inputs = Vec::new();
        let mut slots = Vec::with_capacity(args.len());
        for a in &args {
            match self.ty(a) {
                ValueType::Scalar => slots.push(Slot::Scalar(self.eval_scalar(a, r)?)),
                ValueType::String => match self.eval(a, r)? {
                    Val::String(s) => slots.push(Slot::Str(s)),
                    Val::Matrix(_) => {
                        return Err(QueryError::Execution(format!(
                            "expected a string argument, got {a}"
                        )));
                    }
                },
                _ => {
                    if let (Expr::VectorSelector(vs), "timestamp") = (a, name) {
                        // The stored sample's timestamp, which matrix evaluation would
                        // otherwise replace with the step's.
                        inputs.push(self.vector_selector(vs, r, true)?);
                        slots.push(Slot::Stamps(inputs.len() - 1));
                    } else {
                        inputs.push(self.eval_matrix(a, r)?);
                        slots.push(Slot::Vector(inputs.len() - 1));
                    }
                }
            }
        }
        self.range_eval(r, inputs, before, move |ann, i, ts, vecs| {
            let mut vecs: Vec<Option<Vector>> = vecs.into_iter().map(Some).collect();
            let mut call_args = Vec::with_capacity(slots.len());
            for slot in &slots {
                call_args.push(match slot {
                    Slot::Vector(k) => Arg::Vector(vecs[*k].take().unwrap_or_default()),
                    Slot::Stamps(k) => Arg::Vector(
                        vecs[*k]
                            .take()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|s| Sample {
                                t: s.f as i64,
                                f: 0.0,
                                ..s
                            })
                            .collect(),
                    ),
                    Slot::Scalar(v) => Arg::Scalar(v.get(i).copied().unwrap_or(f64::NAN)),
                    Slot::Str(s) => Arg::String(s.clone()),
                });
            }
            match eval_instant(name, call_args, ts, ann)? {
                Value::Vector(v) => Ok(v),
                Value::Scalar(p) => Ok(vec![Sample {
                    h: None,
                    metric: Arc::new(Labels::empty()),
                    t: ts,
                    f: p.f,
                    drop_name: false,
                }]),
                other => Err(QueryError::Execution(format!(
                    "function {name} returned a {}",
                    other.type_name()
                ))),
            }
        })
    }

    fn aggregation(&mut self, a: &AggregateExpr, r: Range) -> Result<Matrix, QueryError> {
        if let Some(m) = self.streamed_aggregation(a, r)? {
            return Ok(m);
        }
        enum Param {
            None,
            Scalar(Vec<f64>),
            Str(String),
        }
        let before = self.samples;
        let param = match a.param.as_deref().map(unparen) {
            None => Param::None,
            Some(p) if a.op.id() == T_COUNT_VALUES || self.ty(p) == ValueType::String => {
                match self.eval(p, r)? {
                    Val::String(s) => Param::Str(s),
                    Val::Matrix(_) => {
                        return Err(QueryError::Execution(format!(
                            "expected a string parameter for {}, got {p}",
                            a.op
                        )));
                    }
                }
            }
            Some(p) => Param::Scalar(self.eval_scalar(p, r)?),
        };
        let input = self.eval_matrix(&a.expr, r)?;
        let op = a.op;
        let modifier = a.modifier.as_ref();
        // topk, bottomk, limitk: selected from the input's columns, step by step.
        if self.settings.stream_aggregations
            && let Param::Scalar(ks) = &param
            && select::strictly_ordered(&input)
            && let Some(sel) = RangeSelect::new(op, modifier, input.iter().map(|s| &s.metric))
        {
            return self.select_range(sel, r, ks, input, before);
        }
        // Kept across steps, it remembers each series' group; a single step has nothing to
        // remember.
        let mut node = (r.steps() > 1).then(|| Aggregation::new(op, modifier));
        self.range_eval(r, vec![input], before, move |ann, i, ts, mut vecs| {
            let p = match &param {
                Param::None => AggParam::None,
                Param::Scalar(v) => AggParam::Scalar(v.get(i).copied().unwrap_or(f64::NAN)),
                Param::Str(s) => AggParam::String(s.clone()),
            };
            let input = vecs.pop().unwrap_or_default();
            match &mut node {
                Some(node) => node.step(p, input, ts, ann),
                None => aggregate(op, modifier, p, input, ts, ann),
            }
        })
    }

    /// A folding aggregation (`sum`, `avg`, `count`, `group`, `min`, `max`, `stddev`,
    /// `stdvar`) directly over a function of a range vector, such as
    /// `sum by (job) (rate(x[5m]))`, or over an instant vector selector: each series the
    /// function or selector outputs is folded into its group as soon as it is computed, so
    /// only the groups' states and one input series are held, never the whole input. Its answer, its errors and the samples it counts are
    /// those of evaluating the function first and aggregating its output step by step. None
    /// when the aggregation is not of that shape.
    fn streamed_aggregation(
        &mut self,
        a: &AggregateExpr,
        r: Range,
    ) -> Result<Option<Matrix>, QueryError> {
        if !self.settings.stream_aggregations
            || a.param.is_some()
            || (r.steps() > 1 && self.invariant(&a.expr))
        {
            return Ok(None);
        }
        let c = match unparen(&a.expr) {
            Expr::Call(c) => c,
            Expr::VectorSelector(vs) => {
                let Some(mut fold) = SeriesFold::new(a.op, a.modifier.as_ref()) else {
                    return Ok(None);
                };
                self.check()?;
                let (before, ann_before) = (self.samples, self.ann.clone());
                let mut histograms = false;
                self.vector_selector_each(vs, r, false, &mut |e| {
                    histograms |= fold_into(&mut fold, r, e);
                    Ok(())
                })?;
                if histograms {
                    // Histograms are aggregated step by step: start again that way.
                    (self.samples, self.ann) = (before, ann_before);
                    return Ok(None);
                }
                return self.finish_fold(fold, r, before).map(Some);
            }
            _ => return Ok(None),
        };
        let args: Vec<&Expr> = c.args.args.iter().map(|a| unparen(a)).collect();
        let Some(mi) = args
            .iter()
            .position(|a| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_)))
        else {
            return Ok(None);
        };
        if c.func.name == "absent_over_time" {
            return Ok(None);
        }
        let Some(mut fold) = SeriesFold::new(a.op, a.modifier.as_ref()) else {
            return Ok(None);
        };
        self.check()?;
        let (before, ann_before) = (self.samples, self.ann.clone());
        let mut histograms = false;
        let absent = self.range_function_each(c, &args, mi, r, &mut |e| {
            histograms |= fold_into(&mut fold, r, e);
            Ok(())
        })?;
        if histograms {
            (self.samples, self.ann) = (before, ann_before);
            return Ok(None);
        }
        if absent.is_some() {
            return Err(QueryError::Execution(
                "absent_over_time cannot be folded series by series".into(),
            ));
        }
        self.finish_fold(fold, r, before).map(Some)
    }

    /// The output of a streamed aggregation whose input was counted on top of `before`.
    fn finish_fold(
        &mut self,
        fold: SeriesFold<'_>,
        r: Range,
        before: usize,
    ) -> Result<Matrix, QueryError> {
        let mut out = fold.finish(|i| r.ts(i));
        // The function's output stays counted until the aggregation's is complete.
        let total: usize = out.iter().map(|s| s.floats.len()).sum();
        self.within_limit(total)?;
        self.samples = before.saturating_add(total);
        if !self.settings.delayed_name_removal {
            for s in &mut out {
                if s.drop_name {
                    s.metric = names::without_name(&s.metric);
                }
            }
        }
        Ok(out)
    }

    fn binary(&mut self, b: &BinaryExpr, r: Range) -> Result<Matrix, QueryError> {
        let op = b.op;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let before = self.samples;
        match (self.ty(&b.lhs), self.ty(&b.rhs)) {
            (ValueType::Scalar, ValueType::Scalar) => {
                let l = self.eval_scalar(&b.lhs, r)?;
                let rv = self.eval_scalar(&b.rhs, r)?;
                let mut err = None;
                let m = self.scalar_series(r, |i| match scalar_scalar(op, l[i], rv[i]) {
                    Ok(v) => v,
                    Err(e) => {
                        err.get_or_insert(e);
                        f64::NAN
                    }
                })?;
                match err {
                    Some(e) => Err(e),
                    None => Ok(m),
                }
            }
            (ValueType::Vector, ValueType::Scalar) | (ValueType::Scalar, ValueType::Vector) => {
                let scalar_is_lhs = self.ty(&b.lhs) == ValueType::Scalar;
                let (vexpr, sexpr) = if scalar_is_lhs {
                    (&b.rhs, &b.lhs)
                } else {
                    (&b.lhs, &b.rhs)
                };
                let (v, s) = if scalar_is_lhs {
                    let s = self.eval_scalar(sexpr, r)?;
                    (self.eval_matrix(vexpr, r)?, s)
                } else {
                    let v = self.eval_matrix(vexpr, r)?;
                    (v, self.eval_scalar(sexpr, r)?)
                };
                let how = (op, scalar_is_lhs, return_bool);
                let v = match self.vector_scalar_series(r, v, &s, how, before)? {
                    Ok(m) => return Ok(m),
                    Err(v) => v,
                };
                self.range_eval(r, vec![v], before, move |ann, i, _, mut vecs| {
                    let sv = s.get(i).copied().unwrap_or(f64::NAN);
                    vector_scalar(
                        op,
                        vecs.pop().unwrap_or_default(),
                        sv,
                        scalar_is_lhs,
                        return_bool,
                        ann,
                    )
                })
            }
            _ => {
                let l = self.eval_matrix(&b.lhs, r)?;
                let rm = self.eval_matrix(&b.rhs, r)?;
                let modifier = b.modifier.as_ref();
                let (l, rm) = match self.vector_vector_series(r, l, rm, (op, modifier), before)? {
                    Ok(m) => return Ok(m),
                    Err(sides) => sides,
                };
                // Kept across steps, it remembers match groups and result labels; a single
                // step has nothing to remember.
                let mut node = match r.steps() {
                    1 => None,
                    _ => Some(VectorBinop::new(op, modifier)?),
                };
                self.range_eval(r, vec![l, rm], before, move |ann, _, ts, mut vecs| {
                    let rhs = vecs.pop().unwrap_or_default();
                    let lhs = vecs.pop().unwrap_or_default();
                    match &mut node {
                        Some(node) => node.step(lhs, rhs, ts, ann),
                        None => vector_vector(op, lhs, rhs, modifier, ts, ann),
                    }
                })
            }
        }
    }
}

/// Folds one streamed series into `fold`, or empties it when the input starts again. True
/// when the series holds histograms, which folds do not take: the caller aggregates step by
/// step instead.
fn fold_into(fold: &mut SeriesFold<'_>, r: Range, e: range::Emit) -> bool {
    match e {
        range::Emit::Series(s) if !s.histograms.is_empty() => return true,
        range::Emit::Series(s) => fold.add(
            &s.metric,
            s.drop_name,
            s.floats
                .iter()
                .filter_map(|p| Some((step_index(r, p.t)?, p.f))),
        ),
        range::Emit::Restart => fold.clear(),
    }
    false
}

/// Hands `f` the series the matcher sets `groups` of a selector select with samples in
/// [mint, maxt], one at a time in label order (see [`Querier::select_each`]).
fn stream(
    querier: &Querier,
    groups: &[Vec<Matcher>],
    mint: i64,
    maxt: i64,
    f: &mut dyn FnMut(Selected) -> Result<(), QueryError>,
) -> Result<(), QueryError> {
    if mint > maxt {
        return Ok(());
    }
    let groups: Vec<&[Matcher]> = groups.iter().map(Vec::as_slice).collect();
    querier.select_each(&groups, mint, maxt, f)
}

/// The indices of the steps of `r` that lie in [from, until).
fn step_span(r: Range, from: i64, until: i64) -> std::ops::Range<usize> {
    let steps = r.steps();
    if steps == 0 || until <= r.start || from > r.last() || until <= from {
        return 0..0;
    }
    let step = i128::from(r.step);
    let first = if from <= r.start {
        0
    } else {
        (i128::from(from) - i128::from(r.start) + step - 1) / step
    };
    let end = ((i128::from(until) - 1 - i128::from(r.start)) / step + 1).min(steps as i128);
    let first = usize::try_from(first).unwrap_or(usize::MAX);
    let end = usize::try_from(end).unwrap_or(0);
    first.min(end)..end
}

/// Index of time `t` on the grid of `r`, if it is one of its steps.
fn step_index(r: Range, t: i64) -> Option<usize> {
    let off = t.checked_sub(r.start)?;
    if off < 0 || t > r.end || r.step <= 0 || off % r.step != 0 {
        return None;
    }
    usize::try_from(off / r.step).ok()
}

/// The newest sample at or before `t` within the lookback window, unless it is a staleness
/// marker.
fn latest(
    samples: &[crate::model::Sample],
    t: i64,
    lookback: i64,
) -> Option<&crate::model::Sample> {
    let j = samples.partition_point(|x| x.t <= t);
    let x = samples.get(j.checked_sub(1)?)?;
    (x.t > t.saturating_sub(lookback) && !crate::model::is_stale_nan(x.v)).then_some(x)
}

/// Strips any parentheses around an expression.
fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Some(Offset::Neg(d)) => -i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
    }
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The matcher sets of a selector: one, or one per `or` branch; the metric name written before
/// the braces is an equality matcher on `__name__` in each.
fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    use promql_parser::label::MatchOp as P;
    let convert = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, QueryError> {
        let mut out = Vec::with_capacity(ms.len() + 1);
        if let Some(name) = &vs.name
            && !ms.iter().any(|m| m.name == METRIC_NAME)
        {
            out.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
        for m in ms {
            let op = match m.op {
                P::Equal => MatchOp::Equal,
                P::NotEqual => MatchOp::NotEqual,
                P::Re(_) => MatchOp::Regex,
                P::NotRe(_) => MatchOp::NotRegex,
            };
            out.push(Matcher::new(op, m.name.clone(), m.value.clone())?);
        }
        Ok(out)
    };
    if vs.matchers.or_matchers.is_empty() {
        return Ok(vec![convert(&vs.matchers.matchers)?]);
    }
    vs.matchers
        .or_matchers
        .iter()
        .map(|g| {
            let mut all = vs.matchers.matchers.clone();
            all.extend(g.iter().cloned());
            convert(&all)
        })
        .collect()
}

/// The labels `absent()` and `absent_over_time()` report: the equality matchers of the
/// argument's selector (a label matched twice is left out), never `__name__`.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match unparen(arg) {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Labels::empty();
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        let first = !seen.contains(&m.name.as_str());
        seen.push(&m.name);
        pairs.retain(|(n, _)| n != &m.name);
        if first && matches!(m.op, promql_parser::label::MatchOp::Equal) && !m.value.is_empty() {
            pairs.push((m.name.clone(), m.value.clone()));
        }
    }
    pairs.sort();
    Labels::from_sorted_unchecked(pairs)
}

/// Whether a call evaluates to the same thing at every step (Prometheus's step-invariant
/// nodes), given whether its arguments do: every selector in it is pinned with `@`, and no
/// function in it reads the evaluation time.
fn call_is_step_invariant(c: &Call, args_invariant: bool) -> bool {
    match c.func.name {
        // `timestamp(x @ t)` is, `timestamp(abs(x @ t))` is not.
        "timestamp" => c
            .args
            .args
            .iter()
            .all(|a| matches!(unparen(a), Expr::VectorSelector(vs) if vs.at.is_some())),
        // Constants of the query, as Prometheus folds them into literals.
        "start" | "end" | "range" | "step" => true,
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" | "predict_linear" | "time" => false,
        _ => args_invariant,
    }
}
