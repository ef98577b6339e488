use std::path::Path;
use std::time::Duration;

use super::run::no_panic;
use super::*;

fn make_db(path: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", "wal").unwrap();
    c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    c
}

fn insert(c: &rusqlite::Connection, from: i64, n: i64) {
    for i in from..from + n {
        c.execute(
            "INSERT INTO t(id, v) VALUES (?1, ?2)",
            (i, format!("row {i}")),
        )
        .unwrap();
    }
}

/// Holds `m` on another thread and panics there, as a bug in a step
/// holding the lock would.
fn poison<T: Send + 'static>(inner: &Arc<Inner>, m: fn(&Inner) -> &Mutex<T>) {
    let inner = inner.clone();
    let r = std::thread::spawn(move || {
        let _held = m(&inner).lock();
        panic!("test: a panic while the lock is held");
    })
    .join();
    assert!(r.is_err());
}

/// A panic while any of the replicator's std mutexes is held neither
/// makes later calls panic (status, sync) nor loses or corrupts data:
/// the database's position is forgotten and re-proven by comparing
/// pages, and a restore equals the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_under_any_lock_does_not_cascade() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let conn = make_db(&db);
    insert(&conn, 0, 10);
    let url = format!("file://{}", dir.path().join("replica").display());
    let replica = Replica::open(&url).unwrap();
    let r = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
        .await
        .unwrap();
    r.sync_all().await.unwrap();
    let before = r.local_txid();

    poison(&r.inner, |i| &i.db);
    poison(&r.inner, |i| &i.outbox);
    poison(&r.inner, |i| &i.presync);
    poison(&r.inner, |i| &i.slots[0].status);
    assert!(r.inner.db.is_poisoned() && r.inner.outbox.is_poisoned());

    let st = r.status();
    assert_eq!(st.txid, before);
    assert_eq!(st.replicas[0].txid, before);

    insert(&conn, 10, 10);
    let first = r.sync().await.unwrap();
    assert!(
        matches!(first, SyncOutcome::Shipped { resync: true, .. }),
        "the position is re-proven by comparing pages: {first:?}"
    );
    assert!(!r.inner.db.is_poisoned(), "recovered once, then clean");
    insert(&conn, 20, 5);
    let second = r.sync().await.unwrap();
    assert!(
        matches!(second, SyncOutcome::Shipped { resync: false, .. }),
        "then shipping from the WAL again: {second:?}"
    );
    let txid = r.sync_all().await.unwrap();
    assert!(txid > before);

    let out = dir.path().join("out.db");
    crate::restore::restore(&replica, &out, &crate::RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        crate::content::content_digest(&out).unwrap(),
        crate::content::content_digest(&db).unwrap()
    );
    let n: i64 = rusqlite::Connection::open(&out)
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 25);
}

#[tokio::test]
async fn a_panicking_step_becomes_an_error() {
    let r: Result<(), _> = no_panic("an upload", async { panic!("boom {}", 7) }).await;
    match r {
        Err(ReplicateError::Internal(m)) => {
            assert!(m.contains("an upload") && m.contains("boom 7"), "{m}")
        }
        other => panic!("expected an internal error, got {other:?}"),
    }
    let ok = no_panic("x", async { Ok::<_, ReplicateError>(3) }).await;
    assert_eq!(ok.unwrap(), 3);
}

#[tokio::test]
async fn more_levels_than_the_layout_holds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    drop(make_db(&db));
    let replica = Replica::open(&format!("file://{}", dir.path().join("r").display())).unwrap();
    let mut opts = ReplicateOptions::default();
    opts.retention.levels = vec![Duration::from_secs(1); 9];
    match Replicator::open(&db, replica, opts).await {
        Err(e @ ReplicateError::TooManyLevels(9)) => {
            assert!(e.to_string().contains("at most 8"), "{e}")
        }
        Err(e) => panic!("expected TooManyLevels, got {e}"),
        Ok(_) => panic!("expected TooManyLevels, got a replicator"),
    }
}
