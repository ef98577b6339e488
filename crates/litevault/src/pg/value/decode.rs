//! Binary COPY fields read back: the canonical bytes a field is hashed as,
//! and the SQLite value a field is imported as.

use std::borrow::Cow;

use rusqlite::types::Value;

use super::numeric::Decimal;
use super::text::{format_date, format_time, format_timestamp};
use super::{PG_EPOCH_DAYS, PG_EPOCH_MICROS};
use crate::pg::types::PgType;

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
        PgType::Array { elem, .. } => match super::array::canonical_array(elem, field) {
            Some(c) => Cow::Owned(c),
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
/// (SQLite's NUMERIC affinity turns it into a real when that is lossless),
/// enum labels and citext as text. `None` for the types the import reads as
/// text on the server instead (intervals, addresses, arrays, tsvector).
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
        T::Labelled { .. } => Value::Text(String::from_utf8(b.to_vec()).ok()?),
        T::Interval | T::Inet | T::Cidr | T::MacAddr | T::MacAddr8 | T::Array { .. } => {
            return None;
        }
        T::TsVector => return None,
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
    use crate::pg::value::text::parse_uuid;

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
}
