//! The error type of the LTX codec.

use super::{Checksum, Txid};

/// Everything that can go wrong reading, writing or compacting LTX files.
///
/// Each message says what is wrong and what to do about it.
#[non_exhaustive]
#[derive(thiserror::Error, Debug)]
pub enum LtxError {
    /// The file does not start with `LTX1`.
    #[error(
        "not an LTX file: it starts with {found:02x?} instead of \"LTX1\"; check that the object is an .ltx file"
    )]
    InvalidMagic {
        /// The first four bytes found.
        found: [u8; 4],
    },

    /// The header asks for a format version this crate does not know.
    #[error(
        "unsupported LTX format version {version}; litevault reads versions 1 to 3 and writes 3"
    )]
    UnsupportedVersion {
        /// The version asked for.
        version: u32,
    },

    /// The header has flag bits this crate does not know.
    #[error(
        "unsupported LTX header flags 0x{flags:08x}: the file was written by a newer or different LTX writer; upgrade litevault"
    )]
    UnsupportedFlags {
        /// The flags found.
        flags: u32,
    },

    /// A header field is out of range or inconsistent.
    #[error("invalid LTX header: {reason}")]
    InvalidHeader {
        /// What is wrong.
        reason: String,
    },

    /// A page frame is malformed.
    #[error(
        "invalid LTX page frame (page {pgno}, byte {offset}): {reason}; the file is corrupt, fetch it again or use another copy"
    )]
    InvalidPage {
        /// The page number, 0 when unknown.
        pgno: u32,
        /// Byte offset of the page header in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// The page index at the end of the file does not describe the pages read.
    #[error(
        "invalid LTX page index: {reason}; the file is corrupt, fetch it again or use another copy"
    )]
    InvalidPageIndex {
        /// What is wrong.
        reason: String,
    },

    /// The trailer is malformed, or data follows it.
    #[error("invalid LTX trailer: {reason}")]
    InvalidTrailer {
        /// What is wrong.
        reason: String,
    },

    /// A checksum does not match.
    #[error(
        "{what} mismatch: expected {expected}, computed {actual}; the data is corrupt or files were applied out of order"
    )]
    ChecksumMismatch {
        /// Which checksum.
        what: String,
        /// The value stored (or required).
        expected: Checksum,
        /// The value computed.
        actual: Checksum,
    },

    /// The data ended early.
    #[error(
        "LTX data ends early while reading {what} at byte {offset}; the file was cut short, fetch it again"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Byte offset where the data ended.
        offset: u64,
    },

    /// LZ4 data cannot be decompressed, or (encoder) compressed.
    #[error("bad LZ4 data for page {pgno}: {reason}; the file is corrupt, fetch it again")]
    Lz4 {
        /// The page number, 0 when unknown.
        pgno: u32,
        /// What is wrong.
        reason: String,
    },

    /// Files to be merged or applied leave a gap or overlap in TXIDs.
    #[error(
        "LTX files are not contiguous: a file starting at TXID {next_min} cannot follow one ending at {prev_max}; list the replica and supply the missing or overlapping files in order"
    )]
    NotContiguous {
        /// Max TXID of the earlier file.
        prev_max: Txid,
        /// Min TXID of the later file.
        next_min: Txid,
    },

    /// Pages are not in the order the format requires.
    #[error(
        "page {pgno} follows page {prev}: pages must be in strictly ascending order (snapshots: every page from 1, skipping the lock page)"
    )]
    PageOutOfOrder {
        /// The previous page number (0 if none).
        prev: u32,
        /// The offending page number.
        pgno: u32,
    },

    /// A page lies beyond the database size of the header.
    #[error("page {pgno} is beyond the database size of {commit} pages given in the header")]
    PageOutOfBounds {
        /// The offending page number.
        pgno: u32,
        /// The header's commit (database size in pages).
        commit: u32,
    },

    /// The SQLite lock page was passed to the encoder.
    #[error("page {pgno} is the SQLite lock page, which is never stored in LTX files; skip it")]
    LockPage {
        /// The lock page number.
        pgno: u32,
    },

    /// A page buffer or an input file has the wrong page size.
    #[error("page size mismatch: expected {expected} bytes, got {actual}")]
    PageSizeMismatch {
        /// The page size required.
        expected: u32,
        /// The size given.
        actual: usize,
    },

    /// A snapshot does not hold every page of the database.
    #[error(
        "snapshot ends at page {last_pgno} but the database has {commit} pages; a snapshot must hold every page"
    )]
    IncompleteSnapshot {
        /// The last page seen (0 if none).
        last_pgno: u32,
        /// The header's commit.
        commit: u32,
    },

    /// Compaction inputs leave a page of the merged database unwritten: a
    /// later input committed a smaller database and no input after it
    /// writes the page again, though the newest input's size includes it
    /// (or a snapshot's inputs never write it at all).
    #[error(
        "compacting {files}: page {pgno} of the {commit}-page database is written by no input that could set it (the smallest size an input committed is {floor} pages, and a compacted file cannot say the database was truncated in between); the inputs do not form a history SQLite wrote (a damaged or forged file), so they cannot be compacted"
    )]
    PageNeverWritten {
        /// The TXID range of the inputs.
        files: String,
        /// The first page never written.
        pgno: u32,
        /// The smallest size an input committed.
        floor: u32,
        /// The newest input's size.
        commit: u32,
    },

    /// [`compact`](super::compact) was given no inputs.
    #[error("compaction needs at least one input file")]
    NoInputs,

    /// A checksum that cannot be derived from the inputs was needed.
    #[error("missing checksum: {reason}")]
    MissingChecksum {
        /// What is missing and how to supply it.
        reason: String,
    },

    /// A persisted [`DbChecksum`](super::DbChecksum) table is unreadable.
    #[error("invalid checksum table: {reason}; delete it and let it be rebuilt from the database")]
    InvalidChecksumTable {
        /// What is wrong.
        reason: String,
    },

    /// A TXID string is not 1 to 16 hex digits.
    #[error("invalid TXID {input:?}: expected 1 to 16 hex digits, such as 000000000000001e")]
    InvalidTxid {
        /// The rejected string.
        input: String,
    },

    /// The encoder or decoder was used after it returned an error.
    #[error("the LTX {what} failed earlier and cannot be used again; start over with a new one")]
    Poisoned {
        /// "encoder" or "decoder".
        what: &'static str,
    },

    /// Reading or writing the underlying stream failed.
    #[error("LTX I/O error: {0}")]
    Io(#[from] std::io::Error),
}
