//! PostgreSQL's `interval` from what apps store in SQLite: Django's integer
//! microseconds, SQLAlchemy's date-time since 1970-01-01, ISO 8601
//! durations, PostgreSQL's own output and Python's `timedelta` text.

use bytes::{BufMut, BytesMut};

use super::MICROS_PER_DAY;
use super::text::parse_timestamp;

/// An interval as PostgreSQL keeps it: the three fields are independent
/// (`1 mon` is not `30 days`, `1 day` is not `24:00:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl Interval {
    /// A duration in microseconds, split the way Python's `timedelta` is
    /// (whole days rounded down, the rest within 0..24 h): the interval
    /// Django and SQLAlchemy write for that duration on PostgreSQL.
    pub fn from_micros(m: i64) -> Option<Interval> {
        Some(Interval {
            months: 0,
            days: i32::try_from(m.div_euclid(MICROS_PER_DAY)).ok()?,
            micros: m.rem_euclid(MICROS_PER_DAY),
        })
    }

    /// The binary form: microseconds, days, months.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_i64(self.micros);
        buf.put_i32(self.days);
        buf.put_i32(self.months);
    }

    /// Parses the text forms apps store (see the module doc); `None` for
    /// anything else.
    pub fn parse(s: &str) -> Option<Interval> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if let Some(t) = parse_timestamp(s) {
            return Interval::from_micros(t);
        }
        let iso = s.strip_prefix('-').unwrap_or(s);
        if iso.starts_with(['P', 'p']) {
            let i = parse_iso(&iso[1..])?;
            return Some(if iso.len() < s.len() { i.negate()? } else { i });
        }
        parse_words(s)
    }

    fn negate(self) -> Option<Interval> {
        Some(Interval {
            months: self.months.checked_neg()?,
            days: self.days.checked_neg()?,
            micros: self.micros.checked_neg()?,
        })
    }
}

/// A signed decimal number in microseconds of `unit`, e.g. `1.5` hours.
fn scaled(num: &str, unit_micros: i64) -> Option<i64> {
    let (neg, body) = match num.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut v = whole.checked_mul(unit_micros)?;
    if !frac.is_empty() {
        // Fractions finer than a microsecond round, as PostgreSQL does.
        let f: f64 = format!("0.{frac}").parse().ok()?;
        v = v.checked_add((f * unit_micros as f64).round() as i64)?;
    }
    Some(if neg { -v } else { v })
}

fn whole(num: &str) -> Option<i32> {
    num.strip_prefix('+').unwrap_or(num).parse().ok()
}

const HOUR: i64 = 3_600_000_000;
const MINUTE: i64 = 60_000_000;
const SECOND: i64 = 1_000_000;

/// `1Y2M3W4DT5H6M7.5S` (after the `P`), each number optionally signed.
fn parse_iso(s: &str) -> Option<Interval> {
    let mut out = Interval {
        months: 0,
        days: 0,
        micros: 0,
    };
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in s.chars() {
        match c.to_ascii_uppercase() {
            'T' if num.is_empty() && !in_time => in_time = true,
            '0'..='9' | '.' | '-' | '+' => num.push(c),
            u => {
                if num.is_empty() {
                    return None;
                }
                match (u, in_time) {
                    ('Y', false) => {
                        out.months = out.months.checked_add(whole(&num)?.checked_mul(12)?)?
                    }
                    ('M', false) => out.months = out.months.checked_add(whole(&num)?)?,
                    ('W', false) => {
                        out.days = out.days.checked_add(whole(&num)?.checked_mul(7)?)?
                    }
                    ('D', false) => out.days = out.days.checked_add(whole(&num)?)?,
                    ('H', true) => out.micros = out.micros.checked_add(scaled(&num, HOUR)?)?,
                    ('M', true) => out.micros = out.micros.checked_add(scaled(&num, MINUTE)?)?,
                    ('S', true) => out.micros = out.micros.checked_add(scaled(&num, SECOND)?)?,
                    _ => return None,
                }
                num.clear();
                any = true;
            }
        }
    }
    (any && num.is_empty()).then_some(out)
}

/// `[-]HH:MM[:SS[.f]]` in microseconds.
fn parse_clock(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (*h, *m, "0"),
        [h, m, s] => (*h, *m, *s),
        _ => return None,
    };
    if h.is_empty() || m.len() != 2 || sec.starts_with(['-', '+']) {
        return None;
    }
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok().filter(|m| *m < 60)?;
    let s = scaled(sec, SECOND).filter(|s| *s < 60 * SECOND)?;
    let v = h.checked_mul(HOUR)?.checked_add(m * MINUTE + s)?;
    Some(if neg { -v } else { v })
}

/// PostgreSQL's output (`1 year 2 mons -3 days 04:05:06.5`) and Python's
/// `timedelta` text (`-1 day, 23:59:59.000001`): numbers with units, and at
/// most one clock time.
fn parse_words(s: &str) -> Option<Interval> {
    let mut out = Interval {
        months: 0,
        days: 0,
        micros: 0,
    };
    let cleaned = s.replace(',', " ");
    let mut words = cleaned.split_whitespace().peekable();
    let mut clock = false;
    let mut any = false;
    while let Some(w) = words.next() {
        if w.contains(':') {
            if clock {
                return None;
            }
            clock = true;
            out.micros = out.micros.checked_add(parse_clock(w)?)?;
            any = true;
            continue;
        }
        let unit = words.next()?.to_ascii_lowercase();
        match unit.trim_end_matches('s') {
            "year" | "yr" => out.months = out.months.checked_add(whole(w)?.checked_mul(12)?)?,
            "mon" | "month" => out.months = out.months.checked_add(whole(w)?)?,
            "week" => out.days = out.days.checked_add(whole(w)?.checked_mul(7)?)?,
            "day" => out.days = out.days.checked_add(whole(w)?)?,
            "hour" | "hr" => out.micros = out.micros.checked_add(scaled(w, HOUR)?)?,
            "min" | "minute" => out.micros = out.micros.checked_add(scaled(w, MINUTE)?)?,
            "sec" | "second" => out.micros = out.micros.checked_add(scaled(w, SECOND)?)?,
            _ => return None,
        }
        any = true;
    }
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(months: i32, days: i32, micros: i64) -> Option<Interval> {
        Some(Interval {
            months,
            days,
            micros,
        })
    }

    #[test]
    fn durations_split_like_timedelta() {
        assert_eq!(
            Interval::from_micros(90_000_000_000),
            iv(0, 1, 3_600_000_000)
        );
        // timedelta(microseconds=-1) is days=-1, 23:59:59.999999.
        assert_eq!(Interval::from_micros(-1), iv(0, -1, MICROS_PER_DAY - 1));
    }

    #[test]
    fn text_forms() {
        let h = HOUR;
        // ISO 8601, as Django's duration_iso_string writes it too.
        assert_eq!(
            Interval::parse("P1Y2M3DT4H5M6.5S"),
            iv(14, 3, 4 * h + 5 * MINUTE + 6_500_000)
        );
        assert_eq!(Interval::parse("-P1DT00H00M01S"), iv(0, -1, -SECOND));
        assert_eq!(Interval::parse("P2W"), iv(0, 14, 0));
        assert_eq!(Interval::parse("PT0S"), iv(0, 0, 0));
        assert_eq!(Interval::parse("P"), None);
        assert_eq!(Interval::parse("P1H"), None, "hours need the T");
        // PostgreSQL's output.
        assert_eq!(
            Interval::parse("1 year 2 mons -3 days 04:05:06.5"),
            iv(14, -3, 4 * h + 5 * MINUTE + 6_500_000)
        );
        assert_eq!(Interval::parse("-00:00:01"), iv(0, 0, -SECOND));
        assert_eq!(Interval::parse("1 day -02:00:00"), iv(0, 1, -2 * h));
        assert_eq!(Interval::parse("26:00:00"), iv(0, 0, 26 * h));
        assert_eq!(Interval::parse("1.5 hours"), iv(0, 0, 3 * h / 2));
        // Python's timedelta.
        assert_eq!(
            Interval::parse("-1 day, 23:59:59.999999"),
            iv(0, -1, MICROS_PER_DAY - 1)
        );
        assert_eq!(Interval::parse("2 days, 0:00:00"), iv(0, 2, 0));
        // SQLAlchemy: a date-time since 1970-01-01.
        assert_eq!(
            Interval::parse("1970-01-02 03:00:00.000000"),
            iv(0, 1, 3 * h)
        );
        assert_eq!(
            Interval::parse("1969-12-31 23:59:59.000000"),
            iv(0, -1, MICROS_PER_DAY - SECOND)
        );
        for bad in [
            "",
            "soon",
            "1 fortnight",
            "1:2:3",
            "10:61",
            "1.5 days",
            "1 day 1:00 2:00",
        ] {
            assert_eq!(Interval::parse(bad), None, "{bad}");
        }
    }
}
