//! The folding aggregations (`sum`, `avg`, `count`, `group`, `min`, `max`, `stddev`,
//! `stdvar`) fed one whole input series at a time instead of one step at a time, so that an
//! evaluator streaming its input never holds more than the groups' running states. The
//! answer is the one [`super::Aggregation`] gives step by step over the same series in the
//! same order: each group and step folds its samples in input order, and the groups come out
//! in the order a step-by-step evaluation first meets them.

use std::sync::Arc;

use promql_parser::parser::LabelModifier;
use promql_parser::parser::token::TokenType;

use super::fold::{Acc, Fold};
use super::key::{KeyIndex, KeySpec};
use crate::model::Labels;
use crate::query::{FPoint, Matrix, Metric, Series};

/// A folding aggregation over all the steps of a range, fed series by series.
pub(crate) struct SeriesFold<'a> {
    op: Fold,
    spec: KeySpec<'a>,
    /// Group index by the hash of its key, confirmed against the group's labels: a series
    /// of a known group builds no label set.
    index: KeyIndex,
    buf: Vec<u8>,
    groups: Vec<Group>,
    /// Series added so far.
    seen: usize,
}

/// One group's running state at each step it has a sample at.
struct Group {
    metric: Metric,
    /// By step index; grown to the latest step seen.
    accs: Vec<Option<Acc>>,
    /// The first step with a sample, and the first series (by arrival) with a sample there:
    /// where a step-by-step evaluation would first meet the group.
    first: (usize, usize),
}

impl Group {
    /// Folds the points of the input series that arrived `arrival`-th, whose name is to be
    /// dropped if `drop_name`, into this group with `op`.
    #[inline(always)]
    fn fold(
        &mut self,
        op: Fold,
        arrival: usize,
        drop_name: bool,
        points: impl IntoIterator<Item = (usize, f64)>,
    ) {
        for (i, f) in points {
            if self.accs.len() <= i {
                self.accs.resize_with(i + 1, || None);
            }
            match &mut self.accs[i] {
                Some(acc) => acc.add_value(op, f, drop_name),
                slot @ None => *slot = Some(Acc::start(op, f, drop_name)),
            }
            if i < self.first.0 {
                self.first = (i, arrival);
            }
        }
    }
}

impl<'a> SeriesFold<'a> {
    /// `op` grouped by `modifier`, or none when `op` is not a folding aggregation without a
    /// parameter.
    pub(crate) fn new(op: TokenType, modifier: Option<&'a LabelModifier>) -> Option<Self> {
        let op = Fold::without_param(op)?;
        // No modifier: one group of everything.
        let spec = modifier.map_or(KeySpec::only([]), KeySpec::of);
        Some(SeriesFold {
            op,
            spec,
            index: KeyIndex::default(),
            buf: Vec::new(),
            groups: Vec::new(),
            seen: 0,
        })
    }

    /// Folds in the next input series: its label set, whether its name is to be dropped, and
    /// its `(step index, value)` points in step order.
    pub(crate) fn add(
        &mut self,
        metric: &Metric,
        drop_name: bool,
        points: impl IntoIterator<Item = (usize, f64)>,
    ) {
        let arrival = self.seen;
        self.seen += 1;
        let pairs = metric.as_slice();
        let (spec, groups) = (&self.spec, &mut self.groups);
        let hash = spec.hash(pairs, &mut self.buf);
        // A group's labels are its key, so selecting from them gives the key again.
        let (gi, new) = self
            .index
            .find_or_insert(hash, |g| spec.same_key(pairs, groups[g].metric.as_slice()));
        if new {
            let key = if spec.is_empty_key() {
                Labels::empty()
            } else {
                spec.key_labels(pairs)
            };
            groups.push(Group {
                metric: Arc::new(key),
                accs: Vec::new(),
                first: (usize::MAX, usize::MAX),
            });
        }
        let g = &mut self.groups[gi];
        // One loop per fold, its arithmetic inlined with the fold known, rather than a call
        // and a match on the fold per point.
        match self.op {
            Fold::Sum => g.fold(Fold::Sum, arrival, drop_name, points),
            Fold::Avg => g.fold(Fold::Avg, arrival, drop_name, points),
            Fold::Count => g.fold(Fold::Count, arrival, drop_name, points),
            Fold::Min => g.fold(Fold::Min, arrival, drop_name, points),
            Fold::Max => g.fold(Fold::Max, arrival, drop_name, points),
            op => g.fold(op, arrival, drop_name, points),
        }
    }

    /// Forgets everything added.
    pub(crate) fn clear(&mut self) {
        self.index = KeyIndex::default();
        self.groups.clear();
        self.seen = 0;
    }

    /// The output series, each point at `ts(step index)`, in the order a step-by-step
    /// evaluation would have created them. A series' `drop_name` is that of its first point.
    pub(crate) fn finish(self, ts: impl Fn(usize) -> i64) -> Matrix {
        let op = self.op;
        let mut groups: Vec<Group> = self
            .groups
            .into_iter()
            .filter(|g| g.first.0 != usize::MAX)
            .collect();
        groups.sort_by_key(|g| g.first);
        groups
            .into_iter()
            .map(|g| {
                let drop_name = g
                    .accs
                    .get(g.first.0)
                    .and_then(Option::as_ref)
                    .is_some_and(|a| a.drop_name);
                let floats = g
                    .accs
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, a)| {
                        a.map(|a| FPoint {
                            t: ts(i),
                            f: a.finish(op),
                        })
                    })
                    .collect();
                Series {
                    histograms: Vec::new(),
                    metric: g.metric,
                    floats,
                    drop_name,
                }
            })
            .collect()
    }
}
