//! The state a WAL shares between its writer ([`super::Wal`]), the writer's fsync thread and its
//! followers (holds and tailers): the active segment, what is durable, commit notifications and
//! the registry of holds.
//!
//! Followers reach it only through the accessors here; the writer's own methods on it (append,
//! group fsync, cut) live in `writer`. Locks, always taken in this order: `checkpointing`, then
//! `holds`, then `active`, then `sync`. A hold's `persisted` (in `follow`) comes before its
//! position; `Notifier::state`, a hold's position, `stop` and `fsync_delay` are leaves
//! (nothing is taken while they are held).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::WalOptions;
use super::position::WalPosition;
use crate::storage::stats::DurationHistogram;
use crate::sync::{lock, wait_timeout_while};

/// Default of the backlog limit: covered segments kept for holds, in bytes.
pub const DEFAULT_BACKLOG_LIMIT: u64 = 1 << 30;

/// The writer's state shared with its fsync thread and with followers.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) opts: WalOptions,
    pub(super) active: Mutex<Active>,
    pub(super) sync: Mutex<SyncState>,
    /// Signalled when a group fsync finishes.
    pub(super) synced: Condvar,
    /// Set once after a failed write or fsync; every later commit fails with it.
    pub(super) failed: OnceLock<String>,
    /// Serialises checkpoints, which run without the `active` lock for most of their work.
    pub(super) checkpointing: Mutex<()>,
    pub(super) stop: Mutex<bool>,
    pub(super) stop_signal: Condvar,
    pub(super) fsyncs: AtomicU64,
    pub(super) fsync_nanos: AtomicU64,
    /// Each fsync's duration, for the self-metrics' latency histogram.
    pub(super) fsync_durations: DurationHistogram,
    pub(super) bytes_written: AtomicU64,
    /// Bumped after every commit, for tailers.
    pub(super) notifier: Notifier,
    /// Readers' claims on segments; taken before `active` when both are needed.
    pub(super) holds: Mutex<Holds>,
    /// Most bytes of checkpoint-covered segments kept for holds.
    pub(super) backlog_limit: AtomicU64,
    /// Added to every fsync, so tests can make group commit observable on any disk.
    #[cfg(test)]
    pub(super) fsync_delay: Mutex<Duration>,
}

/// The segment being written and the closed ones still on disk.
pub(super) struct Active {
    pub(super) file: Arc<File>,
    pub(super) index: u64,
    /// Bytes in the active segment, header included.
    pub(super) size: u64,
    /// Bytes written since open, across segments: the position group commit waits on.
    pub(super) written: u64,
    /// Closed segments still on disk: index → size.
    pub(super) closed: BTreeMap<u64, u64>,
    /// The current checkpoint: index and size.
    pub(super) checkpoint: Option<(u64, u64)>,
}

/// What group commit has made durable.
pub(super) struct SyncState {
    /// Every byte up to this `Active::written` position is fsynced.
    pub(super) synced: u64,
    /// A group fsync is running; others wait for it instead of starting their own.
    pub(super) in_progress: bool,
}

impl Shared {
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    pub(super) fn holds(&self) -> MutexGuard<'_, Holds> {
        lock(&self.holds)
    }

    pub(super) fn backlog_limit(&self) -> &AtomicU64 {
        &self.backlog_limit
    }

    /// Where the next commit goes.
    pub(super) fn end_position(&self) -> WalPosition {
        let a = lock(&self.active);
        WalPosition {
            segment: a.index,
            offset: a.size,
        }
    }

    /// The segment being written.
    pub(super) fn active_index(&self) -> u64 {
        lock(&self.active).index
    }
}

/// Commit notifications: a generation counter bumped by every commit, and a condvar readers
/// wait on. The writer signals only when someone waits, so commits pay one uncontended lock.
#[derive(Default)]
pub(super) struct Notifier {
    state: Mutex<Generation>,
    changed: Condvar,
}

#[derive(Default)]
struct Generation {
    n: u64,
    waiters: usize,
}

impl Notifier {
    pub(super) fn bump(&self) {
        let mut g = lock(&self.state);
        g.n += 1;
        if g.waiters > 0 {
            self.changed.notify_all();
        }
    }

    pub(super) fn current(&self) -> u64 {
        lock(&self.state).n
    }

    pub(super) fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        let mut g = lock(&self.state);
        if g.n != seen {
            return g.n;
        }
        g.waiters += 1;
        let (mut g, _) = wait_timeout_while(&self.changed, g, timeout, |g| g.n == seen);
        g.waiters -= 1;
        g.n
    }
}

/// One hold's state, shared between its `WalHold` and the registry checkpoints consult.
pub(super) struct HoldState {
    key: String,
    file: PathBuf,
    position: Mutex<WalPosition>,
    /// Samples at or after the position that a checkpoint deleted under the backlog limit.
    released: AtomicU64,
}

impl HoldState {
    pub(super) fn new(key: &str, file: PathBuf, position: WalPosition) -> HoldState {
        HoldState {
            key: key.to_string(),
            file,
            position: Mutex::new(position),
            released: AtomicU64::new(0),
        }
    }
    pub(super) fn position(&self) -> WalPosition {
        *lock(&self.position)
    }
    /// Moves the position forward, never back.
    pub(super) fn advance(&self, to: WalPosition) {
        let mut p = lock(&self.position);
        if to > *p {
            *p = to;
        }
    }
    pub(super) fn key(&self) -> &str {
        &self.key
    }
    /// The position file.
    pub(super) fn file(&self) -> &Path {
        &self.file
    }
    pub(super) fn add_released(&self, n: u64) {
        self.released.fetch_add(n, Ordering::Relaxed);
    }
    pub(super) fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }
}

/// Every live hold, by id.
pub(super) struct Holds {
    next_id: u64,
    live: BTreeMap<u64, Arc<HoldState>>,
}

impl Default for Holds {
    fn default() -> Self {
        Holds {
            next_id: 1,
            live: BTreeMap::new(),
        }
    }
}

impl Holds {
    /// Registers a hold; returns its id for [`Holds::remove`].
    pub(super) fn insert(&mut self, state: Arc<HoldState>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.live.insert(id, state);
        id
    }

    pub(super) fn remove(&mut self, id: u64) {
        self.live.remove(&id);
    }

    /// The lowest segment any hold still needs.
    pub(super) fn lowest_segment(&self) -> Option<u64> {
        self.live.values().map(|h| h.position().segment).min()
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &Arc<HoldState>> {
        self.live.values()
    }
}

/// The first segment a checkpoint up to `upto` keeps: the lowest held segment, raised past the
/// oldest covered segments while those kept would exceed `limit` bytes. Segments after `upto`
/// are the head's and always stay. `closed` maps segment index to size.
pub(super) fn retain_from(
    upto: u64,
    closed: &BTreeMap<u64, u64>,
    lowest_hold: Option<u64>,
    limit: u64,
) -> u64 {
    let mut from = match lowest_hold {
        Some(h) if h <= upto => h,
        _ => return upto.saturating_add(1),
    };
    let mut bytes: u64 = closed.range(from..=upto).map(|(_, s)| *s).sum();
    while bytes > limit && from <= upto {
        bytes -= closed.get(&from).copied().unwrap_or(0);
        from += 1;
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_from_the_lowest_hold_up_to_the_limit() {
        let closed: BTreeMap<u64, u64> = [(3, 100), (4, 250), (5, 90), (6, 400), (7, 10)].into();
        // No hold, or a hold past the checkpoint: everything covered goes.
        assert_eq!(retain_from(5, &closed, None, 1 << 30), 6);
        assert_eq!(retain_from(5, &closed, Some(7), 1 << 30), 6);
        // A hold in segment 4 keeps 4 and 5 (340 bytes).
        assert_eq!(retain_from(5, &closed, Some(4), 340), 4);
        // One byte less: the oldest is released.
        assert_eq!(retain_from(5, &closed, Some(4), 339), 5);
        assert_eq!(retain_from(5, &closed, Some(3), 0), 6);
        // A hold below every segment on disk keeps what exists within the limit.
        assert_eq!(retain_from(6, &closed, Some(1), 740), 4);
        assert_eq!(retain_from(6, &closed, Some(1), 739), 5);
    }
}
