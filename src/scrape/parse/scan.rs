//! Scanning one line into a sample: the grammar of both formats, as pure functions over a
//! line of text, returning a [`ScanError`] (where on the line, and what) that the parser
//! turns into a `ParseError` with the line number and the body offset.

use std::fmt;

use super::lex::{self, QuoteError};
use super::number::{self, SecondsError};
use super::{Exemplar, MetricType, SampleEntry};

/// A line that does not scan: the byte offset in the line where the problem was found, and
/// what it is. Built only on failure, from slices of the line: no allocation.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub(super) struct ScanError<'a> {
    /// Byte offset in the line: where the offending token or character starts.
    pub at: usize,
    /// What is wrong; its text is the parser's message.
    pub kind: ScanErrorKind<'a>,
}

impl<'a> ScanError<'a> {
    fn new(at: usize, kind: ScanErrorKind<'a>) -> Self {
        ScanError { at, kind }
    }
}

/// What is wrong with a line, with the pieces of it the message quotes.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub(super) enum ScanErrorKind<'a> {
    /// `{` with no quoted name inside and none before it.
    #[error("missing metric name: expected a name before '{{' or a quoted name inside the braces")]
    MissingName,
    /// A sample line that does not start with a name or `{`.
    #[error("expected a metric name, found {0}")]
    ExpectedName(Found),
    /// A name before the braces and a quoted one inside.
    #[error("metric name given twice: before the braces and inside them")]
    NameTwice,
    /// Two quoted names inside the braces.
    #[error("metric name given twice inside the braces")]
    NameTwiceInBraces,
    /// A quoted name among an exemplar's labels.
    #[error("a quoted metric name is not allowed in exemplar labels")]
    NameInExemplar,
    /// A name followed by something other than a blank, `{` or the end.
    #[error("invalid character {0} in metric name")]
    BadNameChar(Found),
    /// HELP, TYPE or UNIT not followed by a name.
    #[error("expected a metric name after {keyword}, found {found}")]
    ExpectedMetaName {
        /// `HELP`, `TYPE` or `UNIT`.
        keyword: &'static str,
        /// What was there instead.
        found: Found,
    },
    /// The line ends after the series.
    #[error("expected a value after the series")]
    MissingValue,
    /// OpenMetrics: no single space between series and value.
    #[error("expected a space before the value, found {0}")]
    ExpectedSpace(Found),
    /// Text after the timestamp (the rest of the line).
    #[error("unexpected {0:?} after the timestamp")]
    AfterTimestamp(&'a str),
    /// An exemplar in the text format.
    #[error("exemplars are only allowed in OpenMetrics")]
    ExemplarInText,
    /// A text-format timestamp that is not integer milliseconds.
    #[error("invalid timestamp {0:?}: expected integer milliseconds")]
    TextTimestamp(&'a str),
    /// An exemplar's label set with no value after it.
    #[error("expected a space and a value after the exemplar labels")]
    MissingExemplarValue,
    /// Text after the exemplar's timestamp (the rest of the line).
    #[error("unexpected {0:?} after the exemplar timestamp")]
    AfterExemplarTimestamp(&'a str),
    /// The line ends inside `{...}`.
    #[error("unterminated label set: missing '}}'")]
    UnterminatedLabelSet,
    /// Neither a label name nor a quoted one where a label starts.
    #[error("expected a label name, found {0}")]
    ExpectedLabelName(Found),
    /// No `=` after a label name.
    #[error("expected '=' after the label name, found {0}")]
    ExpectedEquals(Found),
    /// No `"` after `=`.
    #[error("expected '\"' to open the label value, found {0}")]
    ExpectedOpenQuote(Found),
    /// The line ends after `=`.
    #[error("expected a label value, found the end of the line")]
    MissingLabelValue,
    /// OpenMetrics: neither `,` nor `}` after a label value.
    #[error("expected ',' or '}}' after the label value, found {0}")]
    ExpectedSeparator(Found),
    /// The line ends inside quotes.
    #[error("unterminated {0}: missing closing '\"'")]
    UnterminatedQuote(Quoted),
    /// A backslash followed by `escape`, which is not `\\`, `\"` or `n`.
    #[error(
        "invalid escape sequence '\\{}' in {what}: only \\\\, \\\" and \\n are allowed",
        .escape.escape_ascii()
    )]
    BadEscape {
        /// Where it was.
        what: Quoted,
        /// The byte after the backslash.
        escape: u8,
    },
    /// An empty value or timestamp.
    #[error("expected a {0}, found a blank")]
    Blank(Field),
    /// A value or timestamp that is not a number.
    #[error("invalid {field} {token:?}: {problem}")]
    BadNumber {
        /// Which number.
        field: Field,
        /// Its text.
        token: &'a str,
        /// Why it is not one.
        problem: NumberProblem,
    },
    /// An OpenMetrics timestamp that is NaN or infinite.
    #[error("invalid {field} {token:?}: must be finite")]
    NotFinite {
        /// Which timestamp.
        field: Field,
        /// Its text.
        token: &'a str,
    },
    /// An OpenMetrics timestamp beyond `i64` milliseconds.
    #[error("{field} {token:?} is out of range")]
    OutOfRange {
        /// Which timestamp.
        field: Field,
        /// Its text.
        token: &'a str,
    },
}

/// What stood where something else was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Found {
    /// A character, shown quoted.
    Char(char),
    /// A byte that starts no valid UTF-8 character.
    Byte(u8),
    /// Nothing: the line ended.
    End,
}

impl Found {
    /// The character starting at byte `i` of `s` (the end when `i` is past it, or not on a
    /// character boundary).
    pub(super) fn char_at(s: &str, i: usize) -> Found {
        match s.get(i..).and_then(|r| r.chars().next()) {
            Some(c) => Found::Char(c),
            None => Found::End,
        }
    }

    /// The character starting at byte `i` of `b`, or the byte itself when it starts none.
    fn byte_at(b: &[u8], i: usize) -> Found {
        match b.get(i..) {
            Some(rest) if !rest.is_empty() => {
                let end = rest.len().min(4);
                match std::str::from_utf8(&rest[..end]) {
                    Ok(t) => Found::char_at(t, 0),
                    Err(e) if e.valid_up_to() > 0 => Found::char_at(
                        std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or(""),
                        0,
                    ),
                    Err(_) => Found::Byte(rest[0]),
                }
            }
            _ => Found::End,
        }
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Char(c) => write!(f, "{c:?}"),
            Found::Byte(b) => write!(f, "byte 0x{b:02x}"),
            Found::End => f.write_str("the end of the line"),
        }
    }
}

/// Which quoted text: a metric name in quotes or a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quoted {
    /// `{"my.metric"}` or `# TYPE "my.metric"`.
    Name,
    /// `x="..."`.
    LabelValue,
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quoted::Name => "quoted name",
            Quoted::LabelValue => "label value",
        })
    }
}

/// Which number of a sample line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    /// The sample value.
    Value,
    /// The sample's OpenMetrics timestamp.
    Timestamp,
    /// The exemplar's value.
    ExemplarValue,
    /// The exemplar's timestamp.
    ExemplarTimestamp,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Value => "value",
            Field::Timestamp => "timestamp",
            Field::ExemplarValue => "exemplar value",
            Field::ExemplarTimestamp => "exemplar timestamp",
        })
    }
}

/// Why a token is not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NumberProblem {
    /// It ends in `\r`: the body has CRLF line endings.
    Crlf,
    /// `+NaN` or `-NaN`.
    SignedNan,
    /// Digits, signs, `.` and `e` only, yet not a number (`1e999`, `1.2.3`).
    OutOfRange,
    /// Anything else.
    NotANumber,
}

impl fmt::Display for NumberProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumberProblem::Crlf => "CRLF line endings are not allowed",
            NumberProblem::SignedNan => "NaN takes no sign",
            NumberProblem::OutOfRange => "not a number or out of range",
            NumberProblem::NotANumber => "not a number",
        })
    }
}

use ScanErrorKind as K;

/// Result of scanning `{...}`: the index of `}` and the quoted metric name found inside.
struct LabelSet {
    close: usize,
    name: Option<(usize, usize, bool)>,
}

/// Parses a sample line starting at `start` (a non-blank byte). `strict` selects
/// OpenMetrics's single-space grammar. The caller fills in the line number and type.
pub(super) fn scan_sample(
    s: &str,
    start: usize,
    strict: bool,
) -> Result<SampleEntry<'_>, ScanError<'_>> {
    let b = s.as_bytes();
    let mut i = start;
    let (name, labels);
    if b.get(i) == Some(&b'{') {
        let set = scan_label_set(b, i + 1, strict, true)?;
        name = set.name.ok_or(ScanError::new(i, K::MissingName))?;
        labels = (i + 1, set.close);
        i = set.close + 1;
    } else {
        let c = b.get(i).copied().unwrap_or(b' ');
        if !lex::is_metric_start(c) {
            return Err(ScanError::new(i, K::ExpectedName(Found::char_at(s, i))));
        }
        let end = lex::metric_name_end(b, i);
        name = (i, end, false);
        i = end;
        let j = if strict { i } else { lex::skip_blanks(b, i) };
        if b.get(j) == Some(&b'{') {
            let set = scan_label_set(b, j + 1, strict, true)?;
            if set.name.is_some() {
                return Err(ScanError::new(j, K::NameTwice));
            }
            labels = (j + 1, set.close);
            i = set.close + 1;
        } else {
            labels = (i, i);
            if j == i && i < b.len() && b[i] != b' ' {
                return Err(ScanError::new(i, K::BadNameChar(Found::char_at(s, i))));
            }
        }
    }
    let series = sub(s, start, i);

    // Value.
    if strict {
        match b.get(i) {
            Some(b' ') => i += 1,
            None => return Err(ScanError::new(i, K::MissingValue)),
            Some(_) => {
                return Err(ScanError::new(i, K::ExpectedSpace(Found::char_at(s, i))));
            }
        }
    } else {
        i = lex::skip_blanks(b, i);
        if i == b.len() {
            return Err(ScanError::new(i, K::MissingValue));
        }
    }
    let value_at = i;
    while i < b.len() && b[i] != b' ' && (strict || (b[i] != b'\t' && b[i] != b'{')) {
        i += 1;
    }
    let value = parse_value(s, value_at, i, Field::Value)?;

    // Timestamp and exemplar.
    let (mut timestamp, mut exemplar) = (None, "");
    if strict {
        if i < b.len() {
            i += 1; // the space that ended the value
            if b[i..].starts_with(b"# {") {
                scan_exemplar(s, i + 2)?;
                exemplar = sub(s, i + 2, b.len());
            } else {
                let ts_at = i;
                while i < b.len() && b[i] != b' ' {
                    i += 1;
                }
                timestamp = Some(parse_seconds(s, ts_at, i, Field::Timestamp)?);
                if i < b.len() {
                    if b[i + 1..].starts_with(b"# {") {
                        scan_exemplar(s, i + 3)?;
                        exemplar = sub(s, i + 3, b.len());
                    } else {
                        let rest = sub(s, i + 1, b.len());
                        return Err(ScanError::new(i + 1, K::AfterTimestamp(rest)));
                    }
                }
            }
        }
    } else {
        i = lex::skip_blanks(b, i);
        if i < b.len() {
            let ts_at = i;
            while i < b.len() && !lex::is_blank(b[i]) {
                i += 1;
            }
            let tok = sub(s, ts_at, i);
            if tok.starts_with('#') {
                return Err(ScanError::new(ts_at, K::ExemplarInText));
            }
            timestamp = Some(
                number::parse_millis(tok).ok_or(ScanError::new(ts_at, K::TextTimestamp(tok)))?,
            );
            i = lex::skip_blanks(b, i);
            if i < b.len() {
                return Err(ScanError::new(i, K::AfterTimestamp(sub(s, i, b.len()))));
            }
        }
    }
    Ok(SampleEntry {
        series,
        name: sub(s, name.0, name.1),
        name_escaped: name.2,
        labels: sub(s, labels.0, labels.1),
        value,
        timestamp,
        exemplar,
        line: 0,
        kind: MetricType::Unknown,
    })
}

/// Parses ` # {labels} value [timestamp]`'s part from the `{` at `open` to the line end.
pub(super) fn scan_exemplar(s: &str, open: usize) -> Result<Exemplar<'_>, ScanError<'_>> {
    let b = s.as_bytes();
    let set = scan_label_set(b, open + 1, true, false)?;
    let mut i = set.close + 1;
    match b.get(i) {
        Some(b' ') => i += 1,
        _ => return Err(ScanError::new(i, K::MissingExemplarValue)),
    }
    let value_at = i;
    while i < b.len() && b[i] != b' ' {
        i += 1;
    }
    let value = parse_value(s, value_at, i, Field::ExemplarValue)?;
    let mut timestamp = None;
    if i < b.len() {
        let ts_at = i + 1;
        i = ts_at;
        while i < b.len() && b[i] != b' ' {
            i += 1;
        }
        timestamp = Some(parse_seconds(s, ts_at, i, Field::ExemplarTimestamp)?);
        if i < b.len() {
            let rest = sub(s, i + 1, b.len());
            return Err(ScanError::new(i + 1, K::AfterExemplarTimestamp(rest)));
        }
    }
    Ok(Exemplar {
        labels: sub(s, open + 1, set.close),
        value,
        timestamp,
        line: 0,
    })
}

/// Scans a label set from just after `{`. `allow_name` admits one quoted metric name.
fn scan_label_set(
    b: &[u8],
    mut i: usize,
    strict: bool,
    allow_name: bool,
) -> Result<LabelSet, ScanError<'static>> {
    let unterminated = |i| ScanError::new(i, K::UnterminatedLabelSet);
    let mut name = None;
    loop {
        if !strict {
            i = lex::skip_blanks(b, i);
        }
        let Some(&c) = b.get(i) else {
            return Err(unterminated(i));
        };
        match c {
            b'}' => return Ok(LabelSet { close: i, name }),
            b'"' => {
                let q = lex::scan_quoted(b, i + 1).map_err(|e| quote_error(e, i, Quoted::Name))?;
                let quoted = (i + 1, q.close, q.escaped);
                i = q.close + 1;
                let j = if strict { i } else { lex::skip_blanks(b, i) };
                if let Some(&sep @ (b',' | b'}')) = b.get(j) {
                    // Both point at the name's opening quote.
                    let at = quoted.0 - 1;
                    if !allow_name {
                        return Err(ScanError::new(at, K::NameInExemplar));
                    }
                    if name.is_some() {
                        return Err(ScanError::new(at, K::NameTwiceInBraces));
                    }
                    name = Some(quoted);
                    i = if sep == b',' { j + 1 } else { j };
                    continue;
                }
                i = j;
            }
            c if lex::is_label_start(c) => i = lex::label_name_end(b, i),
            _ => {
                return Err(ScanError::new(
                    i,
                    K::ExpectedLabelName(Found::byte_at(b, i)),
                ));
            }
        }
        if !strict {
            i = lex::skip_blanks(b, i);
        }
        match b.get(i) {
            Some(b'=') => i += 1,
            Some(_) => {
                return Err(ScanError::new(i, K::ExpectedEquals(Found::byte_at(b, i))));
            }
            None => return Err(unterminated(i)),
        }
        if !strict {
            i = lex::skip_blanks(b, i);
        }
        match b.get(i) {
            Some(b'"') => i += 1,
            Some(_) => {
                return Err(ScanError::new(
                    i,
                    K::ExpectedOpenQuote(Found::byte_at(b, i)),
                ));
            }
            None => return Err(ScanError::new(i, K::MissingLabelValue)),
        }
        let q = lex::scan_quoted(b, i).map_err(|e| quote_error(e, i - 1, Quoted::LabelValue))?;
        i = q.close + 1;
        if !strict {
            i = lex::skip_blanks(b, i);
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            // Prometheus's text parser accepts labels with no comma between them.
            _ if !strict => {}
            Some(_) => {
                return Err(ScanError::new(
                    i,
                    K::ExpectedSeparator(Found::byte_at(b, i)),
                ));
            }
            None => return Err(unterminated(i)),
        }
    }
}

/// A HELP/TYPE/UNIT metric name at `at`: (raw name, has escapes, end index).
pub(super) fn scan_meta_name<'a>(
    s: &'a str,
    at: usize,
    keyword: &'static str,
) -> Result<(&'a str, bool, usize), ScanError<'a>> {
    let b = s.as_bytes();
    match b.get(at) {
        Some(b'"') => {
            let q = lex::scan_quoted(b, at + 1).map_err(|e| quote_error(e, at, Quoted::Name))?;
            Ok((sub(s, at + 1, q.close), q.escaped, q.close + 1))
        }
        Some(&c) if lex::is_metric_start(c) => {
            let end = lex::metric_name_end(b, at);
            Ok((sub(s, at, end), false, end))
        }
        _ => Err(ScanError::new(
            at,
            K::ExpectedMetaName {
                keyword,
                found: Found::char_at(s, at),
            },
        )),
    }
}

/// The number `s[from..to]`, the sample's or exemplar's value.
fn parse_value(s: &str, from: usize, to: usize, field: Field) -> Result<f64, ScanError<'_>> {
    let tok = sub(s, from, to);
    if tok.is_empty() {
        return Err(ScanError::new(from, K::Blank(field)));
    }
    number::parse_float(tok).ok_or_else(|| bad_number(from, tok, field))
}

/// The OpenMetrics timestamp `s[from..to]` (float seconds) in milliseconds.
fn parse_seconds(s: &str, from: usize, to: usize, field: Field) -> Result<i64, ScanError<'_>> {
    let tok = sub(s, from, to);
    if tok.is_empty() {
        return Err(ScanError::new(from, K::Blank(field)));
    }
    number::parse_seconds_as_millis(tok).map_err(|e| match e {
        SecondsError::Syntax => bad_number(from, tok, field),
        SecondsError::NotFinite => ScanError::new(from, K::NotFinite { field, token: tok }),
        SecondsError::Range => ScanError::new(from, K::OutOfRange { field, token: tok }),
    })
}

fn bad_number(at: usize, token: &str, field: Field) -> ScanError<'_> {
    let problem = if token.ends_with('\r') {
        NumberProblem::Crlf
    } else if number::parse_float(token.trim_start_matches(['+', '-'])).is_some_and(f64::is_nan) {
        NumberProblem::SignedNan
    } else if token
        .bytes()
        .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
    {
        NumberProblem::OutOfRange
    } else {
        NumberProblem::NotANumber
    };
    ScanError::new(
        at,
        K::BadNumber {
            field,
            token,
            problem,
        },
    )
}

/// A quoted name or label value (its `"` at `at`) that does not close or escapes wrongly.
fn quote_error(e: QuoteError, at: usize, what: Quoted) -> ScanError<'static> {
    let kind = match e {
        QuoteError::Unterminated => K::UnterminatedQuote(what),
        QuoteError::BadEscape(escape) => K::BadEscape { what, escape },
    };
    ScanError::new(at, kind)
}

/// `s[a..b]`, or "" if the range is not on char boundaries (never, for ranges the scanners
/// produce: they cut only at ASCII bytes).
#[inline]
pub(super) fn sub(s: &str, a: usize, b: usize) -> &str {
    s.get(a..b).unwrap_or("")
}
