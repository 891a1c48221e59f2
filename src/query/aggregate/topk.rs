//! The aggregations that return input samples: `topk`, `bottomk`, `limitk` and
//! `limit_ratio`.
//!
//! Which samples win a tie, and the order of the output, follow from the exact sequence of
//! binary-heap operations Prometheus performs (Go's `container/heap`), so that sequence is
//! reproduced here rather than an equivalent-looking selection.

use promql_parser::parser::LabelModifier;
use promql_parser::parser::token::{T_BOTTOMK, T_LIMITK, T_TOPK, TokenId, TokenType};

use super::key::{KeyOrdinals, KeySpec, SeriesCache, Slots};
use super::prom_hash;
use crate::query::{Metric, Sample, Vector};

/// What the heaps hold: a sample, or (over a range) an input series' value at one step.
trait Valued {
    fn value(&self) -> f64;
}

impl Valued for Sample {
    fn value(&self) -> f64 {
        self.f
    }
}

/// An input series' value at one step, by its index in the input.
#[derive(Debug, Clone, Copy)]
struct Pick {
    f: f64,
    series: u32,
}

impl Valued for Pick {
    fn value(&self) -> f64 {
        self.f
    }
}

/// Prometheus's `vectorByValueHeap` order: NaN below everything.
fn value_less<T: Valued>(a: &T, b: &T) -> bool {
    a.value().is_nan() || a.value() < b.value()
}

/// Prometheus's `vectorByReverseValueHeap` order: NaN above everything.
fn reverse_less<T: Valued>(a: &T, b: &T) -> bool {
    a.value().is_nan() || a.value() > b.value()
}

fn heap_up<T: Valued>(h: &mut [T], mut j: usize, less: fn(&T, &T) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down<T: Valued>(h: &mut [T], i0: usize, less: fn(&T, &T) -> bool) -> bool {
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

fn heap_push<T: Valued>(h: &mut Vec<T>, s: T, less: fn(&T, &T) -> bool) {
    h.push(s);
    let last = h.len() - 1;
    heap_up(h, last, less);
}

fn heap_fix<T: Valued>(h: &mut [T], i: usize, less: fn(&T, &T) -> bool) {
    if !heap_down(h, i, less) {
        heap_up(h, i, less);
    }
}

/// Sorts as Go's `sort.Sort(sort.Reverse(heap))` does, for `topk`'s heap (`descending`) or
/// `bottomk`'s. Go's sort is an insertion sort up to
/// 12 elements, reproduced exactly (it is what decides the order of ties and NaNs); longer
/// groups get a stable sort by the same order with NaN last, where Go's pdqsort may order
/// ties differently.
fn sort_reversed<T: Valued>(h: &mut [T], descending: bool) {
    let less: fn(&T, &T) -> bool = if descending { value_less } else { reverse_less };
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
        let (a, b) = (a.value(), b.value());
        a.is_nan().cmp(&b.is_nan()).then_with(|| {
            if descending {
                b.total_cmp(&a)
            } else {
                a.total_cmp(&b)
            }
        })
    });
}

/// Offers `s`, the next sample of a group, to the group's selection `heap` for `topk`,
/// `bottomk` or `limitk` (`op`) with `k` ≥ 1: Prometheus's heap operations, in its order.
fn offer<T: Valued>(op: TokenId, k: usize, heap: &mut Vec<T>, s: T) {
    match op {
        T_TOPK => {
            if heap.len() < k {
                heap_push(heap, s, value_less);
            } else if heap[0].value() < s.value()
                || (heap[0].value().is_nan() && !s.value().is_nan())
            {
                heap[0] = s;
                if k > 1 {
                    heap_fix(heap, 0, value_less);
                }
            }
        }
        T_BOTTOMK => {
            if heap.len() < k {
                heap_push(heap, s, reverse_less);
            } else if heap[0].value() > s.value()
                || (heap[0].value().is_nan() && !s.value().is_nan())
            {
                heap[0] = s;
                if k > 1 {
                    heap_fix(heap, 0, reverse_less);
                }
            }
        }
        // limitk keeps the first k of each group, in heap order.
        T_LIMITK if heap.len() < k => heap_push(heap, s, value_less),
        _ => {}
    }
}

/// A group's selection in output order: `topk` and `bottomk` sorted, `limitk` as kept.
fn finish_group<T: Valued>(op: TokenId, heap: &mut [T]) {
    match op {
        T_TOPK => sort_reversed(heap, true),
        T_BOTTOMK => sort_reversed(heap, false),
        _ => {}
    }
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
    let groups = for_each_grouped(keys, slots, input, |heap, s| offer(op, k, heap, s));
    let mut out = Vector::new();
    for (_, mut heap) in groups {
        finish_group(op, &mut heap);
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

/// `topk`, `bottomk` or `limitk` over every step of a range, fed the input series whole
/// instead of one sample vector per step: each step's selection is the one [`select_k`]
/// makes of that step's samples (the same heap operations in the same order), handed out as
/// input series indices, and each series' group is found once rather than at every step.
pub(crate) struct RangeSelect {
    op: TokenId,
    /// Each input series' group ordinal.
    group_of: Vec<u32>,
    slots: Slots,
    /// This step's groups, in order of their first sample; their heaps are kept from step
    /// to step for their room.
    groups: Vec<Vec<Pick>>,
    ords: Vec<usize>,
}

impl RangeSelect {
    /// The selection `op` grouped by `modifier` over the series `input` (their label sets),
    /// or none when `op` is not `topk`, `bottomk` or `limitk`.
    pub(crate) fn new<'m>(
        op: TokenType,
        modifier: Option<&LabelModifier>,
        input: impl ExactSizeIterator<Item = &'m Metric>,
    ) -> Option<RangeSelect> {
        let op = op.id();
        if !matches!(op, T_TOPK | T_BOTTOMK | T_LIMITK) || input.len() >= u32::MAX as usize {
            return None;
        }
        // No modifier: one group of everything.
        let spec = modifier.map_or(KeySpec::only([]), KeySpec::of);
        let one_group = spec.is_empty_key();
        let mut keys = KeyOrdinals::new(spec, false);
        let group_of = input
            .map(|m| if one_group { 0 } else { keys.ordinal(m) as u32 })
            .collect();
        Some(RangeSelect {
            op,
            group_of,
            slots: Slots::default(),
            groups: Vec::new(),
            ords: Vec::new(),
        })
    }

    /// One step with `k` ≥ 1: `present` holds (input series index, value) of each series
    /// with a sample at this step, in input order; the selected ones are appended to `out`
    /// in the order [`select_k`] outputs them.
    pub(crate) fn step(&mut self, k: usize, present: &[(u32, f64)], out: &mut Vec<(u32, f64)>) {
        let RangeSelect {
            op,
            group_of,
            slots,
            groups,
            ords,
        } = self;
        ords.clear();
        for &(series, f) in present {
            let ord = group_of[series as usize] as usize;
            let gi = match slots.get(ord) {
                Some(i) => i,
                None => {
                    let i = ords.len();
                    slots.set(ord, i);
                    ords.push(ord);
                    match groups.get_mut(i) {
                        Some(g) => g.clear(),
                        None => groups.push(Vec::new()),
                    }
                    i
                }
            };
            offer(*op, k, &mut groups[gi], Pick { f, series });
        }
        slots.reset(ords.iter().copied());
        for heap in &mut groups[..ords.len()] {
            finish_group(*op, heap);
            out.extend(heap.iter().map(|p| (p.series, p.f)));
        }
    }
}
