//! Values between SQLite and PostgreSQL's binary COPY format (pure).
//!
//! [`encode_field`] turns one SQLite value into one field of a binary COPY
//! tuple for a given [`PgType`], or refuses it with a [`BadValue`] that says
//! why; nothing is coerced silently. [`canonical`] gives the bytes a field is
//! hashed as, the same whether the field was just encoded or read back from
//! PostgreSQL (jsonb and numeric are normalised by the server, so they are
//! hashed by value). [`decode_to_sqlite`] is the reverse direction, used by
//! the import.
//!
//! `encode` writes fields, `decode` reads them, `text` parses and formats
//! dates, times and UUIDs, `numeric` is PostgreSQL's decimal number.

mod array;
mod decode;
mod encode;
mod interval;
mod net;
mod numeric;
mod text;

pub use decode::{canonical, decode_to_sqlite};
pub use encode::encode_field;
pub use interval::Interval;
pub use numeric::Decimal;
pub use text::{
    format_date, format_time, format_timestamp, has_tz, looks_like_uuid, parse_time,
    parse_timestamp, parse_uuid,
};

use rusqlite::types::ValueRef;

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

/// How a value went into its field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// As it is.
    Exact,
    /// A float a few ULPs from a decimal of the column's scale (SQLite's
    /// arithmetic noise, `387.28000000000003`), written as that decimal.
    FloatNoise,
    /// A derived column (`tsvector`): written empty for the app to rebuild;
    /// the SQLite value was not copied.
    Derived,
}

/// Settings of one column's conversion.
#[derive(Clone, Debug, PartialEq)]
pub struct Conversion {
    pub pg_type: PgType,
    /// The unit of numbers in a date/time column (since 1970-01-01), or in
    /// an interval column (a duration).
    pub epoch: EpochUnit,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use rusqlite::types::Value;

    pub(super) fn conv(t: PgType) -> Conversion {
        Conversion {
            pg_type: t,
            epoch: EpochUnit::Seconds,
        }
    }

    pub(super) fn enc(t: PgType, v: ValueRef<'_>) -> Result<Vec<u8>, BadValue> {
        let mut b = BytesMut::new();
        encode_field(&mut b, &conv(t), v)?;
        Ok(b[4..].to_vec())
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
