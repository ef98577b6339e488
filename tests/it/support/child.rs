//! Child processes: their output read as it comes, to wait for the line that
//! shows a state (a server's bound port, a warning); a listening socket
//! bound here and handed to a child the way systemd socket activation does;
//! and whether a given process is the one listening on a port.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait::wait_until;

/// Lines a child wrote to one of its pipes, read on a thread until the pipe
/// closes (so the child never blocks on a full pipe).
#[derive(Clone)]
pub struct Output {
    inner: Arc<Mutex<(Vec<String>, bool)>>,
}

impl Output {
    /// Starts reading `pipe` (a child's `stdout` or `stderr`).
    pub fn capture(pipe: impl Read + Send + 'static) -> Output {
        let out = Output {
            inner: Arc::new(Mutex::new((Vec::new(), false))),
        };
        let inner = out.inner.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                match line {
                    Ok(l) => inner.lock().unwrap().0.push(l),
                    Err(_) => break,
                }
            }
            inner.lock().unwrap().1 = true;
        });
        out
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.inner.lock().unwrap().0.join("\n")
    }

    /// The first line read so far that contains `marker`.
    pub fn line_with(&self, marker: &str) -> Option<String> {
        let g = self.inner.lock().unwrap();
        g.0.iter().find(|l| l.contains(marker)).cloned()
    }

    /// Waits (up to `within`) for a line containing `marker` and returns
    /// it. Fails at once if the pipe closes without it (the child exited),
    /// with everything it wrote.
    pub fn wait_for_line(&self, within: Duration, marker: &str) -> String {
        wait_until(within, format_args!("a line with {marker:?}"), || {
            if let Some(l) = self.line_with(marker) {
                return Some(l);
            }
            if self.inner.lock().unwrap().1 {
                // Read once more: the line may have come with the end.
                if let Some(l) = self.line_with(marker) {
                    return Some(l);
                }
                panic!(
                    "the output ended without a line with {marker:?}:\n{}",
                    self.text()
                );
            }
            None
        })
    }
}

/// A listening socket on 127.0.0.1 at a port the system picks, bound by the
/// test itself: the port is known before any child starts and no other
/// process can take it in between.
pub fn bound_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Passing a bound socket to a child (systemd's socket activation): the
/// bench lab's, so the tests and the benchmarks start children one way.
pub use litevault_bench::lab::{as_descriptor_3, with_passed_socket};

/// Whether process `pid` itself holds a socket listening on TCP `port`
/// (from /proc): tells a server that bound its port from another one that
/// happens to answer there.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local address (ip:port, hex), ..., state (0A: LISTEN), ..., inode
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && p == Some(port) {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|link| inodes.iter().any(|i| link.as_os_str() == i.as_str()))
}

/// Whether process `pid` has a handler for signal `sig` (the `SigCgt` mask
/// of /proc/PID/status): a signal sent before it does gets the default
/// action instead.
pub fn catches_signal(pid: u32, sig: libc::c_int) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            let mask = s.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|m| m & (1u64 << (sig - 1)) != 0)
}

/// Fails the test with the child's exit status if it has exited.
pub fn assert_running(child: &mut Child, what: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!("{what} exited: {status}");
    }
}
