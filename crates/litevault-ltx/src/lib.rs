//! Pure codecs for the two formats litevault moves between: LTX files, the format
//! Litestream v0.5 stores in a replica, and SQLite's write-ahead log.
//!
//! Nothing here touches files, sockets or async runtimes: the encoder writes to any
//! [`std::io::Write`], the decoder reads from any [`std::io::Read`], the WAL parser
//! works on byte slices the caller has read. The fuzz targets (`fuzz/`) drive this
//! crate directly.
//!
//! # Layout
//!
//! | module | what it holds |
//! |---|---|
//! | [`header`] | the 100-byte file header, the 16-byte trailer, [`Txid`] |
//! | [`checksum`] | CRC-64 page checksums and the rolling database checksum [`DbChecksum`] |
//! | [`encoder`] | [`Encoder`]: writes the current format (ltx v0.5.2) |
//! | [`decoder`] | [`Decoder`]: reads the current format and the older encodings |
//! | [`merge`] | the one page merge (newest page wins, truncation drops older pages) and [`merge::Coverage`] |
//! | [`compactor`] | [`compact`]: merges contiguous files into one, through [`merge`] |
//! | [`wal`] | SQLite `-wal` files: header, frames, the checksum chain, the last commit |
//!
//! # Example
//!
//! Write a one-page snapshot and read it back, checksums verified:
//!
//! ```
//! use litevault_ltx::{DbChecksum, Encoder, Header, Txid, decode_all, page_checksum};
//!
//! let page = vec![7u8; 4096];
//! let header = Header {
//!     page_size: 4096,
//!     commit: 1,
//!     min_txid: Txid(1),
//!     max_txid: Txid(1),
//!     ..Header::default()
//! };
//! let mut enc = Encoder::new(Vec::new(), header).unwrap();
//! enc.encode_page(1, &page).unwrap();
//! let sum: DbChecksum = [(1, page_checksum(1, &page))].into_iter().collect();
//! let (file, _trailer) = enc.finish(sum.value()).unwrap();
//!
//! let (h, pages, _trailer) = decode_all(&file).unwrap();
//! assert_eq!(h.max_txid, Txid(1));
//! assert_eq!(pages, vec![(1, page)]);
//! ```
//!
//! # File format (as written by Go `github.com/superfly/ltx` v0.5.2)
//!
//! All integers are big-endian.
//!
//! ```text
//! header   100 bytes  "LTX1" | flags u32 | page size u32 | commit u32 | min TXID u64 |
//!                     max TXID u64 | timestamp ms i64 | pre-apply checksum u64 |
//!                     WAL offset i64 | WAL size i64 | WAL salt1 u32 | WAL salt2 u32 |
//!                     node ID u64 | 20 zero bytes
//! pages    per page:  pgno u32 | flags u16 (= 1) | size u32 | LZ4 block (size bytes)
//!          end:       6 zero bytes (a page header with pgno 0 and flags 0)
//! index    per page:  uvarint pgno | uvarint file offset of the page header |
//!                     uvarint bytes from the page header to the end of the LZ4 block
//!          end:       uvarint 0, then u64 byte length of the index (entries + end marker)
//! trailer  16 bytes   post-apply checksum u64 | file checksum u64
//! ```
//!
//! The file checksum is CRC-64/GO-ISO (Go `hash/crc64` with the ISO table) with bit 63 set,
//! over every byte of the file up to the file checksum itself, except that each page
//! contributes its *uncompressed* data instead of the LZ4 bytes. The index offsets and sizes
//! count the real (compressed) bytes.
//!
//! Older encodings the [`Decoder`] also reads are described in [`decoder`].

pub mod checksum;
pub mod compactor;
pub mod decoder;
pub mod encoder;
mod error;
pub mod header;
mod input;
mod lz4frame;
pub mod merge;
mod varint;
pub mod wal;

#[cfg(test)]
mod testutil;

pub use checksum::{CHECKSUM_FLAG, Checksum, DbChecksum, page_checksum};
pub use compactor::{CompactOptions, compact};
pub use decoder::{Decoder, PageEncoding, decode_all};
pub use encoder::Encoder;
pub use error::LtxError;
pub use header::{Header, RESERVED_CHECKSUMS_MARKER, ReservedChecksums, Trailer, Txid};

/// The rolling checksums a file proves, wherever it keeps them: the header and
/// trailer fields, or the reserved header bytes of a Litestream-compatible
/// file. `None` for files without checksums (written by Litestream).
pub fn rolling_checksums(h: &Header, t: &Trailer) -> Option<(Checksum, Checksum)> {
    if !h.no_checksum() {
        Some((h.pre_apply_checksum, t.post_apply_checksum))
    } else {
        h.reserved_checksums.map(|r| (r.pre_apply, r.post_apply))
    }
}

/// The first four bytes of every LTX file.
pub const MAGIC: &[u8; 4] = b"LTX1";

/// The format version this crate writes (Go ltx `Version = 3`, ltx v0.5.x).
///
/// The version is not stored in the file: Go derives it from the library that reads the
/// file. [`Decoder`] reports 1 for LiteFS-era files (ltx v0.3.x), 2 for ltx v0.4.x files and
/// 3 for ltx v0.5.x files, based on the header flags and the shape of the first page frame.
pub const VERSION: u32 = 3;

/// Size of the file header in bytes.
pub const HEADER_SIZE: usize = 100;

/// Size of the file trailer in bytes.
pub const TRAILER_SIZE: usize = 16;

/// Size of a page header in the current format: `pgno u32 | flags u16`.
pub const PAGE_HEADER_SIZE: usize = 6;

/// Header flag of ltx v0.3.x (LiteFS): the page block is one LZ4 frame. Not valid in v0.5 files.
pub const HEADER_FLAG_COMPRESS_LZ4: u32 = 0x1;

/// Header flag (ltx v0.4+): the file carries no pre/post-apply checksums (both are zero).
/// Litestream v0.5 writes it on every file; litevault never does.
pub const HEADER_FLAG_NO_CHECKSUM: u32 = 0x2;

/// Page header flag (ltx v0.5.1+): a `u32` size follows the page header and the page is
/// one LZ4 *block*. Without it (ltx v0.5.0), the page is one LZ4 *frame*.
pub const PAGE_FLAG_SIZE: u16 = 0x1;

/// SQLite's PENDING_BYTE: the page holding this byte offset is never written.
pub const PENDING_BYTE: u32 = 0x4000_0000;

/// The SQLite lock page: the page that holds [`PENDING_BYTE`]. It never appears in an LTX
/// file and is all zeros in a restored database larger than 1 GiB.
///
/// ```
/// assert_eq!(litevault_ltx::lock_pgno(4096), 262_145);
/// ```
pub fn lock_pgno(page_size: u32) -> u32 {
    PENDING_BYTE / page_size.max(1) + 1
}

/// Whether `page_size` is a valid SQLite page size: a power of two from 512 to 65536.
pub fn is_valid_page_size(page_size: u32) -> bool {
    page_size.is_power_of_two() && (512..=65536).contains(&page_size)
}

/// The object name of an LTX file covering `min..=max`: `"%016x-%016x.ltx"`.
///
/// ```
/// use litevault_ltx::{Txid, format_filename};
/// assert_eq!(format_filename(Txid(1), Txid(0x1e)), "0000000000000001-000000000000001e.ltx");
/// ```
pub fn format_filename(min: Txid, max: Txid) -> String {
    format!("{min}-{max}.ltx")
}

/// Parses an LTX file name made by [`format_filename`]. Like Go's `ParseFilename`, it takes
/// exactly 16 lowercase hex digits on each side; anything else gives `None`. So does a
/// range no LTX file can cover: TXIDs start at 1 (a file starting at 0 would continue a
/// state before the empty database), and the range must not run backwards.
///
/// ```
/// use litevault_ltx::{Txid, parse_filename};
/// assert_eq!(parse_filename("0000000000000001-0000000000000003.ltx"), Some((Txid(1), Txid(3))));
/// assert_eq!(parse_filename("0000000000000000-0000000000000003.ltx"), None);
/// assert_eq!(parse_filename("0000000000000004-0000000000000003.ltx"), None);
/// ```
pub fn parse_filename(name: &str) -> Option<(Txid, Txid)> {
    let (min, max) = parse_filename_shape(name)?;
    (min.0 >= 1 && min <= max).then_some((min, max))
}

/// The two TXIDs of a name shaped like an LTX file name (`<16 hex>-<16
/// hex>.ltx`), valid or not: a replica listing keeps such names so that a
/// restore can name the file and say why it cannot use it, where a silent
/// skip could hide what looks like the newest state.
pub fn parse_filename_shape(name: &str) -> Option<(Txid, Txid)> {
    let stem = name.strip_suffix(".ltx")?;
    let (min, max) = stem.split_once('-')?;
    let parse = |s: &str| {
        (s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| u64::from_str_radix(s, 16).ok().map(Txid))
            .flatten()
    };
    Some((parse(min)?, parse(max)?))
}

/// TXIDs and checksums serialize as the fixed-width hex strings Litestream
/// prints.
impl serde::Serialize for Txid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Txid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        u64::from_str_radix(&s, 16).map(Txid).map_err(|_| {
            serde::de::Error::custom(format!("bad TXID {s:?}: expected 16 hex digits"))
        })
    }
}

impl serde::Serialize for Checksum {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_page_numbers() {
        assert_eq!(lock_pgno(512), 2_097_153);
        assert_eq!(lock_pgno(4096), 262_145);
        assert_eq!(lock_pgno(65536), 16_385);
    }

    #[test]
    fn page_sizes() {
        for ok in [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536] {
            assert!(is_valid_page_size(ok));
        }
        for bad in [0, 1, 256, 511, 513, 3000, 131072] {
            assert!(!is_valid_page_size(bad));
        }
    }

    #[test]
    fn filenames_round_trip() {
        let name = format_filename(Txid(0x1a), Txid(0xffff_ffff_ffff_ffff));
        assert_eq!(name, "000000000000001a-ffffffffffffffff.ltx");
        assert_eq!(parse_filename(&name), Some((Txid(0x1a), Txid(u64::MAX))));
    }

    #[test]
    fn filenames_rejected() {
        for bad in [
            "",
            ".ltx",
            "0000000000000001-0000000000000001",
            "0000000000000001-0000000000000001.LTX",
            "000000000000001-0000000000000001.ltx",
            "0000000000000001-000000000000000A.ltx",
            "+000000000000001-0000000000000001.ltx",
            "0000000000000001_0000000000000001.ltx",
            "0000000000000001-0000000000000001.ltx.tmp",
            "00000000000000001-0000000000000001.ltx",
            // No file starts before TXID 1 or ends before it starts.
            "0000000000000000-0000000000000000.ltx",
            "0000000000000000-0000000000000005.ltx",
            "0000000000000005-0000000000000004.ltx",
        ] {
            assert_eq!(parse_filename(bad), None, "{bad}");
        }
    }
}
