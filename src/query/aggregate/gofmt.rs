//! Number and string formatting as Go prints them, for label values and messages that must
//! read exactly as Prometheus's.

use std::fmt::Write;

use crate::model::{Labels, is_valid_label_name};

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest digits that read back as `f`,
/// never an exponent; `+Inf`, `-Inf`, `NaN`.
pub(crate) fn fmt_f(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    // Rust's Display already prints the shortest round-trip digits without an exponent.
    format!("{f}")
}

/// Go's `%g` / `%v` of a float64: shortest digits, with an exponent (`1e+06`, `1e-05`) below
/// 1e-4 and from 1e6 on.
pub(crate) fn fmt_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    // `{:e}` gives the shortest round-trip digits as `d.ddde<exp>`.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if f.is_sign_negative() { "-" } else { "" };
    // Go switches to the exponent form when the exponent is below -4 or at least the
    // precision, which it takes as 6 for the shortest representation.
    if !(-4..6).contains(&exp) {
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{esign}{:02}", exp.abs())
    } else {
        format!("{sign}{}", f.abs())
    }
}

/// Go's `strconv.Quote`: double quotes, with `"`, `\` and non-printable characters escaped.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_quoted_char(&mut out, c);
    }
    out.push('"');
    out
}

fn push_quoted_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
}

/// A string literal as the user most likely typed it, for error messages: like [`quote`], but
/// characters U+0080..U+00FF print as `\xNN`. promql-parser decodes the escape `\xNN` into
/// the character U+00NN where Go keeps the raw byte, so this gives back what Prometheus
/// prints for such a literal (e.g. `"a\xc5z"`).
pub(crate) fn quote_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if (0x80..=0xff).contains(&(c as u32)) {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            push_quoted_char(&mut out, c);
        }
    }
    out.push('"');
    out
}

/// Prometheus's `labels.Labels.String()`: `{__name__="up", job="node"}`, every label inside
/// the braces, values quoted as Go quotes them.
pub(crate) fn labels_string(labels: &Labels) -> String {
    let mut out = String::from("{");
    for (i, (n, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if is_valid_label_name(n) {
            out.push_str(n);
        } else {
            out.push_str(&quote(n));
        }
        out.push('=');
        out.push_str(&quote(v));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_format_matches_go() {
        assert_eq!(fmt_f(6.0), "6");
        assert_eq!(fmt_f(-0.25), "-0.25");
        assert_eq!(fmt_f(1e21), "1000000000000000000000");
        assert_eq!(fmt_f(1.5e-7), "0.00000015");
        assert_eq!(fmt_f(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(fmt_f(f64::NAN), "NaN");
        assert_eq!(fmt_f(f64::INFINITY), "+Inf");
        assert_eq!(fmt_f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(fmt_f(-0.0), "-0");
    }

    #[test]
    fn g_format_matches_go() {
        assert_eq!(fmt_g(1.1), "1.1");
        assert_eq!(fmt_g(-1.1), "-1.1");
        assert_eq!(fmt_g(1.0), "1");
        assert_eq!(fmt_g(-1.0), "-1");
        assert_eq!(fmt_g(123456.0), "123456");
        assert_eq!(fmt_g(1e6), "1e+06");
        assert_eq!(fmt_g(1234567.0), "1.234567e+06");
        assert_eq!(fmt_g(0.0001), "0.0001");
        assert_eq!(fmt_g(0.00001234), "1.234e-05");
        assert_eq!(fmt_g(1e19), "1e+19");
        assert_eq!(fmt_g(9.223372036854776e18), "9.223372036854776e+18");
        assert_eq!(fmt_g(1e-300), "1e-300");
        assert_eq!(fmt_g(0.0), "0");
        assert_eq!(fmt_g(f64::NAN), "NaN");
        assert_eq!(fmt_g(f64::INFINITY), "+Inf");
    }

    #[test]
    fn quoting_matches_go() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("tab\there\n"), r#""tab\there\n""#);
        assert_eq!(quote("\u{1}"), r#""\x01""#);
        assert_eq!(quote("aÅz"), "\"aÅz\"");
        assert_eq!(quote_literal("a\u{c5}z"), r#""a\xc5z""#);
    }

    #[test]
    fn labels_print_as_prometheus_does() {
        let l = Labels::new([("__name__", "dup_metric"), ("label", "al\"pha")]).unwrap();
        assert_eq!(
            labels_string(&l),
            r#"{__name__="dup_metric", label="al\"pha"}"#
        );
        assert_eq!(labels_string(&Labels::empty()), "{}");
    }
}
