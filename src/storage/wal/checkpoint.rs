//! Checkpoint files: `checkpoint.<upto>` holds the state covered by segments `<= upto`, so those
//! segments can be deleted. Written under a `.tmp` name, fsynced, renamed and the directory
//! fsynced, so a checkpoint either exists complete or not at all; its last frame records how many
//! frames precede it, so a checkpoint that lost its tail to corruption is caught, not half-read.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::WalError;
use super::record::{self, CHECKPOINT_MAGIC, Decoded, Encoder, Record};
use super::segment::{self, FrameReader, OpenError, ReadError, io_err};
use crate::storage::fsutil;

/// Buffered bytes are written out once they pass this size.
const FLUSH_AT: usize = 1 << 20;

/// What writing a checkpoint produced.
#[derive(Debug)]
pub(crate) struct Written {
    /// Frames before the end frame.
    pub frames: u64,
    /// File size.
    pub bytes: u64,
}

/// Path of the temporary file for checkpoint `upto`: its name with [`segment::TMP_SUFFIX`], which
/// replay recognises as never completed.
pub(crate) fn tmp_path(dir: &Path, upto: u64) -> PathBuf {
    fsutil::temp_path(&dir.join(segment::checkpoint_name(upto)))
}

/// Writes `checkpoint.<upto>` atomically (`fsutil::replace_file_with`: temp file, fsync,
/// rename, directory fsync; the temp file removed on failure).
pub(crate) fn write(
    dir: &Path,
    upto: u64,
    records: impl IntoIterator<Item = Result<Record, WalError>>,
) -> Result<Written, WalError> {
    let tmp = tmp_path(dir, upto);
    fsutil::replace_file_with(&dir.join(segment::checkpoint_name(upto)), |f| {
        write_tmp(f, &tmp, records)
    })
}

fn write_tmp(
    f: &mut File,
    tmp: &Path,
    records: impl IntoIterator<Item = Result<Record, WalError>>,
) -> Result<Written, WalError> {
    let mut enc = Encoder::new();
    let mut buf = Vec::with_capacity(FLUSH_AT * 2);
    buf.extend_from_slice(&record::file_header(CHECKPOINT_MAGIC));
    let mut frames = 0;
    let mut bytes = 0u64;
    let mut flush = |buf: &mut Vec<u8>, f: &mut File| -> Result<(), WalError> {
        f.write_all(buf).map_err(io_err(tmp))?;
        bytes += buf.len() as u64;
        buf.clear();
        Ok(())
    };
    for r in records {
        frames += enc.record(&r?, &mut buf)?;
        if buf.len() >= FLUSH_AT {
            flush(&mut buf, f)?;
        }
    }
    enc.checkpoint_end(frames, &mut buf);
    flush(&mut buf, f)?;
    Ok(Written { frames, bytes })
}

/// Replays checkpoint `path` into `on_record`. Returns `Ok(false)` if the file does not exist
/// (a concurrent checkpoint replaced it); any damage is an error naming the file, because a
/// checkpoint is the only copy of what it holds.
pub(crate) fn read(path: &Path, on_record: &mut dyn FnMut(Record)) -> Result<bool, WalError> {
    let corrupt = |offset: u64, reason: String| WalError::CorruptCheckpoint {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut r = match FrameReader::open(path, CHECKPOINT_MAGIC) {
        Ok(r) => r,
        Err(OpenError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(OpenError::Io(e)) => return Err(io_err(path)(e)),
        Err(OpenError::Header(record::HeaderError::Version(version))) => {
            return Err(WalError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Err(OpenError::Header(h)) => return Err(corrupt(0, h.to_string())),
    };
    if r.size() == 0 {
        return Err(corrupt(0, "empty file".into()));
    }
    let mut frames = 0u64;
    loop {
        let at = r.offset();
        match r.next_frame() {
            Ok(Some(Decoded::Record(rec))) => {
                frames += 1;
                on_record(rec);
            }
            Ok(Some(Decoded::CheckpointEnd { frames: n })) => {
                if n != frames {
                    return Err(corrupt(
                        at,
                        format!("end frame counts {n} frames, file has {frames}"),
                    ));
                }
                if r.offset() != r.size() {
                    return Err(corrupt(r.offset(), "bytes after the end frame".into()));
                }
                return Ok(true);
            }
            Ok(None) => return Err(corrupt(at, "end frame missing".into())),
            Err(ReadError::Frame { offset, err }) => return Err(corrupt(offset, err.to_string())),
            Err(ReadError::Io(e)) => return Err(io_err(path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::model::Labels;
    use crate::storage::wal::{SampleRecord, SeriesRecord};

    fn records() -> Vec<Record> {
        vec![
            Record::Series(vec![SeriesRecord {
                sref: 12,
                labels: Labels::new([("__name__", "up"), ("job", "node")]).unwrap(),
            }]),
            Record::Samples(vec![SampleRecord {
                sref: 12,
                t: 1_712_000_004_321,
                v: 0.25,
            }]),
        ]
    }

    fn read_all(path: &Path) -> Result<Vec<Record>, WalError> {
        let mut got = Vec::new();
        read(path, &mut |r| got.push(r))?;
        Ok(got)
    }

    #[test]
    fn round_trip_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let w = write(dir.path(), 7, records().into_iter().map(Ok)).unwrap();
        assert_eq!(w.frames, 2);
        let path = dir.path().join("checkpoint.00000007");
        assert_eq!(fs::metadata(&path).unwrap().len(), w.bytes);
        assert!(!tmp_path(dir.path(), 7).exists());
        assert_eq!(read_all(&path).unwrap(), records());
        assert!(!read(&dir.path().join("checkpoint.00000008"), &mut |_| {}).unwrap());
        // The temp name is one replay recognises as never completed.
        fs::write(tmp_path(dir.path(), 9), b"").unwrap();
        let l = segment::list(dir.path()).unwrap();
        assert_eq!(l.incomplete, [tmp_path(dir.path(), 9)]);
    }

    #[test]
    fn a_failed_write_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the checkpoint belongs: the rename fails after the write.
        let path = dir.path().join("checkpoint.00000004");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), b"").unwrap();
        let e = write(dir.path(), 4, records().into_iter().map(Ok)).unwrap_err();
        assert!(
            matches!(&e, WalError::Io { path: p, .. } if *p == path),
            "{e}"
        );
        assert!(!tmp_path(dir.path(), 4).exists());
    }

    #[test]
    fn damage_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 3, records().into_iter().map(Ok)).unwrap();
        let path = dir.path().join("checkpoint.00000003");
        let good = fs::read(&path).unwrap();
        // Cutting the file at any point, even exactly between frames, is detected.
        for cut in 0..good.len() {
            fs::write(&path, &good[..cut]).unwrap();
            match read_all(&path) {
                Err(WalError::CorruptCheckpoint {
                    path: p, offset, ..
                }) => {
                    assert_eq!(p, path);
                    assert!(offset <= cut as u64);
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x10;
        fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            read_all(&path),
            Err(WalError::CorruptCheckpoint { .. })
        ));
        let mut trailing = good;
        trailing.push(0);
        fs::write(&path, &trailing).unwrap();
        assert!(matches!(
            read_all(&path),
            Err(WalError::CorruptCheckpoint { .. })
        ));
    }
}
