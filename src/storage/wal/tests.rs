//! Tests of the WAL through its public API, on real files: replay order, segments, checkpoints,
//! repair of torn and corrupt data, read-only replay and group commit.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::{FILE_HEADER_LEN, FRAME_HEADER_LEN};
use super::*;
use crate::model::{Labels, STALE_NAN};

/// Deterministic xorshift, so data is irregular but every run sees the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn value(&mut self) -> f64 {
        match self.next() % 9 {
            0 => STALE_NAN,
            1 => f64::NAN,
            2 => f64::INFINITY,
            3 => 0.0,
            4 => (self.next() % 100_000) as f64,
            // Any sign, magnitudes from subnormal up to 2: many exponents, no NaN payloads.
            _ => f64::from_bits((self.next() >> 2) | ((self.next() & 1) << 63)),
        }
    }
}

/// One commit: some new series and samples for known refs at an irregular timestamp.
#[derive(Debug, Clone, PartialEq)]
struct Commit {
    series: Vec<SeriesRecord>,
    samples: Vec<SampleRecord>,
}

/// Generates `n` commits; every commit adds 0-2 series and samples for up to 12 known refs.
fn commits(seed: u64, n: usize) -> Vec<Commit> {
    let mut rng = Rng(seed);
    let mut refs: Vec<u64> = Vec::new();
    let mut t = 1_712_000_000_000i64 + (seed % 1000) as i64;
    (0..n)
        .map(|i| {
            let series: Vec<_> = (0..rng.next() % 3)
                .map(|k| {
                    let sref = 1 + refs.len() as u64 * 7 + rng.next() % 5;
                    refs.push(sref);
                    SeriesRecord {
                        sref,
                        labels: Labels::new([
                            ("__name__", format!("metric_{}", rng.next() % 40)),
                            ("instance", format!("host-{i}-{k}.example:9100")),
                            ("path", format!("/api/\"v{}\"/ü", rng.next() % 9)),
                        ])
                        .unwrap(),
                    }
                })
                .collect();
            t += 9_000 + (rng.next() % 11_000) as i64;
            let samples = refs
                .iter()
                .rev()
                .take(12)
                .map(|&sref| SampleRecord {
                    sref,
                    t: t + (rng.next() % 7) as i64,
                    v: rng.value(),
                })
                .collect();
            Commit { series, samples }
        })
        .collect()
}

/// The records a list of commits must replay as, in order.
fn expected(cs: &[Commit]) -> Vec<Record> {
    let mut out = Vec::new();
    for c in cs {
        if !c.series.is_empty() {
            out.push(Record::Series(c.series.clone()));
        }
        if !c.samples.is_empty() {
            out.push(Record::Samples(c.samples.clone()));
        }
    }
    out
}

fn opts(fsync: FsyncPolicy, segment_size: u64) -> WalOptions {
    WalOptions {
        fsync,
        segment_size,
    }
}

fn write_commits(dir: &Path, o: WalOptions, cs: &[Commit]) {
    let (wal, _) = Wal::open(dir, o, |_| {}).unwrap();
    for c in cs {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    wal.close().unwrap();
}

fn reopen(dir: &Path) -> (Vec<Record>, ReplayStats) {
    let mut got = Vec::new();
    let (wal, stats) = Wal::open(dir, WalOptions::default(), |r| got.push(r.clone())).unwrap();
    wal.close().unwrap();
    (got, stats)
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:08}"))
}

/// Offsets of the frames in a segment file.
fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = FILE_HEADER_LEN;
    while pos + FRAME_HEADER_LEN <= bytes.len() {
        out.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += FRAME_HEADER_LEN + len;
    }
    out
}

fn segment_indices(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    v
}

#[test]
fn wal_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Wal>();
}

#[test]
fn commit_then_reopen_replays_exactly_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(11, 60);
    write_commits(dir.path(), opts(FsyncPolicy::Always, 128 << 20), &cs);
    let (got, stats) = reopen(dir.path());
    assert_eq!(got, expected(&cs));
    assert!(stats.corruptions.is_empty());
    assert_eq!(stats.records, expected(&cs).len() as u64);
    let n_samples: usize = cs.iter().map(|c| c.samples.len()).sum();
    let n_series: usize = cs.iter().map(|c| c.series.len()).sum();
    assert_eq!(stats.samples, n_samples as u64);
    assert_eq!(stats.series, n_series as u64);
    // The first open wrote segment 1, the reopen started segment 2 (left empty).
    assert_eq!(segment_indices(dir.path()), [1, 2]);
    let (again, stats) = reopen(dir.path());
    assert_eq!(again, expected(&cs));
    assert_eq!(stats.segments, 2);
}

#[test]
fn many_small_segments_replay_in_numeric_order() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(23, 150);
    let (wal, _) = Wal::open(
        dir.path(),
        opts(FsyncPolicy::Interval(Duration::from_secs(3600)), 600),
        |_| {},
    )
    .unwrap();
    for c in &cs {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let st = wal.stats();
    assert!(st.segments > 20, "{st:?}");
    assert_eq!(st.first_segment, 1);
    assert_eq!(st.last_segment as usize, st.segments);
    let on_disk: u64 = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(st.total_bytes, on_disk);
    wal.close().unwrap();
    // No commit spans two segments and no segment exceeds the limit unless it holds a single
    // commit (which may be one or two frames).
    for i in segment_indices(dir.path()) {
        let bytes = fs::read(segment_path(dir.path(), i)).unwrap();
        assert!(
            bytes.len() <= 600 || frame_offsets(&bytes).len() <= 2,
            "segment {i}"
        );
    }
    let (got, stats) = reopen(dir.path());
    assert_eq!(got, expected(&cs));
    assert!(stats.gaps.is_empty());
}

#[test]
fn a_commit_larger_than_a_segment_gets_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(5, 40);
    let small = |sref: u64, t: i64| Commit {
        series: vec![SeriesRecord {
            sref,
            labels: Labels::new([("__name__", "up"), ("job", "a")]).unwrap(),
        }],
        samples: vec![SampleRecord { sref, t, v: 1.0 }],
    };
    let big = Commit {
        series: vec![],
        samples: cs.iter().flat_map(|c| c.samples.clone()).collect(),
    };
    let all = [
        small(4, 1_712_000_000_101),
        big,
        small(9, 1_712_000_015_377),
    ];
    write_commits(dir.path(), opts(FsyncPolicy::Always, 200), &all);
    assert_eq!(segment_indices(dir.path()), [1, 2, 3]);
    let big_seg = fs::read(segment_path(dir.path(), 2)).unwrap();
    assert!(big_seg.len() > 200);
    assert_eq!(frame_offsets(&big_seg).len(), 1);
    assert_eq!(reopen(dir.path()).0, expected(&all));
}

#[test]
fn segment_order_is_numeric_across_a_digit_boundary() {
    let dir = tempfile::tempdir().unwrap();
    // Start the sequence just below 10^8, where names grow from 8 to 9 digits and a name sort
    // would put "100000000" before "99999999".
    segment::create_segment(dir.path(), 99_999_997).unwrap();
    let cs = commits(31, 40);
    write_commits(dir.path(), opts(FsyncPolicy::Always, 900), &cs);
    let idx = segment_indices(dir.path());
    assert!(
        idx.contains(&99_999_999) && idx.contains(&100_000_001),
        "{idx:?}"
    );
    assert!(dir.path().join("100000000").exists());
    let (got, stats) = reopen(dir.path());
    assert_eq!(got, expected(&cs));
    // Without a checkpoint the sequence should start at 1; the warning says so.
    assert_eq!(stats.gaps, vec![1..=99_999_996]);
}

#[test]
fn a_checkpoint_whose_records_fail_is_abandoned_and_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(11, 30);
    let (wal, _) = Wal::open(dir.path(), opts(FsyncPolicy::Always, 700), |_| {}).unwrap();
    for c in &cs {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let closed = wal.cut().unwrap();
    let series: Vec<_> = cs.iter().flat_map(|c| c.series.clone()).collect();
    let records = vec![
        Ok(Record::Series(series)),
        Err(WalError::CheckpointAbandoned(
            "a head chunk failed its checksum".into(),
        )),
    ];
    let e = wal.try_checkpoint(closed, records).unwrap_err();
    assert!(matches!(e, WalError::CheckpointAbandoned(_)), "{e}");
    assert_eq!(wal.stats().checkpoint, None);
    for i in 1..=closed {
        assert!(segment_path(dir.path(), i).exists(), "segment {i} dropped");
    }
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("checkpoint")),
        "{names:?}"
    );
    wal.close().unwrap();
    let (got, _) = reopen(dir.path());
    assert_eq!(got, expected(&cs));
}

#[test]
fn checkpoint_drops_covered_segments_and_replays_with_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(47, 90);
    let (wal, _) = Wal::open(dir.path(), opts(FsyncPolicy::Always, 700), |_| {}).unwrap();
    for c in &cs[..60] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let closed = wal.cut().unwrap();
    let before = wal.stats();
    assert!(before.segments > 4);
    for c in &cs[60..70] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    // What the head would keep: every series, and the samples of the last 10 covered commits.
    let series: Vec<_> = cs[..60].iter().flat_map(|c| c.series.clone()).collect();
    let kept: Vec<_> = cs[50..60].iter().flat_map(|c| c.samples.clone()).collect();
    let chunk = ChunkRecord {
        sref: 7,
        mint: 1_712_000_000_017,
        maxt: 1_712_000_093_554,
        data: vec![0x13, 0x00, 0xff, 0x7f, 0x42],
    };
    let cp_records = vec![
        Record::Series(series.clone()),
        Record::Chunks(vec![chunk.clone()]),
        Record::Samples(kept.clone()),
    ];
    let st = wal.checkpoint(closed, cp_records.clone()).unwrap();
    assert_eq!(st.segments_removed as u64, closed);
    assert_eq!(st.records, 3);
    for c in &cs[70..] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let after = wal.stats();
    assert_eq!(after.first_segment, closed + 1);
    assert_eq!(after.checkpoint, Some(closed));
    wal.close().unwrap();
    for i in 1..=closed {
        assert!(
            !segment_path(dir.path(), i).exists(),
            "segment {i} still there"
        );
    }
    let (got, stats) = reopen(dir.path());
    let mut want = cp_records.clone();
    want.extend(expected(&cs[60..]));
    assert_eq!(got, want);
    assert_eq!(stats.checkpoint, Some(closed));
    assert_eq!(stats.chunks, 1);
    assert!(stats.gaps.is_empty());

    // A second checkpoint replaces the first.
    let (wal, _) = Wal::open(dir.path(), WalOptions::default(), |_| {}).unwrap();
    let closed2 = wal.cut().unwrap();
    let st = wal
        .checkpoint(closed2, vec![Record::Series(series.clone())])
        .unwrap();
    assert_eq!(st.checkpoints_removed, 1);
    assert!(matches!(
        wal.checkpoint(closed, vec![]),
        Err(WalError::CheckpointOlder { .. })
    ));
    assert!(matches!(
        wal.checkpoint(closed2 + 1, vec![]),
        Err(WalError::CheckpointCoversActive { .. })
    ));
    wal.close().unwrap();
    assert!(!dir.path().join(format!("checkpoint.{closed:08}")).exists());
    assert_eq!(reopen(dir.path()).0, vec![Record::Series(series)]);
}

#[test]
fn open_finishes_an_interrupted_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(3, 30);
    write_commits(dir.path(), opts(FsyncPolicy::Always, 400), &cs);
    let segs = segment_indices(dir.path());
    let upto = segs[segs.len() / 2];
    let covered: usize = segs
        .iter()
        .filter(|&&i| i <= upto)
        .map(|&i| records_of(&segment_path(dir.path(), i)).len())
        .sum();
    // Crash after the rename, before the covered segments were deleted; plus a torn tmp file.
    let cp = vec![Record::Series(
        cs.iter().flat_map(|c| c.series.clone()).collect(),
    )];
    checkpoint::write(dir.path(), upto, cp.iter().cloned().map(Ok)).unwrap();
    fs::write(
        dir.path().join(format!("checkpoint.{:08}.tmp", upto + 1)),
        b"TMCK\x01\0\0\0\x05",
    )
    .unwrap();
    let old_cp = dir.path().join("checkpoint.00000000");
    checkpoint::write(dir.path(), 0, vec![]).unwrap();
    let (got, stats) = reopen(dir.path());
    assert_eq!(stats.checkpoint, Some(upto));
    assert!(!old_cp.exists());
    assert!(
        !dir.path()
            .join(format!("checkpoint.{:08}.tmp", upto + 1))
            .exists()
    );
    // Covered segments are left for the next checkpoint, which knows the holds; they are
    // never replayed.
    assert_eq!(segment_indices(dir.path()), segs_after_open(&segs));
    // Checkpoint first, then only the segments after it.
    assert_eq!(got[0], cp[0]);
    assert_eq!(got[1..], expected(&cs)[covered..]);
    let (wal, _) = Wal::open(dir.path(), WalOptions::default(), |_| {}).unwrap();
    let closed = wal.cut().unwrap();
    let st = wal.checkpoint(closed, cp.clone()).unwrap();
    assert_eq!(st.segments_kept, 0);
    wal.close().unwrap();
    assert!(segment_indices(dir.path()).iter().all(|&i| i > closed));
}

/// The segments on disk after an open: the ones there, plus the new active one.
fn segs_after_open(before: &[u64]) -> Vec<u64> {
    let mut v = before.to_vec();
    v.push(before.last().copied().unwrap_or(0) + 1);
    v
}

#[test]
fn a_corrupt_checkpoint_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(8, 10);
    write_commits(dir.path(), opts(FsyncPolicy::Always, 128 << 20), &cs);
    checkpoint::write(dir.path(), 1, expected(&cs).into_iter().map(Ok)).unwrap();
    let path = dir.path().join("checkpoint.00000001");
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    match Wal::open(dir.path(), WalOptions::default(), |_| {}) {
        Err(WalError::CorruptCheckpoint { path: p, .. }) => assert_eq!(p, path),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("opened a WAL with a corrupt checkpoint"),
    }
    // Nothing was deleted on the way to the error, not even the segment it covers.
    assert!(path.exists());
    assert!(segment_path(dir.path(), 1).exists());
    let err = read_only(dir.path(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("checkpoint.00000001"), "{err}");
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record() {
    let pristine = tempfile::tempdir().unwrap();
    let cs = commits(61, 12);
    let last = Commit {
        series: vec![],
        samples: cs[11].samples[..5].to_vec(),
    };
    let (wal, _) = Wal::open(
        pristine.path(),
        opts(FsyncPolicy::Always, 128 << 20),
        |_| {},
    )
    .unwrap();
    for c in &cs[..11] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let seg = segment_path(pristine.path(), 1);
    let last_start = fs::metadata(&seg).unwrap().len();
    wal.commit(&last.series, &last.samples).unwrap();
    wal.close().unwrap();
    let full = fs::read(&seg).unwrap();
    assert!(full.len() as u64 > last_start + 20);
    let want = expected(&cs[..11]);

    let work = tempfile::tempdir().unwrap();
    for cut in last_start..full.len() as u64 {
        let dir = work.path().join(format!("cut{cut}"));
        fs::create_dir(&dir).unwrap();
        fs::write(segment_path(&dir, 1), &full[..cut as usize]).unwrap();
        let (got, stats) = reopen(&dir);
        assert_eq!(got, want, "cut at {cut}");
        if cut == last_start {
            assert!(stats.corruptions.is_empty());
        } else {
            assert_eq!(stats.corruptions.len(), 1, "cut at {cut}");
            assert_eq!(stats.corruptions[0].offset, last_start);
            assert_eq!(stats.corruptions[0].segment, segment_path(&dir, 1));
            assert_eq!(stats.bytes_truncated, cut - last_start);
        }
        assert_eq!(
            fs::metadata(segment_path(&dir, 1)).unwrap().len(),
            last_start
        );
        let (again, stats) = reopen(&dir);
        assert_eq!(again, want);
        assert!(stats.corruptions.is_empty(), "cut at {cut}: {stats:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// Writes `cs` into segments of at most `size` bytes; returns the number of segment files.
fn multi_segment(dir: &Path, cs: &[Commit], size: u64) -> usize {
    write_commits(
        dir,
        opts(FsyncPolicy::Interval(Duration::from_secs(3600)), size),
        cs,
    );
    segment_indices(dir).len()
}

/// Replays one segment file alone, to learn what its records are.
fn records_of(path: &Path) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    fs::copy(path, dir.path().join("00000001")).unwrap();
    let mut got = Vec::new();
    read_only(dir.path(), |r| got.push(r.clone())).unwrap();
    got
}

#[test]
fn flipped_byte_in_an_old_segment_truncates_only_that_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(71, 120);
    let n = multi_segment(dir.path(), &cs, 1500);
    assert!(n >= 5, "{n} segments");
    let all = expected(&cs);
    let victim = segment_path(dir.path(), 2);
    let bytes = fs::read(&victim).unwrap();
    let offsets = frame_offsets(&bytes);
    assert!(offsets.len() >= 3);
    let bad = offsets[offsets.len() / 2];
    let next = offsets[offsets.len() / 2 + 1];
    let seg1 = records_of(&segment_path(dir.path(), 1));
    let seg2 = records_of(&victim);
    let kept_of_seg2 = offsets.len() / 2;
    let mut flipped = bytes.clone();
    flipped[(bad + FRAME_HEADER_LEN + next) / 2] ^= 0x20;
    fs::write(&victim, &flipped).unwrap();

    let (got, stats) = reopen(dir.path());
    assert_eq!(stats.corruptions.len(), 1);
    assert_eq!(stats.corruptions[0].segment, victim);
    assert_eq!(stats.corruptions[0].offset, bad as u64);
    assert!(
        stats.corruptions[0].reason.contains("crc"),
        "{:?}",
        stats.corruptions
    );
    assert_eq!(fs::metadata(&victim).unwrap().len(), bad as u64);
    // Segment 1, the good part of segment 2, and then everything after segment 2.
    let lost = seg2.len() - kept_of_seg2;
    let mut want = all[..seg1.len() + kept_of_seg2].to_vec();
    want.extend_from_slice(&all[seg1.len() + seg2.len()..]);
    assert_eq!(got.len(), all.len() - lost);
    assert_eq!(got, want);
    assert!(reopen(dir.path()).1.corruptions.is_empty());
}

#[test]
fn flipped_length_field_truncates_at_that_record() {
    for (byte, bit) in [(3usize, 0x80u8), (0, 0x01), (1, 0x40)] {
        let dir = tempfile::tempdir().unwrap();
        let cs = commits(83, 80);
        multi_segment(dir.path(), &cs, 1200);
        let all = expected(&cs);
        let victim = segment_path(dir.path(), 3);
        let before: usize = (1..3)
            .map(|i| records_of(&segment_path(dir.path(), i)).len())
            .sum();
        let in_victim = records_of(&victim).len();
        let mut bytes = fs::read(&victim).unwrap();
        let offsets = frame_offsets(&bytes);
        let bad = offsets[1];
        bytes[bad + byte] ^= bit;
        fs::write(&victim, &bytes).unwrap();
        let (got, stats) = reopen(dir.path());
        assert_eq!(stats.corruptions.len(), 1, "byte {byte}: {stats:?}");
        assert_eq!(stats.corruptions[0].offset, bad as u64);
        assert_eq!(fs::metadata(&victim).unwrap().len(), bad as u64);
        let mut want = all[..before + 1].to_vec();
        want.extend_from_slice(&all[before + in_victim..]);
        assert_eq!(got, want, "byte {byte}");
    }
}

#[test]
fn a_missing_segment_is_a_gap_warning_and_later_ones_replay() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(97, 60);
    multi_segment(dir.path(), &cs, 800);
    let seg3 = records_of(&segment_path(dir.path(), 3));
    let before: usize = (1..3)
        .map(|i| records_of(&segment_path(dir.path(), i)).len())
        .sum();
    fs::remove_file(segment_path(dir.path(), 3)).unwrap();
    let (got, stats) = reopen(dir.path());
    assert_eq!(stats.gaps, vec![3..=3]);
    let all = expected(&cs);
    let mut want = all[..before].to_vec();
    want.extend_from_slice(&all[before + seg3.len()..]);
    assert_eq!(got, want);
}

#[test]
fn bad_segment_header_truncates_to_empty_and_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(13, 20);
    multi_segment(dir.path(), &cs, 700);
    let seg1 = records_of(&segment_path(dir.path(), 1));
    let mut bytes = fs::read(segment_path(dir.path(), 1)).unwrap();
    bytes[0] = b'X';
    fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
    let (got, stats) = reopen(dir.path());
    assert_eq!(stats.corruptions[0].offset, 0);
    assert_eq!(fs::metadata(segment_path(dir.path(), 1)).unwrap().len(), 0);
    assert_eq!(got, expected(&cs)[seg1.len()..]);

    let mut bytes = fs::read(segment_path(dir.path(), 2)).unwrap();
    bytes[4] = 9;
    fs::write(segment_path(dir.path(), 2), &bytes).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default(), |_| {}),
        Err(WalError::UnsupportedVersion { version: 9, .. })
    ));
    assert_eq!(fs::read(segment_path(dir.path(), 2)).unwrap(), bytes);
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (e.path(), fs::read(e.path()).unwrap(), m.modified().unwrap())
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn read_only_changes_nothing_and_tolerates_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(101, 50);
    multi_segment(dir.path(), &cs, 900);
    let last = *segment_indices(dir.path()).last().unwrap();
    let torn = segment_path(dir.path(), last);
    let bytes = fs::read(&torn).unwrap();
    let offsets = frame_offsets(&bytes);
    let cut_at = *offsets.last().unwrap();
    fs::write(&torn, &bytes[..cut_at + 5]).unwrap();
    fs::write(dir.path().join("checkpoint.00000099.tmp"), b"partial").unwrap();
    let before = snapshot(dir.path());

    let mut got = Vec::new();
    let stats = read_only(dir.path(), |r| got.push(r.clone())).unwrap();
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(stats.corruptions.len(), 1);
    assert_eq!(stats.corruptions[0].offset, cut_at as u64);
    assert_eq!(stats.bytes_truncated, 5);
    let all = expected(&cs);
    assert_eq!(got, all[..all.len() - 1]);
    // The open that follows repairs, and sees the same records.
    let (reopened, _) = reopen(dir.path());
    assert_eq!(reopened, got);
    assert!(read_only(&dir.path().join("nope"), |_| {}).unwrap().records == 0);
}

#[test]
fn read_only_beside_a_live_writer() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(107, 200);
    let (wal, _) = Wal::open(
        dir.path(),
        opts(FsyncPolicy::Interval(Duration::from_millis(5)), 2000),
        |_| {},
    )
    .unwrap();
    let wal = Arc::new(wal);
    let writer = {
        let wal = Arc::clone(&wal);
        let cs = cs.clone();
        std::thread::spawn(move || {
            for (i, c) in cs.iter().enumerate() {
                wal.commit(&c.series, &c.samples).unwrap();
                if i % 50 == 49 {
                    let closed = wal.cut().unwrap();
                    wal.checkpoint(closed, vec![Record::Series(vec![])])
                        .unwrap();
                }
            }
        })
    };
    let all = expected(&cs);
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let mut got = Vec::new();
        match read_only(dir.path(), |r| got.push(r.clone())) {
            Ok(_) => {}
            // A segment deleted by a concurrent checkpoint is reported, never skipped: the
            // reader starts over (what was delivered so far is still checked below).
            Err(WalError::Vanished { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        // Whatever was read appears in commit order (never reorderings or inventions).
        let mut rest = all.iter();
        for r in &got {
            assert!(
                rest.any(|a| a == r),
                "record out of order or unknown: {r:?}"
            );
        }
        reads += 1;
    }
    writer.join().unwrap();
    Arc::try_unwrap(wal).ok().unwrap().close().unwrap();
}

#[test]
fn concurrent_committers_under_always_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(FsyncPolicy::Always, 64 << 10), |_| {}).unwrap();
    let wal = Arc::new(wal);
    let threads = 6u64;
    let per_thread = 40usize;
    let handles: Vec<_> = (0..threads)
        .map(|th| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                // Each thread owns refs th*1000.. so replay can check its order.
                let cs = commits(200 + th, per_thread);
                for c in &cs {
                    let series: Vec<_> = c
                        .series
                        .iter()
                        .map(|s| SeriesRecord {
                            sref: s.sref + th * 1000,
                            labels: s.labels.clone(),
                        })
                        .collect();
                    let samples: Vec<_> = c
                        .samples
                        .iter()
                        .map(|s| SampleRecord {
                            sref: s.sref + th * 1000,
                            ..*s
                        })
                        .collect();
                    wal.commit(&series, &samples).unwrap();
                }
                cs
            })
        })
        .collect();
    let per: Vec<Vec<Commit>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let st = wal.stats();
    let commits_total = threads as usize * per_thread;
    assert!(st.fsyncs >= 1);
    assert!(st.fsyncs as usize <= commits_total + st.segments, "{st:?}");
    Arc::try_unwrap(wal).ok().unwrap().close().unwrap();

    let (got, _) = reopen(dir.path());
    for (th, cs) in per.iter().enumerate() {
        let base = th as u64 * 1000;
        let mine: Vec<Record> = got
            .iter()
            .filter_map(|r| match r {
                Record::Series(v) if v[0].sref >= base && v[0].sref < base + 1000 => {
                    Some(Record::Series(
                        v.iter()
                            .map(|s| SeriesRecord {
                                sref: s.sref - base,
                                labels: s.labels.clone(),
                            })
                            .collect(),
                    ))
                }
                Record::Samples(v) if v[0].sref >= base && v[0].sref < base + 1000 => {
                    Some(Record::Samples(
                        v.iter()
                            .map(|s| SampleRecord {
                                sref: s.sref - base,
                                ..*s
                            })
                            .collect(),
                    ))
                }
                _ => None,
            })
            .collect();
        assert_eq!(mine, expected(cs), "thread {th}");
    }
}

#[test]
fn group_commit_shares_a_slow_fsync() {
    // Committers that arrive while an fsync runs wait for the next one together, so with many
    // threads the fsync count stays well below the commit count.
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(FsyncPolicy::Always, 128 << 20), |_| {}).unwrap();
    wal.slow_fsyncs(Duration::from_millis(2));
    let wal = Arc::new(wal);
    let threads = 16;
    let per_thread = 25;
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|th| {
            let wal = Arc::clone(&wal);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let cs = commits(300 + th as u64, per_thread);
                barrier.wait();
                for c in &cs {
                    wal.commit(&c.series, &c.samples).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let st = wal.stats();
    assert!(
        (st.fsyncs as usize) < threads * per_thread / 2,
        "{} fsyncs for {} commits",
        st.fsyncs,
        threads * per_thread
    );
    Arc::try_unwrap(wal).ok().unwrap().close().unwrap();
    assert_eq!(reopen(dir.path()).1.records as usize, {
        let mut n = 0;
        for th in 0..threads {
            n += expected(&commits(300 + th as u64, per_thread)).len();
        }
        n
    });
}

#[test]
fn always_fsyncs_before_commit_returns_interval_does_not() {
    let cs: Vec<_> = commits(131, 12)
        .into_iter()
        .filter(|c| !c.samples.is_empty())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(FsyncPolicy::Always, 128 << 20), |_| {}).unwrap();
    for (i, c) in cs.iter().enumerate() {
        wal.commit(&c.series, &c.samples).unwrap();
        assert_eq!(wal.stats().fsyncs, i as u64 + 1);
    }
    wal.commit(&[], &[]).unwrap();
    wal.sync().unwrap();
    assert_eq!(wal.stats().fsyncs, cs.len() as u64, "nothing new to sync");
    wal.close().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(
        dir.path(),
        opts(FsyncPolicy::Interval(Duration::from_secs(3600)), 128 << 20),
        |_| {},
    )
    .unwrap();
    for c in &cs {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let st = wal.stats();
    assert_eq!(st.fsyncs, 0);
    assert!(st.bytes_written > 0);
    // Written to the OS already: a reader sees every commit before any fsync.
    let mut seen = Vec::new();
    read_only(dir.path(), |r| seen.push(r.clone())).unwrap();
    assert_eq!(seen, expected(&cs));
    wal.sync().unwrap();
    assert_eq!(wal.stats().fsyncs, 1);
    wal.close().unwrap();
}

#[test]
fn interval_thread_fsyncs_and_stops_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(137, 3);
    let (wal, _) = Wal::open(
        dir.path(),
        opts(FsyncPolicy::Interval(Duration::from_millis(10)), 128 << 20),
        |_| {},
    )
    .unwrap();
    wal.commit(&cs[0].series, &cs[0].samples).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.stats().fsyncs == 0 {
        assert!(Instant::now() < deadline, "no background fsync");
        std::thread::sleep(Duration::from_millis(5));
    }
    // Idle: nothing written since, so the thread does not fsync again.
    let n = wal.stats().fsyncs;
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(wal.stats().fsyncs, n);
    wal.commit(&cs[1].series, &cs[1].samples).unwrap();
    drop(wal);
    assert_eq!(reopen(dir.path()).0, expected(&cs[..2]));
}

mod tail;

/// Copies every file of `from` into a new temporary directory.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

#[test]
fn replay_decoding_on_its_own_thread_matches_replay_on_one_thread_damage_included() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(211, 120);
    multi_segment(dir.path(), &cs, 900);
    let segments = segment_indices(dir.path());
    assert!(segments.len() >= 4, "{segments:?}");
    // A flipped byte in the middle of the second segment, and a torn last one.
    let mid = segment_path(dir.path(), segments[1]);
    let mut bytes = fs::read(&mid).unwrap();
    let at = frame_offsets(&bytes)[1] + FRAME_HEADER_LEN + 2;
    bytes[at] ^= 0x20;
    fs::write(&mid, &bytes).unwrap();
    let last = segment_path(dir.path(), *segments.last().unwrap());
    let len = fs::metadata(&last).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();

    for mode in [replay::Mode::Repair, replay::Mode::ReadOnly] {
        let (a, b) = (copy_dir(dir.path()), copy_dir(dir.path()));
        let mut piped = Vec::new();
        let p = replay::replay(a.path(), mode, &mut |r| piped.push(r.clone())).unwrap();
        let mut serial = Vec::new();
        let s = replay::replay_in_order(b.path(), mode, &mut |r| serial.push(r)).unwrap();
        assert_eq!(piped, serial, "{mode:?}");
        // Paths differ by directory only; everything else about the damage is the same.
        assert_eq!(p.stats.corruptions.len(), 2, "{mode:?}");
        for (x, y) in p.stats.corruptions.iter().zip(&s.stats.corruptions) {
            assert_eq!(x.segment.file_name(), y.segment.file_name());
            assert_eq!((x.offset, &x.reason), (y.offset, &y.reason));
        }
        let strip = |mut st: ReplayStats| {
            st.corruptions.clear();
            st
        };
        assert_eq!(strip(p.stats), strip(s.stats), "{mode:?}");
        assert_eq!(p.segments, s.segments, "{mode:?}");
        assert_eq!(
            snapshot_bytes(a.path()),
            snapshot_bytes(b.path()),
            "{mode:?}"
        );
        // Nothing after the flipped byte of that segment, everything of the later ones.
        assert!(piped.len() < expected(&cs).len());
    }
}

#[test]
fn a_panic_while_applying_stops_the_decoder_before_it_reads_on() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(211, 120);
    multi_segment(dir.path(), &cs, 900);
    let segments = segment_indices(dir.path());
    assert!(segments.len() >= 4, "{segments:?}");
    // A torn last segment: a decoder that read on to it would cut it.
    let last = segment_path(dir.path(), *segments.last().unwrap());
    let torn = fs::metadata(&last).unwrap().len() - 3;
    fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(torn)
        .unwrap();
    let mut applied = 0;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        replay::replay(dir.path(), replay::Mode::Repair, &mut |_| {
            applied += 1;
            panic!("applying failed");
        })
    }));
    // The applying side's panic is the one raised, after its first record.
    let panic = r.expect_err("the panic is passed on");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"applying failed"));
    assert_eq!(applied, 1);
    // The decoder stopped within the records it had in hand: the last segment is untouched.
    assert_eq!(fs::metadata(&last).unwrap().len(), torn);
    // A replay that goes on does reach it and repairs it.
    replay::replay(dir.path(), replay::Mode::Repair, &mut |_| {}).unwrap();
    assert!(fs::metadata(&last).unwrap().len() < torn);
}

fn snapshot_bytes(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn replay_errors_come_back_through_the_decoding_thread() {
    let dir = tempfile::tempdir().unwrap();
    multi_segment(dir.path(), &commits(5, 30), 700);
    let mut bytes = fs::read(segment_path(dir.path(), 2)).unwrap();
    bytes[4] = 9;
    fs::write(segment_path(dir.path(), 2), &bytes).unwrap();
    let mut got = Vec::new();
    let e = replay::replay(dir.path(), replay::Mode::Repair, &mut |r| {
        got.push(r.clone())
    })
    .err();
    assert!(
        matches!(e, Some(WalError::UnsupportedVersion { version: 9, .. })),
        "{e:?}"
    );
    // Segment 1's records were delivered before the refusal.
    assert_eq!(got, records_of(&segment_path(dir.path(), 1)));
}
