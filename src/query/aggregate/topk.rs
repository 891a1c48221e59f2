//! The aggregations that return input samples: `topk`, `bottomk`, `limitk` and
//! `limit_ratio`.
//!
//! Which samples win a tie, and the order of the output, follow from the exact sequence of
//! binary-heap operations Prometheus performs (Go's `container/heap`), so that sequence is
//! reproduced here rather than an equivalent-looking selection.

use promql_parser::parser::token::{T_BOTTOMK, T_LIMITK, T_TOPK, TokenId};

use super::key::{KeyOrdinals, SeriesCache, Slots};
use super::prom_hash;
use crate::query::{Sample, Vector};

type Less = fn(&Sample, &Sample) -> bool;

/// Prometheus's `vectorByValueHeap` order: NaN below everything.
fn value_less(a: &Sample, b: &Sample) -> bool {
    a.f.is_nan() || a.f < b.f
}

/// Prometheus's `vectorByReverseValueHeap` order: NaN above everything.
fn reverse_less(a: &Sample, b: &Sample) -> bool {
    a.f.is_nan() || a.f > b.f
}

fn heap_up(h: &mut [Sample], mut j: usize, less: Less) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down(h: &mut [Sample], i0: usize, less: Less) -> bool {
    let n = h.len();
    let mut i = i0;
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(&h[j1 + 1], &h[j1]) {
            j = j1 + 1;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    i > i0
}

fn heap_push(h: &mut Vec<Sample>, s: Sample, less: Less) {
    h.push(s);
    let last = h.len() - 1;
    heap_up(h, last, less);
}

fn heap_fix(h: &mut [Sample], i: usize, less: Less) {
    if !heap_down(h, i, less) {
        heap_up(h, i, less);
    }
}

/// Sorts as Go's `sort.Sort(sort.Reverse(heap))` does, for `topk`'s heap (`descending`) or
/// `bottomk`'s. Go's sort is an insertion sort up to
/// 12 elements, reproduced exactly (it is what decides the order of ties and NaNs); longer
/// groups get a stable sort by the same order with NaN last, where Go's pdqsort may order
/// ties differently.
fn sort_reversed(h: &mut [Sample], descending: bool) {
    let less: Less = if descending { value_less } else { reverse_less };
    if h.len() <= 12 {
        for i in 1..h.len() {
            let mut j = i;
            while j > 0 && less(&h[j - 1], &h[j]) {
                h.swap(j, j - 1);
                j -= 1;
            }
        }
        return;
    }
    h.sort_by(|a, b| {
        a.f.is_nan().cmp(&b.f.is_nan()).then_with(|| {
            if descending {
                b.f.total_cmp(&a.f)
            } else {
                a.f.total_cmp(&b.f)
            }
        })
    });
}

/// Splits `input` into groups by key, calling `step` with each sample and its group's
/// selection so far; returns the selections in order of each group's first sample.
fn for_each_grouped(
    keys: &mut KeyOrdinals<'_>,
    slots: &mut Slots,
    input: Vector,
    mut step: impl FnMut(&mut Vec<Sample>, Sample),
) -> Vec<(usize, Vec<Sample>)> {
    keys.begin_step(input.len());
    let mut groups: Vec<(usize, Vec<Sample>)> = Vec::new();
    let one_group = keys.spec().is_empty_key();
    for s in input {
        let ord = if one_group {
            0
        } else {
            keys.ordinal(&s.metric)
        };
        let i = match slots.get(ord) {
            Some(i) => i,
            None => {
                slots.set(ord, groups.len());
                groups.push((ord, Vec::new()));
                groups.len() - 1
            }
        };
        step(&mut groups[i].1, s);
    }
    slots.reset(groups.iter().map(|(o, _)| *o));
    groups
}

/// `topk`, `bottomk` or `limitk` (`op`) with `k` ≥ 1.
pub(super) fn select_k(
    op: TokenId,
    k: usize,
    keys: &mut KeyOrdinals<'_>,
    slots: &mut Slots,
    input: Vector,
    t: i64,
) -> Vector {
    let groups = for_each_grouped(keys, slots, input, |heap, s| match op {
        T_TOPK => {
            if heap.len() < k {
                heap_push(heap, s, value_less);
            } else if heap[0].f < s.f || (heap[0].f.is_nan() && !s.f.is_nan()) {
                heap[0] = s;
                if k > 1 {
                    heap_fix(heap, 0, value_less);
                }
            }
        }
        T_BOTTOMK => {
            if heap.len() < k {
                heap_push(heap, s, reverse_less);
            } else if heap[0].f > s.f || (heap[0].f.is_nan() && !s.f.is_nan()) {
                heap[0] = s;
                if k > 1 {
                    heap_fix(heap, 0, reverse_less);
                }
            }
        }
        // limitk keeps the first k of each group, in heap order.
        T_LIMITK if heap.len() < k => heap_push(heap, s, value_less),
        _ => {}
    });
    let mut out = Vector::new();
    for (_, mut heap) in groups {
        match op {
            T_TOPK => sort_reversed(&mut heap, true),
            T_BOTTOMK => sort_reversed(&mut heap, false),
            _ => {}
        }
        out.extend(heap.into_iter().map(|s| Sample { t, ..s }));
    }
    out
}

/// `limit_ratio` with `ratio` in [-1, 1], not 0: keeps the samples whose sampling offset
/// (Prometheus's label hash over `u64::MAX`) is below `ratio`, or for a negative ratio at
/// least `1 + ratio`, so that `limit_ratio(r, v)` and `limit_ratio(-(1 - r), v)` split `v`.
/// `offsets` remembers each series' offset across steps.
pub(super) fn limit_ratio(
    ratio: f64,
    keys: &mut KeyOrdinals<'_>,
    slots: &mut Slots,
    offsets: &mut SeriesCache<f64>,
    input: Vector,
    t: i64,
) -> Vector {
    offsets.bound(input.len());
    let groups = for_each_grouped(keys, slots, input, |heap, s| {
        let offset = offsets.get_or_insert_with(&s.metric, || prom_hash::sample_offset(&s.metric));
        if (ratio >= 0.0 && offset < ratio) || (ratio < 0.0 && offset >= 1.0 + ratio) {
            heap_push(heap, s, value_less);
        }
    });
    groups
        .into_iter()
        .flat_map(|(_, heap)| heap)
        .map(|s| Sample { t, ..s })
        .collect()
}
