//! Corrupt blocks taken out of service: removed from the catalog and moved aside into
//! `<data>/quarantine/`, never deleted (the operator decides), counted and logged.
//!
//! A block is found corrupt when it fails to open, when the background scrub's full check
//! (`Block::verify`) fails, or when a query or a compaction reads a chunk whose checksum or
//! encoding is wrong. From then on no read, compaction or retention sees it. Queriers that
//! already hold it keep their open file handle (a rename does not disturb it) and skip it too
//! once they read the damage; removing a block from the catalog truncates nothing, so the
//! reader-epoch rule of flushes is not involved.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tracing::{error, warn};

use super::catalog::Catalog;
use super::sstable::{Block, BlockId, SstError};
use super::{StorageError, fsutil, io_err, sstable};
use crate::sync::{lock, read, write};

/// Name of the directory, beside `blocks/`, that corrupt blocks are moved into.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Suffix of the text file beside a quarantined block that says why it was moved.
pub const REASON_SUFFIX: &str = ".reason";

/// A block found corrupt and left out of every read.
#[derive(Debug, Clone)]
pub struct RefusedBlock {
    /// Its file when it was found corrupt.
    pub path: PathBuf,
    /// Why it was refused (it names the file, the section and the offset).
    pub reason: String,
    /// Where it was moved; `None` for read-only views (which move nothing) or when the move
    /// failed (the log says why).
    pub quarantined_to: Option<PathBuf>,
}

/// The published blocks of a live database and what takes corrupt ones out of them.
pub(crate) struct Blocks {
    /// The published block set, swapped whole.
    pub(crate) catalog: RwLock<Arc<Catalog>>,
    quarantine_dir: PathBuf,
    /// Blocks quarantined since open, in order.
    quarantined: Mutex<Vec<RefusedBlock>>,
    /// Ids of the blocks the scrub has checked in full.
    verified: Mutex<HashSet<BlockId>>,
    count: AtomicU64,
}

impl Blocks {
    pub(crate) fn new(data_dir: &Path, catalog: Catalog) -> Blocks {
        Blocks {
            catalog: RwLock::new(Arc::new(catalog)),
            quarantine_dir: data_dir.join(QUARANTINE_DIR),
            quarantined: Mutex::new(Vec::new()),
            verified: Mutex::new(HashSet::new()),
            count: AtomicU64::new(0),
        }
    }

    /// The current catalog snapshot.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        read(&self.catalog).clone()
    }

    /// Blocks quarantined since open.
    pub(crate) fn quarantined(&self) -> Vec<RefusedBlock> {
        lock(&self.quarantined).clone()
    }

    /// How many blocks were quarantined since open.
    pub(crate) fn quarantined_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Moves a block file that failed to open aside (it was never published).
    pub(crate) fn quarantine_file(&self, path: &Path, reason: &str) -> RefusedBlock {
        let moved = self.move_aside(path, reason);
        self.record(path, reason, moved)
    }

    /// Takes `block` out of the catalog and moves its file aside, once: false when the block
    /// is no longer published (quarantined by another reader, compacted or dropped), so only
    /// one caller logs and counts it.
    pub(crate) fn quarantine(&self, block: &Block, reason: &str) -> bool {
        let path = &block.meta().path;
        let moved = {
            let mut cat = write(&self.catalog);
            if !cat.blocks.iter().any(|b| b.meta().id == block.meta().id) {
                return false;
            }
            *cat = Arc::new(cat.with(Vec::new(), std::slice::from_ref(&block.meta().id)));
            // Moved while the lock is held: whoever publishes a replacement and deletes the
            // file (compaction, retention) publishes first, so the file is still here.
            self.move_aside(path, reason)
        };
        self.record(path, reason, moved);
        true
    }

    /// Checks every published block not checked yet in full (every chunk CRC, the index's
    /// consistency) and quarantines those that fail; returns how many were quarantined.
    pub(crate) fn scrub(&self) -> usize {
        let mut found = 0;
        for b in self.catalog().blocks.iter() {
            let id = b.meta().id.clone();
            if lock(&self.verified).contains(&id) {
                continue;
            }
            match b.verify() {
                Ok(()) => {}
                // A block deleted by compaction or retention after the snapshot was taken.
                Err(SstError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e @ SstError::Io { .. }) => {
                    // A failing disk read says nothing certain about the bytes; checked again
                    // by the next scrub.
                    error!(block = %id, error = %e, "scrub could not read block");
                    continue;
                }
                Err(e) => {
                    if self.quarantine(b, &e.to_string()) {
                        found += 1;
                    }
                }
            }
            lock(&self.verified).insert(id);
        }
        // Forget blocks that are gone (compacted, dropped), so the set stays the catalog's size.
        let live: HashSet<BlockId> = self
            .catalog()
            .blocks
            .iter()
            .map(|b| b.meta().id.clone())
            .collect();
        lock(&self.verified).retain(|id| live.contains(id));
        found
    }

    fn record(&self, path: &Path, reason: &str, moved: Option<PathBuf>) -> RefusedBlock {
        self.count.fetch_add(1, Ordering::Relaxed);
        match &moved {
            Some(to) => warn!(
                block = %path.display(), moved_to = %to.display(), reason,
                "corrupt block quarantined: left out of every query, compaction and retention; \
                 the file is kept for the operator"
            ),
            None => error!(
                block = %path.display(), reason,
                "corrupt block left out of every query; moving it into the quarantine directory failed"
            ),
        }
        let r = RefusedBlock {
            path: path.to_path_buf(),
            reason: reason.to_string(),
            quarantined_to: moved,
        };
        lock(&self.quarantined).push(r.clone());
        r
    }

    /// Renames `path` into the quarantine directory under its own file name (a free name if a
    /// file of that name is already there) and writes the reason beside it.
    fn move_aside(&self, path: &Path, reason: &str) -> Option<PathBuf> {
        let r = (|| -> std::io::Result<PathBuf> {
            std::fs::create_dir_all(&self.quarantine_dir)?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "block".into());
            let mut to = self.quarantine_dir.join(&name);
            let mut n = 1;
            while to.exists() {
                to = self.quarantine_dir.join(format!("{name}.{n}"));
                n += 1;
            }
            std::fs::rename(path, &to)?;
            let mut why = to.clone().into_os_string();
            why.push(REASON_SUFFIX);
            // The reason file is a courtesy; the move is what matters.
            if let Err(e) = std::fs::write(&why, format!("{reason}\n")) {
                warn!(path = %PathBuf::from(&why).display(), error = %e, "writing quarantine reason failed");
            }
            for d in [Some(self.quarantine_dir.as_path()), path.parent()]
                .into_iter()
                .flatten()
            {
                fsutil::sync_dir(d).map_err(std::io::Error::other)?;
            }
            Ok(to)
        })();
        match r {
            Ok(to) => Some(to),
            Err(e) => {
                error!(block = %path.display(), error = %e, "moving corrupt block into quarantine failed");
                None
            }
        }
    }
}

/// The block file an error says is damaged: a checksum or format failure, a chunk that does
/// not decode, a reference outside the block. `None` for I/O errors and everything else.
pub(crate) fn corrupt_block_path(e: &StorageError) -> Option<&Path> {
    match e {
        StorageError::Block(
            sstable::SstError::Corrupt { path, .. }
            | sstable::SstError::InvalidChunkRef { path, .. }
            | sstable::SstError::UnknownSeries { path, .. },
        )
        | StorageError::CorruptChunk { path, .. } => Some(path),
        _ => None,
    }
}

/// A quarantined block found in `<data>/quarantine/`, for `inspect`.
#[derive(Debug, Clone)]
pub struct QuarantinedFile {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The reason recorded beside it, if any.
    pub reason: Option<String>,
}

/// The block files in `<data>/quarantine/`, sorted by name; none when it does not exist.
pub fn list_quarantined(data_dir: &Path) -> Result<Vec<QuarantinedFile>, StorageError> {
    let dir = data_dir.join(QUARANTINE_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(REASON_SUFFIX) {
            continue;
        }
        let meta = entry.metadata().map_err(io_err(&path))?;
        if !meta.is_file() {
            continue;
        }
        let mut why = path.clone().into_os_string();
        why.push(REASON_SUFFIX);
        let reason = std::fs::read_to_string(&why)
            .ok()
            .map(|s| s.trim_end().to_string());
        out.push(QuarantinedFile {
            path,
            size_bytes: meta.len(),
            reason,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
