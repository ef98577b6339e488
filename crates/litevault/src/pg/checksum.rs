//! Per-table content checksums (pure), computed the same way on both sides.
//!
//! A row's hash is SHA-256 over its fields in their [canonical](super::value::canonical())
//! form, each preceded by its length (-1 for NULL). The table checksum is the
//! wrapping sum of the first 128 bits of every row hash, so it does not
//! depend on row order (tables are read back without sorting, and loaded in
//! parallel) while a duplicated or missing row still changes it.

use sha2::{Digest, Sha256};

use super::types::PgType;
use super::value::canonical;

/// A table's row count and order-independent content checksum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableChecksum {
    pub rows: u64,
    #[serde(serialize_with = "hex128")]
    pub sum: u128,
}

fn hex128<S: serde::Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:032x}"))
}

impl TableChecksum {
    /// Adds one row given as binary COPY fields (`None` is NULL).
    pub fn add_row<'a>(
        &mut self,
        types: &[PgType],
        fields: impl Iterator<Item = Option<&'a [u8]>>,
    ) {
        let mut h = Sha256::new();
        for (ty, f) in types.iter().zip(fields) {
            match f {
                None => h.update((-1i64).to_be_bytes()),
                Some(b) => {
                    let c = canonical(ty, b);
                    h.update((c.len() as i64).to_be_bytes());
                    h.update(&c);
                }
            }
        }
        let d = h.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&d[..16]);
        self.sum = self.sum.wrapping_add(u128::from_be_bytes(first));
        self.rows += 1;
    }

    /// Adds one row from a binary COPY tuple's bytes (after the field count).
    pub fn add_tuple(&mut self, types: &[PgType], tuple: &[u8]) {
        self.add_row(types, TupleFields { rest: tuple });
    }

    /// The checksum as 32 hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

/// The fields of one binary COPY tuple (after its 16-bit field count).
/// Iteration ends at the end of the bytes, or at a field whose length
/// runs past them ([`TupleReader`](super::copy::TupleReader) only hands out
/// tuples whose fields all fit).
pub struct TupleFields<'a> {
    pub rest: &'a [u8],
}

impl<'a> Iterator for TupleFields<'a> {
    type Item = Option<&'a [u8]>;
    fn next(&mut self) -> Option<Self::Item> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        if len < 0 {
            self.rest = rest;
            return Some(None);
        }
        let Some((f, r)) = rest.split_at_checked(len as usize) else {
            self.rest = &[];
            return None;
        };
        self.rest = r;
        Some(Some(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_independent_but_sensitive_to_duplicates_and_values() {
        let t = [PgType::BigInt, PgType::Text];
        let r1: [Option<&[u8]>; 2] = [Some(&1i64.to_be_bytes()), Some(b"a")];
        let r2: [Option<&[u8]>; 2] = [Some(&2i64.to_be_bytes()), None];
        let mut a = TableChecksum::default();
        a.add_row(&t, r1.into_iter());
        a.add_row(&t, r2.into_iter());
        let mut b = TableChecksum::default();
        b.add_row(&t, r2.into_iter());
        b.add_row(&t, r1.into_iter());
        assert_eq!(a, b);
        let mut c = b;
        c.add_row(&t, r1.into_iter());
        assert_ne!(a.sum, c.sum);
        let r3: [Option<&[u8]>; 2] = [Some(&2i64.to_be_bytes()), Some(b"")];
        let mut d = TableChecksum::default();
        d.add_row(&t, r1.into_iter());
        d.add_row(&t, r3.into_iter());
        assert_ne!(a.sum, d.sum, "NULL and empty text differ");
    }

    #[test]
    fn a_field_longer_than_the_tuple_ends_the_fields() {
        let mut tuple = 2i32.to_be_bytes().to_vec();
        tuple.extend_from_slice(b"ab");
        tuple.extend_from_slice(&(-1i32).to_be_bytes());
        tuple.extend_from_slice(&100i32.to_be_bytes());
        tuple.extend_from_slice(b"cd");
        let fields: Vec<_> = TupleFields { rest: &tuple }.collect();
        assert_eq!(fields, [Some(&b"ab"[..]), None]);
        let mut sum = TableChecksum::default();
        sum.add_tuple(&[PgType::Text, PgType::Text, PgType::Text], &tuple);
        assert_eq!(sum.rows, 1);
    }
}
