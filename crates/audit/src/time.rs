//! Audit event times: parsing RFC 3339 and writing one normalized form.
//!
//! The API server writes `stageTimestamp` as RFC 3339 in UTC with six fraction digits
//! (`2025-06-01T00:00:00.517356Z`), but events that passed through other tools may carry
//! offsets, fewer or more digits, or a space for the `T`. The state file compares times as
//! text, which is only time order when every time has the same shape; [`normalize`] gives
//! them that shape: UTC, `Z`, exactly six fraction digits, four-digit year.
//!
//! Written here rather than taken from a date crate because the format is narrow, and the
//! parser must never panic on hostile input (it runs on every event of untrusted logs).

/// Nanoseconds in one second.
const NANOS_PER_SEC: i128 = 1_000_000_000;
/// Seconds in one day.
const SECS_PER_DAY: i128 = 86_400;

/// Parses an RFC 3339 date-time into nanoseconds since the Unix epoch.
///
/// Accepts `YYYY-MM-DDTHH:MM:SS[.F](Z|±HH:MM)` with 1 to 9 fraction digits; the separator
/// may also be `t` or a space, and the zone `z`. Everything else is refused with `None`:
/// other shapes, a month, day, hour, minute or second out of range (including February 29
/// of a common year and the leap second `:60`, which Go's parser refuses too), more than
/// nine fraction digits, trailing text. Never panics, whatever the input.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    // Bytes, not chars: a non-ASCII byte simply fails the digit or separator checks, and
    // no index can fall inside a multi-byte character.
    let year = digits(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut at = 19;
    let mut frac: i128 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            if at - start == 9 {
                return None; // sub-nanosecond precision cannot be represented
            }
            frac = frac * 10 + i128::from(b[at] - b'0');
            at += 1;
        }
        let n = at - start;
        if n == 0 {
            return None;
        }
        frac *= 10i128.pow(9 - n as u32);
    }

    let offset_secs: i128 = match b.get(at) {
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, at + 1, 2)?;
            expect(b, at + 3, b':')?;
            let om = digits(b, at + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            at += 6;
            let secs = i128::from(oh * 3600 + om * 60);
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    if at != b.len() {
        return None;
    }

    let days = days_from_civil(i128::from(year), month, day);
    let secs = days * SECS_PER_DAY + i128::from(hour * 3600 + minute * 60 + second);
    // A local time at +02:00 is two hours ahead of UTC: subtract the offset.
    Some((secs - offset_secs) * NANOS_PER_SEC + frac)
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 in UTC with exactly six fraction
/// digits: `2025-06-01T00:00:00.517356Z`. Sub-microsecond digits are cut (rounding toward
/// the past, also before 1970), so that a formatted time is never later than the instant.
///
/// For years 0000 to 9999 the result parses back with [`parse_rfc3339`], and text order is
/// time order. Instants outside those years still format (the year with a sign or more
/// digits) but are not RFC 3339.
pub fn format_utc_micros(nanos: i128) -> String {
    let micros = nanos.div_euclid(1_000);
    let secs = micros.div_euclid(1_000_000);
    let micro = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+05}")
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micro:06}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// `s` parsed with [`parse_rfc3339`] and formatted with [`format_utc_micros`]: the form the
/// state file stores and compares as text. `None` when `s` is not an RFC 3339 date-time.
pub fn normalize(s: &str) -> Option<String> {
    parse_rfc3339(s).map(format_utc_micros)
}

/// Parses a point in time given either as RFC 3339 or as a duration back from `now_nanos`:
/// a whole number followed by `s` (seconds), `m` (minutes), `h` (hours), `d` (days) or `w`
/// (weeks), e.g. `90s`, `30m`, `2h`, `7d`, `1w`. Surrounding whitespace is ignored. `None`
/// for anything else, including a duration too large to subtract.
pub fn parse_relative_or_absolute(s: &str, now_nanos: i128) -> Option<i128> {
    let s = s.trim();
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    let unit = *s.as_bytes().last()?;
    let secs_per_unit: i128 = match unit {
        b's' => 1,
        b'm' => 60,
        b'h' => 3600,
        b'd' => SECS_PER_DAY,
        b'w' => 7 * SECS_PER_DAY,
        _ => return None,
    };
    let num = &s[..s.len() - 1]; // the unit is ASCII, so this is a char boundary
    if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
        return None; // also refuses the signs and spaces that `parse` would accept
    }
    let n: i128 = num.parse().ok()?;
    let back = n.checked_mul(secs_per_unit)?.checked_mul(NANOS_PER_SEC)?;
    now_nanos.checked_sub(back)
}

/// The current time in nanoseconds since the Unix epoch (negative if the clock is set
/// before 1970), for [`parse_relative_or_absolute`].
pub fn now_nanos() -> i128 {
    use std::time::{SystemTime, UNIX_EPOCH};
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The `n` ASCII digits at `b[at..at + n]` as a number; `None` if any is missing or not a
/// digit.
fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let field = b.get(at..at.checked_add(n)?)?;
    field.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

/// Gregorian leap years: every fourth, except centuries not divisible by 400. Written with
/// remainders rather than `is_multiple_of`, which needs Rust 1.87 (the workspace says 1.85).
fn is_leap(year: u32) -> bool {
    match (year % 4, year % 100, year % 400) {
        (0, 0, 0) => true,
        (0, 0, _) => false,
        (0, _, _) => true,
        _ => false,
    }
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`: eras of 400 years, years starting in March so that the leap day
/// comes last).
fn days_from_civil(year: i128, month: u32, day: u32) -> i128 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let m = i128::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March is 0
    let doy = (153 * mp + 2) / 5 + i128::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day) of a day count from 1970-01-01.
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: i128 = NANOS_PER_SEC;

    #[test]
    fn epoch_and_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2025-06-01T00:00:00.517356Z"),
            Some(1_748_736_000 * S + 517_356_000)
        );
        // date -u -d 2000-02-29T12:34:56Z +%s
        assert_eq!(parse_rfc3339("2000-02-29T12:34:56Z"), Some(951_827_696 * S));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59.5Z"), Some(-S / 2));
        assert_eq!(
            parse_rfc3339("0000-01-01T00:00:00Z"),
            Some(-62_167_219_200 * S)
        );
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59.999999999Z"),
            Some(253_402_300_800 * S - 1)
        );
    }

    #[test]
    fn fractions_of_every_length() {
        let base = parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        for (frac, nanos) in [
            (".1", 100_000_000),
            (".12", 120_000_000),
            (".123456", 123_456_000),
            (".000000001", 1),
            (".999999999", 999_999_999),
        ] {
            let s = format!("2024-05-01T12:00:00{frac}Z");
            assert_eq!(parse_rfc3339(&s), Some(base + nanos), "{s}");
        }
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.1234567890Z"), None);
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.Z"), None);
    }

    #[test]
    fn offsets_and_separators() {
        let utc = parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        for s in [
            "2024-05-01T14:00:00+02:00",
            "2024-05-01T06:30:00-05:30",
            "2024-05-01T12:00:00+00:00",
            "2024-05-01T12:00:00-00:00",
            "2024-05-01t12:00:00z",
            "2024-05-01 12:00:00Z",
            // Crossing midnight and a month boundary through the offset.
            "2024-05-02T01:00:00+13:00",
            "2024-04-30T23:00:00-13:00",
        ] {
            assert_eq!(parse_rfc3339(s), Some(utc), "{s}");
        }
        assert_eq!(
            normalize("2024-01-01T01:00:00.5+02:00").as_deref(),
            Some("2023-12-31T23:00:00.500000Z")
        );
    }

    #[test]
    fn leap_years_and_day_boundaries() {
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339("2000-02-29T00:00:00Z").is_some());
        assert!(parse_rfc3339("2023-02-29T00:00:00Z").is_none());
        assert!(parse_rfc3339("1900-02-29T00:00:00Z").is_none());
        assert!(parse_rfc3339("2024-04-31T00:00:00Z").is_none());
        assert!(parse_rfc3339("2024-12-31T23:59:59Z").is_some());
        let a = parse_rfc3339("2024-02-28T23:59:59.999999Z").unwrap();
        let b = parse_rfc3339("2024-02-29T00:00:00Z").unwrap();
        let c = parse_rfc3339("2024-03-01T00:00:00Z").unwrap();
        assert_eq!(b - a, 1_000);
        assert_eq!(c - b, SECS_PER_DAY * S);
        assert_eq!(format_utc_micros(c - 1), "2024-02-29T23:59:59.999999Z");
        assert_eq!(format_utc_micros(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_utc_micros(parse_rfc3339("2023-12-31T23:59:59.9999999Z").unwrap()),
            "2023-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn malformed_is_refused() {
        for s in [
            "",
            "2024",
            "2024-05-01",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00Z",
            "2024-5-01T12:00:00Z",
            "2024-13-01T12:00:00Z",
            "2024-00-01T12:00:00Z",
            "2024-05-00T12:00:00Z",
            "2024-05-32T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:60:00Z",
            "2024-05-01T12:00:60Z",
            "2024-05-01X12:00:00Z",
            "2024-05-01T12:00:00+2:00",
            "2024-05-01T12:00:00+24:00",
            "2024-05-01T12:00:00+02:60",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00ZZ",
            "2024-05-01T12:00:00Z ",
            " 2024-05-01T12:00:00Z",
            "+024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.-1Z",
            "２０２４-05-01T12:00:00Z",
            "2024-05-01T12:00:00.é",
            "2024-05-01T12:00:00é",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s:?}");
            assert_eq!(normalize(s), None, "{s:?}");
        }
    }

    #[test]
    fn far_instants_do_not_panic() {
        for n in [i128::MIN, i128::MAX, i128::MIN / 2, i128::MAX / 3] {
            let s = format_utc_micros(n);
            assert!(s.ends_with('Z'), "{s}");
        }
        assert_eq!(
            format_utc_micros(parse_rfc3339("0000-01-01T00:00:00Z").unwrap() - 1),
            "-0001-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn relative_and_absolute() {
        let now = parse_rfc3339("2024-05-08T12:00:00Z").unwrap();
        let at = |s: &str| parse_relative_or_absolute(s, now).map(format_utc_micros);
        assert_eq!(at("90s").as_deref(), Some("2024-05-08T11:58:30.000000Z"));
        assert_eq!(at("30m").as_deref(), Some("2024-05-08T11:30:00.000000Z"));
        assert_eq!(at("2h").as_deref(), Some("2024-05-08T10:00:00.000000Z"));
        assert_eq!(at("7d").as_deref(), Some("2024-05-01T12:00:00.000000Z"));
        assert_eq!(at("1w").as_deref(), Some("2024-05-01T12:00:00.000000Z"));
        assert_eq!(at("0s").as_deref(), Some("2024-05-08T12:00:00.000000Z"));
        assert_eq!(at(" 2h ").as_deref(), Some("2024-05-08T10:00:00.000000Z"));
        assert_eq!(
            at("2024-01-01T00:00:00+01:00").as_deref(),
            Some("2023-12-31T23:00:00.000000Z")
        );
        for bad in [
            "",
            "h",
            "2",
            "2x",
            "-2h",
            "+2h",
            "2 h",
            "1.5h",
            "2H",
            "éh",
            "2hh",
            "yesterday",
        ] {
            assert_eq!(parse_relative_or_absolute(bad, now), None, "{bad:?}");
        }
        let huge = format!("{}w", "9".repeat(60));
        assert_eq!(parse_relative_or_absolute(&huge, now), None);
        assert_eq!(parse_relative_or_absolute("1s", i128::MIN), None);
    }

    #[test]
    fn now_is_after_2024() {
        assert!(now_nanos() > parse_rfc3339("2024-01-01T00:00:00Z").unwrap());
    }

    fn min_nanos() -> i128 {
        parse_rfc3339("0000-01-01T00:00:00Z").unwrap()
    }

    fn max_nanos() -> i128 {
        parse_rfc3339("9999-12-31T23:59:59.999999999Z").unwrap()
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(n in min_nanos()..=max_nanos()) {
            let s = format_utc_micros(n);
            let back = parse_rfc3339(&s);
            prop_assert_eq!(back, Some(n.div_euclid(1_000) * 1_000), "{}", s);
            prop_assert_eq!(normalize(&s), Some(s.clone()));
        }

        #[test]
        fn text_order_is_time_order(a in min_nanos()..=max_nanos(), b in min_nanos()..=max_nanos()) {
            let (sa, sb) = (format_utc_micros(a), format_utc_micros(b));
            prop_assert_eq!(sa.len(), 27);
            prop_assert_eq!(sa.cmp(&sb), a.div_euclid(1_000).cmp(&b.div_euclid(1_000)));
        }

        #[test]
        fn nearby_instants_order_as_text(a in min_nanos()..max_nanos() - 10_000_000, d in 0i128..10_000_000) {
            // Random pairs are almost always years apart; this exercises equal prefixes.
            let (sa, sb) = (format_utc_micros(a), format_utc_micros(a + d));
            prop_assert_eq!(sa.cmp(&sb), a.div_euclid(1_000).cmp(&(a + d).div_euclid(1_000)));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = parse_rfc3339(&s);
            let _ = parse_relative_or_absolute(&s, 0);
        }

        #[test]
        fn parse_never_panics_on_near_misses(
            s in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,10})?([Zz]|[+-][0-9]{2}:[0-9]{2}|é)?"
        ) {
            if let Some(n) = parse_rfc3339(&s) {
                // Whatever parses normalizes to something that parses to the same microsecond.
                let norm = format_utc_micros(n);
                prop_assert_eq!(parse_rfc3339(&norm), Some(n.div_euclid(1_000) * 1_000));
            }
        }
    }
}
