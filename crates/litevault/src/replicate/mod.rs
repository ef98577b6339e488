//! The shipping loop: watch the database, upload LTX files, checkpoint.
//!
//! [`Replicator::open`] establishes where the replica stands (its latest TXID
//! and checksum) and reconciles the local state with it; [`Replicator::sync`]
//! ships what is new; [`Replicator::run`] loops until a caller-supplied
//! shutdown future resolves, then does a final sync.
//!
//! # Locks
//!
//! The replicator's state sits behind seven mutexes. Take them in this
//! order, never the reverse (any may be skipped):
//!
//! 1. `Slot::maintaining` (tokio): one maintenance pass per replica.
//! 2. `Slot::state` (tokio): a replica's position, listing and lease.
//! 3. `Inner::produce` (tokio): one producer step at a time.
//! 4. `Inner::db` (std): the watched database.
//! 5. `Inner::presync` (std): the background fsync's flag.
//! 6. `Inner::outbox` (std): the local store's index.
//! 7. `Slot::status` (std): a replica's last error and upload time.
//!
//! So: a push holds `state` and may take a snapshot (`produce`, then `db`);
//! a producer step holds `db` and checks `presync`, which looks at the
//! `outbox` while it holds `presync`; `status` is a leaf. The `state` of two
//! replicas is never held at once (`collect_outbox` takes each with
//! `try_lock` and drops it before the next). A caller's own locks (the
//! vault's writer connection, whose commit hook calls
//! [`Replicator::restart_wal_now`]) come before all of these. No std guard
//! is held across an `.await`.
//!
//! A panic while a std mutex is held poisons it. None of them may then turn
//! every later lock into a panic (the status handlers of the HTTP server
//! read them too), so each is taken through [`lock_or_recover`] or, for the
//! database, `lock_db`; the comment at each declaration says why its state
//! is still valid after an interrupted critical section.

mod marks;
pub mod outbox;
mod rebase;
pub mod retention;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::body::{LtxBody, SPILL_THRESHOLD, SpillWriter};
use crate::chain::plan_chain;
use crate::db::{self, CheckpointOptions, Prepared, ShipKind, WatchedDb};
use crate::ltx::{self, Checksum, DbChecksum, Txid};
use crate::replica::lease::Lease;
use crate::replica::{LtxFileInfo, Replica, ReplicaError, SNAPSHOT_LEVEL};
use outbox::{Outbox, OutboxFile};
pub use retention::RetentionOptions;

/// Errors of the replicator.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// The database cannot be watched.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// The replica cannot be reached or written.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// A file in the replica is not valid LTX.
    #[error("replica file {file} is not valid LTX: {source}")]
    BadFile {
        /// The file.
        file: String,
        /// The decoding error.
        #[source]
        source: ltx::LtxError,
    },
    /// The replica's latest state cannot be established.
    #[error(
        "cannot continue {replica}: its files carry no checksums and the chain up to TXID {txid} cannot be read; restore it to check it, or replicate to an empty location"
    )]
    UnknownReplicaState {
        /// The replica URL.
        replica: String,
        /// Its latest TXID.
        txid: Txid,
    },
    /// The final sync did not finish in time.
    #[error(
        "the final sync did not finish within {0:?}; the unshipped frames are still in the WAL and will ship on the next start"
    )]
    ShutdownTimeout(Duration),
    /// The local store beside the database cannot be written.
    #[error("local state in {path}: {source}; check the disk and the permissions of that folder")]
    Local {
        /// The folder or file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The replica's lease is held by another replicator, or was lost.
    #[error(transparent)]
    Lease(#[from] crate::replica::lease::LeaseError),
    /// A replica did not answer in time.
    #[error("replica {replica} did not answer within {after:?}; retrying in the background")]
    Unreachable {
        /// The replica.
        replica: String,
        /// How long we waited.
        after: Duration,
    },
    /// No replica was given.
    #[error("no replica given: pass at least one replica URL")]
    NoReplicas,
    /// The same replica was given twice.
    #[error("replica {0} is listed twice; each replica may appear once per database")]
    DuplicateReplica(String),
    /// A replica holds a history this database does not continue.
    #[error(
        "replica {replica} holds TXID {txid} with content this database does not have (another writer, or a different database); point it at an empty location, or restore from it first"
    )]
    Diverged {
        /// The replica URL.
        replica: String,
        /// Its latest TXID.
        txid: Txid,
    },
    /// A snapshot could not be taken because the database kept changing.
    #[error(
        "could not take a consistent snapshot of the database: it kept changing; retrying later"
    )]
    SnapshotUnavailable,
    /// Every pass of a full sync found the WAL changing under its reads.
    #[error(
        "the WAL kept changing under the sync's reads ({0}); the commits are safe in the WAL and ship on the next pass or start"
    )]
    WalUnsettled(&'static str),
    /// More compaction levels than the key layout has room for.
    #[error(
        "{0} compaction levels given; at most 8 (L1 to L8): level 9 holds the snapshots. Drop the extra levels"
    )]
    TooManyLevels(usize),
    /// A blocking task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Settings of the shipping loop.
#[derive(Clone, Debug)]
pub struct ReplicateOptions {
    /// How often the WAL is looked at for new commits.
    pub poll_interval: Duration,
    /// Checkpoint thresholds.
    pub checkpoint: CheckpointOptions,
    /// Time allowed for the final sync at shutdown.
    pub shutdown_timeout: Duration,
    /// Write files that Litestream 0.5 can restore (NoChecksum flag, with
    /// litevault's checksums in the reserved header bytes).
    pub litestream_compat: bool,
    /// Compaction, snapshots and retention.
    pub retention: RetentionOptions,
    /// The clock files are stamped with and maintenance runs by.
    pub clock: Clock,
    /// One writer per replica: the lease each replicator takes (`None`:
    /// no lease, for replicas another mechanism protects).
    pub lease: Option<LeaseOptions>,
    /// Least time between two uploads of new transactions to one replica.
    /// The first commit after a quiet spell ships at once; under a steady
    /// load, commits are batched into one upload per interval (as
    /// Litestream's `sync-interval`), which bounds the PUT requests.
    pub sync_interval: Duration,
    /// Group commit for an embedded writer: after its commit hook wakes the
    /// shipper, wait this long for more commits before taking them in, so
    /// that they share one file and one upload (0: take them at once).
    pub commit_window: Duration,
}

/// Settings of the replica lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseOptions {
    /// How long the lease lasts unless renewed (renewed every third of it).
    pub ttl: Duration,
    /// Replace a lease whose holder stopped renewing it (after expiry).
    pub takeover: bool,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            ttl: crate::defaults::LEASE_TTL,
            takeover: false,
        }
    }
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        use crate::defaults;
        ReplicateOptions {
            poll_interval: defaults::POLL_INTERVAL,
            checkpoint: CheckpointOptions::default(),
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            litestream_compat: defaults::LITESTREAM_COMPAT,
            retention: RetentionOptions::default(),
            clock: Clock::system(),
            lease: Some(LeaseOptions::default()),
            sync_interval: defaults::SYNC_INTERVAL,
            commit_window: Duration::ZERO,
        }
    }
}

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

/// The clock the replicator stamps files with and runs compaction by
/// (milliseconds since the epoch). Tests and simulations replace it.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(now_ms))
    }

    /// A clock reading `f`.
    pub fn from_fn(f: impl Fn() -> i64 + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }

    /// Now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        (self.0)()
    }

    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_else(Utc::now)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

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
    lease: Option<(Lease, Instant)>,
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

/// Status of one replica, for `status` and metrics.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ReplicaStatus {
    /// The replica URL (no credentials).
    pub url: String,
    /// Its latest TXID.
    pub txid: Txid,
    /// When its last upload finished.
    pub last_upload: Option<DateTime<Utc>>,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// How far behind the database it is: the age of the oldest commit it
    /// does not have yet (0 when up to date).
    pub lag_ms: u64,
    /// Files waiting for it in the local store.
    pub pending_files: usize,
    /// Requests and bytes so far.
    pub requests: crate::replica::RequestCounts,
    /// Files it holds, per level (index = level).
    pub files_per_level: [usize; 10],
}

/// Status of one database and its replicas (`litevault status`, metrics).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DbStatus {
    /// The database path.
    pub db: PathBuf,
    /// Whether the replicator is running (false in the last status a
    /// stopped replicator wrote).
    pub running: bool,
    /// The latest TXID taken from the database.
    pub txid: Txid,
    /// When that state was committed.
    pub txid_time: Option<DateTime<Utc>>,
    /// Size of the WAL file in bytes.
    pub wal_bytes: u64,
    /// Bytes in the local LTX store.
    pub local_store_bytes: u64,
    /// Checkpoints run by the replicator.
    #[serde(default)]
    pub checkpoints: db::CheckpointStats,
    /// A checkpoint is due and waits while the local store's files are
    /// fsynced in the background (commits keep shipping meanwhile).
    #[serde(default)]
    pub checkpoint_waiting_for_fsync: bool,
    /// When this status was taken.
    pub updated_at: DateTime<Utc>,
    /// Each replica.
    pub replicas: Vec<ReplicaStatus>,
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

/// The file a running replicator refreshes its status in.
pub const STATUS_FILE: &str = "status.json";

/// State of the background fsync that runs ahead of a checkpoint.
#[derive(Default)]
struct Presync {
    running: bool,
    /// Rounds run since the last checkpoint.
    rounds: u8,
}

struct Slot {
    replica: Replica,
    state: tokio::sync::Mutex<SlotState>,
    /// One maintenance pass at a time. Maintenance holds `state` only to
    /// plan and to record; its uploads and deletes run without it, so pushes
    /// of new commits never wait behind a compaction or a snapshot.
    maintaining: tokio::sync::Mutex<()>,
    shipped: watch::Sender<Txid>,
    /// Display only (status, metrics). Every critical section assigns whole
    /// fields or clones the value, so a panic part-way leaves a valid
    /// status: taken with [`lock_or_recover`].
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
    /// every page (as at a start whose saved state cannot be proven).
    db: Mutex<WatchedDb>,
    /// One producer step at a time: prepare, store locally, commit.
    produce: tokio::sync::Mutex<()>,
    /// The local store's index. Every `Outbox` method either only reads, or
    /// does its file I/O first and then changes the index by single
    /// insertions, removals or flag writes, each true of the disk when made;
    /// so after a panic part-way the index still describes files that are
    /// there (at worst it misses a file just written, which the next open
    /// indexes; a file is marked durable only after its fsync). Taken with
    /// [`lock_or_recover`].
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
    /// [`lock_or_recover`].
    presync: Mutex<Presync>,
    /// Replicas whose task is uploading now, and a signal when one ends.
    uploading: std::sync::atomic::AtomicUsize,
    upload_done: tokio::sync::Notify,
    /// Commits counted by an embedded writer's hook, when attached.
    commit_counter: std::sync::OnceLock<Arc<std::sync::atomic::AtomicU64>>,
    /// The highest counted commit known to be in the local store, and the
    /// TXID that holds it.
    covered: watch::Sender<(u64, Txid)>,
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

/// Runs a future, turning a panic in it into an error, so that one bad step
/// of a replica's task does not end the task (and the replica's uploads)
/// for good.
async fn no_panic<T>(
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl From<crate::task::TaskFailed> for ReplicateError {
    fn from(e: crate::task::TaskFailed) -> Self {
        ReplicateError::Internal(e.to_string())
    }
}

/// The latest state of a replica: TXID, checksum, and the file that ends it.
#[derive(Clone, Debug)]
pub struct ReplicaHead {
    /// The highest TXID any file reaches (0 when the replica is empty).
    pub txid: Txid,
    /// The post-apply checksum of that state, when the file records one.
    pub checksum: Option<Checksum>,
    /// Every file of the replica.
    pub files: Vec<LtxFileInfo>,
}

/// Reads where a replica stands.
pub async fn replica_head(replica: &Replica) -> Result<ReplicaHead, ReplicateError> {
    let files = replica.list_all().await?;
    let newest = files.iter().map(|f| f.max_txid).max();
    let Some(last) = files
        .iter()
        .filter(|f| Some(f.max_txid) == newest)
        .min_by_key(|f| (f.size, f.level))
        .cloned()
    else {
        return Ok(ReplicaHead {
            txid: Txid(0),
            checksum: None,
            files,
        });
    };
    let header = replica
        .read_range(&last, 0..ltx::HEADER_SIZE as u64)
        .await?;
    let header = ltx::Header::decode(&header).map_err(|source| ReplicateError::BadFile {
        file: last.to_string(),
        source,
    })?;
    let t = replica
        .read_range(
            &last,
            last.size.saturating_sub(ltx::TRAILER_SIZE as u64)..last.size,
        )
        .await?;
    let trailer = ltx::Trailer::decode(&t).map_err(|source| ReplicateError::BadFile {
        file: last.to_string(),
        source,
    })?;
    let checksum = ltx::rolling_checksums(&header, &trailer).map(|(_, post)| post);
    Ok(ReplicaHead {
        txid: last.max_txid,
        checksum,
        files,
    })
}

/// A body of the local store, checked before it is sent: one read back
/// from disk (where it may have been torn or overwritten since it was
/// written) must decode with its file checksum, else `BadFile`. Bodies
/// still in memory were encoded by this process and go as they are.
async fn verify_stored(body: LtxBody, f: &OutboxFile) -> Result<LtxBody, ReplicateError> {
    let Some(path) = body.file_path().map(Path::to_path_buf) else {
        return Ok(body);
    };
    let name = ltx::format_filename(f.min_txid, f.max_txid);
    blocking(move || {
        let bad = |source| ReplicateError::BadFile {
            file: name.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(|source| ReplicateError::Local {
            path: path.clone(),
            source,
        })?;
        let mut dec = ltx::Decoder::new(std::io::BufReader::new(file)).map_err(bad)?;
        let mut page = Vec::new();
        while dec.next_page(&mut page).map_err(bad)?.is_some() {}
        dec.finish().map_err(bad)?;
        Ok(body)
    })
    .await?
}

/// How long opening waits for one replica before going on without it.
const INIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Takes a replica's lease (when leases are on) and reads where it stands.
async fn init_replica(
    replica: &Replica,
    db: &str,
    lease: Option<LeaseOptions>,
    known: Option<Txid>,
) -> Result<(Option<(Lease, Instant)>, ReplicaHead), ReplicateError> {
    let lease = match lease {
        Some(lo) => match replica.acquire_lease(db, lo.ttl, lo.takeover).await {
            Ok(l) => {
                // The only writer now: what a killed upload left can go.
                replica.sweep_staging();
                Some((l, Instant::now()))
            }
            // The store cannot be reached: not a conflict with another writer.
            Err(crate::replica::lease::LeaseError::Replica(e)) => return Err(e.into()),
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    match head_at_least(replica, known).await {
        Ok(h) => Ok((lease, h)),
        Err(e) => {
            if let Some((l, _)) = lease {
                let _ = l.release().await;
            }
            Err(e)
        }
    }
}

/// How long a start lists a replica again while its listing ends below
/// what this replicator noted it holds (see [`marks`]).
const LISTING_CATCH_UP: Duration = Duration::from_secs(8);

/// The replica's head, from a listing that reaches `known` (the TXID it
/// was noted to hold) if one does within [`LISTING_CATCH_UP`].
async fn head_at_least(
    replica: &Replica,
    known: Option<Txid>,
) -> Result<ReplicaHead, ReplicateError> {
    let mut h = replica_head(replica).await?;
    let Some(known) = known else {
        return Ok(h);
    };
    let deadline = Instant::now() + LISTING_CATCH_UP;
    while h.txid < known && Instant::now() < deadline {
        tracing::info!(%replica, listed = %h.txid, %known, "the listing ends below what this replicator uploaded; listing again");
        tokio::time::sleep(Duration::from_millis(500)).await;
        h = replica_head(replica).await?;
    }
    if h.txid < known {
        tracing::warn!(%replica, listed = %h.txid, %known, "the replica holds less than this replicator uploaded to it (emptied, or restored from an older copy?); continuing from what it lists");
    }
    Ok(h)
}

/// Applies the page checksums of replica files `from+1..=to` to a table,
/// verifying each file's pre-apply checksum against the table.
async fn roll_forward(
    replica: &Replica,
    files: &[LtxFileInfo],
    mut table: DbChecksum,
    from: Txid,
    to: Txid,
) -> Option<DbChecksum> {
    let chain = plan_chain(files, from, to)?;
    for f in chain {
        let bytes = replica.read_file(&f).await.ok()?;
        let (h, pages, trailer) = ltx::decode_all(&bytes).ok()?;
        // Files without checksums (written by Litestream) are applied on
        // trust in their own CRC; files with checksums must link up.
        let sums = ltx::rolling_checksums(&h, &trailer);
        if let Some((pre, _)) = sums
            && !h.is_snapshot()
            && pre != table.value()
        {
            return None;
        }
        if h.is_snapshot() {
            table = DbChecksum::new();
        }
        table.set_len(h.commit);
        for (pgno, data) in &pages {
            table.apply_page(*pgno, data);
        }
        if let Some((_, post)) = sums
            && table.value() != post
        {
            return None;
        }
    }
    Some(table)
}

/// The local state established at start: TXID, checksum, page table and
/// WAL position, when they can be proven from the saved state and the
/// local store.
struct LocalState {
    txid: Txid,
    checksum: Checksum,
    table: DbChecksum,
    wal: Option<db::WalPosition>,
}

fn local_state(
    outbox: &Outbox,
    saved_table: Option<(Txid, DbChecksum)>,
    saved_pos: Option<db::SavedPosition>,
    page_size: u32,
) -> Option<LocalState> {
    let pos = saved_pos?;
    let (t, mut table) = saved_table?;
    if t > pos.txid || pos.page_size != page_size {
        return None;
    }
    if t < pos.txid {
        // Roll the table forward over the files in the local store.
        let chain = outbox.chain_after(t, table.value(), pos.txid)?;
        for f in chain.iter().take_while(|f| f.max_txid <= pos.txid) {
            let path = outbox.path(f.level, f.min_txid, f.max_txid);
            let bytes = std::fs::read(path).ok()?;
            let (h, pages, _) = ltx::decode_all(&bytes).ok()?;
            if h.is_snapshot() {
                table = DbChecksum::new();
            }
            table.set_len(h.commit);
            for (pgno, data) in &pages {
                table.apply_page(*pgno, data);
            }
            if table.value() != f.post_apply {
                return None;
            }
        }
    }
    (table.value() == pos.checksum).then_some(LocalState {
        txid: pos.txid,
        checksum: pos.checksum,
        table,
        wal: Some(pos.wal),
    })
}

impl Replicator {
    /// Opens the database and establishes where the replica stands.
    pub async fn open(
        db_path: impl AsRef<Path>,
        replica: Replica,
        opts: ReplicateOptions,
    ) -> Result<Replicator, ReplicateError> {
        Self::open_many(db_path, vec![replica], opts).await
    }

    /// Opens the database and establishes where each replica stands. Each
    /// replica keeps its own position: one that is behind catches up from
    /// the local store, or receives a snapshot when the store no longer
    /// holds what it misses.
    pub async fn open_many(
        db_path: impl AsRef<Path>,
        replicas: Vec<Replica>,
        opts: ReplicateOptions,
    ) -> Result<Replicator, ReplicateError> {
        if replicas.is_empty() {
            return Err(ReplicateError::NoReplicas);
        }
        let levels = opts.retention.levels.len();
        if levels >= SNAPSHOT_LEVEL as usize {
            return Err(ReplicateError::TooManyLevels(levels));
        }
        for (i, r) in replicas.iter().enumerate() {
            if replicas[..i].iter().any(|o| o.to_string() == r.to_string()) {
                return Err(ReplicateError::DuplicateReplica(r.to_string()));
            }
        }
        let path = db_path.as_ref().to_path_buf();
        let p = path.clone();
        let checkpoint = opts.checkpoint;
        let watched = blocking(move || WatchedDb::open(&p, checkpoint)).await??;
        let state_dir = watched.state_dir().path().to_path_buf();
        let sd = state_dir.clone();
        let mut outbox = blocking(move || Outbox::open(&sd))
            .await?
            .map_err(|source| ReplicateError::Local {
                path: state_dir.clone(),
                source,
            })?;
        // Each replica: its lease, then where it stands. A replica that
        // cannot be reached now is retried in the background; a lease held
        // by another replicator stops everything.
        let db_name = watched.path().display().to_string();
        let lease_opts = opts.lease;
        let inits = futures::future::join_all(replicas.iter().map(|r| async {
            // A replica that hangs must not hold back the start.
            let known = marks::load(&state_dir, &r.to_string());
            tokio::time::timeout(INIT_TIMEOUT, init_replica(r, &db_name, lease_opts, known))
                .await
                .unwrap_or_else(|_| {
                    Err(ReplicateError::Unreachable {
                        replica: r.to_string(),
                        after: INIT_TIMEOUT,
                    })
                })
        }))
        .await;
        let mut leases = Vec::with_capacity(replicas.len());
        let mut heads: Vec<Option<ReplicaHead>> = Vec::with_capacity(replicas.len());
        let mut init_errors: Vec<Option<String>> = Vec::with_capacity(replicas.len());
        let mut fatal = None;
        let mut first_error = None;
        for r in inits {
            match r {
                Ok((l, h)) => {
                    leases.push(l);
                    heads.push(Some(h));
                    init_errors.push(None);
                }
                Err(e @ ReplicateError::Lease(_)) => {
                    fatal.get_or_insert(e);
                    leases.push(None);
                    heads.push(None);
                    init_errors.push(None);
                }
                Err(e) => {
                    init_errors.push(Some(e.to_string()));
                    first_error.get_or_insert(e);
                    leases.push(None);
                    heads.push(None);
                }
            }
        }
        if let Some(e) = fatal {
            for (l, _) in leases.into_iter().flatten() {
                let _ = l.release().await;
            }
            return Err(e);
        }
        let (saved_table, saved_pos) = watched.saved_state();
        let local = local_state(&outbox, saved_table.clone(), saved_pos, watched.page_size());
        let Some((ref_i, head)) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i, h.as_ref()?)))
            .max_by_key(|(i, h)| (h.txid, std::cmp::Reverse(*i)))
        else {
            // No replica can be reached. Starting is still safe when the
            // local state is proven: files wait in the local store.
            let Some(l) = local else {
                // Every replica failed (a lease conflict returned above), so
                // `first_error` is set; the fallback only keeps this total.
                return Err(first_error.unwrap_or(ReplicateError::NoReplicas));
            };
            tracing::warn!(db = %path.display(), "no replica can be reached; replicating to the local store until they can");
            heads = vec![None; replicas.len()];
            return Self::assemble(
                path,
                watched,
                outbox,
                replicas,
                heads,
                leases,
                init_errors,
                (l.txid, l.checksum, Some(l.table), l.wal),
                usize::MAX,
                opts,
            );
        };
        let reference = &replicas[ref_i];
        let mut state: Option<DbChecksum> = None;
        let mut wal = None;
        let checksum;
        let txid;
        let on_local_chain = |l: &LocalState| match head.checksum {
            _ if head.txid > l.txid => false,
            Some(c) if head.txid == l.txid => c == l.checksum,
            Some(c) => outbox
                .files()
                .any(|f| f.level == 0 && f.max_txid == head.txid && f.post_apply == c),
            None => true,
        };
        if head.txid.0 == 0 {
            // Every replica is empty: start a new history with a snapshot.
            watched.state_dir().clear();
            outbox.clear();
            txid = Txid(0);
            checksum = Checksum(0);
        } else if let Some(l) = local.filter(on_local_chain) {
            txid = l.txid;
            checksum = l.checksum;
            state = Some(l.table);
            wal = l.wal;
        } else {
            if let (Some((t, table)), Some(sum)) = (saved_table, head.checksum) {
                if table_matches(t, &table, head.txid, sum) {
                    state = Some(table);
                } else if t < head.txid {
                    state = roll_forward(reference, &head.files, table, t, head.txid).await;
                    if state.as_ref().is_some_and(|tb| tb.value() != sum) {
                        state = None;
                    }
                }
            } else if head.checksum.is_none() {
                // The replica's files carry no checksums (Litestream wrote
                // them): learn its exact state by reading the chain once, so
                // the next file can state its pre-apply checksum and ship
                // only what differs.
                tracing::info!(txid = %head.txid, "the replica carries no checksums; reading it once to continue it");
                state = roll_forward(
                    reference,
                    &head.files,
                    DbChecksum::new(),
                    Txid(0),
                    head.txid,
                )
                .await;
            }
            checksum = match (&state, head.checksum) {
                (_, Some(sum)) => sum,
                (Some(t), None) => t.value(),
                (None, None) => {
                    return Err(ReplicateError::UnknownReplicaState {
                        replica: reference.to_string(),
                        txid: head.txid,
                    });
                }
            };
            txid = head.txid;
            wal = saved_pos
                .filter(|p| {
                    state.is_some()
                        && p.txid == head.txid
                        && p.checksum == checksum
                        && p.page_size == watched.page_size()
                })
                .map(|p| p.wal);
            if state.is_none() {
                tracing::info!(
                    db = %path.display(),
                    %txid,
                    "no local state matches the replica; the next sync compares every page"
                );
            }
        }
        Self::assemble(
            path,
            watched,
            outbox,
            replicas,
            heads,
            leases,
            init_errors,
            (txid, checksum, state, wal),
            ref_i,
            opts,
        )
    }

    /// Where a replica stands against the database's state: its TXID and
    /// checksum, and whether it needs a snapshot (the local store cannot
    /// continue its chain).
    fn place_replica(
        replica: &Replica,
        h: &ReplicaHead,
        is_reference: bool,
        db: (Txid, Checksum, bool),
        outbox: &Outbox,
    ) -> Result<(Txid, Checksum, bool), ReplicateError> {
        let (txid, checksum, known) = db;
        let c = match h.checksum {
            Some(c) => c,
            None if is_reference => checksum,
            None => Checksum(0),
        };
        let in_step = h.txid == txid && c == checksum;
        let both_empty = h.txid.0 == 0 && txid.0 == 0;
        let needs_snapshot = !(in_step || both_empty)
            && outbox
                .chain_after(h.txid, c, txid)
                .is_none_or(|ch| ch.is_empty());
        if needs_snapshot && (h.txid > txid || (known && h.txid == txid)) {
            return Err(ReplicateError::Diverged {
                replica: replica.to_string(),
                txid: h.txid,
            });
        }
        if needs_snapshot {
            tracing::info!(replica = %replica, txid = %h.txid, "the replica is behind and the local store cannot bridge the gap: it gets a snapshot");
        }
        Ok((h.txid, c, needs_snapshot))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        path: PathBuf,
        watched: WatchedDb,
        outbox: Outbox,
        replicas: Vec<Replica>,
        heads: Vec<Option<ReplicaHead>>,
        leases: Vec<Option<(Lease, Instant)>>,
        init_errors: Vec<Option<String>>,
        db: (Txid, Checksum, Option<DbChecksum>, Option<db::WalPosition>),
        ref_i: usize,
        opts: ReplicateOptions,
    ) -> Result<Replicator, ReplicateError> {
        let (txid, checksum, state, wal) = db;
        let known = state.is_some();
        let now = opts.clock.now();
        let mut slots = Vec::with_capacity(replicas.len());
        let mut leases = leases.into_iter();
        for (i, ((replica, h), err)) in replicas.into_iter().zip(heads).zip(init_errors).enumerate()
        {
            let (rt, rc, needs_snapshot, files) = match &h {
                Some(h) => {
                    let (t, c, n) = Self::place_replica(
                        &replica,
                        h,
                        i == ref_i,
                        (txid, checksum, known),
                        &outbox,
                    )?;
                    (t, c, n, h.files.clone())
                }
                None => (Txid(0), Checksum(0), false, Vec::new()),
            };
            let status = ReplicaStatus {
                url: replica.to_string(),
                txid: rt,
                files_per_level: count_levels(&files),
                last_error: err.clone(),
                ..Default::default()
            };
            slots.push(Slot {
                maintaining: tokio::sync::Mutex::new(()),
                state: tokio::sync::Mutex::new(SlotState {
                    txid: rt,
                    checksum: rc,
                    needs_snapshot,
                    files,
                    compacted_at: [Some(now); 10],
                    retention_at: None,
                    lease: leases.next().flatten(),
                    lease_lost: None,
                    unreachable: h.is_none(),
                    conflicted: false,
                }),
                shipped: watch::channel(rt).0,
                status: Mutex::new(status),
                replica,
            });
        }
        let mut watched = watched;
        watched.set_litestream_compat(opts.litestream_compat);
        watched.set_shipped_state(txid, checksum, state, wal);
        let clock = opts.clock.clone();
        Ok(Replicator {
            inner: Arc::new(Inner {
                state_dir: watched.state_dir().path().to_path_buf(),
                path,
                db: Mutex::new(watched),
                produce: tokio::sync::Mutex::new(()),
                outbox: Mutex::new(outbox),
                head: watch::channel(Head {
                    txid,
                    checksum,
                    timestamp_ms: clock.now_ms(),
                })
                .0,
                slots,
                clock,
                opts,
                running: std::sync::atomic::AtomicBool::new(false),
                wake: tokio::sync::Notify::new(),
                presync: Mutex::new(Presync::default()),
                uploading: std::sync::atomic::AtomicUsize::new(0),
                upload_done: tokio::sync::Notify::new(),
                commit_counter: std::sync::OnceLock::new(),
                covered: watch::channel((0, txid)).0,
            }),
        })
    }

    /// A replica that could not be reached at start: take its lease and
    /// learn where it stands, now.
    async fn late_init(&self, slot: &Slot, st: &mut SlotState) -> Result<(), ReplicateError> {
        let db_name = self.inner.path.display().to_string();
        let known = marks::load(&self.inner.state_dir, &slot.replica.to_string());
        let (lease, h) =
            init_replica(&slot.replica, &db_name, self.inner.opts.lease, known).await?;
        let head = *self.inner.head.borrow();
        let placed = {
            let outbox = lock_or_recover(&self.inner.outbox);
            Self::place_replica(
                &slot.replica,
                &h,
                false,
                (head.txid, head.checksum, true),
                &outbox,
            )
        };
        let (t, c, n) = match placed {
            Ok(p) => p,
            Err(e) => {
                if let Some((l, _)) = lease {
                    let _ = l.release().await;
                }
                return Err(e);
            }
        };
        st.txid = t;
        st.checksum = c;
        st.needs_snapshot = n;
        st.files = h.files;
        st.lease = lease;
        st.unreachable = false;
        slot.shipped.send_replace(t);
        tracing::info!(replica = %slot.replica, txid = %t, "replica reachable again");
        Ok(())
    }

    /// The first replica.
    pub fn replica(&self) -> &Replica {
        // Cannot fail: `open_many` refuses an empty list of replicas.
        &self.inner.slots[0].replica
    }

    /// Every replica, in the order given.
    pub fn replicas(&self) -> Vec<&Replica> {
        self.inner.slots.iter().map(|s| &s.replica).collect()
    }

    /// The TXID every replica holds: the oldest of their latest states.
    pub fn txid(&self) -> Txid {
        self.inner
            .slots
            .iter()
            .map(|s| *s.shipped.borrow())
            .min()
            .unwrap_or(Txid(0))
    }

    /// The TXID of the latest state taken from the database (it may not be
    /// in every replica yet).
    pub fn local_txid(&self) -> Txid {
        self.inner.head.borrow().txid
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Status of the database and of each replica.
    pub fn status(&self) -> DbStatus {
        let head = *self.inner.head.borrow();
        let now = self.inner.clock.now_ms();
        let (pending, store_bytes): (Vec<(Txid, i64)>, u64) = {
            let outbox = lock_or_recover(&self.inner.outbox);
            (
                outbox
                    .files()
                    .filter(|f| f.level == 0)
                    .map(|f| (f.max_txid, f.timestamp_ms))
                    .collect(),
                outbox.files().map(|f| f.size).sum(),
            )
        };
        let (wal_bytes, checkpoints) = {
            let db = lock_db(&self.inner);
            (db.wal_bytes(), db.checkpoint_stats())
        };
        let replicas = self
            .inner
            .slots
            .iter()
            .map(|s| {
                let mut st = lock_or_recover(&s.status).clone();
                st.txid = *s.shipped.borrow();
                st.requests = s.replica.stats().counts();
                let waiting: Vec<&(Txid, i64)> =
                    pending.iter().filter(|(t, _)| *t > st.txid).collect();
                st.pending_files = waiting.len();
                st.lag_ms = if st.txid >= head.txid {
                    0
                } else {
                    let oldest = waiting
                        .iter()
                        .map(|(_, ts)| *ts)
                        .min()
                        .unwrap_or(head.timestamp_ms);
                    now.saturating_sub(oldest).max(0) as u64
                };
                st
            })
            .collect();
        DbStatus {
            db: self.inner.path.clone(),
            running: self.is_running(),
            txid: head.txid,
            txid_time: (head.txid.0 > 0)
                .then(|| DateTime::from_timestamp_millis(head.timestamp_ms))
                .flatten(),
            wal_bytes,
            local_store_bytes: store_bytes,
            checkpoints,
            checkpoint_waiting_for_fsync: lock_or_recover(&self.inner.presync).running,
            updated_at: self.inner.clock.now(),
            replicas,
        }
    }

    /// Writes the status to `.<db>-litevault/status.json` (atomically).
    fn write_status(&self, running: bool) {
        let mut st = self.status();
        st.running = running;
        let dir = lock_db(&self.inner).state_dir().path().to_path_buf();
        let tmp = dir.join(format!("{STATUS_FILE}.tmp"));
        let ok = std::fs::create_dir_all(&dir).is_ok()
            && serde_json::to_vec_pretty(&st)
                .ok()
                .is_some_and(|b| std::fs::write(&tmp, b).is_ok())
            && std::fs::rename(&tmp, dir.join(STATUS_FILE)).is_ok();
        if !ok {
            tracing::debug!(dir = %dir.display(), "could not write the status file");
        }
    }

    /// Whether [`Replicator::run`] is replicating: true from its start until
    /// its shutdown future resolves.
    pub fn is_running(&self) -> bool {
        self.inner
            .running
            .load(std::sync::atomic::Ordering::Relaxed)
    }

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

    /// Waits until the counted commit `seq` is in the local store, then
    /// until every replica holds it; returns the TXID that holds it.
    pub async fn wait_commit(&self, seq: u64) -> Txid {
        let mut rx = self.inner.covered.subscribe();
        let txid = match rx.wait_for(|c| c.0 >= seq).await {
            Ok(c) => c.1,
            Err(_) => self.inner.head.borrow().txid,
        };
        self.wait_replicated(txid).await;
        txid
    }

    /// Waits until every replica holds `txid` (or a later state).
    pub async fn wait_replicated(&self, txid: Txid) {
        for s in &self.inner.slots {
            let mut rx = s.shipped.subscribe();
            let _ = rx.wait_for(|t| *t >= txid).await;
        }
    }

    /// Takes what is committed in the database into the local store: at
    /// most one LTX file per call. Runs the checkpoint the thresholds call
    /// for once the local store is durable.
    async fn produce(&self) -> Result<SyncOutcome, ReplicateError> {
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
            Prepared::Ship(mut p) => {
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
                    // Not recorded: the next step prepares this TXID
                    // again. No replica has it yet (it is announced
                    // below, only after the commit).
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
                let shipped = SyncOutcome::Shipped {
                    txid: header.max_txid,
                    pages,
                    bytes,
                    resync,
                };
                (shipped, true)
            }
        })
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

    /// Ships what is committed: takes at most one new LTX file from the
    /// database, then brings every replica up to date. Fails if a replica
    /// could not be brought up to date (the others still are, and nothing
    /// is lost: the files wait in the local store).
    pub async fn sync(&self) -> Result<SyncOutcome, ReplicateError> {
        let outcome = self.produce().await?;
        self.push_all().await?;
        Ok(outcome)
    }

    /// Syncs until nothing is left to ship; returns the TXID every replica
    /// holds.
    ///
    /// A pass that had to put the WAL off (it changed under the reads) is
    /// not "nothing left": the sync looks again, for about a second, and
    /// then fails with [`ReplicateError::WalUnsettled`] rather than report
    /// a state that may lack the latest commits.
    pub async fn sync_all(&self) -> Result<Txid, ReplicateError> {
        self.produce_all(false).await?;
        self.push_all().await?;
        Ok(self.txid())
    }

    /// Takes every commit into the local store. A pass that had to put the
    /// WAL off is tried again for about a second, then fails with
    /// [`ReplicateError::WalUnsettled`]. `step_held`: the caller holds the
    /// producer's step already.
    async fn produce_all(&self, step_held: bool) -> Result<(), ReplicateError> {
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

    async fn push_all(&self) -> Result<(), ReplicateError> {
        let results =
            futures::future::join_all((0..self.inner.slots.len()).map(|i| self.push(i))).await;
        self.collect_outbox();
        results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(())
    }

    /// Brings replica `i` up to the database's latest state.
    async fn push(&self, i: usize) -> Result<(), ReplicateError> {
        let slot = &self.inner.slots[i];
        let mut st = slot.state.lock().await;
        let r = self.push_locked(slot, &mut st).await;
        let mut status = lock_or_recover(&slot.status);
        status.last_error = r.as_ref().err().map(|e| e.to_string());
        status.files_per_level = count_levels(&st.files);
        r
    }

    /// Renews the lease when a third of its time has passed; an error when
    /// it is lost (nothing more may be written to the replica).
    async fn keep_lease(&self, slot: &Slot, st: &mut SlotState) -> Result<(), ReplicateError> {
        use crate::replica::lease::LeaseError;
        if let Some(holder) = &st.lease_lost {
            return Err(LeaseError::Lost {
                replica: slot.replica.to_string(),
                holder: holder.clone(),
            }
            .into());
        }
        if let Some((lease, at)) = &mut st.lease
            && at.elapsed() >= lease.ttl() / 3
        {
            match lease.renew().await {
                Ok(()) => *at = Instant::now(),
                Err(LeaseError::Lost { replica, holder }) => {
                    tracing::error!(%replica, %holder, "lease lost: no more writes to this replica");
                    st.lease_lost = Some(holder.clone());
                    return Err(LeaseError::Lost { replica, holder }.into());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn push_locked(&self, slot: &Slot, st: &mut SlotState) -> Result<(), ReplicateError> {
        if st.unreachable {
            self.late_init(slot, st).await?;
        }
        self.keep_lease(slot, st).await?;
        // One round, up to the state announced now: commits that arrive
        // during the upload go in the next round (the sync interval then
        // batches them).
        let mut target = *self.inner.head.borrow();
        let mut rebases = 0;
        loop {
            if st.txid >= target.txid {
                return Ok(());
            }
            if st.needs_snapshot {
                self.snapshot_to(slot, st).await?;
                continue;
            }
            let chain =
                lock_or_recover(&self.inner.outbox).chain_after(st.txid, st.checksum, target.txid);
            let Some(chain) = chain else {
                st.needs_snapshot = true;
                continue;
            };
            if chain.is_empty() {
                return Ok(());
            }
            let chain = if st.conflicted {
                &chain[..1]
            } else {
                &chain[..]
            };
            let made = if let [f] = chain {
                let body = lock_or_recover(&self.inner.outbox).body(f);
                let header = (f.min_txid, f.max_txid, f.timestamp_ms, f.post_apply);
                verify_stored(body, f).await.map(|b| (b, header))
            } else {
                // Behind by several files: send them merged, one request
                // (the merge checks every input's checksums).
                self.merge_outbox(chain).await
            };
            let (body, header) = match made {
                Ok(m) => m,
                Err(ReplicateError::BadFile { file, source }) => {
                    // A local file was damaged after it was written (a
                    // torn write, a bad disk): never sent. The database
                    // still has every page: this replica gets a snapshot.
                    tracing::warn!(replica = %slot.replica, %file, error = %source, "a file of the local store is damaged; the replica gets a snapshot instead");
                    st.needs_snapshot = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (min, max, ts, post) = header;
            let when = DateTime::from_timestamp_millis(ts).unwrap_or_else(Utc::now);
            let info = match slot.replica.write_body(0, min, max, &body, when).await {
                Ok(info) => info,
                Err(e @ ReplicaError::FileConflict { .. }) if rebases < rebase::MAX_REBASES => {
                    // The replica holds more than it was listed with.
                    rebases += 1;
                    st.conflicted = true;
                    self.rebase(slot, st, e, max).await?;
                    target = *self.inner.head.borrow();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            st.conflicted = false;
            st.files.retain(|f| !(f.level == 0 && f.max_txid >= min));
            st.files.push(info);
            marks::store(&self.inner.state_dir, &slot.replica.to_string(), max);
            st.txid = max;
            st.checksum = post;
            slot.shipped.send_replace(max);
            lock_or_recover(&slot.status).last_upload = Some(Utc::now());
        }
    }

    /// Merges consecutive level-0 files of the local store into one body.
    async fn merge_outbox(
        &self,
        chain: &[OutboxFile],
    ) -> Result<(LtxBody, (Txid, Txid, i64, Checksum)), ReplicateError> {
        tracing::debug!(files = chain.len(), "catch-up: merging");
        let inner = self.inner.clone();
        let chain = chain.to_vec();
        blocking(move || {
            let outbox = lock_or_recover(&inner.outbox);
            let (Some(first), Some(last)) = (chain.first(), chain.last()) else {
                return Err(ReplicateError::Internal("merging an empty chain".into()));
            };
            let mut inputs = Vec::with_capacity(chain.len());
            for f in &chain {
                let open = |p: &Path| -> Result<Box<dyn std::io::Read + Send>, ReplicateError> {
                    let file = std::fs::File::open(p).map_err(|source| ReplicateError::Local {
                        path: p.to_path_buf(),
                        source,
                    })?;
                    Ok(Box::new(std::io::BufReader::new(file)))
                };
                let r: Box<dyn std::io::Read + Send> = match outbox.body(f) {
                    LtxBody::Memory(b) => Box::new(std::io::Cursor::new(b)),
                    LtxBody::File { path, .. } => open(&path)?,
                    LtxBody::Spilled(s) => open(s.path())?,
                };
                inputs.push(
                    ltx::Decoder::new(r).map_err(|source| ReplicateError::BadFile {
                        file: ltx::format_filename(f.min_txid, f.max_txid),
                        source,
                    })?,
                );
            }
            let dir = outbox.level_dir(0);
            drop(outbox);
            let out = SpillWriter::new(&dir, SPILL_THRESHOLD);
            let opts = ltx::CompactOptions {
                pre_apply_checksum: (!first.is_snapshot()).then_some(first.pre_apply),
                post_apply_checksum: Some(last.post_apply),
                litestream_compat: inner.opts.litestream_compat,
                ..Default::default()
            };
            let (w, _) =
                ltx::compact(inputs, out, opts).map_err(|source| ReplicateError::BadFile {
                    file: ltx::format_filename(first.min_txid, last.max_txid),
                    source,
                })?;
            let body = w
                .finish()
                .map_err(|source| ReplicateError::Local { path: dir, source })?;
            Ok((
                body,
                (
                    first.min_txid,
                    last.max_txid,
                    last.timestamp_ms,
                    last.post_apply,
                ),
            ))
        })
        .await?
    }

    /// Encodes a snapshot of the database's latest state (after taking in
    /// every commit), retrying while the database moves.
    async fn take_snapshot(&self) -> Result<db::PendingSnapshot, ReplicateError> {
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

    /// Uploads a snapshot to a replica whose chain cannot be continued.
    async fn snapshot_to(&self, slot: &Slot, st: &mut SlotState) -> Result<(), ReplicateError> {
        let snap = self.take_snapshot().await?;
        let max = snap.header.max_txid;
        if max <= st.txid {
            return Err(ReplicateError::Diverged {
                replica: slot.replica.to_string(),
                txid: st.txid,
            });
        }
        let when =
            DateTime::from_timestamp_millis(snap.header.timestamp_ms).unwrap_or_else(Utc::now);
        let info = slot
            .replica
            .write_body(SNAPSHOT_LEVEL, Txid(1), max, &snap.body, when)
            .await?;
        st.files.push(info);
        marks::store(&self.inner.state_dir, &slot.replica.to_string(), max);
        st.txid = max;
        st.checksum = snap.post_apply;
        st.needs_snapshot = false;
        slot.shipped.send_replace(max);
        tracing::info!(replica = %slot.replica, txid = %max, "snapshot uploaded");
        Ok(())
    }

    /// Removes from the local store what no replica needs any more: files
    /// every replica holds and (when compaction is on) has compacted into
    /// the next level.
    fn collect_outbox(&self) {
        let levels = self.inner.opts.retention.levels.len() as u8;
        let mut summaries = Vec::with_capacity(self.inner.slots.len());
        for s in &self.inner.slots {
            let Ok(st) = s.state.try_lock() else {
                return; // busy: next time
            };
            let mut level_max = [Txid(0); 10];
            for f in &st.files {
                if let Some(m) = level_max.get_mut(f.level as usize) {
                    *m = (*m).max(f.max_txid);
                }
            }
            summaries.push((st.txid, level_max));
        }
        let mut outbox = lock_or_recover(&self.inner.outbox);
        let shipped = summaries.iter().map(|s| s.0).min().unwrap_or(Txid(0));
        outbox.release_memory(shipped);
        let doomed: Vec<(u8, Txid)> = outbox
            .files()
            .filter(|f| {
                let next = f.level as usize + 1;
                f.max_txid <= shipped
                    && (f.level >= levels
                        || summaries
                            .iter()
                            .all(|s| s.1.get(next).is_some_and(|m| *m >= f.max_txid)))
            })
            .map(|f| (f.level, f.max_txid))
            .collect();
        for (l, m) in doomed {
            outbox.remove(l, m);
        }
    }

    /// Runs what is due of compaction, snapshots and retention on every
    /// replica, by the replicator's clock.
    pub async fn maintain(&self) -> Result<(), ReplicateError> {
        let results =
            futures::future::join_all((0..self.inner.slots.len()).map(|i| self.maintain_one(i)))
                .await;
        self.collect_outbox();
        results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(())
    }

    async fn maintain_one(&self, i: usize) -> Result<(), ReplicateError> {
        let slot = &self.inner.slots[i];
        let _pass = slot.maintaining.lock().await;
        let r = self.maintain_slot(slot).await;
        let st = slot.state.lock().await;
        let mut status = lock_or_recover(&slot.status);
        if let Err(e) = &r {
            status.last_error = Some(e.to_string());
        }
        status.files_per_level = count_levels(&st.files);
        r
    }

    /// One maintenance pass over a replica: the compactions, snapshot and
    /// retention that are due. Each step plans under the slot's state lock,
    /// does its I/O without it, then records the result under it again.
    /// Concurrent pushes only add level-0 files, which neither a planned
    /// compaction nor a planned deletion depends on.
    async fn maintain_slot(&self, slot: &Slot) -> Result<(), ReplicateError> {
        {
            let mut st = slot.state.lock().await;
            if st.unreachable {
                return Ok(());
            }
            self.keep_lease(slot, &mut st).await?;
        }
        let opts = &self.inner.opts.retention;
        let now = self.inner.clock.now();
        let elapsed =
            |t: Option<DateTime<Utc>>| t.map(|t| (now - t).to_std().unwrap_or(Duration::ZERO));
        for (k, interval) in opts.levels.iter().enumerate() {
            let level = k as u8 + 1;
            let run = {
                let mut st = slot.state.lock().await;
                // Levels 1 to 8 (`open_many` refuses more).
                let Some(at) = st.compacted_at.get_mut(level as usize) else {
                    break;
                };
                if elapsed(*at).is_some_and(|e| e < *interval) {
                    continue;
                }
                *at = Some(now);
                retention::plan_compaction(&st.files, level)
            };
            if let Some(run) = run {
                match self.compact_into(slot, &run, level, true).await {
                    // A local copy of an input failed its checks (a torn
                    // write, a bad disk): the replica's own files are the
                    // reference, and a bad one of those is an error.
                    Err(ReplicateError::BadFile { file, source }) => {
                        tracing::warn!(replica = %slot.replica, %file, error = %source, "a local copy of a compaction input is damaged; merging the replica's own files instead");
                        self.compact_into(slot, &run, level, false).await?;
                    }
                    r => r?,
                }
            }
        }
        if let Some(interval) = opts.snapshot_interval {
            let due = {
                let st = slot.state.lock().await;
                let last = st
                    .files
                    .iter()
                    .filter(|f| f.level == SNAPSHOT_LEVEL)
                    .max_by_key(|f| f.max_txid);
                let since = match last {
                    Some(s) => Some(s.created),
                    None => st.files.iter().map(|f| f.created).min(),
                };
                let changed = last.is_none_or(|s| s.max_txid < st.txid);
                let head = *self.inner.head.borrow();
                changed
                    && st.txid == head.txid
                    && st.txid.0 > 0
                    && elapsed(since).is_some_and(|e| e >= interval)
            };
            if due {
                tracing::debug!(replica = %slot.replica, "snapshot: taking");
                let snap = self.take_snapshot().await?;
                // Only a state the replica already holds: its level-0 chain
                // reaches the snapshot, so nothing is skipped.
                let max = snap.header.max_txid;
                if max.0 > 0 && max <= *slot.shipped.borrow() {
                    let when = DateTime::from_timestamp_millis(snap.header.timestamp_ms)
                        .unwrap_or_else(Utc::now);
                    let info = slot
                        .replica
                        .write_body(SNAPSHOT_LEVEL, Txid(1), max, &snap.body, when)
                        .await?;
                    let mut st = slot.state.lock().await;
                    st.files
                        .retain(|f| !(f.level == SNAPSHOT_LEVEL && f.max_txid == max));
                    st.files.push(info);
                }
            }
        }
        if opts.enabled {
            let doomed = {
                let mut st = slot.state.lock().await;
                if elapsed(st.retention_at).is_some_and(|e| e < opts.check_interval) {
                    return Ok(());
                }
                st.retention_at = Some(now);
                retention::plan_retention(&st.files, now, opts)
            };
            if !doomed.is_empty() {
                let mut doomed = doomed;
                retention::order_for_deletion(&mut doomed);
                tracing::debug!(replica = %slot.replica, files = doomed.len(), "retention: deleting");
                slot.replica.delete_files(&doomed).await?;
                slot.state
                    .lock()
                    .await
                    .files
                    .retain(|f| !doomed.contains(f));
                tracing::debug!(replica = %slot.replica, files = doomed.len(), "retention deleted files");
            }
        }
        Ok(())
    }

    /// Merges a run of files of level `level - 1` into one file of `level`.
    async fn compact_into(
        &self,
        slot: &Slot,
        run: &[LtxFileInfo],
        level: u8,
        local_first: bool,
    ) -> Result<(), ReplicateError> {
        tracing::debug!(replica = %slot.replica, level, files = run.len(), "compaction: merging");
        let mut readers: Vec<Box<dyn std::io::Read + Send>> = Vec::with_capacity(run.len());
        for f in run {
            // Local first: the same file, or (for a level-0 file that went up
            // merged) the pieces it was merged from; else download it.
            let local: Option<Vec<LtxBody>> = if !local_first {
                None
            } else {
                let outbox = lock_or_recover(&self.inner.outbox);
                match outbox
                    .get(f.level, f.min_txid, f.max_txid)
                    .filter(|o| o.size == f.size)
                {
                    Some(o) => Some(vec![outbox.body(o)]),
                    None if f.level == 0 => outbox
                        .covering(f.min_txid, f.max_txid)
                        .map(|pieces| pieces.iter().map(|p| outbox.body(p)).collect()),
                    None => None,
                }
            };
            // Every piece must open, else the whole file is downloaded.
            let opened: Option<Vec<Box<dyn std::io::Read + Send>>> = local.and_then(|bodies| {
                bodies
                    .into_iter()
                    .map(|b| -> Option<Box<dyn std::io::Read + Send>> {
                        match b {
                            LtxBody::Memory(b) => Some(Box::new(std::io::Cursor::new(b))),
                            other => std::fs::File::open(other.file_path()?).ok().map(|f| {
                                Box::new(std::io::BufReader::new(f))
                                    as Box<dyn std::io::Read + Send>
                            }),
                        }
                    })
                    .collect()
            });
            match opened {
                Some(v) => readers.extend(v),
                None => readers.push(Box::new(std::io::Cursor::new(
                    slot.replica.read_file(f).await?,
                ))),
            }
        }
        let inner = self.inner.clone();
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(()); // nothing to merge
        };
        let spill_dir = lock_or_recover(&inner.outbox).level_dir(level);
        let name = format!(
            "L{level}/{}",
            ltx::format_filename(first.min_txid, last.max_txid)
        );
        let (body, header, post) = blocking(move || -> Result<_, ReplicateError> {
            std::fs::create_dir_all(&spill_dir).map_err(|source| ReplicateError::Local {
                path: spill_dir.clone(),
                source,
            })?;
            let bad = |source| ReplicateError::BadFile {
                file: name.clone(),
                source,
            };
            let mut inputs = Vec::with_capacity(readers.len());
            for r in readers {
                inputs.push(ltx::Decoder::new(r).map_err(bad)?);
            }
            // At least one input per file of the (non-empty) run.
            let (Some(first_h), Some(last_h)) = (
                inputs.first().map(|d| *d.header()),
                inputs.last().map(|d| *d.header()),
            ) else {
                return Err(ReplicateError::Internal(format!(
                    "{name}: no input to merge"
                )));
            };
            let pre = first_h
                .reserved_checksums
                .map(|r| r.pre_apply)
                .or((!first_h.no_checksum()).then_some(first_h.pre_apply_checksum));
            let post = last_h.reserved_checksums.map(|r| r.post_apply);
            let compat = inner.opts.litestream_compat || first_h.no_checksum();
            let opts = ltx::CompactOptions {
                pre_apply_checksum: if first_h.is_snapshot() { None } else { pre },
                post_apply_checksum: post,
                litestream_compat: compat && post.is_some(),
                ..Default::default()
            };
            let out = SpillWriter::new(&spill_dir, SPILL_THRESHOLD);
            let (w, trailer) = ltx::compact(inputs, out, opts).map_err(bad)?;
            let body = w.finish().map_err(|source| ReplicateError::Local {
                path: spill_dir.clone(),
                source,
            })?;
            let post = post.unwrap_or(trailer.post_apply_checksum);
            let mut header = first_h;
            header.min_txid = first_h.min_txid;
            header.max_txid = last_h.max_txid;
            header.timestamp_ms = last_h.timestamp_ms;
            Ok((body, header, post))
        })
        .await??;
        let when = DateTime::from_timestamp_millis(header.timestamp_ms).unwrap_or_else(Utc::now);
        let info = slot
            .replica
            .write_body(level, header.min_txid, header.max_txid, &body, when)
            .await?;
        {
            let mut st = slot.state.lock().await;
            st.files
                .retain(|f| !(f.level == level && f.max_txid >= header.min_txid));
            st.files.push(info);
        }
        // Keep a local copy while a higher level will want it as input.
        if (level as usize) < self.inner.opts.retention.levels.len() {
            let inner = self.inner.clone();
            blocking(move || {
                let mut outbox = lock_or_recover(&inner.outbox);
                if outbox
                    .get(level, header.min_txid, header.max_txid)
                    .is_none()
                {
                    let _ = outbox.add(level, &header, post, body);
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Replicates until `shutdown` resolves, then ships what is left (bounded
    /// by [`ReplicateOptions::shutdown_timeout`]) and saves the local state.
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
                let mut last_push: Option<Instant> = None;
                loop {
                    let wait = if backoff.is_zero() { tick } else { backoff };
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = head.changed(), if backoff.is_zero() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                    // Batch under a steady load: at most one upload per
                    // sync interval (the first after a quiet spell at once).
                    let spacing = me.inner.opts.sync_interval;
                    if let Some(at) = last_push {
                        let since: Duration = Instant::now() - at;
                        if since < spacing {
                            tokio::select! {
                                _ = stop.changed() => break,
                                _ = tokio::time::sleep(spacing - since) => {}
                            }
                        }
                    }
                    let before = *me.inner.slots[i].shipped.borrow();
                    me.inner.uploading.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let pushed = no_panic("an upload", me.push(i)).await;
                    me.inner.uploading.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    me.inner.upload_done.notify_waiters();
                    match pushed {
                        Ok(()) => {
                            backoff = Duration::ZERO;
                            if *me.inner.slots[i].shipped.borrow() != before {
                                last_push = Some(Instant::now());
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
        // "Long ago", where the platform's clock can say so.
        let long_ago = |d: Duration| Instant::now().checked_sub(d).unwrap_or_else(Instant::now);
        let mut last_full = long_ago(Duration::from_secs(3600));
        let mut backoff = Duration::ZERO;
        let poll = self.inner.opts.poll_interval;
        let mut status_at = long_ago(Duration::from_secs(60));
        loop {
            let wait = poll.max(backoff);
            let mut woken = false;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.wake.notified(), if backoff.is_zero() => woken = true,
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
            if !woken && seen == last_seen && last_full.elapsed() < Duration::from_secs(1) {
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
            match self.produce().await {
                Ok(SyncOutcome::Shipped { .. }) => {
                    backoff = Duration::ZERO;
                    // More may be waiting: look again at once.
                    last_seen = None;
                }
                Ok(SyncOutcome::UpToDate) => {
                    backoff = Duration::ZERO;
                    last_seen = seen;
                    last_full = Instant::now();
                }
                Err(e) => {
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
        let done = tokio::time::timeout(timeout, self.sync_all()).await;
        for s in &self.inner.slots {
            let lease = s.state.lock().await.lease.take();
            if let Some((l, _)) = lease
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

fn count_levels(files: &[LtxFileInfo]) -> [usize; 10] {
    let mut n = [0usize; 10];
    for f in files {
        n[(f.level as usize).min(9)] += 1;
    }
    n
}

fn table_matches(t: Txid, table: &DbChecksum, txid: Txid, sum: Checksum) -> bool {
    t == txid && table.value() == sum
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

    fn make_db(path: &Path) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(path).unwrap();
        c.pragma_update(None, "journal_mode", "wal").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            .unwrap();
        c
    }

    fn insert(c: &rusqlite::Connection, from: i64, n: i64) {
        for i in from..from + n {
            c.execute(
                "INSERT INTO t(id, v) VALUES (?1, ?2)",
                (i, format!("row {i}")),
            )
            .unwrap();
        }
    }

    /// Holds `m` on another thread and panics there, as a bug in a step
    /// holding the lock would.
    fn poison<T: Send + 'static>(inner: &Arc<Inner>, m: fn(&Inner) -> &Mutex<T>) {
        let inner = inner.clone();
        let r = std::thread::spawn(move || {
            let _held = m(&inner).lock();
            panic!("test: a panic while the lock is held");
        })
        .join();
        assert!(r.is_err());
    }

    /// A panic while any of the replicator's std mutexes is held neither
    /// makes later calls panic (status, sync) nor loses or corrupts data:
    /// the database's position is forgotten and re-proven by comparing
    /// pages, and a restore equals the database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_under_any_lock_does_not_cascade() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        let conn = make_db(&db);
        insert(&conn, 0, 10);
        let url = format!("file://{}", dir.path().join("replica").display());
        let replica = Replica::open(&url).unwrap();
        let r = Replicator::open(&db, replica.clone(), ReplicateOptions::default())
            .await
            .unwrap();
        r.sync_all().await.unwrap();
        let before = r.local_txid();

        poison(&r.inner, |i| &i.db);
        poison(&r.inner, |i| &i.outbox);
        poison(&r.inner, |i| &i.presync);
        poison(&r.inner, |i| &i.slots[0].status);
        assert!(r.inner.db.is_poisoned() && r.inner.outbox.is_poisoned());

        let st = r.status();
        assert_eq!(st.txid, before);
        assert_eq!(st.replicas[0].txid, before);

        insert(&conn, 10, 10);
        let first = r.sync().await.unwrap();
        assert!(
            matches!(first, SyncOutcome::Shipped { resync: true, .. }),
            "the position is re-proven by comparing pages: {first:?}"
        );
        assert!(!r.inner.db.is_poisoned(), "recovered once, then clean");
        insert(&conn, 20, 5);
        let second = r.sync().await.unwrap();
        assert!(
            matches!(second, SyncOutcome::Shipped { resync: false, .. }),
            "then shipping from the WAL again: {second:?}"
        );
        let txid = r.sync_all().await.unwrap();
        assert!(txid > before);

        let out = dir.path().join("out.db");
        crate::restore::restore(&replica, &out, &crate::RestoreOptions::default())
            .await
            .unwrap();
        assert_eq!(
            crate::content::content_digest(&out).unwrap(),
            crate::content::content_digest(&db).unwrap()
        );
        let n: i64 = rusqlite::Connection::open(&out)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(n, 25);
    }

    #[tokio::test]
    async fn a_panicking_step_becomes_an_error() {
        let r: Result<(), _> = no_panic("an upload", async { panic!("boom {}", 7) }).await;
        match r {
            Err(ReplicateError::Internal(m)) => {
                assert!(m.contains("an upload") && m.contains("boom 7"), "{m}")
            }
            other => panic!("expected an internal error, got {other:?}"),
        }
        let ok = no_panic("x", async { Ok::<_, ReplicateError>(3) }).await;
        assert_eq!(ok.unwrap(), 3);
    }

    #[tokio::test]
    async fn more_levels_than_the_layout_holds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        drop(make_db(&db));
        let replica = Replica::open(&format!("file://{}", dir.path().join("r").display())).unwrap();
        let mut opts = ReplicateOptions::default();
        opts.retention.levels = vec![Duration::from_secs(1); 9];
        match Replicator::open(&db, replica, opts).await {
            Err(e @ ReplicateError::TooManyLevels(9)) => {
                assert!(e.to_string().contains("at most 8"), "{e}")
            }
            Err(e) => panic!("expected TooManyLevels, got {e}"),
            Ok(_) => panic!("expected TooManyLevels, got a replicator"),
        }
    }
}
