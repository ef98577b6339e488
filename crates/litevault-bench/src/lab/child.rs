//! The programs a benchmark runs beside a lab (a replicator, an app, a load
//! generator, a measurement driver): each in its own process group, killed
//! with its group by the lab's signal handler like the lab's own processes,
//! and when dropped before it was waited for. Waiting gives the exit code
//! and the CPU time (`wait4`'s rusage).

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{LabError, io_err, signals};

/// How a [`Spawned`] process ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ended {
    /// The exit code, or minus the signal that ended it.
    pub code: i32,
    /// User plus system CPU time of the process (and of its children it
    /// waited for).
    pub cpu: Duration,
    /// It was killed because it outlived the timeout.
    pub timed_out: bool,
}

/// The process group of a live child (`None` once it has been reaped, so
/// a reused PID is never signalled).
struct Group(Mutex<Option<u32>>);

impl Group {
    fn kill(&self, sig: libc::c_int) {
        if let Some(pid) = *self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            // SAFETY: killpg has no memory-safety preconditions.
            unsafe {
                libc::killpg(pid as libc::pid_t, sig);
            }
        }
    }

    fn reaped(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl signals::Stop for Group {
    fn stop_now(&self) -> Vec<String> {
        self.kill(libc::SIGKILL);
        Vec::new()
    }
}

/// A running child process (see the module docs).
pub struct Spawned {
    name: String,
    pid: u32,
    group: Arc<Group>,
    registry_id: u64,
    ended: Option<Ended>,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Spawned {
    /// Starts `cmd` (its stdio as the caller set it) in a new process group
    /// named `name` in messages.
    pub fn start(cmd: &mut Command, name: &str) -> Result<Spawned, LabError> {
        let group = Arc::new(Group(Mutex::new(None)));
        // Registered before the start: a signal in between still finds it.
        let weak: Weak<dyn signals::Stop> = Arc::downgrade(&group) as Weak<dyn signals::Stop>;
        let registry_id = signals::register(weak);
        let child = match cmd.process_group(0).spawn() {
            Ok(c) => c,
            Err(e) => {
                signals::unregister(registry_id);
                return Err(io_err(format!("starting {name} ({:?})", cmd.get_program()))(e));
            }
        };
        // The process is waited for with wait4 below; std's handle is not
        // used again (dropping it neither waits nor kills).
        let pid = child.id();
        drop(child);
        *group.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        Ok(Spawned {
            name: name.to_string(),
            pid,
            group,
            registry_id,
            ended: None,
        })
    }

    /// Its process ID (and process group ID).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it ended, if it has (reaps it then; never blocks).
    pub fn try_ended(&mut self) -> Option<Ended> {
        if self.ended.is_none()
            && let Some((status, cpu)) = wait4(self.pid, libc::WNOHANG)
        {
            self.finish(status, cpu, false);
        }
        self.ended
    }

    /// Sends `sig` to the process (not its group), unless it has ended.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.try_ended().is_none() {
            // SAFETY: kill has no memory-safety preconditions; the process
            // is not reaped yet, so its PID is still ours.
            unsafe {
                libc::kill(self.pid as libc::pid_t, sig);
            }
        }
    }

    /// Waits for the process to end; after `timeout` its group gets
    /// SIGKILL. The end time is exact (a blocking wait).
    pub fn wait(mut self, timeout: Duration) -> Ended {
        if let Some(e) = self.try_ended() {
            return e;
        }
        let (cancel, cancelled) = std::sync::mpsc::channel::<()>();
        let group = self.group.clone();
        let watchdog = std::thread::spawn(move || {
            if cancelled.recv_timeout(timeout).is_err() {
                group.kill(libc::SIGKILL);
                true
            } else {
                false
            }
        });
        let (status, cpu) = wait4(self.pid, 0).unwrap_or((0, Duration::ZERO));
        self.group.reaped();
        let _ = cancel.send(());
        let timed_out = watchdog.join().unwrap_or(false);
        self.finish(status, cpu, timed_out);
        self.ended.expect("set by finish")
    }

    /// Sends `sig`, then waits as [`Spawned::wait`] does.
    pub fn stop(mut self, sig: libc::c_int, timeout: Duration) -> Ended {
        self.signal(sig);
        self.wait(timeout)
    }

    fn finish(&mut self, status: libc::c_int, cpu: Duration, timed_out: bool) {
        self.group.reaped();
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            -libc::WTERMSIG(status)
        } else {
            status
        };
        self.ended = Some(Ended {
            code,
            cpu,
            timed_out,
        });
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.try_ended().is_none() {
            self.group.kill(libc::SIGKILL);
            if let Some((status, cpu)) = wait4(self.pid, 0) {
                self.finish(status, cpu, true);
            }
        }
        signals::unregister(self.registry_id);
    }
}

/// `wait4(pid, options)`: the status and CPU time once the process ended,
/// `None` while it runs (with `WNOHANG`) or when it cannot be waited for.
fn wait4(pid: u32, options: libc::c_int) -> Option<(libc::c_int, Duration)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: a zeroed rusage is valid; wait4 writes into both.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, options, &mut ru) };
        if r == pid as libc::pid_t {
            let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
            return Some((status, tv(ru.ru_utime) + tv(ru.ru_stime)));
        }
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_signals_and_timeouts() {
        let p = Spawned::start(Command::new("sh").args(["-c", "exit 3"]), "sh").unwrap();
        assert_eq!(p.wait(Duration::from_secs(30)).code, 3);
        let p = Spawned::start(Command::new("sleep").arg("30"), "sleep").unwrap();
        let e = p.stop(libc::SIGTERM, Duration::from_secs(30));
        assert_eq!((e.code, e.timed_out), (-libc::SIGTERM, false));
        let p = Spawned::start(Command::new("sleep").arg("30"), "sleep").unwrap();
        let e = p.wait(Duration::from_millis(100));
        assert_eq!((e.code, e.timed_out), (-libc::SIGKILL, true));
    }

    #[test]
    fn dropping_a_live_child_kills_its_group() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("pid");
        // The shell's own child, a second sleep, is in the same group.
        let p = Spawned::start(
            Command::new("sh")
                .args(["-c", "sleep 30 & echo $! ; wait"])
                .stdout(std::fs::File::create(&out).unwrap()),
            "sh",
        )
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let grandchild: u32 = loop {
            if let Ok(pid) = std::fs::read_to_string(&out).unwrap().trim().parse() {
                break pid;
            }
            assert!(std::time::Instant::now() < deadline, "no PID printed");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(super::super::process::pid_alive(grandchild));
        drop(p);
        // Reaped by init (or a subreaper) soon after the kill.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while super::super::process::pid_alive(grandchild) {
            assert!(std::time::Instant::now() < deadline, "the group survived");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    const SIGNAL_CHILD_ENV: &str = "LITEVAULT_LAB_SIGNAL_CHILD_PIDFILE";

    /// The child half of the next test: a no-op unless run by it.
    #[test]
    fn signal_child() {
        let Some(pidfile) = std::env::var_os(SIGNAL_CHILD_ENV) else {
            return;
        };
        let p = Spawned::start(Command::new("sleep").arg("60"), "sleep").unwrap();
        std::fs::write(&pidfile, p.pid().to_string()).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        panic!("the signal did not end this process");
    }

    #[test]
    fn a_signal_kills_live_groups_and_still_ends_the_process() {
        use std::os::unix::process::ExitStatusExt;
        let d = tempfile::tempdir().unwrap();
        let pidfile = d.path().join("pid");
        // This test binary again, running only `signal_child`.
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "lab::child::tests::signal_child", "--nocapture"])
            .env(SIGNAL_CHILD_ENV, &pidfile)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let sleeper: u32 = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the child never started"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        // SAFETY: kill on our own child's PID.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while super::super::process::pid_alive(sleeper) {
            assert!(
                std::time::Instant::now() < deadline,
                "the spawned group survived"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
