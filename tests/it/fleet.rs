//! Many databases in one process: the kernel's change notifications wake a
//! replicator (and polling takes over without them), and a watched
//! directory picks up databases created while running and lets go of the
//! removed ones.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use litevault::restore::RestoreTarget;
use litevault::{Replica, ReplicateOptions, Replicator};

use crate::support::{block_on, create_db, file_url, free_port, http_request, restore_at, signal};

const WAIT: Duration = Duration::from_secs(30);

fn rows(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

/// Waits until `f` holds, or fails naming `what`.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A commit by another connection reaches the replica with the poll set to
/// an hour: only the kernel's notification for the WAL can have woken the
/// replicator. With notifications off, the poll finds it.
#[test]
fn a_commit_wakes_the_replicator_through_the_kernel_and_polling_takes_over_without_it() {
    for notifications in [true, false] {
        block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let db = dir.path().join("app.db");
            let c = create_db(&db, 4096);
            c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
                .unwrap();
            let replica = Replica::open(&file_url(&dir.path().join("replica"))).unwrap();
            let opts = ReplicateOptions {
                poll_interval: if notifications {
                    Duration::from_secs(3600)
                } else {
                    Duration::from_millis(50)
                },
                change_notifications: notifications,
                ..ReplicateOptions::default()
            };
            let rep = Replicator::open(&db, replica.clone(), opts).await.unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(rep.clone().run(async {
                let _ = rx.await;
            }));
            for i in 1..=3 {
                let before = rep.txid();
                c.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])
                    .unwrap();
                let until = Instant::now() + WAIT;
                while rep.txid() <= before {
                    assert!(
                        Instant::now() < until,
                        "commit {i} never shipped (notifications: {notifications})"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // Sparse commits, a moment apart.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let out = dir.path().join("out.db");
            restore_at(&replica, &out, RestoreTarget::Latest).await;
            assert_eq!(rows(&out), 3, "the replica holds every commit");
            tx.send(()).unwrap();
            task.await.unwrap().unwrap();
        });
    }
}

fn write_rows(c: &rusqlite::Connection, n: usize) {
    for i in 0..n {
        c.execute("INSERT INTO t(v) VALUES (?1)", [format!("row {i}")])
            .unwrap();
    }
}

fn new_db(path: &Path, n: usize) -> rusqlite::Connection {
    let c = create_db(path, 4096);
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
    write_rows(&c, n);
    c
}

fn has_ltx(replica: &Path) -> bool {
    std::fs::read_dir(replica.join("ltx/0")).is_ok_and(|mut d| d.next().is_some())
}

fn status_dbs(port: u16) -> Vec<String> {
    let Ok((code, body)) = http_request(port, "GET", "/v1/status", None) else {
        return Vec::new(); // not listening yet
    };
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v.as_array()
        .expect("/v1/status is a list of databases")
        .iter()
        .filter_map(|d| d["db"].as_str().map(str::to_string))
        .collect()
}

/// `watch: true`: a database created while `replicate` runs is replicated
/// (and served over HTTP), an empty file is waited for until it becomes a
/// database, and a removed database is let go of, its replica kept.
#[test]
fn a_watched_directory_takes_in_new_databases_and_lets_go_of_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let dbs = dir.path().join("dbs");
    std::fs::create_dir(&dbs).unwrap();
    let rep = dir.path().join("replicas");
    let a = new_db(&dbs.join("a.db"), 3);
    let port = free_port();
    let cfg = dir.path().join("litevault.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{port}\nlease:\n  ttl: 3s\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    watch: true\n    replica:\n      url: {}\n",
            dbs.display(),
            file_url(&rep)
        ),
    )
    .unwrap();
    let log = dir.path().join("replicate.log");
    let mut child = crate::support::litevault(&[])
        .args(["replicate", "--config"])
        .arg(&cfg)
        .env("LITEVAULT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("a.db's first file on the replica", || {
        has_ltx(&rep.join("a.db"))
    });

    // A database created while running.
    let b = new_db(&dbs.join("b.db"), 5);
    wait_for("b.db's first file on the replica", || {
        has_ltx(&rep.join("b.db"))
    });
    write_rows(&b, 4);
    // An app's new database starts as an empty file.
    let pending = dbs.join("c.db");
    std::fs::write(&pending, b"").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !rep.join("c.db").exists(),
        "an empty file is not a database yet: nothing to replicate"
    );
    let _c = new_db(&pending, 2);
    wait_for("c.db, once a database, on the replica", || {
        has_ltx(&rep.join("c.db"))
    });
    wait_for("b.db and c.db served over HTTP", || {
        let served = status_dbs(port);
        ["a.db", "b.db", "c.db"]
            .iter()
            .all(|n| served.iter().any(|d| d.ends_with(n)))
    });

    // One keeper renews for every database's lease: each lease names it,
    // and an idle database's lease is not written again (the TTL is 3 s:
    // each lease alone would be renewed every second).
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let keeper = rep.join("litevault.keeper");
    // A lease renewed on its own while the keeper was late (a loaded
    // machine) names it again at its next keep.
    wait_for("each lease naming the keeper", || {
        ["a.db", "b.db", "c.db"].iter().all(|name| {
            let lease = json(&rep.join(name).join("litevault.lease"));
            lease["keeper"] == "../litevault.keeper" && lease["keeper_id"] == json(&keeper)["id"]
        })
    });
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let lease = rep.join("b.db/litevault.lease");
    let left_alone = (0..3).any(|_| {
        let before = (mtime(&lease), mtime(&keeper));
        std::thread::sleep(Duration::from_millis(2500));
        mtime(&lease) == before.0 && mtime(&keeper) != before.1
    });
    assert!(
        left_alone,
        "in none of three windows of 2.5 s was the idle lease left alone while the keeper was renewed"
    );

    // A removed database is let go of; its replica stays.
    drop(a);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dbs.join(format!("a.db{suffix}")));
    }
    wait_for("a.db let go of", || {
        log_text().contains("removed from the watched directory")
    });
    wait_for("a.db no longer served", || {
        !status_dbs(port).iter().any(|d| d.ends_with("a.db"))
    });
    assert!(
        has_ltx(&rep.join("a.db")),
        "a removed database's replica is kept"
    );

    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "replicate exits cleanly: {}", log_text());
    // A clean stop releases the leases and the keeper.
    for lease in [
        rep.join("b.db/litevault.lease"),
        rep.join("c.db/litevault.lease"),
        keeper,
    ] {
        assert!(
            !lease.exists() || json(&lease)["released"] == true,
            "{}",
            lease.display()
        );
    }
    // Everything committed to the new databases is on their replicas.
    block_on(async {
        for (name, n) in [("b.db", 9), ("c.db", 2)] {
            let replica = Replica::open(&file_url(&rep.join(name))).unwrap();
            let out = dir.path().join(format!("restored-{name}"));
            restore_at(&replica, &out, RestoreTarget::Latest).await;
            assert_eq!(rows(&out), n, "{name} restores with every commit");
        }
    });
}

/// An idle replicator leaves its status file alone (rewriting it every
/// second was most of what a thousand idle databases cost), and `status`
/// still reports it running; a commit rewrites it.
#[test]
fn an_idle_replicator_leaves_its_status_file_alone_and_still_reads_as_running() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = new_db(&db, 2);
    let mut child = crate::support::litevault(&[])
        .args(["replicate", "--no-lease"])
        .arg(&db)
        .arg(file_url(&dir.path().join("replica")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let file = dir.path().join(".app.db-litevault/status.json");
    let mtime = || std::fs::metadata(&file).and_then(|m| m.modified()).ok();
    let status = || {
        let out = crate::support::litevault(&[])
            .arg("status")
            .arg(&db)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_for("the replica and the status file", || {
        has_ltx(&dir.path().join("replica")) && status().contains("  running")
    });
    // Settled: the start's uploads are in the file.
    std::thread::sleep(Duration::from_millis(1500));
    let before = mtime().unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(
        mtime().unwrap(),
        before,
        "nothing changed: the file is not rewritten"
    );
    assert!(status().contains("  running"), "{}", status());
    write_rows(&c, 1);
    wait_for("the status file rewritten after a commit", || {
        mtime().is_some_and(|m| m != before)
    });
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    assert!(status().contains("not running"), "{}", status());
}
