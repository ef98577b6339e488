//! The throwaway environment the backend benchmarks run in, started and
//! stopped by itself on this machine: an S3-compatible server (moto) on
//! 127.0.0.1 with one bucket, a [`DelayProxy`] in front of it, an `s3fs` FUSE
//! mount of that bucket through the proxy, and a PostgreSQL cluster on
//! 127.0.0.1 with a [`DelayProxy`] in front of it too.
//!
//! # Cleanup
//!
//! Everything a lab starts is stopped by PID and the mount is unmounted:
//!
//! - when the [`Lab`] is dropped (also while unwinding from a panic), or
//!   [`Lab::shutdown`] is called;
//! - on SIGINT, SIGTERM or SIGHUP while a lab is alive: a handler stops every
//!   live lab, then restores the previous handler and raises the signal again,
//!   so the process still ends the way the signal asked; the same handler
//!   kills the process group of every live [`Spawned`] program (what a
//!   benchmark runs beside a lab), which is also killed when dropped;
//! - after a crash (SIGKILL, abort): every lab lives in its own folder
//!   `<base>/run-<pid>-<n>` holding an exclusive `flock` on `<run>/lock` and
//!   the PID files of what it started (the folder is created and locked as
//!   `new-<pid>-<n>`, then renamed, so labs starting together never take each
//!   other for leftovers). The next [`Lab::start`] with the same
//!   base folder finds folders whose lock is free, unmounts their mount point,
//!   stops the processes named in their PID files (after checking
//!   `/proc/<pid>/cmdline`, so a reused PID is left alone) and removes them.
//!
//! # Network
//!
//! Only 127.0.0.1. `s3fs` gets the endpoint (`url=`), path-style requests and
//! a `passwd_file` with the lab's keys, no `iam_role`/`ecs` option (the only
//! ways s3fs reaches an instance or container metadata endpoint) and an empty
//! environment apart from `PATH` and a `HOME` inside the lab folder, so no
//! proxy variable, AWS variable or credentials file from the user applies.
//!
//! # Tests that need no service
//!
//! With [`NO_SERVICES_ENV`] set to `1`, [`Lab::start`] refuses with
//! [`LabError::NotMarkedIgnore`] before it starts anything: scripts/test.sh
//! runs the tests not marked `#[ignore]` that way, so a test (or a
//! `litevault bench-lab` it runs) that starts the lab must be marked.
//!
//! The API is blocking (it starts processes and waits for them); it can be
//! called from inside a Tokio runtime too, the proxies run on the lab's own
//! runtime.
//!
//! # Layout
//!
//! This file holds [`Lab`], [`LabOptions`] and the accessors; `s3` starts
//! the moto server, `fuse` the s3fs mount, `postgres` the cluster,
//! `process` stops processes and cleans leftover run folders, `signals`
//! stops every live lab (and every [`Spawned`] process) on a signal,
//! `child` runs the programs a benchmark starts beside a lab ([`Spawned`]),
//! [`http`] sends one-shot HTTP requests to 127.0.0.1.

mod child;
mod fuse;
pub mod http;
mod postgres;
mod process;
mod s3;
mod signals;

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::proxy::{DelayProxy, ProxyError};
use litevault::Replica;
use litevault::replica::{ReplicaError, S3Credentials};

pub use child::{Ended, Spawned};
pub(crate) use fuse::is_mounted;
use fuse::unmount;
use postgres::as_pg_user;
pub use process::{as_descriptor_3, bound_listener, free_port, with_passed_socket};
use process::{clean_leftovers, lock_run_dir, stop_child, stop_pid};

/// The bucket the lab creates.
pub const BUCKET: &str = "litevault-bench";
/// The access key id the lab's S3 server accepts (moto accepts any).
pub const ACCESS_KEY_ID: &str = "litevault-bench";
/// The secret access key that goes with [`ACCESS_KEY_ID`].
pub const SECRET_ACCESS_KEY: &str = "litevault-bench-secret";
/// The database the lab creates in its PostgreSQL cluster.
pub const PG_DATABASE: &str = "bench";
/// Set to `1` to run a lab without the FUSE mount
/// ([`LabOptions::from_env`]).
pub const NO_FUSE_ENV: &str = "LITEVAULT_NO_FUSE";

/// `1`: the tests run now must need no external program or server, so
/// [`Lab::start`] refuses (the same variable the integration tests' service
/// starters check).
pub const NO_SERVICES_ENV: &str = "LITEVAULT_TEST_NO_SERVICES";
/// A round trip for the proxies, e.g. `25ms` ([`LabOptions::from_env`]).
pub const RTT_ENV: &str = "LITEVAULT_LAB_RTT";

/// What to start.
#[derive(Clone, Debug)]
pub struct LabOptions {
    /// The folder holding every lab's run folder (leftovers of crashed runs
    /// in it are cleaned at start).
    pub base_dir: PathBuf,
    /// The round trip each proxy adds (half each way).
    pub rtt: Duration,
    /// Mount the bucket with s3fs (when false, [`Lab::fuse`] says so).
    pub fuse: bool,
    /// Start a PostgreSQL cluster.
    pub postgres: bool,
    /// PostgreSQL's `shared_buffers` (e.g. `8MB`, so a large dataset is
    /// ten times its buffer cache); the server's default when `None`.
    pub pg_shared_buffers: Option<String>,
}

impl LabOptions {
    /// Everything on, a 10 ms round trip, in `base_dir`.
    pub fn new(base_dir: impl Into<PathBuf>) -> LabOptions {
        LabOptions {
            base_dir: base_dir.into(),
            rtt: Duration::from_millis(10),
            fuse: true,
            postgres: true,
            pg_shared_buffers: None,
        }
    }

    /// `litevault-bench-lab` in the system's temporary folder. Not inside
    /// the checkout: the PostgreSQL cluster runs as the `postgres` user,
    /// which must reach its data folder, and a checkout may sit below a
    /// folder only its owner can enter (`mktemp -d` makes those).
    pub fn default_base_dir() -> PathBuf {
        std::env::temp_dir().join("litevault-bench-lab")
    }

    /// Applies [`NO_FUSE_ENV`] (`1` turns the mount off) and [`RTT_ENV`].
    pub fn from_env(mut self) -> Result<LabOptions, LabError> {
        if std::env::var(NO_FUSE_ENV).is_ok_and(|v| v == "1") {
            self.fuse = false;
        }
        if let Ok(v) = std::env::var(RTT_ENV) {
            self.rtt = litevault::units::parse_duration(&v).map_err(|e| LabError::BadSetting {
                name: RTT_ENV,
                problem: e,
            })?;
        }
        Ok(self)
    }
}

/// Whether the bucket is mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FuseStatus {
    /// Mounted at this path (through the delaying proxy).
    Mounted(PathBuf),
    /// Not asked for.
    Disabled(String),
    /// Asked for but impossible here; the reason holds s3fs's own words.
    Unavailable(String),
}

/// Why a lab could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// [`NO_SERVICES_ENV`] is `1`: what started the lab is a test that is
    /// not marked `#[ignore]`.
    #[error(
        "this test needs the bench lab (moto, PostgreSQL, s3fs) but is not marked #[ignore]: \
         add #[ignore = \"needs the bench lab (moto, PostgreSQL, s3fs): run scripts/test.sh\"]"
    )]
    NotMarkedIgnore,
    /// The moto S3 server is not installed.
    #[error("the lab needs the moto S3 server: install it with `pip install 'moto[server]'`")]
    MotoMissing,
    /// moto did not start serving.
    #[error("the moto S3 server did not start on 127.0.0.1: {log}")]
    MotoStart {
        /// The end of its log.
        log: String,
    },
    /// The bucket could not be created.
    #[error("creating bucket {bucket} on the lab's S3 server failed: {detail}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// The HTTP status or error.
        detail: String,
    },
    /// The PostgreSQL server binaries are missing.
    #[error(
        "the lab needs the PostgreSQL server binaries (initdb, pg_ctl, psql): \
         `apt-get install postgresql`, or set LITEVAULT_PG_BIN to their folder"
    )]
    PostgresMissing,
    /// initdb, pg_ctl or psql failed.
    #[error("PostgreSQL: {step} failed: {detail}")]
    Postgres {
        /// What was run.
        step: &'static str,
        /// Its error output.
        detail: String,
    },
    /// A proxy could not start.
    #[error("delay proxy: {0}")]
    Proxy(#[from] ProxyError),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A setting from the environment is malformed.
    #[error("{name}: {problem}")]
    BadSetting {
        /// The environment variable.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Stopping left something behind (named, with what to do).
    #[error("the lab did not stop cleanly: {0}")]
    Cleanup(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

/// A running lab. Dropping it stops everything (see the module docs).
pub struct Lab {
    services: Arc<Mutex<Services>>,
    registry_id: u64,
    run_dir: PathBuf,
    _lock: File,
    rtt: Duration,
    rt: Option<tokio::runtime::Runtime>,
    s3_port: u16,
    s3_proxy: Option<DelayProxy>,
    fuse: FuseStatus,
    pg_port: Option<u16>,
    pg_proxy: Option<DelayProxy>,
    leftovers: Vec<String>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("run_dir", &self.run_dir)
            .field("rtt", &self.rtt)
            .field("s3_port", &self.s3_port)
            .field("fuse", &self.fuse)
            .field("pg_port", &self.pg_port)
            .finish_non_exhaustive()
    }
}

/// The processes and mount a lab must stop, shared with the signal handler.
#[derive(Default)]
struct Services {
    mountpoint: Option<PathBuf>,
    s3fs: Option<Child>,
    moto: Option<Child>,
    pg: Option<PgProcess>,
    /// Removed once everything stopped.
    run_dir: Option<PathBuf>,
    stopped: bool,
}

struct PgProcess {
    bin: PathBuf,
    data: PathBuf,
    postmaster: Option<u32>,
}

impl Services {
    /// Stops everything, mount first (s3fs flushes through the S3 server),
    /// PostgreSQL last. Idempotent. Returns what could not be stopped.
    fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.stopped {
            return problems;
        }
        self.stopped = true;
        if let Some(m) = self.mountpoint.take()
            && let Err(e) = unmount(&m)
        {
            problems.push(e);
        }
        if let Some(c) = self.s3fs.take()
            && let Err(e) = stop_child(c, "s3fs")
        {
            problems.push(e);
        }
        if let Some(c) = self.moto.take()
            && let Err(e) = stop_child(c, "moto")
        {
            problems.push(e);
        }
        if let Some(pg) = self.pg.take() {
            let _ = as_pg_user(
                &pg.bin.join("pg_ctl"),
                &[
                    "-D",
                    &pg.data.to_string_lossy(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
            if let Some(pid) = pg.postmaster
                && let Err(e) = stop_pid(pid, "postgres", libc::SIGQUIT)
            {
                problems.push(e);
            }
        }
        // Never remove a folder with something mounted in it: that would
        // delete the bucket's objects through the mount.
        if let Some(dir) = self.run_dir.take()
            && problems.is_empty()
            && !is_mounted(&dir.join("mnt"))
        {
            let _ = std::fs::remove_dir_all(&dir);
        }
        problems
    }
}

impl signals::Stop for Mutex<Services> {
    fn stop_now(&self) -> Vec<String> {
        self.lock().unwrap_or_else(|e| e.into_inner()).stop()
    }
}

static NEXT_RUN: AtomicU64 = AtomicU64::new(0);

impl Lab {
    /// Cleans leftovers of crashed runs in `opts.base_dir`, then starts the
    /// lab. FUSE problems do not fail the start ([`Lab::fuse`] says why);
    /// a missing S3 server or PostgreSQL does, with what to install.
    pub fn start(opts: &LabOptions) -> Result<Lab, LabError> {
        if std::env::var(NO_SERVICES_ENV).is_ok_and(|v| v == "1") {
            return Err(LabError::NotMarkedIgnore);
        }
        std::fs::create_dir_all(&opts.base_dir)
            .map_err(io_err(format!("creating {}", opts.base_dir.display())))?;
        let base = opts
            .base_dir
            .canonicalize()
            .map_err(io_err(format!("resolving {}", opts.base_dir.display())))?;
        // 0755 at least, so the postgres user reaches its data folder.
        let _ = std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755));
        let leftovers = clean_leftovers(&base);
        // The folder is made and locked under a name the leftover sweep of a
        // lab starting at the same moment ignores, then renamed: a `run-`
        // folder without a held lock is always a crashed run's.
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT_RUN.fetch_add(1, Ordering::Relaxed)
        );
        let staging = base.join(format!("new-{name}"));
        std::fs::create_dir_all(&staging)
            .map_err(io_err(format!("creating {}", staging.display())))?;
        let _ = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o755));
        let lock = lock_run_dir(&staging)?
            .ok_or_else(|| LabError::Cleanup(format!("{} is locked", staging.display())))?;
        let run_dir = base.join(format!("run-{name}"));
        std::fs::rename(&staging, &run_dir).map_err(io_err(format!(
            "renaming {} to {}",
            staging.display(),
            run_dir.display()
        )))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lab-proxy")
            .enable_all()
            .build()
            .map_err(io_err("starting the lab's runtime"))?;
        let services = Arc::new(Mutex::new(Services {
            run_dir: Some(run_dir.clone()),
            ..Services::default()
        }));
        let weak: std::sync::Weak<dyn signals::Stop> =
            Arc::downgrade(&services) as std::sync::Weak<Mutex<Services>>;
        let registry_id = signals::register(weak);
        let mut lab = Lab {
            services,
            registry_id,
            run_dir,
            _lock: lock,
            rtt: opts.rtt,
            rt: Some(rt),
            s3_port: 0,
            s3_proxy: None,
            fuse: FuseStatus::Disabled("not started".into()),
            pg_port: None,
            pg_proxy: None,
            leftovers,
        };
        // From here on an error drops `lab`, which stops what was started.
        lab.start_s3()?;
        lab.fuse = if opts.fuse {
            lab.start_fuse()
        } else {
            FuseStatus::Disabled(format!(
                "FUSE mount not asked for ({NO_FUSE_ENV}=1 or LabOptions::fuse = false)"
            ))
        };
        if opts.postgres {
            lab.start_postgres(opts.pg_shared_buffers.as_deref())?;
        }
        Ok(lab)
    }

    fn services(&self) -> std::sync::MutexGuard<'_, Services> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_proxy(&self, upstream: SocketAddr) -> Result<DelayProxy, LabError> {
        // Cannot fail: `rt` is only taken by `stop_all`, after which the lab
        // is dropped or consumed.
        let rt = self.rt.as_ref().expect("runtime lives as long as the lab");
        let rtt = self.rtt;
        // A scoped thread: block_on must not run on a runtime thread, and
        // the caller may be on one.
        let proxy = std::thread::scope(|s| {
            s.spawn(|| rt.block_on(DelayProxy::start("127.0.0.1:0", upstream, rtt)))
                .join()
                // Only re-raises a panic of the thread: a failed start is an
                // error it returns.
                .expect("proxy start thread")
        })?;
        Ok(proxy)
    }

    /// This lab's folder (logs, PID files, the mount point, the cluster).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The round trip the proxies add.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// The network model in words, for reports.
    pub fn network_description(&self) -> String {
        format!(
            "servers on 127.0.0.1; \"remote\" backends reach them through a TCP proxy adding \
             {:?} per round trip ({:?} each way, no bandwidth limit): the S3 server (moto) \
             behind the s3fs mount and the replica, and PostgreSQL (proxied)",
            self.rtt,
            self.rtt / 2
        )
    }

    /// What a previous crashed run left behind and this start cleaned.
    pub fn leftovers_cleaned(&self) -> &[String] {
        &self.leftovers
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// The lab's S3 keys (pass them explicitly: nothing is read from the
    /// environment or a metadata endpoint).
    pub fn credentials(&self) -> S3Credentials {
        S3Credentials {
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: SECRET_ACCESS_KEY.into(),
        }
    }

    /// The S3 endpoint, direct or through the delaying proxy.
    pub fn s3_endpoint(&self, proxied: bool) -> String {
        if proxied {
            // Cannot fail: a `Lab` is only returned once `start_s3` set the
            // proxy, and only `stop_all` clears it, as the lab goes away.
            format!(
                "http://{}",
                self.s3_proxy
                    .as_ref()
                    .expect("the S3 proxy lives as long as the lab")
                    .addr()
            )
        } else {
            format!("http://127.0.0.1:{}", self.s3_port)
        }
    }

    /// A replica URL for `prefix` in the lab's bucket.
    pub fn replica_url(&self, prefix: &str, proxied: bool) -> String {
        format!(
            "s3://{BUCKET}/{}?endpoint={}&region=us-east-1&force-path-style=true",
            prefix.trim_matches('/'),
            self.s3_endpoint(proxied)
        )
    }

    /// The replica at `prefix`, with the lab's credentials.
    pub fn replica(&self, prefix: &str, proxied: bool) -> Result<Replica, ReplicaError> {
        Replica::open_with_credentials(
            &self.replica_url(prefix, proxied),
            Some(&self.credentials()),
        )
    }

    /// Whether the bucket is mounted, and where.
    pub fn fuse(&self) -> &FuseStatus {
        &self.fuse
    }

    /// The mount point, when mounted.
    pub fn fuse_mount(&self) -> Option<&Path> {
        match &self.fuse {
            FuseStatus::Mounted(p) => Some(p),
            _ => None,
        }
    }

    /// The URL of the lab's [`PG_DATABASE`], direct or through the delaying
    /// proxy; `None` without PostgreSQL.
    pub fn postgres_url(&self, proxied: bool) -> Option<String> {
        let port = if proxied {
            self.pg_proxy.as_ref()?.addr().port()
        } else {
            self.pg_port?
        };
        Some(self.pg_url_on(port, PG_DATABASE))
    }

    /// The PIDs of the processes the lab runs (moto, s3fs, the postmaster),
    /// with their names.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let s = self.services();
        let mut v = Vec::new();
        if let Some(c) = &s.moto {
            v.push(("moto", c.id()));
        }
        if let Some(c) = &s.s3fs {
            v.push(("s3fs", c.id()));
        }
        if let Some(pid) = s.pg.as_ref().and_then(|p| p.postmaster) {
            v.push(("postgres", pid));
        }
        v
    }

    /// Stops everything and says what could not be stopped.
    pub fn shutdown(mut self) -> Result<(), LabError> {
        let problems = self.stop_all();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LabError::Cleanup(problems.join("; ")))
        }
    }

    fn stop_all(&mut self) -> Vec<String> {
        let problems = self.services().stop();
        // The proxies after the mount (s3fs flushes through them).
        self.s3_proxy = None;
        self.pg_proxy = None;
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        signals::unregister(self.registry_id);
        problems
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for p in self.stop_all() {
            eprintln!("bench lab: {p}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_to_everything_on_and_a_10ms_round_trip() {
        let o = LabOptions::new("/tmp/x");
        assert_eq!(o.rtt, Duration::from_millis(10));
        assert!(o.fuse && o.postgres);
    }
}
