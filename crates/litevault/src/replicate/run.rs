//! The run loop: a push task and a maintenance task per replica, the
//! producer woken by the kernel's change notifications for the WAL (or by
//! an embedded writer; polling where neither is there), the status file,
//! and the shutdown's final sync.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::{ReplicateError, Replicator, SyncOutcome, blocking, lock_db};

/// Runs a future, turning a panic in it into an error, so that one bad step
/// of a replica's task does not end the task (and the replica's uploads)
/// for good.
pub(super) async fn no_panic<T>(
    what: &str,
    f: impl Future<Output = Result<T, ReplicateError>>,
) -> Result<T, ReplicateError> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(f).catch_unwind().await {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ReplicateError::Internal(format!("{what} panicked: {msg}")))
        }
    }
}

impl Replicator {
    /// Replicates until `shutdown` resolves, then ships what is left (bounded
    /// by [`ReplicateOptions::shutdown_timeout`](super::ReplicateOptions::shutdown_timeout),
    /// retrying failed requests within it), ends each Litestream-compatible
    /// replica on a file `litestream replicate` can continue from (see the
    /// `handoff` module), and saves the local state.
    ///
    /// Each replica is served by its own task: a replica that is slow or
    /// failing retries with backoff while the others keep up.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ReplicateError> {
        self.inner
            .running
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for i in 0..self.inner.slots.len() {
            let me = self.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let mut head = me.inner.head.subscribe();
                let mut backoff = Duration::ZERO;
                let tick = Duration::from_secs(1);
                let mut uploads = UploadBudget::new(me.inner.opts.sync_interval);
                loop {
                    let wait = if backoff.is_zero() { tick } else { backoff };
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = head.changed(), if backoff.is_zero() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                    // Batch under a steady load: one upload per sync
                    // interval on average; sparse commits ship at once.
                    let woke = Instant::now();
                    let hold = uploads.wait(woke);
                    if !hold.is_zero() {
                        tokio::select! {
                            _ = stop.changed() => break,
                            _ = tokio::time::sleep(hold) => {}
                        }
                    }
                    let before = *me.inner.slots[i].shipped.borrow();
                    me.inner.uploading.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let started = Instant::now();
                    let pushed = no_panic("an upload", me.push(i)).await;
                    me.inner.uploading.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    tracing::trace!(
                        replica = %me.inner.slots[i].replica,
                        from = %before,
                        to = %*me.inner.slots[i].shipped.borrow(),
                        held_ms = (started - woke).as_millis() as u64,
                        push_ms = started.elapsed().as_millis() as u64,
                        "push round"
                    );
                    me.inner.upload_done.notify_waiters();
                    match pushed {
                        Ok(()) => {
                            backoff = Duration::ZERO;
                            let after = *me.inner.slots[i].shipped.borrow();
                            if after != before {
                                // One transaction after a wait: nothing
                                // joined it, the wait batched nothing.
                                let unbatched = !hold.is_zero() && after.0.saturating_sub(before.0) == 1;
                                uploads.spend(Instant::now(), unbatched);
                            }
                        }
                        Err(e) => {
                            backoff = (backoff * 2)
                                .clamp(Duration::from_millis(100), Duration::from_secs(10));
                            tracing::warn!(replica = %me.inner.slots[i].replica, error = %e, "upload failed; retrying in {backoff:?} (the files wait in the local store)");
                            continue;
                        }
                    }
                    me.collect_outbox();
                }
            }));
            // Compaction, snapshots and retention in a task of their own:
            // their uploads never delay the push of a new commit.
            let me = self.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                let tick = Duration::from_secs(1);
                let mut wait = tick;
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    match no_panic("compaction or retention", me.maintain_one(i)).await {
                        Ok(()) => wait = tick,
                        Err(e) => {
                            wait = (wait * 2).min(Duration::from_secs(30));
                            tracing::warn!(replica = %me.inner.slots[i].replica, error = %e, "compaction or retention failed; retrying in {wait:?}");
                        }
                    }
                    me.collect_outbox();
                }
            }));
        }
        tokio::pin!(shutdown);
        let mut last_seen = None;
        // When the stamp last changed, and when to look at it again: a
        // commit's frames reach the WAL file (and are fsynced) before
        // SQLite's index shows the commit, so a look right after the change
        // can find nothing new. A changed stamp is looked at again after
        // half its age (at least a poll), until it has stood still for a
        // second: a commit the index shows late ships within half as long
        // again, at a dozen looks per change.
        let mut observed = (None, Instant::now());
        // A look at once when the loop starts (after it subscribed to the
        // change notifications): a commit made since the open raised none.
        let mut look_again: Option<Instant> = Some(Instant::now());
        // "Long ago", where the platform's clock can say so.
        let long_ago = |d: Duration| Instant::now().checked_sub(d).unwrap_or_else(Instant::now);
        let mut last_full = long_ago(Duration::from_secs(3600));
        let mut backoff = Duration::ZERO;
        let poll = self.inner.opts.poll_interval;
        let recheck = poll.min(RECHECK);
        let mut status_at = long_ago(Duration::from_secs(60));
        // The kernel's notifications for the database and its WAL (see
        // `crate::notify`): a write wakes this loop at once, and the poll is
        // only a safety net. Without them, the poll finds the changes.
        let changes = self.change_notifications();
        loop {
            let notified = changes.as_ref().is_some_and(|c| c.is_live());
            let mut wait = poll.max(backoff);
            if let Some(at) = look_again {
                wait = wait.min(at.saturating_duration_since(Instant::now()));
            }
            let mut woken = false;
            let mut changed = false;
            let change = async {
                match &changes {
                    Some(c) => c.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.wake.notified(), if backoff.is_zero() => woken = true,
                _ = change, if notified && backoff.is_zero() => changed = true,
            }
            if woken && !self.inner.opts.commit_window.is_zero() {
                // Group commit: let the commits that follow this one join
                // the same file (and the same upload).
                tokio::time::sleep(self.inner.opts.commit_window).await;
            }
            if status_at.elapsed() >= Duration::from_secs(1) {
                status_at = Instant::now();
                let me = self.clone();
                let _ = blocking(move || me.write_status(true)).await;
            }
            let seen = file_stamp(&self.inner.path);
            if changed || seen != observed.0 {
                observed = (seen, Instant::now());
            }
            let due = look_again.is_some_and(|at| Instant::now() >= at);
            // A WAL rewritten in place within the file system's timestamp
            // granularity keeps its stamp: without notifications it is
            // looked at in full every second; with them, every write raises
            // one, and the full look is only a safety net.
            let full_every = if notified {
                FULL_LOOK_NOTIFIED
            } else {
                Duration::from_secs(1)
            };
            if !woken && !changed && !due && seen == last_seen && last_full.elapsed() < full_every {
                continue;
            }
            // While every replica is busy uploading, what was committed
            // meanwhile can only wait; taking it when an upload ends makes
            // one local file of it instead of one per commit, which under a
            // fast writer is most of the replicator's work.
            let slots = self.inner.slots.len();
            let busy = || {
                self.inner
                    .uploading
                    .load(std::sync::atomic::Ordering::SeqCst)
                    >= slots
            };
            let mut stop = false;
            let look = Instant::now();
            while slots > 0 && busy() {
                let done = self.inner.upload_done.notified();
                tokio::pin!(done);
                done.as_mut().enable();
                if !busy() {
                    break;
                }
                tokio::select! {
                    _ = &mut shutdown => {
                        stop = true;
                        break;
                    }
                    _ = done => {}
                    // Never longer than a poll: a stuck upload must not
                    // hold back the local store.
                    _ = tokio::time::sleep(poll.max(Duration::from_millis(10))) => break,
                }
            }
            if stop {
                break;
            }
            let produced = Instant::now();
            let outcome = self.produce().await;
            tracing::trace!(
                db = %self.inner.path.display(),
                woken,
                changed,
                due,
                busy_ms = (produced - look).as_millis() as u64,
                produce_ms = produced.elapsed().as_millis() as u64,
                shipped = ?outcome.as_ref().ok().and_then(|o| match o {
                    SyncOutcome::Shipped { txid, .. } => Some(*txid),
                    SyncOutcome::UpToDate => None,
                }),
                "producer pass"
            );
            match outcome {
                Ok(SyncOutcome::Shipped { .. }) => {
                    backoff = Duration::ZERO;
                    // More may be waiting: look again at once.
                    last_seen = None;
                    look_again = Some(Instant::now());
                }
                Ok(SyncOutcome::UpToDate) => {
                    backoff = Duration::ZERO;
                    last_seen = seen;
                    last_full = Instant::now();
                    let age = observed.1.elapsed();
                    look_again = (age < Duration::from_secs(1))
                        .then(|| Instant::now() + (age / 2).max(recheck));
                }
                Err(e) => {
                    look_again = None;
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
                    tracing::warn!(db = %self.inner.path.display(), error = %e, "taking new commits into the local store failed; retrying in {backoff:?}");
                }
            }
        }
        let _ = stop_tx.send(true);
        self.inner
            .running
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let timeout = self.inner.opts.shutdown_timeout;
        let _ = tokio::time::timeout(timeout, futures::future::join_all(tasks)).await;
        // A database removed (a watched directory's): its WAL went with it,
        // and what the replicas hold is all there is to keep.
        let removed = !self.inner.path.exists();
        if removed {
            tracing::info!(db = %self.inner.path.display(), txid = %self.txid(), "the database was removed: no final sync; the replicas keep what they hold");
        }
        let started = Instant::now();
        let done = tokio::time::timeout(timeout, async {
            if removed {
                return Ok(self.txid());
            }
            self.final_sync().await
        })
        .await;
        // The hand-off gets what is left of the time, and missing it fails
        // nothing: the replicas hold every commit, and a hand-off file left
        // in the local store ships at the next start. Only `litestream
        // replicate` cannot continue them until then.
        if matches!(done, Ok(Ok(_))) && !removed {
            let left = timeout.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.hand_off()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(db = %self.inner.path.display(), error = %e, "could not end the replicas on a file litestream replicate continues from");
                }
                Err(_) => {
                    tracing::warn!(db = %self.inner.path.display(), "every commit is on the replicas, but the file litestream replicate continues from did not ship within the shutdown timeout; it ships at the next start");
                }
            }
        }
        for s in &self.inner.slots {
            let lease = s.state.lock().await.lease.take();
            if let Some(l) = lease
                && let Err(e) = l.release().await
            {
                tracing::warn!(replica = %s.replica, error = %e, "releasing the lease failed; it expires by itself");
            }
        }
        let me = self.clone();
        let _ = blocking(move || me.write_status(false)).await;
        let inner = self.inner.clone();
        let close = blocking(move || lock_db(&inner).close());
        match done {
            Ok(r) => {
                close.await??;
                r.map(|_| ())
            }
            Err(_) => {
                close.await??;
                Err(ReplicateError::ShutdownTimeout(timeout))
            }
        }
    }
}

impl Replicator {
    /// The shutdown's sync: a request that failed on every attempt with an
    /// error that may pass (a reset connection, a timeout), or a WAL that
    /// kept moving, is tried again after a pause, for as long as the caller's
    /// shutdown timeout allows; any other error ends it at once.
    async fn final_sync(&self) -> Result<crate::ltx::Txid, ReplicateError> {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.sync_all().await {
                Err(ReplicateError::Replica(e)) if e.is_transient() => {
                    tracing::warn!(db = %self.inner.path.display(), error = %e, "final sync failed; trying again in {pause:?}");
                }
                Err(ReplicateError::WalUnsettled(why)) => {
                    tracing::warn!(db = %self.inner.path.display(), reason = why, "final sync: the WAL keeps moving; trying again in {pause:?}");
                }
                r => return r,
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

/// Uploads of new commits to one replica, paced as a token bucket: one
/// upload per sync interval on average (Litestream's `sync-interval`, which
/// bounds the PUT requests a busy database makes), with a burst of
/// [`UploadBudget::BURST`] so that sparse commits, a few seconds apart or
/// right after the uploads of a start, ship at once instead of each
/// waiting out the interval after the one before.
///
/// A writer that commits once per interval, once it has spent the burst
/// (a pause and then a catch-up), would earn each token just as its next
/// commit arrives: every commit would wait most of an interval for ever,
/// one PUT each all the same, since nothing joins it during the wait. So
/// an upload that waited and still carried one transaction costs
/// [`UploadBudget::UNBATCHED_COST`]: such a writer's waits shrink to
/// nothing within a few commits, while a writer whose waits do batch
/// commits keeps to one upload per interval. The most a database can then
/// make is `1 / UNBATCHED_COST` uploads per interval, and only while every
/// upload waits and carries one transaction.
struct UploadBudget {
    interval: Duration,
    tokens: f64,
    at: Instant,
}

impl UploadBudget {
    const BURST: f64 = 3.0;
    const UNBATCHED_COST: f64 = 0.75;

    fn new(interval: Duration) -> UploadBudget {
        UploadBudget {
            interval,
            tokens: Self::BURST,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        if !self.interval.is_zero() {
            let earned =
                now.saturating_duration_since(self.at).as_secs_f64() / self.interval.as_secs_f64();
            self.tokens = (self.tokens + earned).min(Self::BURST);
        }
        self.at = self.at.max(now);
    }

    /// How long to wait, from `now`, before the next upload may start.
    fn wait(&mut self, now: Instant) -> Duration {
        if self.interval.is_zero() {
            return Duration::ZERO;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            self.interval.mul_f64(1.0 - self.tokens)
        }
    }

    /// An upload that shipped new commits, done at `now`; `unbatched`: it
    /// waited for the budget and carried one transaction all the same.
    fn spend(&mut self, now: Instant, unbatched: bool) {
        self.refill(now);
        let cost = if unbatched { Self::UNBATCHED_COST } else { 1.0 };
        self.tokens = (self.tokens - cost).max(0.0);
    }
}

/// The first look again after a change that showed no new commit (the
/// frames reach the WAL before SQLite's index shows the commit): then after
/// half the change's age, until it is a second old.
const RECHECK: Duration = Duration::from_millis(10);

/// With change notifications, how often the WAL is looked at in full even
/// when nothing was notified and its stamp did not change.
const FULL_LOOK_NOTIFIED: Duration = Duration::from_secs(30);

impl Replicator {
    /// A subscription to the kernel's change notifications for the database
    /// and its WAL, when asked for and available.
    fn change_notifications(&self) -> Option<crate::notify::Subscription> {
        if !self.inner.opts.change_notifications {
            return None;
        }
        let (dir, name) = crate::notify::split(&self.inner.path)?;
        let mut wal = name.clone();
        wal.push("-wal");
        let sub = crate::notify::subscribe(&dir, crate::notify::Names::Only(vec![name, wal]));
        if sub.is_none() {
            tracing::info!(db = %self.inner.path.display(), poll = ?self.inner.opts.poll_interval, "no change notifications for this database: polling its WAL");
        }
        sub
    }
}

/// Size and modification time of the database and its WAL, to notice writes
/// without opening anything.
fn file_stamp(db: &Path) -> Option<(u64, SystemTime, u64, SystemTime)> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let d = std::fs::metadata(db).ok()?;
    let w = std::fs::metadata(PathBuf::from(wal)).ok();
    Some((
        d.len(),
        d.modified().ok()?,
        w.as_ref().map(|m| m.len()).unwrap_or(0),
        w.and_then(|m| m.modified().ok())
            .unwrap_or(SystemTime::UNIX_EPOCH),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a writer whose commits come at `commits` (seconds from the
    /// start) through the budget, as the push task does: an upload starts
    /// at the later of the commit and the end of the wait, takes every
    /// commit made by then, and costs as the task charges it. Answers each
    /// upload's (start, wait, transactions).
    fn simulate(interval: Duration, commits: &[f64]) -> Vec<(f64, f64, usize)> {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut b = UploadBudget::new(interval);
        b.at = t0;
        let (mut uploads, mut next, mut free_at) = (Vec::new(), 0, 0.0f64);
        while next < commits.len() {
            let woke = commits[next].max(free_at);
            let hold = b.wait(at(woke)).as_secs_f64();
            let start = woke + hold;
            let txns = commits[next..].iter().take_while(|&&c| c <= start).count();
            next += txns;
            b.spend(at(start), hold > 0.0 && txns == 1);
            free_at = start;
            uploads.push((start, hold, txns));
        }
        uploads
    }

    #[test]
    fn a_writer_at_the_interval_is_not_held_after_a_catch_up() {
        // Once a second, a pause, four commits at once to catch up (more
        // than the burst), then once a second again, a tenth of a second
        // after each upload would end (a little jitter throughout).
        let jitter = |k: usize| 0.02 * (k % 3) as f64;
        let mut commits: Vec<f64> = (0..10).map(|k| k as f64 + jitter(k)).collect();
        commits.extend([14.0, 14.02, 14.04, 14.06]);
        commits.extend((15..60).map(|k| k as f64 + 0.1 + jitter(k)));
        let ups = simulate(Duration::from_secs(1), &commits);
        let waits: Vec<f64> = ups.iter().filter(|u| u.0 > 25.0).map(|u| u.1).collect();
        assert!(
            waits.iter().all(|w| *w == 0.0),
            "ten seconds after the catch-up, commits once per interval ship at once; waits {waits:?}"
        );
        // It did wait right after the burst: the budget was spent.
        assert!(ups.iter().any(|u| u.1 > 0.0));
    }

    #[test]
    fn a_fast_writer_makes_one_upload_per_interval() {
        // 100 commits a second for a minute.
        let commits: Vec<f64> = (0..6000).map(|k| k as f64 * 0.01).collect();
        let ups = simulate(Duration::from_secs(1), &commits);
        assert!(
            ups.len() as f64 <= 60.0 + UploadBudget::BURST + 1.0,
            "{} uploads in 60 s at a 1 s interval",
            ups.len()
        );
        assert_eq!(
            ups.iter().map(|u| u.2).sum::<usize>(),
            6000,
            "every commit shipped"
        );
    }

    #[test]
    fn unbatched_uploads_stay_within_their_bound() {
        // Commits every 0.7 s, a little faster than the discounted cost
        // allows: most uploads wait and carry one (without the bound the
        // replica would make one upload per commit, 85 in the minute).
        let commits: Vec<f64> = (0..85).map(|k| k as f64 * 0.7).collect();
        let ups = simulate(Duration::from_secs(1), &commits);
        let bound = 60.0 / UploadBudget::UNBATCHED_COST + UploadBudget::BURST + 1.0;
        assert!(
            ups.len() as f64 <= bound,
            "{} uploads, bound {bound}",
            ups.len()
        );
    }

    #[test]
    fn sparse_uploads_go_at_once_and_a_steady_stream_is_paced() {
        let interval = Duration::from_secs(1);
        let mut b = UploadBudget::new(interval);
        let now = b.at;
        // A start's uploads and the commits right after: the burst.
        for _ in 0..3 {
            assert_eq!(b.wait(now), Duration::ZERO);
            b.spend(now, false);
        }
        // Then one per interval: the next waits one.
        let w = b.wait(now);
        assert_eq!(
            w, interval,
            "after the burst the next upload waits an interval"
        );
        // Time earns uploads back, up to the burst.
        let later = now + Duration::from_secs(10);
        assert_eq!(b.wait(later), Duration::ZERO);
        assert!(b.tokens <= UploadBudget::BURST);
    }

    #[test]
    fn no_sync_interval_never_waits() {
        let mut b = UploadBudget::new(Duration::ZERO);
        for _ in 0..10 {
            assert_eq!(b.wait(Instant::now()), Duration::ZERO);
            b.spend(Instant::now(), false);
        }
    }
}
