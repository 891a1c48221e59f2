//! One scrape's body into one append batch: target labels and `honor_labels`, metric
//! relabeling, limits, timestamps, staleness markers and the synthetic per-scrape series.
//!
//! A scrape is all or nothing: a parse error, a breached limit or a failed fetch stores none of
//! the body's samples, only `up` = 0, the other synthetic series, and staleness markers for what
//! the previous scrape stored. The loop that schedules scrapes owns one [`ScrapeState`] per
//! target; this module never does I/O besides the storage commit.

use std::sync::Arc;

use crate::model::histogram::{
    ClassicHistogram, HistogramError, HistogramValue, MAX_SCHEMA, MIN_SCHEMA, is_exponential_schema,
};
use crate::model::{Labels, LabelsBuilder, METRIC_NAME, STALE_NAN};
use crate::relabel::{self, Rule};
use crate::scrape::metadata::{TargetMetadata, Tracker};
use crate::scrape::parse::protobuf::{ProtoItem, ProtoOptions, ProtoParser, ProtoValue};
use crate::scrape::parse::{Entry, Format, MetricType, Parser, SampleEntry};
use crate::scrape::series_cache::SeriesCache;
use crate::storage::{Appender, CommitStats, Db, SeriesHandle, StorageError};

/// Per-target limits; zero means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most samples one scrape may keep after metric relabeling.
    pub sample_limit: usize,
    /// Most labels one series may have.
    pub label_limit: usize,
    /// Longest label name.
    pub label_name_length_limit: usize,
    /// Longest label value.
    pub label_value_length_limit: usize,
    /// Most buckets of a native histogram (`native_histogram_bucket_limit`): more are merged
    /// by lowering the schema; one that cannot fit fails the scrape.
    pub bucket_limit: usize,
}

/// How a target's samples become series.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Keep scraped labels that clash with target labels (else they become `exported_*`).
    pub honor_labels: bool,
    /// Use timestamps from the body when present (else the scrape time).
    pub honor_timestamps: bool,
    /// Limits that fail the scrape when breached.
    pub limits: Limits,
    /// `metric_relabel_configs`, validated.
    pub metric_relabel: Vec<Rule>,
    /// Which parts of histograms a protobuf body gives (`scrape_native_histograms`,
    /// `always_scrape_classic_histograms`, `convert_classic_histograms_to_nhcb`).
    pub histograms: ProtoOptions,
    /// Finest schema stored (`native_histogram_min_bucket_factor`); `None` keeps schema 8.
    pub max_schema: Option<i32>,
}

/// What a scrape stored, for the target's state and the synthetic series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScrapeReport {
    /// The scrape succeeded.
    pub up: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Samples in the body.
    pub samples_scraped: u64,
    /// Samples left after metric relabeling.
    pub samples_post_metric_relabeling: u64,
    /// Series this target had not stored before (new to its cache).
    pub series_added: u64,
    /// Storage's verdict on the batch.
    pub commit: CommitStats,
    /// Why the body was not stored, when the scrape failed.
    pub failure: Option<Failure>,
    /// Samples in a failed scrape's body, none of them stored: after a breached limit the rest
    /// of the body is counted too; after a parse error, those before it.
    pub samples_dropped: u64,
    /// The target's metric metadata as of its last successful scrape (shared, not copied).
    pub metadata: Arc<TargetMetadata>,
}

/// Why a scrape's body was not stored, for self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// The target could not be fetched (connection, status, timeout, size).
    Fetch,
    /// The body does not parse, or holds an invalid label.
    Parse,
    /// More samples than `sample_limit`.
    SampleLimit,
    /// A series over `label_limit` or a label length limit.
    LabelLimit,
    /// A native histogram with more buckets than `native_histogram_bucket_limit` even at
    /// the coarsest schema.
    BucketLimit,
    /// Storing the batch failed.
    Storage,
}

impl Failure {
    /// Every kind, in a fixed order.
    pub const ALL: [Failure; 6] = [
        Failure::Fetch,
        Failure::Parse,
        Failure::SampleLimit,
        Failure::LabelLimit,
        Failure::BucketLimit,
        Failure::Storage,
    ];

    /// A short snake_case name, as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Fetch => "fetch",
            Failure::Parse => "parse_error",
            Failure::SampleLimit => "sample_limit",
            Failure::LabelLimit => "label_limit",
            Failure::BucketLimit => "bucket_limit",
            Failure::Storage => "storage",
        }
    }
}

/// Why `parse_into` gave up on a body.
struct Abandon {
    failure: Failure,
    message: String,
}

impl Abandon {
    /// Turns an error into an abandonment for `failure`, keeping its text for the target.
    fn on<E: std::fmt::Display>(failure: Failure) -> impl FnOnce(E) -> Abandon {
        move |e| Abandon {
            failure,
            message: e.to_string(),
        }
    }
}

/// What a target's cache keeps per series text: the stored series, or `None` when metric
/// relabeling dropped it, and the [`SEEN`], [`TRACK`] and [`STORED`] flags.
#[derive(Default)]
struct Cached {
    /// The stored series (its labels are the series' own: the cache keeps no copy).
    series: Option<SeriesHandle>,
    flags: u8,
}

/// The current scrape's body holds the series.
const SEEN: u8 = 1;
/// The current scrape's sample carried no explicit timestamp.
const TRACK: u8 = 2;
/// The last successful scrape stored the series without an explicit timestamp, so it gets a
/// staleness marker when it goes (series with their own timestamps get none, as in
/// Prometheus).
const STORED: u8 = 4;

/// A target's memory between scrapes: the series it produced (keyed by their text in the body,
/// so unchanged series skip label parsing and relabeling) and which were stored last time.
#[derive(Default)]
pub struct ScrapeState {
    cache: SeriesCache<Cached>,
    /// The report series of the last scrape and the target they were made for, so the next
    /// scrape of the same target appends them by handle.
    report: Option<(Labels, Vec<SeriesHandle>)>,
    /// TYPE, HELP and UNIT lines of the last successful scrape.
    metadata: Tracker,
}

/// What every sample of one scrape shares.
struct Ctx<'a> {
    target: &'a Labels,
    t: i64,
    opts: &'a IngestOptions,
}

const REPORT_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Target labels merged into scraped labels, as Prometheus does: with `honor_labels` the
/// scraped value wins; without, a clashing scraped label is kept as `exported_<name>` (prefixed
/// again while that name is taken too). Empty target values leave the label unset.
fn merge_target_labels(scraped: &Labels, target: &Labels, honor: bool) -> Labels {
    let mut b = scraped.to_builder();
    for (n, v) in target.iter() {
        let existing = scraped.get(n);
        if honor {
            if existing.is_none() {
                b.set(n, v);
            }
            continue;
        }
        if let Some(old) = existing {
            let mut name = format!("exported_{n}");
            while scraped.get(&name).is_some() {
                name = format!("exported_{name}");
            }
            b.set(&name, old);
        }
        b.set(n, v);
    }
    // Names come from valid label sets; building cannot fail on them.
    b.build().unwrap_or_else(|_| scraped.clone())
}

/// A breached limit that fails the scrape; `Display` is Prometheus's text (names and values
/// cut to their first 50 characters, as Prometheus shows them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum LimitError {
    /// More samples after metric relabeling than `sample_limit`.
    #[error("sample limit exceeded")]
    Samples,
    /// A series with more labels than `label_limit`.
    #[error("label_limit exceeded (metric: {metric}, number of labels: {labels}, limit: {limit})")]
    Labels {
        /// The series' metric name.
        metric: String,
        /// Its number of labels, `__name__` included.
        labels: usize,
        /// The limit.
        limit: usize,
    },
    /// A label name longer than `label_name_length_limit`.
    #[error(
        "label_name_length_limit exceeded (metric: {metric}, label name: {name}, length: {length}, limit: {limit})"
    )]
    NameLength {
        /// The series' metric name.
        metric: String,
        /// The label name.
        name: String,
        /// Its length in bytes.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// A label value longer than `label_value_length_limit`.
    #[error(
        "label_value_length_limit exceeded (metric: {metric}, label name: {name}, value: {value:?}, length: {length}, limit: {limit})"
    )]
    ValueLength {
        /// The series' metric name.
        metric: String,
        /// The label's name.
        name: String,
        /// The value.
        value: String,
        /// Its length in bytes.
        length: usize,
        /// The limit.
        limit: usize,
    },
}

/// The first 50 characters of `s`, as Prometheus quotes names and values in limit errors.
fn shown(s: &str) -> String {
    s.chars().take(50).collect()
}

fn check_limits(labels: &Labels, l: &Limits) -> Result<(), LimitError> {
    let metric = || shown(labels.metric_name().unwrap_or(""));
    if l.label_limit > 0 && labels.len() > l.label_limit {
        return Err(LimitError::Labels {
            metric: metric(),
            labels: labels.len(),
            limit: l.label_limit,
        });
    }
    for (n, v) in labels.iter() {
        if l.label_name_length_limit > 0 && n.len() > l.label_name_length_limit {
            return Err(LimitError::NameLength {
                metric: metric(),
                name: shown(n),
                length: n.len(),
                limit: l.label_name_length_limit,
            });
        }
        if l.label_value_length_limit > 0 && v.len() > l.label_value_length_limit {
            return Err(LimitError::ValueLength {
                metric: metric(),
                name: shown(n),
                value: shown(v),
                length: v.len(),
                limit: l.label_value_length_limit,
            });
        }
    }
    Ok(())
}

fn report_labels(target: &Labels, name: &str) -> Labels {
    let mut b: LabelsBuilder = target.to_builder();
    b.set(METRIC_NAME, name);
    b.build().unwrap_or_else(|_| target.clone())
}

/// A sample's value on its way to storage.
enum Value {
    Float(f64),
    Histogram(HistogramValue),
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

/// Appends through the cached handle; a series garbage collection removed is found again (or
/// created) by its labels, and the handle replaced.
fn append(
    app: &mut Appender<'_>,
    series: &mut SeriesHandle,
    t: i64,
    v: impl Into<Value>,
) -> Result<(), StorageError> {
    let found = match v.into() {
        Value::Float(v) => match app.append_handle(series, t, v) {
            Err(StorageError::UnknownRef(_)) => app.append_with_handle(&series.labels(), t, v)?,
            r => return r,
        },
        // The appender keeps the histogram it is given even when it refuses the handle, so a
        // copy is kept for that rare case (a series collected while its target still has it).
        Value::Histogram(h) => match app.append_histogram_handle(series, t, h.clone()) {
            Err(StorageError::UnknownRef(_)) => {
                app.append_histogram_with_handle(&series.labels(), t, h)?
            }
            r => return r,
        },
    };
    *series = found;
    Ok(())
}

/// Appends the first sample of a series this target's cache did not know.
fn append_new(
    app: &mut Appender<'_>,
    labels: &Labels,
    t: i64,
    v: Value,
) -> Result<SeriesHandle, StorageError> {
    match v {
        Value::Float(v) => app.append_with_handle(labels, t, v),
        Value::Histogram(h) => app.append_histogram_with_handle(labels, t, h),
    }
}

/// A refused histogram is the body's fault, not storage's.
fn append_failure(e: StorageError) -> Abandon {
    let failure = match e {
        StorageError::InvalidHistogram(_) => Failure::Parse,
        _ => Failure::Storage,
    };
    Abandon::on(failure)(e)
}

/// One sample of the body: through the cache to its series (labels built, relabeled and
/// checked only for a series text not seen before), then the sample limit.
#[allow(clippy::too_many_arguments)]
#[inline]
fn ingest_sample(
    cache: &mut SeriesCache<Cached>,
    app: &mut Appender<'_>,
    key: &str,
    timestamp: Option<i64>,
    labels: impl FnOnce() -> Result<Labels, Abandon>,
    v: ProtoValue,
    ctx: &Ctx<'_>,
    report: &mut ScrapeReport,
) -> Result<(), Abandon> {
    let opts = ctx.opts;
    report.samples_scraped += 1;
    let (ts, track) = match timestamp {
        Some(ts) if opts.honor_timestamps => (ts, 0),
        _ => (ctx.t, TRACK),
    };
    // Only a series kept after relabeling is limited and checked, as in Prometheus.
    let value = |v: ProtoValue| -> Result<Value, Abandon> {
        Ok(match v {
            ProtoValue::Float(v) => Value::Float(v),
            ProtoValue::Histogram(h) => Value::Histogram(prepare_histogram(h, key, opts)?),
        })
    };
    match cache.get_mut(key) {
        Some(Cached {
            series: None,
            flags,
        }) => {
            *flags |= SEEN;
            return Ok(());
        }
        Some(Cached {
            series: Some(series),
            flags,
        }) => {
            *flags = (*flags & STORED) | SEEN | track;
            append(app, series, ts, value(v)?).map_err(append_failure)?;
        }
        None => {
            let scraped = labels()?;
            let merged = merge_target_labels(&scraped, ctx.target, opts.honor_labels);
            let kept = relabel::process(&merged, &opts.metric_relabel)
                .filter(|l| l.metric_name().is_some());
            let Some(labels) = kept else {
                let dropped = Cached {
                    series: None,
                    flags: SEEN,
                };
                cache.insert(key, dropped);
                return Ok(());
            };
            check_limits(&labels, &opts.limits).map_err(Abandon::on(Failure::LabelLimit))?;
            let series = append_new(app, &labels, ts, value(v)?).map_err(append_failure)?;
            report.series_added += 1;
            let entry = Cached {
                series: Some(series),
                flags: SEEN | track,
            };
            cache.insert(key, entry);
        }
    }
    report.samples_post_metric_relabeling += 1;
    if opts.limits.sample_limit > 0
        && report.samples_post_metric_relabeling > opts.limits.sample_limit as u64
    {
        return Err(Abandon::on(Failure::SampleLimit)(LimitError::Samples));
    }
    Ok(())
}

/// A scraped native histogram made ready to store, as Prometheus's scrape appenders and head
/// do it: empty buckets dropped (`Compact(0)`, as its parser does), a schema finer than 8
/// (9..=52, reserved for future use) lowered to 8, the schema lowered to the job's finest
/// (`native_histogram_min_bucket_factor`), then lowered one step at a time while the buckets
/// exceed `native_histogram_bucket_limit` (a custom-bucket histogram, or one already at
/// schema -4, fails the scrape: "histogram bucket limit exceeded"); then validated, a
/// histogram breaking Prometheus's rules failing the scrape as unreadable.
fn prepare_histogram(
    mut h: HistogramValue,
    key: &str,
    opts: &IngestOptions,
) -> Result<HistogramValue, Abandon> {
    let invalid = |e: HistogramError| Abandon {
        failure: Failure::Parse,
        message: format!("invalid native histogram {}: {e}", shown_key(key)),
    };
    match &mut h {
        HistogramValue::Int(h) => {
            h.compact(0);
        }
        HistogramValue::Float(h) => {
            h.compact(0);
        }
    }
    let schema = h.schema();
    let finest = opts.max_schema.unwrap_or(MAX_SCHEMA).min(MAX_SCHEMA);
    if schema > finest && schema <= RESERVED_MAX_SCHEMA {
        reduce(&mut h, finest).map_err(invalid)?;
    }
    let limit = opts.limits.bucket_limit;
    if limit > 0 {
        while buckets(&h) > limit {
            let schema = h.schema();
            if !is_exponential_schema(schema) || schema <= MIN_SCHEMA {
                return Err(Abandon {
                    failure: Failure::BucketLimit,
                    message: "histogram bucket limit exceeded".into(),
                });
            }
            reduce(&mut h, schema - 1).map_err(invalid)?;
        }
    }
    match &h {
        HistogramValue::Int(h) => h.validate(),
        HistogramValue::Float(h) => h.validate(),
    }
    .map_err(invalid)?;
    Ok(h)
}

/// The largest schema Prometheus reserves for exponential buckets: finer ones than 8 are
/// lowered to 8 when stored.
const RESERVED_MAX_SCHEMA: i32 = 52;

fn reduce(h: &mut HistogramValue, schema: i32) -> Result<(), HistogramError> {
    match h {
        HistogramValue::Int(h) => h.reduce_resolution(schema),
        HistogramValue::Float(h) => h.reduce_resolution(schema),
    }
}

/// Positive and negative buckets, as Prometheus counts them for the bucket limit.
fn buckets(h: &HistogramValue) -> usize {
    match h {
        HistogramValue::Int(h) => h.positive_buckets.len() + h.negative_buckets.len(),
        HistogramValue::Float(h) => h.positive_buckets.len() + h.negative_buckets.len(),
    }
}

/// A protobuf series key (`len:text` parts) as `name{a="b"}`-ish text for messages.
fn shown_key(key: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = key;
    while let Some((n, tail)) = rest.split_once(':') {
        let Some(part) = n.parse::<usize>().ok().and_then(|n| tail.get(..n)) else {
            return shown(key);
        };
        parts.push(part);
        rest = &tail[part.len()..];
    }
    let Some((name, labels)) = parts.split_first() else {
        return shown(key);
    };
    let labels: Vec<String> = labels
        .chunks(2)
        .map(|p| format!("{}={:?}", p[0], p.get(1).copied().unwrap_or("")))
        .collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// The `_bucket`, `_count` and `_sum` samples of one classic histogram of a text or
/// OpenMetrics body, collected for `convert_classic_histograms_to_nhcb` into one custom-bucket
/// native histogram named by the family.
///
/// As Prometheus's text path does it: only a family declared `histogram` whose TYPE name is
/// the sample's name without its suffix is collected (gauge histograms are not converted); a
/// histogram ends at the first line that is not one of its samples with the same labels (`le`
/// aside), so a label set split by other lines gives one histogram per run; a bucket whose `le`
/// is not a number stays a plain sample. Buckets in any order, missing `+Inf`, missing `_count`
/// are the conversion's business (`ClassicHistogram`). Decisions of this project: the converted
/// sample takes the timestamp of the histogram's last line, and when the conversion fails the
/// classic samples are stored as they are (with `always_scrape_classic_histograms` they are
/// stored anyway) instead of being lost.
struct NhcbCollector<'a> {
    keep_classic: bool,
    /// The name of the last `# TYPE` line.
    family: String,
    /// The histogram being collected.
    open: Option<OpenNhcb<'a>>,
}

struct OpenNhcb<'a> {
    /// The series' labels: the family's name, no `le`.
    labels: Labels,
    hist: ClassicHistogram,
    timestamp: Option<i64>,
    /// Classic samples held back until the conversion is known to succeed (without
    /// `always_scrape_classic_histograms`).
    held: Vec<(&'a str, Option<i64>, Labels, f64)>,
}

/// Starts every converted series' cache key: no series text of a body starts with it, so a
/// converted series never shares a cache entry with a classic or plain one.
const NHCB_KEY_PREFIX: char = '\u{1}';

impl<'a> NhcbCollector<'a> {
    fn new(keep_classic: bool) -> Self {
        Self {
            keep_classic,
            family: String::new(),
            open: None,
        }
    }

    /// Takes the sample into a classic histogram when it is part of one (storing it now with
    /// `always_scrape_classic_histograms`); ends the histogram being collected when the sample
    /// is not part of it. False when the sample is the caller's to store.
    fn take(
        &mut self,
        s: &SampleEntry<'a>,
        cache: &mut SeriesCache<Cached>,
        app: &mut Appender<'_>,
        ctx: &Ctx<'_>,
        report: &mut ScrapeReport,
    ) -> Result<bool, Abandon> {
        let name = s.name();
        let suffix = [Part::Bucket, Part::Count, Part::Sum]
            .into_iter()
            .find_map(|p| name.strip_suffix(p.suffix()).map(|base| (p, base)));
        let Some((part, base)) = suffix.filter(|(_, base)| {
            s.kind() == MetricType::Histogram && !self.family.is_empty() && *base == self.family
        }) else {
            self.flush(cache, app, ctx, report)?;
            return Ok(false);
        };
        let labels = s.to_labels().map_err(Abandon::on(Failure::Parse))?;
        let mut b = labels.to_builder();
        b.remove("le");
        b.set(METRIC_NAME, base);
        let base_labels = b.build().map_err(Abandon::on(Failure::Parse))?;
        if self.open.as_ref().is_some_and(|o| o.labels != base_labels) {
            self.flush(cache, app, ctx, report)?;
        }
        let le = match part {
            Part::Bucket => match labels.get("le").and_then(|v| v.parse::<f64>().ok()) {
                Some(le) if !le.is_nan() => Some(le),
                // Not a bucket Prometheus can use: a plain sample, the histogram goes on.
                _ => return Ok(false),
            },
            _ => None,
        };
        let open = self.open.get_or_insert_with(|| OpenNhcb {
            labels: base_labels,
            hist: ClassicHistogram::new(),
            timestamp: None,
            held: Vec::new(),
        });
        let v = s.value();
        // The first error sticks in the histogram and fails its conversion.
        let _ = match (part, le) {
            (Part::Bucket, Some(le)) => open.hist.set_bucket(le, v),
            (Part::Count, _) => open.hist.set_count(v),
            _ => open.hist.set_sum(v),
        };
        open.timestamp = s.timestamp();
        if self.keep_classic {
            let parsed = || Ok(labels);
            ingest_sample(
                cache,
                app,
                s.series(),
                s.timestamp(),
                parsed,
                ProtoValue::Float(v),
                ctx,
                report,
            )?;
        } else {
            open.held.push((s.series(), s.timestamp(), labels, v));
        }
        Ok(true)
    }

    /// Ends the histogram being collected: stores its conversion, or its held classic samples
    /// when it cannot be converted.
    fn flush(
        &mut self,
        cache: &mut SeriesCache<Cached>,
        app: &mut Appender<'_>,
        ctx: &Ctx<'_>,
        report: &mut ScrapeReport,
    ) -> Result<(), Abandon> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let converted = open.hist.convert().ok().filter(|h| match h {
            HistogramValue::Int(h) => h.validate().is_ok(),
            HistogramValue::Float(h) => h.validate().is_ok(),
        });
        match converted {
            Some(h) => {
                let key = format!("{NHCB_KEY_PREFIX}{}", open.labels);
                let labels = open.labels;
                ingest_sample(
                    cache,
                    app,
                    &key,
                    open.timestamp,
                    || Ok(labels),
                    ProtoValue::Histogram(h),
                    ctx,
                    report,
                )
            }
            None => {
                for (key, ts, labels, v) in open.held {
                    let parsed = || Ok(labels);
                    ingest_sample(
                        cache,
                        app,
                        key,
                        ts,
                        parsed,
                        ProtoValue::Float(v),
                        ctx,
                        report,
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// Which series of a classic histogram a sample is.
#[derive(Clone, Copy)]
enum Part {
    Bucket,
    Count,
    Sum,
}

impl Part {
    fn suffix(self) -> &'static str {
        match self {
            Part::Bucket => "_bucket",
            Part::Count => "_count",
            Part::Sum => "_sum",
        }
    }
}

impl ScrapeState {
    /// Series texts the target's cache holds (those of its last successful scrape).
    pub fn cached_series(&self) -> usize {
        self.cache.len()
    }

    /// Stores one scrape of a target at time `t` (ms): `body` is the fetched body and its format,
    /// or the fetch error. Returns what was stored; a storage failure is the only error.
    pub fn ingest(
        &mut self,
        db: &Db,
        target: &Labels,
        body: Result<(&[u8], Format), String>,
        t: i64,
        duration_secs: f64,
        opts: &IngestOptions,
    ) -> Result<ScrapeReport, StorageError> {
        let mut report = ScrapeReport::default();
        // The future bound counts from the scrape's time: a body's own timestamps
        // (honor_timestamps) more than `MAX_AHEAD_MS` after it are refused.
        let mut app = db.appender_at(t);
        // The steady state appends to every cached series again, plus the report series.
        app.reserve(self.cache.len() + REPORT_SERIES.len());
        let ctx = Ctx { target, t, opts };
        let outcome = match body {
            Ok(body) => self.parse_into(&mut app, body, &ctx, &mut report),
            Err(message) => Err(Abandon {
                failure: Failure::Fetch,
                message,
            }),
        };
        let failed = outcome.is_err();
        if let Err(e) = outcome {
            // Nothing of the body is kept: start the batch again with only what a failure writes.
            app = db.appender_at(t);
            report = ScrapeReport {
                error: Some(e.message),
                failure: Some(e.failure),
                samples_dropped: report.samples_scraped,
                ..ScrapeReport::default()
            };
        } else {
            report.up = true;
        }
        if let Err(e) = self.end_vanished(&mut app, t, failed) {
            // Never in practice (a cached series is appended by its labels at worst); the
            // flags are half updated, so the next scrape starts from nothing.
            self.cache.clear();
            return Err(e);
        }
        let values = [
            if report.up { 1.0 } else { 0.0 },
            duration_secs,
            report.samples_scraped as f64,
            report.samples_post_metric_relabeling as f64,
            report.series_added as f64,
        ];
        match &mut self.report {
            Some((labels, handles)) if labels == target => {
                for (h, v) in handles.iter_mut().zip(values) {
                    append(&mut app, h, t, v)?;
                }
            }
            _ => {
                self.report = None;
                let mut handles = Vec::with_capacity(REPORT_SERIES.len());
                for (name, v) in REPORT_SERIES.iter().zip(values) {
                    let l = report_labels(target, name);
                    handles.push(app.append_with_handle(&l, t, v)?);
                }
                self.report = Some((target.clone(), handles));
            }
        }
        report.commit = app.commit()?;
        report.metadata = self.metadata.snapshot();
        Ok(report)
    }

    /// Series the previous scrape stored that this one lacks (all of them after a failure) end
    /// with a staleness marker; the flags move on to this scrape and series the body no longer
    /// holds leave the cache (all of them after a failure: the next success re-adds every
    /// series and counts them as added again).
    fn end_vanished(
        &mut self,
        app: &mut Appender<'_>,
        t: i64,
        failed: bool,
    ) -> Result<(), StorageError> {
        for c in self.cache.values_mut() {
            let seen = c.flags & SEEN != 0;
            let mut flags = c.flags & SEEN;
            if let Some(series) = &mut c.series {
                let track = c.flags & TRACK != 0;
                if c.flags & STORED != 0 && (failed || !seen || !track) {
                    append(app, series, t, STALE_NAN)?;
                }
                if !failed && seen && track {
                    flags |= STORED;
                }
            }
            c.flags = flags;
        }
        if failed {
            self.cache.clear();
        } else {
            self.cache.retain(|c| {
                let seen = c.flags & SEEN != 0;
                c.flags &= !SEEN;
                seen
            });
        }
        Ok(())
    }

    fn parse_into(
        &mut self,
        app: &mut Appender<'_>,
        (body, format): (&[u8], Format),
        ctx: &Ctx<'_>,
        report: &mut ScrapeReport,
    ) -> Result<(), Abandon> {
        // Every cached series is read once before the body is, so their cache misses overlap
        // instead of stalling one append at a time (see `SeriesHandle::warm`).
        let mut warm = 0usize;
        for c in self.cache.values_mut() {
            if let Some(series) = &c.series {
                warm = warm.wrapping_add(series.warm());
            }
        }
        std::hint::black_box(warm);
        if format == Format::Protobuf {
            let mut parser = ProtoParser::new(body, ctx.opts.histograms);
            let r = self.parse_proto(app, &mut parser, ctx, report);
            if let Err(Abandon { failure, .. }) = &r
                && *failure != Failure::Parse
            {
                report.samples_scraped += parser.count_remaining_samples();
            }
            return r;
        }
        let mut parser = Parser::new(body, format);
        let r = self.parse_entries(app, &mut parser, ctx, report);
        if let Err(Abandon { failure, .. }) = &r
            && *failure != Failure::Parse
        {
            // What a breached limit cost: every sample of the body, up to a parse error.
            let rest = parser
                .map_while(Result::ok)
                .filter(|e| matches!(e, Entry::Sample(_)))
                .count();
            report.samples_scraped += rest as u64;
        }
        r
    }

    fn parse_entries(
        &mut self,
        app: &mut Appender<'_>,
        parser: &mut Parser<'_>,
        ctx: &Ctx<'_>,
        report: &mut ScrapeReport,
    ) -> Result<(), Abandon> {
        let mut metadata = self.metadata.scrape();
        self.cache.rewind();
        let mut nhcb = ctx
            .opts
            .histograms
            .convert_nhcb
            .then(|| NhcbCollector::new(ctx.opts.histograms.keep_classic));
        for entry in parser {
            let entry = entry.map_err(Abandon::on(Failure::Parse))?;
            let s = match entry {
                Entry::Sample(s) => s,
                declaration => {
                    if let Some(c) = &mut nhcb {
                        c.flush(&mut self.cache, app, ctx, report)?;
                        if let Entry::Type { name, .. } = &declaration {
                            c.family.clear();
                            c.family.push_str(name);
                        }
                    }
                    metadata.observe(declaration);
                    continue;
                }
            };
            if let Some(c) = &mut nhcb
                && c.take(&s, &mut self.cache, app, ctx, report)?
            {
                continue;
            }
            let labels = || s.to_labels().map_err(Abandon::on(Failure::Parse));
            let value = ProtoValue::Float(s.value());
            let ts = s.timestamp();
            ingest_sample(
                &mut self.cache,
                app,
                s.series(),
                ts,
                labels,
                value,
                ctx,
                report,
            )?;
        }
        if let Some(c) = &mut nhcb {
            c.flush(&mut self.cache, app, ctx, report)?;
        }
        metadata.finish();
        Ok(())
    }

    fn parse_proto(
        &mut self,
        app: &mut Appender<'_>,
        parser: &mut ProtoParser<'_>,
        ctx: &Ctx<'_>,
        report: &mut ScrapeReport,
    ) -> Result<(), Abandon> {
        let mut metadata = self.metadata.scrape();
        self.cache.rewind();
        while let Some(item) = parser.next_item() {
            let s = match item.map_err(Abandon::on(Failure::Parse))? {
                ProtoItem::Sample(s) => s,
                ProtoItem::Meta(declaration) => {
                    metadata.observe(declaration);
                    continue;
                }
            };
            let (key, ts) = (s.series(), s.timestamp());
            let labels = s.to_labels().map_err(Abandon::on(Failure::Parse));
            let value = s.into_value();
            ingest_sample(&mut self.cache, app, key, ts, || labels, value, ctx, report)?;
        }
        metadata.finish();
        Ok(())
    }

    /// The target is gone: every series it stored last, its synthetic series included, ends
    /// with a staleness marker at `t`.
    pub fn end(&mut self, db: &Db, t: i64) -> Result<CommitStats, StorageError> {
        let mut app = db.appender_at(t);
        for c in self.cache.values_mut() {
            if let Some(series) = &mut c.series
                && c.flags & STORED != 0
            {
                append(&mut app, series, t, STALE_NAN)?;
            }
        }
        if let Some((_, handles)) = &mut self.report {
            for h in handles {
                append(&mut app, h, t, STALE_NAN)?;
            }
        }
        self.cache.clear();
        self.report = None;
        app.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Matcher, Sample, is_stale_nan};
    use crate::relabel::{Action, RelabelConfig};
    use crate::storage::Options;

    fn target() -> Labels {
        Labels::new([("job", "node"), ("instance", "127.0.0.1:9100")]).unwrap()
    }

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        (dir, db)
    }

    fn samples(db: &Db, name: &str) -> Vec<Sample> {
        db.querier()
            .samples(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
            .unwrap()
    }

    fn scrape(
        st: &mut ScrapeState,
        db: &Db,
        body: &str,
        t: i64,
        opts: &IngestOptions,
    ) -> ScrapeReport {
        st.ingest(
            db,
            &target(),
            Ok((body.as_bytes(), Format::PrometheusText)),
            t,
            0.01,
            opts,
        )
        .unwrap()
    }

    #[test]
    fn vanished_series_get_a_stale_marker_and_report_series_are_written() {
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let opts = IngestOptions {
            honor_timestamps: true,
            ..Default::default()
        };
        let r = scrape(
            &mut st,
            &db,
            "a 1\nb{x=\"1\"} 2\nb{x=\"2\"} 3\n",
            1000,
            &opts,
        );
        assert!(r.up);
        assert_eq!(
            (
                r.samples_scraped,
                r.samples_post_metric_relabeling,
                r.series_added
            ),
            (3, 3, 3)
        );
        let r = scrape(&mut st, &db, "a 4\nb{x=\"1\"} 5\n", 16_000, &opts);
        assert_eq!(r.series_added, 0);
        let gone = db
            .querier()
            .select(&[Matcher::equal("x", "2")], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(gone[0].samples.len(), 2);
        assert!(is_stale_nan(gone[0].samples[1].v) && gone[0].samples[1].t == 16_000);
        assert_eq!(samples(&db, "up").len(), 2);
        let sel = db
            .querier()
            .select(&[Matcher::equal("__name__", "a")], 0, i64::MAX)
            .unwrap();
        assert_eq!(
            sel[0].labels,
            Labels::new([
                ("__name__", "a"),
                ("job", "node"),
                ("instance", "127.0.0.1:9100")
            ])
            .unwrap()
        );
        assert_eq!(
            samples(&db, "scrape_series_added")
                .iter()
                .map(|s| s.v)
                .collect::<Vec<_>>(),
            vec![3.0, 0.0]
        );
    }

    #[test]
    fn reordered_and_churned_bodies_keep_staleness_and_added_counts_exact() {
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let opts = IngestOptions::default();
        let r = scrape(&mut st, &db, "a 1\nb 2\nc 3\n", 1000, &opts);
        assert_eq!(r.series_added, 3);
        // Another order, one series gone, one new, one line twice.
        let r = scrape(&mut st, &db, "c 4\nd 5\na 6\nc 7\n", 2000, &opts);
        assert_eq!((r.series_added, r.samples_scraped), (1, 4));
        assert_eq!(r.commit.duplicate, 1, "{r:?}");
        let b = samples(&db, "b");
        assert_eq!(b.len(), 2);
        assert!(is_stale_nan(b[1].v) && b[1].t == 2000);
        let r = scrape(&mut st, &db, "d 8\nb 9\n", 3000, &opts);
        assert_eq!(r.series_added, 1, "b went and came back");
        for gone in ["a", "c"] {
            let s = samples(&db, gone);
            assert_eq!(s.len(), 3, "{gone}");
            assert!(is_stale_nan(s[2].v) && s[2].t == 3000, "{gone}");
        }
        assert_eq!(
            samples(&db, "b").iter().map(|s| s.t).collect::<Vec<_>>(),
            vec![1000, 2000, 3000]
        );
        assert_eq!(samples(&db, "d").len(), 2);
        // The same two series after many rounds of churn around them.
        for round in 0..200i64 {
            let body = format!("d {round}\nb {round}\nchurn{{n=\"{round}\"}} 1\n");
            let r = scrape(&mut st, &db, &body, 4000 + round * 1000, &opts);
            assert_eq!(r.series_added, 1, "{round}");
        }
        assert_eq!(samples(&db, "d").len(), 202);
        let churned = samples(&db, "churn");
        assert_eq!(
            churned.len(),
            200 + 199,
            "each churned series: a sample, then a marker"
        );
    }

    #[test]
    fn a_failed_scrape_stores_nothing_partial_and_stales_the_previous_set() {
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let opts = IngestOptions::default();
        scrape(&mut st, &db, "a 1\nb 2\n", 1000, &opts);
        let r = scrape(&mut st, &db, "a 7\nnew_series 1\nb{ 3\n", 16_000, &opts);
        assert!(!r.up);
        assert!(r.error.as_deref().unwrap_or("").contains("line 3"), "{r:?}");
        assert_eq!(
            (r.failure, r.samples_dropped),
            (Some(Failure::Parse), 2),
            "the samples before the bad line were dropped"
        );
        assert!(
            samples(&db, "new_series").is_empty(),
            "nothing of the failed body is stored"
        );
        let a = samples(&db, "a");
        assert_eq!(a.len(), 2);
        assert!(is_stale_nan(a[1].v));
        assert_eq!(
            samples(&db, "up").iter().map(|s| s.v).collect::<Vec<_>>(),
            vec![1.0, 0.0]
        );
        // The next failure writes no second marker; the next success stores again.
        scrape(&mut st, &db, "garbage{", 31_000, &opts);
        assert_eq!(samples(&db, "a").len(), 2);
        let r = scrape(&mut st, &db, "a 9\n", 46_000, &opts);
        assert!(r.up && r.series_added == 1);
        assert_eq!((r.failure, r.samples_dropped), (None, 0));
        assert_eq!(samples(&db, "a").last().unwrap().v, 9.0);
        // A fetch error behaves like a parse error.
        let r = st
            .ingest(
                &db,
                &target(),
                Err("server returned HTTP status 500".into()),
                61_000,
                0.0,
                &opts,
            )
            .unwrap();
        assert_eq!(r.error.as_deref(), Some("server returned HTTP status 500"));
        assert_eq!((r.failure, r.samples_dropped), (Some(Failure::Fetch), 0));
        assert!(is_stale_nan(samples(&db, "a").last().unwrap().v));
    }

    #[test]
    fn honor_labels_and_exported_prefix() {
        let (_d, db) = db();
        let body = "m{job=\"inner\",exported_job=\"x\"} 1\n";
        let mut st = ScrapeState::default();
        scrape(&mut st, &db, body, 1000, &IngestOptions::default());
        let got = db
            .querier()
            .series(&[Matcher::equal("__name__", "m")], 0, i64::MAX)
            .unwrap();
        assert_eq!(got[0].get("job"), Some("node"));
        assert_eq!(got[0].get("exported_exported_job"), Some("inner"));
        assert_eq!(got[0].get("exported_job"), Some("x"));
        let (_d2, db2) = self::db();
        let mut st = ScrapeState::default();
        scrape(
            &mut st,
            &db2,
            body,
            1000,
            &IngestOptions {
                honor_labels: true,
                ..Default::default()
            },
        );
        let got = db2
            .querier()
            .series(&[Matcher::equal("__name__", "m")], 0, i64::MAX)
            .unwrap();
        assert_eq!(got[0].get("job"), Some("inner"));
        assert_eq!(got[0].get("instance"), Some("127.0.0.1:9100"));
    }

    #[test]
    fn timestamps_honoured_or_replaced() {
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        scrape(
            &mut st,
            &db,
            "m 1 5000\n",
            9000,
            &IngestOptions {
                honor_timestamps: true,
                ..Default::default()
            },
        );
        assert_eq!(samples(&db, "m")[0].t, 5000);
        let (_d2, db2) = self::db();
        let mut st = ScrapeState::default();
        scrape(&mut st, &db2, "m 1 5000\n", 9000, &IngestOptions::default());
        assert_eq!(samples(&db2, "m")[0].t, 9000);
    }

    /// Scrapes `body` (OpenMetrics) at `t` with honor_timestamps.
    fn scrape_om(st: &mut ScrapeState, db: &Db, body: &str, t: i64) -> ScrapeReport {
        let opts = IngestOptions {
            honor_timestamps: true,
            ..Default::default()
        };
        st.ingest(
            db,
            &target(),
            Ok((body.as_bytes(), Format::OpenMetrics)),
            t,
            0.01,
            &opts,
        )
        .unwrap()
    }

    #[test]
    fn honored_timestamps_outside_the_storable_range_are_out_of_bounds() {
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let t = 1_700_000_000_000;
        // i64::MIN + 1 and i64::MAX - 807 milliseconds, as OpenMetrics float seconds.
        let body = "# TYPE a gauge\na 1 -9223372036854775.807\n# TYPE b gauge\nb 2 9223372036854775\n\
                    # TYPE c gauge\nc 3 1699999999.5\n# EOF\n";
        let r = scrape_om(&mut st, &db, body, t);
        assert!(r.up, "{r:?}");
        assert_eq!((r.commit.out_of_bounds, r.commit.appended), (2, 6), "{r:?}");
        assert!(samples(&db, "a").is_empty() && samples(&db, "b").is_empty());
        assert_eq!(samples(&db, "c"), vec![Sample::new(1_699_999_999_500, 3.0)]);
    }

    #[test]
    fn honored_timestamps_too_far_ahead_of_the_scrape_are_refused() {
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let t = 1_700_000_000_000;
        // 10 minutes ahead is taken, a millisecond more is not: the scrape's time is the clock.
        let body =
            "# TYPE a gauge\na 1 1700000600.000\n# TYPE b gauge\nb 2 1700000600.001\n# EOF\n";
        let r = scrape_om(&mut st, &db, body, t);
        assert_eq!(
            (r.commit.too_far_in_future, r.commit.appended),
            (1, 6),
            "{r:?}"
        );
        assert_eq!(samples(&db, "a"), vec![Sample::new(t + 600_000, 1.0)]);
        assert!(samples(&db, "b").is_empty());
        let snap = {
            let stats = crate::scrape::stats::JobStats::default();
            stats.record(0.01, Some(&r));
            stats.snapshot()
        };
        assert!(
            snap.samples_rejected.contains(&("too_far_in_future", 1)),
            "{snap:?}"
        );
    }

    #[test]
    fn limits_fail_the_scrape_with_prometheus_messages() {
        let body = "a{l=\"xxxxxxxx\"} 1\nb 2\nc 3\n";
        let cases = [
            (
                Limits {
                    sample_limit: 2,
                    ..Default::default()
                },
                "sample limit exceeded",
                Failure::SampleLimit,
            ),
            (
                Limits {
                    label_limit: 3,
                    ..Default::default()
                },
                "label_limit exceeded (metric: a, number of labels: 4, limit: 3)",
                Failure::LabelLimit,
            ),
            (
                Limits {
                    label_name_length_limit: 7,
                    ..Default::default()
                },
                "label_name_length_limit exceeded (metric: a, label name: __name__, length: 8, limit: 7)",
                Failure::LabelLimit,
            ),
            (
                Limits {
                    label_value_length_limit: 5,
                    ..Default::default()
                },
                "label_value_length_limit exceeded (metric: a, label name: instance",
                Failure::LabelLimit,
            ),
        ];
        for (limits, want, failure) in cases {
            let (_d, db) = db();
            let mut st = ScrapeState::default();
            let r = scrape(
                &mut st,
                &db,
                body,
                1000,
                &IngestOptions {
                    limits,
                    ..Default::default()
                },
            );
            assert!(!r.up);
            assert!(r.error.as_deref().unwrap_or("").starts_with(want), "{r:?}");
            assert_eq!(r.failure, Some(failure), "{want}");
            // The breach stops storing, not counting: every sample of the body was dropped.
            assert_eq!(r.samples_dropped, 3, "{want}");
            for n in ["a", "b", "c"] {
                assert!(samples(&db, n).is_empty(), "{want}: nothing partial");
            }
            assert_eq!(samples(&db, "up")[0].v, 0.0);
        }
    }

    #[test]
    fn limit_errors_keep_counts_and_cut_long_names_to_50_characters() {
        let long_name = format!("m_{}", "n".repeat(60));
        let long_value = "é".repeat(60);
        let l =
            Labels::new([("__name__", long_name.as_str()), ("v", long_value.as_str())]).unwrap();
        let value_limit = Limits {
            label_value_length_limit: 100,
            ..Default::default()
        };
        let e = check_limits(&l, &value_limit).unwrap_err();
        let LimitError::ValueLength {
            metric,
            name,
            value,
            length,
            limit,
        } = &e
        else {
            panic!("{e:?}");
        };
        // Cut by characters, counted in bytes, as Prometheus does.
        assert_eq!(metric.chars().count(), 50);
        assert!(long_name.starts_with(metric.as_str()));
        assert_eq!((name.as_str(), value.chars().count()), ("v", 50));
        assert_eq!((*length, *limit), (120, 100));
        assert_eq!(
            e.to_string(),
            format!(
                "label_value_length_limit exceeded (metric: {metric}, label name: v, value: {value:?}, length: 120, limit: 100)"
            )
        );
        // At the limit passes; zero means unlimited.
        let at_limit = Limits {
            label_limit: 2,
            label_name_length_limit: 8,
            label_value_length_limit: 120,
            ..Default::default()
        };
        assert_eq!(check_limits(&l, &at_limit), Ok(()));
        assert_eq!(check_limits(&l, &Limits::default()), Ok(()));
        let one_label = Limits {
            label_limit: 1,
            ..Default::default()
        };
        assert!(matches!(
            check_limits(&l, &one_label),
            Err(LimitError::Labels {
                labels: 2,
                limit: 1,
                ..
            })
        ));
    }

    #[test]
    fn metric_relabeling_drops_series_and_end_stales_everything() {
        let (_d, db) = db();
        let drop = Rule::new(RelabelConfig {
            source_labels: vec!["__name__".into()],
            regex: "go_.*".into(),
            action: Action::Drop,
            ..Default::default()
        })
        .unwrap();
        let opts = IngestOptions {
            metric_relabel: vec![drop],
            ..Default::default()
        };
        let mut st = ScrapeState::default();
        let r = scrape(&mut st, &db, "go_x 1\nkeep 2\n", 1000, &opts);
        assert_eq!(
            (r.samples_scraped, r.samples_post_metric_relabeling),
            (2, 1)
        );
        assert!(samples(&db, "go_x").is_empty());
        st.end(&db, 5000).unwrap();
        assert!(is_stale_nan(samples(&db, "keep")[1].v));
        assert!(is_stale_nan(samples(&db, "up")[1].v));
    }

    fn proto_body(families: &[crate::scrape::parse::proto_types::MetricFamily]) -> Vec<u8> {
        use prost::Message as _;
        let mut out = Vec::new();
        for f in families {
            f.encode_length_delimited(&mut out).unwrap();
        }
        out
    }

    #[test]
    fn a_protobuf_body_stores_what_its_text_twin_stores() {
        use crate::scrape::parse::proto_types::{
            Bucket, Counter, Histogram, LabelPair, Metric, MetricFamily, MetricType,
        };
        let counter = Metric {
            label: vec![LabelPair {
                name: "code".into(),
                value: "200".into(),
            }],
            counter: Some(Counter {
                value: 41.5,
                ..Default::default()
            }),
            ..Default::default()
        };
        let hist = Metric {
            histogram: Some(Histogram {
                sample_count: 3,
                sample_sum: 0.75,
                bucket: vec![Bucket {
                    cumulative_count: 2,
                    upper_bound: 0.1,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = proto_body(&[
            MetricFamily {
                name: "req_total".into(),
                help: "Requests.".into(),
                r#type: MetricType::Counter as i32,
                metric: vec![counter],
                unit: String::new(),
            },
            MetricFamily {
                name: "lat".into(),
                help: String::new(),
                r#type: MetricType::Histogram as i32,
                metric: vec![hist],
                unit: String::new(),
            },
        ]);
        let text = "# HELP req_total Requests.\n# TYPE req_total counter\n\
                    req_total{code=\"200\"} 41.5\n# HELP lat \n# TYPE lat histogram\n\
                    lat_count 3\nlat_sum 0.75\nlat_bucket{le=\"0.1\"} 2\nlat_bucket{le=\"+Inf\"} 3\n";
        let stored = |format: Format, body: &[u8]| {
            let (_d, db) = db();
            let mut st = ScrapeState::default();
            let opts = IngestOptions::default();
            let mut reports = Vec::new();
            for t in [1000, 16_000] {
                let r = st
                    .ingest(&db, &target(), Ok((body, format)), t, 0.01, &opts)
                    .unwrap();
                assert!(r.up, "{r:?}");
                reports.push((r.samples_scraped, r.series_added, r.metadata.clone()));
            }
            let series: Vec<_> = db
                .querier()
                .select(&[Matcher::equal("job", "node")], i64::MIN, i64::MAX)
                .unwrap()
                .into_iter()
                .filter(|s| !s.labels.metric_name().unwrap_or("").starts_with("scrape_"))
                .map(|s| (s.labels.to_string(), s.samples))
                .collect();
            (series, reports)
        };
        let (from_proto, proto_reports) = stored(Format::Protobuf, &body);
        let (from_text, text_reports) = stored(Format::PrometheusText, text.as_bytes());
        assert_eq!(from_proto.len(), 6, "{from_proto:?}");
        assert_eq!(from_proto, from_text);
        assert_eq!(proto_reports, text_reports);
        assert_eq!(proto_reports[0].0, 5);
        assert_eq!(
            proto_reports[1].1, 0,
            "the second scrape finds every series cached"
        );
    }

    fn native_family(
        name: &str,
        counts: &[i64],
        gauge: bool,
    ) -> crate::scrape::parse::proto_types::MetricFamily {
        use crate::scrape::parse::proto_types::{
            BucketSpan, Histogram, Metric, MetricFamily, MetricType,
        };
        let total: i64 = counts.iter().sum();
        let mut deltas = Vec::new();
        let mut prev = 0;
        for c in counts {
            deltas.push(c - prev);
            prev = *c;
        }
        MetricFamily {
            name: name.into(),
            help: "latency".into(),
            r#type: if gauge {
                MetricType::GaugeHistogram
            } else {
                MetricType::Histogram
            } as i32,
            metric: vec![Metric {
                histogram: Some(Histogram {
                    sample_count: total as u64,
                    sample_sum: 1.5 * total as f64,
                    schema: 1,
                    zero_threshold: 1e-128,
                    positive_span: vec![BucketSpan {
                        offset: -1,
                        length: counts.len() as u32,
                    }],
                    positive_delta: deltas,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            unit: String::new(),
        }
    }

    fn histograms(db: &Db, name: &str) -> Vec<crate::model::histogram::HistogramSample> {
        let mut sel = db
            .querier()
            .select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
            .unwrap();
        assert!(sel.len() <= 1);
        sel.pop().map(|s| s.histograms).unwrap_or_default()
    }

    #[test]
    fn native_histograms_are_stored_and_go_stale_when_they_vanish() {
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let opts = IngestOptions {
            histograms: ProtoOptions {
                native_histograms: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut ingest = |body: &[u8], t: i64| {
            st.ingest(&db, &target(), Ok((body, Format::Protobuf)), t, 0.01, &opts)
                .unwrap()
        };
        let both = proto_body(&[
            native_family("rt", &[3, 1, 4], false),
            native_family("g", &[2], true),
        ]);
        let r = ingest(&both, 1000);
        assert!(
            r.up && r.series_added == 2 && r.samples_scraped == 2,
            "{r:?}"
        );
        let r = ingest(
            &proto_body(&[
                native_family("rt", &[3, 2, 4], false),
                native_family("g", &[1], true),
            ]),
            16_000,
        );
        assert!(r.up && r.series_added == 0, "{r:?}");
        assert_eq!(r.commit.appended, 2 + REPORT_SERIES.len() as u64);
        // g vanishes: its stale marker is a histogram stale marker of its kind.
        let r = ingest(
            &proto_body(&[native_family("rt", &[4, 2, 4], false)]),
            31_000,
        );
        assert!(r.up);
        let rt = histograms(&db, "rt");
        assert_eq!(rt.len(), 3);
        let HistogramValue::Int(h) = &rt[1].h else {
            panic!("{:?}", rt[1])
        };
        assert_eq!(
            (h.count, h.schema, h.positive_buckets.as_slice()),
            (9, 1, &[3, -1, 2][..])
        );
        let g = histograms(&db, "g");
        assert_eq!(
            g.iter().map(|s| s.t).collect::<Vec<_>>(),
            [1000, 16_000, 31_000]
        );
        assert!(g[2].h.is_stale_marker(), "{:?}", g[2]);
        assert_eq!(
            g[0].h.counter_reset_hint(),
            crate::model::histogram::CounterResetHint::Gauge
        );
        assert!(
            samples(&db, "g").is_empty(),
            "the marker is no float sample"
        );
        // The target goes: rt ends with a marker too.
        st.end(&db, 46_000).unwrap();
        assert!(histograms(&db, "rt")[3].h.is_stale_marker());
    }

    #[test]
    fn a_histogram_storage_refuses_fails_the_scrape_as_unreadable() {
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let opts = IngestOptions {
            histograms: ProtoOptions {
                native_histograms: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut fam = native_family("rt", &[3], false);
        if let Some(h) = fam.metric[0].histogram.as_mut() {
            h.schema = 60;
        }
        let r = st
            .ingest(
                &db,
                &target(),
                Ok((&proto_body(&[fam]), Format::Protobuf)),
                1000,
                0.01,
                &opts,
            )
            .unwrap();
        assert!(!r.up);
        assert_eq!(r.failure, Some(Failure::Parse), "{r:?}");
        assert!(r.error.unwrap().contains("schema 60"));
        assert!(histograms(&db, "rt").is_empty());
    }

    fn native_opts(f: impl FnOnce(&mut IngestOptions)) -> IngestOptions {
        let mut o = IngestOptions {
            histograms: ProtoOptions {
                native_histograms: true,
                ..Default::default()
            },
            ..Default::default()
        };
        f(&mut o);
        o
    }

    fn scrape_proto(db: &Db, body: &[u8], opts: &IngestOptions) -> ScrapeReport {
        let mut st = ScrapeState::default();
        st.ingest(
            db,
            &target(),
            Ok((body, Format::Protobuf)),
            1000,
            0.01,
            opts,
        )
        .unwrap()
    }

    fn stored_int(db: &Db, name: &str) -> crate::model::histogram::Histogram {
        match &histograms(db, name)[0].h {
            HistogramValue::Int(h) => (**h).clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bucket_limit_and_min_factor_lower_the_schema_as_prometheus() {
        // Schema 1, buckets at indexes -1..=6 (8 buckets, one of them empty).
        let body = proto_body(&[native_family("rt", &[1, 2, 0, 4, 5, 6, 7, 8], false)]);
        // No limit: stored as scraped, the empty bucket compacted away.
        let (_d, db) = super::tests::db();
        assert!(scrape_proto(&db, &body, &native_opts(|_| {})).up);
        let h = stored_int(&db, "rt");
        assert_eq!(h.schema, 1);
        assert_eq!(
            h.positive_spans,
            [
                crate::model::histogram::Span::new(-1, 2),
                crate::model::histogram::Span::new(1, 5)
            ]
        );
        // Limit 4: schema 1 -> 0 gives indexes 0..=3, four buckets.
        let (_d, db) = super::tests::db();
        let r = scrape_proto(&db, &body, &native_opts(|o| o.limits.bucket_limit = 4));
        assert!(r.up, "{r:?}");
        let h = stored_int(&db, "rt");
        assert_eq!(h.schema, 0);
        assert_eq!(h.positive_buckets.len(), 4);
        assert_eq!(h.count, 33);
        // Limit 2: schema -2 holds (0.0625, 1] and (1, 16].
        let (_d, db) = super::tests::db();
        let r = scrape_proto(&db, &body, &native_opts(|o| o.limits.bucket_limit = 2));
        assert!(r.up, "{r:?}");
        assert_eq!(stored_int(&db, "rt").schema, -2);
        // Limit 1: observations on both sides of 1 never share a bucket.
        let (_d, db) = super::tests::db();
        let r = scrape_proto(&db, &body, &native_opts(|o| o.limits.bucket_limit = 1));
        assert_eq!(r.failure, Some(Failure::BucketLimit));
        // min bucket factor 2 -> schema 0 at most.
        let (_d, db) = super::tests::db();
        let r = scrape_proto(&db, &body, &native_opts(|o| o.max_schema = Some(0)));
        assert!(r.up);
        assert_eq!(stored_int(&db, "rt").schema, 0);
    }

    #[test]
    fn a_histogram_that_cannot_fit_the_bucket_limit_fails_the_scrape() {
        let mut fam = native_family("rt", &[1, 2], false);
        if let Some(h) = fam.metric[0].histogram.as_mut() {
            h.schema = -4;
            h.sample_count = 5;
            h.negative_span = vec![crate::scrape::parse::proto_types::BucketSpan {
                offset: 0,
                length: 1,
            }];
            h.negative_delta = vec![2];
        }
        let body = proto_body(&[fam]);
        let (_d, db) = super::tests::db();
        let r = scrape_proto(&db, &body, &native_opts(|o| o.limits.bucket_limit = 2));
        assert!(!r.up);
        assert_eq!(r.failure, Some(Failure::BucketLimit));
        assert_eq!(r.error.as_deref(), Some("histogram bucket limit exceeded"));
        assert!(histograms(&db, "rt").is_empty());
        // The same histogram dropped by metric relabeling is not limited.
        let drop = RelabelConfig {
            source_labels: vec!["__name__".into()],
            regex: "rt".into(),
            action: Action::Drop,
            ..Default::default()
        };
        let r = scrape_proto(
            &db,
            &body,
            &native_opts(|o| {
                o.limits.bucket_limit = 2;
                o.metric_relabel = vec![Rule::new(drop).unwrap()];
            }),
        );
        assert!(r.up, "{r:?}");
    }

    #[test]
    fn finer_schemas_are_lowered_to_8_and_invalid_histograms_refused() {
        let mut fam = native_family("rt", &[1, 2, 3], false);
        if let Some(h) = fam.metric[0].histogram.as_mut() {
            h.schema = 10;
        }
        let (_d, db) = super::tests::db();
        assert!(scrape_proto(&db, &proto_body(&[fam]), &native_opts(|_| {})).up);
        let h = stored_int(&db, "rt");
        assert_eq!((h.schema, h.count), (8, 6));
        // A count below the buckets' observations is Prometheus's validation error.
        let mut fam = native_family("rt", &[1, 2, 3], false);
        if let Some(h) = fam.metric[0].histogram.as_mut() {
            h.sample_count = 2;
        }
        let (_d, db) = super::tests::db();
        let r = scrape_proto(&db, &proto_body(&[fam]), &native_opts(|_| {}));
        assert!(!r.up);
        assert_eq!(r.failure, Some(Failure::Parse));
        let e = r.error.unwrap();
        assert!(e.starts_with("invalid native histogram rt{"), "{e}");
    }

    #[test]
    fn a_malformed_protobuf_body_fails_the_scrape_naming_the_offset() {
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let opts = IngestOptions::default();
        scrape(&mut st, &db, "a 1\n", 1000, &opts);
        let r = st
            .ingest(
                &db,
                &target(),
                Ok((&[0x7f, 0x0a][..], Format::Protobuf)),
                16_000,
                0.01,
                &opts,
            )
            .unwrap();
        assert!(!r.up);
        assert_eq!(r.failure, Some(Failure::Parse));
        let e = r.error.unwrap();
        assert!(
            e.contains("at byte 0") && e.contains("declares 127 bytes"),
            "{e}"
        );
        let a = samples(&db, "a");
        assert!(is_stale_nan(a[1].v), "the previous series go stale");
    }

    #[test]
    fn every_fixture_sample_is_stored() {
        let base = crate::fixtures::shared("fixtures/exposition");
        for (file, format) in [
            ("node_exporter-1.5.0.prom", Format::PrometheusText),
            ("victoria-metrics-1.79.5.prom", Format::PrometheusText),
            ("python-client.openmetrics", Format::OpenMetrics),
        ] {
            let body = std::fs::read(base.join(file)).unwrap();
            let want = body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty() && l[0] != b'#')
                .count();
            let (_d, db) = db();
            let mut st = ScrapeState::default();
            let r = st
                .ingest(
                    &db,
                    &target(),
                    Ok((&body, format)),
                    1000,
                    0.01,
                    &IngestOptions::default(),
                )
                .unwrap();
            assert!(r.up, "{file}: {r:?}");
            assert_eq!(r.samples_scraped as usize, want, "{file}");
            assert_eq!(
                r.commit.appended as usize,
                want + 5,
                "{file}: every sample and the 5 report series"
            );
            let stored = db.querier().series(&[], i64::MIN, i64::MAX).unwrap();
            assert_eq!(stored.len(), want + 5, "{file}");
        }
    }

    fn nhcb_opts(keep_classic: bool) -> IngestOptions {
        IngestOptions {
            histograms: ProtoOptions {
                convert_nhcb: true,
                keep_classic,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A converted histogram's cumulative count at each custom bound (+Inf last).
    fn cumulative(h: &HistogramValue) -> (f64, f64, Vec<(f64, f64)>) {
        let f = match h {
            HistogramValue::Int(h) => h.to_float(),
            HistogramValue::Float(h) => (**h).clone(),
        };
        assert_eq!(f.schema, crate::model::histogram::CUSTOM_BUCKETS_SCHEMA);
        let mut per = vec![0.0; f.custom_values.len() + 1];
        let (mut i, mut b) = (0i64, 0usize);
        for span in &f.positive_spans {
            i += i64::from(span.offset);
            for _ in 0..span.length {
                per[i as usize] += f.positive_buckets[b];
                (i, b) = (i + 1, b + 1);
            }
        }
        let mut bounds = f.custom_values.clone();
        bounds.push(f64::INFINITY);
        let mut acc = 0.0;
        let cum = bounds
            .into_iter()
            .zip(per)
            .map(|(le, n)| {
                acc += n;
                (le, acc)
            })
            .collect();
        (f.count, f.sum, cum)
    }

    fn one(db: &Db, name: &str, t: i64) -> Vec<f64> {
        samples(db, name)
            .iter()
            .filter(|s| s.t == t)
            .map(|s| s.v)
            .collect()
    }

    #[test]
    fn text_classic_histograms_are_converted_to_custom_buckets() {
        for file in ["prometheus-2.42.0.prom", "python-client.prom"] {
            converted_like_classic(file);
        }
    }

    /// Every classic histogram of a real body is stored converted, its count, sum and
    /// cumulative buckets equal to the classic samples of the same body stored unconverted.
    fn converted_like_classic(file: &str) {
        let path = format!("../shared/fixtures/exposition/{file}");
        let body = std::fs::read_to_string(path).unwrap();
        let families: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram"))
            .collect();
        assert!(!families.is_empty(), "{file}");
        for keep in [false, true] {
            let (_d, classic_db) = db();
            let mut st = ScrapeState::default();
            scrape(&mut st, &classic_db, &body, 1000, &IngestOptions::default());
            let (_d, db) = db();
            let mut st = ScrapeState::default();
            let r = scrape(&mut st, &db, &body, 1000, &nhcb_opts(keep));
            assert!(r.up, "{r:?}");
            for fam in &families {
                let sel = db
                    .querier()
                    .select(&[Matcher::equal("__name__", *fam)], i64::MIN, i64::MAX)
                    .unwrap();
                assert!(!sel.is_empty(), "{fam}");
                for series in sel {
                    assert_eq!(series.histograms.len(), 1, "{fam}");
                    let (count, sum, cum) = cumulative(&series.histograms[0].h);
                    let l = series.labels.clone();
                    let with = |suffix: &str, le: Option<f64>| {
                        let mut m = vec![Matcher::equal("__name__", format!("{fam}{suffix}"))];
                        for (n, v) in l.iter().filter(|(n, _)| *n != "__name__") {
                            m.push(Matcher::equal(n, v));
                        }
                        let got = classic_db.querier().select(&m, i64::MIN, i64::MAX).unwrap();
                        let got: Vec<f64> = got
                            .iter()
                            .filter(|s| {
                                le.is_none_or(|le| {
                                    s.labels.get("le").and_then(|v| v.parse::<f64>().ok())
                                        == Some(le)
                                })
                            })
                            .flat_map(|s| s.samples.iter().map(|s| s.v))
                            .collect();
                        assert_eq!(got.len(), 1, "{fam}{suffix} {l} {le:?}");
                        got[0]
                    };
                    assert_eq!(count, with("_count", None), "{fam} {l}");
                    assert_eq!(sum, with("_sum", None), "{fam} {l}");
                    for (le, n) in cum {
                        assert_eq!(n, with("_bucket", Some(le)), "{fam} {l} le={le}");
                    }
                }
                let kept = samples(&db, &format!("{fam}_bucket")).len();
                assert_eq!(kept > 0, keep, "{fam}");
            }
            // Everything that is not a histogram is stored as without conversion.
            let plain = classic_db
                .querier()
                .series(&[], i64::MIN, i64::MAX)
                .unwrap();
            let got = db.querier().series(&[], i64::MIN, i64::MAX).unwrap();
            let classic = plain
                .iter()
                .filter(|l| {
                    let n = l.metric_name().unwrap_or("");
                    families.iter().any(|f| {
                        ["_bucket", "_count", "_sum"]
                            .iter()
                            .any(|s| n == format!("{f}{s}"))
                    })
                })
                .count();
            let converted = got.len()
                - if keep {
                    plain.len()
                } else {
                    plain.len() - classic
                };
            assert!(converted >= families.len(), "{converted}");
        }
    }

    #[test]
    fn a_malformed_text_histogram_keeps_its_classic_series() {
        let body = "# TYPE bad histogram\n\
                    bad_bucket{le=\"1\"} 5\n\
                    bad_bucket{le=\"2\"} 3\n\
                    bad_bucket{le=\"+Inf\"} 5\n\
                    bad_count 5\n\
                    bad_sum 2\n\
                    # TYPE good histogram\n\
                    good_bucket{le=\"2\"} 3\n\
                    good_bucket{le=\"1\"} 1\n\
                    good_sum 4\n";
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let r = scrape(&mut st, &db, body, 1000, &nhcb_opts(false));
        assert!(r.up, "{r:?}");
        assert!(histograms(&db, "bad").is_empty());
        assert_eq!(samples(&db, "bad_bucket").len(), 3);
        assert_eq!(one(&db, "bad_count", 1000), [5.0]);
        // Out of order, no +Inf and no _count: converted all the same.
        let good = histograms(&db, "good");
        assert_eq!(good.len(), 1);
        let (count, sum, cum) = cumulative(&good[0].h);
        assert_eq!((count, sum), (3.0, 4.0));
        assert_eq!(cum, [(1.0, 1.0), (2.0, 3.0), (f64::INFINITY, 3.0)]);
        assert!(samples(&db, "good_bucket").is_empty());
        assert_eq!(r.samples_scraped, 5 + 1);
    }

    #[test]
    fn openmetrics_histograms_are_converted_and_relabeled() {
        let body =
            std::fs::read("../shared/fixtures/exposition/python-client.openmetrics").unwrap();
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let mut opts = nhcb_opts(false);
        opts.metric_relabel = vec![
            Rule::new(RelabelConfig {
                source_labels: vec!["path".into()],
                regex: "/metrics".into(),
                action: Action::Drop,
                ..Default::default()
            })
            .unwrap(),
        ];
        let r = st
            .ingest(
                &db,
                &target(),
                Ok((&body, Format::OpenMetrics)),
                1000,
                0.01,
                &opts,
            )
            .unwrap();
        assert!(r.up, "{r:?}");
        let sel = db
            .querier()
            .select(
                &[Matcher::equal("__name__", "request_duration_seconds")],
                i64::MIN,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(sel.len(), 1, "{sel:?}");
        assert_eq!(sel[0].labels.get("path"), Some("/api/v1/query"));
        assert_eq!(sel[0].labels.get("job"), Some("node"));
        let (count, _, cum) = cumulative(&sel[0].histograms[0].h);
        assert_eq!(count, 6.0);
        assert_eq!(cum.last(), Some(&(f64::INFINITY, 6.0)));
        assert_eq!(cum[0], (0.005, 1.0));
        assert!(samples(&db, "request_duration_seconds_bucket").is_empty());
    }

    #[test]
    fn converted_series_go_stale_and_forms_do_not_share_the_cache() {
        let body = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3\n";
        let (_d, db) = db();
        let mut st = ScrapeState::default();
        let r = scrape(&mut st, &db, body, 1000, &nhcb_opts(false));
        assert_eq!((r.series_added, r.samples_scraped), (1, 1), "{r:?}");
        let r = scrape(&mut st, &db, body, 16_000, &nhcb_opts(false));
        assert_eq!(r.series_added, 0, "{r:?}");
        // Conversion switched off: the classic series appear, the converted one goes stale.
        let r = scrape(&mut st, &db, body, 31_000, &IngestOptions::default());
        assert_eq!(r.series_added, 4, "{r:?}");
        let h = histograms(&db, "h");
        assert_eq!(
            h.iter().map(|s| s.t).collect::<Vec<_>>(),
            [1000, 16_000, 31_000]
        );
        assert!(h[2].h.is_stale_marker());
        assert_eq!(one(&db, "h_count", 31_000), [2.0]);
        // And back: the classic series go stale.
        let r = scrape(&mut st, &db, body, 46_000, &nhcb_opts(false));
        assert_eq!(r.series_added, 1, "{r:?}");
        assert!(is_stale_nan(one(&db, "h_count", 46_000)[0]));
        // The family vanishes: its converted series goes stale.
        let r = scrape(&mut st, &db, "other 1\n", 61_000, &nhcb_opts(false));
        assert!(r.up);
        let h = histograms(&db, "h");
        assert_eq!(h.len(), 5);
        assert!(h[4].h.is_stale_marker() && h[4].t == 61_000);
    }
}
