//! The request body: a `prometheus.WriteRequest` encoded by hand, then snappy-compressed
//! (block format).
//!
//! A batch groups its samples by series as they arrive, without hashing: each series has a
//! dense slot number in its shard, and the batch links the samples of one slot together. Each
//! series' labels are encoded to protobuf once, when the series is first seen, so encoding a
//! batch copies label bytes and writes samples. The layout is exactly what prost writes for
//! the types in `proto` (except that zero values are written rather than omitted, which every
//! decoder accepts); a test checks it against prost.

use crate::encoding::{put_u64_le, put_uvarint, uvarint_len};
use crate::model::Labels;

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
    max_t: i64,
}

impl Batch {
    /// Adds a sample of `slot`; samples of a slot must come in time order.
    pub fn push(&mut self, slot: u32, t: i64, v: f64) {
        let s = slot as usize;
        if s >= self.slot_gen.len() {
            let n = (s + 1).max(self.slot_gen.len() * 2);
            self.slot_gen.resize(n, 0);
            self.slot_first.resize(n, END);
            self.slot_last.resize(n, END);
        }
        let i = self.ts.len() as u32;
        self.ts.push(t);
        self.vs.push(v);
        self.next.push(END);
        if self.ts.len() == 1 {
            self.max_t = t;
            // Generation 0 marks slots never used; start every batch above it.
            self.generation = self.generation.wrapping_add(1).max(1);
        } else if t > self.max_t {
            self.max_t = t;
        }
        if self.slot_gen[s] != self.generation {
            self.slot_gen[s] = self.generation;
            self.slot_first[s] = i;
            self.order.push(slot);
        } else {
            self.next[self.slot_last[s] as usize] = i;
        }
        self.slot_last[s] = i;
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
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
}
