//! Snapshots: a consistent, restorable copy of a data directory's blocks and head.

use std::path::{Path, PathBuf};

use super::sstable::Block;
use super::tombstones;
use super::{Querier, SeriesSamples, StorageError, fsutil, io_err, write_series_blocks};

/// What a snapshot wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Blocks hard-linked or copied as they are.
    pub blocks_copied: usize,
    /// Blocks written from the head's samples.
    pub head_blocks: usize,
    /// Head series written.
    pub head_series: usize,
    /// Head samples written (staleness markers included).
    pub head_samples: u64,
}

/// Writes everything `querier` sees (its blocks and its head) into the new data directory
/// `out`, which must not exist or be empty. Blocks are hard-linked when `out` is on the same
/// file system (they are immutable) and copied through their open handle otherwise, so a
/// block a concurrent compaction deleted is still copied whole. The head becomes blocks of
/// `block_duration`; `out` has no WAL, and an agent started on it serves the same data.
/// Deleted samples stay deleted: the head's are left out, and the tombstones that hide those
/// of the copied blocks are written to `out` before any block.
pub fn write_snapshot(
    querier: &Querier,
    out: &Path,
    block_duration: i64,
) -> Result<SnapshotStats, StorageError> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(io_err(out))?;
        if entries.next().is_some() {
            return Err(StorageError::Io {
                path: out.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "snapshot target is not empty",
                ),
            });
        }
    }
    let blocks_dir = out.join("blocks");
    std::fs::create_dir_all(&blocks_dir).map_err(io_err(&blocks_dir))?;
    let deleted = &querier.tombstones;
    tombstones::store(out, deleted)?;
    let mut stats = SnapshotStats::default();
    for block in &querier.catalog.blocks {
        copy_block(block, &blocks_dir)?;
        stats.blocks_copied += 1;
    }
    let mut series: Vec<SeriesSamples> = Vec::new();
    for s in querier.head.all_series() {
        let mut samples = Vec::new();
        let mut histograms = Vec::new();
        {
            let st = s.lock();
            st.samples_in(i64::MIN, i64::MAX, &mut samples)?;
            st.histograms_in(i64::MIN, i64::MAX, &mut histograms)?;
        }
        let labels = s.labels();
        deleted.filter(&labels, &mut samples);
        deleted.filter_histograms(&labels, &mut histograms);
        if !samples.is_empty() || !histograms.is_empty() {
            stats.head_samples += (samples.len() + histograms.len()) as u64;
            series.push(SeriesSamples {
                labels,
                samples,
                histograms,
            });
        }
    }
    stats.head_series = series.len();
    stats.head_blocks = write_series_blocks(out, series, block_duration, |_| {})?.len();
    fsutil::sync_dir(&blocks_dir)?;
    Ok(stats)
}

fn copy_block(block: &Block, blocks_dir: &Path) -> Result<(), StorageError> {
    let src = &block.meta().path;
    let name = src.file_name().map(PathBuf::from).unwrap_or_default();
    let dest = blocks_dir.join(name);
    if std::fs::hard_link(src, &dest).is_ok() {
        return Ok(());
    }
    block.copy_to(&dest).map_err(io_err(&dest))?;
    Ok(())
}
