//! Only what SQLite committed is ever published: frames a killed writer
//! left unpublished, and frames skipped across a WAL restart, are the two
//! ways a published state could differ from every state the app committed.

use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::support::*;
use litevault::content::content_digest;
use litevault::ltx::Txid;
use litevault::restore::RestoreTarget;
use litevault::{Replica, ReplicateOptions, Replicator};

/// Leaves in `db`'s WAL, past its last committed frame, the frames of `sql`
/// as a writer killed between writing them and publishing them in the
/// wal-index leaves them: they verify and end with a commit frame, but
/// SQLite does not count them, and its next writer overwrites them.
fn leave_unpublished_commit(db: &Path, sql: &str) {
    let wal = sibling(db, "-wal");
    let committed_len = std::fs::metadata(&wal).unwrap().len();
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("copy.db");
    std::fs::copy(db, &copy).unwrap();
    std::fs::copy(&wal, sibling(&copy, "-wal")).unwrap();
    let c = rusqlite::Connection::open(&copy).unwrap();
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c.execute_batch(sql).unwrap();
    let written = std::fs::read(sibling(&copy, "-wal")).unwrap();
    drop(c);
    let original = std::fs::read(&wal).unwrap();
    assert_eq!(
        &written[..committed_len as usize],
        &original[..],
        "the copy's WAL continues the original's"
    );
    assert!(
        written.len() as u64 > committed_len,
        "the copy wrote frames"
    );
    let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    f.write_all_at(&written[committed_len as usize..], committed_len)
        .unwrap();
}

fn sibling(p: &Path, suffix: &str) -> std::path::PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

fn values(path: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut s = c.prepare("SELECT v FROM t ORDER BY id").unwrap();
    s.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Restores every TXID of the replica and checks none holds `ghost`, and
/// the latest equals the database.
async fn every_state_lacks(replica: &Replica, db: &Path, dir: &Path, ghost: &str) {
    let out = dir.join("out.db");
    let head = litevault::replicate::replica_head(replica).await.unwrap();
    for t in 1..=head.txid.0 {
        restore_at(replica, &out, RestoreTarget::Txid(Txid(t))).await;
        assert!(
            !values(&out).iter().any(|v| v == ghost),
            "TXID {t} holds a transaction SQLite never committed"
        );
    }
    restore_at(replica, &out, RestoreTarget::Latest).await;
    assert_eq!(content_digest(&out).unwrap(), content_digest(db).unwrap());
}

/// A database with table `t` holding 'one', replicated to a file://
/// replica that has it.
async fn replicated_table() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    rusqlite::Connection,
    Replica,
    Replicator,
) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = create_db(&db, 4096);
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c.execute_batch(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('one');",
    )
    .unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
        .await
        .unwrap();
    rep.sync_all().await.unwrap();
    (dir, db, c, replica, rep)
}

/// A writer killed after appending its commit frame but before publishing
/// it: the replicator must not ship what no reader of the database ever
/// saw, and must follow the history the next writer writes over it.
#[test]
fn a_commit_its_writer_never_published_is_never_shipped() {
    block_on(async {
        let (dir, db, c, replica, rep) = replicated_table().await;
        leave_unpublished_commit(&db, "INSERT INTO t(v) VALUES ('ghost')");
        rep.sync_all().await.unwrap();
        assert_eq!(values(&db), ["one"], "SQLite does not see the ghost");
        // The next writer writes over the unpublished frames.
        c.execute("INSERT INTO t(v) VALUES ('real')", []).unwrap();
        c.execute("INSERT INTO t(v) VALUES ('after')", []).unwrap();
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        every_state_lacks(&replica, &db, dir.path(), "ghost").await;
    });
}

/// The same frames left behind while the replicator is down: the position
/// it saved is still good, the unpublished frames past it are not.
#[test]
fn an_unpublished_commit_left_while_down_is_never_shipped() {
    block_on(async {
        let (dir, db, c, replica, rep) = replicated_table().await;
        drop(rep); // killed: no final save
        leave_unpublished_commit(&db, "INSERT INTO t(v) VALUES ('ghost')");
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        rep.sync_all().await.unwrap();
        c.execute("INSERT INTO t(v) VALUES ('real')", []).unwrap();
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        every_state_lacks(&replica, &db, dir.path(), "ghost").await;
    });
}

/// Commits that follow a rolled-back transaction which had spilled frames
/// into the WAL, checkpointed by the app and then dropped by a WAL restart:
/// the replicator must ship them before it lets the new generation start
/// from its first frame. (Before the fix, a pass that put a long
/// uncommitted tail off for later counted as "everything shipped", and
/// the restart skipped these commits: every later state was corrupt.)
#[test]
fn commits_behind_a_rolled_back_spill_survive_a_wal_restart() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.pragma_update(None, "cache_size", 10).unwrap();
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('one');
             CREATE TABLE other(v TEXT);",
        )
        .unwrap();
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        rep.sync_all().await.unwrap();
        // A large transaction spills hundreds of frames into the WAL.
        let tx = c.transaction().unwrap();
        tx.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
             INSERT INTO t(v) SELECT printf('%.2000c', 'x') FROM n",
        )
        .unwrap();
        rep.sync().await.unwrap(); // sees the long uncommitted tail
        tx.rollback().unwrap();
        // On a page of its own: the next commit does not rewrite it.
        c.execute("INSERT INTO other(v) VALUES ('behind the spill')", [])
            .unwrap();
        rep.sync().await.unwrap();
        // The app checkpoints what the replicator's mark allows, then the
        // replicator's next mark reads no frame, and the app's next commit
        // restarts the WAL.
        let (busy, log, done): (i64, i64, i64) = c
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0);
        assert_eq!(log, done, "every committed frame copied");
        rep.sync().await.unwrap();
        c.execute("INSERT INTO t(v) VALUES ('new generation')", [])
            .unwrap();
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        let out = dir.path().join("out.db");
        restore_at(&replica, &out, RestoreTarget::Latest).await;
        let other: Vec<String> = rusqlite::Connection::open(&out)
            .unwrap()
            .prepare("SELECT v FROM other")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(other, ["behind the spill"], "nothing committed was skipped");
        assert_eq!(values(&out), ["one", "new generation"]);
        assert_eq!(content_digest(&out).unwrap(), content_digest(&db).unwrap());
    });
}
