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

use super::proto::{Label, MetricMetadata, TimeSeries};
use crate::model::{Labels, LabelsBuilder, METRIC_NAME};
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
    #[error("protobuf: {message} (at byte {offset} of the decompressed body)")]
    Protobuf {
        /// Where the field that failed starts.
        offset: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Storage could not write the batch; nothing of it was stored.
    #[error(transparent)]
    Storage(#[from] StorageError),
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
}

impl Reject {
    /// Every reason, in a fixed order (the index into [`Received::rejected`]).
    pub const ALL: [Reject; 5] = [
        Reject::InvalidLabels,
        Reject::TooFarInFuture,
        Reject::OutOfOrder,
        Reject::Duplicate,
        Reject::OutOfBounds,
    ];

    /// A short snake_case name, as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::InvalidLabels => "invalid_labels",
            Reject::TooFarInFuture => "too_far_in_future",
            Reject::OutOfOrder => "out_of_order",
            Reject::Duplicate => "duplicate",
            Reject::OutOfBounds => "out_of_bounds",
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
        Some(format!(
            "{} of {} samples rejected, the others were stored: {}",
            self.total_rejected(),
            self.samples,
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
    let mut r = Reader { buf, pos: 0 };
    while r.pos < buf.len() {
        let at = r.pos;
        let (field, wire) = r.key().map_err(|m| proto_err(at, m))?;
        match field {
            1 => {
                let msg = r
                    .delimited(field, wire)
                    .map_err(|m| proto_err(at, m.to_string()))?;
                let ts = TimeSeries::decode(msg).map_err(|e| proto_err(at, e.to_string()))?;
                out.add_series(&mut app, ts, msg)?;
            }
            3 => {
                let msg = r
                    .delimited(field, wire)
                    .map_err(|m| proto_err(at, m.to_string()))?;
                MetricMetadata::decode(msg).map_err(|e| proto_err(at, e.to_string()))?;
                out.metadata += 1;
            }
            _ => r.skip(field, wire, 0).map_err(|m| proto_err(at, m))?,
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

fn proto_err(offset: usize, message: impl Into<String>) -> ReceiveError {
    ReceiveError::Protobuf {
        offset,
        message: message.into(),
    }
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
        self.exemplars += ts.exemplars.len() as u64;
        let labels = match series_labels(ts.labels) {
            Ok(l) => l,
            Err(why) => {
                self.invalid_series += 1;
                self.rejected[Reject::InvalidLabels.index()] += ts.samples.len() as u64;
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
        Ok(())
    }
}

/// A series' labels as storage keys them (the decoded strings moved, not copied), or why they
/// are refused: names valid and unique, `__name__` present and valid, empty values dropped (as
/// Prometheus does).
fn series_labels(pairs: Vec<Label>) -> Result<Labels, String> {
    let mut b = LabelsBuilder::default();
    for l in pairs {
        b.push(l.name, l.value);
    }
    match b.build() {
        Ok(l) if l.metric_name().is_some() => Ok(l),
        Ok(_) => Err(format!("no metric name ({METRIC_NAME} label)")),
        Err(e) => Err(e.to_string()),
    }
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
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("truncated varint");
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes")
    }

    fn key(&mut self) -> Result<(u32, u8), String> {
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(format!("invalid field number {field}"));
        }
        Ok((field as u32, (k & 7) as u8))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], &'static str> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.buf.len())
            .ok_or("length runs past the end of the body")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// A length-delimited field's bytes; another wire type is an error.
    fn delimited(&mut self, field: u32, wire: u8) -> Result<&'a [u8], String> {
        if wire != WIRE_LEN {
            return Err(format!(
                "field {field} has wire type {wire}, want 2 (length-delimited)"
            ));
        }
        let n = self.varint()?;
        Ok(self.take(n)?)
    }

    /// Skips a field this receiver does not read (protobuf's rule for unknown fields).
    fn skip(&mut self, field: u32, wire: u8, depth: usize) -> Result<(), String> {
        match wire {
            WIRE_VARINT => {
                self.varint()?;
            }
            WIRE_FIXED64 => {
                self.take(8)?;
            }
            WIRE_LEN => {
                let n = self.varint()?;
                self.take(n)?;
            }
            WIRE_FIXED32 => {
                self.take(4)?;
            }
            WIRE_START_GROUP => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err("groups nested too deeply".into());
                }
                loop {
                    if self.pos >= self.buf.len() {
                        return Err(format!("group {field} is not closed"));
                    }
                    let (f, w) = self.key()?;
                    if w == WIRE_END_GROUP {
                        if f != field {
                            return Err(format!("group {field} closed as group {f}"));
                        }
                        break;
                    }
                    self.skip(f, w, depth + 1)?;
                }
            }
            WIRE_END_GROUP => return Err(format!("end of group {field} without a start")),
            w => return Err(format!("invalid wire type {w} for field {field}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
