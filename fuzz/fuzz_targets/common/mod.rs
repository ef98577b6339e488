//! Checks shared by the LTX fuzz targets.

use litevault_ltx::{Checksum, Header, lock_pgno};

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
