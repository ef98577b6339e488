//! The replicator killed (SIGKILL) or stopped (SIGTERM, sometimes within its
//! first second) and restarted during a write load, repeatedly, with the
//! writer sometimes killed mid-transaction too. Every restore must be exactly
//! some committed prefix of the writes and pass integrity_check; after a clean
//! stop nothing committed before the signal may be missing.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use rand::{RngExt, SeedableRng};

const WRITER_ENV: &str = "LITEVAULT_TEST_WRITER_DB";

/// Not a test on its own: the body of the writer child process that the crash
/// test starts (it re-runs this test binary, filtered to `crash::writer_child`,
/// with the environment variable set).
#[test]
fn writer_child() {
    let Ok(db) = std::env::var(WRITER_ENV) else {
        return;
    };
    let mut c = rusqlite::Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let mut i: i64 = c
        .query_row("SELECT last FROM meta WHERE k='last'", [], |r| r.get(0))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        i += 1;
        let tx = c.transaction().unwrap();
        Workload::apply_in(&tx, i).unwrap();
        // Linger inside the transaction now and then, so kills land mid-way
        // (pacing, the behaviour under test, not a wait).
        if i % 7 == 0 {
            std::thread::sleep(Duration::from_millis(3));
        }
        tx.commit().unwrap();
        // Pacing: pauses between bursts of commits, as an app has.
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn spawn_writer(db: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["crash::writer_child", "--exact", "--nocapture"])
        .env(WRITER_ENV, db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn committed(db: &Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.query_row("SELECT last FROM meta WHERE k='last'", [], |r| r.get(0))
        .unwrap()
}

/// Restores the replica's newest state and returns how many transactions it
/// holds. `may_be_empty`: the replicator may have been killed before its first
/// upload (a loaded machine can stretch start-up past the kill), so a replica
/// with no files yet counts as holding nothing, not as a failure.
fn restore_latest(url: &str, out: &Path, may_be_empty: bool) -> i64 {
    let _ = std::fs::remove_file(out);
    let mut cmd = litevault(&[]);
    cmd.args(["restore", url, "-o"]).arg(out);
    if may_be_empty {
        cmd.arg("--if-replica-exists");
    }
    let st = cmd.stdout(Stdio::null()).status().unwrap();
    assert!(st.success(), "restore exits 0");
    if may_be_empty && !out.exists() {
        return 0;
    }
    Workload::check_prefix(out)
}

#[test]
fn kill_and_restart_under_write_load() {
    let seed: u64 = std::env::var("LITEVAULT_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("seed {seed} (set LITEVAULT_TEST_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let c = create_db(&db, 4096);
    Workload::init(&c);
    drop(c);
    let url = file_url(&dir.path().join("replica"));
    let out = dir.path().join("out.db");
    let mut writer = spawn_writer(&db);
    let mut last_restored = 0;
    for round in 0..10 {
        let mut rep = litevault(&[])
            .args(["replicate"])
            .arg(&db)
            .arg(&url)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let ms = if round % 3 == 0 {
            rng.random_range(20..900) // within the first second
        } else {
            rng.random_range(300..2000)
        };
        // The stop lands at a random moment: that is the test, not a wait.
        std::thread::sleep(Duration::from_millis(ms));
        if rng.random_bool(0.3) {
            writer.kill().unwrap();
            writer.wait().unwrap();
            writer = spawn_writer(&db);
        }
        let clean = rng.random_bool(0.5);
        let before = committed(&db);
        if clean {
            // A clean stop needs the handler: SIGTERM before the process
            // installed it would kill it like SIGKILL does (a moment a
            // loaded machine can stretch past any delay).
            wait_until(WAIT, "replicate to catch SIGTERM", || {
                if let Some(st) = rep.try_wait().unwrap() {
                    panic!("round {round}: replicate exited by itself: {st}");
                }
                catches_signal(rep.id(), libc::SIGTERM)
            });
            signal(&rep, "TERM");
            let st = rep.wait().unwrap();
            assert!(st.success(), "round {round}: SIGTERM exits 0, got {st}");
        } else {
            rep.kill().unwrap();
            rep.wait().unwrap();
        }
        // Until something was restored once, a kill may have come before the
        // first upload; a clean stop always ships the snapshot.
        let k = restore_latest(&url, &out, !clean && last_restored == 0);
        eprintln!(
            "round {round}: {} after {ms} ms; committed >= {before}, restored {k}",
            if clean { "TERM" } else { "KILL" }
        );
        if clean {
            assert!(
                k >= before,
                "round {round}: after a clean stop, transaction {before} committed before the signal is in the replica (restored {k})"
            );
        }
        assert!(
            k >= last_restored,
            "round {round}: the replica never goes back ({k} < {last_restored})"
        );
        last_restored = k;
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    let st = litevault(&[])
        .args(["replicate", "--once"])
        .arg(&db)
        .arg(&url)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let k = restore_latest(&url, &out, false);
    assert_eq!(
        k,
        committed(&db),
        "the final restore has every committed transaction"
    );
}
