//! The shipping loop: watch the database, upload LTX files, checkpoint.
//!
//! [`Replicator::open`] establishes where the replica stands (its latest TXID
//! and checksum) and reconciles the local state with it; [`Replicator::sync`]
//! ships what is new; [`Replicator::run`] loops until a caller-supplied
//! shutdown future resolves, then does a final sync.
//!
//! # Files
//!
//! This file holds the shared state (`Inner`, one `Slot` per replica) and
//! the lock order; the work is split by what it does, each part an
//! `impl Replicator` block of its own:
//!
//! - `error`: [`ReplicateError`].
//! - `options`: [`ReplicateOptions`], [`LeaseOptions`], [`Clock`].
//! - `status`: [`DbStatus`], [`ReplicaStatus`], the status file, the
//!   accessors (`txid`, `local_txid`, `replicas`, ...).
//! - `open`: [`Replicator::open`], each replica's lease and head
//!   ([`replica_head`]), the start-up reconciliation with the replicas, and
//!   the late start of a replica that could not be reached.
//! - `produce`: new commits into LTX files of the local store, the
//!   checkpoints after them, [`Replicator::restart_wal_now`], snapshots of
//!   the database.
//! - `push`: each replica brought up to date from the local store (merged
//!   catch-up files, snapshots), lease renewal, [`Replicator::sync`] and
//!   the waits for the replicas.
//! - `maintain`: compaction, snapshots and retention on the replicas, and
//!   the removal of what no replica needs from the local store.
//! - `run`: [`Replicator::run`], its per-replica tasks and its shutdown.
//! - `handoff`: the file a clean stop ends a Litestream-compatible replica
//!   with, so that `litestream replicate` can continue it.
//! - [`outbox`] (the local store), [`retention`] (the plans), `marks`
//!   (what each replica was last known to hold), `rebase` (continuing a
//!   replica that holds more than was listed).
//!
//! # Locks
//!
//! The replicator's state sits behind seven mutexes. Take them in this
//! order, never the reverse: while holding one, take only those below it
//! (any may be skipped).
//!
//! 1. `Slot::maintaining` (tokio): one maintenance pass per replica, held
//!    across the whole pass (`maintain_one`), its awaits included.
//! 2. `Slot::state` (tokio): a replica's position, listing and lease. A
//!    push holds it across its awaits (lease renewal, uploads, a snapshot,
//!    a rebase); maintenance only while it plans, records or renews the
//!    lease. May be taken while holding 1.
//! 3. `Inner::produce` (tokio): one producer step at a time, held across
//!    the step's blocking task, and by `take_snapshot` and `rebase` across
//!    the steps they run. May be taken while holding 1 or 2 (a push's
//!    snapshot or rebase, a maintenance snapshot).
//! 4. `Inner::db` (std): the watched database, taken only in blocking code.
//!    May be taken while holding 3 (a producer step, `take_snapshot`,
//!    `rebase`, [`Replicator::restart_wal_now`]).
//! 5. `Inner::presync` (std): the background fsync's flag. `presynced`
//!    takes it while holding 4.
//! 6. `Inner::outbox` (std): the local store's index. Taken while holding 4
//!    (`ship_blocking`, `sync_outbox`), 5 (`presynced`), or 2 (a push
//!    reading its chain, `late_init`).
//! 7. `Slot::status` (std): a replica's last error and upload time, a leaf;
//!    taken while holding 2 (the end of `push` and of `maintain_one`).
//!
//! No std guard is held across an `.await`; the tokio ones are held across
//! the awaits said above. The `state` of two replicas is never waited for
//! at once: pushes of different replicas run side by side, each holding
//! only its own, and `collect_outbox` takes each with `try_lock` and drops
//! it before the next and before `outbox`. The background fsync thread
//! releases `outbox` before its drop guard takes `presync`; `status` takes
//! `outbox`, `db`, each `status` and `presync` one at a time. The watch
//! channels (`head`, `shipped`, `covered`) are read by copying the value
//! out at once and are never held while a mutex is taken. A caller's own
//! locks (the vault's writer connection, whose commit hook calls
//! [`Replicator::restart_wal_now`]) come before all of these; that call
//! takes `produce` only with `try_lock`, so it never waits for a producer
//! step.
//!
//! A panic while a std mutex is held poisons it. None of them may then turn
//! every later lock into a panic (the status handlers of the HTTP server
//! read them too), so each is taken through [`lock_or_recover`] or, for the
//! database, `lock_db`; the comment at each declaration says why its state
//! is still valid after an interrupted critical section.

mod error;
mod handoff;
mod maintain;
mod marks;
mod merge;
mod open;
mod options;
pub mod outbox;
mod produce;
mod push;
mod rebase;
pub mod retention;
mod run;
mod status;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::db::WatchedDb;
use crate::ltx::{Checksum, Txid};
use crate::replica::lease::Lease;
use crate::replica::{LtxFileInfo, Replica};
use outbox::Outbox;

pub use error::ReplicateError;
pub use open::{ReplicaHead, replica_head};
pub use options::{Clock, LeaseOptions, ReplicateOptions};
pub use produce::{SyncOutcome, WalRestart};
pub use retention::RetentionOptions;
pub use status::{DbStatus, ReplicaStatus, STATUS_FILE};

/// The database's latest produced state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    txid: Txid,
    checksum: Checksum,
    timestamp_ms: i64,
}

/// What the replicator knows of one replica.
#[derive(Debug)]
struct SlotState {
    /// The replica's latest TXID and checksum.
    txid: Txid,
    checksum: Checksum,
    /// Its chain cannot be continued from the local store: the next push
    /// uploads a snapshot.
    needs_snapshot: bool,
    /// The replica's files, as listed at start and kept up to date by this
    /// replicator (the lease makes it the only writer).
    files: Vec<LtxFileInfo>,
    /// When each level was last compacted (index = level).
    compacted_at: [Option<DateTime<Utc>>; 10],
    retention_at: Option<DateTime<Utc>>,
    /// The lease on the replica, and when it was last renewed.
    lease: Option<Lease>,
    /// The lease was lost: nothing more is written to this replica.
    lease_lost: Option<String>,
    /// It could not be reached at start: its lease and position are still
    /// to be established.
    unreachable: bool,
    /// A level-0 upload found its name taken and no listing has yet shown
    /// what holds it: until an upload succeeds, files go one at a time, so
    /// the next attempt meets the same name (a merged file, named by its
    /// range, could slip past the conflict and branch the history).
    conflicted: bool,
}

/// State of the background fsync that runs ahead of a checkpoint.
#[derive(Default)]
struct Presync {
    running: bool,
    /// Rounds run since the last checkpoint.
    rounds: u8,
}

struct Slot {
    replica: Replica,
    /// Lock order: 2 (see the module's `# Locks`).
    state: tokio::sync::Mutex<SlotState>,
    /// One maintenance pass at a time. Maintenance holds `state` only to
    /// plan and to record; its uploads and deletes run without it, so pushes
    /// of new commits never wait behind a compaction or a snapshot. Lock
    /// order: 1 (see the module's `# Locks`).
    maintaining: tokio::sync::Mutex<()>,
    shipped: watch::Sender<Txid>,
    /// Display only (status, metrics). Every critical section assigns whole
    /// fields or clones the value, so a panic part-way leaves a valid
    /// status: taken with [`lock_or_recover`]. Lock order: 7, a leaf (see
    /// the module's `# Locks`).
    status: Mutex<ReplicaStatus>,
}

struct Inner {
    path: PathBuf,
    /// The local state folder (for the notes of [`marks`]).
    state_dir: PathBuf,
    opts: ReplicateOptions,
    /// The read marks, the WAL position and the page table of the shipped
    /// state. A step interrupted by a panic may leave the position or the
    /// table out of step with each other: taken with `lock_db`, which then
    /// forgets both and resumes from the last announced state by comparing
    /// every page (as at a start whose saved state cannot be proven). Lock
    /// order: 4 (see the module's `# Locks`).
    db: Mutex<WatchedDb>,
    /// One producer step at a time: prepare, store locally, commit. Lock
    /// order: 3 (see the module's `# Locks`).
    produce: tokio::sync::Mutex<()>,
    /// The local store's index. Every `Outbox` method either only reads, or
    /// does its file I/O first and then changes the index by single
    /// insertions, removals or flag writes, each true of the disk when made;
    /// so after a panic part-way the index still describes files that are
    /// there (at worst it misses a file just written, which the next open
    /// indexes; a file is marked durable only after its fsync). Taken with
    /// [`lock_or_recover`]. Lock order: 6 (see the module's `# Locks`).
    outbox: Mutex<Outbox>,
    head: watch::Sender<Head>,
    slots: Vec<Slot>,
    clock: Clock,
    /// Whether [`Replicator::run`] is replicating (until its shutdown).
    running: std::sync::atomic::AtomicBool,
    /// Wakes the producer at once (the commit hook of an embedded writer).
    wake: tokio::sync::Notify,
    /// Fsyncs of the local store run ahead of a checkpoint, off the
    /// producer's path (see `produce_step`). A flag and a counter, each set
    /// by one assignment, any combination valid (the job resets `running`
    /// even when it panics: see `presynced`). Taken with
    /// [`lock_or_recover`]. Lock order: 5 (see the module's `# Locks`).
    presync: Mutex<Presync>,
    /// Replicas whose task is uploading now, and a signal when one ends.
    uploading: std::sync::atomic::AtomicUsize,
    upload_done: tokio::sync::Notify,
    /// Commits counted by an embedded writer's hook, when attached.
    commit_counter: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
    /// The highest counted commit known to be in the local store, and the
    /// TXID that holds it.
    covered: watch::Sender<(u64, Txid)>,
    /// What the status file last said (the time it was taken aside), and
    /// when it was written: it is rewritten only when that changes, or
    /// after [`status::STATUS_REFRESH`].
    status_written: Mutex<Option<(Vec<u8>, std::time::Instant)>>,
}

/// Replicates one database to one or more replicas.
///
/// Every committed transaction becomes an LTX file in a local store beside
/// the database; each replica receives those files at its own pace, so a
/// slow or failing replica never holds back the others (and the WAL can be
/// checkpointed once the files are durable locally).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use litevault::{Replica, Replicator, ReplicateOptions};
/// let replicas = vec![
///     Replica::open("file:///var/backups/app")?,
///     Replica::open("s3://bucket/app?region=eu-west-1")?,
/// ];
/// let replicator = Replicator::open_many("app.db", replicas, ReplicateOptions::default()).await?;
/// replicator.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Replicator {
    inner: Arc<Inner>,
}

pub(crate) use crate::task::{blocking, lock_or_recover};

/// Locks the watched database. After a panic in a step that held it, its
/// WAL position and page table may disagree with the state announced to the
/// replicas: both are dropped, and the next step resumes from the announced
/// state (the head) by comparing every page with it, which is what a start
/// does when the saved state cannot be proven. The read marks need nothing:
/// `WatchedDb` changes which connection holds one only next to the SQL calls
/// that take or release it, which return errors, not panics.
fn lock_db(inner: &Inner) -> MutexGuard<'_, WatchedDb> {
    match inner.db.lock() {
        Ok(db) => db,
        Err(poisoned) => {
            let mut db = poisoned.into_inner();
            inner.db.clear_poison();
            let head = *inner.head.borrow();
            db.set_shipped_state(head.txid, head.checksum, None, None);
            tracing::error!(
                db = %inner.path.display(),
                txid = %head.txid,
                "a step on the database panicked; resuming from the last shipped state by comparing every page"
            );
            db
        }
    }
}
