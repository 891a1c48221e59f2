//! The aggregations that fold each group into one number: `sum`, `avg`, `count`, `group`,
//! `min`, `max`, `stddev`, `stdvar` and `quantile`.

use std::sync::Arc;

use promql_parser::parser::token::{
    T_AVG, T_COUNT, T_GROUP, T_MAX, T_MIN, T_STDDEV, T_STDVAR, T_SUM, TokenType,
};

use super::key::{KeyOrdinals, Slots};
use crate::model::Labels;
use crate::query::{Metric, Sample, Vector};

/// Which fold.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fold {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
    /// With φ.
    Quantile(f64),
}

impl Fold {
    /// The fold of an aggregation operator that takes no parameter, `None` for any other.
    pub(super) fn without_param(op: TokenType) -> Option<Fold> {
        Some(match op.id() {
            T_SUM => Fold::Sum,
            T_AVG => Fold::Avg,
            T_COUNT => Fold::Count,
            T_GROUP => Fold::Group,
            T_MIN => Fold::Min,
            T_MAX => Fold::Max,
            T_STDDEV => Fold::Stddev,
            T_STDVAR => Fold::Stdvar,
            _ => return None,
        })
    }
}

/// The running state of one group, as Prometheus keeps it.
pub(super) struct Acc {
    value: f64,
    mean: f64,
    kahan_c: f64,
    count: f64,
    /// `avg` switched to the incremental mean because the running sum would overflow.
    incremental: bool,
    pub(super) drop_name: bool,
    /// `quantile`'s values.
    values: Vec<f64>,
}

impl Acc {
    pub(super) fn new(op: Fold, s: &Sample) -> Acc {
        Acc::start(op, s.f, s.drop_name)
    }

    /// The state of a group whose first value is `f`, its name to be dropped if `drop_name`.
    #[inline(always)]
    pub(super) fn start(op: Fold, f: f64, drop_name: bool) -> Acc {
        let value = match op {
            Fold::Group => 1.0,
            // The running sum of squared deviations; it cannot recover from a NaN or an
            // infinite first value.
            Fold::Stddev | Fold::Stdvar if f.is_nan() || f.is_infinite() => f64::NAN,
            Fold::Stddev | Fold::Stdvar => 0.0,
            _ => f,
        };
        Acc {
            value,
            mean: f,
            kahan_c: 0.0,
            count: 1.0,
            incremental: false,
            drop_name,
            values: match op {
                Fold::Quantile(_) => vec![f],
                _ => Vec::new(),
            },
        }
    }

    pub(super) fn add(&mut self, op: Fold, s: &Sample) {
        self.add_value(op, s.f, s.drop_name)
    }

    /// Folds in the value `f` of a sample whose name is to be dropped if `drop_name`.
    #[inline(always)]
    pub(super) fn add_value(&mut self, op: Fold, f: f64, drop_name: bool) {
        self.drop_name |= drop_name;
        match op {
            Fold::Sum => (self.value, self.kahan_c) = kahan_inc(f, self.value, self.kahan_c),
            Fold::Avg => self.add_avg(f),
            Fold::Count => self.count += 1.0,
            Fold::Group => {}
            Fold::Max => {
                if self.value < f || self.value.is_nan() {
                    self.value = f;
                }
            }
            Fold::Min => {
                if self.value > f || self.value.is_nan() {
                    self.value = f;
                }
            }
            Fold::Stddev | Fold::Stdvar => {
                // Welford's online variance.
                self.count += 1.0;
                let delta = f - self.mean;
                self.mean += delta / self.count;
                self.value += delta * (f - self.mean);
            }
            Fold::Quantile(_) => self.values.push(f),
        }
    }

    /// The mean as Prometheus computes it: a Kahan-compensated sum divided at the end, which
    /// is the more accurate, until the sum would overflow; from then on an incremental mean.
    fn add_avg(&mut self, f: f64) {
        self.count += 1.0;
        if !self.incremental {
            let (sum, c) = kahan_inc(f, self.value, self.kahan_c);
            if !sum.is_infinite() {
                self.value = sum;
                self.kahan_c = c;
                return;
            }
            self.incremental = true;
            self.mean = self.value / (self.count - 1.0);
            self.kahan_c /= self.count - 1.0;
        }
        let q = (self.count - 1.0) / self.count;
        (self.mean, self.kahan_c) = kahan_inc(f / self.count, q * self.mean, q * self.kahan_c);
    }

    pub(super) fn finish(mut self, op: Fold) -> f64 {
        match op {
            Fold::Sum => self.value + self.kahan_c,
            Fold::Avg if self.incremental => self.mean + self.kahan_c,
            Fold::Avg => self.value / self.count + self.kahan_c / self.count,
            Fold::Count => self.count,
            Fold::Stdvar => self.value / self.count,
            Fold::Stddev => (self.value / self.count).sqrt(),
            Fold::Quantile(q) => quantile(q, &mut self.values),
            Fold::Group | Fold::Min | Fold::Max => self.value,
        }
    }
}

/// Kahan summation with Neumaier's improvement, as Prometheus's `kahansum.Inc`: adds `inc`
/// to `sum` with compensation `c`.
pub(super) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Prometheus's `quantile`: φ-quantile of `values` with linear interpolation between the
/// closest ranks, NaN sorting first; φ < 0 gives -Inf and φ > 1 gives +Inf.
pub(super) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_unstable_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Folds every group of `input` into one sample labelled with the group's key. `outputs`
/// keeps each group's output labels across steps, so they are built once and shared.
pub(super) fn fold(
    op: Fold,
    keys: &mut KeyOrdinals<'_>,
    outputs: &mut Vec<Option<Metric>>,
    slots: &mut Slots,
    input: &Vector,
    t: i64,
) -> Vector {
    keys.begin_step(input.len());
    // Groups of this step by key ordinal, in order of first appearance.
    let mut accs: Vec<(usize, Acc)> = Vec::new();
    if keys.spec().is_empty_key() {
        let mut it = input.iter();
        if let Some(first) = it.next() {
            let mut acc = Acc::new(op, first);
            for s in it {
                acc.add(op, s);
            }
            accs.push((0, acc));
        }
    } else {
        for s in input {
            let ord = keys.ordinal(&s.metric);
            match slots.get(ord) {
                Some(i) => accs[i].1.add(op, s),
                None => {
                    slots.set(ord, accs.len());
                    accs.push((ord, Acc::new(op, s)));
                }
            }
        }
        slots.reset(accs.iter().map(|(o, _)| *o));
    }
    accs.into_iter()
        .map(|(ord, acc)| {
            let drop_name = acc.drop_name;
            Sample {
                h: None,
                metric: output_metric(keys, outputs, ord),
                t,
                f: acc.finish(op),
                drop_name,
            }
        })
        .collect()
}

/// The output labels of group `ord`: its key, built the first time.
fn output_metric(keys: &KeyOrdinals<'_>, outputs: &mut Vec<Option<Metric>>, ord: usize) -> Metric {
    if outputs.len() <= ord {
        outputs.resize(ord + 1, None);
    }
    Arc::clone(outputs[ord].get_or_insert_with(|| {
        if keys.spec().is_empty_key() {
            Arc::new(Labels::empty())
        } else {
            Arc::new(keys.spec().key_labels(keys.rep(ord).as_slice()))
        }
    }))
}
