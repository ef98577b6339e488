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
//!   so the process still ends the way the signal asked;
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

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::proxy::{DelayProxy, ProxyError};
use litevault::Replica;
use litevault::replica::{ReplicaError, S3Credentials};

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
    /// moto did not answer.
    #[error("the moto S3 server did not start on 127.0.0.1:{port}: {log}")]
    MotoStart {
        /// The port it was given.
        port: u16,
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
        let registry_id = signals::register(Arc::downgrade(&services));
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

    fn start_s3(&mut self) -> Result<(), LabError> {
        let ok = Command::new("python3")
            .args(["-c", "import moto.server, flask"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err(LabError::MotoMissing);
        }
        let port = free_port()?;
        let log_path = self.run_dir.join("moto.log");
        let log = File::create(&log_path).map_err(io_err("creating moto.log"))?;
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io_err("moto.log"))?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C reaches us, and we
            // stop it after the mount that depends on it.
            .process_group(0)
            .spawn()
            .map_err(io_err("starting python3 -m moto.server"))?;
        write_pid(&self.run_dir.join("moto.pid"), child.id())?;
        self.services().moto = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/").is_err() {
            let exited = self
                .services()
                .moto
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(LabError::MotoStart {
                    port,
                    log: tail(&log_path),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        match http(port, "PUT", &format!("/{BUCKET}")) {
            Ok(200) => {}
            Ok(code) => {
                return Err(LabError::Bucket {
                    bucket: BUCKET.into(),
                    detail: format!("HTTP {code}"),
                });
            }
            Err(e) => {
                return Err(LabError::Bucket {
                    bucket: BUCKET.into(),
                    detail: e.to_string(),
                });
            }
        }
        self.s3_port = port;
        self.s3_proxy = Some(self.start_proxy(SocketAddr::from(([127, 0, 0, 1], port)))?);
        Ok(())
    }

    fn start_fuse(&mut self) -> FuseStatus {
        if Command::new("s3fs")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return FuseStatus::Unavailable(
                "s3fs is not installed: `apt-get install -y s3fs fuse3`".into(),
            );
        }
        match self.mount_s3fs() {
            Ok(p) => FuseStatus::Mounted(p),
            Err(reason) => FuseStatus::Unavailable(reason),
        }
    }

    fn mount_s3fs(&mut self) -> Result<PathBuf, String> {
        let mnt = self.run_dir.join("mnt");
        std::fs::create_dir_all(&mnt).map_err(|e| format!("creating {}: {e}", mnt.display()))?;
        let home = self.run_dir.join("s3fs-home");
        std::fs::create_dir_all(&home).map_err(|e| format!("creating {}: {e}", home.display()))?;
        let passwd = self.run_dir.join("passwd-s3fs");
        std::fs::write(&passwd, format!("{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}\n"))
            .and_then(|_| std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)))
            .map_err(|e| format!("writing {}: {e}", passwd.display()))?;
        // Cannot fail: `start` mounts FUSE only after `start_s3` set the
        // proxy.
        let proxy = self
            .s3_proxy
            .as_ref()
            .expect("S3 starts before FUSE")
            .addr();
        let log_path = self.run_dir.join("s3fs.log");
        let log = File::create(&log_path).map_err(|e| format!("creating s3fs.log: {e}"))?;
        let opts = format!(
            "url=http://{proxy},use_path_request_style,endpoint=us-east-1,passwd_file={},dbglevel=warn",
            passwd.display()
        );
        let child = Command::new("s3fs")
            .arg(BUCKET)
            .arg(&mnt)
            .args(["-f", "-o", &opts])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", &home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting s3fs: {e}"))?;
        let _ = write_pid(&self.run_dir.join("s3fs.pid"), child.id());
        {
            let mut s = self.services();
            s.s3fs = Some(child);
            // Registered before it shows up, so a signal during the wait
            // still unmounts.
            s.mountpoint = Some(mnt.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if is_mounted(&mnt) {
                return Ok(mnt);
            }
            let exited = self
                .services()
                .s3fs
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                let mut s = self.services();
                s.s3fs = None;
                s.mountpoint = None;
                return Err(format!(
                    "s3fs could not mount the bucket ({status}): {}",
                    tail(&log_path)
                ));
            }
            if Instant::now() > deadline {
                let mut s = self.services();
                if let Some(c) = s.s3fs.take() {
                    let _ = stop_child(c, "s3fs");
                }
                let _ = unmount(&mnt);
                s.mountpoint = None;
                return Err(format!(
                    "s3fs did not mount {} within 20 s: {}",
                    mnt.display(),
                    tail(&log_path)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_postgres(&mut self, shared_buffers: Option<&str>) -> Result<(), LabError> {
        let bin = pg_bin_dir().ok_or(LabError::PostgresMissing)?;
        let dir = self.run_dir.join("pg");
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod {}", dir.display())))?;
        if is_root() {
            let st = Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dir)
                .status()
                .map_err(io_err("running chown"))?;
            if !st.success() {
                return Err(LabError::Postgres {
                    step: "chown of the cluster folder to the postgres user",
                    detail: format!("{st}; does the `postgres` user exist?"),
                });
            }
        }
        let data = dir.join("data");
        let out = as_pg_user(
            &bin.join("initdb"),
            &[
                "-D",
                &data.to_string_lossy(),
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
        .map_err(io_err("running initdb"))?;
        if !out.status.success() {
            return Err(LabError::Postgres {
                step: "initdb",
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let log = dir.join("log");
        for _ in 0..5 {
            let port = free_port()?;
            // Default durability (fsync, synchronous_commit): a benchmark
            // compares with what a managed database does.
            let mut opts = format!(
                "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={}",
                dir.display()
            );
            if let Some(sb) = shared_buffers {
                if sb.is_empty() || !sb.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(LabError::BadSetting {
                        name: "pg_shared_buffers",
                        problem: format!("{sb:?} is not a size; write e.g. 8MB or 128MB"),
                    });
                }
                opts.push_str(&format!(" -c shared_buffers={sb}"));
            }
            self.services().pg = Some(PgProcess {
                bin: bin.clone(),
                data: data.clone(),
                postmaster: None,
            });
            let st = as_pg_user(
                &bin.join("pg_ctl"),
                &[
                    "-D",
                    &data.to_string_lossy(),
                    "-l",
                    &log.to_string_lossy(),
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
            .map_err(io_err("running pg_ctl start"))?;
            if st.success() {
                let postmaster = std::fs::read_to_string(data.join("postmaster.pid"))
                    .ok()
                    .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()));
                if let Some(pg) = self.services().pg.as_mut() {
                    pg.postmaster = postmaster;
                }
                self.pg_port = Some(port);
                let out = Command::new(bin.join("psql"))
                    .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
                    .arg(self.pg_url_on(port, "postgres"))
                    .args(["-c", &format!("CREATE DATABASE {PG_DATABASE}")])
                    .output()
                    .map_err(io_err("running psql"))?;
                if !out.status.success() {
                    return Err(LabError::Postgres {
                        step: "CREATE DATABASE",
                        detail: String::from_utf8_lossy(&out.stderr).into_owned(),
                    });
                }
                self.pg_proxy = Some(self.start_proxy(SocketAddr::from(([127, 0, 0, 1], port)))?);
                return Ok(());
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if !text.contains("could not bind") && !text.contains("in use") {
                return Err(LabError::Postgres {
                    step: "pg_ctl start",
                    detail: text,
                });
            }
        }
        Err(LabError::Postgres {
            step: "pg_ctl start",
            detail: "no free port after 5 tries".into(),
        })
    }

    fn pg_url_on(&self, port: u16, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{db}")
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

// ---- processes, mounts, files ----

fn free_port() -> Result<u16, LabError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_err("finding a free port on 127.0.0.1"))
}

/// One HTTP/1.1 request without a body to 127.0.0.1; the status code.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no HTTP status line"))
}

fn write_pid(path: &Path, pid: u32) -> Result<(), LabError> {
    std::fs::write(path, format!("{pid}\n")).map_err(io_err(format!("writing {}", path.display())))
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The last lines of a log, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(8);
    let t = lines[start..].join(" | ");
    if t.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        t
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn pg_bin_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("LITEVAULT_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    ["17", "16", "15", "14", "13"]
        .iter()
        .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
        .find(|d| d.join("initdb").exists())
}

/// A command run as the `postgres` user when we are root (initdb refuses root).
fn as_pg_user(bin: &Path, args: &[&str]) -> Command {
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    c.args(args);
    c
}

/// Whether a process exists (and is not a zombie).
pub(crate) fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

fn cmdline_contains(pid: u32, needle: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).contains(needle))
        .unwrap_or(false)
}

fn signal_pid(pid: u32, sig: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Stops a process we did not spawn (a postmaster, a crashed run's
/// children): `sig`, then SIGKILL after 10 s.
fn stop_pid(pid: u32, name: &str, sig: libc::c_int) -> Result<(), String> {
    if !pid_alive(pid) {
        return Ok(());
    }
    signal_pid(pid, sig);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(pid) {
        if Instant::now() > deadline {
            signal_pid(pid, libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(200));
            if pid_alive(pid) {
                return Err(format!("{name} (pid {pid}) survives SIGKILL"));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Stops a child: SIGTERM, then SIGKILL after 10 s; reaps it.
fn stop_child(mut c: Child, name: &str) -> Result<(), String> {
    if matches!(c.try_wait(), Ok(Some(_))) {
        return Ok(());
    }
    signal_pid(c.id(), libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = c.kill();
                return c
                    .wait()
                    .map(|_| ())
                    .map_err(|e| format!("{name} (pid {}) could not be reaped: {e}", c.id()));
            }
        }
    }
}

/// Mount points, from /proc/self/mountinfo (octal escapes decoded).
fn mount_points() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .collect()
}

fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point. `path`'s parent must be canonical (a
/// dead FUSE mount cannot be canonicalized itself).
pub(crate) fn is_mounted(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// Unmounts a FUSE mount: `fusermount3 -u`, then `umount`, then a lazy
/// `umount -l` (a busy mount is detached and goes once its files close).
fn unmount(path: &Path) -> Result<(), String> {
    if !is_mounted(path) {
        return Ok(());
    }
    let tries: [(&str, &[&str]); 3] = [
        ("fusermount3", &["-u"]),
        ("umount", &[]),
        ("umount", &["-l"]),
    ];
    let mut last = String::new();
    for (cmd, args) in tries {
        match Command::new(cmd).args(args).arg(path).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => last = String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => last = format!("{cmd}: {e}"),
        }
        if !is_mounted(path) {
            return Ok(());
        }
    }
    Err(format!(
        "{} is still mounted ({last}); unmount it with `umount -l {}`",
        path.display(),
        path.display()
    ))
}

/// Opens `<run>/lock` and takes an exclusive flock on it: `None` when a live
/// process holds it.
fn lock_run_dir(run: &Path) -> Result<Option<File>, LabError> {
    let path = run.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("opening {}", path.display())))?;
    // SAFETY: flock on a file descriptor we own.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok((r == 0).then_some(f))
}

/// Cleans the run folders in `base` that no live process holds. Returns what
/// it found and did.
fn clean_leftovers(base: &Path) -> Vec<String> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(base) else {
        return done;
    };
    for e in entries.flatten() {
        let run = e.path();
        let is_run = e.file_name().to_string_lossy().starts_with("run-")
            && e.file_type().is_ok_and(|t| t.is_dir());
        if !is_run {
            continue;
        }
        let lock = match lock_run_dir(&run) {
            Ok(Some(l)) => l,
            _ => continue, // alive, or not ours to touch
        };
        let mut clean = true;
        let mnt = run.join("mnt");
        if is_mounted(&mnt) {
            match unmount(&mnt) {
                Ok(()) => done.push(format!("unmounted {}", mnt.display())),
                Err(e) => {
                    done.push(e);
                    clean = false;
                }
            }
        }
        for (file, needle, sig) in [
            ("s3fs.pid", "s3fs", libc::SIGTERM),
            ("moto.pid", "moto.server", libc::SIGTERM),
            ("pg/data/postmaster.pid", "postgres", libc::SIGQUIT),
        ] {
            if let Some(pid) = read_pid(&run.join(file))
                && pid_alive(pid)
                && cmdline_contains(pid, needle)
            {
                match stop_pid(pid, needle, sig) {
                    Ok(()) => done.push(format!("stopped leftover {needle} (pid {pid})")),
                    Err(e) => {
                        done.push(e);
                        clean = false;
                    }
                }
            }
        }
        // Never remove a folder with something still mounted in it: that
        // would delete the bucket's objects through the mount.
        if clean && !is_mounted(&mnt) {
            let _ = std::fs::remove_dir_all(&run);
        }
        drop(lock);
    }
    done
}

/// SIGINT/SIGTERM/SIGHUP: stop every live lab, then let the signal do what
/// it did before.
mod signals {
    use super::*;

    static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
    static STATE: OnceLock<Mutex<Registry>> = OnceLock::new();
    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    #[derive(Default)]
    struct Registry {
        next: u64,
        labs: Vec<(u64, Weak<Mutex<Services>>)>,
        /// The handlers in place before ours, while ours are installed.
        previous: Option<Vec<(libc::c_int, libc::sigaction)>>,
        watcher: bool,
    }

    fn state() -> std::sync::MutexGuard<'static, Registry> {
        STATE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    extern "C" fn on_signal(sig: libc::c_int) {
        // Only async-signal-safe work here: one write to a pipe.
        let fd = PIPE_WRITE.load(Ordering::Relaxed);
        if fd >= 0 {
            let b = sig as u8;
            // SAFETY: write(2) is async-signal-safe; the buffer is valid.
            unsafe {
                libc::write(fd, (&b as *const u8).cast(), 1);
            }
        }
    }

    pub(super) fn register(services: Weak<Mutex<Services>>) -> u64 {
        let mut st = state();
        st.next += 1;
        let id = st.next;
        st.labs.push((id, services));
        if !st.watcher {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: pipe2 writes two descriptors into the array.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
                PIPE_WRITE.store(fds[1], Ordering::Relaxed);
                let read_fd = fds[0];
                st.watcher = std::thread::Builder::new()
                    .name("lab-signals".into())
                    .spawn(move || watch(read_fd))
                    .is_ok();
            }
        }
        if st.previous.is_none() && st.watcher {
            let mut previous = Vec::new();
            for sig in SIGNALS {
                // SAFETY: a zeroed sigaction is valid; we install a plain
                // handler and keep the old one to restore.
                unsafe {
                    let mut act: libc::sigaction = std::mem::zeroed();
                    act.sa_sigaction = on_signal as *const () as usize;
                    act.sa_flags = libc::SA_RESTART;
                    libc::sigemptyset(&mut act.sa_mask);
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, &act, &mut old) == 0 {
                        previous.push((sig, old));
                    }
                }
            }
            st.previous = Some(previous);
        }
        id
    }

    fn restore(st: &mut Registry) {
        if let Some(prev) = st.previous.take() {
            for (sig, old) in prev {
                // SAFETY: restoring a sigaction we read from the kernel.
                unsafe {
                    libc::sigaction(sig, &old, std::ptr::null_mut());
                }
            }
        }
    }

    pub(super) fn unregister(id: u64) {
        let mut st = state();
        st.labs.retain(|(i, w)| *i != id && w.strong_count() > 0);
        if st.labs.is_empty() {
            restore(&mut st);
        }
    }

    fn watch(fd: libc::c_int) {
        loop {
            let mut b = 0u8;
            // SAFETY: reading one byte into a valid buffer.
            let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
            if n != 1 {
                if n < 0
                    && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
                {
                    continue;
                }
                return;
            }
            let sig = b as libc::c_int;
            let labs: Vec<_> = state()
                .labs
                .iter()
                .filter_map(|(_, w)| w.upgrade())
                .collect();
            for l in labs {
                let problems = l.lock().unwrap_or_else(|e| e.into_inner()).stop();
                for p in problems {
                    eprintln!("bench lab: {p}");
                }
            }
            let mut st = state();
            if st.previous.is_some() {
                eprintln!("bench lab: stopped after signal {sig}");
                restore(&mut st);
                drop(st);
                // SAFETY: raise has no preconditions.
                unsafe {
                    libc::raise(sig);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/x\\134y"), "/x\\y");
        assert_eq!(unescape_mount("/end\\04"), "/end\\04");
    }

    #[test]
    fn options_default_to_everything_on_and_a_10ms_round_trip() {
        let o = LabOptions::new("/tmp/x");
        assert_eq!(o.rtt, Duration::from_millis(10));
        assert!(o.fuse && o.postgres);
    }

    #[test]
    fn a_held_lock_marks_a_run_as_alive_and_a_free_one_as_leftover() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run-1-0");
        std::fs::create_dir_all(&run).unwrap();
        let held = lock_run_dir(&run).unwrap().expect("first lock");
        // A second open file description cannot take it while held...
        assert!(lock_run_dir(&run).unwrap().is_none());
        // ...so cleaning leaves the folder alone.
        clean_leftovers(d.path());
        assert!(run.exists());
        drop(held);
        // Once free, the folder is a leftover and goes.
        clean_leftovers(d.path());
        assert!(!run.exists());
    }

    #[test]
    fn leftover_pid_files_naming_other_programs_are_not_killed() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run-2-0");
        std::fs::create_dir_all(&run).unwrap();
        // A live process that is not moto: the PID was reused.
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        std::fs::write(run.join("moto.pid"), format!("{}\n", sleeper.id())).unwrap();
        let done = clean_leftovers(d.path());
        assert!(pid_alive(sleeper.id()), "a reused PID was killed: {done:?}");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }
}
