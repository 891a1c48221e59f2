//! Time is bounded: storage keeps samples from 0000-01-01 to 9999-12-31 (UTC) and no more than
//! `MAX_AHEAD_MS` ahead of the appender's clock. A single sample at `i64::MIN + 1` used to be
//! accepted, after which the head never cut a block again (the window arithmetic wrapped), and
//! the WAL replayed the same state after every restart.

use std::time::Duration;

use tidemark::model::{Labels, MAX_TIME, MIN_TIME, Matcher, Sample};
use tidemark::storage::chunk;
use tidemark::storage::sstable::{BlockWriter, ChunkData};
use tidemark::storage::wal::{FsyncPolicy, SampleRecord, SeriesRecord, Wal, WalOptions};
use tidemark::storage::{Db, MAX_AHEAD_MS, Options, ReadOnlyDb};

/// One minute, as in the report: a control agent cut two blocks in 70 s.
const BD: i64 = 60_000;
/// 2024-04-01T19:40:03.917Z: in the past, so the wall-clock future bound never applies.
const T0: i64 = 1_712_000_003_917;

fn opts() -> Options {
    Options {
        fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        wal_segment_size: 1 << 20,
        block_duration: BD,
        retention_time: 0,
        retention_size: 0,
    }
}

fn lbl(name: &str) -> Labels {
    Labels::new([("__name__", name), ("job", "bounds")]).unwrap()
}

fn samples(db: &Db, name: &str) -> Vec<Sample> {
    db.querier()
        .samples(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
        .unwrap()
}

/// Appends one sample a second for 100 s from `T0` to `real` (irregular values) and flushes:
/// a 1-minute head spanning 100 s holds one complete window.
fn append_real_and_flush(db: &Db) -> usize {
    let mut app = db.appender();
    for i in 0..100 {
        app.append(&lbl("real"), T0 + i * 1_000 + i % 7, i as f64 * 0.37)
            .unwrap();
    }
    assert_eq!(app.commit().unwrap().appended, 100);
    db.flush().unwrap().len()
}

#[test]
fn extreme_timestamps_are_refused_and_the_head_still_cuts_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let mut app = db.appender();
    for (name, t) in [
        ("min_plus_one", i64::MIN + 1),
        ("min", i64::MIN),
        ("max_ish", i64::MAX - 1),
        ("before_year_0", MIN_TIME - 1),
        ("after_year_9999", MAX_TIME + 1),
    ] {
        app.append(&lbl(name), t, 1.0).unwrap();
    }
    let st = app.commit().unwrap();
    assert_eq!((st.out_of_bounds, st.appended), (5, 0), "{st:?}");
    assert_eq!(
        db.counters()
            .out_of_bounds
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );
    assert!(samples(&db, "min_plus_one").is_empty());
    assert!(samples(&db, "max_ish").is_empty());

    // The head flushes as if nothing had been sent.
    assert_eq!(append_real_and_flush(&db), 1, "the head cut no block");
    let cat = db.catalog();
    assert_eq!(cat.blocks.len(), 1);
    let m = cat.blocks[0].meta();
    assert!(m.mint >= T0 - BD && m.maxt < T0 + 2 * BD, "{m:?}");

    // The same after a restart: the WAL replays none of the refused samples.
    drop(cat);
    db.close().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(samples(&db, "min_plus_one").is_empty());
    assert_eq!(samples(&db, "real").len(), 100);
}

#[test]
fn the_ends_of_the_storable_range_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let mut app = db.appender();
    app.append(&lbl("first"), MIN_TIME, 1.5).unwrap();
    let st = app.commit().unwrap();
    assert_eq!(st.appended, 1, "{st:?}");
    // The year-0000 window is flushed on its own, then the real data's.
    assert_eq!(append_real_and_flush(&db), 2);
    assert_eq!(samples(&db, "first"), vec![Sample::new(MIN_TIME, 1.5)]);
    // MAX_TIME is in range but far in the future: that bound applies first.
    let mut app = db.appender_at(MAX_TIME);
    app.append(&lbl("last"), MAX_TIME, 2.5).unwrap();
    assert_eq!(app.commit().unwrap().appended, 1);
    assert_eq!(samples(&db, "last"), vec![Sample::new(MAX_TIME, 2.5)]);
}

#[test]
fn samples_too_far_ahead_of_the_clock_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let now = T0 + 5 * BD;
    let mut app = db.appender_at(now);
    app.append(&lbl("edge"), now + MAX_AHEAD_MS, 1.0).unwrap();
    app.append(&lbl("ahead"), now + MAX_AHEAD_MS + 1, 2.0)
        .unwrap();
    let st = app.commit().unwrap();
    assert_eq!(
        (st.appended, st.too_far_in_future, st.out_of_bounds),
        (1, 1, 0),
        "{st:?}"
    );
    assert!(samples(&db, "ahead").is_empty());
    assert_eq!(
        db.counters()
            .too_far_in_future
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // The plain appender counts from the wall clock: a sample an hour ahead of it would have
    // made retention (counted from the newest sample) delete every block an hour early.
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut app = db.appender();
    app.append(&lbl("wall_ahead"), wall + 3_600_000, 1.0)
        .unwrap();
    app.append(&lbl("wall_now"), wall, 1.0).unwrap();
    let st = app.commit().unwrap();
    assert_eq!((st.appended, st.too_far_in_future), (1, 1), "{st:?}");
}

/// Writes a WAL as an older version did: series records, then samples, one of them at
/// `i64::MIN + 1`.
fn write_poisoned_wal(dir: &std::path::Path) {
    let wal_opts = WalOptions {
        fsync: FsyncPolicy::Always,
        segment_size: 1 << 20,
    };
    let (wal, _) = Wal::open(&dir.join("wal"), wal_opts, |_| {}).unwrap();
    let series = [
        SeriesRecord {
            sref: 1,
            labels: lbl("poison"),
        },
        SeriesRecord {
            sref: 2,
            labels: lbl("ok"),
        },
    ];
    let samples = [
        SampleRecord {
            sref: 1,
            t: i64::MIN + 1,
            v: 1.0,
        },
        SampleRecord {
            sref: 2,
            t: T0,
            v: 4.25,
        },
        SampleRecord {
            sref: 1,
            t: T0 + 1_000,
            v: 2.0,
        },
    ];
    wal.commit(&series, &samples).unwrap();
    wal.close().unwrap();
}

#[test]
fn a_wal_holding_an_out_of_range_sample_replays_and_the_head_flushes() {
    let dir = tempfile::tempdir().unwrap();
    write_poisoned_wal(dir.path());

    // What `inspect` reads reports the sample without repairing anything.
    let ro = ReadOnlyDb::open(dir.path()).unwrap();
    assert_eq!(ro.replay_out_of_range(), 1);
    drop(ro);

    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.replay_out_of_range(), 1);
    assert_eq!(
        db.counters()
            .out_of_bounds
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "dropped replayed samples are counted with the other out-of-bounds refusals"
    );
    // The rest of the WAL is intact, the poisoned series' later sample included.
    assert_eq!(samples(&db, "ok"), vec![Sample::new(T0, 4.25)]);
    assert_eq!(samples(&db, "poison"), vec![Sample::new(T0 + 1_000, 2.0)]);

    assert_eq!(append_real_and_flush(&db), 1, "the head cut no block");
    db.close().unwrap();

    // The flush's checkpoint dropped the segment: the WAL is healed.
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.replay_out_of_range(), 0);
    assert_eq!(samples(&db, "ok"), vec![Sample::new(T0, 4.25)]);
    assert_eq!(samples(&db, "real").len(), 100);
}

#[test]
fn a_block_outside_the_storable_range_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    // As an older import wrote it: a sample near i64::MAX.
    let t = i64::MAX - 5;
    let blocks = dir.path().join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    let mut w = BlockWriter::new(&blocks, 1, Vec::new()).unwrap();
    let s = [Sample::new(t, 1.0)];
    let c = ChunkData {
        mint: t,
        maxt: t,
        num_samples: 1,
        data: chunk::encode(&s),
    };
    w.add_series(&lbl("future_block"), &[c]).unwrap();
    w.finish().unwrap();

    let db = Db::open(dir.path(), opts()).unwrap();
    let refused = db.refused_blocks();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].reason.contains("outside the storable range"),
        "{}",
        refused[0].reason
    );
    // Its range did not become the head's lower bound: real samples are still taken.
    assert_eq!(append_real_and_flush(&db), 1);
    assert_eq!(samples(&db, "real").len(), 100);
}
