//! SQLite values to binary COPY fields, each refused with a reason when its
//! column's type cannot hold it as it is.

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use rusqlite::types::ValueRef;

use super::interval::Interval;
use super::numeric::Decimal;
use super::text::{parse_time, parse_timestamp, parse_uuid};
use super::{
    BadValue, Conversion, MICROS_PER_DAY, PG_EPOCH_DAYS, PG_EPOCH_MICROS, Written, array, bad, net,
};
use crate::pg::types::{EpochUnit, PgType};

/// Appends one binary COPY field (length + bytes, or -1 for NULL) and says
/// whether the value went in as it is.
pub fn encode_field(
    buf: &mut BytesMut,
    conv: &Conversion,
    v: ValueRef<'_>,
) -> Result<Written, BadValue> {
    if conv.pg_type == PgType::TsVector {
        // Derived by the app: an empty vector, whatever SQLite holds.
        buf.put_i32(4);
        buf.put_i32(0);
        let written = match v {
            ValueRef::Null => Written::Exact,
            _ => Written::Derived,
        };
        return Ok(written);
    }
    // JSON's null in an array column (an ORM's JSON variant of the array
    // on SQLite stores None so) is no array.
    let json_null = matches!(conv.pg_type, PgType::Array { .. })
        && matches!(v, ValueRef::Text(t) if t.trim_ascii() == b"null");
    if matches!(v, ValueRef::Null) || json_null {
        buf.put_i32(-1);
        return Ok(Written::Exact);
    }
    let len_at = buf.len();
    buf.put_i32(0);
    let written = encode_value(buf, conv, v)?;
    let len = (buf.len() - len_at - 4) as i32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(written)
}

/// The decimal with `scale` places that the float `r` is within a few ULPs
/// of: SQLite arithmetic on a decimal column leaves `387.28000000000003`
/// where the app stored 387.28, and reads it back as 387.28.
fn near_decimal(r: f64, scale: u32) -> Option<Decimal> {
    const MAX_ULPS: u64 = 4;
    if !r.is_finite() {
        return None;
    }
    let rounded = format!("{r:.prec$}", prec = scale as usize);
    let back: f64 = rounded.parse().ok()?;
    let ulps = if back == r {
        0
    } else if back.is_sign_negative() == r.is_sign_negative() {
        back.to_bits().abs_diff(r.to_bits())
    } else {
        u64::MAX
    };
    (ulps <= MAX_ULPS)
        .then(|| Decimal::parse(&rounded))
        .flatten()
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

fn encode_value(
    buf: &mut BytesMut,
    conv: &Conversion,
    v: ValueRef<'_>,
) -> Result<Written, BadValue> {
    use PgType as T;
    let ty = &conv.pg_type;
    let mut written = Written::Exact;
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
            let mut d = Decimal::parse(&text)
                .ok_or_else(|| bad("text that is not a number in a numeric column", v))?;
            if let (Some((_, s)), Decimal::Finite { frac, .. }, ValueRef::Real(r)) = (ps, &d, v)
                && frac.trim_end_matches('0').len() as u32 > *s
                && let Some(near) = near_decimal(r, *s)
            {
                d = near;
                written = Written::FloatNoise;
            }
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
        T::Interval => {
            let i = match v {
                ValueRef::Integer(n) => n
                    .checked_mul(conv.epoch.micros())
                    .and_then(Interval::from_micros),
                ValueRef::Real(r) if r.is_finite() => {
                    Interval::from_micros((r * conv.epoch.micros() as f64).round() as i64)
                }
                ValueRef::Text(t) => Interval::parse(text_of(t, v)?),
                _ => None,
            };
            i.ok_or_else(|| {
                bad(
                    "not a duration (a number, ISO 8601 like P1DT2H, or 1 day 02:00:00)",
                    v,
                )
            })?
            .encode(buf);
        }
        T::Inet | T::Cidr => {
            let ValueRef::Text(t) = v else {
                return Err(bad(format!("not an address (text) in a {ty} column"), v));
            };
            net::put_inet(buf, text_of(t, v)?, matches!(ty, T::Cidr))
                .map_err(|reason| bad(reason, v))?;
        }
        T::MacAddr | T::MacAddr8 => {
            let ValueRef::Text(t) = v else {
                return Err(bad(format!("not a MAC address (text) in a {ty} column"), v));
            };
            net::put_macaddr(buf, text_of(t, v)?, matches!(ty, T::MacAddr8))
                .map_err(|reason| bad(reason, v))?;
        }
        T::Labelled { labels, .. } => {
            let s: Cow<str> = match v {
                ValueRef::Text(t) => text_of(t, v)?.into(),
                ValueRef::Integer(i) if labels.is_none() => i.to_string().into(),
                _ => return Err(bad(format!("not text in a {ty} column"), v)),
            };
            if let Some(labels) = labels
                && !labels.iter().any(|l| *l == s)
            {
                let mut list = labels.join(", ");
                if list.len() > 200 {
                    list.truncate(200);
                    list.push_str("...");
                }
                return Err(bad(
                    format!("not one of the labels of enum {ty} ({list})"),
                    v,
                ));
            }
            buf.put_slice(s.as_bytes());
        }
        T::Array { elem, elem_oid } => {
            let ValueRef::Text(t) = v else {
                return Err(bad(format!("not a JSON array (text) in a {ty} column"), v));
            };
            written = array::put_array(buf, conv, elem, *elem_oid, text_of(t, v)?)
                .map_err(|reason| bad(reason, v))?;
        }
        // Written by `encode_field` before it gets here.
        T::TsVector => buf.put_i32(0),
    }
    Ok(written)
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
    use crate::pg::value::Written;
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

    #[test]
    fn float_noise_is_rounded_only_within_a_few_ulps() {
        let ty = PgType::Numeric(Some((12, 2)));
        let mut b = BytesMut::new();
        let w = encode_field(
            &mut b,
            &conv(ty.clone()),
            ValueRef::Real(387.28000000000003),
        )
        .unwrap();
        assert_eq!(w, Written::FloatNoise);
        let d = Decimal::decode(&b[4..]).unwrap();
        assert_eq!(d.normalized(), "387.28");
        // 0.1 + 0.2 is 0.30000000000000004, one ULP from 0.3.
        let mut b = BytesMut::new();
        let w = encode_field(&mut b, &conv(ty.clone()), ValueRef::Real(0.1 + 0.2)).unwrap();
        assert_eq!(w, Written::FloatNoise);
        // An exact value is exact; a real third decimal is an error.
        let mut b = BytesMut::new();
        assert_eq!(
            encode_field(&mut b, &conv(ty.clone()), ValueRef::Real(387.28)).unwrap(),
            Written::Exact
        );
        assert!(enc(ty.clone(), ValueRef::Real(387.281)).is_err());
        assert!(enc(ty.clone(), ValueRef::Real(387.2800001)).is_err());
        // Text is never rounded: it is what the app wrote.
        assert!(enc(ty, ValueRef::Text(b"387.28000000000003")).is_err());
    }

    #[test]
    fn intervals_addresses_labels() {
        let mut c = conv(PgType::Interval);
        c.epoch = EpochUnit::Micros;
        let mut b = BytesMut::new();
        encode_field(&mut b, &c, ValueRef::Integer(90_000_000_000)).unwrap();
        // 3600 s in microseconds, 1 day, 0 months.
        assert_eq!(&b[4..12], 3_600_000_000i64.to_be_bytes());
        assert_eq!(&b[12..], [0, 0, 0, 1, 0, 0, 0, 0]);
        assert!(enc(PgType::Interval, ValueRef::Text(b"P1D")).is_ok());
        assert!(enc(PgType::Interval, ValueRef::Text(b"later")).is_err());
        assert!(enc(PgType::Inet, ValueRef::Text(b"::1")).is_ok());
        assert!(enc(PgType::Inet, ValueRef::Integer(1)).is_err());
        assert!(enc(PgType::MacAddr, ValueRef::Text(b"08:00:2b:01:02:03")).is_ok());
        let mood = PgType::Labelled {
            name: "mood".into(),
            oid: 16_000,
            labels: Some(vec!["sad".into(), "ok".into()]),
        };
        assert_eq!(enc(mood.clone(), ValueRef::Text(b"ok")).unwrap(), b"ok");
        let e = enc(mood, ValueRef::Text(b"happy")).unwrap_err();
        assert!(e.reason.contains("(sad, ok)"), "{e:?}");
        let citext = PgType::Labelled {
            name: "citext".into(),
            oid: 16_001,
            labels: None,
        };
        assert_eq!(enc(citext, ValueRef::Text(b"MiXeD")).unwrap(), b"MiXeD");
        // A derived column is written empty, whatever SQLite holds.
        let mut b = BytesMut::new();
        let w = encode_field(&mut b, &conv(PgType::TsVector), ValueRef::Text(b"x")).unwrap();
        assert_eq!(
            (w, &b[..]),
            (Written::Derived, &[0, 0, 0, 4, 0, 0, 0, 0][..])
        );
    }

    #[test]
    fn arrays_from_json() {
        let ints = PgType::parse("integer[]").unwrap();
        let f = enc(ints.clone(), ValueRef::Text(b"[1, null, 3]")).unwrap();
        let mut want = vec![];
        for n in [1i32, 1, 23, 3, 1] {
            want.extend_from_slice(&n.to_be_bytes());
        }
        for (len, v) in [(4i32, Some(1i32)), (-1, None), (4, Some(3))] {
            want.extend_from_slice(&len.to_be_bytes());
            if let Some(v) = v {
                want.extend_from_slice(&v.to_be_bytes());
            }
        }
        assert_eq!(f, want);
        // Empty: no dimensions.
        let f = enc(ints.clone(), ValueRef::Text(b"[]")).unwrap();
        assert_eq!(f, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23]);
        // Two dimensions, rectangular only.
        let f = enc(ints.clone(), ValueRef::Text(b"[[1,2],[3,4]]")).unwrap();
        assert_eq!(&f[..4], 2i32.to_be_bytes());
        assert!(enc(ints.clone(), ValueRef::Text(b"[[1,2],[3]]")).is_err());
        assert!(enc(ints.clone(), ValueRef::Text(b"[1, \"x\"]")).is_err());
        assert!(enc(ints.clone(), ValueRef::Text(b"{1,2}")).is_err());
        let mut b = BytesMut::new();
        encode_field(&mut b, &conv(ints.clone()), ValueRef::Text(b"null")).unwrap();
        assert_eq!(&b[..], (-1i32).to_be_bytes(), "JSON null is NULL");
        assert!(enc(ints, ValueRef::Text(b"[1.5]")).is_err());
        // Numerics keep the number's own digits; jsonb elements stay whole.
        let nums = PgType::parse("numeric[]").unwrap();
        let f = enc(
            nums.clone(),
            ValueRef::Text(b"[0.1, 12345678901234567890.5]"),
        )
        .unwrap();
        let again = enc(
            nums.clone(),
            ValueRef::Text(b"[0.10, 12345678901234567890.50]"),
        )
        .unwrap();
        assert_eq!(
            crate::pg::value::canonical(&nums, &f),
            crate::pg::value::canonical(&nums, &again)
        );
        let jb = PgType::parse("jsonb[]").unwrap();
        let f = enc(jb, ValueRef::Text(br#"[[1,2], {"a": 1}]"#)).unwrap();
        assert_eq!(&f[..4], 1i32.to_be_bytes());
        let texts = PgType::parse("text[]").unwrap();
        assert!(enc(texts, ValueRef::Text(br#"["a", "\u00e9", ""]"#)).is_ok());
    }
}
