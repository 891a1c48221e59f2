//! A head series' labels in one allocation.
//!
//! [`Labels`] is a vector of string pairs: a dozen allocations per series, some 600 bytes with
//! the allocator's rounding, for a few dozen bytes of text. A head series keeps its labels as
//! one byte string instead, built once when the series is made, and hands out [`Labels`] when
//! asked.
//!
//! Each name and value is written in turn, its `0x00` bytes escaped as `0x00 0xFF` and ended by
//! `0x00 0x01`. `0xFF` never occurs in UTF-8, so the escape is unambiguous; and comparing two
//! such byte strings orders them exactly as their [`Labels`] compare (string by string, a string
//! before any longer one it starts, a label set before any longer one it starts), so the head
//! sorts series without decoding them.

use std::cmp::Ordering;

use crate::model::Labels;

const ESC: u8 = 0x00;
const ESCAPED_NUL: u8 = 0xFF;
const END: u8 = 0x01;

/// Labels of a head series, encoded.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SeriesLabels(Box<[u8]>);

fn put(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == ESC {
            out.push(ESCAPED_NUL);
        }
    }
    out.extend_from_slice(&[ESC, END]);
}

fn encoded_len(s: &str) -> usize {
    s.len() + s.bytes().filter(|&b| b == ESC).count() + 2
}

/// Matches `s` at the front of `buf`, returning what follows it.
fn strip<'a>(buf: &'a [u8], s: &str) -> Option<&'a [u8]> {
    let mut i = 0;
    for &b in s.as_bytes() {
        if *buf.get(i)? != b {
            return None;
        }
        i += 1;
        if b == ESC {
            if *buf.get(i)? != ESCAPED_NUL {
                return None;
            }
            i += 1;
        }
    }
    match buf.get(i..i + 2) {
        Some([ESC, END]) => buf.get(i + 2..),
        _ => None,
    }
}

/// Reads one string off the front of `buf`, returning it and what follows.
fn take(buf: &[u8]) -> (String, &[u8]) {
    let mut out = Vec::new();
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if b == ESC {
            match buf.get(i + 1) {
                Some(&ESCAPED_NUL) => {
                    out.push(ESC);
                    i += 2;
                    continue;
                }
                // The end mark; a lone `0x00` at the end can only be damage, and ends it too.
                _ => {
                    i = (i + 2).min(buf.len());
                    break;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    let s = String::from_utf8(out)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    (s, &buf[i..])
}

impl SeriesLabels {
    pub(crate) fn new(labels: &Labels) -> Self {
        let len = labels
            .iter()
            .map(|(n, v)| encoded_len(n) + encoded_len(v))
            .sum();
        let mut out = Vec::with_capacity(len);
        for (n, v) in labels.iter() {
            put(&mut out, n);
            put(&mut out, v);
        }
        SeriesLabels(out.into_boxed_slice())
    }

    /// The labels, decoded.
    pub(crate) fn to_labels(&self) -> Labels {
        let mut pairs = Vec::new();
        let mut rest = &self.0[..];
        while !rest.is_empty() {
            let (n, r) = take(rest);
            let (v, r) = take(r);
            pairs.push((n, v));
            rest = r;
        }
        Labels::from_sorted_unchecked(pairs)
    }

    /// True when these are exactly `labels`; compares without decoding.
    pub(crate) fn matches(&self, labels: &Labels) -> bool {
        let mut rest = &self.0[..];
        for (n, v) in labels.iter() {
            match strip(rest, n).and_then(|r| strip(r, v)) {
                Some(r) => rest = r,
                None => return false,
            }
        }
        rest.is_empty()
    }

    /// Orders as the decoded [`Labels`] would.
    pub(crate) fn cmp_labels(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }

    /// Bytes held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for SeriesLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_labels().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_sorted_unchecked(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn edges_round_trip_and_match() {
        for l in [
            Labels::empty(),
            labels(&[("__name__", "up")]),
            labels(&[("a", ""), ("b", "\0"), ("c", "\0\0x\0"), ("d", "ÿ\u{1}")]),
            labels(&[
                ("__name__", "m"),
                ("job", "node"),
                ("v", &"x".repeat(70_000)),
            ]),
        ] {
            let s = SeriesLabels::new(&l);
            assert_eq!(s.to_labels(), l);
            assert!(s.matches(&l));
        }
        let s = SeriesLabels::new(&labels(&[("__name__", "up"), ("job", "a")]));
        assert_eq!(s.len(), "__name__upjoba".len() + 8);
        for other in [
            labels(&[("__name__", "up")]),
            labels(&[("__name__", "up"), ("job", "ab")]),
            labels(&[("__name__", "up"), ("job", "")]),
            labels(&[("__name__", "up"), ("job", "a"), ("x", "1")]),
            labels(&[("__name__", "up"), ("job", "a\0")]),
            labels(&[("__name__", "upjob"), ("a", "")]),
            Labels::empty(),
        ] {
            assert!(!s.matches(&other), "{other:?}");
        }
    }

    #[test]
    fn damaged_bytes_decode_without_panic() {
        for bytes in [&[0u8][..], &[b'a', 0], &[0, 0xFF], &[0xC3, 0, 1, b'v']] {
            let s = SeriesLabels(bytes.to_vec().into_boxed_slice());
            let _ = s.to_labels();
            assert!(!s.matches(&labels(&[("a", "b")])));
        }
    }

    fn label_sets() -> impl Strategy<Value = Labels> {
        let s = prop_oneof![
            3 => "[a-c]{0,3}",
            1 => "[\\x00\\x01a\\xFFÿ]{0,3}",
        ];
        proptest::collection::vec((s.clone(), s), 0..4).prop_map(Labels::from_sorted_unchecked)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn same_answers_as_labels(a in label_sets(), b in label_sets()) {
            let (ea, eb) = (SeriesLabels::new(&a), SeriesLabels::new(&b));
            prop_assert_eq!(ea.to_labels(), a.clone());
            prop_assert_eq!(ea.matches(&b), a == b);
            prop_assert_eq!(ea.cmp_labels(&eb), a.cmp(&b));
        }
    }
}
