//! Byte-level scanning shared by both formats: name characters, quoted strings, escapes.

use std::borrow::Cow;

const METRIC_START: u8 = 1;
const METRIC_CONT: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CONT: u8 = 8;
const QUOTE_STOP: u8 = 16;

/// Character classes of the legacy name grammar, one table lookup per byte.
static CLASS: [u8; 256] = build_classes();

const fn build_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        if alpha {
            t[i] |= METRIC_START | METRIC_CONT | LABEL_START | LABEL_CONT;
        }
        if c == b':' {
            t[i] |= METRIC_START | METRIC_CONT;
        }
        if c.is_ascii_digit() {
            t[i] |= METRIC_CONT | LABEL_CONT;
        }
        if c == b'"' || c == b'\\' {
            t[i] |= QUOTE_STOP;
        }
        i += 1;
    }
    t
}

/// True for a byte that may start an unquoted metric name: `[a-zA-Z_:]`.
#[inline]
pub fn is_metric_start(c: u8) -> bool {
    CLASS[c as usize] & METRIC_START != 0
}

/// True for a byte that may start an unquoted label name: `[a-zA-Z_]`.
#[inline]
pub fn is_label_start(c: u8) -> bool {
    CLASS[c as usize] & LABEL_START != 0
}

/// End of the unquoted metric name starting at `i` (which must be a start byte).
#[inline]
pub fn metric_name_end(b: &[u8], i: usize) -> usize {
    class_run_end(b, i, METRIC_CONT)
}

/// End of the unquoted label name starting at `i` (which must be a start byte).
#[inline]
pub fn label_name_end(b: &[u8], i: usize) -> usize {
    class_run_end(b, i, LABEL_CONT)
}

/// End of the run of bytes in class `bit` from `i`. Names are long (node_exporter's average
/// about 30 bytes), so test four bytes per branch before finishing byte by byte.
#[inline]
fn class_run_end(b: &[u8], mut i: usize, bit: u8) -> usize {
    while let Some(w) = b.get(i..i + 4) {
        let all = CLASS[w[0] as usize]
            & CLASS[w[1] as usize]
            & CLASS[w[2] as usize]
            & CLASS[w[3] as usize];
        if all & bit == 0 {
            break;
        }
        i += 4;
    }
    while i < b.len() && CLASS[b[i] as usize] & bit != 0 {
        i += 1;
    }
    i
}

/// True for the separators the text format allows between tokens.
#[inline]
pub fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// Index of the first byte at or after `i` that is not a space or tab.
#[inline]
pub fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_blank(b[i]) {
        i += 1;
    }
    i
}

/// Why a quoted string could not be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteError {
    /// The line ended before the closing quote.
    Unterminated,
    /// A backslash followed by this byte, which is not `\\`, `\"` or `n`.
    BadEscape(u8),
}

/// A scanned quoted string: the index of its closing quote and whether it holds escapes.
#[derive(Debug, Clone, Copy)]
pub struct Quoted {
    pub close: usize,
    pub escaped: bool,
}

/// Scans a quoted string whose content starts at `i` (just after the opening quote). Only the
/// escapes `\\`, `\"` and `\n` are accepted.
#[inline]
pub fn scan_quoted(b: &[u8], mut i: usize) -> Result<Quoted, QuoteError> {
    let mut escaped = false;
    loop {
        // Skip plain bytes four per branch, as in `class_run_end`.
        while let Some(w) = b.get(i..i + 4) {
            let any = CLASS[w[0] as usize]
                | CLASS[w[1] as usize]
                | CLASS[w[2] as usize]
                | CLASS[w[3] as usize];
            if any & QUOTE_STOP != 0 {
                break;
            }
            i += 4;
        }
        if i >= b.len() {
            return Err(QuoteError::Unterminated);
        }
        match b[i] {
            b'"' => return Ok(Quoted { close: i, escaped }),
            b'\\' => {
                match b.get(i + 1) {
                    Some(b'\\' | b'"' | b'n') => {}
                    Some(&c) => return Err(QuoteError::BadEscape(c)),
                    None => return Err(QuoteError::Unterminated),
                }
                escaped = true;
                i += 2;
            }
            _ => i += 1,
        }
    }
}

/// Which escapes a piece of text uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escapes {
    /// Label values, quoted names, OpenMetrics HELP: `\\`, `\"`, `\n`.
    Quoted,
    /// Text-format HELP: `\\` and `\n` only.
    TextHelp,
}

/// Undoes escapes, borrowing when there are none. A backslash before any other byte is kept
/// as written, as Prometheus does for HELP text.
pub fn unescape(raw: &str, escapes: Escapes) -> Cow<'_, str> {
    if !raw.as_bytes().contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if escapes == Escapes::Quoted => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// Position of the first `\n` in `b`, eight bytes at a time.
#[inline]
pub fn find_newline(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = ONES * b'\n' as u64;
    let mut chunks = b.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ NL;
        // A zero byte in x marks a newline; this bit trick flags exactly the zero bytes' high
        // bits when counted from the lowest byte up, which is the first match in LE order.
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b'\n')
        .map(|p| base + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn name_classes() {
        let b = b"job:rate5m_x{";
        assert!(is_metric_start(b'j') && is_metric_start(b':') && !is_metric_start(b'1'));
        assert!(is_label_start(b'_') && !is_label_start(b':') && !is_label_start(b'9'));
        assert_eq!(metric_name_end(b, 0), 12);
        assert_eq!(label_name_end(b, 0), 3);
        assert_eq!(metric_name_end("é".as_bytes(), 0), 0);
    }

    #[test]
    fn quoted_strings() {
        let b = br#"a\"b\\c\nd" rest"#;
        let q = scan_quoted(b, 0).unwrap();
        assert_eq!(q.close, 10);
        assert!(q.escaped);
        assert!(!scan_quoted(br#"plain"x"#, 0).unwrap().escaped);
        assert_eq!(
            scan_quoted(br#"abc"#, 0).unwrap_err(),
            QuoteError::Unterminated
        );
        assert_eq!(
            scan_quoted(br#"abc\"#, 0).unwrap_err(),
            QuoteError::Unterminated
        );
        assert_eq!(
            scan_quoted(br#"a\tb""#, 0).unwrap_err(),
            QuoteError::BadEscape(b't')
        );
    }

    #[test]
    fn unescaping() {
        assert!(matches!(
            unescape("plain", Escapes::Quoted),
            Cow::Borrowed("plain")
        ));
        assert_eq!(unescape(r#"a\"b\\c\nd"#, Escapes::Quoted), "a\"b\\c\nd");
        assert_eq!(unescape(r#"a\"b\\c\nd"#, Escapes::TextHelp), "a\\\"b\\c\nd");
        assert_eq!(
            unescape(r"keep \t and \.", Escapes::TextHelp),
            r"keep \t and \."
        );
        assert_eq!(unescape("trailing\\", Escapes::Quoted), "trailing\\");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn find_newline_matches_position(b in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..40)) {
            prop_assert_eq!(find_newline(&b), b.iter().position(|&c| c == b'\n'));
        }
    }
}
