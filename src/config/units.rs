//! The values a config file writes in its own syntax: durations (`1h30m`), sizes (`512MB`),
//! credentials that must never be shown, and URLs shown without their passwords.
//!
//! Each type reads and writes the text Prometheus uses, so a configuration written back (for
//! `/api/v1/status/config`) reads the same again.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::model::{format_duration, parse_duration};

/// A duration in milliseconds, written in Prometheus's syntax (`15s`, `1h30m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub i64);

impl Duration {
    /// `n` seconds.
    pub const fn secs(n: i64) -> Duration {
        Duration(n * 1000)
    }

    /// Milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// As a `std::time::Duration` (negative values cannot be written, so never occur).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Duration).map_err(de::Error::custom)
    }
}

/// A size in bytes, written as Prometheus writes them (`512MB`, `1GiB`; both base 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, n) in SIZE_UNITS.iter().rev() {
            if self.0 != 0 && self.0.is_multiple_of(*n) {
                return write!(f, "{}{unit}", self.0 / n);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_size(&s).map(ByteSize).map_err(de::Error::custom)
    }
}

const SIZE_UNITS: [(&str, u64); 7] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("PiB", 1 << 50),
    ("EiB", 1 << 60),
];

/// Parses a size as Prometheus's `units.Base2Bytes` does: a sequence of numbers (fractions
/// allowed) each followed by a unit, `KiB` and `KB` both meaning 1024, one unit family per
/// value; `0` alone is zero.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    if s == "0" {
        return Ok(0);
    }
    parse_size_in(s, true)
        .or_else(|_| parse_size_in(s, false))
        .map_err(|why| SizeError {
            input: s.to_string(),
            why,
        })
}

/// A size that does not parse: the text and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {why} (want e.g. 512MB, 1GiB, 0)")]
pub struct SizeError {
    /// The text as written.
    pub input: String,
    /// What is wrong with it (the reading with `KB`-style unit names, when both fail).
    pub why: SizeProblem,
}

/// What is wrong with a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeProblem {
    /// Nothing written.
    #[error("empty")]
    Empty,
    /// A number without a unit (`10`).
    #[error("missing unit")]
    MissingUnit,
    /// A unit that is neither `KiB`-style nor `KB`-style, or a mix of both.
    #[error("unknown unit {0:?}")]
    UnknownUnit(String),
    /// A unit without a number (`MB`).
    #[error("expected a number")]
    ExpectedNumber,
    /// More than `u64::MAX` bytes.
    #[error("too large")]
    TooLarge,
}

/// One attempt of [`parse_size`] with the `KiB` (`binary`) or the `KB` unit names.
fn parse_size_in(s: &str, binary: bool) -> Result<u64, SizeProblem> {
    let unit_of = |u: &str| -> Option<u64> {
        SIZE_UNITS.iter().find_map(|(name, n)| {
            let legacy = name.replace("iB", "B");
            let matches = if binary { *name == u } else { legacy == u };
            matches.then_some(*n)
        })
    };
    if s.is_empty() {
        return Err(SizeProblem::Empty);
    }
    let is_num = |c: &u8| c.is_ascii_digit() || *c == b'.';
    let mut rest = s;
    let mut total = 0u64;
    while !rest.is_empty() {
        let num_len = rest.bytes().take_while(is_num).count();
        let unit_len = rest[num_len..].bytes().take_while(|c| !is_num(c)).count();
        let (num, unit) = (&rest[..num_len], &rest[num_len..num_len + unit_len]);
        rest = &rest[num_len + unit_len..];
        let n = match unit_of(unit) {
            Some(n) => n,
            None if unit.is_empty() => return Err(SizeProblem::MissingUnit),
            None => return Err(SizeProblem::UnknownUnit(unit.to_string())),
        };
        let value = match scaled(num, n) {
            Some(v) => v,
            None if num.trim_matches('.').is_empty() => return Err(SizeProblem::ExpectedNumber),
            None => return Err(SizeProblem::TooLarge),
        };
        total = total.checked_add(value).ok_or(SizeProblem::TooLarge)?;
    }
    Ok(total)
}

/// `num` (digits with an optional fraction) times `unit`: exact for whole numbers, the
/// fraction rounded down to a byte.
fn scaled(num: &str, unit: u64) -> Option<u64> {
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: f64 = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse().ok()?
    };
    whole
        .checked_mul(unit)?
        .checked_add((frac * unit as f64) as u64)
}

/// A credential: compared and moved like a string, never printed. It serializes as
/// `<secret>`, as Prometheus's does, so a configuration written back (for
/// `/api/v1/status/config`) cannot show it whatever the format.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The credential itself; call only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SECRET_SHOWN)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(SECRET_SHOWN)
    }
}

/// What is shown in place of a secret.
pub const SECRET_SHOWN: &str = "<secret>";

/// `url` as `/api/v1/status/config` shows it: a password replaced by `xxxxx`, as Prometheus
/// writes its URLs back (the user name stays, as in Prometheus).
pub fn url_password_hidden(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.cannot_be_a_base() => {
            if u.password().is_none() {
                url.to_string()
            } else if u.set_password(Some("xxxxx")).is_ok() {
                u.to_string()
            } else {
                url_without_userinfo(url)
            }
        }
        // Not a URL with a host (`user:pw@host/x` reads as scheme `user`).
        _ => url_without_userinfo(url),
    }
}

/// `url` without its `user:password@` part, for logs, error messages and metric labels.
pub fn url_without_userinfo(url: &str) -> String {
    if let Ok(mut u) = reqwest::Url::parse(url)
        && (u.password().is_some() || !u.username().is_empty())
        && u.set_password(None).is_ok()
        && u.set_username("").is_ok()
    {
        return u.to_string();
    }
    // Not a URL the client could use (`user:pw@host/x` has no scheme): cut by hand, the
    // authority ending at the first `/`, `?` or `#` and the user part at its last `@`.
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (&url[..scheme.len() + 3], rest),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_error_says_what_is_wrong_with_which_text() {
        let why = |s: &str| parse_size(s).map_err(|e| (e.input, e.why));
        assert_eq!(why(""), Err(("".into(), SizeProblem::Empty)));
        assert_eq!(why("10"), Err(("10".into(), SizeProblem::MissingUnit)));
        assert_eq!(why("MB"), Err(("MB".into(), SizeProblem::ExpectedNumber)));
        assert_eq!(
            why("1XB"),
            Err(("1XB".into(), SizeProblem::UnknownUnit("XB".into())))
        );
        // One past u64::MAX, by one unit and by a sum of units.
        assert_eq!(why("16EB"), Err(("16EB".into(), SizeProblem::TooLarge)));
        assert_eq!(
            why("18446744073709551615B1B"),
            Err(("18446744073709551615B1B".into(), SizeProblem::TooLarge))
        );
        assert_eq!(parse_size("18446744073709551615B"), Ok(u64::MAX));
        assert_eq!(
            parse_size("10").map_err(|e| e.to_string()),
            Err("invalid size \"10\": missing unit (want e.g. 512MB, 1GiB, 0)".into())
        );
    }
}
