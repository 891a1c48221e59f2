//! Replay: the newest checkpoint, then every later segment in numeric order, repairing damage
//! (open) or only reporting it (read-only).

use std::collections::BTreeMap;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use super::record::{self, Decoded, Record, SEGMENT_MAGIC};
use super::segment::{self, FrameReader, Listing, OpenError, ReadError, io_err};
use super::{WalError, checkpoint};

/// A damaged spot found during replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The segment file.
    pub segment: PathBuf,
    /// Offset of the first bad byte: the start of the bad record (or 0 for a bad file header).
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

/// What a replay read and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Index of the checkpoint replayed first, if any.
    pub checkpoint: Option<u64>,
    /// Segments read after the checkpoint.
    pub segments: usize,
    /// Records (frames) delivered, checkpoint included.
    pub records: u64,
    /// Series entries delivered.
    pub series: u64,
    /// Sample entries delivered.
    pub samples: u64,
    /// Chunk entries delivered.
    pub chunks: u64,
    /// Histogram sample entries delivered.
    pub histograms: u64,
    /// Every damaged spot, in replay order.
    pub corruptions: Vec<Corruption>,
    /// Bytes cut off damaged segments (read-only: the bytes that were skipped and an open would cut).
    pub bytes_truncated: u64,
    /// Runs of segment indices missing from the sequence.
    pub gaps: Vec<RangeInclusive<u64>>,
}

impl ReplayStats {
    fn deliver(&mut self, r: Record, on_record: &mut dyn FnMut(Record)) {
        self.records += 1;
        match &r {
            Record::Series(v) => self.series += v.len() as u64,
            Record::Samples(v) => self.samples += v.len() as u64,
            Record::Chunks(v) => self.chunks += v.len() as u64,
            Record::Histograms(v) => self.histograms += v.len() as u64,
        }
        on_record(r);
    }
}

/// Whether replay may change the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Truncate damaged segments, delete leftovers of interrupted checkpoints.
    Repair,
    /// Change nothing; tolerate files vanishing under a running agent.
    ReadOnly,
}

/// The directory's state after replay, for the writer to continue from.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub stats: ReplayStats,
    /// Segment sizes by index, after repair; covered segments left on disk (kept for
    /// remote-write holds, or left by an interrupted checkpoint) are listed, not replayed.
    pub segments: BTreeMap<u64, u64>,
    /// The checkpoint replayed and its size.
    pub checkpoint: Option<(u64, u64)>,
}

/// How often read-only replay starts over when the checkpoint it listed was replaced meanwhile.
const READ_ONLY_ATTEMPTS: usize = 5;

/// Records decoded ahead of the one being applied. Each is at most one frame's worth (a frame's
/// payload is cut near 1 MiB), so this bounds what the pipeline holds to a few MiB whatever the
/// size of the WAL.
const DECODED_AHEAD: usize = 1;

/// Replays `dir`, delivering every record in order to `on_record` on the calling thread while
/// another thread reads, checks and decodes the frames after it: on a machine with a core to
/// spare, decoding costs no time to ready. Damage is handled on the decoding thread exactly as
/// [`replay_in_order`] does it, and its result is returned once every record it delivered has
/// been applied.
///
/// Each record, once applied, goes back to the decoding thread to be freed there. Freed on the
/// applying thread, its many small allocations (a series record's label strings) entered that
/// thread's allocator cache (glibc's tcache keeps freed chunks per thread, whatever arena they
/// came from), and the head's next allocations of the same sizes were served from them: head
/// data that lives as long as the series was scattered through the decoder's arena, between
/// its transient buffers, and at 1M series the replayed head took ~85 MiB more RSS than the
/// running agent's (whose memory replay must not exceed).
pub(crate) fn replay(
    dir: &Path,
    mode: Mode,
    on_record: &mut dyn FnMut(&Record),
) -> Result<Replayed, WalError> {
    std::thread::scope(|scope| {
        // Made inside the scope, so that a panic while applying drops the applying ends before
        // the scope waits for the decoder, which then stops.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Record>(DECODED_AHEAD);
        // Unbounded, but never holds more than the records handed over and not yet taken back.
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Record>();
        let decoder = std::thread::Builder::new()
            .name("wal-replay".into())
            .spawn_scoped(scope, move || {
                let out = replay_in_order(dir, mode, &mut |r| {
                    back_rx.try_iter().for_each(drop);
                    if tx.send(r).is_err() {
                        // The applying side is gone, which is a panic there: stop now instead of
                        // reading (and repairing) the rest of the WAL for nobody. Unwinding
                        // leaves every loop of the reader at once and calls no panic hook; the
                        // scope then raises the applying side's own panic.
                        std::panic::resume_unwind(Box::new(ApplyingGone));
                    }
                });
                drop(tx);
                // The records still being applied: freed here as they come back, until the
                // applying side is done.
                back_rx.into_iter().for_each(drop);
                out
            });
        match decoder {
            Ok(handle) => {
                for r in rx {
                    on_record(&r);
                    let _ = back_tx.send(r);
                }
                drop(back_tx);
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            // No thread to be had: decode here, one record at a time.
            Err(e) => {
                tracing::debug!(error = %e, "no WAL decoding thread; replaying on one thread");
                replay_in_order(dir, mode, &mut |r| on_record(&r))
            }
        }
    })
}

/// What the decoding thread unwinds with when the applying side has panicked.
struct ApplyingGone;

/// Replays `dir` on the calling thread.
pub(super) fn replay_in_order(
    dir: &Path,
    mode: Mode,
    on_record: &mut dyn FnMut(Record),
) -> Result<Replayed, WalError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let listing = segment::list(dir)?;
        let mut out = Replayed::default();
        if mode == Mode::Repair {
            for tmp in &listing.incomplete {
                tracing::info!(path = %tmp.display(), "deleting incomplete WAL checkpoint");
                segment::remove(tmp)?;
            }
        }
        if let Some((index, path)) = listing.checkpoints.last() {
            let found = checkpoint::read(path, &mut |r| out.stats.deliver(r, on_record))?;
            if !found {
                // Only a concurrent checkpoint (read-only mode) removes one, and nothing was
                // delivered yet: list again and start from the new one.
                if mode == Mode::ReadOnly && attempts < READ_ONLY_ATTEMPTS {
                    continue;
                }
                return Err(io_err(path)(io::ErrorKind::NotFound.into()));
            }
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            out.checkpoint = Some((*index, size));
            out.stats.checkpoint = Some(*index);
            if mode == Mode::Repair {
                remove_covered(&listing, *index)?;
            }
        }
        let after = out.checkpoint.map(|c| c.0);
        // Segment 1 is the first one ever written, so without a checkpoint anything before the
        // first listed segment is missing too.
        let mut expected = after.map_or(1, |c| c.saturating_add(1));
        for (index, path) in &listing.segments {
            if after.is_some_and(|c| *index <= c) {
                if let Ok(m) = std::fs::metadata(path) {
                    out.segments.insert(*index, m.len());
                }
                continue;
            }
            if *index > expected {
                let gap = expected..=index - 1;
                tracing::warn!(
                    dir = %dir.display(),
                    missing = ?gap,
                    "WAL segments missing from the sequence; their records are lost"
                );
                out.stats.gaps.push(gap);
            }
            expected = index.saturating_add(1);
            if let Some(size) = replay_segment(path, mode, &mut out.stats, on_record)? {
                out.stats.segments += 1;
                out.segments.insert(*index, size);
            }
        }
        return Ok(out);
    }
}

/// Deletes the older checkpoints an interrupted checkpoint left behind after its rename. Only
/// called once the checkpoint has been read in full, so a damaged one leaves every file in
/// place for a human to look at. Covered segments stay: remote-write queues that have not
/// sent them yet take their holds after open, and the next checkpoint deletes what no hold
/// needs.
fn remove_covered(l: &Listing, newest: u64) -> Result<(), WalError> {
    let old_checkpoints = l.checkpoints.iter().filter(|(i, _)| *i < newest);
    for (_, path) in old_checkpoints {
        tracing::info!(path = %path.display(), "deleting WAL file covered by checkpoint {newest}");
        segment::remove(path)?;
    }
    Ok(())
}

/// Replays one segment; returns its size after repair, or `None` if it vanished (read-only).
fn replay_segment(
    path: &Path,
    mode: Mode,
    stats: &mut ReplayStats,
    on_record: &mut dyn FnMut(Record),
) -> Result<Option<u64>, WalError> {
    let mut r = match FrameReader::open(path, SEGMENT_MAGIC) {
        Ok(r) => r,
        Err(OpenError::Io(e)) if mode == Mode::ReadOnly && e.kind() == io::ErrorKind::NotFound => {
            // Only a checkpoint deletes segments, and it holds what this one held that is not
            // in a block yet: skipping the segment would lose those samples from this view.
            return Err(WalError::Vanished {
                path: path.to_path_buf(),
            });
        }
        Err(OpenError::Io(e)) => return Err(io_err(path)(e)),
        Err(OpenError::Header(record::HeaderError::Version(version))) => {
            // Refusing is safer than truncating: a newer tidemark wrote this and its data is fine.
            return Err(WalError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Err(OpenError::Header(h)) => {
            let size = std::fs::metadata(path).map_err(io_err(path))?.len();
            return damaged(path, mode, stats, 0, size, h.to_string()).map(Some);
        }
    };
    loop {
        let at = r.offset();
        let reason = match r.next_frame() {
            Ok(Some(Decoded::Record(rec))) => {
                stats.deliver(rec, on_record);
                continue;
            }
            Ok(None) => return Ok(Some(r.size())),
            // Only checkpoints end with this frame; in a segment it is foreign data.
            Ok(Some(Decoded::CheckpointEnd { .. })) => "checkpoint end frame in a segment".into(),
            Err(ReadError::Frame { err, .. }) => err.to_string(),
            Err(ReadError::Io(e)) => return Err(io_err(path)(e)),
        };
        return damaged(path, mode, stats, at, r.size(), reason).map(Some);
    }
}

/// Records damage at `offset` of a segment of `size` bytes and, when repairing, truncates the
/// segment there. Returns the segment's length of good data.
fn damaged(
    path: &Path,
    mode: Mode,
    stats: &mut ReplayStats,
    offset: u64,
    size: u64,
    reason: String,
) -> Result<u64, WalError> {
    let cut = size.saturating_sub(offset);
    match mode {
        Mode::Repair => {
            tracing::warn!(
                segment = %path.display(),
                offset,
                reason = %reason,
                bytes_cut = cut,
                "corrupt or torn WAL record: truncating the segment here, keeping everything before it"
            );
            segment::truncate(path, offset)?;
        }
        // The caller reports the stats; the tail of a live segment is routinely incomplete.
        Mode::ReadOnly => tracing::debug!(
            segment = %path.display(),
            offset,
            reason = %reason,
            "unreadable WAL record: skipping the rest of the segment"
        ),
    }
    stats.bytes_truncated += cut;
    stats.corruptions.push(Corruption {
        segment: path.to_path_buf(),
        offset,
        reason,
    });
    Ok(offset)
}
