//! Calendar arithmetic for the date functions (`year()`, `day_of_week()`…): UTC, proleptic
//! Gregorian, from Unix seconds, without a time-zone library.

/// A UTC calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Civil {
    /// Year (astronomical: 0 is 1 BC).
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Days since 1970-01-01 (negative before).
    days: i64,
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

impl Civil {
    /// The date and time at `secs` seconds since the Unix epoch.
    pub(super) fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        // Count in 400-year eras starting on 0000-03-01, so that leap days end each cycle.
        let z = i128::from(days) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i128::from(month <= 2)) as i64;
        Civil {
            year,
            month,
            day,
            hour: (sod / 3_600) as u32,
            minute: (sod % 3_600 / 60) as u32,
            days,
        }
    }

    /// Day of the week, 0 = Sunday.
    pub(super) fn weekday(&self) -> u32 {
        // 1970-01-01 was a Thursday.
        (self.days + 4).rem_euclid(7) as u32
    }

    /// Day of the year, 1–366.
    pub(super) fn day_of_year(&self) -> u32 {
        const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let leap_shift = u32::from(self.month > 2 && is_leap(self.year));
        BEFORE[(self.month - 1) as usize] + self.day + leap_shift
    }

    /// Number of days in the month.
    pub(super) fn days_in_month(&self) -> u32 {
        match self.month {
            2 if is_leap(self.year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }
}

/// Converts a sample value to whole seconds as Go's `int64(f)` does on amd64: truncation, and
/// the minimum int64 for NaN and anything out of range.
pub(super) fn seconds_of(f: f64) -> i64 {
    if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
        f as i64
    } else {
        i64::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_the_conformance_script() {
        let c = Civil::from_unix(1_136_239_445); // 2006-01-02 22:04:05, a Monday
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute),
            (2006, 1, 2, 22, 4)
        );
        assert_eq!((c.weekday(), c.day_of_year()), (1, 2));
        assert_eq!(Civil::from_unix(1_230_767_999).year, 2008);
        assert_eq!(Civil::from_unix(1_230_768_000).year, 2009);
        let feb29 = Civil::from_unix(1_456_790_399);
        assert_eq!((feb29.month, feb29.day), (2, 29));
        let mar1 = Civil::from_unix(1_456_790_400);
        assert_eq!((mar1.month, mar1.day), (3, 1));
        assert_eq!(Civil::from_unix(1_483_191_420).day_of_year(), 366);
        assert_eq!(Civil::from_unix(1_672_493_820).day_of_year(), 365);
        assert_eq!(Civil::from_unix(1_454_284_800).days_in_month(), 29);
        assert_eq!(Civil::from_unix(1_485_907_200).days_in_month(), 28);
        let epoch = Civil::from_unix(0);
        assert_eq!(
            (epoch.year, epoch.weekday(), epoch.day_of_year()),
            (1970, 4, 1)
        );
    }

    #[test]
    fn negative_times_count_back_from_the_epoch() {
        let c = Civil::from_unix(-1);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute),
            (1969, 12, 31, 23, 59)
        );
        assert_eq!(c.weekday(), 3);
        // 1900 was not a leap year, 2000 was.
        assert_eq!(Civil::from_unix(-2_206_310_400).days_in_month(), 28); // 1900-02-01
        assert_eq!(Civil::from_unix(951_782_400).days_in_month(), 29); // 2000-02-29
        let far = Civil::from_unix(i64::MIN);
        assert!(far.year < -200_000_000_000 && (1..=12).contains(&far.month));
    }

    #[test]
    fn seconds_truncate_like_go() {
        assert_eq!(seconds_of(1.9), 1);
        assert_eq!(seconds_of(-1.9), -1);
        assert_eq!(seconds_of(f64::NAN), i64::MIN);
        assert_eq!(seconds_of(f64::INFINITY), i64::MIN);
        assert_eq!(seconds_of(1e19), i64::MIN);
    }
}
