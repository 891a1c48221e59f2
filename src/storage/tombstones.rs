//! Tombstones: the time intervals of series that `Db::delete_series` removed, kept in one file
//! of the data directory until `Db::clean_tombstones` has rewritten the blocks holding them.
//!
//! Series are keyed by their full label set, not by a ref or a block-local id, so one set of
//! tombstones applies to every block and to the head as it is rebuilt from the WAL, however
//! flushes and compactions move the samples between them. The byte format is drawn in
//! `docs/format/tombstones.md`; `encode` and `decode` are that format and nothing else, `load`
//! and `store` do the I/O.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{StorageError, fsutil, io_err};
use crate::encoding::{self, Decbuf, put_u32_le, put_u64_le};
use crate::model::{HistogramSample, Labels, Sample};

/// Name of the tombstones file in the data directory.
pub const TOMBSTONES_FILE: &str = "tombstones";
const MAGIC: &[u8; 4] = b"TMTS";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 8;
const CRC_LEN: usize = 4;

/// A closed time interval `[mint, maxt]`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    /// First deleted timestamp.
    pub mint: i64,
    /// Last deleted timestamp (inclusive).
    pub maxt: i64,
}

impl Interval {
    /// True when `t` lies inside.
    pub fn contains(&self, t: i64) -> bool {
        self.mint <= t && t <= self.maxt
    }

    /// True when the two closed intervals share a point.
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.mint <= maxt && mint <= self.maxt
    }
}

/// Deleted intervals per series: sorted, disjoint and non-adjacent within each series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tombstones {
    series: BTreeMap<Labels, Vec<Interval>>,
}

/// True when a sorted, merged interval list covers `t`.
pub(crate) fn covered(intervals: &[Interval], t: i64) -> bool {
    let i = intervals.partition_point(|iv| iv.maxt < t);
    intervals.get(i).is_some_and(|iv| iv.contains(t))
}

impl Tombstones {
    /// True when nothing is deleted: queries then skip every tombstone lookup.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of series with deleted intervals.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// The deleted intervals of one series, sorted.
    pub fn get(&self, labels: &Labels) -> Option<&[Interval]> {
        self.series.get(labels).map(Vec::as_slice)
    }

    /// Every series with its deleted intervals, by labels.
    pub fn iter(&self) -> impl Iterator<Item = (&Labels, &[Interval])> {
        self.series.iter().map(|(l, v)| (l, v.as_slice()))
    }

    /// Records `iv` as deleted for `labels`, merged with the intervals it overlaps or touches.
    /// Returns false when it was already covered (or empty) and nothing changed.
    pub fn add(&mut self, labels: &Labels, iv: Interval) -> bool {
        if iv.mint > iv.maxt {
            return false;
        }
        let list = match self.series.get_mut(labels) {
            Some(list) => list,
            None => self.series.entry(labels.clone()).or_default(),
        };
        if list.iter().any(|x| x.mint <= iv.mint && iv.maxt <= x.maxt) {
            return false;
        }
        list.push(iv);
        list.sort_unstable();
        let mut merged: Vec<Interval> = Vec::with_capacity(list.len());
        for x in list.drain(..) {
            match merged.last_mut() {
                Some(last) if x.mint <= last.maxt.saturating_add(1) => {
                    last.maxt = last.maxt.max(x.maxt);
                }
                _ => merged.push(x),
            }
        }
        *list = merged;
        true
    }

    /// True when `labels` has a sample deleted at `t`.
    pub fn is_deleted(&self, labels: &Labels, t: i64) -> bool {
        self.get(labels).is_some_and(|iv| covered(iv, t))
    }

    /// Removes the deleted samples of series `labels` from `samples` (time-ordered).
    pub fn filter(&self, labels: &Labels, samples: &mut Vec<Sample>) {
        if let Some(iv) = self.get(labels) {
            samples.retain(|s| !covered(iv, s.t));
        }
    }

    /// Removes the deleted histogram samples of series `labels` from `histograms`.
    pub fn filter_histograms(&self, labels: &Labels, histograms: &mut Vec<HistogramSample>) {
        if let Some(iv) = self.get(labels) {
            histograms.retain(|s| !covered(iv, s.t));
        }
    }

    /// Keeps only the intervals `keep` accepts; series left without any are dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&Labels, &Interval) -> bool) {
        self.series.retain(|l, list| {
            list.retain(|iv| keep(l, iv));
            !list.is_empty()
        });
    }
}

// ---- Byte format -------------------------------------------------------------------------

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Lengths and counts come from memory; a series with 4 billion labels does not exist.
    put_u32_le(out, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// The file's bytes: header, series in label order, CRC32C of everything before it.
pub fn encode(t: &Tombstones) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    put_u32(&mut out, t.series.len());
    for (labels, intervals) in &t.series {
        put_u32(&mut out, labels.len());
        for (n, v) in labels.iter() {
            put_str(&mut out, n);
            put_str(&mut out, v);
        }
        put_u32(&mut out, intervals.len());
        for iv in intervals {
            put_u64_le(&mut out, iv.mint as u64);
            put_u64_le(&mut out, iv.maxt as u64);
        }
    }
    let crc = crc32c::crc32c(&out);
    put_u32_le(&mut out, crc);
    out
}

/// A cursor over the file's body that turns every short or malformed read into a located error.
struct Reader<'a> {
    d: Decbuf<'a>,
    path: &'a Path,
}

impl Reader<'_> {
    fn pos(&self) -> usize {
        self.d.pos()
    }

    fn corrupt(&self, offset: usize, reason: impl Into<String>) -> StorageError {
        StorageError::CorruptTombstones {
            path: self.path.to_path_buf(),
            offset: offset as u64,
            reason: reason.into(),
        }
    }

    /// `what` ran past the end of the body.
    fn short(&self, what: &str, e: encoding::Error) -> StorageError {
        self.corrupt(e.offset(), format!("{what} runs past the end"))
    }

    fn u32(&mut self, what: &str) -> Result<usize, StorageError> {
        match self.d.u32_le() {
            Ok(n) => Ok(n as usize),
            Err(e) => Err(self.short(what, e)),
        }
    }

    fn i64(&mut self, what: &str) -> Result<i64, StorageError> {
        match self.d.u64_le() {
            Ok(n) => Ok(n as i64),
            Err(e) => Err(self.short(what, e)),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, StorageError> {
        let at = self.pos();
        let n = self.u32(what)?;
        match self.d.bytes(n) {
            Ok(b) => std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| self.corrupt(at, format!("{what} is not UTF-8"))),
            Err(e) => Err(self.short(what, e)),
        }
    }
}

/// Reads the file's bytes; `path` only names the file in errors. Anything that is not exactly
/// what [`encode`] writes is refused: a tombstone misread could hide data or let deleted data
/// reappear.
pub fn decode(buf: &[u8], path: &Path) -> Result<Tombstones, StorageError> {
    let corrupt = |offset: usize, reason: String| StorageError::CorruptTombstones {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if buf.len() < HEADER_LEN + 4 + CRC_LEN {
        return Err(corrupt(
            0,
            format!("{} bytes is too short for a tombstones file", buf.len()),
        ));
    }
    if &buf[..4] != MAGIC {
        return Err(corrupt(0, "bad magic: not a tombstones file".into()));
    }
    if buf[4] != VERSION {
        return Err(corrupt(
            4,
            format!(
                "format version {} is not {VERSION} (written by another tidemark version)",
                buf[4]
            ),
        ));
    }
    let body_end = buf.len() - CRC_LEN;
    let mut stored = [0u8; 4];
    stored.copy_from_slice(&buf[body_end..]);
    let stored = u32::from_le_bytes(stored);
    let computed = crc32c::crc32c(&buf[..body_end]);
    if stored != computed {
        return Err(corrupt(
            body_end,
            format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    let mut r = Reader {
        d: Decbuf::at(&buf[..body_end], HEADER_LEN),
        path,
    };
    let mut out = Tombstones::default();
    let count = r.u32("series count")?;
    let mut prev: Option<Labels> = None;
    for _ in 0..count {
        let at = r.pos();
        let nlabels = r.u32("label count")?;
        // Each label takes at least 8 bytes: a count beyond what is left is corruption, and
        // must not size an allocation.
        if nlabels == 0 || nlabels > (body_end - r.pos()) / 8 {
            return Err(r.corrupt(at, format!("implausible label count {nlabels}")));
        }
        let mut pairs = Vec::with_capacity(nlabels);
        for _ in 0..nlabels {
            let n = r.string("label name")?;
            let v = r.string("label value")?;
            pairs.push((n, v));
        }
        if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(r.corrupt(at, "labels are not sorted by name"));
        }
        let labels = Labels::new(pairs).map_err(|e| r.corrupt(at, format!("bad labels: {e}")))?;
        if prev.as_ref().is_some_and(|p| *p >= labels) {
            return Err(r.corrupt(at, format!("series {labels} out of order or repeated")));
        }
        let iv_at = r.pos();
        let nint = r.u32("interval count")?;
        if nint == 0 || nint > (body_end - r.pos()) / 16 {
            return Err(r.corrupt(iv_at, format!("implausible interval count {nint}")));
        }
        let mut intervals = Vec::with_capacity(nint);
        for _ in 0..nint {
            let at = r.pos();
            let mint = r.i64("interval start")?;
            let maxt = r.i64("interval end")?;
            let ok = mint <= maxt
                && intervals
                    .last()
                    .is_none_or(|p: &Interval| p.maxt.saturating_add(1) < mint);
            if !ok {
                return Err(r.corrupt(
                    at,
                    format!("interval [{mint}, {maxt}] of {labels} is empty, unsorted or overlaps the previous one"),
                ));
            }
            intervals.push(Interval { mint, maxt });
        }
        out.series.insert(labels.clone(), intervals);
        prev = Some(labels);
    }
    if r.pos() != body_end {
        return Err(r.corrupt(
            r.pos(),
            format!(
                "{} unexpected bytes after the last series",
                body_end - r.pos()
            ),
        ));
    }
    Ok(out)
}

// ---- I/O ---------------------------------------------------------------------------------

/// The tombstones file of data directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(TOMBSTONES_FILE)
}

/// Reads the tombstones of data directory `dir`; no file means nothing is deleted. A file that
/// cannot be read or decoded is an error naming it, never an empty set.
pub fn load(dir: &Path) -> Result<Tombstones, StorageError> {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(buf) => decode(&buf, &p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Tombstones::default()),
        Err(e) => Err(io_err(&p)(e)),
    }
}

/// Makes `t` the tombstones of data directory `dir`, durably: written under a temp name,
/// fsynced, renamed over the old file, directory fsynced. An empty set removes the file. A
/// crash at any point leaves the old file or the new one, whole.
pub fn store(dir: &Path, t: &Tombstones) -> Result<(), StorageError> {
    let p = path(dir);
    if t.is_empty() {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&p)(e)),
        }
        return Ok(fsutil::sync_dir(dir)?);
    }
    Ok(fsutil::replace_file(&p, &encode(t))?)
}

/// Removes a temp file left by a `store` that crashed before its rename.
pub fn remove_temp_file(dir: &Path) -> Result<(), StorageError> {
    let tmp = fsutil::temp_path(&path(dir));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&tmp)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(job: &str) -> Labels {
        Labels::new([("__name__", "up"), ("job", job)]).unwrap()
    }

    fn iv(mint: i64, maxt: i64) -> Interval {
        Interval { mint, maxt }
    }

    #[test]
    fn add_merges_overlapping_and_touching_intervals() {
        let mut t = Tombstones::default();
        assert!(t.add(&l("a"), iv(10, 20)));
        assert!(t.add(&l("a"), iv(40, 50)));
        assert!(!t.add(&l("a"), iv(12, 18)), "already covered");
        assert!(!t.add(&l("a"), iv(30, 29)), "empty");
        assert!(t.add(&l("a"), iv(21, 25)), "touching extends");
        assert_eq!(t.get(&l("a")).unwrap(), &[iv(10, 25), iv(40, 50)]);
        assert!(t.add(&l("a"), iv(24, 41)));
        assert_eq!(t.get(&l("a")).unwrap(), &[iv(10, 50)]);
        assert!(t.add(&l("a"), iv(i64::MIN, -3)));
        assert!(t.add(&l("a"), iv(51, i64::MAX)));
        assert_eq!(
            t.get(&l("a")).unwrap(),
            &[iv(i64::MIN, -3), iv(10, i64::MAX)]
        );
        assert!(t.is_deleted(&l("a"), -3) && !t.is_deleted(&l("a"), -2));
        assert!(!t.is_deleted(&l("b"), 15));
        let mut s: Vec<Sample> = [-7, -2, 9, 10, 77]
            .iter()
            .map(|&x| Sample::new(x, 0.5))
            .collect();
        t.filter(&l("a"), &mut s);
        assert_eq!(s.iter().map(|s| s.t).collect::<Vec<_>>(), vec![-2, 9]);
    }

    #[test]
    fn round_trips_through_bytes() {
        let mut t = Tombstones::default();
        t.add(&l("b"), iv(-5_000, 7_331));
        t.add(&l("b"), iv(90_017, i64::MAX));
        t.add(&l("a\"\n☃"), iv(i64::MIN, i64::MIN));
        let bytes = encode(&t);
        assert_eq!(&bytes[..5], b"TMTS\x01");
        assert_eq!(decode(&bytes, Path::new("x")).unwrap(), t);
        let empty = encode(&Tombstones::default());
        assert!(decode(&empty, Path::new("x")).unwrap().is_empty());
    }

    #[test]
    fn the_documented_example_encodes_byte_for_byte() {
        // docs/format/tombstones.md, "Example".
        let doc = "54 4d 54 53 01 00 00 00 01 00 00 00 02 00 00 00 08 00 00 00 5f 5f 6e 61 6d 65 \
                   5f 5f 02 00 00 00 75 70 03 00 00 00 6a 6f 62 04 00 00 00 6e 6f 64 65 01 00 00 \
                   00 00 68 e5 cf 8b 01 00 00 5f 52 e6 cf 8b 01 00 00 c4 8f 51 8d";
        let want: Vec<u8> = doc
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        let mut t = Tombstones::default();
        t.add(
            &Labels::new([("__name__", "up"), ("job", "node")]).unwrap(),
            iv(1_700_000_000_000, 1_700_000_059_999),
        );
        assert_eq!(encode(&t), want);
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let mut t = Tombstones::default();
        t.add(&l("node"), iv(1_000, 2_999));
        t.add(&l("prom"), iv(-17, 4));
        let bytes = encode(&t);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x21;
            let e = decode(&b, Path::new("/d/tombstones")).unwrap_err();
            assert!(e.to_string().contains("/d/tombstones"), "{e}");
        }
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], Path::new("t")).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn structure_is_checked_behind_a_valid_checksum() {
        // Intervals out of order, written with a correct CRC: still refused.
        let mut body = Vec::new();
        body.extend_from_slice(b"TMTS\x01\0\0\0");
        put_u32(&mut body, 1);
        put_u32(&mut body, 1);
        put_str(&mut body, "__name__");
        put_str(&mut body, "up");
        put_u32(&mut body, 2);
        for x in [50i64, 60, 10, 20] {
            body.extend_from_slice(&x.to_le_bytes());
        }
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        let e = decode(&body, Path::new("t")).unwrap_err().to_string();
        assert!(e.contains("unsorted"), "{e}");
    }

    #[test]
    fn store_and_load_with_empty_meaning_no_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_empty());
        let mut t = Tombstones::default();
        t.add(&l("x"), iv(3, 8));
        store(dir.path(), &t).unwrap();
        assert_eq!(load(dir.path()).unwrap(), t);
        assert!(!dir.path().join("tombstones.tmp").exists());
        store(dir.path(), &Tombstones::default()).unwrap();
        assert!(!path(dir.path()).exists());
        assert!(load(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_failed_store_leaves_no_temp_file() {
        // A directory where the file belongs: the rename fails after the temp file is written.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(path(dir.path())).unwrap();
        let mut t = Tombstones::default();
        t.add(&l("x"), iv(3, 8));
        let e = store(dir.path(), &t).unwrap_err();
        assert!(matches!(e, StorageError::Io { .. }), "{e}");
        assert!(!dir.path().join("tombstones.tmp").exists());
        assert!(path(dir.path()).is_dir());
    }
}
