//! CRC-64 checksums: page checksums, the rolling database checksum and file checksums.
//!
//! LTX uses Go's `hash/crc64` with the ISO table: CRC-64/GO-ISO (polynomial 0x1b reflected,
//! init and xorout all ones). Every checksum stored in a file has bit 63 ([`CHECKSUM_FLAG`])
//! set so that a real checksum is never zero; zero means "no checksum".

use std::fmt;

use crc_fast::CrcAlgorithm::Crc64GoIso;

use super::LtxError;

/// Bit 63, set on every checksum LTX stores.
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// A running CRC-64/GO-ISO digest (carry-less multiplication where the CPU
/// has it: checksums are most of a restore's work).
#[derive(Clone)]
pub(crate) struct Hasher(crc_fast::Digest);

impl Hasher {
    /// Adds bytes.
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC of everything added.
    pub(crate) fn finalize(self) -> u64 {
        self.0.finalize()
    }
}

/// Starts a CRC-64/GO-ISO digest.
pub(crate) fn hasher() -> Hasher {
    Hasher(crc_fast::Digest::new(Crc64GoIso))
}

/// CRC-64/GO-ISO of `data`, without the flag (Go `crc64.Checksum(data, crc64.MakeTable(crc64.ISO))`).
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(Crc64GoIso, data)
}

/// An LTX checksum. Bit 63 is set on every real checksum; zero means none.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Checksum(pub u64);

impl Checksum {
    /// Whether this is a well-formed stored checksum: bit 63 set.
    pub fn is_flagged(self) -> bool {
        self.0 & CHECKSUM_FLAG != 0
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::LowerHex for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({:016x})", self.0)
    }
}

/// Checksum of one page: CRC-64/GO-ISO over the page number (big-endian `u32`) followed by
/// the page data, with [`CHECKSUM_FLAG`] set (Go `ltx.ChecksumPage`).
pub fn page_checksum(pgno: u32, data: &[u8]) -> Checksum {
    let mut digest = hasher();
    digest.update(&pgno.to_be_bytes());
    digest.update(data);
    Checksum(CHECKSUM_FLAG | digest.finalize())
}

/// The rolling checksum of a whole database: the XOR of the checksums of all its pages
/// (the lock page excluded), with [`CHECKSUM_FLAG`] set. This is what LTX stores as the
/// pre- and post-apply checksums.
///
/// The checksum of every page is kept, so replacing a page or truncating the database is
/// O(1) per page instead of a rescan. An empty database has the value [`CHECKSUM_FLAG`]
/// (Go's encoder requires exactly that post-apply checksum when `commit` is 0).
///
/// Callers must not add the lock page ([`lock_pgno`](super::lock_pgno)): it is not part of
/// the checksum.
///
/// ```
/// use litevault_ltx::{DbChecksum, page_checksum, CHECKSUM_FLAG};
/// let mut db = DbChecksum::new();
/// assert_eq!(db.value().0, CHECKSUM_FLAG);
/// db.set_page(1, page_checksum(1, &[0; 512]));
/// db.set_page(2, page_checksum(2, &[1; 512]));
/// db.truncate(1);
/// assert_eq!(db.value(), page_checksum(1, &[0; 512]));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DbChecksum {
    // Index pgno-1 holds the page checksum; 0 marks a page with no checksum (the lock page).
    pages: Vec<u64>,
    // XOR of all entries of `pages`.
    acc: u64,
}

const TABLE_MAGIC: &[u8; 4] = b"LVDC";
const TABLE_VERSION: u32 = 1;
const TABLE_HEAD: usize = 12;

impl DbChecksum {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the checksum of a whole database image (`db.len()` a multiple of
    /// `page_size`; a partial last page is ignored). The lock page is skipped.
    pub fn from_database(page_size: u32, db: &[u8]) -> Self {
        let lock = super::lock_pgno(page_size);
        let mut sum = Self::new();
        for (i, page) in db.chunks_exact(page_size.max(1) as usize).enumerate() {
            let Ok(pgno) = u32::try_from(i + 1) else {
                break;
            };
            if pgno != lock {
                sum.set_page(pgno, page_checksum(pgno, page));
            }
        }
        sum
    }

    /// Sets the checksum of page `pgno`, replacing the one it had. Page 0 does not exist
    /// and is ignored.
    pub fn set_page(&mut self, pgno: u32, checksum: Checksum) {
        let Some(idx) = (pgno as usize).checked_sub(1) else {
            return;
        };
        if idx >= self.pages.len() {
            self.pages.resize(idx + 1, 0);
        }
        self.acc ^= self.pages[idx] ^ checksum.0;
        self.pages[idx] = checksum.0;
    }

    /// Computes and sets the checksum of page `pgno` from its data.
    pub fn apply_page(&mut self, pgno: u32, data: &[u8]) {
        self.set_page(pgno, page_checksum(pgno, data));
    }

    /// Drops every page above `commit`, as when the database shrinks to `commit` pages.
    pub fn truncate(&mut self, commit: u32) {
        let keep = commit as usize;
        if keep < self.pages.len() {
            for c in &self.pages[keep..] {
                self.acc ^= c;
            }
            self.pages.truncate(keep);
        }
    }

    /// Sizes the table to exactly `commit` pages: drops pages above it, or
    /// adds empty slots up to it (so [`missing`](Self::missing) can name pages
    /// a state must still receive).
    pub fn set_len(&mut self, commit: u32) {
        self.truncate(commit);
        self.pages.resize(commit as usize, 0);
    }

    /// The database checksum after truncating to `commit` pages and setting
    /// `changes` (distinct page numbers, each `<= commit`), computed without
    /// changing the table: O(changes + pages dropped).
    pub fn value_after(&self, changes: &[(u32, Checksum)], commit: u32) -> Checksum {
        let keep = (commit as usize).min(self.pages.len());
        let mut acc = self.acc;
        for c in &self.pages[keep..] {
            acc ^= c;
        }
        for (pgno, sum) in changes {
            let idx = (*pgno as usize).saturating_sub(1);
            let old = if idx < keep { self.pages[idx] } else { 0 };
            acc ^= old ^ sum.0;
        }
        Checksum(CHECKSUM_FLAG | acc)
    }

    /// Page numbers up to [`len`](Self::len) that have no checksum yet.
    pub fn missing(&self) -> impl Iterator<Item = u32> + '_ {
        self.pages
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == 0)
            .map(|(i, _)| i as u32 + 1)
    }

    /// The database checksum, with [`CHECKSUM_FLAG`] set.
    pub fn value(&self) -> Checksum {
        Checksum(CHECKSUM_FLAG | self.acc)
    }

    /// The stored checksum of page `pgno`, if any.
    pub fn page(&self, pgno: u32) -> Option<Checksum> {
        let idx = (pgno as usize).checked_sub(1)?;
        match self.pages.get(idx) {
            Some(&c) if c != 0 => Some(Checksum(c)),
            _ => None,
        }
    }

    /// Number of page slots: the highest page number set and not truncated away.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether no page is tracked.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Serializes the per-page table: `"LVDC"`, version `u32` (1), page count `u32`, one
    /// `u64` per page (0 for none), then the CRC-64/GO-ISO of all of that as `u64`. All
    /// big-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TABLE_HEAD + self.pages.len() * 8 + 8);
        out.extend_from_slice(TABLE_MAGIC);
        out.extend_from_slice(&TABLE_VERSION.to_be_bytes());
        // The table is indexed by u32 page numbers, so its length fits in a u32.
        out.extend_from_slice(&(self.pages.len() as u32).to_be_bytes());
        for c in &self.pages {
            out.extend_from_slice(&c.to_be_bytes());
        }
        let crc = crc64(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads a table written by [`to_bytes`](Self::to_bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LtxError> {
        let bad = |reason: String| LtxError::InvalidChecksumTable { reason };
        if bytes.len() < TABLE_HEAD + 8 {
            return Err(bad(format!("{} bytes is too short", bytes.len())));
        }
        if &bytes[..4] != TABLE_MAGIC {
            return Err(bad("wrong magic".into()));
        }
        let version = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if version != TABLE_VERSION {
            return Err(bad(format!("unknown version {version}")));
        }
        let count = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let want = count
            .checked_mul(8)
            .and_then(|n| n.checked_add(TABLE_HEAD + 8));
        if want != Some(bytes.len()) {
            return Err(bad(format!(
                "{} bytes does not fit a table of {count} pages",
                bytes.len()
            )));
        }
        let Some((body, tail)) = bytes.split_last_chunk::<8>() else {
            return Err(bad(format!(
                "{} bytes is too short for a table",
                bytes.len()
            )));
        };
        let stored = u64::from_be_bytes(*tail);
        let actual = crc64(body);
        if stored != actual {
            return Err(bad(format!("crc is {actual:016x}, stored {stored:016x}")));
        }
        let mut sum = Self {
            pages: Vec::with_capacity(count),
            acc: 0,
        };
        let (chunks, _) = body.get(TABLE_HEAD..).unwrap_or_default().as_chunks::<8>();
        for chunk in chunks {
            let c = u64::from_be_bytes(*chunk);
            sum.acc ^= c;
            sum.pages.push(c);
        }
        Ok(sum)
    }
}

impl fmt::Debug for DbChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbChecksum")
            .field("pages", &self.pages.len())
            .field("value", &self.value())
            .finish()
    }
}

impl FromIterator<(u32, Checksum)> for DbChecksum {
    fn from_iter<I: IntoIterator<Item = (u32, Checksum)>>(iter: I) -> Self {
        let mut sum = Self::new();
        for (pgno, c) in iter {
            sum.set_page(pgno, c);
        }
        sum
    }
}

#[cfg(test)]
mod simd_crc_tests {
    use proptest::prelude::*;

    proptest! {
        /// The accelerated CRC equals the plain table-driven CRC-64/GO-ISO,
        /// whole and fed in pieces.
        #[test]
        fn matches_table_crc(data in proptest::collection::vec(any::<u8>(), 0..5000), split in 0usize..5000) {
            let table = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);
            prop_assert_eq!(super::crc64(&data), table.checksum(&data));
            let split = split.min(data.len());
            let mut h = super::hasher();
            h.update(&data[..split]);
            h.update(&data[split..]);
            prop_assert_eq!(h.finalize(), table.checksum(&data));
        }
    }
}

#[cfg(test)]
mod value_after_tests {
    use super::*;

    #[test]
    fn value_after_matches_applying() {
        let mut t = DbChecksum::new();
        for p in 1..=10u32 {
            t.apply_page(p, &[p as u8; 512]);
        }
        for (changes, commit) in [
            (
                vec![
                    (2, page_checksum(2, &[7; 512])),
                    (12, page_checksum(12, &[1; 512])),
                ],
                12,
            ),
            (vec![(3, page_checksum(3, &[9; 512]))], 5),
            (vec![], 2),
            (vec![], 0),
        ] {
            let predicted = t.value_after(&changes, commit);
            let mut u = t.clone();
            u.set_len(commit);
            for (p, s) in &changes {
                u.set_page(*p, *s);
            }
            assert_eq!(predicted, u.value());
        }
        let mut g = DbChecksum::new();
        g.set_len(3);
        g.set_page(2, page_checksum(2, &[1; 512]));
        assert_eq!(g.missing().collect::<Vec<_>>(), vec![1, 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_go_iso_vectors() {
        // Go hash/crc64 golden values for the ISO table (crc64_test.go).
        assert_eq!(crc64(b""), 0);
        assert_eq!(crc64(b"a"), 0x3420000000000000);
        assert_eq!(crc64(b"ab"), 0x36c4200000000000);
        assert_eq!(crc64(b"abc"), 0x3776c42000000000);
        // The catalogue check value of CRC-64/GO-ISO.
        assert_eq!(crc64(b"123456789"), 0xb90956c775a41001);
    }

    #[test]
    fn digest_matches_one_shot() {
        let mut d = hasher();
        d.update(b"1234");
        d.update(b"56789");
        assert_eq!(d.finalize(), crc64(b"123456789"));
    }

    #[test]
    fn page_checksum_covers_pgno_then_data() {
        let data = [7u8; 512];
        let mut buf = 3u32.to_be_bytes().to_vec();
        buf.extend_from_slice(&data);
        assert_eq!(page_checksum(3, &data).0, CHECKSUM_FLAG | crc64(&buf));
        assert_ne!(page_checksum(3, &data), page_checksum(4, &data));
        assert!(page_checksum(1, &[]).is_flagged());
    }

    #[test]
    fn db_checksum_xor_and_updates() {
        let p = |n: u32, b: u8| page_checksum(n, &[b; 1024]);
        let mut db = DbChecksum::new();
        assert_eq!(db.value(), Checksum(CHECKSUM_FLAG));
        assert!(db.is_empty());
        db.set_page(1, p(1, 1));
        db.set_page(2, p(2, 2));
        db.set_page(3, p(3, 3));
        let xor = p(1, 1).0 ^ p(2, 2).0 ^ p(3, 3).0;
        assert_eq!(db.value(), Checksum(CHECKSUM_FLAG | xor));
        // Replace page 2.
        db.set_page(2, p(2, 9));
        let xor2 = p(1, 1).0 ^ p(2, 9).0 ^ p(3, 3).0;
        assert_eq!(db.value(), Checksum(CHECKSUM_FLAG | xor2));
        assert_eq!(db.page(2), Some(p(2, 9)));
        assert_eq!(db.page(0), None);
        assert_eq!(db.page(4), None);
        assert_eq!(db.len(), 3);
        db.truncate(1);
        assert_eq!(db.value(), p(1, 1));
        assert_eq!(db.len(), 1);
        db.truncate(5);
        assert_eq!(db.len(), 1);
        db.set_page(0, p(0, 0));
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn db_checksum_matches_go_rolling_form() {
        // Go: chksum = ChecksumFlag | (chksum ^ ChecksumPage(pgno, data)) for each page.
        let pages: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 512]).collect();
        let mut rolling = 0u64;
        for (i, d) in pages.iter().enumerate() {
            rolling = CHECKSUM_FLAG | (rolling ^ page_checksum(i as u32 + 1, d).0);
        }
        let db: Vec<u8> = pages.concat();
        assert_eq!(
            DbChecksum::from_database(512, &db).value(),
            Checksum(rolling)
        );
    }

    #[test]
    fn db_checksum_table_round_trip() {
        let db: DbChecksum = (1..=100u32)
            .map(|n| (n, page_checksum(n, &n.to_be_bytes())))
            .collect();
        let bytes = db.to_bytes();
        assert_eq!(bytes.len(), 12 + 800 + 8);
        let back = DbChecksum::from_bytes(&bytes).unwrap();
        assert_eq!(back, db);
        assert_eq!(back.value(), db.value());
        assert_eq!(
            DbChecksum::from_bytes(&DbChecksum::new().to_bytes()).unwrap(),
            DbChecksum::new()
        );
    }

    #[test]
    fn db_checksum_table_corruption() {
        let db: DbChecksum = (1..=3u32).map(|n| (n, page_checksum(n, &[]))).collect();
        let bytes = db.to_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(matches!(
                DbChecksum::from_bytes(&b),
                Err(LtxError::InvalidChecksumTable { .. })
            ));
        }
        for n in 0..bytes.len() {
            assert!(DbChecksum::from_bytes(&bytes[..n]).is_err());
        }
    }
}
