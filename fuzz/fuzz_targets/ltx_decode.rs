//! Arbitrary bytes into the LTX decoder: it must return an error or a result,
//! never panic, hang or allocate without bound. Beyond that, for whatever
//! decodes:
//!
//! - the streaming decoder and `decode_all` agree (same header, pages and
//!   trailer, or both fail);
//! - what the decoder promises holds: a valid header, pages of the page size,
//!   in ascending order, within `commit`, never the lock page, a snapshot
//!   complete; a flagged file checksum;
//! - the pages re-encode (litevault's encoder) and decode to the same pages;
//! - the rolling checksum of a snapshot's pages is what its trailer claims
//!   (the decoder verifies it: a snapshot that decodes proves it).
//!
//! The same bytes also go to the page-table parser (`pages.bin`), which must
//! round-trip whatever it accepts.
#![no_main]

mod common;

use common::check_promises;
use libfuzzer_sys::fuzz_target;
use litevault_ltx::{
    CHECKSUM_FLAG, Checksum, DbChecksum, Decoder, Encoder, Header, decode_all, lock_pgno,
};

fuzz_target!(|data: &[u8]| {
    // Streaming path, one page at a time into a reused buffer.
    let streamed = (|| {
        let mut dec = Decoder::new(data).ok()?;
        let header = *dec.header();
        let mut buf = Vec::new();
        let mut pages = Vec::new();
        while let Some(pgno) = dec.next_page(&mut buf).ok()? {
            pages.push((pgno, buf.clone()));
        }
        let trailer = dec.finish().ok()?;
        Some((header, pages, trailer))
    })();

    let whole = decode_all(data).ok();
    assert_eq!(
        streamed.is_some(),
        whole.is_some(),
        "streaming and whole-file decoding disagree on whether the file is valid"
    );
    if let (Some(s), Some(w)) = (&streamed, &whole) {
        assert_eq!(s, w, "streaming and whole-file decoding disagree");
    }

    if let Some((header, pages, trailer)) = whole {
        check_promises(&header, &pages, trailer.file_checksum);
        round_trip(header, &pages, trailer.post_apply_checksum);
    }

    // The page table saved beside a database.
    if let Ok(table) = DbChecksum::from_bytes(data) {
        let again = DbChecksum::from_bytes(&table.to_bytes()).expect("a saved table reads back");
        assert_eq!(again.value(), table.value());
        assert_eq!(again.len(), table.len());
    }
});

fn round_trip(header: Header, pages: &[(u32, Vec<u8>)], post: Checksum) {
    if header.no_checksum() || header.version != 3 {
        // Older encodings and NoChecksum files: litevault writes neither as such.
        return;
    }
    // The lock page, which the decoder tolerates, is in no checksum and is
    // never written.
    let lock = lock_pgno(header.page_size);
    let pages: Vec<(u32, Vec<u8>)> = pages.iter().filter(|(p, _)| *p != lock).cloned().collect();
    let pages = &pages[..];
    if header.is_snapshot() {
        let mut sum = DbChecksum::new();
        for (pgno, page) in pages {
            sum.apply_page(*pgno, page);
        }
        assert_eq!(
            sum.value(),
            post,
            "a snapshot decoded whose pages do not give its post-apply checksum"
        );
    }
    let mut enc = Encoder::new(Vec::new(), header).expect("a decoded header encodes");
    for (pgno, page) in pages {
        enc.encode_page(*pgno, page)
            .expect("a decoded page encodes");
    }
    if post.0 & CHECKSUM_FLAG == 0 {
        return;
    }
    let Ok((bytes, _)) = enc.finish(post) else {
        return;
    };
    let (h2, again, t2) = decode_all(&bytes).expect("a re-encoded file decodes");
    assert_eq!(again, pages, "pages changed through a round trip");
    assert_eq!(h2.min_txid, header.min_txid);
    assert_eq!(h2.max_txid, header.max_txid);
    assert_eq!(h2.commit, header.commit);
    assert_eq!(t2.post_apply_checksum, post);
}
