//! Two helpers every async part of litevault shares: running blocking work
//! (SQLite, file I/O) off the async threads, and locking a mutex whose
//! state survives a panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// A blocking task that panicked or was cancelled (the runtime shutting
/// down). Each error type of the library converts it, so `?` works.
#[derive(Debug, thiserror::Error)]
#[error("a blocking task failed: {0}")]
pub struct TaskFailed(String);

/// Runs `f` on tokio's blocking threads and waits for it.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskFailed> {
    start_blocking(f).await
}

/// Starts `f` on tokio's blocking threads at once and returns its result
/// to await later, for work that runs while the caller does something else
/// (a reader feeding a channel the caller drains). Unlike [`blocking`],
/// nothing waits for the first poll.
pub fn start_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = Result<T, TaskFailed>> {
    let handle = tokio::task::spawn_blocking(f);
    async move { handle.await.map_err(|e| TaskFailed(e.to_string())) }
}

/// Locks a mutex whose state stays valid when a critical section is cut
/// short by a panic (each use says why, where the mutex is declared): the
/// panic is reported once, where it happened, and does not turn every later
/// lock into another one.
pub fn lock_or_recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
