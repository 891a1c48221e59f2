//! The protobuf exposition format
//! (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited`): a stream of `MetricFamily` messages, each after its varint length.
//!
//! The stream yields what Prometheus's protobuf parser yields, in its order: per family a HELP
//! (even an empty one), a UNIT when there is one, a TYPE, then its series. Counters, gauges and
//! untyped values are one sample each; a summary is `_count`, `_sum`, then one sample per
//! quantile; a classic histogram is `_count`, `_sum`, then `_bucket` per bound, ending with a
//! `le="+Inf"` bucket (added, with the count, when the target left it out). A histogram with
//! native buckets (any span, a zero threshold or a zero count) is one native histogram sample
//! when native histograms are scraped, followed by its classic series too when
//! `always_scrape_classic_histograms` asks for them and it has classic buckets; otherwise its
//! classic series alone. `convert_classic_histograms_to_nhcb` turns a classic histogram into a
//! custom-bucket native histogram (schema -53), its classic series kept only with
//! `always_scrape_classic_histograms`. A timestamp of 0 is no timestamp, as in Prometheus.
//! Families without series are skipped whole.
//!
//! It must never panic or allocate in proportion to a declared length: every length is checked
//! against what is left of the body before anything is read, a family is walked in place (its
//! name, help and unit are slices of the body), and one `Metric` at a time is decoded (prost),
//! at most [`MAX_METRIC_BYTES`] long, so memory is bounded by a small multiple of that whatever
//! the body holds. Malformed input ends the parse with a [`ProtoError`] naming the byte offset
//! in the body of the message or field at fault; the caller drops the whole body.

use std::borrow::Cow;
use std::fmt::Write as _;

use prost::Message as _;

use super::proto_types::{self as pb, LabelPair, Metric};
use super::{Entry, MetricType as Kind, number};
use crate::encoding::{self, Decbuf};
use crate::model::histogram::{
    CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span, from_classic,
};
use crate::model::{Labels, LabelsBuilder, METRIC_NAME};

/// Largest single `Metric` message decoded. Decoding allocates up to ~40 times a message's
/// size (an empty classic bucket is 2 bytes on the wire and a struct in memory), so this bounds
/// one scrape's parsing memory; a classic histogram with 100,000 buckets takes about 2 MiB.
pub const MAX_METRIC_BYTES: usize = 4 << 20;

/// A protobuf body that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protobuf body at byte {offset}: {message}")]
pub struct ProtoError {
    /// Byte offset in the body of the message or field at fault.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

fn err(offset: usize, message: impl Into<String>) -> ProtoError {
    ProtoError {
        offset,
        message: message.into(),
    }
}

fn wire_error(e: encoding::Error, what: &str) -> ProtoError {
    err(e.offset(), format!("{what}: {e}"))
}

/// Which parts of histograms a scrape keeps (the job's settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtoOptions {
    /// `scrape_native_histograms`: native buckets become native histogram samples; without
    /// it a histogram is read for its classic series only.
    pub native_histograms: bool,
    /// `always_scrape_classic_histograms`: a native histogram's classic buckets are stored
    /// too, and a histogram converted to NHCB keeps its classic series.
    pub keep_classic: bool,
    /// `convert_classic_histograms_to_nhcb`.
    pub convert_nhcb: bool,
}

/// A sample's value: a float or a native histogram.
#[derive(Debug, Clone, PartialEq)]
pub enum ProtoValue {
    /// A float sample.
    Float(f64),
    /// A native histogram sample (validated by [`super::super::ingest`] before it is stored).
    Histogram(HistogramValue),
}

/// One item of a protobuf body.
#[derive(Debug)]
pub enum ProtoItem<'a, 'p> {
    /// HELP, UNIT or TYPE of a family (names and text borrow the body).
    Meta(Entry<'a>),
    /// A sample.
    Sample(ProtoSample<'p>),
}

/// A sample, borrowing the parser until the next item is asked for.
#[derive(Debug)]
pub struct ProtoSample<'p> {
    key: &'p str,
    name: &'p str,
    labels: &'p [LabelPair],
    extra: Option<(&'static str, &'p str)>,
    timestamp: Option<i64>,
    value: ProtoValue,
    offset: usize,
    kind: Kind,
}

impl<'p> ProtoSample<'p> {
    /// A text naming the series as written (name, labels in the target's order, and the `le`
    /// or `quantile` added): the key of the scraper's series cache, unambiguous whatever the
    /// label values hold.
    pub fn series(&self) -> &'p str {
        self.key
    }

    /// The sample's timestamp in milliseconds, if the target gave one.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The value (moved out by [`ProtoSample::into_value`]).
    pub fn value(&self) -> &ProtoValue {
        &self.value
    }

    /// Takes the value.
    pub fn into_value(self) -> ProtoValue {
        self.value
    }

    /// The type of the family the sample belongs to.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Offset in the body of the `Metric` message the sample came from.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The full label set, `__name__` included, validated.
    pub fn to_labels(&self) -> Result<Labels, ProtoError> {
        let mut b = LabelsBuilder::default();
        b.push(METRIC_NAME, self.name);
        for l in self.labels {
            b.push(l.name.as_str(), l.value.as_str());
        }
        if let Some((n, v)) = self.extra {
            b.push(n, v);
        }
        b.build().map_err(|e| {
            let hint = match e {
                crate::model::LabelError::InvalidName(_)
                | crate::model::LabelError::InvalidMetricName(_) => {
                    " (tidemark stores legacy names only: [a-zA-Z_:][a-zA-Z0-9_:]*)"
                }
                _ => "",
            };
            err(
                self.offset,
                format!(
                    "{e}{hint} in series {}",
                    shown_series(self.name, self.labels)
                ),
            )
        })
    }
}

/// `name{a="b",…}` for error messages, cut short.
fn shown_series(name: &str, labels: &[LabelPair]) -> String {
    let mut s = String::from(name);
    s.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}={:?}", l.name, l.value);
    }
    s.push('}');
    if s.chars().count() > 200 {
        s = s.chars().take(200).collect();
        s.push('…');
    }
    s
}

/// One piece of a metric still to be returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// Counter, gauge or untyped value.
    Value,
    /// `_count` of a summary or classic histogram.
    Count,
    /// `_sum`.
    Sum,
    /// A summary's quantile.
    Quantile(usize),
    /// A classic bucket.
    Bucket(usize),
    /// The `+Inf` bucket the target left out.
    InfBucket,
    /// The native histogram.
    Native,
    /// The classic histogram converted to custom buckets.
    Nhcb,
}

/// The family being read.
#[derive(Debug)]
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    unit: &'a str,
    kind: Kind,
    /// The family's message: `[start, end)` of the body.
    end: usize,
    /// Where to look for the next `metric` field.
    cursor: usize,
    /// Metadata items returned so far (HELP, UNIT, TYPE).
    meta_done: u8,
}

/// Streaming parser over a protobuf body. Not an `Iterator`: each sample borrows the parser
/// (its labels are the decoded metric's), so the caller loops on [`ProtoParser::next_item`].
#[derive(Debug)]
pub struct ProtoParser<'a> {
    body: &'a [u8],
    opts: ProtoOptions,
    /// Start of the next family's length prefix.
    pos: usize,
    family: Option<Family<'a>>,
    metric: Metric,
    metric_offset: usize,
    pieces: Vec<Piece>,
    next_piece: usize,
    name: String,
    key: String,
    extra: String,
    done: bool,
}

impl<'a> ProtoParser<'a> {
    /// A parser over `body`.
    pub fn new(body: &'a [u8], opts: ProtoOptions) -> Self {
        ProtoParser {
            body,
            opts,
            pos: 0,
            family: None,
            metric: Metric::default(),
            metric_offset: 0,
            pieces: Vec::new(),
            next_piece: 0,
            name: String::new(),
            key: String::new(),
            extra: String::new(),
            done: false,
        }
    }

    /// The next item, `None` at the end; after an error, `None` from then on.
    pub fn next_item(&mut self) -> Option<Result<ProtoItem<'a, '_>, ProtoError>> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Step::End) => {
                self.done = true;
                None
            }
            Ok(Step::Meta(e)) => Some(Ok(ProtoItem::Meta(e))),
            Ok(Step::Sample(piece)) => Some(self.sample(piece).map(ProtoItem::Sample)),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// Samples left in the body, for what a failed scrape reports; stops at an error.
    pub fn count_remaining_samples(&mut self) -> u64 {
        let mut n = 0;
        while let Some(Ok(item)) = self.next_item() {
            if matches!(item, ProtoItem::Sample(_)) {
                n += 1;
            }
        }
        n
    }

    fn advance(&mut self) -> Result<Step<'a>, ProtoError> {
        loop {
            if self.next_piece < self.pieces.len() {
                let p = self.pieces[self.next_piece];
                self.next_piece += 1;
                return Ok(Step::Sample(p));
            }
            let Some(fam) = &mut self.family else {
                if self.pos >= self.body.len() {
                    return Ok(Step::End);
                }
                self.family = self.open_family()?;
                continue;
            };
            if fam.meta_done < 3 {
                fam.meta_done += 1;
                let entry = match fam.meta_done {
                    1 => Entry::Help {
                        name: Cow::Borrowed(fam.name),
                        help: Cow::Borrowed(fam.help),
                        line: 0,
                    },
                    2 if fam.unit.is_empty() => continue,
                    2 => Entry::Unit {
                        name: Cow::Borrowed(fam.name),
                        unit: fam.unit,
                        line: 0,
                    },
                    _ => Entry::Type {
                        name: Cow::Borrowed(fam.name),
                        kind: fam.kind,
                        line: 0,
                    },
                };
                return Ok(Step::Meta(entry));
            }
            match next_metric(self.body, fam)? {
                Some((offset, bytes)) => self.load_metric(offset, bytes)?,
                None => self.family = None,
            }
        }
    }

    /// Reads the next family's length and its name, help, type and unit; `None` for a family
    /// without series, which is skipped.
    fn open_family(&mut self) -> Result<Option<Family<'a>>, ProtoError> {
        let mut d = Decbuf::at(self.body, self.pos);
        let start = self.pos;
        let len = d
            .uvarint()
            .map_err(|e| wire_error(e, "metric family length"))?;
        let content = d.pos();
        let end = match usize::try_from(len) {
            Ok(n) if n <= d.remaining() => content + n,
            _ => {
                return Err(err(
                    start,
                    format!(
                        "metric family declares {len} bytes but only {} remain",
                        d.remaining()
                    ),
                ));
            }
        };
        self.pos = end;
        let mut fam = Family {
            name: "",
            help: "",
            unit: "",
            kind: Kind::Counter,
            end,
            cursor: content,
            meta_done: 0,
        };
        let mut kind = 0u64;
        let mut kind_at = content;
        let mut has_metric = false;
        let mut d = Decbuf::at(&self.body[..end], content);
        while !d.is_empty() {
            let (field, wire, at) = read_key(&mut d)?;
            match (field, wire) {
                (1 | 2 | 5, WIRE_LEN) => {
                    let s = len_field(&mut d, at, "string field")?;
                    let s = std::str::from_utf8(s).map_err(|e| {
                        err(
                            at,
                            format!("invalid UTF-8 in the family's field {field}: {e}"),
                        )
                    })?;
                    match field {
                        1 => fam.name = s,
                        2 => fam.help = s,
                        _ => fam.unit = s,
                    }
                }
                (3, WIRE_VARINT) => {
                    kind_at = at;
                    kind = d.uvarint().map_err(|e| wire_error(e, "metric type"))?;
                }
                (4, WIRE_LEN) => {
                    has_metric = true;
                    len_field(&mut d, at, "metric")?;
                }
                (1..=5, w) => {
                    return Err(err(
                        at,
                        format!("metric family field {field} has wire type {w}"),
                    ));
                }
                _ => skip_field(&mut d, wire, at)?,
            }
        }
        fam.kind = match kind {
            0 => Kind::Counter,
            1 => Kind::Gauge,
            2 => Kind::Summary,
            3 => Kind::Unknown,
            4 => Kind::Histogram,
            5 => Kind::GaugeHistogram,
            _ => {
                return Err(err(
                    kind_at,
                    format!("unknown metric type {kind} for metric {:?}", fam.name),
                ));
            }
        };
        Ok(has_metric.then_some(fam))
    }

    /// Decodes one `Metric` and lists the samples it gives.
    fn load_metric(&mut self, offset: usize, bytes: &[u8]) -> Result<(), ProtoError> {
        if bytes.len() > MAX_METRIC_BYTES {
            return Err(err(
                offset,
                format!(
                    "metric of {} bytes is larger than the {MAX_METRIC_BYTES} bytes allowed",
                    bytes.len()
                ),
            ));
        }
        self.metric = Metric::decode(bytes).map_err(|e| err(offset, format!("metric: {e}")))?;
        self.metric_offset = offset;
        self.pieces.clear();
        self.next_piece = 0;
        let (fam_name, kind) = match &self.family {
            Some(f) => (f.name, f.kind),
            None => ("", Kind::Unknown),
        };
        let opts = self.opts;
        let pieces = &mut self.pieces;
        match kind {
            Kind::Summary => {
                pieces.extend([Piece::Count, Piece::Sum]);
                let n = self.metric.summary.as_ref().map_or(0, |s| s.quantile.len());
                pieces.extend((0..n).map(Piece::Quantile));
            }
            Kind::Histogram | Kind::GaugeHistogram => {
                let h = self.metric.histogram.get_or_insert_default();
                let native = opts.native_histograms && is_native(h);
                if native {
                    check_spans(h)
                        .map_err(|m| err(offset, format!("histogram {fam_name:?}: {m}")))?;
                    pieces.push(Piece::Native);
                    if opts.keep_classic && !h.bucket.is_empty() {
                        classic_pieces(pieces, h);
                    }
                } else if opts.convert_nhcb {
                    if opts.keep_classic {
                        classic_pieces(pieces, h);
                    }
                    pieces.push(Piece::Nhcb);
                } else {
                    classic_pieces(pieces, h);
                }
            }
            _ => pieces.push(Piece::Value),
        }
        Ok(())
    }

    fn sample(&mut self, piece: Piece) -> Result<ProtoSample<'_>, ProtoError> {
        let (fam_name, kind) = match &self.family {
            Some(f) => (f.name, f.kind),
            None => ("", Kind::Unknown),
        };
        let m = &self.metric;
        let offset = self.metric_offset;
        let suffix = match piece {
            Piece::Count => "_count",
            Piece::Sum => "_sum",
            Piece::Bucket(_) | Piece::InfBucket => "_bucket",
            _ => "",
        };
        self.name.clear();
        self.name.push_str(fam_name);
        self.name.push_str(suffix);
        let mut extra_name = None;
        self.extra.clear();
        let value = match piece {
            Piece::Value => ProtoValue::Float(match kind {
                Kind::Counter => m.counter.as_ref().map_or(0.0, |c| c.value),
                Kind::Gauge => m.gauge.as_ref().map_or(0.0, |g| g.value),
                _ => m.untyped.as_ref().map_or(0.0, |u| u.value),
            }),
            Piece::Count => ProtoValue::Float(match kind {
                Kind::Summary => m.summary.as_ref().map_or(0.0, |s| s.sample_count as f64),
                _ => m.histogram.as_ref().map_or(0.0, count_of),
            }),
            Piece::Sum => ProtoValue::Float(match kind {
                Kind::Summary => m.summary.as_ref().map_or(0.0, |s| s.sample_sum),
                _ => m.histogram.as_ref().map_or(0.0, |h| h.sample_sum),
            }),
            Piece::Quantile(i) => {
                let q = m
                    .summary
                    .as_ref()
                    .and_then(|s| s.quantile.get(i))
                    .copied()
                    .unwrap_or_default();
                extra_name = Some("quantile");
                self.extra
                    .push_str(&number::format_openmetrics_float(q.quantile));
                ProtoValue::Float(q.value)
            }
            Piece::Bucket(i) => {
                let b = m.histogram.as_ref().and_then(|h| h.bucket.get(i));
                let (bound, v) = b.map_or((f64::INFINITY, 0.0), |b| {
                    let v = if b.cumulative_count_float != 0.0 {
                        b.cumulative_count_float
                    } else {
                        b.cumulative_count as f64
                    };
                    (b.upper_bound, v)
                });
                extra_name = Some("le");
                self.extra
                    .push_str(&number::format_openmetrics_float(bound));
                ProtoValue::Float(v)
            }
            Piece::InfBucket => {
                extra_name = Some("le");
                self.extra.push_str("+Inf");
                ProtoValue::Float(m.histogram.as_ref().map_or(0.0, count_of))
            }
            Piece::Native => {
                let h = m.histogram.as_ref().cloned().unwrap_or_default();
                ProtoValue::Histogram(native_value(h, kind == Kind::GaugeHistogram))
            }
            Piece::Nhcb => {
                let h = m.histogram.as_ref().cloned().unwrap_or_default();
                let v = nhcb_value(&h, kind == Kind::GaugeHistogram);
                let v = v.map_err(|e| {
                    self.done = true;
                    err(
                        offset,
                        format!(
                            "histogram {fam_name:?} cannot be converted to custom buckets: {e}"
                        ),
                    )
                })?;
                ProtoValue::Histogram(v)
            }
        };
        self.key.clear();
        push_key_part(&mut self.key, &self.name);
        for l in &m.label {
            push_key_part(&mut self.key, &l.name);
            push_key_part(&mut self.key, &l.value);
        }
        if let Some(n) = extra_name {
            push_key_part(&mut self.key, n);
            push_key_part(&mut self.key, &self.extra);
        }
        Ok(ProtoSample {
            key: &self.key,
            name: &self.name,
            labels: &m.label,
            extra: extra_name.map(|n| (n, self.extra.as_str())),
            timestamp: (m.timestamp_ms != 0).then_some(m.timestamp_ms),
            value,
            offset,
            kind,
        })
    }
}

/// What [`ProtoParser::advance`] found.
enum Step<'a> {
    End,
    Meta(Entry<'a>),
    Sample(Piece),
}

/// Length-prefixed, so no part can run into the next: `len:text`.
fn push_key_part(key: &mut String, part: &str) {
    let _ = write!(key, "{}:", part.len());
    key.push_str(part);
}

/// `_count` (and the added `+Inf` bucket): the float count when set, else the integer one.
fn count_of(h: &pb::Histogram) -> f64 {
    if h.sample_count_float != 0.0 {
        h.sample_count_float
    } else {
        h.sample_count as f64
    }
}

/// The classic series of a histogram: `_count`, `_sum`, buckets up to the first `+Inf` one,
/// and a `+Inf` bucket when none was given.
fn classic_pieces(pieces: &mut Vec<Piece>, h: &pb::Histogram) {
    pieces.extend([Piece::Count, Piece::Sum]);
    for (i, b) in h.bucket.iter().enumerate() {
        pieces.push(Piece::Bucket(i));
        if b.upper_bound == f64::INFINITY {
            return;
        }
    }
    pieces.push(Piece::InfBucket);
}

/// Prometheus's rule: native buckets are present when there is a span, a zero threshold or
/// a zero count (a client marks an empty native histogram with an empty span).
fn is_native(h: &pb::Histogram) -> bool {
    !h.positive_span.is_empty()
        || !h.negative_span.is_empty()
        || h.zero_threshold > 0.0
        || h.zero_count > 0
}

fn is_float(h: &pb::Histogram) -> bool {
    h.sample_count_float > 0.0 || h.zero_count_float > 0.0
}

/// The spans must cover exactly the buckets given, on each side.
fn check_spans(h: &pb::Histogram) -> Result<(), String> {
    let (pos, neg) = if is_float(h) {
        (h.positive_count.len(), h.negative_count.len())
    } else {
        (h.positive_delta.len(), h.negative_delta.len())
    };
    for (side, spans, n) in [
        ("positive", &h.positive_span, pos),
        ("negative", &h.negative_span, neg),
    ] {
        let total: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
        if total != n as u64 {
            return Err(format!(
                "{side} side: spans require {total} buckets, have {n}"
            ));
        }
    }
    Ok(())
}

fn spans(s: &[pb::BucketSpan]) -> Vec<Span> {
    s.iter().map(|s| Span::new(s.offset, s.length)).collect()
}

/// A native histogram sample from its message: a float histogram when the float count or
/// float zero count is set, an integer one otherwise.
fn native_value(h: pb::Histogram, gauge: bool) -> HistogramValue {
    let hint = if gauge {
        CounterResetHint::Gauge
    } else {
        CounterResetHint::Unknown
    };
    if is_float(&h) {
        HistogramValue::Float(Box::new(FloatHistogram {
            counter_reset_hint: hint,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count_float,
            count: h.sample_count_float,
            sum: h.sample_sum,
            positive_spans: spans(&h.positive_span),
            negative_spans: spans(&h.negative_span),
            positive_buckets: h.positive_count,
            negative_buckets: h.negative_count,
            custom_values: Vec::new(),
        }))
    } else {
        HistogramValue::Int(Box::new(Histogram {
            counter_reset_hint: hint,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: h.zero_count,
            count: h.sample_count,
            sum: h.sample_sum,
            positive_spans: spans(&h.positive_span),
            negative_spans: spans(&h.negative_span),
            positive_buckets: h.positive_delta,
            negative_buckets: h.negative_delta,
            custom_values: Vec::new(),
        }))
    }
}

/// A classic histogram as a custom-bucket native histogram (histmath's `from_classic`, the
/// conversion Prometheus's parser makes): its bounds and cumulative counts (the float forms
/// when set), its count and sum; a gauge histogram keeps the gauge hint.
fn nhcb_value(h: &pb::Histogram, gauge: bool) -> Result<HistogramValue, String> {
    let buckets: Vec<(f64, f64)> = h
        .bucket
        .iter()
        .map(|b| {
            let n = if b.cumulative_count_float != 0.0 {
                b.cumulative_count_float
            } else {
                b.cumulative_count as f64
            };
            (b.upper_bound, n)
        })
        .collect();
    let mut v =
        from_classic(&buckets, Some(count_of(h)), h.sample_sum).map_err(|e| e.to_string())?;
    if gauge {
        match &mut v {
            HistogramValue::Int(h) => h.counter_reset_hint = CounterResetHint::Gauge,
            HistogramValue::Float(h) => h.counter_reset_hint = CounterResetHint::Gauge,
        }
    }
    Ok(v)
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// A field key: field number, wire type, and the key's offset.
fn read_key(d: &mut Decbuf<'_>) -> Result<(u64, u8, usize), ProtoError> {
    let at = d.pos();
    let key = d.uvarint().map_err(|e| wire_error(e, "field key"))?;
    let field = key >> 3;
    if field == 0 {
        return Err(err(at, "field number 0"));
    }
    Ok((field, (key & 7) as u8, at))
}

/// Skips an unknown field; groups (deprecated, absent from this format) are refused.
fn skip_field(d: &mut Decbuf<'_>, wire: u8, at: usize) -> Result<(), ProtoError> {
    let r = match wire {
        WIRE_VARINT => d.uvarint().map(|_| ()),
        WIRE_I64 => d.skip(8),
        WIRE_LEN => return len_field(d, at, "unknown field").map(|_| ()),
        WIRE_I32 => d.skip(4),
        w => return Err(err(at, format!("unsupported wire type {w}"))),
    };
    r.map_err(|e| wire_error(e, "unknown field"))
}

/// A length-delimited field's bytes; a length past the end of its message is an error at the
/// field's key, saying how much it declared and how much was left.
fn len_field<'a>(d: &mut Decbuf<'a>, at: usize, what: &str) -> Result<&'a [u8], ProtoError> {
    d.uvarint_bytes().map_err(|e| match e {
        encoding::Error::Truncated { needed, left, .. } => err(
            at,
            format!("{what} declares {needed} bytes but only {left} remain"),
        ),
        e => wire_error(e, what),
    })
}

/// The next `metric` field of the family: its offset and bytes.
fn next_metric<'a>(
    body: &'a [u8],
    fam: &mut Family<'_>,
) -> Result<Option<(usize, &'a [u8])>, ProtoError> {
    let mut d = Decbuf::at(&body[..fam.end], fam.cursor);
    while !d.is_empty() {
        let (field, wire, at) = read_key(&mut d)?;
        if field == 4 && wire == WIRE_LEN {
            let bytes = len_field(&mut d, at, "metric")?;
            fam.cursor = d.pos();
            return Ok(Some((at, bytes)));
        }
        skip_field(&mut d, wire, at)?;
    }
    fam.cursor = d.pos();
    Ok(None)
}

#[cfg(test)]
#[path = "protobuf_tests.rs"]
mod tests;
