//! The receiving half of remote write 1.0: a snappy-compressed `WriteRequest` into one storage
//! commit, under the rules a scrape's samples follow.
//!
//! The body is decompressed whole (after its announced size is checked against a cap, so a
//! small snappy bomb cannot allocate gigabytes), then read one `TimeSeries` at a time: the
//! request is never held decoded in full, only the samples waiting for the commit. Series with
//! invalid labels are skipped; their samples and the samples storage refuses (out of order,
//! duplicate, out of bounds, too far in the future) are counted, and the rest is stored, as a scrape's are. A body
//! that does not decode stores nothing.

use prost::Message;

use super::proto::{self, HistogramCount, HistogramZeroCount, Label, MetricMetadata, TimeSeries};
use crate::encoding::{self, Decbuf};
use crate::model::histogram::{
    CounterResetHint, FloatHistogram, Histogram, HistogramValue, MAX_SCHEMA, Span,
};
use crate::model::{LabelError, Labels, LabelsBuilder, METRIC_NAME};
use crate::storage::{Appender, Db, SeriesRef, StorageError};

/// Largest decompressed body accepted, the bound Prometheus puts on remote read bodies: far
/// above what a sender batches (Prometheus sends a few thousand samples per request).
pub const MAX_DECOMPRESSED_BYTES: usize = 32 << 20;

/// Samples further ahead of the receiver's clock than this are refused (by the `Appender`):
/// one such sample would make every real sample of its series after it out of order.
pub use crate::storage::MAX_AHEAD_MS;

/// Why a request stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The body is not snappy's block format (the message starts with `snappy: `).
    #[error(transparent)]
    Snappy(#[from] snap::Error),
    /// The body announces more decompressed bytes than [`MAX_DECOMPRESSED_BYTES`].
    #[error("decompressed body of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The size the snappy header announces.
        size: usize,
        /// The cap.
        limit: usize,
    },
    /// The decompressed body is not a `WriteRequest`.
    #[error("protobuf: {error} (at byte {offset} of the decompressed body)")]
    Protobuf {
        /// Where the top-level field that failed starts.
        offset: usize,
        /// What is wrong with it.
        error: ProtoError,
    },
    /// Storage could not write the batch; nothing of it was stored.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What is wrong with the bytes of a `WriteRequest`. Offsets (`at`) count from the start of
/// the decompressed body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// The body ends inside a varint: a field key, a length or a value.
    #[error("truncated varint")]
    TruncatedVarint {
        /// Where the varint starts.
        at: usize,
    },
    /// A varint of more than 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow {
        /// Where the varint starts.
        at: usize,
    },
    /// A length-delimited or fixed-width value runs past the end of the body.
    #[error("length {needed} runs past the end of the body ({left} left)")]
    PastEnd {
        /// Where the value's bytes start.
        at: usize,
        /// Bytes the value needs.
        needed: u64,
        /// Bytes the body has left.
        left: usize,
    },
    /// A field key with field number 0, or one above protobuf's maximum.
    #[error("invalid field number {0}")]
    InvalidFieldNumber(u64),
    /// A field this receiver reads, with another wire type than length-delimited.
    #[error("field {field} has wire type {wire}, want 2 (length-delimited)")]
    NotDelimited {
        /// The field number.
        field: u32,
        /// Its wire type.
        wire: u8,
    },
    /// A wire type protobuf does not define (6 or 7).
    #[error("invalid wire type {wire} for field {field}")]
    InvalidWireType {
        /// The field number.
        field: u32,
        /// Its wire type.
        wire: u8,
    },
    /// Groups nested deeper than a sender has reason to.
    #[error("groups nested too deeply (group {field} at depth {MAX_GROUP_DEPTH})")]
    GroupTooDeep {
        /// The group that would go one level too deep.
        field: u32,
    },
    /// The body ends inside a group.
    #[error("group {field} is not closed")]
    GroupNotClosed {
        /// The open group's field number.
        field: u32,
    },
    /// A group closed under another field number than it opened with.
    #[error("group {open} closed as group {closed}")]
    GroupMismatch {
        /// The open group's field number.
        open: u32,
        /// The field number of the end-group key.
        closed: u32,
    },
    /// An end-group key outside any group.
    #[error("end of group {field} without a start")]
    EndWithoutStart {
        /// The field number of the end-group key.
        field: u32,
    },
    /// A `TimeSeries` (field 1) or `MetricMetadata` (field 3) that is not a valid message.
    #[error("{error}")]
    Message {
        /// The `WriteRequest` field it was in.
        field: u32,
        /// Why it does not decode.
        error: prost::DecodeError,
    },
}

impl ProtoError {
    /// A failed read of the body's bytes.
    fn bytes(e: encoding::Error) -> ProtoError {
        match e {
            encoding::Error::TruncatedVarint { offset } => {
                ProtoError::TruncatedVarint { at: offset }
            }
            encoding::Error::VarintOverflow { offset } => ProtoError::VarintOverflow { at: offset },
            encoding::Error::Truncated {
                offset,
                needed,
                left,
            } => ProtoError::PastEnd {
                at: offset,
                needed,
                left,
            },
        }
    }
}

/// Why a received sample was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    /// Its series has an invalid or duplicate label name, an invalid metric name, or none.
    InvalidLabels,
    /// More than [`MAX_AHEAD_MS`] ahead of the receiver's clock.
    TooFarInFuture,
    /// Older than the newest sample of its series.
    OutOfOrder,
    /// Same timestamp as the newest sample of its series, another value.
    Duplicate,
    /// Older than the head accepts (that range is already in blocks), or outside the range
    /// storage keeps (years 0000 to 9999).
    OutOfBounds,
    /// A native histogram breaking Prometheus's rules (spans, counts, schema, custom bounds).
    InvalidHistogram,
}

impl Reject {
    /// Every reason, in a fixed order (the index into [`Received::rejected`]).
    pub const ALL: [Reject; 6] = [
        Reject::InvalidLabels,
        Reject::TooFarInFuture,
        Reject::OutOfOrder,
        Reject::Duplicate,
        Reject::OutOfBounds,
        Reject::InvalidHistogram,
    ];

    /// A short snake_case name, as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::InvalidLabels => "invalid_labels",
            Reject::TooFarInFuture => "too_far_in_future",
            Reject::OutOfOrder => "out_of_order",
            Reject::Duplicate => "duplicate",
            Reject::OutOfBounds => "out_of_bounds",
            Reject::InvalidHistogram => "invalid_histogram",
        }
    }

    /// Prometheus's wording of the error, for the response.
    fn describe(self) -> &'static str {
        match self {
            Reject::InvalidLabels => "invalid labels",
            Reject::TooFarInFuture => "out of bounds: timestamp is too far in the future",
            Reject::OutOfOrder => "out of order sample",
            Reject::Duplicate => "duplicate sample for timestamp",
            Reject::OutOfBounds => "out of bounds",
            Reject::InvalidHistogram => "invalid histogram",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one request held and what became of it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Received {
    /// `TimeSeries` entries in the request.
    pub series: u64,
    /// Float samples in the request, stored or not.
    pub samples: u64,
    /// Native histogram samples in the request, stored or not.
    pub histograms: u64,
    /// Exemplars, accepted and ignored.
    pub exemplars: u64,
    /// Metric metadata entries, accepted and ignored.
    pub metadata: u64,
    /// Samples stored.
    pub appended: u64,
    /// Samples identical to the newest of their series (a sender's retry), ignored.
    pub duplicates_ignored: u64,
    /// Samples not stored, indexed like [`Reject::ALL`].
    pub rejected: [u64; Reject::ALL.len()],
    /// Series skipped for their labels.
    pub invalid_series: u64,
    /// The first skipped series and why, for the response.
    pub first_invalid: Option<String>,
    /// The first refused histogram and why, for the response.
    pub first_invalid_histogram: Option<String>,
}

impl Received {
    /// Samples not stored for `reason`.
    pub fn rejected(&self, reason: Reject) -> u64 {
        self.rejected[reason.index()]
    }

    /// Samples not stored, all reasons.
    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// What the sender is told when anything was refused (it answers 400, so the sender
    /// drops the batch instead of retrying it forever); `None` when everything was stored or
    /// ignored as an identical duplicate.
    pub fn rejection(&self) -> Option<String> {
        if self.total_rejected() == 0 && self.invalid_series == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(first) = &self.first_invalid {
            let more = match self.invalid_series {
                0 | 1 => String::new(),
                n => format!(" (and {} more series)", n - 1),
            };
            parts.push(format!("{first}{more}"));
        }
        for r in Reject::ALL.into_iter().skip(1) {
            let n = self.rejected(r);
            if n > 0 {
                parts.push(format!("{}: {n} samples", r.describe()));
            }
        }
        if let Some(first) = &self.first_invalid_histogram {
            parts.push(first.clone());
        }
        Some(format!(
            "{} of {} samples rejected, the others were stored: {}",
            self.total_rejected(),
            self.samples + self.histograms,
            parts.join("; ")
        ))
    }
}

/// Decompresses a body in snappy's block format, refusing one that announces more than
/// `limit` bytes before allocating anything for it.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, ReceiveError> {
    let size = snap::raw::decompress_len(body)?;
    if size > limit {
        return Err(ReceiveError::TooLarge { size, limit });
    }
    Ok(snap::raw::Decoder::new().decompress_vec(body)?)
}

/// Decompresses and stores one request (the body as received) in one commit; `now_ms` is the
/// receiver's clock, for the future bound.
pub fn receive(db: &Db, body: &[u8], now_ms: i64) -> Result<Received, ReceiveError> {
    let buf = decompress(body, MAX_DECOMPRESSED_BYTES)?;
    ingest(db, &buf, now_ms)
}

/// Stores a decompressed `WriteRequest` in one commit. Nothing is stored when it does not
/// decode or the commit fails.
pub fn ingest(db: &Db, buf: &[u8], now_ms: i64) -> Result<Received, ReceiveError> {
    let mut app = db.appender_at(now_ms);
    let mut out = Received::default();
    let mut r = Reader {
        d: Decbuf::new(buf),
    };
    while !r.d.is_empty() {
        let at = r.d.pos();
        let proto = |error| ReceiveError::Protobuf { offset: at, error };
        let (field, wire) = r.key().map_err(proto)?;
        match field {
            1 => {
                let msg = r.delimited(field, wire).map_err(proto)?;
                let ts = TimeSeries::decode(msg)
                    .map_err(|error| proto(ProtoError::Message { field, error }))?;
                out.add_series(&mut app, ts, msg)?;
            }
            3 => {
                let msg = r.delimited(field, wire).map_err(proto)?;
                MetricMetadata::decode(msg)
                    .map_err(|error| proto(ProtoError::Message { field, error }))?;
                out.metadata += 1;
            }
            _ => r.skip(field, wire, 0).map_err(proto)?,
        }
    }
    let stats = app.commit()?;
    out.appended = stats.appended;
    out.duplicates_ignored = stats.duplicates_ignored;
    out.rejected[Reject::OutOfOrder.index()] += stats.out_of_order;
    out.rejected[Reject::Duplicate.index()] += stats.duplicate;
    out.rejected[Reject::OutOfBounds.index()] += stats.out_of_bounds;
    out.rejected[Reject::TooFarInFuture.index()] += stats.too_far_in_future;
    Ok(out)
}

impl Received {
    fn add_series(
        &mut self,
        app: &mut Appender<'_>,
        ts: TimeSeries,
        encoded: &[u8],
    ) -> Result<(), StorageError> {
        self.series += 1;
        self.samples += ts.samples.len() as u64;
        self.histograms += ts.histograms.len() as u64;
        self.exemplars += ts.exemplars.len() as u64;
        let labels = match series_labels(ts.labels) {
            Ok(l) => l,
            Err(why) => {
                self.invalid_series += 1;
                self.rejected[Reject::InvalidLabels.index()] +=
                    (ts.samples.len() + ts.histograms.len()) as u64;
                if self.first_invalid.is_none() {
                    // The labels were moved into the failed build; decoding them again costs
                    // nothing on the path where every series is valid.
                    let sent = TimeSeries::decode(encoded)
                        .map(|t| show_labels(&t.labels))
                        .unwrap_or_default();
                    self.first_invalid = Some(format!("invalid labels for series {sent}: {why}"));
                }
                return Ok(());
            }
        };
        let mut sref: Option<SeriesRef> = None;
        for s in &ts.samples {
            if let Some(r) = sref {
                match app.append_ref(r, s.timestamp, s.value) {
                    Ok(()) => continue,
                    // Collected between two appends: look it up again by labels.
                    Err(StorageError::UnknownRef(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            sref = Some(app.append(&labels, s.timestamp, s.value)?);
        }
        for hp in ts.histograms {
            let t = hp.timestamp;
            let h = match histogram_value(hp) {
                Ok(h) => h,
                Err(why) => {
                    self.reject_histogram(&labels, t, why);
                    continue;
                }
            };
            let h = match sref {
                Some(r) => match app.append_histogram_ref(r, t, h.clone()) {
                    Ok(()) => continue,
                    Err(StorageError::UnknownRef(_)) => h,
                    Err(StorageError::InvalidHistogram(why)) => {
                        self.reject_histogram(&labels, t, why);
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                None => h,
            };
            match app.append_histogram(&labels, t, h) {
                Ok(r) => sref = Some(r),
                Err(StorageError::InvalidHistogram(why)) => self.reject_histogram(&labels, t, why),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn reject_histogram(&mut self, labels: &Labels, t: i64, why: String) {
        self.rejected[Reject::InvalidHistogram.index()] += 1;
        if self.first_invalid_histogram.is_none() {
            let mut shown = labels.to_string();
            if shown.len() > 256 {
                let cut = (0..=256)
                    .rev()
                    .find(|&i| shown.is_char_boundary(i))
                    .unwrap_or(0);
                shown.truncate(cut);
                shown.push('…');
            }
            self.first_invalid_histogram = Some(format!(
                "invalid histogram for series {shown} at {t}: {why}"
            ));
        }
    }
}

/// A received histogram as storage keeps it, as Prometheus 3's receiver reads it: a float
/// histogram when its count is the float one, else an integer histogram (a zero count of the
/// other kind reads as 0); a schema finer than 8 (9..=52, reserved) lowered to 8; then
/// validated with Prometheus's rules. An unknown reset hint is refused.
fn histogram_value(hp: proto::Histogram) -> Result<HistogramValue, String> {
    let hint = u8::try_from(hp.reset_hint)
        .ok()
        .and_then(CounterResetHint::from_u8)
        .ok_or_else(|| format!("unknown counter reset hint {}", hp.reset_hint))?;
    let spans = |s: &[proto::BucketSpan]| -> Vec<Span> {
        s.iter().map(|s| Span::new(s.offset, s.length)).collect()
    };
    let mut h = match hp.count {
        Some(HistogramCount::Float(count)) => HistogramValue::Float(Box::new(FloatHistogram {
            counter_reset_hint: hint,
            schema: hp.schema,
            zero_threshold: hp.zero_threshold,
            zero_count: match hp.zero_count {
                Some(HistogramZeroCount::Float(z)) => z,
                _ => 0.0,
            },
            count,
            sum: hp.sum,
            positive_spans: spans(&hp.positive_spans),
            negative_spans: spans(&hp.negative_spans),
            positive_buckets: hp.positive_counts,
            negative_buckets: hp.negative_counts,
            custom_values: hp.custom_values,
        })),
        count => HistogramValue::Int(Box::new(Histogram {
            counter_reset_hint: hint,
            schema: hp.schema,
            zero_threshold: hp.zero_threshold,
            zero_count: match hp.zero_count {
                Some(HistogramZeroCount::Int(z)) => z,
                _ => 0,
            },
            count: match count {
                Some(HistogramCount::Int(c)) => c,
                _ => 0,
            },
            sum: hp.sum,
            positive_spans: spans(&hp.positive_spans),
            negative_spans: spans(&hp.negative_spans),
            positive_buckets: hp.positive_deltas,
            negative_buckets: hp.negative_deltas,
            custom_values: hp.custom_values,
        })),
    };
    if h.schema() > MAX_SCHEMA && h.schema() <= 52 {
        match &mut h {
            HistogramValue::Int(h) => h.reduce_resolution(MAX_SCHEMA),
            HistogramValue::Float(h) => h.reduce_resolution(MAX_SCHEMA),
        }
        .map_err(|e| e.to_string())?;
    }
    match &h {
        HistogramValue::Int(h) => h.validate(),
        HistogramValue::Float(h) => h.validate(),
    }
    .map_err(|e| e.to_string())?;
    Ok(h)
}

/// A series' labels as storage keys them (the decoded strings moved, not copied), or why they
/// are refused: names valid and unique, `__name__` present and valid, empty values dropped (as
/// Prometheus does).
fn series_labels(pairs: Vec<Label>) -> Result<Labels, InvalidLabels> {
    let mut b = LabelsBuilder::default();
    for l in pairs {
        b.push(l.name, l.value);
    }
    let l = b.build()?;
    match l.metric_name() {
        Some(_) => Ok(l),
        None => Err(InvalidLabels::NoMetricName),
    }
}

/// Why a series' labels were refused.
#[derive(Debug, thiserror::Error)]
enum InvalidLabels {
    /// No `__name__`, or an empty one (which counts as none).
    #[error("no metric name ({METRIC_NAME} label)")]
    NoMetricName,
    #[error(transparent)]
    Label(#[from] LabelError),
}

/// Labels as sent, bounded: the response quotes a sender's input, which may be huge.
fn show_labels(pairs: &[Label]) -> String {
    const MAX: usize = 256;
    let mut s = String::from("{");
    for (i, l) in pairs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{:?}={:?}", l.name, l.value));
        if s.len() > MAX {
            let cut = (0..=MAX)
                .rev()
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(0);
            s.truncate(cut);
            s.push('…');
            break;
        }
    }
    s.push('}');
    s
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_FIXED32: u8 = 5;

/// Groups nest; a hostile body must not recurse without bound.
const MAX_GROUP_DEPTH: usize = 32;

/// Walks the top level of a protobuf message, one field at a time, so each `TimeSeries` is
/// decoded (by prost) only when its turn comes.
struct Reader<'a> {
    d: Decbuf<'a>,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtoError> {
        self.d.uvarint().map_err(ProtoError::bytes)
    }

    fn key(&mut self) -> Result<(u32, u8), ProtoError> {
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(ProtoError::InvalidFieldNumber(field));
        }
        Ok((field as u32, (k & 7) as u8))
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], ProtoError> {
        self.d.uvarint_bytes().map_err(ProtoError::bytes)
    }

    /// A length-delimited field's bytes; another wire type is an error.
    fn delimited(&mut self, field: u32, wire: u8) -> Result<&'a [u8], ProtoError> {
        if wire != WIRE_LEN {
            return Err(ProtoError::NotDelimited { field, wire });
        }
        self.len_delimited()
    }

    /// Skips a field this receiver does not read (protobuf's rule for unknown fields).
    fn skip(&mut self, field: u32, wire: u8, depth: usize) -> Result<(), ProtoError> {
        match wire {
            WIRE_VARINT => {
                self.varint()?;
            }
            WIRE_FIXED64 => self.d.skip(8).map_err(ProtoError::bytes)?,
            WIRE_LEN => {
                self.len_delimited()?;
            }
            WIRE_FIXED32 => self.d.skip(4).map_err(ProtoError::bytes)?,
            WIRE_START_GROUP => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(ProtoError::GroupTooDeep { field });
                }
                loop {
                    if self.d.is_empty() {
                        return Err(ProtoError::GroupNotClosed { field });
                    }
                    let (f, w) = self.key()?;
                    if w == WIRE_END_GROUP {
                        if f != field {
                            return Err(ProtoError::GroupMismatch {
                                open: field,
                                closed: f,
                            });
                        }
                        break;
                    }
                    self.skip(f, w, depth + 1)?;
                }
            }
            WIRE_END_GROUP => return Err(ProtoError::EndWithoutStart { field }),
            wire => return Err(ProtoError::InvalidWireType { field, wire }),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
