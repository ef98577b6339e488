//! Checks and an LTX writer shared by the LTX fuzz targets. Each target
//! uses part of it.
#![allow(dead_code)]

use litevault_ltx::{CHECKSUM_FLAG, Checksum, Header, lock_pgno};

/// What a file the decoder accepts must satisfy: a valid header, pages of
/// the page size, ascending, within `commit`, a snapshot complete, a flagged
/// file checksum. (The lock page is tolerated, as Go's decoder does, and
/// left out of every checksum; litevault's encoder never writes it.)
pub fn check_promises(h: &Header, pages: &[(u32, Vec<u8>)], file_checksum: Checksum) {
    h.validate().expect("a decoded header is valid");
    assert!(file_checksum.is_flagged(), "file checksum without bit 63");
    let lock = lock_pgno(h.page_size);
    let mut prev = 0u32;
    for (pgno, page) in pages {
        assert_eq!(page.len(), h.page_size as usize, "page {pgno} size");
        assert!(*pgno > prev, "pages out of order: {prev} then {pgno}");
        assert!(*pgno <= h.commit, "page {pgno} above commit {}", h.commit);
        prev = *pgno;
    }
    if h.is_snapshot() {
        // Every page from 1 to commit, the lock page perhaps not.
        let held = pages.iter().filter(|(p, _)| *p != lock).count() as u64;
        let want = u64::from(h.commit) - u64::from(h.commit >= lock);
        assert_eq!(held, want, "an incomplete snapshot decoded");
    }
}

/// CRC-64/GO-ISO, the LTX file checksum (Go `hash/crc64` with the ISO table).
const CRC: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes an LTX v0.5 file the way the format describes it, checking
/// nothing (not litevault's encoder, which refuses what is invalid), with a
/// correct file checksum: `post` goes into the trailer as given, the pages
/// in the order given.
pub fn write_raw(h: &Header, pages: &[(u32, Vec<u8>)], post: Checksum) -> Vec<u8> {
    let mut out = h.encode().to_vec();
    let mut hash = CRC.digest();
    hash.update(&out);
    let mut index = Vec::new();
    for (pgno, data) in pages {
        let start = out.len() as u64;
        let block = lz4_flex::block::compress(data);
        let mut head = Vec::with_capacity(10);
        head.extend_from_slice(&pgno.to_be_bytes());
        head.extend_from_slice(&1u16.to_be_bytes());
        head.extend_from_slice(&(block.len() as u32).to_be_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&block);
        hash.update(&head);
        hash.update(data);
        put_uvarint(&mut index, u64::from(*pgno));
        put_uvarint(&mut index, start);
        put_uvarint(&mut index, out.len() as u64 - start);
    }
    let mut tail = vec![0u8; 6];
    let index_start = tail.len();
    tail.extend_from_slice(&index);
    tail.push(0);
    let index_len = (tail.len() - index_start) as u64;
    tail.extend_from_slice(&index_len.to_be_bytes());
    tail.extend_from_slice(&post.0.to_be_bytes());
    hash.update(&tail);
    tail.extend_from_slice(&(CHECKSUM_FLAG | hash.finalize()).to_be_bytes());
    out.extend_from_slice(&tail);
    out
}
