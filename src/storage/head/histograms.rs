//! A head series' histogram samples: kept beside its float samples, in chunks of their own,
//! only for series that ever had one (a float-only series carries one empty pointer).
//!
//! A series' float and histogram samples never share a timestamp, and every sample is newer
//! than the series' newest sample of either kind when it is appended (WAL replay relaxes that
//! to each kind's own order, see [`SeriesState::append_histogram_replayed`]).

use std::sync::atomic::Ordering;

use crate::model::histogram::{FloatHistogram, Histogram};
use crate::model::{HistogramSample, HistogramValue, STALE_NAN};

use super::series::{HEAD_CHUNK_SAMPLES, Reject, SeriesState};

/// A closed chunk of histogram samples.
pub(crate) struct HistChunk {
    pub mint: i64,
    pub maxt: i64,
    pub samples: Box<[HistogramSample]>,
}

/// The histogram side of a series.
#[derive(Default)]
pub(crate) struct HistState {
    /// Closed chunks, oldest first.
    pub closed: Vec<HistChunk>,
    /// Samples since the last cut, time-ordered.
    pub open: Vec<HistogramSample>,
    /// Newest committed histogram's time, `i64::MIN` before the first.
    pub max_t: i64,
    /// Time of a reserved histogram in flight (its place is the series' `pending_t`),
    /// `i64::MIN` when none.
    pub pending_t: i64,
    /// That reserved histogram, for the duplicate check of a concurrent batch.
    pub pending: Option<HistogramValue>,
    /// True when the newest committed histogram is a float histogram: a float staleness
    /// marker after it becomes a float histogram marker.
    pub last_float: bool,
}

impl HistState {
    fn new() -> Self {
        HistState {
            max_t: i64::MIN,
            pending_t: i64::MIN,
            ..HistState::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_empty()
    }

    pub fn num_chunks(&self) -> usize {
        self.closed.len() + usize::from(!self.open.is_empty())
    }

    pub fn min_time(&self) -> Option<i64> {
        self.closed
            .first()
            .map(|c| c.mint)
            .or(self.open.first().map(|s| s.t))
    }

    /// The newest committed histogram, if the series still holds it.
    fn last(&self) -> Option<&HistogramSample> {
        self.open
            .last()
            .or_else(|| self.closed.last().and_then(|c| c.samples.last()))
    }

    /// Appends the samples with `mint <= t <= maxt` to `out`, in time order.
    pub fn samples_in(&self, mint: i64, maxt: i64, out: &mut Vec<HistogramSample>) {
        let inside = |s: &&HistogramSample| s.t >= mint && s.t <= maxt;
        for c in &self.closed {
            if c.maxt < mint || c.mint > maxt {
                continue;
            }
            out.extend(c.samples.iter().filter(inside).cloned());
        }
        out.extend(self.open.iter().filter(inside).cloned());
    }

    /// Drops every sample older than `t`.
    fn truncate_before(&mut self, t: i64) {
        self.closed.retain_mut(|c| {
            if c.maxt < t {
                return false;
            }
            if c.mint < t {
                let kept: Vec<HistogramSample> =
                    c.samples.iter().filter(|s| s.t >= t).cloned().collect();
                c.mint = kept.first().map_or(c.mint, |s| s.t);
                c.samples = kept.into_boxed_slice();
            }
            true
        });
        self.open.retain(|s| s.t >= t);
    }
}

/// A staleness marker of the same kind as `float` says.
fn stale_marker(float: bool) -> HistogramValue {
    if float {
        HistogramValue::Float(Box::new(FloatHistogram {
            sum: STALE_NAN,
            ..FloatHistogram::default()
        }))
    } else {
        HistogramValue::Int(Box::new(Histogram {
            sum: STALE_NAN,
            ..Histogram::default()
        }))
    }
}

impl SeriesState {
    /// True when the series' newest sample, reserved or committed, is a histogram.
    pub(crate) fn newest_is_histogram(&self) -> bool {
        let Some(h) = &self.hist else {
            return false;
        };
        if self.pending_t > self.max_t {
            h.pending_t == self.pending_t
        } else {
            h.max_t != i64::MIN && h.max_t == self.max_t
        }
    }

    /// The staleness marker a float staleness marker becomes after a histogram: a histogram
    /// of the newest one's kind (reserved or committed) whose sum is the stale NaN.
    pub fn stale_histogram(&self) -> HistogramValue {
        let float = match &self.hist {
            Some(h) if self.pending_t > self.max_t => {
                matches!(h.pending, Some(HistogramValue::Float(_)))
            }
            Some(h) => h.last_float,
            None => false,
        };
        stale_marker(float)
    }

    /// Checks a histogram sample against the append rules (as [`SeriesState::reserve`] does a
    /// float) and, if accepted, reserves its place.
    pub fn reserve_histogram(
        &mut self,
        t: i64,
        h: &HistogramValue,
        min_valid: i64,
    ) -> Result<(), Reject> {
        if self.removed {
            return Err(Reject::Removed);
        }
        let pending = self.pending_t > self.max_t;
        let newest = if pending { self.pending_t } else { self.max_t };
        if newest != i64::MIN {
            if t == newest {
                if !self.newest_is_histogram() {
                    return Err(Reject::Duplicate);
                }
                let same = match &self.hist {
                    Some(hs) if pending => hs.pending.as_ref() == Some(h),
                    Some(hs) => hs.last().is_some_and(|s| s.h == *h),
                    None => false,
                };
                return Err(if same {
                    Reject::DuplicateIgnored
                } else {
                    Reject::Duplicate
                });
            }
            if t < newest {
                return Err(Reject::OutOfOrder);
            }
        }
        if t < min_valid {
            return Err(Reject::OutOfBounds);
        }
        let hs = self.hist.get_or_insert_with(|| Box::new(HistState::new()));
        hs.pending_t = t;
        hs.pending = Some(h.clone());
        self.pending_t = t;
        Ok(())
    }

    /// Gives back a histogram reservation that will not be applied.
    pub fn unreserve_histogram(&mut self, t: i64) {
        if let Some(h) = &mut self.hist
            && h.pending_t == t
        {
            h.pending_t = i64::MIN;
            h.pending = None;
        }
        self.unreserve(t);
    }

    /// Appends a reserved histogram. Returns false if a concurrent batch got a newer sample
    /// in first.
    pub fn apply_histogram(&mut self, t: i64, h: HistogramValue) -> bool {
        if t <= self.max_t {
            if let Some(hs) = &mut self.hist
                && hs.pending_t == t
            {
                hs.pending_t = i64::MIN;
                hs.pending = None;
            }
            return false;
        }
        self.max_t = t;
        self.push_histogram(t, h);
        true
    }

    fn push_histogram(&mut self, t: i64, h: HistogramValue) {
        let store = self.store.clone();
        let hs = self.hist.get_or_insert_with(|| Box::new(HistState::new()));
        if hs.pending_t == t {
            hs.pending_t = i64::MIN;
            hs.pending = None;
        }
        if hs.open.is_empty() {
            store.count.fetch_add(1, Ordering::Relaxed);
        }
        hs.last_float = matches!(h, HistogramValue::Float(_));
        hs.max_t = hs.max_t.max(t);
        hs.open.push(HistogramSample { t, h });
        if hs.open.len() >= HEAD_CHUNK_SAMPLES {
            let samples = std::mem::take(&mut hs.open).into_boxed_slice();
            let (mint, maxt) = (samples[0].t, samples[samples.len() - 1].t);
            hs.closed.push(HistChunk {
                mint,
                maxt,
                samples,
            });
        }
    }

    /// Appends a histogram during WAL replay. Each kind keeps its own order here: a commit's
    /// float samples are logged before its histograms, and a checkpoint carries a series'
    /// floats before its histograms, so a series that switched kinds replays out of overall
    /// order. A histogram at the time of the newest float is still refused.
    pub fn append_histogram_replayed(&mut self, t: i64, h: HistogramValue) -> Result<(), Reject> {
        if t == self.max_t && !self.newest_is_histogram() {
            return Err(Reject::Duplicate);
        }
        if let Some(hs) = &self.hist
            && hs.max_t != i64::MIN
        {
            if t == hs.max_t {
                return Err(if hs.last().is_some_and(|s| s.h == h) {
                    Reject::DuplicateIgnored
                } else {
                    Reject::Duplicate
                });
            }
            if t < hs.max_t {
                return Err(Reject::OutOfOrder);
            }
        }
        self.max_t = self.max_t.max(t);
        self.push_histogram(t, h);
        Ok(())
    }

    /// Appends the histogram samples with `mint <= t <= maxt` to `out`, in time order.
    pub fn histograms_in(&self, mint: i64, maxt: i64, out: &mut Vec<HistogramSample>) {
        if let Some(h) = &self.hist {
            h.samples_in(mint, maxt, out);
        }
    }

    /// Drops every histogram sample older than `t`; returns how many chunks went.
    pub(crate) fn truncate_histograms_before(&mut self, t: i64) -> usize {
        let Some(h) = &mut self.hist else {
            return 0;
        };
        let before = h.num_chunks();
        h.truncate_before(t);
        before.saturating_sub(h.num_chunks())
    }
}
