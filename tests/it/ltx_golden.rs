//! Golden tests against a real replica written by Litestream 0.5.17
//! (`tests/fixtures/litestream-replica`, written by Litestream 0.5.17).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use litevault::ltx::{
    CHECKSUM_FLAG, Checksum, CompactOptions, DbChecksum, Decoder, Encoder, HEADER_FLAG_NO_CHECKSUM,
    Header, PageEncoding, Txid, compact, decode_all, parse_filename,
};
use sha2::{Digest, Sha256};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litestream-replica")
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// (level, min, max, path) of every file under replica/ltx, sorted.
fn files() -> Vec<(u32, Txid, Txid, PathBuf)> {
    let mut out = Vec::new();
    for level in fs::read_dir(fixture().join("replica/ltx")).unwrap() {
        let level = level.unwrap();
        let lvl: u32 = level.file_name().to_str().unwrap().parse().unwrap();
        for f in fs::read_dir(level.path()).unwrap() {
            let f = f.unwrap();
            let (min, max) = parse_filename(f.file_name().to_str().unwrap()).unwrap();
            out.push((lvl, min, max, f.path()));
        }
    }
    out.sort();
    out
}

fn l0_files() -> Vec<(Txid, PathBuf)> {
    files()
        .into_iter()
        .filter(|(l, ..)| *l == 0)
        .map(|(_, min, _, p)| (min, p))
        .collect()
}

/// Applies decoded files to a database image: page i at (i-1)*page_size, length commit*page_size.
fn apply(db: &mut Vec<u8>, header: &Header, pages: &[(u32, Vec<u8>)]) {
    let ps = header.page_size as usize;
    for (pgno, data) in pages {
        let at = (*pgno as usize - 1) * ps;
        if db.len() < at + ps {
            db.resize(at + ps, 0);
        }
        db[at..at + ps].copy_from_slice(data);
    }
    db.resize(header.commit as usize * ps, 0);
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&fs::read_to_string(fixture().join("expected.json")).unwrap()).unwrap()
}

#[test]
fn every_file_decodes_and_matches_the_listing() {
    let listing = fs::read_to_string(fixture().join("ltx_listing.txt")).unwrap();
    let mut listed = BTreeMap::new();
    for line in listing.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        let min: Txid = f[1].parse().unwrap();
        let max: Txid = f[2].parse().unwrap();
        let size: u64 = f[3].parse().unwrap();
        listed.insert((f[0].parse::<u32>().unwrap(), min, max), size);
    }
    let all = files();
    assert_eq!(all.len(), 48);
    for (level, min, max, path) in &all {
        let bytes = fs::read(path).unwrap();
        if let Some(size) = listed.get(&(*level, *min, *max)) {
            assert_eq!(*size, bytes.len() as u64, "{}", path.display());
        }
        let dec = Decoder::new(&bytes[..]).unwrap();
        assert_eq!(dec.encoding(), PageEncoding::PageHeader6);
        let (header, pages, trailer) =
            decode_all(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!((header.min_txid, header.max_txid), (*min, *max));
        assert_eq!(header.page_size, 4096);
        assert_eq!(header.flags, HEADER_FLAG_NO_CHECKSUM, "{}", path.display());
        assert_eq!(header.version, 3);
        assert_eq!(header.pre_apply_checksum, Checksum(0));
        assert_eq!(trailer.post_apply_checksum, Checksum(0));
        assert!(trailer.file_checksum.0 & CHECKSUM_FLAG != 0);
        assert!(pages.windows(2).all(|w| w[0].0 < w[1].0));
        if header.is_snapshot() {
            assert_eq!(pages.len() as u32, header.commit, "{}", path.display());
        }
    }
    // Every level-0 file is in the listing.
    assert_eq!(listed.keys().filter(|k| k.0 == 0).count(), 30);
}

#[test]
fn latest_snapshot_restores_byte_for_byte() {
    let bytes =
        fs::read(fixture().join("replica/ltx/9/0000000000000001-000000000000001e.ltx")).unwrap();
    let (header, pages, _) = decode_all(&bytes).unwrap();
    let mut db = Vec::new();
    apply(&mut db, &header, &pages);
    let exp = expected();
    assert_eq!(
        db.len() as u64,
        exp["latest_restore"]["db_bytes"].as_u64().unwrap()
    );
    assert_eq!(
        sha256_hex(&db),
        exp["latest_restore"]["db_sha256"].as_str().unwrap()
    );
}

#[test]
fn points_in_time_restore_byte_for_byte() {
    let exp = expected();
    let l0 = l0_files();
    for point in exp["points_in_time"].as_array().unwrap() {
        let txid: Txid = point["txid"].as_str().unwrap().parse().unwrap();
        let mut db = Vec::new();
        for (min, path) in l0.iter().filter(|(min, _)| *min <= txid) {
            let (header, pages, _) = decode_all(&fs::read(path).unwrap()).unwrap();
            assert_eq!(header.min_txid, *min);
            apply(&mut db, &header, &pages);
        }
        let restored = &point["restored"];
        assert_eq!(
            db.len() as u64,
            restored["db_bytes"].as_u64().unwrap(),
            "{}",
            point["step"]
        );
        assert_eq!(
            sha256_hex(&db),
            restored["db_sha256"].as_str().unwrap(),
            "step {} txid {txid}",
            point["step"]
        );
    }
}

#[test]
fn reencoded_snapshot_decodes_to_the_same_pages() {
    let bytes =
        fs::read(fixture().join("replica/ltx/9/0000000000000001-000000000000001e.ltx")).unwrap();
    let (header, pages, _) = decode_all(&bytes).unwrap();
    // litevault writes real checksums: drop NoChecksum, compute the post-apply checksum.
    let ours = Header { flags: 0, ..header };
    let db: DbChecksum = pages
        .iter()
        .map(|(p, d)| (*p, litevault::ltx::page_checksum(*p, d)))
        .collect();
    let mut enc = Encoder::new(Vec::new(), ours).unwrap();
    for (pgno, data) in &pages {
        enc.encode_page(*pgno, data).unwrap();
    }
    let (out, trailer) = enc.finish(db.value()).unwrap();
    let (h2, pages2, t2) = decode_all(&out).unwrap();
    assert_eq!(h2, ours);
    assert_eq!(t2, trailer);
    assert_eq!(pages2, pages);
}

#[test]
fn compacting_all_l0_files_gives_the_snapshot() {
    let inputs: Vec<Vec<u8>> = l0_files()
        .iter()
        .map(|(_, p)| fs::read(p).unwrap())
        .collect();
    let decoders: Vec<Decoder<&[u8]>> = inputs
        .iter()
        .map(|b| Decoder::new(&b[..]).unwrap())
        .collect();
    let (out, trailer) = compact(decoders, Vec::new(), CompactOptions::default()).unwrap();
    let (header, pages, t2) = decode_all(&out).unwrap();
    assert_eq!(t2, trailer);
    assert_eq!((header.min_txid, header.max_txid), (Txid(1), Txid(0x1e)));

    let snap =
        fs::read(fixture().join("replica/ltx/9/0000000000000001-000000000000001e.ltx")).unwrap();
    let (snap_header, snap_pages, _) = decode_all(&snap).unwrap();
    assert_eq!(header.commit, snap_header.commit);
    assert_eq!(pages, snap_pages);
    assert_eq!(
        trailer.post_apply_checksum,
        DbChecksum::from_database(
            4096,
            &snap_pages
                .iter()
                .flat_map(|(_, d)| d.clone())
                .collect::<Vec<u8>>()
        )
        .value()
    );
}

#[test]
fn compacting_levels_matches_litestream_levels() {
    // L1 0000000000000002-000000000000000d is Litestream's merge of L0 2..=0xd.
    let l0 = l0_files();
    let pick: Vec<Vec<u8>> = l0
        .iter()
        .filter(|(min, _)| (2..=0xd).contains(&min.0))
        .map(|(_, p)| fs::read(p).unwrap())
        .collect();
    let decoders = pick.iter().map(|b| Decoder::new(&b[..]).unwrap()).collect();
    // The inputs carry no checksums, so a non-snapshot output needs them supplied.
    let err = compact(decoders, Vec::new(), CompactOptions::default()).unwrap_err();
    assert!(
        matches!(err, litevault::ltx::LtxError::MissingChecksum { .. }),
        "{err}"
    );

    let decoders = pick.iter().map(|b| Decoder::new(&b[..]).unwrap()).collect();
    let opts = CompactOptions {
        pre_apply_checksum: Some(Checksum(CHECKSUM_FLAG | 1)),
        post_apply_checksum: Some(Checksum(CHECKSUM_FLAG | 2)),
        ..CompactOptions::default()
    };
    let (out, _) = compact(decoders, Vec::new(), opts).unwrap();
    let (_, pages, _) = decode_all(&out).unwrap();
    let theirs =
        fs::read(fixture().join("replica/ltx/1/0000000000000002-000000000000000d.ltx")).unwrap();
    let (theirs_header, their_pages, _) = decode_all(&theirs).unwrap();
    assert_eq!(pages, their_pages);
    assert_eq!(theirs_header.commit, 0x13);
}
