//! Range vectors: matrix selectors (read once for the whole step range, one series at a time)
//! and subqueries, and the functions over them, which slide a window `(t - range, t]` along
//! each series and hand on each output series as soon as it is computed.

use std::sync::Arc;

use promql_parser::parser::{Call, Expr, SubqueryExpr};

use super::names::{self, SAME_LABELSET};
use super::par::{self, Helpers, Parallel};
use super::{
    Deadline, Evaluator, Range, absent_labels, duration_ms, offset_ms, selector_matchers,
    step_span, stream, unparen,
};
use crate::model::{HistogramSample, Labels, Matcher, Sample, is_stale_nan};
use crate::query::functions::{
    RangeFn, RangeOut, Span, Window, eval_range, eval_range_mixed, extrapolated_rate, has_decrease,
    range_function, series_annotations, validate_range_args,
};
use crate::query::{Annotations, FPoint, HPoint, Matrix, Metric, QueryError, Series};
use crate::storage::{Plan, Querier, ReadScratch, Selected, Unread};

/// Where a range vector's points come from.
enum Points<'q> {
    /// Straight from storage, staleness markers still in: read one series at a time when the
    /// range vector is walked.
    Stored {
        querier: &'q Querier,
        groups: Vec<Vec<Matcher>>,
        mint: i64,
        maxt: i64,
    },
    /// A subquery's result: one point per subquery step.
    Computed(Matrix),
}

/// One input series of a range vector as it is walked, or the news that the series walked so
/// far are to be forgotten (a corrupt block was found and left out: the walk starts again).
enum Item<'p> {
    Series(Metric, &'p [FPoint], &'p [HPoint], bool),
    Restart,
}

/// What a function of a range vector hands on as it goes, series by series.
pub(super) enum Emit {
    Series(Series),
    /// Forget what was handed on: the input starts again.
    Restart,
}

/// A range vector ready to be windowed: its points and how a step maps to a window.
struct RangeArg<'q> {
    points: Points<'q>,
    range: i64,
    offset: i64,
    at: Option<i64>,
    /// Samples the evaluator counted for a subquery's result, released when the caller is done.
    held: usize,
}

impl RangeArg<'_> {
    /// The window `(start, end]` of the step at `ts`.
    fn window(&self, ts: i64) -> (i64, i64) {
        let end = self.at.unwrap_or(ts).saturating_sub(self.offset);
        (end.saturating_sub(self.range), end)
    }

    /// Calls `f` with each series' label set, points (no staleness markers) and whether its name
    /// is to be dropped, reusing one buffer for stored series, which are read one at a time.
    fn for_each_series(
        self,
        mut f: impl FnMut(Item<'_>) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        match self.points {
            Points::Stored {
                querier,
                groups,
                mint,
                maxt,
            } => {
                let mut buf: Vec<FPoint> = Vec::new();
                let mut hbuf: Vec<HPoint> = Vec::new();
                stream(querier, &groups, mint, maxt, &mut |sel| match sel {
                    Selected::Series(s) => {
                        live_points(&s.samples, &mut buf);
                        drop(s.samples);
                        live_histograms(&s.histograms, &mut hbuf);
                        drop(s.histograms);
                        f(Item::Series(Arc::new(s.labels), &buf, &hbuf, false))
                    }
                    Selected::Restart => f(Item::Restart),
                })?;
            }
            Points::Computed(m) => {
                for s in m {
                    f(Item::Series(
                        s.metric,
                        &s.floats,
                        &s.histograms,
                        s.drop_name,
                    ))?;
                }
            }
        }
        Ok(())
    }
}

/// `samples` without their staleness markers, as the points a range function reads, into
/// `buf` (emptied first).
fn live_points(samples: &[Sample], buf: &mut Vec<FPoint>) {
    buf.clear();
    buf.extend(
        samples
            .iter()
            .filter(|x| !is_stale_nan(x.v))
            .map(|x| FPoint { t: x.t, f: x.v }),
    );
}

/// `histograms` without their staleness markers, as float histograms, into `buf` (emptied
/// first).
fn live_histograms(histograms: &[HistogramSample], buf: &mut Vec<HPoint>) {
    buf.clear();
    buf.extend(
        histograms
            .iter()
            .filter(|x| !x.h.is_stale_marker())
            .map(|x| HPoint {
                t: x.t,
                h: Arc::new(x.h.to_float()),
            }),
    );
}

/// What a function of a range vector needs to compute one input series' windows, without
/// the evaluator's running state (samples held, annotations so far): the same on any thread.
struct Windows<'s> {
    f: RangeFn,
    r: Range,
    at: Option<i64>,
    offset: i64,
    range: i64,
    /// The scalar arguments, one value per step.
    scalars: &'s [Vec<f64>],
    /// The most output points a series may have and pass the sample limit: computing stops
    /// once it has more.
    most: usize,
    /// The output keeps `__name__` (else it is dropped, now or at the end).
    keeps_name: bool,
    delayed: bool,
    deadline: &'s Deadline,
}

/// One input series' windows, for the evaluator to check and keep in series order
/// ([`Evaluator::keep`]).
struct Windowed {
    /// The output's label set (its name already dropped unless that is delayed); none when
    /// there is no output.
    metric: Option<Metric>,
    drop_name: bool,
    floats: Vec<FPoint>,
    histograms: Vec<HPoint>,
    /// The most points a window read: each was checked against the sample limit as it was
    /// read, on top of the samples held.
    widest: usize,
    ann: Annotations,
    /// A window's error (its arguments, or the deadline); the windows after it were not
    /// computed.
    error: Option<QueryError>,
}

impl Windows<'_> {
    /// The windows of one series with points (staleness markers removed). `work` counts the
    /// points visited, for the deadline checks, across the series one thread computes.
    fn series(
        &self,
        labels: InputLabels<'_>,
        input_drop: bool,
        points: &[FPoint],
        hpoints: &[HPoint],
        work: &mut usize,
    ) -> Windowed {
        let (r, f) = (self.r, self.f);
        let mut out = Windowed {
            metric: None,
            drop_name: !self.keeps_name || input_drop,
            floats: Vec::new(),
            histograms: Vec::new(),
            widest: 0,
            ann: Annotations::default(),
            error: None,
        };
        if !hpoints.is_empty() {
            self.mixed(labels, points, hpoints, work, &mut out);
            return out;
        }
        let (Some(a), Some(b)) = (points.first(), points.last()) else {
            return out;
        };
        // A point is in the windows of the steps in [its time, its time + range), shifted by
        // the offset (all steps or none under `@`): only those steps are visited.
        let span = match self.at {
            Some(_) => 0..r.steps(),
            None => step_span(
                r,
                a.t.saturating_add(self.offset),
                b.t.saturating_add(self.offset).saturating_add(self.range),
            ),
        };
        out.floats = Vec::with_capacity(span.len().min(self.most.saturating_add(1)));
        // The extrapolating functions get a loop of their own with the function inlined; a
        // counter's windows are scanned for resets only when the whole series has one.
        let length = Span::of(self.range);
        match f {
            RangeFn::Rate => {
                let may_reset = has_decrease(points);
                self.walk(points, span, work, &mut out, |w, _, _| {
                    extrapolated_rate(w, true, true, may_reset, length)
                });
            }
            RangeFn::Increase => {
                let may_reset = has_decrease(points);
                self.walk(points, span, work, &mut out, |w, _, _| {
                    extrapolated_rate(w, true, false, may_reset, length)
                });
            }
            RangeFn::Delta => self.walk(points, span, work, &mut out, |w, _, _| {
                extrapolated_rate(w, false, false, false, length)
            }),
            _ => self.walk(points, span, work, &mut out, |w, argv, ann| {
                eval_range(f, w, argv, ann)
            }),
        }
        if !out.floats.is_empty() {
            self.name_output(labels, &mut out);
        }
        out
    }

    /// Sets the output's label set and raises the per-series annotations, once a series
    /// has output.
    fn name_output(&self, labels: InputLabels<'_>, out: &mut Windowed) {
        let named = match &labels {
            InputLabels::Owned(m) => m.as_ref(),
            InputLabels::Borrowed(l) => l,
        };
        series_annotations(self.f, named, &mut out.ann);
        out.metric = Some(match labels {
            _ if out.drop_name && !self.delayed && named.metric_name().is_some() => {
                names::without_name_of(named)
            }
            InputLabels::Owned(m) => m,
            InputLabels::Borrowed(l) => Arc::new(l.clone()),
        });
    }

    /// The windows of a series holding histograms (and maybe floats): each window's floats
    /// and histograms handed to [`eval_range_mixed`], the general path the float-only walk
    /// above leaves alone.
    fn mixed(
        &self,
        labels: InputLabels<'_>,
        points: &[FPoint],
        hpoints: &[HPoint],
        work: &mut usize,
        out: &mut Windowed,
    ) {
        let r = self.r;
        let first = points.first().map_or(i64::MAX, |p| p.t).min(hpoints[0].t);
        let last = points
            .last()
            .map_or(i64::MIN, |p| p.t)
            .max(hpoints[hpoints.len() - 1].t);
        let span = match self.at {
            Some(_) => 0..r.steps(),
            None => step_span(
                r,
                first.saturating_add(self.offset),
                last.saturating_add(self.offset).saturating_add(self.range),
            ),
        };
        let named = match &labels {
            InputLabels::Owned(m) => m.as_ref(),
            InputLabels::Borrowed(l) => l,
        };
        let name = named.metric_name().unwrap_or("").to_string();
        let mut argv: Vec<f64> = Vec::with_capacity(self.scalars.len());
        let (mut lo, mut hi, mut hlo, mut hhi) = (0usize, 0usize, 0usize, 0usize);
        for i in span {
            let end = self.at.unwrap_or(r.ts(i)).saturating_sub(self.offset);
            let start = end.saturating_sub(self.range);
            while hi < points.len() && points[hi].t <= end {
                hi += 1;
            }
            while lo < hi && points[lo].t <= start {
                lo += 1;
            }
            while hhi < hpoints.len() && hpoints[hhi].t <= end {
                hhi += 1;
            }
            while hlo < hhi && hpoints[hlo].t <= start {
                hlo += 1;
            }
            let n = (hi - lo) + (hhi - hlo);
            if let Err(e) = self.deadline.check_work(work, 1 + n) {
                out.error = Some(e);
                break;
            }
            if n == 0 {
                continue;
            }
            out.widest = out.widest.max(n);
            argv.clear();
            argv.extend(
                self.scalars
                    .iter()
                    .map(|s| s.get(i).copied().unwrap_or(f64::NAN)),
            );
            if let Err(e) = validate_range_args(self.f, &argv) {
                out.error = Some(e);
                break;
            }
            let w = Window {
                points: &points[lo..hi],
                start,
                end,
                eval_t: r.ts(i),
            };
            let t = r.ts(i);
            match eval_range_mixed(self.f, &w, &hpoints[hlo..hhi], &argv, &name, &mut out.ann) {
                Some(RangeOut::Float(v)) => out.floats.push(FPoint { t, f: v }),
                Some(RangeOut::Hist(h)) => out.histograms.push(HPoint { t, h }),
                None => {}
            }
            if out.floats.len() + out.histograms.len() > self.most {
                break;
            }
        }
        if !out.floats.is_empty() || !out.histograms.is_empty() {
            self.name_output(labels, out);
        }
    }

    /// The windows of `points` at the steps `span`, each point's value `value(window, scalar
    /// arguments, annotations)`, into `out`: stops at the first window that fails (its
    /// arguments, the deadline) or once the output passes the sample limit.
    #[inline(always)]
    fn walk(
        &self,
        points: &[FPoint],
        span: std::ops::Range<usize>,
        work: &mut usize,
        out: &mut Windowed,
        mut value: impl FnMut(&Window<'_>, &[f64], &mut Annotations) -> Option<f64>,
    ) {
        let r = self.r;
        let mut argv: Vec<f64> = Vec::with_capacity(self.scalars.len());
        let (mut lo, mut hi) = (0usize, 0usize);
        for i in span {
            let end = self.at.unwrap_or(r.ts(i)).saturating_sub(self.offset);
            let start = end.saturating_sub(self.range);
            while hi < points.len() && points[hi].t <= end {
                hi += 1;
            }
            while lo < hi && points[lo].t <= start {
                lo += 1;
            }
            // A window's function reads all of its points: count them, not the steps.
            if let Err(e) = self.deadline.check_work(work, 1 + hi - lo) {
                out.error = Some(e);
                break;
            }
            if lo == hi {
                continue;
            }
            out.widest = out.widest.max(hi - lo);
            // Without scalar arguments there is nothing to check (`validate_range_args` of
            // none is always fine).
            if !self.scalars.is_empty() {
                argv.clear();
                argv.extend(
                    self.scalars
                        .iter()
                        .map(|s| s.get(i).copied().unwrap_or(f64::NAN)),
                );
                if let Err(e) = validate_range_args(self.f, &argv) {
                    out.error = Some(e);
                    break;
                }
            }
            let w = Window {
                points: &points[lo..hi],
                start,
                end,
                eval_t: r.ts(i),
            };
            if let Some(v) = value(&w, &argv, &mut out.ann) {
                out.floats.push(FPoint { t: r.ts(i), f: v });
                if out.floats.len() > self.most {
                    break;
                }
            }
        }
    }
}

/// An input series' label set: the caller's, or borrowed (from a plan other threads read
/// too), copied only as far as an output needs it.
enum InputLabels<'l> {
    Owned(Metric),
    Borrowed(&'l Labels),
}

/// One step of walking a range function's input: a series' windows (none when it has no
/// points), or the news that the input starts again.
enum Walked {
    Series(Option<Windowed>),
    Restart,
}

/// The work a series is counted as in deciding whether and how to share a selection between
/// threads: roughly its samples plus its steps.
///
/// Below [`PARALLEL_FROM`] a selection is computed by the query's thread alone: handing work
/// over costs more than it saves. Batches are about [`BATCH`] of it. At 216,000 (120 series of
/// 6 h at 15 s) sharing costs 9-15% more CPU; it gains no wall time with the machine busy
/// (load 5) but does with a core to spare (load 2), so the threshold stays below that size.
const PARALLEL_FROM: u64 = 100_000;
const BATCH: u64 = 16_384;

/// What one thread reuses from series to series while reading and windowing a plan's series.
#[derive(Default)]
struct Scratch {
    read: ReadScratch,
    samples: Vec<Sample>,
    histograms: Vec<HistogramSample>,
    points: Vec<FPoint>,
    hpoints: Vec<HPoint>,
    work: usize,
}

/// What a batch's series gave, in series order: the series that had samples, then, if a block
/// failed, the failure (the batch's later series are not read).
struct Batch<'q> {
    series: Vec<Option<Windowed>>,
    unread: Option<Unread<'q>>,
}

/// What a function over a range vector computes per window.
#[derive(Clone, Copy)]
enum Kind {
    Fn(RangeFn),
    /// `absent_over_time`: only whether any series has a point in the window matters.
    Absent,
}

impl<'a> Evaluator<'a> {
    /// The evaluation range of a subquery's inner expression for an outer range `r`: from the
    /// first multiple of the subquery step after `start - offset - range`, to `end - offset`;
    /// with `@`, around that time only.
    fn subquery_range(&self, sq: &SubqueryExpr, r: Range) -> Result<Range, QueryError> {
        let step = match sq.step {
            Some(d) => duration_ms(d),
            None => self.settings.subquery_step,
        };
        if step <= 0 {
            return Err(QueryError::BadData(format!(
                "subquery step must be positive, got {step}ms"
            )));
        }
        let offset = offset_ms(&sq.offset);
        let range = duration_ms(sq.range);
        let (first, last) = match self.at_ms(&sq.at) {
            Some(t) => (t, t),
            None => (r.start, r.last()),
        };
        let after = first.saturating_sub(offset).saturating_sub(range);
        Ok(Range {
            start: after
                .div_euclid(step)
                .saturating_mul(step)
                .saturating_add(step),
            end: last.saturating_sub(offset),
            step,
        })
    }

    /// Prepares a matrix selector (read later, series by series) or evaluates a subquery for
    /// all the windows of `r`.
    fn range_arg(&mut self, e: &Expr, r: Range) -> Result<RangeArg<'a>, QueryError> {
        match unparen(e) {
            Expr::MatrixSelector(ms) => {
                let offset = offset_ms(&ms.vs.offset);
                let at = self.at_ms(&ms.vs.at);
                let range = duration_ms(ms.range);
                let (first, last) = match at {
                    Some(t) => (t, t),
                    None => (r.start, r.last()),
                };
                let mint = first
                    .saturating_sub(offset)
                    .saturating_sub(range)
                    .saturating_add(1);
                let maxt = last.saturating_sub(offset);
                Ok(RangeArg {
                    points: Points::Stored {
                        querier: self.querier,
                        groups: selector_matchers(&ms.vs)?,
                        mint,
                        maxt,
                    },
                    range,
                    offset,
                    at,
                    held: 0,
                })
            }
            Expr::Subquery(sq) => {
                let inner = self.subquery_range(sq, r)?;
                let before = self.samples;
                let mut m = self.eval_matrix(&sq.expr, inner)?;
                // A subquery may skip the sample that carries a reset hint, or repeat it:
                // its histograms' reset and not-reset hints are forgotten, as Prometheus
                // does, so resets are detected from the counts.
                for s in &mut m {
                    for p in &mut s.histograms {
                        use crate::model::histogram::CounterResetHint as Hint;
                        if matches!(p.h.counter_reset_hint, Hint::Reset | Hint::NotReset) {
                            let mut h = (*p.h).clone();
                            h.counter_reset_hint = Hint::Unknown;
                            p.h = Arc::new(h);
                        }
                    }
                }
                Ok(RangeArg {
                    points: Points::Computed(m),
                    range: duration_ms(sq.range),
                    offset: offset_ms(&sq.offset),
                    at: self.at_ms(&sq.at),
                    held: self.samples.saturating_sub(before),
                })
            }
            other => Err(QueryError::Execution(format!(
                "expected a range vector, got {other}"
            ))),
        }
    }

    /// A range vector as a result (an instant query of `x[5m]` or of a subquery): the raw
    /// points of each series in its window, at their own timestamps.
    pub(super) fn range_vector(&mut self, e: &Expr, r: Range) -> Result<Matrix, QueryError> {
        if let Expr::Subquery(sq) = unparen(e) {
            // The subquery's own steps are the points.
            let inner = self.subquery_range(sq, r)?;
            return self.eval_matrix(&sq.expr, inner);
        }
        let arg = self.range_arg(e, r)?;
        let (start, end) = arg.window(r.start);
        let mut out = Vec::new();
        let mut held = 0usize;
        arg.for_each_series(|item| {
            let (metric, points, hpoints, drop_name) = match item {
                Item::Series(m, p, hp, d) => (m, p, hp, d),
                Item::Restart => {
                    out.clear();
                    held = 0;
                    return Ok(());
                }
            };
            self.check()?;
            let lo = points.partition_point(|p| p.t <= start);
            let hi = points.partition_point(|p| p.t <= end);
            let hlo = hpoints.partition_point(|p| p.t <= start);
            let hhi = hpoints.partition_point(|p| p.t <= end);
            if lo < hi || hlo < hhi {
                held += (hi - lo) + (hhi - hlo);
                self.within_limit(held)?;
                out.push(Series {
                    histograms: hpoints[hlo..hhi].to_vec(),
                    metric,
                    floats: points[lo..hi].to_vec(),
                    drop_name,
                });
            }
            Ok(())
        })?;
        self.hold(held)?;
        Ok(out)
    }

    /// A function of a range vector (`rate(x[5m])`, `max_over_time(q[1h:5m])`, …): scalar
    /// arguments are evaluated first, then every series is windowed step by step.
    pub(super) fn range_function(
        &mut self,
        c: &Call,
        args: &[&Expr],
        matrix_arg: usize,
        r: Range,
    ) -> Result<Matrix, QueryError> {
        let mut out = Vec::new();
        let absent = self.range_function_each(c, args, matrix_arg, r, &mut |e| {
            match e {
                Emit::Series(s) => out.push(s),
                Emit::Restart => out.clear(),
            }
            Ok(())
        })?;
        Ok(absent.unwrap_or(out))
    }

    /// [`Evaluator::range_function`] handing each output series to `emit` as soon as it is
    /// computed, its input series read one at a time and dropped after: the function's input
    /// is never held whole. The output series are counted as held samples (and left counted)
    /// just as if they were collected. `absent_over_time` answers here instead, in the result.
    pub(super) fn range_function_each(
        &mut self,
        c: &Call,
        args: &[&Expr],
        matrix_arg: usize,
        r: Range,
        emit: &mut dyn FnMut(Emit) -> Result<(), QueryError>,
    ) -> Result<Option<Matrix>, QueryError> {
        let name = c.func.name;
        let kind = if name == "absent_over_time" {
            Kind::Absent
        } else {
            Kind::Fn(range_function(name).ok_or_else(|| {
                QueryError::Execution(format!("function {name} is not supported"))
            })?)
        };
        let mut scalars = Vec::with_capacity(args.len().saturating_sub(1));
        for (i, a) in args.iter().enumerate() {
            if i != matrix_arg {
                scalars.push(self.eval_scalar(a, r)?);
            }
        }
        let arg = self.range_arg(args[matrix_arg], r)?;
        let released = arg.held;
        let steps = r.steps();
        let delayed = self.settings.delayed_name_removal;
        let keeps_name = match kind {
            Kind::Fn(f) => f.keeps_name(),
            Kind::Absent => false,
        };
        // Absent: whether any series had a point in the window, per step.
        let mut present = match kind {
            Kind::Absent => {
                // Its output may have a point at every step.
                self.within_limit(steps)?;
                vec![false; steps]
            }
            Kind::Fn(_) => Vec::new(),
        };
        let (at, offset, range) = (arg.at, arg.offset, arg.range);
        let mut work = 0usize;
        // Output label sets so far, to refuse two series with one label set once names are
        // dropped (checked after all series, as when the output was collected first).
        let mut seen = std::collections::HashSet::new();
        let mut duplicate = false;
        // What to go back to if the input starts again.
        let (held_before, ann_before) = (self.samples, self.ann.clone());
        let mut walked = |ev: &mut Self, w: Walked| -> Result<(), QueryError> {
            let w = match w {
                Walked::Series(w) => w,
                Walked::Restart => {
                    ev.samples = held_before;
                    ev.ann = ann_before.clone();
                    seen.clear();
                    duplicate = false;
                    return emit(Emit::Restart);
                }
            };
            ev.check()?;
            let Some(s) = w.map(|w| ev.keep(w)).transpose()?.flatten() else {
                return Ok(());
            };
            if !delayed && !seen.insert(s.metric.clone()) {
                duplicate = true;
            }
            emit(Emit::Series(s))
        };
        match kind {
            Kind::Fn(f) => {
                let mut cx = Windows {
                    f,
                    r,
                    at,
                    offset,
                    range,
                    scalars: &scalars,
                    most: 0,
                    keeps_name,
                    delayed,
                    deadline: self.deadline,
                };
                match arg.points {
                    Points::Stored {
                        querier,
                        groups,
                        mint,
                        maxt,
                    } => self.stored_windows(querier, &groups, mint, maxt, cx, &mut walked)?,
                    points @ Points::Computed(_) => {
                        let arg = RangeArg { points, ..arg };
                        arg.for_each_series(|item| {
                            let w = match item {
                                Item::Series(m, p, hp, d) => {
                                    cx.most = self.budget();
                                    Walked::Series((!p.is_empty() || !hp.is_empty()).then(|| {
                                        cx.series(InputLabels::Owned(m), d, p, hp, &mut work)
                                    }))
                                }
                                Item::Restart => Walked::Restart,
                            };
                            walked(self, w)
                        })?;
                    }
                }
            }
            Kind::Absent => arg.for_each_series(|item| {
                let (points, hpoints) = match item {
                    Item::Series(_, p, hp, _) => (p, hp),
                    Item::Restart => {
                        present.fill(false);
                        return walked(self, Walked::Restart);
                    }
                };
                self.check()?;
                // Only the times matter here.
                let merged: Vec<FPoint>;
                let points = if hpoints.is_empty() {
                    points
                } else {
                    let mut all: Vec<FPoint> = points.to_vec();
                    all.extend(hpoints.iter().map(|h| FPoint { t: h.t, f: 0.0 }));
                    all.sort_by_key(|p| p.t);
                    merged = all;
                    &merged
                };
                let (Some(a), Some(b)) = (points.first(), points.last()) else {
                    return Ok(());
                };
                let span = match at {
                    Some(_) => 0..steps,
                    None => step_span(
                        r,
                        a.t.saturating_add(offset),
                        b.t.saturating_add(offset).saturating_add(range),
                    ),
                };
                let (mut lo, mut hi) = (0usize, 0usize);
                for i in span {
                    let end = at.unwrap_or(r.ts(i)).saturating_sub(offset);
                    let start = end.saturating_sub(range);
                    while hi < points.len() && points[hi].t <= end {
                        hi += 1;
                    }
                    while lo < hi && points[lo].t <= start {
                        lo += 1;
                    }
                    self.check_work(&mut work, 1 + hi - lo)?;
                    if lo < hi {
                        present[i] = true;
                    }
                }
                Ok(())
            })?,
        }
        self.samples = self.samples.saturating_sub(released);
        if let Kind::Absent = kind {
            let floats: Vec<FPoint> = present
                .iter()
                .enumerate()
                .filter(|(_, p)| !**p)
                .map(|(i, _)| FPoint { t: r.ts(i), f: 1.0 })
                .collect();
            if floats.is_empty() {
                return Ok(Some(Vec::new()));
            }
            self.hold(floats.len())?;
            let labels = match unparen(args[matrix_arg]) {
                Expr::MatrixSelector(_) => absent_labels(args[matrix_arg]),
                _ => Labels::empty(),
            };
            return Ok(Some(vec![Series {
                histograms: Vec::new(),
                metric: Arc::new(labels),
                floats,
                drop_name: true,
            }]));
        }
        if duplicate {
            return Err(QueryError::Execution(SAME_LABELSET.into()));
        }
        Ok(None)
    }

    /// Checks one series' windows against the sample limit and keeps its output, counted as
    /// held, as evaluating its windows one by one on top of the samples held would have: the
    /// limit was checked at each window (its points, then the output so far), and an error
    /// in a window came after the checks of the windows before it.
    fn keep(&mut self, w: Windowed) -> Result<Option<Series>, QueryError> {
        if w.widest > 0 {
            self.within_limit(w.widest)?;
        }
        let n = w.floats.len() + w.histograms.len();
        if n > self.budget() {
            return Err(QueryError::TooManySamples("query execution"));
        }
        if let Some(e) = w.error {
            return Err(e);
        }
        self.ann.merge(w.ann);
        if n == 0 {
            return Ok(None);
        }
        self.hold(n)?;
        let Some(metric) = w.metric else {
            return Ok(None);
        };
        Ok(Some(Series {
            histograms: w.histograms,
            metric,
            floats: w.floats,
            drop_name: w.drop_name,
        }))
    }

    /// A range function's windows over the series a matrix selector selects in [mint, maxt],
    /// handed to `walked` in label order. The selection is planned first; a large one is read
    /// and windowed by helper threads and this one together ([`par::ordered`]), in batches
    /// of consecutive series whose outputs `walked` takes in order, so it sees exactly what
    /// a one-thread walk gives: the same series, windows, errors and restarts, in the same
    /// order.
    fn stored_windows(
        &mut self,
        querier: &'a Querier,
        groups: &[Vec<Matcher>],
        mint: i64,
        maxt: i64,
        mut cx: Windows<'_>,
        walked: &mut dyn FnMut(&mut Self, Walked) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        if mint > maxt {
            return Ok(());
        }
        let groups: Vec<&[Matcher]> = groups.iter().map(Vec::as_slice).collect();
        let mut plan = querier.plan(&groups, mint, maxt)?;
        let mut handed = false;
        loop {
            let unread = match self.sharing(&plan, cx.r.steps()) {
                None => {
                    // One thread, reading each series into buffers kept from series to series; a
                    // block that fails is left out and the walk starts again, as a streamed
                    // selection (`Querier::select_planned`) does.
                    let mut s = Scratch::default();
                    let mut unread = None;
                    for i in 0..plan.len() {
                        let read = querier.read_planned(
                            &plan,
                            i,
                            mint,
                            maxt,
                            &mut s.read,
                            &mut s.samples,
                            &mut s.histograms,
                        );
                        if let Err(u) = read {
                            unread = Some(u);
                            break;
                        }
                        if s.samples.is_empty() && s.histograms.is_empty() {
                            continue;
                        }
                        live_points(&s.samples, &mut s.points);
                        live_histograms(&s.histograms, &mut s.hpoints);
                        cx.most = self.budget();
                        let w = (!s.points.is_empty() || !s.hpoints.is_empty()).then(|| {
                            let labels = InputLabels::Owned(Arc::new(plan.take_labels(i)));
                            cx.series(labels, false, &s.points, &s.hpoints, &mut s.work)
                        });
                        handed = true;
                        walked(self, Walked::Series(w))?;
                    }
                    unread
                }
                Some((helpers, bounds)) => {
                    // Any output past the limit fails it, whatever is held when it is taken.
                    cx.most = self.settings.max_samples;
                    let cx = &cx;
                    let plan_ref = &plan;
                    let work = |b: usize, s: &mut Scratch| -> Batch<'a> {
                        let mut out = Batch {
                            series: Vec::with_capacity(bounds[b + 1] - bounds[b]),
                            unread: None,
                        };
                        for i in bounds[b]..bounds[b + 1] {
                            if let Err(u) = querier.read_planned(
                                plan_ref,
                                i,
                                mint,
                                maxt,
                                &mut s.read,
                                &mut s.samples,
                                &mut s.histograms,
                            ) {
                                out.unread = Some(u);
                                break;
                            }
                            if s.samples.is_empty() && s.histograms.is_empty() {
                                continue;
                            }
                            live_points(&s.samples, &mut s.points);
                            live_histograms(&s.histograms, &mut s.hpoints);
                            let any = !s.points.is_empty() || !s.hpoints.is_empty();
                            out.series.push(any.then(|| {
                                let labels = InputLabels::Borrowed(plan_ref.labels(i));
                                cx.series(labels, false, &s.points, &s.hpoints, &mut s.work)
                            }));
                        }
                        out
                    };
                    let mut unread = None;
                    par::ordered(
                        bounds.len() - 1,
                        &helpers,
                        4 * (helpers.count() + 1),
                        &Scratch::default,
                        &work,
                        &mut |batch: Batch<'a>| {
                            for w in batch.series {
                                handed = true;
                                walked(self, Walked::Series(w))?;
                            }
                            unread = batch.unread;
                            Ok::<bool, QueryError>(unread.is_none())
                        },
                    )?;
                    unread
                }
            };
            let Some(u) = unread else {
                return Ok(());
            };
            // A block that failed is left out, and the walk starts again without it.
            drop(plan);
            querier.left_out(u)?;
            if handed {
                handed = false;
                walked(self, Walked::Restart)?;
            }
            plan = querier.plan(&groups, mint, maxt)?;
        }
    }

    /// Whether a planned selection is worth sharing between threads, and if so the helpers
    /// granted and the batches: the index of each batch's first series, then the number of
    /// series.
    fn sharing(&self, plan: &Plan<'_>, steps: usize) -> Option<(Helpers, Vec<usize>)> {
        let n = plan.len();
        let steps = steps as u64;
        let cost = |i: usize| plan.samples_guess(i).saturating_add(steps);
        let (helpers, bounds) = match self.settings.parallel {
            #[cfg(test)]
            Parallel::Off => return None,
            #[cfg(test)]
            Parallel::Always => {
                // Batches of one, two and three series, so every way a batch can end is met.
                let mut bounds = vec![0];
                let mut i = 0;
                while i < n {
                    i = (i + 1 + bounds.len() % 3).min(n);
                    bounds.push(i);
                }
                (Helpers::forced(2), bounds)
            }
            Parallel::Auto => {
                if n < 2 {
                    return None;
                }
                let mut bounds = vec![0];
                let (mut acc, mut total) = (0u64, 0u64);
                for i in 0..n {
                    let c = cost(i);
                    total = total.saturating_add(c);
                    acc = acc.saturating_add(c);
                    if acc >= BATCH {
                        bounds.push(i + 1);
                        acc = 0;
                    }
                }
                if total < PARALLEL_FROM {
                    return None;
                }
                if bounds.last() != Some(&n) {
                    bounds.push(n);
                }
                // The query's own thread takes batches too: no more helpers than the batches
                // left beside it, so a small selection leaves the spare cores to other queries.
                let helpers = Helpers::take(bounds.len().saturating_sub(2));
                if helpers.count() == 0 {
                    return None;
                }
                (helpers, bounds)
            }
        };
        Some((helpers, bounds))
    }
}
