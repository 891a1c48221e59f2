//! Backfill: writing whole series straight into blocks, bypassing the WAL and the head.

use std::path::Path;

use super::block_chunks::to_chunks;
use super::compact::window;
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
    mut series: Vec<(Labels, Vec<Sample>)>,
    block_duration: i64,
    mut progress: impl FnMut(u64),
) -> Result<Vec<BlockMeta>, StorageError> {
    if let Some((labels, s)) = series
        .iter()
        .find_map(|(l, s)| s.iter().find(|x| !is_storable_time(x.t)).map(|x| (l, x)))
    {
        return Err(StorageError::OutOfBounds {
            labels: labels.clone(),
            t: s.t,
        });
    }
    let _lock = lock_data_dir(dir)?;
    let blocks_dir = dir.join("blocks");
    std::fs::create_dir_all(&blocks_dir).map_err(|source| StorageError::Io {
        path: blocks_dir.clone(),
        source,
    })?;
    series.retain(|(_, s)| !s.is_empty());
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let bd = block_duration.max(1);
    let mut windows: Vec<i64> = series
        .iter()
        .flat_map(|(_, s)| s.iter().map(|x| window(x.t, bd).0))
        .collect();
    windows.sort_unstable();
    windows.dedup();

    let mut written: Vec<BlockMeta> = Vec::new();
    let result = (|| {
        let mut done = 0u64;
        for &start in &windows {
            let end = start.saturating_add(bd);
            let mut w = BlockWriter::new(&blocks_dir, 1, Vec::new())?;
            for (labels, samples) in &series {
                let lo = samples.partition_point(|s| s.t < start);
                let hi = samples.partition_point(|s| s.t < end);
                if lo < hi {
                    w.add_series(labels, &to_chunks(&samples[lo..hi]))?;
                    done += (hi - lo) as u64;
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
