//! Follow mode: a local copy kept current from a replica while a replicator
//! writes, read concurrently, across schema changes, VACUUM, restarts,
//! foreign writes and replica resets; on file:// and on the S3 protocol.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;
use futures::FutureExt;
use litevault::content::content_digest;
use litevault::ltx::Txid;
use litevault::restore::dbpage;
use litevault::restore::follow::{FollowError, FollowOptions, FollowStart, Follower, PollOutcome};
use litevault::{Replica, ReplicateOptions, Replicator};
use rusqlite::{Connection, OpenFlags};

const ACCOUNTS: i64 = 200;
const BALANCE: i64 = 1000;

fn opts() -> FollowOptions {
    FollowOptions {
        interval: Duration::from_millis(20),
        ..FollowOptions::default()
    }
}

async fn latest_txid(replica: &Replica) -> Txid {
    replica
        .list_all()
        .await
        .unwrap()
        .iter()
        .map(|f| f.max_txid)
        .max()
        .unwrap_or(Txid(0))
}

fn read_only(path: &Path) -> Connection {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

fn checksum(path: &Path) -> u64 {
    dbpage::read_checksum(&read_only(path)).unwrap().1.value().0
}

fn pages(path: &Path) -> Vec<(u32, Vec<u8>)> {
    read_only(path)
        .prepare("SELECT pgno, data FROM sqlite_dbpage")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The follower holds the primary's pages, byte for byte, except the
/// bytes of page 1 that SQLite stamps on every commit that writes page 1
/// (change counter, version-valid-for, SQLite version).
fn assert_same_pages(follower: &Path, primary: &Path) {
    let (mut f, p) = (pages(follower), pages(primary));
    assert_eq!(f.len(), p.len(), "page counts");
    let stamp = dbpage::Page1Stamp::of(&p[0].1);
    f[0].1 = stamp.apply(&f[0].1);
    for ((fp, fd), (pp, pd)) in f.iter().zip(&p) {
        assert_eq!(fp, pp);
        assert!(
            fd == pd,
            "page {fp} differs between the follower and the primary"
        );
    }
}

fn page_count(path: &Path) -> u32 {
    dbpage::page_count(&read_only(path)).unwrap()
}

fn bank(path: &Path) -> Connection {
    let c = create_db(path, 4096);
    c.execute_batch(
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, note TEXT);
         CREATE TABLE meta(k TEXT PRIMARY KEY, n INTEGER NOT NULL);
         INSERT INTO meta VALUES ('transfers', 0);",
    )
    .unwrap();
    for id in 1..=ACCOUNTS {
        c.execute(
            "INSERT INTO accounts VALUES (?1, ?2, ?3)",
            rusqlite::params![id, BALANCE, "x".repeat(300)],
        )
        .unwrap();
    }
    c
}

/// Transfer `i`: moves money between two accounts (the total never changes),
/// with schema changes, growth and a shrinking VACUUM along the way.
fn transfer(c: &mut Connection, i: i64) {
    if i == 40 {
        c.execute_batch("ALTER TABLE accounts ADD COLUMN flag INTEGER DEFAULT 0")
            .unwrap();
    }
    if i == 60 {
        c.execute_batch(
            "CREATE TABLE audit(id INTEGER PRIMARY KEY, amount INTEGER, pad BLOB);
             CREATE INDEX audit_amount ON audit(amount);",
        )
        .unwrap();
    }
    let tx = c.transaction().unwrap();
    let a = 1 + (i * 7) % ACCOUNTS;
    let b = 1 + (i * 13 + 5) % ACCOUNTS;
    let amount = 1 + i % 50;
    tx.execute(
        "UPDATE accounts SET balance = balance - ?2, note = ?3 WHERE id = ?1",
        rusqlite::params![a, amount, format!("{i:0>400}")],
    )
    .unwrap();
    tx.execute(
        "UPDATE accounts SET balance = balance + ?2 WHERE id = ?1",
        rusqlite::params![b, amount],
    )
    .unwrap();
    if (60..=150).contains(&i) {
        // Grows the database by a few pages per transaction.
        tx.execute(
            "INSERT INTO audit(amount, pad) VALUES (?1, zeroblob(6000))",
            [amount],
        )
        .unwrap();
    }
    tx.execute("UPDATE meta SET n = ?1 WHERE k = 'transfers'", [i])
        .unwrap();
    tx.commit().unwrap();
}

/// Reads the follower in a loop until `stop`: every read transaction must see
/// a committed state (all accounts, the same total). Returns the number of
/// reads and of distinct states seen.
fn reader(path: PathBuf, stop: Arc<AtomicBool>) -> (u64, usize) {
    let mut reads = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    let mut conn = read_only(&path);
    while !stop.load(Ordering::Relaxed) {
        if reads.is_multiple_of(50) {
            // New connections too, not only one long-lived one.
            conn = read_only(&path);
        }
        let tx = conn.transaction().unwrap();
        let (count, total): (i64, i64) = tx
            .query_row("SELECT count(*), sum(balance) FROM accounts", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let n: i64 = tx
            .query_row("SELECT n FROM meta WHERE k = 'transfers'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            (count, total),
            (ACCOUNTS, ACCOUNTS * BALANCE),
            "torn read of the follower at transfer {n}"
        );
        let has_audit: i64 = tx
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'audit'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if has_audit == 1 {
            // The schema and the table it names arrive together.
            let _: i64 = tx
                .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
                .unwrap();
        }
        tx.commit().unwrap();
        seen.insert(n);
        reads += 1;
    }
    (reads, seen.len())
}

/// The reader process: reads the follower read-only in a loop until the stop
/// file exists; exits 1 on a torn read; prints the number of reads.
const READER_PROCESS: &str = r#"
import os, sqlite3, sys
path, stop, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
reads = 0
while not os.path.exists(stop):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    c.execute("PRAGMA busy_timeout = 10000")
    for _ in range(20):
        c.execute("BEGIN")
        n, s = c.execute("SELECT count(*), sum(balance) FROM accounts").fetchone()
        c.execute("COMMIT")
        if (n, s) != (200, total):
            print(f"torn read: {n} accounts, total {s}")
            sys.exit(1)
        reads += 1
        if reads == 1:
            open(stop + ".ready", "w").close()
    c.close()
print(reads)
"#;

async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<litevault::restore::follow::FollowStatus>,
    txid: Txid,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while rx.borrow().position.txid != txid {
        assert!(
            Instant::now() < deadline,
            "the follower did not reach TXID {txid} (it is at {})",
            rx.borrow().position.txid
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    }
}

/// The follower keeps up with a replicator under a transfer workload with
/// schema changes, growth and a shrinking VACUUM, while a reader thread reads
/// it without ever seeing a torn state; at the end it is the primary, page for
/// page.
async fn follows_under_load(replica: Replica, dir: &Path) {
    let db = dir.join("primary.db");
    let mut c = bank(&db);
    let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
        .await
        .unwrap();
    rep.sync_all().await.unwrap();
    let out = dir.join("follower.db");
    let follower = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    assert!(matches!(follower.start(), FollowStart::Restored { .. }));
    let mut status = follower.subscribe();
    let (stop_f, stop_f_rx) = tokio::sync::oneshot::channel::<()>();
    let ftask = tokio::spawn(follower.run(async {
        let _ = stop_f_rx.await;
    }));
    let (stop_r, stop_r_rx) = tokio::sync::oneshot::channel::<()>();
    let rtask = tokio::spawn(rep.run(async {
        let _ = stop_r_rx.await;
    }));
    let stop_reader = Arc::new(AtomicBool::new(false));
    let reader_task = {
        let (out, stop) = (out.clone(), stop_reader.clone());
        std::thread::spawn(move || reader(out, stop))
    };
    // And a reader in another process (Python's own SQLite library), where
    // SQLite coordinates through file locks and the shared-memory index.
    let stop_file = dir.join("stop-reader");
    let reader_process = std::process::Command::new("python3")
        .args(["-c", READER_PROCESS])
        .arg(&out)
        .arg(&stop_file)
        .arg((ACCOUNTS * BALANCE).to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("this test needs python3 (with its sqlite3 module)");
    // Writes start once it reads.
    let ready = dir.join("stop-reader.ready");
    wait_until(WAIT, "the reader process to read once", || ready.exists());
    let max_pages = tokio::task::spawn_blocking(move || {
        for i in 1..=150 {
            transfer(&mut c, i);
            // Pacing, not waiting: commits arrive over time, as an app's
            // do, so the follower applies many batches while both readers
            // read; nothing below depends on how many.
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(15));
            }
        }
        let max_pages: u32 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        c.execute_batch("DROP TABLE audit; VACUUM;").unwrap();
        transfer(&mut c, 151);
        max_pages
    })
    .await
    .unwrap();
    stop_r.send(()).unwrap();
    rtask.await.unwrap().unwrap();
    let head = latest_txid(&replica).await;
    wait_for(&mut status, head).await;
    stop_reader.store(true, Ordering::Relaxed);
    let (reads, states) = reader_task.join().expect("the reader saw a torn state");
    std::fs::write(&stop_file, b"").unwrap();
    let o = reader_process.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "the reader process saw a torn state: {said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let process_reads: u64 = said.trim().parse().unwrap();
    assert!(process_reads > 0, "{said}");
    stop_f.send(()).unwrap();
    let report = ftask.await.unwrap().unwrap();
    assert!(reads > 0);
    assert!(
        states >= 2,
        "the reader should have read while batches were applied ({reads} reads, {states} states)"
    );
    assert!(report.status.batches >= 1);
    assert_eq!(report.status.rebuilds, 0);
    assert_eq!(content_digest(&out).unwrap(), content_digest(&db).unwrap());
    assert_same_pages(&out, &db);
    assert_eq!(report.status.position.checksum.0, checksum(&db));
    let pages = page_count(&out);
    assert_eq!(pages, page_count(&db));
    assert!(
        pages < max_pages,
        "VACUUM shrank the primary from {max_pages} pages; the follower has {pages}"
    );
    let ok: String = read_only(&out)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_under_load_file() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    follows_under_load(replica, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
async fn follows_under_load_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("follow");
    let dir = tempfile::tempdir().unwrap();
    follows_under_load(s3.replica(&bucket, "app"), dir.path()).await;
}

/// A small primary with a replicator, driven step by step.
struct Primary {
    path: PathBuf,
    conn: Connection,
    rep: Replicator,
    next: i64,
}

impl Primary {
    async fn new(dir: &Path, name: &str, replica: &Replica) -> Primary {
        let path = dir.join(name);
        let conn = create_db(&path, 4096);
        Workload::init(&conn);
        let rep = Replicator::open(&path, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        rep.sync_all().await.unwrap();
        Primary {
            path,
            conn,
            rep,
            next: 1,
        }
    }

    /// Commits `n` workload transactions, shipping each one.
    async fn write(&mut self, n: i64) -> Txid {
        for _ in 0..n {
            Workload::apply(&mut self.conn, self.next).unwrap();
            self.next += 1;
            self.rep.sync_all().await.unwrap();
        }
        self.rep.txid()
    }
}

async fn restart_resumes(open: impl Fn() -> Replica, dir: &Path) {
    let replica = open();
    let mut p = Primary::new(dir, "primary.db", &replica).await;
    let t1 = p.write(30).await;
    let out = dir.join("follower.db");
    let mut f = Follower::open(open(), &out, opts()).await.unwrap();
    assert_eq!(
        f.start(),
        &FollowStart::Restored {
            txid: t1,
            files: t1.0 as usize
        }
    );
    assert_eq!(f.poll().await.unwrap(), PollOutcome::UpToDate);
    let t2 = p.write(3).await;
    match f.poll().await.unwrap() {
        PollOutcome::Applied {
            from,
            to,
            files,
            verified,
            ..
        } => {
            assert_eq!((from, to, files), (t1, t2, 3));
            assert!(verified);
        }
        other => panic!("expected a batch, got {other:?}"),
    }
    drop(f);
    let t3 = p.write(2).await;
    // A new process: a fresh replica handle with its own request counts.
    let replica2 = open();
    let mut f = Follower::open(replica2.clone(), &out, opts())
        .await
        .unwrap();
    assert_eq!(f.start(), &FollowStart::Resumed { txid: t2 });
    assert_eq!(
        replica2.stats().counts().gets,
        0,
        "resuming must not download anything"
    );
    match f.poll().await.unwrap() {
        PollOutcome::Applied {
            from, to, files, ..
        } => assert_eq!((from, to, files), (t2, t3, 2)),
        other => panic!("expected a batch, got {other:?}"),
    }
    assert_eq!(
        replica2.stats().counts().gets,
        2,
        "only the two new files are fetched"
    );
    // Keeping up costs one LIST per poll and nothing else.
    let before = replica2.stats().counts();
    assert_eq!(f.poll().await.unwrap(), PollOutcome::UpToDate);
    let after = replica2.stats().counts();
    assert_eq!(
        (after.lists - before.lists, after.gets - before.gets),
        (1, 0)
    );
    assert_eq!(Workload::check_prefix(&out), p.next - 1);
    assert_same_pages(&out, &p.path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_without_restore_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    restart_resumes(move || Replica::open(&url).unwrap(), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
async fn restart_resumes_without_restore_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("resume");
    let dir = tempfile::tempdir().unwrap();
    restart_resumes(|| s3.replica(&bucket, "app"), dir.path()).await;
}

/// A write to the follower by another connection is detected on the next
/// poll and on the next start; `force` re-restores over it in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_write_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let mut p = Primary::new(dir.path(), "primary.db", &replica).await;
    p.write(10).await;
    let out = dir.path().join("follower.db");
    let mut f = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    let rw = Connection::open(&out).unwrap();
    assert_eq!(
        rw.execute("UPDATE items SET val = -1 WHERE id = 8", [])
            .unwrap(),
        1
    );
    match f.poll().await {
        Err(FollowError::ForeignWrite { txid, .. }) => assert_eq!(txid, p.rep.txid()),
        other => panic!("expected a foreign write, got {other:?}"),
    }
    drop(f);
    // Still refused after a restart: the checksum no longer matches the
    // saved position.
    let err = Follower::open(replica.clone(), &out, opts())
        .await
        .unwrap_err();
    assert!(matches!(err, FollowError::ForeignWrite { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    // The foreign write happens while the follower runs, with force: it
    // re-restores in place on the next poll.
    assert_eq!(
        rw.execute("UPDATE items SET val = -2 WHERE id = 3", [])
            .unwrap(),
        1
    );
    let mut f = Follower::open(
        replica.clone(),
        &out,
        FollowOptions {
            force: true,
            ..opts()
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(f.start(), FollowStart::Rebuilt { .. }),
        "{:?}",
        f.start()
    );
    assert_same_pages(&out, &p.path);
    assert_eq!(
        rw.execute("UPDATE items SET val = -3 WHERE id = 4", [])
            .unwrap(),
        1
    );
    let t = p.write(2).await;
    match f.poll().await.unwrap() {
        PollOutcome::Rebuilt { to, .. } => assert_eq!(to, t),
        other => panic!("expected a rebuild, got {other:?}"),
    }
    assert_eq!(Workload::check_prefix(&out), p.next - 1);
    assert_same_pages(&out, &p.path);
    // A file that is not a follower is refused.
    let other = dir.path().join("other.db");
    create_db(&other, 4096);
    let err = Follower::open(replica.clone(), &other, opts())
        .await
        .unwrap_err();
    assert!(matches!(err, FollowError::NotAFollower { .. }), "{err}");
}

/// A poll cancelled at any await (a caller's timeout) leaves a follower
/// that polls on: a connection that went with a cancelled task is reopened,
/// and the pages are compared with the position before anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_poll_leaves_a_working_follower() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let mut p = Primary::new(dir.path(), "primary.db", &replica).await;
    p.write(10).await;
    let out = dir.path().join("follower.db");
    let mut f = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    for _ in 0..3 {
        // One poll of the future: it stops at its first blocking task (the
        // foreign-write check), which is then dropped with the connection.
        let _ = f.poll().now_or_never();
        f.poll().await.unwrap();
    }
    let t = p.write(2).await;
    f.poll().await.unwrap();
    assert_eq!(f.position().txid, t);
    assert_same_pages(&out, &p.path);
}

/// The replica is reset under a running follower (its files replaced by those
/// of another database): the follower says so and re-restores, atomically,
/// whether the new history is shorter or longer than the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_reset_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("replica");
    let url = file_url(&root);
    let replica = Replica::open(&url).unwrap();
    let mut p = Primary::new(dir.path(), "a.db", &replica).await;
    p.write(20).await;
    let out = dir.path().join("follower.db");
    let mut f = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    let mut status = f.subscribe();
    for (name, n) in [("b.db", 5), ("c.db", 40)] {
        drop(p);
        std::fs::remove_dir_all(&root).unwrap();
        let replica = Replica::open(&url).unwrap();
        p = Primary::new(dir.path(), name, &replica).await;
        // The same workload would rebuild the same pages: make this database
        // differ from the start. ('b.db' and 'c.db' differ in one bit, in the
        // table and in its index, at the same distance from the end of two
        // pages: the two page CRCs change by the same value and the XOR
        // database checksums of b.db and c.db at TXID 6 are equal. The
        // pre-apply check is fooled; the post-apply check is not.)
        p.conn
            .execute("INSERT INTO meta VALUES (?1, 0)", [name])
            .unwrap();
        let t = p.write(n).await;
        let before = f.position().txid;
        match f.poll().await.unwrap() {
            PollOutcome::Rebuilt { from, to, reason } => {
                assert_eq!((from, to), (before, t));
                assert!(
                    reason.contains("reset") || reason.contains("no longer continues"),
                    "{reason}"
                );
            }
            other => panic!("expected a rebuild after the reset to {name}, got {other:?}"),
        }
        assert_eq!(Workload::check_prefix(&out), n);
        assert_same_pages(&out, &p.path);
        assert_eq!(status.borrow_and_update().position.txid, t);
    }
    assert_eq!(status.borrow().rebuilds, 2);
}

/// Merges level-0 files the way the replicator's compaction does: the
/// checksums in the reserved header bytes (the default format) go on into
/// the output's.
fn compact_as_litevault(
    inputs: Vec<litevault::ltx::Decoder<std::io::Cursor<Vec<u8>>>>,
) -> (Vec<u8>, litevault::ltx::Trailer) {
    let first = *inputs[0].header();
    let last = *inputs[inputs.len() - 1].header();
    let opts = litevault::ltx::CompactOptions {
        pre_apply_checksum: first.reserved_checksums.map(|r| r.pre_apply),
        post_apply_checksum: last.reserved_checksums.map(|r| r.post_apply),
        litestream_compat: last.reserved_checksums.is_some(),
        ..Default::default()
    };
    litevault::ltx::compact(inputs, Vec::new(), opts).unwrap()
}

/// Retention removed the level-0 files the follower needed, leaving a
/// compacted file that starts before its position: the follower applies it
/// over its state (proven by the post-apply checksum) instead of restoring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_files_continue_the_follower() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("replica");
    let replica = Replica::open(&file_url(&root)).unwrap();
    let mut p = Primary::new(dir.path(), "primary.db", &replica).await;
    let t1 = p.write(10).await;
    let out = dir.path().join("follower.db");
    let mut f = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    let t2 = p.write(10).await;
    // Compact level-0 files 5..=t2 into one level-1 file, then delete them.
    let l0 = replica.list_level(0).await.unwrap();
    let inputs: Vec<_> = l0.iter().filter(|f| f.min_txid.0 >= 5).cloned().collect();
    let mut decoders = Vec::new();
    for i in &inputs {
        let bytes = replica.read_file(i).await.unwrap();
        decoders.push(litevault::ltx::Decoder::new(std::io::Cursor::new(bytes.to_vec())).unwrap());
    }
    let (out_bytes, _) = compact_as_litevault(decoders);
    replica
        .write_file(1, Txid(5), t2, out_bytes.into(), chrono::Utc::now())
        .await
        .unwrap();
    replica.delete_files(&inputs).await.unwrap();
    match f.poll().await.unwrap() {
        PollOutcome::Applied {
            from,
            to,
            files,
            verified,
            ..
        } => {
            assert_eq!((from, to, files), (t1, t2, 1));
            assert!(verified);
        }
        other => panic!("expected the compacted file to apply, got {other:?}"),
    }
    assert_eq!(Workload::check_prefix(&out), p.next - 1);
    assert_same_pages(&out, &p.path);
}

/// The CLI: `restore --follow` keeps the output current until SIGTERM, then
/// exits 0; restarted, it resumes.
fn cli_follow(url: &str, env: &[(&'static str, String)], replica: Replica, dir: &Path) {
    let out = dir.join("follower.db");
    // One runtime for the primary's replicator throughout.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut p = rt.block_on(Primary::new(dir, "primary.db", &replica));
    rt.block_on(p.write(5));
    for round in 0..2 {
        let mut child = litevault(env)
            .args(["restore", url, "-o"])
            .arg(&out)
            .args(["--follow", "--interval", "50ms"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        rt.block_on(p.write(4));
        let target = p.next - 1;
        wait_until(
            WAIT,
            format_args!("round {round}: the follower to reach write {target}"),
            || {
                let last = out
                    .exists()
                    .then(|| {
                        read_only(&out)
                            .query_row("SELECT last FROM meta WHERE k='last'", [], |r| {
                                r.get::<_, i64>(0)
                            })
                            .ok()
                    })
                    .flatten();
                if last == Some(target) {
                    Ok(())
                } else {
                    Err(format!("at {last:?}"))
                }
            },
        );
        signal(&child, "TERM");
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let mut stdout = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        assert!(status.success(), "round {round}: {status}\n{stderr}");
        assert!(stdout.contains("stopped following"), "{stdout}");
        let how = if round == 0 {
            "restored from"
        } else {
            "resumed from its saved position"
        };
        assert!(stderr.contains(how), "round {round}: {stderr}");
        assert_eq!(Workload::check_prefix(&out), target);
    }
    // Someone writes to the copy: the next start refuses, naming --force;
    // with --force it re-restores and runs.
    let rw = Connection::open(&out).unwrap();
    rw.execute("DELETE FROM items", []).unwrap();
    drop(rw);
    let run = litevault(env)
        .args(["restore", url, "-o"])
        .arg(&out)
        .args(["--follow", "--interval", "50ms"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("changed by another writer") && stderr.contains("--force"),
        "{stderr}"
    );
    let mut child = litevault(env)
        .args(["restore", url, "-o"])
        .arg(&out)
        .args(["--follow", "--interval", "50ms", "--force"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(WAIT, "--force to re-restore the copy", || {
        out.exists()
            && read_only(&out)
                .query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0))
                .unwrap_or(0)
                > 0
    });
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    assert_eq!(Workload::check_prefix(&out), p.next - 1);
}

#[test]
fn cli_follow_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    cli_follow(&url, &[], Replica::open(&url).unwrap(), dir.path());
}

#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn cli_follow_s3() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("clifollow");
    let dir = tempfile::tempdir().unwrap();
    cli_follow(
        &s3.url(&bucket, "app"),
        &s3.env(),
        s3.replica(&bucket, "app"),
        dir.path(),
    );
}

/// The follower's `follow.json` for a database and replica.
fn follow_json(out: &Path, _replica: &Replica) -> PathBuf {
    litevault::db::StateDir::for_db(out)
        .path()
        .join("follow.json")
}

/// A crash around a batch's commit: the intended position is saved (durably)
/// before the commit and the final one after, so whichever of the two states
/// the database holds, the follower resumes from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_around_a_commit_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let mut p = Primary::new(dir.path(), "primary.db", &replica).await;
    let t1 = p.write(4).await;
    let out = dir.path().join("follower.db");
    // A crash during a first restore leaves the staged copy, never the
    // output: the next start restores again.
    let staged = dir.path().join("follower.db.follow-restore");
    std::fs::write(&staged, b"half a database").unwrap();
    let mut f = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    assert!(matches!(f.start(), FollowStart::Restored { .. }));
    assert!(!staged.exists());
    let json = follow_json(&out, &replica);
    let before: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(before["txid"], t1.to_string());
    assert!(before["pending"].is_null());
    let t2 = p.write(3).await;
    assert!(matches!(
        f.poll().await.unwrap(),
        PollOutcome::Applied { .. }
    ));
    drop(f);
    let after: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(after["txid"], t2.to_string());
    // Crash after the commit, before the final save: the file still names
    // the old position, with the batch's as pending.
    let mut crashed = before.clone();
    crashed["pending"] = serde_json::json!({
        "txid": after["txid"], "checksum": after["checksum"], "stamp": after["stamp"],
    });
    std::fs::write(&json, serde_json::to_vec(&crashed).unwrap()).unwrap();
    let f = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    assert_eq!(f.start(), &FollowStart::Resumed { txid: t2 });
    drop(f);
    // Crash before the commit: the database is at the saved position and the
    // pending one never happened.
    let mut crashed = after.clone();
    crashed["pending"] = serde_json::json!({
        "txid": "00000000000000ff", "checksum": "8000000000000001", "stamp": after["stamp"],
    });
    std::fs::write(&json, serde_json::to_vec(&crashed).unwrap()).unwrap();
    let mut f = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    assert_eq!(f.start(), &FollowStart::Resumed { txid: t2 });
    assert_eq!(f.poll().await.unwrap(), PollOutcome::UpToDate);
    assert_eq!(Workload::check_prefix(&out), p.next - 1);
}

/// Far behind (more than 32 level-0 files), the follower plans over every
/// level and takes the compacted file instead of the long level-0 chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_behind_uses_compacted_levels() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let mut p = Primary::new(dir.path(), "primary.db", &replica).await;
    let t1 = p.write(3).await;
    let out = dir.path().join("follower.db");
    let mut f = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    let t2 = p.write(40).await;
    let inputs: Vec<_> = replica
        .list_level(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.min_txid > t1)
        .collect();
    assert_eq!(inputs.len(), 40);
    let mut decoders = Vec::new();
    for i in &inputs {
        let bytes = replica.read_file(i).await.unwrap();
        decoders.push(litevault::ltx::Decoder::new(std::io::Cursor::new(bytes.to_vec())).unwrap());
    }
    let (bytes, _) = compact_as_litevault(decoders);
    replica
        .write_file(1, Txid(t1.0 + 1), t2, bytes.into(), chrono::Utc::now())
        .await
        .unwrap();
    match f.poll().await.unwrap() {
        PollOutcome::Applied {
            from, to, files, ..
        } => assert_eq!((from, to, files), (t1, t2, 1)),
        other => panic!("expected one compacted file, got {other:?}"),
    }
    assert_eq!(Workload::check_prefix(&out), p.next - 1);
    assert_same_pages(&out, &p.path);
}

/// A replica written with the standard checksum fields (not the default,
/// which keeps them in the reserved header bytes) is followed with the same
/// proofs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_standard_checksum_replica() {
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let path = dir.path().join("primary.db");
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
    rep.sync_all().await.unwrap();
    let out = dir.path().join("follower.db");
    let mut f = Follower::open(replica.clone(), &out, opts()).await.unwrap();
    for i in 1..=5 {
        Workload::apply(&mut conn, i).unwrap();
        rep.sync_all().await.unwrap();
    }
    match f.poll().await.unwrap() {
        PollOutcome::Applied { verified, to, .. } => {
            assert!(
                verified,
                "standard files carry checksums in their own fields"
            );
            assert_eq!(to, rep.txid());
        }
        other => panic!("expected a batch, got {other:?}"),
    }
    assert_eq!(Workload::check_prefix(&out), 5);
    assert_same_pages(&out, &path);
}

/// A replica written by the real `litestream replicate` (0.5.17), whose files
/// carry no checksums: the follower keeps up with it on the files' own CRCs,
/// and says its batches are not proven by checksums.
#[test]
#[ignore = "needs litestream 0.5.17: run scripts/test.sh"]
fn follows_a_replica_litestream_writes() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    let mut ls = std::process::Command::new(litestream_bin())
        .env_remove("AWS_CA_BUNDLE")
        .arg("replicate")
        .arg(&db)
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let replica = Replica::open(&url).unwrap();
    for i in 1..=100 {
        Workload::apply(&mut c, i).unwrap();
    }
    let mut shipped = wait_until(WAIT, "litestream to ship a first file", || {
        let t = rt.block_on(latest_txid(&replica));
        (t > Txid(0)).then_some(t)
    });
    let out = dir.path().join("follower.db");
    let mut f = rt
        .block_on(Follower::open(replica.clone(), &out, opts()))
        .unwrap();
    for i in 101..=300 {
        Workload::apply(&mut c, i).unwrap();
        // Several files for the follower to apply: after every 50 writes,
        // until litestream has shipped a newer one.
        if i % 50 == 0 {
            shipped = wait_until(
                WAIT,
                format_args!("litestream to ship a file past TXID {shipped}"),
                || {
                    let t = rt.block_on(latest_txid(&replica));
                    (t > shipped).then_some(t)
                },
            );
        }
    }
    let mut unverified = 0;
    wait_until(WAIT, "the follower to reach the last write", || {
        match rt.block_on(f.poll()).unwrap() {
            PollOutcome::Applied { verified, .. } => {
                assert!(!verified, "litestream's files carry no checksums");
                unverified += 1;
            }
            PollOutcome::UpToDate => {}
            other => panic!("unexpected {other:?}"),
        }
        let k = Workload::check_prefix(&out);
        if k == 300 {
            Ok(())
        } else {
            Err(format!("at write {k}"))
        }
    });
    signal(&ls, "INT");
    assert!(ls.wait().unwrap().success());
    assert!(unverified >= 1);
}
