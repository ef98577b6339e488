//! Arbitrary bytes as a WAL file (header, then frames) and as a `-shm`
//! wal-index header: parsing must return a result or an error, never panic.
//! Properties, for whatever parses:
//!
//! - a WAL header encodes back to the bytes it was parsed from;
//! - the scan returns frames in file order, at frame boundaries, inside the
//!   bytes given, with a non-zero page number, and each transaction ends at
//!   the frame after its last;
//! - feeding the frames in two chunks (split at a frame boundary) gives the
//!   same scan as one feed;
//! - resuming from any transaction's end cursor finds exactly the
//!   transactions after it, and `frame_ends_at` accepts that cursor;
//! - a wal-index header that parses names a committed end past the WAL
//!   header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use litevault_ltx::wal::{
    WAL_HEADER_SIZE, WalCursor, WalHeader, WalIndexHeader, WalScanner, frame_ends_at,
    scan_committed,
};

fuzz_target!(|data: &[u8]| {
    // The first byte picks where to split the feed; the rest is the WAL.
    let Some((&split, wal)) = data.split_first() else {
        return;
    };

    if let Ok(ix) = WalIndexHeader::parse(wal)
        && let Ok(h) = WalHeader::parse(wal)
    {
        let end = ix.committed_end(&h);
        assert!(end >= WAL_HEADER_SIZE as u64);
        let _ = ix.describes(&h);
    }

    let Ok(header) = WalHeader::parse(wal) else {
        return;
    };
    assert_eq!(
        &header.encode()[..],
        &wal[..WAL_HEADER_SIZE],
        "a parsed WAL header encodes to the bytes it came from"
    );
    let frames = &wal[WAL_HEADER_SIZE..];
    let start = WalCursor::start(&header);
    let scan = scan_committed(&header, start, frames);
    let frame_size = header.frame_size() as u64;
    let limit = wal.len() as u64;

    let mut prev_end = start.offset;
    for txn in &scan.txns {
        assert!(!txn.frames.is_empty());
        let mut at = prev_end;
        for f in &txn.frames {
            assert_eq!(f.offset, at, "frames are contiguous, in order");
            assert!(f.pgno != 0);
            assert!(
                f.offset + frame_size <= limit,
                "frame inside the bytes given"
            );
            at += frame_size;
        }
        assert_eq!(
            txn.end.offset, at,
            "a transaction ends after its last frame"
        );
        prev_end = at;
    }
    assert_eq!(scan.end.offset, prev_end);
    assert!((scan.end.offset - WAL_HEADER_SIZE as u64).is_multiple_of(frame_size));

    // Two feeds, split at a frame boundary, give the same scan.
    let n_frames = frames.len() as u64 / frame_size;
    let cut = if n_frames == 0 {
        0
    } else {
        (u64::from(split) % (n_frames + 1)) * frame_size
    } as usize;
    let mut scanner = WalScanner::new(header, start);
    let stop = match scanner.feed(&frames[..cut]) {
        Some(stop) => stop,
        None => scanner
            .feed(&frames[cut..])
            .unwrap_or(litevault_ltx::wal::ScanStop::EndOfData),
    };
    let chunked = scanner.finish(stop);
    assert_eq!(chunked, scan, "chunked feeding changes the scan");

    // Resuming from each transaction's end.
    for (i, txn) in scan.txns.iter().enumerate() {
        let from = (txn.end.offset - WAL_HEADER_SIZE as u64) as usize;
        let again = scan_committed(&header, txn.end, &frames[from..]);
        assert_eq!(again.txns, scan.txns[i + 1..], "resuming at TXN {i}");
        let prev = &frames[from - frame_size as usize..from];
        assert!(
            frame_ends_at(&header, txn.end, prev),
            "a commit's end cursor verifies"
        );
    }
});
