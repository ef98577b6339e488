//! Compatibility with a replica written by real Litestream 0.5.17
//! (`tests/fixtures/litestream-replica/`, written by Litestream 0.5.17): restoring it at every TXID in
//! its `expected.json` gives the very same database file, byte for byte.

use std::path::PathBuf;

use crate::support::block_on;
use litevault::Replica;
use litevault::ltx::Txid;
use litevault::restore::{RestoreOptions, RestoreOutcome, RestoreTarget, restore};
use sha2::{Digest, Sha256};

fn fixture() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litestream-replica");
    assert!(
        p.join("expected.json").exists(),
        "the Litestream fixture is missing from the checkout ({})",
        p.display()
    );
    p
}

fn sha256_file(p: &std::path::Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn restores_litestream_replica_at_every_recorded_txid() {
    let fx = fixture();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.join("expected.json")).unwrap()).unwrap();
    // Work on a copy: the fixture is read-only.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("replica");
    copy_dir(&fx.join("replica"), &copy);
    let replica = Replica::open(&format!("file://{}", copy.display())).unwrap();
    block_on(async {
        let mut targets: Vec<(RestoreTarget, &serde_json::Value)> =
            vec![(RestoreTarget::Latest, &expected["latest_restore"])];
        for p in expected["points_in_time"].as_array().unwrap() {
            let txid: Txid = p["txid"].as_str().unwrap().parse().unwrap();
            targets.push((RestoreTarget::Txid(txid), &p["restored"]));
        }
        assert!(targets.len() >= 8);
        for (target, want) in targets {
            let out = dir.path().join("out.db");
            let _ = std::fs::remove_file(&out);
            let outcome = restore(
                &replica,
                &out,
                &RestoreOptions {
                    target,
                    write_state: false,
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{target:?}: {e}"));
            assert!(matches!(outcome, RestoreOutcome::Restored(_)));
            assert_eq!(
                std::fs::metadata(&out).unwrap().len(),
                want["db_bytes"].as_u64().unwrap(),
                "{target:?}: size"
            );
            assert_eq!(
                sha256_file(&out),
                want["db_sha256"].as_str().unwrap(),
                "{target:?}: the restored file equals Litestream's restore byte for byte"
            );
        }
    });
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}
