//! Processes and run folders: a free port for PostgreSQL, a bound socket
//! passed to a child, PID files, stopping what a lab started, the run
//! folder's lock, and leftovers of crashed runs cleaned.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::fuse::{is_mounted, unmount};
use super::{LabError, io_err};

/// A port that was free a moment ago: racy, another process may take it
/// first. Only for programs that must be told their port before they start
/// and can neither bind port 0 nor take a bound socket (PostgreSQL behind
/// the delay proxy, whose starter tries another port when the bind fails).
/// A `litevault` child takes a bound socket instead ([`with_passed_socket`]).
pub fn free_port() -> Result<u16, LabError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io_err("finding a free port on 127.0.0.1"))
}

/// A listening socket on 127.0.0.1 at a port the system picks, bound here:
/// its port is known before the child starts and nothing can take it.
pub fn bound_listener() -> Result<(TcpListener, u16), LabError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err("binding 127.0.0.1:0"))?;
    let port = l
        .local_addr()
        .map_err(io_err("reading the bound port"))?
        .port();
    Ok((l, port))
}

/// A command that runs `program` with `listener` as descriptor 3,
/// `LISTEN_FDS=1` and `LISTEN_PID` naming the program itself: systemd's
/// socket activation, which `litevault replicate --addr systemd` takes. A
/// `sh` exports its own PID and execs the program, which keeps that PID.
/// Arguments added to the command go to the program. Drop the caller's
/// listener once the child started, so a child that dies leaves the port
/// refusing connections instead of queueing them.
pub fn with_passed_socket(program: &Path, listener: &TcpListener) -> std::process::Command {
    let mut c = std::process::Command::new("sh");
    c.args(["-c", r#"LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@""#])
        .arg(program)
        .env("LISTEN_FDS", "1")
        .env_remove("LISTEN_FDNAMES");
    as_descriptor_3(&mut c, listener);
    c
}

/// Makes `listener` descriptor 3 of the process `c` starts (and keeps it
/// open across exec); sets no variable.
pub fn as_descriptor_3(c: &mut std::process::Command, listener: &TcpListener) {
    use std::os::unix::process::CommandExt;
    let fd = listener.as_raw_fd();
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let r = if fd == 3 {
                // Already in place: keep it open across exec.
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                // The copy has no close-on-exec flag.
                libc::dup2(fd, 3)
            };
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
    }
}

pub(super) fn write_pid(path: &Path, pid: u32) -> Result<(), LabError> {
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
pub(super) fn tail(path: &Path) -> String {
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
pub(super) fn stop_pid(pid: u32, name: &str, sig: libc::c_int) -> Result<(), String> {
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
pub(super) fn stop_child(mut c: Child, name: &str) -> Result<(), String> {
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

/// Opens `<run>/lock` and takes an exclusive flock on it: `None` when a live
/// process holds it.
pub(super) fn lock_run_dir(run: &Path) -> Result<Option<File>, LabError> {
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
pub(super) fn clean_leftovers(base: &Path) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

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
        // A process another test thread forks at this moment holds a copy
        // of the descriptor until it execs: wait until the lock is free.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while lock_run_dir(&run).unwrap().is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the lock was never freed"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
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
