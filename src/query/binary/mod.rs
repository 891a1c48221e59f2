//! Binary operators: arithmetic, comparisons (filtering or `bool`), `atan2` and the set
//! operators, between scalars and vectors, with `on`/`ignoring` and `group_left`/`group_right`
//! matching and the `fill`/`fill_left`/`fill_right` modifiers, at one step.
//!
//! This module owns vector matching and its errors, worded as Prometheus words them. It never
//! evaluates expressions or reads storage, and it does not strip `__name__` from samples it
//! marks `drop_name` (the evaluator does, at once or at the end of the query with delayed
//! name removal). Like Prometheus, vector/vector arithmetic removes `__name__` (and the
//! `__type__`/`__unit__` metadata labels) from its results right away.

#[cfg(test)]
mod tests;

use std::sync::Arc;

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB, TokenId, TokenType,
};
use promql_parser::parser::{BinModifier, LabelModifier, VectorMatchCardinality};

use super::aggregate::gofmt::labels_string;
use super::aggregate::key::{KeyIndex, KeySpec, PrehashedMap};
use super::{Annotations, Metric, QueryError, Sample, Vector};
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
    _ann: &mut Annotations,
) -> Result<Vector, QueryError> {
    let kind = kind(op)?;
    if kind == Kind::Set {
        return Err(QueryError::Execution(format!(
            "set operator {op} not allowed in binary scalar expression"
        )));
    }
    let op = op.id();
    let mut v = v;
    v.retain_mut(|smp| {
        let (l, r) = if scalar_is_lhs {
            (s, smp.f)
        } else {
            (smp.f, s)
        };
        if kind == Kind::Arith {
            smp.f = arith(op, l, r);
            smp.drop_name = true;
            return true;
        }
        let keep = compare(op, l, r);
        if return_bool {
            smp.f = btos(keep);
            smp.drop_name = true;
            return true;
        }
        keep
    });
    Ok(v)
}

/// `lhs op rhs` for two vectors at one step (evaluation time `t`, ms), matched as `modifier` says.
///
/// `None` stands for no modifier at all (one-to-one, matching on every label but
/// `__name__`). Output samples carry `t`. Results keep the order of the left-hand side
/// (the "many" side for `group_right`), then right-hand samples (`or`, `fill_left`).
pub(crate) fn vector_vector(
    op: TokenType,
    lhs: Vector,
    rhs: Vector,
    modifier: Option<&BinModifier>,
    t: i64,
    _ann: &mut Annotations,
) -> Result<Vector, QueryError> {
    let kind = kind(op)?;
    let default = BinModifier::default();
    let m = modifier.unwrap_or(&default);
    let spec = match &m.matching {
        Some(LabelModifier::Include(ls)) => KeySpec::only(ls.labels.iter().map(String::as_str)),
        Some(LabelModifier::Exclude(ls)) => KeySpec::all_but(ls.labels.iter().map(String::as_str)),
        None => KeySpec::all_but([]),
    };
    let mut out = match kind {
        Kind::Set => set_op(op.id(), lhs, rhs, &spec),
        _ => Binop::new(op.id(), kind, m, &spec, t)?.run(lhs, rhs)?,
    };
    for s in &mut out {
        s.t = t;
    }
    Ok(out)
}

/// The ordinals of the distinct match keys of `v`, with one representative each.
fn index_keys(spec: &KeySpec<'_>, v: &Vector, buf: &mut Vec<u8>) -> (KeyIndex, Vec<Metric>) {
    let mut index = KeyIndex::with_capacity(v.len());
    let mut reps: Vec<Metric> = Vec::with_capacity(v.len());
    for s in v {
        let pairs = s.metric.as_slice();
        let hash = spec.hash(pairs, buf);
        let (_, new) = index.find_or_insert(hash, |o| spec.same_key(pairs, reps[o].as_slice()));
        if new {
            reps.push(Arc::clone(&s.metric));
        }
    }
    (index, reps)
}

fn has_key(
    spec: &KeySpec<'_>,
    (index, reps): &(KeyIndex, Vec<Metric>),
    s: &Sample,
    buf: &mut Vec<u8>,
) -> bool {
    let pairs = s.metric.as_slice();
    let hash = spec.hash(pairs, buf);
    index
        .find(hash, |o| spec.same_key(pairs, reps[o].as_slice()))
        .is_some()
}

/// `and`, `or`, `unless`: many-to-many, samples pass through unchanged.
fn set_op(op: TokenId, mut lhs: Vector, rhs: Vector, spec: &KeySpec<'_>) -> Vector {
    let mut buf = Vec::with_capacity(256);
    match op {
        T_LAND => {
            if lhs.is_empty() || rhs.is_empty() {
                return Vector::new();
            }
            let right = index_keys(spec, &rhs, &mut buf);
            lhs.retain(|s| has_key(spec, &right, s, &mut buf));
            lhs
        }
        T_LUNLESS => {
            if lhs.is_empty() || rhs.is_empty() {
                return lhs;
            }
            let right = index_keys(spec, &rhs, &mut buf);
            lhs.retain(|s| !has_key(spec, &right, s, &mut buf));
            lhs
        }
        _ => {
            if lhs.is_empty() {
                return rhs;
            }
            if rhs.is_empty() {
                return lhs;
            }
            let left = index_keys(spec, &lhs, &mut buf);
            for s in rhs {
                if !has_key(spec, &left, &s, &mut buf) {
                    lhs.push(s);
                }
            }
            lhs
        }
    }
}

/// One match group of a vector/vector operation.
struct Group {
    /// A series of the group, to confirm hash hits.
    rep: Metric,
    /// The "one"-side sample of the group, by index.
    one: Option<usize>,
    /// Results computed for the group so far (filtered ones included).
    results: u32,
}

/// An arithmetic or comparison operation between two vectors.
struct Binop<'m, 's> {
    op: TokenId,
    kind: Kind,
    spec: &'s KeySpec<'m>,
    /// `group_left` or `group_right`.
    many: bool,
    /// `group_right`: the sides are swapped so that the right-hand side is the "one" side.
    swapped: bool,
    /// `group_x (…)` labels, copied from the "one" side.
    include: &'m [String],
    fill_lhs: Option<f64>,
    fill_rhs: Option<f64>,
    return_bool: bool,
    t: i64,
    groups: Vec<Group>,
    index: KeyIndex,
    /// Many-to-one: results per (group, result labels), to refuse a duplicate.
    seen: PrehashedMap<u64, (usize, Metric)>,
    buf: Vec<u8>,
}

impl<'m, 's> Binop<'m, 's> {
    fn new(
        op: TokenId,
        kind: Kind,
        m: &'m BinModifier,
        spec: &'s KeySpec<'m>,
        t: i64,
    ) -> Result<Self, QueryError> {
        let (many, swapped, include): (bool, bool, &[String]) = match &m.card {
            VectorMatchCardinality::OneToOne => (false, false, &[]),
            VectorMatchCardinality::ManyToOne(ls) => (true, false, &ls.labels),
            VectorMatchCardinality::OneToMany(ls) => (true, true, &ls.labels),
            VectorMatchCardinality::ManyToMany => {
                return Err(QueryError::Execution(
                    "many-to-many only allowed for set operators".into(),
                ));
            }
        };
        Ok(Binop {
            op,
            kind,
            spec,
            many,
            swapped,
            include,
            fill_lhs: m.fill_values.lhs,
            fill_rhs: m.fill_values.rhs,
            return_bool: m.return_bool,
            t,
            groups: Vec::new(),
            index: KeyIndex::default(),
            seen: PrehashedMap::default(),
            buf: Vec::with_capacity(256),
        })
    }

    fn run(mut self, lhs: Vector, rhs: Vector) -> Result<Vector, QueryError> {
        let no_fill = self.fill_lhs.is_none() && self.fill_rhs.is_none();
        if (lhs.is_empty() && rhs.is_empty()) || ((lhs.is_empty() || rhs.is_empty()) && no_fill) {
            return Ok(Vector::new());
        }
        let (lhs, rhs) = if self.swapped { (rhs, lhs) } else { (lhs, rhs) };
        self.index = KeyIndex::with_capacity(rhs.len());
        self.groups.reserve(rhs.len());

        // The right-hand side is the "one" side: one sample per match group.
        let mut rhs_group = Vec::with_capacity(rhs.len());
        for (j, rs) in rhs.iter().enumerate() {
            let pairs = rs.metric.as_slice();
            let hash = self.spec.hash(pairs, &mut self.buf);
            let groups = &self.groups;
            let spec = self.spec;
            let (g, new) = self
                .index
                .find_or_insert(hash, |o| spec.same_key(pairs, groups[o].rep.as_slice()));
            if !new {
                let first = self.groups[g].one.map(|i| &rhs[i]).unwrap_or(rs);
                return Err(self.duplicate_error(rs, first));
            }
            self.groups.push(Group {
                rep: Arc::clone(&rs.metric),
                one: Some(j),
                results: 0,
            });
            rhs_group.push(g);
        }

        let mut out = Vector::with_capacity(lhs.len());
        for ls in &lhs {
            let pairs = ls.metric.as_slice();
            let hash = self.spec.hash(pairs, &mut self.buf);
            let groups = &self.groups;
            let spec = self.spec;
            let same = |o: usize| spec.same_key(pairs, groups[o].rep.as_slice());
            let found = self.index.find(hash, same);
            if let Some(g) = found
                && let Some(j) = self.groups[g].one
            {
                out.extend(self.apply(ls, &rhs[j], g)?);
                continue;
            }
            let Some(fill) = self.fill_rhs else { continue };
            let g = match found {
                Some(g) => g,
                None => {
                    // A group only this side has: it still counts matches, so that two
                    // left-hand series filled into the same group are an error.
                    let groups = &self.groups;
                    let (g, _) = self
                        .index
                        .find_or_insert(hash, |o| spec.same_key(pairs, groups[o].rep.as_slice()));
                    self.groups.push(Group {
                        rep: Arc::clone(&ls.metric),
                        one: None,
                        results: 0,
                    });
                    g
                }
            };
            let filled = self.filled(ls, fill);
            out.extend(self.apply(ls, &filled, g)?);
        }

        if let Some(fill) = self.fill_lhs {
            for (j, rs) in rhs.iter().enumerate() {
                let g = rhs_group[j];
                if self.groups[g].results > 0 {
                    continue;
                }
                let filled = self.filled(rs, fill);
                out.extend(self.apply(&filled, rs, g)?);
            }
        }
        Ok(out)
    }

    /// The stand-in for a missing partner of `s`: its match group's labels and the fill value.
    fn filled(&self, s: &Sample, fill: f64) -> Sample {
        Sample {
            metric: Arc::new(self.spec.key_labels(s.metric.as_slice())),
            t: self.t,
            f: fill,
            drop_name: false,
        }
    }

    fn duplicate_error(&self, a: &Sample, b: &Sample) -> QueryError {
        let side = if self.swapped { "left" } else { "right" };
        let group = labels_string(&self.spec.key_labels(a.metric.as_slice()));
        let mut dupl = [labels_string(&a.metric), labels_string(&b.metric)];
        dupl.sort();
        QueryError::Execution(format!(
            "found duplicate series for the match group {group} on the {side} hand-side of the \
             operation: [{}, {}];many-to-many matching not allowed: matching labels must be \
             unique on one side",
            dupl[0], dupl[1]
        ))
    }

    /// The result of `ls op rs` in group `g` (`ls` from the "many" side), or `None` when a
    /// comparison filters it out. Registers the result even then: a duplicate is an error
    /// whether or not it survives the filter.
    fn apply(&mut self, ls: &Sample, rs: &Sample, g: usize) -> Result<Option<Sample>, QueryError> {
        let (fl, fr) = if self.swapped {
            (rs.f, ls.f)
        } else {
            (ls.f, rs.f)
        };
        let (mut value, keep) = match self.kind {
            Kind::Arith => (arith(self.op, fl, fr), true),
            _ => (fl, compare(self.op, fl, fr)),
        };
        if self.return_bool {
            value = btos(keep);
        }
        let metric = self.result_metric(ls, rs);
        if self.many {
            let key = metric.stable_hash() ^ (g as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            if let Some((prev_g, prev)) = self.seen.get(&key) {
                if *prev_g == g && **prev == *metric {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
            } else {
                self.seen.insert(key, (g, Arc::clone(&metric)));
            }
        } else if self.groups[g].results > 0 {
            return Err(QueryError::Execution(
                "multiple matches for labels: many-to-one matching must be explicit \
                 (group_left/group_right)"
                    .into(),
            ));
        }
        self.groups[g].results += 1;
        if !keep && !self.return_bool {
            return Ok(None);
        }
        Ok(Some(Sample {
            metric,
            t: self.t,
            f: value,
            // A filtering comparison keeps the "many"-side sample's labels and with them its
            // pending name removal (Prometheus drops that mark here, which with delayed name
            // removal would let a name survive that the immediate mode removes).
            drop_name: self.return_bool || (self.kind == Kind::Compare && ls.drop_name),
        }))
    }

    /// Labels of a result: the "many" side's, without the metric name and metadata labels
    /// after arithmetic, reduced to the `on` labels (or without the `ignoring` ones) when
    /// one-to-one, with the `group_x` labels copied from the "one" side.
    fn result_metric(&self, ls: &Sample, rs: &Sample) -> Metric {
        let drop_meta = self.kind == Kind::Arith;
        let names = self.spec.names();
        let on = self.spec.is_only();
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
        let base = ls.metric.as_slice();
        let unchanged = base.iter().all(|(n, _)| kept(n))
            && self
                .include
                .iter()
                .all(|n| ls.metric.get(n) == rs.metric.get(n));
        if unchanged {
            return Arc::clone(&ls.metric);
        }
        let mut pairs: Vec<(String, String)> =
            base.iter().filter(|(n, _)| kept(n)).cloned().collect();
        for name in self.include {
            let at = pairs.binary_search_by(|(n, _)| n.as_str().cmp(name));
            match (rs.metric.get(name), at) {
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
