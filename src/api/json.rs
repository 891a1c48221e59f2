//! JSON written byte for byte as Prometheus writes it: strings escaped the way its encoder
//! escapes them (HTML-safe: `<`, `>` and `&` as `\u003c`…), sample values as quoted strings in
//! Go's float formats, timestamps as seconds with up to three decimals. Query results are
//! written straight into a buffer: a range query of thousands of series must not build a tree
//! of `serde_json::Value`s first.
//!
//! The one writer of query results: the API answers with it, and `tidemark query` prints its
//! JSON (and its table's values) with it, reading a remote answer back ([`read_query_data`])
//! to write it again, so both sources give the same bytes.

use std::io;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value as Json;

use crate::model::Labels;
use crate::model::histogram::FloatHistogram;
use crate::query::{Annotations, FPoint, Sample, Series, Value};

/// Most warnings (and, separately, infos) a response lists; the rest are counted in one line,
/// as Prometheus does.
const MAX_ANNOTATIONS: usize = 10;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `s` as a JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        // U+2028 and U+2029 end lines in JavaScript; Go escapes them, so do we.
        let line_sep =
            c == 0xE2 && b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xA8 | 0xA9));
        let esc: Option<&[u8]> = match c {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f | b'<' | b'>' | b'&' => Some(b""),
            _ => None,
        };
        if esc.is_none() && !line_sep {
            i += 1;
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        if line_sep {
            out.extend_from_slice(if b[i + 2] == 0xA8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
        } else {
            match esc {
                Some(e) if !e.is_empty() => out.extend_from_slice(e),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(c >> 4) as usize],
                    HEX[(c & 0xf) as usize],
                ]),
            }
            i += 1;
        }
        start = i;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// The two ASCII digits of each number below 100.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The decimal digits of `n`, two at a time (a timestamp's ten digits of seconds take five
/// divisions instead of ten): they are `buf[start..]` of `(buf, start)`.
fn u64_digits(mut n: u64) -> ([u8; 20], usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    }
    if n >= 10 {
        let d = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    (buf, i)
}

/// Appends the decimal digits of `n`.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    let (buf, start) = u64_digits(n);
    out.extend_from_slice(&buf[start..]);
}

/// A millisecond timestamp as seconds: `1435781451.781`, `4`, `-0.5`.
pub fn write_ts(out: &mut Vec<u8>, t: i64) {
    let abs = t.unsigned_abs();
    if t < 0 {
        out.push(b'-');
    }
    push_u64(out, abs / 1000);
    write_ms_fraction(out, abs % 1000);
}

/// `.781`, `.05`, `.5` for the milliseconds below a second; nothing for none.
#[inline]
fn write_ms_fraction(out: &mut Vec<u8>, frac: u64) {
    if frac != 0 {
        let digit = |d: u64| b'0' + d as u8;
        let digits = [
            b'.',
            digit(frac / 100),
            digit(frac / 10 % 10),
            digit(frac % 10),
        ];
        let keep = if !frac.is_multiple_of(10) {
            4
        } else if !frac.is_multiple_of(100) {
            3
        } else {
            2
        };
        out.extend_from_slice(&digits[..keep]);
    }
}

/// Writes timestamps as [`write_ts`] does, faster for a run of nearby ones (the points of a
/// range answer): the digits of the seconds above the last four are kept from the timestamp
/// before and copied while they stay the same (for 10,000 s), and only the last four are
/// worked out, with two table look-ups instead of five divisions.
#[derive(Default)]
struct Stamps {
    /// `seconds / 10_000` of the last timestamp written through the cache.
    high: u64,
    /// Its digits.
    digits: [u8; 20],
    /// How many digits `high` has; 0 while nothing is cached.
    len: usize,
}

impl Stamps {
    /// Below this (10,000 s) a timestamp has no digits above the last four.
    const FROM_MS: i64 = 10_000_000;

    #[inline]
    fn write(&mut self, out: &mut Vec<u8>, t: i64) {
        if t < Self::FROM_MS {
            // Negative, or before 1970-01-01T02:46:40Z: not worth a cache.
            write_ts(out, t);
            return;
        }
        let ms = t as u64;
        let secs = ms / 1000;
        let high = secs / 10_000;
        let low = (secs % 10_000) as usize;
        if self.len == 0 || high != self.high {
            let (buf, start) = u64_digits(high);
            self.len = buf.len() - start;
            self.digits[..self.len].copy_from_slice(&buf[start..]);
            self.high = high;
        }
        let (a, b) = (low / 100 * 2, low % 100 * 2);
        let p = DIGIT_PAIRS;
        out.extend_from_slice(&self.digits[..self.len]);
        out.extend_from_slice(&[p[a], p[a + 1], p[b], p[b + 1]]);
        write_ms_fraction(out, ms % 1000);
    }
}

/// The shortest decimal digits that read back as a finite, non-zero float, and where the
/// decimal point goes: the value is `±0.d₁d₂… × 10^point`.
struct Digits {
    neg: bool,
    buf: [u8; 24],
    len: usize,
    point: i32,
}

impl Digits {
    /// serde_json already carries a fast shortest-digits formatter; its layout varies
    /// (`1.0`, `1e+16`, `1.5e-7`, `0.000012`), so only the digits and the exponent are taken
    /// from it and laid out again the way Go does.
    fn of(f: f64) -> Digits {
        let mut raw = [0u8; 48];
        let n = {
            let mut c = io::Cursor::new(&mut raw[..]);
            // A finite f64 always fits in 48 bytes.
            let _ = serde_json::to_writer(&mut c, &f);
            c.position() as usize
        };
        let mut s = &raw[..n];
        let neg = s.first() == Some(&b'-');
        if neg {
            s = &s[1..];
        }
        let (mant, exp) = match s.iter().position(|&c| c == b'e' || c == b'E') {
            Some(i) => {
                let e = std::str::from_utf8(&s[i + 1..])
                    .ok()
                    .and_then(|x| x.trim_start_matches('+').parse::<i32>().ok())
                    .unwrap_or(0);
                (&s[..i], e)
            }
            None => (s, 0),
        };
        let mut d = Digits {
            neg,
            buf: [0; 24],
            len: 0,
            point: exp,
        };
        let mut before_point = true;
        for &c in mant {
            if c == b'.' {
                before_point = false;
                continue;
            }
            if d.len == 0 && c == b'0' {
                // A leading zero: the point moves left past it.
                if !before_point {
                    d.point -= 1;
                }
                continue;
            }
            if before_point {
                d.point += 1;
            }
            if d.len < d.buf.len() {
                d.buf[d.len] = c;
                d.len += 1;
            }
        }
        while d.len > 1 && d.buf[d.len - 1] == b'0' {
            d.len -= 1;
        }
        d
    }

    fn digits(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Go's `'f'` layout: no exponent.
    fn write_f(&self, out: &mut Vec<u8>) {
        if self.neg {
            out.push(b'-');
        }
        let d = self.digits();
        if self.point <= 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(
                b'0',
                self.point.unsigned_abs() as usize,
            ));
            out.extend_from_slice(d);
        } else if self.point as usize >= d.len() {
            out.extend_from_slice(d);
            out.extend(std::iter::repeat_n(b'0', self.point as usize - d.len()));
        } else {
            let p = self.point as usize;
            out.extend_from_slice(&d[..p]);
            out.push(b'.');
            out.extend_from_slice(&d[p..]);
        }
    }

    /// Go's `'e'` layout: `d.ddde±XX`, at least two exponent digits.
    fn write_e(&self, out: &mut Vec<u8>) {
        if self.neg {
            out.push(b'-');
        }
        let d = self.digits();
        out.push(d[0]);
        if d.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&d[1..]);
        }
        let exp = self.point - 1;
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        if exp.unsigned_abs() < 10 {
            out.push(b'0');
        }
        push_u64(out, u64::from(exp.unsigned_abs()));
    }

    /// The decimal exponent of the scientific form.
    fn exp(&self) -> i32 {
        self.point - 1
    }
}

/// Writes an integral `f` below 1e15 in magnitude (zero included, `-0` for negative zero),
/// or returns false.
fn write_small_integer(out: &mut Vec<u8>, f: f64) -> bool {
    if f.fract() != 0.0 || f.abs() >= 1e15 {
        return false;
    }
    if f.is_sign_negative() {
        out.push(b'-');
    }
    push_u64(out, f.abs() as u64);
    true
}

fn write_non_finite(out: &mut Vec<u8>, f: f64) {
    out.extend_from_slice(if f.is_nan() {
        b"NaN"
    } else if f > 0.0 {
        b"+Inf"
    } else {
        b"-Inf"
    });
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest digits that read back as `f`,
/// never an exponent; `NaN`, `+Inf`, `-Inf`.
pub fn write_f(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        write_non_finite(out, f);
    } else if !write_small_integer(out, f) {
        Digits::of(f).write_f(out);
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, as the text exposition format writes values:
/// the shortest digits, with an exponent when it is below -4 or at least 6 (`1e+06`,
/// `123456`, `1.234e-05`).
pub fn write_g(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        write_non_finite(out, f);
    } else if f.abs() < 1e6 && write_small_integer(out, f) {
    } else {
        let d = Digits::of(f);
        if (-4..6).contains(&d.exp()) {
            d.write_f(out);
        } else {
            d.write_e(out);
        }
    }
}

/// A sample value as Prometheus's JSON encoder writes it, quoted: plain decimals, exponents
/// below 1e-6 and from 1e21 on.
#[inline]
pub fn write_sample_value(out: &mut Vec<u8>, f: f64) {
    out.push(b'"');
    write_sample_text(out, f);
    out.push(b'"');
}

/// [`write_sample_value`] without the quotes, as `tidemark query` prints values in a table.
pub fn write_sample_text(out: &mut Vec<u8>, f: f64) {
    if !f.is_finite() {
        write_non_finite(out, f);
    } else if !write_small_integer(out, f) {
        let a = f.abs();
        if (1e-6..1e21).contains(&a) {
            if !write_plain_shortest(out, f) {
                Digits::of(f).write_f(out);
            }
        } else {
            Digits::of(f).write_e(out);
        }
    }
}

/// Writes `f` (finite) as serde_json prints it when that is already Go's `'f'` layout of the
/// shortest digits: no exponent and a fraction that is not just `.0`. Otherwise writes nothing
/// and returns false. Most sample values of a range query take this path, which skips taking
/// the digits apart and laying them out again.
fn write_plain_shortest(out: &mut Vec<u8>, f: f64) -> bool {
    let start = out.len();
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &f);
    let text = &out[start..];
    // An exponent (either case) or the `.0` of a whole number. An f64's exponent has at most
    // three digits and a sign, so its `e` is among the last five bytes: only they are looked
    // at, in one pass (`contains` called out to memchr twice over the whole text).
    let tail = &text[text.len().saturating_sub(5)..];
    let exponent = tail.iter().fold(false, |e, &c| e | (c | 0x20 == b'e'));
    if exponent || text.ends_with(b".0") {
        out.truncate(start);
        return false;
    }
    true
}

/// Runs an ASCII writer into a string.
fn ascii(write: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut b = Vec::with_capacity(24);
    write(&mut b);
    // The writers this is used with write ASCII only.
    String::from_utf8(b).unwrap_or_default()
}

/// [`write_g`] into a string.
pub fn format_g(f: f64) -> String {
    ascii(|b| write_g(b, f))
}

/// [`write_sample_text`] into a string.
pub fn format_sample(f: f64) -> String {
    ascii(|b| write_sample_text(b, f))
}

/// A histogram as [`write_histogram`] writes it.
pub fn format_histogram(h: &FloatHistogram) -> String {
    ascii(|out| write_histogram(out, h))
}

/// [`write_ts`] into a string: a millisecond timestamp as the seconds the API takes and gives.
pub fn format_ts(t: i64) -> String {
    ascii(|b| write_ts(b, t))
}

/// A label set as a JSON object, in label order.
pub fn write_labels(out: &mut Vec<u8>, l: &Labels) {
    out.push(b'{');
    for (i, (n, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, n);
        out.push(b':');
        write_str(out, v);
    }
    out.push(b'}');
}

fn write_point(out: &mut Vec<u8>, stamps: &mut Stamps, p: FPoint) {
    out.push(b'[');
    stamps.write(out, p.t);
    out.push(b',');
    write_sample_value(out, p.f);
    out.push(b']');
}

/// A native histogram as Prometheus's JSON writes it: `count` and `sum` as quoted numbers,
/// then, if any bucket is populated, `buckets`: `[rule, lower, upper, count]` per populated
/// bucket from the most negative up, the rule saying which bounds are inclusive (0: upper
/// only, 1: lower only, 2: neither, 3: both).
pub fn write_histogram(out: &mut Vec<u8>, h: &FloatHistogram) {
    out.extend_from_slice(b"{\"count\":");
    write_sample_value(out, h.count);
    out.extend_from_slice(b",\"sum\":");
    write_sample_value(out, h.sum);
    let mut any = false;
    for b in h.all_bucket_iter() {
        if b.count == 0.0 {
            continue;
        }
        out.extend_from_slice(if any { b"," } else { b",\"buckets\":[" });
        any = true;
        let rule = match (b.lower_inclusive, b.upper_inclusive) {
            (false, true) => b'0',
            (true, false) => b'1',
            (false, false) => b'2',
            (true, true) => b'3',
        };
        out.push(b'[');
        out.push(rule);
        out.push(b',');
        write_sample_value(out, b.lower);
        out.push(b',');
        write_sample_value(out, b.upper);
        out.push(b',');
        write_sample_value(out, b.count);
        out.push(b']');
    }
    if any {
        out.push(b']');
    }
    out.push(b'}');
}

fn write_hpoint(out: &mut Vec<u8>, stamps: &mut Stamps, t: i64, h: &FloatHistogram) {
    out.push(b'[');
    stamps.write(out, t);
    out.push(b',');
    write_histogram(out, h);
    out.push(b']');
}

fn write_series(out: &mut Vec<u8>, stamps: &mut Stamps, s: &Series) {
    out.extend_from_slice(b"{\"metric\":");
    write_labels(out, &s.metric);
    // Prometheus leaves `values` out of a series without float points, and `histograms` out
    // of one without histogram points.
    if !s.floats.is_empty() {
        out.extend_from_slice(b",\"values\":[");
        for (i, p) in s.floats.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_point(out, stamps, *p);
        }
        out.push(b']');
    }
    if !s.histograms.is_empty() {
        out.extend_from_slice(b",\"histograms\":[");
        for (i, p) in s.histograms.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_hpoint(out, stamps, p.t, &p.h);
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// `{"resultType":…,"result":…}`. `eval_time` (an instant query's time) replaces the
/// timestamps of vector samples, scalars and strings, as Prometheus reports them at the
/// evaluation time whatever sample they came from.
pub fn write_query_data(out: &mut Vec<u8>, v: &Value, eval_time: Option<i64>) {
    out.extend_from_slice(b"{\"resultType\":\"");
    out.extend_from_slice(v.type_name().as_bytes());
    out.extend_from_slice(b"\",\"result\":");
    let mut stamps = Stamps::default();
    match v {
        Value::Scalar(p) => {
            out.push(b'[');
            write_ts(out, eval_time.unwrap_or(p.t));
            out.extend_from_slice(b",\"");
            write_f(out, p.f);
            out.extend_from_slice(b"\"]");
        }
        Value::String { t, s } => {
            out.push(b'[');
            write_ts(out, eval_time.unwrap_or(*t));
            out.push(b',');
            write_str(out, s);
            out.push(b']');
        }
        Value::Vector(vec) => {
            out.push(b'[');
            for (i, s) in vec.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                write_labels(out, &s.metric);
                let t = eval_time.unwrap_or(s.t);
                match &s.h {
                    Some(h) => {
                        out.extend_from_slice(b",\"histogram\":");
                        write_hpoint(out, &mut stamps, t, h);
                    }
                    None => {
                        out.extend_from_slice(b",\"value\":");
                        write_point(out, &mut stamps, FPoint { t, f: s.f });
                    }
                }
                out.push(b'}');
            }
            out.push(b']');
        }
        Value::Matrix(m) => {
            out.push(b'[');
            for (i, s) in m.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_series(out, &mut stamps, s);
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

/// A query's whole success response: the envelope, the data ([`write_query_data`]) and the
/// annotations, with `extra_warnings` after the query's own.
pub fn answer(
    v: &Value,
    ann: &Annotations,
    extra_warnings: &[String],
    eval_time: Option<i64>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(size_guess(v));
    write_envelope_head(&mut body);
    write_query_data(&mut body, v, eval_time);
    write_envelope_tail(&mut body, ann, extra_warnings);
    body
}

/// Bytes a typical point of a range answer takes at most: `[1700000000.123,"` (17), a
/// shortest float of up to 17 digits with sign and point (19), `"],` (3). Longer ones (a small
/// value's leading zeros, an exponent, a time far from now) only make the buffer grow once.
const POINT_BYTES: usize = 40;

/// Bytes of a histogram point besides its buckets.
const HISTOGRAM_BYTES: usize = 80;

/// About the size of `v`'s answer, a little over for the usual values, so the buffer is
/// allocated once and never copied into a bigger one while it is written.
fn size_guess(v: &Value) -> usize {
    let labels = |l: &Labels| 16 + l.iter().map(|(n, v)| n.len() + v.len() + 6).sum::<usize>();
    256 + match v {
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                labels(&s.metric)
                    + s.floats.len() * POINT_BYTES
                    + s.histograms
                        .iter()
                        .map(|h| HISTOGRAM_BYTES + h.h.positive_buckets.len() * 4 * POINT_BYTES)
                        .sum::<usize>()
            })
            .sum::<usize>(),
        Value::Vector(vec) => vec
            .iter()
            .map(|s| labels(&s.metric) + POINT_BYTES + 12)
            .sum::<usize>(),
        Value::Scalar(_) => POINT_BYTES,
        Value::String { s, .. } => s.len() * 6,
    }
}

/// Why a query answer could not be read back into a [`Value`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(String);

fn read_error(what: impl Into<String>) -> ReadError {
    ReadError(what.into())
}

/// A label set from `{"name":"value",…}`, taken as the server wrote it: names are not
/// re-validated (a newer server may allow what this build's rules do not), and a label with an
/// empty value is no label.
pub fn read_labels(v: &Json) -> Result<Labels, ReadError> {
    let obj = v
        .as_object()
        .ok_or_else(|| read_error("labels are not an object"))?;
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(obj.len());
    for (n, v) in obj {
        let v = v
            .as_str()
            .ok_or_else(|| read_error(format!("label {n:?} is not a string")))?;
        if !v.is_empty() {
            pairs.push((n.clone(), v.to_string()));
        }
    }
    // Object keys are unique, so sorting leaves the invariant `from_sorted_unchecked` wants.
    pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Labels::from_sorted_unchecked(pairs))
}

/// `[seconds, x]`: the time in milliseconds, and `x`.
fn read_point(v: &Json) -> Result<(i64, &Json), ReadError> {
    let Some([t, x]) = v.as_array().map(Vec::as_slice) else {
        return Err(read_error("a point is not a [time, value] pair"));
    };
    let t = t
        .as_f64()
        .ok_or_else(|| read_error("a point's time is not a number"))?;
    // `as` saturates: a time beyond the i64 range reads as its end.
    Ok(((t * 1000.0).round() as i64, x))
}

fn read_float_point(v: &Json) -> Result<FPoint, ReadError> {
    let (t, x) = read_point(v)?;
    let s = x
        .as_str()
        .ok_or_else(|| read_error("a value is not a string"))?;
    let f = s
        .parse::<f64>()
        .map_err(|_| read_error(format!("value {s:?} is not a number")))?;
    Ok(FPoint { t, f })
}

/// The `data` of a query answer (what [`write_query_data`] writes, or Prometheus) read back
/// into a [`Value`], so that writing it again gives the same bytes. Native histograms have no
/// place in a [`Value`]: an answer holding one is an error rather than losing them.
pub fn read_query_data(data: &Json) -> Result<Value, ReadError> {
    let kind = data["resultType"]
        .as_str()
        .ok_or_else(|| read_error("no resultType"))?;
    let result = &data["result"];
    let list = || {
        result
            .as_array()
            .ok_or_else(|| read_error("result is not an array"))
    };
    let histograms = || read_error("native histograms are not supported");
    Ok(match kind {
        "scalar" => Value::Scalar(read_float_point(result)?),
        "string" => {
            let (t, s) = read_point(result)?;
            let s = s
                .as_str()
                .ok_or_else(|| read_error("a string result is not a string"))?;
            Value::String {
                t,
                s: s.to_string(),
            }
        }
        "vector" => {
            let mut v = Vec::new();
            for e in list()? {
                if e.get("histogram").is_some() {
                    return Err(histograms());
                }
                let p = read_float_point(&e["value"])?;
                v.push(Sample {
                    h: None,
                    metric: Arc::new(read_labels(&e["metric"])?),
                    t: p.t,
                    f: p.f,
                    drop_name: false,
                });
            }
            Value::Vector(v)
        }
        "matrix" => {
            let mut m = Vec::new();
            for e in list()? {
                if e.get("histograms").is_some() {
                    return Err(histograms());
                }
                // A series without float points has no `values`.
                let floats = match e.get("values") {
                    None => Vec::new(),
                    Some(v) => v
                        .as_array()
                        .ok_or_else(|| read_error("values are not an array"))?
                        .iter()
                        .map(read_float_point)
                        .collect::<Result<_, _>>()?,
                };
                m.push(Series {
                    histograms: Vec::new(),
                    metric: Arc::new(read_labels(&e["metric"])?),
                    floats,
                    drop_name: false,
                });
            }
            Value::Matrix(m)
        }
        other => return Err(read_error(format!("unknown resultType {other:?}"))),
    })
}

/// Warnings and infos as Prometheus lists them: at most ten of each, then a count of the rest.
fn annotation_lists(a: &Annotations, extra_warnings: &[String]) -> (Vec<String>, Vec<String>) {
    let cap = |items: Vec<&String>, what: &str| -> Vec<String> {
        let mut out: Vec<String> = items
            .iter()
            .take(MAX_ANNOTATIONS)
            .map(|s| s.to_string())
            .collect();
        if items.len() > MAX_ANNOTATIONS {
            out.push(format!(
                "{} more {what} annotations omitted",
                items.len() - MAX_ANNOTATIONS
            ));
        }
        out
    };
    let warnings = cap(
        a.warnings.iter().chain(extra_warnings.iter()).collect(),
        "warning",
    );
    let infos = cap(a.infos.iter().collect(), "info");
    (warnings, infos)
}

fn write_str_list(out: &mut Vec<u8>, key: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, s);
    }
    out.push(b']');
}

/// A success envelope around data that is already JSON, with the annotations Prometheus lists
/// after it (each list left out when empty).
pub fn envelope(data: &[u8], ann: &Annotations, extra_warnings: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    write_envelope_head(&mut out);
    out.extend_from_slice(data);
    write_envelope_tail(&mut out, ann, extra_warnings);
    out
}

/// `{"status":"success","data":` — the data follows.
pub fn write_envelope_head(out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"status\":\"success\",\"data\":");
}

/// The annotations and the closing brace of a success envelope.
pub fn write_envelope_tail(out: &mut Vec<u8>, ann: &Annotations, extra_warnings: &[String]) {
    let (w, i) = annotation_lists(ann, extra_warnings);
    write_str_list(out, "warnings", &w);
    write_str_list(out, "infos", &i);
    out.push(b'}');
}

/// A `serde_json` formatter that escapes as [`write_str`] does, so every endpoint renders
/// untrusted label values the same way.
struct PromFormatter;

impl serde_json::ser::Formatter for PromFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(fragment.len() + 2);
        write_str(&mut buf, fragment);
        writer.write_all(&buf[1..buf.len() - 1])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        use serde_json::ser::CharEscape as C;
        let byte = match char_escape {
            C::Quote => b'"',
            C::ReverseSolidus => b'\\',
            C::Solidus => b'/',
            C::Backspace => 0x08,
            C::FormFeed => 0x0c,
            C::LineFeed => b'\n',
            C::CarriageReturn => b'\r',
            C::Tab => b'\t',
            C::AsciiControl(b) => b,
        };
        let mut buf = Vec::with_capacity(8);
        write_str(&mut buf, &char::from(byte).to_string());
        writer.write_all(&buf[1..buf.len() - 1])
    }
}

/// Serializes `v` with Prometheus's escaping.
pub fn to_vec<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PromFormatter);
    // Serializing plain data (strings, numbers, maps with string keys) into memory cannot fail.
    if v.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_like_prometheus() {
        assert_eq!(
            s(|o| write_str(o, "a\"b\\c\n\t\r\u{1}<>&\u{2028}\u{2029}é\u{7f}")),
            format!(
                "{}\u{7f}\"",
                r#""a\"b\\c\n\t\r\u0001\u003c\u003e\u0026\u2028\u2029é"#
            )
        );
        assert_eq!(s(|o| write_str(o, "")), "\"\"");
        // The serde path escapes the same way, including the characters serde escapes itself.
        let v = serde_json::json!({"k<": "x\u{8}y\u{c}\"</script>"});
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap(),
            r#"{"k\u003c":"x\u0008y\u000c\"\u003c/script\u003e"}"#
        );
    }

    #[test]
    fn integers_print_every_digit() {
        let mut edges = vec![0, u64::MAX, u64::MAX - 1];
        for k in 0..20 {
            let p = 10u64.pow(k);
            edges.extend([p - 1, p, p + 1]);
        }
        edges.extend((0..64).map(|k| 1u64 << k));
        for n in edges {
            let mut out = b"x".to_vec();
            push_u64(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes(), "{n}");
        }
    }

    #[test]
    fn timestamps_as_seconds() {
        assert_eq!(s(|o| write_ts(o, 1_435_781_451_781)), "1435781451.781");
        assert_eq!(s(|o| write_ts(o, 4000)), "4");
        assert_eq!(s(|o| write_ts(o, 1_500)), "1.5");
        assert_eq!(s(|o| write_ts(o, 1_050)), "1.05");
        assert_eq!(s(|o| write_ts(o, 7)), "0.007");
        assert_eq!(s(|o| write_ts(o, -1_250)), "-1.25");
        assert_eq!(s(|o| write_ts(o, 0)), "0");
        assert_eq!(s(|o| write_ts(o, i64::MIN)), "-9223372036854775.808");
    }

    #[test]
    fn stamps_write_what_write_ts_writes() {
        let start = 1_796_644_800_000i64;
        let runs: Vec<Vec<i64>> = vec![
            // A regular grid, one with milliseconds, one crossing 10,000-second boundaries.
            (0..361).map(|k| start + k * 60_000).collect(),
            (0..361).map(|k| start + 7 + k * 60_250).collect(),
            (0..50).map(|k| 1_796_649_990_000 + k * 999).collect(),
            // Around where the cache starts, negative, backwards, the extremes.
            vec![
                9_999_999,
                10_000_000,
                10_000_001,
                9_999_000,
                0,
                -1,
                -10_000_001,
                10_000_000,
            ],
            vec![
                start,
                start - 10_000_000,
                start,
                99_999_999_999_990,
                100_000_000_000_000,
            ],
            vec![i64::MAX, i64::MAX - 999, i64::MIN, i64::MAX, 10_000_000],
        ];
        for run in runs {
            let mut stamps = Stamps::default();
            let (mut got, mut want) = (Vec::new(), Vec::new());
            for &t in &run {
                stamps.write(&mut got, t);
                got.push(b',');
                write_ts(&mut want, t);
                want.push(b',');
            }
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want).unwrap()
            );
        }
        assert_eq!(
            s(|o| {
                let mut st = Stamps::default();
                for t in [1_796_649_999_000, 1_796_650_000_000, 10_000_500] {
                    st.write(o, t);
                    o.push(b' ');
                }
            }),
            "1796649999 1796650000 10000.5 "
        );
    }

    #[test]
    fn answers_fit_the_buffer_sized_for_them() {
        // Dashboard-like answers: 15 series of 361 points a minute apart, fractional values
        // of every size a panel shows, or whole byte counts; no reallocation while writing.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for whole in [false, true] {
            let m: Vec<Series> = (0..15)
                .map(|i| Series {
                    histograms: Vec::new(),
                    metric: Arc::new(
                        Labels::new([("instance", format!("host-{i}:9100").as_str())]).unwrap(),
                    ),
                    floats: (0..361)
                        .map(|k| {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let f = if whole {
                                (x >> 20) as f64
                            } else {
                                (x >> 11) as f64 / (1u64 << (x % 53)) as f64
                            };
                            FPoint {
                                t: 1_796_644_800_123 + k * 60_000,
                                f,
                            }
                        })
                        .collect(),
                    drop_name: false,
                })
                .collect();
            let v = Value::Matrix(m);
            let body = answer(&v, &Annotations::default(), &[], None);
            assert!(
                body.len() <= size_guess(&v),
                "{} > {}",
                body.len(),
                size_guess(&v)
            );
            assert!(body.len() * 2 > size_guess(&v));
        }
    }

    #[test]
    fn exponent_forms_of_the_float_printer_are_laid_out_again() {
        // Values in the plain range whose shortest form a float printer writes with an
        // exponent or a `.0`: the exponent is found in the text's last bytes whatever its
        // length.
        for f in [
            1e20,
            1.5e20,
            1.2345678901234567e20,
            9.999999999999999e20,
            1e16,
            1.5e16,
            1e15,
            1e-6,
            1.5e-6,
            9.87654321e-6,
            1.0000000000000002e-5,
            2.5e-5,
            123456789.0,
        ] {
            for f in [f, -f] {
                assert_eq!(format_sample(f), reference_f(f), "{f:e}");
            }
        }
    }

    #[test]
    fn floats_in_gos_formats() {
        for (f, want) in [
            (2.0, "2"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0"),
            (1e21, "1000000000000000000000"),
            (1e-7, "0.0000001"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(s(|o| write_f(o, f)), want, "{f}");
        }
        for (f, want) in [
            (2.5, "\"2.5\""),
            (1e-7, "\"1e-07\""),
            (-2.5e-8, "\"-2.5e-08\""),
            (1e21, "\"1e+21\""),
            (1.5e300, "\"1.5e+300\""),
            (999_999_999.125, "\"999999999.125\""),
            (1e-6, "\"0.000001\""),
            // Where a shortest-digits printer would use an exponent or a `.0`, the digits are
            // laid out again.
            (0.00001234, "\"0.00001234\""),
            (1_234_567_890_123_456.0, "\"1234567890123456\""),
            (1e16, "\"10000000000000000\""),
            (-123.456, "\"-123.456\""),
            (0.5, "\"0.5\""),
            // An exact tie between two shortest forms: Go rounds to the even digit.
            // (-1108489272998891.25 exactly.)
            (
                f64::from_bits(14_055_595_151_952_568_154),
                "\"-1108489272998891.2\"",
            ),
            (0.0, "\"0\""),
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"+Inf\""),
        ] {
            assert_eq!(s(|o| write_sample_value(o, f)), want, "{f}");
        }
        for (f, want) in [
            (1.0, "1"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (123456789.0, "1.23456789e+08"),
            (1_234_567.5, "1.2345675e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (-3.25, "-3.25"),
            (f64::NEG_INFINITY, "-Inf"),
            (-0.0, "-0"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(format_g(f), want, "{f}");
        }
    }

    #[test]
    fn histograms_in_prometheus_shapes() {
        use crate::model::histogram::{CUSTOM_BUCKETS_SCHEMA, FloatHistogram, Span};
        use crate::query::HPoint;
        // Schema 0: positive bucket i is (2^(i-1), 2^i], negative bucket i is [-2^i, -2^(i-1)).
        let h = FloatHistogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 1.0,
            count: 6.0,
            sum: 4.5,
            positive_spans: vec![Span::new(0, 3)],
            positive_buckets: vec![1.0, 0.0, 2.5e-7],
            negative_spans: vec![Span::new(1, 1)],
            negative_buckets: vec![2.0],
            ..FloatHistogram::default()
        };
        // Populated buckets only, most negative first, rules 1 (negative), 3 (zero), 0.
        let text = r#"{"count":"6","sum":"4.5","buckets":[[1,"-2","-1","2"],[3,"-0.001","0.001","1"],[0,"0.5","1","1"],[0,"2","4","2.5e-07"]]}"#;
        assert_eq!(format_histogram(&h), text);
        let nhcb = FloatHistogram {
            schema: CUSTOM_BUCKETS_SCHEMA,
            count: 3.0,
            sum: 1.0,
            positive_spans: vec![Span::new(0, 2)],
            positive_buckets: vec![1.0, 2.0],
            custom_values: vec![0.5],
            ..FloatHistogram::default()
        };
        assert_eq!(
            format_histogram(&nhcb),
            r#"{"count":"3","sum":"1","buckets":[[0,"-Inf","0.5","1"],[0,"0.5","+Inf","2"]]}"#
        );
        // No populated bucket: no `buckets` at all.
        let empty = FloatHistogram {
            count: 0.0,
            sum: f64::NAN,
            ..FloatHistogram::default()
        };
        assert_eq!(format_histogram(&empty), r#"{"count":"0","sum":"NaN"}"#);
        let m = Arc::new(Labels::new([("__name__", "lat")]).unwrap());
        let vec = Value::Vector(vec![crate::query::Sample {
            h: Some(Arc::new(h.clone())),
            metric: m.clone(),
            t: 1_000,
            f: 0.0,
            drop_name: false,
        }]);
        assert_eq!(
            s(|o| write_query_data(o, &vec, Some(2_000))),
            format!(
                r#"{{"resultType":"vector","result":[{{"metric":{{"__name__":"lat"}},"histogram":[2,{text}]}}]}}"#
            )
        );
        // A series with both kinds has `values` then `histograms`.
        let mat = Value::Matrix(vec![Series {
            metric: m,
            floats: vec![FPoint { t: 1_000, f: 2.0 }],
            histograms: vec![HPoint {
                t: 2_000,
                h: Arc::new(empty),
            }],
            drop_name: false,
        }]);
        assert_eq!(
            s(|o| write_query_data(o, &mat, None)),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"lat"},"values":[[1,"2"]],"histograms":[[2,{"count":"0","sum":"NaN"}]]}]}"#
        );
    }

    #[test]
    fn results_in_prometheus_shapes() {
        let m = Arc::new(Labels::new([("__name__", "up"), ("job", "a<b")]).unwrap());
        let vec = Value::Vector(vec![crate::query::Sample {
            h: None,
            metric: m.clone(),
            t: 1_000,
            f: 1.0,
            drop_name: false,
        }]);
        assert_eq!(
            s(|o| write_query_data(o, &vec, Some(1_435_781_451_781))),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\u003cb"},"value":[1435781451.781,"1"]}]}"#
        );
        let mat = Value::Matrix(vec![
            Series {
                histograms: Vec::new(),
                metric: m,
                floats: vec![
                    FPoint { t: 1_500, f: 0.25 },
                    FPoint {
                        t: 2_750,
                        f: f64::NAN,
                    },
                ],
                drop_name: false,
            },
            Series {
                histograms: Vec::new(),
                metric: Arc::new(Labels::empty()),
                floats: vec![],
                drop_name: false,
            },
        ]);
        assert_eq!(
            s(|o| write_query_data(o, &mat, None)),
            r#"{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a\u003cb"},"values":[[1.5,"0.25"],[2.75,"NaN"]]},{"metric":{}}]}"#
        );
        let sc = Value::Scalar(FPoint { t: 9, f: 1e-7 });
        assert_eq!(
            s(|o| write_query_data(o, &sc, Some(4_000))),
            r#"{"resultType":"scalar","result":[4,"0.0000001"]}"#
        );
        let st = Value::String {
            t: 4_000,
            s: "hi \"there\"".into(),
        };
        assert_eq!(
            s(|o| write_query_data(o, &st, None)),
            r#"{"resultType":"string","result":[4,"hi \"there\""]}"#
        );
    }

    #[test]
    fn sample_text_and_timestamps_as_strings() {
        for (f, want) in [
            (0.1 + 0.2, "0.30000000000000004"),
            (1e21, "1e+21"),
            (9.99e20, "999000000000000000000"),
            (-2.5e-7, "-2.5e-07"),
            (1e-6, "0.000001"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (-0.0, "-0"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_sample(f), want, "{f}");
            assert_eq!(s(|o| write_sample_value(o, f)), format!("\"{want}\""));
        }
        assert_eq!(format_ts(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_ts(1_435_781_451_000), "1435781451");
        assert_eq!(format_ts(-1_500), "-1.5");
        assert_eq!(format_ts(i64::MAX), "9223372036854775.807");
        assert_eq!(format_ts(i64::MIN), "-9223372036854775.808");
    }

    fn read(text: &str) -> Result<Value, ReadError> {
        read_query_data(&serde_json::from_str(text).unwrap())
    }

    fn rewrite(v: &Value) -> String {
        s(|o| write_query_data(o, v, None))
    }

    #[test]
    fn answers_read_back_to_the_same_bytes() {
        let m = |pairs: &[(&str, &str)]| Arc::new(Labels::new(pairs.iter().copied()).unwrap());
        let values = [
            Value::Vector(vec![
                Sample {
                    h: None,
                    metric: m(&[("__name__", "up"), ("job", "a\"b<\u{2028}"), ("Z", "é")]),
                    t: 1_700_000_000_123,
                    f: 1.0,
                    drop_name: false,
                },
                Sample {
                    h: None,
                    metric: m(&[]),
                    t: -1_500,
                    f: f64::NEG_INFINITY,
                    drop_name: false,
                },
            ]),
            Value::Vector(vec![]),
            Value::Matrix(vec![
                Series {
                    histograms: Vec::new(),
                    metric: m(&[("__name__", "x"), ("i", "1")]),
                    floats: vec![
                        FPoint {
                            t: 1_700_000_000_007,
                            f: 2.5e-7,
                        },
                        FPoint {
                            t: 1_700_000_060_000,
                            f: f64::NAN,
                        },
                        FPoint {
                            t: 1_700_000_120_500,
                            f: -3e21,
                        },
                    ],
                    drop_name: false,
                },
                // No float points: no `values`, and read back so.
                Series {
                    histograms: Vec::new(),
                    metric: m(&[("i", "2")]),
                    floats: vec![],
                    drop_name: false,
                },
            ]),
            Value::Scalar(FPoint {
                t: 4_500,
                f: f64::MIN_POSITIVE,
            }),
            Value::String {
                t: 0,
                s: "a\nb</".into(),
            },
        ];
        for v in &values {
            let text = rewrite(v);
            let back = read(&text).unwrap();
            assert_eq!(rewrite(&back), text);
        }
        assert!(rewrite(&values[2]).ends_with(r#"{"metric":{"i":"2"}}]}"#));
        // A label with an empty value is no label; a `values` list may be empty.
        let back =
            read(r#"{"resultType":"matrix","result":[{"metric":{"a":"","b":"1"},"values":[]}]}"#)
                .unwrap();
        assert_eq!(
            rewrite(&back),
            r#"{"resultType":"matrix","result":[{"metric":{"b":"1"}}]}"#
        );
        // Times far out of range saturate instead of wrapping.
        let Value::Scalar(p) = read(r#"{"resultType":"scalar","result":[1e300,"1"]}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(p.t, i64::MAX);
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        for bad in [
            r#"{}"#,
            r#"[]"#,
            r#"{"resultType":"vector","result":{}}"#,
            r#"{"resultType":"vector","result":[{"metric":{},"value":[1]}]}"#,
            r#"{"resultType":"vector","result":[{"metric":{"a":1},"value":[1,"1"]}]}"#,
            r#"{"resultType":"vector","result":[{"metric":[],"value":[1,"1"]}]}"#,
            r#"{"resultType":"vector","result":[{"metric":{},"value":["1","1"]}]}"#,
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}"#,
            r#"{"resultType":"matrix","result":[{"metric":{},"values":{}}]}"#,
            r#"{"resultType":"scalar","result":["1","1"]}"#,
            r#"{"resultType":"scalar","result":[1,1]}"#,
            r#"{"resultType":"string","result":[1,2]}"#,
            r#"{"resultType":"histogram","result":[]}"#,
            // Native histograms have no place in a `Value`: refused, not dropped.
            r#"{"resultType":"vector","result":[{"metric":{},"histogram":[1,{"count":"1","sum":"1"}]}]}"#,
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]],"histograms":[[1,{"count":"1","sum":"1"}]]}]}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn envelope_lists_annotations_only_when_present() {
        let mut a = Annotations::default();
        assert_eq!(
            String::from_utf8(envelope(b"[]", &a, &[])).unwrap(),
            r#"{"status":"success","data":[]}"#
        );
        for i in 0..12 {
            a.warn(format!("w{i:02}"));
        }
        a.info("i");
        let out = String::from_utf8(envelope(b"1", &a, &[])).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["warnings"].as_array().unwrap().len(), 11);
        assert_eq!(v["warnings"][10], "2 more warning annotations omitted");
        assert_eq!(v["infos"], serde_json::json!(["i"]));
        assert!(out.find("\"warnings\"").unwrap() < out.find("\"infos\"").unwrap());
    }

    /// Go's `'f'` and `'e'` formats by way of Rust's own shortest float printing: slower,
    /// written independently, the reference for the fast writers.
    fn reference_f(f: f64) -> String {
        if f.is_nan() {
            "NaN".into()
        } else if f.is_infinite() {
            if f > 0.0 {
                "+Inf".into()
            } else {
                "-Inf".into()
            }
        } else {
            format!("{f}")
        }
    }

    fn reference_e(f: f64) -> String {
        let e = format!("{f:e}");
        let (mant, exp) = e.split_once('e').unwrap();
        let exp: i32 = exp.parse().unwrap();
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn fast_writers_match_the_reference(bits in proptest::prelude::any::<u64>(), small in -1e7f64..1e7) {
            for f in [f64::from_bits(bits), small, small.round(), small / 1e9] {
                let same = |got: String, want: String| {
                    // Rust's printer rounds an exact half-way tie up where Go (and the fast
                    // writer) round to even: then the digits differ in the last place only,
                    // and both read back as `f`.
                    got == want
                        || (got.len() == want.len()
                            && got.trim_matches('"').parse::<f64>().ok() == Some(f)
                            && want.trim_matches('"').parse::<f64>().ok() == Some(f))
                };
                proptest::prop_assert!(same(s(|o| write_f(o, f)), reference_f(f)), "{}", f);
                let want = if f.is_finite() && f != 0.0 && !(1e-6..1e21).contains(&f.abs()) {
                    reference_e(f)
                } else {
                    reference_f(f)
                };
                proptest::prop_assert!(same(s(|o| write_sample_value(o, f)), format!("\"{want}\"")), "{}", f);
                if f.is_finite() && f != 0.0 {
                    let exp = reference_e(f).split_once('e').unwrap().1.parse::<i32>().unwrap();
                    let want = if (-4..6).contains(&exp) { reference_f(f) } else { reference_e(f) };
                    proptest::prop_assert!(same(format_g(f), want), "{}", f);
                }
            }
        }

        #[test]
        fn the_plain_fast_path_writes_what_the_digit_layout_writes(
            bits in proptest::prelude::any::<u64>(),
            small in -1e7f64..1e7,
            tiny in 1e-6f64..1e-3,
        ) {
            for f in [f64::from_bits(bits), small, small / 1e9, tiny, -tiny, small * 1e12] {
                if !f.is_finite() || f == 0.0 {
                    continue;
                }
                let mut fast = Vec::new();
                if write_plain_shortest(&mut fast, f) {
                    let mut laid_out = Vec::new();
                    Digits::of(f).write_f(&mut laid_out);
                    proptest::prop_assert_eq!(
                        String::from_utf8(fast).unwrap(),
                        String::from_utf8(laid_out).unwrap(),
                        "{}", f
                    );
                } else {
                    proptest::prop_assert!(fast.is_empty(), "{}", f);
                }
            }
        }

        #[test]
        fn sample_values_read_back_as_the_same_float(bits in proptest::prelude::any::<u64>()) {
            let f = f64::from_bits(bits);
            let text = s(|o| write_sample_value(o, f));
            let inner = &text[1..text.len() - 1];
            if f.is_nan() {
                proptest::prop_assert_eq!(inner, "NaN");
            } else {
                proptest::prop_assert_eq!(inner.parse::<f64>().unwrap().to_bits(), f.to_bits());
                // Go's exponent always has a sign and at least two digits.
                if let Some((_, exp)) = inner.split_once('e') {
                    proptest::prop_assert!(exp.len() >= 3 && matches!(&exp[..1], "+" | "-"));
                }
            }
        }

        #[test]
        fn timestamps_read_back_as_the_same_milliseconds(t in -(1i64 << 52)..(1i64 << 52)) {
            let text = s(|o| write_ts(o, t));
            // Read exactly: whole seconds, then up to three digits of milliseconds.
            let (neg, body) = match text.strip_prefix('-') {
                Some(b) => (true, b),
                None => (false, text.as_str()),
            };
            let (whole, frac) = body.split_once('.').unwrap_or((body, ""));
            proptest::prop_assert!(frac.len() <= 3);
            let ms = whole.parse::<i64>().unwrap() * 1000
                + format!("{frac:0<3}").parse::<i64>().unwrap();
            proptest::prop_assert_eq!(if neg { -ms } else { ms }, t);
            proptest::prop_assert!(!text.ends_with('0') || !text.contains('.'));
        }

        #[test]
        fn stamps_of_any_run_are_write_ts(
            start in proptest::prelude::any::<i64>(),
            near in 1_000_000_000_000i64..4_000_000_000_000,
            step in 1i64..20_000_000,
            n in 1usize..40,
        ) {
            for first in [start, near, near / 1000 * 1000] {
                let mut stamps = Stamps::default();
                let (mut got, mut want) = (Vec::new(), Vec::new());
                for k in 0..n as i64 {
                    let t = first.saturating_add(k.saturating_mul(step));
                    stamps.write(&mut got, t);
                    got.push(b',');
                    write_ts(&mut want, t);
                    want.push(b',');
                }
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
