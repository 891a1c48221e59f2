//! The writer: one active segment, group commit, the background fsync thread, cuts and
//! checkpoints.
//!
//! The state it shares with the fsync thread and followers, and the order its locks are taken
//! in, are in `shared`. No lock is held across an fsync that other committers could share: the
//! group fsync runs with no lock held, so committers keep writing while it runs (a cut fsyncs
//! the segment it closes under `active`, which every committer would wait for anyway).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::follow::WalFollower;
use super::record::{
    Decoded, Encoder, FILE_HEADER_LEN, HistogramRecord, Record, SEGMENT_MAGIC, SampleRecord,
    SeriesRecord,
};
use super::replay::{self, Mode, ReplayStats};
use super::segment::{self, FrameReader, io_err};
use super::shared::{self, Active, DEFAULT_BACKLOG_LIMIT, Holds, Notifier, Shared, SyncState};
use super::{FsyncPolicy, WalError, WalOptions, checkpoint};
use crate::storage::fsutil;
use crate::storage::stats::{DurationHistogram, FSYNC_BOUNDS, HistogramSnapshot};
use crate::sync::{lock, wait, wait_timeout_while};

/// The write-ahead log of one data directory. `Send + Sync`: share it behind an `Arc`.
pub struct Wal {
    shared: Arc<Shared>,
    /// The interval fsync thread, taken when it is stopped.
    syncer: Option<JoinHandle<()>>,
    closed: bool,
    /// The encoder and buffer of the last commit, kept for the next: a steady stream of commits
    /// allocates nothing. A commit that finds it taken by another uses its own.
    scratch: Mutex<Scratch>,
}

/// What encoding one commit needs, reused across commits.
#[derive(Default)]
struct Scratch {
    enc: Encoder,
    buf: Vec<u8>,
}

/// Buffer capacity a kept [`Scratch`] may keep: one huge commit does not pin its memory.
const SCRATCH_KEEP: usize = 1 << 20;

/// Counters for the agent's self-metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalStats {
    /// Segment files, the active one included.
    pub segments: usize,
    /// Bytes in segments and the checkpoint.
    pub total_bytes: u64,
    /// Index of the oldest segment.
    pub first_segment: u64,
    /// Index of the active segment.
    pub last_segment: u64,
    /// Index of the current checkpoint, if any.
    pub checkpoint: Option<u64>,
    /// Fsyncs of segment data since open.
    pub fsyncs: u64,
    /// Time spent in those fsyncs.
    pub fsync_time: Duration,
    /// Commit bytes written since open.
    pub bytes_written: u64,
}

/// What a checkpoint wrote and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointStats {
    /// The last segment the checkpoint covers.
    pub upto: u64,
    /// Frames written.
    pub records: u64,
    /// Size of the checkpoint file.
    pub bytes: u64,
    /// Segments deleted because the checkpoint covers them.
    pub segments_removed: usize,
    /// Covered segments kept because a hold (a remote-write queue) still needs them.
    pub segments_kept: usize,
    /// Samples that holds still needed, deleted because the backlog limit was reached.
    pub samples_released: u64,
    /// Older checkpoints deleted.
    pub checkpoints_removed: usize,
}

impl Wal {
    /// Replays the newest checkpoint then every later segment in numeric order into
    /// `on_record`, repairs damage (see the module docs), then starts a new segment.
    pub fn open(
        dir: &Path,
        opts: WalOptions,
        mut on_record: impl FnMut(&Record),
    ) -> Result<(Wal, ReplayStats), WalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let replayed = replay::replay(dir, Mode::Repair, &mut on_record)?;
        let last = replayed.segments.keys().next_back().copied();
        let cp = replayed.checkpoint.map(|c| c.0);
        let index = last.max(cp).map_or(1, |i| i + 1);
        let file = segment::create_segment(dir, index)?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            active: Mutex::new(Active {
                file: Arc::new(file),
                index,
                size: FILE_HEADER_LEN as u64,
                written: 0,
                closed: replayed.segments,
                checkpoint: replayed.checkpoint,
            }),
            sync: Mutex::new(SyncState {
                synced: 0,
                in_progress: false,
            }),
            synced: Condvar::new(),
            failed: OnceLock::new(),
            checkpointing: Mutex::new(()),
            stop: Mutex::new(false),
            stop_signal: Condvar::new(),
            fsyncs: AtomicU64::new(0),
            fsync_nanos: AtomicU64::new(0),
            fsync_durations: DurationHistogram::new(FSYNC_BOUNDS),
            bytes_written: AtomicU64::new(0),
            notifier: Notifier::default(),
            holds: Mutex::new(Holds::default()),
            backlog_limit: AtomicU64::new(DEFAULT_BACKLOG_LIMIT),
            #[cfg(test)]
            fsync_delay: Mutex::new(Duration::ZERO),
        });
        let syncer = match opts.fsync {
            FsyncPolicy::Always => None,
            FsyncPolicy::Interval(d) => {
                let s = Arc::clone(&shared);
                let every = d.max(Duration::from_millis(1));
                let h = std::thread::Builder::new()
                    .name("wal-fsync".into())
                    .spawn(move || s.interval_sync(every))
                    .map_err(io_err(dir))?;
                Some(h)
            }
        };
        let wal = Wal {
            shared,
            syncer,
            closed: false,
            scratch: Mutex::new(Scratch::default()),
        };
        Ok((wal, replayed.stats))
    }

    /// Writes one commit: the series records (if any), then one samples record, with a single
    /// write. On `Ok` the bytes are in the OS; under [`FsyncPolicy::Always`] they are also
    /// fsynced, by an fsync shared with concurrent committers.
    pub fn commit(
        &self,
        series: &[SeriesRecord],
        samples: &[SampleRecord],
    ) -> Result<(), WalError> {
        self.commit_with_histograms(series, samples, &[])
    }

    /// [`Wal::commit`] with histogram samples too, written after the float samples (as
    /// frames of the histogram record types), in the same single write.
    pub fn commit_with_histograms(
        &self,
        series: &[SeriesRecord],
        samples: &[SampleRecord],
        histograms: &[HistogramRecord],
    ) -> Result<(), WalError> {
        if series.is_empty() && samples.is_empty() && histograms.is_empty() {
            return Ok(());
        }
        self.shared.check_failed()?;
        let mut kept = self.scratch.try_lock().ok();
        let mut own = None;
        let scratch = match kept.as_deref_mut() {
            Some(s) => s,
            None => own.insert(Scratch::default()),
        };
        scratch.buf.clear();
        scratch.enc.series(series, &mut scratch.buf)?;
        scratch.enc.samples(samples, &mut scratch.buf)?;
        scratch.enc.histograms(histograms, &mut scratch.buf)?;
        let end = self.shared.append(&scratch.buf);
        if scratch.buf.capacity() > SCRATCH_KEEP {
            scratch.buf = Vec::new();
        }
        scratch.enc.trim(SCRATCH_KEEP);
        drop(kept);
        let end = end?;
        self.shared.notifier.bump();
        if self.shared.opts.fsync == FsyncPolicy::Always {
            self.shared.sync_to(end)?;
        }
        Ok(())
    }

    /// Fsyncs and closes the active segment and starts the next; returns the closed index.
    pub fn cut(&self) -> Result<u64, WalError> {
        self.shared.check_failed()?;
        let mut a = lock(&self.shared.active);
        self.shared.cut_locked(&mut a)
    }

    /// Atomically writes `checkpoint.<upto>` holding `records`, then deletes older checkpoints
    /// and the segments it covers (`<= upto`), except those from [`Wal::retained_from`] on,
    /// which holds still need. `upto` must be a closed segment (see [`Wal::cut`]).
    pub fn checkpoint(
        &self,
        upto: u64,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<CheckpointStats, WalError> {
        self.try_checkpoint(upto, records.into_iter().map(Ok))
    }

    /// [`Wal::checkpoint`] of records that may fail to be produced: the first error abandons
    /// the checkpoint (its temporary file removed) before any WAL file is dropped.
    pub fn try_checkpoint(
        &self,
        upto: u64,
        records: impl IntoIterator<Item = Result<Record, WalError>>,
    ) -> Result<CheckpointStats, WalError> {
        let s = &self.shared;
        let _one_at_a_time = lock(&s.checkpointing);
        {
            let a = lock(&s.active);
            if upto >= a.index {
                return Err(WalError::CheckpointCoversActive {
                    upto,
                    active: a.index,
                });
            }
            if let Some((existing, _)) = a.checkpoint
                && existing > upto
            {
                return Err(WalError::CheckpointOlder { upto, existing });
            }
        }
        let written = checkpoint::write(&s.dir, upto, records)?;
        lock(&s.active).checkpoint = Some((upto, written.bytes));
        // The new checkpoint is durable; from here on deleting covered files is only cleanup,
        // and the next checkpoint finishes it after a crash. Holds stay locked while segments
        // go, so a hold taken meanwhile sees either the segment or its absence, never a
        // segment deleted after it was counted on.
        let holds = lock(&s.holds);
        let keep_from = s.retain_from(upto, &holds);
        let listing = segment::list(&s.dir)?;
        let mut segments_removed = 0;
        let mut checkpoints_removed = 0;
        let gone: Vec<&(u64, PathBuf)> = listing
            .segments
            .iter()
            .filter(|(i, _)| *i <= upto && *i < keep_from)
            .collect();
        let samples_released = release(&holds, &gone);
        for (_, path) in gone {
            if segment::remove(path)? {
                segments_removed += 1;
            }
        }
        drop(holds);
        for (i, path) in &listing.checkpoints {
            if *i < upto && segment::remove(path)? {
                checkpoints_removed += 1;
            }
        }
        let segments_kept = {
            let mut a = lock(&s.active);
            a.closed.retain(|i, _| *i >= keep_from);
            a.closed.range(..=upto).count()
        };
        fsutil::sync_dir(&s.dir)?;
        Ok(CheckpointStats {
            upto,
            records: written.frames,
            bytes: written.bytes,
            segments_removed,
            segments_kept,
            samples_released,
            checkpoints_removed,
        })
    }

    /// The first segment a checkpoint up to `upto` would keep now: the lowest segment a hold
    /// needs, within the backlog limit (`upto + 1` when no hold needs a covered segment).
    pub fn retained_from(&self, upto: u64) -> u64 {
        let holds = lock(&self.shared.holds);
        self.shared.retain_from(upto, &holds)
    }

    /// A follower: tailers, holds (their position files under `positions`), notifications.
    pub fn follower(&self, positions: &Path) -> WalFollower {
        WalFollower::new(self.shared.clone(), positions.to_path_buf())
    }

    /// Fsyncs everything written so far (shares a running fsync when it covers it).
    pub fn sync(&self) -> Result<(), WalError> {
        let target = lock(&self.shared.active).written;
        self.shared.sync_to(target)
    }

    /// Stops the fsync thread and fsyncs everything written.
    pub fn close(mut self) -> Result<(), WalError> {
        self.shutdown()
    }

    /// Sizes and fsync counters.
    pub fn stats(&self) -> WalStats {
        let s = &self.shared;
        let a = lock(&s.active);
        WalStats {
            segments: a.closed.len() + 1,
            total_bytes: a.closed.values().sum::<u64>() + a.size + a.checkpoint.map_or(0, |c| c.1),
            first_segment: a.closed.keys().next().copied().unwrap_or(a.index),
            last_segment: a.index,
            checkpoint: a.checkpoint.map(|c| c.0),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            fsync_time: Duration::from_nanos(s.fsync_nanos.load(Ordering::Relaxed)),
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
        }
    }

    /// How long the fsyncs since open took, bucketed.
    pub fn fsync_durations(&self) -> HistogramSnapshot {
        self.shared.fsync_durations.snapshot()
    }

    /// The directory this WAL owns.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Makes every later fsync take `d` longer.
    #[cfg(test)]
    pub(crate) fn slow_fsyncs(&self, d: Duration) {
        *lock(&self.shared.fsync_delay) = d;
    }

    fn shutdown(&mut self) -> Result<(), WalError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        *lock(&self.shared.stop) = true;
        self.shared.stop_signal.notify_all();
        if let Some(h) = self.syncer.take() {
            // The thread only fsyncs; a panic there has nothing to hand back.
            let _ = h.join();
        }
        self.sync()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "WAL final fsync failed on drop");
        }
    }
}

/// Counts, for each hold, the samples at or after its position in the segments `gone`, adds
/// them to the hold and logs the loss; returns the total.
fn release(holds: &Holds, gone: &[&(u64, PathBuf)]) -> u64 {
    let mut total = 0;
    for h in holds.all() {
        let p = h.position();
        let mut lost = 0;
        let mut segments = Vec::new();
        for (i, path) in gone.iter().map(|g| (g.0, &g.1)) {
            if i < p.segment {
                continue;
            }
            let from = if i == p.segment { p.offset } else { 0 };
            lost += count_samples(path, from);
            segments.push(i);
        }
        if let (Some(first), Some(last)) = (segments.first(), segments.last()) {
            h.add_released(lost);
            total += lost;
            tracing::warn!(
                hold = h.key(),
                first = %segment::segment_name(*first),
                last = %segment::segment_name(*last),
                samples = lost,
                "WAL backlog over its limit: deleting segments a remote-write queue has not sent; their samples are lost to it"
            );
        }
    }
    total
}

/// Samples in the frames of segment `path` that start at or after `from`; a damaged frame
/// ends the count (replay would have cut the segment there).
fn count_samples(path: &Path, from: u64) -> u64 {
    let Ok(mut r) = FrameReader::open(path, SEGMENT_MAGIC) else {
        return 0;
    };
    let mut n = 0;
    loop {
        let at = r.offset();
        match r.next_frame() {
            Ok(Some(Decoded::Record(Record::Samples(s)))) if at >= from => n += s.len() as u64,
            Ok(Some(Decoded::Record(Record::Histograms(h)))) if at >= from => n += h.len() as u64,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return n,
        }
    }
}

impl Shared {
    fn retain_from(&self, upto: u64, holds: &Holds) -> u64 {
        let a = lock(&self.active);
        shared::retain_from(
            upto,
            &a.closed,
            holds.lowest_segment(),
            self.backlog_limit.load(Ordering::Relaxed),
        )
    }

    fn check_failed(&self) -> Result<(), WalError> {
        match self.failed.get() {
            Some(f) => Err(WalError::Failed(f.clone())),
            None => Ok(()),
        }
    }

    fn fail(&self, e: &WalError) {
        tracing::error!(error = %e, "WAL failed; refusing further commits");
        let _ = self.failed.set(e.to_string());
    }

    /// Writes `buf` to the active segment (cutting first if it would overflow a non-empty one);
    /// returns the `written` position just past it.
    fn append(&self, buf: &[u8]) -> Result<u64, WalError> {
        let mut a = lock(&self.active);
        self.check_failed()?;
        let len = buf.len() as u64;
        if a.size > FILE_HEADER_LEN as u64 && a.size + len > self.opts.segment_size {
            self.cut_locked(&mut a)?;
        }
        let start = a.size;
        let mut f: &File = &a.file;
        if let Err(e) = f.write_all(buf) {
            // A partial record would hide every later one from replay: cut it off, or stop.
            let path = self.dir.join(segment::segment_name(a.index));
            let e = io_err(&path)(e);
            if let Err(t) = f
                .set_len(start)
                .and_then(|()| f.seek(SeekFrom::Start(start)))
            {
                self.fail(&io_err(&path)(t));
            }
            return Err(e);
        }
        a.size += len;
        a.written += len;
        self.bytes_written.fetch_add(len, Ordering::Relaxed);
        Ok(a.written)
    }

    fn cut_locked(&self, a: &mut Active) -> Result<u64, WalError> {
        self.fsync(&a.file, a.index)?;
        let next = segment::create_segment(&self.dir, a.index + 1)?;
        let closed = a.index;
        a.closed.insert(closed, a.size);
        a.file = Arc::new(next);
        a.index += 1;
        a.size = FILE_HEADER_LEN as u64;
        let mut s = lock(&self.sync);
        s.synced = s.synced.max(a.written);
        drop(s);
        self.synced.notify_all();
        Ok(closed)
    }

    /// One counted fsync of segment `index`; a failure makes the WAL unusable, because after a
    /// failed fsync the kernel may have dropped the dirty pages and a retry can falsely succeed.
    fn fsync(&self, file: &File, index: u64) -> Result<(), WalError> {
        let t = Instant::now();
        #[cfg(test)]
        std::thread::sleep(*lock(&self.fsync_delay));
        let r = file.sync_data();
        let took = t.elapsed();
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.fsync_durations.observe(took);
        r.map_err(|e| {
            let e = io_err(&self.dir.join(segment::segment_name(index)))(e);
            self.fail(&e);
            e
        })
    }

    /// Returns once everything up to `target` is fsynced. One caller runs the fsync for the
    /// group; the rest wait for it and return if it covered them, so N concurrent committers
    /// cost about two fsyncs, not N.
    fn sync_to(&self, target: u64) -> Result<(), WalError> {
        let mut s = lock(&self.sync);
        loop {
            self.check_failed()?;
            if s.synced >= target {
                return Ok(());
            }
            if s.in_progress {
                s = wait(&self.synced, s);
                continue;
            }
            s.in_progress = true;
            drop(s);
            let (file, index, upto) = {
                let a = lock(&self.active);
                (Arc::clone(&a.file), a.index, a.written)
            };
            // Bytes before `upto` are in this file or in segments a cut already fsynced.
            let r = self.fsync(&file, index);
            s = lock(&self.sync);
            s.in_progress = false;
            if r.is_ok() {
                s.synced = s.synced.max(upto);
            }
            self.synced.notify_all();
            r?;
        }
    }

    fn interval_sync(&self, every: Duration) {
        loop {
            let stop = lock(&self.stop);
            let (stop, _) = wait_timeout_while(&self.stop_signal, stop, every, |stopped| !*stopped);
            if *stop {
                return;
            }
            drop(stop);
            let target = lock(&self.active).written;
            if let Err(e) = self.sync_to(target) {
                tracing::error!(error = %e, "WAL interval fsync failed; stopping the fsync thread");
                return;
            }
        }
    }
}
