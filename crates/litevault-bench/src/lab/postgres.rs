//! The lab's PostgreSQL cluster: initdb, pg_ctl on a free port of
//! 127.0.0.1 (as the `postgres` user when run as root), the bench database
//! and the delaying proxy in front of it.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::process::free_port;
use super::{Lab, LabError, PG_DATABASE, PgProcess, io_err};

impl Lab {
    pub(super) fn start_postgres(&mut self, shared_buffers: Option<&str>) -> Result<(), LabError> {
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
        // PostgreSQL listens on TCP for the delay proxy, and can only be
        // given a port that was free: when another process took it in
        // between, the bind fails and it tries another one.
        let mut collisions = Vec::new();
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
            collisions.push(port);
        }
        Err(LabError::Postgres {
            step: "pg_ctl start",
            detail: format!(
                "another process took each port it was given ({collisions:?}) before it could bind it"
            ),
        })
    }

    pub(super) fn pg_url_on(&self, port: u16, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{db}")
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
pub(super) fn as_pg_user(bin: &Path, args: &[&str]) -> Command {
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
