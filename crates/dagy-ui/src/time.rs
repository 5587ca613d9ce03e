//! Times as the dashboard reads and shows them: UTC dates and times, relative times ("2d"),
//! and durations. All times are milliseconds since the Unix epoch.

const SECOND: u64 = 1_000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `ms` as `2026-11-30 10:00:05` (UTC).
pub fn format_utc(ms: u64) -> String {
    let days = (ms / DAY) as i64;
    let rest = ms % DAY;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / HOUR,
        rest % HOUR / MINUTE,
        rest % MINUTE / SECOND
    )
}

/// The time of day of `ms` to the millisecond, `10:00:05.120` (UTC).
pub(crate) fn format_utc_time(ms: u64) -> String {
    let rest = ms % DAY;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        rest / HOUR,
        rest % HOUR / MINUTE,
        rest % MINUTE / SECOND,
        rest % SECOND
    )
}

/// A duration as people read it: `850 ms`, `12.3 s`, `4m 05s`, `2h 03m`, `3d 04h`.
pub fn format_duration(ms: u64) -> String {
    if ms < SECOND {
        format!("{ms} ms")
    } else if ms < MINUTE {
        format!("{:.1} s", ms as f64 / 1_000.0)
    } else if ms < HOUR {
        format!("{}m {:02}s", ms / MINUTE, ms % MINUTE / SECOND)
    } else if ms < DAY {
        format!("{}h {:02}m", ms / HOUR, ms % HOUR / MINUTE)
    } else {
        format!("{}d {:02}h", ms / DAY, ms % DAY / HOUR)
    }
}

/// What a time filter accepts, for the message that answers a value it does not.
pub(crate) const INSTANT_FORMS: &str = "a date like 2026-11-30, a UTC date and time like \
     2026-11-30T10:00 or 2026-11-30T10:00:05Z, or a time ago like 30m, 1h, 2d or 1w";

/// Reads a point in time: an ISO date (midnight UTC), an ISO date and time in UTC (`T` or a
/// space between them, seconds and a trailing `Z` optional), or a time before `now_ms` as a
/// whole number and a unit (`s`, `m`, `h`, `d`, `w`). `None` when it is none of these.
pub(crate) fn parse_instant(text: &str, now_ms: u64) -> Option<u64> {
    let text = text.trim();
    parse_ago(text)
        .map(|ago| now_ms.saturating_sub(ago))
        .or_else(|| parse_utc(text))
}

/// `30m`, `1h`, `2d`: a duration in milliseconds.
fn parse_ago(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        's' => SECOND,
        'm' => MINUTE,
        'h' => HOUR,
        'd' => DAY,
        'w' => 7 * DAY,
        _ => return None,
    };
    let number = &text[..text.len() - 1];
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    number.parse::<u64>().ok()?.checked_mul(unit)
}

/// `2026-11-30`, `2026-11-30T10:00`, `2026-11-30 10:00:05Z`: milliseconds since the epoch.
fn parse_utc(text: &str) -> Option<u64> {
    let text = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let year: i64 = digits(parts.next()?, 4)?;
    let month: u32 = digits(parts.next()?, 2)?;
    let day: u32 = digits(parts.next()?, 2)?;
    if parts.next().is_some()
        || year < 1970
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
    {
        return None;
    }
    let seconds_of_day = match time {
        None => 0,
        Some(time) => {
            let mut parts = time.split(':');
            let hour: u64 = digits(parts.next()?, 2)?;
            let minute: u64 = digits(parts.next()?, 2)?;
            let second: u64 = parts.next().map_or(Some(0), |s| digits(s, 2))?;
            if parts.next().is_some() || hour > 23 || minute > 59 || second > 59 {
                return None;
            }
            hour * 3_600 + minute * 60 + second
        }
    };
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(days * DAY + seconds_of_day * SECOND)
}

/// Exactly `len` ASCII digits, as a number.
fn digits<T: std::str::FromStr>(text: &str, len: usize) -> Option<T> {
    (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30T00:00:00Z.
    const NOV_30: u64 = 1_795_996_800_000;

    #[test]
    fn civil_days_round_trip_across_leap_years_and_centuries() {
        for days in [-1, 0, 59, 365, 10_956, 11_016, 20_000, 47_541, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn formats_a_time_in_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00");
        assert_eq!(
            format_utc(NOV_30 + 10 * HOUR + 5_999),
            "2026-11-30 10:00:05"
        );
    }

    #[test]
    fn formats_durations_at_a_readable_precision() {
        assert_eq!(format_duration(0), "0 ms");
        assert_eq!(format_duration(850), "850 ms");
        assert_eq!(format_duration(12_345), "12.3 s");
        assert_eq!(format_duration(4 * MINUTE + 5 * SECOND), "4m 05s");
        assert_eq!(format_duration(2 * HOUR + 3 * MINUTE), "2h 03m");
        assert_eq!(format_duration(3 * DAY + 4 * HOUR), "3d 04h");
    }

    #[test]
    fn parses_an_iso_date_as_midnight_utc() {
        assert_eq!(parse_instant("2026-11-30", 0), Some(NOV_30));
    }

    #[test]
    fn parses_an_iso_date_and_time_in_its_usual_spellings() {
        let ten = NOV_30 + 10 * HOUR;
        assert_eq!(parse_instant("2026-11-30T10:00", 0), Some(ten));
        assert_eq!(parse_instant("2026-11-30 10:00", 0), Some(ten));
        assert_eq!(parse_instant("2026-11-30T10:00:07Z", 0), Some(ten + 7_000));
        assert_eq!(parse_instant(" 2026-11-30t10:00z ", 0), Some(ten));
    }

    #[test]
    fn parses_a_time_ago_against_now() {
        let now = NOV_30;
        assert_eq!(parse_instant("30m", now), Some(now - 30 * MINUTE));
        assert_eq!(parse_instant("1h", now), Some(now - HOUR));
        assert_eq!(parse_instant("2d", now), Some(now - 2 * DAY));
        assert_eq!(parse_instant("1w", now), Some(now - 7 * DAY));
        assert_eq!(parse_instant("90s", now), Some(now - 90 * SECOND));
        assert_eq!(parse_instant("100000w", 5), Some(0), "clamped at the epoch");
    }

    #[test]
    fn refuses_what_is_not_a_date_or_a_time_ago() {
        for text in [
            "",
            "yesterday",
            "h",
            "-1h",
            "1.5h",
            "1 h",
            "1y",
            "2026-13-01",
            "2026-02-29",
            "2026-11-31",
            "26-11-30",
            "2026-11-30T25:00",
            "2026-11-30T10:60",
            "2026-11-30T10",
            "2026/11/30",
            "1969-12-31",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_instant(text, NOV_30), None, "{text:?}");
        }
    }

    #[test]
    fn accepts_the_leap_day_of_a_leap_year() {
        assert!(parse_instant("2028-02-29", 0).is_some());
    }
}
