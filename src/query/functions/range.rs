//! Range-vector functions over one window of float points. Every function here receives a
//! non-empty slice and allocates nothing; the quantile-based ones sort a thread-local scratch
//! buffer that is reused from window to window.

use std::cell::Cell;
use std::cmp::Ordering;

use super::Window;
use crate::query::FPoint;

/// Neumaier's variant of Kahan summation: adds `inc` to `sum`, carrying the lost low-order
/// bits in `c`. An infinite sum resets the compensation so that it cannot turn into NaN.
#[inline]
pub(super) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// A range of `ms` milliseconds in seconds, computed as Go's `Duration.Seconds` does (whole
/// seconds plus the fraction) so that results match Prometheus to the last bit.
fn range_seconds(ms: i64) -> f64 {
    (ms / 1000) as f64 + ((ms % 1000) * 1_000_000) as f64 / 1e9
}

/// A window length in milliseconds with its [`range_seconds`], worked out once for the many
/// windows of that length.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    ms: i64,
    secs: f64,
}

impl Span {
    pub(crate) fn of(ms: i64) -> Span {
        Span {
            ms,
            secs: range_seconds(ms),
        }
    }

    /// [`range_seconds`] of `ms`.
    #[inline]
    fn seconds(self, ms: i64) -> f64 {
        if ms == self.ms {
            self.secs
        } else {
            range_seconds(ms)
        }
    }
}

/// True when some value is below its predecessor (a counter reset). Never short-circuits, so
/// the loop has no data-dependent branch. A window is a run of its series' points, so a series
/// without one has windows without one.
#[inline]
pub(crate) fn has_decrease(p: &[FPoint]) -> bool {
    let mut any = false;
    for (a, b) in p.iter().zip(p.iter().skip(1)) {
        any |= b.f < a.f;
    }
    any
}

/// `rate`, `increase` and `delta`: the difference between the last and the first point
/// (plus every value lost to a counter reset), extrapolated towards the window's edges. A
/// boundary is reached only when the nearest point lies within 1.1 average intervals of it,
/// otherwise the extrapolation covers half an interval; a counter is never extrapolated below
/// zero. `may_reset` false says the window holds no counter reset (its whole series has
/// none), so it is not scanned for one; `span` is the windows' usual length, its seconds
/// worked out once (used only when this window's length is `span`'s). Also inlined into the
/// evaluator's window loop.
#[inline]
pub(crate) fn extrapolated_rate(
    w: &Window<'_>,
    is_counter: bool,
    is_rate: bool,
    may_reset: bool,
    span: Span,
) -> Option<f64> {
    let p = w.points;
    if p.len() < 2 {
        return None;
    }
    let first = p[0];
    let last = p[p.len() - 1];
    let mut result = last.f - first.f;
    // Most windows hold no reset: a branch-free scan (which the compiler vectorises) finds that
    // out, and only a window with one pays for the ordered sum that adds what each reset lost.
    if is_counter && may_reset && has_decrease(p) {
        let mut prev = first.f;
        for q in &p[1..] {
            if q.f < prev {
                result += prev;
            }
            prev = q.f;
        }
    }
    let mut to_start = (first.t - w.start) as f64 / 1000.0;
    let mut to_end = (w.end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg_interval = sampled / (p.len() - 1) as f64;
    let threshold = avg_interval * 1.1;
    if to_start >= threshold {
        to_start = avg_interval / 2.0;
    }
    if is_counter {
        // A counter that grew cannot have started below zero: stop at its zero point.
        let mut to_zero = to_start;
        if result > 0.0 && first.f >= 0.0 {
            to_zero = sampled * (first.f / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_interval / 2.0;
    }
    let mut factor = 1.0;
    if sampled != 0.0 {
        factor = (sampled + to_start + to_end) / sampled;
    }
    if is_rate {
        factor /= span.seconds(w.end - w.start);
    }
    Some(result * factor)
}

/// `irate` and `idelta`: the last two points. After a counter reset `irate` takes the last
/// value as the increase.
pub(super) fn instant_value(p: &[FPoint], is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let a = p[p.len() - 2];
    let b = p[p.len() - 1];
    let interval = b.t - a.t;
    if interval == 0 {
        return None;
    }
    let mut v = b.f;
    if !is_rate || b.f >= a.f || b.f.is_nan() || a.f.is_nan() {
        v = b.f - a.f;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares fit over the points with x in seconds relative to `intercept_t`; returns
/// the slope and the value at `intercept_t`. Constant values give an exact zero slope, and
/// constant infinities NaN, as in Prometheus.
fn linear_regression(p: &[FPoint], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = p[0].f;
    let mut const_y = true;
    for (i, s) in p.iter().enumerate() {
        if const_y && i > 0 && s.f != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (s.t - intercept_t) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(s.f, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * s.f, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// `deriv`: the slope, with x measured from the first point to keep the sums small.
pub(super) fn deriv(p: &[FPoint]) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    Some(linear_regression(p, p[0].t).0)
}

/// `predict_linear`: the fitted value `duration` seconds after the evaluation time.
pub(super) fn predict_linear(p: &[FPoint], eval_t: i64, duration: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(p, eval_t);
    Some(slope * duration + intercept)
}

/// `resets`: how often a value is below its predecessor.
pub(super) fn resets(p: &[FPoint]) -> f64 {
    p.windows(2).filter(|w| w[1].f < w[0].f).count() as f64
}

/// `changes`: how often a value differs from its predecessor (NaN after NaN is no change).
pub(super) fn changes(p: &[FPoint]) -> f64 {
    p.windows(2)
        .filter(|w| w[1].f != w[0].f && !(w[1].f.is_nan() && w[0].f.is_nan()))
        .count() as f64
}

/// `sum_over_time` with compensated summation.
pub(super) fn sum(p: &[FPoint]) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for q in p {
        (s, c) = kahan_inc(q.f, s, c);
    }
    if s.is_infinite() { s } else { s + c }
}

/// `avg_over_time`: the compensated sum divided by the count while the sum stays finite; once
/// it would overflow, an incremental mean takes over, so huge values still average correctly.
pub(super) fn avg(p: &[FPoint]) -> f64 {
    let mut sum = p[0].f;
    let mut count = 1.0;
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, q) in p[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(q.f, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let scale = (count - 1.0) / count;
        (mean, c) = kahan_inc(q.f / count, scale * mean, scale * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

/// Which point [`extreme`] picks.
#[derive(Clone, Copy)]
pub(super) enum Extreme {
    /// The first strictly smallest value.
    Min,
    /// The first strictly largest value.
    Max,
    /// The last of the smallest values (for its timestamp).
    LastMin,
    /// The last of the largest values (for its timestamp).
    LastMax,
}

/// The minimum or maximum point. A leading NaN is replaced by the next value, a later NaN is
/// never chosen, so the result is NaN only when every value is NaN.
pub(super) fn extreme(p: &[FPoint], which: Extreme) -> FPoint {
    let mut best = p[0];
    for &q in p {
        let better = match which {
            Extreme::Min => q.f < best.f,
            Extreme::Max => q.f > best.f,
            Extreme::LastMin => q.f <= best.f,
            Extreme::LastMax => q.f >= best.f,
        };
        if better || best.f.is_nan() {
            best = q;
        }
    }
    best
}

/// `stdvar_over_time`: population variance by Welford's method with compensated sums.
pub(super) fn variance(p: &[FPoint]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0);
    for q in p {
        count += 1.0;
        let delta = q.f - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (q.f - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

thread_local! {
    /// Sorting space for the quantile functions, kept between windows.
    static SCRATCH: Cell<Vec<f64>> = const { Cell::new(Vec::new()) };
}

/// Frees the thread's scratch buffer.
pub(super) fn release_scratch() {
    drop(SCRATCH.with(Cell::take));
}

/// Runs `f` on the thread's scratch buffer, emptied; hands the buffer back afterwards.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<f64>) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut buf = cell.take();
        buf.clear();
        let r = f(&mut buf);
        cell.set(buf);
        r
    })
}

/// Prometheus's value order for quantiles: NaN below everything.
fn nan_first(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// The φ-quantile of `values` (reordered in place), interpolating linearly between the two
/// nearest ranks; NaN for no values or φ NaN, -Inf below 0, +Inf above 1.
pub(super) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (n - 1.0).min(lower + 1.0);
    let weight = rank - rank.floor();
    let (li, ui) = (lower as usize, upper as usize);
    // Two selections instead of a sort: only the values at the two ranks matter.
    let (_, lo, rest) = values.select_nth_unstable_by(li, nan_first);
    let lo = *lo;
    let hi = if ui == li {
        lo
    } else {
        rest.iter().copied().min_by(nan_first).unwrap_or(lo)
    };
    lo * (1.0 - weight) + hi * weight
}

/// `quantile_over_time`.
pub(super) fn quantile_over_time(p: &[FPoint], q: f64) -> f64 {
    with_scratch(|buf| {
        buf.extend(p.iter().map(|s| s.f));
        quantile(q, buf)
    })
}

/// `mad_over_time`: the median of the absolute deviations from the median; NaN if any value
/// is NaN.
pub(super) fn mad(p: &[FPoint]) -> f64 {
    if p.iter().any(|s| s.f.is_nan()) {
        return f64::NAN;
    }
    with_scratch(|buf| {
        buf.extend(p.iter().map(|s| s.f));
        let median = quantile(0.5, buf);
        for v in buf.iter_mut() {
            *v = (*v - median).abs();
        }
        quantile(0.5, buf)
    })
}

/// `double_exponential_smoothing` (Holt's linear method) with smoothing factor `sf` and trend
/// factor `tf`, both in (0, 1); needs two points.
pub(super) fn double_exponential_smoothing(p: &[FPoint], sf: f64, tf: f64) -> Option<f64> {
    if !(sf > 0.0 && sf < 1.0 && tf > 0.0 && tf < 1.0) || p.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = p[0].f;
    let mut b = p[1].f - p[0].f;
    for (i, q) in p.iter().enumerate().skip(1) {
        let x = sf * q.f;
        // The first step keeps the initial trend; later ones blend the last smoothed change.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{RangeFn::*, *};
    use super::{kahan_inc, range_seconds};

    #[test]
    fn resets_and_changes_match_the_conformance_script() {
        let foo = load(5 * M, "1 2 3 0 1 0 0 1 2 0");
        let bar = load(5 * M, "1 2 3 4 5 1 2 3 4 5");
        let biz = load(5 * M, "0 0 0 0 0 1 1 1 1 1");
        let at = 50 * M;
        for (range, want) in [
            (10 * M, [0.0, 0.0, 0.0]),
            (20 * M, [1.0, 0.0, 0.0]),
            (30 * M, [1.0, 0.0, 0.0]),
            (32 * M, [2.0, 1.0, 0.0]),
            (50 * M, [3.0, 1.0, 0.0]),
        ] {
            for (s, w) in [&foo, &bar, &biz].into_iter().zip(want) {
                assert_close(eval(Resets, s, at, range, &[]), w);
            }
        }
        assert_eq!(eval(Resets, &foo, at, 5 * M, &[]), None);
        for (range, want) in [
            (6 * M, [0.0, 0.0, 0.0]),
            (20 * M, [2.0, 2.0, 0.0]),
            (30 * M, [3.0, 4.0, 0.0]),
            (50 * M, [7.0, 8.0, 1.0]),
        ] {
            for (s, w) in [&foo, &bar, &biz].into_iter().zip(want) {
                assert_close(eval(Changes, s, at, range, &[]), w);
            }
        }
        assert_close(
            eval(Changes, &load(5 * M, "NaN NaN NaN"), 15 * M, 20 * M, &[]),
            0.0,
        );
        assert_close(
            eval(Changes, &load(5 * M, "0 NaN 0"), 15 * M, 20 * M, &[]),
            2.0,
        );
    }

    #[test]
    fn increase_extrapolates_like_prometheus() {
        let series = [
            load(5 * M, "0+10x10"),
            load(5 * M, "0+18x5 0+18x5"),
            load(5 * M, "10+10x10"),
            load(5 * M, "1+10x10"),
        ];
        for (s, want) in series.iter().zip([100.0, 160.0, 100.0, 100.0]) {
            assert_close(eval(Increase, s, 50 * M, 50 * M, &[]), want);
        }
        // Half-interval extrapolation to the left, cut at the counter's zero point.
        for (s, want) in series.iter().zip([100.0, 162.0, 105.0, 101.0]) {
            assert_close(eval(Increase, s, 50 * M, 100 * M, &[]), want);
        }
        let reset = load(5 * M, "0 1 2 3 2 3 4");
        assert_close(eval(Increase, &reset, 30 * M, 30 * M, &[]), 7.0);
    }

    #[test]
    fn rate_handles_resets_offsets_and_the_zero_cutoff() {
        let middle = load(5 * M, "0+27x4 0+27x5");
        assert_close(eval(Rate, &middle, 50 * M, 50 * M, &[]), 0.08);
        let end = load(5 * M, "0+10x9 0 10");
        assert_eq!(eval(Rate, &end, 50 * M, 5 * M, &[]), None);
        assert_close(eval(Rate, &end, 50 * M, 6 * M, &[]), 0.0);
        let window = load(5 * M, "0+80x10");
        assert_close(
            eval(Rate, &window, 50 * M, 50 * M, &[]),
            0.26666666666666666,
        );
        let a = load(5 * M, "0+10x10");
        let (got, _) = eval_offset(Rate, &a, 50 * M, 10 * M, 5 * M, &[]);
        assert_close(got, 0.03333333333333333);
        let early = [0.5, 0.55, 0.6, 0.6, 0.6, 0.6];
        for (i, want) in early.into_iter().enumerate() {
            let spec = format!("{}+240x10", 60 * i);
            let s = load(4 * M, &spec);
            assert_close(eval(Rate, &s, 10 * M, 20 * M, &[]), want);
            assert_close(eval(Rate, &s, 50 * M, 20 * M, &[]), 0.6);
        }
    }

    #[test]
    fn rate_on_irregular_points() {
        let p = [
            FPoint { t: 7_400, f: 3.0 },
            FPoint { t: 19_100, f: 9.5 },
            FPoint { t: 33_800, f: 2.25 },
            FPoint { t: 51_050, f: 11.0 },
        ];
        // Both gaps are within 1.1 average intervals, so the full 60 s are covered; the
        // zero point (7.48 s before the first point) lies beyond the window start.
        assert_close(eval(Increase, &p, 60 * S, 60 * S, &[]), 17.5 * 60.0 / 43.65);
        assert_close(eval(Rate, &p, 60 * S, 60 * S, &[]), 17.5 / 43.65);
        assert_close(eval(Delta, &p, 60 * S, 60 * S, &[]), 8.0 * 60.0 / 43.65);
        // Far from both edges: half an interval on each side; a low first value moves the
        // start to the zero point instead.
        let mid = |first: f64| {
            [
                FPoint {
                    t: 20_000,
                    f: first,
                },
                FPoint { t: 26_000, f: 6.0 },
                FPoint { t: 32_000, f: 9.0 },
            ]
        };
        assert_close(eval(Increase, &mid(5.0), 60 * S, 60 * S, &[]), 6.0);
        assert_close(
            eval(Increase, &mid(1.0), 60 * S, 60 * S, &[]),
            8.0 * 16.5 / 12.0,
        );
        assert_close(eval(Delta, &mid(1.0), 60 * S, 60 * S, &[]), 12.0);
        // A single point gives nothing; an odd millisecond range divides exactly as Go does.
        assert_eq!(eval(Rate, &p[..1], 60 * S, 60 * S, &[]), None);
        assert_close(
            eval(Rate, &mid(5.0), 32_000, 12_001, &[]).map(|v| v * 12.001),
            eval(Increase, &mid(5.0), 32_000, 12_001, &[]).unwrap(),
        );
    }

    #[test]
    fn irate_and_idelta_use_the_last_two_points() {
        let foo = load(5 * M, "0+10x10");
        let bar = load(5 * M, "0+10x5 0+10x5");
        assert_close(eval(Irate, &foo, 50 * M, 50 * M, &[]), 1.0 / 30.0);
        assert_close(eval(Irate, &bar, 50 * M, 50 * M, &[]), 1.0 / 30.0);
        assert_close(eval(Irate, &bar, 30 * M, 50 * M, &[]), 0.0);
        let nan = load(5 * M, "1 NaN NaN 5 11");
        let steps = |f| -> Vec<Option<f64>> {
            (0..=4)
                .map(|i| eval(f, &nan, i * 5 * M, 15 * M + S, &[]))
                .collect()
        };
        let irate = steps(Irate);
        assert_eq!(irate[0], None);
        assert!(irate[1..4].iter().all(|v| v.is_some_and(f64::is_nan)));
        assert_close(irate[4], 0.02);
        let idelta = steps(Idelta);
        assert!(idelta[1..4].iter().all(|v| v.is_some_and(f64::is_nan)));
        assert_close(idelta[4], 6.0);
        let gauge = load(5 * M, "0 50 100 50");
        assert_close(eval(Idelta, &gauge, 20 * M, 20 * M, &[]), -50.0);
        // After a reset irate counts the new value as the increase, over irregular spacing.
        let p = [FPoint { t: 1_000, f: 40.0 }, FPoint { t: 3_500, f: 7.5 }];
        assert_close(eval(Irate, &p, 4 * S, 10 * S, &[]), 3.0);
        assert_close(eval(Idelta, &p, 4 * S, 10 * S, &[]), -32.5);
    }

    #[test]
    fn delta_of_gauges() {
        let up = load(5 * M, "0 50 100 150 200");
        let down = load(5 * M, "200 150 100 50 0");
        assert_close(eval(Delta, &up, 20 * M, 20 * M, &[]), 200.0);
        assert_close(eval(Delta, &down, 20 * M, 20 * M, &[]), -200.0);
    }

    #[test]
    fn deriv_and_predict_linear() {
        let total = load(5 * M, "0+80x10");
        assert_close(
            eval(Deriv, &total, 50 * M, 50 * M, &[]),
            0.26666666666666666,
        );
        let reset = load(5 * M, "0+10x4 0+10x5");
        assert_close(
            eval(Deriv, &reset, 50 * M, 100 * M, &[]),
            0.010606060606060607,
        );
        let inf = load(5 * M, "-Inf 0+80x10 Inf");
        assert!(eval(Deriv, &inf, 100 * M, 100 * M, &[]).is_some_and(f64::is_nan));
        assert!(eval(PredictLinear, &inf, 100 * M, 100 * M, &[6000.0]).is_some_and(f64::is_nan));
        assert_close(eval(PredictLinear, &reset, 50 * M, 50 * M, &[3600.0]), 70.0);
        // `@ 3000` pins the window; the prediction still starts at the step's own time.
        for (at, want) in [
            (50 * M, 76.81818181818181),
            (10 * M, 51.36363636363637),
            (70 * M, 89.54545454545455),
        ] {
            let (got, _) = eval_offset(PredictLinear, &reset, at, 55 * M, at - 3000 * S, &[3600.0]);
            assert_close(got, want);
        }
        // Constant values: zero slope exactly, whatever the spacing.
        let flat = [
            FPoint { t: 1_234, f: 4.5 },
            FPoint { t: 2_001, f: 4.5 },
            FPoint { t: 9_876, f: 4.5 },
        ];
        assert_eq!(eval(Deriv, &flat, 10 * S, 10 * S, &[]), Some(0.0));
        assert_eq!(
            eval(PredictLinear, &flat, 10 * S, 10 * S, &[100.0]),
            Some(4.5)
        );
        assert_eq!(eval(Deriv, &flat[..1], 10 * S, 10 * S, &[]), None);
        // y = 2 + 0.5 x on irregular x: the fit is exact.
        let line: Vec<FPoint> = [0_i64, 1_300, 4_100, 4_900]
            .iter()
            .map(|&t| FPoint {
                t,
                f: 2.0 + 0.5 * t as f64 / 1000.0,
            })
            .collect();
        assert_close(eval(Deriv, &line, 5 * S, 10 * S, &[]), 0.5);
        assert_close(eval(PredictLinear, &line, 5 * S, 10 * S, &[3.0]), 6.0);
    }

    #[test]
    fn double_exponential_smoothing_follows_exact_trends() {
        for (spec, want) in [
            ("0+10x1000 100+30x1000", 8000.0),
            ("0+20x1000 200+30x1000", 16000.0),
            ("0+30x1000 300+80x1000", 24000.0),
            ("0+40x2000", 32000.0),
            ("8000-10x1000", 0.0),
            ("0-20x1000", -16000.0),
            ("0-40x1000 0+40x1000", -32000.0),
        ] {
            let s = load(10 * S, spec);
            assert_close(
                eval(DoubleExponentialSmoothing, &s, 8000 * S, M, &[0.01, 0.1]),
                want,
            );
        }
        let s = load(10 * S, "0+10x1000 100+30x1000");
        assert_close(
            eval(DoubleExponentialSmoothing, &s, 20010 * S, M, &[0.01, 0.1]),
            30100.0,
        );
        // Three irregular points, computed by hand: s = 3, b = 2; then b stays 2 for the
        // second point (s = 0.5·5 + 0.5·5 = 5), blends for the third.
        let p = [
            FPoint { t: 100, f: 3.0 },
            FPoint { t: 900, f: 5.0 },
            FPoint { t: 1_000, f: 11.0 },
        ];
        let b = 0.25 * (5.0 - 3.0) + 0.75 * 2.0;
        let want = 0.5 * 11.0 + 0.5 * (5.0 + b);
        assert_close(
            eval(DoubleExponentialSmoothing, &p, 2 * S, 2 * S, &[0.5, 0.25]),
            want,
        );
        assert_eq!(
            eval(
                DoubleExponentialSmoothing,
                &p[..1],
                2 * S,
                2 * S,
                &[0.5, 0.25]
            ),
            None
        );
        assert_eq!(
            eval(DoubleExponentialSmoothing, &p, 2 * S, 2 * S, &[1.0, 0.25]),
            None
        );
        assert!(validate_range_args(DoubleExponentialSmoothing, &[0.5, 0.25]).is_ok());
        let err = validate_range_args(DoubleExponentialSmoothing, &[0.0, 0.25]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid smoothing factor. Expected: 0 < sf < 1, got: 0.000000"
        );
        let err = validate_range_args(DoubleExponentialSmoothing, &[0.5, 1.0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid trend factor. Expected: 0 < tf < 1, got: 1.000000"
        );
        assert!(validate_range_args(Rate, &[]).is_ok());
    }

    #[test]
    fn avg_and_sum_over_time_with_infinities_and_nan() {
        let at = 55 * S;
        let metric = load(10 * S, "1 2 3 4 5");
        assert_eq!(eval(AvgOverTime, &metric, at, 10 * S, &[]), None);
        assert_close(eval(AvgOverTime, &metric, at, 20 * S, &[]), 5.0);
        assert_close(eval(AvgOverTime, &metric, at, M, &[]), 3.0);
        let inf = f64::INFINITY;
        for (spec, want) in [
            ("1 2 3 4 Inf", inf),
            ("1 2 3 4 -Inf", -inf),
            ("1 2 3 Inf -Inf", f64::NAN),
            ("Inf 0 Inf", inf),
            ("Inf Inf Inf -Inf", f64::NAN),
            ("1 2 3 -Inf -Inf", -inf),
            ("-Inf 0 -Inf", -inf),
            ("-Inf -Inf -Inf Inf", f64::NAN),
            ("1 2 -Inf -Inf Inf", f64::NAN),
            (
                "9.988465674311579e+307 9.988465674311579e+307",
                9.988_465_674_311_58e307,
            ),
            (
                "-9.988465674311579e+307 -9.988465674311579e+307 -9.988465674311579e+307",
                -9.988_465_674_311_58e307,
            ),
            ("-9.988465674311579e+307 9.988465674311579e+307", 0.0),
            ("1 2 3 NaN NaN", f64::NAN),
        ] {
            let s = load(10 * S, spec);
            assert_close(eval(AvgOverTime, &s, at, M, &[]), want);
        }
        let big = load(10 * S, "9.988465674311579e+307 9.988465674311579e+307");
        assert_close(eval(SumOverTime, &big, at, M, &[]), inf);
        let nan = load(10 * S, "1 2 3 NaN NaN");
        assert_close(eval(AvgOverTime, &nan, 20 * S, M, &[]), 2.0);
        let cancel = load(10 * S, "1 1e100 1 -1e100");
        assert_close(eval(SumOverTime, &cancel, M, 2 * M, &[]), 2.0);
        assert_close(eval(AvgOverTime, &cancel, M, 2 * M, &[]), 0.5);
    }

    #[test]
    fn avg_over_time_with_extreme_magnitudes() {
        let at = 55 * S;
        for (spec, want) in [
            ("1e10 1e-6 1e-6 1e-6 1e-6 1e-6", 1.6666666666666675e+09),
            (
                "5.30921651659898 0.961118537914768 1.62091361305318 0.865089463758091 \
                 0.323055185914577 0.951811357687154",
                1.67186744582113,
            ),
            (
                "1.78264e50 0.76342771 1.9592258 7.69805412 458.90154",
                3.56528E+49,
            ),
            (
                "0.76342771 1.9592258 7.69805412 1.78264e50 458.90154",
                3.56528E+49,
            ),
            (
                "1.78264E+50 0.76342771 1.9592258 2.258E+220 7.69805412 458.90154",
                3.76333333333333E+219,
            ),
            (
                "-1.78264E+215 0.76342771 1.9592258 2.258E+220 7.69805412 1.78264E+215 \
                 -458.90154",
                3.225714285714286e+219,
            ),
            (
                "-1.78264E+219 0.76342771 1.9592258 2.3757689E+217 -2.3757689E+217 \
                 2.258E+220 7.69805412 1.78264E+219 -458.90154",
                2.5088888888888888e+219,
            ),
            (
                "-2.258E+220 -1.78264E+219 0.76342771 1.9592258 2.3757689E+217 \
                 -2.3757689E+217 2.258E+220 7.69805412 1.78264E+219 -458.90154",
                0.0,
            ),
        ] {
            let s = load(5 * S, spec);
            let got = eval(AvgOverTime, &s, at, M, &[]).unwrap();
            assert!(
                (got - want).abs() <= 1e-6 * want.abs(),
                "{spec}: {got} vs {want}"
            );
        }
        // Exactly 52, not 52 ± 1 ulp, over every window length.
        let foo = load(10 * S, "52+0x100");
        for range in [100, 110, 120, 130] {
            assert_eq!(eval(AvgOverTime, &foo, 10 * M, range * S, &[]), Some(52.0));
        }
        let dense = load(1, "1+0x4000");
        for range in [1000, 1001, 1002, 1003, 2000, 2001, 2002, 2003, 3000, 3003] {
            assert_eq!(
                eval(SumOverTime, &dense, 4 * S, range, &[]),
                Some(range as f64)
            );
        }
    }

    #[test]
    fn spread_functions() {
        let m = load(10 * S, "0 8 8 2 3");
        assert_close(eval(StdvarOverTime, &m, M, 2 * M, &[]), 10.56);
        assert!((eval(StddevOverTime, &m, M, 2 * M, &[]).unwrap() - 3.249615).abs() < 1e-6);
        let same = load(10 * S, "1.5990505637277868x2");
        assert_eq!(eval(StdvarOverTime, &same, 55 * S, M, &[]), Some(0.0));
        assert_eq!(eval(StddevOverTime, &same, 55 * S, M, &[]), Some(0.0));
        for (spec, at, range, want) in [
            ("4 6 2 1 999 1 2", 70 * S, 70 * S, 1.0),
            ("1 2 3 4 5", 40 * S, 50 * S, 1.0),
            ("7 7 7 7 7", 40 * S, 50 * S, 0.0),
            ("5", 0, 10 * S, 0.0),
            ("1 2 NaN 4", 30 * S, 40 * S, f64::NAN),
        ] {
            assert_close(eval(MadOverTime, &load(10 * S, spec), at, range, &[]), want);
        }
    }

    #[test]
    fn extremes_and_their_timestamps() {
        let m = load(10_053, "1 2 3 0 5 6 2 1 4");
        assert_close(eval(TsOfMinOverTime, &m, 90 * S, 90 * S, &[]), 30.159);
        assert_close(eval(TsOfMaxOverTime, &m, 90 * S, 90 * S, &[]), 50.265);
        let last = load(10_053, "1 2 3 _ _");
        assert_close(eval(TsOfLastOverTime, &last, 95 * S, 90 * S, &[]), 20.106);
        let first = load(10_053, "_ _ 1 2 3 _ _");
        assert_close(eval(TsOfFirstOverTime, &first, 95 * S, 90 * S, &[]), 20.106);
        assert_eq!(eval(TsOfFirstOverTime, &first, 15 * S, 90 * S, &[]), None);
        // Ties: the last minimum and maximum win for the timestamp.
        let ties = load(1_700, "3 1 3 1");
        assert_close(eval(TsOfMinOverTime, &ties, 10 * S, 10 * S, &[]), 5.1);
        assert_close(eval(TsOfMaxOverTime, &ties, 10 * S, 10 * S, &[]), 3.4);
        let at = M;
        for (spec, min, max, first, last) in [
            ("2 0 3", 0.0, 3.0, 2.0, 3.0),
            ("2 0 NaN", 0.0, 2.0, 2.0, f64::NAN),
            ("2 NaN 1", 1.0, 2.0, 2.0, 1.0),
            ("NaN 0 1", 0.0, 1.0, f64::NAN, 1.0),
            ("NaN NaN NaN", f64::NAN, f64::NAN, f64::NAN, f64::NAN),
            ("_ 5 2 _ 4 _", 2.0, 5.0, 5.0, 4.0),
        ] {
            let s = load(10 * S, spec);
            assert_close(eval(MinOverTime, &s, at, 2 * M, &[]), min);
            assert_close(eval(MaxOverTime, &s, at, 2 * M, &[]), max);
            assert_close(eval(FirstOverTime, &s, at, 2 * M, &[]), first);
            assert_close(eval(LastOverTime, &s, at, 2 * M, &[]), last);
            assert_close(eval(CountOverTime, &s, at, 2 * M, &[]), 3.0);
            assert_close(eval(PresentOverTime, &s, at, 2 * M, &[]), 1.0);
        }
    }

    #[test]
    fn quantile_over_time_interpolates_between_ranks() {
        let two = load(10 * S, "0 1");
        let three = load(10 * S, "0 1 2");
        let uneven = load(10 * S, "0 1 4");
        let inf = f64::INFINITY;
        for (q, want) in [
            (0.0, [0.0, 0.0, 0.0]),
            (0.5, [0.5, 1.0, 1.0]),
            (0.75, [0.75, 1.5, 2.5]),
            (0.8, [0.8, 1.6, 2.8]),
            (1.0, [1.0, 2.0, 4.0]),
            (-1.0, [-inf, -inf, -inf]),
            (2.0, [inf, inf, inf]),
        ] {
            for (s, w) in [&two, &three, &uneven].into_iter().zip(want) {
                let (got, ann) = eval_offset(QuantileOverTime, s, M, 2 * M, 0, &[q]);
                assert_close(got, w);
                assert_eq!(ann.warnings.len(), usize::from(!(0.0..=1.0).contains(&q)));
            }
        }
        // Unordered input with a NaN: NaN sorts below every number.
        let p = load(1_111, "7 NaN -2.5 9 4");
        assert!(eval(QuantileOverTime, &p, 6 * S, 10 * S, &[0.0]).is_some_and(f64::is_nan));
        assert_close(eval(QuantileOverTime, &p, 6 * S, 10 * S, &[0.5]), 4.0);
        assert_close(
            eval(QuantileOverTime, &p, 6 * S, 10 * S, &[0.9]),
            7.0 * 0.4 + 9.0 * 0.6,
        );
        let (got, ann) = eval_offset(QuantileOverTime, &p, 6 * S, 10 * S, 0, &[f64::NAN]);
        assert!(got.is_some_and(f64::is_nan));
        assert!(
            ann.warnings
                .contains("PromQL warning: quantile value should be between 0 and 1, got NaN")
        );
    }

    #[test]
    fn empty_and_single_point_windows() {
        let one = [FPoint { t: 4_321, f: -7.25 }];
        let all = [
            Rate,
            Increase,
            Delta,
            Irate,
            Idelta,
            Deriv,
            Resets,
            Changes,
            AvgOverTime,
            SumOverTime,
            CountOverTime,
            MinOverTime,
            MaxOverTime,
            LastOverTime,
            FirstOverTime,
            TsOfFirstOverTime,
            TsOfLastOverTime,
            TsOfMinOverTime,
            TsOfMaxOverTime,
            PresentOverTime,
            StddevOverTime,
            StdvarOverTime,
            MadOverTime,
        ];
        for f in all {
            assert_eq!(eval(f, &[], 10 * S, 10 * S, &[]), None, "{f:?}");
            let got = eval(f, &one, 10 * S, 10 * S, &[]);
            let want = match f {
                Rate | Increase | Delta | Irate | Idelta | Deriv => None,
                Resets | Changes | StddevOverTime | StdvarOverTime | MadOverTime => Some(0.0),
                CountOverTime | PresentOverTime => Some(1.0),
                TsOfFirstOverTime | TsOfLastOverTime | TsOfMinOverTime | TsOfMaxOverTime => {
                    Some(4.321)
                }
                _ => Some(-7.25),
            };
            assert_eq!(got, want, "{f:?}");
        }
        assert_eq!(
            eval(QuantileOverTime, &one, 10 * S, 10 * S, &[0.3]),
            Some(-7.25)
        );
        assert_eq!(eval(PredictLinear, &one, 10 * S, 10 * S, &[60.0]), None);
        // Two points with the same timestamp cannot give an instant rate.
        let same_t = [FPoint { t: 5, f: 1.0 }, FPoint { t: 5, f: 2.0 }];
        assert_eq!(eval(Irate, &same_t, 10, 10, &[]), None);
    }

    #[test]
    fn non_counter_names_raise_an_info_for_rate_and_increase() {
        let s = load(15 * S, "3 7 12");
        let gauge = Labels::new([("__name__", "queue_depth"), ("job", "q")]).unwrap();
        let anonymous = Labels::new([("job", "q")]).unwrap();
        let run = |f, metric: &Labels, points: &[FPoint]| {
            let mut ann = Annotations::default();
            let w = Window {
                points,
                start: 0,
                end: 40 * S,
                eval_t: 40 * S,
            };
            let v = eval_range(f, &w, &[], &mut ann);
            if v.is_some() {
                series_annotations(f, metric, &mut ann);
            }
            (v, ann.infos)
        };
        let info = "PromQL info: metric might not be a counter, name does not end in \
                    _total/_sum/_count/_bucket: \"queue_depth\"";
        for f in [Rate, Increase] {
            let (v, infos) = run(f, &gauge, &s);
            assert!(v.is_some());
            assert_eq!(infos.into_iter().collect::<Vec<_>>(), [info]);
            assert!(run(f, &anonymous, &s).1.is_empty());
            // No output, no info.
            assert!(run(f, &gauge, &s[..1]).1.is_empty());
        }
        for f in [Irate, Delta, Deriv, SumOverTime] {
            assert!(run(f, &gauge, &s).1.is_empty(), "{f:?}");
        }
    }

    #[test]
    fn names_resolve_to_range_functions() {
        for (name, f) in [
            ("rate", Rate),
            ("quantile_over_time", QuantileOverTime),
            ("ts_of_max_over_time", TsOfMaxOverTime),
            ("mad_over_time", MadOverTime),
            ("double_exponential_smoothing", DoubleExponentialSmoothing),
        ] {
            assert_eq!(range_function(name), Some(f));
        }
        for name in ["absent_over_time", "abs", "holt_winters", "Rate"] {
            assert_eq!(range_function(name), None);
        }
        assert!(LastOverTime.keeps_name() && FirstOverTime.keeps_name());
        assert!(!TsOfLastOverTime.keeps_name() && !Rate.keeps_name());
    }

    #[test]
    fn kahan_keeps_small_terms_next_to_large_ones() {
        let (mut s, mut c) = (0.0, 0.0);
        for v in [1e16, 1.0, 1.0, -1e16] {
            (s, c) = kahan_inc(v, s, c);
        }
        assert_eq!(s + c, 2.0);
        assert_eq!(range_seconds(1_001), 1.001);
        assert_eq!(range_seconds(-2_500), -2.5);
    }

    mod props {
        use super::super::super::testutil::*;
        use super::super::super::{RangeFn::*, *};
        use super::super::quantile;
        use proptest::prelude::*;

        /// Up to 40 points with strictly increasing timestamps from 1 ms on, values from `value`.
        fn points(value: impl Strategy<Value = f64>) -> impl Strategy<Value = Vec<FPoint>> {
            prop::collection::vec((1_i64..5_000, value), 1..40).prop_map(|steps| {
                let mut t = 0;
                steps
                    .into_iter()
                    .map(|(dt, f)| {
                        t += dt;
                        FPoint { t, f }
                    })
                    .collect()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            #[test]
            fn selection_quantile_equals_sorting(
                values in prop::collection::vec(
                    prop_oneof![9 => -1e3..1e3_f64, 1 => Just(f64::NAN)], 1..50),
                q in 0.0..=1.0_f64,
            ) {
                let mut sorted = values.clone();
                sorted.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
                    (true, true) => std::cmp::Ordering::Equal,
                    (true, false) => std::cmp::Ordering::Less,
                    (false, true) => std::cmp::Ordering::Greater,
                    _ => a.partial_cmp(b).unwrap(),
                });
                let n = sorted.len() as f64;
                let rank = q * (n - 1.0);
                let lo = rank.floor() as usize;
                let hi = (lo + 1).min(sorted.len() - 1);
                let w = rank - rank.floor();
                let want = sorted[lo] * (1.0 - w) + sorted[hi] * w;
                let mut buf = values;
                let got = quantile(q, &mut buf);
                prop_assert!(close(got, want), "{got} vs {want}");
            }

            #[test]
            fn counter_increase_stays_between_raw_and_full_range(
                mut p in points(0.0..1e6_f64),
                range in 60_000_i64..200_000,
            ) {
                // Make it a counter: sort values so there is no reset.
                let mut vs: Vec<f64> = p.iter().map(|q| q.f).collect();
                vs.sort_by(f64::total_cmp);
                for (q, v) in p.iter_mut().zip(vs) {
                    q.f = v;
                }
                let end = p[p.len() - 1].t + 1_000;
                let got = eval(Increase, &p, end, range, &[]);
                let inside: Vec<FPoint> =
                    p.iter().copied().filter(|q| q.t > end - range).collect();
                if inside.len() < 2 {
                    prop_assert_eq!(got, None);
                } else {
                    let got = got.unwrap();
                    let raw = inside[inside.len() - 1].f - inside[0].f;
                    let sampled = (inside[inside.len() - 1].t - inside[0].t) as f64;
                    prop_assert!(got >= raw * (1.0 - 1e-12), "{got} < {raw}");
                    prop_assert!(got <= raw * range as f64 / sampled * (1.0 + 1e-12));
                    let rate = eval(Rate, &p, end, range, &[]).unwrap();
                    prop_assert!(close(rate * range as f64 / 1000.0, got));
                }
            }

            #[test]
            fn the_reset_scan_finds_exactly_the_decreases(
                p in points(prop_oneof![
                    6 => (0_i32..50).prop_map(f64::from),
                    3 => 0.0..1e6_f64,
                    1 => Just(f64::NAN),
                ]),
            ) {
                // `rate` skips its reset loop when the scan says no value is below its
                // predecessor: it must say so exactly when the loop would add nothing (NaN
                // compares below nothing, as in the loop).
                prop_assert_eq!(
                    super::super::has_decrease(&p),
                    p.windows(2).any(|w| w[1].f < w[0].f)
                );
            }

            #[test]
            fn a_rate_told_its_series_has_no_reset_answers_as_one_that_scans_each_window(
                p in points(prop_oneof![
                    6 => (0_i32..50).prop_map(f64::from),
                    3 => 0.0..1e6_f64,
                    1 => Just(f64::NAN),
                    1 => Just(f64::INFINITY),
                ]),
                range in 1_i64..30_000,
                step in 1_i64..7_000,
            ) {
                // Every window of the series, as the evaluator walks them: `extrapolated`
                // with the series' own reset hint is `eval_range`, bit for bit.
                let may_reset = has_decrease(&p);
                let span = Span::of(range);
                let mut ann = Annotations::default();
                let mut end = p[0].t;
                while end <= p[p.len() - 1].t + range {
                    let start = end - range;
                    let lo = p.partition_point(|q| q.t <= start);
                    let hi = p.partition_point(|q| q.t <= end);
                    let w = Window { points: &p[lo..hi], start, end, eval_t: end };
                    for (f, counter, rate) in
                        [(Rate, true, true), (Increase, true, false), (Delta, false, false)]
                    {
                        let want = eval_range(f, &w, &[], &mut ann).map(f64::to_bits);
                        let got = extrapolated_rate(&w, counter, rate, may_reset, span).map(f64::to_bits);
                        prop_assert_eq!(got, want, "{:?} over ({}, {}]", f, start, end);
                    }
                    end += step;
                }
            }

            #[test]
            fn sums_of_small_integers_are_exact(p in points((-1000_i32..1000).prop_map(f64::from))) {
                let want: f64 = p.iter().map(|q| q.f).sum();
                let end = p[p.len() - 1].t;
                prop_assert_eq!(eval(SumOverTime, &p, end, end + 1, &[]), Some(want));
                let avg = eval(AvgOverTime, &p, end, end + 1, &[]).unwrap();
                prop_assert!(close(avg, want / p.len() as f64));
                prop_assert_eq!(
                    eval(CountOverTime, &p, end, end + 1, &[]),
                    Some(p.len() as f64)
                );
            }
        }
    }
}
