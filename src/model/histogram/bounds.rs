//! Bucket boundaries and bucket iterators.
//!
//! A bucket boundary is computed as Prometheus computes it, bit for bit: for an exponential
//! schema `s >= 0`, the upper bound of bucket `i` is `f · 2^e` where `e = (i >> s) + 1` and `f`
//! is the `(i mod 2^s)`-th of the `2^s` fractions in `[0.5, 1)` of that schema; for `s < 0` it
//! is `2^(i << -s)`. The fractions are not the correctly rounded `2^(j/2^s - 1)`: Prometheus
//! (and the client libraries, which put observations into buckets with the same numbers) derive
//! each schema's table from the one below it, keeping the coarser schema's fractions and
//! placing each new one at the coarser fraction times `2^(1/2^s)` (that root taken as `s`
//! square roots of 2), with schema 1's single new fraction `1/√2`. [`fraction_table`] builds
//! the table that way, so every bound here equals Prometheus's.
//!
//! The last bucket below infinity would get the upper bound `2^1024`, which overflows; its
//! upper bound is `f64::MAX` instead, so the next bucket (whose upper bound is `+Inf`) is the
//! one that counts infinite observations.

use std::sync::LazyLock;

use super::{FloatHistogram, Histogram, Span, is_custom_buckets};

/// One bucket: its bounds, whether each bound belongs to it, its count and its index within
/// its schema (and side).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket<C> {
    /// The lower bound.
    pub lower: f64,
    /// The upper bound.
    pub upper: f64,
    /// True when an observation equal to `lower` falls into this bucket.
    pub lower_inclusive: bool,
    /// True when an observation equal to `upper` falls into this bucket.
    pub upper_inclusive: bool,
    /// Observations in the bucket.
    pub count: C,
    /// The bucket's index in its schema (meaningless for the zero bucket, where it is 0).
    pub index: i32,
}

/// The 256 fractions of schema 8 in `[0.5, 1)`, built as described in the module doc; schema
/// `s`'s fraction `j` is entry `j << (8 - s)`.
static FRACTIONS: LazyLock<[f64; 256]> = LazyLock::new(build_fractions);

fn build_fractions() -> [f64; 256] {
    let mut table = [0.0f64; 256];
    table[0] = 0.5;
    // The root 2^(1/2^s) for s = 1..=8, each the square root of the one before.
    let mut root = 2.0f64;
    for schema in 1..=8u32 {
        root = root.sqrt();
        let step = 1usize << (8 - schema);
        // The new entries of this schema sit halfway between the previous schema's entries.
        let mut j = step;
        while j < 256 {
            table[j] = if schema == 1 {
                1.0 / 2.0f64.sqrt()
            } else {
                table[j - step] * root
            };
            j += 2 * step;
        }
    }
    table
}

/// The fractions in `[0.5, 1)` of an exponential schema `0..=8` (`2^schema` entries), as
/// Prometheus's bucket bounds use them. Empty for any other schema.
pub fn fraction_table(schema: i32) -> Vec<f64> {
    if !(0..=8).contains(&schema) {
        return Vec::new();
    }
    let shift = 8 - schema;
    (0..1usize << schema)
        .map(|j| FRACTIONS[j << shift])
        .collect()
}

/// `2^e` for `e` in the normal range.
fn pow2(e: i64) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// `x · 2^e` for `0 < x <= 1`, rounded once as Go's `math.Ldexp` rounds.
fn ldexp(x: f64, e: i64) -> f64 {
    if e > 1023 {
        // x · 2^1023 is exact for x <= 1; the second product overflows or rounds once.
        if e > 2046 {
            return f64::INFINITY;
        }
        x * pow2(1023) * pow2(e - 1023)
    } else if e >= -1022 {
        x * pow2(e)
    } else if e >= -1075 {
        // x · 2^(e+53) is a normal number, exact; the product with 2^-53 rounds once.
        x * pow2(e + 53) * pow2(-53)
    } else {
        0.0
    }
}

/// The upper bound of bucket `index` of an exponential schema (the lower bound of bucket
/// `index + 1`).
pub fn exponential_bound(index: i32, schema: i32) -> f64 {
    let index = i64::from(index);
    if schema < 0 {
        let exp = index << (-schema).min(62);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let schema = schema.min(8);
    let frac = FRACTIONS[((index & ((1 << schema) - 1)) << (8 - schema)) as usize];
    let exp = (index >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// The upper bound of bucket `index` (the lower bound of bucket `index + 1`): for custom
/// buckets `custom_values[index]`, `+Inf` at and beyond the last one, `-Inf` below index 0;
/// for an exponential schema as [`exponential_bound`].
pub fn bucket_bound(index: i32, schema: i32, custom_values: &[f64]) -> f64 {
    if is_custom_buckets(schema) {
        if index < 0 {
            return f64::NEG_INFINITY;
        }
        return custom_values
            .get(index as usize)
            .copied()
            .unwrap_or(f64::INFINITY);
    }
    exponential_bound(index, schema)
}

/// The bucket with `index` and `count` on the positive (or negative) side, with its bounds and
/// inclusiveness as Prometheus gives them.
pub(crate) fn make_bucket<C>(
    index: i32,
    count: C,
    schema: i32,
    custom_values: &[f64],
    positive: bool,
) -> Bucket<C> {
    let up = bucket_bound(index, schema, custom_values);
    let low = bucket_bound(index.wrapping_sub(1), schema, custom_values);
    let (lower, upper) = if positive { (low, up) } else { (-up, -low) };
    let (lower_inclusive, upper_inclusive) = if is_custom_buckets(schema) {
        (index == 0, true)
    } else {
        (lower < 0.0, upper > 0.0)
    };
    Bucket {
        lower,
        upper,
        lower_inclusive,
        upper_inclusive,
        count,
        index,
    }
}

/// The absolute bucket indexes that `spans` describe, in ascending order, with each bucket's
/// position in the bucket slice. At most `n` are yielded (the number of buckets), so spans that
/// promise more buckets than there are end early. Index arithmetic wraps as Prometheus's int32.
#[derive(Debug, Clone)]
pub(crate) struct SpanIndexes<'a> {
    spans: &'a [Span],
    span: usize,
    in_span: u32,
    pos: usize,
    n: usize,
    idx: i32,
}

impl<'a> SpanIndexes<'a> {
    pub(crate) fn new(spans: &'a [Span], n: usize) -> Self {
        SpanIndexes {
            spans,
            span: 0,
            in_span: 0,
            pos: 0,
            n,
            idx: 0,
        }
    }
}

impl Iterator for SpanIndexes<'_> {
    /// (bucket index, position in the bucket slice)
    type Item = (i32, usize);

    fn next(&mut self) -> Option<(i32, usize)> {
        if self.pos >= self.n {
            return None;
        }
        loop {
            let s = self.spans.get(self.span)?;
            if self.in_span == 0 {
                self.idx = if self.span == 0 {
                    s.offset
                } else {
                    self.idx.wrapping_add(s.offset)
                };
            }
            if self.in_span < s.length {
                let out = (self.idx, self.pos);
                self.in_span += 1;
                self.pos += 1;
                self.idx = self.idx.wrapping_add(1);
                if self.in_span == s.length {
                    self.span += 1;
                    self.in_span = 0;
                }
                return Some(out);
            }
            // A span of length 0: only its offset counts.
            self.span += 1;
            self.in_span = 0;
        }
    }
}

/// (index, absolute count) of every bucket, ascending by index, for absolute float counts.
pub(crate) fn float_counts<'a>(
    spans: &'a [Span],
    buckets: &'a [f64],
) -> impl Iterator<Item = (i32, f64)> + 'a {
    SpanIndexes::new(spans, buckets.len()).map(move |(i, p)| (i, buckets[p]))
}

/// (index, absolute count) of every bucket, ascending by index, for delta-coded integer counts
/// (running sums wrap as Prometheus's int64 arithmetic).
pub(crate) fn int_counts<'a>(
    spans: &'a [Span],
    deltas: &'a [i64],
) -> impl Iterator<Item = (i32, i64)> + 'a {
    let mut running = 0i64;
    SpanIndexes::new(spans, deltas.len()).map(move |(i, p)| {
        running = running.wrapping_add(deltas[p]);
        (i, running)
    })
}

impl FloatHistogram {
    /// True for a custom-bucket histogram.
    pub fn uses_custom_buckets(&self) -> bool {
        is_custom_buckets(self.schema)
    }

    /// The positive buckets (all buckets, for custom buckets), ascending.
    pub fn positive_bucket_iter(&self) -> impl Iterator<Item = Bucket<f64>> + '_ {
        float_counts(&self.positive_spans, &self.positive_buckets)
            .map(|(i, c)| make_bucket(i, c, self.schema, &self.custom_values, true))
    }

    /// The negative buckets from the one nearest zero outwards (descending values).
    pub fn negative_bucket_iter_outward(&self) -> impl Iterator<Item = Bucket<f64>> + '_ {
        float_counts(&self.negative_spans, &self.negative_buckets)
            .map(|(i, c)| make_bucket(i, c, self.schema, &[], false))
    }

    /// The negative buckets, ascending (the most negative first).
    pub fn negative_bucket_iter(&self) -> impl Iterator<Item = Bucket<f64>> + '_ {
        let all: Vec<(i32, f64)> =
            float_counts(&self.negative_spans, &self.negative_buckets).collect();
        all.into_iter()
            .rev()
            .map(|(i, c)| make_bucket(i, c, self.schema, &[], false))
    }

    /// The zero bucket `[-zero_threshold, zero_threshold]`; `None` for custom buckets, which
    /// have none.
    pub fn zero_bucket(&self) -> Option<Bucket<f64>> {
        if self.uses_custom_buckets() {
            return None;
        }
        Some(Bucket {
            lower: -self.zero_threshold,
            upper: self.zero_threshold,
            lower_inclusive: true,
            upper_inclusive: true,
            count: self.zero_count,
            index: 0,
        })
    }

    /// Every bucket in ascending order: the negative ones, the zero bucket when its count is
    /// above zero, the positive ones. A negative (positive) bucket reaching into the zero
    /// bucket has its upper (lower) bound cut at the zero threshold, as Prometheus does.
    pub fn all_bucket_iter(&self) -> impl Iterator<Item = Bucket<f64>> + '_ {
        let zt = self.zero_threshold;
        let clamp = move |mut b: Bucket<f64>| {
            if b.upper < 0.0 && b.upper > -zt {
                b.upper = -zt;
            } else if b.lower > 0.0 && b.lower < zt {
                b.lower = zt;
            }
            b
        };
        let zero = self.zero_bucket().filter(|z| z.count > 0.0);
        self.negative_bucket_iter()
            .map(clamp)
            .chain(zero)
            .chain(self.positive_bucket_iter().map(clamp))
    }

    /// The buckets of [`FloatHistogram::all_bucket_iter`] in descending order.
    pub fn all_bucket_iter_desc(&self) -> impl Iterator<Item = Bucket<f64>> + '_ {
        let all: Vec<Bucket<f64>> = self.all_bucket_iter().collect();
        all.into_iter().rev()
    }
}

impl Histogram {
    /// True for a custom-bucket histogram.
    pub fn uses_custom_buckets(&self) -> bool {
        is_custom_buckets(self.schema)
    }

    /// The positive buckets (all buckets, for custom buckets) with absolute counts, ascending.
    pub fn positive_bucket_iter(&self) -> impl Iterator<Item = Bucket<u64>> + '_ {
        int_counts(&self.positive_spans, &self.positive_buckets)
            .map(|(i, c)| make_bucket(i, c as u64, self.schema, &self.custom_values, true))
    }

    /// The negative buckets with absolute counts, ascending (the most negative first).
    pub fn negative_bucket_iter(&self) -> impl Iterator<Item = Bucket<u64>> + '_ {
        let all: Vec<(i32, i64)> =
            int_counts(&self.negative_spans, &self.negative_buckets).collect();
        all.into_iter()
            .rev()
            .map(|(i, c)| make_bucket(i, c as u64, self.schema, &[], false))
    }

    /// The zero bucket; `None` for custom buckets.
    pub fn zero_bucket(&self) -> Option<Bucket<u64>> {
        if self.uses_custom_buckets() {
            return None;
        }
        Some(Bucket {
            lower: -self.zero_threshold,
            upper: self.zero_threshold,
            lower_inclusive: true,
            upper_inclusive: true,
            count: self.zero_count,
            index: 0,
        })
    }
}
