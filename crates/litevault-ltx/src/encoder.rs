//! Streaming LTX encoder. Always writes the current format (Go ltx v0.5.2): 6-byte page
//! headers with flag 1, size-prefixed LZ4 blocks, a page index and the trailer, with real
//! pre- and post-apply checksums.

use std::fmt;
use std::io::Write;

use lz4_flex::block::{compress_into, get_maximum_output_size};

use super::checksum::{Hasher, hasher};
use super::varint::put_uvarint;
use super::{
    CHECKSUM_FLAG, Checksum, HEADER_SIZE, Header, LtxError, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE,
    Trailer, VERSION, page_checksum,
};

/// Streaming encoder of one LTX file.
///
/// Pages must come in strictly ascending page-number order, as Go's encoder requires; a
/// snapshot (min TXID 1) must hold every page from 1 to `commit`, skipping the lock page.
/// The page index is kept in memory (a few bytes per page) until [`finish`](Self::finish).
///
/// ```
/// use litevault_ltx::*;
/// let header = Header { page_size: 512, commit: 2, min_txid: Txid(1), max_txid: Txid(1), ..Header::default() };
/// let mut enc = Encoder::new(Vec::new(), header)?;
/// let mut db = DbChecksum::new();
/// for pgno in 1..=2 {
///     let page = vec![pgno as u8; 512];
///     enc.encode_page(pgno, &page)?;
///     db.apply_page(pgno, &page);
/// }
/// let (bytes, trailer) = enc.finish(db.value())?;
/// assert_eq!(decode_all(&bytes)?.2, trailer);
/// # Ok::<(), LtxError>(())
/// ```
pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    hash: Hasher,
    written: u64,
    index: Vec<u8>,
    prev_pgno: u32,
    pages: u64,
    lock_pgno: u32,
    // XOR of page checksums, to check a snapshot's post-apply checksum.
    db_sum: u64,
    compressed: Vec<u8>,
    failed: bool,
}

impl<W: Write> fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder")
            .field("header", &self.header)
            .field("pages", &self.pages)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl<W: Write> Encoder<W> {
    /// Validates `header` and writes it. The header must not carry
    /// [`HEADER_FLAG_NO_CHECKSUM`](super::HEADER_FLAG_NO_CHECKSUM): litevault always writes
    /// real checksums. `header.version` is ignored (version 3 is written).
    pub fn new(mut w: W, header: Header) -> Result<Self, LtxError> {
        let header = Header {
            version: VERSION,
            ..header
        };
        header.validate()?;
        let compat =
            header.flags == super::HEADER_FLAG_NO_CHECKSUM && header.reserved_checksums.is_some();
        if header.flags != 0 && !compat {
            return Err(LtxError::InvalidHeader {
                reason: format!(
                    "flags 0x{:08x} requested; litevault writes no flags (real checksums), or NoChecksum with the checksums in the reserved bytes",
                    header.flags
                ),
            });
        }
        let raw = header.encode();
        w.write_all(&raw)?;
        let mut hash = hasher();
        hash.update(&raw);
        Ok(Self {
            w,
            lock_pgno: header.lock_pgno(),
            header,
            hash,
            written: HEADER_SIZE as u64,
            index: Vec::new(),
            prev_pgno: 0,
            pages: 0,
            db_sum: 0,
            compressed: Vec::new(),
            failed: false,
        })
    }

    /// The header written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Pages written so far.
    pub fn pages_written(&self) -> u64 {
        self.pages
    }

    /// Writes one page.
    pub fn encode_page(&mut self, pgno: u32, data: &[u8]) -> Result<(), LtxError> {
        if self.failed {
            return Err(LtxError::Poisoned { what: "encoder" });
        }
        self.check_page(pgno, data)?;
        let res = self.write_page(pgno, data);
        if res.is_err() {
            self.failed = true;
        }
        res
    }

    fn check_page(&self, pgno: u32, data: &[u8]) -> Result<(), LtxError> {
        let h = &self.header;
        if data.len() != h.page_size as usize {
            return Err(LtxError::PageSizeMismatch {
                expected: h.page_size,
                actual: data.len(),
            });
        }
        if pgno == 0 {
            return Err(LtxError::InvalidPage {
                pgno,
                offset: self.written,
                reason: "page number 0 does not exist".into(),
            });
        }
        if pgno > h.commit {
            return Err(LtxError::PageOutOfBounds {
                pgno,
                commit: h.commit,
            });
        }
        if pgno == self.lock_pgno {
            return Err(LtxError::LockPage { pgno });
        }
        let prev = self.prev_pgno;
        let in_order = if h.is_snapshot() {
            let next = if prev + 1 == self.lock_pgno {
                prev + 2
            } else {
                prev + 1
            };
            pgno == next
        } else {
            pgno > prev
        };
        if !in_order {
            return Err(LtxError::PageOutOfOrder { prev, pgno });
        }
        Ok(())
    }

    fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<(), LtxError> {
        let start = self.written;
        self.compressed
            .resize(get_maximum_output_size(data.len()), 0);
        let n = compress_into(data, &mut self.compressed).map_err(|e| LtxError::Lz4 {
            pgno,
            reason: e.to_string(),
        })?;

        let mut head = [0u8; PAGE_HEADER_SIZE + 4];
        head[0..4].copy_from_slice(&pgno.to_be_bytes());
        head[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
        // A compressed page is far below 4 GiB.
        head[6..10].copy_from_slice(&(n as u32).to_be_bytes());
        self.w.write_all(&head)?;
        self.w.write_all(&self.compressed[..n])?;
        // The file checksum covers the page header, the size and the *uncompressed* data.
        self.hash.update(&head);
        self.hash.update(data);
        self.written += (head.len() + n) as u64;

        put_uvarint(&mut self.index, u64::from(pgno));
        put_uvarint(&mut self.index, start);
        put_uvarint(&mut self.index, self.written - start);

        if self.header.is_snapshot() {
            self.db_sum ^= page_checksum(pgno, data).0;
        }
        self.prev_pgno = pgno;
        self.pages += 1;
        Ok(())
    }

    /// Writes the end of the page block, the page index and the trailer, flushes, and
    /// returns the writer and the trailer.
    ///
    /// `post_apply` is the database checksum after this file is applied (see
    /// [`DbChecksum`](super::DbChecksum)); it must have bit 63 set, must be exactly
    /// [`CHECKSUM_FLAG`] when `commit` is 0, and for a snapshot must equal the checksum of
    /// the pages written (Go's decoder checks that).
    pub fn finish(mut self, post_apply: Checksum) -> Result<(W, Trailer), LtxError> {
        if self.failed {
            return Err(LtxError::Poisoned { what: "encoder" });
        }
        let h = self.header;
        if !post_apply.is_flagged() {
            return Err(LtxError::InvalidTrailer {
                reason: format!(
                    "post-apply checksum {post_apply} must be non-zero with bit 63 set"
                ),
            });
        }
        if h.commit == 0 && post_apply.0 != CHECKSUM_FLAG {
            return Err(LtxError::ChecksumMismatch {
                what: "post-apply checksum of an empty database".into(),
                expected: Checksum(CHECKSUM_FLAG),
                actual: post_apply,
            });
        }
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
            let computed = Checksum(CHECKSUM_FLAG | self.db_sum);
            if post_apply != computed {
                return Err(LtxError::ChecksumMismatch {
                    what: "snapshot post-apply checksum".into(),
                    expected: post_apply,
                    actual: computed,
                });
            }
        }

        // End of pages, then the index: entries, end marker 0, u64 length of both.
        let mut tail = vec![0u8; PAGE_HEADER_SIZE];
        let index_start = tail.len();
        tail.extend_from_slice(&self.index);
        tail.push(0);
        let index_len = (tail.len() - index_start) as u64;
        tail.extend_from_slice(&index_len.to_be_bytes());
        // A NoChecksum file stores its post-apply checksum in the reserved
        // header bytes; the trailer field must then be zero.
        let trailer_post = if h.no_checksum() {
            let reserved = h.reserved_checksums.map(|r| r.post_apply);
            if reserved != Some(post_apply) {
                return Err(LtxError::ChecksumMismatch {
                    what: "post-apply checksum vs the one in the reserved header bytes".into(),
                    expected: reserved.unwrap_or(Checksum(0)),
                    actual: post_apply,
                });
            }
            Checksum(0)
        } else {
            post_apply
        };
        tail.extend_from_slice(&trailer_post.0.to_be_bytes());
        self.hash.update(&tail);
        let trailer = Trailer {
            post_apply_checksum: trailer_post,
            file_checksum: Checksum(CHECKSUM_FLAG | self.hash.finalize()),
        };
        tail.extend_from_slice(&trailer.file_checksum.0.to_be_bytes());
        self.w.write_all(&tail)?;
        self.w.flush()?;
        Ok((self.w, trailer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::crc64;
    use crate::testutil::{encode, header, page, snapshot_sum};
    use crate::{HEADER_FLAG_NO_CHECKSUM, decode_all, lock_pgno};
    use proptest::prelude::*;

    const PRE: Checksum = Checksum(CHECKSUM_FLAG | 0xabc);
    const POST: Checksum = Checksum(CHECKSUM_FLAG | 0xdef);

    /// Parses our output by hand, following the Go v0.5.2 layout, and recomputes the file
    /// checksum without the decoder.
    fn parse_by_hand(bytes: &[u8], page_size: usize) -> Vec<(u32, Vec<u8>)> {
        let mut hash_input = bytes[..100].to_vec();
        let mut at = 100;
        let mut pages = Vec::new();
        let mut index = Vec::new();
        loop {
            let start = at;
            let pgno = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
            let flags = u16::from_be_bytes(bytes[at + 4..at + 6].try_into().unwrap());
            hash_input.extend_from_slice(&bytes[at..at + 6]);
            at += 6;
            if pgno == 0 {
                assert_eq!(flags, 0);
                break;
            }
            assert_eq!(flags, 1);
            let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            hash_input.extend_from_slice(&bytes[at..at + 4]);
            at += 4;
            let data = lz4_flex::block::decompress(&bytes[at..at + size], page_size).unwrap();
            assert_eq!(data.len(), page_size);
            at += size;
            hash_input.extend_from_slice(&data);
            put_uvarint(&mut index, u64::from(pgno));
            put_uvarint(&mut index, start as u64);
            put_uvarint(&mut index, (at - start) as u64);
            pages.push((pgno, data));
        }
        index.push(0);
        assert_eq!(&bytes[at..at + index.len()], &index[..]);
        at += index.len();
        assert_eq!(
            u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap()),
            index.len() as u64
        );
        hash_input.extend_from_slice(&index);
        hash_input.extend_from_slice(&bytes[at..at + 16]);
        at += 16;
        assert_eq!(at + 8, bytes.len());
        let file = u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(file, CHECKSUM_FLAG | crc64(&hash_input));
        pages
    }

    #[test]
    fn layout_matches_go_v052() {
        let pages: Vec<_> = [2u32, 5, 9]
            .iter()
            .map(|&p| (p, page(4096, p as u64)))
            .collect();
        let bytes = encode(header(4096, 9, 5, 7, PRE), &pages, POST);
        assert_eq!(&bytes[..4], b"LTX1");
        assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "no flags");
        assert_eq!(parse_by_hand(&bytes, 4096), pages);
        assert_eq!(
            &bytes[bytes.len() - 16..bytes.len() - 8],
            &POST.0.to_be_bytes()
        );
    }

    #[test]
    fn empty_file() {
        // A file with no pages (e.g. a commit that shrank nothing) is 100 + 6 + 1 + 8 + 16.
        let bytes = encode(header(512, 3, 2, 2, PRE), &[], POST);
        assert_eq!(bytes.len(), 131);
        let (h, pages, t) = decode_all(&bytes).unwrap();
        assert_eq!(h.min_txid.0, 2);
        assert!(pages.is_empty());
        assert_eq!(t.post_apply_checksum, POST);
    }

    #[test]
    fn rejects_bad_headers() {
        let mut h = header(4096, 1, 1, 1, Checksum(0));
        h.flags = HEADER_FLAG_NO_CHECKSUM;
        assert!(matches!(
            Encoder::new(Vec::new(), h).unwrap_err(),
            LtxError::InvalidHeader { .. }
        ));
        let h = header(1000, 1, 1, 1, Checksum(0));
        assert!(Encoder::new(Vec::new(), h).is_err());
        let h = header(4096, 1, 2, 2, Checksum(0));
        assert!(Encoder::new(Vec::new(), h).is_err());
    }

    #[test]
    fn page_rules() {
        let mut enc = Encoder::new(Vec::new(), header(512, 10, 3, 3, PRE)).unwrap();
        let p = page(512, 1);
        assert!(matches!(
            enc.encode_page(1, &p[..511]),
            Err(LtxError::PageSizeMismatch {
                expected: 512,
                actual: 511
            })
        ));
        assert!(matches!(
            enc.encode_page(0, &p),
            Err(LtxError::InvalidPage { .. })
        ));
        assert!(matches!(
            enc.encode_page(11, &p),
            Err(LtxError::PageOutOfBounds {
                pgno: 11,
                commit: 10
            })
        ));
        enc.encode_page(4, &p).unwrap();
        assert!(matches!(
            enc.encode_page(4, &p),
            Err(LtxError::PageOutOfOrder { prev: 4, pgno: 4 })
        ));
        assert!(matches!(
            enc.encode_page(2, &p),
            Err(LtxError::PageOutOfOrder { prev: 4, pgno: 2 })
        ));
        // Rule violations do not poison the encoder.
        enc.encode_page(7, &p).unwrap();
        let (bytes, _) = enc.finish(POST).unwrap();
        let pgnos: Vec<u32> = decode_all(&bytes).unwrap().1.iter().map(|p| p.0).collect();
        assert_eq!(pgnos, [4, 7]);
    }

    #[test]
    fn snapshot_rules() {
        let p = page(512, 2);
        let mut enc = Encoder::new(Vec::new(), header(512, 3, 1, 4, Checksum(0))).unwrap();
        assert!(matches!(
            enc.encode_page(2, &p),
            Err(LtxError::PageOutOfOrder { prev: 0, pgno: 2 })
        ));
        enc.encode_page(1, &p).unwrap();
        assert!(matches!(
            enc.encode_page(3, &p),
            Err(LtxError::PageOutOfOrder { prev: 1, pgno: 3 })
        ));
        enc.encode_page(2, &p).unwrap();
        let sum = snapshot_sum(&[(1, p.clone()), (2, p.clone())]);
        // Missing page 3.
        let mut enc2 = Encoder::new(Vec::new(), header(512, 3, 1, 4, Checksum(0))).unwrap();
        enc2.encode_page(1, &p).unwrap();
        enc2.encode_page(2, &p).unwrap();
        assert!(matches!(
            enc2.finish(sum),
            Err(LtxError::IncompleteSnapshot {
                last_pgno: 2,
                commit: 3
            })
        ));
        enc.encode_page(3, &p).unwrap();
        // Wrong post-apply checksum.
        assert!(matches!(
            enc.finish(sum),
            Err(LtxError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn post_apply_rules() {
        let enc = Encoder::new(Vec::new(), header(512, 3, 2, 2, PRE)).unwrap();
        assert!(matches!(
            enc.finish(Checksum(5)),
            Err(LtxError::InvalidTrailer { .. })
        ));
        let enc = Encoder::new(Vec::new(), header(512, 0, 2, 2, PRE)).unwrap();
        assert!(matches!(
            enc.finish(POST),
            Err(LtxError::ChecksumMismatch { .. })
        ));
        let enc = Encoder::new(Vec::new(), header(512, 0, 2, 2, PRE)).unwrap();
        let (bytes, t) = enc.finish(Checksum(CHECKSUM_FLAG)).unwrap();
        assert_eq!(decode_all(&bytes).unwrap().2, t);
    }

    #[test]
    fn lock_page_is_skipped() {
        let ps = 65536;
        let lock = lock_pgno(ps);
        assert_eq!(lock, 16385);
        let p = page(ps, 3);
        // Non-snapshot: pages on both sides of the lock page.
        let mut enc = Encoder::new(Vec::new(), header(ps, lock + 1, 2, 2, PRE)).unwrap();
        enc.encode_page(lock - 1, &p).unwrap();
        assert!(
            matches!(enc.encode_page(lock, &p), Err(LtxError::LockPage { pgno }) if pgno == lock)
        );
        enc.encode_page(lock + 1, &p).unwrap();
        let (bytes, _) = enc.finish(POST).unwrap();
        let pgnos: Vec<u32> = decode_all(&bytes).unwrap().1.iter().map(|p| p.0).collect();
        assert_eq!(pgnos, [lock - 1, lock + 1]);

        // Snapshot: after page lock-1 the next page must be lock+1. Writing 16k pages of
        // 64 KiB is slow in debug builds, so jump the encoder's position.
        let mut enc = Encoder::new(Vec::new(), header(ps, lock + 1, 1, 1, Checksum(0))).unwrap();
        enc.prev_pgno = lock - 1;
        assert!(matches!(
            enc.encode_page(lock, &p),
            Err(LtxError::LockPage { .. })
        ));
        enc.encode_page(lock + 1, &p).unwrap();
        let sum = Checksum(CHECKSUM_FLAG | page_checksum(lock + 1, &p).0);
        enc.finish(sum).unwrap();
    }

    #[test]
    fn write_errors_poison() {
        struct Fail(usize);
        impl Write for Fail {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if self.0 < b.len() {
                    return Err(std::io::Error::other("disk full"));
                }
                self.0 -= b.len();
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        assert!(matches!(
            Encoder::new(Fail(10), header(512, 3, 2, 2, PRE)),
            Err(LtxError::Io(_))
        ));
        let mut enc = Encoder::new(Fail(120), header(512, 3, 2, 2, PRE)).unwrap();
        assert!(matches!(
            enc.encode_page(1, &page(512, 1)),
            Err(LtxError::Io(_))
        ));
        assert!(matches!(
            enc.encode_page(2, &page(512, 1)),
            Err(LtxError::Poisoned { what: "encoder" })
        ));
        assert!(matches!(enc.finish(POST), Err(LtxError::Poisoned { .. })));
    }

    fn page_size() -> impl Strategy<Value = u32> {
        prop_oneof![Just(512u32), Just(4096), Just(65536)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn round_trip_incremental(
            ps in page_size(),
            pgnos in proptest::collection::btree_set(1u32..200, 0..12),
            seeds in proptest::collection::vec(any::<u64>(), 12),
            min in 2u64..1000,
            span in 0u64..5,
            ts in any::<i64>(),
        ) {
            let commit = pgnos.iter().max().copied().unwrap_or(0) + 3;
            let pages: Vec<(u32, Vec<u8>)> = pgnos
                .iter()
                .zip(&seeds)
                .map(|(&p, &s)| (p, page(ps, s)))
                .collect();
            let mut h = header(ps, commit, min, min + span, PRE);
            h.timestamp_ms = ts;
            h.wal_offset = 32;
            h.wal_size = 4128;
            h.wal_salt1 = 7;
            h.node_id = 9;
            let bytes = encode(h, &pages, POST);
            let (h2, pages2, t) = decode_all(&bytes).unwrap();
            prop_assert_eq!(h2, h);
            prop_assert_eq!(pages2, pages);
            prop_assert_eq!(t.post_apply_checksum, POST);
        }

        #[test]
        fn round_trip_snapshot(
            ps in page_size(),
            commit in 1u32..10,
            seed in any::<u64>(),
        ) {
            let pages: Vec<(u32, Vec<u8>)> =
                (1..=commit).map(|p| (p, page(ps, seed.wrapping_add(u64::from(p))))).collect();
            let sum = snapshot_sum(&pages);
            let bytes = encode(header(ps, commit, 1, 5, Checksum(0)), &pages, sum);
            let (h, pages2, t) = decode_all(&bytes).unwrap();
            prop_assert!(h.is_snapshot());
            prop_assert_eq!(pages2, pages);
            prop_assert_eq!(t.post_apply_checksum, sum);
        }
    }
}
