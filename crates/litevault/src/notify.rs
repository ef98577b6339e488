//! Change notifications for files, from the kernel instead of polling.
//!
//! One inotify instance serves the whole process: one watch per directory,
//! shared by everything that subscribed to names in it, and one thread that
//! reads the events and wakes the subscribers of each name (or of the whole
//! directory). A thousand databases in one folder cost one watch and no
//! timer; a write to a WAL wakes its replicator within microseconds.
//!
//! [`subscribe`] answers `None` where notifications cannot be had (not
//! Linux, the inotify instance or watch limits reached, a directory that
//! cannot be watched): the caller then polls. A [`Subscription`] can also
//! go stale (its directory was removed or renamed, or the kernel's event
//! queue overflowed and events were lost): it is woken, and
//! [`Subscription::is_live`] turns false for the first case, so the caller
//! falls back to polling rather than waiting for events that never come.
//!
//! Writes SQLite makes through its memory map of the `-shm` file raise no
//! event; the WAL frames a commit writes do, before the commit is visible
//! in the shared index, which is why a replicator woken here looks again a
//! moment later when it finds nothing new.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Which names in the directory wake a subscriber.
#[derive(Clone, Debug)]
pub enum Names {
    /// These file names only.
    Only(Vec<OsString>),
    /// Any entry of the directory created, removed or renamed (not
    /// written: a directory of busy databases would wake such a
    /// subscriber on every commit).
    Entries,
}

/// A live interest in changes to some names in one directory; dropping it
/// ends the interest (and the directory's watch, with its last subscriber).
pub struct Subscription {
    notify: Arc<Notify>,
    live: Arc<AtomicBool>,
    #[cfg(target_os = "linux")]
    id: u64,
    #[cfg(target_os = "linux")]
    dir: PathBuf,
}

impl Subscription {
    /// Resolves at the next change (at once if one came since the last
    /// call: changes between two calls are folded into one wake-up).
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// Whether events still come: false once the directory's watch ended
    /// (the directory was removed or renamed away).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("live", &self.is_live())
            .finish()
    }
}

/// Subscribes to changes of `names` in `dir`; `None` when the kernel's
/// notifications are not available here (the caller polls instead).
pub fn subscribe(dir: &Path, names: Names) -> Option<Subscription> {
    imp::subscribe(dir, names)
}

/// The directory and file name of `path`, for [`subscribe`].
pub fn split(path: &Path) -> Option<(PathBuf, OsString)> {
    let name = path.file_name()?.to_os_string();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((dir, name))
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub(super) fn subscribe(_dir: &Path, _names: Names) -> Option<Subscription> {
        None
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::sync::{Mutex, OnceLock};

    use super::*;

    /// Events that say an entry changed: written, created, removed, renamed.
    const MASK: u32 = libc::IN_MODIFY
        | libc::IN_CLOSE_WRITE
        | libc::IN_CREATE
        | libc::IN_DELETE
        | libc::IN_MOVED_FROM
        | libc::IN_MOVED_TO
        | libc::IN_DELETE_SELF
        | libc::IN_MOVE_SELF
        | libc::IN_ONLYDIR;

    struct Sub {
        id: u64,
        notify: Arc<Notify>,
        live: Arc<AtomicBool>,
    }

    /// The subscribers of one watched directory.
    #[derive(Default)]
    struct Dir {
        by_name: HashMap<OsString, Vec<Sub>>,
        any: Vec<Sub>,
    }

    impl Dir {
        fn all(&self) -> impl Iterator<Item = &Sub> {
            self.by_name.values().flatten().chain(self.any.iter())
        }

        fn is_empty(&self) -> bool {
            self.any.is_empty() && self.by_name.is_empty()
        }
    }

    #[derive(Default)]
    struct State {
        /// Watch descriptor to the directory's subscribers.
        dirs: HashMap<i32, Dir>,
        /// Directory path to its watch descriptor.
        wds: HashMap<PathBuf, i32>,
        next_id: u64,
    }

    struct Watcher {
        fd: OwnedFd,
        state: Mutex<State>,
    }

    fn lock(w: &Watcher) -> std::sync::MutexGuard<'_, State> {
        w.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process's watcher; `None` if inotify could not be set up (the
    /// per-user instance limit, for one), in which case everyone polls.
    fn watcher() -> Option<&'static Watcher> {
        static W: OnceLock<Option<&'static Watcher>> = OnceLock::new();
        *W.get_or_init(|| {
            // SAFETY: inotify_init1 takes flags and returns a new descriptor
            // or -1; nothing else is touched.
            let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
            if fd < 0 {
                tracing::info!(error = %std::io::Error::last_os_error(), "no inotify: the WALs are polled");
                return None;
            }
            // SAFETY: fd was just returned by inotify_init1 and is owned here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let w: &'static Watcher = Box::leak(Box::new(Watcher {
                fd,
                state: Mutex::new(State::default()),
            }));
            let spawned = std::thread::Builder::new()
                .name("litevault-inotify".into())
                .spawn(move || read_events(w));
            match spawned {
                Ok(_) => Some(w),
                Err(e) => {
                    tracing::info!(error = %e, "no inotify thread: the WALs are polled");
                    None
                }
            }
        })
    }

    pub(super) fn subscribe(dir: &Path, names: Names) -> Option<Subscription> {
        let w = watcher()?;
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut st = lock(w);
        // Adding a watch for a directory already watched returns the same
        // descriptor (and sets the same mask).
        // SAFETY: the descriptor is live, the path a valid C string.
        let wd = unsafe { libc::inotify_add_watch(w.fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            tracing::info!(dir = %dir.display(), error = %std::io::Error::last_os_error(), "cannot watch the directory: polling it");
            return None;
        }
        st.next_id += 1;
        let id = st.next_id;
        let notify = Arc::new(Notify::new());
        let live = Arc::new(AtomicBool::new(true));
        if let Some(old) = st.wds.insert(dir.clone(), wd)
            && old != wd
        {
            // The directory was replaced (removed and made again): its old
            // watch is gone; its subscribers were told at the time.
            st.dirs.remove(&old);
        }
        let d = st.dirs.entry(wd).or_default();
        let sub = || Sub {
            id,
            notify: notify.clone(),
            live: live.clone(),
        };
        match names {
            Names::Entries => d.any.push(sub()),
            Names::Only(ns) => {
                for n in ns {
                    d.by_name.entry(n).or_default().push(sub());
                }
            }
        }
        Some(Subscription {
            notify,
            live,
            id,
            dir,
        })
    }

    impl Drop for Subscription {
        fn drop(&mut self) {
            let Some(w) = watcher() else { return };
            let mut st = lock(w);
            let Some(&wd) = st.wds.get(&self.dir) else {
                return;
            };
            let Some(d) = st.dirs.get_mut(&wd) else {
                return;
            };
            d.any.retain(|s| s.id != self.id);
            d.by_name.retain(|_, subs| {
                subs.retain(|s| s.id != self.id);
                !subs.is_empty()
            });
            if d.is_empty() {
                st.dirs.remove(&wd);
                st.wds.remove(&self.dir);
                // SAFETY: removes a watch of our own descriptor; an error
                // (the watch already gone with its directory) changes nothing.
                unsafe {
                    libc::inotify_rm_watch(w.fd.as_raw_fd(), wd);
                }
            }
        }
    }

    /// The event thread: blocks on the descriptor, wakes subscribers.
    fn read_events(w: &'static Watcher) {
        // Aligned for inotify_event; room for many events per read.
        let mut buf = vec![0u64; 8192];
        loop {
            // SAFETY: reads into a buffer we own, of the length given.
            let n = unsafe {
                libc::read(
                    w.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len() * std::mem::size_of::<u64>(),
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::warn!(error = %e, "reading inotify events failed; every watched file is polled from now on");
                let st = lock(w);
                for d in st.dirs.values() {
                    for s in d.all() {
                        s.live.store(false, Ordering::Relaxed);
                        s.notify.notify_one();
                    }
                }
                return;
            }
            // SAFETY: the kernel wrote n bytes of whole events.
            let bytes =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
            dispatch(w, bytes);
        }
    }

    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();

    /// The events that wake [`Names::Entries`] subscribers.
    const ENTRY_EVENTS: u32 =
        libc::IN_CREATE | libc::IN_DELETE | libc::IN_MOVED_FROM | libc::IN_MOVED_TO;

    fn dispatch(w: &Watcher, mut bytes: &[u8]) {
        let mut st = lock(w);
        while bytes.len() >= HEADER {
            // SAFETY: at least a header's bytes remain; read unaligned.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            let len = ev.len as usize;
            let name_bytes = bytes.get(HEADER..HEADER + len).unwrap_or(&[]);
            bytes = bytes.get(HEADER + len..).unwrap_or(&[]);
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                // Events were lost: wake everyone to look for themselves.
                for d in st.dirs.values() {
                    for s in d.all() {
                        s.notify.notify_one();
                    }
                }
                continue;
            }
            if ev.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
                // The directory is gone (or moved): no more events will
                // come for it under this path.
                if let Some(d) = st.dirs.remove(&ev.wd) {
                    for s in d.all() {
                        s.live.store(false, Ordering::Relaxed);
                        s.notify.notify_one();
                    }
                }
                st.wds.retain(|_, wd| *wd != ev.wd);
                continue;
            }
            let Some(d) = st.dirs.get(&ev.wd) else {
                continue;
            };
            if ev.mask & ENTRY_EVENTS != 0 {
                for s in &d.any {
                    s.notify.notify_one();
                }
            }
            if !d.by_name.is_empty() {
                let end = name_bytes
                    .iter()
                    .position(|&b| b == 0)
                    .unwrap_or(name_bytes.len());
                let name = OsString::from_vec(name_bytes[..end].to_vec());
                if let Some(subs) = d.by_name.get(&name) {
                    for s in subs {
                        s.notify.notify_one();
                    }
                }
            }
        }
        drop(st);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(s: &Subscription) -> bool {
        tokio::time::timeout(Duration::from_secs(5), s.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_write_wakes_the_subscriber_of_that_name_only() {
        let d = tempfile::tempdir().unwrap();
        let wal = d.path().join("a.db-wal");
        std::fs::write(&wal, b"x").unwrap();
        let a = subscribe(d.path(), Names::Only(vec!["a.db-wal".into()])).unwrap();
        let b = subscribe(d.path(), Names::Only(vec!["b.db-wal".into()])).unwrap();
        std::fs::write(&wal, b"more").unwrap();
        assert!(
            woken(&a).await,
            "a write to a.db-wal must wake its subscriber"
        );
        let quiet = tokio::time::timeout(Duration::from_millis(300), b.changed()).await;
        assert!(
            quiet.is_err(),
            "b.db-wal's subscriber must not be woken by a.db-wal"
        );
        std::fs::write(d.path().join("b.db-wal"), b"y").unwrap();
        assert!(woken(&b).await);
    }

    #[tokio::test]
    async fn an_entries_subscriber_wakes_on_creation_and_removal_not_on_writes() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.db");
        std::fs::write(&f, b"x").unwrap();
        let s = subscribe(d.path(), Names::Entries).unwrap();
        std::fs::write(&f, b"written").unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(300), s.changed()).await;
        assert!(
            quiet.is_err(),
            "a write to an existing file is not an entry change"
        );
        std::fs::write(d.path().join("b.db"), b"new").unwrap();
        assert!(woken(&s).await, "a created file wakes it");
        std::fs::remove_file(&f).unwrap();
        assert!(woken(&s).await, "a removed file wakes it");
    }

    #[tokio::test]
    async fn the_directory_watch_ends_with_its_last_subscriber_and_comes_back() {
        let d = tempfile::tempdir().unwrap();
        let any = subscribe(d.path(), Names::Entries).unwrap();
        drop(any);
        let again = subscribe(d.path(), Names::Entries).unwrap();
        std::fs::write(d.path().join("new.db"), b"x").unwrap();
        assert!(
            woken(&again).await,
            "a new subscription after the last one ended must work"
        );
    }

    #[tokio::test]
    async fn a_removed_directory_ends_the_subscription_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        let sub_dir = d.path().join("gone");
        std::fs::create_dir(&sub_dir).unwrap();
        let s = subscribe(&sub_dir, Names::Entries).unwrap();
        assert!(s.is_live());
        std::fs::remove_dir(&sub_dir).unwrap();
        assert!(woken(&s).await);
        for _ in 0..50 {
            if !s.is_live() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the subscription of a removed directory must turn stale");
    }
}
