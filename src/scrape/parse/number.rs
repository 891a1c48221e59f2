//! Numbers in the exposition formats: sample values, timestamps, and the canonical float text
//! Prometheus writes into `le`/`quantile` label values.

use std::fmt::Write as _;

/// Bit pattern of the NaN Prometheus stores for every parsed NaN (Go's `math.NaN()`), so a
/// scraped NaN is bit-identical to what Prometheus would have written.
pub const NORMAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Exact powers of ten representable in an f64 (10^22 is the last one).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Largest mantissa below which another decimal digit cannot overflow a u64.
const MANTISSA_LIMIT: u64 = (u64::MAX - 9) / 10;

/// A decimal number split into its parts: `[sign] digits [. digits] [e [sign] digits]`.
struct Decimal<'a> {
    negative: bool,
    /// Integer digits then fraction digits, without the dot.
    int_digits: &'a [u8],
    frac_digits: &'a [u8],
    /// The explicit exponent, saturated far beyond any f64 or i64 range.
    exponent: i64,
}

/// Splits `b` into a decimal number, or `None` when it is not one (specials are not decimals).
fn split_decimal(b: &[u8]) -> Option<Decimal<'_>> {
    let (negative, mut i) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = &b[int_start..i];
    let mut frac_digits: &[u8] = &[];
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = &b[frac_start..i];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let mut exponent: i64 = 0;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        let exp_negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            // Saturate: anything past a million is already out of range for every use here.
            if exponent < 1_000_000 {
                exponent = exponent * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == exp_start {
            return None;
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if i != b.len() {
        return None;
    }
    Some(Decimal {
        negative,
        int_digits,
        frac_digits,
        exponent,
    })
}

/// Parses a sample value the way Prometheus does (Go's `strconv.ParseFloat` without hex,
/// underscores or `p` exponents): decimal notation, or `Inf`/`Infinity` with an optional sign
/// and `NaN` without one, case-insensitively. Overflow to infinity is an error, underflow gives
/// zero. NaN is returned with Prometheus's canonical bit pattern.
pub fn parse_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let Some(d) = split_decimal(b) else {
        return parse_special(b);
    };
    // Fast path (Clinger): a mantissa and power of ten that are both exact in an f64 give a
    // correctly rounded result with one multiplication or division.
    let mut mantissa: u64 = 0;
    let mut exact = true;
    for &c in d.int_digits.iter().chain(d.frac_digits) {
        if mantissa > MANTISSA_LIMIT {
            exact = false;
            break;
        }
        mantissa = mantissa * 10 + u64::from(c - b'0');
    }
    if exact && mantissa <= (1u64 << 53) {
        let e = d.exponent - d.frac_digits.len() as i64;
        let m = mantissa as f64;
        let v = if (0..=22).contains(&e) {
            Some(m * POW10[e as usize])
        } else if (-22..0).contains(&e) {
            Some(m / POW10[(-e) as usize])
        } else if mantissa == 0 {
            Some(0.0)
        } else {
            None
        };
        if let Some(v) = v {
            return Some(if d.negative { -v } else { v });
        }
    }
    // The syntax is already checked and is a subset of what the standard parser accepts.
    let v: f64 = s.parse().ok()?;
    if v.is_infinite() { None } else { Some(v) }
}

fn parse_special(b: &[u8]) -> Option<f64> {
    let (sign, rest) = match b.first() {
        Some(b'-') => (-1.0, &b[1..]),
        Some(b'+') => (1.0, &b[1..]),
        _ => (0.0, b),
    };
    if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
        return Some(if sign < 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    // Go accepts no sign on NaN.
    if sign == 0.0 && rest.eq_ignore_ascii_case(b"nan") {
        return Some(f64::from_bits(NORMAL_NAN_BITS));
    }
    None
}

/// Parses a text-format timestamp: decimal digits only (no sign), milliseconds, within i64.
pub fn parse_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    Some(v)
}

/// Why an OpenMetrics timestamp was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondsError {
    /// Not a number.
    Syntax,
    /// NaN or an infinity.
    NotFinite,
    /// Outside what i64 milliseconds can hold.
    Range,
}

/// Converts OpenMetrics float seconds to integer milliseconds, truncating toward zero like
/// Prometheus's `int64(ts * 1000)`, but on the exact decimal value: `1.001` is 1001 ms, where
/// the binary product would truncate to 1000.
pub fn parse_seconds_as_millis(s: &str) -> Result<i64, SecondsError> {
    let b = s.as_bytes();
    let Some(d) = split_decimal(b) else {
        return match parse_special(b) {
            Some(_) => Err(SecondsError::NotFinite),
            None => Err(SecondsError::Syntax),
        };
    };
    // value = 0.DIGITS * 10^(int_len + exponent); keep the digits left of the millisecond point.
    let int_len = d.int_digits.len() as i64;
    let keep = int_len + d.exponent + 3;
    let mut ms: i64 = 0;
    if keep > 0 {
        let mut taken: i64 = 0;
        for &c in d.int_digits.iter().chain(d.frac_digits) {
            if taken == keep {
                break;
            }
            ms = push_digit(ms, c - b'0')?;
            taken += 1;
        }
        // Fewer digits than places: the rest are zeros (e.g. `17e8`).
        while taken < keep {
            if ms == 0 {
                // Zeros times any power of ten stay zero; avoid looping over huge exponents.
                break;
            }
            ms = push_digit(ms, 0)?;
            taken += 1;
        }
    }
    Ok(if d.negative { -ms } else { ms })
}

fn push_digit(acc: i64, digit: u8) -> Result<i64, SecondsError> {
    acc.checked_mul(10)
        .and_then(|v| v.checked_add(i64::from(digit)))
        .ok_or(SecondsError::Range)
}

/// Formats `f` as Prometheus formats `le` and `quantile` label values (Go's shortest `%g`, with
/// `.0` appended to integers): `1.0`, `0.25`, `1e+06`, `+Inf`.
pub fn format_openmetrics_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    if f == 0.0 {
        return "0.0".to_string();
    }
    // Rust's `{:e}` gives the shortest round-trip digits; lay them out as Go's %g does.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::with_capacity(digits.len() + 8);
    if f < 0.0 {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.abs());
        return out;
    }
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
        return out;
    }
    let int_len = exp as usize + 1;
    if digits.len() > int_len {
        out.push_str(&digits[..int_len]);
        out.push('.');
        out.push_str(&digits[int_len..]);
    } else {
        out.push_str(&digits);
        for _ in digits.len()..int_len {
            out.push('0');
        }
        out.push_str(".0");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_prometheus_accepts() {
        let cases: &[(&str, f64)] = &[
            ("0", 0.0),
            ("-0", -0.0),
            ("17631.36", 17631.36),
            ("1.445417e+06", 1.445417e6),
            ("4.9351e-05", 4.9351e-05),
            ("1.", 1.0),
            (".5", 0.5),
            ("+.5e-3", 0.0005),
            ("1.e5", 1e5),
            ("00012", 12.0),
            ("1E3", 1000.0),
            ("1e-400", 0.0),
            ("9007199254740993", 9007199254740992.0),
            ("0.1000000000000000055511151231257827", 0.1),
            ("123456789012345678901234567890", 1.2345678901234568e29),
            ("1.7976931348623157e308", f64::MAX),
            ("+Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("Inf", f64::INFINITY),
            ("inf", f64::INFINITY),
            ("-infinity", f64::NEG_INFINITY),
            ("INFINITY", f64::INFINITY),
        ];
        for (s, want) in cases {
            let got = parse_float(s).unwrap_or_else(|| panic!("{s} refused"));
            assert_eq!(got.to_bits(), want.to_bits(), "{s}");
        }
        for s in ["NaN", "nan", "nAN"] {
            assert_eq!(parse_float(s).unwrap().to_bits(), NORMAL_NAN_BITS, "{s}");
        }
    }

    #[test]
    fn values_prometheus_refuses() {
        for s in [
            "",
            "+",
            "-",
            ".",
            "e5",
            "1e",
            "1e+",
            "0x1A",
            "0x1p3",
            "1_000",
            "1p3",
            "+NaN",
            "-nan",
            "nana",
            "infinit",
            "Infinityy",
            "1.2.3",
            "1e5.5",
            "1,5",
            " 1",
            "1 ",
            "1\r",
            "1e309",
            "-1e400",
            "١",
        ] {
            assert_eq!(parse_float(s), None, "{s:?} accepted");
        }
    }

    #[test]
    fn millis_are_digits_only() {
        assert_eq!(parse_millis("1395066363000"), Some(1_395_066_363_000));
        assert_eq!(parse_millis("0"), Some(0));
        assert_eq!(parse_millis("9223372036854775807"), Some(i64::MAX));
        for s in ["", "-1", "+1", "1.5", "9223372036854775808", "1e3", "12a"] {
            assert_eq!(parse_millis(s), None, "{s:?}");
        }
    }

    #[test]
    fn seconds_truncate_toward_zero_on_the_decimal_value() {
        let cases: &[(&str, i64)] = &[
            ("1", 1000),
            ("1.5", 1500),
            ("1.001", 1001),
            ("1700000000.123", 1_700_000_000_123),
            ("1795475331.7396238", 1_795_475_331_739),
            ("1.7954753317395918e+09", 1_795_475_331_739),
            ("17e8", 1_700_000_000_000),
            ("0.0009", 0),
            ("-0.0009", 0),
            ("-1.5", -1500),
            ("-1.0019", -1001),
            ("1e-400", 0),
            ("0e999999", 0),
            ("9223372036854775.807", i64::MAX),
            (".25", 250),
        ];
        for (s, want) in cases {
            assert_eq!(parse_seconds_as_millis(s), Ok(*want), "{s}");
        }
        assert_eq!(parse_seconds_as_millis("NaN"), Err(SecondsError::NotFinite));
        assert_eq!(
            parse_seconds_as_millis("-Inf"),
            Err(SecondsError::NotFinite)
        );
        assert_eq!(parse_seconds_as_millis("1x"), Err(SecondsError::Syntax));
        assert_eq!(parse_seconds_as_millis(""), Err(SecondsError::Syntax));
        assert_eq!(
            parse_seconds_as_millis("9223372036854775.808"),
            Err(SecondsError::Range)
        );
        assert_eq!(parse_seconds_as_millis("1e300"), Err(SecondsError::Range));
    }

    #[test]
    fn openmetrics_float_text_matches_go_g_format() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-0.0, "0.0"),
            (-1.0, "-1.0"),
            (0.25, "0.25"),
            (2.5, "2.5"),
            (10.0, "10.0"),
            (100000.0, "100000.0"),
            (999999.0, "999999.0"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (0.000123, "0.000123"),
            (-0.005, "-0.005"),
            (1.5e-7, "1.5e-07"),
            (1e100, "1e+100"),
            (123.456, "123.456"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (f, want) in cases {
            assert_eq!(format_openmetrics_float(*f), *want, "{f}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_float_agrees_with_std_on_rendered_floats(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            for s in [format!("{f}"), format!("{f:e}"), format!("{f:E}"), format!("{f:.3}")] {
                let want: f64 = s.parse().unwrap();
                prop_assert_eq!(parse_float(&s).map(f64::to_bits), Some(want.to_bits()), "{}", s);
            }
        }

        #[test]
        fn short_decimals_agree_with_std(m in any::<i32>(), e in -30i32..30) {
            let s = format!("{m}e{e}");
            let want: f64 = s.parse().unwrap();
            prop_assert_eq!(parse_float(&s).map(f64::to_bits), Some(want.to_bits()));
        }

        #[test]
        fn millisecond_seconds_round_trip(ms in -4_000_000_000_000i64..4_000_000_000_000) {
            let sign = if ms < 0 { "-" } else { "" };
            let s = format!("{sign}{}.{:03}", ms.abs() / 1000, ms.abs() % 1000);
            prop_assert_eq!(parse_seconds_as_millis(&s), Ok(ms));
        }

        #[test]
        fn openmetrics_float_text_reparses(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let s = format_openmetrics_float(f);
            let back = parse_float(&s).unwrap();
            prop_assert!(back == f, "{} -> {} -> {}", f, s, back);
        }
    }
}
