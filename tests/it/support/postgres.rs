//! A throwaway PostgreSQL cluster for the export/import tests: `initdb` into a
//! temporary directory as the `postgres` user (initdb refuses root), started
//! with `pg_ctl`, stopped (immediate mode) when dropped, also on panic.
//!
//! It listens on a Unix socket in that directory only, so there is no TCP
//! port to race other processes for. The TLS cluster needs TCP (PostgreSQL
//! has no TLS on Unix sockets) and PostgreSQL can neither bind port 0 nor
//! take a bound socket: it gets a port that was free, and another one when
//! its bind fails because something took it first.
//!
//! nextest runs every test in its own process, so each test gets its own
//! cluster (initdb takes about half a second); [`PgCluster::fresh_db`] gives a
//! fresh database inside it.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running PostgreSQL cluster, stopped on drop.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The TCP port on 127.0.0.1 ([`PgCluster::start_tls`]); else the
    /// number in the Unix socket's name.
    pub port: u16,
    tcp: bool,
    /// With [`PgCluster::start_tls`]: the CA certificate (PEM) that signed
    /// the server's certificate (for 127.0.0.1).
    pub ca_cert: Option<PathBuf>,
}

fn pg_bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("LITEVAULT_PG_BIN") {
        return PathBuf::from(d);
    }
    for v in ["17", "16", "15", "14", "13"] {
        let d = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if d.join("initdb").exists() {
            return d;
        }
    }
    panic!(
        "these tests need the PostgreSQL server binaries (initdb, pg_ctl): \
         `apt-get install postgresql` (or set LITEVAULT_PG_BIN to their folder)"
    );
}

/// Runs a command as the `postgres` user when we are root (initdb refuses root).
fn as_pg_user(bin: &Path, args: &[&str]) -> Command {
    let root = unsafe_is_root();
    let mut c = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    c.args(args);
    c
}

fn unsafe_is_root() -> bool {
    // `id -u` keeps us free of libc.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgCluster {
    /// initdb + start; panics with install instructions if PostgreSQL is missing.
    pub fn start() -> PgCluster {
        Self::start_with(false)
    }

    /// A cluster that accepts TLS connections only (`hostssl` in pg_hba.conf,
    /// plain TCP rejected), with a certificate for 127.0.0.1 signed by a test
    /// CA made with `openssl`.
    pub fn start_tls() -> PgCluster {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> PgCluster {
        super::needs(if tls {
            "PostgreSQL and openssl"
        } else {
            "PostgreSQL"
        });
        let bin = pg_bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        if unsafe_is_root() {
            let st = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                st.success(),
                "chown of the cluster folder to the postgres user failed"
            );
        }
        let data = dir.path().join("data");
        let out = as_pg_user(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-N",
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )
        .output()
        .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tls_opts = String::new();
        let mut ca_cert = None;
        if tls {
            let d = dir.path();
            let openssl = |args: &[&str]| {
                let out = Command::new("openssl")
                    .args(args)
                    .current_dir(d)
                    .output()
                    .expect("this test needs the openssl command: apt-get install openssl");
                assert!(
                    out.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=litevault test CA",
            ]);
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ]);
            std::fs::write(
                d.join("ext.cnf"),
                "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
            )
            .unwrap();
            openssl(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ]);
            std::fs::set_permissions(d.join("server.key"), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            if unsafe_is_root() {
                let st = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(d.join("server.key"))
                    .arg(d.join("server.crt"))
                    .status()
                    .unwrap();
                assert!(st.success());
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
            tls_opts = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                d.join("server.crt").display(),
                d.join("server.key").display()
            );
            ca_cert = Some(d.join("ca.crt"));
        }
        // With TCP, a few tries in case another process takes the port in
        // between; the Unix socket is in our own folder: nothing can take it.
        let mut collisions = Vec::new();
        for _ in 0..5 {
            let (port, listen) = if tls {
                (super::free_port(), "127.0.0.1")
            } else {
                (5432, "''")
            };
            let opts = format!(
                "-c listen_addresses={listen} -c port={port} -c unix_socket_directories={} \
                 -c fsync=off -c synchronous_commit=off -c full_page_writes=off{tls_opts}",
                dir.path().display()
            );
            let log = dir.path().join("log");
            let st = as_pg_user(
                &bin.join("pg_ctl"),
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-o",
                    &opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            )
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl");
            if st.success() {
                return PgCluster {
                    dir,
                    bin,
                    port,
                    tcp: tls,
                    ca_cert,
                };
            }
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            if !tls || (!log.contains("could not bind") && !log.contains("in use")) {
                panic!("pg_ctl start failed:\n{log}");
            }
            collisions.push(port);
        }
        panic!("PostgreSQL found its port taken by another process 5 times: {collisions:?}");
    }

    /// The URL of database `db` (user postgres, trust auth): the Unix
    /// socket's folder as the host (percent-encoded, as libpq and
    /// tokio-postgres read it), or 127.0.0.1 for the TLS cluster.
    pub fn url(&self, db: &str) -> String {
        if self.tcp {
            format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
        } else {
            let host = self.dir.path().to_str().unwrap().replace('/', "%2F");
            format!("postgres://postgres@{host}:{}/{db}", self.port)
        }
    }

    /// Creates database `name` and returns its URL.
    pub fn fresh_db(&self, name: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                &self.url("postgres"),
                "-c",
                &format!("CREATE DATABASE \"{name}\""),
            ])
            .output()
            .expect("psql");
        if !out.status.success() {
            // psql may be in the bin folder or on PATH.
            panic!(
                "CREATE DATABASE {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.url(name)
    }

    /// Runs SQL through psql on database `db`; returns stdout (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                &self.url(db),
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_pg_user(
            &self.bin.join("pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}
