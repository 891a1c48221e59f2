//! Damaged files: truncated and bit-flipped WAL segments, and block files with a flipped byte
//! in each section or cut short. Opening must succeed, report the damage with its location,
//! keep everything the damage did not touch, and never return wrong data; the read-only view
//! must behave the same without changing a byte.
//!
//! Offsets come from the documented formats (docs/format/wal.md, docs/format/block.md): WAL
//! frames are walked by their length fields, block sections are located through the footer.

#[path = "common/store.rs"]
mod store;
use store::{Store, read_all};

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tidemark::model::{Labels, STALE_NAN};
use tidemark::storage::sstable::Block;
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options, ReadOnlyDb};

const H: i64 = 3_600_000;
const T0: i64 = 1_712_000_001_313;
const WAL_HEADER: usize = 8;
const FRAME_HEADER: usize = 9;
const FOOTER: usize = 240;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn value(&mut self) -> f64 {
        match self.next() % 17 {
            0 => f64::NAN,
            1 => STALE_NAN,
            2 => f64::from_bits(self.next()),
            _ => (self.next() % 1_000_000) as f64 / 64.0,
        }
    }
}

fn opts(segment_size: u64) -> Options {
    Options {
        fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        wal_segment_size: segment_size,
        block_duration: H,
        retention_time: 0,
        retention_size: 0,
    }
}

fn lbl(name: &str, inst: usize) -> Labels {
    Labels::new([("__name__", name), ("instance", &format!("host-{inst}"))]).unwrap()
}

/// One commit's samples.
type Commit = Vec<(Labels, i64, f64)>;

fn store_of<'a>(commits: impl IntoIterator<Item = &'a Commit>) -> Store {
    let mut m = Store::new();
    for c in commits {
        for (l, t, v) in c {
            m.entry(l.clone()).or_default().push((*t, v.to_bits()));
        }
    }
    m
}

fn apply(db: &Db, c: &Commit) {
    let mut app = db.appender();
    for (l, t, v) in c {
        app.append(l, *t, *v).unwrap();
    }
    assert_eq!(app.commit().unwrap().appended, c.len() as u64);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<(u64, PathBuf)> = fs::read_dir(data.join("wal"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let n = e.file_name().into_string().unwrap();
            n.parse::<u64>().ok().map(|i| (i, e.path()))
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Frames of a segment as (start, end) byte ranges, walked by their length fields.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = WAL_HEADER;
    while at + FRAME_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = at + FRAME_HEADER + len;
        assert!(end <= bytes.len(), "frame at {at} runs past the end");
        out.push((at, end));
        at = end;
    }
    assert_eq!(at, bytes.len(), "segment ends inside a frame header");
    out
}

fn open_checked(dir: &Path, o: &Options) -> Db {
    Db::open(dir, o.clone()).unwrap()
}

#[test]
fn truncated_wal_tail_keeps_every_record_before_the_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let o = opts(1 << 20);
    let mut rng = Rng(3);
    // Commits of 1-3 samples; series 0-2 exist from the start, series 3-5 appear later, so
    // series records sit in the middle of the log too.
    let mut commits: Vec<Commit> = Vec::new();
    let mut frames_per_commit = Vec::new();
    let mut t = T0;
    let mut seen = std::collections::HashSet::new();
    for i in 0..30 {
        let n = 1 + (rng.next() % 3) as usize;
        let first = if i < 10 { 0 } else { 3 };
        let c: Commit = (0..n)
            .map(|k| (lbl("tail", first + (k + i) % 3), t, rng.value()))
            .collect();
        let new = c.iter().filter(|(l, _, _)| seen.insert(l.clone())).count() > 0;
        frames_per_commit.push(if new { 2 } else { 1 });
        commits.push(c);
        t += 10_000 + (rng.next() % 5_000) as i64;
    }
    {
        let db = Db::open(&pristine, o.clone()).unwrap();
        for c in &commits {
            apply(&db, c);
        }
        db.close().unwrap();
    }
    let seg = segments(&pristine);
    assert_eq!(seg.len(), 1);
    let bytes = fs::read(&seg[0]).unwrap();
    let fr = frames(&bytes);
    assert_eq!(fr.len(), frames_per_commit.iter().sum::<usize>());
    // The byte offset at which each commit is complete.
    let mut commit_end = Vec::new();
    let mut k = 0;
    for n in &frames_per_commit {
        k += n;
        commit_end.push(fr[k - 1].1);
    }
    let mut cuts = vec![0, 3, WAL_HEADER, bytes.len() - 1];
    // Every frame boundary, and inside some frames each part: length, CRC, payload.
    for (i, &(s, e)) in fr.iter().enumerate() {
        cuts.push(s);
        match i % 5 {
            0 => cuts.push(s + 1),
            1 => cuts.push(s + 6),
            2 => cuts.push(s + FRAME_HEADER),
            3 => cuts.push((s + e) / 2),
            _ => cuts.push(e - 1),
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    for (n, &cut) in cuts.iter().enumerate() {
        let dir = tmp.path().join(format!("cut{n}"));
        copy_dir(&pristine, &dir);
        let path = segments(&dir)[0].clone();
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        let kept = commit_end.iter().filter(|&&e| e <= cut).count();
        let want = store_of(&commits[..kept]);
        // Where replay must stop: the torn frame's start, or 0 for a torn file header.
        let torn = if cut == 0 {
            None
        } else if cut < WAL_HEADER {
            Some(0)
        } else {
            fr.iter().find(|f| f.0 < cut && cut < f.1).map(|f| f.0)
        };
        let check = |stats: &tidemark::storage::wal::ReplayStats, got: &Store, what: &str| {
            assert_eq!(got, &want, "{what}: cut at {cut}");
            match torn {
                Some(at) => {
                    assert_eq!(stats.corruptions.len(), 1, "{what}: cut at {cut}");
                    assert_eq!(stats.corruptions[0].segment, path);
                    assert_eq!(
                        stats.corruptions[0].offset, at as u64,
                        "{what}: cut at {cut}"
                    );
                    assert_eq!(stats.bytes_truncated, (cut - at) as u64);
                }
                None => assert!(stats.corruptions.is_empty(), "{what}: clean cut at {cut}"),
            }
        };
        let ro = ReadOnlyDb::open(&dir).unwrap();
        check(ro.replay_stats(), &read_all(&ro.querier()), "read-only");
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            cut as u64,
            "read-only changed nothing"
        );
        let db = open_checked(&dir, &o);
        check(db.replay_stats(), &read_all(&db.querier()), "open");
        db.close().unwrap();
        if n % 4 == 0 {
            // The repair is durable: the next open finds nothing wrong and the same data.
            let db = open_checked(&dir, &o);
            assert!(db.replay_stats().corruptions.is_empty());
            assert_eq!(read_all(&db.querier()), want);
            db.close().unwrap();
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn flipped_byte_in_an_old_segment_loses_only_the_rest_of_that_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let o = opts(1024);
    let mut rng = Rng(5);
    // Every series is created by the first commit, so later segments hold samples only and
    // stay readable whatever happens to an earlier one.
    let series: Vec<Labels> = (0..4).map(|i| lbl("flip", i)).collect();
    let mut commits: Vec<Commit> = vec![series.iter().map(|l| (l.clone(), T0, 0.5)).collect()];
    let mut t = T0;
    for _ in 0..150 {
        t += 5_000 + (rng.next() % 20_000) as i64;
        let mut c: Commit = Vec::new();
        for l in &series {
            if !rng.next().is_multiple_of(4) {
                c.push((l.clone(), t, rng.value()));
            }
        }
        if !c.is_empty() {
            commits.push(c);
        }
    }
    {
        let db = Db::open(&pristine, o.clone()).unwrap();
        for c in &commits {
            apply(&db, c);
        }
        db.close().unwrap();
    }
    let segs = segments(&pristine);
    assert!(segs.len() >= 5, "{} segments", segs.len());
    // Commit index of every frame, segment by segment: the first commit has a series frame
    // and a samples frame, every other commit one samples frame.
    let mut owner: Vec<Vec<((usize, usize), usize)>> = Vec::new();
    let mut commit = 0;
    let mut second_frame_of_first = true;
    for p in &segs {
        let mut v = Vec::new();
        for f in frames(&fs::read(p).unwrap()) {
            v.push((f, commit));
            if commit == 0 && second_frame_of_first {
                second_frame_of_first = false;
                continue;
            }
            commit += 1;
        }
        owner.push(v);
    }
    assert_eq!(commit, commits.len());
    let victim = 2;
    assert!(victim < segs.len() - 1);
    let (bad_frame, bad_commit) = owner[victim][owner[victim].len() / 2];
    let lost: Vec<usize> = owner[victim]
        .iter()
        .filter(|(f, _)| f.0 >= bad_frame.0)
        .map(|(_, c)| *c)
        .collect();
    assert!(lost.contains(&bad_commit));
    let want = store_of(
        commits
            .iter()
            .enumerate()
            .filter(|(i, _)| !lost.contains(i))
            .map(|(_, c)| c),
    );
    // Flip a byte in each part of the frame: length, type, CRC, payload.
    let (s, e) = bad_frame;
    for (n, at) in [
        s + 1,
        s + 4,
        s + 6,
        s + FRAME_HEADER + (e - s - FRAME_HEADER) / 2,
        e - 1,
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("flip{n}"));
        copy_dir(&pristine, &dir);
        let path = segments(&dir)[victim].clone();
        let mut bytes = fs::read(&path).unwrap();
        bytes[at] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let check = |stats: &tidemark::storage::wal::ReplayStats, got: &Store, what: &str| {
            assert_eq!(stats.corruptions.len(), 1, "{what}: byte {at}: {stats:?}");
            let c = &stats.corruptions[0];
            assert_eq!(c.segment, path, "{what}");
            assert_eq!(c.offset, s as u64, "{what}: byte {at}: {}", c.reason);
            assert!(!c.reason.is_empty());
            assert_eq!(
                stats.segments,
                segs.len(),
                "{what}: later segments replayed"
            );
            assert_eq!(got, &want, "{what}: byte {at}");
        };
        let ro = ReadOnlyDb::open(&dir).unwrap();
        check(ro.replay_stats(), &read_all(&ro.querier()), "read-only");
        let db = open_checked(&dir, &o);
        check(db.replay_stats(), &read_all(&db.querier()), "open");
        // Appends go on, and the later segments' data stays across a restart.
        let l = &series[0];
        let mut app = db.appender();
        app.append(l, t + 1_000, 7.0).unwrap();
        assert_eq!(app.commit().unwrap().appended, 1);
        db.close().unwrap();
        let db = open_checked(&dir, &o);
        assert!(db.replay_stats().corruptions.is_empty());
        let mut want2 = want.clone();
        want2.get_mut(l).unwrap().push((t + 1_000, 7f64.to_bits()));
        assert_eq!(read_all(&db.querier()), want2);
        db.close().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// A data directory with three hourly blocks and a head, and what it holds.
fn blocks_fixture(dir: &Path) -> Store {
    let o = opts(1 << 20);
    let base = T0 - T0.rem_euclid(H);
    let mut rng = Rng(7);
    let mut commits = Vec::new();
    let mut t = base + 1_234;
    while t < base + 4 * H + H / 2 {
        let mut c: Commit = Vec::new();
        for i in 0..10 {
            if !rng.next().is_multiple_of(5) {
                let name = if i % 2 == 0 { "blk_a" } else { "blk_b" };
                c.push((lbl(name, i), t, rng.value()));
            }
        }
        if !c.is_empty() {
            commits.push(c);
        }
        t += 20_000 + (rng.next() % 30_000) as i64;
    }
    let db = Db::open(dir, o).unwrap();
    for c in &commits {
        apply(&db, c);
    }
    assert_eq!(db.flush().unwrap().len(), 3);
    db.close().unwrap();
    store_of(&commits)
}

/// The block files of a data directory, oldest first.
fn block_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir.join("blocks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sst"))
        .collect();
    v.sort_by_key(|p| Block::open(p).unwrap().meta().mint);
    v
}

/// Start and length of section `i` (0 chunks, 1 symbols, 2 series, 3 postings, 4 sources),
/// read from the footer.
fn section(bytes: &[u8], i: usize) -> (usize, usize) {
    let f = bytes.len() - FOOTER + 72 + 32 * i;
    let off = u64::from_le_bytes(bytes[f..f + 8].try_into().unwrap()) as usize;
    let len = u64::from_le_bytes(bytes[f + 8..f + 16].try_into().unwrap()) as usize;
    (off, len)
}

fn without_range(s: &Store, mint: i64, maxt: i64) -> Store {
    s.iter()
        .map(|(l, v)| {
            let kept: Vec<(i64, u64)> = v
                .iter()
                .copied()
                .filter(|(t, _)| *t < mint || *t > maxt)
                .collect();
            (l.clone(), kept)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

#[test]
fn flipped_byte_in_each_block_section_refuses_that_block_only() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let all = blocks_fixture(&pristine);
    let victim_name = block_files(&pristine)[1].file_name().unwrap().to_owned();
    let meta = Block::open(&pristine.join("blocks").join(&victim_name))
        .unwrap()
        .meta()
        .clone();
    let bytes = fs::read(pristine.join("blocks").join(&victim_name)).unwrap();
    let len = bytes.len();
    let mid = |(off, n): (usize, usize)| off + n / 2;
    let targets = [
        ("header", 1),
        ("symbols", mid(section(&bytes, 1))),
        ("series", mid(section(&bytes, 2))),
        ("postings", mid(section(&bytes, 3))),
        ("sources", section(&bytes, 4).0),
        ("footer", len - FOOTER + 30),  // inside mint
        ("footer", len - FOOTER + 100), // inside a section entry
        ("footer", len - 1),            // the magic
    ];
    let want = without_range(&all, meta.mint, meta.maxt);
    for (n, (name, at)) in targets.into_iter().enumerate() {
        let dir = tmp.path().join(format!("sec{n}"));
        copy_dir(&pristine, &dir);
        let path = dir.join("blocks").join(&victim_name);
        let mut b = fs::read(&path).unwrap();
        b[at] ^= 0x08;
        fs::write(&path, &b).unwrap();
        let check = |refused: &[tidemark::storage::RefusedBlock], got: &Store, what: &str| {
            assert_eq!(refused.len(), 1, "{what}: {name} byte {at}");
            assert_eq!(refused[0].path, path);
            assert!(
                refused[0].reason.contains(&format!("{name} section")),
                "{what}: {name} byte {at}: {}",
                refused[0].reason
            );
            assert_eq!(got, &want, "{what}: {name}: the other blocks and the head");
        };
        let ro = ReadOnlyDb::open(&dir).unwrap();
        check(ro.refused_blocks(), &read_all(&ro.querier()), "read-only");
        // A read-only view moves nothing.
        assert!(path.exists());
        let db = open_checked(&dir, &opts(1 << 20));
        check(db.refused_blocks(), &read_all(&db.querier()), "open");
        assert_eq!(db.catalog().blocks.len(), 2);
        assert_eq!(db.quarantined_count(), 1);
        // The refused file is moved aside, kept for a human to look at.
        assert_quarantined(&dir, &victim_name, &format!("{name} section"));
        assert_eq!(
            db.refused_blocks()[0].quarantined_to.as_deref(),
            Some(dir.join("quarantine").join(&victim_name).as_path())
        );
        drop(db);
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// A pristine fixture and a copy of it with one byte of series 3's first chunk flipped in the
/// block `victim` (0 = oldest); returns the copy's directory, the victim's file name and range.
struct ChunkDamage {
    all: Store,
    name: std::ffi::OsString,
    id: String,
    mint: i64,
    maxt: i64,
    chunk: tidemark::storage::sstable::ChunkMeta,
}

fn chunk_damage(pristine: &Path, victim: usize) -> ChunkDamage {
    let all = blocks_fixture(pristine);
    let name = block_files(pristine)[victim]
        .file_name()
        .unwrap()
        .to_owned();
    let block = Block::open(&pristine.join("blocks").join(&name)).unwrap();
    let (_, chunks) = block.series(3).unwrap();
    ChunkDamage {
        all,
        name,
        id: block.meta().id.to_string(),
        mint: block.meta().mint,
        maxt: block.meta().maxt,
        chunk: chunks[0],
    }
}

fn flip(path: &Path, at: u64) {
    let mut b = fs::read(path).unwrap();
    b[at as usize] ^= 0x01;
    fs::write(path, &b).unwrap();
}

/// The block is in `<data>/quarantine/` with its reason beside it, and no longer in `blocks/`.
fn assert_quarantined(dir: &Path, name: &std::ffi::OsStr, reason_has: &str) {
    assert!(!dir.join("blocks").join(name).exists(), "still in blocks/");
    let moved = dir.join("quarantine").join(name);
    assert!(moved.exists(), "not in quarantine/");
    let mut why = moved.into_os_string();
    why.push(".reason");
    let why = fs::read_to_string(&why).unwrap();
    assert!(why.contains(reason_has), "{why}");
}

#[test]
fn flipped_byte_in_chunk_data_is_never_returned_and_its_block_is_quarantined() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let d = chunk_damage(&pristine, 0);
    let c = d.chunk;
    let want = without_range(&d.all, d.mint, d.maxt);
    for (n, at) in [
        c.offset,
        c.offset + u64::from(c.len) / 2,
        c.offset + u64::from(c.len),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("chunk{n}"));
        copy_dir(&pristine, &dir);
        let path = dir.join("blocks").join(&d.name);
        flip(&path, at);
        // Every read answers: the damaged block is left out whole (never part of it, never
        // wrong data), the other blocks and the head answer, and the answer says so without
        // naming a file.
        let check = |q: &tidemark::storage::Querier, what: &str| {
            assert_eq!(read_all(q), want, "{what}: byte {at}");
            let w = q.warnings();
            assert_eq!(w.len(), 1, "{what}: {w:?}");
            assert!(
                w[0].contains(&d.id) && w[0].contains("corrupt"),
                "{what}: {w:?}"
            );
            assert!(!w[0].contains(dir.to_str().unwrap()), "{what}: {w:?}");
        };
        let ro = ReadOnlyDb::open(&dir).unwrap();
        // The index is intact, so the block opens; its chunk CRC is checked on read.
        assert_eq!(ro.refused_blocks().len(), 0);
        check(&ro.querier(), "read-only");
        // A read-only view moves nothing.
        assert!(path.exists());
        assert!(!dir.join("quarantine").exists());
        // The full check finds it.
        let ro = ReadOnlyDb::open_verified(&dir).unwrap();
        assert_eq!(ro.refused_blocks().len(), 1);
        assert!(ro.refused_blocks()[0].reason.contains("chunks section"));
        assert_eq!(read_all(&ro.querier()), want);

        let db = open_checked(&dir, &opts(1 << 20));
        assert_eq!(db.refused_blocks().len(), 0);
        check(&db.querier(), "open");
        assert_eq!(db.quarantined_count(), 1);
        assert_quarantined(&dir, &d.name, "chunks section");
        assert_eq!(db.catalog().blocks.len(), 2);
        // Later queries do not meet it at all.
        let q = db.querier();
        assert_eq!(read_all(&q), want);
        assert!(q.warnings().is_empty());
        drop(db);
        // Nor does the next open.
        let db = open_checked(&dir, &opts(1 << 20));
        assert_eq!(db.catalog().blocks.len(), 2);
        assert_eq!(db.quarantined_count(), 0);
        assert_eq!(read_all(&db.querier()), want);
        drop(db);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn scrub_quarantines_a_block_with_a_damaged_chunk_before_any_query_reads_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let d = chunk_damage(&pristine, 1);
    let dir = tmp.path().join("d");
    copy_dir(&pristine, &dir);
    flip(
        &dir.join("blocks").join(&d.name),
        d.chunk.offset + u64::from(d.chunk.len) / 2,
    );
    let db = open_checked(&dir, &opts(1 << 20));
    assert_eq!(db.catalog().blocks.len(), 3);
    assert_eq!(db.scrub(), 1);
    assert_eq!(db.quarantined_count(), 1);
    assert_quarantined(&dir, &d.name, "chunk CRC32C mismatch");
    let q = db.querier();
    assert_eq!(read_all(&q), without_range(&d.all, d.mint, d.maxt));
    assert!(q.warnings().is_empty());
    // Checked blocks are not read again.
    assert_eq!(db.scrub(), 0);
    assert_eq!(db.quarantined_count(), 1);
    let listed = tidemark::storage::list_quarantined(&dir).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("chunks section")
    );
}

#[test]
fn compaction_sets_a_damaged_source_aside_instead_of_merging_it_or_failing() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let d = chunk_damage(&pristine, 1);
    let dir = tmp.path().join("d");
    copy_dir(&pristine, &dir);
    flip(&dir.join("blocks").join(&d.name), d.chunk.offset);
    // The fixture's first two hourly blocks share a 3h window the head is past: that merge
    // is due, and reads the damaged chunk.
    let db = open_checked(&dir, &opts(1 << 20));
    while db.compact().unwrap().is_some() {}
    assert_eq!(
        db.counters()
            .compactions_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(db.quarantined_count(), 1);
    assert_quarantined(&dir, &d.name, "chunks section");
    let want = without_range(&d.all, d.mint, d.maxt);
    assert_eq!(read_all(&db.querier()), want);
    // No block holds anything of the damaged block's range.
    for b in db.catalog().blocks.iter() {
        assert!(b.verify().is_ok());
    }
    drop(db);
    let db = open_checked(&dir, &opts(1 << 20));
    assert_eq!(read_all(&db.querier()), want);
}

#[test]
fn truncated_block_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let all = blocks_fixture(&pristine);
    let victim_name = block_files(&pristine)[2].file_name().unwrap().to_owned();
    let meta = Block::open(&pristine.join("blocks").join(&victim_name))
        .unwrap()
        .meta()
        .clone();
    let len = meta.size_bytes as usize;
    let want = without_range(&all, meta.mint, meta.maxt);
    for (n, cut) in [
        0,
        4,
        8,
        9,
        100,
        len / 2,
        len - FOOTER,
        len - FOOTER + 1,
        len - 1,
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("trunc{n}"));
        copy_dir(&pristine, &dir);
        let path = dir.join("blocks").join(&victim_name);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();
        let ro = ReadOnlyDb::open(&dir).unwrap();
        assert_eq!(ro.refused_blocks().len(), 1, "read-only: cut at {cut}");
        assert_eq!(read_all(&ro.querier()), want, "read-only: cut at {cut}");
        let db = open_checked(&dir, &opts(1 << 20));
        let r = db.refused_blocks();
        assert_eq!(r.len(), 1, "cut at {cut}");
        assert_eq!(r[0].path, path);
        assert!(r[0].reason.contains("corrupt block"), "{}", r[0].reason);
        assert_eq!(read_all(&db.querier()), want, "cut at {cut}");
        drop(db);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_query_reading_series_one_at_a_time_forgets_a_block_found_corrupt_midway() {
    use tidemark::query::{Engine, EngineOptions, Value};
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    // Series 3 of the oldest block is damaged: series before it in label order are read (and
    // handed to the evaluator) before the damage is met.
    let d = chunk_damage(&pristine, 0);
    let e = Engine::new(EngineOptions::default());
    let (start, end) = (d.mint - H, d.maxt + 3 * H);
    for (n, q) in [
        r#"sum by (__name__) (count_over_time({__name__=~"blk_.*"}[10m]))"#,
        r#"max_over_time({__name__=~"blk_.*"}[5m])"#,
        r#"{__name__=~"blk_.*"}"#,
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tmp.path().join(format!("damaged{n}"));
        copy_dir(&pristine, &dir);
        flip(
            &dir.join("blocks").join(&d.name),
            d.chunk.offset + u64::from(d.chunk.len) / 2,
        );
        let db = open_checked(&dir, &opts(1 << 20));
        let got = e
            .range_blocking(&db.querier(), q, start, end, 60_000)
            .unwrap();
        // The block is quarantined now: the next query does not meet it at all.
        let want = e
            .range_blocking(&db.querier(), q, start, end, 60_000)
            .unwrap();
        assert!(want.annotations.warnings.is_empty(), "{q}");
        let text = |v: &Value| format!("{v:?}");
        assert_eq!(text(&got.value), text(&want.value), "{q}");
        assert!(
            matches!(&got.value, Value::Matrix(m) if !m.is_empty()),
            "{q}"
        );
        let w: Vec<&String> = got.annotations.warnings.iter().collect();
        assert_eq!(w.len(), 1, "{q}: {w:?}");
        assert!(
            w[0].contains(&d.id) && w[0].contains("corrupt"),
            "{q}: {w:?}"
        );
        assert_eq!(db.quarantined_count(), 1, "{q}");
        assert_quarantined(&dir, &d.name, "chunks section");
        drop(db);
        fs::remove_dir_all(&dir).unwrap();
    }
}
