//! Scanning one line into a sample: the grammar of both formats, as pure functions over a
//! line of text, returning error messages the parser wraps with the line number.

use super::lex::{self, QuoteError};
use super::number::{self, SecondsError};
use super::{Exemplar, MetricType, SampleEntry};

/// Result of scanning `{...}`: the index of `}` and the quoted metric name found inside.
struct LabelSet {
    close: usize,
    name: Option<(usize, usize, bool)>,
}

/// Parses a sample line starting at `start` (a non-blank byte). `strict` selects
/// OpenMetrics's single-space grammar. The caller fills in the line number and type.
pub(super) fn scan_sample(s: &str, start: usize, strict: bool) -> Result<SampleEntry<'_>, String> {
    let b = s.as_bytes();
    let mut i = start;
    let (name, labels);
    if b.get(i) == Some(&b'{') {
        let set = scan_label_set(b, i + 1, strict, true)?;
        name = set.name.ok_or(
            "missing metric name: expected a name before '{' or a quoted name inside the braces",
        )?;
        labels = (i + 1, set.close);
        i = set.close + 1;
    } else {
        let c = b.get(i).copied().unwrap_or(b' ');
        if !lex::is_metric_start(c) {
            return Err(format!("expected a metric name, found {}", show(s, i)));
        }
        let end = lex::metric_name_end(b, i);
        name = (i, end, false);
        i = end;
        let j = if strict { i } else { lex::skip_blanks(b, i) };
        if b.get(j) == Some(&b'{') {
            let set = scan_label_set(b, j + 1, strict, true)?;
            if set.name.is_some() {
                return Err("metric name given twice: before the braces and inside them".into());
            }
            labels = (j + 1, set.close);
            i = set.close + 1;
        } else {
            labels = (i, i);
            if j == i && i < b.len() && b[i] != b' ' {
                return Err(format!("invalid character {} in metric name", show(s, i)));
            }
        }
    }
    let series = sub(s, start, i);

    // Value.
    if strict {
        match b.get(i) {
            Some(b' ') => i += 1,
            None => return Err("expected a value after the series".into()),
            Some(_) => {
                return Err(format!(
                    "expected a space before the value, found {}",
                    show(s, i)
                ));
            }
        }
    } else {
        i = lex::skip_blanks(b, i);
        if i == b.len() {
            return Err("expected a value after the series".into());
        }
    }
    let value_at = i;
    while i < b.len() && b[i] != b' ' && (strict || (b[i] != b'\t' && b[i] != b'{')) {
        i += 1;
    }
    let value = parse_value(sub(s, value_at, i), "value")?;

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
                timestamp = Some(parse_seconds(sub(s, ts_at, i), "timestamp")?);
                if i < b.len() {
                    if b[i + 1..].starts_with(b"# {") {
                        scan_exemplar(s, i + 3)?;
                        exemplar = sub(s, i + 3, b.len());
                    } else {
                        return Err(format!(
                            "unexpected {:?} after the timestamp",
                            sub(s, i + 1, b.len())
                        ));
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
                return Err("exemplars are only allowed in OpenMetrics".into());
            }
            timestamp = Some(number::parse_millis(tok).ok_or_else(|| {
                format!("invalid timestamp {tok:?}: expected integer milliseconds")
            })?);
            i = lex::skip_blanks(b, i);
            if i < b.len() {
                return Err(format!(
                    "unexpected {:?} after the timestamp",
                    sub(s, i, b.len())
                ));
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
pub(super) fn scan_exemplar(s: &str, open: usize) -> Result<Exemplar<'_>, String> {
    let b = s.as_bytes();
    let set = scan_label_set(b, open + 1, true, false)?;
    let mut i = set.close + 1;
    match b.get(i) {
        Some(b' ') => i += 1,
        _ => return Err("expected a space and a value after the exemplar labels".into()),
    }
    let value_at = i;
    while i < b.len() && b[i] != b' ' {
        i += 1;
    }
    let value = parse_value(sub(s, value_at, i), "exemplar value")?;
    let mut timestamp = None;
    if i < b.len() {
        let ts_at = i + 1;
        i = ts_at;
        while i < b.len() && b[i] != b' ' {
            i += 1;
        }
        timestamp = Some(parse_seconds(sub(s, ts_at, i), "exemplar timestamp")?);
        if i < b.len() {
            return Err(format!(
                "unexpected {:?} after the exemplar timestamp",
                sub(s, i + 1, b.len())
            ));
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
) -> Result<LabelSet, String> {
    const UNTERMINATED: &str = "unterminated label set: missing '}'";
    let mut name = None;
    loop {
        if !strict {
            i = lex::skip_blanks(b, i);
        }
        let Some(&c) = b.get(i) else {
            return Err(UNTERMINATED.into());
        };
        match c {
            b'}' => return Ok(LabelSet { close: i, name }),
            b'"' => {
                let q = lex::scan_quoted(b, i + 1).map_err(|e| quote_error(e, "quoted name"))?;
                let quoted = (i + 1, q.close, q.escaped);
                i = q.close + 1;
                let j = if strict { i } else { lex::skip_blanks(b, i) };
                if let Some(&sep @ (b',' | b'}')) = b.get(j) {
                    if !allow_name {
                        return Err("a quoted metric name is not allowed in exemplar labels".into());
                    }
                    if name.is_some() {
                        return Err("metric name given twice inside the braces".into());
                    }
                    name = Some(quoted);
                    i = if sep == b',' { j + 1 } else { j };
                    continue;
                }
                i = j;
            }
            c if lex::is_label_start(c) => i = lex::label_name_end(b, i),
            _ => return Err(format!("expected a label name, found {}", show_byte(b, i))),
        }
        if !strict {
            i = lex::skip_blanks(b, i);
        }
        match b.get(i) {
            Some(b'=') => i += 1,
            Some(_) => {
                return Err(format!(
                    "expected '=' after the label name, found {}",
                    show_byte(b, i)
                ));
            }
            None => return Err(UNTERMINATED.into()),
        }
        if !strict {
            i = lex::skip_blanks(b, i);
        }
        match b.get(i) {
            Some(b'"') => i += 1,
            Some(_) => {
                return Err(format!(
                    "expected '\"' to open the label value, found {}",
                    show_byte(b, i)
                ));
            }
            None => return Err("expected a label value, found the end of the line".into()),
        }
        let q = lex::scan_quoted(b, i).map_err(|e| quote_error(e, "label value"))?;
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
                return Err(format!(
                    "expected ',' or '}}' after the label value, found {}",
                    show_byte(b, i)
                ));
            }
            None => return Err(UNTERMINATED.into()),
        }
    }
}

/// A HELP/TYPE/UNIT metric name at `at`: (raw name, has escapes, end index).
pub(super) fn scan_meta_name<'a>(
    s: &'a str,
    at: usize,
    keyword: &str,
) -> Result<(&'a str, bool, usize), String> {
    let b = s.as_bytes();
    match b.get(at) {
        Some(b'"') => {
            let q = lex::scan_quoted(b, at + 1).map_err(|e| quote_error(e, "quoted name"))?;
            Ok((sub(s, at + 1, q.close), q.escaped, q.close + 1))
        }
        Some(&c) if lex::is_metric_start(c) => {
            let end = lex::metric_name_end(b, at);
            Ok((sub(s, at, end), false, end))
        }
        _ => Err(format!(
            "expected a metric name after {keyword}, found {}",
            show(s, at)
        )),
    }
}

fn parse_value(tok: &str, what: &str) -> Result<f64, String> {
    if tok.is_empty() {
        return Err(format!("expected a {what}, found a blank"));
    }
    number::parse_float(tok).ok_or_else(|| bad_number(tok, what))
}

fn parse_seconds(tok: &str, what: &str) -> Result<i64, String> {
    if tok.is_empty() {
        return Err(format!("expected a {what}, found a blank"));
    }
    number::parse_seconds_as_millis(tok).map_err(|e| match e {
        SecondsError::Syntax => bad_number(tok, what),
        SecondsError::NotFinite => format!("invalid {what} {tok:?}: must be finite"),
        SecondsError::Range => format!("{what} {tok:?} is out of range"),
    })
}

fn bad_number(tok: &str, what: &str) -> String {
    if tok.ends_with('\r') {
        format!("invalid {what} {tok:?}: CRLF line endings are not allowed")
    } else if number::parse_float(tok.trim_start_matches(['+', '-'])).is_some_and(f64::is_nan) {
        format!("invalid {what} {tok:?}: NaN takes no sign")
    } else if tok
        .bytes()
        .all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
    {
        format!("invalid {what} {tok:?}: not a number or out of range")
    } else {
        format!("invalid {what} {tok:?}: not a number")
    }
}

pub(super) fn quote_error(e: QuoteError, what: &str) -> String {
    match e {
        QuoteError::Unterminated => format!("unterminated {what}: missing closing '\"'"),
        QuoteError::BadEscape(c) => format!(
            "invalid escape sequence '\\{}' in {what}: only \\\\, \\\" and \\n are allowed",
            c.escape_ascii()
        ),
    }
}

/// `s[a..b]`, or "" if the range is not on char boundaries (never, for ranges the scanners
/// produce: they cut only at ASCII bytes).
#[inline]
pub(super) fn sub(s: &str, a: usize, b: usize) -> &str {
    s.get(a..b).unwrap_or("")
}

/// The character at `i` for error messages.
pub(super) fn show(s: &str, i: usize) -> String {
    match s.get(i..).and_then(|r| r.chars().next()) {
        Some(c) => format!("{c:?}"),
        None => "the end of the line".to_string(),
    }
}

fn show_byte(b: &[u8], i: usize) -> String {
    match b.get(i..) {
        Some(rest) if !rest.is_empty() => {
            let end = rest.len().min(4);
            match std::str::from_utf8(&rest[..end]) {
                Ok(t) => show(t, 0),
                Err(e) if e.valid_up_to() > 0 => show(
                    std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or(""),
                    0,
                ),
                Err(_) => format!("byte 0x{:02x}", rest[0]),
            }
        }
        _ => "the end of the line".to_string(),
    }
}
