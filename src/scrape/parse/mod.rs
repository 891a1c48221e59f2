//! Exposition format parsing: Prometheus text 0.0.4 (and 1.0.0's quoted names) and
//! OpenMetrics 1.0, for the scraper and for `tidemark import`; the protobuf format (native
//! histograms) in [`protobuf`], for the scraper.
//!
//! This module owns turning a response body into entries (samples, HELP, TYPE, UNIT) and
//! content-type negotiation. It must never skip what it cannot parse: every malformed line
//! ends the parse with a [`ParseError`] naming its 1-based line, and the caller drops the
//! whole body. It must never panic on any input, do I/O, or allocate per sample when nothing
//! is escaped (series text, names and label values are slices of the body).
//!
//! Semantics follow Prometheus's parsers, with these decisions:
//! - **Values** are read as Go's `strconv.ParseFloat` reads them, minus hex floats and `_`,
//!   as Prometheus does: decimal forms, `Inf`/`Infinity` with an optional sign and `NaN`
//!   without one, case-insensitively. Overflow (`1e309`) is an error; underflow gives 0.
//!   Every NaN becomes Prometheus's canonical NaN (`0x7ff8000000000001`), never the stale
//!   marker.
//! - **Text timestamps** are integer milliseconds of digits only (Prometheus's lexer has no
//!   sign either). **OpenMetrics timestamps** are float seconds, converted by truncating
//!   toward zero like Prometheus's `int64(ts * 1000)`, but computed on the exact decimal
//!   text: `1.001` gives 1001 ms where Prometheus's binary product gives 1000. This keeps
//!   `tidemark dump | tidemark import` exact; it differs from Prometheus only where the
//!   binary product loses the last millisecond. NaN, infinite or out-of-i64 timestamps are
//!   errors.
//! - **`_created` lines** are returned as ordinary samples by default, as Prometheus 3 does
//!   unless its `created-timestamp-zero-ingestion` feature is on (and as `promtool tsdb
//!   create-blocks-from openmetrics` does). [`Parser::skip_created_series`] mirrors that
//!   feature's skipping of `_created` samples of counter, histogram and summary families.
//! - **Label sets** are returned as written; [`SampleEntry::to_labels`] adds `__name__`,
//!   normalises `le` of histograms and `quantile` of summaries to OpenMetrics float text
//!   (`le="1"` becomes `1.0`) as Prometheus 3 does, and validates through the model, which
//!   refuses duplicate names (Prometheus refuses them when appending) and non-legacy names.
//! - **Quoted UTF-8 names** (`{"my.metric", "a.b"="c"}`, `# TYPE "my.metric" gauge`) parse;
//!   `to_labels` then rejects names the model does not accept, with a hint.
//! - **Stricter than Prometheus**, deliberately: escapes other than `\\`, `\"`, `\n` in label
//!   values and quoted names are errors (Prometheus keeps them verbatim); a raw newline inside
//!   a label value ends the line and so is an unterminated value (Prometheus's text lexer lets
//!   it through); a metric name must be followed by a blank, `{` or the end of a HELP/TYPE
//!   line (`# HELP a.b x` is refused, Prometheus reads the name `a`); lines with invalid UTF-8
//!   are errors, except text-format comments, which are skipped unread as Prometheus does.
//! - **Lenient like Prometheus's text parser**: blanks between tokens and inside braces,
//!   trailing commas, no comma between labels, no blank between `}` and the value, a last
//!   line without newline. OpenMetrics is strict: single spaces, no blank lines, no other
//!   comments, a final `# EOF` and nothing after it.
//! - A sample's [`MetricType`] is the last `# TYPE`'s when its name is that family's name or
//!   the name plus a known suffix (`_total`, `_bucket`, `_count`, `_sum`, `_created`,
//!   `_gcount`, `_gsum`, `_info`), and `Unknown` otherwise (Prometheus inherits the last TYPE
//!   blindly, a known bug of theirs).

mod lex;
mod negotiate;
mod number;
pub(crate) mod proto_types;
pub mod protobuf;
mod scan;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use crate::model::{LabelError, Labels, LabelsBuilder, METRIC_NAME};
use lex::Escapes;
pub use negotiate::{ACCEPT_HEADER, ContentTypeError, Format, Negotiated};
use scan::{Found, ScanError, ScanErrorKind, scan_meta_name, scan_sample};

/// The type a `# TYPE` line declares for a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram` (OpenMetrics only).
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info` (OpenMetrics only).
    Info,
    /// `stateset` (OpenMetrics only).
    StateSet,
    /// `unknown` (OpenMetrics), `untyped` (text), or no TYPE line at all.
    #[default]
    Unknown,
}

impl MetricType {
    /// The OpenMetrics name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }

    fn from_text_format(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Unknown,
            _ => return None,
        })
    }

    fn from_openmetrics(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// Whether Prometheus's created-timestamp handling applies to this type's `_created`.
    fn has_created_series(self) -> bool {
        matches!(
            self,
            MetricType::Counter | MetricType::Histogram | MetricType::Summary
        )
    }
}

/// A body that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number in the body.
    pub line: u32,
    /// Byte offset in the body where the problem was found: the offending token or
    /// character, or the start of the line when the whole line is at fault. `None` for a
    /// label set refused after parsing ([`SampleEntry::to_labels`]), which knows only its line.
    pub offset: Option<usize>,
    /// What is wrong, with the offending line quoted.
    pub message: String,
}

/// One parsed line that carries information.
#[derive(Debug, Clone)]
pub enum Entry<'a> {
    /// A sample line.
    Sample(SampleEntry<'a>),
    /// `# HELP name text`, text unescaped.
    Help {
        name: Cow<'a, str>,
        help: Cow<'a, str>,
        line: u32,
    },
    /// `# TYPE name type`.
    Type {
        name: Cow<'a, str>,
        kind: MetricType,
        line: u32,
    },
    /// `# UNIT name unit` (OpenMetrics only).
    Unit {
        name: Cow<'a, str>,
        unit: &'a str,
        line: u32,
    },
}

impl Entry<'_> {
    /// The 1-based line the entry came from.
    pub fn line(&self) -> u32 {
        match self {
            Entry::Sample(s) => s.line,
            Entry::Help { line, .. } | Entry::Type { line, .. } | Entry::Unit { line, .. } => *line,
        }
    }
}

/// A sample line, borrowing the body.
#[derive(Debug, Clone)]
pub struct SampleEntry<'a> {
    series: &'a str,
    name: &'a str,
    name_escaped: bool,
    labels: &'a str,
    value: f64,
    timestamp: Option<i64>,
    /// The exemplar's text from `{` to the line end, validated, or "" (parsed again on
    /// request: exemplars are rare and keeping them out makes every entry smaller).
    exemplar: &'a str,
    line: u32,
    kind: MetricType,
}

impl<'a> SampleEntry<'a> {
    /// `name{labels}` exactly as in the body: the key of the scraper's series cache.
    #[inline]
    pub fn series(&self) -> &'a str {
        self.series
    }

    /// The metric name, unescaped if it was quoted with escapes.
    #[inline]
    pub fn name(&self) -> Cow<'a, str> {
        maybe_unescape(self.name, self.name_escaped)
    }

    /// The labels as written (without `__name__`), values unescaped; borrows unless escaped.
    #[inline]
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            s: self.labels,
            i: 0,
        }
    }

    /// The sample value.
    #[inline]
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The timestamp in milliseconds, if the line had one.
    #[inline]
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The OpenMetrics exemplar, if the line had one.
    pub fn exemplar(&self) -> Option<Exemplar<'a>> {
        if self.exemplar.is_empty() {
            return None;
        }
        scan::scan_exemplar(self.exemplar, 0)
            .ok()
            .map(|e| Exemplar {
                line: self.line,
                ..e
            })
    }

    /// The 1-based line number.
    #[inline]
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The type of the family this sample belongs to.
    #[inline]
    pub fn kind(&self) -> MetricType {
        self.kind
    }

    /// The full label set, `__name__` included, `le`/`quantile` normalised, validated.
    pub fn to_labels(&self) -> Result<Labels, ParseError> {
        let mut b = LabelsBuilder::default();
        b.push(METRIC_NAME, self.name());
        for (name, value) in self.labels() {
            let value = normalize_bucket_label(self.kind, &name, value);
            b.push(name, value);
        }
        b.build()
            .map_err(|e| label_error(e, self.line, self.series))
    }
}

/// An OpenMetrics exemplar: ` # {labels} value [timestamp]` after a sample.
#[derive(Debug, Clone)]
pub struct Exemplar<'a> {
    labels: &'a str,
    value: f64,
    timestamp: Option<i64>,
    line: u32,
}

impl<'a> Exemplar<'a> {
    /// The exemplar's labels, values unescaped.
    pub fn labels(&self) -> LabelIter<'a> {
        LabelIter {
            s: self.labels,
            i: 0,
        }
    }

    /// The exemplar value.
    pub fn value(&self) -> f64 {
        self.value
    }

    /// The exemplar timestamp in milliseconds, if given.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// The exemplar's labels as a validated set (no `__name__`).
    pub fn to_labels(&self) -> Result<Labels, ParseError> {
        let mut b = LabelsBuilder::default();
        for (name, value) in self.labels() {
            b.push(name, value);
        }
        b.build()
            .map_err(|e| label_error(e, self.line, self.labels))
    }
}

/// Iterates `(name, value)` over a label set the parser already validated.
#[derive(Debug, Clone)]
pub struct LabelIter<'a> {
    /// The text between the braces.
    s: &'a str,
    i: usize,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.s;
        let b = s.as_bytes();
        loop {
            let mut i = self.i;
            while i < b.len() && (lex::is_blank(b[i]) || b[i] == b',') {
                i += 1;
            }
            // Parking at the end on anything unexpected keeps later calls at `None`; the
            // parser validated this text, so that only guards against misuse.
            self.i = b.len();
            if i >= b.len() {
                return None;
            }
            let name;
            if b[i] == b'"' {
                let q = lex::scan_quoted(b, i + 1).ok()?;
                name = maybe_unescape(s.get(i + 1..q.close)?, q.escaped);
                i = lex::skip_blanks(b, q.close + 1);
                if i >= b.len() || b[i] == b',' {
                    // A quoted string on its own is the metric name, not a label.
                    self.i = i;
                    continue;
                }
            } else {
                let end = lex::label_name_end(b, i);
                if end == i {
                    return None;
                }
                name = Cow::Borrowed(s.get(i..end)?);
                i = lex::skip_blanks(b, end);
            }
            if b.get(i) != Some(&b'=') {
                return None;
            }
            i = lex::skip_blanks(b, i + 1);
            if b.get(i) != Some(&b'"') {
                return None;
            }
            let q = lex::scan_quoted(b, i + 1).ok()?;
            let value = maybe_unescape(s.get(i + 1..q.close)?, q.escaped);
            self.i = q.close + 1;
            return Some((name, value));
        }
    }
}

/// Streaming parser over a whole response body; yields entries in order, stops after the
/// first error.
#[derive(Debug, Clone)]
pub struct Parser<'a> {
    body: &'a [u8],
    format: Format,
    /// Start of the next line.
    pos: usize,
    /// Number of the line last read.
    line: u32,
    skip_created: bool,
    /// Name (raw) and type of the family of the last `# TYPE`.
    family: &'a str,
    family_kind: MetricType,
    done: bool,
}

/// What one line produced: an entry, nothing (comments, skipped lines, the end), or an error.
type Step<'a> = Result<Option<Entry<'a>>, ParseError>;

/// Suffixes a sample name may add to its family's name.
const FAMILY_SUFFIXES: [&str; 9] = [
    "", "_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info",
];

impl<'a> Parser<'a> {
    /// A parser over `body` in `format`.
    pub fn new(body: &'a [u8], format: Format) -> Self {
        Parser {
            body,
            format,
            pos: 0,
            line: 0,
            skip_created: false,
            family: "",
            family_kind: MetricType::Unknown,
            done: false,
        }
    }

    /// Drops `_created` samples of counter, histogram and summary families, as Prometheus's
    /// OpenMetrics parser does when created timestamps are ingested. Off by default.
    pub fn skip_created_series(mut self, skip: bool) -> Self {
        self.skip_created = skip;
        self
    }

    /// The format being parsed.
    pub fn format(&self) -> Format {
        self.format
    }

    /// A protobuf body handed to the text parser (a caller's mistake, never a panic).
    fn not_text() -> ParseError {
        ParseError {
            line: 1,
            offset: Some(0),
            message: "a protobuf body is read by the protobuf parser, not the text one".into(),
        }
    }

    fn advance(&mut self) -> Option<Result<Entry<'a>, ParseError>> {
        while !self.done {
            let start = self.pos;
            if start >= self.body.len() {
                self.done = true;
                return match self.format {
                    Format::PrometheusText => None,
                    Format::OpenMetrics => Some(Err(ParseError {
                        line: self.line.saturating_add(1),
                        offset: Some(self.body.len()),
                        message: "data does not end with # EOF".to_string(),
                    })),
                    Format::Protobuf => Some(Err(Self::not_text())),
                };
            }
            let (end, terminated) = match lex::find_newline(&self.body[start..]) {
                Some(k) => (start + k, true),
                None => (self.body.len(), false),
            };
            self.pos = if terminated { end + 1 } else { end };
            self.line = self.line.saturating_add(1);
            let line = &self.body[start..end];
            let step = match self.format {
                Format::PrometheusText => self.text_line(line),
                Format::OpenMetrics => self.openmetrics_line(line, terminated),
                Format::Protobuf => Err(Self::not_text()),
            };
            match step {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }

    fn text_line(&mut self, line: &'a [u8]) -> Step<'a> {
        let i = lex::skip_blanks(line, 0);
        if i == line.len() {
            return Ok(None);
        }
        if line[i] == b'#' {
            return self.text_comment(line, i);
        }
        let s = self.utf8(line)?;
        let scanned = scan_sample(s, i, false).map_err(|e| self.scan_error(e, line))?;
        Ok(self.sample(scanned))
    }

    /// `#` lines of the text format: HELP and TYPE are metadata, anything else a comment.
    fn text_comment(&mut self, line: &'a [u8], hash: usize) -> Step<'a> {
        let after = hash + 1;
        if after >= line.len() || !lex::is_blank(line[after]) {
            return Ok(None);
        }
        let kw_at = lex::skip_blanks(line, after);
        let kw = &line[kw_at..];
        let keyword = if kw.starts_with(b"HELP") {
            "HELP"
        } else if kw.starts_with(b"TYPE") {
            "TYPE"
        } else {
            return Ok(None);
        };
        if kw.len() <= 4 || !lex::is_blank(kw[4]) {
            return Ok(None);
        }
        let s = self.utf8(line)?;
        let b = s.as_bytes();
        let name_at = lex::skip_blanks(b, kw_at + 4);
        let (name, name_escaped, name_end) =
            scan_meta_name(s, name_at, keyword).map_err(|e| self.scan_error(e, line))?;
        let text = match b.get(name_end) {
            None => "",
            // Prometheus drops exactly one separator: "# HELP m  x" has the help " x".
            Some(&c) if lex::is_blank(c) => s.get(name_end + 1..).unwrap_or(""),
            Some(_) => return Err(self.bad_name_char(s, name_end, line)),
        };
        let name_cow = maybe_unescape(name, name_escaped);
        if keyword == "HELP" {
            return Ok(Some(Entry::Help {
                name: name_cow,
                help: lex::unescape(text, Escapes::TextHelp),
                line: self.line,
            }));
        }
        let Some(kind) = MetricType::from_text_format(text) else {
            let m = format!(
                "invalid metric type {text:?} (expected counter, gauge, histogram, summary or untyped)"
            );
            return Err(self.error_at((name_end + 1).min(s.len()), m, line));
        };
        self.family = name;
        self.family_kind = kind;
        Ok(Some(Entry::Type {
            name: name_cow,
            kind,
            line: self.line,
        }))
    }

    fn openmetrics_line(&mut self, line: &'a [u8], terminated: bool) -> Step<'a> {
        if line == b"# EOF" {
            if self.pos < self.body.len() {
                self.line = self.line.saturating_add(1);
                let rest = &self.body[self.pos..];
                let next = &rest[..lex::find_newline(rest).unwrap_or(rest.len())];
                return Err(self.error("unexpected data after # EOF", next));
            }
            self.done = true;
            return Ok(None);
        }
        if !terminated {
            return Err(self.error(
                "data does not end with # EOF (last line has no newline)",
                line,
            ));
        }
        match line.first() {
            None => Err(self.error("blank lines are not allowed in OpenMetrics", line)),
            Some(b'#') => self.openmetrics_meta(line),
            Some(_) => {
                let s = self.utf8(line)?;
                let scanned = scan_sample(s, 0, true).map_err(|e| self.scan_error(e, line))?;
                Ok(self.sample(scanned))
            }
        }
    }

    fn openmetrics_meta(&mut self, line: &'a [u8]) -> Step<'a> {
        let keyword = if line.starts_with(b"# HELP ") {
            "HELP"
        } else if line.starts_with(b"# TYPE ") {
            "TYPE"
        } else if line.starts_with(b"# UNIT ") {
            "UNIT"
        } else {
            return Err(self.error(
                "unexpected comment: OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF",
                line,
            ));
        };
        let s = self.utf8(line)?;
        let (name, name_escaped, name_end) =
            scan_meta_name(s, 7, keyword).map_err(|e| self.scan_error(e, line))?;
        let text = match s.as_bytes().get(name_end) {
            Some(b' ') => s.get(name_end + 1..).unwrap_or(""),
            None => {
                let m = format!("expected a space and text after the metric name in {keyword}");
                return Err(self.error_at(name_end, m, line));
            }
            Some(_) => return Err(self.bad_name_char(s, name_end, line)),
        };
        let name_cow = maybe_unescape(name, name_escaped);
        match keyword {
            "HELP" => Ok(Some(Entry::Help {
                name: name_cow,
                help: lex::unescape(text, Escapes::Quoted),
                line: self.line,
            })),
            "TYPE" => {
                let Some(kind) = MetricType::from_openmetrics(text) else {
                    let m = format!(
                        "invalid metric type {text:?} (expected counter, gauge, histogram, \
                         gaugehistogram, summary, info, stateset or unknown)"
                    );
                    return Err(self.error_at(name_end + 1, m, line));
                };
                self.family = name;
                self.family_kind = kind;
                Ok(Some(Entry::Type {
                    name: name_cow,
                    kind,
                    line: self.line,
                }))
            }
            _ => {
                let n = name_cow.as_bytes();
                let u = text.as_bytes();
                let suffix_ok = u.is_empty()
                    || (n.len() > u.len() && n.ends_with(u) && n[n.len() - u.len() - 1] == b'_');
                if !suffix_ok {
                    let m = format!("unit {text:?} is not a suffix of metric name {name_cow:?}");
                    return Err(self.error_at(name_end + 1, m, line));
                }
                Ok(Some(Entry::Unit {
                    name: name_cow,
                    unit: text,
                    line: self.line,
                }))
            }
        }
    }

    fn sample(&self, mut sample: SampleEntry<'a>) -> Option<Entry<'a>> {
        sample.kind = self.kind_of(sample.name);
        if self.skip_created
            && sample.kind.has_created_series()
            && sample.name.ends_with("_created")
        {
            return None;
        }
        sample.line = self.line;
        Some(Entry::Sample(sample))
    }

    #[inline]
    fn kind_of(&self, name: &str) -> MetricType {
        if self.family_kind == MetricType::Unknown {
            return MetricType::Unknown;
        }
        match name.strip_prefix(self.family) {
            Some(suffix) if FAMILY_SUFFIXES.contains(&suffix) => self.family_kind,
            _ => MetricType::Unknown,
        }
    }

    fn utf8(&self, line: &'a [u8]) -> Result<&'a str, ParseError> {
        std::str::from_utf8(line).map_err(|e| {
            let at = e.valid_up_to();
            self.error_at(
                at,
                format!("invalid UTF-8 at byte {} of the line", at + 1),
                line,
            )
        })
    }

    /// The line is at fault as a whole: the error points at its start.
    fn error(&self, message: impl std::fmt::Display, line: &[u8]) -> ParseError {
        self.error_at(0, message, line)
    }

    /// An error found at byte `at` of `line`, a slice of the body. Its offset in the body is
    /// worked out here, on the error path, so reading a line costs nothing for it.
    fn error_at(&self, at: usize, message: impl std::fmt::Display, line: &[u8]) -> ParseError {
        let line_start = line.as_ptr().addr() - self.body.as_ptr().addr();
        ParseError {
            line: self.line,
            offset: Some(line_start + at),
            message: format!("{message} in {:?}", excerpt(line)),
        }
    }

    fn scan_error(&self, e: ScanError<'_>, line: &[u8]) -> ParseError {
        self.error_at(e.at, e, line)
    }

    /// A HELP/TYPE/UNIT name followed by something other than a blank or the end.
    fn bad_name_char(&self, s: &str, at: usize, line: &[u8]) -> ParseError {
        let kind = ScanErrorKind::BadNameChar(Found::char_at(s, at));
        self.error_at(at, kind, line)
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance()
    }
}

impl std::iter::FusedIterator for Parser<'_> {}

fn label_error(e: LabelError, line: u32, series: &str) -> ParseError {
    let hint = match e {
        LabelError::InvalidName(_) | LabelError::InvalidMetricName(_) => {
            " (tidemark stores legacy names only: [a-zA-Z_:][a-zA-Z0-9_:]*)"
        }
        _ => "",
    };
    ParseError {
        line,
        offset: None,
        message: format!("{e}{hint} in series {series:?}"),
    }
}

/// Prometheus 3 rewrites `le` and `quantile` values of classic histograms and summaries to
/// OpenMetrics float text, so `le="1"` and `le="1.0"` are one series.
fn normalize_bucket_label<'v>(kind: MetricType, name: &str, value: Cow<'v, str>) -> Cow<'v, str> {
    let applies = (kind == MetricType::Histogram && name == "le")
        || (kind == MetricType::Summary && name == "quantile");
    if !applies {
        return value;
    }
    match number::parse_float(&value) {
        Some(f) => Cow::Owned(number::format_openmetrics_float(f)),
        None => value,
    }
}

#[inline]
fn maybe_unescape(raw: &str, escaped: bool) -> Cow<'_, str> {
    if escaped {
        lex::unescape(raw, Escapes::Quoted)
    } else {
        Cow::Borrowed(raw)
    }
}

/// The offending line for error messages, shortened.
fn excerpt(line: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(line);
    if text.chars().count() <= MAX {
        return text.into_owned();
    }
    let mut out: String = text.chars().take(MAX).collect();
    out.push('…');
    out
}
