use super::*;
use proptest::prelude::*;

/// Word-at-a-time reference checksum, written independently of the fast one.
fn reference_checksum(big_endian: bool, seed: WalChecksum, data: &[u8]) -> WalChecksum {
    let words: Vec<u32> = data
        .chunks(4)
        .map(|c| {
            let b = [c[0], c[1], c[2], c[3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        })
        .collect();
    let (mut s0, mut s1) = (seed.0, seed.1);
    for pair in words.chunks(2) {
        s0 = s0.wrapping_add(pair[0]).wrapping_add(s1);
        s1 = s1.wrapping_add(pair[1]).wrapping_add(s0);
    }
    WalChecksum(s0, s1)
}

fn page(page_size: u32, seed: u8) -> Vec<u8> {
    (0..page_size as usize)
        .map(|i| seed.wrapping_add((i as u8).wrapping_mul(31)) ^ (i >> 8) as u8)
        .collect()
}

fn header(big_endian: bool, page_size: u32) -> WalHeader {
    WalHeader::new(big_endian, page_size, 3, 0x1234_5678, 0x9abc_def0).unwrap()
}

/// Raw header bytes with arbitrary fields and a *correct* checksum.
fn raw_header(magic: u32, version: u32, page_size: u32) -> [u8; WAL_HEADER_SIZE] {
    let mut raw = [0u8; WAL_HEADER_SIZE];
    for (i, w) in [magic, version, page_size, 0, 11, 22]
        .into_iter()
        .enumerate()
    {
        raw[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
    }
    let sum = wal_checksum(magic == WAL_MAGIC_BE, WalChecksum(0, 0), &raw[..24]);
    raw[24..28].copy_from_slice(&sum.0.to_be_bytes());
    raw[28..32].copy_from_slice(&sum.1.to_be_bytes());
    raw
}

/// Frames: (pgno, commit). Returns the WAL bytes and the cursor after each frame.
fn build(h: &WalHeader, frames: &[(u32, u32)]) -> (Vec<u8>, Vec<WalCursor>) {
    let mut b = WalBuilder::new(*h);
    let mut cursors = Vec::new();
    for (i, &(pgno, commit)) in frames.iter().enumerate() {
        b.frame(pgno, &page(h.page_size, i as u8), commit);
        cursors.push(b.cursor());
    }
    (b.into_bytes(), cursors)
}

fn scan_all(h: &WalHeader, wal: &[u8]) -> WalScan {
    scan_committed(h, WalCursor::start(h), &wal[WAL_HEADER_SIZE..])
}

/// The transactions a correct scan must return when exactly the first
/// `valid` frames verify.
fn expected_txns(
    h: &WalHeader,
    frames: &[(u32, u32)],
    cursors: &[WalCursor],
    valid: usize,
) -> (Vec<WalTxn>, u64) {
    let mut txns = Vec::new();
    let mut pending = Vec::new();
    for (i, &(pgno, commit)) in frames[..valid].iter().enumerate() {
        pending.push(WalFrameRef {
            pgno,
            offset: h.frame_offset(i as u64),
        });
        if commit != 0 {
            txns.push(WalTxn {
                frames: std::mem::take(&mut pending),
                commit,
                end: cursors[i],
            });
        }
    }
    (txns, pending.len() as u64)
}

#[test]
fn checksum_matches_reference_and_chains() {
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    for be in [false, true] {
        let seed = WalChecksum(0xdead_beef, 0x0102_0304);
        let fast = wal_checksum(be, seed, &data);
        assert_eq!(fast, reference_checksum(be, seed, &data));
        let split = wal_checksum(be, wal_checksum(be, seed, &data[..1000]), &data[1000..]);
        assert_eq!(fast, split, "checksum must chain across 8-byte boundaries");
    }
    assert_ne!(
        wal_checksum(false, WalChecksum(0, 0), &data),
        wal_checksum(true, WalChecksum(0, 0), &data)
    );
    assert_eq!(
        wal_checksum(false, WalChecksum(5, 6), &[]),
        WalChecksum(5, 6)
    );
}

#[test]
#[should_panic(expected = "multiple of 8")]
fn checksum_rejects_partial_pairs() {
    wal_checksum(false, WalChecksum(0, 0), &[0; 12]);
}

#[test]
fn header_round_trips_both_orders_and_page_sizes() {
    for be in [false, true] {
        for page_size in [512u32, 1024, 4096, 32768, 65536] {
            let h = header(be, page_size);
            let raw = h.encode();
            let magic = if be { WAL_MAGIC_BE } else { WAL_MAGIC_LE };
            assert_eq!(raw[..4], magic.to_be_bytes());
            // SQLite stores the page size as a plain 32-bit value, 65536 included.
            assert_eq!(raw[8..12], page_size.to_be_bytes());
            let parsed = WalHeader::parse(&raw).unwrap();
            assert_eq!(parsed, h);
            assert_eq!(parsed.encode(), raw);
            assert_eq!(parsed.frame_size(), 24 + page_size as usize);
            assert_eq!(parsed.frame_offset(0), 32);
            assert_eq!(parsed.frame_offset(2), 32 + 2 * (24 + page_size as u64));
            // Trailing bytes are ignored.
            let mut longer = raw.to_vec();
            longer.extend_from_slice(&[0xff; 100]);
            assert_eq!(WalHeader::parse(&longer).unwrap(), h);
        }
    }
}

#[test]
fn header_byte_order_changes_checksum() {
    let le = header(false, 4096);
    let be = header(true, 4096);
    assert_ne!(le.checksum, be.checksum);
    // A header whose magic bit is flipped no longer verifies.
    let mut raw = le.encode();
    raw[3] ^= 1;
    assert!(matches!(
        WalHeader::parse(&raw),
        Err(WalError::HeaderChecksum { .. })
    ));
}

#[test]
fn header_errors_are_typed() {
    assert_eq!(
        WalHeader::parse(&[0u8; 31]),
        Err(WalError::TooShort {
            needed: 32,
            found: 31
        })
    );
    assert_eq!(
        WalHeader::parse(&raw_header(0x377f_0681, WAL_FORMAT_VERSION, 4096)),
        Err(WalError::BadMagic { found: 0x377f_0681 })
    );
    assert_eq!(
        WalHeader::parse(&raw_header(WAL_MAGIC_LE, 3_007_001, 4096)),
        Err(WalError::UnsupportedVersion { found: 3_007_001 })
    );
    for bad in [0u32, 1, 256, 1000, 131_072] {
        assert_eq!(
            WalHeader::parse(&raw_header(WAL_MAGIC_BE, WAL_FORMAT_VERSION, bad)),
            Err(WalError::BadPageSize { found: bad })
        );
        assert_eq!(
            WalHeader::new(false, bad, 0, 0, 0),
            Err(WalError::BadPageSize { found: bad })
        );
    }
    let h = header(false, 4096);
    let mut raw = h.encode();
    raw[17] ^= 0x40; // salt-1 changed, checksum not
    match WalHeader::parse(&raw) {
        Err(WalError::HeaderChecksum { stored, computed }) => {
            assert_eq!(stored, h.checksum);
            assert_ne!(computed, stored);
        }
        other => panic!("expected HeaderChecksum, got {other:?}"),
    }
    let mut raw = h.encode();
    raw[31] ^= 1; // stored checksum changed
    assert!(matches!(
        WalHeader::parse(&raw),
        Err(WalError::HeaderChecksum { .. })
    ));
}

#[test]
fn error_messages_say_what_to_do() {
    let msg = WalError::BadMagic { found: 7 }.to_string();
    assert!(
        msg.contains("0x00000007") && msg.contains("-wal file"),
        "{msg}"
    );
    let msg = WalError::HeaderChecksum {
        stored: WalChecksum(1, 2),
        computed: WalChecksum(3, 4),
    }
    .to_string();
    assert!(
        msg.contains("00000001:00000002") && msg.contains("read it again"),
        "{msg}"
    );
}

#[test]
fn frame_header_round_trips() {
    let fh = FrameHeader {
        pgno: 7,
        commit: 9,
        salt1: 1,
        salt2: 2,
        checksum: WalChecksum(3, 4),
    };
    assert_eq!(FrameHeader::parse(&fh.encode()), fh);
    assert!(fh.is_commit());
}

#[test]
fn scans_committed_transactions_in_both_orders() {
    for be in [false, true] {
        for page_size in [512u32, 4096, 65536] {
            let h = header(be, page_size);
            let frames = [(1, 0), (2, 0), (3, 3), (2, 3), (4, 0), (1, 4)];
            let (wal, cursors) = build(&h, &frames);
            let scan = scan_all(&h, &wal);
            let (txns, uncommitted) = expected_txns(&h, &frames, &cursors, frames.len());
            assert_eq!(scan.txns, txns);
            assert_eq!(scan.txns.len(), 3);
            assert_eq!(scan.txns[2].commit, 4);
            assert_eq!(uncommitted, 0);
            assert_eq!(scan.uncommitted_frames, 0);
            assert_eq!(scan.stop, ScanStop::EndOfData);
            assert_eq!(scan.end, *cursors.last().unwrap());
            assert_eq!(scan.end.offset, wal.len() as u64);
            // Frame references point at the right page images.
            for (i, f) in scan.txns.iter().flat_map(|t| &t.frames).enumerate() {
                let at = f.page_offset() as usize;
                assert_eq!(
                    &wal[at..at + page_size as usize],
                    &page(page_size, i as u8)[..]
                );
            }
        }
    }
}

#[test]
fn parse_of_builder_output_is_header() {
    let h = header(true, 1024);
    let wal = WalBuilder::build(&h, [(1, page(1024, 0), 1)]);
    assert_eq!(WalHeader::parse(&wal).unwrap(), h);
}

#[test]
fn empty_wal_scans_to_end_of_data() {
    let h = header(false, 512);
    let scan = scan_committed(&h, WalCursor::start(&h), &[]);
    assert!(scan.txns.is_empty());
    assert_eq!(scan.end, WalCursor::start(&h));
    assert_eq!(scan.stop, ScanStop::EndOfData);
    assert_eq!(scan.uncommitted_frames, 0);
}

#[test]
fn torn_last_frame_is_ignored() {
    let h = header(false, 1024);
    let frames = [(1, 1), (2, 0), (3, 3)];
    let (wal, cursors) = build(&h, &frames);
    for cut in [1, 24, 500, h.frame_size() - 1] {
        let torn = &wal[..wal.len() - cut];
        let scan = scan_all(&h, torn);
        assert_eq!(scan.txns.len(), 1);
        assert_eq!(scan.end, cursors[0]);
        assert_eq!(scan.uncommitted_frames, 1);
        assert_eq!(
            scan.stop,
            ScanStop::TornFrame {
                offset: h.frame_offset(2)
            }
        );
    }
}

#[test]
fn salt_mismatch_stops_scan() {
    let h = header(true, 512);
    let other = WalHeader::new(true, 512, 3, 0x1234_5678, 0x0bad_0bad).unwrap();
    let (mut wal, cursors) = build(&h, &[(1, 1), (2, 2)]);
    // A frame that verifies under `other` but carries the wrong salt-2 here.
    let foreign = WalBuilder::build(&other, [(3, page(512, 9), 3)]);
    wal.extend_from_slice(&foreign[32..]);
    let scan = scan_all(&h, &wal);
    assert_eq!(scan.txns.len(), 2);
    assert_eq!(scan.end, cursors[1]);
    assert_eq!(
        scan.stop,
        ScanStop::SaltMismatch {
            offset: h.frame_offset(2)
        }
    );
    assert_eq!(scan.stop.offset(), Some(h.frame_offset(2)));
}

#[test]
fn checksum_mismatch_stops_scan() {
    let h = header(false, 4096);
    let frames = [(1, 0), (2, 2), (3, 0), (4, 4), (5, 5)];
    let (mut wal, cursors) = build(&h, &frames);
    let bad = h.frame_offset(3) as usize + 24 + 1000;
    wal[bad] ^= 0x10;
    let scan = scan_all(&h, &wal);
    assert_eq!(scan.txns.len(), 1);
    assert_eq!(scan.end, cursors[1]);
    assert_eq!(
        scan.uncommitted_frames, 1,
        "frame 2 verified but never committed"
    );
    assert_eq!(
        scan.stop,
        ScanStop::ChecksumMismatch {
            offset: h.frame_offset(3)
        }
    );
}

#[test]
fn zero_page_number_is_invalid() {
    let h = header(false, 512);
    let (wal, _) = build(&h, &[(1, 1), (0, 1)]);
    let scan = scan_all(&h, &wal);
    assert_eq!(scan.txns.len(), 1);
    assert_eq!(
        scan.stop,
        ScanStop::InvalidPageNumber {
            offset: h.frame_offset(1)
        }
    );
}

#[test]
fn uncommitted_tail_is_counted_not_returned() {
    for be in [false, true] {
        let h = header(be, 512);
        let frames = [(1, 0), (2, 2), (3, 0), (4, 0), (5, 0)];
        let (wal, cursors) = build(&h, &frames);
        let scan = scan_all(&h, &wal);
        assert_eq!(scan.txns.len(), 1);
        assert_eq!(scan.txns[0].frames.len(), 2);
        assert_eq!(scan.end, cursors[1]);
        assert_eq!(scan.uncommitted_frames, 3);
        assert_eq!(scan.stop, ScanStop::EndOfData);
    }
}

#[test]
fn stale_frames_of_older_generation_are_ignored() {
    for be in [false, true] {
        let old = header(be, 1024);
        let old_frames: Vec<(u32, u32)> = (0..12)
            .map(|i| (i % 4 + 1, if i % 3 == 2 { 4 } else { 0 }))
            .collect();
        let (mut wal, _) = build(&old, &old_frames);
        assert_eq!(scan_all(&old, &wal).txns.len(), 4);

        // SQLite restarts the WAL: new header in place, new frames from offset
        // 32 with the same page numbers, old frames left behind the new end.
        let new = old.next_generation(0x5555_aaaa);
        assert_eq!(new.salt1, old.salt1 + 1);
        assert_eq!(new.checkpoint_seq, old.checkpoint_seq + 1);
        let new_frames = [(1, 0), (2, 4), (3, 4)];
        let (fresh, cursors) = build(&new, &new_frames);
        wal[..fresh.len()].copy_from_slice(&fresh);

        let parsed = WalHeader::parse(&wal).unwrap();
        assert_eq!(parsed, new);
        let scan = scan_all(&parsed, &wal);
        let (txns, _) = expected_txns(&new, &new_frames, &cursors, 3);
        assert_eq!(scan.txns, txns);
        assert_eq!(scan.end, cursors[2]);
        assert_eq!(scan.uncommitted_frames, 0);
        assert_eq!(
            scan.stop,
            ScanStop::SaltMismatch {
                offset: new.frame_offset(3)
            }
        );
    }
}

#[test]
fn resumes_from_a_saved_cursor_with_a_sliced_file() {
    let h = header(true, 512);
    let frames = [(1, 1), (2, 0), (3, 3), (4, 4), (1, 0), (5, 5)];
    let (wal, cursors) = build(&h, &frames);
    let all = scan_all(&h, &wal);
    for (i, txn) in all.txns.iter().enumerate() {
        let from = txn.end;
        let rest = scan_committed(&h, from, &wal[from.offset as usize..]);
        assert_eq!(rest.txns, all.txns[i + 1..]);
        assert_eq!(rest.end, *cursors.last().unwrap());
    }
    // A cursor with no new data stays put.
    let last = all.end;
    let nothing = scan_committed(&h, last, &wal[last.offset as usize..]);
    assert!(nothing.txns.is_empty());
    assert_eq!(nothing.end, last);
}

#[test]
fn frame_ends_at_proves_positions() {
    let h = header(false, 512);
    let frames = [(1, 0), (2, 2), (3, 3)];
    let (wal, cursors) = build(&h, &frames);
    let fs = h.frame_size();
    let frame_before = |c: WalCursor| &wal[c.offset as usize - fs..c.offset as usize];

    let start = WalCursor::start(&h);
    assert!(frame_ends_at(&h, start, &[]));
    assert!(!frame_ends_at(
        &h,
        WalCursor {
            checksum: WalChecksum(1, 1),
            ..start
        },
        &[]
    ));
    for &c in &cursors {
        assert!(frame_ends_at(&h, c, frame_before(c)));
        let wrong = WalCursor {
            checksum: WalChecksum(c.checksum.0 ^ 1, c.checksum.1),
            ..c
        };
        assert!(!frame_ends_at(&h, wrong, frame_before(c)));
    }
    // Wrong length / misaligned offset.
    let c = cursors[1];
    assert!(!frame_ends_at(&h, c, &frame_before(c)[1..]));
    assert!(!frame_ends_at(
        &h,
        WalCursor {
            offset: c.offset + 8,
            ..c
        },
        frame_before(c)
    ));
    assert!(!frame_ends_at(
        &h,
        WalCursor { offset: 40, ..c },
        frame_before(c)
    ));

    // After a restart the old position no longer belongs to the WAL, whether
    // the old frame is still there (salts differ) or has been overwritten.
    let new = h.next_generation(42);
    let mut restarted = wal.clone();
    restarted[..32].copy_from_slice(&new.encode());
    assert!(!frame_ends_at(&new, cursors[1], frame_before(cursors[1])));
    let (fresh, _) = build(&new, &[(1, 0), (2, 2), (3, 3)]);
    restarted[..fresh.len()].copy_from_slice(&fresh);
    let end = cursors[1].offset as usize;
    assert!(!frame_ends_at(&new, cursors[1], &restarted[end - fs..end]));
}

#[derive(Clone, Debug)]
enum Damage {
    None,
    Truncate(prop::sample::Index),
    BitFlip(prop::sample::Index, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        1 => Just(Damage::None),
        3 => any::<prop::sample::Index>().prop_map(Damage::Truncate),
        3 => (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Damage::BitFlip(i, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn damaged_wal_scans_to_exactly_the_committed_prefix(
        be in any::<bool>(),
        page_size in prop_oneof![Just(512u32), Just(1024), Just(4096)],
        salts in any::<(u32, u32)>(),
        txns in prop::collection::vec(prop::collection::vec(1u32..40, 1..5), 0..6),
        tail in prop::collection::vec(1u32..40, 0..3),
        damage in damage(),
    ) {
        let h = WalHeader::new(be, page_size, 0, salts.0, salts.1).unwrap();
        let mut frames = Vec::new();
        for (t, pgnos) in txns.iter().enumerate() {
            for (i, &p) in pgnos.iter().enumerate() {
                let commit = if i + 1 == pgnos.len() { 40 + t as u32 } else { 0 };
                frames.push((p, commit));
            }
        }
        frames.extend(tail.iter().map(|&p| (p, 0)));
        let (mut wal, cursors) = build(&h, &frames);
        let fs = h.frame_size();
        let frame_of = |pos: usize| (pos - WAL_HEADER_SIZE) / fs;

        // How many frames must still verify, and where the scan must stop.
        let (valid, stop_at) = match damage {
            Damage::None => (frames.len(), None),
            Damage::Truncate(ix) => {
                let len = ix.index(wal.len() + 1);
                wal.truncate(len);
                if len < WAL_HEADER_SIZE {
                    let too_short = matches!(WalHeader::parse(&wal), Err(WalError::TooShort { .. }));
                    prop_assert!(too_short);
                    return Ok(());
                }
                let whole = frame_of(len);
                let torn = !(len - WAL_HEADER_SIZE).is_multiple_of(fs);
                (whole, torn.then(|| h.frame_offset(whole as u64)))
            }
            Damage::BitFlip(ix, bit) => {
                let pos = ix.index(wal.len());
                wal[pos] ^= 1 << bit;
                if pos < WAL_HEADER_SIZE {
                    prop_assert!(WalHeader::parse(&wal).is_err());
                    return Ok(());
                }
                let k = frame_of(pos);
                (k, Some(h.frame_offset(k as u64)))
            }
        };

        let parsed = WalHeader::parse(&wal).unwrap();
        prop_assert_eq!(parsed, h);
        let scan = scan_all(&parsed, &wal);
        let (txns, uncommitted) = expected_txns(&h, &frames, &cursors, valid);
        prop_assert_eq!(scan.stop.offset(), stop_at);
        if let Damage::Truncate(_) = damage
            && stop_at.is_some()
        {
            let torn = matches!(scan.stop, ScanStop::TornFrame { .. });
            prop_assert!(torn, "{:?}", scan.stop);
        }
        prop_assert_eq!(scan.end, txns.last().map_or(WalCursor::start(&h), |t| t.end));
        prop_assert_eq!(&scan.txns, &txns);
        prop_assert_eq!(scan.uncommitted_frames, uncommitted);
        for t in &scan.txns {
            let end = t.end.offset as usize;
            prop_assert!(frame_ends_at(&h, t.end, &wal[end - fs..end]));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        be in any::<bool>(),
        offset in 0u64..4000,
        sum in any::<(u32, u32)>(),
    ) {
        let _ = WalHeader::parse(&bytes);
        let h = WalHeader::new(be, 512, 0, 0, 0).unwrap();
        let cursor = WalCursor { offset, checksum: WalChecksum(sum.0, sum.1) };
        let scan = scan_committed(&h, cursor, &bytes);
        prop_assert!(scan.end.offset >= offset);
        let _ = frame_ends_at(&h, cursor, &bytes);
    }
}
