//! `topk`, `bottomk` and `limitk` over a range: the per-step driver's answer (each step's
//! samples gathered, selected, filed into output series) computed from the input matrix's
//! columns directly, without a sample vector, label set clone or output lookup per sample.

use std::collections::HashMap;

use super::names::{self, SAME_LABELSET};
use super::{Evaluator, Range};
use crate::query::aggregate::{RangeSelect, k_param};
use crate::query::{FPoint, Matrix, Metric, QueryError, Series};

#[cfg(test)]
thread_local! {
    /// Selections this thread answered from the input series' columns, for tests that check
    /// which path ran.
    pub(super) static SELECTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// No output series yet.
const NONE: u32 = u32::MAX;

impl Evaluator<'_> {
    /// `sel` over `input` at every step of `r`, `ks` its k per step: what
    /// [`Evaluator::range_eval`] with [`crate::query::aggregate::Aggregation::step`] gives,
    /// errors and sample counting included, in the same order: per step the deadline, then
    /// k, then the samples held, then two outputs with one label set. `before` is the sample
    /// count from before the parameter and the input were evaluated. Each input series'
    /// points must be in strictly increasing time order ([`strictly_ordered`]).
    pub(super) fn select_range(
        &mut self,
        mut sel: RangeSelect,
        r: Range,
        ks: &[f64],
        input: Matrix,
        before: usize,
    ) -> Result<Matrix, QueryError> {
        #[cfg(test)]
        SELECTED.with(|n| n.set(n.get() + 1));
        let delayed = self.settings.delayed_name_removal;
        let mut held = self.samples;
        let mut cursors = vec![0usize; input.len()];
        let mut present: Vec<(u32, f64)> = Vec::with_capacity(input.len());
        let mut picked: Vec<(u32, f64)> = Vec::new();
        // The output series, in the order they first appear (step, then position), each
        // with 1 + the last step it got a point at; each input series' output series.
        let mut out: Vec<Series> = Vec::new();
        let mut last_step: Vec<usize> = Vec::new();
        let mut out_of: Vec<u32> = vec![NONE; input.len()];
        let mut by_labels: HashMap<Metric, u32> = HashMap::new();
        for i in 0..r.steps() {
            self.check()?;
            let ts = r.ts(i);
            let k = k_param(ks.get(i).copied().unwrap_or(f64::NAN))?;
            present.clear();
            for (si, (s, c)) in input.iter().zip(cursors.iter_mut()).enumerate() {
                let pts = &s.floats;
                while *c < pts.len() && pts[*c].t < ts {
                    *c += 1;
                }
                if let Some(p) = pts.get(*c)
                    && p.t == ts
                {
                    present.push((si as u32, p.f));
                    *c += 1;
                }
            }
            picked.clear();
            if let Some(k) = k {
                sel.step(k, &present, &mut picked);
            }
            held = held.saturating_add(picked.len());
            self.samples = held;
            self.within_limit(0)?;
            for &(si, f) in &picked {
                let si = si as usize;
                let mut oi = out_of[si];
                if oi == NONE {
                    let s = &input[si];
                    let metric = if !delayed && s.drop_name {
                        names::without_name(&s.metric)
                    } else {
                        s.metric.clone()
                    };
                    oi = *by_labels.entry(metric).or_insert_with_key(|m| {
                        out.push(Series {
                            histograms: Vec::new(),
                            metric: m.clone(),
                            floats: Vec::new(),
                            drop_name: s.drop_name,
                        });
                        last_step.push(0);
                        (out.len() - 1) as u32
                    });
                    out_of[si] = oi;
                }
                let oi = oi as usize;
                if last_step[oi] == i + 1 {
                    return Err(QueryError::Execution(SAME_LABELSET.into()));
                }
                last_step[oi] = i + 1;
                out[oi].floats.push(FPoint { t: ts, f });
            }
        }
        self.samples = before.saturating_add(out.iter().map(|s| s.floats.len()).sum());
        Ok(out)
    }
}

/// True when no series holds histograms (the series-by-series paths are for floats) and every
/// series' points are in strictly increasing time order, as every evaluated
/// instant vector's are: then a series has at most one point at a step (the paths that work
/// series by series take only such input, and leave the step path what anything else means).
pub(super) fn strictly_ordered(m: &Matrix) -> bool {
    m.iter()
        .all(|s| s.histograms.is_empty() && s.floats.windows(2).all(|w| w[0].t < w[1].t))
}
