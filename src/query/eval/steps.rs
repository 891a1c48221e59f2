//! The per-step driver (Prometheus's `rangeEval`): gathers each step's instant vectors from
//! the children's matrices, calls the operator, and files its output into series.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::LabelModifier;

use super::names::{SAME_LABELSET, Stripper};
use super::{Evaluator, Range};
use crate::query::aggregate::key::{KeyIndex, KeySpec};
use crate::query::{Annotations, FPoint, Matrix, Metric, QueryError, Sample, Series, Vector};

impl Evaluator<'_> {
    /// Calls `op` at every step of `r` with the instant vectors of `inputs` at that step, and
    /// assembles its outputs into series. `before` is the sample count from before the inputs
    /// were evaluated: the inputs are released when this returns.
    pub(super) fn range_eval<F>(
        &mut self,
        r: Range,
        inputs: Vec<Matrix>,
        before: usize,
        mut op: F,
    ) -> Result<Matrix, QueryError>
    where
        F: FnMut(&mut Annotations, usize, i64, Vec<Vector>) -> Result<Vector, QueryError>,
    {
        let mut cursors: Vec<Vec<usize>> = inputs.iter().map(|m| vec![0; m.len()]).collect();
        let mut out = Output::new(self.samples, inputs.iter().map(Vec::len).max().unwrap_or(0));
        let steps = r.steps();
        let mut first = 0;
        while first < steps {
            let n = BLOCK.min(steps - first);
            let mut staged: Vec<Vec<Vector>> = (0..n)
                .map(|_| inputs.iter().map(|m| Vec::with_capacity(m.len())).collect())
                .collect();
            for (j, (m, c)) in inputs.iter().zip(&mut cursors).enumerate() {
                gather_block(m, c, r, first, n, |k, si, f| {
                    let s = &m[si];
                    staged[k][j].push(Sample {
                        metric: s.metric.clone(),
                        t: r.ts(first + k),
                        f,
                        drop_name: s.drop_name,
                    });
                });
            }
            for (k, vecs) in staged.into_iter().enumerate() {
                self.check()?;
                let i = first + k;
                let ts = r.ts(i);
                let result = op(&mut self.ann, i, ts, vecs)?;
                out.add_step(self, i, ts, result)?;
            }
            first += n;
        }
        Ok(out.finish(self, before))
    }

    /// [`Evaluator::range_eval`] for an aggregation that folds each group into one number:
    /// the series are put into groups once (Prometheus's `rangeEvalAgg`), and `op` is called
    /// per group and step with that group's samples, in input order, all labelled with the
    /// group's labels, so no label set is inspected at every step. `op` must aggregate
    /// everything it gets into at most one sample; it is called once with an empty vector at a
    /// step where no group has a sample, for its parameter checks.
    pub(super) fn grouped_eval<F>(
        &mut self,
        r: Range,
        input: Matrix,
        modifier: Option<&LabelModifier>,
        before: usize,
        mut op: F,
    ) -> Result<Matrix, QueryError>
    where
        F: FnMut(&mut Annotations, usize, i64, Vector) -> Result<Vector, QueryError>,
    {
        let spec = match modifier {
            None => KeySpec::only([]),
            Some(LabelModifier::Include(ls)) => KeySpec::only(ls.labels.iter().map(String::as_str)),
            Some(LabelModifier::Exclude(ls)) => {
                KeySpec::all_but(ls.labels.iter().map(String::as_str))
            }
        };
        let mut index = KeyIndex::with_capacity(64);
        let mut buf = Vec::new();
        // Per group: its first series and its members in input order.
        let mut reps: Vec<usize> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (si, s) in input.iter().enumerate() {
            let pairs = s.metric.as_slice();
            let hash = spec.hash(pairs, &mut buf);
            let (g, new) = index.find_or_insert(hash, |o| {
                spec.same_key(pairs, input[reps[o]].metric.as_slice())
            });
            if new {
                reps.push(si);
                members.push(Vec::new());
            }
            members[g].push(si);
        }
        let mut labels: Vec<Metric> = Vec::with_capacity(index.len());
        labels.extend(
            reps.iter()
                .map(|&si| Arc::new(spec.key_labels(input[si].metric.as_slice()))),
        );
        let mut group_of = vec![0usize; input.len()];
        for (g, group) in members.iter().enumerate() {
            for &si in group {
                group_of[si] = g;
            }
        }
        let mut cursors = vec![0usize; input.len()];
        let mut out = Output::new(self.samples, labels.len());
        let steps = r.steps();
        let mut first = 0;
        while first < steps {
            let n = BLOCK.min(steps - first);
            let mut staged: Vec<Vec<Vector>> = (0..n)
                .map(|_| {
                    members
                        .iter()
                        .map(|g| Vec::with_capacity(g.len()))
                        .collect()
                })
                .collect();
            // Series in input order, so each group's samples keep that order.
            gather_block(&input, &mut cursors, r, first, n, |k, si, f| {
                let g = group_of[si];
                staged[k][g].push(Sample {
                    metric: labels[g].clone(),
                    t: r.ts(first + k),
                    f,
                    drop_name: input[si].drop_name,
                });
            });
            for (k, groups) in staged.into_iter().enumerate() {
                self.check()?;
                let i = first + k;
                let ts = r.ts(i);
                let mut result = Vec::with_capacity(labels.len());
                let mut called = false;
                for (g, v) in groups.into_iter().enumerate() {
                    if v.is_empty() {
                        continue;
                    }
                    called = true;
                    for mut s in op(&mut self.ann, i, ts, v)? {
                        s.metric = labels[g].clone();
                        result.push(s);
                    }
                }
                if !called {
                    result = op(&mut self.ann, i, ts, Vec::new())?;
                }
                out.add_step(self, i, ts, result)?;
            }
            first += n;
        }
        Ok(out.finish(self, before))
    }
}

/// What the per-step drivers build: the output series, and the samples held so far.
struct Output {
    series: Collector,
    stripper: Stripper,
    /// Samples of the inputs plus the outputs so far; each step's vectors come and go.
    held: usize,
}

impl Output {
    fn new(held: usize, capacity: usize) -> Output {
        Output {
            series: Collector::new(capacity),
            stripper: Stripper::default(),
            held,
        }
    }

    /// Files one step's result, dropping names now unless removal is delayed.
    fn add_step(
        &mut self,
        ev: &mut Evaluator<'_>,
        step: usize,
        ts: i64,
        mut result: Vector,
    ) -> Result<(), QueryError> {
        self.held = self.held.saturating_add(result.len());
        ev.samples = self.held;
        ev.within_limit(0)?;
        if !ev.settings.delayed_name_removal {
            for s in &mut result {
                if s.drop_name {
                    s.metric = self.stripper.strip(&s.metric);
                }
            }
        }
        for s in result {
            self.series.add(step, ts, s)?;
        }
        Ok(())
    }

    /// The series; the inputs are released, leaving the samples counted `before` them plus
    /// the output.
    fn finish(self, ev: &mut Evaluator<'_>, before: usize) -> Matrix {
        let mat = self.series.finish();
        ev.samples = before.saturating_add(mat.iter().map(|s| s.floats.len()).sum());
        mat
    }
}

/// Steps gathered at a time: each series' points are read once per block of steps, which
/// keeps the reads sequential, instead of once per step across every series.
const BLOCK: usize = 16;

/// Hands `sink(k, series, value)` each point of `m` at the steps `first..first + n` of `r` (k
/// counts from `first`); `cursors` remembers where each series stands, so a whole range is
/// gathered in one pass over every series.
fn gather_block(
    m: &Matrix,
    cursors: &mut [usize],
    r: Range,
    first: usize,
    n: usize,
    mut sink: impl FnMut(usize, usize, f64),
) {
    let (lo, hi) = (r.ts(first), r.ts(first + n - 1));
    for (si, (s, c)) in m.iter().zip(cursors.iter_mut()).enumerate() {
        let pts = &s.floats;
        while *c < pts.len() && pts[*c].t < lo {
            *c += 1;
        }
        while let Some(p) = pts.get(*c) {
            if p.t > hi {
                break;
            }
            if let Some(off) = p.t.checked_sub(lo)
                && off % r.step == 0
                && let Ok(k) = usize::try_from(off / r.step)
                && k < n
            {
                sink(k, si, p.f);
            }
            *c += 1;
        }
    }
}

/// Output series by label set, in the order they first appear (an instant query keeps the
/// operator's order).
struct Collector {
    series: Vec<Series>,
    /// 1 + the last step each series got a point at; two points at one step are duplicates.
    last_step: Vec<usize>,
    by_labels: HashMap<Metric, usize>,
    /// Fast path by `Arc` address, for operators that pass their input's label sets through.
    /// The map holds the `Arc`s, so no address is reused while it is a key.
    by_ptr: HashMap<usize, (Metric, usize)>,
}

impl Collector {
    fn new(capacity: usize) -> Collector {
        Collector {
            series: Vec::with_capacity(capacity),
            last_step: Vec::with_capacity(capacity),
            by_labels: HashMap::with_capacity(capacity),
            by_ptr: HashMap::with_capacity(capacity),
        }
    }

    fn add(&mut self, step: usize, ts: i64, s: Sample) -> Result<(), QueryError> {
        let ptr = Arc::as_ptr(&s.metric) as usize;
        let idx = match self.by_ptr.get(&ptr) {
            Some((_, i)) => *i,
            None => {
                let i = match self.by_labels.get(&s.metric) {
                    Some(i) => *i,
                    None => {
                        let i = self.series.len();
                        self.by_labels.insert(s.metric.clone(), i);
                        self.series.push(Series {
                            metric: s.metric.clone(),
                            floats: Vec::new(),
                            drop_name: s.drop_name,
                        });
                        self.last_step.push(0);
                        i
                    }
                };
                if self.by_ptr.len() > 2 * self.series.len() + 1024 {
                    self.by_ptr.clear();
                }
                self.by_ptr.insert(ptr, (s.metric.clone(), i));
                i
            }
        };
        if self.last_step[idx] == step + 1 {
            return Err(QueryError::Execution(SAME_LABELSET.into()));
        }
        self.last_step[idx] = step + 1;
        self.series[idx].floats.push(FPoint { t: ts, f: s.f });
        Ok(())
    }

    fn finish(self) -> Matrix {
        self.series
    }
}
