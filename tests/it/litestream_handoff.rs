//! Switching back: `litestream replicate` (0.5.17) continues a replica that
//! litevault wrote with its default settings, after compaction, a snapshot
//! and level-0 retention, and both tools then restore every commit, the
//! ones made under litevault and the ones made under Litestream.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::litestream_interop::{
    litestream, litestream_restore, litestream_s3_url, maintenance_on_a_test_clock, replica_head,
    wait_for_write,
};
use crate::support::*;
use litevault::content::content_digest;
use litevault::ltx::{self, Txid};
use litevault::restore::{RestoreOptions, RestoreOutcome, RestoreTarget, restore};
use litevault::{Replica, ReplicateOptions, Replicator};

/// How litevault's last upload before the stop looks.
#[derive(Clone, Copy, PartialEq)]
enum Tail {
    /// Several TXIDs merged into one file (a catch-up), which Litestream
    /// cannot continue from: the clean stop adds the hand-off file.
    Merged,
    /// One TXID read from the WAL; then the app truncates the WAL before
    /// Litestream starts.
    FramesThenTruncate,
}

/// litevault replicates 30 writes with compaction, snapshots and retention
/// on a clock that moves 40 s per write, stops cleanly; `litestream
/// replicate` takes over while writes 31..=40 are made; then the latest
/// state and the hand-over point restore the same with both tools.
fn litestream_continues(
    dir: &Path,
    url: &str,
    env: &[(&'static str, String)],
    replica: Replica,
    tail: Tail,
) {
    let db = dir.join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Two hours ago, so that Litestream's own schedule sees past files.
    let (now, opts) = maintenance_on_a_test_clock(
        chrono::Utc::now().timestamp_millis() - 2 * 3600 * 1000,
        Duration::from_secs(60),
    );
    let handed = rt.block_on(async {
        let rep = Replicator::open(&db, replica.clone(), opts).await.unwrap();
        for k in 1..=30 {
            Workload::apply(&mut c, k).unwrap();
            if tail == Tail::Merged && k > 27 {
                // Into the local store only: the last sync sends the three
                // files as one.
                rep.take_committed().await.unwrap();
            } else {
                rep.sync_all().await.unwrap();
            }
            now.fetch_add(40_000, Ordering::SeqCst);
            rep.maintain().await.unwrap();
        }
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        replica_head(&replica).await.unwrap()
    });
    let at_handover = content_digest(&db).unwrap().sha256;
    let files = rt.block_on(replica.list_all()).unwrap();
    for level in [1, 9] {
        assert!(
            files.iter().any(|f| f.level == level),
            "level {level} exists: {files:?}"
        );
    }
    let l0: Vec<_> = files.iter().filter(|f| f.level == 0).collect();
    assert!(l0.len() < 30, "retention trimmed level 0: {l0:?}");
    // The replica ends on a one-TXID level-0 file that names a WAL range.
    let last = l0.iter().max_by_key(|f| f.max_txid).unwrap();
    assert_eq!((last.min_txid, last.max_txid), (handed, handed), "{l0:?}");
    let h = ltx::Header::decode(&rt.block_on(replica.read_range(last, 0..100)).unwrap()).unwrap();
    assert_ne!(h.wal_offset, 0, "{h:?}");
    // Level 1 reaches the hand-over point, which so outlives Litestream's
    // level-0 retention.
    assert!(
        files.iter().any(|f| f.level == 1 && f.max_txid == handed),
        "a level-1 file ends at {handed}: {files:?}"
    );
    if tail == Tail::Merged {
        assert!(
            l0.iter()
                .any(|f| f.min_txid < f.max_txid && f.max_txid.0 == handed.0 - 1),
            "the catch-up was merged, and the hand-off file follows it: {l0:?}"
        );
    } else {
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    }

    // Litestream compacts into level 1 every second and deletes level-0
    // files a second after that (its defaults: 30 s and 5 min), so that the
    // test sees what a user sees minutes after the switch.
    let config = dir.join("litestream.yml");
    std::fs::write(
        &config,
        format!(
            "levels:\n  - interval: 1s\nl0-retention: 1s\nl0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    replica:\n      url: {url}\n",
            db.display()
        ),
    )
    .unwrap();
    // The app goes on writing between the two tools: Litestream's first
    // sync ships these, and its first compaction would merge them with the
    // hand-over TXID unless litevault's level 1 already ends there.
    for k in 31..=35 {
        Workload::apply(&mut c, k).unwrap();
    }
    let mut ls = litestream(env)
        .args(["replicate", "-config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Output::capture(ls.stderr.take().unwrap());
    wait_until(WAIT, "litestream to ship past the hand-over", || {
        rt.block_on(replica_head(&replica))
            .filter(|t| t.0 > handed.0)
    });
    for k in 36..=40 {
        Workload::apply(&mut c, k).unwrap();
    }
    wait_for_write(&rt, &replica, dir, 40);
    let next = Txid(handed.0 + 1);
    wait_until(
        WAIT,
        "litestream to compact past the hand-over and drop its level-0 file",
        || {
            let files = rt.block_on(replica.list_all()).ok()?;
            let compacted = files.iter().any(|f| f.level == 1 && f.min_txid == next);
            let dropped = !files.iter().any(|f| f.level == 0 && f.max_txid == handed);
            (compacted && dropped).then_some(())
        },
    );
    signal(&ls, "INT");
    assert!(ls.wait().unwrap().success());
    let text = log.text();
    for bad in ["sync error", "cannot verify", "compaction failed"] {
        assert!(!text.contains(bad), "litestream logged {bad:?}:\n{text}");
    }
    // Litestream went on at the next TXID (its first level-1 file starts
    // there, checked above), one TXID per level-0 file.
    let files = rt.block_on(replica.list_all()).unwrap();
    for f in files.iter().filter(|f| f.level == 0 && f.min_txid > handed) {
        assert_eq!(f.min_txid, f.max_txid, "{f:?}");
    }

    // The latest state: both tools restore the live database, with the
    // tables Litestream adds to it.
    let live = content_digest(&db).unwrap().sha256;
    let theirs = dir.join("theirs.db");
    let o = litestream_restore(env, url, &theirs, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(content_digest(&theirs).unwrap().sha256, live);
    let ours = dir.join("ours.db");
    let r = rt
        .block_on(restore(&replica, &ours, &RestoreOptions::default()))
        .unwrap();
    assert!(matches!(r, RestoreOutcome::Restored(_)));
    assert_eq!(content_digest(&ours).unwrap().sha256, live);
    assert_eq!(Workload::check_prefix(&ours), 40);

    // The hand-over point: litevault's last state, by both.
    let o = litestream_restore(env, url, &theirs, Some(&handed.to_string()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(content_digest(&theirs).unwrap().sha256, at_handover);
    let _ = std::fs::remove_file(&ours);
    let opts = RestoreOptions {
        target: RestoreTarget::Txid(handed),
        ..Default::default()
    };
    rt.block_on(restore(&replica, &ours, &opts)).unwrap();
    assert_eq!(content_digest(&ours).unwrap().sha256, at_handover);
    assert_eq!(Workload::check_prefix(&ours), 30);
}

#[test]
#[ignore = "needs litestream 0.5.17: run scripts/test.sh"]
fn litestream_continues_a_litevault_file_replica_after_a_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let replica = Replica::open(&url).unwrap();
    litestream_continues(dir.path(), &url, &[], replica, Tail::Merged);
}

#[test]
#[ignore = "needs litestream 0.5.17: run scripts/test.sh"]
fn litestream_continues_a_litevault_file_replica_after_a_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let replica = Replica::open(&url).unwrap();
    litestream_continues(dir.path(), &url, &[], replica, Tail::FramesThenTruncate);
}

#[test]
#[ignore = "needs litestream 0.5.17 and the moto S3 server: run scripts/test.sh"]
fn litestream_continues_a_litevault_s3_replica() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("handoff");
    let dir = tempfile::tempdir().unwrap();
    let url = litestream_s3_url(&s3, &bucket, "db/app");
    let replica = s3.replica(&bucket, "db/app");
    litestream_continues(dir.path(), &url, &s3.env(), replica, Tail::Merged);
}

/// The hand-off file is an ordinary step of litevault's own chain: a restart
/// continues after it, restores on both sides of it are verified by the
/// checksums, `verify` matches the live database past it, and a follower
/// applies it.
#[tokio::test]
async fn the_hand_off_file_is_a_verified_step_of_the_chain() {
    use litevault::restore::follow::{FollowOptions, Follower, PollOutcome};
    use litevault::verify::{VerifyOptions, verify};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    for k in 1..=5 {
        Workload::apply(&mut c, k).unwrap();
    }
    let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
        .await
        .unwrap();
    // The first file compares pages (no WAL range): the stop hands off.
    let first = rep.sync_all().await.unwrap();
    let follower_db = dir.path().join("follower.db");
    let follow = FollowOptions {
        interval: Duration::from_millis(20),
        ..FollowOptions::default()
    };
    let mut follower = Follower::open(replica.clone(), &follower_db, follow)
        .await
        .unwrap();
    rep.run(async {}).await.unwrap();
    let handed = replica_head(&replica).await.unwrap();
    assert_eq!(
        handed,
        Txid(first.0 + 1),
        "the stop added the hand-off file"
    );
    let l0 = replica.list_level(0).await.unwrap();
    let f = l0.iter().find(|f| f.max_txid == handed).unwrap();
    let body = replica.read_file(f).await.unwrap();
    let mut dec = ltx::Decoder::new(&body[..]).unwrap();
    let mut page = Vec::new();
    assert!(dec.next_page(&mut page).unwrap().is_none(), "no pages");
    dec.finish().unwrap();

    // A restart continues after it, from the WAL.
    let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
        .await
        .unwrap();
    assert_eq!(rep.local_txid(), handed);
    for k in 6..=10 {
        Workload::apply(&mut c, k).unwrap();
    }
    let head = rep.sync_all().await.unwrap();
    assert_eq!(head, Txid(handed.0 + 1));
    rep.run(async {}).await.unwrap();
    assert_eq!(
        replica_head(&replica).await.unwrap(),
        head,
        "a last file read from the WAL needs no hand-off"
    );

    for (target, writes) in [
        (RestoreTarget::Txid(first), 5),
        (RestoreTarget::Txid(handed), 5),
        (RestoreTarget::Latest, 10),
    ] {
        let out = dir.path().join("restored.db");
        let _ = std::fs::remove_file(&out);
        let opts = RestoreOptions {
            target,
            ..Default::default()
        };
        let RestoreOutcome::Restored(report) = restore(&replica, &out, &opts).await.unwrap() else {
            panic!("{target:?}: nothing restored");
        };
        assert!(report.checksum_verified, "{target:?}");
        assert_eq!(Workload::check_prefix(&out), writes, "{target:?}");
    }
    let report = verify(&db, &replica, &VerifyOptions::default())
        .await
        .unwrap();
    assert_eq!(report.txid, head);
    let mut at = Txid(0);
    for _ in 0..50 {
        if let PollOutcome::Applied { to, verified, .. } = follower.poll().await.unwrap() {
            assert!(verified);
            at = to;
        }
        if at == head {
            break;
        }
    }
    assert_eq!(at, head);
    assert_eq!(Workload::check_prefix(&follower_db), 10);
}
