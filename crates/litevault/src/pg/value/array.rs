//! Arrays: JSON text in SQLite (`[1, 2, null]`, `[["a"], ["b"]]`) written
//! as PostgreSQL's binary array, and the canonical form an array is hashed
//! in (element by element, so numerics and jsonb compare by value).

use bytes::{BufMut, BytesMut};
use rusqlite::types::ValueRef;

use super::encode::encode_field;
use super::{Conversion, Written};
use crate::pg::types::PgType;

/// Writes the JSON array `json` as an array of `elem`, or says what is
/// wrong (the caller names the value).
pub fn put_array(
    buf: &mut BytesMut,
    conv: &Conversion,
    elem: &PgType,
    elem_oid: u32,
    json: &str,
) -> Result<Written, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("not a JSON array ({e})"))?;
    let serde_json::Value::Array(_) = &v else {
        return Err("not a JSON array".into());
    };
    // JSON elements are values of their own: only other types nest.
    let nests = !matches!(elem, PgType::Json | PgType::Jsonb);
    let mut dims = vec![];
    let mut level = &v;
    while let serde_json::Value::Array(a) = level {
        dims.push(a.len());
        match a.first() {
            Some(first) if nests && first.is_array() => level = first,
            _ => break,
        }
    }
    if dims.contains(&0) && dims != [0] {
        return Err("an empty inner array (PostgreSQL arrays are rectangular)".into());
    }
    let mut leaves = vec![];
    flatten(&v, &dims, &mut leaves)?;
    let ndim = if dims == [0] { 0 } else { dims.len() };
    buf.put_i32(ndim as i32);
    let flags_at = buf.len();
    buf.put_i32(0);
    buf.put_u32(elem_oid);
    if ndim > 0 {
        for d in &dims {
            buf.put_i32(*d as i32);
            buf.put_i32(1);
        }
    }
    let mut has_null = false;
    let mut written = Written::Exact;
    let elem_conv = Conversion {
        pg_type: elem.clone(),
        epoch: conv.epoch,
    };
    for leaf in leaves {
        let text;
        let value = match leaf {
            serde_json::Value::Null => {
                has_null = true;
                ValueRef::Null
            }
            serde_json::Value::Bool(b) if *elem == PgType::Boolean => ValueRef::Integer(*b as i64),
            serde_json::Value::Number(n) if !matches!(elem, PgType::Numeric(_)) => {
                match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => ValueRef::Integer(i),
                    (None, Some(f)) => ValueRef::Real(f),
                    _ => return Err(format!("number {n} out of range")),
                }
            }
            serde_json::Value::String(s) if !matches!(elem, PgType::Json | PgType::Jsonb) => {
                ValueRef::Text(s.as_bytes())
            }
            other => {
                text = other.to_string();
                ValueRef::Text(text.as_bytes())
            }
        };
        let w = encode_field(buf, &elem_conv, value)
            .map_err(|e| format!("element {}: {}", super::show(value), e.reason))?;
        if w != Written::Exact {
            written = w;
        }
    }
    if has_null {
        buf[flags_at..flags_at + 4].copy_from_slice(&1i32.to_be_bytes());
    }
    Ok(written)
}

/// The leaves of a rectangular nested array of shape `dims`, in order.
fn flatten<'a>(
    v: &'a serde_json::Value,
    dims: &[usize],
    out: &mut Vec<&'a serde_json::Value>,
) -> Result<(), String> {
    let Some((&n, rest)) = dims.split_first() else {
        out.push(v);
        return Ok(());
    };
    match v {
        serde_json::Value::Array(a) if a.len() == n => {
            for x in a {
                flatten(x, rest, out)?;
            }
            Ok(())
        }
        _ => Err("inner arrays of different lengths (PostgreSQL arrays are rectangular)".into()),
    }
}

/// The bytes an array field is hashed as: dimensions, then each element's
/// own canonical bytes (or a NULL mark); the flags and the element OID,
/// which PostgreSQL sets itself, are left out.
pub fn canonical_array(elem: &PgType, field: &[u8]) -> Option<Vec<u8>> {
    let rd = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(field.get(at..at + 4)?.try_into().ok()?))
    };
    let ndim = usize::try_from(rd(0)?).ok()?;
    let mut at = 12;
    let mut out = Vec::with_capacity(field.len());
    out.extend_from_slice(&(ndim as u32).to_be_bytes());
    let mut count: usize = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let n = rd(at)?;
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&rd(at + 4)?.to_be_bytes());
        count = count.checked_mul(usize::try_from(n).ok()?)?;
        at += 8;
    }
    for _ in 0..count {
        let len = rd(at)?;
        at += 4;
        if len < 0 {
            out.push(0);
            continue;
        }
        let body = field.get(at..at + len as usize)?;
        at += len as usize;
        let c = super::canonical(elem, body);
        out.push(1);
        out.extend_from_slice(&(c.len() as u64).to_be_bytes());
        out.extend_from_slice(&c);
    }
    (at == field.len()).then_some(out)
}
