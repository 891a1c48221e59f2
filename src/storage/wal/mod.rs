//! Write-ahead log: every commit is written here before the head sees it, and replayed into the
//! head on start. The format is drawn out in `docs/format/wal.md`.
//!
//! Owns the `wal/` directory: numbered segments (`00000001`, … at most `segment_size` each, a
//! commit never spans two), checkpoints (`checkpoint.<n>`, the state covered by segments `<= n`)
//! and the fsync policy; and, for readers outside storage (remote write), the tailer of the
//! live WAL, holds on segments not yet read and their position files (`follow`, `tail`).
//! `record` is the pure byte format; `segment`, `checkpoint`, `replay`, `writer`, `follow` and
//! `tail` do the I/O. Imports point one way: `writer` (the [`Wal`]) makes followers (`follow`),
//! which make tailers (`tail`); all three share `shared` (the writer's state, commit
//! notifications, the hold registry) and `position`. It must never interpret what it stores (labels, chunk bytes and refs are
//! the head's business), never acknowledge a commit before its bytes are written to the OS, and
//! never depend on any storage module above it.
//!
//! Repair policy: a torn or corrupt record (bad length, length past the end of the file, CRC
//! mismatch, undecodable payload, bad file header) truncates *that* segment at the record's first
//! byte, with a warning naming the segment, the offset and the reason. Everything before it is
//! kept, and replay continues with the later segments: damage in an old segment never costs the
//! newer ones. A damaged checkpoint is an error naming it (it is the only copy of what it holds),
//! except a `.tmp` one, which was never completed and is deleted. A missing segment index is a
//! warning. Files of a newer format version are refused, never truncated.
//!
//! Loss window: under [`FsyncPolicy::Always`] nothing acknowledged is lost; under
//! [`FsyncPolicy::Interval`]`(d)` an OS crash or power loss loses at most the last `d` of
//! acknowledged commits, and a process crash loses nothing, because every commit is in the OS
//! before it is acknowledged.

mod checkpoint;
mod follow;
mod position;
mod record;
mod replay;
mod segment;
mod shared;
mod tail;
mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use follow::{HoldOrigin, WalFollower, WalHold};
pub use position::WalPosition;
pub use record::{ChunkRecord, HistogramRecord, Record, SampleRecord, SeriesRecord, TooLarge};
pub use replay::{Corruption, ReplayStats};
pub use shared::DEFAULT_BACKLOG_LIMIT;
pub use tail::{TailEvent, Tailer};
pub use writer::{CheckpointStats, Wal, WalStats};

/// When written commits are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every commit is fsynced before it returns; concurrent commits share one fsync.
    Always,
    /// A background thread fsyncs this often when something was written (a zero interval is
    /// treated as one millisecond).
    Interval(Duration),
}

/// How a [`Wal`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// When commits are fsynced.
    pub fsync: FsyncPolicy,
    /// Largest segment size in bytes; a larger single commit gets a segment of its own.
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            segment_size: 128 << 20,
        }
    }
}

/// Why a WAL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A read-only reader listed a segment that a concurrent checkpoint removed before it was
    /// read: what it held is now in that newer checkpoint (or in a block), so the reader must
    /// start over with a fresh state rather than go on with a hole.
    #[error("WAL segment {path} was replaced by a concurrent checkpoint while being read")]
    Vanished {
        /// The segment.
        path: PathBuf,
    },
    /// An I/O error on a WAL file or the directory.
    #[error("WAL I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint is damaged; its content cannot be recovered from the WAL.
    #[error("WAL checkpoint {path} corrupt at offset {offset}: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Offset of the first bad byte.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A file was written by a format version this build does not read.
    #[error("WAL file {path} has unsupported format version {version}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u8,
    },
    /// One entry alone is larger than a record may be.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// What a checkpoint was to hold could not all be read (a head chunk failing its
    /// checksum): the checkpoint was abandoned and no WAL file was dropped.
    #[error("WAL checkpoint abandoned: {0}")]
    CheckpointAbandoned(String),
    /// A checkpoint may only cover closed segments.
    #[error("checkpoint up to segment {upto} would cover the active segment {active}")]
    CheckpointCoversActive {
        /// The requested last covered segment.
        upto: u64,
        /// The segment being written.
        active: u64,
    },
    /// A checkpoint must not be older than the one it replaces.
    #[error("checkpoint up to segment {upto} is older than the existing checkpoint {existing}")]
    CheckpointOlder {
        /// The requested last covered segment.
        upto: u64,
        /// The existing checkpoint's index.
        existing: u64,
    },
    /// An earlier write or fsync failed; after a failed fsync the OS may have dropped the data,
    /// so the WAL refuses further commits rather than acknowledge data it cannot vouch for.
    #[error("WAL unusable after an earlier failure: {0}")]
    Failed(String),
}

impl From<crate::storage::fsutil::IoError> for WalError {
    fn from(e: crate::storage::fsutil::IoError) -> Self {
        WalError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Replays `dir` without repairing or writing anything, for tools that read the directory of a
/// running agent: a torn tail is reported in the stats, a checkpoint replaced before it was
/// opened is read again from a new listing, a segment removed before it was read is
/// [`WalError::Vanished`] (the caller starts over with fresh state, since records were delivered
/// already), and a missing directory replays as empty.
pub fn read_only(dir: &Path, mut on_record: impl FnMut(&Record)) -> Result<ReplayStats, WalError> {
    if !dir.exists() {
        return Ok(ReplayStats::default());
    }
    replay::replay(dir, replay::Mode::ReadOnly, &mut on_record).map(|r| r.stats)
}

#[cfg(test)]
mod tests;
