//! Values between SQLite and PostgreSQL's binary COPY format (pure).
//!
//! [`encode_field`] turns one SQLite value into one field of a binary COPY
//! tuple for a given [`PgType`], or refuses it with a [`BadValue`] that says
//! why; nothing is coerced silently. [`canonical`] gives the bytes a field is
//! hashed as, the same whether the field was just encoded or read back from
//! PostgreSQL (jsonb and numeric are normalised by the server, so they are
//! hashed by value). [`decode_to_sqlite`] is the reverse direction, used by
//! the import.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use rusqlite::types::{Value, ValueRef};

use super::types::{EpochUnit, PgType};

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Why a value cannot be written to its PostgreSQL column as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadValue {
    /// What is wrong, e.g. "text in an integer column".
    pub reason: String,
    /// The value, shown as SQL-ish text (truncated).
    pub value: String,
}

fn bad(reason: impl Into<String>, v: ValueRef<'_>) -> BadValue {
    BadValue {
        reason: reason.into(),
        value: show(v),
    }
}

/// A value shown for an error message or a report: text quoted, blobs in
/// hex, invalid UTF-8 escaped, long values cut at 200 bytes.
pub fn show(v: ValueRef<'_>) -> String {
    const MAX: usize = 200;
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(r) => format!("{r:?}"),
        ValueRef::Text(t) => {
            let cut = &t[..t.len().min(MAX)];
            let s: String = cut.escape_ascii().to_string();
            let more = if t.len() > MAX { "..." } else { "" };
            format!("'{s}'{more}")
        }
        ValueRef::Blob(b) => {
            let more = if b.len() > MAX { "..." } else { "" };
            format!("X'{}'{more}", hex::encode(&b[..b.len().min(MAX)]))
        }
    }
}

/// Settings of one column's conversion.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    pub pg_type: PgType,
    pub epoch: EpochUnit,
}

/// Appends one binary COPY field (length + bytes, or -1 for NULL).
pub fn encode_field(
    buf: &mut BytesMut,
    conv: &Conversion,
    v: ValueRef<'_>,
) -> Result<(), BadValue> {
    if let ValueRef::Null = v {
        buf.put_i32(-1);
        return Ok(());
    }
    let len_at = buf.len();
    buf.put_i32(0);
    encode_value(buf, conv, v)?;
    let len = (buf.len() - len_at - 4) as i32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// The text `t` of the value `v` (named in the error).
fn text_of<'a>(t: &'a [u8], v: ValueRef<'_>) -> Result<&'a str, BadValue> {
    let s = std::str::from_utf8(t).map_err(|e| {
        bad(
            format!(
                "invalid UTF-8 at byte {} (PostgreSQL text must be UTF-8)",
                e.valid_up_to()
            ),
            v,
        )
    })?;
    if s.contains('\0') {
        return Err(bad("NUL byte in text (PostgreSQL text cannot hold it)", v));
    }
    Ok(s)
}

fn integral(r: f64) -> Option<i64> {
    if r.fract() == 0.0 && (-9.223_372_036_854_775e18..9.223_372_036_854_775e18).contains(&r) {
        Some(r as i64)
    } else {
        None
    }
}

fn encode_value(buf: &mut BytesMut, conv: &Conversion, v: ValueRef<'_>) -> Result<(), BadValue> {
    use PgType as T;
    let ty = &conv.pg_type;
    match ty {
        T::Boolean => {
            let b = match v {
                ValueRef::Integer(0) => false,
                ValueRef::Integer(1) => true,
                ValueRef::Real(0.0) => false,
                ValueRef::Real(1.0) => true,
                ValueRef::Text(t) => match text_of(t, v)?.to_ascii_lowercase().as_str() {
                    "t" | "true" | "1" | "y" | "yes" => true,
                    "f" | "false" | "0" | "n" | "no" => false,
                    _ => return Err(bad("text that is not a boolean in a boolean column", v)),
                },
                _ => return Err(bad("not 0 or 1 in a boolean column", v)),
            };
            buf.put_u8(b as u8);
        }
        T::SmallInt | T::Integer | T::BigInt => {
            let i = match v {
                ValueRef::Integer(i) => i,
                ValueRef::Real(r) => integral(r)
                    .ok_or_else(|| bad(format!("fractional number in a {ty} column"), v))?,
                ValueRef::Text(_) => return Err(bad(format!("text in a {ty} column"), v)),
                _ => return Err(bad(format!("blob in a {ty} column"), v)),
            };
            match ty {
                T::SmallInt => buf.put_i16(
                    i16::try_from(i).map_err(|_| bad("integer out of smallint range", v))?,
                ),
                T::Integer => buf
                    .put_i32(i32::try_from(i).map_err(|_| bad("integer out of integer range", v))?),
                _ => buf.put_i64(i),
            }
        }
        T::Real | T::Double => {
            let f = match v {
                ValueRef::Integer(i) => {
                    let f = i as f64;
                    if f as i128 != i as i128 {
                        return Err(bad(
                            format!("integer too large for {ty} without losing digits"),
                            v,
                        ));
                    }
                    f
                }
                ValueRef::Real(r) => r,
                ValueRef::Text(_) => return Err(bad(format!("text in a {ty} column"), v)),
                _ => return Err(bad(format!("blob in a {ty} column"), v)),
            };
            if matches!(ty, T::Real) {
                let g = f as f32;
                if g as f64 != f && f.is_finite() {
                    return Err(bad("number not exactly representable as real (float4)", v));
                }
                buf.put_f32(g);
            } else {
                buf.put_f64(f);
            }
        }
        T::Numeric(ps) => {
            let text: Cow<str> = match v {
                ValueRef::Integer(i) => i.to_string().into(),
                ValueRef::Real(r) if r.is_nan() => "NaN".into(),
                ValueRef::Real(r) if r.is_infinite() => {
                    if r > 0.0 { "Infinity" } else { "-Infinity" }.into()
                }
                ValueRef::Real(r) => format!("{r}").into(),
                ValueRef::Text(t) => text_of(t, v)?.trim().into(),
                _ => return Err(bad("blob in a numeric column", v)),
            };
            let d = Decimal::parse(&text)
                .ok_or_else(|| bad("text that is not a number in a numeric column", v))?;
            if let (Some((p, s)), Decimal::Finite { int, frac, .. }) = (ps, &d) {
                let frac_sig = frac.trim_end_matches('0').len() as u32;
                if frac_sig > *s {
                    return Err(bad(
                        format!("more than {s} decimal places: numeric({p},{s}) would round it"),
                        v,
                    ));
                }
                let int_digits = int.trim_start_matches('0').len() as u32;
                if int_digits > p - s {
                    return Err(bad(format!("too many digits for numeric({p},{s})"), v));
                }
            }
            d.encode(buf);
        }
        T::Text | T::Varchar(_) => {
            match v {
                ValueRef::Integer(i) => buf.put_slice(i.to_string().as_bytes()),
                ValueRef::Real(r) => buf.put_slice(format!("{r:?}").as_bytes()),
                ValueRef::Text(t) => {
                    let s = text_of(t, v)?;
                    if let T::Varchar(Some(n)) = ty
                        && s.chars().count() > *n as usize
                    {
                        return Err(bad(
                            format!("longer than varchar({n}) (use --type to widen the column)"),
                            v,
                        ));
                    }
                    buf.put_slice(s.as_bytes());
                }
                ValueRef::Blob(_) => return Err(bad(format!("blob in a {ty} column"), v)),
                // Cannot happen: `encode_field` writes NULL itself and
                // only calls this for the other values.
                ValueRef::Null => unreachable!("NULL is encoded by encode_field"),
            };
        }
        T::Bytea => match v {
            ValueRef::Blob(b) | ValueRef::Text(b) => buf.put_slice(b),
            _ => return Err(bad("number in a bytea column", v)),
        },
        T::Date if infinity(v).is_some() => {
            buf.put_i32(if infinity(v) == Some(true) {
                i32::MAX
            } else {
                i32::MIN
            });
        }
        T::Timestamp(_) | T::TimestampTz(_) if infinity(v).is_some() => {
            buf.put_i64(if infinity(v) == Some(true) {
                i64::MAX
            } else {
                i64::MIN
            });
        }
        T::Date => {
            let micros = temporal_micros(v, conv.epoch, false)?;
            if micros.rem_euclid(MICROS_PER_DAY) != 0 {
                return Err(bad("a time of day in a date column", v));
            }
            buf.put_i32((micros.div_euclid(MICROS_PER_DAY) - PG_EPOCH_DAYS) as i32);
        }
        T::Timestamp(p) | T::TimestampTz(p) => {
            let micros = temporal_micros(v, conv.epoch, true)?;
            if let Some(p) = p
                && *p < 6
                && micros.rem_euclid(10i64.pow(6 - *p)) != 0
            {
                return Err(bad(
                    format!("more fractional seconds than {ty} keeps: PostgreSQL would round it"),
                    v,
                ));
            }
            buf.put_i64(micros - PG_EPOCH_MICROS);
        }
        T::Time => {
            let s = match v {
                ValueRef::Text(t) => text_of(t, v)?,
                _ => return Err(bad("not a time of day (HH:MM[:SS[.ffffff]])", v)),
            };
            let t =
                parse_time(s).ok_or_else(|| bad("not a time of day (HH:MM[:SS[.ffffff]])", v))?;
            buf.put_i64(t);
        }
        T::Json | T::Jsonb => {
            let s: Cow<str> = match v {
                ValueRef::Text(t) => text_of(t, v)?.into(),
                ValueRef::Integer(i) => i.to_string().into(),
                ValueRef::Real(r) if r.is_finite() => format!("{r:?}").into(),
                _ => return Err(bad(format!("not JSON text in a {ty} column"), v)),
            };
            if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&s) {
                return Err(bad(format!("invalid JSON ({e})"), v));
            }
            if matches!(ty, T::Jsonb) {
                if s.contains("\\u0000") {
                    return Err(bad("JSON with \\u0000 (jsonb cannot hold it)", v));
                }
                buf.put_u8(1);
            }
            buf.put_slice(s.as_bytes());
        }
        T::Uuid => {
            let u = match v {
                ValueRef::Blob(b) if b.len() == 16 => {
                    let mut u = [0u8; 16];
                    u.copy_from_slice(b);
                    u
                }
                ValueRef::Text(t) => {
                    parse_uuid(text_of(t, v)?).ok_or_else(|| bad("text that is not a UUID", v))?
                }
                _ => return Err(bad("not a UUID (text or 16-byte blob)", v)),
            };
            buf.put_slice(&u);
        }
    }
    Ok(())
}

/// PostgreSQL's `infinity` (Some(true)) and `-infinity` (Some(false)) as text.
fn infinity(v: ValueRef<'_>) -> Option<bool> {
    match v {
        ValueRef::Text(b"infinity") => Some(true),
        ValueRef::Text(b"-infinity") => Some(false),
        _ => None,
    }
}

fn temporal_micros(v: ValueRef<'_>, unit: EpochUnit, with_time: bool) -> Result<i64, BadValue> {
    let what = if with_time { "timestamp" } else { "date" };
    match v {
        ValueRef::Integer(i) => i
            .checked_mul(unit.micros())
            .ok_or_else(|| bad("epoch value out of range", v)),
        ValueRef::Real(r) if r.is_finite() => {
            // SQLite's julianday() numbers, or fractional Unix seconds.
            let micros = if r.abs() < 1e7 {
                (r - 2_440_587.5) * MICROS_PER_DAY as f64
            } else {
                r * unit.micros() as f64
            };
            Ok(micros.round() as i64)
        }
        ValueRef::Text(t) => {
            let s = text_of(t, v)?;
            parse_timestamp(s).ok_or_else(|| {
                bad(
                    format!("text that is not an ISO-8601 {what} (YYYY-MM-DD[ HH:MM[:SS[.f]]][Z|+hh:mm])"),
                    v,
                )
            })
        }
        _ => Err(bad(format!("not a {what}"), v)),
    }
}

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

/// A decimal number as PostgreSQL's numeric holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decimal {
    NaN,
    Infinity,
    NegInfinity,
    Finite {
        negative: bool,
        /// Integer digits (no sign).
        int: String,
        /// Fraction digits, as written (trailing zeros kept: they are the scale).
        frac: String,
    },
}

impl Decimal {
    /// Parses `-12.340`, `1e3`, `.5`, `NaN`, `Infinity`.
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "nan" => return Some(Decimal::NaN),
            "infinity" | "+infinity" | "inf" => return Some(Decimal::Infinity),
            "-infinity" | "-inf" => return Some(Decimal::NegInfinity),
            _ => {}
        }
        let (negative, body) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
            None => (body, 0),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((a, b)) => (a, b),
            None => (mantissa, ""),
        };
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || exp.abs() > 1000
        {
            return None;
        }
        let mut digits = format!("{int}{frac}");
        let mut point = int.len() as i64 + exp as i64;
        if point < 0 {
            digits = "0".repeat((-point) as usize) + &digits;
            point = 0;
        }
        while (digits.len() as i64) < point {
            digits.push('0');
        }
        let (i, f) = digits.split_at(point as usize);
        let i = i.trim_start_matches('0');
        Some(Decimal::Finite {
            negative,
            int: if i.is_empty() { "0".into() } else { i.into() },
            frac: f.into(),
        })
    }

    /// The value with trailing fraction zeros and the sign of zero removed,
    /// the form both sides are hashed in.
    pub fn normalized(&self) -> String {
        match self {
            Decimal::NaN => "NaN".into(),
            Decimal::Infinity => "Infinity".into(),
            Decimal::NegInfinity => "-Infinity".into(),
            Decimal::Finite {
                negative,
                int,
                frac,
            } => {
                let f = frac.trim_end_matches('0');
                let i = int.trim_start_matches('0');
                let i = if i.is_empty() { "0" } else { i };
                let zero = i == "0" && f.is_empty();
                let sign = if *negative && !zero { "-" } else { "" };
                if f.is_empty() {
                    format!("{sign}{i}")
                } else {
                    format!("{sign}{i}.{f}")
                }
            }
        }
    }

    /// PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then
    /// base-10000 digits.
    pub fn encode(&self, buf: &mut BytesMut) {
        let (negative, int, frac) = match self {
            Decimal::NaN => return put_numeric_head(buf, 0, 0, 0xC000, 0),
            Decimal::Infinity => return put_numeric_head(buf, 0, 0, 0xD000, 0),
            Decimal::NegInfinity => return put_numeric_head(buf, 0, 0, 0xF000, 0),
            Decimal::Finite {
                negative,
                int,
                frac,
            } => (*negative, int, frac),
        };
        let dscale = frac.len() as u16;
        let int = int.trim_start_matches('0');
        let pad_left = (4 - int.len() % 4) % 4;
        let pad_right = (4 - frac.len() % 4) % 4;
        let all = format!(
            "{}{int}{frac}{}",
            "0".repeat(pad_left),
            "0".repeat(pad_right)
        );
        // Four decimal digits make at most 9999. `parse` and `decode` only
        // make digits; anything else in a hand-built value counts as 0.
        let mut groups: Vec<i16> = all
            .as_bytes()
            .chunks(4)
            .map(|c| {
                c.iter().fold(0i16, |n, d| {
                    n * 10 + (*d as char).to_digit(10).unwrap_or(0) as i16
                })
            })
            .collect();
        let mut weight = ((int.len() + pad_left) / 4) as i16 - 1;
        while groups.first() == Some(&0) {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        let sign = if negative && !groups.is_empty() {
            0x4000
        } else {
            0
        };
        put_numeric_head(buf, groups.len() as i16, weight, sign, dscale);
        for g in groups {
            buf.put_i16(g);
        }
    }

    /// Decodes PostgreSQL's binary numeric.
    pub fn decode(b: &[u8]) -> Option<Decimal> {
        if b.len() < 8 {
            return None;
        }
        let rd = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
        // The digit count and the scale are unsigned in PostgreSQL's format.
        let (n, weight, sign, dscale) = (
            rd(0) as u16 as usize,
            rd(2) as i64,
            rd(4) as u16,
            rd(6) as u16 as usize,
        );
        match sign {
            0xC000 => return Some(Decimal::NaN),
            0xD000 => return Some(Decimal::Infinity),
            0xF000 => return Some(Decimal::NegInfinity),
            _ => {}
        }
        if b.len() < 8 + 2 * n {
            return None;
        }
        let digits: Vec<i16> = (0..n).map(|k| rd(8 + 2 * k)).collect();
        // Base 10000: anything else is not a number PostgreSQL wrote.
        if digits.iter().any(|d| !(0..10_000).contains(d)) {
            return None;
        }
        let mut int = String::new();
        for k in 0..=weight.max(-1) {
            let d = digits.get(k as usize).copied().unwrap_or(0);
            int.push_str(&format!("{d:04}"));
        }
        let mut frac = String::new();
        let mut k = weight + 1;
        while (frac.len()) < dscale {
            let d = if k >= 0 {
                digits.get(k as usize).copied().unwrap_or(0)
            } else {
                0
            };
            frac.push_str(&format!("{d:04}"));
            k += 1;
        }
        frac.truncate(dscale);
        let i = int.trim_start_matches('0');
        Some(Decimal::Finite {
            negative: sign == 0x4000,
            int: if i.is_empty() { "0".into() } else { i.into() },
            frac,
        })
    }
}

fn put_numeric_head(buf: &mut BytesMut, n: i16, weight: i16, sign: u16, dscale: u16) {
    buf.put_i16(n);
    buf.put_i16(weight);
    buf.put_u16(sign);
    buf.put_u16(dscale);
}

/// The bytes a field is hashed as: its binary COPY bytes, except json/jsonb
/// (PostgreSQL reorders jsonb keys and rewrites numbers) and numeric (the
/// scale may differ) which are hashed by value.
pub fn canonical<'a>(ty: &PgType, field: &'a [u8]) -> Cow<'a, [u8]> {
    match ty {
        PgType::Json | PgType::Jsonb => {
            let text = if matches!(ty, PgType::Jsonb) && !field.is_empty() {
                &field[1..]
            } else {
                field
            };
            match serde_json::from_slice::<serde_json::Value>(text) {
                Ok(v) => {
                    let mut out = Vec::with_capacity(text.len());
                    canonical_json(&v, &mut out);
                    Cow::Owned(out)
                }
                Err(_) => Cow::Borrowed(field),
            }
        }
        PgType::Numeric(_) => match Decimal::decode(field) {
            Some(d) => Cow::Owned(d.normalized().into_bytes()),
            None => Cow::Borrowed(field),
        },
        _ => Cow::Borrowed(field),
    }
}

fn canonical_json(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value as J;
    match v {
        J::Null => out.push(b'n'),
        J::Bool(b) => out.extend_from_slice(if *b { b"t" } else { b"f" }),
        J::Number(n) => {
            out.push(b'#');
            let f = n.as_f64().unwrap_or(f64::NAN);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        J::String(s) => {
            out.push(b'"');
            out.extend_from_slice(&(s.len() as u64).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        J::Array(a) => {
            out.push(b'[');
            for x in a {
                canonical_json(x, out);
            }
            out.push(b']');
        }
        // serde_json's Map is ordered by key: the same order whatever order
        // the keys came in.
        J::Object(o) => {
            out.push(b'{');
            for (k, x) in o {
                out.extend_from_slice(&(k.len() as u64).to_be_bytes());
                out.extend_from_slice(k.as_bytes());
                canonical_json(x, out);
            }
            out.push(b'}');
        }
    }
}

/// The SQLite value for a PostgreSQL binary field (the import direction):
/// booleans 0/1, timestamps ISO-8601 text (UTC, `+00:00` for timestamptz),
/// json text, uuid text, numeric as integer when it is one, else text
/// (SQLite's NUMERIC affinity turns it into a real when that is lossless).
pub fn decode_to_sqlite(ty: &PgType, b: &[u8]) -> Option<Value> {
    use PgType as T;
    let be8 = |b: &[u8]| b.try_into().ok().map(i64::from_be_bytes);
    Some(match ty {
        T::Boolean => Value::Integer((*b.first()? != 0) as i64),
        T::SmallInt => Value::Integer(i16::from_be_bytes(b.try_into().ok()?) as i64),
        T::Integer => Value::Integer(i32::from_be_bytes(b.try_into().ok()?) as i64),
        T::BigInt => Value::Integer(be8(b)?),
        T::Real => Value::Real(f32::from_be_bytes(b.try_into().ok()?) as f64),
        T::Double => Value::Real(f64::from_be_bytes(b.try_into().ok()?)),
        T::Numeric(_) => {
            let d = Decimal::decode(b)?;
            let n = d.normalized();
            match n.parse::<i64>() {
                Ok(i) => Value::Integer(i),
                Err(_) => Value::Text(n),
            }
        }
        T::Text | T::Varchar(_) => Value::Text(String::from_utf8(b.to_vec()).ok()?),
        T::Json => Value::Text(String::from_utf8(b.to_vec()).ok()?),
        T::Jsonb => Value::Text(String::from_utf8(b.get(1..)?.to_vec()).ok()?),
        T::Bytea => Value::Blob(b.to_vec()),
        T::Date => match i32::from_be_bytes(b.try_into().ok()?) {
            i32::MAX => Value::Text("infinity".into()),
            i32::MIN => Value::Text("-infinity".into()),
            d => Value::Text(format_date(d as i64 + PG_EPOCH_DAYS)),
        },
        T::Time => Value::Text(format_time(be8(b)?)),
        T::Timestamp(_) | T::TimestampTz(_) => match be8(b)? {
            i64::MAX => Value::Text("infinity".into()),
            i64::MIN => Value::Text("-infinity".into()),
            m => {
                let t = format_timestamp(m.checked_add(PG_EPOCH_MICROS)?);
                if matches!(ty, T::TimestampTz(_)) {
                    Value::Text(format!("{t}+00:00"))
                } else {
                    Value::Text(t)
                }
            }
        },
        T::Uuid => {
            let h = hex::encode(b);
            if h.len() != 32 {
                return None;
            }
            Value::Text(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(t: PgType) -> Conversion {
        Conversion {
            pg_type: t,
            epoch: EpochUnit::Seconds,
        }
    }

    fn enc(t: PgType, v: ValueRef<'_>) -> Result<Vec<u8>, BadValue> {
        let mut b = BytesMut::new();
        encode_field(&mut b, &conv(t), v)?;
        Ok(b[4..].to_vec())
    }

    #[test]
    fn timestamps_parse_iso_and_epochs() {
        let t = parse_timestamp("2024-02-29 13:45:10.5").unwrap();
        assert_eq!(format_timestamp(t), "2024-02-29 13:45:10.500000");
        assert_eq!(
            parse_timestamp("2024-02-29T15:45:10.5+02:00"),
            Some(t),
            "offset converted to UTC"
        );
        assert_eq!(parse_timestamp("2024-02-29T13:45:10.5Z"), Some(t));
        assert_eq!(parse_timestamp("2023-02-29"), None);
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("1969-12-31 23:59:59"), Some(-1_000_000));
        assert_eq!(parse_timestamp("hello"), None);
        assert_eq!(parse_time("24:00:00"), Some(86_400_000_000));
        assert_eq!(parse_time("24:00:01"), None);
        // Epoch seconds 0 is 2000-01-01 minus 30 years in PostgreSQL's epoch.
        let f = enc(PgType::Timestamp(None), ValueRef::Integer(946_684_800)).unwrap();
        assert_eq!(f, 0i64.to_be_bytes());
        let mut c = conv(PgType::TimestampTz(None));
        c.epoch = EpochUnit::Millis;
        let mut b = BytesMut::new();
        encode_field(&mut b, &c, ValueRef::Integer(946_684_800_123)).unwrap();
        assert_eq!(&b[4..], 123_000i64.to_be_bytes());
        // julianday('2000-01-01') = 2451544.5
        let f = enc(PgType::Timestamp(None), ValueRef::Real(2_451_544.5)).unwrap();
        assert_eq!(f, 0i64.to_be_bytes());
    }

    #[test]
    fn civil_round_trip() {
        for d in [-800_000i64, -1, 0, 1, 10_957, 19_782, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn bad_values_are_refused_with_reasons() {
        let e = enc(PgType::BigInt, ValueRef::Text(b"abc")).unwrap_err();
        assert!(e.reason.contains("text in a bigint column"), "{e:?}");
        assert_eq!(e.value, "'abc'");
        let e = enc(PgType::Text, ValueRef::Text(b"a\0b")).unwrap_err();
        assert!(e.reason.contains("NUL"));
        let e = enc(PgType::Text, ValueRef::Text(b"a\xffb")).unwrap_err();
        assert!(e.reason.contains("UTF-8"));
        assert_eq!(e.value, "'a\\xffb'");
        let e = enc(PgType::Boolean, ValueRef::Integer(2)).unwrap_err();
        assert!(e.reason.contains("boolean"));
        assert!(enc(PgType::Varchar(Some(2)), ValueRef::Text(b"abc")).is_err());
        assert!(enc(PgType::Varchar(Some(3)), ValueRef::Text("äbc".as_bytes())).is_ok());
        assert!(enc(PgType::Jsonb, ValueRef::Text(b"{bad")).is_err());
        assert!(enc(PgType::Numeric(Some((5, 2))), ValueRef::Real(1.005)).is_err());
        assert!(enc(PgType::Numeric(Some((5, 2))), ValueRef::Integer(1234)).is_err());
        assert!(enc(PgType::Integer, ValueRef::Integer(1 << 40)).is_err());
        assert!(enc(PgType::Double, ValueRef::Integer((1 << 60) + 1)).is_err());
        assert!(enc(PgType::Date, ValueRef::Text(b"2024-01-01 10:00")).is_err());
        assert!(
            enc(
                PgType::Timestamp(Some(3)),
                ValueRef::Text(b"2024-01-01 10:00:00.1234")
            )
            .is_err()
        );
        assert!(
            enc(
                PgType::Timestamp(Some(3)),
                ValueRef::Text(b"2024-01-01 10:00:00.123")
            )
            .is_ok()
        );
        assert!(enc(PgType::Timestamp(Some(0)), ValueRef::Integer(1)).is_ok());
    }

    #[test]
    fn numeric_binary_round_trip() {
        for s in [
            "0",
            "1",
            "-1",
            "12345.678",
            "0.0001",
            "100000000",
            "-0.5",
            "1.50",
            "3.14159265358979",
            "99999999999999999999.99",
        ] {
            let d = Decimal::parse(s).unwrap();
            let mut b = BytesMut::new();
            d.encode(&mut b);
            let back = Decimal::decode(&b).unwrap();
            assert_eq!(back, d, "{s}");
        }
        assert_eq!(Decimal::parse("1e3").unwrap().normalized(), "1000");
        assert_eq!(Decimal::parse("1.2300").unwrap().normalized(), "1.23");
        assert_eq!(Decimal::parse("-0.00").unwrap().normalized(), "0");
        // 12345.678 is digits [1, 2345, 6780], weight 1, dscale 3.
        let mut b = BytesMut::new();
        Decimal::parse("12345.678").unwrap().encode(&mut b);
        assert_eq!(
            &b[..],
            [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c]
        );
    }

    #[test]
    fn hostile_numerics_are_refused() {
        // A negative digit count, once read as a huge one.
        assert_eq!(Decimal::decode(&[0xff, 0xff, 0, 0, 0, 0, 0, 0]), None);
        // A digit outside base 10000.
        assert_eq!(Decimal::decode(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]), None);
        assert_eq!(Decimal::decode(&[0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff]), None);
        // A scale with the top bit set is a (large) scale, not a negative one.
        let d = Decimal::decode(&[0, 1, 0, 0, 0, 0, 0x80, 0, 0, 7]).unwrap();
        assert_eq!(d.normalized(), "7");
    }

    #[test]
    fn text_cut_inside_a_character_is_not_a_timestamp() {
        // Byte 10 falls inside the two-byte character.
        assert_eq!(parse_timestamp("2024-01-0\u{e9}"), None);
        assert_eq!(parse_timestamp("2024-01-01 10:00+1\u{e9}1"), None);
        assert!(!has_tz("2024-01-0\u{e9}+01".as_bytes()));
        assert!(has_tz("2024-01-01 10:00+01".as_bytes()));
    }

    #[test]
    fn json_canonical_ignores_key_order_and_number_spelling() {
        let a = canonical(&PgType::Json, br#"{"b":1,"a":[1e2,true]}"#).into_owned();
        let mut jb = vec![1u8];
        jb.extend_from_slice(br#"{"a": [100, true], "b": 1}"#);
        assert_eq!(a, canonical(&PgType::Jsonb, &jb).into_owned());
        let c = canonical(&PgType::Json, br#"{"b":2,"a":[100,true]}"#).into_owned();
        assert_ne!(a, c);
    }

    #[test]
    fn uuids() {
        let u = parse_uuid("550e8400e29b41d4a716446655440000").unwrap();
        assert_eq!(
            parse_uuid("550E8400-E29B-41D4-A716-446655440000").unwrap(),
            u
        );
        assert_eq!(
            decode_to_sqlite(&PgType::Uuid, &u),
            Some(Value::Text("550e8400-e29b-41d4-a716-446655440000".into()))
        );
        assert!(parse_uuid("not-a-uuid").is_none());
    }

    #[test]
    fn infinities_round_trip() {
        for (ty, bytes) in [
            (PgType::Timestamp(None), i64::MAX.to_be_bytes().to_vec()),
            (PgType::TimestampTz(None), i64::MIN.to_be_bytes().to_vec()),
            (PgType::Date, i32::MAX.to_be_bytes().to_vec()),
        ] {
            let Some(Value::Text(t)) = decode_to_sqlite(&ty, &bytes) else {
                panic!()
            };
            assert!(t.ends_with("infinity"), "{t}");
            assert_eq!(enc(ty, ValueRef::Text(t.as_bytes())).unwrap(), bytes);
        }
    }

    #[test]
    fn import_values() {
        assert_eq!(
            decode_to_sqlite(&PgType::Timestamp(None), &0i64.to_be_bytes()),
            Some(Value::Text("2000-01-01 00:00:00".into()))
        );
        assert_eq!(
            decode_to_sqlite(&PgType::TimestampTz(None), &1i64.to_be_bytes()),
            Some(Value::Text("2000-01-01 00:00:00.000001+00:00".into()))
        );
        assert_eq!(
            decode_to_sqlite(&PgType::Boolean, &[1]),
            Some(Value::Integer(1))
        );
        // The import's text goes back to the same binary value on export.
        for micros in [0i64, 1, -5_000_000, 770_000_000_123_456] {
            let Some(Value::Text(s)) =
                decode_to_sqlite(&PgType::TimestampTz(None), &micros.to_be_bytes())
            else {
                panic!()
            };
            let f = enc(PgType::TimestampTz(None), ValueRef::Text(s.as_bytes())).unwrap();
            assert_eq!(f, micros.to_be_bytes());
        }
    }
}
