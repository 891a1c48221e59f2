//! One named test per failure mode small TSDBs are known for (DESIGN.md section 12), each
//! through the public storage API, each reopening the data directory after writing, with
//! irregular timestamps and values so that two different decodings cannot agree by accident.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tidemark::model::{Labels, Matcher, STALE_NAN, Sample};
use tidemark::storage::chunk;
use tidemark::storage::sstable::{Block, BlockWriter, ChunkData};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{BLOCK_CHUNK_SAMPLES, Db, Options, ReadOnlyDb, StorageError};

const H: i64 = 3_600_000;
const T0: i64 = 1_712_000_003_917;

/// splitmix64: a fixed-seed source of irregular numbers.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A value that is a short decimal most of the time, sometimes arbitrary or special.
    fn value(&mut self) -> f64 {
        match self.below(20) {
            0 => f64::NAN,
            1 => STALE_NAN,
            2 => f64::from_bits(self.next()),
            3 => -0.0,
            _ => (self.below(2_000_000) as f64 - 1e6) / 100.0,
        }
    }
}

fn opts(block_duration: i64) -> Options {
    Options {
        fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        wal_segment_size: 1 << 20,
        block_duration,
        retention_time: 0,
        retention_size: 0,
    }
}

fn lbl(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied()).unwrap()
}

type Points = Vec<(i64, u64)>;

fn points(samples: &[Sample]) -> Points {
    samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

/// Every series and sample the querier returns, values as bits.
fn read_all(q: &tidemark::storage::Querier) -> BTreeMap<Labels, Points> {
    let all = Matcher::new(tidemark::model::MatchOp::Regex, "__name__", ".+").unwrap();
    q.select(&[all], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, points(&s.samples)))
        .collect()
}

/// Asserts two stores hold the same points, reporting the first differences compactly.
#[track_caller]
fn assert_same(got: &BTreeMap<Labels, Points>, want: &BTreeMap<Labels, Points>, what: &str) {
    if got == want {
        return;
    }
    let mut report = Vec::new();
    for l in want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (g, w) = (
            got.get(l).cloned().unwrap_or_default(),
            want.get(l).cloned().unwrap_or_default(),
        );
        if g == w {
            continue;
        }
        let missing: Vec<_> = w
            .iter()
            .filter(|p| g.binary_search(p).is_err())
            .take(5)
            .collect();
        let extra: Vec<_> = g
            .iter()
            .filter(|p| w.binary_search(p).is_err())
            .take(5)
            .collect();
        report.push(format!(
            "{l}: {} points, want {}; missing {missing:?}; unexpected {extra:?}",
            g.len(),
            w.len()
        ));
    }
    panic!("{what}: stores differ:\n{}", report.join("\n"));
}

/// Appends `data` one commit per timestamp (all series sharing it), asserting all are stored.
fn write(db: &Db, data: &BTreeMap<Labels, Points>) {
    let mut by_t: BTreeMap<i64, Vec<(&Labels, u64)>> = BTreeMap::new();
    for (l, pts) in data {
        for &(t, v) in pts {
            by_t.entry(t).or_default().push((l, v));
        }
    }
    for (t, list) in by_t {
        let mut app = db.appender();
        for (l, v) in &list {
            app.append(l, t, f64::from_bits(*v)).unwrap();
        }
        let st = app.commit().unwrap();
        assert_eq!(st.appended, list.len() as u64, "commit at {t}: {st:?}");
    }
}

fn reopen(db: Db, o: &Options) -> Db {
    let dir = db.dir().to_path_buf();
    db.close().unwrap();
    let db = Db::open(&dir, o.clone()).unwrap();
    assert!(db.refused_blocks().is_empty(), "{:?}", db.refused_blocks());
    assert!(db.replay_stats().corruptions.is_empty());
    db
}

fn compact_all(db: &Db) {
    for _ in 0..100 {
        if db.compact().unwrap().is_none() {
            return;
        }
    }
    panic!("compaction does not converge");
}

fn segment_files(wal: &Path) -> Vec<(u64, std::path::PathBuf)> {
    let mut v: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(wal)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            name.parse::<u64>().ok().map(|i| (i, e.path()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn points_of_different_series_at_the_same_timestamp_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(H);
    let mut rng = Rng(11);
    let series: Vec<Labels> = (0..40)
        .map(|i| lbl(&[("__name__", "node_cpu"), ("cpu", &i.to_string())]))
        .collect();
    let mut want: BTreeMap<Labels, Points> = BTreeMap::new();
    let mut t = T0;
    for _ in 0..700 {
        for l in &series {
            // The same value in many series too: nothing may collapse them.
            let v = if rng.below(3) == 0 { 1.0 } else { rng.value() };
            want.entry(l.clone()).or_default().push((t, v.to_bits()));
        }
        t += 14_000 + rng.below(2_000) as i64;
    }
    let db = Db::open(dir.path(), o.clone()).unwrap();
    write(&db, &want);
    assert_same(&read_all(&db.querier()), &want, "head");
    assert!(!db.flush().unwrap().is_empty());
    assert_same(&read_all(&db.querier()), &want, "blocks + head");
    let db = reopen(db, &o);
    compact_all(&db);
    assert_same(
        &read_all(&db.querier()),
        &want,
        "after restart and compaction",
    );
    let one_t = want[&series[0]][350].0;
    let at = db.querier().select(&[], one_t, one_t).unwrap();
    assert_eq!(
        at.len(),
        series.len(),
        "every series has a point at {one_t}"
    );
}

#[test]
fn range_query_returns_exactly_the_points_inside_inclusive_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(H);
    let mut rng = Rng(23);
    let l = lbl(&[("__name__", "http_requests_total"), ("code", "200")]);
    let mut ts = Vec::new();
    let mut t = T0;
    for _ in 0..2400 {
        ts.push(t);
        // Steps of at least 2 ms, so t±1 lies strictly between samples.
        t += 2 + rng.below(15_000) as i64;
    }
    let data: BTreeMap<Labels, Points> = [(
        l.clone(),
        ts.iter().map(|&t| (t, rng.value().to_bits())).collect(),
    )]
    .into();
    let db = Db::open(dir.path(), o.clone()).unwrap();
    write(&db, &data);
    let m = [Matcher::equal("code", "200")];
    let check = |db: &Db, stage: &str| {
        let q = db.querier();
        let mut r = Rng(5);
        for _ in 0..150 {
            let i = r.below(ts.len() as u64) as usize;
            let j = i + r.below((ts.len() - i) as u64) as usize;
            let n = |lo: i64, hi: i64| q.samples(&m, lo, hi).unwrap().len();
            assert_eq!(n(ts[i], ts[j]), j - i + 1, "{stage}: [t{i}, t{j}]");
            assert_eq!(n(ts[i] - 1, ts[j] + 1), j - i + 1, "{stage}: widened");
            if j > i {
                assert_eq!(n(ts[i] + 1, ts[j] - 1), j - i - 1, "{stage}: narrowed");
                assert_eq!(n(ts[i] + 1, ts[j]), j - i, "{stage}: left open");
                assert_eq!(n(ts[i], ts[j] - 1), j - i, "{stage}: right open");
            }
            assert_eq!(n(ts[i] + 1, ts[i] + 1), 0, "{stage}: between samples");
            let got = q.samples(&m, ts[i], ts[j]).unwrap();
            assert_eq!(points(&got), data[&l][i..=j].to_vec(), "{stage}: values");
        }
        assert_eq!(q.samples(&m, i64::MIN, ts[0] - 1).unwrap().len(), 0);
        assert_eq!(
            q.samples(&m, ts[ts.len() - 1] + 1, i64::MAX).unwrap().len(),
            0
        );
    };
    check(&db, "head");
    assert!(db.flush().unwrap().len() >= 3);
    check(&db, "blocks + head");
    compact_all(&db);
    check(&db, "compacted");
    let db = reopen(db, &o);
    check(&db, "reopened");
}

#[test]
fn appends_racing_a_flush_are_not_lost() {
    // A driver thread writes at the newest time (sample time runs at forty times wall time)
    // and so makes the flusher cut a block every ~50 ms; three racers keep committing below
    // the cut the next flush makes (the head's lower bound + one block duration), so commits
    // are in flight across every cut. A flush that moved the bound without waiting for them,
    // or truncated the head before they were applied, would lose acknowledged samples.
    const RACERS: usize = 3;
    const SERIES: usize = 64;
    const SPEEDUP: i64 = 40;
    const BD: i64 = 2000;
    const RUN: Duration = Duration::from_millis(1000);
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        wal_segment_size: 256 << 10,
        ..opts(BD)
    };
    let db = Arc::new(Db::open(dir.path(), o.clone()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(RACERS + 2));
    let driver = {
        let (db, start) = (db.clone(), start.clone());
        std::thread::spawn(move || {
            let l = lbl(&[("__name__", "race"), ("thread", "driver")]);
            let mut rng = Rng(99);
            let mut acked: BTreeMap<Labels, Points> = BTreeMap::new();
            let mut prev = i64::MIN;
            start.wait();
            let began = Instant::now();
            while began.elapsed() < RUN {
                let t = T0 + began.elapsed().as_micros() as i64 * SPEEDUP / 1000;
                if t <= prev {
                    // Commits are quicker than a sample-time millisecond: wait for it.
                    std::thread::yield_now();
                    continue;
                }
                prev = t;
                let v = rng.value();
                let mut app = db.appender();
                app.append(&l, t, v).unwrap();
                assert_eq!(app.commit().unwrap().appended, 1);
                acked.entry(l.clone()).or_default().push((t, v.to_bits()));
            }
            (acked, 0)
        })
    };
    let racers: Vec<_> = (0..RACERS)
        .map(|k| {
            let (db, start) = (db.clone(), start.clone());
            std::thread::spawn(move || {
                let series: Vec<Labels> = (0..SERIES)
                    .map(|s| {
                        lbl(&[
                            ("__name__", "race"),
                            ("thread", &k.to_string()),
                            ("s", &s.to_string()),
                        ])
                    })
                    .collect();
                let mut rng = Rng(100 + k as u64);
                let mut acked: BTreeMap<Labels, Points> = BTreeMap::new();
                let mut prev = i64::MIN;
                let (mut commits, mut refused) = (0, 0);
                start.wait();
                let began = Instant::now();
                while began.elapsed() < RUN {
                    let mv = db.head().min_valid();
                    let t = (prev + 1).max(mv.saturating_add(rng.below(8) as i64));
                    if mv == i64::MIN || t >= mv + BD {
                        // No room below the cut until the next flush moves it.
                        std::thread::yield_now();
                        continue;
                    }
                    prev = t;
                    // Every series in one commit: a long commit, likely to straddle the cut.
                    let vals: Vec<f64> = series.iter().map(|_| rng.value()).collect();
                    let mut app = db.appender();
                    for (l, v) in series.iter().zip(&vals) {
                        app.append(l, t, *v).unwrap();
                    }
                    let st = app.commit().unwrap();
                    commits += 1;
                    // One lower bound is read per commit: all of it is stored or all refused.
                    if st.appended == SERIES as u64 {
                        for (l, v) in series.iter().zip(&vals) {
                            acked.entry(l.clone()).or_default().push((t, v.to_bits()));
                        }
                    } else {
                        assert_eq!(st.out_of_bounds, SERIES as u64, "{st:?}");
                        refused += 1;
                    }
                }
                assert!(
                    commits - refused >= 20,
                    "racer {k}: {refused} of {commits} commits out of bounds"
                );
                (acked, refused)
            })
        })
        .collect();
    let flusher = {
        let (db, done, start) = (db.clone(), done.clone(), start.clone());
        std::thread::spawn(move || {
            start.wait();
            let (mut blocks, mut rounds) = (0, 0);
            while !done.load(Ordering::SeqCst) {
                blocks += db.flush().unwrap().len();
                rounds += 1;
                if rounds % 8 == 0 {
                    db.compact().unwrap();
                }
                // Mid-flight reads see each point once, in order.
                for s in db
                    .querier()
                    .select(&[Matcher::equal("thread", "0")], i64::MIN, i64::MAX)
                    .unwrap()
                {
                    assert!(
                        s.samples.windows(2).all(|w| w[0].t < w[1].t),
                        "{}",
                        s.labels
                    );
                }
            }
            blocks
        })
    };
    let mut want = BTreeMap::new();
    let mut refused = 0;
    for h in std::iter::once(driver).chain(racers) {
        let (acked, r) = h.join().unwrap();
        want.extend(acked);
        refused += r;
    }
    done.store(true, Ordering::SeqCst);
    let blocks = flusher.join().unwrap();
    assert!(blocks >= 5, "only {blocks} blocks flushed while appending");
    eprintln!("{blocks} blocks flushed; {refused} commits refused as out of bounds");
    assert_same(
        &read_all(&db.querier()),
        &want,
        "every acknowledged sample exactly once",
    );
    let db = Arc::into_inner(db).unwrap();
    let db = reopen(db, &o);
    assert_same(&read_all(&db.querier()), &want, "after restart");
    db.flush().unwrap();
    compact_all(&db);
    let db = reopen(db, &o);
    assert_same(
        &read_all(&db.querier()),
        &want,
        "after final flush, compaction, restart",
    );
    // Stored once, not merely deduplicated on read.
    let in_blocks: u64 = db
        .catalog()
        .blocks
        .iter()
        .map(|b| b.meta().num_samples)
        .sum();
    let in_head: usize = db
        .head()
        .select(&[], i64::MIN, i64::MAX)
        .unwrap()
        .iter()
        .map(|s| s.samples.len())
        .sum();
    let acked: usize = want.values().map(Vec::len).sum();
    assert_eq!(in_blocks + in_head as u64, acked as u64);
}

#[test]
fn a_query_taken_before_a_flush_still_sees_the_flushed_window() {
    // A querier holds the catalog of its start and reads the head when it selects. A flush
    // that published its block and truncated the head in between would hide the flushed
    // window from it: the old catalog lacks the block, the head no longer has the samples.
    const BD: i64 = 2 * H;
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), opts(BD)).unwrap());
    let mut rng = Rng(4242);
    let mut data: BTreeMap<Labels, Points> = BTreeMap::new();
    for s in 0..7 {
        let l = lbl(&[("__name__", "flushed"), ("s", &s.to_string())]);
        let mut t = T0 + rng.below(60_000) as i64;
        while t < T0 + 2 * BD {
            data.entry(l.clone())
                .or_default()
                .push((t, rng.value().to_bits()));
            t += 1 + rng.below(170_000) as i64;
        }
    }
    write(&db, &data);
    let before = db.querier();
    let flusher = {
        let db = db.clone();
        std::thread::spawn(move || db.flush().unwrap())
    };
    // The block is published before the head is truncated; wait until it is there.
    let end = Instant::now() + Duration::from_secs(20);
    while db.catalog().blocks.is_empty() {
        assert!(Instant::now() < end, "flush published no block");
        std::thread::yield_now();
    }
    assert_same(&read_all(&before), &data, "querier from before the flush");
    drop(before);
    assert!(!flusher.join().unwrap().is_empty());
    assert_same(&read_all(&db.querier()), &data, "querier after the flush");
}

#[test]
fn blocks_can_be_read_back_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(H);
    let mut rng = Rng(31);
    let mut want: BTreeMap<Labels, Points> = BTreeMap::new();
    for i in 0..25 {
        let l = lbl(&[
            ("__name__", "disk_bytes"),
            ("dev", &format!("sd{i}")),
            ("host", "ä\"x"),
        ]);
        let mut t = T0 + rng.below(60_000) as i64;
        let pts = want.entry(l).or_default();
        while t < T0 + 7 * H {
            pts.push((t, rng.value().to_bits()));
            t += 5_000 + rng.below(40_000) as i64;
        }
    }
    let db = Db::open(dir.path(), o.clone()).unwrap();
    write(&db, &want);
    assert!(db.flush().unwrap().len() >= 4);
    compact_all(&db);
    let db = reopen(db, &o);
    let cat = db.catalog();
    assert!(cat.blocks.len() >= 2);
    for b in &cat.blocks {
        b.verify().unwrap();
        // Reopening the file on its own gives the same block.
        let again = Block::open(&b.meta().path).unwrap();
        assert_eq!(again.meta(), b.meta());
    }
    assert_same(&read_all(&db.querier()), &want, "reopened");
    // A read-only view beside the open Db reads the same.
    let ro = ReadOnlyDb::open(dir.path()).unwrap();
    assert_same(&read_all(&ro.querier()), &want, "read-only view");
}

#[test]
fn single_sample_series_and_the_first_sample_of_each_chunk_survive() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(H);
    let mut rng = Rng(47);
    let mut want: BTreeMap<Labels, Points> = BTreeMap::new();
    // Lengths around the head's (120) and the blocks' (480) chunk sizes, inside one window.
    for n in [1usize, 2, 119, 120, 121, 241, 479, 480, 481, 961] {
        let l = lbl(&[("__name__", "edge"), ("n", &n.to_string())]);
        let mut t = T0 - T0.rem_euclid(H) + 3 + rng.below(1000) as i64;
        let pts = want.entry(l).or_default();
        for _ in 0..n {
            pts.push((t, rng.value().to_bits()));
            t += 1 + rng.below(3_700_000 / 962) as i64;
        }
    }
    // A lone sample as the very first of a window, and another in a later window, alone.
    let lone = lbl(&[("__name__", "lone")]);
    want.insert(
        lone.clone(),
        vec![(T0 - T0.rem_euclid(H), 0.1f64.to_bits())],
    );
    let late = lbl(&[("__name__", "lone"), ("late", "1")]);
    want.insert(
        late.clone(),
        vec![(T0 - T0.rem_euclid(H) + 2 * H + 17, (-7.25f64).to_bits())],
    );
    // Something newer, so both windows get flushed.
    want.insert(
        lbl(&[("__name__", "clock")]),
        vec![(T0 + 5 * H, 1f64.to_bits())],
    );
    let db = Db::open(dir.path(), o.clone()).unwrap();
    write(&db, &want);
    assert_same(&read_all(&db.querier()), &want, "head");
    let db = reopen(db, &o);
    assert_same(&read_all(&db.querier()), &want, "replayed head");
    assert!(db.flush().unwrap().len() >= 2);
    assert_same(&read_all(&db.querier()), &want, "flushed");
    let db = reopen(db, &o);
    compact_all(&db);
    assert_same(&read_all(&db.querier()), &want, "compacted");
    let db = reopen(db, &o);
    assert_same(&read_all(&db.querier()), &want, "reopened");
    // The chunk split points themselves, selected alone.
    let s961 = &want[&lbl(&[("__name__", "edge"), ("n", "961")])];
    for i in [
        0,
        BLOCK_CHUNK_SAMPLES - 1,
        BLOCK_CHUNK_SAMPLES,
        2 * BLOCK_CHUNK_SAMPLES,
        960,
    ] {
        let t = s961[i].0;
        let got = db
            .querier()
            .samples(&[Matcher::equal("n", "961")], t, t)
            .unwrap();
        assert_eq!(points(&got), vec![s961[i]], "sample {i}");
    }
    let got = db
        .querier()
        .samples(&[Matcher::equal("__name__", "lone")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got.len(), 2);
}

#[test]
fn identical_points_of_different_label_sets_are_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(H);
    // Label sets that agree on a concatenation, a prefix or a hash-input layout.
    let sets = [
        lbl(&[("__name__", "m"), ("a", "bc")]),
        lbl(&[("__name__", "m"), ("ab", "c")]),
        lbl(&[("__name__", "m"), ("a", "b"), ("c", "d")]),
        lbl(&[("__name__", "m"), ("a", "b,c=d")]),
        lbl(&[("__name__", "m")]),
        lbl(&[("__name__", "m"), ("x", "y")]),
        lbl(&[("__name__", "m"), ("a", "bc"), ("z", "1")]),
    ];
    let mut rng = Rng(59);
    let mut t = T0;
    let mut shared: Points = Vec::new();
    for _ in 0..1000 {
        shared.push((t, rng.value().to_bits()));
        t += 9_000 + rng.below(12_000) as i64;
    }
    // An empty value is no label: `{x=""}` is the series `m` itself, by definition.
    assert_eq!(lbl(&[("__name__", "m"), ("x", "")]), sets[4]);
    let want: BTreeMap<Labels, Points> = sets.iter().map(|l| (l.clone(), shared.clone())).collect();
    assert_eq!(want.len(), sets.len());
    let db = Db::open(dir.path(), o.clone()).unwrap();
    write(&db, &want);
    db.flush().unwrap();
    let db = reopen(db, &o);
    compact_all(&db);
    let db = reopen(db, &o);
    assert_same(&read_all(&db.querier()), &want, "label sets");
    let sel = db
        .querier()
        .select(&[Matcher::equal("a", "bc")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(sel.len(), 2);
}

#[test]
fn wal_replay_continues_after_a_bad_record_in_an_old_segment() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        wal_segment_size: 2048,
        ..opts(H)
    };
    let l = lbl(&[("__name__", "wal_order"), ("job", "x")]);
    let mut rng = Rng(61);
    let mut pts = Vec::new();
    let mut t = T0;
    let db = Db::open(dir.path(), o.clone()).unwrap();
    for _ in 0..400 {
        let v = rng.value();
        let mut app = db.appender();
        app.append(&l, t, v).unwrap();
        assert_eq!(app.commit().unwrap().appended, 1);
        pts.push((t, v.to_bits()));
        t += 1_000 + rng.below(30_000) as i64;
    }
    db.close().unwrap();
    let segs = segment_files(&dir.path().join("wal"));
    assert!(segs.len() >= 5, "{segs:?}");
    // The last byte of the first segment belongs to its last record: break that record.
    let first = &segs[0].1;
    let mut bytes = std::fs::read(first).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 0x55;
    std::fs::write(first, &bytes).unwrap();

    let db = Db::open(dir.path(), o.clone()).unwrap();
    let c = &db.replay_stats().corruptions;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(&c[0].segment, first);
    assert!(c[0].offset < at as u64);
    let got = points(
        &db.querier()
            .samples(&[Matcher::equal("job", "x")], i64::MIN, i64::MAX)
            .unwrap(),
    );
    // Exactly one commit is gone, and it is not one of the later segments' commits.
    assert_eq!(got.len(), pts.len() - 1);
    let missing: Vec<usize> = (0..pts.len())
        .filter(|i| got.binary_search(&pts[*i]).is_err())
        .collect();
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0] < pts.len() / 2,
        "lost commit {} is not in the first segment",
        missing[0]
    );
    assert!(got.ends_with(&pts[missing[0] + 1..]));
    let db = reopen(db, &o);
    assert_eq!(
        db.querier()
            .samples(&[Matcher::equal("job", "x")], i64::MIN, i64::MAX)
            .unwrap()
            .len(),
        pts.len() - 1
    );
}

#[test]
fn segments_are_replayed_in_numeric_order() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        wal_segment_size: 512,
        ..opts(H)
    };
    let l = lbl(&[("__name__", "seq")]);
    let mut rng = Rng(67);
    let mut pts = Vec::new();
    let mut t = T0;
    let db = Db::open(dir.path(), o.clone()).unwrap();
    for _ in 0..300 {
        let v = rng.value();
        let mut app = db.appender();
        app.append(&l, t, v).unwrap();
        app.commit().unwrap();
        pts.push((t, v.to_bits()));
        t += 1 + rng.below(20_000) as i64;
    }
    db.close().unwrap();
    let wal = dir.path().join("wal");
    let segs = segment_files(&wal);
    assert!(segs.len() >= 12, "{} segments", segs.len());
    // Renumber across the 8-digit boundary: sorted as names, "100000000" comes before
    // "99999991". Out-of-order replay would refuse every older sample as out of order.
    let base = 100_000_000 - 6;
    for (i, p) in segs.iter().rev() {
        std::fs::rename(p, wal.join(format!("{:08}", base + i))).unwrap();
    }
    let db = Db::open(dir.path(), o.clone()).unwrap();
    let st = db.replay_stats();
    assert_eq!(st.segments, segs.len());
    assert!(st.corruptions.is_empty());
    assert_eq!(st.gaps, vec![1..=base]);
    let read = |db: &Db| {
        points(
            &db.querier()
                .samples(&[Matcher::equal("__name__", "seq")], i64::MIN, i64::MAX)
                .unwrap(),
        )
    };
    assert_eq!(read(&db), pts);
    // The directory keeps working past the renumbering.
    let mut app = db.appender();
    app.append(&l, t, 42.5).unwrap();
    app.commit().unwrap();
    pts.push((t, 42.5f64.to_bits()));
    let db = reopen(db, &o);
    assert_eq!(read(&db), pts);
}

#[test]
fn imported_overlapping_block_is_merged_by_compaction_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(H);
    let base = T0 - T0.rem_euclid(H);
    let a = lbl(&[("__name__", "imp"), ("s", "a")]);
    let b = lbl(&[("__name__", "imp"), ("s", "b")]);
    let c = lbl(&[("__name__", "imp"), ("s", "c")]);
    let mut rng = Rng(71);
    let mut live: BTreeMap<Labels, Points> = BTreeMap::new();
    for l in [&a, &b] {
        let mut t = base + rng.below(10_000) as i64;
        while t < base + 4 * H {
            live.entry(l.clone())
                .or_default()
                .push((t, rng.value().to_bits()));
            t += 10_000 + rng.below(20_000) as i64;
        }
    }
    let db = Db::open(dir.path(), o.clone()).unwrap();
    write(&db, &live);
    db.close().unwrap();

    // The import: for `a`, every other live point in [1.5h, 3.2h] again (identical) plus points
    // between them; a series `c` only the import has.
    let (lo, hi) = (base + 3 * H / 2, base + 3 * H + H / 5);
    let mut imported: BTreeMap<Labels, Points> = BTreeMap::new();
    for (k, &(t, v)) in live[&a].iter().enumerate() {
        if t < lo || t > hi {
            continue;
        }
        if k % 2 == 0 {
            imported.entry(a.clone()).or_default().push((t, v));
        }
        imported
            .entry(a.clone())
            .or_default()
            .push((t + 1 + (k as i64 % 7), rng.value().to_bits()));
    }
    let mut t = lo + 333;
    while t <= hi {
        imported
            .entry(c.clone())
            .or_default()
            .push((t, rng.value().to_bits()));
        t += 15_000 + rng.below(3_000) as i64;
    }
    let mut w = BlockWriter::new(&dir.path().join("blocks"), 0, Vec::new()).unwrap();
    for (l, pts) in &imported {
        let samples: Vec<Sample> = pts
            .iter()
            .map(|&(t, v)| Sample::new(t, f64::from_bits(v)))
            .collect();
        let chunks: Vec<ChunkData> = samples
            .chunks(100)
            .map(|s| ChunkData {
                mint: s[0].t,
                maxt: s[s.len() - 1].t,
                num_samples: s.len() as u32,
                data: chunk::encode(s),
            })
            .collect();
        w.add_series(l, &chunks).unwrap();
    }
    w.finish().unwrap();

    let mut want = live.clone();
    for (l, pts) in &imported {
        let e = want.entry(l.clone()).or_default();
        e.extend(pts);
        e.sort_unstable();
        e.dedup();
    }
    let dup = live[&a].iter().filter(|p| imported[&a].contains(p)).count();
    assert!(dup > 20, "the import repeats {dup} live points");

    let db = Db::open(dir.path(), o.clone()).unwrap();
    assert_eq!(db.catalog().blocks.len(), 1);
    assert_same(&read_all(&db.querier()), &want, "import beside the head");
    // Live ingestion continues after the imported range.
    let mut t = base + 4 * H + 5;
    while t < base + 7 * H {
        let v = rng.value();
        let mut app = db.appender();
        app.append(&b, t, v).unwrap();
        assert_eq!(app.commit().unwrap().appended, 1);
        want.get_mut(&b).unwrap().push((t, v.to_bits()));
        t += 20_000 + rng.below(20_000) as i64;
    }
    assert!(db.flush().unwrap().len() >= 4);
    compact_all(&db);
    let blocks = db.catalog().blocks.clone();
    for w in blocks.windows(2) {
        assert!(
            w[0].meta().maxt < w[1].meta().mint,
            "blocks still overlap after compaction: {:?} {:?}",
            (w[0].meta().mint, w[0].meta().maxt),
            (w[1].meta().mint, w[1].meta().maxt)
        );
    }
    let total: u64 = blocks.iter().map(|b| b.meta().num_samples).sum();
    let in_blocks: usize = want
        .values()
        .flatten()
        .filter(|(t, _)| *t <= blocks.last().unwrap().meta().maxt)
        .count();
    assert_eq!(total, in_blocks as u64, "blocks hold each sample once");
    assert_same(&read_all(&db.querier()), &want, "compacted");
    let db = reopen(db, &o);
    assert_same(&read_all(&db.querier()), &want, "reopened");
}

/// Writes `n_windows` hours of data for three series and flushes it into hourly blocks.
fn hourly_blocks(dir: &Path, o: &Options, n_windows: i64) -> (Db, BTreeMap<Labels, Points>) {
    let base = T0 - T0.rem_euclid(H);
    let mut rng = Rng(79);
    let mut want: BTreeMap<Labels, Points> = BTreeMap::new();
    for s in ["a", "b", "c"] {
        let mut t = base + rng.below(5_000) as i64;
        while t < base + n_windows * H {
            want.entry(lbl(&[("__name__", "ret"), ("s", s)]))
                .or_default()
                .push((t, rng.value().to_bits()));
            t += 20_000 + rng.below(30_000) as i64;
        }
    }
    let db = Db::open(dir, o.clone()).unwrap();
    write(&db, &want);
    assert!(db.flush().unwrap().len() as i64 >= n_windows - 2);
    (db, want)
}

/// What remains readable after retention: whole blocks' worth of samples, never part of one.
fn assert_whole_blocks_kept(
    db: &Db,
    before: &[(i64, i64)],
    deleted: &[(i64, i64)],
    want: &BTreeMap<Labels, Points>,
) {
    let kept: Vec<(i64, i64)> = before
        .iter()
        .filter(|b| !deleted.contains(b))
        .copied()
        .collect();
    let got = read_all(&db.querier());
    let head_lo = before.iter().map(|b| b.1).max().unwrap();
    for (l, pts) in want {
        let expect: Points = pts
            .iter()
            .filter(|(t, _)| *t > head_lo || kept.iter().any(|b| b.0 <= *t && *t <= b.1))
            .copied()
            .collect();
        assert_eq!(got.get(l).cloned().unwrap_or_default(), expect, "{l}");
    }
}

#[test]
fn retention_by_time_deletes_whole_old_blocks_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        retention_time: 3 * H,
        ..opts(H)
    };
    let (db, want) = hourly_blocks(dir.path(), &o, 8);
    let before: Vec<(i64, i64)> = db
        .catalog()
        .blocks
        .iter()
        .map(|b| (b.meta().mint, b.meta().maxt))
        .collect();
    let newest = want.values().flatten().map(|p| p.0).max().unwrap();
    let deleted_ids = db.apply_retention().unwrap();
    assert!(!deleted_ids.is_empty());
    let after: Vec<(i64, i64)> = db
        .catalog()
        .blocks
        .iter()
        .map(|b| (b.meta().mint, b.meta().maxt))
        .collect();
    let deleted: Vec<(i64, i64)> = before
        .iter()
        .filter(|b| !after.contains(b))
        .copied()
        .collect();
    assert_eq!(deleted.len(), deleted_ids.len());
    for d in &deleted {
        assert!(
            d.1 < newest - 3 * H,
            "deleted block {d:?} is not older than retention"
        );
    }
    for k in &after {
        assert!(
            k.1 >= newest - 3 * H,
            "kept block {k:?} is older than retention"
        );
    }
    assert_whole_blocks_kept(&db, &before, &deleted, &want);
    // Deleted for good: the files are gone and a reopen agrees.
    let db = reopen(db, &o);
    assert_eq!(db.catalog().blocks.len(), after.len());
    assert_whole_blocks_kept(&db, &before, &deleted, &want);
    assert!(db.apply_retention().unwrap().is_empty());
}

#[test]
fn retention_by_size_deletes_oldest_whole_blocks_until_within_limit() {
    let dir = tempfile::tempdir().unwrap();
    let probe = tempfile::tempdir().unwrap();
    let (db, _) = hourly_blocks(probe.path(), &opts(H), 8);
    let sizes: Vec<u64> = db
        .catalog()
        .blocks
        .iter()
        .map(|b| b.meta().size_bytes)
        .collect();
    drop(db);
    // Room for the three newest blocks and a little more, not four.
    let limit = sizes[sizes.len() - 3..].iter().sum::<u64>() + 10;
    let o = Options {
        retention_size: limit,
        ..opts(H)
    };
    let (db, want) = hourly_blocks(dir.path(), &o, 8);
    let before: Vec<(i64, i64)> = db
        .catalog()
        .blocks
        .iter()
        .map(|b| (b.meta().mint, b.meta().maxt))
        .collect();
    let gone = db.apply_retention().unwrap();
    let cat = db.catalog();
    assert_eq!(cat.blocks.len(), 3, "{} deleted", gone.len());
    assert!(cat.size_bytes() <= limit);
    let after: Vec<(i64, i64)> = cat
        .blocks
        .iter()
        .map(|b| (b.meta().mint, b.meta().maxt))
        .collect();
    assert_eq!(
        after,
        before[before.len() - 3..].to_vec(),
        "the oldest go first"
    );
    let deleted: Vec<(i64, i64)> = before[..before.len() - 3].to_vec();
    assert_whole_blocks_kept(&db, &before, &deleted, &want);
    let db = reopen(db, &o);
    assert_whole_blocks_kept(&db, &before, &deleted, &want);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(H);
    let db = Db::open(dir.path(), o.clone()).unwrap();
    let l = lbl(&[("__name__", "locked")]);
    let mut app = db.appender();
    app.append(&l, T0, 2.5).unwrap();
    app.commit().unwrap();
    match Db::open(dir.path(), o.clone()) {
        Err(StorageError::Locked { path }) => assert_eq!(path, dir.path()),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second Db opened the same directory"),
    }
    // The refused open changed nothing, and a reader may still look.
    let ro = ReadOnlyDb::open(dir.path()).unwrap();
    assert_eq!(ro.querier().samples(&[], T0, T0).unwrap().len(), 1);
    let db = reopen(db, &o);
    assert_eq!(
        db.querier()
            .samples(&[Matcher::equal("__name__", "locked")], T0, T0)
            .unwrap(),
        vec![Sample::new(T0, 2.5)]
    );
}

#[test]
fn reopened_head_refuses_samples_blocks_already_hold() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(H);
    let base = T0 - T0.rem_euclid(H);
    let old = lbl(&[("__name__", "flushed"), ("s", "old")]);
    let new = lbl(&[("__name__", "flushed"), ("s", "new")]);
    let db = Db::open(dir.path(), o.clone()).unwrap();
    let t_old = base + 1_234_567;
    for (l, t, v) in [(&old, t_old, 1.5), (&new, base + 2 * H - 7, 3.0)] {
        let mut app = db.appender();
        app.append(l, t, v).unwrap();
        app.commit().unwrap();
    }
    assert_eq!(db.flush().unwrap().len(), 1);
    let try_overwrite = |db: &Db| {
        let mut app = db.appender();
        app.append(&old, t_old, -9.75).unwrap();
        app.commit().unwrap()
    };
    // `old` is in a block and no longer in the head: a rewrite of its point is out of bounds,
    // before a restart and after it.
    assert_eq!(try_overwrite(&db).out_of_bounds, 1);
    let db = reopen(db, &o);
    let st = try_overwrite(&db);
    assert_eq!(st.out_of_bounds, 1, "{st:?}");
    assert_eq!(st.appended, 0);
    let got = db
        .querier()
        .samples(&[Matcher::equal("s", "old")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got, vec![Sample::new(t_old, 1.5)]);
    // Newer than every block is fine.
    let mut app = db.appender();
    app.append(&old, base + 2 * H, 4.0).unwrap();
    assert_eq!(app.commit().unwrap().appended, 1);
}

#[test]
fn block_sections_are_byte_identical_for_identical_content() {
    // A CRC over a re-serialised hash map would differ between two writes of the same data.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(83);
    let mut series: Vec<(Labels, Vec<ChunkData>)> = (0..300)
        .map(|i| {
            let l = lbl(&[
                ("__name__", ["a", "b", "c"][i % 3]),
                ("i", &format!("{i:x}")),
                ("k", &(i % 17).to_string()),
            ]);
            let mut t = T0 + rng.below(1000) as i64;
            let samples: Vec<Sample> = (0..50)
                .map(|_| {
                    t += 1 + rng.below(30_000) as i64;
                    Sample::new(t, rng.value())
                })
                .collect();
            let c = ChunkData {
                mint: samples[0].t,
                maxt: samples[49].t,
                num_samples: 50,
                data: chunk::encode(&samples),
            };
            (l, vec![c])
        })
        .collect();
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let write = || {
        let mut w = BlockWriter::new(dir.path(), 0, Vec::new()).unwrap();
        for (l, c) in &series {
            w.add_series(l, c).unwrap();
        }
        std::fs::read(w.finish().unwrap().path).unwrap()
    };
    let (x, y) = (write(), write());
    assert_eq!(x.len(), y.len());
    let footer = x.len() - 240;
    assert!(x[..footer] == y[..footer], "sections differ");
    // In the footer only the block id (bytes 8..24) and the footer CRC (232..236) may differ.
    for i in (footer..x.len()).filter(|i| {
        !(footer + 8..footer + 24).contains(i) && !(footer + 232..footer + 236).contains(i)
    }) {
        assert_eq!(x[i], y[i], "footer byte {}", i - footer);
    }
}

#[test]
fn churned_series_leave_the_head_after_a_flush_and_their_data_stays_readable() {
    // A redeploy: 300 pods' series stop at 900 and 100 new pods' series carry on; one job and
    // one metric name span both. The flush of [0, 1000) leaves the old series without samples.
    let dir = tempfile::tempdir().unwrap();
    let o = opts(1000);
    let db = Db::open(dir.path(), o.clone()).unwrap();
    let pod = |generation: &str, i: usize| {
        lbl(&[
            ("__name__", "up"),
            ("job", "pods"),
            ("pod", &format!("{generation}-{i}")),
        ])
    };
    let mut app = db.appender();
    for i in 0..300 {
        app.append(&pod("old", i), 100, 1.0).unwrap();
        app.append(&pod("old", i), 900, 2.0).unwrap();
    }
    for i in 0..100 {
        app.append(&pod("new", i), 900, 3.0).unwrap();
        app.append(&pod("new", i), 1600, 4.0).unwrap();
    }
    app.commit().unwrap();
    assert_eq!(db.head().num_series(), 400);
    assert_eq!(db.flush().unwrap().len(), 1);

    let head = db.head();
    assert_eq!(head.num_series(), 100);
    assert_eq!((head.series_created(), head.series_removed()), (400, 300));
    let in_head = head.series_labels(&[Matcher::equal("job", "pods")], i64::MIN, i64::MAX);
    assert_eq!(in_head.len(), 100);
    assert!(
        in_head
            .iter()
            .all(|l| l.get("pod").is_some_and(|p| p.starts_with("new-"))),
        "{in_head:?}"
    );
    let q = db.querier();
    // The old series' samples are in the block: every query still finds them.
    let all = read_all(&q);
    assert_eq!(all.len(), 400);
    assert_eq!(
        all[&pod("old", 7)],
        vec![(100, 1.0f64.to_bits()), (900, 2.0f64.to_bits())]
    );
    drop(q);
    // A pod coming back gets a new series, which takes samples.
    let mut app = db.appender();
    app.append(&pod("old", 7), 1700, 5.0).unwrap();
    assert_eq!(app.commit().unwrap().appended, 1);
    assert_eq!(db.head().num_series(), 101);
    // The checkpoint the flush wrote holds the live series only.
    let db = reopen(db, &o);
    assert_eq!(db.head().num_series(), 101);
    assert_eq!(read_all(&db.querier())[&pod("old", 7)].len(), 3);
}
