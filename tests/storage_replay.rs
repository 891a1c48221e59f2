//! WAL replay into the head through `Db::open`, on WALs written record by record: what the
//! replayed head holds is what appending those samples one by one would give, whatever the
//! order of series within a record (runs of one series share a lookup during replay).

#[path = "common/store.rs"]
mod store;
use store::read_all;

use std::collections::BTreeMap;
use std::path::Path;

use tidemark::model::{Labels, MAX_TIME};
use tidemark::storage::wal::{SampleRecord, SeriesRecord, Wal, WalOptions};
use tidemark::storage::{Db, Options};

fn labels(name: &str) -> Labels {
    Labels::new([("__name__", name), ("job", "replay")]).unwrap()
}

fn write_wal(dir: &Path, commits: &[(Vec<SeriesRecord>, Vec<SampleRecord>)]) {
    let (wal, _) = Wal::open(&dir.join("wal"), WalOptions::default(), |_| {}).unwrap();
    for (series, samples) in commits {
        wal.commit(series, samples).unwrap();
    }
    wal.close().unwrap();
}

fn sample(sref: u64, t: i64, v: f64) -> SampleRecord {
    SampleRecord { sref, t, v }
}

#[test]
fn runs_of_one_series_and_interleaved_series_replay_as_appended_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_712_000_000_000;
    let series = vec![
        SeriesRecord {
            sref: 1,
            labels: labels("a"),
        },
        SeriesRecord {
            sref: 2,
            labels: labels("b"),
        },
        // The same labels again under another ref: both refs are the one series.
        SeriesRecord {
            sref: 7,
            labels: labels("a"),
        },
    ];
    let first = vec![
        sample(1, t, 1.0),
        sample(1, t + 1000, 2.0),
        sample(2, t, 10.0),
        // A ref whose series record is lost: dropped, and the run it interrupts goes on.
        sample(99, t, 5.0),
        sample(1, t + 2000, 3.0),
        // Outside the storable range: dropped and counted, in the middle of a run.
        sample(1, MAX_TIME + 1, 4.0),
        // Older than the series' newest: refused as it was when first appended.
        sample(1, t + 1500, 4.5),
        sample(1, t + 3000, 5.0),
        sample(2, t + 1000, 11.0),
        sample(2, t + 1000, 11.5),
        // The alias continues the run of ref 1.
        sample(7, t + 4000, 6.0),
        sample(1, t + 5000, 7.0),
    ];
    let second = vec![sample(2, t + 2000, 12.0), sample(7, t + 6000, 8.0)];
    write_wal(
        dir.path(),
        &[(series, first.clone()), (Vec::new(), second.clone())],
    );

    let db = Db::open(dir.path(), Options::default()).unwrap();
    let bits = |v: &[(i64, f64)]| v.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>();
    let want = BTreeMap::from([
        (
            labels("a"),
            bits(&[
                (t, 1.0),
                (t + 1000, 2.0),
                (t + 2000, 3.0),
                (t + 3000, 5.0),
                (t + 4000, 6.0),
                (t + 5000, 7.0),
                (t + 6000, 8.0),
            ]),
        ),
        (
            labels("b"),
            bits(&[(t, 10.0), (t + 1000, 11.0), (t + 2000, 12.0)]),
        ),
    ]);
    assert_eq!(read_all(&db.querier()), want);
    assert_eq!(db.replay_out_of_range(), 1);
    assert_eq!(
        db.replay_stats().samples,
        (first.len() + second.len()) as u64
    );
    db.close().unwrap();

    // Replaying again (now with the empty segment the first open started) gives the same head.
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(read_all(&db.querier()), want);
    db.close().unwrap();
}

#[test]
fn many_series_in_many_records_replay_completely() {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_712_000_000_000;
    let n = 3000u64;
    let series: Vec<SeriesRecord> = (0..n)
        .map(|i| SeriesRecord {
            sref: i + 1,
            labels: labels(&format!("m{i}")),
        })
        .collect();
    // Every commit: each series once, then every third series a second time (a run of two).
    let commits: Vec<_> = (0..20i64)
        .map(|k| {
            let mut s: Vec<SampleRecord> = Vec::new();
            for i in 0..n {
                s.push(sample(i + 1, t + k * 30_000, (k * i as i64) as f64));
                if i % 3 == 0 {
                    s.push(sample(i + 1, t + k * 30_000 + 15_000, -(k as f64)));
                }
            }
            (if k == 0 { series.clone() } else { Vec::new() }, s)
        })
        .collect();
    write_wal(dir.path(), &commits);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let got = read_all(&db.querier());
    assert_eq!(got.len(), n as usize);
    for i in 0..n {
        let mut want = Vec::new();
        for k in 0..20i64 {
            want.push((t + k * 30_000, ((k * i as i64) as f64).to_bits()));
            if i % 3 == 0 {
                want.push((t + k * 30_000 + 15_000, (-(k as f64)).to_bits()));
            }
        }
        assert_eq!(got[&labels(&format!("m{i}"))], want, "series {i}");
    }
    db.close().unwrap();
}

#[test]
fn a_reused_ref_and_refs_the_head_picks_replay_as_the_records_name_them() {
    let dir = tempfile::tempdir().unwrap();
    let t = 1_712_000_000_000;
    let def = |sref, name| SeriesRecord {
        sref,
        labels: labels(name),
    };
    write_wal(
        dir.path(),
        &[
            (vec![def(5, "a")], vec![sample(5, t, 1.0)]),
            // Ref 5 again for other labels: b gets a ref of the head's choosing (6), and WAL
            // ref 5 names b from here on. WAL ref 6 was never named: its sample is dropped,
            // not given to b.
            (
                vec![def(5, "b")],
                vec![sample(5, t + 1000, 2.0), sample(6, t + 1000, 9.0)],
            ),
            // Now a record names 6, for c: c gets yet another ref (7), which no record names.
            (
                vec![def(6, "c")],
                vec![sample(6, t + 2000, 3.0), sample(7, t + 2000, 9.0)],
            ),
            // b's labels under a new ref: the same series.
            (vec![def(9, "b")], vec![sample(9, t + 3000, 4.0)]),
        ],
    );
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let want = BTreeMap::from([
        (labels("a"), vec![(t, 1f64.to_bits())]),
        (
            labels("b"),
            vec![(t + 1000, 2f64.to_bits()), (t + 3000, 4f64.to_bits())],
        ),
        (labels("c"), vec![(t + 2000, 3f64.to_bits())]),
    ]);
    assert_eq!(read_all(&db.querier()), want);
    db.close().unwrap();
}
