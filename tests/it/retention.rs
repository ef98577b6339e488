//! Point-in-time restore across compaction, snapshots and retention
//! (Litestream #771, #1038): a property test drives random writes, clock
//! jumps and maintenance, then restores points by TXID and by time and
//! compares each with the model of the workload.

use crate::support;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::support::*;
use chrono::{DateTime, Utc};
use litevault::chain::plan_chain;
use litevault::ltx::Txid;
use litevault::replicate::{Clock, RetentionOptions};
use litevault::restore::{RestoreOptions, RestoreTarget, restore};
use litevault::{Replica, ReplicateOptions, Replicator};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Commit this many transactions, then sync.
    Write(u8),
    /// Move the clock forward by this many seconds.
    Advance(u16),
    /// Run compaction, snapshots and retention.
    Maintain,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..4).prop_map(Op::Write),
        3 => (1u16..400).prop_map(Op::Advance),
        3 => Just(Op::Maintain),
    ]
}

fn opts(clock: Clock) -> ReplicateOptions {
    ReplicateOptions {
        retention: RetentionOptions {
            enabled: true,
            levels: vec![
                Duration::from_secs(30),
                Duration::from_secs(5 * 60),
                Duration::from_secs(60 * 60),
            ],
            snapshot_interval: Some(Duration::from_secs(20 * 60)),
            snapshot_retention: Duration::from_secs(45 * 60),
            l0_retention: Duration::from_secs(2 * 60),
            check_interval: Duration::from_secs(15),
        },
        clock,
        ..ReplicateOptions::default()
    }
}

/// One synced state: its TXID, the workload prefix it holds, its time.
#[derive(Clone, Copy, Debug)]
struct Point {
    txid: Txid,
    k: i64,
    at_ms: i64,
}

fn run_case(
    ops: Vec<Op>,
    probes: Vec<(u16, u16)>,
) -> Result<Vec<litevault::replica::LtxFileInfo>, TestCaseError> {
    block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 1024);
        Workload::init(&c);
        let now = Arc::new(AtomicI64::new(1_800_000_000_000));
        let n = now.clone();
        let clock = Clock::from_fn(move || n.load(Ordering::SeqCst));
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let rep = Replicator::open(&db, replica.clone(), opts(clock))
            .await
            .unwrap();
        let mut points: Vec<Point> = Vec::new();
        let mut k = 0i64;
        for op in ops.into_iter().chain([Op::Write(1)]) {
            match op {
                Op::Write(n) => {
                    for _ in 0..n {
                        k += 1;
                        Workload::apply(&mut c, k).unwrap();
                    }
                    let txid = rep.sync_all().await.unwrap();
                    points.push(Point {
                        txid,
                        k,
                        at_ms: now.load(Ordering::SeqCst),
                    });
                }
                Op::Advance(s) => {
                    now.fetch_add(s as i64 * 1000, Ordering::SeqCst);
                }
                Op::Maintain => rep.maintain().await.unwrap(),
            }
        }
        let end_ms = now.load(Ordering::SeqCst);
        let files = replica.list_all().await.unwrap();
        let restorable = |t: Txid| plan_chain(&files, Txid(0), t).is_some();
        let out = dir.path().join("out.db");
        let restore_to = |target: RestoreTarget| {
            let replica = replica.clone();
            let out = out.clone();
            async move {
                let _ = std::fs::remove_file(&out);
                restore(
                    &replica,
                    &out,
                    &RestoreOptions {
                        target,
                        write_state: false,
                        ..RestoreOptions::default()
                    },
                )
                .await
                .map(|_| Workload::check_prefix(&out))
            }
        };
        // Promised: the latest state, and every state younger than the L0
        // retention.
        let last = *points.last().unwrap();
        prop_assert!(restorable(last.txid), "latest {last:?} in {files:?}");
        for p in &points {
            if end_ms - p.at_ms < 2 * 60 * 1000 {
                prop_assert!(restorable(p.txid), "young point {p:?} lost: {files:?}");
            }
        }
        // Every point that is restorable restores to exactly its state.
        let mut by_txid: Vec<&Point> = points.iter().filter(|p| restorable(p.txid)).collect();
        by_txid.dedup_by_key(|p| p.txid);
        for (i, _) in &probes {
            let p = by_txid[*i as usize % by_txid.len()];
            let got = restore_to(RestoreTarget::Txid(p.txid)).await.unwrap();
            prop_assert_eq!(got, p.k, "restore at {:?}", p);
        }
        // By time: the newest restorable state at or before that time.
        let first_ms = points[0].at_ms;
        for (_, j) in &probes {
            let span = (end_ms - first_ms).max(1);
            let t = first_ms + (*j as i64 * 7919) % (span + 1);
            let expect = points
                .iter()
                .filter(|p| p.at_ms <= t && restorable(p.txid))
                .max_by_key(|p| p.txid);
            let when = DateTime::<Utc>::from_timestamp_millis(t).unwrap();
            let got = restore_to(RestoreTarget::Timestamp(when)).await;
            match (expect, got) {
                (Some(p), Ok(k)) => prop_assert_eq!(k, p.k, "restore at {} expects {:?}", when, p),
                (None, Err(_)) => {}
                (e, g) => prop_assert!(false, "restore at {when}: expected {e:?}, got {g:?}"),
            }
        }
        rep.run(async {}).await.unwrap();
        Ok(files)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn point_in_time_restore_survives_compaction_and_retention(
        ops in prop::collection::vec(op(), 20..90),
        probes in prop::collection::vec((any::<u16>(), any::<u16>()), 6),
    ) {
        run_case(ops, probes)?;
    }
}

/// A long, fixed history: all levels and snapshots appear, retention
/// deletes, and every promised point still restores.
#[test]
fn a_long_history_compacts_and_expires() {
    let mut ops = Vec::new();
    for i in 0..400 {
        ops.push(Op::Write(1 + (i % 3) as u8));
        ops.push(Op::Advance(20 + (i * 37 % 50) as u16));
        ops.push(Op::Maintain);
    }
    let files = run_case(ops, (0..10).map(|i| (i * 13, i * 101)).collect()).unwrap();
    let count = |l: u8| files.iter().filter(|f| f.level == l).count();
    // Level 3 (hourly) files end before the oldest kept snapshot (every 20
    // minutes, kept 45) and are expired by then.
    for level in [1, 2, 9] {
        assert!(count(level) > 0, "level {level} has files: {files:?}");
    }
    // About 4.5 hours of history at one sync every ~45 s: retention keeps
    // the level-0 files of the last two minutes and deletes the rest.
    assert!(count(0) < 10, "level 0 was trimmed: {}", count(0));
    // Snapshots older than the retention are gone (the newest stays).
    let newest = files
        .iter()
        .filter(|f| f.level == 9)
        .map(|f| f.created)
        .max()
        .unwrap();
    for s in files.iter().filter(|f| f.level == 9) {
        assert!((newest - s.created).num_minutes() <= 45 + 20, "{s:?}");
    }
}

/// A replicator that never lives as long as a level's interval (restarted
/// every minute; level 2 every 5 minutes) still compacts into that level:
/// the schedule counts from the replica's files, not from each start.
#[test]
fn restarts_more_often_than_a_level_interval_still_compact_into_it() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 1024);
        Workload::init(&c);
        let now = Arc::new(AtomicI64::new(1_800_000_000_000));
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        for k in 1..=20 {
            let n = now.clone();
            let rep = Replicator::open(
                &db,
                replica.clone(),
                opts(Clock::from_fn(move || n.load(Ordering::SeqCst))),
            )
            .await
            .unwrap();
            Workload::apply(&mut c, k).unwrap();
            rep.sync_all().await.unwrap();
            now.fetch_add(60_000, Ordering::SeqCst);
            rep.maintain().await.unwrap();
            rep.run(async {}).await.unwrap();
        }
        let files = replica.list_all().await.unwrap();
        let level2 = files.iter().filter(|f| f.level == 2).count();
        assert!(
            level2 >= 2,
            "20 minutes of one-minute runs compact into level 2 (5 min): {files:?}"
        );
        let out = dir.path().join("out.db");
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 20);
    });
}

/// How a store deletes many files: all in one request (S3 `DeleteObjects`,
/// Azure Blob Batch) or one request per file (GCS).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Deletes {
    Bulk,
    OnePerFile,
}

/// Retention deletes the expired L0 files, in as many requests as `how`
/// says, and the latest state restores.
async fn retention_deletes(replica: Replica, how: Deletes) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 1024);
    Workload::init(&c);
    let now = Arc::new(AtomicI64::new(1_800_000_000_000));
    let n = now.clone();
    let rep = Replicator::open(
        &db,
        replica.clone(),
        opts(Clock::from_fn(move || n.load(Ordering::SeqCst))),
    )
    .await
    .unwrap();
    for k in 1..=40 {
        Workload::apply(&mut c, k).unwrap();
        rep.sync_all().await.unwrap();
        now.fetch_add(5_000, Ordering::SeqCst);
    }
    let before = replica.list_level(0).await.unwrap().len();
    assert_eq!(before, 40);
    // Compact into L1, then let L0 age past its retention.
    now.fetch_add(60_000, Ordering::SeqCst);
    rep.maintain().await.unwrap();
    now.fetch_add(200_000, Ordering::SeqCst);
    let deletes = replica.stats().counts().deletes;
    rep.maintain().await.unwrap();
    let after = replica.list_level(0).await.unwrap().len();
    assert!(after < before, "{after} of {before} L0 files left");
    let requests = match how {
        Deletes::Bulk => 1,
        Deletes::OnePerFile => (before - after) as u64,
    };
    assert_eq!(
        replica.stats().counts().deletes - deletes,
        requests,
        "{} files deleted ({how:?})",
        before - after
    );
    rep.run(async {}).await.unwrap();
    let out = dir.path().join("out.db");
    restore(&replica, &out, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(Workload::check_prefix(&out), 40);
}

/// The same rules on the S3 server: retention deletes in bulk (one
/// `DeleteObjects` request for many files) and the latest state restores.
#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn retention_on_s3_deletes_in_bulk() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("retention");
    block_on(retention_deletes(s3.replica(&bucket, "app"), Deletes::Bulk));
}

/// On Azure Blob Storage (Azurite): one Blob Batch request deletes the
/// expired files (up to 256 per request).
#[test]
#[ignore = "needs Azurite: run scripts/test.sh"]
fn retention_on_azure_deletes_in_bulk() {
    let az = support::cloud::Azurite::start();
    let container = az.container("retention");
    block_on(retention_deletes(
        az.replica(&container, "app"),
        Deletes::Bulk,
    ));
}

/// On Google Cloud Storage (the in-process XML API server), which has no
/// bulk delete: one DELETE request per expired file.
#[test]
fn retention_on_gcs_deletes() {
    let gcs = support::gcs_xml::GcsXml::start();
    let bucket = gcs.bucket("retention");
    block_on(retention_deletes(
        gcs.replica(&bucket, "app"),
        Deletes::OnePerFile,
    ));
    assert!(
        gcs.count(support::gcs_xml::Kind::Delete) > 0,
        "{:?}",
        gcs.requests()
    );
}

/// Files that went up merged (a replica behind by several files) are
/// compacted from their pieces in the local store: compaction downloads
/// nothing.
#[test]
fn compaction_reads_merged_uploads_from_the_local_store() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 1024);
        Workload::init(&c);
        let now = Arc::new(AtomicI64::new(1_800_000_000_000));
        let n = now.clone();
        let (store, replica) = support::store::flaky_memory_replica(1);
        let rep = Replicator::open(
            &db,
            replica.clone(),
            opts(Clock::from_fn(move || n.load(Ordering::SeqCst))),
        )
        .await
        .unwrap();
        for round in 0..4 {
            // The store is down for a few commits, then back: one merged upload.
            store
                .fail_puts
                .store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
            for i in 1..=5 {
                Workload::apply(&mut c, round * 5 + i).unwrap();
                let _ = rep.sync().await;
                now.fetch_add(2_000, Ordering::SeqCst);
            }
            store
                .fail_puts
                .store(0, std::sync::atomic::Ordering::SeqCst);
            rep.sync_all().await.unwrap();
        }
        let l0 = replica.list_level(0).await.unwrap();
        assert!(
            l0.iter().any(|f| f.min_txid < f.max_txid),
            "some level-0 files went up merged: {l0:?}"
        );
        let gets = replica.stats().counts().gets;
        now.fetch_add(60_000, Ordering::SeqCst);
        rep.maintain().await.unwrap();
        assert!(
            !replica.list_level(1).await.unwrap().is_empty(),
            "compacted"
        );
        assert_eq!(
            replica.stats().counts().gets - gets,
            0,
            "compaction read its inputs locally"
        );
        rep.run(async {}).await.unwrap();
        let out = dir.path().join("out.db");
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 20);
    });
}

/// Under a steady load with a short sync interval, the running replicator
/// keeps one unbroken chain of level-0 files: no replica ever falls back to
/// a snapshot (a slot must never run ahead of the announced state).
#[test]
fn a_fast_sync_interval_keeps_an_unbroken_chain() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let c = create_db(&db, 4096);
        Workload::init(&c);
        drop(c);
        let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let opts = ReplicateOptions {
            sync_interval: Duration::from_millis(50),
            ..ReplicateOptions::default()
        };
        let rep = Replicator::open(&db, replica.clone(), opts).await.unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rep.run(async {
            let _ = rx.await;
        }));
        let db2 = db.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = create_db(&db2, 4096);
            for i in 1..=1500 {
                Workload::apply(&mut c, i).unwrap();
                // Pacing, not waiting: a steady load, the condition under
                // test, rather than one burst.
                if i % 3 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
        .await
        .unwrap();
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        let files = replica.list_all().await.unwrap();
        assert!(
            files.iter().all(|f| f.level != 9),
            "no snapshot was needed: {:?}",
            files.iter().filter(|f| f.level == 9).collect::<Vec<_>>()
        );
        let max = files.iter().map(|f| f.max_txid).max().unwrap();
        assert_eq!(
            litevault::chain::first_gap(&files, Txid(0), max),
            None,
            "every TXID is on the chain"
        );
        let out = dir.path().join("out.db");
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 1500);
    });
}

/// A case the property test found: a snapshot taken after a young level-0
/// file made retention drop the base that file needs, so a state younger
/// than the L0 retention could not be restored. Kept level-0 files are now
/// promised restore points too.
#[test]
fn a_young_state_before_the_newest_snapshot_stays_restorable() {
    use Op::*;
    let ops = vec![
        Write(1),
        Write(1),
        Write(1),
        Advance(382),
        Advance(83),
        Maintain,
        Advance(284),
        Write(1),
        Maintain,
        Maintain,
        Advance(338),
        Write(3),
        Advance(113),
        Write(3),
        Maintain,
        Maintain,
        Write(2),
        Write(3),
        Maintain,
        Write(3),
    ];
    let probes = vec![
        (17851, 37457),
        (58646, 48401),
        (35754, 60173),
        (56142, 4503),
        (51407, 4370),
        (33361, 5565),
    ];
    run_case(ops, probes).unwrap();
}

/// A compaction upload that hangs does not hold back the push of new
/// commits: maintenance plans and records under the replica's state lock
/// but uploads without it, in a task of its own.
#[test]
fn a_hanging_compaction_upload_does_not_delay_new_commits() {
    use litevault::replica::KeyLayout;
    use support::store::flaky;
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let now = Arc::new(AtomicI64::new(1_800_000_000_000));
        let n = now.clone();
        let store = flaky(Arc::new(object_store::memory::InMemory::new()));
        let replica = Replica::from_store(store.clone(), "app", KeyLayout::Ltx, "flaky");
        let rep = Replicator::open(
            &db,
            replica.clone(),
            ReplicateOptions {
                sync_interval: Duration::ZERO,
                ..opts(Clock::from_fn(move || n.load(Ordering::SeqCst)))
            },
        )
        .await
        .unwrap();
        // Every upload to level 1 hangs until the test releases it.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        *store.hold.lock().unwrap() = Some(("/ltx/1/".to_string(), gate.clone()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rep.clone().run(async {
            let _ = rx.await;
        }));
        for i in 1..=5 {
            Workload::apply(&mut c, i).unwrap();
            rep.wake();
            // Pacing, not waiting: commits spread over several steps, as an
            // app makes them; nothing below counts the steps.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The producer may take two commits in one step (one TXID): wait
        // for the replica to hold all five, not for a TXID count.
        let first = dir.path().join("first.db");
        let (rep_ref, replica_ref, first_ref) = (&rep, &replica, &first);
        wait_until_async(
            WAIT,
            "the first five commits to reach the replica",
            || async move {
                let (rep, first) = (rep_ref, first_ref);
                if rep.txid().0 == 0 || rep.txid() < rep.local_txid() {
                    return Err(format!(
                        "{} of {}; {:?}",
                        rep.txid(),
                        rep.local_txid(),
                        rep.status()
                    ));
                }
                let _ = std::fs::remove_file(first);
                restore(replica_ref, first, &RestoreOptions::default())
                    .await
                    .unwrap();
                match Workload::check_prefix(first) {
                    5 => Ok(()),
                    k => Err(format!("the replica restores to commit {k}")),
                }
            },
        )
        .await;
        // Compaction to level 1 becomes due; its upload hangs.
        now.fetch_add(60_000, Ordering::SeqCst);
        let held = &store.held;
        wait_until_async(
            WAIT,
            "a level-1 compaction upload to start",
            || async move { held.load(Ordering::SeqCst) > 0 },
        )
        .await;
        // New commits still reach the replica while it hangs.
        for i in 6..=10 {
            Workload::apply(&mut c, i).unwrap();
        }
        let head = tokio::time::timeout(Duration::from_secs(60), rep.sync_all()).await;
        let head = head
            .expect("commits made during a hanging compaction upload were not shipped")
            .unwrap();
        let early = dir.path().join("early.db");
        restore(&replica, &early, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(
            Workload::check_prefix(&early),
            10,
            "restorable while it hangs"
        );
        assert_eq!(
            replica.list_level(1).await.unwrap().len(),
            0,
            "the level-1 upload is still held"
        );
        let l0_max = replica
            .list_level(0)
            .await
            .unwrap()
            .iter()
            .map(|f| f.max_txid)
            .max()
            .unwrap();
        assert_eq!(l0_max, head, "level 0 holds the newest commit");
        // Release it: the compaction lands, and everything restores.
        gate.add_permits(1000);
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        assert!(
            !replica.list_level(1).await.unwrap().is_empty(),
            "compacted"
        );
        let out = dir.path().join("out.db");
        restore(&replica, &out, &RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(Workload::check_prefix(&out), 10);
    });
}

/// Copies a folder tree.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A retention pass cut short after any number of deletions (a crash, a
/// failed request) leaves only files that still restore: the doomed files
/// go newest first.
#[test]
fn a_retention_pass_cut_short_leaves_only_files_that_restore() {
    use litevault::replicate::retention::{order_for_deletion, plan_retention};
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let now = Arc::new(AtomicI64::new(1_700_000_000_000));
        let clock = {
            let now = now.clone();
            Clock::from_fn(move || now.load(Ordering::SeqCst))
        };
        let mut o = opts(clock);
        // History piles up: nothing is deleted while it is built.
        o.retention.enabled = false;
        let root = dir.path().join("replica");
        let replica = Replica::open(&file_url(&root)).unwrap();
        let rep = Replicator::open(&db, replica.clone(), o.clone())
            .await
            .unwrap();
        for k in 1..=240 {
            Workload::apply(&mut c, k).unwrap();
            rep.sync_all().await.unwrap();
            now.fetch_add(45_000, Ordering::SeqCst);
            rep.maintain().await.unwrap();
        }
        let files = replica.list_all().await.unwrap();
        let at = DateTime::<Utc>::from_timestamp_millis(now.load(Ordering::SeqCst)).unwrap();
        let retention = RetentionOptions {
            enabled: true,
            ..o.retention.clone()
        };
        let mut doomed = plan_retention(&files, at, &retention);
        assert!(doomed.len() > 10, "retention has work: {}", doomed.len());
        order_for_deletion(&mut doomed);
        let n = doomed.len();
        for cut in [1, n / 4, n / 2, 3 * n / 4, n - 1] {
            let copy = dir.path().join(format!("cut-{cut}"));
            copy_tree(&root, &copy);
            let r = Replica::open(&file_url(&copy)).unwrap();
            r.delete_files(&doomed[..cut]).await.unwrap();
            let out = dir.path().join("out.db");
            for f in r.list_all().await.unwrap() {
                restore_at(&r, &out, RestoreTarget::Txid(f.max_txid)).await;
                Workload::check_prefix(&out);
            }
        }
    });
}
