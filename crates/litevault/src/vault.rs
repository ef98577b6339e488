//! Embedded use: a replicated SQLite database inside a Rust application.
//!
//! [`Vault`] opens the database in WAL mode, hands out one writer
//! connection and a small pool of readers (rusqlite), and replicates in the
//! background. The writer's commit hook (`sqlite3_wal_hook`) counts the
//! commit and wakes the shipper: there is no polling on the write path and
//! no other work inside the hook, except once per
//! [`VaultOptions::wal_restart_pages`] frames of WAL, when it lets the WAL
//! start over (see [`Replicator::restart_wal_now`]). A commit can be made durable: the call returns
//! once every replica holds it; concurrent durable commits share uploads.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use litevault::Vault;
//! let vault = Vault::open("/data/app.db")
//!     .replicate_to("s3://bucket/app")?
//!     .start()
//!     .await?;
//! {
//!     let conn = vault.writer().await;
//!     conn.execute("INSERT INTO notes(body) VALUES (?1)", ["hello"])?;
//! }
//! vault.wait_replicated(vault.txid()).await?; // every replica has it
//! let id = vault
//!     .transaction_durable(|tx| tx.execute("INSERT INTO notes(body) VALUES ('x')", []))
//!     .await?;
//! vault.close().await?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Mutex, MutexGuard, watch};

use crate::ltx::Txid;
use crate::replica::{Replica, ReplicaError};
use crate::replicate::{ReplicateError, ReplicateOptions, Replicator, WalRestart};

/// Errors of an embedded vault.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The database cannot be opened or configured.
    #[error("opening {path}: {source}")]
    Open {
        /// The database.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A replica URL is not valid.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Replication failed to start or stop.
    #[error(transparent)]
    Replicate(#[from] ReplicateError),
    /// A statement of a durable transaction failed (nothing was committed).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The transaction is committed locally but not every replica confirmed
    /// it in time. It is not lost: it ships as soon as the replicas answer.
    #[error(
        "commit {commit} is committed locally but not yet in every replica after {waited:?}; it will ship when the replicas answer (see `litevault status`)"
    )]
    NotYetReplicated {
        /// The commit's sequence number.
        commit: u64,
        /// How long we waited.
        waited: Duration,
    },
    /// A blocking task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::task::TaskFailed> for VaultError {
    fn from(e: crate::task::TaskFailed) -> Self {
        VaultError::Internal(e.to_string())
    }
}

/// The sequence number of a commit made through the vault's writer
/// ([`Vault::txid`]): pass it to [`Vault::wait_replicated`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitSeq(pub u64);

/// Default of [`VaultOptions::wal_restart_pages`]: 16 MiB of 4 KiB pages,
/// four times the replicator's PASSIVE checkpoint threshold.
pub const DEFAULT_WAL_RESTART_PAGES: u64 = 4096;

/// Settings of a vault.
#[derive(Clone, Debug)]
pub struct VaultOptions {
    /// Replication settings. The embedded default ships each commit at once
    /// (no sync interval): uploads are back to back, and every upload
    /// carries all commits made while the previous one was in flight.
    pub replicate: ReplicateOptions,
    /// Reader connections in the pool.
    pub readers: usize,
    /// How long a durable commit waits for the replicas.
    pub durable_timeout: Duration,
    /// SQLite busy timeout of the vault's connections.
    pub busy_timeout: Duration,
    /// Once the WAL holds this many frames, the writer's commit hook
    /// pauses the writer (between two transactions) while everything is
    /// shipped and checkpointed, so that its next transaction starts the
    /// WAL over. Without it, a writer that never pauses keeps the WAL
    /// growing up to the TRUNCATE threshold, whose checkpoint then costs a
    /// comparison of every page. Zero turns the pause off: the hook then
    /// only counts and signals.
    pub wal_restart_pages: u64,
}

impl Default for VaultOptions {
    fn default() -> Self {
        VaultOptions {
            replicate: ReplicateOptions {
                sync_interval: Duration::ZERO,
                // The commit hook wakes the shipper; polling only catches
                // writes made by other processes.
                poll_interval: Duration::from_millis(250),
                ..ReplicateOptions::default()
            },
            readers: 4,
            durable_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(5),
            wal_restart_pages: DEFAULT_WAL_RESTART_PAGES,
        }
    }
}

/// Opens a vault: [`Vault::open`], then replicas, then [`start`](VaultBuilder::start).
#[derive(Debug)]
pub struct VaultBuilder {
    path: PathBuf,
    replicas: Vec<Replica>,
    opts: VaultOptions,
}

impl VaultBuilder {
    /// Adds a replica by URL (see [`Replica::open`]).
    pub fn replicate_to(mut self, url: &str) -> Result<Self, VaultError> {
        self.replicas.push(Replica::open(url)?);
        Ok(self)
    }

    /// Adds an opened replica.
    pub fn replica(mut self, replica: Replica) -> Self {
        self.replicas.push(replica);
        self
    }

    /// Replaces the settings.
    pub fn options(mut self, opts: VaultOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Opens (or creates) the database in WAL mode and starts replicating.
    pub async fn start(self) -> Result<Vault, VaultError> {
        let VaultBuilder {
            path,
            replicas,
            opts,
        } = self;
        let p = path.clone();
        let busy = opts.busy_timeout;
        let writer = crate::task::blocking(move || open_writer(&p, busy)).await??;
        let replicator = Replicator::open_many(&path, replicas, opts.replicate.clone()).await?;
        let counter = Arc::new(AtomicU64::new(0));
        replicator.attach_commit_counter(counter.clone());
        let mut writer = writer;
        {
            let counter = counter.clone();
            let rep = replicator.clone();
            let restart_at = opts.wal_restart_pages;
            let mut next_try = restart_at;
            // The hook runs inside SQLite's commit, after the write lock is
            // released: count and signal. Installing it also turns off
            // SQLite's own automatic checkpoints on this connection: the
            // replicator runs them. Once per `wal_restart_pages` frames it
            // also lets the WAL start over (see `restart_wal_now`).
            writer.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
                counter.fetch_add(1, Ordering::SeqCst);
                let pages = pages.max(0) as u64;
                if restart_at > 0 && pages < restart_at {
                    next_try = restart_at;
                } else if restart_at > 0 && pages >= next_try {
                    // Past twice the threshold the writer outpaces the
                    // replicator: it waits, so that the WAL stays bounded.
                    // For the background fsync of the local store (a plain
                    // thread) at most a second. For a producer step (an
                    // async task) at most 50 ms, and not at all on a
                    // current-thread runtime, where that task can only run
                    // once this commit returns.
                    let wait = pages >= restart_at.saturating_mul(2);
                    let producer_can_run = !matches!(
                        tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()),
                        Ok(tokio::runtime::RuntimeFlavor::CurrentThread)
                    );
                    let started = std::time::Instant::now();
                    loop {
                        let waited = started.elapsed();
                        match rep.restart_wal_now() {
                            Ok(WalRestart::Fsyncing) if wait && waited < Duration::from_secs(1) => {
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            Ok(WalRestart::ProducerBusy)
                                if wait
                                    && producer_can_run
                                    && waited < Duration::from_millis(50) =>
                            {
                                std::thread::sleep(Duration::from_micros(100));
                            }
                            Ok(WalRestart::ProducerBusy) | Ok(WalRestart::Fsyncing) => {
                                // Below twice the threshold: the next commit
                                // tries again. Past it, after a wait: a
                                // while later.
                                if wait {
                                    next_try = pages.saturating_add(restart_at.div_ceil(4));
                                }
                                break;
                            }
                            // Done: the next commit restarts the WAL, which
                            // resets `next_try`; if a reader's mark keeps it
                            // from restarting, the next try waits a while.
                            Ok(WalRestart::Done) | Ok(WalRestart::NotNow) => {
                                next_try = pages.saturating_add(restart_at.div_ceil(4));
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "letting the WAL restart failed; the replicator retries");
                                next_try = pages.saturating_add(restart_at.div_ceil(4));
                                break;
                            }
                        }
                    }
                }
                rep.wake();
                Ok(())
            }))?;
        }
        let mut readers = Vec::with_capacity(opts.readers);
        for _ in 0..opts.readers.max(1) {
            readers.push(open_reader(&path, busy)?);
        }
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let run = tokio::spawn(replicator.clone().run(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        Ok(Vault {
            path,
            replicator,
            writer: Mutex::new(writer),
            readers: readers.into_iter().map(ReaderSlot::new).collect(),
            returned: tokio::sync::Notify::new(),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            counter,
            stop: stop_tx,
            run: Mutex::new(Some(run)),
            durable_timeout: opts.durable_timeout,
        })
    }
}

fn tune(c: &Connection, busy: Duration) -> rusqlite::Result<()> {
    c.busy_timeout(busy)?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn open_writer(path: &Path, busy: Duration) -> Result<Connection, VaultError> {
    let err = |source| VaultError::Open {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    let c = Connection::open(path).map_err(err)?;
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(VaultError::Open {
            path: path.to_path_buf(),
            source: rusqlite::Error::InvalidParameterName(format!(
                "journal_mode stays {mode}: the database must support WAL mode"
            )),
        });
    }
    c.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    tune(&c, busy).map_err(err)?;
    Ok(c)
}

fn open_reader(path: &Path, busy: Duration) -> Result<Connection, VaultError> {
    let err = |source| VaultError::Open {
        path: path.to_path_buf(),
        source,
    };
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    tune(&c, busy).map_err(err)?;
    c.pragma_update(None, "query_only", "ON").map_err(err)?;
    Ok(c)
}

/// A replicated SQLite database embedded in the application.
pub struct Vault {
    path: PathBuf,
    replicator: Replicator,
    writer: Mutex<Connection>,
    /// The readers, one "taken" flag each. Taking one tries each flag
    /// without waiting, from the one this thread used last: no shared
    /// counter or pool lock on that path, which under four reader threads on two
    /// cores cost more than the query itself (BENCHMARKS.md, "mixed
    /// reads"). Only when every reader is out does the caller wait for one
    /// to come back (`returned`, signalled when `waiting` is non-zero).
    readers: Box<[ReaderSlot]>,
    returned: tokio::sync::Notify,
    waiting: std::sync::atomic::AtomicUsize,
    counter: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    run: Mutex<Option<tokio::task::JoinHandle<Result<(), ReplicateError>>>>,
    durable_timeout: Duration,
}

/// One reader connection of the pool and whether it is out. A flag, not
/// a mutex: taking and returning a reader is one atomic operation each,
/// and the slot has a cache line of its own.
#[repr(align(64))]
struct ReaderSlot {
    out: std::sync::atomic::AtomicBool,
    conn: std::cell::UnsafeCell<Connection>,
}

// SAFETY: `conn` is only reached through a `Reader`, and at most one
// `Reader` per slot exists at a time: one is made only by the caller whose
// compare-exchange set `out` from false to true, and `out` goes back to
// false only when that `Reader` is dropped. A `Reader` is not `Sync`, so
// its `&Connection` is used by one thread at a time. A `Connection` may
// move between threads (it is `Send`), which is all that handing the slot
// from one holder to the next does.
unsafe impl Sync for ReaderSlot {}

impl ReaderSlot {
    fn new(conn: Connection) -> ReaderSlot {
        ReaderSlot {
            out: std::sync::atomic::AtomicBool::new(false),
            conn: std::cell::UnsafeCell::new(conn),
        }
    }

    /// Takes the slot if it is free (SeqCst: see `Vault::reader`).
    fn take(&self) -> bool {
        !self.out.load(Ordering::SeqCst)
            && self
                .out
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
    }
}

/// A reader connection from the pool (returned to it on drop). It may move
/// to another thread (`Send`) but not be shared between threads: a
/// `Connection` is not `Sync`.
///
/// ```
/// fn moves_between_threads<T: Send>() {}
/// moves_between_threads::<litevault::vault::Reader<'static>>();
/// ```
///
/// ```compile_fail
/// fn shared_between_threads<T: Sync>() {}
/// shared_between_threads::<litevault::vault::Reader<'static>>();
/// ```
pub struct Reader<'a> {
    slot: &'a ReaderSlot,
    vault: &'a Vault,
    not_sync: std::marker::PhantomData<std::cell::Cell<()>>,
}

impl std::ops::Deref for Reader<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // SAFETY: this `Reader` holds the slot (see `ReaderSlot`).
        unsafe { &*self.slot.conn.get() }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        // Back in the pool first, then look for waiters. Both SeqCst, as
        // the waiter's count and look, so one of the two sides sees the
        // other: the waiter finds the slot free, or is woken.
        self.slot.out.store(false, Ordering::SeqCst);
        if self.vault.waiting.load(Ordering::SeqCst) > 0 {
            self.vault.returned.notify_one();
        }
    }
}

thread_local! {
    /// The reader this thread took last (a hint: its pages are warm).
    static LAST_READER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a waiter for a reader while it lives (also when its future is
/// dropped mid-wait).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Vault {
    /// Starts building a vault for the database at `path` (created if
    /// missing).
    pub fn open(path: impl AsRef<Path>) -> VaultBuilder {
        VaultBuilder {
            path: path.as_ref().to_path_buf(),
            replicas: Vec::new(),
            opts: VaultOptions::default(),
        }
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The replicator (status, replicas).
    pub fn replicator(&self) -> &Replicator {
        &self.replicator
    }

    /// The writer connection (one at a time). Its commits wake the shipper.
    pub async fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().await
    }

    /// A reader connection (`query_only`) from the pool.
    pub async fn reader(&self) -> Reader<'_> {
        if let Some(r) = self.try_reader() {
            return r;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        loop {
            let returned = self.returned.notified();
            tokio::pin!(returned);
            // Registered before looking, so a reader returned after the
            // look below wakes us.
            returned.as_mut().enable();
            if let Some(r) = self.try_reader() {
                return r;
            }
            returned.await;
        }
    }

    /// A free reader, if any, without waiting.
    fn try_reader(&self) -> Option<Reader<'_>> {
        let n = self.readers.len();
        let start = LAST_READER.with(|c| c.get());
        (0..n).find_map(|i| {
            let k = (start + i) % n;
            let slot = &self.readers[k];
            if !slot.take() {
                return None;
            }
            LAST_READER.with(|c| c.set(k));
            Some(Reader {
                slot,
                vault: self,
                not_sync: std::marker::PhantomData,
            })
        })
    }

    /// The latest commit made through the writer.
    pub fn txid(&self) -> CommitSeq {
        CommitSeq(self.counter.load(Ordering::SeqCst))
    }

    /// Waits until every replica holds commit `seq` (and everything before
    /// it), at most the durable timeout. Returns the replica TXID holding it.
    pub async fn wait_replicated(&self, seq: CommitSeq) -> Result<Txid, VaultError> {
        self.replicator.wake();
        match tokio::time::timeout(self.durable_timeout, self.replicator.wait_commit(seq.0)).await {
            Ok(t) => Ok(t),
            Err(_) => Err(VaultError::NotYetReplicated {
                commit: seq.0,
                waited: self.durable_timeout,
            }),
        }
    }

    /// Runs `f` in a write transaction, commits it, and returns once every
    /// replica holds it. On [`VaultError::NotYetReplicated`] the transaction
    /// is committed locally and will ship; on any other error nothing was
    /// committed.
    pub async fn transaction_durable<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, VaultError> {
        let (value, seq) = {
            let mut conn = self.writer.lock().await;
            let tx = conn.transaction()?;
            let value = f(&tx)?;
            tx.commit()?;
            (value, self.txid())
        };
        self.wait_replicated(seq).await?;
        Ok(value)
    }

    /// Stops replicating after a final sync (bounded by the shutdown
    /// timeout) and closes the connections.
    pub async fn close(self) -> Result<(), VaultError> {
        let _ = self.stop.send(true);
        let run = self.run.lock().await.take();
        if let Some(run) = run {
            run.await
                .map_err(|e| VaultError::Internal(e.to_string()))??;
        }
        Ok(())
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        // Without `close`, replication stops after its final sync in the
        // background (if the runtime is still alive).
        let _ = self.stop.send(true);
    }
}
