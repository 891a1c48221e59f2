//! Arithmetic on histograms with Prometheus 3's semantics: add and subtract (to the smaller
//! schema, with the zero buckets widened to a common threshold, custom buckets reconciled to
//! their common bounds), multiply and divide by a scalar, compact, reduce resolution, copy to a
//! smaller schema, and counter-reset detection.
//!
//! The bucket work is done on the buckets as a sorted list of (index, absolute count) and the
//! spans rebuilt from it: results hold the same buckets as Prometheus's, with spans always
//! written the one canonical way (adjacent buckets in one span), where Prometheus may leave a
//! span split; compare layouts after [`FloatHistogram::compact`] when that matters.

use super::bounds::{SpanIndexes, exponential_bound, float_counts, int_counts};
use super::validate::{HistogramError, HistogramErrorKind, incompatible, spans_mismatch};
use super::{CounterResetHint, FloatHistogram, Histogram, Span, is_custom_buckets};

/// What an addition or subtraction noticed, for PromQL's annotations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddOutcome {
    /// One operand said "counter reset" and the other "no counter reset"; the result's hint is
    /// unknown.
    pub counter_reset_collision: bool,
    /// The operands had different custom bounds; the result has their common bounds only.
    pub nhcb_bounds_reconciled: bool,
}

/// Spans for a list of buckets sorted by index: one span per run of consecutive indexes.
fn spans_of<T>(entries: &[(i32, T)]) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut last = 0i32;
    for (n, &(idx, _)) in entries.iter().enumerate() {
        match spans.last_mut() {
            Some(s) if idx == last.wrapping_add(1) => s.length += 1,
            _ => {
                let offset = if n == 0 {
                    idx
                } else {
                    idx.wrapping_sub(last).wrapping_sub(1)
                };
                spans.push(Span::new(offset, 1));
            }
        }
        last = idx;
    }
    spans
}

/// Spans and absolute float counts of a sorted bucket list.
fn float_side(entries: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    (spans_of(entries), entries.iter().map(|e| e.1).collect())
}

/// Spans and delta-coded counts of a sorted list of absolute integer counts.
fn int_side(entries: &[(i32, i64)]) -> (Vec<Span>, Vec<i64>) {
    let mut prev = 0i64;
    let deltas = entries
        .iter()
        .map(|&(_, c)| {
            let d = c.wrapping_sub(prev);
            prev = c;
            d
        })
        .collect();
    (spans_of(entries), deltas)
}

/// The index in schema `target` of the bucket that holds bucket `idx` of schema `origin`
/// (`target <= origin`).
fn target_index(idx: i32, origin: i32, target: i32) -> i32 {
    let shift = (i64::from(origin) - i64::from(target)).clamp(0, 31) as u32;
    (idx.wrapping_sub(1) >> shift).wrapping_add(1)
}

/// The buckets merged into a smaller schema: neighbours that land in the same target bucket
/// are summed in order.
fn reduce_entries<T: Copy + std::ops::Add<Output = T>>(
    entries: Vec<(i32, T)>,
    origin: i32,
    target: i32,
) -> Vec<(i32, T)> {
    if target >= origin {
        return entries;
    }
    let mut out: Vec<(i32, T)> = Vec::with_capacity(entries.len());
    for (idx, c) in entries {
        let t = target_index(idx, origin, target);
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 = last.1 + c,
            _ => out.push((t, c)),
        }
    }
    out
}

/// Checks spans against their buckets as reducing the resolution does: no negative offset
/// after the first span, exactly as many buckets as the spans cover.
fn check_reducible(spans: &[Span], n: usize) -> Result<(), HistogramError> {
    let mut need = 0usize;
    for (k, s) in spans.iter().enumerate() {
        if k > 0 && s.offset < 0 {
            return Err(super::validate::negative_offset(k + 1, s.offset));
        }
        need = need.saturating_add(s.length as usize);
        if need > n {
            return Err(HistogramError::detailed_pub(
                HistogramErrorKind::SpansBucketsMismatch,
                format!("have {n} buckets but spans need more"),
            ));
        }
    }
    if need != n {
        return Err(spans_mismatch(need, n));
    }
    Ok(())
}

/// Why a resolution cannot be reduced (a caller's mistake, not bad data).
fn reduction_error(schema: i32, target: i32) -> Option<HistogramError> {
    let msg = if is_custom_buckets(schema) {
        "cannot reduce resolution when there are custom buckets".to_string()
    } else if is_custom_buckets(target) {
        "cannot reduce resolution to custom buckets schema".to_string()
    } else if target >= schema {
        format!("cannot reduce resolution from schema {schema} to {target}")
    } else {
        return None;
    };
    Some(HistogramError::with_message(
        HistogramErrorKind::InvalidSchema,
        msg,
    ))
}

/// Keeps the buckets that are not empty; fills a gap of at most `max_empty` indexes between
/// two kept buckets with the buckets there were (or empty ones), so they share a span.
fn compact_entries<T: Copy>(
    entries: &[(i32, T)],
    is_empty: impl Fn(T) -> bool,
    empty: T,
    max_empty: usize,
) -> Vec<(i32, T)> {
    let mut out: Vec<(i32, T)> = Vec::with_capacity(entries.len());
    let mut prev: Option<usize> = None;
    for (k, &(idx, c)) in entries.iter().enumerate() {
        if is_empty(c) {
            continue;
        }
        if let Some(p) = prev {
            let last = entries[p].0;
            let gap = i64::from(idx) - i64::from(last) - 1;
            if gap > 0 && gap <= max_empty as i64 {
                let mut q = p + 1;
                for i in (i64::from(last) + 1)..i64::from(idx) {
                    let i = i as i32;
                    if q < k && entries[q].0 == i {
                        out.push(entries[q]);
                        q += 1;
                    } else {
                        out.push((i, empty));
                    }
                }
            }
        }
        out.push((idx, c));
        prev = Some(k);
    }
    out
}

/// Walks `b` against `a` (both sorted by index): buckets of `b` at or below `threshold`
/// (upper bound, exponential schemas only, leading buckets only) are skipped; the others are
/// added to `a`'s bucket of the same index, or inserted, negated first when `negate`.
fn merge(
    a: &[(i32, f64)],
    b: &[(i32, f64)],
    negate: bool,
    schema: i32,
    threshold: f64,
) -> Vec<(i32, f64)> {
    let skip = if is_custom_buckets(schema) {
        0
    } else {
        b.iter()
            .take_while(|(i, _)| exponential_bound(*i, schema) <= threshold)
            .count()
    };
    let b = &b[skip..];
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let take_a = j >= b.len() || (i < a.len() && a[i].0 < b[j].0);
        let take_b = i >= a.len() || (j < b.len() && b[j].0 < a[i].0);
        if take_a {
            out.push(a[i]);
            i += 1;
        } else {
            let v = if negate { -b[j].1 } else { b[j].1 };
            if take_b {
                out.push((b[j].0, v));
            } else {
                out.push((a[i].0, a[i].1 + v));
                i += 1;
            }
            j += 1;
        }
    }
    out
}

/// Custom bounds equal value by value (a NaN bound never equals).
fn bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The bounds two custom-bucket layouts have in common.
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Custom buckets summed into the buckets of `common` bounds: a bucket goes to the first
/// common bound at or above its own upper bound (the `+Inf` bucket past the last).
fn map_custom(
    spans: &[Span],
    buckets: &[f64],
    bounds: &[f64],
    common: &[f64],
    into: &mut [f64],
    comp: &mut [f64],
    negate: bool,
) {
    let mut cursor = 0usize;
    for (idx, c) in float_counts(spans, buckets) {
        let mut target = common.len();
        if idx >= 0 && (idx as usize) < bounds.len() {
            let upper = bounds[idx as usize];
            while cursor < common.len() {
                if common[cursor] >= upper {
                    target = cursor;
                    break;
                }
                cursor += 1;
            }
        }
        let inc = if negate { -c } else { c };
        let sum = into[target];
        let t = sum + inc;
        if t.is_infinite() {
            comp[target] = 0.0;
        } else if sum.abs() >= inc.abs() {
            comp[target] += (sum - t) + inc;
        } else {
            comp[target] += (inc - t) + sum;
        }
        into[target] = t;
    }
}

impl FloatHistogram {
    /// Adds `other` into `self` as Prometheus's `FloatHistogram.Add`: counts, sums and
    /// buckets added, the result in the smaller of the two schemas, the zero buckets widened
    /// to a threshold that covers both and lies on no populated bucket, `other`'s buckets that
    /// fall in the zero bucket dropped. Custom-bucket histograms with different bounds are
    /// added over their common bounds (`nhcb_bounds_reconciled`). Mixing an exponential with a
    /// custom-bucket histogram is an error and leaves `self` unchanged.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<AddOutcome, HistogramError> {
        self.add_or_sub(other, false)
    }

    /// Subtracts `other` from `self`, as [`FloatHistogram::add`] (the counter-reset hint is
    /// combined the same way; PromQL's `-` sets it to gauge afterwards).
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<AddOutcome, HistogramError> {
        self.add_or_sub(other, true)
    }

    fn add_or_sub(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Result<AddOutcome, HistogramError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(incompatible());
        }
        let mut outcome = AddOutcome {
            counter_reset_collision: self.adjust_counter_reset(other),
            ..AddOutcome::default()
        };
        if !self.uses_custom_buckets() {
            let other_zero = self.reconcile_zero_buckets(other);
            if negate {
                self.zero_count -= other_zero;
            } else {
                self.zero_count += other_zero;
            }
        }
        if negate {
            self.count -= other.count;
            self.sum -= other.sum;
        } else {
            self.count += other.count;
            self.sum += other.sum;
        }

        if self.uses_custom_buckets() {
            if bounds_match(&self.custom_values, &other.custom_values) {
                let a: Vec<_> =
                    float_counts(&self.positive_spans, &self.positive_buckets).collect();
                let b: Vec<_> =
                    float_counts(&other.positive_spans, &other.positive_buckets).collect();
                (self.positive_spans, self.positive_buckets) =
                    float_side(&merge(&a, &b, negate, self.schema, 0.0));
            } else {
                outcome.nhcb_bounds_reconciled = true;
                let common = intersect_bounds(&self.custom_values, &other.custom_values);
                let mut sums = vec![0.0; common.len() + 1];
                // Prometheus keeps a bucket whose sum is zero but whose Kahan compensation
                // is not (the compensation itself is not added in).
                let mut comp = vec![0.0; common.len() + 1];
                map_custom(
                    &self.positive_spans,
                    &self.positive_buckets,
                    &self.custom_values,
                    &common,
                    &mut sums,
                    &mut comp,
                    false,
                );
                map_custom(
                    &other.positive_spans,
                    &other.positive_buckets,
                    &other.custom_values,
                    &common,
                    &mut sums,
                    &mut comp,
                    negate,
                );
                let entries: Vec<(i32, f64)> = sums
                    .into_iter()
                    .zip(comp)
                    .enumerate()
                    .filter(|(_, (c, k))| *c != 0.0 || *k != 0.0)
                    .map(|(i, (c, _))| (i as i32, c))
                    .collect();
                (self.positive_spans, self.positive_buckets) = float_side(&entries);
                self.custom_values = common;
            }
            return Ok(outcome);
        }

        let mut a_pos: Vec<_> =
            float_counts(&self.positive_spans, &self.positive_buckets).collect();
        let mut a_neg: Vec<_> =
            float_counts(&self.negative_spans, &self.negative_buckets).collect();
        let mut b_pos: Vec<_> =
            float_counts(&other.positive_spans, &other.positive_buckets).collect();
        let mut b_neg: Vec<_> =
            float_counts(&other.negative_spans, &other.negative_buckets).collect();
        if other.schema < self.schema {
            a_pos = reduce_entries(a_pos, self.schema, other.schema);
            a_neg = reduce_entries(a_neg, self.schema, other.schema);
            self.schema = other.schema;
        } else if other.schema > self.schema {
            b_pos = reduce_entries(b_pos, other.schema, self.schema);
            b_neg = reduce_entries(b_neg, other.schema, self.schema);
        }
        let zt = self.zero_threshold;
        (self.positive_spans, self.positive_buckets) =
            float_side(&merge(&a_pos, &b_pos, negate, self.schema, zt));
        (self.negative_spans, self.negative_buckets) =
            float_side(&merge(&a_neg, &b_neg, negate, self.schema, zt));
        Ok(outcome)
    }

    /// Combines the counter-reset hints for an addition: equal hints stay, a gauge makes a
    /// gauge, an unknown makes unknown; "reset" with "not reset" is a collision (true) and
    /// makes unknown.
    fn adjust_counter_reset(&mut self, other: &FloatHistogram) -> bool {
        use CounterResetHint::*;
        let (mine, theirs) = (self.counter_reset_hint, other.counter_reset_hint);
        if mine == theirs || mine == Gauge {
            return false;
        }
        if theirs == Gauge {
            self.counter_reset_hint = Gauge;
            return false;
        }
        if mine == Unknown {
            return false;
        }
        self.counter_reset_hint = Unknown;
        theirs != Unknown
    }

    /// What the zero count would be with the zero threshold raised to `larger`, and the
    /// threshold that really takes: when `larger` falls inside a populated bucket, the
    /// threshold moves up to that bucket's far bound (and the bucket joins the zero bucket).
    pub fn zero_count_for_larger_threshold(&self, larger: f64) -> (f64, f64) {
        let mut larger = larger;
        if larger == self.zero_threshold {
            return (self.zero_count, larger);
        }
        'outer: loop {
            let mut zero = self.zero_count;
            for b in self.positive_bucket_iter() {
                if b.lower >= larger {
                    break;
                }
                zero += b.count;
                if b.upper > larger {
                    if b.count != 0.0 {
                        larger = b.upper;
                    }
                    break;
                }
            }
            for b in self.negative_bucket_iter_outward() {
                if b.upper <= -larger {
                    break;
                }
                zero += b.count;
                if b.lower < -larger {
                    if b.count != 0.0 && -b.lower > larger {
                        larger = -b.lower;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zero, larger);
        }
    }

    /// Empties the buckets that lie inside the zero bucket (their counts must already be in
    /// the zero count), then compacts.
    fn trim_buckets_in_zero_bucket(&mut self) {
        let zt = self.zero_threshold;
        let schema = self.schema;
        for (idx, p) in SpanIndexes::new(&self.positive_spans, self.positive_buckets.len()) {
            if exponential_bound(idx.wrapping_sub(1), schema) >= zt {
                break;
            }
            self.positive_buckets[p] = 0.0;
        }
        for (idx, p) in SpanIndexes::new(&self.negative_spans, self.negative_buckets.len()) {
            if exponential_bound(idx.wrapping_sub(1), schema) >= zt {
                break;
            }
            self.negative_buckets[p] = 0.0;
        }
        self.compact(0);
    }

    /// Widens `self`'s zero bucket until it covers `other`'s and returns the zero count
    /// `other` would have with the same threshold (`other` is not changed).
    fn reconcile_zero_buckets(&mut self, other: &FloatHistogram) -> f64 {
        let mut other_zero = other.zero_count;
        let mut other_threshold = other.zero_threshold;
        while other_threshold != self.zero_threshold {
            let before = (other_threshold.to_bits(), self.zero_threshold.to_bits());
            if self.zero_threshold > other_threshold {
                (other_zero, other_threshold) =
                    other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_threshold > self.zero_threshold {
                (self.zero_count, self.zero_threshold) =
                    self.zero_count_for_larger_threshold(other_threshold);
                self.trim_buckets_in_zero_bucket();
            }
            if before == (other_threshold.to_bits(), self.zero_threshold.to_bits()) {
                // Only a NaN threshold gets here (it compares unequal to everything, itself
                // included); nothing more to reconcile.
                break;
            }
        }
        other_zero
    }

    /// Multiplies every count and the sum by `factor`; a negative factor makes a gauge.
    pub fn mul(&mut self, factor: f64) -> &mut Self {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        self.positive_buckets.iter_mut().for_each(|c| *c *= factor);
        self.negative_buckets.iter_mut().for_each(|c| *c *= factor);
        if factor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self
    }

    /// Divides every count and the sum by `divisor`; dividing by zero removes all buckets
    /// (the count, zero count and sum become infinite or NaN); a negative divisor makes a
    /// gauge.
    pub fn div(&mut self, divisor: f64) -> &mut Self {
        self.zero_count /= divisor;
        self.count /= divisor;
        self.sum /= divisor;
        if divisor == 0.0 {
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            self.positive_spans.clear();
            self.negative_spans.clear();
            return self;
        }
        self.positive_buckets.iter_mut().for_each(|c| *c /= divisor);
        self.negative_buckets.iter_mut().for_each(|c| *c /= divisor);
        if divisor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
        self
    }

    /// Removes empty buckets as Prometheus's `Compact(maxEmptyBuckets)`: empty buckets at the
    /// edges of spans always go, runs of more than `max_empty` empty buckets inside spans go,
    /// and spans whose gap is at most `max_empty` buckets are joined (the gap filled with
    /// empty buckets). With 0, no empty bucket is left. A bucket's count is kept as it was.
    pub fn compact(&mut self, max_empty: usize) -> &mut Self {
        let pos: Vec<_> = float_counts(&self.positive_spans, &self.positive_buckets).collect();
        let neg: Vec<_> = float_counts(&self.negative_spans, &self.negative_buckets).collect();
        (self.positive_spans, self.positive_buckets) =
            float_side(&compact_entries(&pos, |c| c == 0.0, 0.0, max_empty));
        (self.negative_spans, self.negative_buckets) =
            float_side(&compact_entries(&neg, |c| c == 0.0, 0.0, max_empty));
        self
    }

    /// Merges the buckets into the smaller exponential schema `target`, in place.
    pub fn reduce_resolution(&mut self, target: i32) -> Result<(), HistogramError> {
        if let Some(e) = reduction_error(self.schema, target) {
            return Err(e);
        }
        check_reducible(&self.positive_spans, self.positive_buckets.len())?;
        check_reducible(&self.negative_spans, self.negative_buckets.len())?;
        let pos = float_counts(&self.positive_spans, &self.positive_buckets).collect();
        let neg = float_counts(&self.negative_spans, &self.negative_buckets).collect();
        (self.positive_spans, self.positive_buckets) =
            float_side(&reduce_entries(pos, self.schema, target));
        (self.negative_spans, self.negative_buckets) =
            float_side(&reduce_entries(neg, self.schema, target));
        self.schema = target;
        Ok(())
    }

    /// A copy in the exponential schema `target` (at most the current schema). As
    /// Prometheus's `CopyToSchema`, a copy to another schema keeps the counts, sum and zero
    /// bucket but not the counter-reset hint (unknown). `None` for custom buckets or a larger
    /// target schema.
    pub fn copy_to_schema(&self, target: i32) -> Option<FloatHistogram> {
        if target == self.schema {
            return Some(self.clone());
        }
        if reduction_error(self.schema, target).is_some() {
            return None;
        }
        let pos = float_counts(&self.positive_spans, &self.positive_buckets).collect();
        let neg = float_counts(&self.negative_spans, &self.negative_buckets).collect();
        let (positive_spans, positive_buckets) =
            float_side(&reduce_entries(pos, self.schema, target));
        let (negative_spans, negative_buckets) =
            float_side(&reduce_entries(neg, self.schema, target));
        Some(FloatHistogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema: target,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: self.sum,
            positive_spans,
            negative_spans,
            positive_buckets,
            negative_buckets,
            custom_values: Vec::new(),
        })
    }

    /// True when `self` follows `previous` only through a counter reset, as Prometheus's
    /// `DetectReset`: the hint decides when it says reset or not-reset; otherwise a smaller
    /// count, a change between exponential and custom buckets, a larger schema, a smaller zero
    /// threshold (or a larger one cutting through a populated bucket of `previous`), a smaller
    /// zero count, or any bucket of `previous` that is populated and missing or smaller in
    /// `self` (after merging `previous` into `self`'s schema) is a reset. The sum is not
    /// looked at.
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !previous.uses_custom_buckets() {
                return true;
            }
            if !bounds_match(&self.custom_values, &previous.custom_values) {
                return self.reset_with_other_bounds(previous);
            }
        }
        if self.schema > previous.schema {
            return true;
        }
        if self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (previous_zero, threshold) =
            previous.zero_count_for_larger_threshold(self.zero_threshold);
        if threshold != self.zero_threshold {
            return true;
        }
        if self.zero_count < previous_zero {
            return true;
        }
        let zt = self.zero_threshold;
        let side = |h: &FloatHistogram, positive: bool| {
            let (spans, buckets) = if positive {
                (&h.positive_spans, &h.positive_buckets)
            } else {
                (&h.negative_spans, &h.negative_buckets)
            };
            let entries = reduce_entries(
                float_counts(spans, buckets).collect(),
                h.schema,
                self.schema,
            );
            let skip = if zt == 0.0 || h.uses_custom_buckets() {
                0
            } else {
                entries
                    .iter()
                    .take_while(|(i, _)| exponential_bound(*i, self.schema) <= zt)
                    .count()
            };
            entries[skip..].to_vec()
        };
        buckets_reset(&side(self, true), &side(previous, true))
            || buckets_reset(&side(self, false), &side(previous, false))
    }

    /// Counter-reset detection between custom-bucket histograms with different bounds: both
    /// summed into their common bounds, any common bucket smaller now is a reset.
    fn reset_with_other_bounds(&self, previous: &FloatHistogram) -> bool {
        let common = intersect_bounds(&self.custom_values, &previous.custom_values);
        let mut now = vec![0.0; common.len() + 1];
        let mut before = vec![0.0; common.len() + 1];
        let mut comp = vec![0.0; common.len() + 1];
        map_custom(
            &self.positive_spans,
            &self.positive_buckets,
            &self.custom_values,
            &common,
            &mut now,
            &mut comp,
            false,
        );
        map_custom(
            &previous.positive_spans,
            &previous.positive_buckets,
            &previous.custom_values,
            &common,
            &mut before,
            &mut comp,
            false,
        );
        now.iter().zip(&before).any(|(n, b)| n < b)
    }
}

/// True when a populated bucket of `prev` is missing from `curr` or any bucket of `curr` is
/// smaller than its counterpart in `prev` (both sorted by index).
fn buckets_reset(curr: &[(i32, f64)], prev: &[(i32, f64)]) -> bool {
    let mut j = 0;
    for &(idx, count) in prev {
        while j < curr.len() && curr[j].0 < idx {
            j += 1;
        }
        match curr.get(j) {
            Some(&(ci, cc)) if ci == idx => {
                if cc < count {
                    return true;
                }
            }
            _ => {
                if count != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

impl Histogram {
    /// Removes empty buckets as [`FloatHistogram::compact`] does, on the absolute counts
    /// (the deltas are rewritten).
    pub fn compact(&mut self, max_empty: usize) -> &mut Self {
        let pos: Vec<_> = int_counts(&self.positive_spans, &self.positive_buckets).collect();
        let neg: Vec<_> = int_counts(&self.negative_spans, &self.negative_buckets).collect();
        (self.positive_spans, self.positive_buckets) =
            int_side(&compact_entries(&pos, |c| c == 0, 0, max_empty));
        (self.negative_spans, self.negative_buckets) =
            int_side(&compact_entries(&neg, |c| c == 0, 0, max_empty));
        self
    }

    /// Merges the buckets into the smaller exponential schema `target`, in place (the counts
    /// are summed, the deltas rewritten; count, zero bucket and sum are unchanged).
    pub fn reduce_resolution(&mut self, target: i32) -> Result<(), HistogramError> {
        if let Some(e) = reduction_error(self.schema, target) {
            return Err(e);
        }
        check_reducible(&self.positive_spans, self.positive_buckets.len())?;
        check_reducible(&self.negative_spans, self.negative_buckets.len())?;
        let wrapping = |entries: Vec<(i32, i64)>| -> Vec<(i32, i64)> {
            let mut out: Vec<(i32, i64)> = Vec::with_capacity(entries.len());
            for (idx, c) in entries {
                let t = target_index(idx, self.schema, target);
                match out.last_mut() {
                    Some(last) if last.0 == t => last.1 = last.1.wrapping_add(c),
                    _ => out.push((t, c)),
                }
            }
            out
        };
        let pos = wrapping(int_counts(&self.positive_spans, &self.positive_buckets).collect());
        let neg = wrapping(int_counts(&self.negative_spans, &self.negative_buckets).collect());
        (self.positive_spans, self.positive_buckets) = int_side(&pos);
        (self.negative_spans, self.negative_buckets) = int_side(&neg);
        self.schema = target;
        Ok(())
    }
}
