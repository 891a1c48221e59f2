//! Range vectors: matrix selectors (read once for the whole step range, one series at a time)
//! and subqueries, and the functions over them, which slide a window `(t - range, t]` along
//! each series and hand on each output series as soon as it is computed.

use std::sync::Arc;

use promql_parser::parser::{Call, Expr, SubqueryExpr};

use super::names::{self, SAME_LABELSET};
use super::{
    Evaluator, Range, absent_labels, duration_ms, offset_ms, selector_matchers, step_span, stream,
    unparen,
};
use crate::model::{Labels, Matcher, is_stale_nan};
use crate::query::functions::{
    RangeFn, Window, eval_range, range_function, series_annotations, validate_range_args,
};
use crate::query::{FPoint, Matrix, Metric, QueryError, Series};
use crate::storage::{Querier, Selected};

/// Where a range vector's points come from.
enum Points<'q> {
    /// Straight from storage, staleness markers still in: read one series at a time when the
    /// range vector is walked.
    Stored {
        querier: &'q Querier,
        groups: Vec<Vec<Matcher>>,
        mint: i64,
        maxt: i64,
    },
    /// A subquery's result: one point per subquery step.
    Computed(Matrix),
}

/// One input series of a range vector as it is walked, or the news that the series walked so
/// far are to be forgotten (a corrupt block was found and left out: the walk starts again).
enum Item<'p> {
    Series(Metric, &'p [FPoint], bool),
    Restart,
}

/// What a function of a range vector hands on as it goes, series by series.
pub(super) enum Emit {
    Series(Series),
    /// Forget what was handed on: the input starts again.
    Restart,
}

/// A range vector ready to be windowed: its points and how a step maps to a window.
struct RangeArg<'q> {
    points: Points<'q>,
    range: i64,
    offset: i64,
    at: Option<i64>,
    /// Samples the evaluator counted for a subquery's result, released when the caller is done.
    held: usize,
}

impl RangeArg<'_> {
    /// The window `(start, end]` of the step at `ts`.
    fn window(&self, ts: i64) -> (i64, i64) {
        let end = self.at.unwrap_or(ts).saturating_sub(self.offset);
        (end.saturating_sub(self.range), end)
    }

    /// Calls `f` with each series' label set, points (no staleness markers) and whether its name
    /// is to be dropped, reusing one buffer for stored series, which are read one at a time.
    fn for_each_series(
        self,
        mut f: impl FnMut(Item<'_>) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        match self.points {
            Points::Stored {
                querier,
                groups,
                mint,
                maxt,
            } => {
                let mut buf: Vec<FPoint> = Vec::new();
                stream(querier, &groups, mint, maxt, &mut |sel| match sel {
                    Selected::Series(s) => {
                        buf.clear();
                        buf.extend(
                            s.samples
                                .iter()
                                .filter(|x| !is_stale_nan(x.v))
                                .map(|x| FPoint { t: x.t, f: x.v }),
                        );
                        drop(s.samples);
                        f(Item::Series(Arc::new(s.labels), &buf, false))
                    }
                    Selected::Restart => f(Item::Restart),
                })?;
            }
            Points::Computed(m) => {
                for s in m {
                    f(Item::Series(s.metric, &s.floats, s.drop_name))?;
                }
            }
        }
        Ok(())
    }
}

/// What a function over a range vector computes per window.
#[derive(Clone, Copy)]
enum Kind {
    Fn(RangeFn),
    /// `absent_over_time`: only whether any series has a point in the window matters.
    Absent,
}

impl<'a> Evaluator<'a> {
    /// The evaluation range of a subquery's inner expression for an outer range `r`: from the
    /// first multiple of the subquery step after `start - offset - range`, to `end - offset`;
    /// with `@`, around that time only.
    fn subquery_range(&self, sq: &SubqueryExpr, r: Range) -> Result<Range, QueryError> {
        let step = match sq.step {
            Some(d) => duration_ms(d),
            None => self.settings.subquery_step,
        };
        if step <= 0 {
            return Err(QueryError::BadData(format!(
                "subquery step must be positive, got {step}ms"
            )));
        }
        let offset = offset_ms(&sq.offset);
        let range = duration_ms(sq.range);
        let (first, last) = match self.at_ms(&sq.at) {
            Some(t) => (t, t),
            None => (r.start, r.last()),
        };
        let after = first.saturating_sub(offset).saturating_sub(range);
        Ok(Range {
            start: after
                .div_euclid(step)
                .saturating_mul(step)
                .saturating_add(step),
            end: last.saturating_sub(offset),
            step,
        })
    }

    /// Prepares a matrix selector (read later, series by series) or evaluates a subquery for
    /// all the windows of `r`.
    fn range_arg(&mut self, e: &Expr, r: Range) -> Result<RangeArg<'a>, QueryError> {
        match unparen(e) {
            Expr::MatrixSelector(ms) => {
                let offset = offset_ms(&ms.vs.offset);
                let at = self.at_ms(&ms.vs.at);
                let range = duration_ms(ms.range);
                let (first, last) = match at {
                    Some(t) => (t, t),
                    None => (r.start, r.last()),
                };
                let mint = first
                    .saturating_sub(offset)
                    .saturating_sub(range)
                    .saturating_add(1);
                let maxt = last.saturating_sub(offset);
                Ok(RangeArg {
                    points: Points::Stored {
                        querier: self.querier,
                        groups: selector_matchers(&ms.vs)?,
                        mint,
                        maxt,
                    },
                    range,
                    offset,
                    at,
                    held: 0,
                })
            }
            Expr::Subquery(sq) => {
                let inner = self.subquery_range(sq, r)?;
                let before = self.samples;
                let m = self.eval_matrix(&sq.expr, inner)?;
                Ok(RangeArg {
                    points: Points::Computed(m),
                    range: duration_ms(sq.range),
                    offset: offset_ms(&sq.offset),
                    at: self.at_ms(&sq.at),
                    held: self.samples.saturating_sub(before),
                })
            }
            other => Err(QueryError::Execution(format!(
                "expected a range vector, got {other}"
            ))),
        }
    }

    /// A range vector as a result (an instant query of `x[5m]` or of a subquery): the raw
    /// points of each series in its window, at their own timestamps.
    pub(super) fn range_vector(&mut self, e: &Expr, r: Range) -> Result<Matrix, QueryError> {
        if let Expr::Subquery(sq) = unparen(e) {
            // The subquery's own steps are the points.
            let inner = self.subquery_range(sq, r)?;
            return self.eval_matrix(&sq.expr, inner);
        }
        let arg = self.range_arg(e, r)?;
        let (start, end) = arg.window(r.start);
        let mut out = Vec::new();
        let mut held = 0usize;
        arg.for_each_series(|item| {
            let (metric, points, drop_name) = match item {
                Item::Series(m, p, d) => (m, p, d),
                Item::Restart => {
                    out.clear();
                    held = 0;
                    return Ok(());
                }
            };
            self.check()?;
            let lo = points.partition_point(|p| p.t <= start);
            let hi = points.partition_point(|p| p.t <= end);
            if lo < hi {
                held += hi - lo;
                self.within_limit(held)?;
                out.push(Series {
                    metric,
                    floats: points[lo..hi].to_vec(),
                    drop_name,
                });
            }
            Ok(())
        })?;
        self.hold(held)?;
        Ok(out)
    }

    /// A function of a range vector (`rate(x[5m])`, `max_over_time(q[1h:5m])`, …): scalar
    /// arguments are evaluated first, then every series is windowed step by step.
    pub(super) fn range_function(
        &mut self,
        c: &Call,
        args: &[&Expr],
        matrix_arg: usize,
        r: Range,
    ) -> Result<Matrix, QueryError> {
        let mut out = Vec::new();
        let absent = self.range_function_each(c, args, matrix_arg, r, &mut |e| {
            match e {
                Emit::Series(s) => out.push(s),
                Emit::Restart => out.clear(),
            }
            Ok(())
        })?;
        Ok(absent.unwrap_or(out))
    }

    /// [`Evaluator::range_function`] handing each output series to `emit` as soon as it is
    /// computed, its input series read one at a time and dropped after: the function's input
    /// is never held whole. The output series are counted as held samples (and left counted)
    /// just as if they were collected. `absent_over_time` answers here instead, in the result.
    pub(super) fn range_function_each(
        &mut self,
        c: &Call,
        args: &[&Expr],
        matrix_arg: usize,
        r: Range,
        emit: &mut dyn FnMut(Emit) -> Result<(), QueryError>,
    ) -> Result<Option<Matrix>, QueryError> {
        let name = c.func.name;
        let kind = if name == "absent_over_time" {
            Kind::Absent
        } else {
            Kind::Fn(range_function(name).ok_or_else(|| {
                QueryError::Execution(format!("function {name} is not supported"))
            })?)
        };
        let mut scalars = Vec::with_capacity(args.len().saturating_sub(1));
        for (i, a) in args.iter().enumerate() {
            if i != matrix_arg {
                scalars.push(self.eval_scalar(a, r)?);
            }
        }
        let arg = self.range_arg(args[matrix_arg], r)?;
        let released = arg.held;
        let steps = r.steps();
        let delayed = self.settings.delayed_name_removal;
        let keeps_name = match kind {
            Kind::Fn(f) => f.keeps_name(),
            Kind::Absent => false,
        };
        // Absent: whether any series had a point in the window, per step.
        let mut present = match kind {
            Kind::Absent => {
                // Its output may have a point at every step.
                self.within_limit(steps)?;
                vec![false; steps]
            }
            Kind::Fn(_) => Vec::new(),
        };
        let (at, offset, range) = (arg.at, arg.offset, arg.range);
        let mut argv: Vec<f64> = Vec::with_capacity(scalars.len());
        let mut work = 0usize;
        // Output label sets so far, to refuse two series with one label set once names are
        // dropped (checked after all series, as when the output was collected first).
        let mut seen = std::collections::HashSet::new();
        let mut duplicate = false;
        // What to go back to if the input starts again.
        let (held_before, ann_before) = (self.samples, self.ann.clone());
        arg.for_each_series(|item| {
            let (metric, points, input_drop) = match item {
                Item::Series(m, p, d) => (m, p, d),
                Item::Restart => {
                    self.samples = held_before;
                    self.ann = ann_before.clone();
                    present.fill(false);
                    seen.clear();
                    duplicate = false;
                    return emit(Emit::Restart);
                }
            };
            self.check()?;
            let (Some(a), Some(b)) = (points.first(), points.last()) else {
                return Ok(());
            };
            // A point is in the windows of the steps in [its time, its time + range), shifted by
            // the offset (all steps or none under `@`): only those steps are visited.
            let span = match at {
                Some(_) => 0..steps,
                None => step_span(
                    r,
                    a.t.saturating_add(offset),
                    b.t.saturating_add(offset).saturating_add(range),
                ),
            };
            let drop_name = !keeps_name || input_drop;
            let budget = self.budget();
            let mut floats = Vec::with_capacity(span.len().min(budget.saturating_add(1)));
            let (mut lo, mut hi) = (0usize, 0usize);
            for i in span {
                let end = at.unwrap_or(r.ts(i)).saturating_sub(offset);
                let start = end.saturating_sub(range);
                while hi < points.len() && points[hi].t <= end {
                    hi += 1;
                }
                while lo < hi && points[lo].t <= start {
                    lo += 1;
                }
                // A window's function reads all of its points: count them, not the steps.
                self.check_work(&mut work, 1 + hi - lo)?;
                if lo == hi {
                    continue;
                }
                let f = match kind {
                    Kind::Absent => {
                        present[i] = true;
                        continue;
                    }
                    Kind::Fn(f) => f,
                };
                self.within_limit(hi - lo)?;
                argv.clear();
                argv.extend(
                    scalars
                        .iter()
                        .map(|s| s.get(i).copied().unwrap_or(f64::NAN)),
                );
                validate_range_args(f, &argv)?;
                let w = Window {
                    points: &points[lo..hi],
                    start,
                    end,
                    eval_t: r.ts(i),
                };
                if let Some(v) = eval_range(f, &w, &argv, &mut self.ann) {
                    if floats.len() == budget {
                        return Err(QueryError::TooManySamples("query execution"));
                    }
                    floats.push(FPoint { t: r.ts(i), f: v });
                }
            }
            if floats.is_empty() {
                return Ok(());
            }
            if let Kind::Fn(f) = kind {
                series_annotations(f, &metric, &mut self.ann);
            }
            self.hold(floats.len())?;
            let metric = if drop_name && !delayed {
                names::without_name(&metric)
            } else {
                metric
            };
            if !delayed && !seen.insert(metric.clone()) {
                duplicate = true;
            }
            emit(Emit::Series(Series {
                metric,
                floats,
                drop_name,
            }))
        })?;
        self.samples = self.samples.saturating_sub(released);
        if let Kind::Absent = kind {
            let floats: Vec<FPoint> = present
                .iter()
                .enumerate()
                .filter(|(_, p)| !**p)
                .map(|(i, _)| FPoint { t: r.ts(i), f: 1.0 })
                .collect();
            if floats.is_empty() {
                return Ok(Some(Vec::new()));
            }
            self.hold(floats.len())?;
            let labels = match unparen(args[matrix_arg]) {
                Expr::MatrixSelector(_) => absent_labels(args[matrix_arg]),
                _ => Labels::empty(),
            };
            return Ok(Some(vec![Series {
                metric: Arc::new(labels),
                floats,
                drop_name: true,
            }]));
        }
        if duplicate {
            return Err(QueryError::Execution(SAME_LABELSET.into()));
        }
        Ok(None)
    }
}
