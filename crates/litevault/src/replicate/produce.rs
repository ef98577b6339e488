//! The producer: turning new commits into LTX files of the local store,
//! the checkpoints that follow once those are durable, and snapshots of
//! the database.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Head, Inner, ReplicateError, Replicator, blocking, lock_db, lock_or_recover};
use crate::body::LtxBody;
use crate::db::{self, Prepared, ShipKind, WatchedDb};
use crate::ltx::Txid;

/// What one sync did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Nothing new.
    UpToDate,
    /// A file was uploaded.
    Shipped {
        /// Its TXID.
        txid: Txid,
        /// Pages in it.
        pages: u32,
        /// Bytes uploaded.
        bytes: u64,
        /// `true` when continuity had to be re-proven by comparing pages.
        resync: bool,
    },
}

/// What [`Replicator::restart_wal_now`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalRestart {
    /// Everything is shipped and checkpointed, and the read mark is on no
    /// frame: the writer's next transaction starts the WAL over.
    Done,
    /// A producer step is running: nothing was done; try again after the
    /// next commit. (Waiting for it could stall the runtime: the step is an
    /// async task, and the caller may be on the runtime's only free thread.)
    ProducerBusy,
    /// The local store's files are being fsynced in the background (a
    /// plain thread, done in a moment): nothing was done; try again.
    Fsyncing,
    /// Shipped and checkpointed, but a frame is still past the shipped
    /// state or held by another reader (another connection wrote or reads):
    /// try again once the WAL has grown some more.
    NotNow,
}

impl Replicator {
    /// Takes everything committed so far into the local store, without
    /// uploading anything, and returns the TXID of that state: the one to
    /// pass to [`Replicator::wait_replicated`] to know that every replica
    /// holds what was committed before this call.
    pub async fn take_committed(&self) -> Result<Txid, ReplicateError> {
        while let SyncOutcome::Shipped { .. } = self.produce().await? {}
        Ok(self.local_txid())
    }

    /// Wakes the producer now, instead of at the next poll (called from an
    /// embedded writer's commit hook: it only signals).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Attaches the commit counter of an embedded writer: its hook adds one
    /// per commit, and [`wait_commit`](Self::wait_commit) waits for a count.
    pub fn attach_commit_counter(&self, counter: Arc<std::sync::atomic::AtomicU64>) {
        let _ = self.inner.commit_counter.set(counter);
    }

    /// Takes what is committed in the database into the local store: at
    /// most one LTX file per call. Runs the checkpoint the thresholds call
    /// for once the local store is durable.
    pub(super) async fn produce(&self) -> Result<SyncOutcome, ReplicateError> {
        let _step = self.inner.produce.lock().await;
        self.produce_locked().await
    }

    async fn produce_locked(&self) -> Result<SyncOutcome, ReplicateError> {
        let inner = self.inner.clone();
        let ts = inner.clock.now_ms();
        // Every commit counted before the read mark is taken is in the WAL
        // that prepare scans: once this step is done, it is in the store.
        let seq = inner
            .commit_counter
            .get()
            .map(|c| c.load(std::sync::atomic::Ordering::SeqCst));
        let (outcome, covered) = self.produce_step(ts).await?;
        if let (Some(seq), true) = (seq, covered) {
            self.mark_covered(seq);
        }
        Ok(outcome)
    }

    /// Whether a due checkpoint may run now. Before a checkpoint, every
    /// file of the local store must be durable (the WAL frames it drops are
    /// then only there). Fsyncing hundreds of small files takes a second or
    /// more on a busy disk, so when many are pending they are fsynced first
    /// by a background job, without any lock, while commits keep shipping;
    /// the checkpoint then syncs only what came meanwhile. At most
    /// `MAX_PRESYNC_ROUNDS` such rounds run, so a load that writes faster
    /// than the disk syncs cannot put the checkpoint off for ever.
    fn presynced(inner: &Arc<Inner>) -> bool {
        const FEW: usize = 16;
        const MAX_PRESYNC_ROUNDS: u8 = 3;
        let mut ps = lock_or_recover(&inner.presync);
        if ps.running {
            return false;
        }
        let pending = lock_or_recover(&inner.outbox).unsynced();
        if pending.len() <= FEW || ps.rounds >= MAX_PRESYNC_ROUNDS {
            ps.rounds = 0;
            return true;
        }
        ps.running = true;
        ps.rounds += 1;
        drop(ps);
        let job = inner.clone();
        // A plain thread: the caller is itself on a blocking thread, and
        // this must not wait for a slot of the blocking pool.
        let spawned = std::thread::Builder::new()
            .name("litevault-presync".into())
            .spawn(move || {
                // Clears the flag however the job ends, a panic included:
                // else no checkpoint would ever run again.
                struct Done(Arc<Inner>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        lock_or_recover(&self.0.presync).running = false;
                        self.0.wake.notify_one();
                    }
                }
                let done = Done(job);
                let (synced, failed): (Vec<_>, Vec<_>) =
                    pending.into_iter().partition(|f| f.fsync().is_ok());
                let mut outbox = lock_or_recover(&done.0.outbox);
                outbox.mark_durable(&synced);
                // The checkpoint's own sync reports the error (and rewrites
                // these files first).
                outbox.mark_fsync_failed(&failed);
            });
        if spawned.is_err() {
            lock_or_recover(&inner.presync).running = false;
            return true; // sync inline, as without the job
        }
        false
    }

    /// One producer step; also says whether every commit made before it
    /// began is now in the local store (see [`Replicator::ship_blocking`]).
    async fn produce_step(&self, ts: i64) -> Result<(SyncOutcome, bool), ReplicateError> {
        let inner = self.inner.clone();
        blocking(move || {
            let mut db = lock_db(&inner);
            let outcome = Self::ship_blocking(&inner, &mut db, ts)?;
            if db.checkpoint_due() && Replicator::presynced(&inner) {
                Self::sync_outbox(&inner)?;
                if let Some(mode) = db.maybe_checkpoint()? {
                    tracing::debug!(db = %inner.path.display(), mode, "checkpoint");
                }
            }
            Ok(outcome)
        })
        .await?
    }

    /// Takes at most one new LTX file from the database into the local
    /// store and announces it. Called with the producer's step held. The
    /// flag says whether everything committed before the call is now in the
    /// local store: not so when the database asked to be looked at again
    /// ([`Prepared::Later`]: a transaction still being written, or the WAL
    /// changed under the reads), which a durable commit must not take for
    /// "shipped".
    fn ship_blocking(
        inner: &Arc<Inner>,
        db: &mut WatchedDb,
        ts: i64,
    ) -> Result<(SyncOutcome, bool), ReplicateError> {
        Ok(match db.prepare(ts)? {
            Prepared::UpToDate => (SyncOutcome::UpToDate, true),
            Prepared::Later => (SyncOutcome::UpToDate, false),
            Prepared::Ship(p) => (Self::record(inner, db, p)?, true),
        })
    }

    /// Puts a prepared file into the local store, records it as the
    /// database's shipped state and announces it to the replicas.
    fn record(
        inner: &Arc<Inner>,
        db: &mut WatchedDb,
        mut p: Box<db::PendingLtx>,
    ) -> Result<SyncOutcome, ReplicateError> {
        let body = std::mem::replace(&mut p.body, LtxBody::Memory(Bytes::new()));
        let header = p.header;
        let post = p.post_apply;
        let bytes = body.len();
        let pages = p.page_count;
        let resync = p.kind == ShipKind::Resync;
        let state = db.state_dir().path().to_path_buf();
        lock_or_recover(&inner.outbox)
            .add(0, &header, post, body)
            .map_err(|source| ReplicateError::Local {
                path: state,
                source,
            })?;
        if let Err(e) = db.commit(p) {
            // Not recorded: the next step prepares this TXID again. No
            // replica has it yet (it is announced below, only after the
            // commit).
            lock_or_recover(&inner.outbox).remove(0, header.max_txid);
            return Err(e.into());
        }
        if resync && header.max_txid.0 > 1 {
            tracing::info!(db = %inner.path.display(), txid = %header.max_txid, pages, reason = db.resync_reason(), "resync: shipping the pages that differ from the last shipped state");
        }
        inner.head.send_replace(Head {
            txid: header.max_txid,
            checksum: post,
            timestamp_ms: header.timestamp_ms,
        });
        Ok(SyncOutcome::Shipped {
            txid: header.max_txid,
            pages,
            bytes,
            resync,
        })
    }

    /// Adds the hand-off file (see [`WatchedDb::prepare_handoff`]) to the
    /// local store, after taking in every commit; `false` when there is
    /// nothing to hand off.
    pub(super) async fn produce_handoff(&self) -> Result<bool, ReplicateError> {
        let _step = self.inner.produce.lock().await;
        self.produce_all(true).await?;
        let inner = self.inner.clone();
        let ts = inner.clock.now_ms();
        blocking(move || {
            let mut db = lock_db(&inner);
            let Some(p) = db.prepare_handoff(ts)? else {
                return Ok(false);
            };
            Self::record(&inner, &mut db, Box::new(p))?;
            Ok(true)
        })
        .await?
    }

    /// Fsyncs the local store's files not yet durable; the error names the
    /// file or folder that failed.
    fn sync_outbox(inner: &Arc<Inner>) -> Result<(), ReplicateError> {
        lock_or_recover(&inner.outbox)
            .sync()
            .map_err(|(path, source)| ReplicateError::Local { path, source })
    }

    /// Lets the WAL start over now, from an embedded writer's commit hook
    /// (see the `vault` module), which calls it between two of its
    /// transactions once the WAL has grown past
    /// `VaultOptions::wal_restart_pages`.
    ///
    /// A writer that never pauses always has a commit past the shipped
    /// state, so the read mark can never be retaken on no frame after a
    /// checkpoint, and the WAL only grows, up to the TRUNCATE threshold and
    /// the full page comparison that follows it. Here the writer waits for
    /// this call: everything committed is shipped to the local store, made
    /// durable there, checkpointed, and the mark retaken on no frame, so the
    /// writer's next transaction restarts the WAL. Never waits for another
    /// producer step (it says [`WalRestart::ProducerBusy`] instead) nor for
    /// the background fsync of many local files ([`WalRestart::Fsyncing`]).
    pub fn restart_wal_now(&self) -> Result<WalRestart, ReplicateError> {
        let Ok(_step) = self.inner.produce.try_lock() else {
            return Ok(WalRestart::ProducerBusy);
        };
        let inner = &self.inner;
        let seq = inner
            .commit_counter
            .get()
            .map(|c| c.load(std::sync::atomic::Ordering::SeqCst));
        let ts = inner.clock.now_ms();
        let mut db = lock_db(inner);
        if !Replicator::presynced(inner) {
            return Ok(WalRestart::Fsyncing);
        }
        // The writer is here, so at most a commit by another connection
        // can follow; two passes take everything this writer committed.
        let mut covered = false;
        for _ in 0..2 {
            let (outcome, all) = Self::ship_blocking(inner, &mut db, ts)?;
            covered |= all;
            if let SyncOutcome::UpToDate = outcome {
                break;
            }
        }
        Self::sync_outbox(inner)?;
        let restarted = db.checkpoint_for_restart()?;
        drop(db);
        if let (Some(seq), true) = (seq, covered) {
            self.mark_covered(seq);
        }
        Ok(if restarted {
            WalRestart::Done
        } else {
            WalRestart::NotNow
        })
    }

    /// Records that commit `seq` of the embedded writer is in the local
    /// store (durable commits wait for this, then for the replicas).
    fn mark_covered(&self, seq: u64) {
        let txid = self.inner.head.borrow().txid;
        self.inner.covered.send_if_modified(|c| {
            let newer = seq > c.0;
            if newer {
                *c = (seq, txid);
            }
            newer
        });
    }

    /// Takes every commit into the local store. A pass that had to put the
    /// WAL off is tried again for about a second, then fails with
    /// [`ReplicateError::WalUnsettled`]. `step_held`: the caller holds the
    /// producer's step already.
    pub(super) async fn produce_all(&self, step_held: bool) -> Result<(), ReplicateError> {
        let mut put_off = 0;
        loop {
            let outcome = if step_held {
                self.produce_locked().await?
            } else {
                self.produce().await?
            };
            if let SyncOutcome::Shipped { .. } = outcome {
                put_off = 0;
                continue;
            }
            let inner = self.inner.clone();
            let (streak, reason) = blocking(move || lock_db(&inner).later()).await?;
            if streak == 0 {
                return Ok(());
            }
            put_off += 1;
            if put_off > 100 {
                return Err(ReplicateError::WalUnsettled(reason));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Encodes a snapshot of the database's latest state (after taking in
    /// every commit), retrying while the database moves.
    pub(super) async fn take_snapshot(&self) -> Result<db::PendingSnapshot, ReplicateError> {
        for _ in 0..50 {
            let step = self.inner.produce.lock().await;
            while let SyncOutcome::Shipped { .. } = self.produce_locked().await? {}
            let inner = self.inner.clone();
            let ts = inner.head.borrow().timestamp_ms;
            let snap = blocking(move || lock_db(&inner).prepare_snapshot(ts)).await??;
            drop(step);
            if let Some(s) = snap {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(ReplicateError::SnapshotUnavailable)
    }
}
