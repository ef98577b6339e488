//! Storage faults, injected by a decorator around a real store: failed PUTs
//! are retried with backoff; an upload that keeps failing leaves no object
//! behind and loses nothing (the frames stay in the WAL and ship later).

use crate::support;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::store::{fast_retry, flaky, flaky_memory_replica};
use crate::support::*;
use litevault::replica::{KeyLayout, Replica};
use litevault::restore::{RestoreOptions, restore};
use litevault::{ReplicateOptions, Replicator};

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

/// The store fails every attempt of the final sync's first uploads (a reset
/// connection, more times than one request retries): the stop tries again
/// within its shutdown timeout, and ends with every commit in the replica.
#[test]
fn the_final_sync_outlasts_a_run_of_failed_requests() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let (store, replica) = flaky_memory_replica(2);
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        rep.sync_all().await.unwrap();
        for i in 1..=20 {
            Workload::apply(&mut c, i).unwrap();
        }
        // Three requests' worth of attempts fail.
        store.fail_puts.store(6, Ordering::SeqCst);
        rep.run(async {}).await.unwrap();
        assert_eq!(store.fail_puts.load(Ordering::SeqCst), 0);
        let out = dir.path().join("out.db");
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 20);
    });
}

/// Every commit is on the replica when the stop comes, but the store takes
/// 3 s per PUT: the stop's level-1 compaction (for `litestream replicate` to
/// continue from) cannot finish within the 1 s shutdown timeout. The stop
/// still succeeds (nothing is missing from the replica), and the replica
/// restores every commit.
#[test]
fn a_slow_hand_off_does_not_fail_a_stop_whose_commits_are_shipped() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let (store, replica) = flaky_memory_replica(2);
        let opts = ReplicateOptions {
            shutdown_timeout: Duration::from_secs(1),
            ..ReplicateOptions::default()
        };
        let rep = Replicator::open(&db, replica.clone(), opts).await.unwrap();
        for i in 1..=5 {
            Workload::apply(&mut c, i).unwrap();
            rep.sync_all().await.unwrap();
        }
        store.put_delay_ms.store(3000, Ordering::SeqCst);
        rep.run(async {}).await.unwrap();
        store.put_delay_ms.store(0, Ordering::SeqCst);
        let out = dir.path().join("out.db");
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 5);
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
        // The first replica kept its own history: every file is still there
        // (one per sync, and the hand-off file the stop added after the
        // second replica's merged catch-up).
        assert_eq!(first.list_level(0).await.unwrap().len(), 22);
    });
}

/// Options that make compaction, snapshots and retention run within seconds,
/// so their requests meet the faults too.
fn busy_options() -> ReplicateOptions {
    let mut opts = ReplicateOptions {
        sync_interval: Duration::from_millis(20),
        lease: Some(litevault::replicate::LeaseOptions {
            ttl: Duration::from_secs(3),
            takeover: false,
            wait: Duration::ZERO,
        }),
        ..ReplicateOptions::default()
    };
    opts.retention.levels = vec![Duration::from_secs(1), Duration::from_secs(3)];
    opts.retention.snapshot_interval = Some(Duration::from_secs(4));
    opts.retention.l0_retention = Duration::from_secs(2);
    opts.retention.check_interval = Duration::from_secs(1);
    opts.checkpoint.min_pages = 200;
    opts
}

/// What one run under faults measured.
struct FaultRun {
    catch_up: Duration,
    counts: litevault::replica::faults::FaultCounts,
    commits: i64,
    failed_attempts: u64,
}

/// Restore points the replica must have held before the writes under
/// faults stop, so that checking past ones means something.
const MIN_POINTS: usize = 4;

/// The restore points (reachable TXIDs but 0) of the files in `store`.
async fn restore_points(store: &Arc<dyn object_store::ObjectStore>) -> Vec<u64> {
    let clean = Replica::from_store(store.clone(), "app", KeyLayout::Ltx, "clean");
    let files = clean.list_all().await.unwrap();
    let refs: Vec<_> = files.iter().collect();
    let mut points: Vec<u64> = litevault::chain::reachable(&refs)
        .into_iter()
        .filter(|t| *t > 0)
        .collect();
    points.sort_unstable();
    points
}

/// A replicator runs under `config`'s faults while a writer commits at
/// least `commits` transactions (one of them a 9 MiB blob, shipped as a
/// multipart upload), and goes on until the replica holds [`MIN_POINTS`]
/// restore points and the fault counts meet `goal` (the faults the test is
/// about happened), however slowly the machine ships; then injection stops. Checks: the replica catches up with everything committed; the
/// latest state restores to exactly the source (content digest, and the
/// workload model); random past restore points restore to committed
/// prefixes that pass integrity_check, in TXID order.
async fn replicate_under_faults(
    config: litevault::replica::faults::FaultConfig,
    commits: i64,
    goal: (&str, fn(&litevault::replica::faults::FaultCounts) -> bool),
) -> FaultRun {
    use litevault::ltx::Txid;
    use litevault::restore::RestoreTarget;
    use std::sync::atomic::{AtomicBool, AtomicI64};

    let seed = config.seed;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    let (inner, faulty, replica) = support::store::faulty_memory_replica(config);
    let rep = Replicator::open(&db, replica.clone(), busy_options())
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(rep.clone().run(async move {
        let _ = stop_rx.await;
    }));
    let written = Arc::new(AtomicI64::new(0));
    let enough = Arc::new(AtomicBool::new(false));
    let writer = {
        let (written, enough) = (written.clone(), enough.clone());
        tokio::task::spawn_blocking(move || {
            let mut pause = seed | 1;
            let mut i = 0;
            while i < commits || !enough.load(Ordering::SeqCst) {
                i += 1;
                Workload::apply(&mut c, i).unwrap();
                written.store(i, Ordering::SeqCst);
                if i == commits / 2 {
                    c.execute_batch(
                        "CREATE TABLE side(b BLOB); INSERT INTO side VALUES (randomblob(9 << 20));",
                    )
                    .unwrap();
                }
                // Pacing, not waiting: commits come at random moments, so
                // faults hit uploads of every size and timing.
                pause = pause.wrapping_mul(6364136223846793005).wrapping_add(1);
                std::thread::sleep(Duration::from_millis((pause >> 33) % 15));
            }
            i
        })
    };
    // The writer stops once it has made `commits` and the replica (read
    // through a clean view of the same objects) holds enough restore points.
    let (inner_ref, written_ref, faulty_ref) = (&inner, &written, &faulty);
    wait_until_async(
        Duration::from_secs(300),
        format_args!(
            "seed {seed}: {commits} commits, {MIN_POINTS} restore points in the replica and {}",
            goal.0
        ),
        || async move {
            let points = restore_points(inner_ref).await;
            let n = written_ref.load(Ordering::SeqCst);
            let counts = faulty_ref.counts();
            if n >= commits && points.len() >= MIN_POINTS && (goal.1)(&counts) {
                Ok(())
            } else {
                Err(format!(
                    "{n} commits, restore points {points:?}, faults {counts:?}"
                ))
            }
        },
    )
    .await;
    enough.store(true, Ordering::SeqCst);
    let commits = writer.await.unwrap();
    // Injection stops: how long until the replica holds every commit?
    faulty.set_enabled(false);
    let stopped = std::time::Instant::now();
    let target = rep.take_committed().await.unwrap();
    if tokio::time::timeout(Duration::from_secs(120), rep.wait_replicated(target))
        .await
        .is_err()
    {
        panic!(
            "seed {seed}: the replica did not catch up with TXID {target} within 120 s after the faults stopped: {:?}",
            rep.status().replicas
        );
    }
    let catch_up = stopped.elapsed();
    let failed_attempts = replica.stats().counts().errors;
    let _ = stop_tx.send(());
    runner.await.unwrap().unwrap();

    // Read back through a clean replica over the same objects.
    let clean = Replica::from_store(inner.clone(), "app", KeyLayout::Ltx, "clean");
    let out = dir.path().join("latest.db");
    restore_at(&clean, &out, RestoreTarget::Latest).await;
    assert_eq!(Workload::check_prefix(&out), commits, "seed {seed}");
    assert_eq!(
        litevault::content::content_digest(&out).unwrap(),
        litevault::content::content_digest(&db).unwrap(),
        "seed {seed}: the restore equals the source"
    );
    // Retention may have merged some of them since: whatever points are
    // left are checked (the latest at least, restored above).
    let points = restore_points(&inner).await;
    assert!(!points.is_empty(), "seed {seed}: no restore point");
    let mut pick = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut chosen: Vec<u64> = (0..5)
        .map(|_| {
            pick ^= pick << 13;
            pick ^= pick >> 7;
            pick ^= pick << 17;
            points[(pick % points.len() as u64) as usize]
        })
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    let mut last = 0;
    for t in chosen {
        let out = dir.path().join(format!("at-{t}.db"));
        restore_at(&clean, &out, RestoreTarget::Txid(Txid(t))).await;
        let k = Workload::check_prefix(&out);
        assert!(
            k >= last && k <= commits,
            "seed {seed}: TXID {t} holds prefix {k}"
        );
        last = k;
    }
    FaultRun {
        catch_up,
        counts: faulty.counts(),
        commits,
        failed_attempts,
    }
}

/// 10% of requests fail, hang, slow down, are cut before or after the store
/// got them, get spurious 412/409 or stale answers: replication loses
/// nothing and catches up once the faults stop. `FAULT_SEEDS=1,2,3` runs
/// more seeds (each a few seconds of writes) and prints the worst catch-up.
#[test]
fn ten_percent_faults_lose_nothing_and_catch_up() {
    use litevault::replica::faults::{FaultConfig, FaultKind};
    let seeds: Vec<u64> = std::env::var("FAULT_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![7]);
    block_on(async move {
        let mut worst = Duration::ZERO;
        for seed in seeds {
            let run = replicate_under_faults(
                FaultConfig {
                    rate: 0.1,
                    seed,
                    kinds: FaultKind::ALL.to_vec(),
                    latency: Duration::from_millis(50),
                    hang: Duration::from_millis(300),
                    stale_for: Duration::from_millis(1000),
                },
                1000,
                ("more than 10 faults injected", |c| c.total() > 10),
            )
            .await;
            println!(
                "seed {seed}: {} commits; caught up {:?} after the faults stopped; {} failed attempts retried; faults {}",
                run.commits,
                run.catch_up,
                run.failed_attempts,
                litevault::replica::faults::exit_line(&run.counts)
            );
            assert!(run.counts.total() > 10, "{:?}", run.counts);
            assert!(run.failed_attempts > 0);
            worst = worst.max(run.catch_up);
        }
        println!("worst catch-up after faults stopped: {worst:?}");
    });
}

/// Writes that happened in the store but were reported failed (cut after
/// the store got them, or hung past the timeout), at 30%: the replicator's
/// retries overwrite or find them, and nothing is lost.
#[test]
fn writes_reported_failed_after_they_landed() {
    use litevault::replica::faults::{FaultConfig, FaultKind};
    block_on(async {
        let run = replicate_under_faults(
            FaultConfig {
                rate: 0.3,
                seed: 11,
                kinds: vec![FaultKind::Cut, FaultKind::Timeout],
                hang: Duration::from_millis(100),
                ..Default::default()
            },
            150,
            ("a write that landed but was reported failed", |c| {
                c.landed_but_failed > 0
            }),
        )
        .await;
        println!(
            "landed but failed: caught up {:?}; faults {}",
            run.catch_up,
            litevault::replica::faults::exit_line(&run.counts)
        );
        assert!(run.counts.landed_but_failed > 0, "{:?}", run.counts);
    });
}

/// A replicator restarts while listings miss the newest objects (an
/// eventually consistent store). Its local state notes what it uploaded, so
/// it lists again until the listing shows it, and continues the replica:
/// nothing in the replica is replaced, and the latest state holds every
/// commit.
#[test]
fn a_restart_under_stale_listings() {
    stale_restart(false, false);
}

/// Without local state, the listing stays stale while the app commits
/// more than the replica holds: uploads keep failing on the same name
/// (nothing is overwritten, and no merged file slips past the conflict),
/// and when the listing is right again the replica's newest state is below
/// the database's head under this replicator's numbering, so it gets a
/// snapshot of the head.
#[test]
fn a_long_stale_listing_ends_in_a_snapshot() {
    stale_restart(true, true);
}

/// The same after the local state was lost (a new machine, a container
/// without a persistent volume): the replicator can only go by the listing
/// and takes the replica for older than it is. Its next file would reuse a
/// TXID the replica already holds and fork the history; level-0 files are
/// never overwritten, so that upload fails, and the replicator lists the
/// replica again and continues after its newest file, with no restart.
#[test]
fn a_restart_without_local_state_under_stale_listings() {
    stale_restart(true, false);
}

/// When the newest LTX file in `store` was last written.
async fn newest_ltx_change(
    store: &Arc<dyn object_store::ObjectStore>,
) -> chrono::DateTime<chrono::Utc> {
    use futures::TryStreamExt;
    let all: Vec<object_store::ObjectMeta> = store.list(None).try_collect().await.unwrap();
    all.iter()
        .filter(|m| m.location.as_ref().contains("ltx/"))
        .map(|m| m.last_modified)
        .max()
        .expect("LTX files in the store")
}

fn stale_restart(lose_local_state: bool, long_stale: bool) {
    use litevault::ltx::Txid;
    use litevault::replica::faults::{FaultConfig, FaultKind};
    use litevault::restore::RestoreTarget;
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let (inner, faulty, replica) = support::store::faulty_memory_replica(FaultConfig {
            rate: 1.0,
            seed: 3,
            kinds: vec![FaultKind::Stale],
            ..Default::default()
        });
        faulty.set_enabled(false);
        let clean = Replica::from_store(inner.clone(), "app", KeyLayout::Ltx, "clean");
        let mut opts = ReplicateOptions::default();
        opts.retention.levels.clear();
        let rep = Replicator::open(&db, replica.clone(), opts.clone())
            .await
            .unwrap();
        for i in 1..=40 {
            Workload::apply(&mut c, i).unwrap();
            rep.sync_all().await.unwrap();
            if i == 20 {
                // Stale listings show the store as it is now: the files so
                // far, none of the next ones (however long the test takes).
                faulty.set_stale_since(Some(newest_ltx_change(&inner).await));
            }
        }
        rep.run(async {}).await.unwrap();
        if lose_local_state {
            std::fs::remove_dir_all(dir.path().join(".app.db-litevault")).unwrap();
        }
        let before = clean.list_all().await.unwrap();
        // Restart: the listing misses the files of commits 21..=40.
        faulty.set_enabled(true);
        let opening = {
            let (db, replica, opts) = (db.clone(), replica.clone(), opts.clone());
            tokio::spawn(async move { Replicator::open(&db, replica, opts).await })
        };
        if !lose_local_state {
            // The start noted what it uploaded, so it lists again until the
            // listing shows it: the store catches up once it has served a
            // stale listing.
            let f = &faulty;
            wait_until_async(WAIT, "a stale listing at the start", || async move {
                f.counts().stale > 0
            })
            .await;
            faulty.set_enabled(false);
        }
        let rep = opening.await.unwrap().unwrap();
        if long_stale {
            // 30 commits, each its own file: every upload finds its name
            // taken, and every new listing misses the same files.
            for i in 41..=70 {
                Workload::apply(&mut c, i).unwrap();
                let err = rep.sync_all().await.unwrap_err().to_string();
                assert!(err.contains("already exists with other content"), "{err}");
            }
        }
        faulty.set_enabled(false);
        assert!(faulty.counts().stale > 0, "the listing at start hid files");
        // Fewer commits than the listing missed: overwriting would leave
        // old files above the new ones.
        let last = if long_stale { 80 } else { 50 };
        for i in (last - 9)..=last {
            Workload::apply(&mut c, i).unwrap();
        }
        // The first upload finds its name taken; the replicator lists the
        // replica again (no longer stale) and continues after it.
        let txid = rep.sync_all().await.unwrap();
        assert!(
            txid > Txid(40),
            "numbering went on past the replica: {txid}"
        );
        rep.run(async {}).await.unwrap();
        let after = clean.list_all().await.unwrap();
        for f in &before {
            let now = after
                .iter()
                .find(|a| (a.level, a.min_txid, a.max_txid) == (f.level, f.min_txid, f.max_txid));
            assert_eq!(now.map(|a| a.size), Some(f.size), "{f} was kept as it was");
        }
        for t in 1..=40 {
            let out = dir.path().join(format!("at-{t}.db"));
            restore_at(&clean, &out, RestoreTarget::Txid(Txid(t))).await;
            assert_eq!(
                Workload::check_prefix(&out),
                t as i64,
                "TXID {t} is the state it was"
            );
        }
        let out = dir.path().join("latest.db");
        restore_at(&clean, &out, RestoreTarget::Latest).await;
        assert_eq!(Workload::check_prefix(&out), last);
        let snapshots = clean
            .list_all()
            .await
            .unwrap()
            .iter()
            .filter(|f| f.level == 9)
            .count();
        assert_eq!(
            snapshots > 0,
            long_stale,
            "a snapshot only after a long stale spell"
        );
        assert_eq!(
            litevault::content::content_digest(&out).unwrap(),
            litevault::content::content_digest(&db).unwrap()
        );
    });
}

/// The binary: `LITEVAULT_FAULTS` turns injection on in `litevault
/// replicate` and `litevault restore`, each warns loudly and prints the
/// counts as one JSON line on stderr at exit, and nothing committed is lost.
#[test]
fn the_binary_injects_faults_from_the_environment() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    let url = file_url(&dir.path().join("replica"));
    let faults =
        "rate=0.3,seed=5,kinds=error,timeout,slow,cut,conflict,stale,hang_ms=200,latency_ms=30";
    let child = litevault(&[])
        .env("LITEVAULT_FAULTS", faults)
        .args(["replicate", db.to_str().unwrap(), &url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for i in 1..=200 {
        Workload::apply(&mut c, i).unwrap();
        // Pacing, not waiting: commits over time, so the faults hit many
        // requests rather than one upload.
        std::thread::sleep(Duration::from_millis(10));
    }
    // Stopped once it runs (its status file says so): the final sync ships
    // whatever is left.
    wait_until(WAIT, "replicate to report itself running", || {
        let o = litevault(&[])
            .args(["status", db.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v[0]["running"] == true
    });
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let counts = |stderr: &str| -> litevault::replica::faults::FaultCounts {
        assert!(stderr.contains("FAULT INJECTION IS ON"), "{stderr}");
        let line = stderr
            .lines()
            .rfind(|l| l.starts_with("{\"faults\":"))
            .unwrap_or_else(|| panic!("no counts line: {stderr}"));
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        serde_json::from_value(v["faults"].clone()).unwrap()
    };
    let replicated = counts(&stderr);
    println!("replicate: {replicated:?}");
    assert!(
        replicated.requests > 0 && replicated.total() <= replicated.requests,
        "{replicated:?}"
    );
    let restored = dir.path().join("restored.db");
    let out = litevault(&[])
        .env("LITEVAULT_FAULTS", "rate=1,seed=9,kinds=slow,latency_ms=5")
        .args(["restore", &url, "-o", restored.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let c = counts(&stderr);
    println!("restore: {c:?}");
    assert!(
        c.requests > 0 && c.slow == c.requests,
        "every request slowed: {c:?}"
    );
    assert_eq!(Workload::check_prefix(&restored), 200);
    // A bad setting is refused with what to write.
    let out = litevault(&[])
        .env("LITEVAULT_FAULTS", "rate=2")
        .args([
            "restore",
            &url,
            "-o",
            dir.path().join("x.db").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("LITEVAULT_FAULTS: rate=\"2\""), "{stderr}");
}

/// A level-0 upload that happened while its answer was lost (scripted): the
/// retry's conditional create finds the same file and counts it as written;
/// replication goes on and restores.
#[test]
fn a_level0_upload_whose_answer_was_lost() {
    use litevault::replica::faults::FaultConfig;
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let (inner, faulty, replica) = support::store::faulty_memory_replica(FaultConfig {
            rate: 0.0,
            ..Default::default()
        });
        let replica = replica.with_retry(fast_retry(3));
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        for i in 1..=10 {
            Workload::apply(&mut c, i).unwrap();
            faulty.lose_next_answers(1);
            rep.sync_all().await.unwrap();
        }
        rep.run(async {}).await.unwrap();
        assert_eq!(faulty.counts().landed_but_failed, 10);
        // Two failed attempts each: the cut, then the retry's conflict with
        // the file it found (no third attempt, no other upload).
        assert_eq!(replica.stats().counts().errors, 20);
        let clean = Replica::from_store(inner, "app", KeyLayout::Ltx, "clean");
        let out = dir.path().join("out.db");
        restore(&clean, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 10);
    });
}
