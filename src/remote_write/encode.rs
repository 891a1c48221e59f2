//! The request body: a `prometheus.WriteRequest` encoded by hand, then snappy-compressed
//! (block format).
//!
//! A batch groups its samples by series as they arrive, without hashing: each series has a
//! dense slot number in its shard, and the batch links the samples of one slot together. Each
//! series' labels are encoded to protobuf once, when the series is first seen, so encoding a
//! batch copies label bytes and writes samples. The layout is exactly what prost writes for
//! the types in `proto` (except that zero values are written rather than omitted, which every
//! decoder accepts); a test checks it against prost.
//!
//! Histogram samples go in the same slot chains' sibling chain and are written as the
//! `histograms` field (4) after the slot's samples, in prost's layout (zero scalars omitted,
//! oneof counts always written, repeated numbers packed), which is byte for byte what
//! Prometheus's gogo-generated prompb writes.

use prost::Message;

use crate::encoding::{put_u64_le, put_uvarint, uvarint_len};
use crate::model::Labels;
use crate::model::histogram::{CounterResetHint, HistogramValue, Span};
use crate::remote_write::proto;

/// Field 1 of WriteRequest (`timeseries`), length-delimited.
const TAG_TIMESERIES: u8 = 0x0a;
/// Field 1 of TimeSeries (`labels`), length-delimited.
const TAG_LABEL: u8 = 0x0a;
/// Field 2 of TimeSeries (`samples`), length-delimited.
const TAG_SAMPLE: u8 = 0x12;
/// Field 1 of Label (`name`) and of Sample (`value`, fixed64) differ in wire type.
const TAG_NAME: u8 = 0x0a;
const TAG_VALUE_STRING: u8 = 0x12;
const TAG_VALUE_DOUBLE: u8 = 0x09;
/// Field 2 of Sample (`timestamp`), varint.
const TAG_TIMESTAMP: u8 = 0x10;
/// Field 4 of TimeSeries (`histograms`), length-delimited.
const TAG_HISTOGRAM: u8 = 0x22;

fn spans(s: &[Span]) -> Vec<proto::BucketSpan> {
    s.iter()
        .map(|s| proto::BucketSpan {
            offset: s.offset,
            length: s.length,
        })
        .collect()
}

fn reset_hint(h: CounterResetHint) -> i32 {
    // prompb's Histogram.ResetHint: UNKNOWN 0, YES 1, NO 2, GAUGE 3.
    match h {
        CounterResetHint::Unknown => 0,
        CounterResetHint::Reset => 1,
        CounterResetHint::NotReset => 2,
        CounterResetHint::Gauge => 3,
    }
}

/// The prompb message of one histogram sample, as Prometheus's sender builds it: an integer
/// histogram with integer counts and bucket deltas, a float one with float counts and
/// absolute bucket counts.
pub fn histogram_proto(t: i64, h: &HistogramValue) -> proto::Histogram {
    match h {
        HistogramValue::Int(h) => proto::Histogram {
            count: Some(proto::HistogramCount::Int(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(proto::HistogramZeroCount::Int(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_deltas: h.negative_buckets.clone(),
            negative_counts: vec![],
            positive_spans: spans(&h.positive_spans),
            positive_deltas: h.positive_buckets.clone(),
            positive_counts: vec![],
            reset_hint: reset_hint(h.counter_reset_hint),
            timestamp: t,
            custom_values: h.custom_values.clone(),
        },
        HistogramValue::Float(h) => proto::Histogram {
            count: Some(proto::HistogramCount::Float(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(proto::HistogramZeroCount::Float(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_deltas: vec![],
            negative_counts: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_deltas: vec![],
            positive_counts: h.positive_buckets.clone(),
            reset_hint: reset_hint(h.counter_reset_hint),
            timestamp: t,
            custom_values: h.custom_values.clone(),
        },
    }
}

/// The protobuf bytes of a series' labels: one `labels` field per pair, in label order.
pub fn encode_labels(labels: &Labels) -> Vec<u8> {
    let mut out = Vec::with_capacity(labels.iter().map(|(n, v)| n.len() + v.len() + 6).sum());
    for (n, v) in labels.iter() {
        let inner =
            1 + uvarint_len(n.len() as u64) + n.len() + 1 + uvarint_len(v.len() as u64) + v.len();
        out.push(TAG_LABEL);
        put_uvarint(&mut out, inner as u64);
        out.push(TAG_NAME);
        put_uvarint(&mut out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
        out.push(TAG_VALUE_STRING);
        put_uvarint(&mut out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Bytes of one encoded Sample message body.
fn sample_len(t: i64) -> usize {
    1 + 8 + 1 + uvarint_len(t as u64)
}

/// No next sample in a slot's chain.
const END: u32 = u32::MAX;

/// Samples of one request, grouped by series slot in first-seen order.
#[derive(Default)]
pub struct Batch {
    /// Batch generation; a slot belongs to this batch when its stamp equals it.
    generation: u32,
    slot_gen: Vec<u32>,
    slot_first: Vec<u32>,
    slot_last: Vec<u32>,
    /// Slots in the order their first sample arrived.
    order: Vec<u32>,
    /// Per sample: the next sample of the same slot.
    next: Vec<u32>,
    ts: Vec<i64>,
    vs: Vec<f64>,
    /// Histogram samples: their own chains per slot, already encoded as prompb messages.
    slot_hfirst: Vec<u32>,
    slot_hlast: Vec<u32>,
    hnext: Vec<u32>,
    /// Per histogram sample: its encoded message's range in `hbytes`.
    hrange: Vec<(u32, u32)>,
    hbytes: Vec<u8>,
    max_t: i64,
}

impl Batch {
    /// Makes room for `slot` and marks it used in this batch; true when first used now.
    fn touch(&mut self, slot: u32, t: i64) -> bool {
        let s = slot as usize;
        if s >= self.slot_gen.len() {
            let n = (s + 1).max(self.slot_gen.len() * 2);
            self.slot_gen.resize(n, 0);
            self.slot_first.resize(n, END);
            self.slot_last.resize(n, END);
            self.slot_hfirst.resize(n, END);
            self.slot_hlast.resize(n, END);
        }
        if self.is_empty() {
            self.max_t = t;
            // Generation 0 marks slots never used; start every batch above it.
            self.generation = self.generation.wrapping_add(1).max(1);
        } else if t > self.max_t {
            self.max_t = t;
        }
        if self.slot_gen[s] != self.generation {
            self.slot_gen[s] = self.generation;
            self.slot_first[s] = END;
            self.slot_hfirst[s] = END;
            self.order.push(slot);
            true
        } else {
            false
        }
    }

    /// Adds a sample of `slot`; samples of a slot must come in time order.
    pub fn push(&mut self, slot: u32, t: i64, v: f64) {
        self.touch(slot, t);
        let s = slot as usize;
        let i = self.ts.len() as u32;
        self.ts.push(t);
        self.vs.push(v);
        self.next.push(END);
        if self.slot_first[s] == END {
            self.slot_first[s] = i;
        } else {
            self.next[self.slot_last[s] as usize] = i;
        }
        self.slot_last[s] = i;
    }

    /// Adds a histogram sample of `slot`; histogram samples of a slot must come in time order.
    pub fn push_histogram(&mut self, slot: u32, t: i64, h: &HistogramValue) {
        self.touch(slot, t);
        let s = slot as usize;
        let i = self.hrange.len() as u32;
        let from = self.hbytes.len();
        // Encoding into a Vec cannot fail for want of room.
        let _ = histogram_proto(t, h).encode(&mut self.hbytes);
        self.hrange.push((from as u32, self.hbytes.len() as u32));
        self.hnext.push(END);
        if self.slot_hfirst[s] == END {
            self.slot_hfirst[s] = i;
        } else {
            self.hnext[self.slot_hlast[s] as usize] = i;
        }
        self.slot_hlast[s] = i;
    }

    /// Samples held, histogram samples included.
    pub fn len(&self) -> usize {
        self.ts.len() + self.hrange.len()
    }

    /// Histogram samples held.
    pub fn histograms(&self) -> usize {
        self.hrange.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty() && self.hrange.is_empty()
    }

    /// True when `slot` has samples in this batch.
    pub fn holds(&self, slot: u32) -> bool {
        !self.is_empty() && self.slot_gen.get(slot as usize) == Some(&self.generation)
    }

    /// The newest timestamp held (meaningless when empty).
    pub fn max_t(&self) -> i64 {
        self.max_t
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.order.clear();
        self.next.clear();
        self.ts.clear();
        self.vs.clear();
        self.hnext.clear();
        self.hrange.clear();
        self.hbytes.clear();
        if self.generation == u32::MAX {
            // Wrap-around: old stamps could collide with new generations.
            self.slot_gen.iter_mut().for_each(|g| *g = 0);
            self.generation = 0;
        }
    }

    /// Appends the WriteRequest to `out`; `labels(slot)` gives each slot's encoded labels.
    pub fn encode<'a>(&self, labels: impl Fn(u32) -> &'a [u8], out: &mut Vec<u8>) {
        for &slot in &self.order {
            let lb = labels(slot);
            let mut body = lb.len();
            let mut i = self.slot_first[slot as usize];
            while i != END {
                let n = sample_len(self.ts[i as usize]);
                body += 1 + uvarint_len(n as u64) + n;
                i = self.next[i as usize];
            }
            let mut i = self.slot_hfirst[slot as usize];
            while i != END {
                let (a, b) = self.hrange[i as usize];
                let n = (b - a) as usize;
                body += 1 + uvarint_len(n as u64) + n;
                i = self.hnext[i as usize];
            }
            out.push(TAG_TIMESERIES);
            put_uvarint(out, body as u64);
            out.extend_from_slice(lb);
            let mut i = self.slot_first[slot as usize];
            while i != END {
                let (t, v) = (self.ts[i as usize], self.vs[i as usize]);
                out.push(TAG_SAMPLE);
                put_uvarint(out, sample_len(t) as u64);
                out.push(TAG_VALUE_DOUBLE);
                put_u64_le(out, v.to_bits());
                out.push(TAG_TIMESTAMP);
                put_uvarint(out, t as u64);
                i = self.next[i as usize];
            }
            let mut i = self.slot_hfirst[slot as usize];
            while i != END {
                let (a, b) = self.hrange[i as usize];
                out.push(TAG_HISTOGRAM);
                put_uvarint(out, u64::from(b - a));
                out.extend_from_slice(&self.hbytes[a as usize..b as usize]);
                i = self.hnext[i as usize];
            }
        }
    }
}

/// Protobuf and snappy buffers reused from request to request.
pub struct Encoder {
    pb: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            pb: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }
}

impl Encoder {
    /// The snappy-compressed WriteRequest for `batch`.
    pub fn encode<'a>(&mut self, batch: &Batch, labels: impl Fn(u32) -> &'a [u8]) -> &[u8] {
        self.pb.clear();
        batch.encode(labels, &mut self.pb);
        self.compressed
            .resize(snap::raw::max_compress_len(self.pb.len()), 0);
        match self.snappy.compress(&self.pb, &mut self.compressed) {
            Ok(n) => &self.compressed[..n],
            // Only an input over snappy's 4 GiB limit fails, far beyond any batch.
            Err(_) => &[],
        }
    }

    /// Bytes of the last request before compression.
    pub fn raw_len(&self) -> usize {
        self.pb.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::STALE_NAN;
    use crate::remote_write::proto;
    use prost::Message;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn batches_decode_with_prost_grouped_by_series_in_time_order() {
        let series = [
            labels(&[("__name__", "up"), ("job", "node"), ("instance", "h:9100")]),
            labels(&[
                ("__name__", "http_requests_total"),
                ("path", "/api/\"v1\"/ü"),
            ]),
            labels(&[("__name__", "x"), ("le", &"long-".repeat(40))]),
        ];
        let enc: Vec<Vec<u8>> = series.iter().map(encode_labels).collect();
        let mut b = Batch::default();
        let pts = [
            (2u32, 1_712_000_000_123i64, 0.0),
            (0, 1_712_000_000_123, 1.0),
            (2, 1_712_000_015_371, -2.5e-300),
            (1, 1_712_000_000_124, STALE_NAN),
            (0, 1_712_000_015_122, f64::NAN),
            (2, 1_712_000_030_000, f64::INFINITY),
            (1, -17, 7.25),
        ];
        for round in 0..3 {
            b.clear();
            let take = pts.len() - round;
            for &(s, t, v) in &pts[..take] {
                b.push(s, t, v);
            }
            assert_eq!(b.len(), take);
            let mut out = Vec::new();
            b.encode(|s| &enc[s as usize], &mut out);
            let got = proto::WriteRequest::decode(out.as_slice()).unwrap();
            // Series in first-seen order, each with its samples in arrival order.
            let mut want: Vec<(u32, Vec<(i64, u64)>)> = Vec::new();
            for &(s, t, v) in &pts[..take] {
                match want.iter_mut().find(|w| w.0 == s) {
                    Some(w) => w.1.push((t, v.to_bits())),
                    None => want.push((s, vec![(t, v.to_bits())])),
                }
            }
            assert_eq!(got.timeseries.len(), want.len());
            for (ts, (slot, samples)) in got.timeseries.iter().zip(&want) {
                let names: Vec<(&str, &str)> = ts
                    .labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str()))
                    .collect();
                let expect: Vec<(&str, &str)> = series[*slot as usize].iter().collect();
                assert_eq!(names, expect);
                let got: Vec<(i64, u64)> = ts
                    .samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits()))
                    .collect();
                assert_eq!(&got, samples);
            }
        }
    }

    #[test]
    fn labels_encode_as_prost_does() {
        let l = labels(&[("__name__", "up"), ("a", &"v".repeat(200))]);
        let ours = encode_labels(&l);
        let ts = proto::TimeSeries {
            labels: l
                .iter()
                .map(|(n, v)| proto::Label {
                    name: n.into(),
                    value: v.into(),
                })
                .collect(),
            samples: vec![],
            exemplars: vec![],
            histograms: vec![],
        };
        assert_eq!(ours, ts.encode_to_vec());
    }

    #[test]
    fn compressed_requests_round_trip_through_snappy() {
        let enc = encode_labels(&labels(&[("__name__", "m"), ("i", "1")]));
        let mut b = Batch::default();
        for k in 0..500 {
            b.push(0, 1_712_000_000_000 + k * 15_013, k as f64 * 0.37);
        }
        let mut e = Encoder::default();
        let body = e.encode(&b, |_| &enc).to_vec();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(raw.len(), e.raw_len());
        let req = proto::WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), 1);
        assert_eq!(req.timeseries[0].samples.len(), 500);
        assert_eq!(req.timeseries[0].samples[499].value, 499.0 * 0.37);
    }

    fn int_hist(schema: i32, sum: f64, hint: CounterResetHint) -> HistogramValue {
        use crate::model::histogram::Histogram;
        let custom = schema == crate::model::histogram::CUSTOM_BUCKETS_SCHEMA;
        HistogramValue::Int(Box::new(Histogram {
            counter_reset_hint: hint,
            schema,
            zero_threshold: if custom { 0.0 } else { 1e-128 },
            zero_count: if custom { 0 } else { 3 },
            count: 19,
            sum,
            positive_spans: vec![Span::new(-2, 2), Span::new(3, 1)],
            negative_spans: if custom {
                vec![]
            } else {
                vec![Span::new(0, 1)]
            },
            positive_buckets: vec![5, -2, 4],
            negative_buckets: if custom { vec![] } else { vec![2] },
            custom_values: if custom {
                vec![0.1, 0.5, 1.0, 2.5, 7.0, 10.0]
            } else {
                vec![]
            },
        }))
    }

    fn float_hist(sum: f64) -> HistogramValue {
        use crate::model::histogram::FloatHistogram;
        HistogramValue::Float(Box::new(FloatHistogram {
            counter_reset_hint: CounterResetHint::Gauge,
            schema: -4,
            zero_threshold: 0.0,
            zero_count: 0.5,
            count: 12.25,
            sum,
            positive_spans: vec![Span::new(1, 2)],
            negative_spans: vec![],
            positive_buckets: vec![1.5, 10.25],
            negative_buckets: vec![],
            custom_values: vec![],
        }))
    }

    #[test]
    fn histograms_encode_as_prost_does_beside_float_samples() {
        let series = [
            labels(&[("__name__", "h"), ("job", "a")]),
            labels(&[("__name__", "g"), ("job", "b")]),
        ];
        let enc: Vec<Vec<u8>> = series.iter().map(encode_labels).collect();
        let hs = [
            (
                0u32,
                1_712_000_000_000i64,
                int_hist(3, 41.5, CounterResetHint::Unknown),
            ),
            (1, 1_712_000_000_001, float_hist(-0.25)),
            (
                0,
                1_712_000_015_000,
                int_hist(3, 99.0, CounterResetHint::NotReset),
            ),
            (
                0,
                1_712_000_030_000,
                int_hist(
                    crate::model::histogram::CUSTOM_BUCKETS_SCHEMA,
                    7.0,
                    CounterResetHint::Reset,
                ),
            ),
            (1, 1_712_000_045_000, float_hist(STALE_NAN)),
            (0, 0, int_hist(0, 0.0, CounterResetHint::Unknown)),
        ];
        let mut b = Batch::default();
        b.push(1, 1_712_000_000_000, 2.5);
        for (s, t, h) in &hs {
            b.push_histogram(*s, *t, h);
        }
        assert_eq!(b.len(), hs.len() + 1);
        assert_eq!(b.histograms(), hs.len());
        let mut out = Vec::new();
        b.encode(|s| &enc[s as usize], &mut out);
        // What prost writes for the same WriteRequest, byte for byte.
        let want = proto::WriteRequest {
            timeseries: vec![
                proto::TimeSeries {
                    labels: proto::TimeSeries::decode(enc[0].as_slice()).unwrap().labels,
                    samples: vec![],
                    exemplars: vec![],
                    histograms: hs
                        .iter()
                        .filter(|h| h.0 == 0)
                        .map(|(_, t, h)| histogram_proto(*t, h))
                        .collect(),
                },
                proto::TimeSeries {
                    labels: proto::TimeSeries::decode(enc[1].as_slice()).unwrap().labels,
                    samples: vec![proto::Sample {
                        value: 2.5,
                        timestamp: 1_712_000_000_000,
                    }],
                    exemplars: vec![],
                    histograms: hs
                        .iter()
                        .filter(|h| h.0 == 1)
                        .map(|(_, t, h)| histogram_proto(*t, h))
                        .collect(),
                },
            ],
            metadata: vec![],
        };
        // Series 1 came first (its float sample).
        let want = proto::WriteRequest {
            timeseries: vec![want.timeseries[1].clone(), want.timeseries[0].clone()],
            metadata: vec![],
        };
        assert_eq!(out, want.encode_to_vec());
        let got = proto::WriteRequest::decode(out.as_slice()).unwrap();
        let h0 = &got.timeseries[1].histograms;
        assert_eq!(h0.len(), 4);
        assert_eq!(h0[0].count, Some(proto::HistogramCount::Int(19)));
        assert_eq!(h0[0].zero_count, Some(proto::HistogramZeroCount::Int(3)));
        assert_eq!(h0[0].positive_deltas, vec![5, -2, 4]);
        assert_eq!(h0[0].negative_deltas, vec![2]);
        assert_eq!(
            h0[0].positive_spans,
            vec![
                proto::BucketSpan {
                    offset: -2,
                    length: 2
                },
                proto::BucketSpan {
                    offset: 3,
                    length: 1
                }
            ]
        );
        assert_eq!(
            (h0[0].schema, h0[0].zero_threshold, h0[0].sum),
            (3, 1e-128, 41.5)
        );
        assert_eq!((h0[1].reset_hint, h0[2].reset_hint), (2, 1));
        assert_eq!(h0[2].schema, -53);
        assert_eq!(h0[2].custom_values, vec![0.1, 0.5, 1.0, 2.5, 7.0, 10.0]);
        assert_eq!(h0[3].timestamp, 0);
        let h1 = &got.timeseries[0].histograms;
        assert_eq!(h1[0].count, Some(proto::HistogramCount::Float(12.25)));
        assert_eq!(
            h1[0].zero_count,
            Some(proto::HistogramZeroCount::Float(0.5))
        );
        assert_eq!(h1[0].positive_counts, vec![1.5, 10.25]);
        assert_eq!((h1[0].reset_hint, h1[0].schema, h1[0].sum), (3, -4, -0.25));
        assert_eq!(h1[1].sum.to_bits(), STALE_NAN.to_bits());
        assert_eq!(h1[1].timestamp, 1_712_000_045_000);
        // Cleared, the batch starts over with no histogram left behind.
        b.clear();
        b.push(0, 5, 1.0);
        let mut out = Vec::new();
        b.encode(|s| &enc[s as usize], &mut out);
        let got = proto::WriteRequest::decode(out.as_slice()).unwrap();
        assert_eq!(got.timeseries.len(), 1);
        assert!(got.timeseries[0].histograms.is_empty());
    }
}
