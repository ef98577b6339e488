//! Structurally valid LTX files with hostile contents: whatever `arbitrary`
//! makes of the input becomes one to three files with a correct file checksum
//! (so the decoder's checks past the CRC are what is exercised), written by an
//! LTX writer independent of litevault's (`common::write_raw`; litevault's
//! encoder refuses invalid headers): commit 0x7fffffff or 0xffffffff, TXID 0, a range that runs
//! backwards, backwards timestamps, pages out of order, above commit, on the
//! lock page, a snapshot missing pages, a wrong post-apply checksum.
//!
//! Properties: a file the decoder accepts keeps the decoder's promises (see
//! `common`); files written by litevault's encoder from valid headers always
//! decode to the pages given; and when the files compact, the output decodes
//! to the newest version of each page up to the newest file's commit.
//!
//! Chains of such files through the library's restore (planner, merge,
//! verification): `restore_chain`.
#![no_main]

mod common;

use std::collections::BTreeMap;

use common::{check_promises, write_raw};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use litevault_ltx::{
    CHECKSUM_FLAG, Checksum, CompactOptions, DbChecksum, Decoder, Encoder, HEADER_FLAG_NO_CHECKSUM,
    Header, ReservedChecksums, Txid, compact, decode_all, lock_pgno,
};

#[derive(Arbitrary, Debug)]
enum Commit {
    Pages,
    Small(u8),
    Huge,
    Max,
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Range {
    /// Continues the previous file (or starts at 1).
    Next(u8),
    Zero,
    Backwards,
    Any(u64, u64),
}

#[derive(Arbitrary, Debug)]
enum Flags {
    None,
    NoChecksum { pre: u64, post: u64 },
    Any(u32),
}

#[derive(Arbitrary, Debug)]
enum Post {
    Right,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
struct FileSpec {
    page_size_log: u8,
    odd_page_size: Option<u32>,
    commit: Commit,
    range: Range,
    timestamp_ms: i64,
    pre_apply: u64,
    flags: Flags,
    wal: Option<(i64, i64, u32, u32)>,
    node_id: u64,
    /// Page number and a seed for its bytes.
    pages: Vec<(u16, u8)>,
    keep_order: bool,
    lock_page: bool,
    post: Post,
}

#[derive(Arbitrary, Debug)]
struct Spec {
    files: Vec<FileSpec>,
    litestream_compat: bool,
    compact_timestamp: Option<i64>,
}

fn page_bytes(page_size: u32, pgno: u32, seed: u8) -> Vec<u8> {
    let mut p = vec![seed; page_size as usize];
    p[..4].copy_from_slice(&pgno.to_be_bytes());
    if seed.is_multiple_of(3) {
        // Something LZ4 cannot shrink much.
        let mut x = u32::from(seed) | (pgno << 8) | 1;
        for b in p.iter_mut().skip(4) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }
    p
}

struct Built {
    header: Header,
    pages: Vec<(u32, Vec<u8>)>,
    post: Checksum,
}

fn build(spec: &FileSpec, prev_max: u64) -> Built {
    let page_size = spec
        .odd_page_size
        .unwrap_or(1u32 << (9 + u32::from(spec.page_size_log % 8)));
    let valid_size = page_size.is_power_of_two() && (512..=65536).contains(&page_size);
    let (min, max) = match spec.range {
        Range::Next(n) => {
            let min = prev_max.saturating_add(1);
            (min, min.saturating_add(u64::from(n % 4)))
        }
        Range::Zero => (0, 0),
        Range::Backwards => (prev_max.saturating_add(5), prev_max.saturating_add(2)),
        Range::Any(a, b) => (a, b),
    };
    let mut pages: Vec<(u32, Vec<u8>)> = Vec::new();
    if valid_size {
        let mut seen = std::collections::BTreeSet::new();
        for (pgno, seed) in spec.pages.iter().take(24) {
            let pgno = u32::from(*pgno % 64) + 1;
            if spec.keep_order && !seen.insert(pgno) {
                continue;
            }
            pages.push((pgno, page_bytes(page_size, pgno, *seed)));
        }
        if spec.lock_page {
            let lock = lock_pgno(page_size);
            pages.push((lock, page_bytes(page_size, lock, 7)));
        }
        if spec.keep_order {
            pages.sort_by_key(|p| p.0);
        }
    }
    let top = pages.iter().map(|p| p.0).max().unwrap_or(0);
    let commit = match spec.commit {
        Commit::Pages => top,
        Commit::Small(n) => u32::from(n),
        Commit::Huge => 0x7fff_ffff,
        Commit::Max => u32::MAX,
        Commit::Any(c) => c,
    };
    let snapshot = min == 1;
    let (flags, reserved) = match spec.flags {
        Flags::None => (0, None),
        Flags::NoChecksum { pre, post } => (
            HEADER_FLAG_NO_CHECKSUM,
            Some(ReservedChecksums {
                pre_apply: Checksum(pre),
                post_apply: Checksum(post),
            }),
        ),
        Flags::Any(f) => (f, None),
    };
    let pre_apply = if snapshot || flags & HEADER_FLAG_NO_CHECKSUM != 0 {
        Checksum(spec.pre_apply & u64::from(spec.page_size_log > 200))
    } else {
        Checksum(spec.pre_apply | CHECKSUM_FLAG)
    };
    let (wal_offset, wal_size, salt1, salt2) = spec.wal.unwrap_or_default();
    let header = Header {
        version: 3,
        flags,
        page_size,
        commit,
        min_txid: Txid(min),
        max_txid: Txid(max),
        timestamp_ms: spec.timestamp_ms,
        pre_apply_checksum: pre_apply,
        wal_offset,
        wal_size,
        wal_salt1: salt1,
        wal_salt2: salt2,
        node_id: spec.node_id,
        reserved_checksums: reserved,
    };
    let right = {
        // The lock page is in no checksum.
        let lock = lock_pgno(page_size);
        let mut sum = DbChecksum::new();
        for (pgno, page) in pages.iter().filter(|(p, _)| *p != lock) {
            sum.apply_page(*pgno, page);
        }
        sum.value()
    };
    let post = match spec.post {
        Post::Right => right,
        Post::Any(p) => Checksum(p),
    };
    let post = if flags & HEADER_FLAG_NO_CHECKSUM != 0 {
        Checksum(0)
    } else {
        post
    };
    Built {
        header,
        pages,
        post,
    }
}

fuzz_target!(|spec: Spec| {
    let mut files = Vec::new();
    let mut prev_max = 0;
    for f in spec.files.iter().take(3) {
        let b = build(f, prev_max);
        prev_max = b.header.max_txid.0;
        let bytes = write_raw(&b.header, &b.pages, b.post);
        files.push((b, bytes));
    }

    let mut decoded = Vec::new();
    for (b, bytes) in &files {
        match decode_all(bytes) {
            Ok((h, pages, trailer)) => {
                check_promises(&h, &pages, trailer.file_checksum);
                assert_eq!(pages, b.pages, "the pages written are the pages read");
                decoded.push((h, pages));
            }
            Err(_) => decoded.clear(),
        }
        encoder_round_trip(b);
    }
    if decoded.len() != files.len() || files.is_empty() {
        return;
    }

    // Compaction of the files that all decode.
    let inputs: Vec<_> = files
        .iter()
        .map(|(_, bytes)| Decoder::new(&bytes[..]).expect("decoded above"))
        .collect();
    let opts = CompactOptions {
        timestamp_ms: spec.compact_timestamp,
        litestream_compat: spec.litestream_compat,
        ..Default::default()
    };
    let Ok((out, _)) = compact(inputs, Vec::new(), opts) else {
        return;
    };
    let (h, pages, trailer) = decode_all(&out).expect("a compacted file decodes");
    check_promises(&h, &pages, trailer.file_checksum);
    let mut model = BTreeMap::new();
    for (_, ps) in &decoded {
        for (pgno, p) in ps {
            model.insert(*pgno, p.clone());
        }
    }
    let (first, last) = (&decoded[0].0, &decoded[decoded.len() - 1].0);
    // Up to the newest commit; the lock page (tolerated in an input) is
    // left out.
    let lock = lock_pgno(last.page_size);
    model.retain(|pgno, _| *pgno <= last.commit && *pgno != lock);
    let model: Vec<(u32, Vec<u8>)> = model.into_iter().collect();
    let pgnos = |ps: &[(u32, Vec<u8>)]| ps.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(
        pgnos(&pages),
        pgnos(&model),
        "compaction keeps every page, and only those"
    );
    assert!(
        pages == model,
        "compaction keeps the newest version of each page"
    );
    assert_eq!((h.min_txid, h.max_txid), (first.min_txid, last.max_txid));
    assert_eq!(h.commit, last.commit);
});

/// Valid headers through litevault's own encoder always decode to the pages
/// given.
fn encoder_round_trip(b: &Built) {
    let header = Header {
        flags: 0,
        reserved_checksums: None,
        ..b.header
    };
    let Ok(mut enc) = Encoder::new(Vec::new(), header) else {
        return;
    };
    for (pgno, page) in &b.pages {
        if enc.encode_page(*pgno, page).is_err() {
            return;
        }
    }
    let Ok((bytes, trailer)) = enc.finish(b.post) else {
        return;
    };
    let (h, pages, t) = decode_all(&bytes).expect("what the encoder writes decodes");
    assert_eq!(pages, b.pages);
    assert_eq!(t, trailer);
    assert_eq!(
        (h.min_txid, h.max_txid, h.commit),
        (header.min_txid, header.max_txid, header.commit)
    );
}
