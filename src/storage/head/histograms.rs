//! A head series' histogram samples: kept beside its float samples, in chunks of their own,
//! only for series that ever had one (a float-only series carries one empty pointer).
//!
//! A series' float and histogram samples never share a timestamp, and every sample is newer
//! than the series' newest sample of either kind when it is appended (WAL replay relaxes that
//! to each kind's own order, see [`SeriesState::append_histogram_replayed`]).

use std::sync::atomic::Ordering;

use crate::model::histogram::{CounterResetHint, FloatHistogram, Histogram};
use crate::model::{HistogramSample, HistogramValue, STALE_NAN};
use crate::storage::StorageError;
use crate::storage::chunk::histogram::{self as codec, MAX_VALUES};

use super::series::{ChunkData, ChunkStore, HEAD_CHUNK_SAMPLES, Reject, SeriesState};

/// A closed chunk of histogram samples, encoded ([`codec`]), its bytes in memory or in the
/// head's chunk file as a float chunk's are.
pub(crate) struct HistChunk {
    pub mint: i64,
    pub maxt: i64,
    pub data: ChunkData,
}

impl HistChunk {
    fn decode(
        &self,
        store: &ChunkStore,
        out: &mut Vec<HistogramSample>,
    ) -> Result<(), StorageError> {
        self.data
            .decode_with(store, |bytes| codec::decode(bytes, out))
            .map(|_| ())
    }
}

/// The histogram side of a series.
#[derive(Default)]
pub(crate) struct HistState {
    /// Closed chunks, oldest first.
    pub closed: Vec<HistChunk>,
    /// Samples since the last cut, time-ordered, all of one kind.
    pub open: Vec<HistogramSample>,
    /// Bounds the bucket union of `open` from above: the buckets of each sample whose layout
    /// differs from the one before it, summed. Keeps a chunk within the codec's value limit.
    open_buckets: u64,
    /// The newest histogram when `open` was last cut, for duplicate checks.
    newest_closed: Option<HistogramSample>,
    /// Newest committed histogram's time, `i64::MIN` before the first.
    pub max_t: i64,
    /// Time of a reserved histogram in flight (its place is the series' `pending_t`),
    /// `i64::MIN` when none.
    pub pending_t: i64,
    /// That reserved histogram, for the duplicate check of a concurrent batch.
    pub pending: Option<HistogramValue>,
    /// True when the newest committed histogram is a float histogram: a float staleness
    /// marker after it becomes a float histogram marker.
    pub last_float: bool,
}

fn buckets(h: &HistogramValue) -> u64 {
    let (p, n) = match h {
        HistogramValue::Int(h) => (&h.positive_spans, &h.negative_spans),
        HistogramValue::Float(h) => (&h.positive_spans, &h.negative_spans),
    };
    p.iter().chain(n).map(|s| u64::from(s.length)).sum()
}

fn same_layout(a: &HistogramValue, b: &HistogramValue) -> bool {
    match (a, b) {
        (HistogramValue::Int(a), HistogramValue::Int(b)) => {
            a.schema == b.schema
                && a.zero_threshold.to_bits() == b.zero_threshold.to_bits()
                && a.positive_spans == b.positive_spans
                && a.negative_spans == b.negative_spans
                && a.custom_values.len() == b.custom_values.len()
        }
        (HistogramValue::Float(a), HistogramValue::Float(b)) => {
            a.schema == b.schema
                && a.zero_threshold.to_bits() == b.zero_threshold.to_bits()
                && a.positive_spans == b.positive_spans
                && a.negative_spans == b.negative_spans
                && a.custom_values.len() == b.custom_values.len()
        }
        _ => false,
    }
}

impl HistState {
    fn new() -> Self {
        HistState {
            max_t: i64::MIN,
            pending_t: i64::MIN,
            ..HistState::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_empty()
    }

    pub fn num_chunks(&self) -> usize {
        self.closed.len() + usize::from(!self.open.is_empty())
    }

    pub fn min_time(&self) -> Option<i64> {
        self.closed
            .first()
            .map(|c| c.mint)
            .or(self.open.first().map(|s| s.t))
    }

    pub(crate) fn lowest_segment(&self) -> Option<u32> {
        self.closed.iter().filter_map(|c| c.data.segment()).min()
    }

    /// The newest committed histogram, if the series still holds it.
    fn last(&self) -> Option<&HistogramSample> {
        self.open.last().or(self.newest_closed.as_ref())
    }

    /// Appends the samples with `mint <= t <= maxt` to `out`, in time order. A chunk read
    /// from the chunk file that fails its checksum is an error.
    pub fn samples_in(
        &self,
        store: &ChunkStore,
        mint: i64,
        maxt: i64,
        out: &mut Vec<HistogramSample>,
    ) -> Result<(), StorageError> {
        let inside = |s: &HistogramSample| s.t >= mint && s.t <= maxt;
        for c in &self.closed {
            if c.maxt < mint || c.mint > maxt {
                continue;
            }
            let from = out.len();
            c.decode(store, out)?;
            if c.mint < mint || c.maxt > maxt {
                let mut k = from;
                for i in from..out.len() {
                    if inside(&out[i]) {
                        out.swap(k, i);
                        k += 1;
                    }
                }
                out.truncate(k);
            }
        }
        out.extend(self.open.iter().filter(|s| inside(s)).cloned());
        Ok(())
    }

    /// Appends `s`, cutting the open chunk first when `s` is of the other kind or would take
    /// it past the codec's limits, and after it at [`HEAD_CHUNK_SAMPLES`].
    ///
    /// The sample is kept with the counter-reset hint Prometheus's chunks read it back with
    /// (see [`read_back_hint`]), and the open chunk is cut where Prometheus's head cuts one
    /// for the hint's sake ([`cuts_chunk`]), so head, block and replay answers agree.
    fn push(&mut self, store: &ChunkStore, mut s: HistogramSample) {
        if cuts_chunk(&self.open, &s.h) {
            self.close_open(store);
        }
        let b = buckets(&s.h);
        if let Some(prev) = self.open.last() {
            let grown = if same_layout(&prev.h, &s.h) {
                self.open_buckets
            } else {
                self.open_buckets + b
            };
            let other_kind = matches!(prev.h, HistogramValue::Float(_))
                != matches!(s.h, HistogramValue::Float(_));
            if other_kind || (self.open.len() as u64 + 1).saturating_mul(grown) > MAX_VALUES as u64
            {
                self.close_open(store);
            } else {
                self.open_buckets = grown;
            }
        }
        if self.open.is_empty() {
            store.count.fetch_add(1, Ordering::Relaxed);
            self.open_buckets = b;
        }
        let hint = read_back_hint(&self.open, &s.h);
        set_hint(&mut s.h, hint);
        self.open.push(s);
        if self.open.len() >= HEAD_CHUNK_SAMPLES {
            self.close_open(store);
        }
    }

    fn close_open(&mut self, store: &ChunkStore) {
        let samples = std::mem::take(&mut self.open);
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return;
        };
        let (mint, maxt) = (first.t, last.t);
        let data = store.place(encode(&samples));
        self.newest_closed = Some(last.clone());
        self.closed.push(HistChunk { mint, maxt, data });
    }

    /// Drops every sample older than `t`, re-encoding the chunk that straddles it.
    fn truncate_before(&mut self, store: &ChunkStore, t: i64) {
        let mut keep = Vec::with_capacity(self.closed.len());
        for c in std::mem::take(&mut self.closed) {
            if c.maxt < t {
                continue;
            }
            if c.mint >= t {
                keep.push(c);
                continue;
            }
            let mut buf = Vec::new();
            if let Err(e) = c.decode(store, &mut buf) {
                // Kept whole, as a float chunk is: its older samples are in a block too.
                tracing::warn!(error = %e, "head histogram chunk not truncated: it could not be read");
                keep.push(c);
                continue;
            }
            buf.retain(|s| s.t >= t);
            if let (Some(first), Some(last)) = (buf.first(), buf.last()) {
                let (mint, maxt) = (first.t, last.t);
                keep.push(HistChunk {
                    mint,
                    maxt,
                    data: store.place(encode(&buf)),
                });
            }
        }
        self.closed = keep;
        self.open.retain(|s| s.t >= t);
        if self.is_empty() {
            self.newest_closed = None;
        }
    }
}

/// True when `h` is a gauge histogram (a staleness marker never is: Prometheus's head
/// appends one as a counter-like sample).
fn is_gauge(h: &HistogramValue) -> bool {
    !h.is_stale_marker() && h.counter_reset_hint() == CounterResetHint::Gauge
}

/// True when Prometheus's head would start a new chunk for `h` after the samples of the open
/// chunk `open`, for its counter-reset semantics (Prometheus 3, `AppendHistogram` and its
/// `appendable` checks): a chunk holds gauge histograms only or counter histograms only; a
/// staleness marker never cuts a counter chunk, but any histogram after one does; in a
/// counter chunk, an explicit reset hint, a change of schema, zero threshold or custom
/// bounds, or a detected counter reset (as `DetectReset`) cuts. The change between integer
/// and float histograms and the codec's limits are the caller's cuts.
fn cuts_chunk(open: &[HistogramSample], h: &HistogramValue) -> bool {
    let (Some(first), Some(prev)) = (open.first(), open.last()) else {
        return false;
    };
    let chunk_gauge = is_gauge(&first.h);
    if h.is_stale_marker() {
        return chunk_gauge;
    }
    if prev.h.is_stale_marker() || is_gauge(h) != chunk_gauge {
        return true;
    }
    if chunk_gauge {
        return false;
    }
    if h.counter_reset_hint() == CounterResetHint::Reset {
        return true;
    }
    let (mut now, before) = (h.to_float(), prev.h.to_float());
    if now.schema != before.schema
        || now.zero_threshold.to_bits() != before.zero_threshold.to_bits()
        || now.custom_values != before.custom_values
    {
        return true;
    }
    now.counter_reset_hint = CounterResetHint::Unknown;
    now.detect_reset(&before)
}

/// The hint Prometheus's chunk iterator gives `h` when read back as the next sample of the
/// open chunk `open` (cut already decided): a staleness marker has none (unknown); every
/// sample of a gauge chunk is a gauge; the first of a counter chunk is unknown (Prometheus 3
/// does not trust the chunk header's reset flag on read) and every later one not-reset.
fn read_back_hint(open: &[HistogramSample], h: &HistogramValue) -> CounterResetHint {
    if h.is_stale_marker() {
        return CounterResetHint::Unknown;
    }
    match open.first() {
        None if is_gauge(h) => CounterResetHint::Gauge,
        None => CounterResetHint::Unknown,
        Some(first) if is_gauge(&first.h) => CounterResetHint::Gauge,
        Some(_) => CounterResetHint::NotReset,
    }
}

/// Equal but for the counter-reset hint: a stored sample keeps the hint it reads back with,
/// and Prometheus's duplicate check does not look at hints.
fn same_value(a: &HistogramValue, b: &HistogramValue) -> bool {
    if a.counter_reset_hint() == b.counter_reset_hint() {
        return a == b;
    }
    let mut b = b.clone();
    set_hint(&mut b, a.counter_reset_hint());
    *a == b
}

fn set_hint(h: &mut HistogramValue, hint: CounterResetHint) {
    match h {
        HistogramValue::Int(h) => h.counter_reset_hint = hint,
        HistogramValue::Float(h) => h.counter_reset_hint = hint,
    }
}

/// The bytes of a closed chunk: the head cut it within the codec's limits.
fn encode(samples: &[HistogramSample]) -> Vec<u8> {
    codec::encode(samples)
}

/// A staleness marker of the same kind as `float` says.
fn stale_marker(float: bool) -> HistogramValue {
    if float {
        HistogramValue::Float(Box::new(FloatHistogram {
            sum: STALE_NAN,
            ..FloatHistogram::default()
        }))
    } else {
        HistogramValue::Int(Box::new(Histogram {
            sum: STALE_NAN,
            ..Histogram::default()
        }))
    }
}

impl SeriesState {
    /// True when the series' newest sample, reserved or committed, is a histogram.
    pub(crate) fn newest_is_histogram(&self) -> bool {
        let Some(h) = &self.hist else {
            return false;
        };
        if self.pending_t > self.max_t {
            h.pending_t == self.pending_t
        } else {
            h.max_t != i64::MIN && h.max_t == self.max_t
        }
    }

    /// The staleness marker a float staleness marker becomes after a histogram: a histogram
    /// of the newest one's kind (reserved or committed) whose sum is the stale NaN.
    pub fn stale_histogram(&self) -> HistogramValue {
        let float = match &self.hist {
            Some(h) if self.pending_t > self.max_t => {
                matches!(h.pending, Some(HistogramValue::Float(_)))
            }
            Some(h) => h.last_float,
            None => false,
        };
        stale_marker(float)
    }

    /// Checks a histogram sample against the append rules (as [`SeriesState::reserve`] does a
    /// float) and, if accepted, reserves its place.
    pub fn reserve_histogram(
        &mut self,
        t: i64,
        h: &HistogramValue,
        min_valid: i64,
    ) -> Result<(), Reject> {
        if self.removed {
            return Err(Reject::Removed);
        }
        let pending = self.pending_t > self.max_t;
        let newest = if pending { self.pending_t } else { self.max_t };
        if newest != i64::MIN {
            if t == newest {
                if !self.newest_is_histogram() {
                    return Err(Reject::Duplicate);
                }
                let same = match &self.hist {
                    Some(hs) if pending => hs.pending.as_ref().is_some_and(|p| same_value(p, h)),
                    Some(hs) => hs.last().is_some_and(|s| same_value(&s.h, h)),
                    None => false,
                };
                return Err(if same {
                    Reject::DuplicateIgnored
                } else {
                    Reject::Duplicate
                });
            }
            if t < newest {
                return Err(Reject::OutOfOrder);
            }
        }
        if t < min_valid {
            return Err(Reject::OutOfBounds);
        }
        let hs = self.hist.get_or_insert_with(|| Box::new(HistState::new()));
        hs.pending_t = t;
        hs.pending = Some(h.clone());
        self.pending_t = t;
        Ok(())
    }

    /// Gives back a histogram reservation that will not be applied.
    pub fn unreserve_histogram(&mut self, t: i64) {
        if let Some(h) = &mut self.hist
            && h.pending_t == t
        {
            h.pending_t = i64::MIN;
            h.pending = None;
        }
        self.unreserve(t);
    }

    /// Appends a reserved histogram. Returns false if a concurrent batch got a newer sample
    /// in first.
    pub fn apply_histogram(&mut self, t: i64, h: HistogramValue) -> bool {
        if t <= self.max_t {
            if let Some(hs) = &mut self.hist
                && hs.pending_t == t
            {
                hs.pending_t = i64::MIN;
                hs.pending = None;
            }
            return false;
        }
        self.max_t = t;
        self.push_histogram(t, h);
        true
    }

    fn push_histogram(&mut self, t: i64, h: HistogramValue) {
        let store = &self.store;
        let hs = self.hist.get_or_insert_with(|| Box::new(HistState::new()));
        if hs.pending_t == t {
            hs.pending_t = i64::MIN;
            hs.pending = None;
        }
        hs.last_float = matches!(h, HistogramValue::Float(_));
        hs.max_t = hs.max_t.max(t);
        hs.push(store, HistogramSample { t, h });
    }

    /// Appends a histogram during WAL replay. Each kind keeps its own order here: a commit's
    /// float samples are logged before its histograms, and a checkpoint carries a series'
    /// floats before its histograms, so a series that switched kinds replays out of overall
    /// order. A histogram at the time of the newest float is still refused.
    pub fn append_histogram_replayed(&mut self, t: i64, h: HistogramValue) -> Result<(), Reject> {
        if t == self.max_t && !self.newest_is_histogram() {
            return Err(Reject::Duplicate);
        }
        if let Some(hs) = &self.hist
            && hs.max_t != i64::MIN
        {
            if t == hs.max_t {
                return Err(if hs.last().is_some_and(|s| same_value(&s.h, &h)) {
                    Reject::DuplicateIgnored
                } else {
                    Reject::Duplicate
                });
            }
            if t < hs.max_t {
                return Err(Reject::OutOfOrder);
            }
        }
        self.max_t = self.max_t.max(t);
        self.push_histogram(t, h);
        Ok(())
    }

    /// Appends the histogram samples with `mint <= t <= maxt` to `out`, in time order. A
    /// chunk read from the chunk file that fails its checksum is an error.
    pub fn histograms_in(
        &self,
        mint: i64,
        maxt: i64,
        out: &mut Vec<HistogramSample>,
    ) -> Result<(), StorageError> {
        match &self.hist {
            Some(h) => h.samples_in(&self.store, mint, maxt, out),
            None => Ok(()),
        }
    }

    /// Drops every histogram sample older than `t`; returns how many chunks went.
    pub(crate) fn truncate_histograms_before(&mut self, t: i64) -> usize {
        let Some(h) = &mut self.hist else {
            return 0;
        };
        let before = h.num_chunks();
        h.truncate_before(&self.store, t);
        before.saturating_sub(h.num_chunks())
    }
}
