//! Durable file replacement, in one place: write a temp file beside the target, fsync it,
//! rename it over the target, fsync the directory. A crash at any point leaves the old file or
//! the new one, whole; a failure at any point before the rename leaves the old file untouched
//! and no temp file behind.
//!
//! The tombstones file, remote-write position files, WAL checkpoints and block files are
//! written through here. It uses no other storage module, so every one of them may use it.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An I/O error and the file or directory it happened on. Each storage error type turns it
/// into its own `Io` variant.
#[derive(Debug, thiserror::Error)]
#[error("I/O error on {path}: {source}")]
pub(crate) struct IoError {
    /// The file or directory.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// Wraps errors of operations on `path`.
    pub(crate) fn at(path: &Path) -> impl FnOnce(io::Error) -> IoError + '_ {
        move |source| IoError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The name [`replace_file`] writes `path` under before the rename: `path` with `.tmp`
/// appended (`tombstones.tmp`, `x.position.tmp`, `checkpoint.00000012.tmp`), so a leftover
/// from a crash is recognisable by the name of what it was meant to become.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Makes the creations, renames and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), IoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(IoError::at(dir))
}

/// Fsyncs `file` (written under the name `tmp`) and renames it to `path`, replacing what was
/// there. The directory is not fsynced: follow with [`sync_dir`]. On failure `tmp` is removed
/// and `path` is untouched. Errors name `tmp`, or `path` when the rename fails.
pub(crate) fn rename_into_place(file: File, tmp: &Path, path: &Path) -> Result<(), IoError> {
    let r = file.sync_all().map_err(IoError::at(tmp)).and_then(|()| {
        drop(file);
        std::fs::rename(tmp, path).map_err(IoError::at(path))
    });
    if r.is_err() {
        remove_quietly(tmp);
    }
    r
}

/// Replaces `path` with `bytes`, durably; see [`replace_file_with`].
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    replace_file_with(path, |f| {
        f.write_all(bytes).map_err(IoError::at(&temp_path(path)))
    })
}

/// Replaces `path` with what `write` puts into a new temp file ([`temp_path`]): the file is
/// fsynced, renamed over `path`, and the directory fsynced. When `write` or any step before the
/// rename fails, the temp file is removed and `path` keeps its old content; `write`'s own
/// error is returned as it is. A failed directory fsync after the rename is returned too: the
/// new content is in place then, but may not survive a crash.
pub(crate) fn replace_file_with<T, E: From<IoError>>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    let tmp = temp_path(path);
    let mut file = match File::create(&tmp) {
        Ok(f) => f,
        Err(e) => {
            // Nothing of ours is there; whatever is (a directory, say) is not ours to remove.
            return Err(IoError::at(&tmp)(e).into());
        }
    };
    let value = match write(&mut file) {
        Ok(v) => v,
        Err(e) => {
            drop(file);
            remove_quietly(&tmp);
            return Err(e);
        }
    };
    rename_into_place(file, &tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?;
    }
    Ok(value)
}

/// Removes a temp file on a failure path. The error being returned matters more than one
/// about the cleanup, and a leftover is recognised and removed by the next open.
fn remove_quietly(tmp: &Path) {
    if let Err(e) = std::fs::remove_file(tmp)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp.display(), error = %e, "cannot remove temp file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn temp_names_append_to_the_whole_name() {
        assert_eq!(
            temp_path(Path::new("/d/tombstones")),
            Path::new("/d/tombstones.tmp")
        );
        assert_eq!(
            temp_path(Path::new("/d/a.b.position")),
            Path::new("/d/a.b.position.tmp")
        );
        assert_eq!(
            temp_path(Path::new("/d/checkpoint.00000012")),
            Path::new("/d/checkpoint.00000012.tmp")
        );
    }

    #[test]
    fn replaces_the_old_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        replace_file(&p, b"first").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        replace_file(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        // Empty content is a file of zero bytes, not a missing one.
        replace_file(&p, b"").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"");
        assert_eq!(names(dir.path()), ["state"]);
    }

    #[test]
    fn a_leftover_temp_file_from_a_crash_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        std::fs::write(temp_path(&p), b"half of an older write that crashed").unwrap();
        replace_file(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["state"]);
    }

    #[test]
    fn a_failing_write_keeps_the_old_file_and_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state");
        replace_file(&p, b"old").unwrap();
        let r = replace_file_with(&p, |f| {
            // Part of the new content reaches the temp file before the failure.
            f.write_all(b"partial new").map_err(IoError::at(&p))?;
            Err::<(), _>(IoError::at(Path::new("refuser"))(io::Error::other(
                "refused",
            )))
        });
        // The closure's own error comes back unchanged.
        let e = r.unwrap_err();
        assert_eq!(e.path, Path::new("refuser"));
        assert_eq!(e.source.to_string(), "refused");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["state"]);
    }

    #[test]
    fn a_failing_rename_keeps_the_target_and_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory where the file should go: the rename over it fails.
        let p = dir.path().join("state");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("inside"), b"kept").unwrap();
        let e = replace_file(&p, b"new").unwrap_err();
        assert_eq!(e.path, p, "the rename's error names the target");
        assert_eq!(std::fs::read(p.join("inside")).unwrap(), b"kept");
        assert_eq!(names(dir.path()), ["state"]);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("absent").join("state");
        let e = replace_file(&p, b"x").unwrap_err();
        assert_eq!(e.path, temp_path(&p));
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn the_write_closure_returns_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("counted");
        let n = replace_file_with(&p, |f| {
            f.write_all(b"abc").map_err(IoError::at(&p))?;
            Ok::<_, IoError>(3)
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
    }

    #[test]
    fn syncing_a_missing_directory_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let e = sync_dir(&gone).unwrap_err();
        assert_eq!(e.path, gone);
        sync_dir(dir.path()).unwrap();
    }
}
