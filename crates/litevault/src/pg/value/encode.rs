//! SQLite values to binary COPY fields, each refused with a reason when its
//! column's type cannot hold it as it is.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use rusqlite::types::ValueRef;

use super::numeric::Decimal;
use super::text::{parse_time, parse_timestamp, parse_uuid};
use super::{BadValue, Conversion, MICROS_PER_DAY, PG_EPOCH_DAYS, PG_EPOCH_MICROS, bad};
use crate::pg::types::{EpochUnit, PgType};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::value::tests::{conv, enc};
    use crate::pg::value::text::{format_timestamp, parse_time, parse_timestamp};

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
}
