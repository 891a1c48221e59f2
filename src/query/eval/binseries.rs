//! Binary operators evaluated series by series instead of step by step: a vector with a
//! scalar, and two vectors matched one to one. Each output series then comes from one input
//! series (or one matched pair) with its values mapped or its points filtered, so there is no
//! per-step vector to build and no output to file by label set.
//!
//! Taken only where the answer is the per-step driver's ([`Evaluator::range_eval`]) to the bit,
//! which needs every output series to have a label set of its own (the step path would merge
//! two, or fail at their first common step) and, for two vectors, at most one series per match
//! group on each side over the whole range (otherwise steps can fail as many-to-many or
//! many-to-one). Otherwise the inputs go back to the caller for the step path. What is
//! reproduced: output order (by the first step a series has a point at, then input order;
//! later folds add in that order), `drop_name` marks and the name dropped at once unless name
//! removal is delayed, series left without points left out, and the sample limit (inputs held
//! plus outputs so far, the same error whenever the step path would fail it).

use std::collections::HashSet;

use promql_parser::parser::BinModifier;
use promql_parser::parser::token::TokenType;

use super::names::without_name;
use super::select::strictly_ordered;
use super::{Evaluator, Range, step_index};
use crate::query::binary::{ValueOp, VectorBinop};
use crate::query::{FPoint, Matrix, Metric, QueryError, Series};

/// What the caller gets: the answer, or the inputs back for the step path.
pub(super) type OrInputs<T> = Result<Result<Matrix, T>, QueryError>;

/// One output series and the first step it has a point at.
struct Built {
    series: Series,
    first: usize,
}

impl Evaluator<'_> {
    /// `v op s` (`s op v` when `scalar_is_lhs`), `s` holding the scalar's value per step, or
    /// `v` back when the step path must answer. `before` is the sample count from before the
    /// operands were evaluated; `v` is counted as held.
    pub(super) fn vector_scalar_series(
        &mut self,
        r: Range,
        v: Matrix,
        s: &[f64],
        (op, scalar_is_lhs, return_bool): (TokenType, bool, bool),
        before: usize,
    ) -> OrInputs<Matrix> {
        let vop = match ValueOp::new(op, return_bool) {
            Some(vop) if self.settings.series_binary => vop,
            _ => return Ok(Err(v)),
        };
        if !strictly_ordered(&v) {
            return Ok(Err(v));
        }
        let outputs: Vec<(Metric, bool)> = v
            .iter()
            .map(|x| {
                let drop = vop.marks_drop_name() || x.drop_name;
                (self.named(&x.metric, drop), drop)
            })
            .collect();
        if !distinct(&outputs) {
            return Ok(Err(v));
        }
        let mut out = Outputs::new(self, v.len())?;
        for (x, (metric, drop_name)) in v.into_iter().zip(outputs) {
            out.check(self, x.floats.len())?;
            // The output takes the input's points in place: mapped, or filtered out.
            let mut floats = x.floats;
            let mut first = None;
            floats.retain_mut(|p| {
                let Some(i) = step_index(r, p.t) else {
                    return false;
                };
                let sv = s.get(i).copied().unwrap_or(f64::NAN);
                let (a, b) = if scalar_is_lhs { (sv, p.f) } else { (p.f, sv) };
                match vop.apply(a, b, p.f) {
                    Some(f) => {
                        first.get_or_insert(i);
                        *p = FPoint { t: r.ts(i), f };
                        true
                    }
                    None => false,
                }
            });
            out.add(self, first, metric, floats, drop_name)?;
        }
        Ok(Ok(out.finish(self, before)))
    }

    /// `l op rm` matched as `modifier` says, or both back when the step path must answer
    /// (not one-to-one arithmetic or comparison, a match group with two series on a side, or
    /// two results with one label set). `before` as for [`Evaluator::vector_scalar_series`].
    pub(super) fn vector_vector_series(
        &mut self,
        r: Range,
        l: Matrix,
        rm: Matrix,
        (op, modifier): (TokenType, Option<&BinModifier>),
        before: usize,
    ) -> OrInputs<(Matrix, Matrix)> {
        if !self.settings.series_binary {
            return Ok(Err((l, rm)));
        }
        // A node the step path refuses to build fails there, with its own words.
        let Ok(mut node) = VectorBinop::new(op, modifier) else {
            return Ok(Err((l, rm)));
        };
        let Some(vop) = node.one_to_one_op() else {
            return Ok(Err((l, rm)));
        };
        if !strictly_ordered(&l) || !strictly_ordered(&rm) {
            return Ok(Err((l, rm)));
        }
        let Some(pairs) = pairs(&mut node, &l, &rm) else {
            return Ok(Err((l, rm)));
        };
        let outputs: Vec<(Metric, bool)> = pairs
            .iter()
            .map(|&(i, j)| {
                let (m, drop) = node.pair_result(&l[i].metric, &rm[j].metric, l[i].drop_name);
                (self.named(&m, drop), drop)
            })
            .collect();
        if !distinct(&outputs) {
            return Ok(Err((l, rm)));
        }
        let mut out = Outputs::new(self, pairs.len())?;
        let mut l = l;
        for (&(i, j), (metric, drop_name)) in pairs.iter().zip(outputs) {
            // The output takes the left-hand series' points in place: each is written at or
            // before the point it comes from.
            let mut a = std::mem::take(&mut l[i].floats);
            let b = &rm[j].floats;
            out.check(self, a.len() + b.len())?;
            let mut first = None;
            let (mut x, mut y, mut kept) = (0, 0, 0);
            while let (Some(&pa), Some(&pb)) = (a.get(x), b.get(y)) {
                if pa.t < pb.t {
                    x += 1;
                    continue;
                }
                if pb.t < pa.t {
                    y += 1;
                    continue;
                }
                x += 1;
                y += 1;
                let Some(k) = step_index(r, pa.t) else {
                    continue;
                };
                if let Some(f) = vop.apply(pa.f, pb.f, pa.f) {
                    first.get_or_insert(k);
                    a[kept] = FPoint { t: r.ts(k), f };
                    kept += 1;
                }
            }
            a.truncate(kept);
            out.add(self, first, metric, a, drop_name)?;
        }
        Ok(Ok(out.finish(self, before)))
    }

    /// `m` as a result marked `drop` is filed: without its name unless removal is delayed.
    fn named(&self, m: &Metric, drop: bool) -> Metric {
        if drop && !self.settings.delayed_name_removal {
            without_name(m)
        } else {
            m.clone()
        }
    }
}

/// The series being built, and the samples held: the inputs, counted before this started,
/// plus the outputs so far.
struct Outputs {
    built: Vec<Built>,
    held: usize,
    total: usize,
    work: usize,
}

impl Outputs {
    /// Checks the deadline and the limit as the step path does before its first output (it
    /// always has a first step).
    fn new(ev: &Evaluator<'_>, capacity: usize) -> Result<Outputs, QueryError> {
        ev.check()?;
        ev.within_limit(0)?;
        Ok(Outputs {
            built: Vec::with_capacity(capacity),
            held: ev.samples,
            total: 0,
            work: 0,
        })
    }

    /// Counts the points of the next series towards the deadline, checked each time 65,536
    /// (and series) have added up.
    fn check(&mut self, ev: &Evaluator<'_>, points: usize) -> Result<(), QueryError> {
        ev.check_work(&mut self.work, points.saturating_add(1))
    }

    /// One output series, which has its first point at step `first` (`None`: no points, no
    /// series). The step path counts each step's outputs on top of what is held and fails as
    /// soon as that passes the limit; the count only grows, so failing once the total so far
    /// passes it fails exactly when the step path does, with its error.
    fn add(
        &mut self,
        ev: &mut Evaluator<'_>,
        first: Option<usize>,
        metric: Metric,
        floats: Vec<FPoint>,
        drop_name: bool,
    ) -> Result<(), QueryError> {
        let Some(first) = first else {
            return Ok(());
        };
        self.total = self.total.saturating_add(floats.len());
        if self.held.saturating_add(self.total) > ev.settings.max_samples {
            ev.samples = self.held.saturating_add(self.total);
            return ev.within_limit(0);
        }
        self.built.push(Built {
            series: Series {
                histograms: Vec::new(),
                metric,
                floats,
                drop_name,
            },
            first,
        });
        Ok(())
    }

    /// The series in the step path's order: by the step each first has a point at, then in
    /// input order (a stable sort of input order). The inputs are released, leaving the
    /// samples counted `before` them plus the output.
    fn finish(mut self, ev: &mut Evaluator<'_>, before: usize) -> Matrix {
        #[cfg(test)]
        ANSWERED.with(|n| n.set(n.get() + 1));
        self.built.sort_by_key(|b| b.first);
        ev.samples = before.saturating_add(self.total);
        self.built.into_iter().map(|b| b.series).collect()
    }
}

#[cfg(test)]
thread_local! {
    /// Operators this thread answered series by series, for tests that check which path ran.
    pub(super) static ANSWERED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether no two outputs share a label set.
fn distinct(outputs: &[(Metric, bool)]) -> bool {
    let mut seen = HashSet::with_capacity(outputs.len());
    outputs.iter().all(|(m, _)| seen.insert(&**m))
}

/// The (left, right) series pairs of each match group, in left-hand order, or `None` when a
/// group has two series on one side anywhere in the range.
fn pairs(node: &mut VectorBinop<'_>, l: &Matrix, rm: &Matrix) -> Option<Vec<(usize, usize)>> {
    let groups = l.len() + rm.len();
    let mut right: Vec<Option<usize>> = vec![None; groups];
    for (j, x) in rm.iter().enumerate() {
        let g = node.group_of(&x.metric);
        if right.get_mut(g)?.replace(j).is_some() {
            return None;
        }
    }
    let mut left = vec![false; groups];
    let mut out = Vec::with_capacity(l.len().min(rm.len()));
    for (i, x) in l.iter().enumerate() {
        let g = node.group_of(&x.metric);
        if std::mem::replace(left.get_mut(g)?, true) {
            return None;
        }
        if let Some(j) = right[g] {
            out.push((i, j));
        }
    }
    Some(out)
}
