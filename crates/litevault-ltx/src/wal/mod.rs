//! Pure parser for SQLite write-ahead-log (`-wal`) files.
//!
//! Everything here works on byte slices the caller has read; the module does
//! no I/O. The layout follows SQLite's file-format documentation:
//!
//! * a 32-byte [`WalHeader`] (magic, format version, page size, checkpoint
//!   sequence, two salts and a checksum over the first 24 bytes), then
//! * frames of [`FRAME_HEADER_SIZE`] + page-size bytes: a [`FrameHeader`]
//!   (page number, commit size, the two salts and a cumulative checksum)
//!   followed by the page image.
//!
//! All integers are stored big-endian; only the *checksum* reads the data as
//! little- or big-endian words, as selected by the magic number.
//!
//! A frame is valid only when its salts equal the header's, its page number
//! is non-zero and its stored checksum equals the checksum computed over the
//! frame header's first 8 bytes and its page, seeded with the previous
//! frame's checksum (the header's for the first frame). A transaction is
//! committed only once a valid frame with a non-zero commit size (the
//! database size in pages) ends it. SQLite itself stops reading a WAL at the
//! first frame that does not verify, and so does [`scan_committed`]: frames
//! after that point are torn writes or leftovers of an older WAL generation.

mod builder;
mod checksum;
mod index;
#[cfg(test)]
mod tests;

use std::fmt;

pub use builder::WalBuilder;
pub use checksum::wal_checksum;
pub use index::{WAL_INDEX_HEADERS_SIZE, WalIndexError, WalIndexHeader};

/// Size of the WAL file header in bytes.
pub const WAL_HEADER_SIZE: usize = 32;
/// Size of each frame header in bytes (the page image follows it).
pub const FRAME_HEADER_SIZE: usize = 24;
/// Magic number of a WAL whose checksums use little-endian words.
pub const WAL_MAGIC_LE: u32 = 0x377f_0682;
/// Magic number of a WAL whose checksums use big-endian words.
pub const WAL_MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL file-format version SQLite has ever written.
pub const WAL_FORMAT_VERSION: u32 = 3_007_000;
/// Smallest SQLite page size.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest SQLite page size.
pub const MAX_PAGE_SIZE: u32 = 65_536;

/// A WAL checksum: the two running sums `(s0, s1)` of [`wal_checksum`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct WalChecksum(pub u32, pub u32);

impl fmt::Display for WalChecksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}:{:08x}", self.0, self.1)
    }
}

/// Why a WAL header was rejected.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum WalError {
    /// Fewer than [`WAL_HEADER_SIZE`] bytes were supplied.
    #[error(
        "WAL header truncated: need {needed} bytes but only {found} are available; \
         the -wal file is empty or its header is still being written, \
         so read it again after the next write transaction"
    )]
    TooShort {
        /// Bytes required ([`WAL_HEADER_SIZE`]).
        needed: usize,
        /// Bytes supplied.
        found: usize,
    },
    /// The first four bytes are not a WAL magic number.
    #[error(
        "bad WAL magic number {found:#010x} (expected 0x377f0682 or 0x377f0683); \
         this is not a SQLite WAL file, check that the path names the database's -wal file"
    )]
    BadMagic {
        /// The value found at offset 0.
        found: u32,
    },
    /// The header verifies but names a file-format version other than 3007000.
    #[error(
        "unsupported WAL format version {found} (only 3007000 is supported); \
         the WAL was written by an incompatible SQLite build, \
         checkpoint it with that build before replicating"
    )]
    UnsupportedVersion {
        /// The value found at offset 4.
        found: u32,
    },
    /// The header verifies but its page size is not a power of two in 512..=65536.
    #[error(
        "invalid WAL page size {found} (must be a power of two from 512 to 65536); \
         the WAL header is corrupt, so checkpoint or recreate the WAL with SQLite"
    )]
    BadPageSize {
        /// The value found at offset 8.
        found: u32,
    },
    /// The header's stored checksum does not match its first 24 bytes.
    #[error(
        "WAL header checksum mismatch (stored {stored}, computed {computed}); \
         the header is torn or corrupt and SQLite will ignore this WAL, \
         so read it again after the writer's next transaction"
    )]
    HeaderChecksum {
        /// Checksum stored at offsets 24..32.
        stored: WalChecksum,
        /// Checksum computed over offsets 0..24.
        computed: WalChecksum,
    },
}

/// The 32-byte header at the start of a WAL file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    /// True for magic `0x377f0683` (checksums over big-endian words), false
    /// for `0x377f0682` (little-endian words).
    pub big_endian_checksums: bool,
    /// File-format version; always [`WAL_FORMAT_VERSION`] for a parsed header.
    pub version: u32,
    /// Database page size in bytes (SQLite stores 65536 literally here).
    pub page_size: u32,
    /// Checkpoint sequence number, incremented each time the WAL restarts.
    pub checkpoint_seq: u32,
    /// Salt-1: incremented each time the WAL restarts.
    pub salt1: u32,
    /// Salt-2: randomised each time the WAL restarts.
    pub salt2: u32,
    /// Checksum over the header's first 24 bytes; seeds the first frame's checksum.
    pub checksum: WalChecksum,
}

impl WalHeader {
    /// Build a header for a new WAL generation, computing its checksum.
    ///
    /// Fails with [`WalError::BadPageSize`] unless `page_size` is a power of
    /// two from 512 to 65536.
    pub fn new(
        big_endian_checksums: bool,
        page_size: u32,
        checkpoint_seq: u32,
        salt1: u32,
        salt2: u32,
    ) -> Result<WalHeader, WalError> {
        if !is_valid_page_size(page_size) {
            return Err(WalError::BadPageSize { found: page_size });
        }
        let mut header = WalHeader {
            big_endian_checksums,
            version: WAL_FORMAT_VERSION,
            page_size,
            checkpoint_seq,
            salt1,
            salt2,
            checksum: WalChecksum(0, 0),
        };
        header.checksum = header.compute_checksum();
        Ok(header)
    }

    /// The header SQLite writes when it restarts this WAL from the beginning:
    /// checkpoint sequence and salt-1 incremented, salt-2 replaced by `salt2`
    /// (SQLite uses a random value), checksum recomputed.
    pub fn next_generation(&self, salt2: u32) -> WalHeader {
        let mut header = WalHeader {
            checkpoint_seq: self.checkpoint_seq.wrapping_add(1),
            salt1: self.salt1.wrapping_add(1),
            salt2,
            ..*self
        };
        header.checksum = header.compute_checksum();
        header
    }

    /// Parse and verify the header at the start of `bytes` (extra bytes are
    /// ignored). Checks, in order: length, magic, header checksum, format
    /// version and page size.
    pub fn parse(bytes: &[u8]) -> Result<WalHeader, WalError> {
        let Some(raw) = bytes.first_chunk::<WAL_HEADER_SIZE>() else {
            return Err(WalError::TooShort {
                needed: WAL_HEADER_SIZE,
                found: bytes.len(),
            });
        };
        let word = |i: usize| be_u32(raw, i * 4);
        let magic = word(0);
        let big_endian_checksums = match magic {
            WAL_MAGIC_LE => false,
            WAL_MAGIC_BE => true,
            found => return Err(WalError::BadMagic { found }),
        };
        let stored = WalChecksum(word(6), word(7));
        let computed = wal_checksum(big_endian_checksums, WalChecksum(0, 0), &raw[..24]);
        if stored != computed {
            return Err(WalError::HeaderChecksum { stored, computed });
        }
        let version = word(1);
        if version != WAL_FORMAT_VERSION {
            return Err(WalError::UnsupportedVersion { found: version });
        }
        let page_size = word(2);
        if !is_valid_page_size(page_size) {
            return Err(WalError::BadPageSize { found: page_size });
        }
        Ok(WalHeader {
            big_endian_checksums,
            version,
            page_size,
            checkpoint_seq: word(3),
            salt1: word(4),
            salt2: word(5),
            checksum: stored,
        })
    }

    /// Encode the header as stored on disk. The `checksum` field is written
    /// as-is, so `parse(&h.encode())` round-trips any parsed header; use
    /// [`WalHeader::new`] or [`WalHeader::compute_checksum`] to get a
    /// correct checksum for a hand-built header.
    pub fn encode(&self) -> [u8; WAL_HEADER_SIZE] {
        let mut out = [0u8; WAL_HEADER_SIZE];
        let magic = if self.big_endian_checksums {
            WAL_MAGIC_BE
        } else {
            WAL_MAGIC_LE
        };
        let words = [
            magic,
            self.version,
            self.page_size,
            self.checkpoint_seq,
            self.salt1,
            self.salt2,
            self.checksum.0,
            self.checksum.1,
        ];
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// The checksum this header's first 24 bytes should carry.
    pub fn compute_checksum(&self) -> WalChecksum {
        wal_checksum(
            self.big_endian_checksums,
            WalChecksum(0, 0),
            &self.encode()[..24],
        )
    }

    /// Size of one frame (frame header plus page) in bytes.
    pub fn frame_size(&self) -> usize {
        FRAME_HEADER_SIZE + self.page_size as usize
    }

    /// Byte offset in the WAL file of the 0-based frame `frame_index`.
    /// (Saturates: no WAL file is anywhere near `u64::MAX` bytes.)
    pub fn frame_offset(&self, frame_index: u64) -> u64 {
        frame_index
            .saturating_mul(self.frame_size() as u64)
            .saturating_add(WAL_HEADER_SIZE as u64)
    }

    /// True if `frame` carries this header's salts, i.e. could belong to
    /// this WAL generation.
    pub fn salts_match(&self, frame: &FrameHeader) -> bool {
        frame.salt1 == self.salt1 && frame.salt2 == self.salt2
    }
}

/// The 24-byte header in front of every page image in the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Database page number (1-based) of the page image that follows.
    pub pgno: u32,
    /// For a commit frame, the database size in pages after the commit;
    /// zero for every other frame.
    pub commit: u32,
    /// Salt-1 copied from the WAL header that was current when written.
    pub salt1: u32,
    /// Salt-2 copied from the WAL header that was current when written.
    pub salt2: u32,
    /// Cumulative checksum up to and including this frame.
    pub checksum: WalChecksum,
}

impl FrameHeader {
    /// Decode a frame header (no verification).
    pub fn parse(bytes: &[u8; FRAME_HEADER_SIZE]) -> FrameHeader {
        FrameHeader {
            pgno: be_u32(bytes, 0),
            commit: be_u32(bytes, 4),
            salt1: be_u32(bytes, 8),
            salt2: be_u32(bytes, 12),
            checksum: WalChecksum(be_u32(bytes, 16), be_u32(bytes, 20)),
        }
    }

    /// Encode the frame header as stored on disk.
    pub fn encode(&self) -> [u8; FRAME_HEADER_SIZE] {
        let mut out = [0u8; FRAME_HEADER_SIZE];
        let words = [
            self.pgno,
            self.commit,
            self.salt1,
            self.salt2,
            self.checksum.0,
            self.checksum.1,
        ];
        for (chunk, w) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// True if this frame ends a transaction.
    pub fn is_commit(&self) -> bool {
        self.commit != 0
    }
}

/// Where a scan starts: the byte offset of the next frame and the cumulative
/// checksum of the frame before it (or the header's checksum at offset 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalCursor {
    /// Byte offset in the WAL file of the next frame to read.
    pub offset: u64,
    /// Cumulative checksum of the frame ending at `offset` (the header's
    /// checksum when `offset` is [`WAL_HEADER_SIZE`]).
    pub checksum: WalChecksum,
}

impl WalCursor {
    /// The position of the first frame of the WAL generation `h` describes.
    pub fn start(h: &WalHeader) -> WalCursor {
        WalCursor {
            offset: WAL_HEADER_SIZE as u64,
            checksum: h.checksum,
        }
    }
}

/// One frame of a committed transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalFrameRef {
    /// Database page number the frame's page image belongs to.
    pub pgno: u32,
    /// Byte offset of the frame header in the WAL file.
    pub offset: u64,
}

impl WalFrameRef {
    /// Byte offset of the frame's page image in the WAL file.
    pub fn page_offset(&self) -> u64 {
        self.offset + FRAME_HEADER_SIZE as u64
    }
}

/// One committed transaction found by a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalTxn {
    /// The transaction's frames in WAL order. A page may appear more than
    /// once; the last occurrence wins.
    pub frames: Vec<WalFrameRef>,
    /// Database size in pages after this transaction (from its commit frame).
    pub commit: u32,
    /// Position just after the commit frame: where the next scan resumes.
    pub end: WalCursor,
}

/// Why a scan stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// The supplied bytes ended exactly at a frame boundary.
    EndOfData,
    /// The frame at `offset` carries other salts: it is a leftover from an
    /// older WAL generation (or garbage).
    SaltMismatch {
        /// Byte offset of the rejected frame in the WAL file.
        offset: u64,
    },
    /// The frame at `offset` has this generation's salts but page number 0,
    /// which SQLite never writes; it is treated as invalid like SQLite does.
    InvalidPageNumber {
        /// Byte offset of the rejected frame in the WAL file.
        offset: u64,
    },
    /// The frame at `offset` has this generation's salts but its checksum
    /// does not verify: a torn or corrupt write.
    ChecksumMismatch {
        /// Byte offset of the rejected frame in the WAL file.
        offset: u64,
    },
    /// Fewer than a whole frame's bytes remain at `offset`: the writer is
    /// mid-append, or the caller's slice ended inside a frame.
    TornFrame {
        /// Byte offset of the incomplete frame in the WAL file.
        offset: u64,
    },
}

impl ScanStop {
    /// Byte offset of the frame that stopped the scan, if one did.
    pub fn offset(&self) -> Option<u64> {
        match *self {
            ScanStop::EndOfData => None,
            ScanStop::SaltMismatch { offset }
            | ScanStop::InvalidPageNumber { offset }
            | ScanStop::ChecksumMismatch { offset }
            | ScanStop::TornFrame { offset } => Some(offset),
        }
    }
}

/// Result of [`scan_committed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalScan {
    /// Committed transactions, in WAL order.
    pub txns: Vec<WalTxn>,
    /// Position after the last committed transaction (the scan's start
    /// cursor if none was found): where the next scan should resume.
    pub end: WalCursor,
    /// Frames after `end` that verified but are not (yet) followed by a
    /// commit frame. They are not part of any returned transaction.
    pub uncommitted_frames: u64,
    /// Why the scan stopped.
    pub stop: ScanStop,
}

/// Scan `bytes`, which are the WAL file's contents starting at byte offset
/// `cursor.offset` (the caller may pass a slice of the file starting there),
/// returning every committed transaction whose frames all verify, in order,
/// stopping at the first invalid frame. Trailing verified-but-uncommitted
/// frames are reported separately (count) but not returned as transactions.
///
/// `cursor` must be [`WalCursor::start`] or a cursor previously returned for
/// the same WAL generation (e.g. [`WalScan::end`] or [`WalTxn::end`]);
/// use [`frame_ends_at`] to check that a saved cursor is still valid.
/// Offsets in the result are absolute WAL file offsets.
pub fn scan_committed(header: &WalHeader, cursor: WalCursor, bytes: &[u8]) -> WalScan {
    let mut scanner = WalScanner::new(*header, cursor);
    let stop = scanner.feed(bytes).unwrap_or(ScanStop::EndOfData);
    scanner.finish(stop)
}

/// The incremental form of [`scan_committed`]: feed the WAL in chunks of
/// whole frames, in order, without keeping them. Only the frame list (page
/// number and offset of each frame) is retained, so a transaction of any size
/// is scanned in constant memory.
#[derive(Clone, Debug)]
pub struct WalScanner {
    header: WalHeader,
    txns: Vec<WalTxn>,
    pending: Vec<WalFrameRef>,
    end: WalCursor,
    running: WalChecksum,
    offset: u64,
}

impl WalScanner {
    /// Starts a scan at `cursor` (see [`scan_committed`] for what it may be).
    pub fn new(header: WalHeader, cursor: WalCursor) -> WalScanner {
        WalScanner {
            header,
            txns: Vec::new(),
            pending: Vec::new(),
            end: cursor,
            running: cursor.checksum,
            offset: cursor.offset,
        }
    }

    /// The file offset of the next frame to feed.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Verifies the frames in `bytes` (the WAL file's contents starting at
    /// [`offset`](Self::offset)). Returns `None` when all of them verified
    /// and the caller may feed more, or why the scan stops. A trailing partial
    /// frame stops the scan as torn.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<ScanStop> {
        let frame_size = self.header.frame_size();
        let big_endian = self.header.big_endian_checksums;
        let mut rest = bytes;
        loop {
            if rest.is_empty() {
                return None;
            }
            let offset = self.offset;
            if rest.len() < frame_size {
                return Some(ScanStop::TornFrame { offset });
            }
            let (frame, tail) = rest.split_at(frame_size);
            // A frame is a header and a page of at least 512 bytes.
            let Some((raw_header, page)) = frame.split_first_chunk::<FRAME_HEADER_SIZE>() else {
                return Some(ScanStop::TornFrame { offset });
            };
            let fh = FrameHeader::parse(raw_header);
            if !self.header.salts_match(&fh) {
                return Some(ScanStop::SaltMismatch { offset });
            }
            if fh.pgno == 0 {
                return Some(ScanStop::InvalidPageNumber { offset });
            }
            let sum = wal_checksum(big_endian, self.running, &raw_header[..8]);
            let sum = wal_checksum(big_endian, sum, page);
            if sum != fh.checksum {
                return Some(ScanStop::ChecksumMismatch { offset });
            }
            self.pending.push(WalFrameRef {
                pgno: fh.pgno,
                offset,
            });
            self.running = sum;
            self.offset += frame_size as u64;
            rest = tail;
            if fh.is_commit() {
                self.end = WalCursor {
                    offset: self.offset,
                    checksum: sum,
                };
                // Exact-size copy; `pending` keeps its buffer for the next txn.
                self.txns.push(WalTxn {
                    frames: self.pending.to_vec(),
                    commit: fh.commit,
                    end: self.end,
                });
                self.pending.clear();
            }
        }
    }

    /// Ends the scan with the reason it stopped.
    pub fn finish(self, stop: ScanStop) -> WalScan {
        WalScan {
            txns: self.txns,
            end: self.end,
            uncommitted_frames: self.pending.len() as u64,
            stop,
        }
    }
}

/// Check that the frame ending at `cursor.offset` in the file still has the
/// cumulative checksum `cursor.checksum` and the header's salts: used to
/// prove a saved position still belongs to this WAL generation.
/// `frame_bytes` = the frame (header+page) immediately before
/// `cursor.offset`.
///
/// For a cursor at the first frame (`offset == 32`) there is no preceding
/// frame: `frame_bytes` must be empty and `cursor.checksum` must equal the
/// header's checksum. Returns false for misaligned offsets or a
/// `frame_bytes` that is not exactly one frame long.
pub fn frame_ends_at(header: &WalHeader, cursor: WalCursor, frame_bytes: &[u8]) -> bool {
    let first = WAL_HEADER_SIZE as u64;
    if cursor.offset == first {
        return frame_bytes.is_empty() && cursor.checksum == header.checksum;
    }
    let frame_size = header.frame_size() as u64;
    if cursor.offset < first + frame_size || !(cursor.offset - first).is_multiple_of(frame_size) {
        return false;
    }
    if frame_bytes.len() as u64 != frame_size {
        return false;
    }
    let Some(raw_header) = frame_bytes.first_chunk::<FRAME_HEADER_SIZE>() else {
        return false;
    };
    let fh = FrameHeader::parse(raw_header);
    fh.pgno != 0 && header.salts_match(&fh) && fh.checksum == cursor.checksum
}

fn is_valid_page_size(page_size: u32) -> bool {
    (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) && page_size.is_power_of_two()
}

/// The big-endian `u32` at `at`; 0 past the end (callers read fixed-size
/// headers, always long enough).
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..)
        .and_then(|b| b.first_chunk::<4>())
        .map_or(0, |b| u32::from_be_bytes(*b))
}
