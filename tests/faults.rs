//! Storage faults, injected by a decorator around a real store: failed PUTs
//! are retried with backoff; an upload that keeps failing leaves no object
//! behind and loses nothing (the frames stay in the WAL and ship later).

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use litevault::replica::{KeyLayout, Replica};
use litevault::restore::{RestoreOptions, restore};
use litevault::{ReplicateOptions, Replicator};
use support::store::{fast_retry, flaky, flaky_memory_replica};
use support::*;

#[test]
fn transient_put_failures_are_retried() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let (store, replica) = flaky_memory_replica(5);
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        // Opening took the lease: one PUT.
        let base = store.attempts.load(Ordering::SeqCst);
        assert_eq!(base, 1);
        for i in 1..=20 {
            Workload::apply(&mut c, i).unwrap();
            store.fail_puts.store(3, Ordering::SeqCst);
            rep.sync_all().await.unwrap();
        }
        assert_eq!(
            store.attempts.load(Ordering::SeqCst) - base,
            20 * 4,
            "three failures then success, each time"
        );
        assert_eq!(replica.stats().counts().errors, 60);
        rep.run(async {}).await.unwrap();
        let out = dir.path().join("out.db");
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 20);
    });
}

#[test]
fn a_failed_upload_loses_nothing_and_leaves_no_object() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let inner =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let store = flaky(inner);
        let replica = Replica::from_store(store.clone(), "replica", KeyLayout::Ltx, "flaky")
            .with_retry(fast_retry(2));
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        for i in 1..=5 {
            Workload::apply(&mut c, i).unwrap();
        }
        rep.sync_all().await.unwrap();
        // The store is down for a while; the app keeps committing and even
        // tries to checkpoint.
        for i in 6..=40 {
            Workload::apply(&mut c, i).unwrap();
            store.fail_puts.store(10, Ordering::SeqCst);
            let err = rep.sync().await.unwrap_err();
            assert!(err.to_string().contains("PUT"), "{err}");
            c.busy_timeout(Duration::from_millis(10)).unwrap();
            let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
        let files: Vec<_> = std::fs::read_dir(dir.path().join("replica/ltx/0"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            files
                .iter()
                .all(|f| f.ends_with(".ltx") && !f.contains('#')),
            "no partial or temporary object under the replica: {files:?}"
        );
        assert_eq!(files.len(), 1);
        // Back up: everything committed meanwhile ships.
        store.fail_puts.store(0, Ordering::SeqCst);
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        let out = dir.path().join("out.db");
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 40);
    });
}

/// Uploads fail while the app checkpoints and its next commit restarts the
/// WAL: the frames whose upload failed were copied into the database file and
/// are gone from the WAL, and must still reach the replica.
#[test]
fn failed_uploads_across_a_wal_restart() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        Workload::init(&c);
        let (store, replica) = flaky_memory_replica(1);
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        for i in 1..=10 {
            Workload::apply(&mut c, i).unwrap();
        }
        rep.sync_all().await.unwrap();
        for i in 11..=30 {
            Workload::apply(&mut c, i).unwrap();
        }
        // Pages that the commit after the restart will not touch again.
        c.execute_batch(
            "CREATE TABLE side(b BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 40) INSERT INTO side SELECT randomblob(3000) FROM n;",
        )
        .unwrap();
        store.fail_puts.store(2, Ordering::SeqCst);
        assert!(rep.sync().await.is_err());
        let (busy, log, done): (i64, i64, i64) = c
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(
            (busy, log),
            (0, done),
            "every frame was copied into the database"
        );
        assert!(rep.sync().await.is_err());
        // This commit restarts the WAL: frames 11..=30 now live only in the
        // database file.
        Workload::apply(&mut c, 31).unwrap();
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        let out = dir.path().join("out.db");
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 31);
    });
}

/// Two replicas; one is down. The other keeps receiving every commit, the
/// database keeps checkpointing, and when the first comes back it catches
/// up from the local store with a single merged upload.
#[test]
fn a_failing_replica_does_not_hold_back_the_other() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let good = Replica::open(&file_url(&dir.path().join("good"))).unwrap();
        let (store, bad) = flaky_memory_replica(1);
        let mut opts = ReplicateOptions::default();
        opts.checkpoint.min_pages = 10;
        let rep = Replicator::open_many(&db, vec![good.clone(), bad.clone()], opts)
            .await
            .unwrap();
        for i in 1..=5 {
            Workload::apply(&mut c, i).unwrap();
        }
        rep.sync_all().await.unwrap();
        store.fail_puts.store(u32::MAX, Ordering::SeqCst);
        for i in 6..=60 {
            Workload::apply(&mut c, i).unwrap();
            let err = rep.sync().await.unwrap_err();
            assert!(err.to_string().contains("PUT"), "{err}");
        }
        // The good replica has everything.
        let out = dir.path().join("good.db");
        restore(&good, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 60);
        let status = rep.status().replicas;
        assert_eq!(status[0].txid, rep.local_txid());
        assert!(status[1].txid < rep.local_txid());
        assert!(status[1].last_error.as_deref().unwrap().contains("PUT"));
        // The WAL did not grow without bound: checkpoints ran meanwhile.
        let wal = std::fs::metadata(dir.path().join("app.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 4096 * 200, "WAL is {wal} bytes");
        // The bad replica comes back: one upload brings it up to date.
        store.fail_puts.store(0, Ordering::SeqCst);
        let before = bad.stats().counts().puts;
        rep.sync_all().await.unwrap();
        assert_eq!(bad.stats().counts().puts - before, 1, "one merged upload");
        let out = dir.path().join("bad.db");
        restore(&bad, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 60);
        rep.run(async {}).await.unwrap();
    });
}

/// A replica added to a database that already replicates elsewhere catches
/// up from the local store in one merged file while the store still holds
/// the history, and starts from a snapshot once it does not.
#[test]
fn a_new_replica_catches_up_or_starts_with_a_snapshot() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let first = Replica::open(&file_url(&dir.path().join("first"))).unwrap();
        let rep = Replicator::open(&db, first.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        for i in 1..=20 {
            Workload::apply(&mut c, i).unwrap();
            rep.sync_all().await.unwrap();
        }
        rep.run(async {}).await.unwrap();

        // The local store still holds files 1..=20 (level 1 has not taken
        // them yet): the new replica gets them merged into one file.
        let second = Replica::open(&file_url(&dir.path().join("second"))).unwrap();
        let mut no_compaction = ReplicateOptions::default();
        no_compaction.retention.levels.clear();
        let rep = Replicator::open_many(
            &db,
            vec![first.clone(), second.clone()],
            no_compaction.clone(),
        )
        .await
        .unwrap();
        rep.sync_all().await.unwrap();
        let l0 = second.list_level(0).await.unwrap();
        assert_eq!(l0.len(), 1, "{l0:?}");
        assert_eq!((l0[0].min_txid.0, l0[0].max_txid), (1, rep.local_txid()));
        assert!(second.list_level(9).await.unwrap().is_empty());
        rep.run(async {}).await.unwrap();

        // Without compaction the local store lets go of what every replica
        // has: a third replica now needs a snapshot.
        let third = Replica::open(&file_url(&dir.path().join("third"))).unwrap();
        let rep = Replicator::open_many(
            &db,
            vec![first.clone(), second.clone(), third.clone()],
            no_compaction,
        )
        .await
        .unwrap();
        rep.sync_all().await.unwrap();
        let snaps = third.list_level(9).await.unwrap();
        assert_eq!(snaps.len(), 1, "one snapshot");
        assert_eq!(snaps[0].max_txid, rep.local_txid());
        assert!(third.list_level(0).await.unwrap().is_empty());
        for i in 21..=30 {
            Workload::apply(&mut c, i).unwrap();
        }
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        for (name, r) in [("first", &first), ("second", &second), ("third", &third)] {
            let out = dir.path().join(format!("{name}.db"));
            restore(r, &out, &RestoreOptions::default()).await.unwrap();
            assert_eq!(Workload::check_prefix(&out), 30, "{name}");
        }
        // The first replica kept its own history: every file is still there.
        assert_eq!(first.list_level(0).await.unwrap().len(), 21);
    });
}
