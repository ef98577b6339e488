//! The command line as a user meets it: restore-on-boot flags, point-in-time
//! by timestamp, `ltx` listing, and clear errors for bad input.

use std::process::Stdio;

use crate::support::*;

fn run(args: &[&str]) -> std::process::Output {
    litevault(&[])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A replica holding only a Litestream v0.3 backup is not empty: restore,
/// `--if-replica-exists` included, restores it, and when it cannot (here a
/// snapshot that is not LZ4) it fails naming the object and the output is
/// not created (a boot script must not start the app on an empty database
/// while the backup exists). tests/it/litestream_v03.rs restores real ones.
#[test]
fn a_litestream_v03_backup_is_not_an_empty_replica() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("replica");
    // The layout of a v0.3 backup: generations/<16 hex>/snapshots/<index>.snapshot.lz4.
    let snapshots = root.join("generations/0123456789abcdef/snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    std::fs::write(snapshots.join("00000000.snapshot.lz4"), b"v0.3").unwrap();
    let url = file_url(&root);
    let out = dir.path().join("app.db");
    for extra in [&[][..], &["--if-replica-exists"][..]] {
        let mut args = vec!["restore", &url, "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(!o.status.success(), "{extra:?}");
        let e = stderr(&o);
        assert!(
            e.contains("Litestream v0.3 object generations/0123456789abcdef/snapshots/00000000.snapshot.lz4"),
            "{e}"
        );
        assert!(e.contains("is damaged"), "{e}");
        assert!(!out.exists());
    }
}

#[test]
fn restore_on_boot_flags() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let out = dir.path().join("data/app.db");
    let out_s = out.to_str().unwrap();
    // Empty replica: --if-replica-exists makes it a no-op, without it an error.
    let o = run(&["restore", &url, "-o", out_s, "--if-replica-exists"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.exists());
    let o = run(&["restore", &url, "-o", out_s]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds no LTX files"), "{}", stderr(&o));
    // Replicate something, restore on boot, then boot again: the db exists.
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    for i in 1..=10 {
        Workload::apply(&mut c, i).unwrap();
    }
    let o = run(&["replicate", "--once", db.to_str().unwrap(), &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "restore",
        &url,
        "-o",
        out_s,
        "--if-db-not-exists",
        "--if-replica-exists",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(Workload::check_prefix(&out), 10);
    let o = run(&["restore", &url, "-o", out_s, "--if-db-not-exists"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("exists; nothing restored"));
    let o = run(&["restore", &url, "-o", out_s]);
    assert!(
        !o.status.success(),
        "an existing output is never overwritten"
    );
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    // The restored database continues replicating without re-uploading it:
    // the restore left the page table beside it.
    let mut c2 = create_db(&out, 4096);
    Workload::apply(&mut c2, 11).unwrap();
    drop(c2);
    let before = std::fs::read_dir(dir.path().join("replica/ltx/0"))
        .unwrap()
        .count();
    let o = run(&["replicate", "--once", out_s, &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["ltx", &url, "--level", "0", "--json"]);
    let files: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files = files.as_array().unwrap();
    // The change, and the hand-off file the stop adds after a first file
    // that compared pages (see `handoff`).
    let new = &files[before..];
    assert!(matches!(new.len(), 1 | 2), "{new:?}");
    let pages_db = std::fs::metadata(&out).unwrap().len() / 4096;
    for f in new {
        assert!(
            f["size"].as_u64().unwrap() < pages_db * 4096 / 2,
            "the first file after restore-on-boot holds the change, not the database: {f}"
        );
    }
}

#[test]
fn point_in_time_by_txid_and_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    let mut stamps = Vec::new();
    let mut txids = Vec::new();
    for round in 1..=3i64 {
        for i in (round - 1) * 10 + 1..=round * 10 {
            Workload::apply(&mut c, i).unwrap();
        }
        let o = run(&["replicate", "--once", db.to_str().unwrap(), &url]);
        assert!(o.status.success(), "{}", stderr(&o));
        let said = String::from_utf8_lossy(&o.stdout);
        let txid = said.trim().rsplit(' ').next().unwrap().to_string();
        txids.push(txid);
        stamps.push(timestamp_between_writes());
    }
    let out = dir.path().join("pit.db");
    for (i, ts) in stamps.iter().enumerate() {
        let _ = std::fs::remove_file(&out);
        let o = run(&[
            "restore",
            &url,
            "-o",
            out.to_str().unwrap(),
            "--timestamp",
            ts,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            Workload::check_prefix(&out),
            (i as i64 + 1) * 10,
            "state at {ts}"
        );
    }
    let _ = std::fs::remove_file(&out);
    let o = run(&[
        "restore",
        &url,
        "-o",
        out.to_str().unwrap(),
        "--txid",
        &txids[1],
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(Workload::check_prefix(&out), 20);
    let _ = std::fs::remove_file(&out);
    let o = run(&[
        "restore",
        &url,
        "-o",
        out.to_str().unwrap(),
        "--timestamp",
        "2001-01-01T00:00:00Z",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("newer than that time"),
        "{}",
        stderr(&o)
    );
    let o = run(&["restore", &url, "-o", out.to_str().unwrap(), "--txid", "99"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("latest is {}", txids[2])),
        "{}",
        stderr(&o)
    );
    let o = run(&["restore", &url, "-o", out.to_str().unwrap(), "--txid", "zz"]);
    assert!(stderr(&o).contains("not a hex TXID"), "{}", stderr(&o));
    let o = run(&[
        "restore",
        &url,
        "-o",
        out.to_str().unwrap(),
        "--timestamp",
        "yesterday",
    ]);
    assert!(stderr(&o).contains("RFC 3339"), "{}", stderr(&o));
    // ltx lists what is there, in text and JSON.
    let o = run(&["ltx", &url]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("0000000000000003"), "{text}");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let db = dir.path().join("rollback.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();
    let o = run(&["replicate", "--once", db.to_str().unwrap(), &url]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("PRAGMA journal_mode=WAL"),
        "{}",
        stderr(&o)
    );
    let o = run(&["replicate", "--once", "/nonexistent/app.db", &url]);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    let not_db = dir.path().join("text.db");
    std::fs::write(&not_db, vec![b'x'; 8192]).unwrap();
    let o = run(&["replicate", "--once", not_db.to_str().unwrap(), &url]);
    assert!(
        stderr(&o).contains("not a SQLite database"),
        "{}",
        stderr(&o)
    );
    let o = run(&["restore", "ftp://x/y", "-o", "/tmp/x.db"]);
    assert!(stderr(&o).contains("unsupported scheme"), "{}", stderr(&o));
    let o = run(&["ltx", "s3://bucket/x?bogus=1"]);
    assert!(
        stderr(&o).contains("unknown query parameter"),
        "{}",
        stderr(&o)
    );
}

/// A short command whose output pipe closes early (`litevault ltx URL |
/// head`) ends quietly by SIGPIPE, as Unix tools do: no panic message.
#[test]
fn a_closed_output_pipe_ends_a_short_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = file_url(&dir.path().join("replica"));
    let c = create_db(&db, 4096);
    c.execute_batch("CREATE TABLE t(v); INSERT INTO t VALUES (1);")
        .unwrap();
    let o = run(&["replicate", "--once", db.to_str().unwrap(), &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The read end closes before the child writes anything.
    let mut child = litevault(&[])
        .args(["ltx", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let e = stderr(&o);
    assert!(!e.contains("panicked"), "{e}");
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {e}",
        o.status
    );
}

/// Every duration flag reads the config file's grammar (Go's: `500ms`,
/// `1h30m`): a bare number is refused with the same hint everywhere, and a
/// value with a unit is accepted everywhere.
#[test]
fn every_duration_flag_reads_one_grammar() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let db = dir.path().join("app.db");
    let db = db.to_str().unwrap();
    let out = dir.path().join("out.db");
    let out = out.to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &["replicate", "--once", "--sync-interval", "10", db, &url],
        &["verify", "--timeout", "10", db, &url],
        &["restore", "--follow", "--interval", "10", &url, "-o", out],
        &["delay-proxy", "--rtt", "10", "--upstream", "127.0.0.1:1"],
    ];
    for args in cases {
        let o = run(args);
        assert!(!o.status.success(), "{args:?} accepted a bare number");
        let e = stderr(&o);
        assert!(e.contains("has no unit"), "{args:?}: {e}");
        assert!(e.contains("500ms, 1s, 5m"), "{args:?}: {e}");
    }
    let o = run(&["verify", "--timeout", "1h30m", "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `replicate --exec`: the app starts once the database is open, its writes
/// are replicated, and litevault exits with the app's exit code after a
/// final sync. SIGTERM sent to litevault reaches the app.
#[test]
fn exec_supervises_the_app() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let db = dir.path().join("app.db");
    let c = create_db(&db, 4096);
    Workload::init(&c);
    drop(c);
    // The "app": writes 50 rows with the sqlite3 shell, then exits with 7.
    let app = format!(
        "for i in $(seq 1 50); do sqlite3 {db} \"INSERT INTO items(id, val, pad) VALUES ($i, $i, 'x')\"; done; exit 7",
        db = db.display()
    );
    let o = run(&["replicate", db.to_str().unwrap(), &url, "--exec", &app]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let out = dir.path().join("out.db");
    let o = run(&["restore", &url, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let n: i64 = rusqlite::Connection::open(&out)
        .unwrap()
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        n, 50,
        "every write the app made before exiting is in the replica"
    );

    // Signals are forwarded: the app traps TERM, writes, and exits with 3.
    let marker = dir.path().join("got-term");
    let started = dir.path().join("trap-set");
    let app = format!(
        "trap 'sqlite3 {db} \"INSERT INTO items(id, val, pad) VALUES (1000, 1, 1)\"; touch {m}; exit 3' TERM; touch {s}; while true; do sleep 0.05; done",
        db = db.display(),
        m = marker.display(),
        s = started.display()
    );
    let mut child = litevault(&[])
        .args(["replicate", db.to_str().unwrap(), &url, "--exec", &app])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The app is up, its trap set (it says so with a file).
    wait_until(WAIT, "the app to set its TERM trap", || started.exists());
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(marker.exists(), "the app received SIGTERM");
    let out = dir.path().join("out2.db");
    let o = run(&["restore", &url, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let n: i64 = rusqlite::Connection::open(&out)
        .unwrap()
        .query_row("SELECT count(*) FROM items WHERE id = 1000", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(
        n, 1,
        "the app's last write, made on SIGTERM, was shipped by the final sync"
    );

    // A command that cannot start is a clear error.
    let o = run(&[
        "replicate",
        db.to_str().unwrap(),
        &url,
        "--exec",
        "/nonexistent/app",
    ]);
    assert_eq!(
        o.status.code(),
        Some(127),
        "sh reports a missing program as 127"
    );
}

/// A stop signal while `replicate --exec` waits for a held lease ends the
/// wait at once: the app never starts, the exit is clean, and the holder
/// keeps its lease. `--placeholder-addr` answers 503 meanwhile and needs
/// `--exec`; an address it cannot take is named.
#[test]
fn a_stop_during_the_lease_wait_ends_it_and_the_app_never_starts() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let db = dir.path().join("app.db");
    let c = create_db(&db, 4096);
    Workload::init(&c);
    drop(c);
    let mut holder = litevault(&[])
        .args(["replicate", db.to_str().unwrap(), &url])
        .env("LITEVAULT_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let holder_log = Output::capture(holder.stderr.take().unwrap());
    holder_log.wait_for_line(WAIT, "replicating");

    let other = dir.path().join("other.db");
    drop(create_db(&other, 4096));
    let started = dir.path().join("app-started");
    let (l, port) = bound_listener();
    drop(l);
    let addr = format!("127.0.0.1:{port}");
    let mut waiter = litevault(&[])
        .args(["replicate", other.to_str().unwrap(), &url])
        .args(["--lease-wait", "10m", "--placeholder-addr", &addr])
        .args(["--exec", &format!("touch {}", started.display())])
        .env("LITEVAULT_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Output::capture(waiter.stderr.take().unwrap());
    log.wait_for_line(WAIT, "waiting for its release");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    assert!(reply.contains("\r\nRetry-After: 1\r\n"), "{reply}");

    signal(&waiter, "TERM");
    let status = waiter.wait().unwrap();
    assert!(status.success(), "{status}: {}", log.text());
    assert!(!started.exists(), "the app must not start after a stop");
    assert!(
        log.text().contains("the app was not started"),
        "{}",
        log.text()
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "the placeholder is closed at exit"
    );
    // The holder never noticed.
    assert!(holder.try_wait().unwrap().is_none());
    signal(&holder, "TERM");
    assert!(holder.wait().unwrap().success());

    // Without --exec the placeholder has nothing to hand over to.
    let o = run(&[
        "replicate",
        db.to_str().unwrap(),
        &url,
        "--placeholder-addr",
        "127.0.0.1:0",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--placeholder-addr needs --exec"),
        "{}",
        stderr(&o)
    );
    // An address that is taken, and one that is not an address, are named.
    let (taken, port) = bound_listener();
    for (addr, says) in [
        (format!("127.0.0.1:{port}"), "cannot listen there"),
        ("localhost:http".to_string(), "is not HOST:PORT"),
    ] {
        let o = run(&[
            "replicate",
            db.to_str().unwrap(),
            &url,
            "--placeholder-addr",
            &addr,
            "--exec",
            "true",
        ]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(says), "{addr}: {}", stderr(&o));
    }
    drop(taken);
}

/// `replicate --config`: two databases, each to a local folder and to the
/// S3 server, from one litestream.yml-style file with ${VAR} expansion.
#[test]
#[ignore = "needs the moto S3 server: run scripts/test.sh"]
fn replicate_from_a_config_file() {
    let s3 = S3Server::start();
    let bucket = s3.bucket("cfg");
    let dir = tempfile::tempdir().unwrap();
    let mut dbs = Vec::new();
    for name in ["a", "b"] {
        let db = dir.path().join(format!("{name}.db"));
        let mut c = create_db(&db, 4096);
        Workload::init(&c);
        for i in 1..=(if name == "a" { 7 } else { 11 }) {
            Workload::apply(&mut c, i).unwrap();
        }
        dbs.push(db);
    }
    let cfg = dir.path().join("litevault.yml");
    let yml = format!(
        "access-key-id: ${{KEY_ID}}\nsecret-access-key: ${{SECRET}}\ndbs:\n{}",
        ["a", "b"]
            .iter()
            .map(|n| format!(
                "  - path: {d}/{n}.db\n    replicas:\n      - url: file://{d}/backup/{n}\n      - type: s3\n        bucket: {bucket}\n        path: {n}\n        endpoint: {ep}\n        region: us-east-1\n        force-path-style: true\n",
                d = dir.path().display(),
                ep = s3.endpoint(),
            ))
            .collect::<String>()
    );
    std::fs::write(&cfg, yml).unwrap();
    let o = litevault(&[])
        .args(["replicate", "--once", "--config", cfg.to_str().unwrap()])
        .env("KEY_ID", "testing")
        .env("SECRET", "testing")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for (name, k) in [("a", 7), ("b", 11)] {
        for url in [
            file_url(&dir.path().join(format!("backup/{name}"))),
            s3.url(&bucket, name),
        ] {
            let out = dir.path().join(format!("out-{name}-{}.db", url.len()));
            let o = litevault(&s3.env())
                .args(["restore", &url, "-o", out.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(o.status.success(), "{url}: {}", stderr(&o));
            assert_eq!(Workload::check_prefix(&out), k, "{url}");
        }
    }
    // A typo in the file is an error naming the key and the line.
    std::fs::write(
        &cfg,
        "dbs:\n  - path: /x.db\n    replica:\n      url: file:///tmp/x\n      sync-intervl: 1s\n",
    )
    .unwrap();
    let o = run(&["replicate", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("sync-intervl") && e.contains(":5:"), "{e}");
}

/// `status`: a running replicator reports per replica; a replica that
/// cannot be reached (nothing listens on its port) is retried in the
/// background while the other one receives everything.
#[test]
fn status_reports_each_replica_and_an_unreachable_one_never_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let good = file_url(&dir.path().join("good"));
    let bad = "s3://nowhere/app?endpoint=http://127.0.0.1:9&region=us-east-1&force-path-style=true";
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    let mut child = litevault(&[
        ("AWS_ACCESS_KEY_ID", "x".into()),
        ("AWS_SECRET_ACCESS_KEY", "y".into()),
    ])
    .args([
        "replicate",
        db.to_str().unwrap(),
        &good,
        bad,
        "--sync-interval",
        "0s",
    ])
    .stdin(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    for i in 1..=20 {
        Workload::apply(&mut c, i).unwrap();
        // Pacing, not waiting: commits keep coming while the unreachable
        // replica is retried, and each must still reach the good one.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Settled: the good replica holds every write and the status says it
    // caught up, and the unreachable one has failed at least once.
    let probe = dir.path().join("probe.db");
    let v = wait_until(
        WAIT,
        "the good replica to hold all 20 writes and the status to show both replicas",
        || {
            let o = run(&["status", db.to_str().unwrap(), "--json"]);
            if !o.status.success() {
                // No status file yet: it is still starting.
                return Err(stderr(&o));
            }
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let st = &v[0];
            let _ = std::fs::remove_file(&probe);
            let restored = run(&["restore", &good, "-o", probe.to_str().unwrap()])
                .status
                .success()
                && Workload::check_prefix(&probe) == 20;
            // The status was written after the good replica got its newest
            // file (the status file is rewritten every so often).
            let head = block_on(litevault::Replica::open(&good).unwrap().list_all())
                .unwrap()
                .iter()
                .map(|f| f.max_txid.0)
                .max();
            let hex =
                |x: &serde_json::Value| x.as_str().and_then(|t| u64::from_str_radix(t, 16).ok());
            let settled = restored
                && st["running"] == true
                && hex(&st["txid"]) == head
                && hex(&st["replicas"][0]["txid"]) == head
                && st["replicas"][1]["last_error"].is_string();
            if settled { Ok(v) } else { Err(st.to_string()) }
        },
    );
    let st = &v[0];
    assert_eq!(st["running"], true, "{st}");
    let txid = st["txid"].as_str().unwrap().to_string();
    assert_eq!(st["replicas"][0]["txid"].as_str().unwrap(), txid, "{st}");
    assert_eq!(st["replicas"][0]["lag_ms"], 0, "{st}");
    assert!(
        st["replicas"][0]["requests"]["puts"].as_u64().unwrap() >= 1,
        "{st}"
    );
    assert!(st["replicas"][1]["last_error"].as_str().is_some(), "{st}");
    assert!(st["replicas"][1]["lag_ms"].as_u64().unwrap() > 0, "{st}");
    assert!(
        st["replicas"][1]["pending_files"].as_u64().unwrap() > 0,
        "{st}"
    );
    // The text form names both replicas.
    let o = run(&["status", db.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("running") && text.contains("nowhere"),
        "{text}"
    );
    signal(&child, "TERM");
    let _ = child.wait();
    let o = run(&["status", db.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["running"], false);
    let out = dir.path().join("out.db");
    let o = run(&["restore", &good, "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(Workload::check_prefix(&out), 20);
}

/// `verify DB` with the config file: every replica of the database is
/// checked; a damaged one makes the exit code 2.
#[test]
fn verify_every_replica_of_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    for i in 1..=25 {
        Workload::apply(&mut c, i).unwrap();
    }
    let cfg = dir.path().join("litevault.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {d}/app.db\n    replicas:\n      - path: {d}/one\n      - path: {d}/two\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap();
    let o = run(&["replicate", "--once", "--config", cfg_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["verify", db.to_str().unwrap(), "--config", cfg_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.matches("ok:").count(), 2, "{out}");
    // Damage one byte of each of the second replica's files (the clean
    // stop compacted level 0 into level 1: both hold the state).
    let mut damaged = 0;
    for level in ["0", "1"] {
        for f in std::fs::read_dir(dir.path().join("two/ltx").join(level)).unwrap() {
            let f = f.unwrap().path();
            let mut b = std::fs::read(&f).unwrap();
            let n = b.len();
            b[n / 2] ^= 0xff;
            std::fs::write(&f, b).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged >= 2, "{damaged}");
    let o = run(&["verify", db.to_str().unwrap(), "--config", cfg_s]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("two"), "{}", stderr(&o));
    // A database the file does not list: a clear error.
    let o = run(&["verify", "/nonexistent.db", "--config", cfg_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not listed"), "{}", stderr(&o));
}

/// Compaction and retention settings are flags too; a bad one is a clear
/// error.
#[test]
fn retention_flags() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("replica"));
    let db = dir.path().join("app.db");
    let mut c = create_db(&db, 4096);
    Workload::init(&c);
    Workload::apply(&mut c, 1).unwrap();
    let o = run(&[
        "replicate",
        "--once",
        "--levels",
        "10s,1m",
        "--snapshot-interval",
        "0s",
        "--snapshot-retention",
        "2h",
        "--l0-retention",
        "1m",
        "--no-retention",
        db.to_str().unwrap(),
        &url,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "replicate",
        "--once",
        "--levels",
        "30s,soon",
        db.to_str().unwrap(),
        &url,
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("30s,5m,1h"), "{}", stderr(&o));
}
