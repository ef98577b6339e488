//! Streaming LTX decoder.
//!
//! # Encodings read
//!
//! Every LTX file starts with the same 100-byte header (magic `LTX1`) and ends with the same
//! 16-byte trailer. The format version is not stored anywhere, so the page encoding is told
//! apart from the header flags and the first bytes after the header:
//!
//! | writer | ltx library | page frame | after the pages |
//! |---|---|---|---|
//! | Litestream v0.5 (recent) | v0.5.1+ | `pgno u32 \| flags u16 = 1 \| size u32 \| LZ4 block` | page index |
//! | Litestream v0.5 (early) | v0.5.0 | `pgno u32 \| flags u16 = 0 \|` LZ4 frame | page index |
//! | LiteFS | v0.3.x | `pgno u32 \|` raw page | nothing |
//! | LiteFS, compressed | v0.3.x, header flag `0x1` | as above, all inside one LZ4 frame | nothing |
//! | ltx v0.4.x | v0.4.x | `pgno u32 \|` raw page | nothing |
//!
//! Detection, in order:
//!
//! 1. header flag `0x1` (CompressLZ4, which only ltx v0.3 defines): the page block is one
//!    LZ4 frame of 4-byte page headers and raw pages ([`PageEncoding::PageHeader4Lz4Stream`]);
//! 2. otherwise peek at 16 bytes after the header. With a non-zero page number:
//!    - flags `0x0001` and a plausible block size (1 to the LZ4 bound of a page):
//!      size-prefixed LZ4 block, 6-byte page headers;
//!    - flags `0x0000` followed by the LZ4 frame magic `04 22 4D 18`: per-page LZ4 frame,
//!      6-byte page headers;
//!    - anything else: 4-byte page headers and raw pages ([`PageEncoding::PageHeader4`]).
//!      A raw page whose first bytes happen to look like a v0.5 page header would be
//!      misread; SQLite page 1 starts with `SQLite format 3`, so it cannot.
//! 3. With page number 0 (a file with no pages), a v0.5 file continues with two more zero
//!    bytes, the index end marker 0 and the index size `00..01`, while a v0.3/v0.4 file
//!    continues with the trailer, whose file checksum (bytes 12..20 after the header) has
//!    bit 63 set: byte 12 has its top bit set only in the old encoding.
//!
//! In every encoding the file checksum covers the header, each page header (and block size),
//! each page's *uncompressed* data, the end-of-pages header, the page index (if any) and
//! the post-apply checksum. LZ4 bytes are not hashed.

use std::fmt;
use std::io::Read;

use lz4_flex::block::{decompress_into, get_maximum_output_size};

use super::checksum::{Hasher, hasher};
use super::input::Input;
use super::lz4frame::{FRAME_MAGIC, FrameStream, read_page_frame};
use super::varint::{put_uvarint, read_uvarint};
use super::{
    CHECKSUM_FLAG, Checksum, HEADER_FLAG_COMPRESS_LZ4, HEADER_SIZE, Header, LtxError,
    PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE, Trailer, page_checksum,
};

/// How the pages of a file are encoded (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageEncoding {
    /// ltx v0.5.x (Litestream v0.5): 6-byte page headers `pgno u32 | flags u16`; each page
    /// an LZ4 block with a `u32` size (flags 1) or an LZ4 frame (flags 0); a page index.
    PageHeader6,
    /// ltx v0.3.x/v0.4.x (LiteFS): 4-byte page headers, raw pages, no page index.
    PageHeader4,
    /// ltx v0.3.x with header flag `0x1`: like [`PageHeader4`](Self::PageHeader4), with the
    /// whole page block inside one LZ4 frame.
    PageHeader4Lz4Stream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Pages,
    PagesDone,
    Failed,
}

/// Largest compressed size accepted for one page in block form.
fn max_block_size(page_size: usize) -> usize {
    (page_size + page_size / 255 + 16).max(get_maximum_output_size(page_size))
}

/// Streaming decoder of one LTX file.
///
/// [`Decoder::new`] reads and validates the header; [`next_page`](Self::next_page) yields
/// the pages in file order (ascending page numbers, checked); [`finish`](Self::finish)
/// reads the page index and trailer and verifies the file checksum (and, for snapshots
/// with checksums, the post-apply checksum). Only one page is held in memory.
///
/// Any error poisons the decoder: later calls return [`LtxError::Poisoned`].
///
/// ```
/// # use litevault_ltx::*;
/// # let header = Header { page_size: 512, commit: 1, min_txid: Txid(1), max_txid: Txid(1), ..Header::default() };
/// # let mut enc = Encoder::new(Vec::new(), header).unwrap();
/// # enc.encode_page(1, &[7; 512]).unwrap();
/// # let (bytes, _) = enc.finish(page_checksum(1, &[7; 512])).unwrap();
/// let mut dec = Decoder::new(&bytes[..])?;
/// let mut page = Vec::new();
/// while let Some(pgno) = dec.next_page(&mut page)? {
///     assert_eq!((pgno, page.len()), (1, 512));
/// }
/// let trailer = dec.finish()?;
/// # Ok::<(), LtxError>(())
/// ```
pub struct Decoder<R: Read> {
    input: Input<R>,
    header: Header,
    encoding: PageEncoding,
    hash: Hasher,
    state: State,
    stream: Option<FrameStream>,
    lock_pgno: u32,
    prev_pgno: u32,
    pages_read: u64,
    // XOR of the page checksums, for snapshots with checksums.
    db_sum: u64,
    // Digest of the page index entries the pages read imply.
    index_expected: Hasher,
    scratch: Vec<u8>,
    varint_buf: Vec<u8>,
}

impl<R: Read> fmt::Debug for Decoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("header", &self.header)
            .field("encoding", &self.encoding)
            .field("state", &self.state)
            .field("pages_read", &self.pages_read)
            .field("offset", &self.input.offset())
            .finish_non_exhaustive()
    }
}

/// Tells the page encoding from the bytes right after the header (see the module docs).
fn detect(p: &[u8], page_size: u32) -> PageEncoding {
    if p.len() < PAGE_HEADER_SIZE {
        // Too short for anything; the read will report the truncation.
        return PageEncoding::PageHeader6;
    }
    let pgno = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
    let flags = u16::from_be_bytes([p[4], p[5]]);
    if pgno == 0 {
        if flags != 0 || (p.len() > 12 && p[12] & 0x80 != 0) {
            return PageEncoding::PageHeader4;
        }
        return PageEncoding::PageHeader6;
    }
    if flags == PAGE_FLAG_SIZE && p.len() >= 10 {
        let size = u32::from_be_bytes([p[6], p[7], p[8], p[9]]) as usize;
        if size >= 1 && size <= max_block_size(page_size as usize) {
            return PageEncoding::PageHeader6;
        }
    }
    if flags == 0 && p.len() >= 10 && p[6..10] == FRAME_MAGIC {
        return PageEncoding::PageHeader6;
    }
    PageEncoding::PageHeader4
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header and works out the page encoding.
    pub fn new(r: R) -> Result<Self, LtxError> {
        let mut input = Input::new(r);
        let mut raw = [0u8; HEADER_SIZE];
        input.read_exact(&mut raw, "header")?;
        let mut header = Header::decode(&raw)?;
        let mut hash = hasher();
        hash.update(&raw);

        let encoding = if header.flags & HEADER_FLAG_COMPRESS_LZ4 != 0 {
            PageEncoding::PageHeader4Lz4Stream
        } else {
            detect(input.peek(16)?, header.page_size)
        };
        match encoding {
            PageEncoding::PageHeader6 => {}
            PageEncoding::PageHeader4 => header.version = if header.no_checksum() { 2 } else { 1 },
            PageEncoding::PageHeader4Lz4Stream => header.version = 1,
        }
        header.validate()?;

        let stream = match encoding {
            PageEncoding::PageHeader4Lz4Stream => Some(FrameStream::begin(&mut input)?),
            _ => None,
        };
        Ok(Self {
            input,
            lock_pgno: header.lock_pgno(),
            header,
            encoding,
            hash,
            state: State::Pages,
            stream,
            prev_pgno: 0,
            pages_read: 0,
            db_sum: 0,
            index_expected: hasher(),
            scratch: Vec::new(),
            varint_buf: Vec::new(),
        })
    }

    /// The file header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// How the pages are encoded.
    pub fn encoding(&self) -> PageEncoding {
        self.encoding
    }

    /// Pages returned so far.
    pub fn pages_read(&self) -> u64 {
        self.pages_read
    }

    /// Bytes consumed from the reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.input.offset()
    }

    /// Reads the next page into `buf` (resized to the page size) and returns its page
    /// number, or `None` after the last page.
    pub fn next_page(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, LtxError> {
        match self.state {
            State::Failed => Err(LtxError::Poisoned { what: "decoder" }),
            State::PagesDone => Ok(None),
            State::Pages => {
                let res = self.read_page(buf);
                if res.is_err() {
                    self.state = State::Failed;
                }
                res
            }
        }
    }

    /// Reads the rest of the file (skipping any pages not read yet), then the page index
    /// and trailer, and verifies them. Returns the trailer.
    pub fn finish(mut self) -> Result<Trailer, LtxError> {
        if self.state == State::Pages {
            let mut buf = Vec::new();
            while self.next_page(&mut buf)?.is_some() {}
        }
        if self.state == State::Failed {
            return Err(LtxError::Poisoned { what: "decoder" });
        }
        self.finish_inner()
    }

    fn read_logical(
        &mut self,
        buf: &mut [u8],
        what: &'static str,
        pgno: u32,
    ) -> Result<(), LtxError> {
        match &mut self.stream {
            Some(s) => s.read_exact(&mut self.input, buf, pgno),
            None => self.input.read_exact(buf, what),
        }
    }

    fn read_page(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, LtxError> {
        let start = self.input.offset();
        let page_size = self.header.page_size as usize;
        let pgno = if self.encoding == PageEncoding::PageHeader6 {
            let mut ph = [0u8; PAGE_HEADER_SIZE];
            self.input.read_exact(&mut ph, "page header")?;
            self.hash.update(&ph);
            let pgno = u32::from_be_bytes([ph[0], ph[1], ph[2], ph[3]]);
            let flags = u16::from_be_bytes([ph[4], ph[5]]);
            if pgno == 0 {
                if flags != 0 {
                    return Err(LtxError::InvalidPage {
                        pgno,
                        offset: start,
                        reason: format!("page number 0 with flags 0x{flags:04x}"),
                    });
                }
                self.state = State::PagesDone;
                return Ok(None);
            }
            if flags & !PAGE_FLAG_SIZE != 0 {
                return Err(LtxError::InvalidPage {
                    pgno,
                    offset: start,
                    reason: format!("unknown page flags 0x{flags:04x}"),
                });
            }
            self.check_pgno(pgno, start)?;
            buf.clear();
            buf.resize(page_size, 0);
            if flags & PAGE_FLAG_SIZE != 0 {
                let mut sb = [0u8; 4];
                self.input.read_exact(&mut sb, "page size field")?;
                self.hash.update(&sb);
                let size = u32::from_be_bytes(sb) as usize;
                if size == 0 || size > max_block_size(page_size) {
                    return Err(LtxError::Lz4 {
                        pgno,
                        reason: format!(
                            "compressed size {size} is impossible for a {page_size}-byte page"
                        ),
                    });
                }
                self.scratch.clear();
                self.scratch.resize(size, 0);
                self.input.read_exact(&mut self.scratch, "LZ4 block")?;
                let n = decompress_into(&self.scratch, buf).map_err(|e| LtxError::Lz4 {
                    pgno,
                    reason: e.to_string(),
                })?;
                if n != page_size {
                    return Err(LtxError::Lz4 {
                        pgno,
                        reason: format!("block holds {n} bytes, the page size is {page_size}"),
                    });
                }
            } else {
                read_page_frame(&mut self.input, pgno, buf, &mut self.scratch)?;
            }
            self.hash.update(buf);
            let size = self.input.offset() - start;
            self.varint_buf.clear();
            put_uvarint(&mut self.varint_buf, u64::from(pgno));
            put_uvarint(&mut self.varint_buf, start);
            put_uvarint(&mut self.varint_buf, size);
            self.index_expected.update(&self.varint_buf);
            pgno
        } else {
            let mut ph = [0u8; 4];
            self.read_logical(&mut ph, "page header", self.prev_pgno)?;
            self.hash.update(&ph);
            let pgno = u32::from_be_bytes(ph);
            if pgno == 0 {
                if let Some(s) = &mut self.stream {
                    s.finish(&mut self.input)?;
                }
                self.state = State::PagesDone;
                return Ok(None);
            }
            self.check_pgno(pgno, start)?;
            buf.clear();
            buf.resize(page_size, 0);
            self.read_logical(buf, "page data", pgno)?;
            self.hash.update(buf);
            pgno
        };

        self.prev_pgno = pgno;
        self.pages_read += 1;
        if self.header.is_snapshot() && !self.header.no_checksum() && pgno != self.lock_pgno {
            self.db_sum ^= page_checksum(pgno, buf).0;
        }
        Ok(Some(pgno))
    }

    fn check_pgno(&self, pgno: u32, offset: u64) -> Result<(), LtxError> {
        let commit = self.header.commit;
        if pgno > commit {
            return Err(LtxError::PageOutOfBounds { pgno, commit });
        }
        let prev = self.prev_pgno;
        if pgno <= prev {
            return Err(LtxError::PageOutOfOrder { prev, pgno });
        }
        if self.header.is_snapshot() {
            // Every page from 1; the lock page may be skipped (writers never store it).
            let expected = prev + 1;
            let skips_lock = expected == self.lock_pgno && pgno == expected + 1;
            if pgno != expected && !skips_lock {
                return Err(LtxError::InvalidPage {
                    pgno,
                    offset,
                    reason: format!("snapshot is missing page {expected}"),
                });
            }
        }
        Ok(())
    }

    fn read_index_varint(&mut self) -> Result<u64, LtxError> {
        let input = &mut self.input;
        let hash = &mut self.hash;
        read_uvarint(|| {
            let b = input.read_byte("page index")?;
            hash.update(&[b]);
            Ok::<u8, LtxError>(b)
        })?
        .ok_or_else(|| LtxError::InvalidPageIndex {
            reason: "varint overflows 64 bits".into(),
        })
    }

    fn finish_inner(mut self) -> Result<Trailer, LtxError> {
        let h = self.header;
        if h.is_snapshot() {
            let last = match h.commit {
                0 => 0,
                c if c == self.lock_pgno => c - 1,
                c => c,
            };
            if self.prev_pgno != last {
                return Err(LtxError::IncompleteSnapshot {
                    last_pgno: self.prev_pgno,
                    commit: h.commit,
                });
            }
        }

        if self.encoding == PageEncoding::PageHeader6 {
            let index_start = self.input.offset();
            let mut entries = 0u64;
            let mut seen = hasher();
            loop {
                let pgno = self.read_index_varint()?;
                if pgno == 0 {
                    break;
                }
                let offset = self.read_index_varint()?;
                let size = self.read_index_varint()?;
                entries += 1;
                if entries > self.pages_read {
                    return Err(LtxError::InvalidPageIndex {
                        reason: format!(
                            "more entries than the {} pages in the file",
                            self.pages_read
                        ),
                    });
                }
                self.varint_buf.clear();
                put_uvarint(&mut self.varint_buf, pgno);
                put_uvarint(&mut self.varint_buf, offset);
                put_uvarint(&mut self.varint_buf, size);
                seen.update(&self.varint_buf);
            }
            let index_len = self.input.offset() - index_start;
            let mut sb = [0u8; 8];
            self.input.read_exact(&mut sb, "page index size")?;
            self.hash.update(&sb);
            let stored_len = u64::from_be_bytes(sb);
            if stored_len != index_len {
                return Err(LtxError::InvalidPageIndex {
                    reason: format!(
                        "size field says {stored_len} bytes, the index has {index_len}"
                    ),
                });
            }
            if entries != self.pages_read || seen.finalize() != self.index_expected.finalize() {
                return Err(LtxError::InvalidPageIndex {
                    reason: "entries do not match the page frames".into(),
                });
            }
        }

        let mut tb = [0u8; TRAILER_SIZE];
        self.input.read_exact(&mut tb, "trailer")?;
        let trailer = Trailer::decode(&tb)?;
        self.hash.update(&tb[..8]);
        if !self.input.at_end()? {
            return Err(LtxError::InvalidTrailer {
                reason: format!("data follows the trailer at byte {}", self.input.offset()),
            });
        }
        let computed = Checksum(CHECKSUM_FLAG | self.hash.finalize());
        if computed != trailer.file_checksum {
            return Err(LtxError::ChecksumMismatch {
                what: "LTX file checksum".into(),
                expected: trailer.file_checksum,
                actual: computed,
            });
        }
        if h.is_snapshot() && !h.no_checksum() {
            let db = Checksum(CHECKSUM_FLAG | self.db_sum);
            if db != trailer.post_apply_checksum {
                return Err(LtxError::ChecksumMismatch {
                    what: "snapshot post-apply checksum".into(),
                    expected: trailer.post_apply_checksum,
                    actual: db,
                });
            }
        }
        Ok(trailer)
    }
}

/// Decodes a whole file held in memory: header, pages in file order, trailer.
// The tuple is the signature the rest of the project is written against.
#[allow(clippy::type_complexity)]
pub fn decode_all(bytes: &[u8]) -> Result<(Header, Vec<(u32, Vec<u8>)>, Trailer), LtxError> {
    let mut dec = Decoder::new(bytes)?;
    let mut pages = Vec::new();
    loop {
        let mut buf = Vec::new();
        match dec.next_page(&mut buf)? {
            Some(pgno) => pages.push((pgno, buf)),
            None => break,
        }
    }
    let header = *dec.header();
    let trailer = dec.finish()?;
    Ok((header, pages, trailer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Trickle, encode, header, page, snapshot_sum, v03_file, v050_file};
    use crate::{HEADER_FLAG_NO_CHECKSUM, lock_pgno};
    use lz4_flex::frame::{BlockMode, BlockSize, FrameInfo};
    use proptest::prelude::*;

    const PRE: Checksum = Checksum(CHECKSUM_FLAG | 0x1111);
    const POST: Checksum = Checksum(CHECKSUM_FLAG | 0x2222);

    fn pages(ps: u32, pgnos: &[u32]) -> Vec<(u32, Vec<u8>)> {
        pgnos
            .iter()
            .map(|&p| (p, page(ps, u64::from(p) * 7)))
            .collect()
    }

    fn sample() -> (Vec<u8>, Vec<(u32, Vec<u8>)>) {
        let pages = pages(512, &[1, 3, 4, 9]);
        (encode(header(512, 9, 4, 6, PRE), &pages, POST), pages)
    }

    fn frame_infos() -> Vec<FrameInfo> {
        vec![
            FrameInfo::new(),
            FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .content_checksum(true)
                .block_checksums(true),
            FrameInfo::new()
                .block_size(BlockSize::Max64KB)
                .block_mode(BlockMode::Linked),
            FrameInfo::new().block_size(BlockSize::Max4MB),
        ]
    }

    #[test]
    fn streams_through_tiny_reads() {
        let (bytes, want) = sample();
        let mut dec = Decoder::new(Trickle {
            data: &bytes,
            chunk: 3,
        })
        .unwrap();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        while let Some(p) = dec.next_page(&mut buf).unwrap() {
            got.push((p, buf.clone()));
        }
        assert_eq!(dec.next_page(&mut buf).unwrap(), None);
        assert_eq!(got, want);
        assert_eq!(dec.pages_read(), 4);
        assert_eq!(dec.finish().unwrap().post_apply_checksum, POST);
    }

    #[test]
    fn finish_skips_unread_pages() {
        let (bytes, _) = sample();
        let mut dec = Decoder::new(&bytes[..]).unwrap();
        let mut buf = Vec::new();
        assert_eq!(dec.next_page(&mut buf).unwrap(), Some(1));
        assert_eq!(dec.finish().unwrap().post_apply_checksum, POST);
        assert_eq!(
            Decoder::new(&bytes[..])
                .unwrap()
                .finish()
                .unwrap()
                .post_apply_checksum,
            POST
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let (bytes, _) = sample();
        for n in 0..bytes.len() {
            let err = decode_all(&bytes[..n]).unwrap_err();
            assert!(
                matches!(
                    err,
                    LtxError::Truncated { .. }
                        | LtxError::InvalidPage { .. }
                        | LtxError::Lz4 { .. }
                ),
                "len {n}: {err}"
            );
        }
    }

    #[test]
    fn no_byte_flip_goes_unnoticed() {
        // A flip is either an error or harmless: LZ4 ignores a few bits (e.g. the match
        // length of the last token), and the file checksum covers the uncompressed data.
        let (bytes, _) = sample();
        let want = decode_all(&bytes).unwrap();
        let mut harmless = 0;
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x10, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                if let Ok(got) = decode_all(&b) {
                    assert_eq!(got, want, "flip {bit:#x} at {i}");
                    harmless += 1;
                }
            }
        }
        assert!(harmless < 20, "{harmless}");
    }

    /// Offset of the second page header in `sample()`.
    fn second_page(bytes: &[u8]) -> usize {
        let mut dec = Decoder::new(bytes).unwrap();
        dec.next_page(&mut Vec::new()).unwrap();
        dec.bytes_read() as usize
    }

    #[test]
    fn typed_errors() {
        let (bytes, _) = sample();
        let mut b = bytes.clone();
        b[0] = b'X';
        assert!(matches!(decode_all(&b), Err(LtxError::InvalidMagic { .. })));
        let mut b = bytes.clone();
        b[7] |= 0x04;
        assert!(matches!(
            decode_all(&b),
            Err(LtxError::UnsupportedFlags { .. })
        ));
        let mut b = bytes.clone();
        b[10] = 0x03; // page size 0x300
        assert!(matches!(
            decode_all(&b),
            Err(LtxError::InvalidHeader { .. })
        ));
        // Trailing garbage.
        let mut b = bytes.clone();
        b.push(0);
        assert!(matches!(
            decode_all(&b),
            Err(LtxError::InvalidTrailer { .. })
        ));
        // File checksum.
        let mut b = bytes.clone();
        let n = b.len();
        b[n - 1] ^= 1;
        assert!(matches!(
            decode_all(&b),
            Err(LtxError::ChecksumMismatch { .. })
        ));
        // Unknown page flags.
        let at = second_page(&bytes);
        let mut b = bytes.clone();
        b[at + 5] |= 0x02;
        assert!(matches!(
            decode_all(&b),
            Err(LtxError::InvalidPage { pgno: 3, .. })
        ));
        // Impossible block size.
        let mut b = bytes.clone();
        b[at + 6..at + 10].copy_from_slice(&100_000u32.to_be_bytes());
        assert!(matches!(decode_all(&b), Err(LtxError::Lz4 { pgno: 3, .. })));
        // Wrong page number order.
        let mut b = bytes.clone();
        b[at + 3] = 1;
        assert!(matches!(
            decode_all(&b),
            Err(LtxError::PageOutOfOrder { prev: 1, pgno: 1 })
        ));
        // A corrupt first page header makes the file look like the old raw encoding,
        // which then fails on its own terms.
        let mut b = bytes.clone();
        b[105] |= 0x02;
        assert!(decode_all(&b).is_err());
    }

    #[test]
    fn poisoned_after_error() {
        let (bytes, _) = sample();
        let at = second_page(&bytes);
        let mut b = bytes.clone();
        b[at + 6..at + 10].copy_from_slice(&0u32.to_be_bytes());
        let mut dec = Decoder::new(&b[..]).unwrap();
        let mut buf = Vec::new();
        assert_eq!(dec.next_page(&mut buf).unwrap(), Some(1));
        assert!(matches!(dec.next_page(&mut buf), Err(LtxError::Lz4 { .. })));
        assert!(matches!(
            dec.next_page(&mut buf),
            Err(LtxError::Poisoned { what: "decoder" })
        ));
        assert!(matches!(dec.finish(), Err(LtxError::Poisoned { .. })));
    }

    #[test]
    fn index_must_match_pages() {
        let (bytes, _) = sample();
        // Rewrite the index size field: the checksum is not rehashed, so check the typed
        // error comes first.
        let n = bytes.len();
        let mut b = bytes.clone();
        b[n - 24..n - 16].copy_from_slice(&999u64.to_be_bytes());
        assert!(matches!(
            decode_all(&b),
            Err(LtxError::InvalidPageIndex { .. })
        ));
    }

    #[test]
    fn order_and_bounds_checked_in_old_files() {
        let h = header(512, 5, 2, 2, PRE);
        let f = v03_file(h, &pages(512, &[3, 2]), POST, None);
        assert!(matches!(
            decode_all(&f),
            Err(LtxError::PageOutOfOrder { prev: 3, pgno: 2 })
        ));
        let f = v03_file(h, &pages(512, &[3, 6]), POST, None);
        assert!(matches!(
            decode_all(&f),
            Err(LtxError::PageOutOfBounds { pgno: 6, commit: 5 })
        ));
        let h = header(512, 3, 1, 1, Checksum(0));
        let f = v03_file(h, &pages(512, &[1, 3]), POST, None);
        assert!(matches!(
            decode_all(&f),
            Err(LtxError::InvalidPage { pgno: 3, .. })
        ));
        let p = pages(512, &[1, 2]);
        let f = v03_file(h, &p, snapshot_sum(&p), None);
        assert!(matches!(
            decode_all(&f),
            Err(LtxError::IncompleteSnapshot {
                last_pgno: 2,
                commit: 3
            })
        ));
    }

    #[test]
    fn snapshot_post_apply_is_verified() {
        let p = pages(4096, &[1, 2, 3]);
        let h = header(4096, 3, 1, 2, Checksum(0));
        let good = v03_file(h, &p, snapshot_sum(&p), None);
        decode_all(&good).unwrap();
        let bad = v03_file(h, &p, POST, None);
        assert!(matches!(
            decode_all(&bad),
            Err(LtxError::ChecksumMismatch { .. })
        ));
        // NoChecksum files carry zero and are not checked.
        let mut h2 = h;
        h2.flags = HEADER_FLAG_NO_CHECKSUM;
        let f = v050_file(h2, &p, Checksum(0), FrameInfo::new());
        decode_all(&f).unwrap();
    }

    #[test]
    fn reads_ltx_v050_frame_pages() {
        for info in frame_infos() {
            for ps in [512u32, 4096, 65536] {
                let p = pages(ps, &[2, 7, 8]);
                let f = v050_file(header(ps, 8, 3, 3, PRE), &p, POST, info.clone());
                let dec = Decoder::new(&f[..]).unwrap();
                assert_eq!(dec.encoding(), PageEncoding::PageHeader6);
                assert_eq!(dec.header().version, 3);
                let (_, got, t) = decode_all(&f).unwrap();
                assert_eq!(got, p);
                assert_eq!(t.post_apply_checksum, POST);
            }
        }
        // With the optional content-size field.
        let p = pages(4096, &[2]);
        let info = FrameInfo::new()
            .content_size(Some(4096))
            .content_checksum(true);
        let f = v050_file(header(4096, 8, 3, 3, PRE), &p, POST, info);
        assert_eq!(decode_all(&f).unwrap().1, p);
    }

    #[test]
    fn reads_ltx_v03_raw_pages() {
        for ps in [512u32, 4096, 65536] {
            // Includes a page starting with 00 01 (an overflow page pointing to page 65536+).
            let mut p = pages(ps, &[1, 4, 6]);
            p[0].1[..2].copy_from_slice(&[0, 1]);
            p[0].1[2..6].copy_from_slice(&[0xff, 0xff, 0xff, 0xff]);
            let f = v03_file(header(ps, 6, 9, 9, PRE), &p, POST, None);
            let dec = Decoder::new(&f[..]).unwrap();
            assert_eq!(dec.encoding(), PageEncoding::PageHeader4);
            assert_eq!(dec.header().version, 1);
            assert_eq!(decode_all(&f).unwrap().1, p);
        }
        // A v0.4 NoChecksum file.
        let mut h = header(1024, 2, 3, 3, Checksum(0));
        h.flags = HEADER_FLAG_NO_CHECKSUM;
        let p = pages(1024, &[2]);
        let f = v03_file(h, &p, Checksum(0), None);
        let dec = Decoder::new(&f[..]).unwrap();
        assert_eq!(
            (dec.encoding(), dec.header().version),
            (PageEncoding::PageHeader4, 2)
        );
        assert_eq!(decode_all(&f).unwrap().1, p);
    }

    #[test]
    fn reads_ltx_v03_compressed_stream() {
        for info in frame_infos() {
            for ps in [512u32, 4096, 65536] {
                let p: Vec<_> = (1..=20).map(|n| (n, page(ps, u64::from(n)))).collect();
                let sum = snapshot_sum(&p);
                let f = v03_file(
                    header(ps, 20, 1, 4, Checksum(0)),
                    &p,
                    sum,
                    Some(info.clone()),
                );
                let dec = Decoder::new(Trickle {
                    data: &f,
                    chunk: 1000,
                })
                .unwrap();
                assert_eq!(dec.encoding(), PageEncoding::PageHeader4Lz4Stream);
                assert_eq!(dec.header().version, 1);
                let (_, got, t) = decode_all(&f).unwrap();
                assert_eq!(got, p);
                assert_eq!(t.post_apply_checksum, sum);
            }
        }
    }

    #[test]
    fn empty_files_in_every_encoding() {
        let h = header(512, 4, 2, 2, PRE);
        let new = encode(h, &[], POST);
        assert_eq!(
            Decoder::new(&new[..]).unwrap().encoding(),
            PageEncoding::PageHeader6
        );
        decode_all(&new).unwrap();
        let old = v03_file(h, &[], POST, None);
        assert_eq!(
            Decoder::new(&old[..]).unwrap().encoding(),
            PageEncoding::PageHeader4
        );
        decode_all(&old).unwrap();
        let mut h2 = h;
        h2.flags = HEADER_FLAG_NO_CHECKSUM;
        h2.pre_apply_checksum = Checksum(0);
        let old2 = v03_file(h2, &[], Checksum(0), None);
        assert_eq!(
            Decoder::new(&old2[..]).unwrap().encoding(),
            PageEncoding::PageHeader4
        );
        decode_all(&old2).unwrap();
        let old3 = v03_file(h, &[], POST, Some(FrameInfo::new()));
        decode_all(&old3).unwrap();
        let old4 = v050_file(h, &[], POST, FrameInfo::new());
        decode_all(&old4).unwrap();
    }

    #[test]
    fn lz4_stream_must_end_with_the_pages() {
        // Extra bytes inside the frame after the end-of-pages header.
        let h = header(512, 2, 1, 1, Checksum(0));
        let p = pages(512, &[1, 2]);
        let mut body = Vec::new();
        for (n, d) in &p {
            body.extend_from_slice(&n.to_be_bytes());
            body.extend_from_slice(d);
        }
        body.extend_from_slice(&[0; 4]);
        body.extend_from_slice(b"junk");
        let mut hh = h;
        hh.flags = HEADER_FLAG_COMPRESS_LZ4;
        let mut f = hh.encode().to_vec();
        let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut enc, &body).unwrap();
        f.extend_from_slice(&enc.finish().unwrap());
        f.extend_from_slice(&[0; 16]);
        assert!(matches!(decode_all(&f), Err(LtxError::Lz4 { .. })));
    }

    #[test]
    fn snapshot_may_skip_the_lock_page() {
        let ps = 65536;
        let lock = lock_pgno(ps);
        let f = encode(
            header(ps, 3, 1, 1, Checksum(0)),
            &pages(ps, &[1, 2, 3]),
            snapshot_sum(&pages(ps, &[1, 2, 3])),
        );
        let mut dec = Decoder::new(&f[..]).unwrap();
        dec.header.commit = lock + 1;
        dec.prev_pgno = lock - 1;
        dec.check_pgno(lock + 1, 0).unwrap();
        dec.check_pgno(lock, 0).unwrap();
        assert!(dec.check_pgno(lock + 2, 0).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_all(&bytes);
        }

        #[test]
        fn arbitrary_bodies_never_panic(
            flags in prop_oneof![Just(0u32), Just(1), Just(2), Just(3)],
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut h = header(512, 5, 1, 1, Checksum(0));
            h.flags = flags;
            let mut b = h.encode().to_vec();
            b.extend_from_slice(&body);
            let _ = decode_all(&b);
        }

        #[test]
        fn mutated_files_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let (mut bytes, _) = sample();
            for (at, v) in edits {
                let n = bytes.len();
                bytes[at % n] = v;
            }
            let n = bytes.len();
            bytes.truncate(n - cut % 40);
            let _ = decode_all(&bytes);
        }
    }
}
