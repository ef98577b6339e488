//! Construction of well-formed WAL bytes, for tests and fixtures.

use super::{FRAME_HEADER_SIZE, FrameHeader, WalChecksum, WalCursor, WalHeader, wal_checksum};

/// Builds WAL file bytes with correct checksums, in either byte order.
///
/// Meant for tests (including other modules' tests): start from a
/// [`WalHeader`] (usually from [`WalHeader::new`]), append frames, then take
/// the bytes. Corrupt cases are made by editing the returned bytes.
///
/// ```
/// use litevault_ltx::wal::{WalBuilder, WalCursor, WalHeader, scan_committed};
///
/// let header = WalHeader::new(false, 512, 0, 1, 2).unwrap();
/// let page = vec![7u8; 512];
/// let wal = WalBuilder::build(&header, [(1, &page, 0), (2, &page, 2)]);
/// let scan = scan_committed(&header, WalCursor::start(&header), &wal[32..]);
/// assert_eq!(scan.txns.len(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct WalBuilder {
    header: WalHeader,
    bytes: Vec<u8>,
    checksum: WalChecksum,
}

impl WalBuilder {
    /// Start a WAL containing just `header` (encoded as-is).
    pub fn new(header: WalHeader) -> WalBuilder {
        WalBuilder {
            header,
            bytes: header.encode().to_vec(),
            checksum: header.checksum,
        }
    }

    /// Build a whole WAL from `header` and `(pgno, page, commit)` frames,
    /// where `commit` is the database size in pages for a commit frame and
    /// 0 otherwise.
    ///
    /// # Panics
    ///
    /// Panics if a page is not exactly `header.page_size` bytes long.
    pub fn build<P: AsRef<[u8]>>(
        header: &WalHeader,
        frames: impl IntoIterator<Item = (u32, P, u32)>,
    ) -> Vec<u8> {
        let mut builder = WalBuilder::new(*header);
        for (pgno, page, commit) in frames {
            builder.frame(pgno, page.as_ref(), commit);
        }
        builder.into_bytes()
    }

    /// Append one frame with this generation's salts and the correct
    /// cumulative checksum.
    ///
    /// # Panics
    ///
    /// Panics if `page` is not exactly `page_size` bytes long.
    pub fn frame(&mut self, pgno: u32, page: &[u8], commit: u32) -> &mut WalBuilder {
        assert_eq!(
            page.len(),
            self.header.page_size as usize,
            "WAL frame page must be exactly page_size bytes"
        );
        let mut fh = FrameHeader {
            pgno,
            commit,
            salt1: self.header.salt1,
            salt2: self.header.salt2,
            checksum: WalChecksum(0, 0),
        };
        let big_endian = self.header.big_endian_checksums;
        let sum = wal_checksum(big_endian, self.checksum, &fh.encode()[..8]);
        fh.checksum = wal_checksum(big_endian, sum, page);
        self.checksum = fh.checksum;
        self.bytes.reserve(FRAME_HEADER_SIZE + page.len());
        self.bytes.extend_from_slice(&fh.encode());
        self.bytes.extend_from_slice(page);
        self
    }

    /// The header the WAL was started with.
    pub fn header(&self) -> &WalHeader {
        &self.header
    }

    /// Position just after the last frame appended so far.
    pub fn cursor(&self) -> WalCursor {
        WalCursor {
            offset: self.bytes.len() as u64,
            checksum: self.checksum,
        }
    }

    /// The WAL bytes built so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Finish and return the WAL bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}
