//! Reading across the head and the blocks of one catalog snapshot, with deleted samples
//! (tombstones) left out of every answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::warn;

use super::StorageError;
use super::block_chunks::read_samples;
use super::catalog::Catalog;
use super::chunk::MAX_SAMPLES;
use super::head::{Head, MemSeries, SeriesSamples};
use super::index::{IndexReader, select_ids};
use super::quarantine::{Blocks, corrupt_block_path};
use super::sstable::{Block, BlockId, ChunkMeta};
use super::tombstones::Tombstones;
use crate::model::{HistogramSample, Labels, MatchOp, Matcher, Sample, format_rfc3339};
use crate::sync::lock;

/// The most samples a series' read reserves room for on the word of the block index's
/// counts (16 MiB of samples).
const RESERVE_MOST: usize = 1 << 20;

/// A consistent view for one query: the blocks of one catalog snapshot, the head, and the
/// tombstones that hide deleted samples from both.
pub struct Querier {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) head: Arc<Head>,
    pub(crate) tombstones: Arc<Tombstones>,
    /// The reader epoch of the live database this view was taken from (none for read-only
    /// views): while it is held, no flush truncates the head under this view.
    pub(crate) reader: Option<Arc<()>>,
    /// Where a block found corrupt while reading is reported, to be quarantined (none for
    /// read-only views, which move nothing).
    pub(crate) quarantine: Option<Arc<Blocks>>,
    /// Blocks of this view found corrupt, left out of every later read of it, with the
    /// warning the answer carries.
    pub(crate) skipped: Mutex<BTreeMap<BlockId, String>>,
}

/// A block seen through the index interface matcher resolution needs.
pub(crate) struct BlockIndex<'a>(pub(crate) &'a Block);

impl IndexReader for BlockIndex<'_> {
    type Id = u32;
    fn postings(&self, name: &str, value: &str) -> Vec<u32> {
        self.0.postings(name, value)
    }
    fn label_values(&self, name: &str) -> Vec<String> {
        self.0
            .label_values(name)
            .into_iter()
            .map(str::to_string)
            .collect()
    }
    fn all_ids(&self) -> Vec<u32> {
        (0..self.0.num_series()).collect()
    }
}

fn overlaps(b: &Block, mint: i64, maxt: i64) -> bool {
    b.meta().mint <= maxt && b.meta().maxt >= mint
}

/// One step of a streamed selection ([`Querier::select_each`]).
pub enum Selected {
    /// The next series, in label order, with its samples in the range: time-ordered, exact
    /// timestamp duplicates across sources dropped (the earlier source wins), deleted samples
    /// left out, never empty.
    Series(SeriesSamples),
    /// A block was found corrupt after series had been handed over: it is now left out of
    /// this view (and quarantined), and the selection starts again from its first series, so
    /// what was received so far must be forgotten.
    Restart,
}

/// Where one series' samples are read from.
enum Source<'a> {
    /// A block's series: its chunks overlapping the range.
    Block(&'a Block, Vec<ChunkMeta>),
    Head(Arc<MemSeries>),
}

/// A series of one source, before its samples are read.
struct Entry<'a> {
    labels: Labels,
    /// Sources count in time order: the blocks as the catalog lists them, then the head.
    order: usize,
    source: Source<'a>,
}

/// A selection gathered but not read yet ([`Querier::plan`]): the labels and sources of each
/// matching series, in label order. Its series can be read in any order, from several threads
/// ([`Querier::read_planned`]).
pub(crate) struct Plan<'q> {
    entries: Vec<Entry<'q>>,
    /// Where each series' run of entries starts in `entries`, then `entries.len()`.
    starts: Vec<usize>,
}

impl Plan<'_> {
    /// Number of series.
    pub(crate) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// The labels of series `i`.
    pub(crate) fn labels(&self, i: usize) -> &Labels {
        &self.entries[self.starts[i]].labels
    }

    /// The labels of series `i`, taken out of the plan (which is left with an empty set in
    /// their place): for a reader that has read the series and reads it no more.
    pub(crate) fn take_labels(&mut self, i: usize) -> Labels {
        std::mem::replace(&mut self.entries[self.starts[i]].labels, Labels::empty())
    }

    /// Roughly how many samples series `i` has in the range: its block chunks' sample counts,
    /// and [`HEAD_SERIES_GUESS`] for its head part (reading a head series' size would take its
    /// lock).
    pub(crate) fn samples_guess(&self, i: usize) -> u64 {
        self.entries[self.starts[i]..self.starts[i + 1]]
            .iter()
            .map(|e| match &e.source {
                Source::Block(_, chunks) => chunks.iter().map(|c| u64::from(c.num_samples)).sum(),
                Source::Head(_) => HEAD_SERIES_GUESS,
            })
            .sum()
    }
}

/// What [`Plan::samples_guess`] counts for a series' part in the head: two hours at a 15 s
/// interval, about what a head holds.
const HEAD_SERIES_GUESS: u64 = 480;

/// A planned series that could not be read: the block that failed (none when a head chunk
/// failed its checksum) and why.
pub(crate) struct Unread<'q> {
    block: Option<&'q Block>,
    error: StorageError,
}

/// Buffers one reader of a plan reuses from series to series.
#[derive(Default)]
pub(crate) struct ReadScratch {
    bytes: Vec<u8>,
}

/// Takes the samples of `samples[from..]` outside [mint, maxt] out, keeping the others'
/// order; the samples before `from` are left alone.
fn retain_within(samples: &mut Vec<Sample>, from: usize, mint: i64, maxt: i64) {
    let inside = |s: &Sample| s.t >= mint && s.t <= maxt;
    let Some(first_out) = samples[from..].iter().position(|s| !inside(s)) else {
        return;
    };
    let mut kept = from + first_out;
    for i in kept + 1..samples.len() {
        let s = samples[i];
        if inside(&s) {
            samples[kept] = s;
            kept += 1;
        }
    }
    samples.truncate(kept);
}

/// Puts a series' histogram samples, gathered from its sources in source order, in time order
/// with exact-timestamp duplicates dropped (the earlier source wins, as for floats), and drops
/// any at the time of a float sample, so the two kinds never share a timestamp.
pub(crate) fn settle_histograms(samples: &[Sample], histograms: &mut Vec<HistogramSample>) {
    if !histograms.windows(2).all(|w| w[0].t < w[1].t) {
        // Stable: of two at one time, the earlier source's comes first and is kept.
        histograms.sort_by_key(|x| x.t);
        histograms.dedup_by_key(|x| x.t);
    }
    if samples.is_empty() {
        return;
    }
    let mut i = 0;
    histograms.retain(|h| {
        while i < samples.len() && samples[i].t < h.t {
            i += 1;
        }
        !(i < samples.len() && samples[i].t == h.t)
    });
}

/// [`retain_within`] for histogram samples.
fn histograms_within(h: &mut Vec<HistogramSample>, from: usize, mint: i64, maxt: i64) {
    let mut k = from;
    for i in from..h.len() {
        if h[i].t >= mint && h[i].t <= maxt {
            h.swap(k, i);
            k += 1;
        }
    }
    h.truncate(k);
}

/// The ids `ix` selects for any of the matcher sets, sorted and unique.
fn union_ids<I: IndexReader>(ix: &I, groups: &[&[Matcher]]) -> Vec<I::Id>
where
    I::Id: Ord,
{
    let mut ids = Vec::new();
    for g in groups {
        ids.extend(select_ids(ix, g));
    }
    if groups.len() > 1 {
        ids.sort_unstable();
        ids.dedup();
    }
    ids
}

/// The series of `block` matching any of `groups` that have a chunk overlapping [mint, maxt].
fn block_entries<'a>(
    block: &'a Block,
    groups: &[&[Matcher]],
    mint: i64,
    maxt: i64,
    order: usize,
) -> Result<Vec<Entry<'a>>, StorageError> {
    let mut out = Vec::new();
    for id in union_ids(&BlockIndex(block), groups) {
        let (labels, mut chunks) = block.series(id)?;
        chunks.retain(|c| c.mint <= maxt && c.maxt >= mint);
        if !chunks.is_empty() {
            out.push(Entry {
                labels,
                order,
                source: Source::Block(block, chunks),
            });
        }
    }
    Ok(out)
}

impl Querier {
    /// Series matching every matcher with their samples in [mint, maxt] (both inclusive), sorted
    /// by labels. Only the head and the blocks overlapping the range are read.
    pub fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let mut out = Vec::new();
        self.select_each(&[matchers], mint, maxt, &mut |s| {
            match s {
                Selected::Series(s) => out.push(s),
                Selected::Restart => out.clear(),
            }
            Ok::<(), StorageError>(())
        })?;
        Ok(out)
    }

    /// Hands `f` the series matching every matcher of any of `groups` (a series matched by
    /// several is handed once), in label order, one at a time: what [`Querier::select`]
    /// returns, without holding more than one series' samples. Only the labels and chunk
    /// references of the matching series are gathered first; each series' samples are read
    /// (block chunks decoded, head series under their lock) when its turn comes, and dropped by
    /// `f`. A block found corrupt on the way is handled as [`Querier::select`] handles it; if
    /// series were handed over already, `f` is told to forget them and the selection restarts
    /// without the block. An error from `f` stops the selection.
    pub fn select_each<E: From<StorageError>>(
        &self,
        groups: &[&[Matcher]],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Selected) -> Result<(), E>,
    ) -> Result<(), E> {
        let plan = self.plan(groups, mint, maxt)?;
        self.select_planned(plan, groups, mint, maxt, f)
    }

    /// [`Querier::select_each`] from `plan`, the selection already gathered (by
    /// [`Querier::plan`] with the same arguments).
    pub(crate) fn select_planned<'q, E: From<StorageError>>(
        &'q self,
        mut plan: Plan<'q>,
        groups: &[&[Matcher]],
        mint: i64,
        maxt: i64,
        f: &mut dyn FnMut(Selected) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut handed = false;
        loop {
            if self.read_plan(plan, mint, maxt, &mut handed, f)? {
                return Ok(());
            }
            if handed {
                handed = false;
                f(Selected::Restart)?;
            }
            plan = self.plan(groups, mint, maxt)?;
        }
    }

    /// The matching series of every source, in label order, before any sample is read.
    pub(crate) fn plan(
        &self,
        groups: &[&[Matcher]],
        mint: i64,
        maxt: i64,
    ) -> Result<Plan<'_>, StorageError> {
        let entries = self.entries(groups, mint, maxt)?;
        let mut starts = Vec::with_capacity(entries.len() + 1);
        for (i, e) in entries.iter().enumerate() {
            if i == 0 || entries[i - 1].labels != e.labels {
                starts.push(i);
            }
        }
        starts.push(entries.len());
        Ok(Plan { entries, starts })
    }

    /// The matching series of every source, sorted by labels and then source order.
    fn entries(
        &self,
        groups: &[&[Matcher]],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Entry<'_>>, StorageError> {
        let mut entries = Vec::new();
        for (order, b) in self.blocks_in(mint, maxt).enumerate() {
            match block_entries(b, groups, mint, maxt, order) {
                Ok(v) => entries.extend(v),
                Err(e) => self.skip_if_corrupt(b, e)?,
            }
        }
        let head_order = self.catalog.blocks.len();
        for sref in union_ids(&*self.head, groups) {
            if let Some(series) = self.head.get_by_ref(sref) {
                entries.push(Entry {
                    labels: series.labels(),
                    order: head_order,
                    source: Source::Head(series),
                });
            }
        }
        // Stable: within one series, sources stay in time order.
        entries.sort_by(|a, b| a.labels.cmp(&b.labels).then(a.order.cmp(&b.order)));
        Ok(entries)
    }

    /// Reads and hands over the series of `plan` one at a time; false when a block was found
    /// corrupt on the way (it is then left out of this view).
    fn read_plan<E: From<StorageError>>(
        &self,
        mut plan: Plan<'_>,
        mint: i64,
        maxt: i64,
        handed: &mut bool,
        f: &mut dyn FnMut(Selected) -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut scratch = ReadScratch::default();
        for w in plan.starts.windows(2) {
            let run = &mut plan.entries[w[0]..w[1]];
            let Some(first) = run.first_mut() else {
                continue;
            };
            let labels = std::mem::replace(&mut first.labels, Labels::empty());
            let mut samples = Vec::new();
            let mut histograms = Vec::new();
            if let Err(u) = self.read_run(
                run,
                &labels,
                mint,
                maxt,
                &mut scratch,
                &mut samples,
                &mut histograms,
            ) {
                self.left_out(u)?;
                return Ok(false);
            }
            if samples.is_empty() && histograms.is_empty() {
                continue;
            }
            *handed = true;
            f(Selected::Series(SeriesSamples {
                labels,
                samples,
                histograms,
            }))?;
        }
        Ok(true)
    }

    /// Reads series `i` of `plan` into `samples` and `histograms` (both emptied first) as
    /// [`Querier::select_each`] would hand it over, possibly empty; any thread may read any
    /// series of one plan. A block that fails is returned, for [`Querier::left_out`] to judge.
    // The two out-buffers are the caller's, kept from series to series: one argument each.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read_planned<'q>(
        &self,
        plan: &Plan<'q>,
        i: usize,
        mint: i64,
        maxt: i64,
        scratch: &mut ReadScratch,
        samples: &mut Vec<Sample>,
        histograms: &mut Vec<HistogramSample>,
    ) -> Result<(), Unread<'q>> {
        samples.clear();
        histograms.clear();
        let run = &plan.entries[plan.starts[i]..plan.starts[i + 1]];
        self.read_run(
            run,
            &run[0].labels,
            mint,
            maxt,
            scratch,
            samples,
            histograms,
        )
    }

    /// Appends the samples of one series, `run` its entries (one per source, in time order),
    /// to `samples` and its histogram samples to `histograms`: merged, duplicates dropped
    /// (a float and a histogram at one time: the float is kept), deleted samples left out.
    #[allow(clippy::too_many_arguments)]
    fn read_run<'q>(
        &self,
        run: &[Entry<'q>],
        labels: &Labels,
        mint: i64,
        maxt: i64,
        scratch: &mut ReadScratch,
        samples: &mut Vec<Sample>,
        histograms: &mut Vec<HistogramSample>,
    ) -> Result<(), Unread<'q>> {
        // Room for the block chunks' samples at once (a count is at most what one chunk may
        // hold, whatever its metadata says), rather than growing chunk by chunk. The counts
        // are the index's word, not yet checked against the chunks: a damaged index could
        // list many chunks each claiming the most, so no more than RESERVE_MOST is taken on
        // that word (a longer series grows as its chunks decode).
        let expected: usize = run
            .iter()
            .map(|e| match &e.source {
                Source::Block(_, chunks) => chunks
                    .iter()
                    .map(|c| (c.num_samples as usize).min(MAX_SAMPLES))
                    .sum(),
                Source::Head(_) => 0,
            })
            .sum::<usize>()
            .min(RESERVE_MOST);
        samples.reserve(expected);
        for e in run {
            match &e.source {
                Source::Block(b, chunks) => {
                    for c in chunks {
                        // Decoded in place, then the samples outside [mint, maxt] (a chunk
                        // at either end of the range) taken out, keeping the order.
                        let from = samples.len();
                        let hfrom = histograms.len();
                        if let Err(error) =
                            read_samples(b, c, &mut scratch.bytes, samples, histograms)
                        {
                            return Err(Unread {
                                block: Some(b),
                                error,
                            });
                        }
                        retain_within(samples, from, mint, maxt);
                        if histograms.len() > hfrom {
                            histograms_within(histograms, hfrom, mint, maxt);
                        }
                    }
                }
                // A head chunk failing its checksum is an error to the query: the head
                // cannot be left out like a block, and its samples are still in the WAL.
                Source::Head(series) => {
                    let st = series.lock();
                    st.samples_in(mint, maxt, samples)
                        .map_err(|error| Unread { block: None, error })?;
                    st.histograms_in(mint, maxt, histograms)
                        .map_err(|error| Unread { block: None, error })?;
                }
            }
        }
        if !samples.windows(2).all(|w| w[0].t < w[1].t) {
            samples.sort_by_key(|x| x.t);
            samples.dedup_by_key(|x| x.t);
        }
        if !histograms.is_empty() {
            settle_histograms(samples, histograms);
        }
        // One check when nothing is deleted; otherwise one lookup per series.
        if !self.tombstones.is_empty() {
            self.tombstones.filter(labels, samples);
            self.tombstones.filter_histograms(labels, histograms);
        }
        Ok(())
    }

    /// What a failed read of a planned selection means: a damaged block is left out of this
    /// view from now on (quarantined, with a warning for the answer), after which the
    /// selection is to be planned again; any other error is returned.
    pub(crate) fn left_out(&self, u: Unread<'_>) -> Result<(), StorageError> {
        match u.block {
            Some(b) => self.skip_if_corrupt(b, u.error),
            None => Err(u.error),
        }
    }

    /// A block read failed with `e`: when `e` says the block is damaged, the block is left out
    /// of this view from now on, quarantined (live views), and a warning is kept for the answer;
    /// any other error is returned.
    fn skip_if_corrupt(&self, b: &Block, e: StorageError) -> Result<(), StorageError> {
        if corrupt_block_path(&e).is_none() {
            return Err(e);
        }
        let m = b.meta();
        let mut skipped = lock(&self.skipped);
        if skipped.contains_key(&m.id) {
            return Ok(());
        }
        let mut text = format!(
            "block {} ({} to {}) is corrupt and was left out of this answer",
            m.id,
            format_rfc3339(m.mint),
            format_rfc3339(m.maxt)
        );
        match &self.quarantine {
            Some(q) => {
                // False when another reader got there first; that one logged it.
                q.quarantine(b, &e.to_string());
                text.push_str("; it is quarantined (the agent's log says why)");
            }
            None => {
                warn!(block = %m.path.display(), error = %e, "corrupt block left out of a read-only query");
            }
        }
        skipped.insert(m.id.clone(), text);
        Ok(())
    }

    /// Warnings for the answer: the blocks this view left out because they are corrupt. The
    /// texts name blocks by id and time range, never by file.
    pub fn warnings(&self) -> Vec<String> {
        lock(&self.skipped).values().cloned().collect()
    }

    /// The deleted intervals this view hides.
    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// The same view without the head: only what the blocks hold.
    pub fn without_head(&self) -> Querier {
        Querier {
            catalog: self.catalog.clone(),
            head: Arc::new(Head::new()),
            tombstones: self.tombstones.clone(),
            reader: self.reader.clone(),
            quarantine: self.quarantine.clone(),
            skipped: Default::default(),
        }
    }

    /// True when series `labels` keeps a sample in [mint, maxt] outside its deleted intervals.
    /// Reads the series' samples: only asked for series that have tombstones.
    fn survives(&self, labels: &Labels, mint: i64, maxt: i64) -> Result<bool, StorageError> {
        if self.tombstones.get(labels).is_none() {
            return Ok(true);
        }
        let exact: Vec<Matcher> = labels.iter().map(|(n, v)| Matcher::equal(n, v)).collect();
        Ok(self
            .select(&exact, mint, maxt)?
            .iter()
            .any(|s| &s.labels == labels))
    }

    /// True when some series matching `m` has a sample left in [mint, maxt]; stops at the
    /// first series without tombstones, so it costs little unless most matches were deleted.
    fn any_survivor(&self, m: &Matcher, mint: i64, maxt: i64) -> Result<bool, StorageError> {
        for l in self.head.series_labels(std::slice::from_ref(m), mint, maxt) {
            if self.survives(&l, mint, maxt)? {
                return Ok(true);
            }
        }
        for b in self.blocks_in(mint, maxt) {
            for id in select_ids(&BlockIndex(b), std::slice::from_ref(m)) {
                let (labels, chunks) = b.series(id)?;
                if chunks.iter().any(|c| c.mint <= maxt && c.maxt >= mint)
                    && self.survives(&labels, mint, maxt)?
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Like [`Querier::select`] for one series' samples only, as a flat list.
    pub fn samples(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Sample>, StorageError> {
        Ok(self
            .select(matchers, mint, maxt)?
            .into_iter()
            .flat_map(|s| s.samples)
            .collect())
    }

    /// Label sets of the series matching `matchers` with data in [mint, maxt], sorted, unique.
    pub fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        let mut out = Vec::new();
        for b in self.blocks_in(mint, maxt) {
            for id in select_ids(&BlockIndex(b), matchers) {
                let (labels, chunks) = b.series(id)?;
                if chunks.iter().any(|c| c.mint <= maxt && c.maxt >= mint) {
                    out.push(labels);
                }
            }
        }
        out.extend(self.head.series_labels(matchers, mint, maxt));
        out.sort_unstable();
        out.dedup();
        if !self.tombstones.is_empty() {
            let mut kept = Vec::with_capacity(out.len());
            for l in out {
                if self.survives(&l, mint, maxt)? {
                    kept.push(l);
                }
            }
            out = kept;
        }
        Ok(out)
    }

    /// Label names of the series matching `matchers` with data in [mint, maxt], sorted.
    pub fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.collect_strings(
            matchers,
            mint,
            maxt,
            |b| b.label_names(),
            |l, out| out.extend(l.iter().map(|(n, _)| n.to_string())),
            |n| Matcher::new(MatchOp::NotEqual, n, "").ok(),
        )
    }

    /// Values of label `name` among the series matching `matchers` with data in [mint, maxt].
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.collect_strings(
            matchers,
            mint,
            maxt,
            |b| b.label_values(name),
            |l, out| out.extend(l.get(name).map(str::to_string)),
            |v| Some(Matcher::equal(name, v)),
        )
    }

    /// Strings drawn from the matching series, sorted and unique. Without matchers, blocks
    /// answer from their symbol index (`from_block`) instead of visiting every series; a string
    /// that deleted series also carry is kept only if a series selected by `probe(string)`
    /// survives its tombstones.
    fn collect_strings(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        from_block: impl Fn(&Block) -> Vec<&str>,
        from_labels: impl Fn(&Labels, &mut Vec<String>),
        probe: impl Fn(&str) -> Option<Matcher>,
    ) -> Result<Vec<String>, StorageError> {
        let mut out: Vec<String> = Vec::new();
        if matchers.is_empty() {
            for b in self.blocks_in(mint, maxt) {
                out.extend(from_block(b).into_iter().map(str::to_string));
            }
            for l in self.head.series_labels(&[], mint, maxt) {
                from_labels(&l, &mut out);
            }
            if !self.tombstones.is_empty() {
                let mut doubtful = Vec::new();
                for (l, _) in self.tombstones.iter() {
                    from_labels(l, &mut doubtful);
                }
                doubtful.sort_unstable();
                doubtful.dedup();
                out.sort_unstable();
                out.dedup();
                let mut kept = Vec::with_capacity(out.len());
                for s in out {
                    let gone = match (doubtful.binary_search(&s).is_ok(), probe(&s)) {
                        (true, Some(m)) => !self.any_survivor(&m, mint, maxt)?,
                        _ => false,
                    };
                    if !gone {
                        kept.push(s);
                    }
                }
                out = kept;
            }
        } else {
            for l in self.series(matchers, mint, maxt)? {
                from_labels(&l, &mut out);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// The blocks of this view overlapping [mint, maxt], without those found corrupt.
    pub(crate) fn blocks_in(&self, mint: i64, maxt: i64) -> impl Iterator<Item = &Arc<Block>> {
        let skipped: Vec<BlockId> = lock(&self.skipped).keys().cloned().collect();
        self.catalog
            .blocks
            .iter()
            .filter(move |b| overlaps(b, mint, maxt) && !skipped.contains(&b.meta().id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Db, Options, write_blocks};

    #[test]
    fn retain_within_takes_out_only_the_samples_outside_the_range_after_from() {
        let at =
            |ts: &[i64]| -> Vec<Sample> { ts.iter().map(|&t| Sample::new(t, t as f64)).collect() };
        let times = |v: &[Sample]| -> Vec<i64> { v.iter().map(|s| s.t).collect() };
        // (samples, from, mint, maxt, what is left)
        type Case = (&'static [i64], usize, i64, i64, &'static [i64]);
        let cases: [Case; 9] = [
            (&[], 0, 0, 10, &[]),
            (&[5], 0, 0, 10, &[5]),
            (&[5], 0, 6, 10, &[]),
            (&[1, 2, 3, 4], 0, 1, 4, &[1, 2, 3, 4]),
            (&[1, 2, 3, 4], 0, 2, 3, &[2, 3]),
            (&[1, 2, 3, 4], 0, 5, 9, &[]),
            // The samples before `from` stay whatever their times.
            (&[-7, 99, 1, 2, 3], 2, 2, 2, &[-7, 99, 2]),
            // Out of order (a corrupt chunk): each sample judged on its own, order kept.
            (&[9, 1, 8, 2, 7], 0, 2, 8, &[8, 2, 7]),
            (
                &[i64::MIN, 0, i64::MAX],
                0,
                i64::MIN,
                i64::MAX,
                &[i64::MIN, 0, i64::MAX],
            ),
        ];
        for (input, from, mint, maxt, want) in cases {
            let mut v = at(input);
            retain_within(&mut v, from, mint, maxt);
            assert_eq!(times(&v), want, "{input:?} from {from} in [{mint}, {maxt}]");
            // What filtering a copy gives.
            let mut filtered = at(&input[..from]);
            filtered.extend(
                at(&input[from..])
                    .into_iter()
                    .filter(|s| s.t >= mint && s.t <= maxt),
            );
            assert_eq!(times(&v), times(&filtered));
        }
    }

    fn series(name: &str, pts: &[(i64, f64)]) -> (Labels, Vec<Sample>) {
        (
            Labels::new([("__name__", name)]).unwrap(),
            pts.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        )
    }

    fn streamed(q: &Querier, groups: &[&[Matcher]], mint: i64, maxt: i64) -> Vec<SeriesSamples> {
        let mut out = Vec::new();
        q.select_each(groups, mint, maxt, &mut |s| {
            match s {
                Selected::Series(s) => out.push(s),
                Selected::Restart => panic!("nothing here is corrupt"),
            }
            Ok::<(), StorageError>(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_streamed_selection_merges_sources_in_label_order_and_drops_exact_time_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let day = 86_400_000;
        // Two overlapping blocks, then the head: `a` is in all three, with one timestamp twice.
        write_blocks(
            dir.path(),
            vec![
                series("a", &[(1_000, 1.0), (5_000, 2.0)]),
                series("c", &[(3_000, 0.5)]),
            ],
            day,
            |_| {},
        )
        .unwrap();
        write_blocks(
            dir.path(),
            vec![
                series("a", &[(5_000, 9.0), (7_000, 3.0)]),
                series("b", &[(3_000, 0.25)]),
                series("e", &[(9_000, 4.0)]),
            ],
            day,
            |_| {},
        )
        .unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert_eq!(db.catalog().blocks.len(), 2);
        let mut app = db.appender();
        let now = day;
        app.append(&Labels::new([("__name__", "a")]).unwrap(), now, 5.0)
            .unwrap();
        app.append(&Labels::new([("__name__", "d")]).unwrap(), now, 6.0)
            .unwrap();
        app.commit().unwrap();
        let q = db.querier();
        let a = [Matcher::equal("__name__", "a")];
        let others = [Matcher::new(MatchOp::Regex, "__name__", "b|c|d|a").unwrap()];
        // `a` is matched by both sets and comes once; `e` by neither.
        let got = streamed(&q, &[&a, &others], 0, now);
        let names: Vec<&str> = got
            .iter()
            .map(|s| s.labels.get("__name__").unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        let pts = |s: &SeriesSamples| -> Vec<(i64, f64)> {
            s.samples.iter().map(|x| (x.t, x.v)).collect()
        };
        // The earlier block's sample wins at 5s.
        assert_eq!(
            pts(&got[0]),
            [(1_000, 1.0), (5_000, 2.0), (7_000, 3.0), (now, 5.0)]
        );
        assert_eq!(pts(&got[3]), [(now, 6.0)]);
        // The range cuts every source; a series left without samples is not handed over.
        let got = streamed(&q, &[&others], 4_000, 8_000);
        let names: Vec<&str> = got
            .iter()
            .map(|s| s.labels.get("__name__").unwrap())
            .collect();
        assert_eq!(names, ["a"]);
        assert_eq!(pts(&got[0]), [(5_000, 2.0), (7_000, 3.0)]);
        // `select` is the same selection, collected.
        assert_eq!(
            q.select(&others, 0, now).unwrap(),
            streamed(&q, &[&others], 0, now)
        );
        // Nothing matched, or an empty range: nothing handed over.
        assert!(streamed(&q, &[&[Matcher::equal("__name__", "zz")]], 0, now).is_empty());
        assert!(streamed(&q, &[&others], 20_000, 30_000).is_empty());
    }
}
