//! Deletion: which intervals a `delete_series` call tombstones, which blocks hold deleted
//! samples, rewriting such a block without them, and which tombstones are still needed after.
//!
//! Each step reads one snapshot (a querier, a block, the head) and returns what to do; `Db`
//! holds the locks, publishes blocks and stores the tombstones file.

use std::path::Path;

use super::StorageError;
use super::block_chunks::{read_samples, series_chunks};
use super::head::Head;
use super::index::select_ids;
use super::querier::{BlockIndex, Querier};
use super::sstable::{Block, BlockMeta, BlockWriter, ChunkData, ChunkMeta};
use super::tombstones::{Interval, Tombstones, covered};
use crate::model::{HistogramSample, Labels, Matcher, Sample};

/// What one `delete_series` call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeleteStats {
    /// Series that had data in the interval and got a tombstone for it.
    pub series: u64,
}

/// What one `clean_tombstones` call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    /// Blocks rewritten without their deleted samples.
    pub blocks_rewritten: u64,
    /// Blocks removed because every sample they held was deleted.
    pub blocks_removed: u64,
    /// Series whose tombstones were dropped: no stored sample is left for them to hide.
    pub series_dropped: u64,
}

/// Widens `range` to include [lo, hi].
fn extend(range: &mut Option<(i64, i64)>, lo: i64, hi: i64) {
    *range = Some(match *range {
        None => (lo, hi),
        Some((a, b)) => (a.min(lo), b.max(hi)),
    });
}

/// Adds to `ts` the tombstones that delete the samples in [mint, maxt] of every series of `q`
/// matching any of `selectors`. Each series' interval is clamped to the time its stored data
/// spans, as Prometheus does: samples appended later (always newer than the series' data, or
/// than the head's lower bound) are never hidden by an earlier deletion. Chunk metadata gives
/// the span, so nothing is decoded.
pub(crate) fn add_deletions(
    q: &Querier,
    selectors: &[Vec<Matcher>],
    mint: i64,
    maxt: i64,
    ts: &mut Tombstones,
) -> Result<DeleteStats, StorageError> {
    let mut spans: std::collections::BTreeMap<Labels, Option<(i64, i64)>> = Default::default();
    if mint > maxt {
        return Ok(DeleteStats::default());
    }
    for sel in selectors {
        for b in q.blocks_in(mint, maxt) {
            for id in select_ids(&BlockIndex(b), sel) {
                let (labels, chunks) = b.series(id)?;
                let span = spans.entry(labels).or_default();
                for c in chunks.iter().filter(|c| c.mint <= maxt && c.maxt >= mint) {
                    extend(span, c.mint.max(mint), c.maxt.min(maxt));
                }
            }
        }
        for sref in select_ids(&*q.head, sel) {
            let Some(series) = q.head.get_by_ref(sref) else {
                continue;
            };
            let (lo, hi) = {
                let st = series.lock();
                match st.min_time() {
                    Some(lo) => (lo, st.max_t),
                    None => continue,
                }
            };
            if lo <= maxt && hi >= mint {
                extend(
                    spans.entry(series.labels()).or_default(),
                    lo.max(mint),
                    hi.min(maxt),
                );
            }
        }
    }
    let mut stats = DeleteStats::default();
    for (labels, span) in spans {
        if let Some((lo, hi)) = span {
            ts.add(&labels, Interval { mint: lo, maxt: hi });
            stats.series += 1;
        }
    }
    Ok(stats)
}

/// Decodes `chunks` of `block` into `out` and `hout` (histogram samples).
fn read_chunks(
    block: &Block,
    chunks: &[ChunkMeta],
    out: &mut Vec<Sample>,
    hout: &mut Vec<HistogramSample>,
) -> Result<(), StorageError> {
    let mut buf = Vec::new();
    for c in chunks {
        read_samples(block, c, &mut buf, out, hout)?;
    }
    Ok(())
}

/// The block's id of the series with exactly these labels, if it holds one.
fn find_series(block: &Block, labels: &Labels) -> Result<Option<Vec<ChunkMeta>>, StorageError> {
    let exact: Vec<Matcher> = labels.iter().map(|(n, v)| Matcher::equal(n, v)).collect();
    for id in select_ids(&BlockIndex(block), &exact) {
        let (l, chunks) = block.series(id)?;
        if &l == labels {
            return Ok(Some(chunks));
        }
    }
    Ok(None)
}

/// True when `block` holds a sample that `ts` deletes. Only the chunks overlapping a deleted
/// interval of a tombstoned series are decoded.
pub(crate) fn holds_deleted(block: &Block, ts: &Tombstones) -> Result<bool, StorageError> {
    let (bmin, bmax) = (block.meta().mint, block.meta().maxt);
    let mut samples = Vec::new();
    let mut histograms = Vec::new();
    for (labels, intervals) in ts.iter() {
        if !intervals.iter().any(|iv| iv.overlaps(bmin, bmax)) {
            continue;
        }
        let Some(chunks) = find_series(block, labels)? else {
            continue;
        };
        let hit: Vec<ChunkMeta> = chunks
            .into_iter()
            .filter(|c| intervals.iter().any(|iv| iv.overlaps(c.mint, c.maxt)))
            .collect();
        samples.clear();
        histograms.clear();
        read_chunks(block, &hit, &mut samples, &mut histograms)?;
        if samples.iter().any(|s| covered(intervals, s.t))
            || histograms.iter().any(|s| covered(intervals, s.t))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes a copy of `block` without the samples `ts` deletes, at the same level, listing the
/// old block as its source (so an open after a crash deletes the old one). Series without
/// tombstones keep their chunks byte for byte. `None` when nothing is left to write.
pub(crate) fn rewrite_block(
    block: &Block,
    ts: &Tombstones,
    blocks_dir: &Path,
) -> Result<Option<BlockMeta>, StorageError> {
    let meta = block.meta();
    let mut w = BlockWriter::new(blocks_dir, meta.level, vec![meta.id.clone()])?;
    let mut samples = Vec::new();
    let mut histograms = Vec::new();
    for id in 0..block.num_series() {
        let (labels, chunks) = block.series(id)?;
        match ts.get(&labels) {
            None => {
                let mut copied = Vec::with_capacity(chunks.len());
                for c in &chunks {
                    copied.push(ChunkData {
                        mint: c.mint,
                        maxt: c.maxt,
                        num_samples: c.num_samples,
                        data: block.read_chunk(c)?,
                    });
                }
                w.add_series(&labels, &copied)?;
            }
            Some(intervals) => {
                samples.clear();
                histograms.clear();
                read_chunks(block, &chunks, &mut samples, &mut histograms)?;
                samples.retain(|s| !covered(intervals, s.t));
                histograms.retain(|s| !covered(intervals, s.t));
                if !samples.is_empty() || !histograms.is_empty() {
                    w.add_series(&labels, &series_chunks(&samples, &histograms))?;
                }
            }
        }
    }
    // Dropping an unfinished writer removes its temp file.
    if w.num_series() == 0 {
        return Ok(None);
    }
    Ok(Some(w.finish()?))
}

/// The tombstones still needed once every block is clean: those hiding samples the head
/// holds. The head's samples stay in memory and in the WAL until a flush writes them out
/// (without the deleted ones), so their tombstones must outlive a clean.
pub(crate) fn still_needed(ts: &Tombstones, head: &Head) -> Tombstones {
    let mut out = ts.clone();
    out.retain(|labels, iv| {
        head.get(labels).is_some_and(|s| {
            let st = s.lock();
            st.min_time().is_some_and(|lo| iv.overlaps(lo, st.max_t))
        })
    });
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::model::MatchOp;
    use crate::storage::{Db, Options, tombstones};

    const BD: i64 = 10_000;
    const T0: i64 = 1_000_003;

    fn opts() -> Options {
        Options {
            block_duration: BD,
            retention_time: 0,
            ..Options::default()
        }
    }

    /// Four series over two names and two values of `k`.
    fn series(i: usize) -> Labels {
        let name = ["a", "b"][i % 2];
        let k = ["x", "y"][i / 2 % 2];
        Labels::new([("__name__", name), ("k", k)]).unwrap()
    }

    fn selector(n: u8) -> Vec<Matcher> {
        match n % 4 {
            0 => vec![Matcher::equal("__name__", "a")],
            1 => vec![Matcher::equal("k", "x")],
            2 => vec![Matcher::equal("__name__", "b"), Matcher::equal("k", "y")],
            _ => vec![Matcher::new(MatchOp::Regex, "__name__", "a|b").unwrap()],
        }
    }

    fn every() -> Vec<Matcher> {
        vec![Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap()]
    }

    type Model = BTreeMap<Labels, Vec<(i64, f64)>>;

    fn stored(db: &Db) -> Model {
        db.querier()
            .select(&every(), i64::MIN, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|s| (s.labels, s.samples.iter().map(|x| (x.t, x.v)).collect()))
            .collect()
    }

    #[test]
    fn a_deletion_is_clamped_to_the_data_so_later_samples_show() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), opts()).unwrap();
        let l = series(0);
        let mut app = db.appender();
        for (t, v) in [(T0, 1.5), (T0 + 3_217, -2.25), (T0 + 4_001, 7.0)] {
            app.append(&l, t, v).unwrap();
        }
        app.commit().unwrap();
        let st = db.delete_series(&[selector(0)], T0 + 1, i64::MAX).unwrap();
        assert_eq!(st.series, 1);
        assert_eq!(
            db.tombstones().get(&l).unwrap(),
            &[Interval {
                mint: T0 + 1,
                maxt: T0 + 4_001
            }]
        );
        let mut app = db.appender();
        app.append(&l, T0 + 9_999, 4.5).unwrap();
        app.commit().unwrap();
        assert_eq!(
            stored(&db)[&l],
            vec![(T0, 1.5), (T0 + 9_999, 4.5)],
            "the sample appended after the deletion is not hidden"
        );
        // Nothing matched: nothing written.
        let none = db
            .delete_series(
                &[vec![Matcher::equal("__name__", "zzz")]],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(none.series, 0);
        assert_eq!(db.tombstones().num_series(), 1);
    }

    #[test]
    fn clean_keeps_the_tombstones_the_head_still_needs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), opts()).unwrap();
        let (a, b) = (series(0), series(1));
        // 1.8 windows: the first window flushes, the rest stays in the head.
        for r in 0..22i64 {
            let t = T0 + r * 857 + r % 3 * 101;
            let mut app = db.appender();
            app.append(&a, t, r as f64 * 0.75).unwrap();
            app.append(&b, t + 13, -(r as f64)).unwrap();
            app.commit().unwrap();
        }
        assert_eq!(db.flush().unwrap().len(), 1);
        let block_samples = db.catalog().blocks[0].meta().num_samples;
        // All of `a` (block and head), nothing of `b`.
        db.delete_series(&[selector(0)], i64::MIN, i64::MAX)
            .unwrap();
        let st = db.clean_tombstones().unwrap();
        assert_eq!((st.blocks_rewritten, st.blocks_removed), (1, 0));
        assert_eq!(st.series_dropped, 0, "a's head samples still need hiding");
        let blocks = db.catalog().blocks.clone();
        assert_eq!(blocks.len(), 1);
        assert!(blocks[0].meta().num_samples < block_samples);
        assert!(!holds_deleted(&blocks[0], &db.tombstones()).unwrap());
        assert!(tombstones::path(dir.path()).exists());
        assert!(!stored(&db).contains_key(&a));
        // The head's samples of `a` are gone after a flush of everything it holds; the next
        // clean drops the tombstone, and `a` stays gone.
        for r in 22..80i64 {
            let mut app = db.appender();
            app.append(&b, T0 + r * 857, r as f64).unwrap();
            app.commit().unwrap();
        }
        db.flush().unwrap();
        let st = db.clean_tombstones().unwrap();
        assert_eq!(st.series_dropped, 1);
        assert!(db.tombstones().is_empty());
        assert!(!tombstones::path(dir.path()).exists());
        assert!(!stored(&db).contains_key(&a));
        drop(db);
        let db = Db::open(dir.path(), opts()).unwrap();
        assert!(!stored(&db).contains_key(&a));
    }

    #[test]
    fn compacting_blocks_whose_every_sample_was_deleted_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), opts()).unwrap();
        let mut t = T0;
        for r in 0..40i64 {
            t += 1_000 + r * 37 % 600;
            let mut app = db.appender();
            for i in 0..4 {
                app.append(&series(i), t + i as i64, (r * 3 + i as i64) as f64 * 0.5)
                    .unwrap();
            }
            app.commit().unwrap();
        }
        let flushed = db.flush().unwrap();
        assert_eq!(flushed.len(), 4);
        db.delete_series(&[selector(3)], i64::MIN, i64::MAX)
            .unwrap();
        // The first two blocks fill a complete 30 s window: merging them leaves nothing, so
        // they are removed and no block is written; the other two wait for their window.
        assert_eq!(db.compact().unwrap(), None);
        let left: Vec<_> = db
            .catalog()
            .blocks
            .iter()
            .map(|b| b.meta().id.clone())
            .collect();
        assert_eq!(left, vec![flushed[2].id.clone(), flushed[3].id.clone()]);
        assert!(!flushed[0].path.exists() && !flushed[1].path.exists());
        assert!(stored(&db).is_empty());
        drop(db);
        let db = Db::open(dir.path(), opts()).unwrap();
        assert!(stored(&db).is_empty());
        assert_eq!(db.catalog().blocks.len(), 2);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Append { mask: u8, dt: i64, v: i32 },
        Delete { sel: u8, back: i64, len: i64 },
        Flush,
        Compact,
        Clean,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (1u8..16, 1i64..4_000, -900i32..900)
                .prop_map(|(mask, dt, v)| Op::Append { mask, dt, v }),
            3 => (0u8..4, 0i64..40_000, prop_oneof![0i64..15_000, Just(i64::MAX)])
                .prop_map(|(sel, back, len)| Op::Delete { sel, back, len }),
            1 => Just(Op::Flush),
            1 => Just(Op::Compact),
            1 => Just(Op::Clean),
            1 => Just(Op::Reopen),
        ]
    }

    /// Everything a reader can see must be the model: samples, series, label values.
    fn check(db: &Db, model: &Model) -> Result<(), TestCaseError> {
        let want: Model = model
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(l, v)| (l.clone(), v.clone()))
            .collect();
        prop_assert_eq!(&stored(db), &want);
        let q = db.querier();
        let series = q.series(&every(), i64::MIN, i64::MAX).unwrap();
        prop_assert_eq!(series, want.keys().cloned().collect::<Vec<_>>());
        for name in ["__name__", "k"] {
            let values: BTreeSet<String> = want
                .keys()
                .filter_map(|l| l.get(name).map(str::to_string))
                .collect();
            let got = q.label_values(name, &[], i64::MIN, i64::MAX).unwrap();
            prop_assert_eq!(got, values.into_iter().collect::<Vec<_>>());
        }
        let names = q.label_names(&[], i64::MIN, i64::MAX).unwrap();
        let want_names: Vec<String> = if want.is_empty() {
            Vec::new()
        } else {
            vec!["__name__".into(), "k".into()]
        };
        prop_assert_eq!(names, want_names);
        Ok(())
    }

    /// No sample the model lacks is in the blocks `pick` accepts: every block after a clean,
    /// and the blocks a flush or compaction writes.
    fn check_physical(
        db: &Db,
        model: &Model,
        pick: impl Fn(&BlockMeta) -> bool,
    ) -> Result<(), TestCaseError> {
        for b in db.catalog().blocks.iter().filter(|b| pick(b.meta())) {
            for id in 0..b.num_series() {
                let (labels, chunks) = b.series(id).unwrap();
                let mut samples = Vec::new();
                read_chunks(b, &chunks, &mut samples, &mut Vec::new()).unwrap();
                let have = model.get(&labels).cloned().unwrap_or_default();
                for s in samples {
                    prop_assert!(
                        have.contains(&(s.t, s.v)),
                        "{} at {} is still in block {}",
                        labels,
                        s.t,
                        b.meta().id
                    );
                }
            }
        }
        Ok(())
    }

    fn run(dir: &Path, ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut db = Db::open(dir, opts()).unwrap();
        let mut model = Model::new();
        let mut clock = T0;
        for op in ops {
            match op {
                Op::Append { mask, dt, v } => {
                    clock += dt;
                    let mut app = db.appender();
                    let mut n = 0;
                    for i in (0..4).filter(|i| mask & (1 << i) != 0) {
                        // Each series a little apart, so equal timestamps across series are
                        // not all there is.
                        let t = clock + i as i64 * 7;
                        let v = f64::from(v) / 4.0 + i as f64;
                        app.append(&series(i), t, v).unwrap();
                        model.entry(series(i)).or_default().push((t, v));
                        n += 1;
                    }
                    prop_assert_eq!(app.commit().unwrap().appended, n);
                }
                Op::Delete { sel, back, len } => {
                    let start = clock - back;
                    let end = start.saturating_add(len);
                    let m = selector(sel);
                    db.delete_series(std::slice::from_ref(&m), start, end)
                        .unwrap();
                    for (l, samples) in model.iter_mut() {
                        if m.iter().all(|m| m.matches_labels(l)) {
                            samples.retain(|&(t, _)| t < start || t > end);
                        }
                    }
                }
                Op::Flush => {
                    let new: Vec<_> = db.flush().unwrap().into_iter().map(|m| m.id).collect();
                    check_physical(&db, &model, |m| new.contains(&m.id))?;
                }
                Op::Compact => {
                    let mut new = Vec::new();
                    while let Some(m) = db.compact().unwrap() {
                        new.push(m.id);
                    }
                    check_physical(&db, &model, |m| new.contains(&m.id))?;
                }
                Op::Clean => {
                    db.clean_tombstones().unwrap();
                    check_physical(&db, &model, |_| true)?;
                    prop_assert_eq!(db.tombstones().is_empty(), !tombstones::path(dir).exists());
                }
                Op::Reopen => {
                    // Dropped without close, as a crash would leave it.
                    drop(db);
                    db = Db::open(dir, opts()).unwrap();
                }
            }
            check(&db, &model)?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn deletions_match_a_naive_model_across_flush_compaction_clean_and_reopen(
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            run(dir.path(), ops)?;
        }
    }
}
