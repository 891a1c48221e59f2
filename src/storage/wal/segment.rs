//! Files of the WAL directory: names, listing, creating segments and reading frames back.
//!
//! Everything that touches a file lives here or in the modules that call it; the byte rules are
//! in `record`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::WalError;
use super::record::{self, Decoded, FILE_HEADER_LEN, FRAME_HEADER_LEN, FrameError, HeaderError};
use crate::storage::fsutil;

/// Prefix of checkpoint names: `checkpoint.<index>`.
pub(crate) const CHECKPOINT_PREFIX: &str = "checkpoint.";
/// Suffix of a checkpoint still being written; such a file is never replayed.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// File name of segment `index`: at least 8 digits, zero-padded.
pub(crate) fn segment_name(index: u64) -> String {
    format!("{index:08}")
}

/// File name of the checkpoint covering segments up to `index`.
pub(crate) fn checkpoint_name(index: u64) -> String {
    format!("{CHECKPOINT_PREFIX}{index:08}")
}

/// Parses an index written by [`segment_name`]; any run of ASCII digits is accepted so that the
/// order is numeric even for names that outgrew the padding.
fn parse_index(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// What a WAL directory holds, each list sorted by index (numerically, never by name).
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segments by index.
    pub segments: Vec<(u64, PathBuf)>,
    /// Complete checkpoints by index.
    pub checkpoints: Vec<(u64, PathBuf)>,
    /// Checkpoints that never finished writing.
    pub incomplete: Vec<PathBuf>,
}

/// Lists `dir`, ignoring names the WAL does not own.
pub(crate) fn list(dir: &Path) -> Result<Listing, WalError> {
    let mut l = Listing::default();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if let Some(i) = parse_index(name) {
            l.segments.push((i, path));
        } else if let Some(rest) = name.strip_prefix(CHECKPOINT_PREFIX) {
            if rest
                .strip_suffix(TMP_SUFFIX)
                .and_then(parse_index)
                .is_some()
            {
                l.incomplete.push(path);
            } else if let Some(i) = parse_index(rest) {
                l.checkpoints.push((i, path));
            }
        }
    }
    l.segments.sort();
    l.checkpoints.sort();
    Ok(l)
}

/// Maps an I/O error to a [`WalError`] naming `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates (or empties) segment `index` with its header written, fsynced and its directory entry
/// made durable, so a commit acknowledged in it cannot vanish with the file.
pub(crate) fn create_segment(dir: &Path, index: u64) -> Result<File, WalError> {
    let path = dir.join(segment_name(index));
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(io_err(&path))?;
    f.write_all(&record::file_header(record::SEGMENT_MAGIC))
        .and_then(|()| f.sync_all())
        .map_err(io_err(&path))?;
    fsutil::sync_dir(dir)?;
    Ok(f)
}

/// Why reading a file stopped early.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// A bad frame at `offset`; everything before it was good.
    Frame { offset: u64, err: FrameError },
    /// The file could not be read at all (not a format problem).
    Io(io::Error),
}

/// Reads the frames of one file, stopping at the first bad one. The length is fixed when the
/// reader is made, so a file still being appended to by a running agent reads as a snapshot.
pub(crate) struct FrameReader<R> {
    r: R,
    /// Offset of the next frame.
    offset: u64,
    /// Bytes of the file when it was opened.
    size: u64,
    buf: Vec<u8>,
    /// Decompressed payloads, reused from frame to frame.
    scratch: Vec<u8>,
}

impl FrameReader<io::BufReader<File>> {
    /// Opens `path` and checks its header against `magic`. An empty file reads as no frames.
    pub(crate) fn open(path: &Path, magic: [u8; 4]) -> Result<Self, OpenError> {
        let f = File::open(path).map_err(OpenError::Io)?;
        let size = f.metadata().map_err(OpenError::Io)?.len();
        let mut fr = FrameReader {
            r: io::BufReader::with_capacity(256 << 10, f),
            offset: 0,
            size,
            buf: Vec::new(),
            scratch: Vec::new(),
        };
        if size > 0 {
            let mut h = [0u8; FILE_HEADER_LEN];
            let have = fr.fill(&mut h).map_err(OpenError::Io)?;
            record::check_file_header(&h[..have], magic).map_err(OpenError::Header)?;
        }
        Ok(fr)
    }
}

/// Why a file could not be opened for reading.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Not readable (missing, permissions).
    Io(io::Error),
    /// The header is wrong.
    Header(HeaderError),
}

impl<R: Read> FrameReader<R> {
    /// Offset just past the last good frame.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// File size seen when opened.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Reads as many bytes as fit in `out`, short only at end of file.
    fn fill(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut have = 0;
        while have < out.len() {
            match self.r.read(&mut out[have..]) {
                Ok(0) => break,
                Ok(n) => have += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.offset += have as u64;
        Ok(have)
    }

    /// The next frame, `Ok(None)` at a clean end of file.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Decoded>, ReadError> {
        let start = self.offset;
        let frame_err = |err| ReadError::Frame { offset: start, err };
        if start >= self.size {
            return Ok(None);
        }
        let mut h = [0u8; FRAME_HEADER_LEN];
        let left = self.size - start;
        // Never read beyond the size seen at open: the tail of a live segment is not ours yet.
        let want = (left.min(FRAME_HEADER_LEN as u64)) as usize;
        let have = self.fill(&mut h[..want]).map_err(ReadError::Io)?;
        if have < FRAME_HEADER_LEN {
            return Err(frame_err(FrameError::TornHeader { have }));
        }
        let fh = record::parse_frame_header(&h).map_err(frame_err)?;
        let available = left - FRAME_HEADER_LEN as u64;
        if fh.len as u64 > available {
            return Err(frame_err(FrameError::PastEnd {
                len: fh.len,
                available,
            }));
        }
        self.buf.resize(fh.len, 0);
        let mut buf = std::mem::take(&mut self.buf);
        let got = self.fill(&mut buf);
        self.buf = buf;
        let got = got.map_err(ReadError::Io)?;
        if got < fh.len {
            // The file shrank under us since it was opened.
            return Err(frame_err(FrameError::PastEnd {
                len: fh.len,
                available: got as u64,
            }));
        }
        let d = record::decode_frame_with(&fh, &self.buf, &mut self.scratch).map_err(frame_err)?;
        Ok(Some(d))
    }
}

/// Cuts `path` to `len` bytes and makes that durable.
pub(crate) fn truncate(path: &Path, len: u64) -> Result<(), WalError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    f.set_len(len)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

/// Removes `path`, treating "already gone" as done.
pub(crate) fn remove(path: &Path) -> Result<bool, WalError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_numerically() {
        let dir = tempfile::tempdir().unwrap();
        for n in [
            "99999999",
            "100000000",
            "00000002",
            "10",
            "9",
            "checkpoint.00000005",
        ] {
            fs::write(dir.path().join(n), b"").unwrap();
        }
        for n in [
            "checkpoint.00000011.tmp",
            "checkpoint.x",
            "lock",
            "0000001a",
            "checkpoint.00000010",
        ] {
            fs::write(dir.path().join(n), b"").unwrap();
        }
        let l = list(dir.path()).unwrap();
        let idx: Vec<u64> = l.segments.iter().map(|s| s.0).collect();
        assert_eq!(idx, [2, 9, 10, 99_999_999, 100_000_000]);
        let cps: Vec<u64> = l.checkpoints.iter().map(|s| s.0).collect();
        assert_eq!(cps, [5, 10]);
        assert_eq!(l.incomplete, [dir.path().join("checkpoint.00000011.tmp")]);
        assert_eq!(segment_name(7), "00000007");
        assert_eq!(segment_name(123_456_789), "123456789");
    }
}
