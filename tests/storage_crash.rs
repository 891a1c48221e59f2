//! Crash safety with a real process: the test re-executes its own binary as a child that
//! appends batches to a `Db` (flushing and compacting now and then) and acknowledges each
//! commit on stdout; the parent SIGKILLs it at chosen points, reopens the directory and checks
//! that every acknowledged batch is there with its exact values, and that what is there is
//! exactly a prefix of the generated batches: nothing torn, nothing invented, nothing twice.
//!
//! The child is the same test function run with `TIDEMARK_CRASH_CHILD` set, so there is no
//! helper test that passes vacuously.
//!
//! Besides float series, each batch carries native histogram samples: an integer histogram
//! series, a float histogram series, and one switching between histograms and floats, with
//! float staleness markers that storage turns into histogram markers after a histogram.

#[path = "common/store.rs"]
mod store;
use store::read_all;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tidemark::model::histogram::{CounterResetHint, Histogram, Span};
use tidemark::model::{HistogramSample, HistogramValue, Labels, MatchOp, Matcher, STALE_NAN};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{Db, Options, StorageError};

const CHILD_ENV: &str = "TIDEMARK_CRASH_CHILD";
const START_ENV: &str = "TIDEMARK_CRASH_START";
const FSYNC_ENV: &str = "TIDEMARK_CRASH_FSYNC";

/// Five-minute blocks: a round of a few dozen 15 s batches crosses block boundaries.
const BD: i64 = 300_000;
const T0: i64 = 1_712_000_011_117;
const SERIES: usize = 12;
/// The child flushes after batches `i % FLUSH_EVERY == FLUSH_EVERY - 1`, compacts likewise.
const FLUSH_EVERY: u64 = 23;
const COMPACT_EVERY: u64 = 37;
/// A child stops by itself after this many batches, should its parent be gone.
const CHILD_LIMIT: u64 = 2000;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn series_labels(s: usize) -> Labels {
    Labels::new([
        (
            "__name__",
            if s.is_multiple_of(3) {
                "node_load"
            } else {
                "http_requests_total"
            },
        ),
        ("instance", &format!("10.0.{}.{}:9100", s % 4, s * 7 % 13)),
        ("job", if s.is_multiple_of(2) { "node" } else { "api" }),
    ])
    .unwrap()
}

/// Batch `i`: one scrape at an irregular time, most series present, irregular values with
/// the occasional NaN and staleness marker. A pure function of `i`, so parent and child agree.
fn batch(i: u64) -> Vec<(usize, i64, f64)> {
    let t = T0 + i as i64 * 15_000 + (splitmix(i) % 4_000) as i64;
    (0..SERIES)
        .filter_map(|s| {
            let h = splitmix(i.wrapping_mul(0x1000_0001) ^ s as u64);
            if h.is_multiple_of(5) {
                return None; // a missed scrape
            }
            let v = match (h >> 8) % 29 {
                0 => f64::NAN,
                1 => STALE_NAN,
                2 => f64::from_bits(splitmix(h)),
                _ => ((h >> 16) % 10_000_000) as f64 / 1000.0,
            };
            // Series share the scrape time, some a few ms off it.
            Some((s, t + (s % 3) as i64, v))
        })
        .collect()
}

fn options(fsync: FsyncPolicy) -> Options {
    Options {
        fsync,
        // Small segments, so kills also land around segment cuts and checkpoints.
        wal_segment_size: 16 << 10,
        block_duration: BD,
        retention_time: 0,
        retention_size: 0,
    }
}

fn policy(name: &str) -> FsyncPolicy {
    match name {
        "always" => FsyncPolicy::Always,
        // Long enough that no interval fsync runs during a round: what survives the kill
        // survives through the OS page cache alone.
        _ => FsyncPolicy::Interval(Duration::from_secs(600)),
    }
}

/// Opens `dir`, waiting out a lock held only for an instant: another test thread of this
/// process that forks a child between our close and our open lends that child a copy of the
/// lock's descriptor until it execs.
fn open_db(dir: &Path, fsync: FsyncPolicy) -> Db {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Db::open(dir, options(fsync)) {
            Err(StorageError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::yield_now();
            }
            r => return r.unwrap(),
        }
    }
}

/// The child: append batches from `START` on, acknowledging each after its commit returns,
/// until killed.
fn child_main(dir: &str) {
    let start: u64 = std::env::var(START_ENV).unwrap().parse().unwrap();
    let fsync = policy(&std::env::var(FSYNC_ENV).unwrap());
    let db = open_db(Path::new(dir), fsync);
    // Whatever a kill interrupted last time is finished first.
    db.flush().unwrap();
    while db.compact().unwrap().is_some() {}
    let labels: Vec<Labels> = (0..SERIES).map(series_labels).collect();
    let hlabels: Vec<Labels> = (0..HSERIES).map(hseries_labels).collect();
    let mut out = std::io::stdout().lock();
    for i in start..start + CHILD_LIMIT {
        let b = batch(i);
        let hb = hbatch(i);
        let mut app = db.appender();
        for &(s, t, v) in &b {
            app.append(&labels[s], t, v).unwrap();
        }
        for (h, t, v) in &hb {
            match v {
                HVal::Float(f) => drop(app.append(&hlabels[*h], *t, *f).unwrap()),
                HVal::Stale => drop(app.append(&hlabels[*h], *t, STALE_NAN).unwrap()),
                HVal::Hist(x) => drop(app.append_histogram(&hlabels[*h], *t, x.clone()).unwrap()),
            }
        }
        let st = app.commit().unwrap();
        assert_eq!(
            st.appended,
            (b.len() + hb.len()) as u64,
            "batch {i}: {st:?}"
        );
        writeln!(out, "ACK {i}").unwrap();
        out.flush().unwrap();
        if i % FLUSH_EVERY == FLUSH_EVERY - 1 {
            db.flush().unwrap();
        }
        if i % COMPACT_EVERY == COMPACT_EVERY - 1 {
            while db.compact().unwrap().is_some() {}
        }
    }
}

/// Histogram series.
const HSERIES: usize = 3;

fn hseries_labels(h: usize) -> Labels {
    Labels::new([
        ("__name__", "rpc_latency_seconds"),
        ("instance", &format!("10.1.0.{h}:8080")),
    ])
    .unwrap()
}

/// The samples with counter (non-gauge) hints cleared: storage gives back the hint its chunks
/// read (unknown at a chunk's start, not_reset after), which depends on where chunks were cut,
/// not the hint appended; tests/storage_histograms.rs pins those hints.
fn unhinted(v: &[HistogramSample]) -> Vec<HistogramSample> {
    let clear = |h: &mut CounterResetHint| {
        if *h != CounterResetHint::Gauge {
            *h = CounterResetHint::Unknown;
        }
    };
    v.iter()
        .cloned()
        .map(|mut s| {
            match &mut s.h {
                HistogramValue::Int(h) => clear(&mut h.counter_reset_hint),
                HistogramValue::Float(h) => clear(&mut h.counter_reset_hint),
            }
            s
        })
        .collect()
}

/// A histogram sample of batch `i`: buckets fill in over time (the layout grows every 20
/// batches), counts grow with `i`; series 1 holds float histograms.
fn histogram(i: u64, h: usize, r: u64) -> HistogramValue {
    let n = 2 + (i / 20 % 5) as usize;
    let deltas: Vec<i64> = (0..n)
        .map(|k| if k == 0 { (i + r % 3) as i64 } else { 1 })
        .collect();
    let total: i64 = (0..n).map(|k| deltas[0] + k as i64).sum();
    let zero = i % 4;
    let hist = Histogram {
        counter_reset_hint: CounterResetHint::NotReset,
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: zero,
        count: total as u64 + zero,
        sum: (r % 100_000) as f64 / 7.0,
        positive_spans: vec![Span::new(-3, 2), Span::new(1, n as u32 - 2)],
        positive_buckets: deltas,
        ..Histogram::default()
    };
    if h == 1 {
        HistogramValue::Float(Box::new(hist.to_float()))
    } else {
        HistogramValue::Int(Box::new(hist))
    }
}

/// What a histogram series gets in a batch.
#[derive(Clone)]
enum HVal {
    Float(f64),
    Hist(HistogramValue),
    /// A float staleness marker.
    Stale,
}

/// Batch `i`'s histogram series samples, at its scrape time: series 2 holds floats every
/// other stretch of nine batches; now and then a staleness marker, or a missed scrape.
fn hbatch(i: u64) -> Vec<(usize, i64, HVal)> {
    let t = T0 + i as i64 * 15_000 + (splitmix(i) % 4_000) as i64;
    (0..HSERIES)
        .filter_map(|h| {
            let r = splitmix(i.wrapping_mul(0x2000_0003) ^ (h as u64 + 77));
            if r.is_multiple_of(7) {
                return None;
            }
            let v = if r % 17 == 1 {
                HVal::Stale
            } else if h == 2 && (i / 9) % 2 == 1 {
                HVal::Float((r % 1000) as f64)
            } else {
                HVal::Hist(histogram(i, h, r))
            };
            Some((h, t + 5 + h as i64, v))
        })
        .collect()
}

/// What batches `0..n` hold in the histogram series: floats (value bits) and histograms, a
/// staleness marker after a histogram being a histogram marker of its kind.
fn hexpected(n: u64) -> HStore {
    let mut m = HStore::new();
    let mut last: BTreeMap<usize, Option<bool>> = BTreeMap::new();
    for i in 0..n {
        for (h, t, v) in hbatch(i) {
            let e = m.entry(hseries_labels(h)).or_default();
            let prev = last.entry(h).or_default();
            match v {
                HVal::Float(f) => {
                    e.0.push((t, f.to_bits()));
                    *prev = None;
                }
                HVal::Hist(x) => {
                    *prev = Some(matches!(x, HistogramValue::Float(_)));
                    e.1.push(HistogramSample { t, h: x });
                }
                HVal::Stale => match *prev {
                    None => e.0.push((t, STALE_NAN.to_bits())),
                    Some(float) => e.1.push(HistogramSample { t, h: stale(float) }),
                },
            }
        }
    }
    m
}

fn stale(float: bool) -> HistogramValue {
    let h = Histogram {
        sum: STALE_NAN,
        ..Histogram::default()
    };
    if float {
        HistogramValue::Float(Box::new(tidemark::model::histogram::FloatHistogram {
            sum: STALE_NAN,
            ..Default::default()
        }))
    } else {
        HistogramValue::Int(Box::new(h))
    }
}

/// Histogram series → (float samples as bits, histogram samples).
type HStore = BTreeMap<Labels, (Vec<(i64, u64)>, Vec<HistogramSample>)>;

fn read_histogram_series(db: &Db) -> HStore {
    let m = Matcher::new(MatchOp::Equal, "__name__", "rpc_latency_seconds").unwrap();
    db.querier()
        .select(&[m], i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.labels,
                (
                    s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect(),
                    s.histograms,
                ),
            )
        })
        .collect()
}

/// What batches `0..n` hold.
fn expected(n: u64) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    let mut m: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    for i in 0..n {
        for (s, t, v) in batch(i) {
            m.entry(series_labels(s))
                .or_default()
                .push((t, v.to_bits()));
        }
    }
    m
}

/// Reopens `dir` and returns how many batches it holds, after checking they are exactly
/// batches `0..n`, with `n >= acked`.
fn verify(dir: &Path, fsync: FsyncPolicy, acked: u64, round: usize) -> u64 {
    let db = open_db(dir, fsync);
    assert!(
        db.refused_blocks().is_empty(),
        "round {round}: {:?}",
        db.refused_blocks()
    );
    let mut got = read_all(&db.querier());
    let hgot = read_histogram_series(&db);
    for l in hgot.keys() {
        got.remove(l);
    }
    // The newest timestamp present names the last batch present.
    let newest = got
        .values()
        .filter_map(|v| v.last())
        .map(|p| p.0)
        .chain(hgot.values().filter_map(|v| v.1.last()).map(|p| p.t))
        .max();
    let n = newest.map_or(0, |t| ((t - T0).div_euclid(15_000) + 1) as u64);
    assert!(
        n >= acked,
        "round {round}: {acked} batches acknowledged, only {n} present"
    );
    let want = expected(n);
    if got != want {
        for (l, w) in &want {
            let g = got.get(l).cloned().unwrap_or_default();
            if &g != w {
                let first_bad = g.iter().zip(w).position(|(a, b)| a != b);
                panic!(
                    "round {round}, {n} batches: {l} has {} points, want {}; first difference at {first_bad:?}",
                    g.len(),
                    w.len()
                );
            }
        }
        panic!(
            "round {round}: unexpected series {:?}",
            got.keys().collect::<Vec<_>>()
        );
    }
    let hwant = hexpected(n);
    for (l, w) in &hwant {
        let g = hgot.get(l).cloned().unwrap_or_default();
        assert!(
            g.0 == w.0 && unhinted(&g.1) == unhinted(&w.1),
            "round {round}, {n} batches: {l} has {} floats and {} histograms, want {} and {}",
            g.0.len(),
            g.1.len(),
            w.0.len(),
            w.1.len()
        );
    }
    assert_eq!(hgot.len(), hwant.len(), "round {round}");
    for b in &db.catalog().blocks {
        b.verify().unwrap();
    }
    db.close().unwrap();
    n
}

/// Runs one child from batch `start`, kills it with SIGKILL `delay` after it acknowledged
/// `kill_after` batches, and returns the number of batches acknowledged in total.
fn run_child(
    test_name: &str,
    dir: &Path,
    fsync: &str,
    start: u64,
    kill_after: u64,
    delay: Duration,
    round: usize,
) -> u64 {
    let stderr_path = dir.with_extension(format!("stderr{round}"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            test_name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, dir)
        .env(START_ENV, start.to_string())
        .env(FSYNC_ENV, fsync)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(i) = line.strip_prefix("ACK ")
                && tx.send(i.parse::<u64>().unwrap()).is_err()
            {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    let mut count = 0;
    while count < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(i) => {
                assert_eq!(i, start + count, "acks in order");
                last = Some(i);
                count += 1;
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("round {round}: child stopped after {count} acks ({e:?}):\n{err}");
            }
        }
    }
    // Not a wait for anything: the delay moves the kill to a point inside the flush,
    // checkpoint or compaction that follows the acknowledged batch.
    std::thread::sleep(delay);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");
    reader.join().unwrap();
    last.map_or(start, |i| i + 1)
}

/// Kill rounds: each kills the child after a number of acks drawn from a fixed seed; every
/// third round aims the kill at a batch the child flushes (or compacts) right after, plus a
/// delay of up to 25 ms, so the kill lands during a flush, a checkpoint or a compaction.
fn crash_rounds(test_name: &str, fsync: &str, rounds: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let policy = policy(fsync);
    let mut present = 0;
    let mut seed = 0x5eed_u64 ^ fsync.len() as u64;
    let mut flushed_kills = 0;
    for round in 0..rounds {
        seed = splitmix(seed);
        let mut kill_after = 1 + seed % 45;
        let mut delay = Duration::ZERO;
        if round % 3 == 2 {
            // Acknowledge up to a flush batch (or a compaction batch) and kill right there.
            let every = if round % 2 == 0 {
                FLUSH_EVERY
            } else {
                COMPACT_EVERY
            };
            let next = (present / every) * every + every - 1;
            let next = if next < present { next + every } else { next };
            kill_after = next - present + 1;
            delay = Duration::from_micros(splitmix(seed) % 25_000);
            flushed_kills += 1;
        }
        let acked = run_child(test_name, &dir, fsync, present, kill_after, delay, round);
        present = verify(&dir, policy, acked, round);
    }
    assert!(flushed_kills > 0);
    assert!(
        present > 200,
        "only {present} batches written in {rounds} rounds"
    );
    // Enough data went through for flushes and compactions to have happened and survived.
    let db = open_db(&dir, policy);
    assert!(!db.catalog().blocks.is_empty());
    assert!(db.catalog().blocks.iter().any(|b| b.meta().level > 1));
}

#[test]
fn sigkill_under_fsync_always_loses_no_acknowledged_sample() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child_main(&dir);
        return;
    }
    crash_rounds(
        "sigkill_under_fsync_always_loses_no_acknowledged_sample",
        "always",
        24,
    );
}

/// Under `Interval` the fsync period bounds what an OS crash or power loss can take; a
/// process crash takes nothing, because every commit is written to the OS before it is
/// acknowledged. With a 10-minute interval, no fsync of the segments runs in a round.
#[test]
fn sigkill_under_fsync_interval_loses_no_acknowledged_sample() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child_main(&dir);
        return;
    }
    crash_rounds(
        "sigkill_under_fsync_interval_loses_no_acknowledged_sample",
        "interval",
        14,
    );
}
