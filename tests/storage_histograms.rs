//! Native histogram samples in storage: appended, read back bit-exact, replayed from the WAL
//! (segments and checkpoints), under Prometheus's head append rules (duplicates, out of order,
//! a series switching between floats and histograms, float staleness markers after a
//! histogram), and a torn WAL tail with histogram records cut as any other.

use std::path::Path;

use tidemark::model::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use tidemark::model::{HistogramSample, HistogramValue, Labels, MatchOp, Matcher, STALE_NAN};
use tidemark::storage::wal::{HistogramRecord, SeriesRecord, Wal, WalOptions};
use tidemark::storage::{CommitStats, Db, Options, SeriesSamples, StorageError};

const T0: i64 = 1_712_000_000_000;

fn labels(name: &str) -> Labels {
    Labels::new([("__name__", name), ("job", "hist")]).unwrap()
}

/// An integer histogram whose counts grow with `i`, buckets on both sides.
fn int_h(i: u64) -> HistogramValue {
    HistogramValue::Int(Box::new(Histogram {
        counter_reset_hint: if i == 0 {
            CounterResetHint::Reset
        } else {
            CounterResetHint::NotReset
        },
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: i,
        count: 5 * i + 6,
        sum: 1.5 * i as f64 - 0.25,
        positive_spans: vec![Span::new(-2, 3), Span::new(4, 1)],
        positive_buckets: vec![i as i64, 1, -1, 2],
        negative_spans: vec![Span::new(1, 1)],
        negative_buckets: vec![3],
        custom_values: vec![],
    }))
}

/// A float histogram with custom buckets.
fn float_h(i: u64) -> HistogramValue {
    HistogramValue::Float(Box::new(FloatHistogram {
        counter_reset_hint: CounterResetHint::Gauge,
        schema: -53,
        zero_threshold: 0.0,
        zero_count: 0.0,
        count: 3.5 + i as f64,
        sum: -0.0,
        positive_spans: vec![Span::new(0, 3)],
        positive_buckets: vec![1.0, 0.5, 2.0 + i as f64],
        negative_spans: vec![],
        negative_buckets: vec![],
        custom_values: vec![0.1, 1.0, 10.0],
    }))
}

fn select(db: &Db) -> Vec<SeriesSamples> {
    let all = Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap();
    db.querier().select(&[all], i64::MIN, i64::MAX).unwrap()
}

fn hs(s: &SeriesSamples) -> Vec<HistogramSample> {
    unhinted(s.histograms.clone())
}

/// The samples with their counter-reset hints left out (gauge kept): which samples read back
/// unknown depends on where chunks were cut (head chunk size, block and replay boundaries),
/// as in Prometheus; `counter_reset_hints_read_back_as_prometheus_chunks_give_them` pins them.
fn unhinted(v: Vec<HistogramSample>) -> Vec<HistogramSample> {
    v.into_iter()
        .map(|mut s| {
            match &mut s.h {
                HistogramValue::Int(h) if h.counter_reset_hint != CounterResetHint::Gauge => {
                    h.counter_reset_hint = CounterResetHint::Unknown
                }
                HistogramValue::Float(h) if h.counter_reset_hint != CounterResetHint::Gauge => {
                    h.counter_reset_hint = CounterResetHint::Unknown
                }
                _ => {}
            }
            s
        })
        .collect()
}

fn commit(db: &Db, f: impl FnOnce(&mut tidemark::storage::Appender<'_>)) -> CommitStats {
    let mut app = db.appender_at(T0 + 86_400_000);
    f(&mut app);
    app.commit().unwrap()
}

#[test]
fn histograms_read_back_bit_exact_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let mut want_a = Vec::new();
    let mut want_b = Vec::new();
    // Past one head chunk, so closed histogram chunks are read too.
    for i in 0..300u64 {
        let t = T0 + i as i64 * 15_000;
        let s = commit(&db, |app| {
            app.append_histogram(&labels("a"), t, int_h(i)).unwrap();
            app.append_histogram(&labels("b"), t + 1, float_h(i))
                .unwrap();
        });
        assert_eq!(s.appended, 2);
        want_a.push(HistogramSample { t, h: int_h(i) });
        want_b.push(HistogramSample {
            t: t + 1,
            h: float_h(i),
        });
    }
    let check = |db: &Db| {
        let got = select(db);
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|s| s.samples.is_empty()));
        assert_eq!(hs(&got[0]), unhinted(want_a.clone()));
        assert_eq!(hs(&got[1]), unhinted(want_b.clone()));
        // A range in the middle.
        let q = db.querier();
        let m = [Matcher::equal("__name__", "a")];
        let got = q.select(&m, T0 + 15_000 * 130, T0 + 15_000 * 140).unwrap();
        assert_eq!(hs(&got[0]), unhinted(want_a[130..=140].to_vec()));
    };
    check(&db);
    db.close().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.replay_stats().histograms, 600);
    check(&db);
    db.close().unwrap();
}

#[test]
fn append_rules_for_histograms_follow_the_float_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let a = labels("a");
    let s = commit(&db, |app| {
        app.append_histogram(&a, T0, int_h(1)).unwrap();
    });
    assert_eq!(s.appended, 1);
    // The same histogram again: ignored; a different one at that time: refused; older:
    // out of order; a float at the histogram's time: a duplicate too.
    let s = commit(&db, |app| {
        app.append_histogram(&a, T0, int_h(1)).unwrap();
        app.append_histogram(&a, T0, int_h(2)).unwrap();
        app.append_histogram(&a, T0 - 1, int_h(2)).unwrap();
        app.append(&a, T0, 1.0).unwrap();
        // The float kind of the same counts is another value.
        app.append_histogram(&a, T0, HistogramValue::Float(Box::new(int_h(1).to_float())))
            .unwrap();
    });
    assert_eq!(
        (
            s.appended,
            s.duplicates_ignored,
            s.duplicate,
            s.out_of_order
        ),
        (0, 1, 3, 1)
    );
    // Within one batch: a histogram at the time of one reserved before it.
    let s = commit(&db, |app| {
        app.append_histogram(&a, T0 + 10, int_h(3)).unwrap();
        app.append_histogram(&a, T0 + 10, int_h(3)).unwrap();
        app.append_histogram(&a, T0 + 10, int_h(4)).unwrap();
    });
    assert_eq!((s.appended, s.duplicates_ignored, s.duplicate), (1, 1, 1));
    // A histogram at the time of a float is a duplicate.
    let b = labels("b");
    commit(&db, |app| {
        app.append(&b, T0, 5.0).unwrap();
    });
    let s = commit(&db, |app| {
        app.append_histogram(&b, T0, int_h(1)).unwrap();
    });
    assert_eq!(s.duplicate, 1);
    // Invalid shapes are refused at append, before anything is logged.
    let mut app = db.appender();
    let mut bad = int_h(1);
    if let HistogramValue::Int(h) = &mut bad {
        h.positive_buckets.pop();
    }
    assert!(matches!(
        app.append_histogram(&a, T0 + 20, bad),
        Err(StorageError::InvalidHistogram(_))
    ));
    let mut bad = float_h(1);
    if let HistogramValue::Float(h) = &mut bad {
        h.schema = 9;
    }
    assert!(matches!(
        app.append_histogram(&a, T0 + 20, bad),
        Err(StorageError::InvalidHistogram(_))
    ));
    // Prometheus's validation, with its text.
    let mut bad = int_h(1);
    if let HistogramValue::Int(h) = &mut bad {
        h.count = 1;
    }
    match app.append_histogram(&a, T0 + 20, bad) {
        Err(StorageError::InvalidHistogram(e)) => {
            assert!(e.contains("observation count"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(app.is_empty());
    drop(app);
    let got = select(&db);
    assert_eq!(
        hs(&got[0]),
        unhinted(vec![
            HistogramSample { t: T0, h: int_h(1) },
            HistogramSample {
                t: T0 + 10,
                h: int_h(3)
            }
        ])
    );
    assert_eq!(got[1].samples.len(), 1);
    assert!(got[1].histograms.is_empty());
    db.close().unwrap();
}

fn stale_sum(h: &HistogramValue) -> bool {
    h.is_stale_marker()
}

#[test]
fn a_series_switches_kinds_and_a_float_stale_marker_after_a_histogram_is_a_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let a = labels("a");
    let b = labels("b");
    let c = labels("c");
    let mut t = T0;
    // a: floats, histograms, floats, a histogram, then a float staleness marker.
    for i in 0..5 {
        commit(&db, |app| {
            app.append(&a, t, i as f64).unwrap();
        });
        t += 1000;
    }
    for i in 0..5 {
        commit(&db, |app| {
            app.append_histogram(&a, t, int_h(i)).unwrap();
        });
        t += 1000;
    }
    for i in 0..3 {
        commit(&db, |app| {
            app.append(&a, t, 10.0 + i as f64).unwrap();
        });
        t += 1000;
    }
    commit(&db, |app| {
        app.append_histogram(&a, t, int_h(9)).unwrap();
        // b: a float histogram, then in the same batch a float stale marker.
        app.append_histogram(&b, t, float_h(1)).unwrap();
        app.append(&c, t, 1.0).unwrap();
    });
    t += 1000;
    let s = commit(&db, |app| {
        app.append(&a, t, STALE_NAN).unwrap();
        app.append(&b, t, STALE_NAN).unwrap();
        // After a float the marker stays a float.
        app.append(&c, t, STALE_NAN).unwrap();
    });
    assert_eq!(s.appended, 3);
    // The same marker again at that time is the same sample, ignored.
    let s = commit(&db, |app| {
        app.append(&a, t, STALE_NAN).unwrap();
        app.append(&a, t, 3.0).unwrap();
    });
    assert_eq!((s.duplicates_ignored, s.duplicate), (1, 1));
    let check = |db: &Db| {
        let got = select(db);
        let (sa, sb, sc) = (&got[0], &got[1], &got[2]);
        let ft: Vec<i64> = sa.samples.iter().map(|s| s.t).collect();
        let ht: Vec<i64> = sa.histograms.iter().map(|s| s.t).collect();
        assert_eq!(
            ft,
            [0, 1, 2, 3, 4, 10, 11, 12].map(|k| T0 + k * 1000).to_vec()
        );
        assert_eq!(ht, [5, 6, 7, 8, 9, 13, 14].map(|k| T0 + k * 1000).to_vec());
        let last = sa.histograms.last().unwrap();
        assert!(stale_sum(&last.h) && matches!(last.h, HistogramValue::Int(_)));
        let last = sb.histograms.last().unwrap();
        assert!(stale_sum(&last.h) && matches!(last.h, HistogramValue::Float(_)));
        assert!(sb.samples.is_empty());
        assert_eq!(sc.samples.len(), 2);
        assert!(sc.histograms.is_empty());
        assert!(tidemark::model::is_stale_nan(sc.samples[1].v));
    };
    check(&db);
    db.close().unwrap();
    // Replay keeps each kind's order, so the switches come back as they were.
    let db = Db::open(dir.path(), Options::default()).unwrap();
    check(&db);
    db.close().unwrap();
}

/// Every histogram and float of every series, over all time.
type Everything = Vec<(Labels, Vec<(i64, u64)>, Vec<HistogramSample>)>;

fn everything(db: &Db) -> Everything {
    select(db)
        .into_iter()
        .map(|s| {
            (
                s.labels,
                s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
                unhinted(s.histograms),
            )
        })
        .collect()
}

#[test]
fn histograms_go_through_checkpoint_flush_compaction_deletion_clean_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let bd = 300_000;
    let opts = Options {
        block_duration: bd,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let start = T0 - T0 % bd;
    // Over four block windows: a float series, an integer histogram series, a float histogram
    // series, and one switching kinds every few minutes.
    for i in 0..80i64 {
        let t = start + i * 15_000;
        commit(&db, |app| {
            app.append(&labels("f"), t, i as f64).unwrap();
            app.append_histogram(&labels("h"), t, int_h(i as u64))
                .unwrap();
            app.append_histogram(&labels("g"), t + 7, float_h(i as u64))
                .unwrap();
            if (i / 7) % 2 == 0 {
                app.append(&labels("m"), t, -(i as f64)).unwrap();
            } else {
                app.append_histogram(&labels("m"), t, int_h(i as u64))
                    .unwrap();
            }
        });
    }
    let want = everything(&db);
    assert_eq!(want.len(), 4);
    // Head chunks closed and open, then the checkpoint and reopen.
    db.close().unwrap();
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(everything(&db), want);
    // Flush: three windows go to blocks, the rest stays in the head and the checkpoint.
    assert_eq!(db.flush().unwrap().len(), 3);
    assert_eq!(db.catalog().blocks.len(), 3);
    assert_eq!(everything(&db), want);
    db.close().unwrap();
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(everything(&db), want);
    // Compaction merges the blocks.
    assert!(db.compact().unwrap().is_some());
    assert!(db.catalog().blocks.len() < 3);
    assert_eq!(everything(&db), want);
    // A snapshot (blocks and head) opens with the same data.
    let snap = tempfile::tempdir().unwrap();
    let out = snap.path().join("s");
    db.snapshot(&out, true).unwrap();
    {
        let s = tidemark::storage::ReadOnlyDb::open(&out).unwrap();
        let all = Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap();
        let got = s.querier().select(&[all], i64::MIN, i64::MAX).unwrap();
        let got: Vec<_> = got
            .into_iter()
            .map(|s| {
                (
                    s.labels,
                    s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
                    unhinted(s.histograms),
                )
            })
            .collect();
        assert_eq!(got, want);
    }
    // Deleting a stretch of the histogram series hides it at once, in blocks and head, and a
    // clean rewrites the block without it.
    let (lo, hi) = (start + 10 * 15_000, start + 60 * 15_000);
    let sel = vec![vec![
        Matcher::new(MatchOp::Regex, "__name__", "h|m").unwrap(),
    ]];
    db.delete_series(&sel, lo, hi).unwrap();
    let mut cut = want.clone();
    for (l, f, h) in cut.iter_mut() {
        if l.get("__name__") == Some("h") || l.get("__name__") == Some("m") {
            f.retain(|x| x.0 < lo || x.0 > hi);
            h.retain(|x| x.t < lo || x.t > hi);
        }
    }
    assert_eq!(everything(&db), cut);
    db.clean_tombstones().unwrap();
    assert_eq!(everything(&db), cut);
    db.close().unwrap();
    let db = Db::open(dir.path(), opts).unwrap();
    assert_eq!(everything(&db), cut);
    db.close().unwrap();
}

#[test]
fn closed_histogram_chunks_live_in_the_head_chunk_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    for i in 0..400u64 {
        commit(&db, |app| {
            app.append_histogram(&labels("a"), T0 + i as i64 * 1000, int_h(i))
                .unwrap();
        });
    }
    let files: u64 = std::fs::read_dir(dir.path().join("chunks_head"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(files > 0, "closed chunks were written to the chunk file");
    let got = select(&db);
    assert_eq!(got[0].histograms.len(), 400);
    assert_eq!(
        hs(&got[0]).pop().map(|s| s.h),
        unhinted(vec![HistogramSample {
            t: 0,
            h: int_h(399)
        }])
        .pop()
        .map(|s| s.h)
    );
    db.close().unwrap();
}

fn write_wal(dir: &Path, commits: &[Vec<HistogramRecord>]) {
    let (wal, _) = Wal::open(&dir.join("wal"), WalOptions::default(), |_| {}).unwrap();
    let series = [SeriesRecord {
        sref: 1,
        labels: labels("a"),
    }];
    for (i, h) in commits.iter().enumerate() {
        let s: &[SeriesRecord] = if i == 0 { &series } else { &[] };
        wal.commit_with_histograms(s, &[], h).unwrap();
    }
    wal.close().unwrap();
}

#[test]
fn a_torn_histogram_record_at_the_wal_tail_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |i: u64| HistogramRecord {
        sref: 1,
        t: T0 + i as i64,
        h: if i.is_multiple_of(2) {
            int_h(i)
        } else {
            float_h(i)
        },
    };
    write_wal(
        dir.path(),
        &[vec![rec(0), rec(1)], vec![rec(2)], vec![rec(3), rec(4)]],
    );
    // Cut the last record short.
    let seg = dir.path().join("wal").join("00000001");
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.replay_stats().corruptions.len(), 1);
    let got = select(&db);
    // Each kind's run is a frame of its own: the last commit's second frame (rec 4) is torn.
    let want: Vec<HistogramSample> = (0..4)
        .map(|i| HistogramSample {
            t: T0 + i as i64,
            h: rec(i).h,
        })
        .collect();
    assert_eq!(hs(&got[0]), unhinted(want));
    db.close().unwrap();
}

#[test]
fn a_damaged_histogram_chunk_in_a_block_is_left_out_with_a_warning_and_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let bd = 300_000;
    let opts = Options {
        block_duration: bd,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let start = T0 - T0 % bd;
    for i in 0..40i64 {
        let t = start + i * 15_000;
        commit(&db, |app| {
            app.append_histogram(&labels("h"), t, int_h(i as u64))
                .unwrap();
        });
    }
    assert_eq!(db.flush().unwrap().len(), 1);
    let block = db.catalog().blocks[0].clone();
    let (_, metas) = block.series(0).unwrap();
    let path = block.meta().path.clone();
    db.close().unwrap();
    // Flip a byte inside the histogram chunk: its checksum fails on read.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[metas[0].offset as usize + 5] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let db = Db::open(dir.path(), opts).unwrap();
    let q = db.querier();
    let all = Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap();
    let got = q.select(&[all], i64::MIN, i64::MAX).unwrap();
    // What the head still holds is answered; the block's window is left out with a warning.
    assert!(got[0].histograms.iter().all(|s| s.t >= start + bd));
    assert_eq!(got[0].histograms.len(), 20);
    assert_eq!(q.warnings().len(), 1, "{:?}", q.warnings());
    assert!(
        dir.path()
            .join(tidemark::storage::QUARANTINE_DIR)
            .read_dir()
            .unwrap()
            .count()
            > 0
    );
    db.close().unwrap();
}

/// The hints a stored histogram reads back with are those Prometheus 3's chunks give it: the
/// first sample of a chunk unknown, later ones of a counter chunk not-reset, every one of a
/// gauge chunk gauge, a staleness marker unknown; a detected or explicit reset, a kind switch
/// and a histogram after a staleness marker start a new chunk. The same in the head, after a
/// WAL replay and from a block.
#[test]
fn counter_reset_hints_read_back_as_prometheus_chunks_give_them() {
    use CounterResetHint::*;
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        block_duration: 3_600_000,
        ..Options::default()
    };
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let with = |h: HistogramValue, hint: CounterResetHint| -> HistogramValue {
        match h {
            HistogramValue::Int(mut x) => {
                x.counter_reset_hint = hint;
                HistogramValue::Int(x)
            }
            HistogramValue::Float(mut x) => {
                x.counter_reset_hint = hint;
                HistogramValue::Float(x)
            }
        }
    };
    let stale = HistogramValue::Int(Box::new(Histogram {
        sum: STALE_NAN,
        ..Histogram::default()
    }));
    // (appended, hint read back)
    let steps: Vec<(HistogramValue, CounterResetHint)> = vec![
        (with(int_h(0), Reset), Unknown),      // first sample
        (with(int_h(1), Unknown), NotReset),   // increasing
        (with(int_h(2), NotReset), NotReset),  // increasing, hinted
        (with(int_h(1), Unknown), Unknown),    // detected reset: new chunk
        (with(int_h(2), Unknown), NotReset),   // increasing again
        (with(int_h(3), Reset), Unknown),      // explicit reset hint
        (with(int_h(4), Unknown), NotReset),   //
        (with(int_h(5), Gauge), Gauge),        // gauge: a chunk of its own
        (with(int_h(1), Gauge), Gauge),        // a gauge never resets
        (with(int_h(6), Unknown), Unknown),    // back to counter: new chunk
        (with(int_h(7), Unknown), NotReset),   //
        (float_h(0), Gauge),                   // kind switch (a float gauge)
        (with(float_h(1), Unknown), Unknown),  // float counter after a float gauge
        (with(float_h(2), Unknown), NotReset), //
        (with(int_h(8), NotReset), Unknown),   // kind switch back to integer
        (with(int_h(9), Unknown), NotReset),   //
        (stale.clone(), Unknown),              // staleness marker
        (with(int_h(10), NotReset), Unknown),  // after a staleness marker: new chunk
        (with(int_h(11), Unknown), NotReset),  //
    ];
    let l = labels("hints");
    let mut want = Vec::new();
    for (i, (h, hint)) in steps.into_iter().enumerate() {
        let t = T0 + i as i64 * 15_000;
        let s = commit(&db, |app| {
            app.append_histogram(&l, t, h.clone()).unwrap();
        });
        assert_eq!(s.appended, 1, "step {i}");
        let h = if h.is_stale_marker() {
            h
        } else {
            with(h, hint)
        };
        want.push(HistogramSample { t, h });
    }
    let check = |db: &Db, what: &str| {
        let got = select(db);
        assert_eq!(got.len(), 1, "{what}");
        let got = &got[0].histograms;
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.t, w.t, "{what} step {i}");
            assert_eq!(
                g.h.counter_reset_hint(),
                w.h.counter_reset_hint(),
                "{what} step {i}"
            );
            if !w.h.is_stale_marker() {
                assert_eq!(g.h, w.h, "{what} step {i}");
            } else {
                assert!(g.h.is_stale_marker(), "{what} step {i}");
            }
        }
    };
    check(&db, "head");
    // The same histogram again (any hint) is a duplicate ignored, as in Prometheus.
    let last = want
        .last()
        .map(|s| (s.t, with(s.h.clone(), Reset)))
        .unwrap();
    let s = commit(&db, |app| {
        app.append_histogram(&l, last.0, last.1).unwrap();
    });
    assert_eq!((s.appended, s.duplicates_ignored), (0, 1));
    db.close().unwrap();
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    check(&db, "replayed");
    // Into a block: a later sample moves the head past the window.
    let s = commit(&db, |app| {
        app.append(&labels("later"), T0 + 3 * 3_600_000, 1.0)
            .unwrap();
    });
    assert_eq!(s.appended, 1);
    assert!(!db.flush().unwrap().is_empty());
    let got = select(&db);
    let got = got.iter().find(|s| s.labels == l).unwrap();
    assert_eq!(got.histograms.len(), want.len());
    for (i, (g, w)) in got.histograms.iter().zip(&want).enumerate() {
        assert_eq!(
            g.h.counter_reset_hint(),
            w.h.counter_reset_hint(),
            "block step {i}"
        );
    }
    db.close().unwrap();
}
