//! One in-memory series: its labels, closed compressed chunks and the open chunk, compressed
//! as samples arrive ([`chunk::append`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::model::{Labels, Sample, is_stale_nan};
use crate::storage::StorageError;
use crate::storage::chunk;
use crate::storage::chunk::append::OpenChunk;

use super::chunk_file::{ChunkFile, FileChunk};
use super::histograms::HistState;
use super::labels::SeriesLabels;

/// What every series of a head shares: the running total of chunks and, when the head has
/// one, the chunk file its closed chunks go to.
#[derive(Default)]
pub(crate) struct ChunkStore {
    pub count: AtomicU64,
    pub file: Option<ChunkFile>,
}

impl ChunkStore {
    /// The chunk file a file-backed chunk is in (a head without one holds no such chunk).
    pub(crate) fn file(&self) -> Result<&ChunkFile, StorageError> {
        self.file
            .as_ref()
            .ok_or_else(|| StorageError::CorruptChunk {
                path: Default::default(),
                offset: 0,
                reason: "head chunk in a file the head does not have".into(),
            })
    }

    /// Where a just-encoded chunk's bytes are kept: in the chunk file, or in memory when there
    /// is none or it could not take them.
    pub(crate) fn place(&self, data: Vec<u8>) -> ChunkData {
        if let Some(fc) = self.file.as_ref().and_then(|f| f.write(&data)) {
            return ChunkData::File(fc);
        }
        // Copied into an allocation of its exact size: shrinking the encoder's buffer in place
        // would leave a small hole behind every chunk the series keeps.
        ChunkData::Mem(Box::from(data.as_slice()))
    }
}

/// Samples in a head chunk before it is compressed.
pub const HEAD_CHUNK_SAMPLES: usize = 120;

/// Process-local series identifier. Stable across restarts only through the WAL's series records.
pub type SeriesRef = u64;

/// Why a sample was not appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Same timestamp as the newest sample with the same value: ignored, not an error.
    DuplicateIgnored,
    /// Same timestamp as the newest sample with a different value.
    Duplicate,
    /// Older than the newest sample of the series.
    OutOfOrder,
    /// Older than the head accepts (that time range is already flushed to blocks).
    OutOfBounds,
    /// The series was garbage-collected between lookup and append; resolve it again.
    Removed,
    /// A float staleness marker after a histogram: to be appended as the histogram staleness
    /// marker [`SeriesState::stale_histogram`] gives, as Prometheus's head does.
    StaleHistogram,
}

/// A compressed, closed head chunk: 32 bytes, the bytes themselves elsewhere.
pub(crate) struct HeadChunk {
    pub mint: i64,
    pub maxt: i64,
    pub data: ChunkData,
}

/// Where a closed chunk's bytes are. A `FileChunk` fits beside the box's non-null pointer, so
/// the enum needs no tag of its own and takes 16 bytes.
pub(crate) enum ChunkData {
    /// In the heap (no chunk file, or writing it failed).
    Mem(Box<[u8]>),
    /// In the head's chunk file.
    File(FileChunk),
}

const _: () = assert!(std::mem::size_of::<HeadChunk>() == 32);

impl ChunkData {
    /// Runs `decode` on the chunk's bytes. A chunk in memory that does not decode is taken as
    /// empty (`Ok(false)`); one read from the chunk file that fails its checksum or does not
    /// decode is an error.
    pub(crate) fn decode_with<E: std::fmt::Display>(
        &self,
        store: &ChunkStore,
        decode: impl FnOnce(&[u8]) -> Result<(), E>,
    ) -> Result<bool, StorageError> {
        match self {
            ChunkData::Mem(data) => Ok(decode(data).is_ok()),
            ChunkData::File(fc) => {
                let file = store.file()?;
                file.read(fc, decode)?.map_err(|e| {
                    file.corrupt(fc, &format!("passed its checksum but does not decode: {e}"))
                })?;
                Ok(true)
            }
        }
    }

    /// The chunk file segment holding it, if any.
    pub(crate) fn segment(&self) -> Option<u32> {
        match self {
            ChunkData::File(fc) => Some(fc.seg),
            ChunkData::Mem(_) => None,
        }
    }
}

impl HeadChunk {
    /// Decodes the chunk into `out` (cleared first). A chunk in memory that does not decode
    /// leaves `out` empty, as before the chunk file; one read from the file that fails its
    /// checksum or does not decode is an error.
    fn decode(&self, store: &ChunkStore, out: &mut Vec<Sample>) -> Result<(), StorageError> {
        out.clear();
        match &self.data {
            ChunkData::Mem(data) => {
                if chunk::decode(data, out).is_err() {
                    out.clear();
                }
                Ok(())
            }
            ChunkData::File(fc) => {
                let file = store.file()?;
                file.read(fc, |bytes| chunk::decode(bytes, out))?
                    .map_err(|e| {
                        file.corrupt(fc, &format!("passed its checksum but does not decode: {e}"))
                    })
            }
        }
    }

    /// The chunk's bytes, copied.
    fn bytes(&self, store: &ChunkStore) -> Result<Vec<u8>, StorageError> {
        match &self.data {
            ChunkData::Mem(data) => Ok(data.to_vec()),
            ChunkData::File(fc) => store.file()?.read(fc, <[u8]>::to_vec),
        }
    }

    /// The chunk file segment holding it, if any.
    fn segment(&self) -> Option<u32> {
        match &self.data {
            ChunkData::File(fc) => Some(fc.seg),
            ChunkData::Mem(_) => None,
        }
    }
}

pub(crate) struct SeriesState {
    /// Exactly as long as it holds (a cut adds one chunk every `HEAD_CHUNK_SAMPLES`): no spare
    /// room, and no capacity field, per series.
    pub closed: Box<[HeadChunk]>,
    /// Samples since the last cut, compressed as they arrive; it keeps the newest value even
    /// after a cut, for the duplicate check.
    pub open: OpenChunk,
    /// Newest committed timestamp, `i64::MIN` when empty.
    pub max_t: i64,
    /// Newest reserved timestamp and value: appends in flight hold their place here so that two
    /// concurrent batches cannot both accept samples for the same series out of order.
    pub pending_t: i64,
    pub pending_v: u64,
    pub removed: bool,
    /// Its histogram samples, once it had one: a float-only series pays one null pointer.
    pub(crate) hist: Option<Box<HistState>>,
    /// The head's running total of chunks (kept in step with `closed` and `open` here so that
    /// reading it never walks the series) and its chunk file.
    pub(crate) store: Arc<ChunkStore>,
}

/// One series of the head.
pub struct MemSeries {
    /// Its head reference.
    pub sref: SeriesRef,
    /// Its identity, in one allocation; [`MemSeries::labels`] decodes it.
    labels: SeriesLabels,
    /// Set once a WAL record naming this series is known written; until then every commit that
    /// carries samples of it also writes its series record, so no samples precede it in the log.
    pub(crate) logged: AtomicBool,
    /// Set with `SeriesState::removed` when garbage collection unlinks the series, so a holder
    /// of a handle learns it without taking the series lock.
    pub(crate) unlinked: AtomicBool,
    pub(crate) state: Mutex<SeriesState>,
}

impl MemSeries {
    /// A series counting its chunks into `store`'s total and keeping its closed chunks there.
    pub(crate) fn new(sref: SeriesRef, labels: &Labels, store: Arc<ChunkStore>) -> Self {
        MemSeries {
            sref,
            labels: SeriesLabels::new(labels),
            logged: AtomicBool::new(false),
            unlinked: AtomicBool::new(false),
            state: Mutex::new(SeriesState {
                closed: Box::default(),
                open: OpenChunk::default(),
                max_t: i64::MIN,
                pending_t: i64::MIN,
                pending_v: 0,
                removed: false,
                hist: None,
                store,
            }),
        }
    }

    /// Its labels (decoded: a copy each call).
    pub fn labels(&self) -> Labels {
        self.labels.to_labels()
    }

    /// True when its labels are exactly `labels`.
    pub(crate) fn has_labels(&self, labels: &Labels) -> bool {
        self.labels.matches(labels)
    }

    /// Orders series as their labels compare, without decoding them.
    pub fn cmp_labels(&self, other: &MemSeries) -> std::cmp::Ordering {
        self.labels.cmp_labels(&other.labels)
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SeriesState> {
        // A panic while holding a series lock leaves consistent data (every mutation is a push
        // or a swap), so poisoning is ignored rather than spread.
        crate::sync::lock(&self.state)
    }

    /// True once a series record for it is in the WAL.
    pub fn is_logged(&self) -> bool {
        self.logged.load(Ordering::Acquire)
    }

    pub(crate) fn mark_logged(&self) {
        self.logged.store(true, Ordering::Release);
    }

    /// True once garbage collection took the series out of the head.
    pub(crate) fn is_unlinked(&self) -> bool {
        self.unlinked.load(Ordering::Acquire)
    }
}

impl SeriesState {
    /// Checks a sample against the append rules and, if accepted, reserves its place.
    pub fn reserve(&mut self, t: i64, v: f64, min_valid: i64) -> Result<(), Reject> {
        if self.removed {
            return Err(Reject::Removed);
        }
        let pending = self.pending_t > self.max_t;
        let newest = if pending { self.pending_t } else { self.max_t };
        if newest != i64::MIN {
            if t == newest {
                if self.newest_is_histogram() {
                    return Err(if is_stale_nan(v) {
                        Reject::StaleHistogram
                    } else {
                        Reject::Duplicate
                    });
                }
                // Only a repeated timestamp needs the newest value: reading it touches the
                // sample buffer (a cache miss per series on the append path) or decodes a chunk.
                let newest_v = if pending {
                    self.pending_v
                } else {
                    self.last_value_bits()
                };
                return Err(if v.to_bits() == newest_v {
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
        // A float-only series pays this one test of a pointer.
        if self.hist.is_some() && is_stale_nan(v) && self.newest_is_histogram() {
            return Err(Reject::StaleHistogram);
        }
        self.pending_t = t;
        self.pending_v = v.to_bits();
        Ok(())
    }

    /// Gives back a reservation that will not be applied (its WAL write failed).
    pub fn unreserve(&mut self, t: i64) {
        if self.pending_t == t {
            self.pending_t = i64::MIN;
        }
    }

    /// Appends a reserved sample. Returns false if a concurrent batch got a newer one in first.
    pub fn apply(&mut self, t: i64, v: f64) -> bool {
        if t <= self.max_t {
            return false;
        }
        if self.open.is_empty() {
            // A new open chunk; closing one later moves it to `closed`, leaving the total as is.
            self.store.count.fetch_add(1, Ordering::Relaxed);
        }
        self.open.push(t, v);
        self.max_t = t;
        if self.open.len() >= HEAD_CHUNK_SAMPLES {
            self.close_open();
        }
        true
    }

    /// Appends during WAL replay: the same rules, no reservation. (A float staleness marker
    /// after a histogram was logged as a histogram marker, so it does not come here as one.)
    pub fn append_replayed(&mut self, t: i64, v: f64) -> Result<(), Reject> {
        self.reserve(t, v, i64::MIN)?;
        self.apply(t, v);
        Ok(())
    }

    /// Bits of the newest sample's value, 0 when the series holds none. The open chunk keeps
    /// them across cuts, and a truncation that leaves any sample leaves the newest.
    fn last_value_bits(&self) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.open.last_value_bits()
        }
    }

    fn close_open(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let samples = self.open.take();
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return;
        };
        let (mint, maxt) = (first.t, last.t);
        let data = self.store.place(chunk::encode(&samples));
        let mut closed = std::mem::take(&mut self.closed).into_vec();
        closed.reserve_exact(1);
        closed.push(HeadChunk { mint, maxt, data });
        self.closed = closed.into_boxed_slice();
    }

    /// Oldest sample time, if any.
    pub fn min_time(&self) -> Option<i64> {
        let floats = self.closed.first().map(|c| c.mint).or(self.open.first_t());
        match self.hist.as_ref().and_then(|h| h.min_time()) {
            Some(h) => Some(floats.map_or(h, |f| f.min(h))),
            None => floats,
        }
    }

    /// Appends the samples with `mint <= t <= maxt` to `out`, in time order. A chunk read
    /// from the chunk file that fails its checksum is an error (`out` may then hold part of
    /// the samples).
    pub fn samples_in(
        &self,
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
    ) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        for c in &self.closed {
            if c.maxt < mint || c.mint > maxt {
                continue;
            }
            c.decode(&self.store, &mut buf)?;
            out.extend(buf.iter().filter(|s| s.t >= mint && s.t <= maxt));
        }
        if let (Some(lo), Some(hi)) = (self.open.first_t(), self.open.last_t())
            && lo <= maxt
            && hi >= mint
        {
            out.extend(self.open.iter().filter(|s| s.t >= mint && s.t <= maxt));
        }
        Ok(())
    }

    /// Drops every sample older than `t`, re-encoding the chunk that straddles it.
    pub fn truncate_before(&mut self, t: i64) {
        let before = self.closed.len() + usize::from(!self.open.is_empty());
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
            if let Err(e) = c.decode(&self.store, &mut buf) {
                // Kept whole: its samples before `t` are also in a block now, and a query
                // merging the two gets the same values; the error shows on the next read.
                tracing::warn!(error = %e, "head chunk not truncated: it could not be read");
                keep.push(c);
                continue;
            }
            buf.retain(|s| s.t >= t);
            if let (Some(first), Some(last)) = (buf.first(), buf.last()) {
                let (mint, maxt) = (first.t, last.t);
                keep.push(HeadChunk {
                    mint,
                    maxt,
                    data: self.store.place(chunk::encode(&buf)),
                });
            }
        }
        self.closed = keep.into_boxed_slice();
        match (self.open.first_t(), self.open.last_t()) {
            (Some(lo), _) if lo >= t => {}
            (_, Some(hi)) if hi < t => self.open.clear(),
            (Some(_), Some(_)) => {
                // Re-appending the kept samples keeps the newest value as it was.
                let kept = self.open.take();
                for s in kept.iter().filter(|s| s.t >= t) {
                    self.open.push(s.t, s.v);
                }
            }
            _ => {}
        }
        let after = self.closed.len() + usize::from(!self.open.is_empty());
        let gone = before.saturating_sub(after) + self.truncate_histograms_before(t);
        self.store.count.fetch_sub(gone as u64, Ordering::Relaxed);
    }

    /// The lowest chunk file segment a closed chunk of the series is in.
    pub(crate) fn lowest_segment(&self) -> Option<u32> {
        let floats = self.closed.iter().filter_map(HeadChunk::segment).min();
        let hists = self.hist.as_ref().and_then(|h| h.lowest_segment());
        floats.into_iter().chain(hists).min()
    }

    /// The series' samples as encoded chunks (closed ones as they are, the open one encoded),
    /// with their time ranges, for a WAL checkpoint.
    pub fn encoded_chunks(&self) -> Result<Vec<(i64, i64, Vec<u8>)>, StorageError> {
        let mut out = Vec::with_capacity(self.num_chunks());
        for c in &self.closed {
            out.push((c.mint, c.maxt, c.bytes(&self.store)?));
        }
        if let (Some(first), Some(last)) = (self.open.first_t(), self.open.last_t()) {
            let mut samples = Vec::new();
            self.open.decode_into(&mut samples);
            out.push((first, last, chunk::encode(&samples)));
        }
        Ok(out)
    }

    /// Number of chunks held, the open ones included (histogram chunks too).
    pub fn num_chunks(&self) -> usize {
        self.closed.len()
            + usize::from(!self.open.is_empty())
            + self.hist.as_ref().map_or(0, |h| h.num_chunks())
    }

    /// True when garbage collection may remove the series: no samples, none newer than
    /// `gc_before`, and no append in flight.
    pub fn is_collectable(&self, gc_before: i64) -> bool {
        self.is_empty() && self.max_t < gc_before && self.pending_t <= self.max_t
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty()
            && self.open.is_empty()
            && self.hist.as_ref().is_none_or(|h| h.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> MemSeries {
        MemSeries::new(
            1,
            &Labels::new([("__name__", "x")]).unwrap(),
            Arc::default(),
        )
    }

    #[test]
    fn append_rules() {
        let s = series();
        let mut st = s.lock();
        assert_eq!(st.append_replayed(1000, 1.5), Ok(()));
        assert_eq!(st.append_replayed(1000, 1.5), Err(Reject::DuplicateIgnored));
        assert_eq!(st.append_replayed(1000, 2.5), Err(Reject::Duplicate));
        assert_eq!(st.append_replayed(999, 2.5), Err(Reject::OutOfOrder));
        assert_eq!(st.reserve(1500, 1.0, 2000), Err(Reject::OutOfBounds));
        assert_eq!(st.append_replayed(1013, f64::NAN), Ok(()));
        assert_eq!(
            st.append_replayed(1013, f64::NAN),
            Err(Reject::DuplicateIgnored)
        );
        let mut out = Vec::new();
        st.samples_in(i64::MIN, i64::MAX, &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn reservations_order_concurrent_batches() {
        let s = series();
        let mut st = s.lock();
        st.reserve(10, 1.0, i64::MIN).unwrap();
        // A second batch cannot slip an older sample in while the first is in flight.
        assert_eq!(st.reserve(5, 1.0, i64::MIN), Err(Reject::OutOfOrder));
        assert_eq!(st.reserve(10, 1.0, i64::MIN), Err(Reject::DuplicateIgnored));
        st.reserve(20, 2.0, i64::MIN).unwrap();
        assert!(st.apply(20, 2.0));
        assert!(
            !st.apply(10, 1.0),
            "older reservation applied late is refused"
        );
    }

    #[test]
    fn chunks_cut_read_and_truncate_across_boundaries() {
        let s = series();
        let mut st = s.lock();
        let mut t = 1_000_003;
        let mut want = Vec::new();
        for i in 0..(HEAD_CHUNK_SAMPLES * 3 + 17) {
            t += 14_000 + (i as i64 * 7919) % 2003;
            let v = (i as f64 * 1.37).sin() * 1e3;
            st.append_replayed(t, v).unwrap();
            want.push(Sample::new(t, v));
        }
        assert_eq!(st.closed.len(), 3);
        assert_eq!(
            st.store.count.load(Ordering::Relaxed),
            4,
            "three closed, one open"
        );
        let mut got = Vec::new();
        st.samples_in(i64::MIN, i64::MAX, &mut got).unwrap();
        assert_eq!(got, want);
        let (lo, hi) = (want[100].t, want[250].t);
        got.clear();
        st.samples_in(lo, hi, &mut got).unwrap();
        assert_eq!(got, want[100..=250].to_vec());
        let cut = want[130].t;
        st.truncate_before(cut);
        got.clear();
        st.samples_in(i64::MIN, i64::MAX, &mut got).unwrap();
        assert_eq!(got, want[130..].to_vec());
        assert_eq!(st.min_time(), Some(cut));
        assert_eq!(
            st.store.count.load(Ordering::Relaxed),
            3,
            "the first chunk is gone"
        );
        st.truncate_before(t + 1);
        assert!(st.is_empty());
        assert_eq!(st.store.count.load(Ordering::Relaxed), 0);
    }
}
