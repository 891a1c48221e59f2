//! Histogram chunks: a time-ordered run of one series' native histogram samples, all integer
//! or all float, compressed column by column (docs/format/chunk.md, "Histogram chunks").
//!
//! Every field of every sample is one column over the chunk's samples: timestamps, counter
//! reset hints, counts, zero counts, sums, and one column per bucket. A bucket's column holds
//! its absolute count at each sample (for an integer histogram, the running sum of the stored
//! deltas), so a counter's buckets grow smoothly and their delta-of-deltas pack into a few bits;
//! integer columns use the chunk's integer column coding, float columns its decimal coding or
//! XOR, whichever is smaller. Samples may change layout (schema, zero threshold, spans, custom
//! bounds) inside a chunk: the distinct layouts are listed once, each sample names its own,
//! and bucket columns run over the union of the layouts' buckets, so every sample round-trips
//! exactly, spans as written.
//!
//! Pure format code, like the rest of `chunk`: decoding arbitrary bytes never panics, and
//! never allocates more than [`MAX_VALUES`] bucket values, whatever the bytes say.

use std::collections::BTreeSet;

use super::{
    ChunkError, CorruptAt, FORMAT_VERSION, MODE_FLOAT_HISTOGRAM, MODE_HISTOGRAM, column,
    read_values, write_values,
};
use crate::encoding::{Decbuf, put_uvarint, put_varint};
use crate::model::histogram::{CounterResetHint, FloatHistogram, Histogram, Span, is_valid_schema};
use crate::model::{HistogramSample, HistogramValue};

/// Most histogram samples one chunk may hold.
pub const MAX_HISTOGRAM_SAMPLES: usize = 1 << 12;

/// Most bucket values (samples × buckets of the union of the chunk's layouts) one chunk may
/// hold: bounds what a corrupt chunk makes the decoder allocate (16 MiB of counts). Writers
/// cut chunks to stay under it ([`chunk_len`]).
pub const MAX_VALUES: usize = 1 << 21;

/// How a sample's buckets are laid out: everything about it but the counts.
#[derive(Debug, Clone, PartialEq)]
struct Layout {
    schema: i32,
    zero_threshold: u64,
    positive: Vec<Span>,
    negative: Vec<Span>,
    custom: Vec<u64>,
}

/// The fields of a histogram of either kind, borrowed.
struct Parts<'a> {
    schema: i32,
    zero_threshold: f64,
    positive: &'a [Span],
    negative: &'a [Span],
    custom: &'a [f64],
}

fn parts(h: &HistogramValue) -> Parts<'_> {
    match h {
        HistogramValue::Int(h) => Parts {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            positive: &h.positive_spans,
            negative: &h.negative_spans,
            custom: &h.custom_values,
        },
        HistogramValue::Float(h) => Parts {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            positive: &h.positive_spans,
            negative: &h.negative_spans,
            custom: &h.custom_values,
        },
    }
}

impl Layout {
    fn of(h: &HistogramValue) -> Layout {
        let p = parts(h);
        Layout {
            schema: p.schema,
            zero_threshold: p.zero_threshold.to_bits(),
            positive: p.positive.to_vec(),
            negative: p.negative.to_vec(),
            custom: p.custom.iter().map(|x| x.to_bits()).collect(),
        }
    }

    fn same_as(&self, h: &HistogramValue) -> bool {
        let p = parts(h);
        self.schema == p.schema
            && self.zero_threshold == p.zero_threshold.to_bits()
            && self.positive == p.positive
            && self.negative == p.negative
            && self.custom.len() == p.custom.len()
            && self
                .custom
                .iter()
                .zip(p.custom)
                .all(|(a, b)| *a == b.to_bits())
    }
}

/// The absolute bucket indexes `spans` cover, in order. Offsets and lengths are as written;
/// arithmetic is in `i64`, so no span list of `i32` offsets and `u32` lengths can overflow it.
fn indexes(spans: &[Span], out: &mut Vec<i64>) {
    let mut next = 0i64;
    for (i, s) in spans.iter().enumerate() {
        let start = if i == 0 {
            i64::from(s.offset)
        } else {
            next + i64::from(s.offset)
        };
        out.extend(start..start + i64::from(s.length));
        next = start + i64::from(s.length);
    }
}

fn bucket_count(spans: &[Span]) -> u64 {
    spans.iter().map(|s| u64::from(s.length)).sum()
}

fn buckets_of(h: &HistogramValue) -> u64 {
    let p = parts(h);
    bucket_count(p.positive) + bucket_count(p.negative)
}

/// How many of the leading `samples` (at most `max`) one chunk takes: all of one kind (integer
/// or float), within [`MAX_HISTOGRAM_SAMPLES`] and [`MAX_VALUES`]. At least one, for a
/// non-empty slice whose first sample alone fits.
pub fn chunk_len(samples: &[HistogramSample], max: usize) -> usize {
    let Some(first) = samples.first() else {
        return 0;
    };
    let float = matches!(first.h, HistogramValue::Float(_));
    let max = max.clamp(1, MAX_HISTOGRAM_SAMPLES);
    // The sum of the distinct layouts' bucket counts bounds their union from above.
    let mut layouts: Vec<Layout> = Vec::new();
    let mut bound = 0u64;
    let mut n = 0usize;
    for s in samples.iter().take(max) {
        if matches!(s.h, HistogramValue::Float(_)) != float {
            break;
        }
        let new = !layouts.iter().any(|l| l.same_as(&s.h));
        if new && !fits(&s.h) {
            break;
        }
        let b = if new { bound + buckets_of(&s.h) } else { bound };
        if (n as u64 + 1).saturating_mul(b) > MAX_VALUES as u64 {
            break;
        }
        if new {
            layouts.push(Layout::of(&s.h));
        }
        bound = b;
        n += 1;
    }
    n
}

/// True when every span after the first has a non-negative offset, so the spans name
/// strictly increasing bucket indexes (Prometheus's rule; appends refuse other histograms).
pub fn spans_in_order(spans: &[Span]) -> bool {
    spans.iter().skip(1).all(|s| s.offset >= 0)
}

/// True when `h` alone fits a chunk: its buckets within [`MAX_VALUES`], its spans in order.
pub fn fits(h: &HistogramValue) -> bool {
    let p = parts(h);
    buckets_of(h) <= MAX_VALUES as u64 && spans_in_order(p.positive) && spans_in_order(p.negative)
}

/// Encodes `samples` (one kind, `chunk_len(samples, ..) == samples.len()`, non-empty) into one
/// chunk, appended to `out`.
///
/// # Panics
/// If the samples are of both kinds or over the limits; callers cut with [`chunk_len`].
pub fn encode_into(samples: &[HistogramSample], out: &mut Vec<u8>) {
    assert!(
        !samples.is_empty() && chunk_len(samples, samples.len()) == samples.len(),
        "histogram chunk of {} samples breaks the limits",
        samples.len()
    );
    let float = matches!(samples[0].h, HistogramValue::Float(_));
    let n = samples.len();
    out.push(
        FORMAT_VERSION << 4
            | if float {
                MODE_FLOAT_HISTOGRAM
            } else {
                MODE_HISTOGRAM
            },
    );
    put_uvarint(out, n as u64);
    let mut sc = column::Scratch::default();
    let sc = &mut sc;
    let int_column = |s: &[i64], out: &mut Vec<u8>, orders, sc: &mut column::Scratch| {
        let p = column::plan(s, orders, sc);
        column::write(s, &p, sc, out);
    };
    let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
    int_column(&ts, out, column::Orders::DeltaOnly, sc);

    // Layouts, in order of first use, and each sample's.
    let mut layouts: Vec<Layout> = Vec::new();
    let mut ids: Vec<i64> = Vec::with_capacity(n);
    for s in samples {
        let id = match layouts.iter().position(|l| l.same_as(&s.h)) {
            Some(i) => i,
            None => {
                layouts.push(Layout::of(&s.h));
                layouts.len() - 1
            }
        };
        ids.push(id as i64);
    }
    put_uvarint(out, layouts.len() as u64);
    for l in &layouts {
        put_varint(out, i64::from(l.schema));
        out.extend_from_slice(&l.zero_threshold.to_le_bytes());
        for spans in [&l.positive, &l.negative] {
            put_uvarint(out, spans.len() as u64);
            for s in spans.iter() {
                put_varint(out, i64::from(s.offset));
                put_uvarint(out, u64::from(s.length));
            }
        }
        put_uvarint(out, l.custom.len() as u64);
        for c in &l.custom {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    if layouts.len() > 1 {
        int_column(&ids, out, column::Orders::All, sc);
    }
    let hints: Vec<i64> = samples
        .iter()
        .map(|s| i64::from(s.h.counter_reset_hint().as_u8()))
        .collect();
    int_column(&hints, out, column::Orders::All, sc);

    // The union of bucket indexes per side, and where each layout's buckets sit in it.
    let mut sides: [(BTreeSet<i64>, Vec<Vec<i64>>); 2] = Default::default();
    let mut scratch = Vec::new();
    for l in &layouts {
        for (side, spans) in sides.iter_mut().zip([&l.positive, &l.negative]) {
            scratch.clear();
            indexes(spans, &mut scratch);
            side.0.extend(scratch.iter().copied());
            side.1.push(scratch.clone());
        }
    }
    for (union, _) in &sides {
        put_uvarint(out, union.len() as u64);
        let mut prev = None;
        for &i in union {
            match prev {
                None => put_varint(out, i),
                Some(p) => put_uvarint(out, (i - p - 1) as u64),
            }
            prev = Some(i);
        }
    }

    // Scalar fields.
    match float {
        false => {
            fn int(s: &HistogramSample) -> Option<&Histogram> {
                match &s.h {
                    HistogramValue::Int(h) => Some(h),
                    HistogramValue::Float(_) => None,
                }
            }
            let count: Vec<i64> = samples
                .iter()
                .map(|s| int(s).map_or(0, |h| h.count as i64))
                .collect();
            int_column(&count, out, column::Orders::All, sc);
            let zero: Vec<i64> = samples
                .iter()
                .map(|s| int(s).map_or(0, |h| h.zero_count as i64))
                .collect();
            int_column(&zero, out, column::Orders::All, sc);
        }
        true => {
            fn float(s: &HistogramSample) -> Option<&FloatHistogram> {
                match &s.h {
                    HistogramValue::Float(h) => Some(h),
                    HistogramValue::Int(_) => None,
                }
            }
            let count: Vec<f64> = samples
                .iter()
                .map(|s| float(s).map_or(0.0, |h| h.count))
                .collect();
            write_values(&count, sc, out);
            let zero: Vec<f64> = samples
                .iter()
                .map(|s| float(s).map_or(0.0, |h| h.zero_count))
                .collect();
            write_values(&zero, sc, out);
        }
    }
    let sums: Vec<f64> = samples
        .iter()
        .map(|s| match &s.h {
            HistogramValue::Int(h) => h.sum,
            HistogramValue::Float(h) => h.sum,
        })
        .collect();
    write_values(&sums, sc, out);

    // Bucket columns: per side, per union index, each sample's absolute count there; a sample
    // without that bucket repeats the nearest earlier value (the first present one before any),
    // which the reader ignores and which keeps the column smooth.
    for (side_no, (union, per_layout)) in sides.iter().enumerate() {
        if union.is_empty() {
            continue;
        }
        let pos: Vec<i64> = union.iter().copied().collect();
        // absolute[sample][k] for each sample's own buckets, and their union positions.
        let mut table: Vec<Vec<Option<(i64, f64)>>> = vec![vec![None; n]; pos.len()];
        for (si, s) in samples.iter().enumerate() {
            let own = &per_layout[ids[si] as usize];
            match &s.h {
                HistogramValue::Int(h) => {
                    let deltas = if side_no == 0 {
                        &h.positive_buckets
                    } else {
                        &h.negative_buckets
                    };
                    let mut abs = 0i64;
                    for (k, d) in own.iter().zip(deltas) {
                        abs = abs.wrapping_add(*d);
                        if let Ok(u) = pos.binary_search(k) {
                            table[u][si] = Some((abs, 0.0));
                        }
                    }
                }
                HistogramValue::Float(h) => {
                    let counts = if side_no == 0 {
                        &h.positive_buckets
                    } else {
                        &h.negative_buckets
                    };
                    for (k, c) in own.iter().zip(counts) {
                        if let Ok(u) = pos.binary_search(k) {
                            table[u][si] = Some((0, *c));
                        }
                    }
                }
            }
        }
        for col in &table {
            let first = col.iter().flatten().next().copied().unwrap_or((0, 0.0));
            let mut last = first;
            let filled: Vec<(i64, f64)> = col
                .iter()
                .map(|v| {
                    if let Some(v) = v {
                        last = *v;
                    }
                    last
                })
                .collect();
            if float {
                let v: Vec<f64> = filled.iter().map(|x| x.1).collect();
                write_values(&v, sc, out);
            } else {
                let v: Vec<i64> = filled.iter().map(|x| x.0).collect();
                int_column(&v, out, column::Orders::All, sc);
            }
        }
    }
}

/// Encodes `samples` into a new chunk (see [`encode_into`]).
pub fn encode(samples: &[HistogramSample]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(samples, &mut out);
    out
}

/// Reads a count written as a uvarint, refused above `max`.
fn count(r: &mut Decbuf<'_>, max: u64, reason: &'static str) -> Result<usize, ChunkError> {
    let n = r.uvarint()?;
    if n > max {
        return Err(r.corrupt(reason));
    }
    Ok(n as usize)
}

fn read_spans(r: &mut Decbuf<'_>) -> Result<Vec<Span>, ChunkError> {
    // Each span takes at least two bytes.
    let k = count(
        r,
        (r.remaining() / 2) as u64,
        "histogram span count exceeds chunk",
    )?;
    let mut spans = Vec::with_capacity(k);
    for _ in 0..k {
        let offset = i32::try_from(r.varint()?)
            .map_err(|_| r.corrupt("histogram span offset out of range"))?;
        let length = u32::try_from(r.uvarint()?)
            .map_err(|_| r.corrupt("histogram span length out of range"))?;
        spans.push(Span { offset, length });
    }
    Ok(spans)
}

/// A column of `n` integers into `out` (cleared first).
fn int_column(r: &mut Decbuf<'_>, n: usize, out: &mut Vec<i64>) -> Result<(), ChunkError> {
    out.clear();
    column::decode(r, n, &mut |v| out.push(v))
}

/// Decodes a histogram chunk, appending its samples to `out`. On error `out` is left as it was.
pub fn decode(data: &[u8], out: &mut Vec<HistogramSample>) -> Result<(), ChunkError> {
    let start = out.len();
    let res = decode_inner(data, out);
    if res.is_err() {
        out.truncate(start);
    }
    res
}

/// True when `data` is a histogram chunk (by its header byte; nothing else is checked).
pub fn is_histogram_chunk(data: &[u8]) -> bool {
    data.first().is_some_and(|h| {
        h >> 4 == FORMAT_VERSION && matches!(h & 0x0f, MODE_HISTOGRAM | MODE_FLOAT_HISTOGRAM)
    })
}

fn decode_inner(data: &[u8], out: &mut Vec<HistogramSample>) -> Result<(), ChunkError> {
    let mut r = Decbuf::new(data);
    let h = r.u8()?;
    if h >> 4 != FORMAT_VERSION {
        return Err(ChunkError::UnsupportedVersion(h >> 4));
    }
    let float = match h & 0x0f {
        MODE_HISTOGRAM => false,
        MODE_FLOAT_HISTOGRAM => true,
        _ => return Err(r.corrupt("not a histogram chunk")),
    };
    let n = r.uvarint()?;
    if n == 0 || n > MAX_HISTOGRAM_SAMPLES as u64 {
        return Err(r.corrupt("histogram sample count out of range"));
    }
    let n = n as usize;
    let mut ts = Vec::with_capacity(n);
    int_column(&mut r, n, &mut ts)?;

    // Each layout takes at least 12 bytes.
    let most = (r.remaining() / 12).min(n) as u64;
    let nl = count(&mut r, most, "histogram layout count out of range")?;
    if nl == 0 {
        return Err(r.corrupt("histogram chunk without a layout"));
    }
    let mut layouts = Vec::with_capacity(nl);
    for _ in 0..nl {
        let schema = i32::try_from(r.varint()?)
            .ok()
            .filter(|s| is_valid_schema(*s))
            .ok_or_else(|| r.corrupt("bad histogram schema"))?;
        let zero_threshold = r.u64_le()?;
        let positive = read_spans(&mut r)?;
        let negative = read_spans(&mut r)?;
        let most = (r.remaining() / 8) as u64;
        let nc = count(&mut r, most, "custom bound count exceeds chunk")?;
        let mut custom = Vec::with_capacity(nc);
        for _ in 0..nc {
            custom.push(r.u64_le()?);
        }
        layouts.push(Layout {
            schema,
            zero_threshold,
            positive,
            negative,
            custom,
        });
    }
    let mut ids = Vec::new();
    if nl > 1 {
        int_column(&mut r, n, &mut ids)?;
        if ids.iter().any(|&i| i < 0 || i as usize >= nl) {
            return Err(r.corrupt("histogram layout id out of range"));
        }
    } else {
        ids.resize(n, 0);
    }
    let mut hints = Vec::with_capacity(n);
    int_column(&mut r, n, &mut hints)?;
    let hints: Vec<CounterResetHint> = hints
        .iter()
        .map(|&x| u8::try_from(x).ok().and_then(CounterResetHint::from_u8))
        .collect::<Option<_>>()
        .ok_or_else(|| r.corrupt("bad counter reset hint"))?;

    // The unions of bucket indexes; each must be within the value budget with n samples.
    let budget = (MAX_VALUES / n) as u64;
    let mut unions: [Vec<i64>; 2] = Default::default();
    let mut total = 0u64;
    for u in unions.iter_mut() {
        let k = count(
            &mut r,
            budget - total,
            "histogram bucket count over the chunk limit",
        )?;
        total += k as u64;
        if k > r.remaining() {
            return Err(r.corrupt("histogram bucket count exceeds chunk"));
        }
        u.reserve(k);
        for j in 0..k {
            let i = if j == 0 {
                r.varint()?
            } else {
                let gap = r.uvarint()?;
                let prev = u[j - 1];
                i64::try_from(gap)
                    .ok()
                    .and_then(|g| prev.checked_add(g))
                    .and_then(|x| x.checked_add(1))
                    .ok_or_else(|| r.corrupt("histogram bucket index overflows"))?
            };
            u.push(i);
        }
    }
    // Each layout's buckets, as positions in the unions; a layout naming a bucket outside them
    // (or more buckets than they hold) is corrupt.
    let mut positions: Vec<[Vec<u32>; 2]> = Vec::with_capacity(nl);
    let mut scratch = Vec::new();
    for l in &layouts {
        let mut both: [Vec<u32>; 2] = Default::default();
        for (side, (spans, union)) in [(&l.positive, &unions[0]), (&l.negative, &unions[1])]
            .into_iter()
            .enumerate()
        {
            if bucket_count(spans) > union.len() as u64 {
                return Err(r.corrupt("histogram layout has buckets outside the chunk's"));
            }
            scratch.clear();
            indexes(spans, &mut scratch);
            for k in &scratch {
                match union.binary_search(k) {
                    Ok(p) => both[side].push(p as u32),
                    Err(_) => {
                        return Err(r.corrupt("histogram layout has buckets outside the chunk's"));
                    }
                }
            }
        }
        positions.push(both);
    }

    // Scalars.
    let (mut icount, mut izero) = (Vec::new(), Vec::new());
    let (mut fcount, mut fzero) = (Vec::new(), Vec::new());
    if float {
        read_values(&mut r, n, &mut fcount)?;
        read_values(&mut r, n, &mut fzero)?;
    } else {
        int_column(&mut r, n, &mut icount)?;
        int_column(&mut r, n, &mut izero)?;
    }
    let mut sums = Vec::new();
    read_values(&mut r, n, &mut sums)?;

    // Bucket columns, side by side.
    let mut cols_i: [Vec<Vec<i64>>; 2] = Default::default();
    let mut cols_f: [Vec<Vec<f64>>; 2] = Default::default();
    for side in 0..2 {
        for _ in 0..unions[side].len() {
            if float {
                let mut v = Vec::new();
                read_values(&mut r, n, &mut v)?;
                cols_f[side].push(v);
            } else {
                let mut v = Vec::new();
                int_column(&mut r, n, &mut v)?;
                cols_i[side].push(v);
            }
        }
    }
    if r.remaining() != 0 {
        return Err(r.corrupt("trailing bytes after histogram chunk"));
    }

    out.reserve(n);
    for si in 0..n {
        let id = ids[si] as usize;
        let l = &layouts[id];
        let pos = &positions[id];
        let h = if float {
            let bucket = |side: usize| -> Vec<f64> {
                pos[side]
                    .iter()
                    .map(|&p| cols_f[side][p as usize][si])
                    .collect()
            };
            HistogramValue::Float(Box::new(FloatHistogram {
                counter_reset_hint: hints[si],
                schema: l.schema,
                zero_threshold: f64::from_bits(l.zero_threshold),
                zero_count: fzero[si],
                count: fcount[si],
                sum: sums[si],
                positive_spans: l.positive.clone(),
                negative_spans: l.negative.clone(),
                positive_buckets: bucket(0),
                negative_buckets: bucket(1),
                custom_values: l.custom.iter().map(|x| f64::from_bits(*x)).collect(),
            }))
        } else {
            let deltas = |side: usize| -> Vec<i64> {
                let mut prev = 0i64;
                pos[side]
                    .iter()
                    .map(|&p| {
                        let abs = cols_i[side][p as usize][si];
                        let d = abs.wrapping_sub(prev);
                        prev = abs;
                        d
                    })
                    .collect()
            };
            HistogramValue::Int(Box::new(Histogram {
                counter_reset_hint: hints[si],
                schema: l.schema,
                zero_threshold: f64::from_bits(l.zero_threshold),
                zero_count: izero[si] as u64,
                count: icount[si] as u64,
                sum: sums[si],
                positive_spans: l.positive.clone(),
                negative_spans: l.negative.clone(),
                positive_buckets: deltas(0),
                negative_buckets: deltas(1),
                custom_values: l.custom.iter().map(|x| f64::from_bits(*x)).collect(),
            }))
        };
        out.push(HistogramSample { t: ts[si], h });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN;
    use proptest::prelude::*;

    /// A latency histogram as a client library exposes it, scraped every 15 s: buckets fill
    /// in as observations spread (so the layout grows now and then), counts only grow.
    pub(crate) fn realistic(n: usize, seed: u64) -> Vec<HistogramSample> {
        let mut x = seed;
        let mut rnd = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let mut counts = [0i64; 24];
        let mut lo = 10usize;
        let mut hi = 14usize;
        let mut zero = 0u64;
        let mut sum = 0.0f64;
        let mut t = 1_712_000_000_000i64;
        let mut out = Vec::new();
        for i in 0..n {
            t += 15_000 + (rnd() % 40) as i64 - 20;
            for _ in 0..(50 + rnd() % 30) {
                let b = (10 + (rnd() % 5) as i64 + (rnd() % 3) as i64 - 2).clamp(0, 23) as usize;
                let b = if rnd() % 97 == 0 {
                    (rnd() % 24) as usize
                } else {
                    b
                };
                counts[b] += 1;
                lo = lo.min(b);
                hi = hi.max(b);
                sum += (b as f64 / 4.0).exp2() * 0.001 * (1.0 + (rnd() % 1000) as f64 / 5000.0);
            }
            zero += rnd() % 2;
            let buckets = &counts[lo..=hi];
            let mut deltas = Vec::with_capacity(buckets.len());
            let mut prev = 0;
            for &c in buckets {
                deltas.push(c - prev);
                prev = c;
            }
            let count = buckets.iter().sum::<i64>() as u64 + zero;
            out.push(HistogramSample {
                t,
                h: HistogramValue::Int(Box::new(Histogram {
                    counter_reset_hint: if i == 0 {
                        CounterResetHint::Unknown
                    } else {
                        CounterResetHint::NotReset
                    },
                    schema: 2,
                    zero_threshold: 1e-128,
                    zero_count: zero,
                    count,
                    sum,
                    positive_spans: vec![Span::new(lo as i32 - 40, buckets.len() as u32)],
                    positive_buckets: deltas,
                    ..Histogram::default()
                })),
            });
        }
        out
    }

    fn round_trip(samples: &[HistogramSample]) -> Vec<u8> {
        let bytes = encode(samples);
        let mut got = vec![HistogramSample {
            t: -1,
            h: HistogramValue::Int(Box::default()),
        }];
        decode(&bytes, &mut got).unwrap();
        assert_eq!(&got[1..], samples);
        assert!(is_histogram_chunk(&bytes));
        bytes
    }

    #[test]
    fn realistic_series_round_trip_and_print_their_size() {
        let s = realistic(120, 7);
        let bytes = round_trip(&s);
        let layouts = {
            let mut l: Vec<Layout> = Vec::new();
            for x in &s {
                if !l.iter().any(|y| y.same_as(&x.h)) {
                    l.push(Layout::of(&x.h));
                }
            }
            l.len()
        };
        println!(
            "120 integer histograms ({layouts} layouts, {} buckets at the end): {} bytes, {:.1} bytes/sample",
            buckets_of(&s[119].h),
            bytes.len(),
            bytes.len() as f64 / 120.0
        );
        let f: Vec<HistogramSample> = s
            .iter()
            .map(|x| HistogramSample {
                t: x.t,
                h: HistogramValue::Float(Box::new(x.h.to_float())),
            })
            .collect();
        let fb = round_trip(&f);
        println!(
            "the same as float histograms: {} bytes, {:.1} bytes/sample",
            fb.len(),
            fb.len() as f64 / 120.0
        );
        // Far below the raw fields (8 bytes per count, sum and bucket).
        assert!(bytes.len() < 120 * 8 * 4);
    }

    #[test]
    fn edges_round_trip() {
        let one = |h: HistogramValue| vec![HistogramSample { t: 5, h }];
        // Empty histogram, stale marker, special floats, extreme counts and offsets.
        round_trip(&one(HistogramValue::Int(Box::default())));
        round_trip(&one(HistogramValue::Int(Box::new(Histogram {
            sum: STALE_NAN,
            ..Histogram::default()
        }))));
        round_trip(&one(HistogramValue::Float(Box::new(FloatHistogram {
            sum: STALE_NAN,
            ..FloatHistogram::default()
        }))));
        round_trip(&one(HistogramValue::Int(Box::new(Histogram {
            schema: 8,
            zero_threshold: -0.0,
            zero_count: u64::MAX,
            count: u64::MAX,
            sum: f64::NAN,
            positive_spans: vec![Span::new(i32::MIN, 2), Span::new(i32::MAX, 1)],
            positive_buckets: vec![i64::MIN, i64::MAX, -1],
            negative_spans: vec![Span::new(i32::MAX, 1), Span::new(0, 0)],
            negative_buckets: vec![7],
            ..Histogram::default()
        }))));
        round_trip(&one(HistogramValue::Float(Box::new(FloatHistogram {
            schema: -53,
            count: f64::INFINITY,
            zero_count: -0.0,
            sum: f64::NEG_INFINITY,
            positive_spans: vec![Span::new(0, 2)],
            positive_buckets: vec![f64::NAN, 5e-324],
            custom_values: vec![f64::MIN, f64::MAX],
            ..FloatHistogram::default()
        }))));
        // The most samples a chunk takes, one layout.
        let many = realistic(MAX_HISTOGRAM_SAMPLES, 3);
        assert_eq!(chunk_len(&many, usize::MAX), MAX_HISTOGRAM_SAMPLES);
        round_trip(&many);
    }

    #[test]
    fn chunk_len_cuts_at_a_kind_change_and_at_the_value_budget() {
        let mut s = realistic(10, 1);
        s[4].h = HistogramValue::Float(Box::new(s[4].h.to_float()));
        assert_eq!(chunk_len(&s, 120), 4);
        assert_eq!(chunk_len(&s[4..], 120), 1);
        assert_eq!(chunk_len(&s, 3), 3);
        assert_eq!(chunk_len(&[], 120), 0);
        let wide = |len: u32| {
            HistogramValue::Int(Box::new(Histogram {
                positive_spans: vec![Span::new(0, len)],
                positive_buckets: vec![0; len as usize],
                ..Histogram::default()
            }))
        };
        let big: Vec<HistogramSample> = (0..8)
            .map(|t| HistogramSample {
                t,
                h: wide((MAX_VALUES / 4) as u32),
            })
            .collect();
        assert_eq!(chunk_len(&big, 120), 4);
        round_trip(&big[..4]);
        assert!(fits(&big[0].h));
        assert!(!fits(&wide(MAX_VALUES as u32 + 1)));
        // Spans naming a bucket twice do not fit.
        let twice = HistogramValue::Int(Box::new(Histogram {
            positive_spans: vec![Span::new(0, 2), Span::new(-2, 1)],
            positive_buckets: vec![1, 1, 1],
            ..Histogram::default()
        }));
        assert!(!fits(&twice));
        let mixed = [s[0].clone(), HistogramSample { t: 1, h: twice }];
        assert_eq!(chunk_len(&mixed, 120), 1);
        assert_eq!(
            chunk_len(
                &[HistogramSample {
                    t: 0,
                    h: wide(MAX_VALUES as u32 + 1)
                }],
                120
            ),
            0
        );
    }

    #[test]
    fn hostile_counts_are_refused_before_allocating() {
        // Header, one sample, a one-value time column, then absurd layout and span counts.
        let mut base = vec![FORMAT_VERSION << 4 | MODE_HISTOGRAM];
        put_uvarint(&mut base, 1);
        let mut sc = column::Scratch::default();
        let p = column::plan(&[7], column::Orders::DeltaOnly, &mut sc);
        column::write(&[7], &p, &mut sc, &mut base);
        let mut huge_layouts = base.clone();
        put_uvarint(&mut huge_layouts, u64::MAX);
        let mut huge_spans = base.clone();
        put_uvarint(&mut huge_spans, 1);
        put_varint(&mut huge_spans, 0);
        huge_spans.extend_from_slice(&0u64.to_le_bytes());
        put_uvarint(&mut huge_spans, 1 << 40);
        // One span of four billion buckets, in a layout the union cannot hold.
        let mut long_span = base.clone();
        put_uvarint(&mut long_span, 1);
        put_varint(&mut long_span, 0);
        long_span.extend_from_slice(&0u64.to_le_bytes());
        put_uvarint(&mut long_span, 1);
        put_varint(&mut long_span, -7);
        put_uvarint(&mut long_span, u64::from(u32::MAX));
        long_span.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        for bytes in [huge_layouts, huge_spans, long_span] {
            let mut out = Vec::new();
            let e = decode(&bytes, &mut out).unwrap_err();
            assert!(matches!(e, ChunkError::Corrupt { .. }), "{e}");
            assert!(out.is_empty());
        }
        // A float chunk is not a histogram chunk, and the other way round.
        let f = crate::storage::chunk::encode(&[crate::model::Sample::new(1, 2.0)]);
        assert!(!is_histogram_chunk(&f));
        assert!(decode(&f, &mut Vec::new()).is_err());
        let h = encode(&realistic(3, 2));
        assert!(crate::storage::chunk::decode(&h, &mut Vec::new()).is_err());
    }

    fn arb_spans() -> impl Strategy<Value = Vec<Span>> {
        prop::collection::vec((-3i32..4, 0u32..4), 0..3).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (o, l))| Span::new(if i == 0 { o } else { o.abs() }, l))
                .collect()
        })
    }

    fn arb_value() -> impl Strategy<Value = f64> {
        prop_oneof![
            (-1000i64..1000).prop_map(|x| x as f64 / 8.0),
            any::<u64>().prop_map(f64::from_bits),
            Just(STALE_NAN),
        ]
    }

    fn arb_sample(float: bool) -> impl Strategy<Value = HistogramValue> {
        (
            0u8..4,
            prop_oneof![Just(0), Just(3), Just(-53)],
            prop_oneof![Just(0.0), Just(0.001)],
            arb_spans(),
            arb_spans(),
            prop::collection::vec(-5i64..50, 12),
            prop::collection::vec(arb_value(), 12),
            arb_value(),
            0u64..1000,
        )
            .prop_map(
                move |(hint, schema, zt, pos, neg, ints, floats, sum, count)| {
                    let np: usize = pos.iter().map(|s| s.length as usize).sum();
                    let nn: usize = neg.iter().map(|s| s.length as usize).sum();
                    let counter_reset_hint = CounterResetHint::from_u8(hint).unwrap();
                    let custom = if schema == -53 {
                        vec![0.5, 1.0]
                    } else {
                        vec![]
                    };
                    if float {
                        HistogramValue::Float(Box::new(FloatHistogram {
                            counter_reset_hint,
                            schema,
                            zero_threshold: zt,
                            zero_count: count as f64 / 4.0,
                            count: count as f64,
                            sum,
                            positive_spans: pos,
                            negative_spans: neg,
                            positive_buckets: floats[..np].to_vec(),
                            negative_buckets: floats[np..np + nn].to_vec(),
                            custom_values: custom,
                        }))
                    } else {
                        HistogramValue::Int(Box::new(Histogram {
                            counter_reset_hint,
                            schema,
                            zero_threshold: zt,
                            zero_count: count / 4,
                            count,
                            sum,
                            positive_spans: pos,
                            negative_spans: neg,
                            positive_buckets: ints[..np].to_vec(),
                            negative_buckets: ints[np..np + nn].to_vec(),
                            custom_values: custom,
                        }))
                    }
                },
            )
    }

    fn arb_chunk() -> impl Strategy<Value = Vec<HistogramSample>> {
        any::<bool>().prop_flat_map(|float| {
            prop::collection::vec((0i64..100_000, arb_sample(float)), 1..40).prop_map(|v| {
                let mut t = 0;
                v.into_iter()
                    .map(|(dt, h)| {
                        t += dt;
                        HistogramSample { t, h }
                    })
                    .collect()
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_chunk_round_trips(samples in arb_chunk()) {
            let bytes = encode(&samples);
            let mut got = Vec::new();
            decode(&bytes, &mut got).unwrap();
            prop_assert_eq!(got, samples);
        }

        #[test]
        fn damaged_chunks_are_errors_or_decode_within_bounds(
            samples in arb_chunk(),
            at in any::<prop::sample::Index>(),
            bits in 1u8..=255,
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode(&samples);
            let mut flipped = bytes.clone();
            flipped[at.index(bytes.len())] ^= bits;
            let mut out = Vec::new();
            if decode(&flipped, &mut out).is_ok() {
                prop_assert!(out.len() <= MAX_HISTOGRAM_SAMPLES);
            } else {
                prop_assert!(out.is_empty());
            }
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(decode(short, &mut Vec::new()).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            mut bytes in prop::collection::vec(any::<u8>(), 0..300),
            float in any::<bool>(),
        ) {
            if let Some(b) = bytes.first_mut() {
                *b = FORMAT_VERSION << 4 | if float { MODE_FLOAT_HISTOGRAM } else { MODE_HISTOGRAM };
            }
            let _ = decode(&bytes, &mut Vec::new());
        }
    }
}
