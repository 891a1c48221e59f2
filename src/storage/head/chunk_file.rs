//! The head chunk file: closed head chunks kept out of the heap.
//!
//! When a series cuts a chunk, its encoded bytes are appended to a segment file under
//! `<data>/chunks_head/` (`00000000`, `00000001`, …) through one write buffer shared by the
//! head, as one record: length (u32 LE), bytes, CRC32C of both; the series keeps a
//! [`FileChunk`] (segment, offset: 8 bytes, so a closed chunk costs the series 32 bytes). Reads go through a read-only shared memory map of the segment, so the bytes live in
//! the page cache (reclaimable), not in the process's heap; a chunk still in the write buffer
//! is copied from it. Every read checks the checksum: a mismatch is an error, never other data.
//!
//! The file is derived data: durability stays with the WAL. [`ChunkFile::create`] discards
//! whatever a previous run left and WAL replay writes the chunks again.
//!
//! A failed write (disk full, I/O error) loses nothing: the bytes that did not reach the file
//! stay readable in memory (the segment's stranded tail), the next chunk tries a new segment,
//! and a warning is logged once per run of failures. A segment is deleted when no series
//! refers to it any more ([`ChunkFile::remove_unreferenced`], after the head is truncated);
//! its mapping stays valid for a reader holding it until that reader lets go (an `Arc` per
//! segment).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use tracing::{info, warn};

use crate::storage::StorageError;
use crate::sync::{lock, read, write};

/// Size of one segment file (and of its mapping), as Prometheus's `chunks_head` uses.
pub const DEFAULT_SEGMENT_SIZE: u32 = 128 << 20;
/// Bytes gathered before one write to the file.
const DEFAULT_BUFFER_SIZE: usize = 256 << 10;
/// The length before each chunk's bytes.
const LEN_LEN: usize = 4;
/// The CRC32C (of the length and the bytes) after them.
const CRC_LEN: usize = 4;

/// Where a chunk's record is in the chunk file: at `off` in segment `seg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileChunk {
    pub seg: u32,
    off: u32,
}

/// The record (length, bytes, CRC) at `at` in `bytes`, if it lies within them.
fn record_at(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let len = bytes.get(at..at.checked_add(LEN_LEN)?)?;
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    let end = at.checked_add(LEN_LEN + CRC_LEN)?.checked_add(len)?;
    bytes.get(at..end)
}

struct Segment {
    path: PathBuf,
    map: map::Map,
    /// Bytes from the start that are in the file (readable through `map`). Only the writer
    /// moves it, after the bytes are written; bytes below it are never written again.
    written: AtomicU32,
    /// After a failed write: the bytes from `written` on that never reached the file.
    stranded: OnceLock<Box<[u8]>>,
}

impl Segment {
    /// The record at `off` if it is in the file or stranded (not in the write buffer).
    fn settled(&self, off: usize) -> Option<&[u8]> {
        let written = self.written.load(Ordering::Acquire) as usize;
        if off < written {
            // Records never straddle `written` (the buffer is written whole), so one whose
            // length reaches past it is damaged: `None`, then an error.
            return record_at(self.map.get(0, written)?, off);
        }
        record_at(self.stranded.get()?, off - written)
    }
}

/// The segment being appended to.
struct Current {
    id: u32,
    seg: Arc<Segment>,
    file: File,
    buf: Vec<u8>,
    /// Bytes of the segment handed out: `written` plus the buffer.
    end: u32,
}

struct Writer {
    cur: Option<Current>,
    next_id: u32,
    /// A write failed and none succeeded since (the warning is logged once per run).
    failing: bool,
}

/// The head's chunk file (see the module docs).
pub struct ChunkFile {
    dir: PathBuf,
    segment_size: u32,
    buffer_size: usize,
    segments: RwLock<BTreeMap<u32, Arc<Segment>>>,
    writer: Mutex<Writer>,
    /// Fails every write to the file, to test the fallback.
    #[cfg(test)]
    pub(crate) fail_writes: std::sync::atomic::AtomicBool,
}

impl ChunkFile {
    /// A chunk file in `dir`, emptied first (a previous run's files are derived data the WAL
    /// replay writes again). Fails where memory maps are not supported.
    pub fn create(dir: &Path) -> io::Result<ChunkFile> {
        Self::create_with(dir, DEFAULT_SEGMENT_SIZE, DEFAULT_BUFFER_SIZE)
    }

    pub(crate) fn create_with(
        dir: &Path,
        segment_size: u32,
        buffer_size: usize,
    ) -> io::Result<ChunkFile> {
        if !map::SUPPORTED {
            return Err(io::ErrorKind::Unsupported.into());
        }
        // Whatever is there goes: a directory with its files, or a file or link in its place.
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir)?,
            Ok(_) => std::fs::remove_file(dir)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(dir)?;
        Ok(ChunkFile {
            dir: dir.to_path_buf(),
            segment_size: segment_size.max(1),
            buffer_size,
            segments: RwLock::default(),
            writer: Mutex::new(Writer {
                cur: None,
                next_id: 0,
                failing: false,
            }),
            #[cfg(test)]
            fail_writes: Default::default(),
        })
    }

    fn segment_path(&self, id: u32) -> PathBuf {
        self.dir.join(format!("{id:08}"))
    }

    /// Appends a chunk's bytes; `None` when they could not be placed (the caller keeps them in
    /// memory): larger than a segment, or no segment file could be made.
    pub(crate) fn write(&self, data: &[u8]) -> Option<FileChunk> {
        let len = u32::try_from(data.len()).ok()?;
        let need = len.checked_add((LEN_LEN + CRC_LEN) as u32)?;
        if need > self.segment_size {
            return None;
        }
        let mut guard = lock(&self.writer);
        let w = &mut *guard;
        if let Some(cur) = w
            .cur
            .take_if(|c| u64::from(c.end) + u64::from(need) > u64::from(self.segment_size))
        {
            self.finish(cur, &mut w.failing);
        }
        if w.cur.is_none() {
            let id = w.next_id;
            match self.open_segment(id) {
                Ok(cur) => {
                    w.next_id = id.checked_add(1)?;
                    w.cur = Some(cur);
                }
                Err(e) => {
                    self.failed(&mut w.failing, &self.segment_path(id), &e);
                    return None;
                }
            }
        }
        let cur = w.cur.as_mut()?;
        let chunk = FileChunk {
            seg: cur.id,
            off: cur.end,
        };
        let len = len.to_le_bytes();
        cur.buf.extend_from_slice(&len);
        cur.buf.extend_from_slice(data);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&len), data);
        cur.buf.extend_from_slice(&crc.to_le_bytes());
        cur.end += need;
        if cur.buf.len() >= self.buffer_size {
            match self.flush(cur) {
                Ok(()) => self.recovered(&mut w.failing),
                Err(e) => {
                    if let Some(cur) = w.cur.take() {
                        self.strand(cur, &mut w.failing, &e);
                    }
                }
            }
        }
        Some(chunk)
    }

    fn open_segment(&self, id: u32) -> io::Result<Current> {
        let path = self.segment_path(id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        // Sized up front (sparse) so the mapping never reaches past the end of the file.
        file.set_len(u64::from(self.segment_size))?;
        let map = map::Map::new(&file, self.segment_size as usize)?;
        let seg = Arc::new(Segment {
            path,
            map,
            written: AtomicU32::new(0),
            stranded: OnceLock::new(),
        });
        write(&self.segments).insert(id, seg.clone());
        Ok(Current {
            id,
            seg,
            file,
            buf: Vec::with_capacity(self.buffer_size),
            end: 0,
        })
    }

    /// Writes the buffer to the file.
    fn flush(&self, cur: &mut Current) -> io::Result<()> {
        if cur.buf.is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        if self.fail_writes.load(Ordering::Relaxed) {
            return Err(io::Error::other("injected write failure"));
        }
        let at = cur.seg.written.load(Ordering::Relaxed);
        cur.file.write_all_at(&cur.buf, u64::from(at))?;
        cur.seg.written.store(cur.end, Ordering::Release);
        cur.buf.clear();
        Ok(())
    }

    /// Closes a full segment: the buffer written, the file cut to what it holds.
    fn finish(&self, mut cur: Current, failing: &mut bool) {
        match self.flush(&mut cur) {
            Ok(()) => {
                // Only bytes below `written` are ever read, so the mapping's pages past the new
                // end are never touched. A failure only leaves the file sparse and long.
                let _ = cur.file.set_len(u64::from(cur.end));
                self.recovered(failing);
            }
            Err(e) => self.strand(cur, failing, &e),
        }
    }

    /// A write failed: the buffer's chunks stay readable from memory, the segment is closed.
    fn strand(&self, mut cur: Current, failing: &mut bool, e: &io::Error) {
        let tail = std::mem::take(&mut cur.buf).into_boxed_slice();
        let _ = cur.seg.stranded.set(tail);
        self.failed(failing, &cur.seg.path, e);
    }

    fn failed(&self, failing: &mut bool, path: &Path, e: &io::Error) {
        if !*failing {
            warn!(path = %path.display(), error = %e, "head chunks stay in memory: writing the head chunk file failed");
            *failing = true;
        }
    }

    fn recovered(&self, failing: &mut bool) {
        if *failing {
            info!(dir = %self.dir.display(), "head chunk file written again");
            *failing = false;
        }
    }

    /// The error for chunk `c` found damaged: its segment file and offset, and `reason`.
    pub(crate) fn corrupt(&self, c: &FileChunk, reason: &str) -> StorageError {
        StorageError::CorruptChunk {
            path: self.segment_path(c.seg),
            offset: u64::from(c.off),
            reason: format!("head chunk: {reason}"),
        }
    }

    /// Calls `f` with a chunk's bytes, checksum verified.
    pub(crate) fn read<R>(
        &self,
        c: &FileChunk,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, StorageError> {
        let corrupt = |reason: &str| self.corrupt(c, reason);
        let seg = read(&self.segments)
            .get(&c.seg)
            .cloned()
            .ok_or_else(|| corrupt("segment no longer held"))?;
        let off = c.off as usize;
        let mut copy = Vec::new();
        let record = match seg.settled(off) {
            Some(b) => b,
            None => {
                let w = lock(&self.writer);
                match seg.settled(off) {
                    // Written or stranded between the two looks.
                    Some(b) => b,
                    None => {
                        let start = seg.written.load(Ordering::Acquire) as usize;
                        let buffered = w
                            .cur
                            .as_ref()
                            .filter(|cur| cur.id == c.seg)
                            .and_then(|cur| record_at(&cur.buf, off.checked_sub(start)?))
                            .ok_or_else(|| corrupt("length past the end of its segment"))?;
                        copy.extend_from_slice(buffered);
                        &copy
                    }
                }
            }
        };
        let (body, crc) = record.split_at(record.len() - CRC_LEN);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(f(&body[LEN_LEN..]))
    }

    /// The lowest segment a chunk written from now on can go to. Taken before a walk over the
    /// series that looks for the lowest segment they refer to, it keeps segments written to
    /// during the walk.
    pub(crate) fn fence(&self) -> u32 {
        let w = lock(&self.writer);
        w.cur.as_ref().map_or(w.next_id, |c| c.id)
    }

    /// Deletes the segments below `lowest_live` (the lowest a series refers to, or the fence
    /// taken before looking), never the one being written. Readers holding one keep its
    /// mapping until they let go.
    pub(crate) fn remove_unreferenced(&self, lowest_live: u32) {
        let lowest_live = lowest_live.min(self.fence());
        let mut segs = write(&self.segments);
        let gone: Vec<u32> = segs.range(..lowest_live).map(|(id, _)| *id).collect();
        for id in gone {
            if let Some(seg) = segs.remove(&id)
                && let Err(e) = std::fs::remove_file(&seg.path)
            {
                warn!(path = %seg.path.display(), error = %e, "head chunk segment not deleted");
            }
        }
    }

    /// Drops this process's page mappings of every segment: the pages stay in the page cache
    /// (a later read maps them again, without I/O while they are cached), but stop counting in
    /// its RSS. Reads since the last call (queries, a flush, a checkpoint) had mapped them.
    pub(crate) fn release_pages(&self) {
        for seg in read(&self.segments).values() {
            seg.map.release();
        }
    }

    /// Segments held, oldest first.
    #[cfg(test)]
    pub(crate) fn segment_ids(&self) -> Vec<u32> {
        read(&self.segments).keys().copied().collect()
    }

    /// Writes the buffer out now (tests that look at the file).
    #[cfg(test)]
    pub(crate) fn flush_buffer(&self) -> io::Result<()> {
        let mut w = lock(&self.writer);
        match w.cur.as_mut() {
            Some(cur) => self.flush(cur),
            None => Ok(()),
        }
    }

    /// The path of segment `id`.
    #[cfg(test)]
    pub(crate) fn path_of(&self, id: u32) -> PathBuf {
        self.segment_path(id)
    }
}

/// A read-only shared memory map of a segment file: the one other place besides
/// `storage::db`'s `malloc_trim` call where tidemark uses `unsafe` (see `lib.rs`).
///
/// Safety argument: we map our own segment files, read-only (`PROT_READ`, `MAP_SHARED`), at
/// the length the file was sized to before mapping, and only ever make slices of bytes below
/// the segment's `written` mark, which this process wrote once through `write(2)` and never
/// writes again; the mapping is unmapped only when the last `Arc` of its segment drops, so no
/// slice outlives it. `MADV_DONTNEED` on a shared file mapping only drops page table entries:
/// the next access maps the same page-cache page again, so a slice read meanwhile sees the
/// same bytes. As with Prometheus's `chunks_head`, a segment truncated by another
/// process while mapped would make a read of the lost pages raise SIGBUS; nothing else writes
/// to `<data>/chunks_head/` (the data directory is locked by one tidemark).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod map {
    #![allow(unsafe_code)]

    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;

    pub(super) const SUPPORTED: bool = true;

    pub(super) struct Map {
        ptr: *const u8,
        len: usize,
    }

    // SAFETY: the mapping is read-only and owned by this value; sharing `&[u8]` views of it
    // between threads is as safe as sharing any immutable byte slice.
    unsafe impl Send for Map {}
    // SAFETY: as above; no method mutates through the mapping.
    unsafe impl Sync for Map {}

    impl Map {
        pub(super) fn new(file: &File, len: usize) -> io::Result<Map> {
            // SAFETY: a fresh mapping chosen by the kernel (null hint) of a file descriptor we
            // own, checked for failure below; no existing memory is affected.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            Ok(Map {
                ptr: ptr.cast::<u8>().cast_const(),
                len,
            })
        }

        /// The mapped bytes `off..end`, `None` outside the mapping.
        pub(super) fn get(&self, off: usize, end: usize) -> Option<&[u8]> {
            if off > end || end > self.len {
                return None;
            }
            // SAFETY: `off..end` lies inside the live mapping (checked above), which outlives
            // `&self`; callers ask only for bytes below `written`, which are never written
            // again (module docs), so the slice does not change while borrowed.
            Some(unsafe { std::slice::from_raw_parts(self.ptr.add(off), end - off) })
        }

        /// Unmaps the pages from this process's page tables, keeping the mapping (and the
        /// bytes: they are the file's). Failure only leaves the pages mapped.
        pub(super) fn release(&self) {
            // SAFETY: `ptr`/`len` are the live mapping; on a shared file mapping the advice
            // changes no byte a reader can see (module docs).
            unsafe {
                libc::madvise(self.ptr.cast_mut().cast(), self.len, libc::MADV_DONTNEED);
            }
        }
    }

    impl Drop for Map {
        fn drop(&mut self) {
            // SAFETY: `ptr`/`len` are exactly what mmap returned and no slice of the mapping
            // outlives `self` (slices borrow it).
            unsafe {
                libc::munmap(self.ptr.cast_mut().cast(), self.len);
            }
        }
    }
}

/// Without memory maps the head keeps its chunks in memory: [`ChunkFile::create`] fails.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod map {
    use std::fs::File;
    use std::io;

    pub(super) const SUPPORTED: bool = false;

    pub(super) struct Map;

    impl Map {
        pub(super) fn new(_: &File, _: usize) -> io::Result<Map> {
            Err(io::ErrorKind::Unsupported.into())
        }

        pub(super) fn get(&self, _: usize, _: usize) -> Option<&[u8]> {
            None
        }

        pub(super) fn release(&self) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: usize) -> Vec<u8> {
        (0..(i % 50 + 1)).map(|j| (i * 31 + j) as u8).collect()
    }

    fn read_back(f: &ChunkFile, c: &FileChunk) -> Result<Vec<u8>, StorageError> {
        f.read(c, <[u8]>::to_vec)
    }

    #[test]
    fn chunks_read_back_from_the_buffer_the_file_and_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        // Leftovers of a previous run are discarded.
        std::fs::create_dir_all(dir.path().join("ch")).unwrap();
        std::fs::write(dir.path().join("ch/00000000"), b"old junk").unwrap();
        let f = ChunkFile::create_with(&dir.path().join("ch"), 512, 100).unwrap();
        // So is a file where the directory should be.
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        ChunkFile::create_with(&dir.path().join("file"), 512, 100).unwrap();
        assert!(dir.path().join("file").is_dir());
        assert!(f.segment_ids().is_empty());
        let mut written = Vec::new();
        for i in 0..200 {
            let data = chunk(i);
            let c = f.write(&data).unwrap();
            written.push((c, data));
            // Every chunk so far reads back, wherever it is now.
            for (c, data) in &written[written.len().saturating_sub(5)..] {
                assert_eq!(&read_back(&f, c).unwrap(), data);
            }
        }
        for (c, data) in &written {
            assert_eq!(&read_back(&f, c).unwrap(), data);
        }
        // Pages released from the process still read the same.
        f.release_pages();
        for (c, data) in &written {
            assert_eq!(&read_back(&f, c).unwrap(), data);
        }
        let segs = f.segment_ids();
        assert!(segs.len() > 10, "{segs:?}");
        // A full segment is cut to what it holds.
        let len = std::fs::metadata(f.path_of(0)).unwrap().len();
        assert!(len <= 512 && len > 400, "{len}");
        // Bigger than a segment: not placed.
        assert!(f.write(&[7; 600]).is_none());
        let empty = f.write(&[]).unwrap();
        assert_eq!(read_back(&f, &empty).unwrap(), b"");
    }

    #[test]
    fn a_flipped_byte_is_an_error_not_other_data() {
        let dir = tempfile::tempdir().unwrap();
        let f = ChunkFile::create_with(dir.path(), 1 << 20, 1 << 10).unwrap();
        let a = f.write(b"first chunk").unwrap();
        let b = f.write(b"second chunk").unwrap();
        f.flush_buffer().unwrap();
        let path = f.path_of(0);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // Flipped in place (not replaced), as damage on disk would be: the mapping sees it.
        let flip = |at: u32, mask: u8| {
            let mut byte = [0u8; 1];
            file.read_exact_at(&mut byte, u64::from(at)).unwrap();
            file.write_all_at(&[byte[0] ^ mask], u64::from(at)).unwrap();
        };
        // In the bytes: a checksum mismatch; the other chunk still reads.
        flip(b.off + 6, 0x10);
        assert_eq!(read_back(&f, &a).unwrap(), b"first chunk");
        let e = read_back(&f, &b).unwrap_err();
        assert!(
            matches!(&e, StorageError::CorruptChunk { path: p, offset, .. } if *p == path && *offset == u64::from(b.off)),
            "{e}"
        );
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        // In the length: one byte longer is a checksum mismatch, far longer is past the end.
        flip(a.off, 0x01);
        let e = read_back(&f, &a).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        flip(a.off, 0x01);
        flip(a.off + 3, 0x80);
        let e = read_back(&f, &a).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
        flip(a.off + 3, 0x80);
        assert_eq!(read_back(&f, &a).unwrap(), b"first chunk");
    }

    #[test]
    fn failed_writes_keep_the_chunks_in_memory_and_the_next_segment_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let f = ChunkFile::create_with(dir.path(), 4096, 64).unwrap();
        let before: Vec<_> = (0..10)
            .map(|i| (f.write(&chunk(i)).unwrap(), chunk(i)))
            .collect();
        f.fail_writes.store(true, Ordering::Relaxed);
        let during: Vec<_> = (10..40)
            .map(|i| (f.write(&chunk(i)).unwrap(), chunk(i)))
            .collect();
        f.fail_writes.store(false, Ordering::Relaxed);
        let after: Vec<_> = (40..60)
            .map(|i| (f.write(&chunk(i)).unwrap(), chunk(i)))
            .collect();
        for (c, data) in before.iter().chain(&during).chain(&after) {
            assert_eq!(&read_back(&f, c).unwrap(), data);
        }
        assert!(f.segment_ids().len() > 2, "each failure closes its segment");
        // No segment file can be made (the directory is gone): the caller keeps the chunk.
        std::fs::remove_dir_all(dir.path()).unwrap();
        let mut n = 0;
        while f.write(&chunk(n)).is_some() {
            n += 1;
            assert!(n < 1000, "the open segment never filled");
        }
    }

    #[test]
    fn segments_below_the_lowest_live_one_are_deleted_but_stay_mapped_for_readers() {
        let dir = tempfile::tempdir().unwrap();
        let f = ChunkFile::create_with(dir.path(), 256, 1).unwrap();
        let cs: Vec<_> = (0..40)
            .map(|i| (f.write(&chunk(i)).unwrap(), chunk(i)))
            .collect();
        let fence = f.fence();
        assert_eq!(Some(&fence), f.segment_ids().last());
        let keep = cs[20].0.seg;
        // A reader holding a segment across its deletion still reads it.
        let held = read(&f.segments).get(&0).cloned().unwrap();
        f.remove_unreferenced(keep.min(fence));
        assert_eq!(f.segment_ids().first(), Some(&keep));
        assert!(!f.path_of(0).exists());
        let (c0, d0) = &cs[0];
        let record = held.settled(c0.off as usize).unwrap();
        assert_eq!(&record[LEN_LEN..record.len() - CRC_LEN], &d0[..]);
        assert!(
            read_back(&f, c0).is_err(),
            "a chunk of a deleted segment is an error"
        );
        for (c, data) in &cs[20..] {
            assert_eq!(&read_back(&f, c).unwrap(), data);
        }
        // The segment being written is never deleted.
        f.remove_unreferenced(u32::MAX);
        assert_eq!(f.segment_ids(), vec![fence]);
        assert_eq!(read_back(&f, &cs[39].0).unwrap(), cs[39].1);
    }
}
