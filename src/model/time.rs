//! Timestamps as users write them: RFC 3339 or Unix seconds, both to and from milliseconds.

/// A time string that is neither RFC 3339 nor a Unix timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot parse {0:?} as a timestamp (want RFC 3339 like 2024-01-02T15:04:05Z, or Unix seconds)"
)]
pub struct TimeError(String);

/// The oldest timestamp tidemark stores: 0000-01-01T00:00:00.000Z, in milliseconds.
///
/// Samples outside [`MIN_TIME`, `MAX_TIME`] are refused wherever they enter (the `Appender`,
/// WAL replay, import). The range is every time RFC 3339's four-digit years can write, so every
/// stored sample prints and parses back (`inspect`, `dump`, the API's time parameters), and it
/// is 36 000 times narrower than `i64`: a time in it plus or minus any block duration, retention,
/// step or lookback a config can hold stays far from overflow.
pub const MIN_TIME: i64 = -62_167_219_200_000;
/// The newest timestamp tidemark stores: 9999-12-31T23:59:59.999Z, in milliseconds.
pub const MAX_TIME: i64 = 253_402_300_799_999;

/// Whether `t` (ms) is within the range storage keeps, [`MIN_TIME`] to [`MAX_TIME`].
pub fn is_storable_time(t: i64) -> bool {
    (MIN_TIME..=MAX_TIME).contains(&t)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's civil algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC with millisecond precision.
pub fn format_rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Parses RFC 3339 (`2024-01-02T15:04:05.123Z`, `+02:00` offsets) or Unix seconds with an
/// optional fraction, into milliseconds.
pub fn parse_time(s: &str) -> Result<i64, TimeError> {
    let err = || TimeError(s.to_string());
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 9.2e15 {
            return Err(err());
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(err());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = s.get(r).ok_or_else(err)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(err());
        }
        part.parse().map_err(|_| err())
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return Err(err());
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(err());
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(err());
        }
        let digits = &s[start..i.min(start + 3)];
        frac_ms = digits.parse::<i64>().map_err(|_| err())? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return Err(err()),
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Ok(secs * 1000 + frac_ms)
}

/// Prometheus's duration units, largest first, in milliseconds.
const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// A duration that is not in Prometheus's syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?} (want Prometheus syntax such as 15s, 1h30m, 2d, 0)")]
pub struct DurationError(String);

/// Parses a Prometheus duration (`1y2w3d4h5m6s7ms`, units in that order, each at most once;
/// `0` alone is zero) into milliseconds. A year is 365 days, as in Prometheus.
pub fn parse_duration(s: &str) -> Result<i64, DurationError> {
    let err = || DurationError(s.to_string());
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let idx = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(err)?
            + next_unit;
        next_unit = idx + 1;
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
    }
    Ok(total)
}

/// Formats milliseconds in Prometheus's duration syntax (`1h30m`, `0s`).
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    if rest < 0 {
        out.push('-');
        rest = -rest;
    }
    for (u, n) in UNITS {
        if rest >= n {
            out.push_str(&format!("{}{u}", rest / n));
            rest %= n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_as_prometheus_writes_them() {
        assert_eq!(parse_duration("15s").unwrap(), 15_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("2d").unwrap(), 172_800_000);
        assert_eq!(parse_duration("1y").unwrap(), 365 * 86_400_000);
        assert_eq!(parse_duration("100ms").unwrap(), 100);
        assert_eq!(parse_duration("0").unwrap(), 0);
        for bad in [
            "",
            "1",
            "1m1h",
            "1h1h",
            "-1s",
            "1.5h",
            "1 h",
            "5x",
            "99999999999999y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for ms in [1, 999, 15_000, 5_400_000, 1_296_000_000] {
            assert_eq!(parse_duration(&format_duration(ms)).unwrap(), ms);
        }
    }

    use super::*;

    #[test]
    fn the_storable_range_is_years_0000_to_9999() {
        assert_eq!(format_rfc3339(MIN_TIME), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(MAX_TIME), "9999-12-31T23:59:59.999Z");
        assert_eq!(parse_time("0000-01-01T00:00:00Z").unwrap(), MIN_TIME);
        assert_eq!(parse_time("9999-12-31T23:59:59.999Z").unwrap(), MAX_TIME);
        assert!(is_storable_time(MIN_TIME) && is_storable_time(MAX_TIME));
        for t in [MIN_TIME - 1, MAX_TIME + 1, i64::MIN, i64::MIN + 1, i64::MAX] {
            assert!(!is_storable_time(t), "{t}");
        }
    }

    #[test]
    fn round_trips_and_known_points() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        for ms in [
            0,
            1_700_000_000_123,
            -86_400_001,
            951_782_400_000,
            4_102_444_800_999,
        ] {
            assert_eq!(parse_time(&format_rfc3339(ms)).unwrap(), ms);
        }
        assert_eq!(
            parse_time("2023-11-14T23:13:20.5+01:00").unwrap(),
            1_700_000_000_500
        );
        assert_eq!(parse_time("1700000000.123").unwrap(), 1_700_000_000_123);
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000);
        for bad in [
            "",
            "yesterday",
            "2023-13-01T00:00:00Z",
            "2023-11-14T22:13:20",
            "NaN",
            "1e300",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
