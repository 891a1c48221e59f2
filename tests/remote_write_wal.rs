//! The storage side of remote write through the public API: a WAL hold keeps the segments a
//! queue has not sent across head flushes and checkpoints, and series the head garbage-collected
//! stay resolvable for samples still in those segments, also after a restart.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tidemark::model::Labels;
use tidemark::storage::wal::{FsyncPolicy, HoldOrigin, TailEvent, Tailer, WalPosition};
use tidemark::storage::{Db, Options};

fn options() -> Options {
    Options {
        fsync: FsyncPolicy::Interval(Duration::from_secs(60)),
        wal_segment_size: 4096,
        block_duration: 60_000,
        ..Options::default()
    }
}

/// What a tailer delivers: samples resolved to labels (`t`, value bits), and the end position
/// of each samples frame. Panics on a sample whose series is unknown.
fn resolve(t: &mut Tailer) -> (BTreeSet<(Labels, i64, u64)>, Vec<WalPosition>) {
    let mut refs: HashMap<u64, Labels> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut ends = Vec::new();
    while let Some(e) = t.read().unwrap() {
        match e {
            TailEvent::Series(list) => {
                for s in list {
                    refs.insert(s.sref, s.labels);
                }
            }
            TailEvent::Samples { samples, end } => {
                for s in samples {
                    let l = refs
                        .get(&s.sref)
                        .unwrap_or_else(|| panic!("sample of unknown ref {} at {end}", s.sref));
                    out.insert((l.clone(), s.t, s.v.to_bits()));
                }
                ends.push(end);
            }
            TailEvent::Checkpoint { .. } | TailEvent::Histograms { .. } => {}
            TailEvent::Skipped { from, to, reason } => panic!("skipped {from}..{to}: {reason}"),
        }
    }
    (out, ends)
}

#[test]
fn collected_series_in_held_segments_stay_resolvable_across_flushes_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_712_000_000_000i64;
    let gone: Vec<Labels> = (0..20)
        .map(|i| Labels::new([("__name__", "gone"), ("i", &i.to_string()[..])]).unwrap())
        .collect();
    let live: Vec<Labels> = (0..5)
        .map(|i| Labels::new([("__name__", "live"), ("j", &i.to_string()[..])]).unwrap())
        .collect();
    let mut written = Vec::new();
    let db = Db::open(dir.path(), options()).unwrap();
    let f = db.wal_follower();
    let hold = f.hold("remote").unwrap();
    assert_eq!(*hold.origin(), HoldOrigin::New);
    // 200 scrapes a second apart (with jitter); the `gone` series stop after 50.
    for k in 0..200i64 {
        let t = t0 + k * 1000 + (k * 37) % 11;
        let mut app = db.appender();
        let series = if k < 50 {
            gone.iter().chain(&live).collect::<Vec<_>>()
        } else {
            live.iter().collect()
        };
        for (n, l) in series.into_iter().enumerate() {
            let v = (k * 31 + n as i64 * 7) as f64 / 13.0;
            app.append(l, t, v).unwrap();
            written.push((l.clone(), t, v.to_bits(), k));
        }
        app.commit().unwrap();
    }
    let (all, ends) = resolve(&mut f.tail(WalPosition::START));
    assert_eq!(all.len(), written.len());
    // The queue has sent everything up to scrape 30: the `gone` series' records are behind it,
    // some of their samples ahead.
    let p = ends[30];
    assert!(
        p.segment > ends[0].segment,
        "the test needs the position past the first segment"
    );
    hold.advance(p);
    hold.persist().unwrap();
    let after_p: BTreeSet<(Labels, i64, u64)> = written
        .iter()
        .filter(|w| w.3 > 30)
        .map(|w| (w.0.clone(), w.1, w.2))
        .collect();

    // Flushes write blocks, collect the `gone` series and checkpoint the WAL.
    let blocks = db.flush().unwrap();
    assert!(blocks.len() >= 2, "{} blocks", blocks.len());
    assert!(
        db.head().num_series() < 25,
        "the gone series were collected"
    );
    let st = db.wal_stats();
    assert!(st.checkpoint.is_some());
    assert_eq!(
        st.first_segment, p.segment,
        "segments before the hold are released, the rest kept"
    );
    let (got, _) = resolve(&mut f.tail(hold.position()));
    assert_eq!(got, after_p);

    // After a restart the hold resumes and the carried series still resolve.
    drop(hold);
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let f = db.wal_follower();
    let hold = f.hold("remote").unwrap();
    assert_eq!(*hold.origin(), HoldOrigin::Resumed);
    assert_eq!(hold.position(), p);
    let (got, _) = resolve(&mut f.tail(hold.position()));
    assert_eq!(got, after_p);
    db.close().unwrap();
}
