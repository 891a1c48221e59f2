//! Binary operators: arithmetic, comparisons (filtering or `bool`), `atan2` and the set
//! operators, between scalars and vectors, with `on`/`ignoring` and `group_left`/`group_right`
//! matching and the `fill`/`fill_left`/`fill_right` modifiers, at one step. A
//! [`VectorBinop`] kept for all the steps of a range evaluation remembers match groups and
//! result labels, as Prometheus's evaluator does.
//!
//! This module owns vector matching and its errors, worded as Prometheus words them. It never
//! evaluates expressions or reads storage, and it does not strip `__name__` from samples it
//! marks `drop_name` (the evaluator does, at once or at the end of the query with delayed
//! name removal). Like Prometheus, vector/vector arithmetic removes `__name__` (and the
//! `__type__`/`__unit__` metadata labels) from its results right away.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId, TokenType,
};
use promql_parser::parser::{BinModifier, VectorMatchCardinality};

use super::aggregate::gofmt::labels_string;
use super::aggregate::key::{AddrHasher, KeyOrdinals, KeySpec, PrehashedMap, Slots};
use super::functions::{annotate, hist_equals};
use super::{Annotations, Metric, QueryError, Sample, Vector};
use crate::model::histogram::{CounterResetHint, FloatHistogram};
use crate::model::{Labels, METRIC_NAME};

/// What an operator does with its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `+ - * / % ^ atan2`: a new value, and the metric name no longer applies.
    Arith,
    /// `== != > < >= <=`: a filter, or 0/1 with `bool`.
    Compare,
    /// `and or unless`.
    Set,
}

fn kind(op: TokenType) -> Result<Kind, QueryError> {
    match op.id() {
        T_ADD | T_SUB | T_MUL | T_DIV | T_MOD | T_POW | T_ATAN2 => Ok(Kind::Arith),
        T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE => Ok(Kind::Compare),
        T_LAND | T_LOR | T_LUNLESS => Ok(Kind::Set),
        _ => Err(QueryError::Execution(format!(
            "{op} is not a binary operator"
        ))),
    }
}

#[inline]
fn arith(op: TokenId, l: f64, r: f64) -> f64 {
    match op {
        T_ADD => l + r,
        T_SUB => l - r,
        T_MUL => l * r,
        T_DIV => l / r,
        // Rust's `%` is C's fmod, which is Go's math.Mod: the sign of the dividend.
        T_MOD => l % r,
        T_POW => l.powf(r),
        _ => l.atan2(r),
    }
}

#[inline]
fn compare(op: TokenId, l: f64, r: f64) -> bool {
    match op {
        T_EQLC => l == r,
        T_NEQ => l != r,
        T_GTR => l > r,
        T_LSS => l < r,
        T_GTE => l >= r,
        _ => l <= r,
    }
}

fn btos(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// `lhs op rhs` for two scalars; comparisons need `bool` (the parser enforces it) and give 0/1.
pub(crate) fn scalar_scalar(op: TokenType, lhs: f64, rhs: f64) -> Result<f64, QueryError> {
    match kind(op)? {
        Kind::Arith => Ok(arith(op.id(), lhs, rhs)),
        Kind::Compare => Ok(btos(compare(op.id(), lhs, rhs))),
        Kind::Set => Err(QueryError::Execution(format!(
            "operator {op} not allowed for scalar operations"
        ))),
    }
}

/// `v op s` (or `s op v` when `scalar_is_lhs`) at one step.
///
/// Samples keep their labels and timestamps. Arithmetic and `bool` comparisons mark them
/// `drop_name`; a filtering comparison keeps each passing sample as it is, with the vector's
/// value whichever side the scalar is on.
pub(crate) fn vector_scalar(
    op: TokenType,
    v: Vector,
    s: f64,
    scalar_is_lhs: bool,
    return_bool: bool,
    ann: &mut Annotations,
) -> Result<Vector, QueryError> {
    let kind = kind(op)?;
    if kind == Kind::Set {
        return Err(QueryError::Execution(format!(
            "set operator {op} not allowed in binary scalar expression"
        )));
    }
    let vop = ValueOp {
        op: op.id(),
        kind,
        return_bool,
    };
    let mut v = v;
    v.retain_mut(|smp| {
        if let Some(h) = smp.h.take() {
            let (l, r) = if scalar_is_lhs {
                ((s, None), (0.0, Some(&h)))
            } else {
                ((0.0, Some(&h)), (s, None))
            };
            let Some((f, out, keep)) = with_histograms(op, l, r, ann) else {
                return false;
            };
            if return_bool {
                smp.f = btos(keep);
                smp.drop_name = true;
                return true;
            }
            if !keep {
                return false;
            }
            smp.f = f;
            smp.h = out;
            smp.drop_name |= vop.marks_drop_name();
            return true;
        }
        let (l, r) = if scalar_is_lhs {
            (s, smp.f)
        } else {
            (smp.f, s)
        };
        match vop.apply(l, r, smp.f) {
            Some(f) => {
                smp.f = f;
                smp.drop_name |= vop.marks_drop_name();
                true
            }
            None => false,
        }
    });
    Ok(v)
}

/// `l op r` where at least one side is a histogram, as Prometheus defines it: histograms add
/// and subtract (the difference a gauge), scale by a float (`*` either way round, `/` by the
/// float), and compare with `==`/`!=` (the left one kept); everything else is refused with
/// an info and gives nothing, not even with `bool`. Returns the float, the histogram and
/// whether to keep it (for `bool`, whether the comparison holds); `None` when refused.
pub(crate) fn with_histograms(
    op: TokenType,
    l: (f64, Option<&Arc<FloatHistogram>>),
    r: (f64, Option<&Arc<FloatHistogram>>),
    ann: &mut Annotations,
) -> Option<(f64, Option<Arc<FloatHistogram>>, bool)> {
    let name = op.to_string();
    let refuse = |ann: &mut Annotations, lt: &str, rt: &str| {
        annotate::incompatible_types_in_binop(ann, &name, lt, rt);
        None
    };
    Some(match (l.1, r.1) {
        (None, None) => return None,
        (None, Some(h)) => match op.id() {
            T_MUL => {
                let mut out = (**h).clone();
                out.mul(l.0).compact(0);
                (0.0, Some(Arc::new(out)), true)
            }
            _ => return refuse(ann, "float", "histogram"),
        },
        (Some(h), None) => match op.id() {
            T_MUL | T_DIV => {
                let mut out = (**h).clone();
                if op.id() == T_MUL {
                    out.mul(r.0);
                } else {
                    out.div(r.0);
                }
                out.compact(0);
                (0.0, Some(Arc::new(out)), true)
            }
            _ => return refuse(ann, "histogram", "float"),
        },
        (Some(a), Some(b)) => match op.id() {
            T_ADD | T_SUB => {
                let mut out = (**a).clone();
                let (done, what) = if op.id() == T_ADD {
                    (out.add(b), annotate::HistOp::Add)
                } else {
                    (out.sub(b), annotate::HistOp::Sub)
                };
                match done {
                    Ok(o) => {
                        if o.counter_reset_collision {
                            annotate::counter_reset_collision(ann, what);
                        }
                        if o.nhcb_bounds_reconciled {
                            annotate::mismatched_custom_buckets(ann, what);
                        }
                    }
                    Err(_) => {
                        ann.warn(format!(
                            "PromQL warning: incompatible bucket layout encountered for binary \
                             operator {name}"
                        ));
                        return None;
                    }
                }
                if op.id() == T_SUB {
                    out.counter_reset_hint = CounterResetHint::Gauge;
                }
                out.compact(0);
                (0.0, Some(Arc::new(out)), true)
            }
            T_EQLC => (0.0, Some(a.clone()), hist_equals(a, b)),
            T_NEQ => (0.0, Some(a.clone()), !hist_equals(a, b)),
            _ => return refuse(ann, "histogram", "histogram"),
        },
    })
}

/// An arithmetic operator or comparison applied to one pair of values: what [`vector_scalar`]
/// does to each sample, and a one-to-one [`VectorBinop`] to each matched pair, for evaluating
/// whole series at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValueOp {
    op: TokenId,
    kind: Kind,
    return_bool: bool,
}

impl ValueOp {
    /// `op` (with `bool` if `return_bool`) between a vector and a scalar; `None` for the set
    /// operators (an error with a scalar) and anything that is not a binary operator.
    pub(crate) fn new(op: TokenType, return_bool: bool) -> Option<ValueOp> {
        match kind(op).ok()? {
            Kind::Set => None,
            kind => Some(ValueOp {
                op: op.id(),
                kind,
                return_bool,
            }),
        }
    }

    /// `l op r`, or `None` where a filtering comparison drops the sample; a comparison that
    /// passes keeps `own`, the vector sample's value.
    #[inline]
    pub(crate) fn apply(self, l: f64, r: f64, own: f64) -> Option<f64> {
        if self.kind == Kind::Arith {
            return Some(arith(self.op, l, r));
        }
        let keep = compare(self.op, l, r);
        if self.return_bool {
            Some(btos(keep))
        } else if keep {
            Some(own)
        } else {
            None
        }
    }

    /// Whether a vector/scalar result is marked `drop_name` (arithmetic and `bool`
    /// comparisons); a filtering comparison keeps its sample's mark.
    pub(crate) fn marks_drop_name(self) -> bool {
        self.kind == Kind::Arith || self.return_bool
    }
}

/// `lhs op rhs` for two vectors at one step (evaluation time `t`, ms), matched as `modifier` says.
///
/// A one-step [`VectorBinop`]; an evaluator running many steps of one node should keep a
/// [`VectorBinop`] instead, which remembers match groups and result labels between steps.
pub(crate) fn vector_vector(
    op: TokenType,
    lhs: Vector,
    rhs: Vector,
    modifier: Option<&BinModifier>,
    t: i64,
    ann: &mut Annotations,
) -> Result<Vector, QueryError> {
    VectorBinop::build(op, modifier, false)?.step(lhs, rhs, t, ann)
}

/// Result labels by the addresses of the two label sets they come from.
type ResultCache = HashMap<(usize, usize), (Metric, u64), BuildHasherDefault<AddrHasher>>;

/// One vector/vector operation node across the steps of an evaluation. Like Prometheus's
/// evaluator it numbers the match groups once and caches each result's labels per pair of
/// input series, by the address of their shared label sets: after the first step no labels
/// are hashed or built, and results keep the same `Arc`s from step to step.
pub(crate) struct VectorBinop<'a> {
    op: TokenId,
    token: TokenType,
    /// Annotations of histogram operands met during a step, handed over at its end.
    notes: Annotations,
    kind: Kind,
    /// Match-group ordinals of the series of both sides.
    keys: KeyOrdinals<'a>,
    /// `group_left` or `group_right`.
    many: bool,
    /// `group_right`: the sides are swapped so that the right-hand side is the "one" side.
    swapped: bool,
    /// `group_x (…)` labels, copied from the "one" side.
    include: &'a [String],
    fill_lhs: Option<f64>,
    fill_rhs: Option<f64>,
    return_bool: bool,
    results: ResultCache,
    /// Per match group, the labels of a stand-in for a missing partner.
    fill_metrics: Vec<Option<Metric>>,
    slots: Slots,
}

/// A match group within one step.
struct StepGroup {
    ord: usize,
    /// The "one"-side sample of the group, by index.
    one: Option<usize>,
    /// Results computed for the group so far (filtered ones included).
    results: u32,
}

impl<'a> VectorBinop<'a> {
    /// `op` between two vectors, matched as `modifier` says (`None`: one-to-one on every
    /// label but `__name__`).
    pub(crate) fn new(
        op: TokenType,
        modifier: Option<&'a BinModifier>,
    ) -> Result<Self, QueryError> {
        VectorBinop::build(op, modifier, true)
    }

    fn build(
        op: TokenType,
        modifier: Option<&'a BinModifier>,
        remember: bool,
    ) -> Result<Self, QueryError> {
        let kind = kind(op)?;
        // No `on`/`ignoring`: every label but the name.
        let spec = modifier
            .and_then(|m| m.matching.as_ref())
            .map_or(KeySpec::all_but([]), KeySpec::of);
        let card = modifier.map(|m| &m.card);
        let (many, swapped, include): (bool, bool, &[String]) = match card {
            None | Some(VectorMatchCardinality::OneToOne) => (false, false, &[]),
            Some(VectorMatchCardinality::ManyToOne(ls)) => (true, false, &ls.labels),
            Some(VectorMatchCardinality::OneToMany(ls)) => (true, true, &ls.labels),
            Some(VectorMatchCardinality::ManyToMany) if kind == Kind::Set => (false, false, &[]),
            Some(VectorMatchCardinality::ManyToMany) => {
                return Err(QueryError::Execution(
                    "many-to-many only allowed for set operators".into(),
                ));
            }
        };
        Ok(VectorBinop {
            op: op.id(),
            token: op,
            notes: Annotations::default(),
            kind,
            keys: KeyOrdinals::new(spec, remember),
            many,
            swapped,
            include,
            fill_lhs: modifier.and_then(|m| m.fill_values.lhs),
            fill_rhs: modifier.and_then(|m| m.fill_values.rhs),
            return_bool: modifier.is_some_and(|m| m.return_bool),
            results: ResultCache::default(),
            fill_metrics: Vec::new(),
            slots: Slots::default(),
        })
    }

    /// The operator pair by pair, when this node matches one to one with neither fill nor
    /// set operator: then each result comes from one left-hand and one right-hand sample of
    /// the same match group, and [`ValueOp::apply`] with the left value as its own is what
    /// [`VectorBinop::step`] computes for it.
    pub(crate) fn one_to_one_op(&self) -> Option<ValueOp> {
        let plain = !self.many && self.fill_lhs.is_none() && self.fill_rhs.is_none();
        // `bool` after arithmetic (which the parser refuses) gives 1 here, not the value.
        let simple = match self.kind {
            Kind::Arith => !self.return_bool,
            Kind::Compare => true,
            Kind::Set => false,
        };
        (plain && simple).then_some(ValueOp {
            op: self.op,
            kind: self.kind,
            return_bool: self.return_bool,
        })
    }

    /// The match group (a dense ordinal, the same for both sides) of a series labelled `m`.
    pub(crate) fn group_of(&mut self, m: &Metric) -> usize {
        self.keys.ordinal(m)
    }

    /// The labels of a result of left-hand series `l` with right-hand series `r` (see
    /// [`VectorBinop::one_to_one_op`]), and whether it is marked `drop_name` when the
    /// left-hand sample was (`l_drop`), as [`VectorBinop::step`] labels and marks it.
    pub(crate) fn pair_result(&self, l: &Metric, r: &Metric, l_drop: bool) -> (Metric, bool) {
        let drop_name = self.return_bool || (self.kind == Kind::Compare && l_drop);
        (self.build_result_metric(l, r), drop_name)
    }

    /// One step: `lhs op rhs` at evaluation time `t` (ms).
    ///
    /// Output samples carry `t`. Results keep the order of the left-hand side (the "many"
    /// side for `group_right`), then right-hand samples (`or`, `fill_left`).
    pub(crate) fn step(
        &mut self,
        lhs: Vector,
        rhs: Vector,
        t: i64,
        ann: &mut Annotations,
    ) -> Result<Vector, QueryError> {
        let n = lhs.len() + rhs.len();
        if self.keys.begin_step(n) || self.results.len() > 2 * n + 4096 {
            // The cached results are keyed by addresses only the key cache keeps alive.
            self.results = ResultCache::default();
        }
        let mut out = if self.kind == Kind::Set {
            self.set_op(lhs, rhs)
        } else {
            self.binop(lhs, rhs, t)?
        };
        for s in &mut out {
            s.t = t;
        }
        if self.notes != Annotations::default() {
            ann.merge(std::mem::take(&mut self.notes));
        }
        Ok(out)
    }

    /// Marks the match groups of `v` in `slots`.
    fn mark(&mut self, v: &Vector) -> Vec<usize> {
        let mut marked = Vec::with_capacity(v.len());
        for s in v {
            let ord = self.keys.ordinal(&s.metric);
            if self.slots.get(ord).is_none() {
                self.slots.set(ord, 0);
                marked.push(ord);
            }
        }
        marked
    }

    /// `and`, `or`, `unless`: many-to-many, samples pass through unchanged.
    fn set_op(&mut self, mut lhs: Vector, rhs: Vector) -> Vector {
        match self.op {
            T_LAND | T_LUNLESS => {
                if lhs.is_empty() || rhs.is_empty() {
                    return if self.op == T_LAND {
                        Vector::new()
                    } else {
                        lhs
                    };
                }
                let marked = self.mark(&rhs);
                let keep_matched = self.op == T_LAND;
                lhs.retain(|s| {
                    let ord = self.keys.ordinal(&s.metric);
                    self.slots.get(ord).is_some() == keep_matched
                });
                self.slots.reset(marked);
                lhs
            }
            _ => {
                if lhs.is_empty() {
                    return rhs;
                }
                if rhs.is_empty() {
                    return lhs;
                }
                let marked = self.mark(&lhs);
                for s in rhs {
                    let ord = self.keys.ordinal(&s.metric);
                    if self.slots.get(ord).is_none() {
                        lhs.push(s);
                    }
                }
                self.slots.reset(marked);
                lhs
            }
        }
    }

    /// Arithmetic and comparisons: one-to-one or many-to-one matching, with fills.
    fn binop(&mut self, lhs: Vector, rhs: Vector, t: i64) -> Result<Vector, QueryError> {
        let no_fill = self.fill_lhs.is_none() && self.fill_rhs.is_none();
        if (lhs.is_empty() && rhs.is_empty()) || ((lhs.is_empty() || rhs.is_empty()) && no_fill) {
            return Ok(Vector::new());
        }
        let (lhs, rhs) = if self.swapped { (rhs, lhs) } else { (lhs, rhs) };
        let mut groups: Vec<StepGroup> = Vec::with_capacity(rhs.len());
        let result = self.match_sides(&lhs, &rhs, &mut groups, t);
        self.slots.reset(groups.iter().map(|g| g.ord));
        result
    }

    fn match_sides(
        &mut self,
        lhs: &Vector,
        rhs: &Vector,
        groups: &mut Vec<StepGroup>,
        t: i64,
    ) -> Result<Vector, QueryError> {
        // The right-hand side is the "one" side: one sample per match group.
        let mut rhs_group = Vec::with_capacity(rhs.len());
        for (j, rs) in rhs.iter().enumerate() {
            let ord = self.keys.ordinal(&rs.metric);
            if let Some(g) = self.slots.get(ord) {
                let first = groups[g].one.map_or(rs, |i| &rhs[i]);
                return Err(self.duplicate_error(rs, first));
            }
            self.slots.set(ord, groups.len());
            rhs_group.push(groups.len());
            groups.push(StepGroup {
                ord,
                one: Some(j),
                results: 0,
            });
        }

        // Many-to-one: results per (group, result labels), to refuse a duplicate.
        let mut seen: PrehashedMap<u64, (usize, Metric)> = PrehashedMap::default();
        let mut out = Vector::with_capacity(lhs.len());
        for ls in lhs {
            let ord = self.keys.ordinal(&ls.metric);
            let g = match self.slots.get(ord) {
                Some(g) => g,
                None if self.fill_rhs.is_some() => {
                    // A group only this side has: it still counts matches, so that two
                    // left-hand series filled into the same group are an error.
                    self.slots.set(ord, groups.len());
                    groups.push(StepGroup {
                        ord,
                        one: None,
                        results: 0,
                    });
                    groups.len() - 1
                }
                None => continue,
            };
            let r = match (groups[g].one, self.fill_rhs) {
                (Some(j), _) => self.apply(ls, &rhs[j], &mut groups[g], &mut seen, t)?,
                (None, Some(fill)) => {
                    let filled = self.filled(ls, ord, fill, t);
                    self.apply(ls, &filled, &mut groups[g], &mut seen, t)?
                }
                (None, None) => continue,
            };
            out.extend(r);
        }

        if let Some(fill) = self.fill_lhs {
            for (j, rs) in rhs.iter().enumerate() {
                let g = rhs_group[j];
                if groups[g].results > 0 {
                    continue;
                }
                let filled = self.filled(rs, groups[g].ord, fill, t);
                out.extend(self.apply(&filled, rs, &mut groups[g], &mut seen, t)?);
            }
        }
        Ok(out)
    }

    /// The stand-in for a missing partner of `s` in group `ord`: the group's labels and the
    /// fill value.
    fn filled(&mut self, s: &Sample, ord: usize, fill: f64, t: i64) -> Sample {
        if self.fill_metrics.len() <= ord {
            self.fill_metrics.resize(ord + 1, None);
        }
        let spec = self.keys.spec();
        let metric = self.fill_metrics[ord]
            .get_or_insert_with(|| Arc::new(spec.key_labels(s.metric.as_slice())));
        Sample {
            h: None,
            metric: Arc::clone(metric),
            t,
            f: fill,
            drop_name: false,
        }
    }

    fn duplicate_error(&self, a: &Sample, b: &Sample) -> QueryError {
        let side = if self.swapped { "left" } else { "right" };
        let group = labels_string(&self.keys.spec().key_labels(a.metric.as_slice()));
        let mut dupl = [labels_string(&a.metric), labels_string(&b.metric)];
        dupl.sort();
        QueryError::Execution(format!(
            "found duplicate series for the match group {group} on the {side} hand-side of the \
             operation: [{}, {}];many-to-many matching not allowed: matching labels must be \
             unique on one side",
            dupl[0], dupl[1]
        ))
    }

    /// The result of `ls op rs` in `group` (`ls` from the "many" side), or `None` when a
    /// comparison filters it out. Registers the result even then: a duplicate is an error
    /// whether or not it survives the filter.
    fn apply(
        &mut self,
        ls: &Sample,
        rs: &Sample,
        group: &mut StepGroup,
        seen: &mut PrehashedMap<u64, (usize, Metric)>,
        t: i64,
    ) -> Result<Option<Sample>, QueryError> {
        let (l, r) = if self.swapped { (rs, ls) } else { (ls, rs) };
        let (fl, fr) = (l.f, r.f);
        let mut hist = None;
        let (mut value, keep) = if l.h.is_some() || r.h.is_some() {
            let Some((f, h, keep)) = with_histograms(
                self.token,
                (fl, l.h.as_ref()),
                (fr, r.h.as_ref()),
                &mut self.notes,
            ) else {
                // Refused: no result, and not counted as a match.
                return Ok(None);
            };
            hist = h;
            (f, keep)
        } else {
            match self.kind {
                Kind::Arith => (arith(self.op, fl, fr), true),
                _ => (fl, compare(self.op, fl, fr)),
            }
        };
        if self.return_bool {
            value = btos(keep);
            hist = None;
        }
        let (metric, hash) = self.result_metric(ls, rs);
        if self.many {
            let key = hash ^ (group.ord as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            match seen.get(&key) {
                Some((g, prev)) if *g == group.ord && **prev == *metric => {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
                // A hash collision between different results: not a duplicate.
                Some(_) => {}
                None => {
                    seen.insert(key, (group.ord, Arc::clone(&metric)));
                }
            }
        } else if group.results > 0 {
            return Err(QueryError::Execution(
                "multiple matches for labels: many-to-one matching must be explicit \
                 (group_left/group_right)"
                    .into(),
            ));
        }
        group.results += 1;
        if !keep && !self.return_bool {
            return Ok(None);
        }
        Ok(Some(Sample {
            h: hist,
            metric,
            t,
            f: value,
            // A filtering comparison keeps the "many"-side sample's labels and with them its
            // pending name removal (Prometheus drops that mark here, which with delayed name
            // removal would let a name survive that the immediate mode removes).
            drop_name: self.return_bool || (self.kind == Kind::Compare && ls.drop_name),
        }))
    }

    /// Labels of a result and their hash, cached per pair of input label sets: the "many"
    /// side's labels, without the metric name and metadata labels after arithmetic, reduced
    /// to the `on` labels (or without the `ignoring` ones) when one-to-one, with the
    /// `group_x` labels copied from the "one" side.
    fn result_metric(&mut self, ls: &Sample, rs: &Sample) -> (Metric, u64) {
        let key = (
            Arc::as_ptr(&ls.metric) as usize,
            Arc::as_ptr(&rs.metric) as usize,
        );
        if let Some((m, h)) = self.results.get(&key) {
            return (Arc::clone(m), *h);
        }
        let metric = self.build_result_metric(&ls.metric, &rs.metric);
        let hash = if self.many { metric.stable_hash() } else { 0 };
        // Keyed by addresses, so both label sets must stay alive while the entry exists: the
        // key ordinals hold every input series while they cache, and filled stand-ins live
        // in `fill_metrics`.
        if self.keys.caching() {
            self.results.insert(key, (Arc::clone(&metric), hash));
        }
        (metric, hash)
    }

    fn build_result_metric(&self, l: &Metric, r: &Metric) -> Metric {
        let drop_meta = self.kind == Kind::Arith;
        let spec = self.keys.spec();
        let names = spec.names();
        let on = spec.is_only();
        let one_to_one = !self.many;
        let kept = |n: &str| {
            if drop_meta && is_metadata_label(n) {
                return false;
            }
            if one_to_one {
                let listed = names.binary_search(&n).is_ok();
                return if on { listed } else { !listed };
            }
            true
        };
        let base = l.as_slice();
        let unchanged =
            base.iter().all(|(n, _)| kept(n)) && self.include.iter().all(|n| l.get(n) == r.get(n));
        if unchanged {
            return Arc::clone(l);
        }
        let mut pairs: Vec<(String, String)> =
            base.iter().filter(|(n, _)| kept(n)).cloned().collect();
        for name in self.include {
            let at = pairs.binary_search_by(|(n, _)| n.as_str().cmp(name));
            match (r.get(name), at) {
                (Some(v), Ok(i)) => pairs[i].1 = v.to_string(),
                (Some(v), Err(i)) => pairs.insert(i, (name.clone(), v.to_string())),
                (None, Ok(i)) => {
                    pairs.remove(i);
                }
                (None, Err(_)) => {}
            }
        }
        Arc::new(Labels::from_sorted_unchecked(pairs))
    }
}

/// `__name__` and the type-and-unit metadata labels, which Prometheus removes together.
fn is_metadata_label(n: &str) -> bool {
    n == METRIC_NAME || n == "__type__" || n == "__unit__"
}
