//! Dates, times and UUIDs as text: ISO-8601 parsed into microseconds and
//! formatted back (proleptic Gregorian calendar, UTC), UUIDs parsed.

use super::MICROS_PER_DAY;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
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
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn num(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `HH:MM[:SS[.ffffff]]` into microseconds since midnight.
pub fn parse_time(s: &str) -> Option<i64> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (s, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (num(h)?, num(m)?, 0),
        [h, m, s] => (num(h)?, num(m)?, num(s)?),
        _ => return None,
    };
    // 24:00:00 is a valid PostgreSQL time (end of day).
    let end_of_day = h == 24 && m == 0 && sec == 0 && frac.is_none();
    if parts.iter().any(|p| p.len() != 2) || (h > 23 && !end_of_day) || m > 59 || sec > 60 {
        return None;
    }
    let mut micros = ((h * 60 + m) * 60 + sec) * 1_000_000;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut digits = f.to_string();
        while digits.len() < 9 {
            digits.push('0');
        }
        let nanos: i64 = digits.parse().ok()?;
        if nanos % 1000 != 0 {
            return None; // below a microsecond: PostgreSQL would round it
        }
        micros += nanos / 1000;
    }
    Some(micros)
}

/// Parses an ISO-8601 date or date-time (`T` or space between, optional
/// fraction, optional `Z` or `±hh[:mm]`) into microseconds since 1970 UTC.
/// Values without an offset are taken as UTC.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    // `None` also when byte 10 is inside a character.
    let (date, rest) = s.split_at_checked(10)?;
    let b = date.as_bytes();
    // Bytes 4 and 7 being ASCII makes 4, 5, 7 and 8 character boundaries.
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(&date[..4])?, num(&date[5..7])?, num(&date[8..10])?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let mut micros = days * MICROS_PER_DAY;
    if rest.is_empty() {
        return Some(micros);
    }
    let rest = rest.strip_prefix(['T', ' ', 't'])?;
    // Offset: Z, or +hh:mm / -hh:mm / +hhmm / +hh after the time.
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t.trim_end(), 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let digits: String = off[1..].chars().filter(|c| *c != ':').collect();
        let (oh, om) = match digits.len() {
            2 => (num(&digits)?, 0),
            4 => (num(digits.get(..2)?)?, num(digits.get(2..)?)?),
            _ => return None,
        };
        (t.trim_end(), sign * (oh * 3600 + om * 60))
    } else {
        (rest, 0)
    };
    micros += parse_time(time)?;
    micros -= offset_secs * 1_000_000;
    Some(micros)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Formats microseconds since 1970 UTC as `YYYY-MM-DD HH:MM:SS[.ffffff]`
/// (the fraction only when non-zero, trailing zeros kept to 6 digits, as
/// Django and Rails write them).
pub fn format_timestamp(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {}",
        format_time(micros.rem_euclid(MICROS_PER_DAY))
    )
}

/// Formats microseconds since midnight as `HH:MM:SS[.ffffff]`.
pub fn format_time(t: i64) -> String {
    let (secs, us) = (t / 1_000_000, t % 1_000_000);
    let base = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if us == 0 {
        base
    } else {
        format!("{base}.{us:06}")
    }
}

/// Formats days since 1970 as `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses 32 hex digits, optionally with dashes and braces, into 16 bytes.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let s = s.trim().trim_start_matches('{').trim_end_matches('}');
    let hexs: String = match s.len() {
        32 => s.to_string(),
        36 => {
            let b = s.as_bytes();
            if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
                return None;
            }
            s.replace('-', "")
        }
        _ => return None,
    };
    let mut out = [0u8; 16];
    hex::decode_to_slice(&hexs, &mut out).ok()?;
    Some(out)
}

/// True when a text looks like a UUID (for column statistics).
pub fn looks_like_uuid(s: &[u8]) -> bool {
    std::str::from_utf8(s).ok().and_then(parse_uuid).is_some()
}

/// True when a text ends with a time-zone designator.
pub fn has_tz(s: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(s) else {
        return false;
    };
    let s = s.trim();
    if s.len() <= 10 {
        return false;
    }
    if s.ends_with(['Z', 'z']) {
        return true;
    }
    s.get(10..)
        .is_some_and(|time| time.rfind(['+', '-']).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for d in [-800_000i64, -1, 0, 1, 10_957, 19_782, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn text_cut_inside_a_character_is_not_a_timestamp() {
        // Byte 10 falls inside the two-byte character.
        assert_eq!(parse_timestamp("2024-01-0\u{e9}"), None);
        assert_eq!(parse_timestamp("2024-01-01 10:00+1\u{e9}1"), None);
        assert!(!has_tz("2024-01-0\u{e9}+01".as_bytes()));
        assert!(has_tz("2024-01-01 10:00+01".as_bytes()));
    }
}
