//! The WAL checksum: a pair of Fibonacci-weighted 32-bit running sums.

use super::WalChecksum;

/// Extend the WAL checksum `seed` over `data`.
///
/// `data` is read as consecutive pairs of 32-bit words `(x0, x1)`, decoded
/// big-endian when `big_endian` is true (magic `0x377f0683`) and
/// little-endian otherwise (magic `0x377f0682`). For each pair the running
/// sums are updated as `s0 += x0 + s1; s1 += x1 + s0` with wrapping
/// arithmetic. The WAL header checksum is this function over the header's
/// first 24 bytes seeded with `WalChecksum(0, 0)`; a frame's checksum is it
/// over the frame header's first 8 bytes and then the page data, seeded with
/// the previous frame's checksum (or the header's for the first frame).
///
/// # Panics
///
/// Panics if `data.len()` is not a multiple of 8; every input SQLite
/// checksums (24-byte header prefix, 8-byte frame prefix, page of at least
/// 512 bytes) satisfies this.
#[inline]
pub fn wal_checksum(big_endian: bool, seed: WalChecksum, data: &[u8]) -> WalChecksum {
    assert!(
        data.len().is_multiple_of(8),
        "WAL checksum input must be a multiple of 8 bytes, got {}",
        data.len()
    );
    if big_endian {
        // Big-endian: the first word of a pair is the high half of the u64.
        sum_pairs(seed, data, |pair| {
            let w = u64::from_be_bytes(pair);
            ((w >> 32) as u32, w as u32)
        })
    } else {
        // Little-endian: the first word of a pair is the low half of the u64.
        sum_pairs(seed, data, |pair| {
            let w = u64::from_le_bytes(pair);
            (w as u32, (w >> 32) as u32)
        })
    }
}

/// The checksum loop, monomorphised per byte order so the word decoding
/// is a single 8-byte load (plus a byte swap where needed) per pair.
#[inline(always)]
fn sum_pairs(seed: WalChecksum, data: &[u8], words: impl Fn([u8; 8]) -> (u32, u32)) -> WalChecksum {
    let WalChecksum(mut s0, mut s1) = seed;
    let (pairs, rest) = data.as_chunks::<8>();
    debug_assert!(rest.is_empty());
    for &pair in pairs {
        let (x0, x1) = words(pair);
        // `s0 + x0` does not depend on `s1`, which shortens the dependency
        // chain between iterations to two additions per pair.
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    WalChecksum(s0, s1)
}
