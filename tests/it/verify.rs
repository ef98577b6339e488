//! `verify`: the replica restores to the live database (while it is being
//! written, too); a damaged replica file, a replica behind the database and a
//! database that diverged are each told apart. On file:// and S3.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::*;
use litevault::ltx::Txid;
use litevault::verify::{VerifyError, VerifyOptions, verify};
use litevault::{Replica, ReplicateOptions, Replicator};
use object_store::ObjectStoreExt;

fn quick() -> VerifyOptions {
    VerifyOptions {
        timeout: Duration::from_secs(1),
        ..VerifyOptions::default()
    }
}

/// A primary with `n` workload transactions, each shipped.
async fn primary(
    dir: &Path,
    replica: &Replica,
    n: i64,
) -> (PathBuf, rusqlite::Connection, Replicator) {
    let path = dir.join("app.db");
    let mut conn = create_db(&path, 4096);
    Workload::init(&conn);
    let rep = Replicator::open(&path, replica.clone(), ReplicateOptions::default())
        .await
        .unwrap();
    for i in 1..=n {
        Workload::apply(&mut conn, i).unwrap();
        rep.sync_all().await.unwrap();
    }
    (path, conn, rep)
}

async fn succeeds(replica: Replica, dir: &Path) {
    let (db, _conn, rep) = primary(dir, &replica, 12).await;
    let r = verify(&db, &replica, &VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(r.txid, rep.txid());
    assert_eq!(r.rows["items"], Workload::model(12).len() as u64);
    assert_eq!(r.files, rep.txid().0 as usize);
    assert_eq!(r.snapshots, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_succeeds_file() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    succeeds(replica, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
async fn verify_succeeds_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("verify");
    let dir = tempfile::tempdir().unwrap();
    succeeds(s3.replica(&bucket, "app"), dir.path()).await;
}

/// A writer keeps committing and a replicator keeps shipping while verify
/// runs: verify finds a TXID equal to a snapshot of the database and passes.
async fn succeeds_while_writing(replica: Replica, dir: &Path) {
    let (db, mut conn, rep) = primary(dir, &replica, 3).await;
    let start = rep.txid();
    let (stop_r, stop_r_rx) = tokio::sync::oneshot::channel::<()>();
    let rtask = tokio::spawn(rep.run(async {
        let _ = stop_r_rx.await;
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 4;
            while !stop.load(Ordering::Relaxed) {
                Workload::apply(&mut conn, i).unwrap();
                i += 1;
                // Pacing, not waiting: a steady stream of commits that
                // verify's reads and the replicator's uploads interleave with.
                std::thread::sleep(Duration::from_millis(5));
            }
            i - 1
        })
    };
    // Verify starts once the replica is moving: it holds a commit made
    // while writing.
    let r = &replica;
    wait_until_async(
        WAIT,
        format_args!("the replica to hold a TXID past {start}"),
        || async move {
            let head = r
                .list_all()
                .await
                .map(|fs| fs.iter().map(|f| f.max_txid).max());
            match head {
                Ok(Some(t)) if t > start => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let t0 = std::time::Instant::now();
    let r = verify(&db, &replica, &VerifyOptions::default()).await;
    eprintln!("verify returned after {:?}", t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    stop_r.send(()).unwrap();
    rtask.await.unwrap().unwrap();
    eprintln!("replicator stopped after {:?}", t0.elapsed());
    let r = r.unwrap();
    assert!(
        r.txid > start,
        "verified at {} while writing from {start}",
        r.txid
    );
    assert!(written > 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_while_writing_file() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    succeeds_while_writing(replica, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
async fn verify_while_writing_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("verifyw");
    let dir = tempfile::tempdir().unwrap();
    succeeds_while_writing(s3.replica(&bucket, "app"), dir.path()).await;
}

/// Flips one byte in the middle of a replica file.
async fn corrupt(replica: &Replica, level: u8, txid: u64) -> String {
    let f = replica
        .list_level(level)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.min_txid == Txid(txid))
        .unwrap();
    let mut bytes = replica.read_file(&f).await.unwrap().to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    let key = replica.file_key(f.level, f.min_txid, f.max_txid);
    replica
        .store()
        .put(&object_store::path::Path::from(key.as_str()), bytes.into())
        .await
        .unwrap();
    litevault::ltx::format_filename(f.min_txid, f.max_txid)
}

async fn damaged(replica: Replica, dir: &Path) {
    let (db, _conn, rep) = primary(dir, &replica, 8).await;
    let name = corrupt(&replica, 0, 4).await;
    let err = verify(&db, &replica, &quick()).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::ReplicaDamaged { txid, .. } if txid == rep.txid()),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains(&name),
        "the error names the file: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_damaged_file_replica() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    damaged(replica, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
async fn verify_damaged_s3_replica() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("verifyd");
    let dir = tempfile::tempdir().unwrap();
    damaged(s3.replica(&bucket, "app"), dir.path()).await;
}

/// Commits the replicator never shipped: the replica is behind (lag, exit 3);
/// another database checked against the replica: diverged (exit 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_lag_and_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let (db, mut conn, rep) = primary(dir.path(), &replica, 5).await;
    let shipped = rep.txid();
    drop(rep);
    Workload::apply(&mut conn, 6).unwrap();
    let err = verify(&db, &replica, &quick()).await.unwrap_err();
    match &err {
        VerifyError::Lag {
            replica_txid,
            shipped_txid,
            ..
        } => {
            assert_eq!(*replica_txid, shipped);
            assert_eq!(*shipped_txid, Some(shipped));
        }
        other => panic!("expected lag, got {other}"),
    }
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains(&shipped.to_string()), "{err}");

    let other = dir.path().join("other.db");
    let mut c = create_db(&other, 4096);
    Workload::init(&c);
    Workload::apply(&mut c, 1).unwrap();
    c.execute("UPDATE items SET pad = 'changed'", []).unwrap();
    let err = verify(&other, &replica, &quick()).await.unwrap_err();
    assert!(matches!(err, VerifyError::Diverged { .. }), "{err}");
    assert_eq!(err.exit_code(), 4);
}

/// The command: exit codes and the one-line / JSON output.
fn cli(url: &str, env: &[(&'static str, String)], replica: Replica, dir: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (db, mut conn, rep) = rt.block_on(primary(dir, &replica, 6));
    let run = |extra: &[&str]| {
        let out = litevault(env)
            .arg("verify")
            .arg(&db)
            .arg(url)
            .args(["--timeout", "1s"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(stdout.lines().count(), 1, "one line on success: {stdout}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
    let (code, stdout, _) = run(&["--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["txid"], rep.txid().to_string());
    // Behind: a commit the replicator never ships.
    drop(rep);
    Workload::apply(&mut conn, 7).unwrap();
    let (code, stdout, stderr) = run(&["--json"]);
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["kind"], "lag");
    assert!(stderr.contains("is behind"), "{stderr}");
    // Damaged: restart the replicator to ship it, then flip a byte.
    let rep = rt
        .block_on(Replicator::open(
            &db,
            replica.clone(),
            ReplicateOptions::default(),
        ))
        .unwrap();
    rt.block_on(rep.sync_all()).unwrap();
    let name = rt.block_on(corrupt(&replica, 0, 2));
    let (code, _, stderr) = run(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&name), "{stderr}");
}

#[test]
fn cli_verify_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    cli(&url, &[], Replica::open(&url).unwrap(), dir.path());
}

#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn cli_verify_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("cliverify");
    let dir = tempfile::tempdir().unwrap();
    cli(
        &s3.url(&bucket, "app"),
        &s3.env(),
        s3.replica(&bucket, "app"),
        dir.path(),
    );
}

/// A database not in WAL mode is refused with the fix (verify's read
/// transactions would block its writers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_a_rollback_journal_database() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let db = dir.path().join("rollback.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let err = verify(&db, &replica, &quick()).await.unwrap_err();
    assert!(matches!(err, VerifyError::NotWal { .. }), "{err}");
    assert!(err.to_string().contains("journal_mode=WAL"), "{err}");
    assert_eq!(err.exit_code(), 1);
}

/// A replica written with the standard checksum fields (not the default,
/// which keeps them in the reserved header bytes): verify matches states
/// with them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_succeeds_on_a_standard_checksum_replica() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let path = dir.path().join("app.db");
    let mut conn = create_db(&path, 4096);
    Workload::init(&conn);
    let rep = Replicator::open(
        &path,
        replica.clone(),
        ReplicateOptions {
            litestream_compat: false,
            ..ReplicateOptions::default()
        },
    )
    .await
    .unwrap();
    for i in 1..=6 {
        Workload::apply(&mut conn, i).unwrap();
        rep.sync_all().await.unwrap();
    }
    let r = verify(&path, &replica, &quick()).await.unwrap();
    assert_eq!(r.txid, rep.txid());
}
