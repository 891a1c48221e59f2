//! The head: the in-memory memtable of recent samples, per series, with a postings index.
//!
//! The head owns series identity (labels ↔ `SeriesRef`), the append rules, and the samples not
//! yet flushed to blocks. Durability is the WAL's job: the caller (`storage::Db`) writes the
//! WAL before it applies a batch here. The only files the head writes are its chunk file's
//! (closed chunks kept out of the heap, [`ChunkFile`]), derived data rebuilt by WAL replay.

mod chunk_file;
mod histograms;
mod labels;
mod series;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use chunk_file::ChunkFile;
pub(crate) use series::SeriesState;
pub use series::{HEAD_CHUNK_SAMPLES, MemSeries, Reject, SeriesRef};

use series::ChunkStore;

use crate::model::{HistogramSample, Labels, Matcher, Sample};
use crate::storage::StorageError;
use crate::storage::index::{IndexReader, select_ids};
use crate::sync::{read, write};

const SHARDS: usize = 64;

/// Keys here are already hashes or dense counters; a multiply spreads them over the table.
#[derive(Default)]
pub(crate) struct FibHasher(u64);
impl Hasher for FibHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
/// A map keyed by hashes or dense counters (series refs), hashed with one multiplication.
pub(crate) type FastMap<V> = HashMap<u64, V, BuildHasherDefault<FibHasher>>;

/// Gives a map's spare room back once it holds under a quarter of what it could: after a
/// garbage collection of churned series it would otherwise keep the capacity of its peak.
fn shrink_if_sparse<V>(map: &mut FastMap<V>) {
    if map.capacity() / 4 > map.len() {
        map.shrink_to_fit();
    }
}

/// The series under one label hash: almost always one, kept without an allocation of its own;
/// the rare hash shared by several label sets holds them in a list.
enum Slot {
    One(Arc<MemSeries>),
    Shared(Box<Collided>),
}

/// Series whose label sets share one hash.
struct Collided(Vec<Arc<MemSeries>>);

impl Slot {
    fn find(&self, labels: &Labels) -> Option<&Arc<MemSeries>> {
        match self {
            Slot::One(s) => Some(s).filter(|s| s.has_labels(labels)),
            Slot::Shared(c) => c.0.iter().find(|s| s.has_labels(labels)),
        }
    }

    fn push(&mut self, series: Arc<MemSeries>) {
        match self {
            Slot::One(first) => {
                let first = first.clone();
                *self = Slot::Shared(Box::new(Collided(vec![first, series])));
            }
            Slot::Shared(c) => c.0.push(series),
        }
    }

    /// Takes out the series with this ref; false when none is left.
    fn remove(&mut self, sref: SeriesRef) -> bool {
        match self {
            Slot::One(s) => s.sref != sref,
            Slot::Shared(c) => {
                c.0.retain(|s| s.sref != sref);
                match c.0.as_slice() {
                    [] => false,
                    [one] => {
                        *self = Slot::One(one.clone());
                        true
                    }
                    _ => true,
                }
            }
        }
    }
}

type Postings = BTreeMap<String, BTreeMap<String, Vec<SeriesRef>>>;

/// Keeps the refs of `name=value`'s list that `keep` accepts; an emptied list is removed (and
/// its name once it has no value left), and a list left under a quarter full is shrunk.
fn filter_postings(p: &mut Postings, name: &str, value: &str, keep: impl Fn(SeriesRef) -> bool) {
    let Some(values) = p.get_mut(name) else {
        return;
    };
    let Some(list) = values.get_mut(value) else {
        return;
    };
    list.retain(|&r| keep(r));
    if list.is_empty() {
        values.remove(value);
        if values.is_empty() {
            p.remove(name);
        }
    } else if list.capacity() / 4 > list.len() {
        list.shrink_to_fit();
    }
}

/// The in-memory head.
pub struct Head {
    /// Series are found by label hash in one shard and by ref in another: scrapes of different
    /// targets touch different shards, and no lock covers the whole head on the append path.
    by_hash: Vec<RwLock<FastMap<Slot>>>,
    by_ref: Vec<RwLock<FastMap<Arc<MemSeries>>>>,
    /// name → value → sorted refs. Written only when series are created or collected.
    postings: RwLock<Postings>,
    next_ref: AtomicU64,
    /// Samples older than this are out of bounds: that range is already in blocks.
    min_valid: AtomicI64,
    num_series: AtomicU64,
    /// Series created and removed since the head was made, for self-metrics.
    series_created: AtomicU64,
    series_removed: AtomicU64,
    /// Chunks of every series, closed and open (each series adds and removes its own), and
    /// the chunk file closed chunks go to.
    store: Arc<ChunkStore>,
}

impl Default for Head {
    fn default() -> Self {
        Self::new()
    }
}

fn shard_index(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS
}

/// One series' samples in a time range, as a query or a flush reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// The series.
    pub labels: Labels,
    /// Its float samples in the range, time-ordered.
    pub samples: Vec<Sample>,
    /// Its histogram samples in the range, time-ordered. A series' float and histogram
    /// samples never share a timestamp.
    pub histograms: Vec<HistogramSample>,
}

impl Head {
    /// An empty head keeping its closed chunks in memory.
    pub fn new() -> Self {
        Self::with_store(ChunkStore::default())
    }

    /// An empty head writing its closed chunks to `file`.
    pub fn with_chunk_file(file: ChunkFile) -> Self {
        Self::with_store(ChunkStore {
            file: Some(file),
            ..ChunkStore::default()
        })
    }

    fn with_store(store: ChunkStore) -> Self {
        Head {
            by_hash: (0..SHARDS)
                .map(|_| RwLock::new(FastMap::default()))
                .collect(),
            by_ref: (0..SHARDS)
                .map(|_| RwLock::new(FastMap::default()))
                .collect(),
            postings: RwLock::new(BTreeMap::new()),
            next_ref: AtomicU64::new(1),
            min_valid: AtomicI64::new(i64::MIN),
            num_series: AtomicU64::new(0),
            series_created: AtomicU64::new(0),
            series_removed: AtomicU64::new(0),
            store: Arc::new(store),
        }
    }

    fn hash_shard(&self, hash: u64) -> &RwLock<FastMap<Slot>> {
        &self.by_hash[shard_index(hash)]
    }

    fn ref_shard(&self, sref: SeriesRef) -> &RwLock<FastMap<Arc<MemSeries>>> {
        &self.by_ref[shard_index(sref)]
    }

    /// The series with these labels, if the head has it.
    pub fn get(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        let h = labels.stable_hash();
        read(self.hash_shard(h))
            .get(&h)
            .and_then(|slot| slot.find(labels).cloned())
    }

    /// The series with this ref.
    pub fn get_by_ref(&self, sref: SeriesRef) -> Option<Arc<MemSeries>> {
        read(self.ref_shard(sref)).get(&sref).cloned()
    }

    /// The series with these labels, created if new; the flag says whether it was created.
    pub fn get_or_create(&self, labels: &Labels) -> (Arc<MemSeries>, bool) {
        if let Some(s) = self.get(labels) {
            return (s, false);
        }
        self.create(labels, None)
    }

    /// Creates a series under a ref read from the WAL (replay); an existing series with the
    /// same labels is returned instead, and the caller maps the WAL ref to it. The flag says
    /// whether the series is new.
    pub fn create_with_ref(&self, labels: &Labels, sref: SeriesRef) -> (Arc<MemSeries>, bool) {
        self.next_ref.fetch_max(sref + 1, Ordering::Relaxed);
        self.create(labels, Some(sref))
    }

    fn create(&self, labels: &Labels, want_ref: Option<SeriesRef>) -> (Arc<MemSeries>, bool) {
        let h = labels.stable_hash();
        let mut shard = write(self.hash_shard(h));
        if let Some(s) = shard.get(&h).and_then(|slot| slot.find(labels)) {
            return (s.clone(), false);
        }
        let sref = match want_ref {
            Some(r) if self.get_by_ref(r).is_none() => r,
            _ => self.next_ref.fetch_add(1, Ordering::Relaxed),
        };
        let series = Arc::new(MemSeries::new(sref, labels, self.store.clone()));
        match shard.entry(h) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().push(series.clone()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Slot::One(series.clone()));
            }
        }
        // Lock order: hash shard, then a series or the ref shard, then postings. Never the
        // reverse.
        write(self.ref_shard(sref)).insert(sref, series.clone());
        {
            let mut p = write(&self.postings);
            for (n, v) in labels.iter() {
                let list = p
                    .entry(n.to_string())
                    .or_default()
                    .entry(v.to_string())
                    .or_default();
                let pos = list.partition_point(|&r| r < sref);
                list.insert(pos, sref);
            }
        }
        self.num_series.fetch_add(1, Ordering::Relaxed);
        self.series_created.fetch_add(1, Ordering::Relaxed);
        (series, true)
    }

    /// Number of live series.
    pub fn num_series(&self) -> u64 {
        self.num_series.load(Ordering::Relaxed)
    }

    /// Series created since the head was made (WAL replay included).
    pub fn series_created(&self) -> u64 {
        self.series_created.load(Ordering::Relaxed)
    }

    /// Series removed by garbage collection since the head was made.
    pub fn series_removed(&self) -> u64 {
        self.series_removed.load(Ordering::Relaxed)
    }

    /// Lowest timestamp the head accepts.
    pub fn min_valid(&self) -> i64 {
        self.min_valid.load(Ordering::Acquire)
    }

    /// Raises the lowest accepted timestamp (never lowers it).
    pub fn set_min_valid(&self, t: i64) {
        self.min_valid.fetch_max(t, Ordering::AcqRel);
    }

    /// Every live series, in ref order.
    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        let mut out: Vec<Arc<MemSeries>> = Vec::with_capacity(self.num_series() as usize);
        for s in &self.by_ref {
            out.extend(read(s).values().cloned());
        }
        out.sort_unstable_by_key(|s| s.sref);
        out
    }

    /// Oldest and newest sample time held, `None` when empty.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut range: Option<(i64, i64)> = None;
        for s in &self.by_ref {
            for series in read(s).values() {
                let st = series.lock();
                if let Some(lo) = st.min_time() {
                    let hi = st.max_t;
                    range = Some(match range {
                        None => (lo, hi),
                        Some((a, b)) => (a.min(lo), b.max(hi)),
                    });
                }
            }
        }
        range
    }

    /// Series matching `matchers` with samples in [mint, maxt], sorted by labels. Series with
    /// no sample in the range are left out. A chunk that fails its checksum is an error.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let mut out = Vec::new();
        for sref in select_ids(self, matchers) {
            let Some(series) = self.get_by_ref(sref) else {
                continue;
            };
            let mut samples = Vec::new();
            let mut histograms = Vec::new();
            {
                let st = series.lock();
                st.samples_in(mint, maxt, &mut samples)?;
                st.histograms_in(mint, maxt, &mut histograms)?;
            }
            if !samples.is_empty() || !histograms.is_empty() {
                out.push(SeriesSamples {
                    labels: series.labels(),
                    samples,
                    histograms,
                });
            }
        }
        out.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Labels of the series matching `matchers` with any sample in [mint, maxt].
    pub fn series_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Labels> {
        let mut out = Vec::new();
        for sref in select_ids(self, matchers) {
            let Some(series) = self.get_by_ref(sref) else {
                continue;
            };
            let st = series.lock();
            let overlaps = st
                .min_time()
                .is_some_and(|lo| lo <= maxt && st.max_t >= mint);
            if overlaps {
                out.push(series.labels());
            }
        }
        out.sort_unstable();
        out
    }

    /// Drops samples older than `t` and raises `min_valid` to it. Series left empty whose newest
    /// sample is older than `gc_before` are removed and returned (in ref order); their refs
    /// become unknown. The maps and postings lists they leave sparse are shrunk, so the head's
    /// memory follows its live series down after churn, not only up.
    /// Chunk file segments no series refers to any more are deleted.
    pub fn truncate(&self, t: i64, gc_before: i64) -> Vec<Arc<MemSeries>> {
        self.set_min_valid(t);
        // Chunks cut during the walk go to this segment or a later one.
        let mut lowest_live = self.store.file.as_ref().map(ChunkFile::fence);
        let mut collected = Vec::new();
        for series in self.all_series() {
            let idle = {
                let mut st = series.lock();
                st.truncate_before(t);
                if let (Some(low), Some(seg)) = (lowest_live.as_mut(), st.lowest_segment()) {
                    *low = (*low).min(seg);
                }
                st.is_collectable(gc_before)
            };
            if idle && self.unlink(&series, gc_before) {
                collected.push(series);
            }
        }
        if !collected.is_empty() {
            self.remove_postings(&collected);
            for shard in &self.by_hash {
                shrink_if_sparse(&mut write(shard));
            }
            for shard in &self.by_ref {
                shrink_if_sparse(&mut write(shard));
            }
            self.series_removed
                .fetch_add(collected.len() as u64, Ordering::Relaxed);
        }
        if let (Some(file), Some(low)) = (&self.store.file, lowest_live) {
            file.remove_unreferenced(low);
        }
        collected
    }

    /// Stops counting the chunk file's pages that reads mapped in the process's RSS (they stay
    /// in the page cache); see [`ChunkFile`].
    pub fn release_chunk_pages(&self) {
        if let Some(file) = &self.store.file {
            file.release_pages();
        }
    }

    /// Removes an idle series from the lookups by labels and by ref; its postings are left to
    /// [`Head::remove_postings`]. It is marked removed and unlinked from the label lookup under
    /// its hash shard's lock, so a lookup by labels never hands out a series already marked
    /// removed: an append that found one re-resolves once and gets a live series. (Marking
    /// first and unlinking later let the re-resolved lookup find the same dead series, and
    /// the sample was refused as out of order.) A query that meets its ref in the postings
    /// before they are cleaned finds no series under it and skips it.
    fn unlink(&self, series: &Arc<MemSeries>, gc_before: i64) -> bool {
        let h = series.labels().stable_hash();
        {
            // Lock order: hash shard, then the series.
            let mut shard = write(self.hash_shard(h));
            let mut st = series.lock();
            // An append may have reserved a sample since the caller looked.
            if !st.is_collectable(gc_before) {
                return false;
            }
            st.removed = true;
            series.unlinked.store(true, Ordering::Release);
            drop(st);
            if let Some(slot) = shard.get_mut(&h)
                && !slot.remove(series.sref)
            {
                shard.remove(&h);
            }
        }
        write(self.ref_shard(series.sref)).remove(&series.sref);
        self.num_series.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Takes the refs of `removed` (in ref order) out of the postings under one hold of the
    /// lock. Each list is scanned once: short lists as each series naming them comes up, the
    /// long ones (a job or metric name many removed series share) once at the end against the
    /// sorted refs. Removing one ref at a time from a list of n refs cost O(n) per series, so
    /// collecting a million series of one job scanned that job's list a million times.
    fn remove_postings(&self, removed: &[Arc<MemSeries>]) {
        /// Lists up to this long are filtered as each removed series comes up.
        const SHORT: usize = 32;
        /// Removed series handled per hold of the postings lock, so appends creating series
        /// and queries reading postings wait for one batch, not for the whole collection.
        const BATCH: usize = 4096;
        let refs: Vec<SeriesRef> = removed.iter().map(|s| s.sref).collect();
        debug_assert!(refs.windows(2).all(|w| w[0] < w[1]));
        let mut long: HashSet<(String, String)> = HashSet::new();
        for batch in removed.chunks(BATCH) {
            // Decoded outside the lock.
            let labels: Vec<Labels> = batch.iter().map(|s| s.labels()).collect();
            let mut p = write(&self.postings);
            for (series, labels) in batch.iter().zip(&labels) {
                for (n, v) in labels.iter() {
                    if let Some(len) = p.get(n).and_then(|m| m.get(v)).map(Vec::len)
                        && len > SHORT
                    {
                        long.insert((n.to_string(), v.to_string()));
                        continue;
                    }
                    let sref = series.sref;
                    filter_postings(&mut p, n, v, |r| r != sref);
                }
            }
        }
        for (n, v) in long {
            filter_postings(&mut write(&self.postings), &n, &v, |r| {
                refs.binary_search(&r).is_err()
            });
        }
    }

    /// Total chunks held (closed and open), for inspection and self-metrics; a counter the
    /// series keep, so reading it costs nothing whatever the head's size.
    pub fn num_chunks(&self) -> u64 {
        self.store.count.load(Ordering::Relaxed)
    }
}

/// The head's cardinality, as `/api/v1/status/tsdb` reports it: each list holds the top
/// entries, largest count first (ties by name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostingsStats {
    /// Series per value of the chosen label (the metric name).
    pub series_count_by_metric_name: Vec<(String, u64)>,
    /// Distinct values per label name.
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Bytes of names and values per label name, counted once per series using them.
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    /// Series per `name=value` pair.
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
    /// Distinct label pairs.
    pub num_label_pairs: u64,
}

/// Keeps the `limit` largest counts seen, ties resolved towards the smaller key.
struct TopN<K: Ord> {
    limit: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(u64, std::cmp::Reverse<K>)>>,
}

impl<K: Ord> TopN<K> {
    fn new(limit: usize) -> Self {
        TopN {
            limit,
            heap: std::collections::BinaryHeap::with_capacity(limit + 1),
        }
    }

    fn push(&mut self, key: K, count: u64) {
        if self.limit == 0 {
            return;
        }
        self.heap
            .push(std::cmp::Reverse((count, std::cmp::Reverse(key))));
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    fn into_sorted(self, name: impl Fn(K) -> String) -> Vec<(String, u64)> {
        let mut v: Vec<(u64, std::cmp::Reverse<K>)> = self
            .heap
            .into_iter()
            .map(|std::cmp::Reverse(e)| e)
            .collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.into_iter()
            .map(|(c, std::cmp::Reverse(k))| (name(k), c))
            .collect()
    }
}

impl Head {
    /// Cardinality of the postings index: the `limit` largest entries of each list, with
    /// `metric_label`'s values counted by series. Holds the postings lock for one pass.
    pub fn postings_stats(&self, metric_label: &str, limit: usize) -> PostingsStats {
        let p = read(&self.postings);
        let mut metrics = TopN::new(limit);
        let mut names = TopN::new(limit);
        let mut bytes = TopN::new(limit);
        let mut pairs = TopN::new(limit);
        let mut num_label_pairs = 0u64;
        for (n, values) in p.iter() {
            names.push(n.as_str(), values.len() as u64);
            num_label_pairs += values.len() as u64;
            let mut size = 0u64;
            for (v, refs) in values {
                let count = refs.len() as u64;
                if n == metric_label {
                    metrics.push(v.as_str(), count);
                }
                pairs.push((n.as_str(), v.as_str()), count);
                size += (n.len() + v.len()) as u64 * count;
            }
            bytes.push(n.as_str(), size);
        }
        PostingsStats {
            series_count_by_metric_name: metrics.into_sorted(str::to_string),
            label_value_count_by_label_name: names.into_sorted(str::to_string),
            memory_in_bytes_by_label_name: bytes.into_sorted(str::to_string),
            series_count_by_label_value_pair: pairs.into_sorted(|(n, v)| format!("{n}={v}")),
            num_label_pairs,
        }
    }
}

impl IndexReader for Head {
    type Id = SeriesRef;

    fn postings(&self, name: &str, value: &str) -> Vec<SeriesRef> {
        read(&self.postings)
            .get(name)
            .and_then(|m| m.get(value))
            .cloned()
            .unwrap_or_default()
    }

    fn label_values(&self, name: &str) -> Vec<String> {
        read(&self.postings)
            .get(name)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn all_ids(&self) -> Vec<SeriesRef> {
        self.all_series().iter().map(|s| s.sref).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchOp;

    fn l(name: &str, job: &str) -> Labels {
        Labels::new([("__name__", name), ("job", job)]).unwrap()
    }

    #[test]
    fn fast_map_hasher_spreads_sequential_refs() {
        let mut seen = std::collections::HashSet::new();
        // hashbrown's tag is the hash's top 7 bits: they must spread too.
        let mut tags = std::collections::HashSet::new();
        for r in 0..10_000u64 {
            let mut h = FibHasher::default();
            h.write_u64(r);
            seen.insert(h.finish() & 0xffff);
            tags.insert(h.finish() >> 57);
        }
        assert!(seen.len() > 9_000, "{}", seen.len());
        assert_eq!(tags.len(), 128);
    }

    #[test]
    fn same_labels_same_series_and_postings_select() {
        let head = Head::new();
        let (a, created) = head.get_or_create(&l("up", "node"));
        assert!(created);
        let (a2, created) = head.get_or_create(&l("up", "node"));
        assert!(!created && a.sref == a2.sref);
        let (b, _) = head.get_or_create(&l("up", "prom"));
        for (s, t, v) in [(&a, 1000, 1.0), (&b, 1000, 0.0), (&a, 16000, 1.0)] {
            s.lock().append_replayed(t, v).unwrap();
        }
        // Same timestamp in two series: both kept.
        let all = head
            .select(&[Matcher::equal("__name__", "up")], 0, i64::MAX)
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].samples.len(), 2);
        assert_eq!(all[1].samples, vec![Sample::new(1000, 0.0)]);
        let m = Matcher::new(MatchOp::NotRegex, "job", "no.*").unwrap();
        let sel = head.select(&[m], 0, i64::MAX).unwrap();
        assert_eq!(sel.len(), 1);
        assert_eq!(sel[0].labels, l("up", "prom"));
        assert_eq!(head.time_range(), Some((1000, 16000)));
    }

    #[test]
    fn truncate_collects_empty_idle_series() {
        let head = Head::new();
        let (a, _) = head.get_or_create(&l("a", "x"));
        let (b, _) = head.get_or_create(&l("b", "x"));
        a.lock().append_replayed(1000, 1.0).unwrap();
        b.lock().append_replayed(1000, 1.0).unwrap();
        b.lock().append_replayed(9000, 1.0).unwrap();
        assert_eq!(head.truncate(5000, 5000).len(), 1);
        assert!(head.get(&l("a", "x")).is_none());
        assert!(head.get_by_ref(a.sref).is_none());
        assert_eq!(a.lock().reserve(6000, 1.0, 0), Err(Reject::Removed));
        assert!(a.is_unlinked() && !b.is_unlinked());
        assert_eq!(head.label_values("__name__"), vec!["b".to_string()]);
        assert_eq!(head.num_series(), 1);
        assert_eq!(b.lock().append_replayed(4000, 1.0), Err(Reject::OutOfOrder));
        let (c, _) = head.get_or_create(&l("c", "x"));
        assert_eq!(
            c.lock().reserve(4000, 1.0, head.min_valid()),
            Err(Reject::OutOfBounds)
        );
    }

    /// The postings a head of `series` should have, rebuilt from their labels.
    fn rebuilt_postings(series: &[Arc<MemSeries>]) -> Postings {
        let mut p = Postings::new();
        for s in series {
            for (n, v) in s.labels().iter() {
                p.entry(n.to_string())
                    .or_default()
                    .entry(v.to_string())
                    .or_default()
                    .push(s.sref);
            }
        }
        p
    }

    #[test]
    fn collecting_churned_series_gives_their_room_back() {
        // A deployment's pods replaced eight times over: the old series go idle, then a
        // truncation collects them. What stays must be sized for the live series, not the peak.
        const ACTIVE: usize = 1000;
        const OLD: usize = 8 * ACTIVE;
        let pod = |generation: &str, i: usize| {
            let pod = format!("{generation}-{i}");
            Labels::new([("__name__", "m"), ("job", "k8s"), ("pod", pod.as_str())]).unwrap()
        };
        let head = Head::new();
        for i in 0..OLD {
            let (s, _) = head.get_or_create(&pod("old", i));
            s.lock().append_replayed(1000, 1.0).unwrap();
        }
        for i in 0..ACTIVE {
            let (s, _) = head.get_or_create(&pod("new", i));
            s.lock().append_replayed(9000, 1.0).unwrap();
        }
        assert_eq!(head.truncate(5000, 5000).len(), OLD);
        assert_eq!(head.num_series(), ACTIVE as u64);
        assert_eq!(head.series_created(), (OLD + ACTIVE) as u64);
        assert_eq!(head.series_removed(), OLD as u64);
        assert!(head.get(&pod("old", 7)).is_none());
        assert!(head.postings("pod", "old-7").is_empty());
        assert_eq!(head.label_values("pod").len(), ACTIVE);
        assert_eq!(head.postings("job", "k8s").len(), ACTIVE);
        assert_eq!(*read(&head.postings), rebuilt_postings(&head.all_series()));

        let by_hash: usize = head.by_hash.iter().map(|m| read(m).capacity()).sum();
        let by_ref: usize = head.by_ref.iter().map(|m| read(m).capacity()).sum();
        let lists: usize = read(&head.postings)
            .values()
            .flat_map(|m| m.values())
            .map(Vec::capacity)
            .sum();
        assert!(
            by_hash <= 4 * ACTIVE && by_ref <= 4 * ACTIVE,
            "lookup maps keep room for {by_hash} and {by_ref} series, {ACTIVE} live"
        );
        assert!(
            lists <= 4 * 3 * ACTIVE,
            "postings keep room for {lists} refs, {} in use",
            3 * ACTIVE
        );
    }

    /// The chunk total every series keeps up to date, against a walk over the series.
    fn walked_chunks(head: &Head) -> u64 {
        head.all_series()
            .iter()
            .map(|s| s.lock().num_chunks() as u64)
            .sum()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn the_chunk_total_matches_the_series(
            steps in proptest::collection::vec((0usize..5, 1i64..900, proptest::bool::weighted(0.03)), 1..1500),
        ) {
            let head = Head::new();
            let mut t = [0i64; 5];
            for (i, dt, cut) in steps {
                t[i] += dt;
                let (s, _) = head.get_or_create(&l("m", &i.to_string()));
                // A collected series refuses the sample; the next lookup makes a new one.
                let _ = s.lock().append_replayed(t[i], dt as f64 * 0.5);
                if cut {
                    // Truncate somewhere inside the data, collecting series left empty.
                    let at = t.iter().copied().max().unwrap_or(0) - 20_000;
                    head.truncate(at, at);
                    proptest::prop_assert_eq!(
                        &*read(&head.postings),
                        &rebuilt_postings(&head.all_series())
                    );
                }
                proptest::prop_assert_eq!(head.num_chunks(), walked_chunks(&head));
            }
        }
    }

    /// A head writing its closed chunks to a chunk file of small segments and a small write
    /// buffer (chunks in the buffer, the file and across segments), in `dir`.
    fn file_head(dir: &std::path::Path) -> Head {
        Head::with_chunk_file(ChunkFile::create_with(dir, 4096, 300).unwrap())
    }

    fn everything(head: &Head) -> Vec<SeriesSamples> {
        head.select(&[], i64::MIN, i64::MAX).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Chunks in a file answer exactly as chunks in memory: every read, every range, the
        /// checkpoint's bytes and the chunk count, through appends, cuts and truncations.
        #[test]
        fn file_backed_chunks_answer_as_chunks_in_memory(
            steps in proptest::collection::vec(
                (0usize..6, 1i64..40_000, proptest::num::f64::ANY, proptest::bool::weighted(0.004)),
                1..3000,
            ),
            ranges in proptest::collection::vec((0i64..2_000_000, 0i64..2_000_000), 1..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (mem, file) = (Head::new(), file_head(dir.path()));
            let mut t = [0i64; 6];
            for (i, dt, v, cut) in steps {
                t[i] += dt;
                for head in [&mem, &file] {
                    let (s, _) = head.get_or_create(&l("m", &i.to_string()));
                    let _ = s.lock().append_replayed(t[i], v);
                    if cut {
                        let at = t[i] - 100_000;
                        head.truncate(at, at);
                    }
                }
            }
            proptest::prop_assert_eq!(mem.num_chunks(), file.num_chunks());
            let (a, b) = (everything(&mem), everything(&file));
            // NaN payloads compare by bits.
            let bits = |x: &[SeriesSamples]| -> Vec<(Labels, Vec<(i64, u64)>)> {
                x.iter()
                    .map(|s| (s.labels.clone(), s.samples.iter().map(|p| (p.t, p.v.to_bits())).collect()))
                    .collect()
            };
            proptest::prop_assert_eq!(bits(&a), bits(&b));
            for (lo, len) in ranges {
                proptest::prop_assert_eq!(
                    bits(&mem.select(&[], lo, lo + len).unwrap()),
                    bits(&file.select(&[], lo, lo + len).unwrap())
                );
            }
            for (x, y) in mem.all_series().iter().zip(file.all_series()) {
                proptest::prop_assert_eq!(x.lock().encoded_chunks().unwrap(), y.lock().encoded_chunks().unwrap());
            }
            proptest::prop_assert!(file.all_series().iter().all(|s| s.lock().encoded_chunks().is_ok()));
        }
    }

    #[test]
    fn truncation_deletes_the_segments_no_series_refers_to() {
        let dir = tempfile::tempdir().unwrap();
        let head = file_head(dir.path());
        let files = || std::fs::read_dir(dir.path()).unwrap().count();
        for step in 0..3000i64 {
            for i in 0..4 {
                let (s, _) = head.get_or_create(&l("m", &i.to_string()));
                s.lock()
                    .append_replayed(step * 1000, (step as f64 * (i + 1) as f64).sin())
                    .unwrap();
            }
        }
        let before = files();
        assert!(before > 10, "{before} segments");
        let file = head.store.file.as_ref().unwrap();
        assert_eq!(file.segment_ids().len(), before);
        head.truncate(2_500_000, 0);
        let after = files();
        assert!(after < before / 3, "{before} → {after} segments");
        assert_eq!(file.segment_ids().len(), after);
        // What is left still reads, from the first kept sample on.
        let all = everything(&head);
        assert_eq!(all.len(), 4);
        for s in &all {
            assert_eq!(s.samples.len(), 500);
            assert_eq!(s.samples[0].t, 2_500_000);
        }
        // Everything truncated: only the segment being written is left.
        head.truncate(i64::MAX, 0);
        assert!(everything(&head).is_empty());
        assert_eq!(files(), 1);
    }

    #[test]
    fn a_damaged_chunk_is_an_error_to_reads_and_to_the_checkpoint_check() {
        let dir = tempfile::tempdir().unwrap();
        let head = file_head(dir.path());
        let (s, _) = head.get_or_create(&l("m", "a"));
        for t in 0..(HEAD_CHUNK_SAMPLES as i64 * 4) {
            s.lock().append_replayed(t * 15_000, t as f64).unwrap();
        }
        let file = head.store.file.as_ref().unwrap();
        file.flush_buffer().unwrap();
        let path = file.path_of(0);
        let mut byte = [0u8; 1];
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        use std::os::unix::fs::FileExt;
        // A byte of the first chunk's bytes (after its 4-byte length).
        f.read_exact_at(&mut byte, 6).unwrap();
        f.write_all_at(&[byte[0] ^ 1], 6).unwrap();
        let e = head.select(&[], i64::MIN, i64::MAX).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert!(
            head.all_series()
                .iter()
                .any(|s| s.lock().encoded_chunks().is_err())
        );
        assert!(s.lock().encoded_chunks().is_err());
        // A range that does not touch the damaged (first) chunk still reads.
        let late = head.select(&[], 200 * 15_000, i64::MAX).unwrap();
        assert_eq!(late[0].samples.len(), 4 * HEAD_CHUNK_SAMPLES - 200);
    }

    #[test]
    fn queries_during_cuts_and_truncations_see_every_sample_they_should() {
        let dir = tempfile::tempdir().unwrap();
        let head = Arc::new(file_head(dir.path()));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let n = 6000i64;
        let writer = {
            let head = head.clone();
            std::thread::spawn(move || {
                for t in 0..n {
                    for i in 0..3 {
                        let (s, _) = head.get_or_create(&l("m", &i.to_string()));
                        s.lock().append_replayed(t, t as f64).unwrap();
                    }
                    if t % 1000 == 999 {
                        // Keep the last 500 samples.
                        head.truncate(t - 499, 0);
                    }
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (head, done) = (head.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut reads = 0;
                    while !done.load(Ordering::Relaxed) || reads == 0 {
                        for s in head.select(&[], i64::MIN, i64::MAX).unwrap() {
                            // A contiguous run of timestamps, each sample its own value.
                            let first = s.samples[0].t;
                            for (k, p) in s.samples.iter().enumerate() {
                                assert_eq!(p.t, first + k as i64);
                                assert_eq!(p.v, p.t as f64);
                            }
                        }
                        reads += 1;
                    }
                })
            })
            .collect();
        writer.join().unwrap();
        done.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        let all = everything(&head);
        assert_eq!(all.len(), 3);
        for s in all {
            assert_eq!(s.samples.first().map(|p| p.t), Some(n - 500));
            assert_eq!(s.samples.last().map(|p| p.t), Some(n - 1));
        }
    }

    #[test]
    fn label_sets_sharing_a_hash_are_kept_apart() {
        let chunks = Arc::default();
        let series: Vec<Arc<MemSeries>> = (1..=3)
            .map(|i| {
                Arc::new(MemSeries::new(
                    i,
                    &l("m", &i.to_string()),
                    Arc::clone(&chunks),
                ))
            })
            .collect();
        let mut slot = Slot::One(series[0].clone());
        assert!(slot.find(&l("m", "2")).is_none());
        slot.push(series[1].clone());
        slot.push(series[2].clone());
        for s in &series {
            assert_eq!(slot.find(&s.labels()).map(|f| f.sref), Some(s.sref));
        }
        assert!(slot.remove(2), "two are left");
        assert!(slot.find(&l("m", "2")).is_none());
        assert!(slot.remove(1));
        assert!(matches!(slot, Slot::One(ref s) if s.sref == 3));
        assert!(slot.remove(7), "an absent ref leaves the slot as it was");
        assert!(!slot.remove(3), "the last one gone");
    }

    #[test]
    fn postings_stats_rank_by_count_then_name() {
        let head = Head::new();
        for (name, job) in [
            ("up", "a"),
            ("up", "bb"),
            ("up", "c"),
            ("load", "a"),
            ("x", "a"),
        ] {
            head.get_or_create(&l(name, job));
        }
        let st = head.postings_stats("__name__", 2);
        assert_eq!(
            st.series_count_by_metric_name,
            vec![("up".to_string(), 3), ("load".to_string(), 1)]
        );
        assert_eq!(
            st.label_value_count_by_label_name,
            vec![("__name__".to_string(), 3), ("job".to_string(), 3)]
        );
        // job: (3+1)*3 + (3+2)*1 + (3+1)*1; __name__: (8+2)*3 + (8+4) + (8+1).
        assert_eq!(
            st.memory_in_bytes_by_label_name,
            vec![("__name__".to_string(), 51), ("job".to_string(), 21)]
        );
        assert_eq!(
            st.series_count_by_label_value_pair,
            vec![("__name__=up".to_string(), 3), ("job=a".to_string(), 3)]
        );
        assert_eq!(st.num_label_pairs, 6);
        assert_eq!(
            head.postings_stats("__name__", 0)
                .series_count_by_metric_name,
            vec![]
        );
    }

    #[test]
    fn concurrent_creation_yields_one_series() {
        let head = Arc::new(Head::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let head = head.clone();
                std::thread::spawn(move || {
                    (0..500)
                        .map(|i| head.get_or_create(&l("m", &i.to_string())).0.sref)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<Vec<u64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(head.num_series(), 500);
        let p = head.postings("__name__", "m");
        assert_eq!(p.len(), 500);
        assert!(p.windows(2).all(|w| w[0] < w[1]));
    }
}
