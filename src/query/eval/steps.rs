//! The per-step driver (Prometheus's `rangeEval`): gathers each step's instant vectors from
//! the children's matrices, calls the operator, and files its output into series.

use std::collections::HashMap;
use std::sync::Arc;

use super::names::{SAME_LABELSET, Stripper};
use super::{Evaluator, Range};
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
        let steps = r.steps();
        let mut cursors: Vec<Vec<usize>> = inputs.iter().map(|m| vec![0; m.len()]).collect();
        let mut out = Collector::new(inputs.iter().map(Vec::len).max().unwrap_or(0));
        let mut stripper = Stripper::default();
        let delayed = self.settings.delayed_name_removal;
        // Samples of the inputs plus the outputs so far; each step's vectors come and go.
        let mut held = self.samples;
        for i in 0..steps {
            self.check()?;
            let ts = r.ts(i);
            let vecs = inputs
                .iter()
                .zip(&mut cursors)
                .map(|(m, c)| gather(m, c, ts))
                .collect();
            let mut result = op(&mut self.ann, i, ts, vecs)?;
            held = held.saturating_add(result.len());
            self.samples = held;
            self.within_limit(0)?;
            if !delayed {
                for s in &mut result {
                    if s.drop_name {
                        s.metric = stripper.strip(&s.metric);
                    }
                }
            }
            for s in result {
                out.add(i, ts, s)?;
            }
        }
        let mat = out.finish();
        self.samples = before.saturating_add(mat.iter().map(|s| s.floats.len()).sum());
        Ok(mat)
    }
}

/// The samples of `m` at time `ts`; `cursors` remembers where each series stands, so a whole
/// range is gathered in one pass over every series.
fn gather(m: &Matrix, cursors: &mut [usize], ts: i64) -> Vector {
    let mut v = Vec::with_capacity(m.len());
    for (s, c) in m.iter().zip(cursors.iter_mut()) {
        while *c < s.floats.len() && s.floats[*c].t < ts {
            *c += 1;
        }
        if let Some(p) = s.floats.get(*c)
            && p.t == ts
        {
            v.push(Sample {
                metric: s.metric.clone(),
                t: ts,
                f: p.f,
                drop_name: s.drop_name,
            });
            *c += 1;
        }
    }
    v
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
