//! Backfill: writing whole series straight into blocks, bypassing the WAL and the head.

use std::path::Path;

use super::block_chunks::series_chunks;
use super::compact::window;
use super::db::check_histogram;
use super::head::SeriesSamples;
use super::sstable::{BlockMeta, BlockWriter};
use super::{StorageError, lock_data_dir};
use crate::model::{Labels, Sample, is_storable_time};

/// Writes `series` (each time-ordered with unique timestamps) into blocks under `dir`, one block
/// per aligned `block_duration` window that holds data. Takes the data directory's lock, so it
/// refuses to run beside an agent. All or nothing: a sample outside the storable range
/// ([`crate::model::MIN_TIME`] to [`crate::model::MAX_TIME`]) refuses the whole import before
/// anything is written, and if any block fails, those already written by this call are deleted.
pub fn write_blocks(
    dir: &Path,
    series: Vec<(Labels, Vec<Sample>)>,
    block_duration: i64,
    progress: impl FnMut(u64),
) -> Result<Vec<BlockMeta>, StorageError> {
    let series = series
        .into_iter()
        .map(|(labels, samples)| SeriesSamples {
            labels,
            samples,
            histograms: Vec::new(),
        })
        .collect();
    write_series_blocks(dir, series, block_duration, progress)
}

/// [`write_blocks`] of series holding float and histogram samples (each kind time-ordered
/// with unique timestamps, a float and a histogram never at one time). A histogram that
/// breaks what appends check is refused like a sample out of range.
pub fn write_series_blocks(
    dir: &Path,
    mut series: Vec<SeriesSamples>,
    block_duration: i64,
    mut progress: impl FnMut(u64),
) -> Result<Vec<BlockMeta>, StorageError> {
    for s in &series {
        let bad = s
            .samples
            .iter()
            .map(|x| x.t)
            .chain(s.histograms.iter().map(|x| x.t))
            .find(|t| !is_storable_time(*t));
        if let Some(t) = bad {
            return Err(StorageError::OutOfBounds {
                labels: s.labels.clone(),
                t,
            });
        }
        for h in &s.histograms {
            check_histogram(&h.h)?;
        }
    }
    let _lock = lock_data_dir(dir)?;
    let blocks_dir = dir.join("blocks");
    std::fs::create_dir_all(&blocks_dir).map_err(|source| StorageError::Io {
        path: blocks_dir.clone(),
        source,
    })?;
    series.retain(|s| !s.samples.is_empty() || !s.histograms.is_empty());
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let bd = block_duration.max(1);
    let mut windows: Vec<i64> = series
        .iter()
        .flat_map(|s| {
            s.samples
                .iter()
                .map(|x| x.t)
                .chain(s.histograms.iter().map(|x| x.t))
                .map(|t| window(t, bd).0)
        })
        .collect();
    windows.sort_unstable();
    windows.dedup();

    let mut written: Vec<BlockMeta> = Vec::new();
    let result = (|| {
        let mut done = 0u64;
        for &start in &windows {
            let end = start.saturating_add(bd);
            let mut w = BlockWriter::new(&blocks_dir, 1, Vec::new())?;
            for s in &series {
                let lo = s.samples.partition_point(|x| x.t < start);
                let hi = s.samples.partition_point(|x| x.t < end);
                let hlo = s.histograms.partition_point(|x| x.t < start);
                let hhi = s.histograms.partition_point(|x| x.t < end);
                if lo < hi || hlo < hhi {
                    w.add_series(
                        &s.labels,
                        &series_chunks(&s.samples[lo..hi], &s.histograms[hlo..hhi]),
                    )?;
                    done += (hi - lo + hhi - hlo) as u64;
                }
            }
            written.push(w.finish()?);
            progress(done);
        }
        Ok(())
    })();
    if let Err(e) = result {
        for m in &written {
            let _ = std::fs::remove_file(&m.path);
        }
        return Err(e);
    }
    Ok(written)
}
