//! Storage: the write-ahead log, the in-memory head, immutable SSTable blocks, the catalog that
//! routes queries to them, compaction and retention, and the tombstones of deleted series.
//!
//! `storage` owns every byte under the data directory. It may use `model` (and the leaf `sync`)
//! only; it must never call `scrape`, `query`, `api` or `cli`, and never acknowledge a sample
//! before its WAL record is written.

mod block_chunks;
mod catalog;
pub mod chunk;
pub mod compact;
mod db;
mod delete;
mod fsutil;
pub mod head;
mod import;
mod index;
mod quarantine;
mod querier;
mod snapshot;
pub mod sstable;
pub mod stats;
pub mod tombstones;
pub mod wal;

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::model::Labels;

pub use block_chunks::{BLOCK_CHUNK_SAMPLES, series_chunks, to_chunks, to_histogram_chunks};
pub use catalog::Catalog;
pub use db::{
    Appender, CommitStats, Db, DbCounters, MAX_AHEAD_MS, Options, ReadOnlyDb, SeriesHandle,
};
pub use delete::{CleanStats, DeleteStats};
pub use head::{SeriesRef, SeriesSamples};
pub use import::{write_blocks, write_series_blocks};
pub use quarantine::{QUARANTINE_DIR, QuarantinedFile, RefusedBlock, list_quarantined};
pub(crate) use querier::{Plan, ReadScratch, Unread};
pub use querier::{Querier, Selected};
pub use snapshot::{SnapshotStats, write_snapshot};
pub use tombstones::{Interval, Tombstones};

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(wal::WalError),
    /// A block could not be written or read.
    #[error(transparent)]
    Block(sstable::SstError),
    /// A chunk inside a block passed its checksum but does not decode.
    #[error("corrupt chunk in {path} at offset {offset}: {reason}")]
    CorruptChunk {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// The tombstones file (the record of deleted series) is damaged; the data directory is
    /// not served, since ignoring it would bring deleted data back.
    #[error("corrupt tombstones file {path} at offset {offset}: {reason}")]
    CorruptTombstones {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A file system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the data directory.
    #[error(
        "data directory {path} is in use by another tidemark process (lock held on {path}/lock)"
    )]
    Locked { path: PathBuf },
    /// A series ref the head does not know.
    #[error("unknown series ref {0}")]
    UnknownRef(SeriesRef),
    /// A sample for a series without labels.
    #[error("empty label set")]
    EmptyLabels,
    /// A histogram sample that breaks the rules of a histogram (its schema, its spans and
    /// buckets): refused at append, before anything is written.
    #[error("invalid histogram: {0}")]
    InvalidHistogram(String),
    /// A sample written straight into blocks (import) outside the storable range.
    #[error(
        "sample of {labels} at {t} ms is outside the storable range {min}..{max} ms (years 0000 to 9999)",
        min = crate::model::MIN_TIME,
        max = crate::model::MAX_TIME
    )]
    OutOfBounds { labels: Labels, t: i64 },
}

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl From<fsutil::IoError> for StorageError {
    fn from(e: fsutil::IoError) -> Self {
        StorageError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Takes the exclusive lock of a data directory (creating it if needed); held while the file
/// stays open. A second agent, or an import beside a running agent, is refused.
pub(crate) fn lock_data_dir(dir: &Path) -> Result<File, StorageError> {
    std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("lock");
    let f = File::create(&path).map_err(|source| StorageError::Io {
        path: path.clone(),
        source,
    })?;
    if f.try_lock().is_err() {
        return Err(StorageError::Locked {
            path: dir.to_path_buf(),
        });
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_data_directory_is_refused_before_anything_is_created_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        assert!(matches!(
            lock_data_dir(dir.path()),
            Err(StorageError::Locked { .. })
        ));
        let e = Db::open(dir.path(), Options::default()).err();
        assert!(matches!(e, Some(StorageError::Locked { .. })), "{e:?}");
        assert!(!dir.path().join("blocks").exists());
        assert!(!dir.path().join("wal").exists());
        drop(held);
        let db = Db::open(dir.path(), Options::default()).unwrap();
        assert!(dir.path().join("blocks").is_dir() && dir.path().join("wal").is_dir());
        db.close().unwrap();
    }
}
