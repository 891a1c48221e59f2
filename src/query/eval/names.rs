//! Dropping `__name__`: right after each node (the default), or at the very end from the
//! samples operations marked (delayed name removal), and the duplicate label sets that can
//! result.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use super::super::aggregate::key::AddrHasher;
use super::super::{Matrix, Metric, QueryError, Vector};
use crate::model::{Labels, METRIC_NAME};

/// Prometheus's words for two results that end up with the same labels.
pub(super) const SAME_LABELSET: &str = "vector cannot contain metrics with the same labelset";

/// `m` without `__name__` (the same `Arc` when it has none).
pub(super) fn without_name(m: &Metric) -> Metric {
    if m.metric_name().is_none() {
        return m.clone();
    }
    without_name_of(m)
}

/// A copy of `l` without `__name__`.
pub(super) fn without_name_of(l: &Labels) -> Metric {
    let pairs = l
        .as_slice()
        .iter()
        .filter(|(n, _)| n != METRIC_NAME)
        .cloned()
        .collect();
    Arc::new(Labels::from_sorted_unchecked(pairs))
}

/// Remembers the name-less copy of each label set seen, so a series stripped at every step is
/// copied once. Keys are the `Arc`s' addresses; the cache holds the `Arc`s so an address
/// cannot be reused by another label set while it is a key.
#[derive(Default)]
pub(super) struct Stripper {
    /// Hashed by address with one multiplication: SipHash cost more than the lookup it
    /// serves, once per sample per step.
    seen: HashMap<usize, (Metric, Metric), BuildHasherDefault<AddrHasher>>,
}

impl Stripper {
    /// Cached copies beyond this many are forgotten, so results that make new label sets at
    /// every step do not pile up here.
    const MAX: usize = 1 << 16;

    pub(super) fn strip(&mut self, m: &Metric) -> Metric {
        if m.metric_name().is_none() {
            return m.clone();
        }
        let key = Arc::as_ptr(m) as usize;
        if let Some((_, stripped)) = self.seen.get(&key) {
            return stripped.clone();
        }
        if self.seen.len() >= Self::MAX {
            self.seen.clear();
        }
        let stripped = without_name(m);
        self.seen.insert(key, (m.clone(), stripped.clone()));
        stripped
    }
}

/// The end of a query with delayed name removal: names go from marked samples, and two samples
/// left with the same labels are an error.
pub(super) fn cleanup_vector(mut v: Vector) -> Result<Vector, QueryError> {
    for s in &mut v {
        if s.drop_name {
            s.metric = without_name(&s.metric);
        }
    }
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in &v {
        if !seen.insert(&*s.metric) {
            return Err(QueryError::Execution(SAME_LABELSET.into()));
        }
    }
    Ok(v)
}

/// The end of a query with delayed name removal over a matrix: names go from marked series,
/// and series left with the same labels are merged unless they share a timestamp.
pub(super) fn cleanup_matrix(mut m: Matrix) -> Result<Matrix, QueryError> {
    for s in &mut m {
        if s.drop_name {
            s.metric = without_name(&s.metric);
        }
    }
    merge_same_labels(m)
}

/// Merges series with equal labels into one; fails if two of them have a point at the same time.
pub(super) fn merge_same_labels(m: Matrix) -> Result<Matrix, QueryError> {
    let mut index: HashMap<Metric, usize> = HashMap::with_capacity(m.len());
    let mut any_dup = false;
    for (i, s) in m.iter().enumerate() {
        if index.insert(s.metric.clone(), i).is_some() {
            any_dup = true;
            break;
        }
    }
    if !any_dup {
        return Ok(m);
    }
    index.clear();
    let mut out: Matrix = Vec::with_capacity(m.len());
    let mut merged = vec![false; 0];
    for s in m {
        match index.get(&s.metric) {
            Some(&i) => {
                out[i].floats.extend(s.floats);
                out[i].histograms.extend(s.histograms);
                merged[i] = true;
            }
            None => {
                index.insert(s.metric.clone(), out.len());
                out.push(s);
                merged.push(false);
            }
        }
    }
    for (s, _) in out.iter_mut().zip(&merged).filter(|(_, m)| **m) {
        s.floats.sort_by_key(|p| p.t);
        s.histograms.sort_by_key(|p| p.t);
        let clash = s.floats.windows(2).any(|w| w[0].t == w[1].t)
            || s.histograms.windows(2).any(|w| w[0].t == w[1].t)
            || (!s.histograms.is_empty()
                && s.floats
                    .iter()
                    .any(|p| s.histograms.binary_search_by_key(&p.t, |h| h.t).is_ok()));
        if clash {
            return Err(QueryError::Execution(SAME_LABELSET.into()));
        }
    }
    Ok(out)
}
