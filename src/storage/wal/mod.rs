//! Write-ahead log: every commit is written here before the head sees it, and replayed into the
//! head on start. The format is drawn out in `docs/format/wal.md`.
//!
//! Owns the `wal/` directory: numbered segments (`00000001`, … at most `segment_size` each, a
//! commit never spans two), checkpoints (`checkpoint.<n>`, the state covered by segments `<= n`)
//! and the fsync policy. `record` is the pure byte format; `segment`, `checkpoint`, `replay` and
//! `writer` do the I/O. It must never interpret what it stores (labels, chunk bytes and refs are
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

mod record;

pub use record::{ChunkRecord, Record, SampleRecord, SeriesRecord, TooLarge};
