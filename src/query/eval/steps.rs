//! The per-step driver (Prometheus's `rangeEval`): gathers each step's instant vectors from
//! the children's matrices, calls the operator, and files its output into series.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::names::{SAME_LABELSET, Stripper};
use super::{Evaluator, Range};
use crate::model::histogram::FloatHistogram;
use crate::query::{
    Annotations, FPoint, HPoint, Matrix, Metric, QueryError, Sample, Series, Vector,
};

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
        let has_histograms: Vec<bool> = inputs
            .iter()
            .map(|m| m.iter().any(|s| !s.histograms.is_empty()))
            .collect();
        let mut hcursors: Vec<Vec<usize>> = inputs
            .iter()
            .zip(&has_histograms)
            .map(|(m, h)| if *h { vec![0; m.len()] } else { Vec::new() })
            .collect();
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
                        h: None,
                        metric: s.metric.clone(),
                        t: r.ts(first + k),
                        f,
                        drop_name: s.drop_name,
                    });
                });
            }
            for (j, (m, c)) in inputs.iter().zip(&mut hcursors).enumerate() {
                if !has_histograms[j] {
                    continue;
                }
                gather_histograms(m, c, r, first, n, |k, si, h| {
                    let s = &m[si];
                    staged[k][j].push(Sample {
                        h: Some(h.clone()),
                        metric: s.metric.clone(),
                        t: r.ts(first + k),
                        f: 0.0,
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
        self.series.add_all(step, ts, result)
    }

    /// The series; the inputs are released, leaving the samples counted `before` them plus
    /// the output.
    fn finish(self, ev: &mut Evaluator<'_>, before: usize) -> Matrix {
        let mat = self.series.finish();
        ev.samples = before.saturating_add(mat.iter().map(Series::len).sum());
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

/// As [`gather_block`] for the histogram points of `m`.
fn gather_histograms(
    m: &Matrix,
    cursors: &mut [usize],
    r: Range,
    first: usize,
    n: usize,
    mut sink: impl FnMut(usize, usize, &Arc<FloatHistogram>),
) {
    let (lo, hi) = (r.ts(first), r.ts(first + n - 1));
    for (si, (s, c)) in m.iter().zip(cursors.iter_mut()).enumerate() {
        let pts = &s.histograms;
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
                sink(k, si, &p.h);
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
    /// Fast path by `Arc` address, for operators that hand out the same label sets at every
    /// step. The map holds the `Arc`s, so no address is reused while it is a key.
    by_ptr: HashMap<usize, (Metric, usize), BuildHasherDefault<AddrHasher>>,
    /// The series of each position of the previous step's result: most operators answer in
    /// the same order at every step, so the k-th sample is usually the same series again.
    previous: Vec<usize>,
    current: Vec<usize>,
}

impl Collector {
    fn new(capacity: usize) -> Collector {
        Collector {
            series: Vec::with_capacity(capacity),
            last_step: Vec::with_capacity(capacity),
            by_labels: HashMap::with_capacity(capacity),
            by_ptr: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            previous: Vec::new(),
            current: Vec::new(),
        }
    }

    /// Files one step's samples.
    fn add_all(&mut self, step: usize, ts: i64, result: Vector) -> Result<(), QueryError> {
        std::mem::swap(&mut self.previous, &mut self.current);
        self.current.clear();
        for (k, s) in result.into_iter().enumerate() {
            let idx = match self.previous.get(k) {
                Some(&i) if Arc::ptr_eq(&self.series[i].metric, &s.metric) => i,
                _ => self.lookup(&s),
            };
            if self.last_step[idx] == step + 1 {
                return Err(QueryError::Execution(SAME_LABELSET.into()));
            }
            self.last_step[idx] = step + 1;
            match s.h {
                Some(h) => self.series[idx].histograms.push(HPoint { t: ts, h }),
                None => self.series[idx].floats.push(FPoint { t: ts, f: s.f }),
            }
            self.current.push(idx);
        }
        Ok(())
    }

    /// The series of `s`, created if new.
    fn lookup(&mut self, s: &Sample) -> usize {
        let ptr = Arc::as_ptr(&s.metric) as usize;
        if let Some((_, i)) = self.by_ptr.get(&ptr) {
            return *i;
        }
        let i = match self.by_labels.get(&s.metric) {
            Some(i) => *i,
            None => {
                let i = self.series.len();
                self.by_labels.insert(s.metric.clone(), i);
                self.series.push(Series {
                    histograms: Vec::new(),
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

    fn finish(self) -> Matrix {
        self.series
    }
}

/// Hashes an address: one multiplication spreads it, where SipHash would cost more than the
/// lookup it serves.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}
