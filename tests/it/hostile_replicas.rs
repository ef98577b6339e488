//! Hostile or damaged replicas: LTX files forged with valid file checksums
//! (anyone who can write to the bucket can make them), odd names, and odd
//! directory entries. Each is refused with an error naming the problem (or
//! restored correctly), with bounded memory, disk and open files, and a
//! failed restore leaves the target untouched and no temporary file behind.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::hostile::*;
use crate::support::*;
use litevault::Replica;
use litevault::ltx::{Checksum, Txid};
use litevault::replica::ReplicaError;
use litevault::restore::dbpage;
use litevault::restore::follow::{FollowError, FollowOptions, FollowStart, Follower, PollOutcome};
use litevault::restore::{RestoreError, RestoreOptions, RestoreOutcome, RestoreTarget, restore};

/// A restore that cannot hang the test run (a FIFO opened for reading
/// blocks until a writer comes).
async fn try_restore(
    replica: &Replica,
    out: &Path,
    target: RestoreTarget,
) -> Result<RestoreOutcome, RestoreError> {
    let opts = RestoreOptions {
        target,
        ..RestoreOptions::default()
    };
    tokio::time::timeout(Duration::from_secs(120), restore(replica, out, &opts))
        .await
        .expect("the restore hung")
}

/// The restored TXID.
fn restored_txid(r: RestoreOutcome) -> Txid {
    match r {
        RestoreOutcome::Restored(r) => r.txid,
        other => panic!("expected a restore, got {other:?}"),
    }
}

/// `litevault restore URL -o OUT`, under the shell limits given
/// (`ulimit ...`).
fn cli_restore(limits: &str, url: &str, out: &Path) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("{limits}; exec \"$0\" \"$@\""))
        .arg(litevault_bin())
        .args(["restore", url, "-o"])
        .arg(out)
        .env("LITEVAULT_LOG", "warn")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn file_replica(dir: &Path) -> (String, Replica) {
    let url = file_url(&dir.join("replica"));
    let replica = Replica::open(&url).unwrap();
    (url, replica)
}

// ---------------------------------------------------------------------------
// 1. A header claiming a huge database.

/// TXID 1 is a real snapshot; TXID 2 claims `commit(n)` pages, `n` the
/// pages it really has, but writes only those that changed. Returns `n`.
async fn forge_huge_commit(dir: &Path, replica: &Replica, commit: impl Fn(u32) -> u32) -> u32 {
    let imgs = images(dir, 2);
    step(1, None, &imgs[0], 1000).write(replica).await;
    let mut f2 = step(2, Some(&imgs[0]), &imgs[1], 2000);
    f2.commit = commit(imgs[1].pages());
    f2.write(replica).await;
    imgs[1].pages()
}

/// A commit of 0x7fffffff or 0xffffffff pages is refused at the first page
/// no file writes, before anything is allocated or written for the pages it
/// claims: under a 4 GiB address-space limit and a 64 MiB file-size limit
/// (the old restore allocated a 16 or 32 GiB page table and truncated the
/// output toward 8 TiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_commit_is_refused_before_anything_is_allocated() {
    for commit in [0x7fff_ffffu32, 0xffff_ffff] {
        let dir = tempfile::tempdir().unwrap();
        let (url, replica) = file_replica(dir.path());
        let held = forge_huge_commit(dir.path(), &replica, |_| commit).await;
        let out = dir.path().join("out.db");
        let o = cli_restore("ulimit -v 4194304; ulimit -f 131072", &url, &out);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("says the database has {commit} pages")),
            "{err}"
        );
        assert!(
            err.contains(&format!("no file up to it writes page {}", held + 1)),
            "{err}"
        );
        assert!(
            err.contains("0000000000000002-0000000000000002.ltx"),
            "{err}"
        );
        assert_nothing_left(&out);
    }
}

/// The library reports the same thing as a typed error, for a claim just a
/// little larger than what the files hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_past_the_written_pages_is_a_missing_page() {
    let dir = tempfile::tempdir().unwrap();
    let (_, replica) = file_replica(dir.path());
    let n = forge_huge_commit(dir.path(), &replica, |n| n + 3).await;
    let out = dir.path().join("out.db");
    match try_restore(&replica, &out, RestoreTarget::Latest).await {
        Err(RestoreError::MissingPage {
            pgno, commit, txid, ..
        }) => assert_eq!((pgno, commit, txid), (n + 1, n + 3, Txid(2))),
        other => panic!("expected a missing page, got {other:?}"),
    }
    assert_nothing_left(&out);
    // The state before it is sound and restores.
    let r = try_restore(&replica, &out, RestoreTarget::Txid(Txid(1)))
        .await
        .unwrap();
    assert_eq!(restored_txid(r), Txid(1));
    assert_eq!(Workload::check_prefix(&out), 1);
}

// ---------------------------------------------------------------------------
// 2. TXID 0 in a file name.

/// A replica whose only file is named with TXID 0 (any content): a clear
/// error for every kind of target, no panic, nothing left behind; from the
/// command line too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_of_only_txid_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (url, replica) = file_replica(dir.path());
    let level0 = dir.path().join("replica/ltx/0");
    std::fs::create_dir_all(&level0).unwrap();
    std::fs::write(
        level0.join("0000000000000000-0000000000000000.ltx"),
        b"anything at all",
    )
    .unwrap();
    let out = dir.path().join("out.db");
    for target in [
        RestoreTarget::Latest,
        RestoreTarget::Txid(Txid(0)),
        RestoreTarget::Timestamp(at_ms(i64::from(i32::MAX) * 1000)),
    ] {
        let err = try_restore(&replica, &out, target).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, RestoreError::NoRestorePoint { .. }),
            "{target:?}: {msg}"
        );
        assert!(
            msg.contains("L0/0000000000000000-0000000000000000.ltx"),
            "{msg}"
        );
        assert!(msg.contains("TXID 0 does not exist"), "{msg}");
        assert_nothing_left(&out);
    }
    let o = cli_restore(":", &url, &out);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("0000000000000000-0000000000000000.ltx"),
        "{err}"
    );
    assert_nothing_left(&out);
}

/// Beside a sound chain, files named with TXID 0 (or a first TXID above
/// the last) are ignored: restore (at the latest state, a TXID or a time)
/// and follow work as if they were not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txid_zero_names_beside_a_chain_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (_, replica) = file_replica(dir.path());
    let imgs = images(dir.path(), 3);
    write_chain(&replica, &imgs, &[1000, 2000, 3000]).await;
    let level0 = dir.path().join("replica/ltx/0");
    for name in [
        "0000000000000000-0000000000000000.ltx",
        "0000000000000000-0000000000000002.ltx",
        "0000000000000003-0000000000000002.ltx",
    ] {
        std::fs::write(level0.join(name), b"junk").unwrap();
    }
    let out = dir.path().join("out.db");
    for (target, want) in [
        (RestoreTarget::Latest, 3),
        (RestoreTarget::Txid(Txid(2)), 2),
        (RestoreTarget::Timestamp(at_ms(2500)), 2),
    ] {
        let _ = std::fs::remove_file(&out);
        let r = try_restore(&replica, &out, target).await.unwrap();
        assert_eq!(restored_txid(r), Txid(want), "{target:?}");
        assert_eq!(Workload::check_prefix(&out), want as i64);
    }
    let follower = dir.path().join("follower.db");
    let mut f = Follower::open(replica.clone(), &follower, FollowOptions::default())
        .await
        .unwrap();
    assert_eq!(
        f.start(),
        &FollowStart::Restored {
            txid: Txid(3),
            files: 3
        }
    );
    assert_eq!(f.poll().await.unwrap(), PollOutcome::UpToDate);
    assert_eq!(temp_leftovers(&follower), Vec::<std::path::PathBuf>::new());
}

// ---------------------------------------------------------------------------
// 3. A long chain under a low open-file limit.

/// 1,030 level-0 files (what `replicate --levels none` leaves) restore with
/// at most 256 files open, and give exactly the database they describe.
#[test]
fn a_long_chain_restores_under_a_low_open_file_limit() {
    const N: i64 = 1030;
    let dir = tempfile::tempdir().unwrap();
    let (url, replica) = file_replica(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut prev: Option<Image> = None;
    let mut last = None;
    workload_images(dir.path(), N, |i, img| {
        rt.block_on(step(i as u64, prev.as_ref(), &img, 1000 + i).write(&replica));
        last = Some(img.clone());
        prev = Some(img);
    });
    assert_eq!(
        rt.block_on(replica.list_level(0)).unwrap().len(),
        N as usize
    );
    let out = dir.path().join("out.db");
    let o = cli_restore("ulimit -n 256", &url, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("from 1030 file(s)"), "{stdout}");
    assert_eq!(std::fs::read(&out).unwrap(), last.unwrap().0);
    assert_eq!(Workload::check_prefix(&out), N);
    assert_eq!(temp_leftovers(&out), Vec::<std::path::PathBuf>::new());
}

// ---------------------------------------------------------------------------
// 4. Follow applies only what a one-shot restore accepts.

/// A follower at TXID 5 of a forged replica; returns the images.
async fn follower_at_5(dir: &Path, replica: &Replica) -> (Vec<Image>, Follower) {
    let imgs = images(dir, 5);
    write_chain(replica, &imgs, &[1000, 2000, 3000, 4000, 5000]).await;
    let out = dir.join("follower.db");
    let f = Follower::open(replica.clone(), &out, FollowOptions::default())
        .await
        .unwrap();
    assert_eq!(f.position().txid, Txid(5));
    (imgs, f)
}

fn read_only(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// The follower is still the sound state after TXID 5.
fn assert_still_at_5(f: &Follower, before: Checksum) {
    assert_eq!(f.position().txid, Txid(5));
    let (_, table) = dbpage::read_checksum(&read_only(f.path())).unwrap();
    assert_eq!(table.value(), before, "the follower's pages changed");
    assert_eq!(Workload::check_prefix(f.path()), 5);
    assert_eq!(temp_leftovers(f.path()), Vec::<std::path::PathBuf>::new());
}

/// A page whose checksums are all consistent but which SQLite calls
/// malformed: the batch is rolled back, the follower stays at TXID 5 and
/// stops (as `run` shows) with an error naming the file; a one-shot restore
/// refuses the same replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_refuses_a_batch_that_fails_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let (_, replica) = file_replica(dir.path());
    let (imgs, mut f) = follower_at_5(dir.path(), &replica).await;
    let before = dbpage::read_checksum(&read_only(f.path()))
        .unwrap()
        .1
        .value();
    // Page 2 is the root of `items`: claim far more cells than it holds.
    let cur = &imgs[4];
    let mut bad = cur.page(2).to_vec();
    bad[3] = 0x7f;
    bad[4] = 0xff;
    let after = cur.with_page(2, &bad);
    Forged {
        level: 0,
        min: 6,
        max: 6,
        commit: cur.pages(),
        pages: vec![(2, &bad)],
        pre: cur.checksum(),
        post: after.checksum(),
        timestamp_ms: 6000,
    }
    .write(&replica)
    .await;
    let err = f.poll().await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FollowError::Integrity { .. }), "{msg}");
    assert!(
        msg.contains("L0/0000000000000006-0000000000000006.ltx"),
        "{msg}"
    );
    assert!(msg.contains("stays at TXID 0000000000000005"), "{msg}");
    assert!(!err.is_transient());
    assert_still_at_5(&f, before);
    let run = tokio::time::timeout(Duration::from_secs(60), f.run(std::future::pending()))
        .await
        .expect("the follower kept running");
    assert!(matches!(run, Err(FollowError::Integrity { .. })), "{run:?}");
    let out = dir.path().join("out.db");
    match try_restore(&replica, &out, RestoreTarget::Latest).await {
        Err(RestoreError::Integrity { .. }) => {}
        other => panic!("expected an integrity failure, got {other:?}"),
    }
    assert_nothing_left(&out);
}

/// A file whose header claims pages no file writes: refused by the
/// follower before anything is written, as by a one-shot restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_refuses_a_file_claiming_pages_no_file_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, replica) = file_replica(dir.path());
    let (imgs, mut f) = follower_at_5(dir.path(), &replica).await;
    let before = dbpage::read_checksum(&read_only(f.path()))
        .unwrap()
        .1
        .value();
    let cur = &imgs[4];
    let n = cur.pages();
    // Rewrites page 2 as it is and claims three more pages; the post-apply
    // checksum is what applying the written pages gives.
    Forged {
        level: 0,
        min: 6,
        max: 6,
        commit: n + 3,
        pages: vec![(2, cur.page(2))],
        pre: cur.checksum(),
        post: cur.checksum(),
        timestamp_ms: 6000,
    }
    .write(&replica)
    .await;
    match f.poll().await {
        Err(FollowError::Restore(RestoreError::MissingPage {
            pgno, commit, txid, ..
        })) => assert_eq!((pgno, commit, txid), (n + 1, n + 3, Txid(6))),
        other => panic!("expected a missing page, got {other:?}"),
    }
    assert_still_at_5(&f, before);
    let out = dir.path().join("out.db");
    match try_restore(&replica, &out, RestoreTarget::Latest).await {
        Err(RestoreError::MissingPage { pgno, .. }) => assert_eq!(pgno, n + 1),
        other => panic!("expected a missing page, got {other:?}"),
    }
    assert_nothing_left(&out);
}

/// A rebuild (the follower re-restores in one transaction) checks the same:
/// a replica reset to a forged history claiming a huge database is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_rebuild_refuses_a_huge_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (_, replica) = file_replica(dir.path());
    let (_, mut f) = follower_at_5(dir.path(), &replica).await;
    let before = dbpage::read_checksum(&read_only(f.path()))
        .unwrap()
        .1
        .value();
    // The replica is reset: a new, shorter history whose TXID 2 claims
    // 0x7fffffff pages.
    std::fs::remove_dir_all(dir.path().join("replica/ltx")).unwrap();
    let other = tempfile::tempdir().unwrap();
    forge_huge_commit(other.path(), &replica, |_| 0x7fff_ffff).await;
    match f.poll().await {
        Err(FollowError::Restore(RestoreError::MissingPage { commit, .. })) => {
            assert_eq!(commit, 0x7fff_ffff)
        }
        other => panic!("expected a missing page, got {other:?}"),
    }
    assert_still_at_5(&f, before);
}

// ---------------------------------------------------------------------------
// 5. Timestamps that go backwards.

/// Header timestamps stepping back (a clock step between files): `restore
/// --timestamp T` gives the newest state such that it and every state before
/// it were committed at or before T. The answer never includes a commit
/// stamped after T, never decreases as T grows, and is the same whichever
/// levels hold the files (a compacted file's own timestamp is not used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_that_go_backwards_resolve_by_one_monotonic_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (_, replica) = file_replica(dir.path());
    let imgs = images(dir.path(), 7);
    let stamps = [1000i64, 5000, 2000, 3000, 8000, 6000, 9000];
    write_chain(&replica, &imgs, &stamps).await;
    // A compaction of TXIDs 2..4 carrying a timestamp older than all.
    let pages: Vec<(u32, &[u8])> = (1..=imgs[3].pages())
        .filter(|p| *p > imgs[0].pages() || imgs[0].page(*p) != imgs[3].page(*p))
        .map(|p| (p, imgs[3].page(p)))
        .collect();
    Forged {
        level: 1,
        min: 2,
        max: 4,
        commit: imgs[3].pages(),
        pages,
        pre: imgs[0].checksum(),
        post: imgs[3].checksum(),
        timestamp_ms: 10,
    }
    .write(&replica)
    .await;
    // The rule, written out: the longest prefix in TXID order stamped at or
    // before T.
    let expected = |t: i64| -> Option<u64> {
        stamps
            .iter()
            .take_while(|s| **s <= t)
            .count()
            .checked_sub(1)
            .map(|i| i as u64 + 1)
    };
    let mut times: Vec<i64> = stamps.iter().flat_map(|s| [s - 1, *s, s + 1]).collect();
    times.extend([0, 10, 2500, 20_000]);
    times.sort_unstable();
    times.dedup();
    let out = dir.path().join("out.db");
    let mut prev = 0;
    for t in times {
        let _ = std::fs::remove_file(&out);
        let got = try_restore(&replica, &out, RestoreTarget::Timestamp(at_ms(t))).await;
        match expected(t) {
            None => {
                let err = got.unwrap_err();
                assert!(
                    matches!(err, RestoreError::NoRestorePoint { .. }),
                    "at {t}: {err}"
                );
                assert_nothing_left(&out);
            }
            Some(want) => {
                let txid = restored_txid(got.unwrap_or_else(|e| panic!("at {t}: {e}")));
                assert_eq!(txid, Txid(want), "at {t}");
                // No commit stamped after t is in the result.
                assert!(stamps[..want as usize].iter().all(|s| *s <= t), "at {t}");
                assert!(want >= prev, "at {t}: {want} after {prev}");
                assert_eq!(Workload::check_prefix(&out), want as i64);
                prev = want;
            }
        }
    }
    assert_eq!(prev, 7);
}

// ---------------------------------------------------------------------------
// 6. Entries of a file:// replica that are not regular files.

/// What to put where the newest LTX file would be.
enum Entry {
    Directory,
    Fifo,
    DanglingLink,
    LinkOutside,
    LinkInside,
}

/// A directory, a FIFO, a dangling link, a link out of the replica or a
/// link to a sound file inside it, named like the newest LTX file: each is
/// an error naming the path and what it is; nothing behind a link is read
/// or echoed; a follower stops on it rather than retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_regular_entries_named_like_ltx_files_are_errors() {
    const SECRET: &str = "TOP-SECRET-CONTENT";
    let dir = tempfile::tempdir().unwrap();
    let (url, replica) = file_replica(dir.path());
    let imgs = images(dir.path(), 3);
    write_chain(&replica, &imgs[..2], &[1000, 2000]).await;
    let outside = dir.path().join("outside.txt");
    std::fs::write(&outside, format!("{SECRET}\n")).unwrap();
    // A sound TXID 3, kept outside the level folder for the inside link.
    let sound = dir.path().join("replica/ltx/keep");
    std::fs::create_dir_all(&sound).unwrap();
    std::fs::write(
        sound.join("3.ltx"),
        step(3, Some(&imgs[1]), &imgs[2], 3000).encode(),
    )
    .unwrap();
    let entry = dir
        .path()
        .join("replica/ltx/0/0000000000000003-0000000000000003.ltx");
    let out = dir.path().join("out.db");
    for (case, kind) in [
        (Entry::Directory, "directory"),
        (Entry::Fifo, "FIFO"),
        (Entry::DanglingLink, "symbolic link"),
        (Entry::LinkOutside, "symbolic link"),
        (Entry::LinkInside, "symbolic link"),
    ] {
        match case {
            Entry::Directory => std::fs::create_dir(&entry).unwrap(),
            Entry::Fifo => {
                let c = std::ffi::CString::new(entry.as_os_str().as_encoded_bytes()).unwrap();
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
            }
            Entry::DanglingLink => {
                std::os::unix::fs::symlink(dir.path().join("nowhere"), &entry).unwrap()
            }
            Entry::LinkOutside => std::os::unix::fs::symlink(&outside, &entry).unwrap(),
            Entry::LinkInside => std::os::unix::fs::symlink(sound.join("3.ltx"), &entry).unwrap(),
        }
        let err = try_restore(&replica, &out, RestoreTarget::Latest)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                RestoreError::Replica(ReplicaError::NotAFile { ref path, .. }) if path == &entry
            ),
            "{kind}: {msg}"
        );
        assert!(msg.contains(&entry.display().to_string()), "{msg}");
        assert!(msg.contains(kind), "{msg}");
        assert!(!msg.contains(SECRET), "{msg}");
        assert_nothing_left(&out);
        // The command line says the same, and echoes nothing behind a link.
        let o = cli_restore(":", &url, &out);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(kind) && !err.contains(SECRET), "{err}");
        assert_nothing_left(&out);
        if entry.is_dir() && !entry.is_symlink() {
            std::fs::remove_dir(&entry).unwrap();
        } else {
            std::fs::remove_file(&entry).unwrap();
        }
    }
    // A follower at TXID 2 meets a FIFO where TXID 3 should be: it stops.
    let follower = dir.path().join("follower.db");
    let mut f = Follower::open(replica.clone(), &follower, FollowOptions::default())
        .await
        .unwrap();
    assert_eq!(f.position().txid, Txid(2));
    let c = std::ffi::CString::new(entry.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let err = tokio::time::timeout(Duration::from_secs(60), f.poll())
        .await
        .expect("the poll hung")
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("FIFO"), "{err}");
    assert_eq!(f.position().txid, Txid(2));
    assert_eq!(Workload::check_prefix(&follower), 2);
    // Sanity: with the FIFO gone and the sound file in place, all is well.
    std::fs::remove_file(&entry).unwrap();
    std::fs::rename(sound.join("3.ltx"), &entry).unwrap();
    match f.poll().await.unwrap() {
        PollOutcome::Applied { to, .. } => assert_eq!(to, Txid(3)),
        other => panic!("expected a batch, got {other:?}"),
    }
    let r = try_restore(&replica, &out, RestoreTarget::Latest)
        .await
        .unwrap();
    assert_eq!(restored_txid(r), Txid(3));
    assert_eq!(Workload::check_prefix(&out), 3);
}
