//! The header of SQLite's wal-index (the `-shm` file): what SQLite itself
//! counts as committed.
//!
//! A WAL file can hold frames that verify (salts and checksum chain) and
//! end with a commit frame, yet are not committed: a writer killed after
//! appending its frames but before publishing them in the wal-index leaves
//! exactly that, and the next writer overwrites them. While any connection
//! keeps the wal-index open, SQLite never rebuilds it from the WAL, so such
//! frames stay invisible to every reader. Only the wal-index header says
//! where the committed WAL ends: `mx_frame`, with the cumulative checksum of
//! that frame and the database size after it.
//!
//! Layout (SQLite's `walformat.html`, section 2): two copies of a 48-byte
//! header in the machine's byte order, written second copy first; a reader
//! takes them only when both are equal and the first 40 bytes checksum to
//! the last 8. The salts are the WAL header's bytes, copied as they are.

use super::{WalChecksum, WalHeader, wal_checksum};

/// Bytes of the two header copies at the start of the `-shm` file.
pub const WAL_INDEX_HEADERS_SIZE: usize = 96;

/// One wal-index header, as SQLite published it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalIndexHeader {
    /// Index of the last committed frame (1-based); 0 when no frame of the
    /// current WAL generation is committed.
    pub mx_frame: u32,
    /// Database size in pages after the last committed frame.
    pub n_page: u32,
    /// Cumulative WAL checksum of frame `mx_frame`.
    pub frame_checksum: WalChecksum,
    /// The WAL generation's salts, as the WAL header stores them.
    pub salt1: u32,
    /// Second salt.
    pub salt2: u32,
    /// Page size (0 when the index has never seen a frame).
    pub page_size: u32,
}

/// Why the wal-index header cannot be taken now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalIndexError {
    /// Fewer than [`WAL_INDEX_HEADERS_SIZE`] bytes.
    TooShort,
    /// The two copies differ: a writer is publishing a commit. Read again.
    Changing,
    /// The header was never initialised (no connection has run recovery).
    NotInitialised,
    /// The checksum does not verify: torn, or not a wal-index.
    BadChecksum,
}

impl WalIndexHeader {
    /// Parses the first [`WAL_INDEX_HEADERS_SIZE`] bytes of a `-shm` file
    /// written by a machine of this byte order.
    pub fn parse(bytes: &[u8]) -> Result<WalIndexHeader, WalIndexError> {
        let Some(raw) = bytes.first_chunk::<WAL_INDEX_HEADERS_SIZE>() else {
            return Err(WalIndexError::TooShort);
        };
        let (first, second) = raw.split_at(48);
        if first != second {
            return Err(WalIndexError::Changing);
        }
        let word = |at: usize| {
            u32::from_ne_bytes([first[at], first[at + 1], first[at + 2], first[at + 3]])
        };
        if first[12] == 0 {
            return Err(WalIndexError::NotInitialised);
        }
        // SQLite checksums its own header in native byte order.
        let native_big = cfg!(target_endian = "big");
        let computed = wal_checksum(native_big, WalChecksum(0, 0), &first[..40]);
        if computed != WalChecksum(word(40), word(44)) {
            return Err(WalIndexError::BadChecksum);
        }
        let be = |at: usize| {
            u32::from_be_bytes([first[at], first[at + 1], first[at + 2], first[at + 3]])
        };
        let sz = u16::from_ne_bytes([first[14], first[15]]) as u32;
        // 65536 is stored as 1 (`(sz & 0xff00) | (sz >> 16)`).
        let page_size = if sz == 1 { 65_536 } else { sz };
        Ok(WalIndexHeader {
            mx_frame: word(16),
            n_page: word(20),
            frame_checksum: WalChecksum(word(24), word(28)),
            salt1: be(32),
            salt2: be(36),
            page_size,
        })
    }

    /// Whether this index describes the WAL generation `h` begins.
    pub fn describes(&self, h: &WalHeader) -> bool {
        self.salt1 == h.salt1 && self.salt2 == h.salt2
    }

    /// Byte offset in the WAL file just past the last committed frame of
    /// the generation `h` begins (the header's end when none is).
    pub fn committed_end(&self, h: &WalHeader) -> u64 {
        h.frame_offset(self.mx_frame as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as SQLite writes it, in this machine's byte order.
    fn encode(h: &WalIndexHeader) -> [u8; WAL_INDEX_HEADERS_SIZE] {
        let mut one = [0u8; 48];
        one[0..4].copy_from_slice(&3_007_000u32.to_ne_bytes());
        one[8..12].copy_from_slice(&7u32.to_ne_bytes());
        one[12] = 1;
        let sz = if h.page_size == 65_536 {
            1u16
        } else {
            h.page_size as u16
        };
        one[14..16].copy_from_slice(&sz.to_ne_bytes());
        one[16..20].copy_from_slice(&h.mx_frame.to_ne_bytes());
        one[20..24].copy_from_slice(&h.n_page.to_ne_bytes());
        one[24..28].copy_from_slice(&h.frame_checksum.0.to_ne_bytes());
        one[28..32].copy_from_slice(&h.frame_checksum.1.to_ne_bytes());
        one[32..36].copy_from_slice(&h.salt1.to_be_bytes());
        one[36..40].copy_from_slice(&h.salt2.to_be_bytes());
        let c = wal_checksum(cfg!(target_endian = "big"), WalChecksum(0, 0), &one[..40]);
        one[40..44].copy_from_slice(&c.0.to_ne_bytes());
        one[44..48].copy_from_slice(&c.1.to_ne_bytes());
        let mut out = [0u8; WAL_INDEX_HEADERS_SIZE];
        out[..48].copy_from_slice(&one);
        out[48..].copy_from_slice(&one);
        out
    }

    fn sample() -> WalIndexHeader {
        WalIndexHeader {
            mx_frame: 12,
            n_page: 40,
            frame_checksum: WalChecksum(0xdead_beef, 0x0102_0304),
            salt1: 0x1122_3344,
            salt2: 0x5566_7788,
            page_size: 4096,
        }
    }

    #[test]
    fn round_trip_and_torn_copies() {
        let h = sample();
        let mut raw = encode(&h);
        assert_eq!(WalIndexHeader::parse(&raw), Ok(h));
        let big = WalIndexHeader {
            page_size: 65_536,
            ..h
        };
        assert_eq!(WalIndexHeader::parse(&encode(&big)), Ok(big));
        assert_eq!(
            WalIndexHeader::parse(&raw[..95]),
            Err(WalIndexError::TooShort)
        );
        raw[48 + 16] ^= 1;
        assert_eq!(WalIndexHeader::parse(&raw), Err(WalIndexError::Changing));
        let mut raw = encode(&h);
        raw[16] ^= 1;
        raw[48 + 16] ^= 1;
        assert_eq!(WalIndexHeader::parse(&raw), Err(WalIndexError::BadChecksum));
        let mut raw = encode(&h);
        raw[12] = 0;
        raw[48 + 12] = 0;
        assert_eq!(
            WalIndexHeader::parse(&raw),
            Err(WalIndexError::NotInitialised)
        );
    }

    /// A real SQLite database in WAL mode: the index names the last commit.
    #[test]
    fn sqlite_publishes_its_commits_here() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);",
        )
        .unwrap();
        let shm = std::fs::read(dir.path().join("a.db-shm")).unwrap();
        let ix = WalIndexHeader::parse(&shm).unwrap();
        let wal = std::fs::read(dir.path().join("a.db-wal")).unwrap();
        let h = WalHeader::parse(&wal).unwrap();
        assert!(ix.describes(&h));
        assert_eq!(ix.page_size, h.page_size);
        assert_eq!(ix.committed_end(&h), wal.len() as u64);
        let scan = super::super::scan_committed(
            &h,
            super::super::WalCursor::start(&h),
            &wal[super::super::WAL_HEADER_SIZE..],
        );
        let last = scan.txns.last().unwrap();
        assert_eq!(last.end.checksum, ix.frame_checksum);
        assert_eq!(last.commit, ix.n_page);
    }
}
