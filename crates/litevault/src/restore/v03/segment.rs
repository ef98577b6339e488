//! Decoding what a v0.3 backup stores (pure: bytes in, pages out).
//!
//! The WAL of one index arrives as the decompressed bytes of its segments, in
//! order. [`WalIndexDecoder`] checks them as SQLite checks a WAL when it
//! recovers it (the header's magic, version, page size and checksum; each
//! frame's salts, which must be the header's; the cumulative checksum of
//! each frame) and hands each frame's page on, so that applying the pages in
//! order and cutting the file at the last commit's size gives what a
//! checkpoint of that WAL gives. Unlike SQLite, which ignores the frames
//! from the first invalid one on, the decoder refuses them: Litestream only
//! ships valid frames, so an invalid one is damage. It keeps at most one
//! frame in memory.

use crate::wal::{
    FRAME_HEADER_SIZE, FrameHeader, WAL_HEADER_SIZE, WalChecksum, WalError, WalHeader, wal_checksum,
};

/// Why the WAL of an index was refused. Offsets are in the index's WAL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalFault {
    /// The WAL header is not valid.
    #[error("bad WAL header: {0}")]
    Header(WalError),
    /// The WAL's page size is not the database's.
    #[error("the WAL's page size is {wal}, the snapshot's is {db}")]
    PageSize {
        /// The WAL header's page size.
        wal: u32,
        /// The database's.
        db: u32,
    },
    /// A frame carries other salts than the header.
    #[error("the frame at WAL offset {offset} carries salts of another WAL")]
    Salt {
        /// The frame's offset.
        offset: u64,
    },
    /// A frame's cumulative checksum does not verify.
    #[error("the frame at WAL offset {offset} fails its checksum")]
    Checksum {
        /// The frame's offset.
        offset: u64,
    },
    /// A frame names page 0.
    #[error("the frame at WAL offset {offset} names page 0")]
    PageNumber {
        /// The frame's offset.
        offset: u64,
    },
    /// The bytes end inside the header or a frame.
    #[error("the WAL ends inside the frame at offset {offset}")]
    Torn {
        /// Where the incomplete header or frame starts.
        offset: u64,
    },
    /// The last frames are not followed by a commit frame.
    #[error("the WAL ends with {frames} frame(s) of a transaction that never commits")]
    Uncommitted {
        /// How many.
        frames: u64,
    },
}

/// The page size a database file's header records (bytes 16-17; 1 stands
/// for 65536), if the header is a SQLite header with a valid page size.
pub fn db_page_size(header: &[u8]) -> Option<u32> {
    let magic = header.get(..16)?;
    if magic != b"SQLite format 3\0" {
        return None;
    }
    let raw = u32::from(u16::from_be_bytes([*header.get(16)?, *header.get(17)?]));
    let size = if raw == 1 { 65_536 } else { raw };
    (size.is_power_of_two() && (512..=65_536).contains(&size)).then_some(size)
}

/// Checks the WAL of one index and yields its pages; see the module docs.
#[derive(Debug)]
pub struct WalIndexDecoder {
    page_size: u32,
    header: Option<WalHeader>,
    /// The bytes of the header or frame being assembled.
    buf: Vec<u8>,
    /// Bytes fed so far: the WAL offset where the next byte belongs.
    fed: u64,
    running: WalChecksum,
    /// Frames since the last commit frame.
    pending: u64,
    /// The database size in pages after the last commit.
    commit: Option<u32>,
}

impl WalIndexDecoder {
    /// A decoder for the WAL of a database of `page_size`.
    pub fn new(page_size: u32) -> WalIndexDecoder {
        WalIndexDecoder {
            page_size,
            header: None,
            buf: Vec::new(),
            fed: 0,
            running: WalChecksum::default(),
            pending: 0,
            commit: None,
        }
    }

    /// Bytes fed so far: the offset the next segment must start at.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// Feeds the next bytes of the WAL; `page` receives each verified
    /// frame's page number and page, in WAL order.
    pub fn feed<E>(
        &mut self,
        mut bytes: &[u8],
        page: &mut impl FnMut(u32, &[u8]) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        while !bytes.is_empty() {
            let need = match self.header {
                None => WAL_HEADER_SIZE,
                Some(h) => h.frame_size(),
            };
            let take = (need - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            self.fed += take as u64;
            if self.buf.len() < need {
                break;
            }
            let unit = std::mem::take(&mut self.buf);
            match self.header {
                None => self.header(&unit)?,
                Some(h) => self.frame(&h, &unit, page)?,
            }
            self.buf = unit;
            self.buf.clear();
        }
        Ok(())
    }

    fn header<E>(&mut self, raw: &[u8]) -> Result<(), FeedError<E>> {
        let h = WalHeader::parse(raw).map_err(|e| FeedError::Fault(WalFault::Header(e)))?;
        if h.page_size != self.page_size {
            return Err(FeedError::Fault(WalFault::PageSize {
                wal: h.page_size,
                db: self.page_size,
            }));
        }
        self.running = h.checksum;
        self.header = Some(h);
        Ok(())
    }

    fn frame<E>(
        &mut self,
        h: &WalHeader,
        raw: &[u8],
        page: &mut impl FnMut(u32, &[u8]) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        let offset = self.fed - raw.len() as u64;
        let (head, data) = raw.split_at(FRAME_HEADER_SIZE);
        let head: &[u8; FRAME_HEADER_SIZE] = head.try_into().expect("split at the header size");
        let fh = FrameHeader::parse(head);
        if !h.salts_match(&fh) {
            return Err(FeedError::Fault(WalFault::Salt { offset }));
        }
        let sum = wal_checksum(h.big_endian_checksums, self.running, &head[..8]);
        let sum = wal_checksum(h.big_endian_checksums, sum, data);
        if sum != fh.checksum {
            return Err(FeedError::Fault(WalFault::Checksum { offset }));
        }
        if fh.pgno == 0 {
            return Err(FeedError::Fault(WalFault::PageNumber { offset }));
        }
        self.running = sum;
        page(fh.pgno, data).map_err(FeedError::Sink)?;
        if fh.is_commit() {
            self.commit = Some(fh.commit);
            self.pending = 0;
        } else {
            self.pending += 1;
        }
        Ok(())
    }

    /// Ends the WAL: the database size in pages after its last commit
    /// (`None` when it holds no frame).
    pub fn finish(self) -> Result<Option<u32>, WalFault> {
        if !self.buf.is_empty() {
            return Err(WalFault::Torn {
                offset: self.fed - self.buf.len() as u64,
            });
        }
        if self.pending > 0 {
            return Err(WalFault::Uncommitted {
                frames: self.pending,
            });
        }
        Ok(self.commit)
    }
}

/// An error of [`WalIndexDecoder::feed`]: the WAL is refused, or the page
/// receiver failed.
#[derive(Debug)]
pub enum FeedError<E> {
    /// The WAL is refused.
    Fault(WalFault),
    /// The receiver's error.
    Sink(E),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::WalBuilder;

    const PS: u32 = 512;

    fn wal() -> Vec<u8> {
        let h = WalHeader::new(false, PS, 0, 7, 9).unwrap();
        let mut b = WalBuilder::new(h);
        b.frame(1, &[1; PS as usize], 0);
        b.frame(2, &[2; PS as usize], 2);
        b.frame(1, &[3; PS as usize], 2);
        b.into_bytes()
    }

    /// The pages (number, first byte) a WAL yields, and its last commit.
    type Decoded = (Vec<(u32, u8)>, Option<u32>);

    fn decode(bytes: &[u8], chunk: usize) -> Result<Decoded, WalFault> {
        let mut d = WalIndexDecoder::new(PS);
        let mut pages = Vec::new();
        for c in bytes.chunks(chunk) {
            d.feed(c, &mut |pgno, p: &[u8]| {
                pages.push((pgno, p[0]));
                Ok::<_, ()>(())
            })
            .map_err(|e| match e {
                FeedError::Fault(f) => f,
                FeedError::Sink(()) => unreachable!(),
            })?;
        }
        Ok((pages, d.finish()?))
    }

    #[test]
    fn pages_come_in_wal_order_whatever_the_chunks() {
        for chunk in [1, 7, 100, 4096] {
            let (pages, commit) = decode(&wal(), chunk).unwrap();
            assert_eq!(pages, vec![(1, 1), (2, 2), (1, 3)]);
            assert_eq!(commit, Some(2));
        }
    }

    #[test]
    fn damage_is_refused_with_its_offset() {
        let frame = (FRAME_HEADER_SIZE + PS as usize) as u64;
        let mut w = wal();
        w[32 + 24 + 5] ^= 1;
        assert_eq!(decode(&w, 64), Err(WalFault::Checksum { offset: 32 }));
        let mut w = wal();
        w[32 + frame as usize + 8] ^= 1;
        assert_eq!(decode(&w, 64), Err(WalFault::Salt { offset: 32 + frame }));
        let w = wal();
        assert_eq!(
            decode(&w[..w.len() - 3], 64),
            Err(WalFault::Torn {
                offset: 32 + 2 * frame
            })
        );
        assert_eq!(
            decode(&w[..32 + frame as usize], 64),
            Err(WalFault::Uncommitted { frames: 1 })
        );
        let mut w = wal();
        w[3] ^= 1;
        assert!(matches!(decode(&w, 64), Err(WalFault::Header(_))));
        let mut d = WalIndexDecoder::new(1024);
        let e = d.feed(&wal(), &mut |_, _: &[u8]| Ok::<_, ()>(()));
        assert!(matches!(
            e,
            Err(FeedError::Fault(WalFault::PageSize { wal: 512, db: 1024 }))
        ));
    }

    #[test]
    fn page_size_of_a_database_header() {
        let mut h = b"SQLite format 3\0".to_vec();
        h.extend_from_slice(&[0x10, 0x00]);
        assert_eq!(db_page_size(&h), Some(4096));
        h[16..18].copy_from_slice(&[0, 1]);
        assert_eq!(db_page_size(&h), Some(65_536));
        h[16..18].copy_from_slice(&[0, 3]);
        assert_eq!(db_page_size(&h), None);
        assert_eq!(db_page_size(b"not sqlite at all!"), None);
    }
}
