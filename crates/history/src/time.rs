//! Commit times as RFC 3339, and `--since` values.
//!
//! Written out here rather than pulled from a date library: Git times are whole seconds with
//! a fixed offset, which needs only the civil-calendar conversion below.

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A Git time as RFC 3339 in its own offset (`2026-03-01T10:00:00+01:00`; `Z` for UTC).
pub fn format_time(t: gix::date::Time) -> String {
    let local = t.seconds + i64::from(t.offset);
    let (y, mo, d) = civil(local.div_euclid(86_400));
    let s = local.rem_euclid(86_400);
    let mut out = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s % 3600 / 60,
        s % 60
    );
    if t.offset == 0 {
        out.push('Z');
    } else {
        let sign = if t.offset < 0 { '-' } else { '+' };
        let o = t.offset.unsigned_abs();
        out.push_str(&format!("{sign}{:02}:{:02}", o / 3600, o % 3600 / 60));
    }
    out
}

/// `YYYY-MM-DD` (UTC midnight), `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, or seconds since 1970.
pub fn parse(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let num = |a: &str| -> Option<i64> {
        (!a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()))
            .then(|| a.parse().ok())
            .flatten()
    };
    let (date, rest) = match s.split_once(['T', 't', ' ']) {
        Some((d, r)) => (d, Some(r)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m as u32, d as u32) * 86_400;
    if let Some(rest) = rest {
        let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else {
            let i = rest.rfind(['+', '-'])?;
            let (c, o) = rest.split_at(i);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':')?;
            (c, sign * (num(oh)? * 3600 + num(om)? * 60))
        };
        let clock = clock.split('.').next()?;
        let mut c = clock.split(':');
        let (h, mi, se) = (num(c.next()?)?, num(c.next()?)?, num(c.next()?)?);
        if c.next().is_some() || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        secs += h * 3600 + mi * 60 + se - offset;
    }
    Some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let t = gix::date::Time {
            seconds: 1_767_261_600,
            offset: 3600,
        };
        assert_eq!(format_time(t), "2026-01-01T11:00:00+01:00");
        let utc = gix::date::Time {
            seconds: 0,
            offset: 0,
        };
        assert_eq!(format_time(utc), "1970-01-01T00:00:00Z");
        let neg = gix::date::Time {
            seconds: 951_782_400,
            offset: -5 * 3600 - 1800,
        };
        assert_eq!(format_time(neg), "2000-02-28T18:30:00-05:30");
        assert_eq!(parse("2026-01-01"), Some(1_767_225_600));
        assert_eq!(parse("2026-01-01T11:00:00+01:00"), Some(1_767_261_600));
        assert_eq!(parse("2026-01-01T10:00:00.5Z"), Some(1_767_261_600));
        assert_eq!(parse("1767261600"), Some(1_767_261_600));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(parse("2026-13-01"), None);
        assert_eq!(parse(""), None);
    }
}
