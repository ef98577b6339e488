//! SIGINT/SIGTERM/SIGHUP: stop every live lab and every [`Spawned`]
//! process, then let the signal do what it did before.
//!
//! [`Spawned`]: super::Spawned

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock, Weak};

/// What the handler stops: a lab's services, a spawned process group.
pub(super) trait Stop: Send + Sync {
    /// Stops it now; returns what could not be stopped.
    fn stop_now(&self) -> Vec<String>;
}

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static STATE: OnceLock<Mutex<Registry>> = OnceLock::new();
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

#[derive(Default)]
struct Registry {
    next: u64,
    labs: Vec<(u64, Weak<dyn Stop>)>,
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

pub(super) fn register(services: Weak<dyn Stop>) -> u64 {
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
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
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
            for p in l.stop_now() {
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
