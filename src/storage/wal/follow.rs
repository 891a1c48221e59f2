//! Following a live WAL from outside storage: where the WAL ends, notification of new commits,
//! and holds — a reader's durable claim on the segments it has not finished with.
//!
//! A hold is what keeps a remote-write queue from losing its backlog: a checkpoint deletes no
//! segment at or after the lowest held position, up to the backlog limit, and past that limit
//! releases the oldest anyway and counts the samples the hold lost. The hold's position is
//! also written to a small file (`<data>/remote_write/<key>.position`, drawn out in
//! `docs/format/remote-write-position.md`) so a restarted agent resumes where it stopped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::WalError;
use super::position::WalPosition;
use super::segment::io_err;
use super::shared::{HoldState, Shared};
use super::tail::Tailer;
use crate::storage::fsutil;
use crate::sync::lock;

/// A handle for reading a live WAL: its end, commit notifications, holds and tailers.
/// Cheap to clone; it keeps the WAL's shared state, never the writer, alive.
#[derive(Clone)]
pub struct WalFollower {
    shared: Arc<Shared>,
    positions: PathBuf,
}

impl WalFollower {
    pub(super) fn new(shared: Arc<Shared>, positions: PathBuf) -> Self {
        WalFollower { shared, positions }
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        self.shared.dir()
    }

    /// Where the next commit will be written.
    pub fn end(&self) -> WalPosition {
        self.shared.end_position()
    }

    /// The commit generation: it changes whenever something is committed.
    pub fn generation(&self) -> u64 {
        self.shared.notifier().current()
    }

    /// Blocks until the generation differs from `seen` or `timeout` passes (the poll fallback);
    /// returns the generation then.
    pub fn wait(&self, seen: u64, timeout: Duration) -> u64 {
        self.shared.notifier().wait(seen, timeout)
    }

    /// Wakes every waiter, e.g. so a reader notices it was asked to stop.
    pub fn wake(&self) {
        self.shared.notifier().bump();
    }

    /// Sets how many bytes of checkpoint-covered segments holds may keep; past it the oldest
    /// are deleted and the samples they held for a hold are counted in its `released_samples`.
    pub fn set_backlog_limit(&self, bytes: u64) {
        self.shared.backlog_limit().store(bytes, Ordering::Relaxed);
    }

    /// A tailer reading from `from` (see [`Tailer`]).
    pub fn tail(&self, from: WalPosition) -> Tailer {
        Tailer::new(self.shared.clone(), from)
    }

    /// Takes a hold for `key`, resuming from its position file when there is one. A new key
    /// starts at the WAL's end; an unreadable or impossible position file starts at the oldest
    /// segment still on disk (sending twice is better than skipping). The hold is registered
    /// before this returns, so no checkpoint from then on deletes what it needs.
    pub fn hold(&self, key: &str) -> Result<WalHold, WalError> {
        fs::create_dir_all(&self.positions).map_err(io_err(&self.positions))?;
        let file = self.positions.join(position_file_name(key));
        let mut holds = self.shared.holds();
        let end = self.shared.end_position();
        let (position, origin) = match read_position(&file, key) {
            Ok(Some(p)) if p > end => (
                WalPosition::START,
                HoldOrigin::Reset(format!("recorded position {p} is past the WAL's end {end}")),
            ),
            Ok(Some(p)) => (p, HoldOrigin::Resumed),
            Ok(None) => (end, HoldOrigin::New),
            Err(unusable) => (WalPosition::START, HoldOrigin::Reset(unusable.to_string())),
        };
        let state = Arc::new(HoldState::new(key, file, position));
        let id = holds.insert(state.clone());
        drop(holds);
        let hold = WalHold {
            id,
            state,
            shared: self.shared.clone(),
            persisted: Mutex::new(None),
            origin,
        };
        // A new hold's start must survive a crash before its first acknowledgement, or a
        // restart would begin at a later end and skip what was written meanwhile.
        if hold.origin != HoldOrigin::Resumed {
            hold.persist()?;
        }
        Ok(hold)
    }
}

/// How a hold found its starting position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOrigin {
    /// No position file: a new reader, starting at the WAL's end.
    New,
    /// From the position file.
    Resumed,
    /// The position file was unusable (the reason); reading starts at the oldest segment.
    Reset(String),
}

/// A reader's claim on the WAL from its position on. Dropping it releases the claim (the
/// position file stays, for the next run).
pub struct WalHold {
    id: u64,
    state: Arc<HoldState>,
    shared: Arc<Shared>,
    /// The last position written to the file.
    persisted: Mutex<Option<WalPosition>>,
    origin: HoldOrigin,
}

impl WalHold {
    /// The key the hold was taken for.
    pub fn key(&self) -> &str {
        self.state.key()
    }

    /// How the starting position was found.
    pub fn origin(&self) -> &HoldOrigin {
        &self.origin
    }

    /// The position: everything before it is done with.
    pub fn position(&self) -> WalPosition {
        self.state.position()
    }

    /// Moves the position forward (never back); segments before it become deletable.
    pub fn advance(&self, to: WalPosition) {
        self.state.advance(to);
    }

    /// Writes the position to its file (temp file, fsync, rename, directory fsync) unless
    /// the file already holds it.
    pub fn persist(&self) -> Result<(), WalError> {
        let mut persisted = lock(&self.persisted);
        let p = self.position();
        if *persisted == Some(p) {
            return Ok(());
        }
        write_position(self.state.file(), self.state.key(), p)?;
        *persisted = Some(p);
        Ok(())
    }

    /// Samples this hold still needed that checkpoints deleted under the backlog limit.
    pub fn released_samples(&self) -> u64 {
        self.state.released()
    }
}

impl Drop for WalHold {
    fn drop(&mut self) {
        self.shared.holds().remove(self.id);
    }
}

/// Magic at the start of a position file.
const POSITION_MAGIC: [u8; 4] = *b"TMRP";
/// Position file format version.
const POSITION_VERSION: u8 = 1;
/// Longest key a position file stores.
const MAX_KEY_LEN: usize = 4096;

/// The file name for `key`: the key itself when it is made of safe characters, else a
/// sanitised form with a hash, so two keys never share a file.
pub(super) fn position_file_name(key: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let clean: String = key
        .chars()
        .take(100)
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    if clean == key && !key.is_empty() && !key.starts_with('.') {
        format!("{key}.position")
    } else {
        let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
        // Never a hidden file, never a name that is a path component of its own.
        let lead = if clean.starts_with('.') { "_" } else { "" };
        format!("{lead}{clean}-{h:016x}.position")
    }
}

/// Encodes a position file.
pub(super) fn encode_position(key: &str, p: WalPosition) -> Vec<u8> {
    let key = &key.as_bytes()[..key.len().min(MAX_KEY_LEN)];
    let mut b = Vec::with_capacity(30 + key.len());
    b.extend_from_slice(&POSITION_MAGIC);
    b.extend_from_slice(&[POSITION_VERSION, 0, 0, 0]);
    b.extend_from_slice(&p.segment.to_le_bytes());
    b.extend_from_slice(&p.offset.to_le_bytes());
    b.extend_from_slice(&(key.len() as u16).to_le_bytes());
    b.extend_from_slice(key);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Why a position file's bytes cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum PositionError {
    #[error("{0} bytes, shorter than any position file")]
    Short(usize),
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported version {0}")]
    Version(u8),
    #[error("key length does not match the file size")]
    KeyLength,
    #[error("written for key {0:?}")]
    OtherKey(String),
    #[error("truncated")]
    Truncated,
}

/// Why a position file was not used: a hold then starts at the oldest segment.
#[derive(Debug, thiserror::Error)]
pub(super) enum UnusablePosition {
    /// The file exists but cannot be read.
    #[error("position file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file's bytes are damaged or were written for another key.
    #[error("position file {}: {source}", path.display())]
    Damaged {
        path: PathBuf,
        #[source]
        source: PositionError,
    },
}

/// Decodes a position file written for `key`.
pub(super) fn decode_position(b: &[u8], key: &str) -> Result<WalPosition, PositionError> {
    let u64_at =
        |i: usize| -> Option<u64> { Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?)) };
    if b.len() < 30 {
        return Err(PositionError::Short(b.len()));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(PositionError::Crc { stored, computed });
    }
    if body[..4] != POSITION_MAGIC {
        return Err(PositionError::BadMagic);
    }
    if body[4] != POSITION_VERSION {
        return Err(PositionError::Version(body[4]));
    }
    let key_len = u16::from_le_bytes([body[24], body[25]]) as usize;
    if body.len() != 26 + key_len {
        return Err(PositionError::KeyLength);
    }
    let want = &key.as_bytes()[..key.len().min(MAX_KEY_LEN)];
    if &body[26..] != want {
        return Err(PositionError::OtherKey(
            String::from_utf8_lossy(&body[26..]).into_owned(),
        ));
    }
    match (u64_at(8), u64_at(16)) {
        (Some(segment), Some(offset)) => Ok(WalPosition { segment, offset }),
        _ => Err(PositionError::Truncated),
    }
}

/// Reads `file`: `Ok(None)` when it does not exist, an error when it cannot be trusted.
fn read_position(file: &Path, key: &str) -> Result<Option<WalPosition>, UnusablePosition> {
    match fs::read(file) {
        Ok(b) => decode_position(&b, key)
            .map(Some)
            .map_err(|source| UnusablePosition::Damaged {
                path: file.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(UnusablePosition::Unreadable {
            path: file.to_path_buf(),
            source,
        }),
    }
}

fn write_position(file: &Path, key: &str, p: WalPosition) -> Result<(), WalError> {
    Ok(fsutil::replace_file(file, &encode_position(key, p))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_files_round_trip_and_refuse_damage() {
        let p = WalPosition {
            segment: 4_000_000_123,
            offset: 77_123_456,
        };
        let b = encode_position("victoria-1", p);
        assert_eq!(decode_position(&b, "victoria-1"), Ok(p));
        assert_eq!(
            decode_position(&b, "victoria-2"),
            Err(PositionError::OtherKey("victoria-1".into()))
        );
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x04;
            assert!(decode_position(&d, "victoria-1").is_err(), "flip at {i}");
        }
        for cut in 0..b.len() {
            assert!(decode_position(&b[..cut], "victoria-1").is_err());
        }
    }

    #[test]
    fn a_position_write_that_fails_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(position_file_name("vm"));
        let p = WalPosition {
            segment: 3,
            offset: 8,
        };
        write_position(&file, "vm", p).unwrap();
        assert_eq!(read_position(&file, "vm").unwrap(), Some(p));
        // A directory in the file's place: the rename fails after the temp file is written.
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        std::fs::write(file.join("x"), b"").unwrap();
        assert!(write_position(&file, "vm", p).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the directory is left: {names:?}");
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(position_file_name("vm-a_1.x"), "vm-a_1.x.position");
        let a = position_file_name("a/b");
        let b = position_file_name("a_b");
        assert_ne!(a, b);
        assert!(a.starts_with("a_b-") && !a.contains('/'));
        assert!(!position_file_name("..").starts_with(".."));
        assert!(position_file_name(&"é".repeat(300)).len() < 200);
    }
}
