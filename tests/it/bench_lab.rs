//! The benchmark lab: it serves what the benches need (a bucket through a
//! FUSE mount, PostgreSQL direct and through the delaying proxy), and leaves
//! nothing behind: not when dropped, not on Ctrl-C, not after a crash (the
//! next start cleans up).
//!
//! Needs moto (`pip install 'moto[server]'`), PostgreSQL and s3fs with FUSE
//! (`apt-get install -y s3fs fuse3`). `LITEVAULT_NO_FUSE=1` skips only the
//! FUSE part, saying so.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{WAIT, wait_until};
use litevault_bench::lab::{FuseStatus, Lab, LabOptions, NO_FUSE_ENV};
use object_store::ObjectStoreExt;

fn fuse_wanted() -> bool {
    let skip = std::env::var(NO_FUSE_ENV).is_ok_and(|v| v == "1");
    if skip {
        eprintln!("{NO_FUSE_ENV}=1: the FUSE part of this test is skipped");
    }
    !skip
}

/// A base folder the postgres user can traverse.
fn base_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    d
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_str().unwrap().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_str()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn pg_one(url: &str) -> i32 {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(conn);
    let row = client.query_one("SELECT 41 + 1", &[]).await.unwrap();
    row.get(0)
}

fn assert_mounted_or_explain(lab: &Lab) -> Option<PathBuf> {
    if !fuse_wanted() {
        return None;
    }
    match lab.fuse() {
        FuseStatus::Mounted(p) => Some(p.clone()),
        other => panic!(
            "the bucket is not mounted: {other:?}. This test needs s3fs and FUSE \
             (`apt-get install -y s3fs fuse3`, /dev/fuse, CAP_SYS_ADMIN); \
             set {NO_FUSE_ENV}=1 to skip only the FUSE part"
        ),
    }
}

#[test]
#[ignore = "needs the bench lab (moto, PostgreSQL, s3fs): run scripts/test.sh"]
fn lab_serves_fuse_s3_and_postgres_then_leaves_nothing_behind() {
    let base = base_dir();
    let mut opts = LabOptions::new(base.path());
    opts.fuse = fuse_wanted();
    opts.rtt = Duration::from_millis(4);
    crate::support::needs(crate::support::LAB_SERVICES);
    let lab = Lab::start(&opts).expect("start the lab");
    let run_dir = lab.run_dir().to_path_buf();
    let rt = runtime();

    // FUSE: a file written through the mount is an object in the bucket.
    let mnt = assert_mounted_or_explain(&lab);
    if let Some(mnt) = &mnt {
        let body = b"written through s3fs\n".repeat(100);
        std::fs::write(mnt.join("hello.txt"), &body).unwrap();
        assert_eq!(std::fs::read(mnt.join("hello.txt")).unwrap(), body);
        let replica = lab.replica("", false).unwrap();
        let got = rt
            .block_on(async {
                replica
                    .store()
                    .get(&object_store::path::Path::from("hello.txt"))
                    .await?
                    .bytes()
                    .await
            })
            .expect("the bucket holds the file written through the mount");
        assert_eq!(&got[..], &body[..]);
        // SQLite works on the mount (DELETE journal mode).
        let db = mnt.join("t.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (7);")
            .unwrap();
        let x: i64 = c.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 7);
        drop(c);
    }

    // PostgreSQL, direct and through the proxy.
    let direct = lab.postgres_url(false).expect("postgres started");
    let proxied = lab.postgres_url(true).expect("postgres proxied");
    assert_ne!(direct, proxied, "the proxied URL must use the proxy's port");
    assert_eq!(rt.block_on(pg_one(&direct)), 42);
    assert_eq!(rt.block_on(pg_one(&proxied)), 42);

    let pids = lab.pids();
    let names: Vec<&str> = pids.iter().map(|(n, _)| *n).collect();
    assert!(names.contains(&"moto"), "{names:?}");
    assert!(names.contains(&"postgres"), "{names:?}");
    assert_eq!(names.contains(&"s3fs"), mnt.is_some(), "{names:?}");
    for (n, p) in &pids {
        assert!(alive(*p), "{n} (pid {p}) should run while the lab lives");
    }
    if let Some(m) = &mnt {
        assert!(mounted(m));
    }

    drop(lab);
    for (n, p) in &pids {
        assert!(
            !alive(*p),
            "{n} (pid {p}) still runs after the lab was dropped"
        );
    }
    if let Some(m) = &mnt {
        assert!(!mounted(m), "{} still mounted", m.display());
    }
    assert!(!run_dir.exists(), "{} left behind", run_dir.display());
}

/// `litevault bench-lab` in the background; its JSON line.
fn spawn_cli_lab(base: &Path) -> (Child, serde_json::Value) {
    crate::support::needs(crate::support::LAB_SERVICES);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_litevault"));
    cmd.args(["bench-lab", "--rtt", "2ms", "--dir"])
        .arg(base)
        .env("LITEVAULT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !fuse_wanted() {
        cmd.arg("--no-fuse");
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bench-lab printed {line:?}: {e}"));
    (child, v)
}

fn pids_of(info: &serde_json::Value) -> Vec<(String, u32)> {
    info["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["pid"].as_u64().unwrap() as u32,
            )
        })
        .collect()
}

fn mount_of(info: &serde_json::Value) -> Option<PathBuf> {
    if !fuse_wanted() {
        return None;
    }
    match info["fuse"]["mounted"].as_str() {
        Some(p) => Some(PathBuf::from(p)),
        None => panic!(
            "bench-lab did not mount the bucket: {}; install s3fs and FUSE \
             (`apt-get install -y s3fs fuse3`) or set {NO_FUSE_ENV}=1",
            info["fuse"]
        ),
    }
}

#[test]
#[ignore = "needs the bench lab (moto, PostgreSQL, s3fs): run scripts/test.sh"]
fn ctrl_c_stops_everything_and_the_signal_still_ends_the_process() {
    let base = base_dir();
    let (mut child, info) = spawn_cli_lab(base.path());
    let pids = pids_of(&info);
    let mnt = mount_of(&info);
    assert_eq!(pids.len(), if mnt.is_some() { 3 } else { 2 }, "{info}");
    for (n, p) in &pids {
        assert!(alive(*p), "{n} should run");
    }
    // SAFETY: kill on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "the process should end by the signal it got: {status}"
    );
    for (n, p) in &pids {
        wait_until(
            WAIT,
            format_args!("{n} (pid {p}) to end after Ctrl-C"),
            || !alive(*p),
        );
    }
    if let Some(m) = &mnt {
        assert!(!mounted(m), "{} still mounted after Ctrl-C", m.display());
    }
    let run_dir = PathBuf::from(info["run_dir"].as_str().unwrap());
    assert!(!run_dir.exists(), "{} left behind", run_dir.display());
}

#[test]
#[ignore = "needs the bench lab (moto, PostgreSQL, s3fs): run scripts/test.sh"]
fn a_crashed_lab_is_cleaned_up_by_the_next_start() {
    let base = base_dir();
    let (mut child, info) = spawn_cli_lab(base.path());
    let pids = pids_of(&info);
    let mnt = mount_of(&info);
    child.kill().unwrap(); // SIGKILL: no cleanup can run
    child.wait().unwrap();
    // What the crash left: the postmaster and the moto/s3fs process groups.
    let survivors: Vec<_> = pids.iter().filter(|(_, p)| alive(*p)).collect();
    assert!(
        !survivors.is_empty(),
        "nothing survived the crash, so this test proves nothing: {pids:?}"
    );
    if let Some(m) = &mnt {
        assert!(mounted(m), "the crashed run's mount should still be there");
    }
    let run_dir = PathBuf::from(info["run_dir"].as_str().unwrap());
    assert!(run_dir.exists());

    let mut opts = LabOptions::new(base.path());
    opts.fuse = false;
    opts.postgres = false;
    crate::support::needs(crate::support::LAB_SERVICES);
    let lab = Lab::start(&opts).expect("start a new lab");
    let cleaned = lab.leftovers_cleaned().to_vec();
    assert!(!cleaned.is_empty(), "the leftovers were not noticed");
    for (n, p) in &pids {
        assert!(!alive(*p), "leftover {n} (pid {p}) still runs: {cleaned:?}");
    }
    if let Some(m) = &mnt {
        assert!(!mounted(m), "leftover mount {} still there", m.display());
    }
    assert!(!run_dir.exists(), "{} left behind", run_dir.display());
    drop(lab);
}
