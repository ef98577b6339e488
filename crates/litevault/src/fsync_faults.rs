//! Test facility: makes fsyncs of the local state fail on demand.
//!
//! Every fsync of the local LTX store (files and folders) and of the saved
//! position and page table goes through `sync_all`. Unless a test arms it
//! with [`arm`], it only runs the real `File::sync_all`; armed, the next `n`
//! fsyncs of paths under the given folder fail with `EIO` instead (the
//! real fsync is then not run), which is what a failing disk or a lost
//! network volume reports.
//!
//! Why a seam and not a real failing device: a filesystem whose fsync
//! fails on demand (a FUSE file system, a device-mapper `error` or `flakey`
//! target, a loop device over a failing file) needs root and kernel
//! modules that neither CI nor a developer machine can be assumed to have.
//! The seam sits right at the call, so everything above it (error
//! reporting, the checkpoint gate, the rewrite of a file whose fsync
//! failed) runs as in production.
//!
//! Faults are scoped to a folder, so tests running in parallel in one
//! process do not see each other's faults.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

struct Armed {
    under: PathBuf,
    left: u64,
    injected: u64,
}

/// Whether anything is armed: keeps the lock off the path of real fsyncs.
static ANY: AtomicBool = AtomicBool::new(false);
static ARMED: Mutex<Vec<Armed>> = Mutex::new(Vec::new());

fn armed() -> std::sync::MutexGuard<'static, Vec<Armed>> {
    ARMED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Makes the next `n` fsyncs of paths under `under` fail with `EIO`
/// (`u64::MAX`: until [`disarm`]). Replaces an earlier arming of the same
/// folder, keeping its count of injected faults.
pub fn arm(under: &Path, n: u64) {
    let mut a = armed();
    match a.iter_mut().find(|x| x.under == under) {
        Some(x) => x.left = n,
        None => a.push(Armed {
            under: under.to_path_buf(),
            left: n,
            injected: 0,
        }),
    }
    ANY.store(true, Ordering::SeqCst);
}

/// Lets fsyncs under `under` run for real again; returns how many failed
/// because of the seam since it was first armed.
pub fn disarm(under: &Path) -> u64 {
    let mut a = armed();
    let injected = a
        .iter()
        .find(|x| x.under == under)
        .map_or(0, |x| x.injected);
    a.retain(|x| x.under != under);
    ANY.store(!a.is_empty(), Ordering::SeqCst);
    injected
}

/// How many fsyncs under `under` failed because of the seam so far.
pub fn injected(under: &Path) -> u64 {
    armed()
        .iter()
        .find(|x| x.under == under)
        .map_or(0, |x| x.injected)
}

/// Fsyncs `file` (opened from `path`), unless a fault is armed for `path`.
pub(crate) fn sync_all(file: &File, path: &Path) -> std::io::Result<()> {
    if ANY.load(Ordering::SeqCst) {
        let mut a = armed();
        if let Some(x) = a
            .iter_mut()
            .find(|x| x.left > 0 && path.starts_with(&x.under))
        {
            x.left -= 1;
            x.injected += 1;
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
    }
    file.sync_all()
}

/// Opens `path` and fsyncs it (a file or a folder).
pub(crate) fn sync_path(path: &Path) -> std::io::Result<()> {
    sync_all(&File::open(path)?, path)
}
