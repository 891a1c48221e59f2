//! Snapshots: a copy taken beside a running agent (appends, flushes and compactions going on)
//! holds every sample committed before it started, and tidemark opens it as a data directory.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use tidemark::model::{Labels, Matcher, Sample};
use tidemark::storage::{Db, Options, ReadOnlyDb, write_snapshot};

const H: i64 = 3_600_000;
const T0: i64 = 1_700_000_000_000;

fn all(q: &tidemark::storage::Querier) -> BTreeMap<Labels, Vec<Sample>> {
    let m = Matcher::new(tidemark::model::MatchOp::Regex, "__name__", ".+").unwrap();
    q.select(&[m], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.samples))
        .collect()
}

fn opts() -> Options {
    Options {
        retention_time: 0,
        block_duration: H,
        ..Options::default()
    }
}

/// Appends `n` rounds of 15 s samples for 5 series starting at `from` round; returns the
/// time of the last round.
fn append_rounds(db: &Db, from: i64, n: i64) -> i64 {
    let mut last = 0;
    for r in from..from + n {
        let t = T0 + r * 15_000 + (r * 7919 % 997);
        let mut app = db.appender();
        for i in 0..5 {
            let l = Labels::new([("__name__", "m"), ("i", &i.to_string())]).unwrap();
            app.append(&l, t, (r * (i + 3)) as f64 * 0.25).unwrap();
        }
        app.commit().unwrap();
        last = t;
    }
    last
}

#[test]
fn snapshot_cli_copies_blocks_and_head_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    // Three hours into blocks, then 40 minutes only in the head (and WAL).
    append_rounds(&db, 0, 3 * 240);
    db.flush().unwrap();
    append_rounds(&db, 3 * 240, 160);
    db.sync().unwrap();
    let want = all(&db.querier());
    assert!(!db.catalog().blocks.is_empty(), "the test needs blocks");

    let out = tempfile::tempdir().unwrap();
    let snap = out.path().join("snap");
    let res = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("snapshot")
        .arg("--data-dir")
        .arg(dir.path())
        .arg(&snap)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let msg = String::from_utf8_lossy(&res.stdout);
    assert!(msg.contains("blocks copied"), "{msg}");

    // The snapshot refuses to overwrite anything.
    let again = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["snapshot", "--data-dir"])
        .arg(dir.path())
        .arg(&snap)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    db.close().unwrap();
    let restored = Db::open(&snap, opts()).unwrap();
    assert_eq!(all(&restored.querier()), want);
    restored.close().unwrap();
}

#[test]
fn snapshot_beside_appends_flushes_and_compactions_loses_nothing_committed_before() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path(), opts()).unwrap());
    let committed = Arc::new(AtomicI64::new(append_rounds(&db, 0, 480)));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, committed, stop) = (db.clone(), committed.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut round = 480;
            while !stop.load(Ordering::Acquire) {
                let t = append_rounds(&db, round, 60);
                committed.store(t, Ordering::Release);
                round += 60;
                db.flush().unwrap();
                db.compact().unwrap();
            }
        })
    };
    for k in 0..4 {
        let before = committed.load(Ordering::Acquire);
        let snap_root = tempfile::tempdir().unwrap();
        let snap = snap_root.path().join(format!("s{k}"));
        let view = ReadOnlyDb::open(dir.path()).unwrap();
        write_snapshot(&view.querier(), &snap, H).unwrap();
        let restored = ReadOnlyDb::open(&snap).unwrap();
        let got = all(&restored.querier());
        assert_eq!(got.len(), 5);
        for (l, samples) in &got {
            let mut ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
            let n = ts.len();
            ts.dedup();
            assert_eq!(ts.len(), n, "{l}: duplicate timestamps in the snapshot");
            // Every round up to `before` is present: rounds are contiguous from 0.
            let upto = ts.iter().filter(|&&t| t <= before).count() as i64;
            let rounds_before = (0..)
                .take_while(|&r: &i64| T0 + r * 15_000 + (r * 7919 % 997) <= before)
                .count() as i64;
            assert_eq!(upto, rounds_before, "{l}: samples lost in snapshot {k}");
        }
    }
    stop.store(true, Ordering::Release);
    writer.join().unwrap();
}
