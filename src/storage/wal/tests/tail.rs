//! The tailer, holds and position files on real files: commit order across segments, a start
//! in the middle, a writer racing the reader, retention under holds and the backlog limit,
//! damage, and commit notifications.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

/// Reads until the tailer has caught up.
fn drain(t: &mut Tailer) -> Vec<TailEvent> {
    let mut out = Vec::new();
    while let Some(e) = t.read().unwrap() {
        out.push(e);
    }
    out
}

/// The records a list of events carries, series and samples only.
fn records(events: &[TailEvent]) -> Vec<Record> {
    events
        .iter()
        .filter_map(|e| match e {
            TailEvent::Series(s) => Some(Record::Series(s.clone())),
            TailEvent::Samples { samples, .. } => Some(Record::Samples(samples.clone())),
            _ => None,
        })
        .collect()
}

fn sample_ends(events: &[TailEvent]) -> Vec<WalPosition> {
    events
        .iter()
        .filter_map(|e| match e {
            TailEvent::Samples { end, .. } => Some(*end),
            _ => None,
        })
        .collect()
}

fn open(dir: &Path, segment_size: u64) -> Wal {
    Wal::open(
        dir,
        opts(FsyncPolicy::Interval(Duration::from_secs(60)), segment_size),
        |_| {},
    )
    .unwrap()
    .0
}

#[test]
fn tailer_follows_commits_across_segments_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(11, 80);
    let wal = open(dir.path(), 700);
    let f = wal.follower(&dir.path().join("positions"));
    let mut t = f.tail(f.end());
    assert!(drain(&mut t).is_empty());
    for c in &cs[..40] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let first = drain(&mut t);
    assert_eq!(records(&first), expected(&cs[..40]));
    for c in &cs[40..] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let second = drain(&mut t);
    assert_eq!(records(&second), expected(&cs[40..]));
    assert!(wal.stats().segments > 5, "the test must cross segments");
    let ends: Vec<_> = sample_ends(&first)
        .into_iter()
        .chain(sample_ends(&second))
        .collect();
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
    assert_eq!(*ends.last().unwrap(), f.end());
    assert!(drain(&mut t).is_empty());
}

#[test]
fn a_tailer_started_mid_wal_learns_every_series_but_sends_only_later_samples() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(23, 90);
    let wal = open(dir.path(), 900);
    for c in &cs[..50] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let upto = wal.cut().unwrap();
    let f = wal.follower(&dir.path().join("positions"));
    // The checkpoint holds half the series and samples as chunks, never to be resent.
    let cp_series: Vec<_> = cs[..50]
        .iter()
        .flat_map(|c| c.series.clone())
        .step_by(2)
        .collect();
    let chunk = ChunkRecord {
        sref: cp_series[0].sref,
        mint: 1_712_000_001_017,
        maxt: 1_712_000_093_554,
        data: vec![0x13, 0x00, 0xff],
    };
    wal.checkpoint(
        upto,
        vec![
            Record::Series(cp_series.clone()),
            Record::Chunks(vec![chunk]),
            Record::Samples(cs[49].samples.clone()),
        ],
    )
    .unwrap();
    for c in &cs[50..] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let all = drain(&mut f.tail(WalPosition::START));
    assert_eq!(all[0], TailEvent::Series(cp_series.clone()));
    assert_eq!(records(&all[1..]), expected(&cs[50..]));

    // From the end of the 65th commit's samples: every series, samples of commits 65.. only.
    let start = sample_ends(&all)[14];
    let got = drain(&mut f.tail(start));
    let mut want = vec![Record::Series(cp_series)];
    for (i, c) in cs[50..].iter().enumerate() {
        if !c.series.is_empty() {
            want.push(Record::Series(c.series.clone()));
        }
        if i >= 15 {
            want.push(Record::Samples(c.samples.clone()));
        }
    }
    assert_eq!(records(&got), want);
}

#[test]
fn a_writer_racing_the_reader_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(5, 400);
    let wal = Arc::new(open(dir.path(), 2_000));
    let f = wal.follower(&dir.path().join("positions"));
    let mut t = f.tail(f.end());
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (wal, cs, done) = (wal.clone(), cs.clone(), done.clone());
        std::thread::spawn(move || {
            for (i, c) in cs.iter().enumerate() {
                wal.commit(&c.series, &c.samples).unwrap();
                if i % 37 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut got = Vec::new();
    let mut seen = f.generation();
    loop {
        let finished = done.load(Ordering::Acquire);
        got.extend(drain(&mut t));
        if finished {
            break;
        }
        seen = f.wait(seen, Duration::from_millis(100));
    }
    writer.join().unwrap();
    got.extend(drain(&mut t));
    assert_eq!(records(&got), expected(&cs));
}

#[test]
fn holds_keep_segments_until_the_backlog_limit_then_count_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let positions = dir.path().join("positions");
    let cs = commits(31, 120);
    let wal = open(dir.path(), 600);
    let f = wal.follower(&positions);
    let hold = f.hold("vm").unwrap();
    assert_eq!(*hold.origin(), HoldOrigin::New);
    let start = hold.position();
    assert_eq!(start, f.end());
    for c in &cs[..60] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let upto = wal.cut().unwrap();
    let st = wal.checkpoint(upto, vec![]).unwrap();
    assert_eq!(st.segments_removed, 0);
    assert_eq!(st.segments_kept as u64, upto - start.segment + 1);
    // Everything the hold needs is still readable.
    let events = drain(&mut f.tail(start));
    assert_eq!(records(&events), expected(&cs[..60]));

    // The hold moves on: what lies before it goes at the next checkpoint.
    let mid = sample_ends(&events)[30];
    hold.advance(mid);
    hold.advance(start); // never backwards
    assert_eq!(hold.position(), mid);
    hold.persist().unwrap();
    for c in &cs[60..90] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let upto = wal.cut().unwrap();
    let st = wal.checkpoint(upto, vec![]).unwrap();
    assert_eq!(st.samples_released, 0);
    assert_eq!(wal.stats().first_segment, mid.segment);

    // Over the limit, the oldest segments go anyway and the hold's unsent samples are counted.
    f.set_backlog_limit(1_500);
    for c in &cs[90..] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let upto = wal.cut().unwrap();
    let first_kept = wal.retained_from(upto);
    assert!(first_kept > mid.segment && first_kept <= upto);
    let tail_from_mid = drain(&mut f.tail(mid));
    let st = wal.checkpoint(upto, vec![]).unwrap();
    let lost: u64 = tail_from_mid
        .iter()
        .filter_map(|e| match e {
            TailEvent::Samples { samples, end } if end.segment < first_kept => {
                Some(samples.len() as u64)
            }
            _ => None,
        })
        .sum();
    assert!(lost > 0);
    assert_eq!(st.samples_released, lost);
    assert_eq!(hold.released_samples(), lost);
    // A tailer at the old position reports the gap, then reads on from the first kept segment.
    let after = drain(&mut f.tail(mid));
    match &after[0] {
        TailEvent::Skipped { from, to, .. } => {
            assert_eq!(*from, mid);
            assert_eq!(to.segment, first_kept);
        }
        other => panic!("want Skipped first, got {other:?}"),
    }
    let kept_samples: u64 = records(&after)
        .iter()
        .map(|r| match r {
            Record::Samples(s) => s.len() as u64,
            _ => 0,
        })
        .sum();
    let sent_before: u64 = tail_from_mid
        .iter()
        .map(|e| match e {
            TailEvent::Samples { samples, .. } => samples.len() as u64,
            _ => 0,
        })
        .sum();
    assert_eq!(kept_samples + lost, sent_before);

    // The position file outlives the hold; a new hold resumes from it.
    drop(hold);
    let again = f.hold("vm").unwrap();
    assert_eq!(*again.origin(), HoldOrigin::Resumed);
    assert_eq!(again.position(), mid);
    drop(again);
    let file = positions.join("vm.position");
    let mut bytes = fs::read(&file).unwrap();
    bytes[12] ^= 1;
    fs::write(&file, &bytes).unwrap();
    let reset = f.hold("vm").unwrap();
    assert!(matches!(reset.origin(), HoldOrigin::Reset(_)));
    assert_eq!(reset.position(), WalPosition::START);
}

#[test]
fn damage_in_a_finished_segment_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(47, 60);
    let wal = open(dir.path(), 800);
    let f = wal.follower(&dir.path().join("positions"));
    let start = f.end();
    for c in &cs {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    let clean = drain(&mut f.tail(start));
    // Flip a byte in the last frame of the second segment.
    let seg = start.segment + 1;
    let path = segment_path(dir.path(), seg);
    let mut bytes = fs::read(&path).unwrap();
    let last = *frame_offsets(&bytes).last().unwrap();
    bytes[last + FRAME_HEADER_LEN + 1] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    let damaged = drain(&mut f.tail(start));
    let skipped: Vec<_> = damaged
        .iter()
        .filter(|e| matches!(e, TailEvent::Skipped { .. }))
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    match skipped[0] {
        TailEvent::Skipped { from, to, reason } => {
            assert_eq!(
                *from,
                WalPosition {
                    segment: seg,
                    offset: last as u64
                }
            );
            assert_eq!(to.segment, seg + 1);
            assert!(reason.contains("crc"), "{reason}");
        }
        _ => unreachable!(),
    }
    // Exactly the damaged frame is missing.
    let lost = damaged_frame(&clean, seg, last as u64);
    let want: Vec<TailEvent> = clean.iter().filter(|e| **e != lost).cloned().collect();
    assert_eq!(records(&damaged), records(&want));
}

/// The event of `clean` whose frame started at `offset` of segment `seg` (it ends where the
/// next frame of that segment starts, or at the segment's end).
fn damaged_frame(clean: &[TailEvent], seg: u64, offset: u64) -> TailEvent {
    let ends = sample_ends(clean);
    let i = ends
        .iter()
        .position(|e| e.segment == seg && e.offset > offset)
        .unwrap();
    clean
        .iter()
        .filter(|e| matches!(e, TailEvent::Samples { .. }))
        .nth(i)
        .unwrap()
        .clone()
}

#[test]
fn a_partial_frame_at_the_live_end_is_waited_for_never_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(8, 6);
    let wal = open(dir.path(), 1 << 20);
    let f = wal.follower(&dir.path().join("positions"));
    let start = f.end();
    wal.commit(&cs[0].series, &cs[0].samples).unwrap();
    let mut t = f.tail(start);
    assert_eq!(records(&drain(&mut t)), expected(&cs[..1]));
    // Half a frame header, as a reader may see a write in progress; then the writer's
    // rollback of a failed write cuts it off again.
    let path = segment_path(dir.path(), start.segment);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0x55, 0x00, 0x00])
        .unwrap();
    assert!(drain(&mut t).is_empty());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len)
        .unwrap();
    for c in &cs[1..] {
        wal.commit(&c.series, &c.samples).unwrap();
    }
    assert_eq!(records(&drain(&mut t)), expected(&cs[1..]));
}

#[test]
fn commits_wake_waiters_and_the_poll_fallback_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let cs = commits(2, 6);
    let cs: Vec<_> = cs.into_iter().filter(|c| !c.samples.is_empty()).collect();
    let wal = Arc::new(open(dir.path(), 1 << 20));
    let f = wal.follower(&dir.path().join("positions"));
    let g0 = f.generation();
    let t = Instant::now();
    assert_eq!(f.wait(g0, Duration::from_millis(60)), g0);
    assert!(t.elapsed() >= Duration::from_millis(60));
    let w = {
        let wal = wal.clone();
        let c = cs[0].clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            wal.commit(&c.series, &c.samples).unwrap();
        })
    };
    let t = Instant::now();
    let g1 = f.wait(g0, Duration::from_secs(20));
    assert_ne!(g1, g0);
    assert!(t.elapsed() < Duration::from_secs(10));
    w.join().unwrap();
    f.wake();
    assert_ne!(f.wait(g1, Duration::from_secs(20)), g1);
}
