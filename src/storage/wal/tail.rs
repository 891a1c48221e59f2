//! Tailing the live WAL: the series it defines and the samples written from a position on,
//! in commit order, as the writer appends them.
//!
//! A [`Tailer`] first learns the series: those of the newest checkpoint (its series records
//! only — samples the checkpoint carries as chunks are never delivered), then the series
//! records of every segment still on disk before the start position. From the position on it
//! delivers series and samples records as written. It never blocks: `read` returns `None` when
//! it has caught up with the writer, and the caller waits on [`WalFollower::wait`].
//!
//! A frame that is incomplete or fails its check at the end of the segment being written is a
//! write in progress: the tailer waits for it. The same in a segment the writer has left is
//! damage: the rest of that segment is skipped and reported, as replay would truncate it.
//! Segments missing from the sequence (deleted under the backlog limit) are reported too.
//!
//! [`WalFollower::wait`]: super::WalFollower::wait

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::position::WalPosition;
use super::record::{
    self, Decoded, FILE_HEADER_LEN, FRAME_HEADER_LEN, FrameError, HeaderError, HistogramRecord,
    Record, SEGMENT_MAGIC, SampleRecord, SeriesRecord,
};
use super::segment::{self, io_err};
use super::shared::Shared;
use super::{WalError, checkpoint};

/// Bytes read from a segment at a time.
const READ_SIZE: usize = 512 << 10;
/// How often learning starts over when a checkpoint or segment vanishes under it.
const START_ATTEMPTS: usize = 5;

/// What the tailer read.
#[derive(Debug, Clone, PartialEq)]
pub enum TailEvent {
    /// Series definitions, in WAL order; a ref defined again replaces its earlier definition.
    Series(Vec<SeriesRecord>),
    /// Samples of one frame at or after the start position; `end` is the position just past it.
    Samples {
        /// The samples, in written order.
        samples: Vec<SampleRecord>,
        /// Where the next frame starts.
        end: WalPosition,
    },
    /// Histogram samples of one frame at or after the start position (one kind, integer or
    /// float, per frame); `end` is the position just past it.
    Histograms {
        /// The histogram samples, in written order.
        histograms: Vec<HistogramRecord>,
        /// Where the next frame starts.
        end: WalPosition,
    },
    /// A newer checkpoint appeared. Refs defined in segments up to `upto` and absent from
    /// `refs` are referenced by no later record and may be forgotten.
    Checkpoint {
        /// The last segment it covers.
        upto: u64,
        /// The series refs it keeps.
        refs: Vec<u64>,
    },
    /// Records between two positions could not be read: segments deleted under the backlog
    /// limit, or a damaged segment's tail. Reading went on at `to`.
    Skipped {
        /// The first position not read.
        from: WalPosition,
        /// Where reading resumed.
        to: WalPosition,
        /// Why.
        reason: String,
    },
}

/// A reader of the live WAL; see the module docs.
pub struct Tailer {
    shared: Arc<Shared>,
    from: WalPosition,
    started: bool,
    /// The newest checkpoint seen.
    checkpoint: Option<u64>,
    /// The segment being read, or the index of the next one to open.
    seg: Option<Seg>,
    next_index: u64,
    pending: VecDeque<TailEvent>,
}

struct Seg {
    index: u64,
    file: File,
    /// Offset of the next frame.
    offset: u64,
    /// Bytes of the file from `buf_at` on.
    buf: Vec<u8>,
    buf_at: u64,
    /// The writer has moved to a later segment: this one's length is final.
    closed: bool,
    /// The file header was checked.
    header_ok: bool,
}

/// What one step of reading did.
enum Step {
    Event(TailEvent),
    Again,
    Wait,
}

/// The outcome of reading one frame.
enum Read {
    Frame {
        header: record::FrameHeader,
        start: u64,
        end: u64,
    },
    /// Not all of the frame is there (yet).
    Incomplete,
    /// The bytes there are not a valid frame header.
    Bad(FrameError),
}

/// Why a frame in a segment cannot be delivered.
#[derive(Debug, thiserror::Error)]
enum BadFrame {
    /// The frame fails its checks.
    #[error(transparent)]
    Frame(FrameError),
    /// A frame only a checkpoint may hold.
    #[error("checkpoint end frame in a segment")]
    CheckpointEnd,
}

impl Seg {
    fn open(dir: &std::path::Path, index: u64) -> io::Result<Seg> {
        let file = File::open(dir.join(segment::segment_name(index)))?;
        Ok(Seg {
            index,
            file,
            offset: FILE_HEADER_LEN as u64,
            buf: Vec::new(),
            buf_at: 0,
            closed: false,
            header_ok: false,
        })
    }

    /// Makes `buf` cover the file up to `to`; false if the file is shorter.
    fn ensure(&mut self, to: u64) -> io::Result<bool> {
        if self.buf_at + self.buf.len() as u64 >= to {
            return Ok(true);
        }
        if self.offset > self.buf_at {
            let consumed = (self.offset - self.buf_at) as usize;
            self.buf.drain(..consumed.min(self.buf.len()));
            self.buf_at = self.offset;
        }
        loop {
            let have = self.buf_at + self.buf.len() as u64;
            if have >= to {
                return Ok(true);
            }
            let want = ((to - have) as usize).max(READ_SIZE);
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let n = loop {
                match self.file.read_at(&mut self.buf[old..], have) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                return Ok(false);
            }
        }
    }

    fn bytes(&self, from: u64, to: u64) -> &[u8] {
        &self.buf[(from - self.buf_at) as usize..(to - self.buf_at) as usize]
    }

    /// Checks the file header; `Ok(None)` while it is not fully written.
    fn check_header(&mut self) -> io::Result<Option<Result<(), HeaderError>>> {
        if self.header_ok {
            return Ok(Some(Ok(())));
        }
        let mut h = [0u8; FILE_HEADER_LEN];
        let n = loop {
            match self.file.read_at(&mut h, 0) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n < FILE_HEADER_LEN {
            return Ok(None);
        }
        let r = record::check_file_header(&h, SEGMENT_MAGIC);
        self.header_ok = r.is_ok();
        Ok(Some(r))
    }

    fn read_frame(&mut self) -> io::Result<Read> {
        let start = self.offset;
        let hdr_end = start + FRAME_HEADER_LEN as u64;
        if !self.ensure(hdr_end)? {
            return Ok(Read::Incomplete);
        }
        let mut h = [0u8; FRAME_HEADER_LEN];
        h.copy_from_slice(self.bytes(start, hdr_end));
        let header = match record::parse_frame_header(&h) {
            Ok(h) => h,
            Err(e) => return Ok(Read::Bad(e)),
        };
        let end = hdr_end + header.len as u64;
        if !self.ensure(end)? {
            return Ok(Read::Incomplete);
        }
        Ok(Read::Frame { header, start, end })
    }

    /// Forgets buffered bytes past the next frame, so they are read again: the writer may
    /// still be writing them, or may have cut them off after a failed write.
    fn forget_tail(&mut self) {
        if self.offset >= self.buf_at {
            let keep = ((self.offset - self.buf_at) as usize).min(self.buf.len());
            self.buf.truncate(keep);
        } else {
            self.buf.clear();
            self.buf_at = self.offset;
        }
    }

    fn position(&self) -> WalPosition {
        WalPosition {
            segment: self.index,
            offset: self.offset,
        }
    }
}

impl Tailer {
    pub(super) fn new(shared: Arc<Shared>, from: WalPosition) -> Tailer {
        Tailer {
            shared,
            from,
            started: false,
            checkpoint: None,
            seg: None,
            next_index: 0,
            pending: VecDeque::new(),
        }
    }

    /// The position just past the last frame read (where a restart would continue).
    pub fn position(&self) -> WalPosition {
        match &self.seg {
            Some(s) => s.position(),
            None => WalPosition {
                segment: self.next_index,
                offset: FILE_HEADER_LEN as u64,
            },
        }
    }

    /// The next event, or `None` when everything written so far has been read.
    pub fn read(&mut self) -> Result<Option<TailEvent>, WalError> {
        if !self.started {
            self.start()?;
            self.started = true;
        }
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(Some(e));
            }
            if self.seg.is_none() {
                if self.open_next()? {
                    continue;
                }
                return Ok(None);
            }
            match self.step()? {
                Step::Event(e) => return Ok(Some(e)),
                Step::Again => {}
                Step::Wait => return Ok(None),
            }
        }
    }

    /// Reads one frame of the current segment.
    fn step(&mut self) -> Result<Step, WalError> {
        let closed = self.segment_closed();
        let dir = self.shared.dir().to_path_buf();
        let Some(seg) = self.seg.as_mut() else {
            return Ok(Step::Again);
        };
        let index = seg.index;
        let err = |e| io_err(&dir.join(segment::segment_name(index)))(e);
        match seg.check_header().map_err(err)? {
            Some(Ok(())) => {}
            Some(Err(reason)) => {
                let at = WalPosition {
                    segment: index,
                    offset: 0,
                };
                self.skip_segment(at, format!("bad segment header: {reason}"));
                return Ok(Step::Again);
            }
            // A segment cut short before its header (a crash at creation) is empty.
            None if closed => {
                self.finish_segment();
                return Ok(Step::Again);
            }
            None => return Ok(Step::Wait),
        }
        let reason = match seg.read_frame().map_err(err)? {
            Read::Frame { header, start, end } => {
                let deliver = index > self.from.segment
                    || (index == self.from.segment && start >= self.from.offset);
                if !deliver && header.is_samples() {
                    seg.offset = end;
                    return Ok(Step::Again);
                }
                let payload = seg.bytes(start + FRAME_HEADER_LEN as u64, end);
                match record::decode_frame(&header, payload) {
                    Ok(Decoded::Record(rec)) => {
                        seg.offset = end;
                        let end = seg.position();
                        return Ok(match rec {
                            Record::Series(s) if !s.is_empty() => Step::Event(TailEvent::Series(s)),
                            Record::Samples(samples) if deliver && !samples.is_empty() => {
                                Step::Event(TailEvent::Samples { samples, end })
                            }
                            Record::Histograms(histograms) if deliver && !histograms.is_empty() => {
                                Step::Event(TailEvent::Histograms { histograms, end })
                            }
                            _ => Step::Again,
                        });
                    }
                    Ok(Decoded::CheckpointEnd { .. }) => BadFrame::CheckpointEnd,
                    Err(e) => BadFrame::Frame(e),
                }
            }
            Read::Incomplete if !closed => {
                seg.forget_tail();
                return Ok(Step::Wait);
            }
            Read::Incomplete => {
                if !seg.closed {
                    // Read once more now that the length is final, then move on.
                    seg.closed = true;
                    return Ok(Step::Again);
                }
                if seg.buf_at + seg.buf.len() as u64 > seg.offset {
                    let at = seg.position();
                    self.skip_segment(at, "torn record at the end of the segment".into());
                } else {
                    self.finish_segment();
                }
                return Ok(Step::Again);
            }
            Read::Bad(e) => BadFrame::Frame(e),
        };
        Ok(if self.bad_frame(reason, closed) {
            Step::Wait
        } else {
            Step::Again
        })
    }

    /// Handles a frame that fails its checks: in the segment being written it may be a write
    /// in progress (returns true: wait); elsewhere the rest of the segment is skipped.
    fn bad_frame(&mut self, reason: BadFrame, closed: bool) -> bool {
        if !closed {
            if let Some(seg) = self.seg.as_mut() {
                seg.forget_tail();
            }
            return true;
        }
        if let Some(seg) = self.seg.as_mut()
            && !seg.closed
        {
            // The writer finished this segment meanwhile: look at the final bytes once more.
            seg.closed = true;
            seg.forget_tail();
            return false;
        }
        if let Some(at) = self.seg.as_ref().map(Seg::position) {
            self.skip_segment(at, format!("corrupt record: {reason}"));
        }
        false
    }

    /// True when the writer has moved past the current segment.
    fn segment_closed(&self) -> bool {
        match &self.seg {
            Some(s) => s.closed || self.shared.active_index() > s.index,
            None => false,
        }
    }

    fn finish_segment(&mut self) {
        if let Some(s) = self.seg.take() {
            self.next_index = s.index + 1;
        }
    }

    fn skip_segment(&mut self, at: WalPosition, reason: String) {
        self.finish_segment();
        self.pending.push_back(TailEvent::Skipped {
            from: at,
            to: WalPosition {
                segment: self.next_index,
                offset: FILE_HEADER_LEN as u64,
            },
            reason,
        });
    }

    /// Opens segment `next_index`, or reports a gap and moves past it; false when the next
    /// segment does not exist yet.
    fn open_next(&mut self) -> Result<bool, WalError> {
        let dir = self.shared.dir().to_path_buf();
        let want = self.next_index;
        self.check_new_checkpoint()?;
        match Seg::open(&dir, want) {
            Ok(s) => {
                self.seg = Some(s);
                return Ok(true);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir.join(segment::segment_name(want)))(e)),
        }
        if want >= self.shared.active_index() {
            return Ok(false);
        }
        let listing = segment::list(&dir)?;
        let Some(&(found, _)) = listing.segments.iter().find(|(i, _)| *i > want) else {
            return Ok(false);
        };
        let from = WalPosition {
            segment: want,
            offset: FILE_HEADER_LEN as u64,
        };
        self.next_index = found;
        self.pending.push_back(TailEvent::Skipped {
            from,
            to: WalPosition {
                segment: found,
                offset: FILE_HEADER_LEN as u64,
            },
            reason: format!(
                "segments {} to {} are gone (released under the backlog limit)",
                segment::segment_name(want),
                segment::segment_name(found - 1)
            ),
        });
        Ok(true)
    }

    /// Reports a checkpoint newer than the last one seen.
    fn check_new_checkpoint(&mut self) -> Result<(), WalError> {
        let listing = segment::list(self.shared.dir())?;
        let Some((upto, path)) = listing.checkpoints.last() else {
            return Ok(());
        };
        if self.checkpoint.is_some_and(|c| c >= *upto) {
            return Ok(());
        }
        let mut refs = Vec::new();
        let found = checkpoint::read(path, &mut |r| {
            if let Record::Series(s) = r {
                refs.extend(s.iter().map(|s| s.sref));
            }
        })?;
        if found {
            self.checkpoint = Some(*upto);
            self.pending
                .push_back(TailEvent::Checkpoint { upto: *upto, refs });
        }
        Ok(())
    }

    /// Learns the series of the newest checkpoint and picks the first segment to read.
    fn start(&mut self) -> Result<(), WalError> {
        let dir = self.shared.dir().to_path_buf();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let listing = segment::list(&dir)?;
            let mut series = Vec::new();
            if let Some((upto, path)) = listing.checkpoints.last() {
                let found = checkpoint::read(path, &mut |r| {
                    if let Record::Series(s) = r {
                        series.extend(s);
                    }
                })?;
                if !found && attempt < START_ATTEMPTS {
                    // A newer checkpoint replaced it meanwhile: list again.
                    continue;
                }
                self.checkpoint = Some(*upto);
            }
            let first = listing
                .segments
                .first()
                .map_or(self.shared.active_index(), |s| s.0);
            if !series.is_empty() {
                self.pending.push_back(TailEvent::Series(series));
            }
            self.next_index = first;
            if self.from != WalPosition::START && self.from.segment < first {
                let to = WalPosition {
                    segment: first,
                    offset: FILE_HEADER_LEN as u64,
                };
                self.pending.push_back(TailEvent::Skipped {
                    from: self.from,
                    to,
                    reason: format!(
                        "the recorded position's segment {} is gone",
                        segment::segment_name(self.from.segment)
                    ),
                });
                self.from = to;
            }
            return Ok(());
        }
    }
}
