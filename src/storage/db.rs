//! The storage engine as one object: opening a data directory, appending, reading, and the
//! background work (flush, compaction, retention) that keeps the head small and the disk tidy.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::block_chunks::{read_samples, series_chunks};
use super::catalog::Catalog;
use super::compact::{self, BlockSpan};
use super::delete::{self, CleanStats, DeleteStats};
use super::head::{ChunkFile, FastMap, Head, MemSeries, Reject, SeriesRef, SeriesState};
use super::quarantine::{Blocks, RefusedBlock, corrupt_block_path};
use super::querier::Querier;
use super::querier::settle_histograms;
use super::sstable::{self, Block, BlockId, BlockMeta, BlockWriter, SstError};
use super::stats::{DurationHistogram, HistogramSnapshot, MAINTENANCE_BOUNDS};
use super::tombstones::{self, Tombstones};
use super::wal::{
    self, ChunkRecord, FsyncPolicy, HistogramRecord, Record, SampleRecord, SeriesRecord, Wal,
    WalError, WalOptions,
};
use super::{StorageError, chunk, io_err, lock_data_dir};
use crate::model::histogram::is_valid_schema;
use crate::model::{HistogramValue, Labels, MAX_TIME, MIN_TIME, Matcher, Span, is_storable_time};
use crate::sync::{lock, read, write};

/// How far ahead of the appender's clock a sample may be, in milliseconds. A sample from the
/// future makes every real sample of its series after it out of order until the clock catches
/// up, and retention, measured from the newest stored sample, would delete every block older
/// than it. Ten minutes absorbs clock skew between a sender and this agent (Mimir's creation
/// grace period has the same purpose; Prometheus's receiver has no such bound).
pub const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// The wall clock in milliseconds since the epoch (0 if it is before the epoch).
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Storage settings (the `storage:` section of the config).
#[derive(Debug, Clone)]
pub struct Options {
    /// WAL fsync policy.
    pub fsync: FsyncPolicy,
    /// Maximum WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// Time span of one flushed block, in milliseconds.
    pub block_duration: i64,
    /// Blocks whose newest sample is older than this before the newest stored sample are
    /// deleted, in milliseconds; 0 keeps data forever.
    pub retention_time: i64,
    /// Oldest blocks are deleted while blocks take more bytes than this; 0 means no limit.
    pub retention_size: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fsync: FsyncPolicy::Interval(Duration::from_secs(1)),
            wal_segment_size: 128 << 20,
            block_duration: 2 * 3_600_000,
            retention_time: 15 * 24 * 3_600_000,
            retention_size: 0,
        }
    }
}

/// What one commit did with its samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Samples stored.
    pub appended: u64,
    /// Same timestamp and value as the newest sample: ignored.
    pub duplicates_ignored: u64,
    /// Same timestamp as the newest sample, different value: rejected.
    pub duplicate: u64,
    /// Older than the series' newest sample: rejected.
    pub out_of_order: u64,
    /// Older than the head accepts, or outside the storable range ([`MIN_TIME`] to
    /// [`MAX_TIME`]): rejected.
    pub out_of_bounds: u64,
    /// More than [`MAX_AHEAD_MS`] ahead of the appender's clock: rejected.
    pub too_far_in_future: u64,
}

impl CommitStats {
    /// Counts a sample the append rules refused.
    fn count_reject(&mut self, r: Reject) {
        match r {
            Reject::DuplicateIgnored => self.duplicates_ignored += 1,
            Reject::Duplicate => self.duplicate += 1,
            Reject::OutOfOrder | Reject::Removed | Reject::StaleHistogram => self.out_of_order += 1,
            Reject::OutOfBounds => self.out_of_bounds += 1,
        }
    }
}

/// Running totals since open, for inspection and self-metrics.
#[derive(Debug)]
pub struct DbCounters {
    /// Samples stored.
    pub appended: AtomicU64,
    /// Identical samples ignored.
    pub duplicates_ignored: AtomicU64,
    /// Samples rejected: same timestamp, different value.
    pub duplicate: AtomicU64,
    /// Samples rejected: out of order.
    pub out_of_order: AtomicU64,
    /// Samples rejected: out of bounds (older than the head accepts, or outside the storable
    /// range; WAL samples outside it, dropped at replay, are counted here too).
    pub out_of_bounds: AtomicU64,
    /// Samples rejected: too far ahead of the clock.
    pub too_far_in_future: AtomicU64,
    /// Head flushes to blocks (one per block window).
    pub flushes: AtomicU64,
    /// Flush runs that failed.
    pub flushes_failed: AtomicU64,
    /// How long each block window's flush took, its WAL checkpoint included.
    pub flush_durations: DurationHistogram,
    /// Compactions done.
    pub compactions: AtomicU64,
    /// Compactions that failed.
    pub compactions_failed: AtomicU64,
    /// How long each successful compaction took.
    pub compaction_durations: DurationHistogram,
    /// Blocks removed by retention.
    pub retention_deletes: AtomicU64,
}

impl Default for DbCounters {
    fn default() -> Self {
        DbCounters {
            appended: AtomicU64::new(0),
            duplicates_ignored: AtomicU64::new(0),
            duplicate: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            out_of_bounds: AtomicU64::new(0),
            too_far_in_future: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flushes_failed: AtomicU64::new(0),
            flush_durations: DurationHistogram::new(MAINTENANCE_BOUNDS),
            compactions: AtomicU64::new(0),
            compactions_failed: AtomicU64::new(0),
            compaction_durations: DurationHistogram::new(MAINTENANCE_BOUNDS),
            retention_deletes: AtomicU64::new(0),
        }
    }
}

/// An open data directory.
///
/// # Locks
///
/// `Db` has six std locks: `maintenance`, `commit_gate`, the catalog's (`blocks.catalog`),
/// `tombstones`, `readers` and `collected`. A thread holding one takes others only in this
/// order, outermost first:
///
/// 1. `maintenance`: held for the whole of one structural change (flush, compaction,
///    retention, deletion, clean, snapshot), its block and tombstones I/O included. Commits and
///    queries never take it, so its length delays only other maintenance. Functions that need
///    it held take its guard, `Maintenance`, as a parameter.
/// 2. `commit_gate`: shared by every commit from its checks until its samples are in the head,
///    across the WAL write (and, under `fsync: always`, the fsync that write waits for). Commits
///    never wait for each other on it; a flush takes it exclusively, inside `maintenance`, for
///    two short steps: raising the head's lower bound, and cutting the WAL (one fsync of the
///    segment it closes). Under it a commit takes the head's locks (shards, postings, a
///    series' mutex) and the WAL's (in the order `wal/shared.rs` gives), and a flush the
///    WAL's for the cut.
/// 3. `blocks.catalog`: never held together with `commit_gate`. Held only to read or swap the
///    published `Arc<Catalog>`, except that a quarantine keeps it while it renames a corrupt
///    block's file into `<data>/quarantine/` and fsyncs the directories (so no compaction or
///    retention deletes the file meanwhile); then it takes the quarantine's own list. A query
///    reaches it holding its `Querier`'s list of skipped blocks, which therefore comes before.
/// 4. `tombstones`, `readers`, `collected`: leaves. Each is held only to clone, swap or update
///    its value, and nothing else is taken or done (no I/O) while it is held.
///
/// So a commit waits only for the WAL (other commits' writes, a group fsync, a flush's cut),
/// never for block, tombstones or checkpoint I/O; a query waits for no commit's I/O, and for
/// I/O at all only while a corrupt block is being moved into quarantine.
pub struct Db {
    dir: PathBuf,
    opts: Options,
    head: Arc<Head>,
    wal: Wal,
    /// The published blocks (the catalog) and the quarantine that takes corrupt ones out.
    blocks: Arc<Blocks>,
    /// Deleted intervals, swapped whole once the tombstones file holding them is durable.
    tombstones: RwLock<Arc<Tombstones>>,
    /// Commits hold it shared from their WAL write until their samples are in the head; a flush
    /// holds it exclusively to move the head's lower bound and to cut the WAL, so no commit is
    /// half-way across either (an append racing a flush is never lost).
    commit_gate: RwLock<()>,
    /// One structural change (flush, compaction, retention, deletion, clean, snapshot) at a
    /// time: a deletion must see each sample in the head or in a block, never in between.
    maintenance: Mutex<()>,
    /// Every querier holds a clone of the current epoch. A flush publishes its block, starts a
    /// new epoch and waits for the queriers of the old one before it truncates the head: a
    /// querier holds a catalog taken before the block existed and reads the head lazily, so
    /// truncating under it would hide the flushed window from it.
    readers: Mutex<Arc<()>>,
    counters: DbCounters,
    refused: Vec<RefusedBlock>,
    replay: wal::ReplayStats,
    /// WAL samples outside the storable range the replay at open dropped.
    replay_out_of_range: u64,
    /// Series garbage-collected from the head, with the WAL segment active when they went:
    /// their samples may still be in segments a remote-write hold keeps, so checkpoints carry
    /// their series records while such a segment is on disk.
    collected: Mutex<HashMap<SeriesRef, (Labels, u64)>>,
    _lock: File,
}

/// The `maintenance` lock of one [`Db`], held: what a function that must run inside a
/// structural change takes as a parameter, so the compiler checks the caller holds the lock.
struct Maintenance<'a> {
    db: &'a Db,
    _guard: MutexGuard<'a, ()>,
}

impl Maintenance<'_> {
    /// Checks (in debug builds) that this is `db`'s lock, not another database's.
    fn of(&self, db: &Db) {
        debug_assert!(std::ptr::eq(self.db, db), "maintenance guard of another Db");
    }
}

/// Opens every published block of `blocks_dir`. Corrupt blocks are reported (logged and
/// returned) and left out; with `quarantine` they are also moved into its directory. Blocks
/// superseded by a finished compaction are deleted when `delete_superseded`, else only left out.
fn open_blocks(
    blocks_dir: &Path,
    delete_superseded: bool,
    quarantine: Option<&Blocks>,
) -> Result<OpenedBlocks, StorageError> {
    let mut blocks = Vec::new();
    let mut refused = Vec::new();
    let mut vanished = 0;
    for path in sstable::list_blocks(blocks_dir)? {
        match Block::open(&path) {
            // Written by an older import that took any timestamp: its range would set the
            // head's lower bound past every real sample, or start windows no arithmetic reaches.
            Ok(b) if !is_storable_time(b.meta().mint) || !is_storable_time(b.meta().maxt) => {
                let reason = format!(
                    "time range {}..{} ms is outside the storable range {MIN_TIME}..{MAX_TIME} (years 0000 to 9999)",
                    b.meta().mint,
                    b.meta().maxt
                );
                match quarantine {
                    Some(q) => refused.push(q.quarantine_file(&path, &reason)),
                    None => {
                        error!(path = %path.display(), reason, "refusing block; it is left out of every query");
                        refused.push(RefusedBlock {
                            path,
                            reason,
                            quarantined_to: None,
                        });
                    }
                }
            }
            Ok(b) => blocks.push(Arc::new(b)),
            // A reader beside a running agent may see a block vanish after listing it.
            Err(SstError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                vanished += 1;
            }
            Err(e) => match quarantine {
                Some(q) => refused.push(q.quarantine_file(&path, &e.to_string())),
                None => {
                    error!(path = %path.display(), error = %e, "refusing corrupt block; it is left out of every query");
                    refused.push(RefusedBlock {
                        path,
                        reason: e.to_string(),
                        quarantined_to: None,
                    });
                }
            },
        }
    }
    let superseded: HashSet<BlockId> = blocks
        .iter()
        .flat_map(|b| b.meta().sources.iter().cloned())
        .collect();
    let (gone, live): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|b| superseded.contains(&b.meta().id));
    for b in gone {
        if delete_superseded {
            info!(block = %b.meta().id, "deleting block already merged by a finished compaction");
            std::fs::remove_file(&b.meta().path).map_err(io_err(&b.meta().path))?;
        }
    }
    Ok(OpenedBlocks {
        live,
        refused,
        vanished,
    })
}

/// Deletes the file of a block just taken out of the catalog. A file already gone was moved
/// into quarantine by a reader that found it corrupt before the block was unpublished.
fn remove_block_file(b: &Block) -> Result<(), StorageError> {
    match std::fs::remove_file(&b.meta().path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&b.meta().path)(e)),
        _ => Ok(()),
    }
}

/// The outcome of opening a blocks directory.
struct OpenedBlocks {
    /// Blocks to serve.
    live: Vec<Arc<Block>>,
    /// Corrupt blocks left out.
    refused: Vec<RefusedBlock>,
    /// Blocks listed that were gone when opened (deleted by a concurrent compaction).
    vanished: usize,
}

/// Samples a WAL replay left out of the head.
#[derive(Debug, Default, Clone, Copy)]
struct ReplayDropped {
    /// Samples whose series record was lost.
    unknown: u64,
    /// Samples outside the storable range, written by a version that did not refuse them: kept,
    /// they would wedge the head (no block window can hold them, so it never flushes again).
    out_of_range: u64,
}

/// Which head series each WAL ref names, for the length of a replay. A series record normally
/// gets its WAL ref as its head ref, and then the head's own ref index answers: only the
/// exceptions are kept here, so replay holds no second map of every series (at 1M series a map
/// of them all was ~35 MB on top of the head, more than a running agent holds).
#[derive(Default)]
struct ReplayRefs {
    /// WAL refs that do not name the head series of the same ref: `Some` a series whose labels
    /// the head already had under another ref (or whose ref another series took), `None` a head
    /// ref handed out during this replay that no series record has named yet (its samples are
    /// of a lost series record, as with any unknown ref).
    exceptions: FastMap<Option<Arc<MemSeries>>>,
}

impl ReplayRefs {
    fn define(&mut self, head: &Head, sref: u64, labels: &Labels) {
        let (series, created) = head.create_with_ref(labels, sref);
        series.mark_logged();
        if series.sref == sref {
            self.exceptions.remove(&sref);
            return;
        }
        if created {
            // A new series under a ref the head picked: greater than every WAL ref read so
            // far, so no record has named it yet.
            self.exceptions.insert(series.sref, None);
        }
        self.exceptions.insert(sref, Some(series));
    }

    fn get(&self, head: &Head, sref: u64) -> Option<Arc<MemSeries>> {
        match self.exceptions.get(&sref) {
            Some(s) => s.clone(),
            None => head.get_by_ref(sref),
        }
    }
}

/// Applies a record's samples of either kind: a commit's samples of one series (a
/// remote-write request carries several per series) sit next to each other, so each run takes
/// one lookup and one lock; samples of unknown series or outside the stored range are counted
/// as dropped. `key` gives a sample's (ref, timestamp).
fn replay_runs<T>(
    head: &Head,
    refs: &ReplayRefs,
    list: &[T],
    dropped: &mut ReplayDropped,
    key: impl Fn(&T) -> (u64, i64),
    mut apply: impl FnMut(&mut SeriesState, &T),
) {
    let mut rest = list;
    while let Some(first) = rest.first() {
        let sref = key(first).0;
        let n = rest
            .iter()
            .position(|s| key(s).0 != sref)
            .unwrap_or(rest.len());
        let (run, after) = rest.split_at(n);
        rest = after;
        let Some(series) = refs.get(head, sref) else {
            for s in run {
                if is_storable_time(key(s).1) {
                    dropped.unknown += 1;
                } else {
                    dropped.out_of_range += 1;
                }
            }
            continue;
        };
        let mut st = series.lock();
        for s in run {
            if !is_storable_time(key(s).1) {
                dropped.out_of_range += 1;
                continue;
            }
            apply(&mut st, s);
        }
    }
}

/// Applies one WAL record to a head during replay; `refs` maps WAL refs to head series.
fn replay_record(head: &Head, refs: &mut ReplayRefs, rec: &Record, dropped: &mut ReplayDropped) {
    match rec {
        Record::Series(list) => {
            for s in list {
                refs.define(head, s.sref, &s.labels);
            }
        }
        // Rejections while applying repeat decisions made before the crash, or are samples
        // also present in a checkpoint: nothing acknowledged is dropped.
        Record::Samples(list) => replay_runs(
            head,
            refs,
            list,
            dropped,
            |s| (s.sref, s.t),
            |st, s| {
                let _ = st.append_replayed(s.t, s.v);
            },
        ),
        Record::Histograms(list) => replay_runs(
            head,
            refs,
            list,
            dropped,
            |s| (s.sref, s.t),
            |st, s| {
                let _ = st.append_histogram_replayed(s.t, s.h.clone());
            },
        ),
        Record::Chunks(list) => {
            let mut buf = Vec::new();
            for c in list {
                let Some(series) = refs.get(head, c.sref) else {
                    dropped.unknown += 1;
                    continue;
                };
                buf.clear();
                if let Err(e) = chunk::decode(&c.data, &mut buf) {
                    warn!(sref = c.sref, error = %e, "undecodable chunk in WAL checkpoint skipped");
                    continue;
                }
                let mut st = series.lock();
                for s in &buf {
                    if !is_storable_time(s.t) {
                        dropped.out_of_range += 1;
                        continue;
                    }
                    let _ = st.append_replayed(s.t, s.v);
                }
            }
        }
    }
}

/// Asks the allocator to hand the pages freed since back to the system. glibc's malloc keeps
/// freed memory in its arenas and returns only what lies at the top of a heap, so after
/// garbage collection freed the series of a churned deployment (small allocations spread
/// through the heap) the process would stay at its peak size; `malloc_trim` releases every
/// free page. Elsewhere the allocator's own policy applies.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let began = Instant::now();
        // SAFETY: malloc_trim takes no pointer and only walks glibc's own arenas, under their
        // locks; it is safe to call from any thread at any time.
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(
            released = released != 0,
            took_ms = began.elapsed().as_millis() as u64,
            "returned freed memory to the system"
        );
    }
}

impl Db {
    /// Opens (creating if needed) the data directory: takes its lock, opens the blocks, replays
    /// the WAL into the head.
    pub fn open(dir: &Path, opts: Options) -> Result<Db, StorageError> {
        // The lock first: nothing in a directory another process holds is touched.
        let dir_lock = lock_data_dir(dir)?;
        let blocks_dir = dir.join("blocks");
        let wal_dir = dir.join("wal");
        for d in [&blocks_dir, &wal_dir] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        // Before any block or WAL segment is touched: a damaged record of deletions stops the
        // open rather than let deleted data reappear.
        tombstones::remove_temp_file(dir)?;
        let tombstones = tombstones::load(dir)?;
        sstable::remove_temp_files(&blocks_dir)?;
        let shelf = Arc::new(Blocks::new(dir, Catalog::default()));
        let OpenedBlocks {
            live: blocks,
            refused,
            ..
        } = open_blocks(&blocks_dir, true, Some(&shelf))?;

        // Closed head chunks go to `chunks_head/`, out of the heap. It is derived data: what a
        // previous run left is discarded and the WAL replay below writes it again.
        let chunks_dir = dir.join("chunks_head");
        let head = Arc::new(match ChunkFile::create(&chunks_dir) {
            Ok(file) => Head::with_chunk_file(file),
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Head::new(),
            Err(e) => return Err(io_err(&chunks_dir)(e)),
        });
        // The head's lower bound is not persisted, and the blocks are what it protects: without
        // it a reopened head accepts a sample at a timestamp a block already holds, and with a
        // different value that acknowledged sample is hidden by the block's in every query.
        if let Some(maxt) = blocks.iter().map(|b| b.meta().maxt).max() {
            head.set_min_valid(maxt.saturating_add(1));
        }
        let mut refs = ReplayRefs::default();
        let mut dropped = ReplayDropped::default();
        let wal_opts = WalOptions {
            fsync: opts.fsync,
            segment_size: opts.wal_segment_size,
        };
        let (wal, replay) = Wal::open(&wal_dir, wal_opts, |rec| {
            replay_record(&head, &mut refs, rec, &mut dropped);
        })?;
        if dropped.unknown > 0 {
            warn!(
                samples = dropped.unknown,
                "WAL samples whose series record was lost to corruption were dropped"
            );
        }
        let counters = DbCounters::default();
        if dropped.out_of_range > 0 {
            warn!(
                samples = dropped.out_of_range,
                min_time = MIN_TIME,
                max_time = MAX_TIME,
                "WAL samples outside the storable range (years 0000 to 9999), written by an older version, were dropped (counted as out of bounds)"
            );
            counters
                .out_of_bounds
                .fetch_add(dropped.out_of_range, Ordering::Relaxed);
        }
        info!(
            blocks = blocks.len(),
            series = head.num_series(),
            samples = replay.samples,
            "storage opened"
        );
        Ok(Db {
            dir: dir.to_path_buf(),
            opts,
            head,
            wal,
            blocks: {
                *write(&shelf.catalog) = Arc::new(Catalog::default().with(blocks, &[]));
                shelf
            },
            tombstones: RwLock::new(Arc::new(tombstones)),
            commit_gate: RwLock::new(()),
            maintenance: Mutex::new(()),
            readers: Mutex::new(Arc::new(())),
            counters,
            refused,
            replay,
            replay_out_of_range: dropped.out_of_range,
            collected: Mutex::new(HashMap::new()),
            _lock: dir_lock,
        })
    }

    /// A follower of the WAL for readers outside storage (remote write); their position
    /// files live in `<data>/remote_write/`.
    pub fn wal_follower(&self) -> wal::WalFollower {
        self.wal.follower(&self.dir.join("remote_write"))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A batch of appends; nothing is stored or visible before [`Appender::commit`]. Samples
    /// more than [`MAX_AHEAD_MS`] ahead of the wall clock are refused.
    pub fn appender(&self) -> Appender<'_> {
        self.appender_at(wall_clock_ms())
    }

    /// A batch of appends whose future bound counts from `now_ms`, the caller's clock (a
    /// scrape's time, a request's arrival): samples more than [`MAX_AHEAD_MS`] after it are
    /// refused.
    pub fn appender_at(&self, now_ms: i64) -> Appender<'_> {
        Appender {
            db: self,
            pending: Vec::new(),
            pending_h: Vec::new(),
            max_t: now_ms.saturating_add(MAX_AHEAD_MS).min(MAX_TIME),
        }
    }

    /// A consistent read view over the current blocks and the head.
    pub fn querier(&self) -> Querier {
        // Tombstones first: a clean publishes its rewritten blocks before it drops the
        // tombstones they made needless, so a view never pairs old blocks with fewer tombstones.
        let tombstones = self.tombstones();
        // The epoch before the catalog: a flush that publishes after this clone waits for it.
        let reader = lock(&self.readers).clone();
        Querier {
            catalog: self.catalog(),
            head: self.head.clone(),
            tombstones,
            reader: Some(reader),
            quarantine: Some(self.blocks.clone()),
            skipped: Default::default(),
        }
    }

    /// The deleted intervals in force.
    pub fn tombstones(&self) -> Arc<Tombstones> {
        read(&self.tombstones).clone()
    }

    /// The current catalog snapshot.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.blocks.catalog()
    }

    /// Whether a commit waits for an fsync (`fsync: always`), so may take as long as the disk.
    pub fn commits_wait_for_fsync(&self) -> bool {
        self.opts.fsync == FsyncPolicy::Always
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Totals since open.
    pub fn counters(&self) -> &DbCounters {
        &self.counters
    }

    /// Blocks refused as corrupt at open (and moved into quarantine).
    pub fn refused_blocks(&self) -> &[RefusedBlock] {
        &self.refused
    }

    /// Every block quarantined since open: refused at open, failed by the scrub, or found
    /// corrupt by a query or a compaction.
    pub fn quarantined_blocks(&self) -> Vec<RefusedBlock> {
        self.blocks.quarantined()
    }

    /// How many blocks were quarantined since open.
    pub fn quarantined_count(&self) -> u64 {
        self.blocks.quarantined_count()
    }

    /// Checks every block not yet checked in full since open (each chunk's CRC, the index's
    /// consistency) and quarantines those that fail; returns how many. Reads each block once;
    /// run in the background (`maintain` does), it holds no lock while reading.
    pub fn scrub(&self) -> usize {
        self.blocks.scrub()
    }

    /// What the WAL replay at open found.
    pub fn replay_stats(&self) -> &wal::ReplayStats {
        &self.replay
    }

    /// WAL samples outside the storable range (written by an older version) the replay at
    /// open dropped.
    pub fn replay_out_of_range(&self) -> u64 {
        self.replay_out_of_range
    }

    /// WAL state.
    pub fn wal_stats(&self) -> wal::WalStats {
        self.wal.stats()
    }

    /// How long the WAL's fsyncs since open took, bucketed.
    pub fn wal_fsync_durations(&self) -> HistogramSnapshot {
        self.wal.fsync_durations()
    }

    /// Swaps the catalog for one with `add` published and `remove` unpublished: part of a
    /// structural change, so a deletion never sees a sample in neither the head nor a block.
    fn publish(&self, m: &Maintenance<'_>, add: Vec<Arc<Block>>, remove: &[BlockId]) {
        m.of(self);
        let mut cat = write(&self.blocks.catalog);
        *cat = Arc::new(cat.with(add, remove));
    }

    fn lock_maintenance(&self) -> Maintenance<'_> {
        Maintenance {
            db: self,
            _guard: lock(&self.maintenance),
        }
    }

    /// Writes every complete block window the head holds to a block, oldest first. A window is
    /// flushed once the head spans more than 1.5 × `block_duration` from its start.
    pub fn flush(&self) -> Result<Vec<BlockMeta>, StorageError> {
        let r = self.flush_windows();
        if r.is_err() {
            self.counters.flushes_failed.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn flush_windows(&self) -> Result<Vec<BlockMeta>, StorageError> {
        let m = self.lock_maintenance();
        let bd = self.opts.block_duration;
        let mut written = Vec::new();
        let mut freed = 0;
        while let Some((lo, hi)) = self.head.time_range() {
            // The head holds only storable times, but nothing here may wrap whatever it holds:
            // a wrapped span once read as negative and the head never flushed again.
            let (start, end) = compact::window(lo, bd);
            if end <= lo || hi.saturating_sub(start) < bd.saturating_add(bd / 2) {
                break;
            }
            let began = Instant::now();
            {
                // From here on the head refuses samples older than `end`; waiting for the gate
                // means every commit already past its checks is in the head before we read it.
                let _g = write(&self.commit_gate);
                self.head.set_min_valid(end);
            }
            if let Some(meta) = self.write_head_block(&m, start, end - 1)? {
                let block = Arc::new(Block::open(&meta.path)?);
                self.publish(&m, vec![block], &[]);
                info!(block = %meta.id, series = meta.num_series, samples = meta.num_samples, "head flushed");
                written.push(meta);
                self.wait_for_older_readers(&m);
            }
            let collected = self.head.truncate(end, end);
            if !collected.is_empty() {
                info!(
                    series = collected.len(),
                    "garbage-collected series with no samples left"
                );
                freed += collected.len();
                let active = self.wal.stats().last_segment;
                let mut c = lock(&self.collected);
                for s in collected {
                    let sref = s.sref;
                    c.insert(sref, (s.labels(), active));
                }
            }
            self.counters.flushes.fetch_add(1, Ordering::Relaxed);
            self.checkpoint(&m)?;
            self.counters.flush_durations.observe(began.elapsed());
        }
        // A tenth of the head or more went: give the freed pages back to the system, or the
        // process keeps the size of its peak (see `release_free_memory`).
        if freed > 0 && freed as u64 * 10 >= self.head.num_series() + freed as u64 {
            release_free_memory();
        }
        Ok(written)
    }

    /// Starts a new reader epoch and waits until no querier of the previous one is left. Queries
    /// end at their timeout, so this wait is bounded by the longest query; it is logged when long.
    fn wait_for_older_readers(&self, m: &Maintenance<'_>) {
        m.of(self);
        let old = std::mem::replace(&mut *lock(&self.readers), Arc::new(()));
        let began = Instant::now();
        let mut pause = Duration::from_millis(1);
        let mut warned = false;
        while Arc::strong_count(&old) > 1 {
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(100));
            if !warned && began.elapsed() > Duration::from_secs(30) {
                warn!(
                    readers = Arc::strong_count(&old) - 1,
                    "head truncation waits for queries that started before the flush"
                );
                warned = true;
            }
        }
    }

    fn write_head_block(
        &self,
        m: &Maintenance<'_>,
        mint: i64,
        maxt: i64,
    ) -> Result<Option<BlockMeta>, StorageError> {
        m.of(self);
        let mut series = self.head.all_series();
        series.sort_by(|a, b| a.cmp_labels(b));
        let mut w = BlockWriter::new(&self.dir.join("blocks"), 1, Vec::new())?;
        let mut samples = Vec::new();
        let mut histograms = Vec::new();
        let deleted = self.tombstones();
        for s in series {
            samples.clear();
            histograms.clear();
            {
                let st = s.lock();
                st.samples_in(mint, maxt, &mut samples)?;
                st.histograms_in(mint, maxt, &mut histograms)?;
            }
            let labels = s.labels();
            deleted.filter(&labels, &mut samples);
            if !histograms.is_empty() {
                deleted.filter_histograms(&labels, &mut histograms);
            }
            if !samples.is_empty() || !histograms.is_empty() {
                w.add_series(&labels, &series_chunks(&samples, &histograms))?;
            }
        }
        if w.num_series() == 0 {
            return Ok(None);
        }
        Ok(Some(w.finish()?))
    }

    /// Rewrites the WAL as a checkpoint of the head (its series and samples, as chunks) and
    /// drops the segments it covers, so WAL disk use stays bounded by what the head holds
    /// (and the backlog remote write still needs, within its limit).
    fn checkpoint(&self, m: &Maintenance<'_>) -> Result<(), StorageError> {
        m.of(self);
        let upto = {
            let _g = write(&self.commit_gate);
            self.wal.cut()?
        };
        // Collected series whose samples may sit in a segment that stays stay resolvable for
        // the readers of those segments.
        let keep_from = self.wal.retained_from(upto);
        let carried: Vec<SeriesRecord> = {
            let mut c = lock(&self.collected);
            c.retain(|_, (_, last)| *last >= keep_from);
            // Its peak is one flush's collection; keeping that room would hold memory for
            // series long gone.
            if c.capacity() / 4 > c.len() {
                c.shrink_to_fit();
            }
            c.iter()
                .map(|(sref, (labels, _))| SeriesRecord {
                    sref: *sref,
                    labels: labels.clone(),
                })
                .collect()
        };
        let series = self.head.all_series();
        // A chunk that fails its checksum abandons the checkpoint: no WAL segment is dropped
        // for samples it could not copy.
        let records = series.chunks(1000).flat_map(|group| {
            let defs = group
                .iter()
                .map(|s| SeriesRecord {
                    sref: s.sref,
                    labels: s.labels(),
                })
                .collect();
            let chunks = group
                .iter()
                .map(|s| {
                    let sref = s.sref;
                    let chunks = s.lock().encoded_chunks()?;
                    Ok(chunks
                        .into_iter()
                        .map(move |(mint, maxt, data)| ChunkRecord {
                            sref,
                            mint,
                            maxt,
                            data,
                        }))
                })
                .collect::<Result<Vec<_>, StorageError>>()
                .map(|runs| Record::Chunks(runs.into_iter().flatten().collect()))
                .map_err(|e| WalError::CheckpointAbandoned(e.to_string()));
            // Histogram samples after the float chunks: replay keeps each kind's own order.
            let histograms = group
                .iter()
                .map(|s| {
                    let mut hs = Vec::new();
                    s.lock().histograms_in(i64::MIN, i64::MAX, &mut hs)?;
                    let sref = s.sref;
                    Ok(hs.into_iter().map(move |x| HistogramRecord {
                        sref,
                        t: x.t,
                        h: x.h,
                    }))
                })
                .collect::<Result<Vec<_>, StorageError>>()
                .map(|runs| Record::Histograms(runs.into_iter().flatten().collect()))
                .map_err(|e| WalError::CheckpointAbandoned(e.to_string()));
            [Ok(Record::Series(defs)), chunks, histograms]
        });
        let carried = (!carried.is_empty()).then_some(Ok(Record::Series(carried)));
        self.wal.try_checkpoint(upto, records.chain(carried))?;
        Ok(())
    }

    /// Runs one compaction if one is due; returns the new block.
    pub fn compact(&self) -> Result<Option<BlockMeta>, StorageError> {
        let began = Instant::now();
        let r = self.compact_once();
        match &r {
            Ok(Some(_)) => {
                self.counters.compactions.fetch_add(1, Ordering::Relaxed);
                self.counters.compaction_durations.observe(began.elapsed());
            }
            Ok(None) => {}
            Err(_) => {
                self.counters
                    .compactions_failed
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        r
    }

    fn compact_once(&self) -> Result<Option<BlockMeta>, StorageError> {
        let m = self.lock_maintenance();
        // A group whose every sample was deleted leaves no block: its sources are dropped and
        // planning goes on, so `None` still means nothing is due.
        loop {
            let cat = self.catalog();
            let spans: Vec<BlockSpan> = cat
                .blocks
                .iter()
                .map(|b| BlockSpan {
                    id: b.meta().id.clone(),
                    mint: b.meta().mint,
                    maxt: b.meta().maxt,
                })
                .collect();
            let ranges = compact::ranges(self.opts.block_duration, self.opts.retention_time);
            let frontier = self
                .head
                .time_range()
                .map_or(i64::MAX, |(lo, _)| lo.max(self.head.min_valid()));
            let Some(ids) = compact::plan(&spans, &ranges, frontier) else {
                return Ok(None);
            };
            let sources: Vec<Arc<Block>> = cat
                .blocks
                .iter()
                .filter(|b| ids.contains(&b.meta().id))
                .cloned()
                .collect();
            let merged = match merge_blocks(&self.dir.join("blocks"), &sources, &self.tombstones())
            {
                Ok(m) => m,
                Err(e) => {
                    // A damaged source is never merged into a new block: it is quarantined
                    // (the merge's temp file is already gone) and planning starts over.
                    let bad = corrupt_block_path(&e)
                        .and_then(|p| sources.iter().find(|b| b.meta().path == p));
                    match bad {
                        Some(b) => {
                            self.blocks.quarantine(b, &e.to_string());
                            continue;
                        }
                        None => return Err(e),
                    }
                }
            };
            let old: Vec<BlockId> = sources.iter().map(|b| b.meta().id.clone()).collect();
            let add = match &merged {
                Some(meta) => vec![Arc::new(Block::open(&meta.path)?)],
                None => Vec::new(),
            };
            // Publish first, delete after: a crash in between leaves sources that the next open
            // recognises (they are listed in the new block) and deletes.
            self.publish(&m, add, &old);
            for b in &sources {
                remove_block_file(b)?;
            }
            let Some(meta) = merged else {
                info!(
                    sources = old.len(),
                    "every sample of the blocks due for compaction was deleted; removed them"
                );
                continue;
            };
            info!(block = %meta.id, sources = old.len(), mint = meta.mint, maxt = meta.maxt, "compacted");
            return Ok(Some(meta));
        }
    }

    /// Deletes the blocks retention no longer keeps; returns their ids.
    pub fn apply_retention(&self) -> Result<Vec<BlockId>, StorageError> {
        let m = self.lock_maintenance();
        let cat = self.catalog();
        let now_max = cat
            .max_time()
            .into_iter()
            .chain(self.head.time_range().map(|(_, hi)| hi))
            .max()
            .unwrap_or(i64::MIN);
        let spans: Vec<(BlockId, i64, i64, u64)> = cat
            .blocks
            .iter()
            .map(|b| {
                (
                    b.meta().id.clone(),
                    b.meta().mint,
                    b.meta().maxt,
                    b.meta().size_bytes,
                )
            })
            .collect();
        let drop = compact::retention(
            &spans,
            now_max,
            self.opts.retention_time,
            self.opts.retention_size,
        );
        let gone: Vec<Arc<Block>> = cat
            .blocks
            .iter()
            .filter(|b| drop.contains(&b.meta().id))
            .cloned()
            .collect();
        let ids: Vec<BlockId> = gone.iter().map(|b| b.meta().id.clone()).collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        self.publish(&m, Vec::new(), &ids);
        for b in &gone {
            remove_block_file(b)?;
            info!(block = %b.meta().id, maxt = b.meta().maxt, "retention deleted block");
        }
        self.counters
            .retention_deletes
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(ids)
    }

    /// Flush, scrub, then compact until nothing is due, then retention: the periodic background
    /// work.
    pub fn maintain(&self) -> Result<(), StorageError> {
        self.flush()?;
        // Before compaction, so a block found damaged is set aside rather than read; the
        // first run after open checks every block, later runs only the new ones.
        self.scrub();
        while self.compact()?.is_some() {}
        self.apply_retention()?;
        // Pages of the head chunk file mapped by the flush, its checkpoint and queries since
        // the last run leave the RSS (they stay in the page cache).
        self.head.release_chunk_pages();
        Ok(())
    }

    /// Deletes the samples in [mint, maxt] of every series matching any of `selectors`: they
    /// vanish from every read at once, and stay gone across restarts, flushes and compactions.
    /// The tombstones recording the deletion are durable (fsynced) when this returns.
    pub fn delete_series(
        &self,
        selectors: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<DeleteStats, StorageError> {
        let _m = self.lock_maintenance();
        let current = self.tombstones();
        let mut next = (*current).clone();
        let stats = delete::add_deletions(&self.querier(), selectors, mint, maxt, &mut next)?;
        if next != *current {
            tombstones::store(&self.dir, &next)?;
            *write(&self.tombstones) = Arc::new(next);
            info!(
                series = stats.series,
                mint, maxt, "deleted series data (tombstoned)"
            );
        }
        Ok(stats)
    }

    /// Rewrites every block holding deleted samples without them (the new block published
    /// before the old one is deleted), then drops the tombstones no stored sample needs.
    pub fn clean_tombstones(&self) -> Result<CleanStats, StorageError> {
        let m = self.lock_maintenance();
        let ts = self.tombstones();
        let mut stats = CleanStats::default();
        if ts.is_empty() {
            return Ok(stats);
        }
        let blocks_dir = self.dir.join("blocks");
        for old in self.catalog().blocks.iter() {
            if !delete::holds_deleted(old, &ts)? {
                continue;
            }
            let rewritten = match delete::rewrite_block(old, &ts, &blocks_dir) {
                // A damaged block is set aside, never rewritten into a new one.
                Err(e) if corrupt_block_path(&e) == Some(old.meta().path.as_path()) => {
                    self.blocks.quarantine(old, &e.to_string());
                    continue;
                }
                r => r?,
            };
            let add = match rewritten {
                Some(meta) => {
                    stats.blocks_rewritten += 1;
                    info!(old = %old.meta().id, new = %meta.id, samples = meta.num_samples, "block rewritten without deleted samples");
                    vec![Arc::new(Block::open(&meta.path)?)]
                }
                None => {
                    stats.blocks_removed += 1;
                    info!(block = %old.meta().id, "every sample of the block was deleted; removing it");
                    Vec::new()
                }
            };
            self.publish(&m, add, std::slice::from_ref(&old.meta().id));
            remove_block_file(old)?;
        }
        let kept = delete::still_needed(&ts, &self.head);
        if kept != *ts {
            stats.series_dropped = (ts.num_series() - kept.num_series()) as u64;
            tombstones::store(&self.dir, &kept)?;
            *write(&self.tombstones) = Arc::new(kept);
        }
        Ok(stats)
    }

    /// Writes a snapshot of the blocks (and of the head unless `with_head` is false) into the
    /// new or empty directory `out`, deleted data left out or tombstoned; see
    /// [`super::write_snapshot`].
    pub fn snapshot(
        &self,
        out: &Path,
        with_head: bool,
    ) -> Result<super::SnapshotStats, StorageError> {
        // No flush in between: it would move samples from the head to a block this view lacks.
        let _m = self.lock_maintenance();
        let q = self.querier();
        let q = if with_head { q } else { q.without_head() };
        super::write_snapshot(&q, out, self.opts.block_duration)
    }

    /// Syncs the WAL; everything committed is durable when it returns.
    pub fn sync(&self) -> Result<(), StorageError> {
        Ok(self.wal.sync()?)
    }

    /// Syncs and closes. Dropping without `close` also syncs, but cannot report an error.
    pub fn close(self) -> Result<(), StorageError> {
        let Db { wal, .. } = self;
        Ok(wal.close()?)
    }
}

/// Writes one block holding every series of `sources` (merged, deduplicated by timestamp),
/// without the samples `deleted` covers; `None` when nothing is left to write.
pub(crate) fn merge_blocks(
    blocks_dir: &Path,
    sources: &[Arc<Block>],
    deleted: &Tombstones,
) -> Result<Option<BlockMeta>, StorageError> {
    let mut sorted: Vec<&Arc<Block>> = sources.iter().collect();
    sorted.sort_by_key(|b| (b.meta().mint, b.meta().id.clone()));
    let mut index: BTreeMap<Labels, Vec<(usize, Vec<sstable::ChunkMeta>)>> = BTreeMap::new();
    for (i, b) in sorted.iter().enumerate() {
        for id in 0..b.num_series() {
            let (labels, chunks) = b.series(id)?;
            index.entry(labels).or_default().push((i, chunks));
        }
    }
    let level = sorted.iter().map(|b| b.meta().level).max().unwrap_or(0) + 1;
    let ids = sorted.iter().map(|b| b.meta().id.clone()).collect();
    let mut w = BlockWriter::new(blocks_dir, level, ids)?;
    let mut samples = Vec::new();
    let mut histograms = Vec::new();
    let mut buf = Vec::new();
    for (labels, parts) in index {
        samples.clear();
        histograms.clear();
        for (i, chunks) in parts {
            let b = sorted[i];
            for c in chunks {
                read_samples(b, &c, &mut buf, &mut samples, &mut histograms)?;
            }
        }
        if !samples.windows(2).all(|w| w[0].t < w[1].t) {
            samples.sort_by_key(|s| s.t);
            samples.dedup_by_key(|s| s.t);
        }
        deleted.filter(&labels, &mut samples);
        if !histograms.is_empty() {
            settle_histograms(&samples, &mut histograms);
            deleted.filter_histograms(&labels, &mut histograms);
        }
        if samples.is_empty() && histograms.is_empty() {
            continue;
        }
        w.add_series(&labels, &series_chunks(&samples, &histograms))?;
    }
    // Dropping an unfinished writer removes its temp file.
    if w.num_series() == 0 {
        return Ok(None);
    }
    Ok(Some(w.finish()?))
}

/// A head series held by a writer that appends to it again and again (a scrape target's cache
/// entry), so each sample skips the lookup by ref or labels. It keeps the series' memory alive
/// while held; a series garbage collection removed is refused by [`Appender::append_handle`].
#[derive(Clone)]
pub struct SeriesHandle(Arc<MemSeries>);

impl SeriesHandle {
    /// The series' labels (a copy: the head keeps them encoded).
    pub fn labels(&self) -> Labels {
        self.0.labels()
    }

    /// Reads, without writing, what appending and committing a sample of the series touch
    /// first (its reference count, flags and lock); the sum means nothing. A writer about to
    /// append to many series calls it for each of them first: these reads do not wait for each
    /// other, so the series come into the CPU's cache together instead of one cache miss at a
    /// time behind each append's atomic increment.
    #[inline]
    pub fn warm(&self) -> usize {
        Arc::strong_count(&self.0)
            + usize::from(self.0.is_unlinked())
            + usize::from(self.0.is_logged())
            + usize::from(self.0.state.is_poisoned())
    }
}

/// Checks a histogram before it is logged: Prometheus's validation (its texts), then what
/// storage relies on besides (a record the WAL's reader would refuse must never be written,
/// and a chunk must be able to hold it): a schema it stores, as many bucket counts on each
/// side as its spans say, spans in order, at most the codec's bucket limit.
pub(crate) fn check_histogram(h: &HistogramValue) -> Result<(), StorageError> {
    let valid = match h {
        HistogramValue::Int(h) => h.validate(),
        HistogramValue::Float(h) => h.validate(),
    };
    valid.map_err(|e| StorageError::InvalidHistogram(e.to_string()))?;
    fn side(spans: &[Span], buckets: usize, which: &str) -> Result<(), StorageError> {
        // Lengths are u32: their sum fits u64 for any span list memory can hold.
        let want: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
        if want != buckets as u64 {
            return Err(StorageError::InvalidHistogram(format!(
                "{which} side has {buckets} buckets, its spans {want}"
            )));
        }
        Ok(())
    }
    let (schema, pos, np, neg, nn) = match h {
        HistogramValue::Int(h) => (
            h.schema,
            &h.positive_spans,
            h.positive_buckets.len(),
            &h.negative_spans,
            h.negative_buckets.len(),
        ),
        HistogramValue::Float(h) => (
            h.schema,
            &h.positive_spans,
            h.positive_buckets.len(),
            &h.negative_spans,
            h.negative_buckets.len(),
        ),
    };
    if !is_valid_schema(schema) {
        return Err(StorageError::InvalidHistogram(format!(
            "schema {schema} is not -4..8 or -53"
        )));
    }
    side(pos, np, "positive")?;
    side(neg, nn, "negative")?;
    for (spans, which) in [(pos, "positive"), (neg, "negative")] {
        if !chunk::histogram::spans_in_order(spans) {
            return Err(StorageError::InvalidHistogram(format!(
                "a {which} span after the first has a negative offset"
            )));
        }
    }
    if !chunk::histogram::fits(h) {
        return Err(StorageError::InvalidHistogram(format!(
            "more than {} buckets",
            chunk::histogram::MAX_VALUES
        )));
    }
    Ok(())
}

/// A batch of samples committed together: one WAL commit, then visible at once.
pub struct Appender<'a> {
    db: &'a Db,
    pending: Vec<(Arc<MemSeries>, i64, f64)>,
    /// Histogram samples, committed after the float ones (kept apart so a float append
    /// carries no histogram's weight).
    pending_h: Vec<(Arc<MemSeries>, i64, HistogramValue)>,
    /// Newest timestamp accepted: the clock plus [`MAX_AHEAD_MS`], at most [`MAX_TIME`].
    max_t: i64,
}

impl Appender<'_> {
    /// Adds a sample for the series with `labels` (created if new); returns its ref, which
    /// [`Appender::append_ref`] takes to skip the lookup next time.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef, StorageError> {
        self.push_by_labels(labels, t, v).map(|s| s.sref)
    }

    /// Adds a sample for the series with these labels (created if new) and returns it.
    fn push_by_labels(
        &mut self,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<&Arc<MemSeries>, StorageError> {
        if labels.is_empty() {
            return Err(StorageError::EmptyLabels);
        }
        let (series, _) = self.db.head.get_or_create(labels);
        let at = self.pending.len();
        self.pending.push((series, t, v));
        Ok(&self.pending[at].0)
    }

    /// Adds a sample for a series by labels, like [`Appender::append`], and returns a handle to
    /// the series for [`Appender::append_handle`] next time.
    pub fn append_with_handle(
        &mut self,
        labels: &Labels,
        t: i64,
        v: f64,
    ) -> Result<SeriesHandle, StorageError> {
        self.push_by_labels(labels, t, v)
            .map(|s| SeriesHandle(Arc::clone(s)))
    }

    /// Adds a sample for the series a handle holds: no lookup, no lock. A handle whose series
    /// garbage collection took out of the head is [`StorageError::UnknownRef`], and the caller
    /// appends by its labels instead (a collection racing this append is caught by `commit`,
    /// which re-resolves a removed series by its labels).
    #[inline]
    pub fn append_handle(&mut self, h: &SeriesHandle, t: i64, v: f64) -> Result<(), StorageError> {
        if h.0.is_unlinked() {
            return Err(StorageError::UnknownRef(h.0.sref));
        }
        self.pending.push((Arc::clone(&h.0), t, v));
        Ok(())
    }

    /// Adds a sample for a series by ref; an unknown ref (collected, or from before a restart)
    /// is an error and the caller appends by labels instead.
    pub fn append_ref(&mut self, sref: SeriesRef, t: i64, v: f64) -> Result<(), StorageError> {
        let series = self
            .db
            .head
            .get_by_ref(sref)
            .ok_or(StorageError::UnknownRef(sref))?;
        self.pending.push((series, t, v));
        Ok(())
    }

    /// Adds a histogram sample for the series with `labels` (created if new); returns its ref.
    /// A histogram that breaks the rules is refused here, before it is logged. A series may
    /// hold floats and histograms at different times; at one timestamp it holds one sample.
    pub fn append_histogram(
        &mut self,
        labels: &Labels,
        t: i64,
        h: HistogramValue,
    ) -> Result<SeriesRef, StorageError> {
        self.push_histogram_by_labels(labels, t, h).map(|s| s.sref)
    }

    /// [`Appender::append_histogram`], returning a handle to the series for
    /// [`Appender::append_histogram_handle`] (or [`Appender::append_handle`]) next time.
    pub fn append_histogram_with_handle(
        &mut self,
        labels: &Labels,
        t: i64,
        h: HistogramValue,
    ) -> Result<SeriesHandle, StorageError> {
        self.push_histogram_by_labels(labels, t, h)
            .map(|s| SeriesHandle(Arc::clone(s)))
    }

    fn push_histogram_by_labels(
        &mut self,
        labels: &Labels,
        t: i64,
        h: HistogramValue,
    ) -> Result<&Arc<MemSeries>, StorageError> {
        if labels.is_empty() {
            return Err(StorageError::EmptyLabels);
        }
        check_histogram(&h)?;
        let (series, _) = self.db.head.get_or_create(labels);
        let at = self.pending_h.len();
        self.pending_h.push((series, t, h));
        Ok(&self.pending_h[at].0)
    }

    /// Adds a histogram sample for the series a handle holds, as
    /// [`Appender::append_handle`] does a float.
    pub fn append_histogram_handle(
        &mut self,
        handle: &SeriesHandle,
        t: i64,
        h: HistogramValue,
    ) -> Result<(), StorageError> {
        if handle.0.is_unlinked() {
            return Err(StorageError::UnknownRef(handle.0.sref));
        }
        check_histogram(&h)?;
        self.pending_h.push((Arc::clone(&handle.0), t, h));
        Ok(())
    }

    /// Adds a histogram sample for a series by ref, as [`Appender::append_ref`] does a float.
    pub fn append_histogram_ref(
        &mut self,
        sref: SeriesRef,
        t: i64,
        h: HistogramValue,
    ) -> Result<(), StorageError> {
        let series = self
            .db
            .head
            .get_by_ref(sref)
            .ok_or(StorageError::UnknownRef(sref))?;
        check_histogram(&h)?;
        self.pending_h.push((series, t, h));
        Ok(())
    }

    /// Makes room for `n` more samples: a batch whose size is known grows its buffer once.
    pub fn reserve(&mut self, n: usize) {
        self.pending.reserve(n);
    }

    /// Samples added so far (histograms included).
    pub fn len(&self) -> usize {
        self.pending.len() + self.pending_h.len()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.pending_h.is_empty()
    }

    /// Checks every sample against the append rules, writes the accepted ones to the WAL (with
    /// the records of series not yet logged), then makes them visible. Nothing is visible or
    /// acknowledged before the WAL write; on error nothing of the batch is stored.
    ///
    /// Every sample entering storage passes here, so this is where time is bounded: before
    /// [`MIN_TIME`] (or the head's lower bound) is out of bounds, after the clock plus
    /// [`MAX_AHEAD_MS`] (never past [`MAX_TIME`]) too far in the future.
    pub fn commit(self) -> Result<CommitStats, StorageError> {
        let db = self.db;
        let mut stats = CommitStats::default();
        let _gate = read(&db.commit_gate);
        let min_valid = db.head.min_valid();
        // The accepted samples' series, and the samples as the WAL records them, side by side.
        let mut accepted: Vec<Arc<MemSeries>> = Vec::with_capacity(self.pending.len());
        let mut samples: Vec<SampleRecord> = Vec::with_capacity(self.pending.len());
        // The same for histograms (float staleness markers after a histogram among them).
        let mut accepted_h: Vec<Arc<MemSeries>> = Vec::new();
        let mut histograms: Vec<HistogramRecord> = Vec::new();
        for (mut series, t, v) in self.pending {
            if !is_storable_time(t) {
                stats.out_of_bounds += 1;
                continue;
            }
            if t > self.max_t {
                stats.too_far_in_future += 1;
                continue;
            }
            let mut r = series.lock().reserve(t, v, min_valid);
            if r == Err(Reject::Removed) {
                series = db.head.get_or_create(&series.labels()).0;
                r = series.lock().reserve(t, v, min_valid);
            }
            match r {
                Ok(()) => {
                    samples.push(SampleRecord {
                        sref: series.sref,
                        t,
                        v,
                    });
                    accepted.push(series);
                }
                Err(Reject::StaleHistogram) => {
                    let r = {
                        let mut st = series.lock();
                        let h = st.stale_histogram();
                        st.reserve_histogram(t, &h, min_valid).map(|()| h)
                    };
                    match r {
                        Ok(h) => {
                            histograms.push(HistogramRecord {
                                sref: series.sref,
                                t,
                                h,
                            });
                            accepted_h.push(series);
                        }
                        Err(e) => stats.count_reject(e),
                    }
                }
                Err(e) => stats.count_reject(e),
            }
        }
        for (mut series, t, h) in self.pending_h {
            if !is_storable_time(t) {
                stats.out_of_bounds += 1;
                continue;
            }
            if t > self.max_t {
                stats.too_far_in_future += 1;
                continue;
            }
            let mut r = series.lock().reserve_histogram(t, &h, min_valid);
            if r == Err(Reject::Removed) {
                series = db.head.get_or_create(&series.labels()).0;
                r = series.lock().reserve_histogram(t, &h, min_valid);
            }
            match r {
                Ok(()) => {
                    histograms.push(HistogramRecord {
                        sref: series.sref,
                        t,
                        h,
                    });
                    accepted_h.push(series);
                }
                Err(e) => stats.count_reject(e),
            }
        }
        if !accepted.is_empty() || !accepted_h.is_empty() {
            let mut new_series = Vec::new();
            let mut seen = HashSet::new();
            // Two loops rather than a chained iterator: the float one stays as it was.
            for s in &accepted {
                if !s.is_logged() && seen.insert(s.sref) {
                    new_series.push(SeriesRecord {
                        sref: s.sref,
                        labels: s.labels(),
                    });
                }
            }
            for s in &accepted_h {
                if !s.is_logged() && seen.insert(s.sref) {
                    new_series.push(SeriesRecord {
                        sref: s.sref,
                        labels: s.labels(),
                    });
                }
            }
            if let Err(e) = db
                .wal
                .commit_with_histograms(&new_series, &samples, &histograms)
            {
                for (s, r) in accepted.iter().zip(&samples) {
                    s.lock().unreserve(r.t);
                }
                for (s, r) in accepted_h.iter().zip(&histograms) {
                    s.lock().unreserve_histogram(r.t);
                }
                return Err(e.into());
            }
            for (s, r) in accepted.iter().zip(&samples) {
                if s.lock().apply(r.t, r.v) {
                    stats.appended += 1;
                } else {
                    stats.out_of_order += 1;
                }
                if !s.is_logged() {
                    s.mark_logged();
                }
            }
            for (s, r) in accepted_h.iter().zip(histograms) {
                if s.lock().apply_histogram(r.t, r.h) {
                    stats.appended += 1;
                } else {
                    stats.out_of_order += 1;
                }
                if !s.is_logged() {
                    s.mark_logged();
                }
            }
        }
        let c = &db.counters;
        c.appended.fetch_add(stats.appended, Ordering::Relaxed);
        c.duplicates_ignored
            .fetch_add(stats.duplicates_ignored, Ordering::Relaxed);
        c.duplicate.fetch_add(stats.duplicate, Ordering::Relaxed);
        c.out_of_order
            .fetch_add(stats.out_of_order, Ordering::Relaxed);
        c.out_of_bounds
            .fetch_add(stats.out_of_bounds, Ordering::Relaxed);
        c.too_far_in_future
            .fetch_add(stats.too_far_in_future, Ordering::Relaxed);
        Ok(stats)
    }
}

/// Opens the blocks of a directory an agent may be compacting. A listed block that vanished
/// before it was opened was merged into a block the listing may have missed, so the listing is
/// retried until every listed block opens (or is refused as corrupt). With `verify`, every
/// block is checked in full (`Block::verify`) and those that fail are refused too.
fn open_blocks_settled(blocks_dir: &Path, verify: bool) -> Result<OpenedBlocks, StorageError> {
    let mut attempt = 0;
    let mut opened = loop {
        let opened = open_blocks(blocks_dir, false, None)?;
        attempt += 1;
        if opened.vanished == 0 || attempt >= 10 {
            break opened;
        }
    };
    if verify {
        let mut live = Vec::with_capacity(opened.live.len());
        for b in std::mem::take(&mut opened.live) {
            match b.verify() {
                Ok(()) => live.push(b),
                Err(e) => opened.refused.push(RefusedBlock {
                    path: b.meta().path.clone(),
                    reason: e.to_string(),
                    quarantined_to: None,
                }),
            }
        }
        opened.live = live;
    }
    Ok(opened)
}

/// A read-only view of a data directory, safe to take while an agent runs on it: no lock, no
/// repair, no deletion; the WAL is read as far as it is intact.
pub struct ReadOnlyDb {
    catalog: Arc<Catalog>,
    head: Arc<Head>,
    tombstones: Arc<Tombstones>,
    refused: Vec<RefusedBlock>,
    replay: wal::ReplayStats,
    replay_out_of_range: u64,
}

impl ReadOnlyDb {
    /// Opens `dir` for reading. Blocks are checked as `Db::open` checks them (header, footer,
    /// index sections); chunk checksums are checked as chunks are read.
    pub fn open(dir: &Path) -> Result<ReadOnlyDb, StorageError> {
        Self::open_with(dir, false)
    }

    /// Like [`ReadOnlyDb::open`], and also checks every block in full (`Block::verify`: every
    /// chunk's checksum, the index's consistency), refusing those that fail. Reads every byte
    /// of every block.
    pub fn open_verified(dir: &Path) -> Result<ReadOnlyDb, StorageError> {
        Self::open_with(dir, true)
    }

    fn open_with(dir: &Path, verify: bool) -> Result<ReadOnlyDb, StorageError> {
        if !dir.is_dir() {
            return Err(StorageError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such data directory"),
            });
        }
        // The WAL is read before the blocks are listed: an agent publishes a flushed block
        // before it drops those samples from the WAL, so whatever a flush does in between, every
        // sample is in the WAL read or in a block listed (possibly both; queries drop exact
        // duplicates). The other order could miss a block published after the listing.
        // Tombstones come first of all: a clean drops them only after the blocks holding the
        // samples they hide are replaced, so blocks listed later never need dropped ones.
        let tombstones = tombstones::load(dir)?;
        // A segment removed by a concurrent checkpoint mid-read means its samples moved to that
        // checkpoint: start over with an empty head (a few attempts; checkpoints are rare).
        let mut attempt = 0;
        let (head, replay, replay_out_of_range) = loop {
            attempt += 1;
            let head = Arc::new(Head::new());
            let mut refs = ReplayRefs::default();
            let mut dropped = ReplayDropped::default();
            match wal::read_only(&dir.join("wal"), |rec| {
                replay_record(&head, &mut refs, rec, &mut dropped);
            }) {
                Ok(replay) => break (head, replay, dropped.out_of_range),
                Err(wal::WalError::Vanished { .. }) if attempt < 5 => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let blocks_dir = dir.join("blocks");
        let (blocks, refused) = if blocks_dir.is_dir() {
            let opened = open_blocks_settled(&blocks_dir, verify)?;
            (opened.live, opened.refused)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(ReadOnlyDb {
            catalog: Arc::new(Catalog::default().with(blocks, &[])),
            head,
            tombstones: Arc::new(tombstones),
            refused,
            replay,
            replay_out_of_range,
        })
    }

    /// A read view over the blocks and the head rebuilt from the WAL.
    pub fn querier(&self) -> Querier {
        Querier {
            catalog: self.catalog.clone(),
            head: self.head.clone(),
            tombstones: self.tombstones.clone(),
            reader: None,
            quarantine: None,
            skipped: Default::default(),
        }
    }

    /// The deleted intervals every read leaves out.
    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// The blocks.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The head rebuilt from the WAL.
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Blocks refused as corrupt.
    pub fn refused_blocks(&self) -> &[RefusedBlock] {
        &self.refused
    }

    /// What reading the WAL found.
    pub fn replay_stats(&self) -> &wal::ReplayStats {
        &self.replay
    }

    /// WAL samples outside the storable range, left out of the head.
    pub fn replay_out_of_range(&self) -> u64 {
        self.replay_out_of_range
    }
}

impl From<WalError> for StorageError {
    fn from(e: WalError) -> Self {
        StorageError::Wal(e)
    }
}
impl From<SstError> for StorageError {
    fn from(e: SstError) -> Self {
        StorageError::Block(e)
    }
}
