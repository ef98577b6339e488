//! Faults on the local disk: the volume of the database and of the local
//! store full (ENOSPC, on a real size-limited tmpfs), and local store files
//! truncated or overwritten between two runs. Each gives a clear error or a
//! resync, never a published bad state, and replication resumes by itself
//! once the disk is usable again.
//!
//! The full-volume tests mount a tmpfs, which needs root (CAP_SYS_ADMIN);
//! without it they fail saying so. A failing fsync goes through
//! `litevault::fsync_faults` instead (a real device whose fsync fails needs
//! root and kernel modules: see there).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::store::flaky_memory_replica;
use crate::support::*;
use litevault::restore::RestoreTarget;
use litevault::{ReplicateError, ReplicateOptions, Replicator};

/// A tmpfs of a fixed size, unmounted on drop.
struct SmallVolume {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallVolume {
    fn mount(mib: u64) -> SmallVolume {
        needs("root to mount a tmpfs");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vol");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs to fill a real volume and needs root (CAP_SYS_ADMIN): run it as root, as scripts/test.sh does in CI ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        SmallVolume { path, _dir: dir }
    }

    /// Fills every free byte with a filler file; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5a_u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                    break;
                }
            }
        }
        // Partial pages: fill them byte by byte.
        while f.write(&[0x5a]).is_ok_and(|n| n == 1) {}
        filler
    }
}

impl Drop for SmallVolume {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn opts() -> ReplicateOptions {
    ReplicateOptions {
        lease: None,
        ..ReplicateOptions::default()
    }
}

/// Commits transactions `from..` until SQLite reports the disk full;
/// returns the last committed one.
fn write_until_full(c: &mut rusqlite::Connection, from: i64) -> i64 {
    let mut i = from;
    loop {
        match Workload::apply(c, i) {
            Ok(()) => i += 1,
            Err(e) => {
                assert!(
                    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
                    "the app's commit {i} failed with {e}, not SQLITE_FULL"
                );
                return i - 1;
            }
        }
        assert!(i < from + 1_000_000, "the volume never filled");
    }
}

#[test]
#[ignore = "needs root to mount a tmpfs: run scripts/test.sh"]
fn a_full_volume_is_a_clear_error_and_shipping_resumes_when_space_returns() {
    let vol = SmallVolume::mount(16);
    block_on(async {
        let rdir = tempfile::tempdir().unwrap();
        let replica = litevault::Replica::open(&file_url(rdir.path())).unwrap();
        let db = vol.path.join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        for i in 1..=200 {
            Workload::apply(&mut c, i).unwrap();
        }
        let rep = Replicator::open(&db, replica.clone(), opts())
            .await
            .unwrap();
        rep.sync_all().await.unwrap();
        // The app commits, and then the disk is full: the app's own commits
        // fail, and so does the replicator's local store.
        for i in 201..=400 {
            Workload::apply(&mut c, i).unwrap();
        }
        let filler = vol.fill();
        let last = write_until_full(&mut c, 401);
        let mut errors = 0;
        for _ in 0..3 {
            match rep.sync_all().await {
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    let msg = e.to_string();
                    assert!(
                        matches!(e, ReplicateError::Local { .. }),
                        "a full disk should be a local error, got {e:?}"
                    );
                    assert!(
                        msg.contains("No space left on device") && msg.contains("check the disk"),
                        "the error names the cause and the fix: {msg}"
                    );
                }
            }
        }
        assert!(
            errors > 0,
            "the full disk was never hit: the test proves nothing"
        );
        // Whatever was published restores to a committed state.
        let out = rdir.path().join("mid.db");
        restore_at(&replica, &out, RestoreTarget::Latest).await;
        let mid = Workload::check_prefix(&out);
        assert!(mid >= 200 && mid <= last, "published prefix {mid}");
        // Space returns: the same replicator ships the rest by itself.
        std::fs::remove_file(&filler).unwrap();
        rep.sync_all().await.unwrap();
        for i in last + 1..=last + 50 {
            Workload::apply(&mut c, i).unwrap();
        }
        rep.sync_all().await.unwrap();
        restore_at(&replica, &out, RestoreTarget::Latest).await;
        assert_eq!(Workload::check_prefix(&out), last + 50);
        eprintln!(
            "full disk: {errors} of 3 syncs failed with ENOSPC; published prefix {mid} of {last}"
        );
    });
}

/// The sidecar keeps running through a full disk and catches up once space
/// returns, without a restart.
#[test]
#[ignore = "needs root to mount a tmpfs: run scripts/test.sh"]
fn the_sidecar_survives_a_full_disk_and_catches_up() {
    let vol = SmallVolume::mount(16);
    let rdir = tempfile::tempdir().unwrap();
    let url = file_url(rdir.path());
    let db = vol.path.join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    let mut child = litevault(&[])
        .args(["replicate", "--no-lease"])
        .arg(&db)
        .arg(&url)
        .env("LITEVAULT_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = Output::capture(child.stderr.take().unwrap());
    let filler = {
        for i in 1..=300 {
            Workload::apply(&mut c, i).unwrap();
        }
        vol.fill()
    };
    let last = write_until_full(&mut c, 301);
    // The sidecar ran into the full disk (it says so), and is still there.
    log.wait_for_line(WAIT, "No space left on device");
    assert!(
        child.try_wait().unwrap().is_none(),
        "replicate exited on a full disk:\n{}",
        log.text()
    );
    std::fs::remove_file(&filler).unwrap();
    for i in last + 1..=last + 20 {
        Workload::apply(&mut c, i).unwrap();
    }
    let out = rdir.path().join("out.db");
    wait_until(
        WAIT,
        format_args!("the replica to catch up with write {}", last + 20),
        || {
            let _ = std::fs::remove_file(&out);
            let ok = litevault(&[])
                .args(["restore", &url, "-o"])
                .arg(&out)
                .env("LITEVAULT_LOG", "error")
                .status()
                .unwrap()
                .success();
            let got = if ok { Workload::check_prefix(&out) } else { 0 };
            if got == last + 20 {
                Ok(())
            } else {
                Err(format!("it restores to write {got}"))
            }
        },
    );
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "replicate stopped cleanly: {status}\n{}",
        log.text()
    );
}

/// Every file of the local store, sorted.
fn local_files(db: &Path) -> Vec<PathBuf> {
    let name = db.file_name().unwrap().to_string_lossy().to_string();
    let root = db.with_file_name(format!(".{name}-litevault"));
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Local files truncated or overwritten while the replicator was down (a
/// torn write, a bad disk): the next run resyncs or refuses them, never
/// ships them, and the replica ends equal to the database.
#[test]
fn damaged_local_store_files_are_never_shipped() {
    for (case, damage) in [
        ("truncated", 0u8),
        ("overwritten", 1),
        ("emptied", 2),
        ("position junk", 3),
        // One file in the middle of the chain, the rest intact: the saved
        // position is still proven, and only the catch-up meets the damage.
        ("one file overwritten", 4),
        // The only file the replica lacks, damaged: it would go up on its
        // own, unmerged, so only the check before upload can stop it.
        ("the one pending file overwritten", 5),
    ] {
        block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("app.db");
            let mut c = create_db(&db, 4096);
            Workload::init(&c);
            // Uploads fail: the files stay in the local store only.
            let (store, replica) = flaky_memory_replica(1);
            for i in 1..=20 {
                Workload::apply(&mut c, i).unwrap();
            }
            let rep = Replicator::open(&db, replica.clone(), opts())
                .await
                .unwrap();
            rep.sync_all().await.unwrap();
            store.fail_puts.store(u32::MAX, Ordering::SeqCst);
            let pending = if damage == 5 { 21..=21 } else { 21..=60 };
            for i in pending {
                Workload::apply(&mut c, i).unwrap();
                let _ = rep.sync().await;
            }
            if damage >= 4 {
                // A clean stop saves the page table at the position, so the
                // next start proves it without reading the files.
                let _ = rep.run(async {}).await;
            } else {
                drop(rep);
            }
            let mut damaged = 0;
            let ltx_files: Vec<PathBuf> = local_files(&db)
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "ltx"))
                .collect();
            // Case 5: the newest file, the only one not yet on the replica
            // (older ones stay in the store until compacted).
            let middle = if damage == 5 {
                ltx_files.last().cloned()
            } else {
                ltx_files.get(ltx_files.len() / 2).cloned()
            };
            for f in local_files(&db) {
                let is_position = f.extension().is_none_or(|e| e != "ltx");
                if (damage == 3) != is_position || (damage >= 4 && Some(&f) != middle.as_ref()) {
                    continue;
                }
                let len = std::fs::metadata(&f).unwrap().len();
                let h = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                match damage {
                    0 => h.set_len(len / 2).unwrap(),
                    2 => h.set_len(0).unwrap(),
                    _ => {
                        use std::os::unix::fs::FileExt;
                        h.write_all_at(&[0xa5; 40], len / 3).unwrap();
                    }
                }
                damaged += 1;
            }
            assert!(damaged > 0, "{case}: no local file to damage");
            store.fail_puts.store(0, Ordering::SeqCst);
            // Workload transactions are numbered without gaps.
            let last = if damage == 5 { 41 } else { 80 };
            let commit_more = |c: &mut rusqlite::Connection| {
                for i in (last - 19)..=last {
                    Workload::apply(c, i).unwrap();
                }
            };
            if damage != 5 {
                commit_more(&mut c);
            }
            let rep = Replicator::open(&db, replica.clone(), opts()).await;
            let rep = match rep {
                Ok(r) => r,
                Err(e) => panic!("{case}: reopening over a damaged local store: {e}"),
            };
            if damage == 5 {
                // Nothing new: the push has exactly the damaged file to send.
                rep.sync_all()
                    .await
                    .unwrap_or_else(|e| panic!("{case}: {e}"));
                let out = dir.path().join("pending.db");
                restore_at(&replica, &out, RestoreTarget::Latest).await;
                assert_eq!(Workload::check_prefix(&out), 21, "{case}");
                commit_more(&mut c);
            }
            rep.sync_all()
                .await
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let out = dir.path().join("out.db");
            restore_at(&replica, &out, RestoreTarget::Latest).await;
            assert_eq!(Workload::check_prefix(&out), last, "{case}");
            // Every TXID published in between restores to a committed
            // prefix too.
            let mut ends: Vec<_> = replica
                .list_all()
                .await
                .unwrap()
                .iter()
                .map(|f| f.max_txid)
                .collect();
            ends.sort();
            ends.dedup();
            for t in ends {
                restore_at(&replica, &out, RestoreTarget::Txid(t)).await;
                Workload::check_prefix(&out);
            }
        });
    }
}

/// A local copy of a compaction input damaged on disk: compaction notices
/// (the merge verifies every input) and merges the replica's own files.
#[test]
fn a_damaged_local_copy_of_a_compaction_input_is_read_from_the_replica() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        let replica = litevault::Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(1_700_000_000_000));
        let clock = {
            let now = now.clone();
            litevault::replicate::Clock::from_fn(move || now.load(Ordering::SeqCst))
        };
        let mut o = opts();
        o.clock = clock;
        o.retention.levels = vec![Duration::from_secs(30)];
        o.retention.snapshot_interval = None;
        let rep = Replicator::open(&db, replica.clone(), o).await.unwrap();
        for i in 1..=30 {
            Workload::apply(&mut c, i).unwrap();
            rep.sync_all().await.unwrap();
            now.fetch_add(1_000, Ordering::SeqCst);
        }
        let mut damaged = 0;
        for f in local_files(&db) {
            if f.parent().and_then(|p| p.file_name()) == Some("0".as_ref()) {
                use std::os::unix::fs::FileExt;
                let len = std::fs::metadata(&f).unwrap().len();
                let h = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
                h.write_all_at(&[0xa5; 40], len / 2).unwrap();
                damaged += 1;
            }
        }
        assert!(damaged > 1, "the local store keeps the level-0 inputs");
        now.fetch_add(3_600_000, Ordering::SeqCst);
        rep.maintain().await.unwrap();
        let files = replica.list_all().await.unwrap();
        let l1: Vec<_> = files.iter().filter(|f| f.level == 1).collect();
        assert_eq!(l1.len(), 1, "one level-1 file: {files:?}");
        assert_eq!(l1[0].max_txid, rep.txid());
        // Restore through the level-1 file only.
        let out = dir.path().join("out.db");
        for f in files.iter().filter(|f| f.level == 0) {
            replica.delete_files(std::slice::from_ref(f)).await.unwrap();
        }
        restore_at(&replica, &out, RestoreTarget::Latest).await;
        assert_eq!(Workload::check_prefix(&out), 30);
    });
}

/// An upload to a local folder killed mid-write leaves its staging file
/// (`NAME.ltx#N`) beside the final name; the next replicator to take the
/// lease removes such files and nothing else.
#[test]
fn staging_files_of_killed_uploads_are_swept_at_start() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        Workload::apply(&mut c, 1).unwrap();
        let root = dir.path().join("replica");
        let replica = litevault::Replica::open(&file_url(&root)).unwrap();
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        let level0 = root.join("ltx/0");
        let staged = level0.join("0000000000000002-0000000000000002.ltx#1");
        std::fs::write(&staged, b"half an upload").unwrap();
        let other = level0.join("notes#1");
        std::fs::write(&other, b"not ours").unwrap();
        let rep = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        assert!(!staged.exists(), "the staging file was removed");
        assert!(
            other.exists(),
            "a file not shaped like a staged LTX file stays"
        );
        Workload::apply(&mut c, 2).unwrap();
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        let out = dir.path().join("out.db");
        restore_at(&replica, &out, RestoreTarget::Latest).await;
        assert_eq!(Workload::check_prefix(&out), 2);
    });
}

/// The state of the database file alone, without its WAL: what the
/// checkpoints have moved into it so far.
fn checkpointed_prefix(db: &Path) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("main-only.db");
    std::fs::copy(db, &copy).unwrap();
    Workload::check_prefix(&copy)
}

/// fsync of the local store fails (a failing disk): every sync says so,
/// naming the file or folder and what to check; no checkpoint moves the
/// frames out of the WAL while their local files are not durable; nothing
/// wrong is published. Once fsync works again the same replicator catches
/// up, checkpoints, and the replica restores to the database.
#[test]
fn a_failing_fsync_blocks_the_checkpoint_and_shipping_resumes_when_it_works() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let rdir = tempfile::tempdir().unwrap();
        let replica = litevault::Replica::open(&file_url(rdir.path())).unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        // Only the replicator checkpoints here.
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        Workload::init(&c);
        let mut o = opts();
        o.checkpoint.min_pages = 8;
        o.checkpoint.interval = Duration::ZERO;
        let rep = Replicator::open(&db, replica.clone(), o).await.unwrap();
        for i in 1..=50 {
            Workload::apply(&mut c, i).unwrap();
        }
        rep.sync_all().await.unwrap();
        rep.sync_all().await.unwrap();
        let checkpoints = |r: &Replicator| {
            let s = r.status().checkpoints;
            s.passive + s.truncate
        };
        let before = checkpoints(&rep);
        assert!(before > 0, "the thresholds call for checkpoints");
        let main_before = checkpointed_prefix(&db);

        // The disk fails every fsync under the database's folder; the app
        // keeps committing.
        litevault::fsync_faults::arm(dir.path(), u64::MAX);
        let state = dir.path().join(".app.db-litevault");
        let mut errors = 0;
        let mut last = 50;
        for round in 0..30 {
            for _ in 0..5 {
                last += 1;
                Workload::apply(&mut c, last).unwrap();
            }
            match rep.sync_all().await {
                Ok(_) => {}
                Err(e) => {
                    errors += 1;
                    let msg = e.to_string();
                    let ReplicateError::Local { path, .. } = &e else {
                        panic!("round {round}: a failed fsync should be a local error, got {e:?}");
                    };
                    assert!(
                        path.starts_with(&state),
                        "the error names the local store's file or folder: {msg}"
                    );
                    assert!(
                        msg.contains("Input/output error")
                            && msg.contains("fsync failed")
                            && msg.contains("check the disk"),
                        "the error names the cause and what to check: {msg}"
                    );
                }
            }
            assert_eq!(
                checkpoints(&rep),
                before,
                "round {round}: a checkpoint ran while the local store could not be made durable"
            );
        }
        assert!(
            errors > 0 && litevault::fsync_faults::injected(dir.path()) > 0,
            "no fsync failed: the test proves nothing"
        );
        assert_eq!(
            checkpointed_prefix(&db),
            main_before,
            "the database file moved on: frames left the WAL while their local files were not durable"
        );
        // Whatever was published restores to a committed state.
        let out = rdir.path().join("out.db");
        restore_at(&replica, &out, RestoreTarget::Latest).await;
        let mid = Workload::check_prefix(&out);
        assert!(mid >= 50 && mid <= last, "published prefix {mid}");

        // fsync works again: the same replicator catches up by itself.
        let injected = litevault::fsync_faults::disarm(dir.path());
        for _ in 0..20 {
            last += 1;
            Workload::apply(&mut c, last).unwrap();
        }
        // The files whose fsync failed may first go through the background
        // fsync's rounds: a few syncs, as the replicator's loop runs them.
        let r = &rep;
        wait_until_async(WAIT, "a checkpoint once fsync works again", || async move {
            r.sync_all().await.unwrap();
            checkpoints(r) != before
        })
        .await;
        assert!(
            checkpointed_prefix(&db) > main_before,
            "the checkpoint moved the frames into the database file"
        );
        restore_at(&replica, &out, RestoreTarget::Latest).await;
        assert_eq!(Workload::check_prefix(&out), last);
        eprintln!(
            "failing fsync: {errors} of 30 syncs failed ({injected} fsyncs failed); published prefix {mid} of {last} meanwhile"
        );
    });
}

/// Saving the page table fails right after a file went into the local
/// store (its fsync fails): the file is dropped, the step is an error, and
/// the next step makes the same TXID again, so the replica's chain has no
/// gap and needs no snapshot.
#[test]
fn a_failed_state_save_leaves_no_gap_in_the_numbering() {
    block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        for i in 1..=5 {
            Workload::apply(&mut c, i).unwrap();
        }
        let replica = litevault::Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
        let rep = Replicator::open(&db, replica.clone(), opts())
            .await
            .unwrap();
        let state = dir.path().join(".app.db-litevault");
        // The first file saves the page table, fsynced: that fsync fails.
        litevault::fsync_faults::arm(&state, 1);
        let first = rep.sync_all().await;
        let injected = litevault::fsync_faults::disarm(&state);
        assert_eq!(
            injected, 1,
            "the page table's fsync was the one that failed"
        );
        let err = first.expect_err("the failed save is an error").to_string();
        assert!(
            err.contains("saving the replicator's local state") && err.contains("check the disk"),
            "{err}"
        );
        for i in 6..=10 {
            Workload::apply(&mut c, i).unwrap();
        }
        rep.sync_all().await.unwrap();
        rep.run(async {}).await.unwrap();
        let mut files = replica.list_all().await.unwrap();
        assert!(files.iter().all(|f| f.level < 9), "no snapshot: {files:?}");
        files.retain(|f| f.level == 0);
        files.sort_by_key(|f| f.min_txid);
        assert_eq!(files[0].min_txid.0, 1, "numbering starts at 1: {files:?}");
        for w in files.windows(2) {
            assert_eq!(w[1].min_txid.0, w[0].max_txid.0 + 1, "no gap: {files:?}");
        }
        let out = dir.path().join("out.db");
        restore_at(&replica, &out, RestoreTarget::Latest).await;
        assert_eq!(Workload::check_prefix(&out), 10);
    });
}
