//! Restores of Litestream v0.3 backups: the fixture in
//! tests/fixtures/litestream-v03/ was written by the real Litestream v0.3.13
//! (see its README.md), and every restore must give, byte for byte, what
//! v0.3.13's own `litestream restore` gave (expected.tsv). Damaged copies of
//! it must be refused, naming the object, with the output left unwritten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use sha2::{Digest, Sha256};

use crate::support::*;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litestream-v03")
}

/// A copy of the fixture replica under `dir`, each file with the
/// modification time Litestream gave it (git does not keep them; v0.3 reads
/// them as the objects' times).
fn fixture_copy(dir: &Path) -> PathBuf {
    let root = dir.join("replica");
    let times = std::fs::read_to_string(fixture_dir().join("mtimes.tsv")).unwrap();
    for line in times.lines() {
        let (rel, nanos) = line.split_once('\t').unwrap();
        let nanos: u64 = nanos.parse().unwrap();
        let to = root.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixture_dir().join("replica").join(rel), &to).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
        std::fs::File::options()
            .write(true)
            .open(&to)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    root
}

/// One case of expected.tsv: Litestream v0.3.13's restore flags, the
/// SHA-256 of its output and the rows of `t` in it.
struct Expected {
    flags: Vec<String>,
    sha256: String,
    rows: i64,
}

fn expected() -> HashMap<String, Expected> {
    let text = std::fs::read_to_string(fixture_dir().join("expected.tsv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let e = Expected {
                flags: cols[1].split_whitespace().map(String::from).collect(),
                sha256: cols[2].into(),
                rows: cols[3].parse().unwrap(),
            };
            (cols[0].to_string(), e)
        })
        .collect()
}

/// v0.3's flags (`-timestamp T`, `-generation G`, `-index N`) as litevault's.
fn litevault_flags(v03: &[String]) -> Vec<String> {
    v03.iter()
        .map(|f| match f.strip_prefix('-') {
            Some(name) => format!("--{name}"),
            None => f.clone(),
        })
        .collect()
}

fn restore(env: &[(&'static str, String)], url: &str, out: &Path, flags: &[String]) -> Output {
    litevault(env)
        .args(["restore", url, "-o", out.to_str().unwrap()])
        .args(flags)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn sha256(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn rows(p: &Path) -> i64 {
    let c = rusqlite::Connection::open(p).unwrap();
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Restores each case and compares it with v0.3.13's own result.
fn check_cases(env: &[(&'static str, String)], url: &str, dir: &Path, cases: &[&str]) {
    let all = expected();
    for name in cases {
        let e = &all[*name];
        let out = dir.join(format!("{name}.db"));
        let o = restore(env, url, &out, &litevault_flags(&e.flags));
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(sha256(&out), e.sha256, "{name}: not what v0.3.13 restores");
        assert_eq!(rows(&out), e.rows, "{name}");
    }
}

/// The files in `dir` besides the replica: a refused restore leaves none.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "replica")
        .collect()
}

/// The latest state: the generation written last, from its newest snapshot.
#[test]
fn latest_is_what_litestream_v03_restores() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&fixture_copy(dir.path()));
    check_cases(&[], &url, dir.path(), &["latest"]);
    let o = restore(&[], &url, &dir.path().join("json.db"), &["--json".into()]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &report["Restored"]["litestream_v03"];
    assert_eq!(p["snapshot_index"], "00000001", "{report}");
    assert_eq!(p["index"], "00000002", "{report}");
}

/// `--timestamp`: the generation spanning the time, the newest snapshot and
/// the segments written at or before it (the objects' modification times).
#[test]
fn timestamp_is_what_litestream_v03_restores() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&fixture_copy(dir.path()));
    check_cases(&[], &url, dir.path(), &["timestamp"]);
    let o = restore(
        &[],
        &url,
        &dir.path().join("early.db"),
        &["--timestamp".into(), "2000-01-01T00:00:00Z".into()],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no generation was written over that time"),
        "{}",
        stderr(&o)
    );
}

/// `--generation` alone (its latest state) and with `--index`.
#[test]
fn generation_and_index_are_what_litestream_v03_restores() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&fixture_copy(dir.path()));
    check_cases(&[], &url, dir.path(), &["generation", "index"]);
    let g = &expected()["generation"].flags[1];
    let o = restore(
        &[],
        &url,
        &dir.path().join("far.db"),
        &[
            "--generation".into(),
            g.clone(),
            "--index".into(),
            "ff".into(),
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("ends at WAL index 00000003"),
        "{}",
        stderr(&o)
    );
    let o = restore(
        &[],
        &url,
        &dir.path().join("txid.db"),
        &["--txid".into(), "1".into()],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--generation and --index"),
        "{}",
        stderr(&o)
    );
}

/// The generation restored by default (the one written last) and a WAL
/// index of it between its snapshots, to damage.
fn latest_generation() -> String {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&fixture_copy(dir.path()));
    let o = restore(&[], &url, &dir.path().join("o.db"), &["--json".into()]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    report["Restored"]["litestream_v03"]["generation"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Damages a copy of the fixture with `damage(root, generation)`, then
/// restores the latest state: it must fail with a message holding each of
/// `says`, and leave nothing beside the replica.
fn refused(damage: impl FnOnce(&Path, &str), says: &[&str]) {
    let g = latest_generation();
    let dir = tempfile::tempdir().unwrap();
    let root = fixture_copy(dir.path());
    damage(&root, &g);
    let out = dir.path().join("app.db");
    let o = restore(&[], &file_url(&root), &out, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    for s in says {
        assert!(e.contains(&s.replace("{g}", &g)), "{s:?} not in {e}");
    }
    assert!(e.contains("nothing was written"), "{e}");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

/// A segment missing from the middle of a WAL index is found by the offsets
/// and named.
#[test]
fn a_missing_wal_segment_is_named() {
    refused(
        |root, g| {
            std::fs::remove_file(
                root.join(format!("generations/{g}/wal/00000001_00002050.wal.lz4")),
            )
            .unwrap()
        },
        &[
            "generations/{g}/wal/00000001_00002050.wal.lz4 is missing",
            "ends at offset 8272",
        ],
    );
}

/// A whole WAL index missing between the snapshot and the last index.
#[test]
fn a_missing_wal_index_is_named() {
    refused(
        |root, g| {
            for e in std::fs::read_dir(root.join(format!("generations/{g}/wal"))).unwrap() {
                let e = e.unwrap();
                if e.file_name().to_string_lossy().starts_with("00000001_") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        },
        &["generations/{g}/wal/00000001_00000000.wal.lz4 is missing"],
    );
}

/// A segment whose LZ4 content checksum does not match its bytes.
#[test]
fn a_corrupted_lz4_frame_is_refused() {
    refused(
        |root, g| {
            let p = root.join(format!("generations/{g}/wal/00000001_00002050.wal.lz4"));
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len();
            b[n - 1] ^= 0x5a;
            std::fs::write(&p, b).unwrap();
        },
        &[
            "generations/{g}/wal/00000001_00002050.wal.lz4 in",
            "is damaged: LZ4",
        ],
    );
}

/// A byte changed inside a segment's data: the WAL frame checksums catch it
/// (SQLite would silently stop at the frame).
#[test]
fn a_corrupted_wal_frame_is_refused() {
    refused(
        |root, g| {
            let p = root.join(format!("generations/{g}/wal/00000001_00002050.wal.lz4"));
            let mut b = std::fs::read(&p).unwrap();
            b[200] ^= 0x10;
            std::fs::write(&p, b).unwrap();
        },
        &[
            "generations/{g}/wal/00000001_00002050.wal.lz4 in",
            "is damaged: the frame at WAL offset 8272",
        ],
    );
}

/// A snapshot cut short.
#[test]
fn a_truncated_snapshot_is_refused() {
    refused(
        |root, g| {
            let p = root.join(format!("generations/{g}/snapshots/00000001.snapshot.lz4"));
            let len = std::fs::metadata(&p).unwrap().len();
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        },
        &[
            "generations/{g}/snapshots/00000001.snapshot.lz4 in",
            "is damaged: LZ4",
        ],
    );
}

/// `ltx --v03` lists the generations, their snapshots and WAL index runs.
#[test]
fn the_v03_backup_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&fixture_copy(dir.path()));
    let o = litevault(&[])
        .args(["ltx", &url, "--v03", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let gens: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let gens = gens.as_array().unwrap();
    assert_eq!(gens.len(), 2, "{gens:?}");
    let first = &expected()["generation"].flags[1];
    let g = gens.iter().find(|g| g["generation"] == **first).unwrap();
    assert_eq!(g["snapshots"].as_array().unwrap().len(), 4, "{g}");
    assert_eq!(g["wal"][0]["first_index"], "00000000", "{g}");
    assert_eq!(g["wal"][0]["last_index"], "00000003", "{g}");
    assert!(g["created"].as_str().unwrap() < g["updated"].as_str().unwrap());
    let o = litevault(&[]).args(["ltx", &url]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("--v03"));
}

/// After a restore from v0.3, `replicate` starts an LTX history at the same
/// URL (under ltx/, beside generations/): `restore` then takes the LTX
/// files, `--timestamp` too, and `--generation` still reaches the v0.3
/// history.
#[test]
fn replicate_continues_beside_the_v03_backup() {
    let dir = tempfile::tempdir().unwrap();
    let root = fixture_copy(dir.path());
    let url = file_url(&root);
    let db = dir.path().join("app.db");
    let o = restore(&[], &url, &db, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    {
        let c = create_db(&db, 4096);
        c.execute("INSERT INTO t(id, v) VALUES (5000, 'after v0.3')", [])
            .unwrap();
    }
    let o = litevault(&[])
        .args(["replicate", "--once", db.to_str().unwrap(), &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(root.join("ltx").is_dir() && root.join("generations").is_dir());
    let latest_rows = expected()["latest"].rows;
    let out = dir.path().join("ltx.db");
    let o = restore(&[], &url, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        rows(&out),
        latest_rows + 1,
        "the LTX history is taken by default"
    );
    let now = chrono::Utc::now().to_rfc3339();
    let out = dir.path().join("ts.db");
    let o = restore(&[], &url, &out, &["--timestamp".into(), now]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        rows(&out),
        latest_rows + 1,
        "--timestamp reads the LTX files"
    );
    // A time the v0.3 backup covers but no LTX state does: an error, not a
    // v0.3 restore.
    let mid = expected()["timestamp"].flags[1].clone();
    let o = restore(
        &[],
        &url,
        &dir.path().join("mid.db"),
        &["--timestamp".into(), mid],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("newer than that time"),
        "{}",
        stderr(&o)
    );
    check_cases(&[], &url, dir.path(), &["generation", "index"]);
}

/// The same restores from S3 (moto), the fixture uploaded as v0.3 lays it
/// out under the replica's path.
#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn restores_from_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("v03");
    let replica = s3.replica(&bucket, "db/app");
    let times = std::fs::read_to_string(fixture_dir().join("mtimes.tsv")).unwrap();
    // Uploaded in the order Litestream wrote them, a pause before each
    // snapshot: S3 sets an object's time at upload, and v0.3 picks the
    // generation and the snapshot by it.
    let mut order: Vec<(u64, &str)> = times
        .lines()
        .map(|l| {
            let (rel, nanos) = l.split_once('\t').unwrap();
            (nanos.parse().unwrap(), rel)
        })
        .collect();
    order.sort();
    block_on(async {
        use object_store::ObjectStoreExt;
        for (_, rel) in order {
            if rel.contains("/snapshots/") {
                tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            }
            let bytes = std::fs::read(fixture_dir().join("replica").join(rel)).unwrap();
            let key = object_store::path::Path::from(format!("db/app/{rel}"));
            replica.store().put(&key, bytes.into()).await.unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let url = s3.url(&bucket, "db/app");
    // S3 sets the objects' times at upload: --timestamp has no v0.3.13
    // result to compare with here (the file:// test covers it).
    check_cases(
        &s3.env(),
        &url,
        dir.path(),
        &["latest", "generation", "index"],
    );
}

/// `restore --follow` refuses a replica holding only a v0.3 backup (it has
/// no TXIDs to follow from) and leaves no output.
#[test]
fn a_v03_backup_cannot_be_followed() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&fixture_copy(dir.path()));
    let o = restore(&[], &url, &dir.path().join("f.db"), &["--follow".into()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot be followed"), "{}", stderr(&o));
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

/// The Litestream 0.3.13 binary: `$LITESTREAM_V03`, which scripts/test.sh
/// sets after installing it from npm (`@flydotio/litestream-linux-x64@1.0.1`).
fn litestream_v03_bin() -> PathBuf {
    needs("litestream 0.3.13");
    let bin = std::env::var_os("LITESTREAM_V03").map(PathBuf::from);
    let ok = bin.as_ref().is_some_and(|b| {
        std::process::Command::new(b)
            .arg("version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "v0.3.13")
    });
    assert!(
        ok,
        "this test needs litestream 0.3.13 at $LITESTREAM_V03: \
         `npm install --prefix DIR @flydotio/litestream-linux-x64@1.0.1`, then \
         LITESTREAM_V03=DIR/node_modules/@flydotio/litestream-linux-x64/litestream"
    );
    bin.unwrap()
}

/// End to end: Litestream 0.3.13 replicates a database while it is written,
/// then litevault's restore of the latest state and of every WAL index of
/// the generation equals, byte for byte, v0.3.13's own.
#[test]
#[ignore = "needs litestream 0.3.13: run scripts/test.sh"]
fn live_litestream_v03_backups_restore_as_v03_restores_them() {
    let bin = litestream_v03_bin();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let root = dir.path().join("replica");
    let url = file_url(&root);
    let config = dir.path().join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    monitor-interval: 50ms\n    checkpoint-interval: 1s\n    replicas:\n      - url: {url}\n        sync-interval: 50ms\n        snapshot-interval: 2s\n",
            db.display()
        ),
    )
    .unwrap();
    let c = create_db(&db, 4096);
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let mut child = std::process::Command::new(&bin)
        .args(["replicate", "-config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for i in 0..60 {
        c.execute(
            "INSERT INTO t(v) VALUES (printf('%d %s', ?1, hex(randomblob(300))))",
            [i],
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(80));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    signal(&child, "INT");
    child.wait().unwrap();
    drop(c);
    let v03_restore = |out: &Path, flags: &[String]| {
        let o = std::process::Command::new(&bin)
            .args(["restore", "-o", out.to_str().unwrap()])
            .args(flags)
            .arg(&url)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let o = litevault(&[])
        .args(["ltx", &url, "--v03", "--json"])
        .output()
        .unwrap();
    let gens: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let g = &gens[0];
    let generation = g["generation"].as_str().unwrap().to_string();
    let last = u32::from_str_radix(g["wal"][0]["last_index"].as_str().unwrap(), 16).unwrap();
    assert!(last >= 2, "checkpoints made several WAL indexes: {g}");
    let mut cases = vec![Vec::new()];
    for i in 0..=last {
        cases.push(vec![
            "-generation".to_string(),
            generation.clone(),
            "-index".into(),
            format!("{i:08x}"),
        ]);
    }
    for (n, flags) in cases.iter().enumerate() {
        let theirs = dir.path().join(format!("v03-{n}.db"));
        let ours = dir.path().join(format!("litevault-{n}.db"));
        v03_restore(&theirs, flags);
        let o = restore(&[], &url, &ours, &litevault_flags(flags));
        assert!(o.status.success(), "{flags:?}: {}", stderr(&o));
        assert_eq!(sha256(&ours), sha256(&theirs), "{flags:?}");
    }
    assert_eq!(rows(&dir.path().join("litevault-0.db")), 60);
}
