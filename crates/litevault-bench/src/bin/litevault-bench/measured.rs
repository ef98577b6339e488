//! A replicator process whose peak RSS and CPU time are measured.
//!
//! A child's `ru_maxrss` counts the resident set of the process it was
//! forked from (Linux records the pre-exec high-water mark), so the command
//! runs under GNU time, whose own small fork gives an exact figure. A VmHWM
//! sampler on the real process runs as well (its figure is the one used when
//! GNU time is missing; the CPU time then comes from `wait4`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use litevault_bench::lab::Spawned;

const GNU_TIME: &str = "/usr/bin/time";

fn gnu_time() -> Option<&'static str> {
    let out = Command::new(GNU_TIME).arg("--version").output().ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.contains("GNU").then_some(GNU_TIME)
}

/// How a measured process ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Usage {
    /// Exit code (of GNU time when it wraps the command).
    pub rc: i32,
    pub timed_out: bool,
    pub seconds: f64,
    pub peak_rss_kib: Option<u64>,
    pub peak_rss_kib_sampled: Option<u64>,
    pub cpu_seconds: Option<f64>,
}

/// Peak RSS and CPU seconds from GNU time's `-f "%M %e %U %S"` report (its
/// last line; the lines before say how the command ended).
pub fn parse_time_report(text: &str) -> Option<(u64, f64)> {
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let f: Vec<&str> = last.split_whitespace().collect();
    if f.len() != 4 {
        return None;
    }
    let rss = f[0].parse().ok()?;
    let cpu = f[2].parse::<f64>().ok()? + f[3].parse::<f64>().ok()?;
    Some((rss, cpu))
}

/// The first child of `pid` (the command GNU time started).
fn child_of(pid: u32) -> Option<u32> {
    if let Ok(kids) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return kids.split_whitespace().next()?.parse().ok();
    }
    // Kernels without the children file: the process whose parent it is.
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name();
        let Some(cand) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{cand}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            return Some(cand);
        }
    }
    None
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Samples VmHWM of a process every 10 ms.
struct Sampler {
    hwm: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let hwm = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hwm.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(v) = vm_hwm_kib(pid) {
                    h.fetch_max(v, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Sampler { hwm, stop, thread }
    }

    fn close(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        Some(self.hwm.load(Ordering::Relaxed)).filter(|v| *v > 0)
    }
}

/// A command running under measurement (see the module docs).
pub struct Measured {
    proc: Spawned,
    /// The command's own PID (GNU time's child, or the process itself).
    pid: Option<u32>,
    report: Option<PathBuf>,
    sampler: Option<Sampler>,
    t0: Instant,
}

impl Measured {
    /// Starts `cmd` (program, arguments and environment are taken from it)
    /// with its output appended to `log`; GNU time's report goes to
    /// `scratch`.
    pub fn start(cmd: &Command, log: &Path, scratch: &Path) -> anyhow::Result<Measured> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let time = gnu_time();
        let report = time.map(|_| {
            scratch.join(format!(
                ".time-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ))
        });
        let mut full = match (time, &report) {
            (Some(t), Some(r)) => {
                let mut c = Command::new(t);
                c.args(["-f", "%M %e %U %S", "-o"])
                    .arg(r)
                    .arg(cmd.get_program());
                c
            }
            _ => Command::new(cmd.get_program()),
        };
        full.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => full.env(k, v),
                None => full.env_remove(k),
            };
        }
        full.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let name: OsString = cmd.get_program().into();
        let t0 = Instant::now();
        let mut proc = Spawned::start(&mut full, &name.to_string_lossy())?;
        let pid = if time.is_some() {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Some(kid) = child_of(proc.pid()) {
                    break Some(kid);
                }
                if proc.try_ended().is_some() || Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            Some(proc.pid())
        };
        Ok(Measured {
            proc,
            pid,
            report,
            sampler: pid.map(Sampler::start),
            t0,
        })
    }

    /// The exit code, once it ended.
    pub fn exit_code(&mut self) -> Option<i32> {
        self.proc.try_ended().map(|e| e.code)
    }

    /// Sends `sig` to the command (not to GNU time) and waits up to
    /// `timeout` for it to end.
    pub fn stop(mut self, sig: libc::c_int, timeout: Duration) -> Usage {
        if let Some(pid) = self.pid
            && self.proc.try_ended().is_none()
        {
            // SAFETY: kill has no memory-safety preconditions; the command
            // is a child of our live (unreaped) child, so its PID is not
            // reused yet.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
        let ended = self.proc.wait(timeout);
        let seconds = self.t0.elapsed().as_secs_f64();
        let sampled = self.sampler.take().and_then(Sampler::close);
        let mut usage = Usage {
            rc: ended.code,
            timed_out: ended.timed_out,
            seconds,
            peak_rss_kib: sampled,
            peak_rss_kib_sampled: sampled,
            cpu_seconds: Some(ended.cpu.as_secs_f64()),
        };
        if let Some(r) = self.report.take() {
            let parsed = std::fs::read_to_string(&r)
                .ok()
                .and_then(|t| parse_time_report(&t));
            let _ = std::fs::remove_file(&r);
            usage.cpu_seconds = None;
            if let Some((rss, cpu)) = parsed {
                usage.peak_rss_kib = Some(rss);
                usage.cpu_seconds = Some(cpu);
            }
        }
        usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_time_reports_are_read_from_their_last_line() {
        assert_eq!(
            parse_time_report("22712 3.01 0.50 0.25\n"),
            Some((22712, 0.75))
        );
        assert_eq!(
            parse_time_report("Command exited with non-zero status 1\n9000 0.10 0.05 0.05\n\n"),
            Some((9000, 0.1))
        );
        assert_eq!(parse_time_report("Command terminated by signal 9\n"), None);
        assert_eq!(parse_time_report(""), None);
    }
}
