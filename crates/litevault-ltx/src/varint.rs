//! Unsigned LEB128 varints, as Go's `encoding/binary` `AppendUvarint`/`ReadUvarint` write
//! and read them (used by the page index).

/// Longest encoding of a `u64`.
pub(crate) const MAX_LEN: usize = 10;

/// Appends `v` to `out`.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one varint, pulling bytes from `next`. Returns `Ok(None)` if the encoding
/// overflows a `u64` (more than 10 bytes, or a 10th byte above 1), like Go's
/// `binary.ReadUvarint`.
pub(crate) fn read_uvarint<E>(mut next: impl FnMut() -> Result<u8, E>) -> Result<Option<u64>, E> {
    let mut x = 0u64;
    let mut shift = 0u32;
    for i in 0..MAX_LEN {
        let b = next()?;
        if b < 0x80 {
            if i == MAX_LEN - 1 && b > 1 {
                return Ok(None);
            }
            return Ok(Some(x | (u64::from(b) << shift)));
        }
        x |= u64::from(b & 0x7f) << shift;
        shift += 7;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Option<(u64, usize)> {
        let mut it = bytes.iter();
        let mut n = 0;
        let v = read_uvarint(|| {
            n += 1;
            it.next().copied().ok_or(())
        })
        .ok()??;
        Some((v, n))
    }

    #[test]
    fn known_encodings() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(v, enc) in cases {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            assert_eq!(out, enc, "{v}");
            assert_eq!(decode(enc), Some((v, enc.len())));
        }
    }

    #[test]
    fn overflow_and_truncation() {
        // A 10th byte above 1 overflows.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
        // Eleven continuation bytes overflow.
        assert_eq!(decode(&[0x80; 11]), None);
        // Running out of bytes is the caller's error.
        assert_eq!(decode(&[0x80]), None);
    }

    #[test]
    fn round_trip_many() {
        let mut x = 1u64;
        for _ in 0..200 {
            let mut out = Vec::new();
            put_uvarint(&mut out, x);
            assert!(out.len() <= MAX_LEN);
            assert_eq!(decode(&out), Some((x, out.len())));
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
    }
}
