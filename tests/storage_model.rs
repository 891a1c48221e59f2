//! Model check of the storage engine: random appends, flushes, compactions, restarts and
//! queries are applied both to a real `Db` and to a naive `BTreeMap<Labels, Vec<(t, bits)>>`,
//! and every commit's statistics and every query's answer must agree exactly (values compared
//! bit for bit, so NaN payloads, -0.0 and the stale marker count).
//!
//! The model mirrors the engine's append rules: per series, timestamps must increase; an equal
//! timestamp with identical value bits is ignored, with different bits rejected; an older one is
//! rejected. After a flush the head refuses samples older than the flushed window's end, and a
//! series whose samples were all flushed is forgotten by the head (so an old timestamp for it is
//! out of bounds, not out of order). After a restart the head's lower bound is the newest
//! flushed sample + 1: that is all a reopened `Db` can know from its blocks.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};
use tidemark::model::{Labels, MatchOp, Matcher, STALE_NAN};
use tidemark::storage::wal::FsyncPolicy;
use tidemark::storage::{CommitStats, Db, Options};

/// Block duration: ten minutes, so a case spans several blocks and compaction windows.
const BD: i64 = 600_000;
/// An irregular start time.
const ORIGIN: i64 = 1_712_003_417_213;

fn options() -> Options {
    Options {
        // No fsync per commit: the model checks logic, the crash test checks durability.
        fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        // Small segments, so commits span several segments and checkpoints delete some.
        wal_segment_size: 4096,
        block_duration: BD,
        retention_time: 0,
        retention_size: 0,
    }
}

/// Eight series over three label names; some lack `job` or `env`, so matchers on missing
/// labels (which match as the empty string) are exercised.
fn universe() -> Vec<Labels> {
    let sets: [&[(&str, &str)]; 8] = [
        &[("__name__", "cpu"), ("job", "node")],
        &[("__name__", "cpu"), ("job", "api")],
        &[("__name__", "cpu"), ("job", "node"), ("env", "prod")],
        &[("__name__", "mem"), ("job", "node")],
        &[("__name__", "mem"), ("job", "api"), ("env", "prod")],
        &[("__name__", "mem"), ("job", "node"), ("env", "dev")],
        &[("__name__", "up"), ("job", "api")],
        &[("__name__", "up"), ("env", "prod")],
    ];
    sets.iter()
        .map(|pairs| Labels::new(pairs.iter().copied()).unwrap())
        .collect()
}

const MATCH_NAMES: [&str; 4] = ["__name__", "job", "env", "zone"];
const MATCH_VALUES: [&str; 14] = [
    "cpu", "mem", "up", "node", "api", "prod", "dev", "", "c.*", "node|api", ".*", ".+", "m.m",
    "pro",
];
const OPS: [MatchOp; 4] = [
    MatchOp::Equal,
    MatchOp::NotEqual,
    MatchOp::Regex,
    MatchOp::NotRegex,
];

#[derive(Debug, Clone)]
enum TimeSpec {
    /// `clock + jitter` (jitter 0 makes series share a timestamp).
    Fresh(i64),
    /// The series' newest timestamp again.
    Repeat,
    /// `clock - back`: out of order, or out of bounds after a flush.
    Back(i64),
}

#[derive(Debug, Clone)]
enum ValSpec {
    /// A short decimal `m / 10^d`.
    Dec(i64, u32),
    /// Arbitrary bits: any float, NaNs with payloads included.
    Bits(u64),
    Nan,
    Stale,
    NegZero,
    Inf,
    /// The series' newest value again (with `Repeat`, an ignored duplicate).
    Same,
}

#[derive(Debug, Clone)]
struct SampleSpec {
    series: usize,
    time: TimeSpec,
    val: ValSpec,
}

#[derive(Debug, Clone)]
enum RangeSpec {
    All,
    /// Fractions (per mille) of the span written so far, with margins.
    Frac(u32, u32),
    /// Stored timestamps (by index) nudged by -1, 0 or +1, to hit both bounds exactly.
    AtSample(usize, i64, usize, i64),
}

type MatcherSpec = (usize, usize, usize);

#[derive(Debug, Clone)]
enum Op {
    Append {
        advance: i64,
        samples: Vec<SampleSpec>,
    },
    /// Many samples of one series in one commit, with irregular steps: enough to cut head
    /// chunks (120 samples) and block chunks (480) at varying places.
    Burst {
        series: usize,
        n: usize,
        seed: u64,
    },
    Flush,
    Compact,
    Restart,
    Select {
        matchers: Vec<MatcherSpec>,
        range: RangeSpec,
    },
    Meta {
        matchers: Vec<MatcherSpec>,
        range: RangeSpec,
        label: usize,
    },
}

fn time_spec() -> impl Strategy<Value = TimeSpec> {
    prop_oneof![
        3 => Just(TimeSpec::Fresh(0)),
        3 => (1i64..20_000).prop_map(TimeSpec::Fresh),
        1 => Just(TimeSpec::Repeat),
        1 => (1i64..2 * BD).prop_map(TimeSpec::Back),
    ]
}

fn val_spec() -> impl Strategy<Value = ValSpec> {
    prop_oneof![
        6 => (-1_000_000i64..1_000_000, 0u32..4).prop_map(|(m, d)| ValSpec::Dec(m, d)),
        2 => any::<u64>().prop_map(ValSpec::Bits),
        1 => Just(ValSpec::Nan),
        1 => Just(ValSpec::Stale),
        1 => Just(ValSpec::NegZero),
        1 => Just(ValSpec::Inf),
        2 => Just(ValSpec::Same),
    ]
}

fn matcher_specs() -> impl Strategy<Value = Vec<MatcherSpec>> {
    prop::collection::vec(
        (0..MATCH_NAMES.len(), 0..OPS.len(), 0..MATCH_VALUES.len()),
        0..=2,
    )
}

fn range_spec() -> impl Strategy<Value = RangeSpec> {
    prop_oneof![
        1 => Just(RangeSpec::All),
        2 => (0u32..=1000, 0u32..=1000).prop_map(|(a, b)| RangeSpec::Frac(a, b)),
        2 => (any::<usize>(), -1i64..=1, any::<usize>(), -1i64..=1)
            .prop_map(|(i, di, j, dj)| RangeSpec::AtSample(i, di, j, dj)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let sample = (0..universe().len(), time_spec(), val_spec())
        .prop_map(|(series, time, val)| SampleSpec { series, time, val });
    prop_oneof![
        10 => (0i64..BD / 3, prop::collection::vec(sample, 1..12))
            .prop_map(|(advance, samples)| Op::Append { advance, samples }),
        1 => (0..universe().len(), 1usize..600, any::<u64>())
            .prop_map(|(series, n, seed)| Op::Burst { series, n, seed }),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Restart),
        4 => (matcher_specs(), range_spec())
            .prop_map(|(matchers, range)| Op::Select { matchers, range }),
        2 => (matcher_specs(), range_spec(), 0..MATCH_NAMES.len())
            .prop_map(|(matchers, range, label)| Op::Meta { matchers, range, label }),
    ]
}

/// What the engine should hold, and the head's lower bound it should enforce.
#[derive(Default)]
struct Model {
    data: BTreeMap<Labels, Vec<(i64, u64)>>,
    min_valid: i64,
    /// Newest sample written to a block so far.
    flushed_max: Option<i64>,
}

enum Outcome {
    Appended,
    DuplicateIgnored,
    Duplicate,
    OutOfOrder,
    OutOfBounds,
}

/// Counts an outcome where the engine's `CommitStats` would.
fn tally(stats: &mut CommitStats, o: Outcome) {
    match o {
        Outcome::Appended => stats.appended += 1,
        Outcome::DuplicateIgnored => stats.duplicates_ignored += 1,
        Outcome::Duplicate => stats.duplicate += 1,
        Outcome::OutOfOrder => stats.out_of_order += 1,
        Outcome::OutOfBounds => stats.out_of_bounds += 1,
    }
}

impl Model {
    fn new() -> Model {
        Model {
            min_valid: i64::MIN,
            ..Model::default()
        }
    }

    /// The newest sample of a series, wherever it is stored.
    fn newest(&self, l: &Labels) -> Option<(i64, u64)> {
        self.data.get(l).and_then(|v| v.last().copied())
    }

    fn append(&mut self, l: &Labels, t: i64, bits: u64) -> Outcome {
        // The head remembers a series' newest sample only while the series still has samples
        // in the head, i.e. at or above the lower bound.
        let head_newest = self.newest(l).filter(|&(lt, _)| lt >= self.min_valid);
        let out = match head_newest {
            Some((lt, lb)) if t == lt && bits == lb => Outcome::DuplicateIgnored,
            Some((lt, _)) if t == lt => Outcome::Duplicate,
            Some((lt, _)) if t < lt => Outcome::OutOfOrder,
            _ if t < self.min_valid => Outcome::OutOfBounds,
            _ => Outcome::Appended,
        };
        if let Outcome::Appended = out {
            self.data.entry(l.clone()).or_default().push((t, bits));
        }
        out
    }

    /// Oldest and newest timestamp in the head.
    fn head_range(&self) -> Option<(i64, i64)> {
        let mut r: Option<(i64, i64)> = None;
        for s in self.data.values() {
            let Some(&(last, _)) = s.last() else { continue };
            if last < self.min_valid {
                continue;
            }
            let first = s[s.partition_point(|&(t, _)| t < self.min_valid)].0;
            r = Some(r.map_or((first, last), |(a, b)| (a.min(first), b.max(last))));
        }
        r
    }

    /// The windows a flush writes, with the number of samples in each.
    fn flush(&mut self) -> Vec<(i64, i64, u64)> {
        let mut out = Vec::new();
        while let Some((lo, hi)) = self.head_range() {
            let start = lo.div_euclid(BD) * BD;
            let end = start + BD;
            if hi - start < BD + BD / 2 {
                break;
            }
            let mut n = 0;
            for s in self.data.values() {
                for &(t, _) in s {
                    if t >= self.min_valid && t < end {
                        n += 1;
                        self.flushed_max = Some(self.flushed_max.map_or(t, |m| m.max(t)));
                    }
                }
            }
            out.push((start, end, n));
            self.min_valid = self.min_valid.max(end);
        }
        out
    }

    fn restart(&mut self) {
        self.min_valid = self.flushed_max.map_or(i64::MIN, |m| m + 1);
    }

    fn matching<'a>(
        &'a self,
        matchers: &'a [Matcher],
    ) -> impl Iterator<Item = (&'a Labels, &'a Vec<(i64, u64)>)> + 'a {
        self.data
            .iter()
            .filter(|(l, s)| !s.is_empty() && matchers.iter().all(|m| m.matches_labels(l)))
    }

    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<(Labels, Vec<(i64, u64)>)> {
        self.matching(matchers)
            .map(|(l, s)| {
                let pts: Vec<(i64, u64)> = s
                    .iter()
                    .copied()
                    .filter(|&(t, _)| t >= mint && t <= maxt)
                    .collect();
                (l.clone(), pts)
            })
            .filter(|(_, pts)| !pts.is_empty())
            .collect()
    }

    /// Series with a sample in the range (what `series` must at least return) and series whose
    /// data spans into the range (what it may return: stores answer from chunk time ranges).
    fn series_bounds(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> (Vec<Labels>, Vec<Labels>) {
        let lower = self
            .select(matchers, mint, maxt)
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        let upper = self
            .matching(matchers)
            .filter(|(_, s)| s[0].0 <= maxt && s[s.len() - 1].0 >= mint)
            .map(|(l, _)| l.clone())
            .collect();
        (lower, upper)
    }

    fn timestamps(&self) -> Vec<i64> {
        let mut ts: Vec<i64> = self.data.values().flatten().map(|&(t, _)| t).collect();
        ts.sort_unstable();
        ts
    }
}

fn value(spec: &ValSpec, newest: Option<(i64, u64)>) -> f64 {
    match *spec {
        ValSpec::Dec(m, d) => m as f64 / 10f64.powi(d as i32),
        ValSpec::Bits(b) => f64::from_bits(b),
        ValSpec::Nan => f64::NAN,
        ValSpec::Stale => STALE_NAN,
        ValSpec::NegZero => -0.0,
        ValSpec::Inf => f64::INFINITY,
        ValSpec::Same => newest.map_or(0.25, |(_, b)| f64::from_bits(b)),
    }
}

fn matchers(specs: &[MatcherSpec]) -> Vec<Matcher> {
    specs
        .iter()
        .map(|&(n, o, v)| Matcher::new(OPS[o], MATCH_NAMES[n], MATCH_VALUES[v]).unwrap())
        .collect()
}

fn range(spec: &RangeSpec, model: &Model, clock: i64) -> (i64, i64) {
    let (a, b) = match *spec {
        RangeSpec::All => return (i64::MIN, i64::MAX),
        RangeSpec::Frac(a, b) => {
            let lo = ORIGIN - BD / 2;
            let span = clock + BD - lo;
            let at = |f: u32| lo + span / 1000 * i64::from(f);
            (at(a), at(b))
        }
        RangeSpec::AtSample(i, di, j, dj) => {
            let ts = model.timestamps();
            if ts.is_empty() {
                return (ORIGIN, clock);
            }
            (ts[i % ts.len()] + di, ts[j % ts.len()] + dj)
        }
    };
    (a.min(b), a.max(b))
}

fn names_of(ls: &[Labels]) -> Vec<String> {
    let mut v: Vec<String> = ls
        .iter()
        .flat_map(|l| l.iter().map(|(n, _)| n.to_string()))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn values_of(ls: &[Labels], name: &str) -> Vec<String> {
    let mut v: Vec<String> = ls
        .iter()
        .filter_map(|l| l.get(name).map(str::to_string))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `lower ⊆ got ⊆ upper`, all sorted and unique.
fn sandwiched<T: Ord + std::fmt::Debug>(
    got: &[T],
    lower: &[T],
    upper: &[T],
    what: &str,
) -> Result<(), TestCaseError> {
    prop_assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "{what}: not sorted/unique: {got:?}"
    );
    for x in lower {
        prop_assert!(
            got.binary_search(x).is_ok(),
            "{what}: {x:?} missing from {got:?}"
        );
    }
    for x in got {
        prop_assert!(
            upper.binary_search(x).is_ok(),
            "{what}: {x:?} unexpected in {got:?}"
        );
    }
    Ok(())
}

fn open(dir: &Path) -> Db {
    let db = Db::open(dir, options()).unwrap();
    assert!(db.refused_blocks().is_empty(), "{:?}", db.refused_blocks());
    assert!(
        db.replay_stats().corruptions.is_empty(),
        "{:?}",
        db.replay_stats()
    );
    db
}

fn check_select(
    db: &Db,
    model: &Model,
    ms: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Result<(), TestCaseError> {
    let got: Vec<(Labels, Vec<(i64, u64)>)> = db
        .querier()
        .select(ms, mint, maxt)
        .unwrap()
        .into_iter()
        .map(|s| {
            let pts = s.samples.iter().map(|x| (x.t, x.v.to_bits())).collect();
            (s.labels, pts)
        })
        .collect();
    let want = model.select(ms, mint, maxt);
    if got != want {
        return Err(TestCaseError::fail(format!(
            "select {ms:?} [{mint}, {maxt}]:\n{}",
            difference(&got, &want)
        )));
    }
    Ok(())
}

/// The first few differences between two query results, per series.
fn difference(got: &[(Labels, Vec<(i64, u64)>)], want: &[(Labels, Vec<(i64, u64)>)]) -> String {
    let g: BTreeMap<&Labels, &Vec<(i64, u64)>> = got.iter().map(|(l, v)| (l, v)).collect();
    let w: BTreeMap<&Labels, &Vec<(i64, u64)>> = want.iter().map(|(l, v)| (l, v)).collect();
    let mut out = Vec::new();
    for l in g
        .keys()
        .chain(w.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (gv, wv) = (g.get(l).copied(), w.get(l).copied());
        if gv == wv {
            continue;
        }
        let (gv, wv) = (
            gv.cloned().unwrap_or_default(),
            wv.cloned().unwrap_or_default(),
        );
        let missing: Vec<_> = wv.iter().filter(|p| !gv.contains(p)).take(4).collect();
        let extra: Vec<_> = gv.iter().filter(|p| !wv.contains(p)).take(4).collect();
        out.push(format!(
            "  {l}: {} points, want {}; missing {missing:?}; unexpected {extra:?}",
            gv.len(),
            wv.len()
        ));
    }
    out.join("\n")
}

fn check_meta(
    db: &Db,
    model: &Model,
    ms: &[Matcher],
    mint: i64,
    maxt: i64,
    label: &str,
) -> Result<(), TestCaseError> {
    let q = db.querier();
    let series = q.series(ms, mint, maxt).unwrap();
    let names = q.label_names(ms, mint, maxt).unwrap();
    let values = q.label_values(label, ms, mint, maxt).unwrap();
    let (lower, upper) = model.series_bounds(ms, mint, maxt);
    if (mint, maxt) == (i64::MIN, i64::MAX) {
        prop_assert_eq!(&series, &lower, "series {:?}", ms);
        prop_assert_eq!(names, names_of(&lower), "label_names {:?}", ms);
        prop_assert_eq!(
            values,
            values_of(&lower, label),
            "label_values {} {:?}",
            label,
            ms
        );
        return Ok(());
    }
    sandwiched(&series, &lower, &upper, "series")?;
    // Without matchers, a block answers names and values for all of its series.
    let upper = if ms.is_empty() {
        model.series_bounds(&[], i64::MIN, i64::MAX).0
    } else {
        upper
    };
    sandwiched(&names, &names_of(&lower), &names_of(&upper), "label_names")?;
    sandwiched(
        &values,
        &values_of(&lower, label),
        &values_of(&upper, label),
        "label_values",
    )
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let universe = universe();
    let mut db = Some(open(dir.path()));
    let mut model = Model::new();
    let mut clock = ORIGIN;
    for op in &ops {
        let d = db.as_ref().unwrap();
        match op {
            Op::Append { advance, samples } => {
                clock += advance;
                let mut app = d.appender();
                let mut want = CommitStats::default();
                for s in samples {
                    let l = &universe[s.series];
                    let newest = model.newest(l);
                    let t = match s.time {
                        TimeSpec::Fresh(j) => clock + j,
                        TimeSpec::Repeat => newest.map_or(clock, |(t, _)| t),
                        TimeSpec::Back(b) => clock - b,
                    };
                    let v = value(&s.val, newest);
                    app.append(l, t, v).unwrap();
                    tally(&mut want, model.append(l, t, v.to_bits()));
                }
                let got = app.commit().unwrap();
                prop_assert_eq!(got, want, "commit of {:?} at clock {}", samples, clock);
            }
            Op::Burst { series, n, seed } => {
                let l = &universe[*series];
                let mut app = d.appender();
                let mut want = CommitStats::default();
                let mut x = *seed | 1;
                let mut walk = (*seed % 10_000) as f64 / 8.0;
                for _ in 0..*n {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // 1-4 s steps; a walk of decimals with an occasional NaN, stale marker
                    // or counter reset.
                    clock += 1000 + (x % 3001) as i64;
                    walk = match x >> 60 {
                        0 => 0.0,
                        _ => walk + ((x >> 20) % 2001) as f64 / 100.0 - 10.0,
                    };
                    let v = match (x >> 8) % 40 {
                        0 => f64::NAN,
                        1 => STALE_NAN,
                        _ => walk,
                    };
                    app.append(l, clock, v).unwrap();
                    tally(&mut want, model.append(l, clock, v.to_bits()));
                }
                let got = app.commit().unwrap();
                prop_assert_eq!(got, want, "burst of {} for {:?}", n, l);
            }
            Op::Flush => {
                let got: Vec<(i64, i64, u64)> = d
                    .flush()
                    .unwrap()
                    .iter()
                    .map(|m| (m.mint, m.maxt, m.num_samples))
                    .collect();
                let want = model.flush();
                prop_assert_eq!(
                    got.len(),
                    want.len(),
                    "blocks flushed: {:?} vs windows {:?}",
                    got,
                    want
                );
                for (g, w) in got.iter().zip(&want) {
                    prop_assert!(
                        g.0 >= w.0 && g.1 < w.1,
                        "block {:?} outside window {:?}",
                        g,
                        w
                    );
                    prop_assert_eq!(g.2, w.2, "samples in block {:?}", g);
                }
                prop_assert_eq!(d.head().min_valid(), model.min_valid);
            }
            Op::Compact => {
                let mut n = 0;
                while d.compact().unwrap().is_some() {
                    n += 1;
                    prop_assert!(n < 100, "compaction does not converge");
                }
            }
            Op::Restart => {
                db.take().unwrap().close().unwrap();
                db = Some(open(dir.path()));
                model.restart();
                prop_assert_eq!(db.as_ref().unwrap().head().min_valid(), model.min_valid);
            }
            Op::Select {
                matchers: m,
                range: r,
            } => {
                let (mint, maxt) = range(r, &model, clock);
                check_select(d, &model, &matchers(m), mint, maxt)?;
            }
            Op::Meta {
                matchers: m,
                range: r,
                label,
            } => {
                let (mint, maxt) = range(r, &model, clock);
                check_meta(d, &model, &matchers(m), mint, maxt, MATCH_NAMES[*label])?;
            }
        }
    }
    // Everything written must read back the same after a final restart, blocks verified.
    db.take().unwrap().close().unwrap();
    let d = open(dir.path());
    model.restart();
    check_select(&d, &model, &[], i64::MIN, i64::MAX)?;
    check_meta(&d, &model, &[], i64::MIN, i64::MAX, "job")?;
    for b in &d.catalog().blocks {
        b.verify().unwrap();
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 40,
        max_shrink_iters: 400,
        max_shrink_time: 30_000,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(0x71de_3a7c),
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_naive_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
