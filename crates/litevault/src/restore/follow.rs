//! Follow mode: keep a local read-only copy of a replica current.
//!
//! [`Follower::open`] restores the replica (the verified [`restore`]) when the
//! output does not exist, or resumes from the position it persisted, after
//! checking that the database still has the checksum of that position.
//! [`Follower::poll`] then lists the replica for files after the current TXID,
//! fetches them, verifies them and applies their merged pages **through
//! SQLite**, with the `sqlite_dbpage` virtual table, in one write
//! transaction: each batch is one ordinary commit in the follower's WAL, so a
//! reader (any process opening the file with SQLite) sees the state before the
//! batch or after it, never a mix.
//!
//! Every batch is checked as strictly as a one-shot restore before it
//! commits: the first file's pre-apply checksum must equal the follower's
//! checksum (when it continues the chain exactly), every file's own checksum
//! must hold, the files must link up, every page above the size the follower
//! keeps up to the size the last file claims must be written (checked as
//! the pages come, before any is written past the end), the follower's
//! checksum after the batch (kept per page, O(pages changed)) must equal the
//! last file's post-apply checksum, and `PRAGMA integrity_check` must pass
//! on the state after the batch; otherwise the transaction rolls back, the
//! follower stays at its last good state and stops with an error naming the
//! files.
//!
//! The integrity check cannot run inside the follower's own transaction:
//! SQLite's b-tree layer does not see pages written through `sqlite_dbpage`
//! until the next transaction (it keeps the database size and the parsed
//! pages it had). So, under the write lock, the state after the batch is
//! first built as a scratch copy beside the follower (its current pages,
//! then the batch's; for a rebuild, the batch alone), checked there, and
//! only then written into the follower. Each batch therefore costs a copy
//! and a full read of the database: a busy replica is followed in larger
//! batches rather than unchecked ones.
//!
//! The position is persisted in two steps around the commit (the intended
//! position, fsynced, before `COMMIT`; the final one after), so a crash at any
//! point leaves a database whose checksum matches one of the two.
//!
//! When the replica no longer continues from the follower's position (it was
//! reset, or retention removed the files the follower needed), the follower
//! says so in the log and re-restores **atomically**: it applies the whole
//! chain from TXID 0 as one transaction, the same way as a batch.
//!
//! Writes to the follower by anyone else are an error: they are detected on
//! the next poll (SQLite's `data_version`, then a checksum of every page) and
//! the follower stops with [`FollowError::ForeignWrite`], unless
//! [`FollowOptions::force`] asks it to re-restore over them.

use std::collections::HashSet;
use std::future::Future;
use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::dbpage::{self, Page1Stamp, PageScan, PageWriter};
use super::merge::{Coverage, Prepared};
use super::{
    RestoreError, RestoreOptions, RestoreOutcome, RestoreTarget, check_links, missing_page,
    prepare, restore,
};
use crate::chain::{first_gap, plan_chain};
use crate::db::StateDir;
use crate::ltx::{self, Checksum, DbChecksum, Header, Txid};
use crate::replica::{LtxFileInfo, Replica, ReplicaError};

/// Follow settings.
#[derive(Clone, Debug)]
pub struct FollowOptions {
    /// Time between two polls of the replica.
    pub interval: Duration,
    /// When the follower was written to by someone else (or the output is not
    /// a follower of this replica), re-restore over it instead of refusing.
    pub force: bool,
    /// Files downloaded at once.
    pub concurrency: usize,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            interval: Duration::from_secs(1),
            force: false,
            concurrency: 8,
        }
    }
}

/// Where the follower stands: the state after `txid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FollowPosition {
    /// The last TXID applied.
    pub txid: Txid,
    /// The database checksum after it.
    pub checksum: Checksum,
    /// The page size.
    pub page_size: u32,
}

/// What [`Follower::subscribe`] reports after every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FollowStatus {
    /// The position reached.
    pub position: FollowPosition,
    /// Batches applied since the follower opened.
    pub batches: u64,
    /// Re-restores (full chains applied) since the follower opened.
    pub rebuilds: u64,
}

/// How the follower started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum FollowStart {
    /// The output did not exist: it was restored.
    Restored {
        /// The TXID restored.
        txid: Txid,
        /// Files fetched.
        files: usize,
    },
    /// The output was a follower at this position: it continues from there.
    Resumed {
        /// The TXID it resumed from.
        txid: Txid,
    },
    /// The output existed but could not be resumed; `--force` re-restored it
    /// in place.
    Rebuilt {
        /// The TXID restored.
        txid: Txid,
        /// Why it could not be resumed.
        reason: String,
    },
}

/// What one poll did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum PollOutcome {
    /// Nothing new in the replica.
    UpToDate,
    /// A batch of files was applied.
    Applied {
        /// The TXID before.
        from: Txid,
        /// The TXID after.
        to: Txid,
        /// Files applied.
        files: usize,
        /// Pages written.
        pages: usize,
        /// Whether the result was proven against the replica's checksum
        /// (`false` only for files without checksums, written by Litestream).
        verified: bool,
    },
    /// The replica no longer continues from the follower's position: the
    /// whole chain was applied again, atomically.
    Rebuilt {
        /// The TXID before.
        from: Txid,
        /// The TXID after.
        to: Txid,
        /// Why.
        reason: String,
    },
}

/// What [`follow`] returns when its shutdown future resolves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FollowReport {
    /// How it started.
    pub start: FollowStart,
    /// The last status.
    pub status: FollowStatus,
}

/// Errors of follow mode.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The initial restore, or reading the replica's files, failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// Storage error (retried on the next poll by [`Follower::run`]).
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// This SQLite has no `sqlite_dbpage`.
    #[error("SQLite lacks the sqlite_dbpage virtual table ({message}); {fix}")]
    DbPageUnavailable {
        /// SQLite's message.
        message: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// Someone else wrote to the follower.
    #[error(
        "{path} was changed by another writer: its checksum is {actual}, the follower left it at {expected} (TXID {txid}); \
         open followers read-only (?mode=ro). Pass --force (FollowOptions::force) to re-restore it in place"
    )]
    ForeignWrite {
        /// The follower database.
        path: PathBuf,
        /// The TXID the follower had applied.
        txid: Txid,
        /// The checksum it left.
        expected: Checksum,
        /// The checksum found.
        actual: Checksum,
    },
    /// The output exists and is not a follower of this replica.
    #[error(
        "{path} exists and is not a follower of {replica} (no follow position, or one for another replica); \
         remove it, choose another -o, or pass --force to re-restore it in place"
    )]
    NotAFollower {
        /// The output.
        path: PathBuf,
        /// The replica URL.
        replica: String,
    },
    /// A batch would leave the follower a database SQLite calls malformed.
    #[error(
        "the replica's files {files} (up to TXID {to}) fail integrity_check when applied to {path}: {message}; \
         the batch was rolled back and {path} stays at TXID {txid}. The replica is damaged or forged: \
         restore an earlier TXID (litevault restore --txid) or repair the replica, then follow again"
    )]
    Integrity {
        /// The follower database.
        path: PathBuf,
        /// The TXID it stays at.
        txid: Txid,
        /// The files of the batch.
        files: String,
        /// The TXID the batch would have reached.
        to: Txid,
        /// SQLite's report.
        message: String,
    },
    /// The output is not in WAL mode.
    #[error(
        "{path} is in journal mode {mode}; a follower must be in WAL mode so readers never see a batch half applied \
         (the primary of a litevault replica always is); remove it and follow again"
    )]
    NotWal {
        /// The output.
        path: PathBuf,
        /// Its journal mode.
        mode: String,
    },
    /// The replica's page size differs from the follower's.
    #[error(
        "the replica's page size is now {replica} bytes, {path} has {local}: pages cannot be applied in place; \
         stop the readers, remove {path} (and its -wal and -shm), and follow again"
    )]
    PageSizeChanged {
        /// The output.
        path: PathBuf,
        /// Its page size.
        local: u32,
        /// The replica's.
        replica: u32,
    },
    /// A WAL file without its database beside the output.
    #[error(
        "{wal} exists but {path} does not: SQLite would apply that stale WAL to the restored database; remove {wal}"
    )]
    StaleWal {
        /// The output.
        path: PathBuf,
        /// The WAL file.
        wal: PathBuf,
    },
    /// The replica holds no files (any more).
    #[error("replica {replica} holds no LTX files; check the URL")]
    EmptyReplica {
        /// The replica URL.
        replica: String,
    },
    /// SQLite error on the follower database.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Local I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl FollowError {
    /// Whether [`Follower::run`] retries after this error on the next poll
    /// (storage errors, a replica emptied or with a gap in its chain, which a
    /// replicator starting over may still fill) rather than stopping.
    ///
    /// An entry of the replica that is not a regular file
    /// ([`ReplicaError::NotAFile`]) is not transient: the replica is damaged
    /// until someone repairs it.
    pub fn is_transient(&self) -> bool {
        match self {
            FollowError::Replica(ReplicaError::NotAFile { .. })
            | FollowError::Restore(RestoreError::Replica(ReplicaError::NotAFile { .. })) => false,
            FollowError::Replica(_)
            | FollowError::EmptyReplica { .. }
            | FollowError::Restore(RestoreError::Replica(_))
            | FollowError::Restore(RestoreError::NoRestorePoint { .. }) => true,
            _ => false,
        }
    }
}

/// Follows `replica` into `path` until `shutdown` resolves: restores or
/// resumes, then polls every [`FollowOptions::interval`].
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use litevault::Replica;
/// use litevault::restore::follow::{follow, FollowOptions};
/// let replica = Replica::open("file:///var/backups/app")?;
/// let shutdown = async { tokio::signal::ctrl_c().await.ok(); };
/// follow(&replica, "replica.db".as_ref(), &FollowOptions::default(), shutdown).await?;
/// # Ok(()) }
/// ```
pub async fn follow(
    replica: &Replica,
    path: &Path,
    opts: &FollowOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<FollowReport, FollowError> {
    Follower::open(replica.clone(), path, opts.clone())
        .await?
        .run(shutdown)
        .await
}

/// A follower: the local copy, its SQLite connection and its position.
pub struct Follower {
    replica: Replica,
    path: PathBuf,
    opts: FollowOptions,
    conn: Option<Connection>,
    table: DbChecksum,
    /// The replica's stamp of page 1 at the position (see [`Page1Stamp`]).
    stamp: Page1Stamp,
    position: FollowPosition,
    data_version: i64,
    state: PositionFile,
    start: FollowStart,
    status: watch::Sender<FollowStatus>,
    /// Invalid file names already warned about.
    warned: HashSet<String>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("path", &self.path)
            .field("replica", &self.replica.to_string())
            .field("position", &self.position)
            .finish()
    }
}

fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> FollowError + '_ {
    move |source| FollowError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> FollowError + '_ {
    move |source| FollowError::Io {
        path: path.to_path_buf(),
        source,
    }
}

use crate::task::blocking;

impl From<crate::task::TaskFailed> for FollowError {
    fn from(e: crate::task::TaskFailed) -> Self {
        FollowError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        }
    }
}

/// Opens the follower's connection and checks it can be followed.
fn open_conn(path: &Path) -> Result<Connection, FollowError> {
    let conn = Connection::open(path).map_err(sqlite_err(path))?;
    dbpage::ensure_available(&conn).map_err(|message| FollowError::DbPageUnavailable {
        message,
        fix: dbpage::DBPAGE_FIX,
    })?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sqlite_err(path))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(sqlite_err(path))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(FollowError::NotWal {
            path: path.to_path_buf(),
            mode,
        });
    }
    // Each batch is durable when it commits (its position is persisted next).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sqlite_err(path))?;
    Ok(conn)
}

fn data_version(conn: &Connection, path: &Path) -> Result<i64, FollowError> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .map_err(sqlite_err(path))
}

/// Every page checksummed, in one read transaction.
fn scan(conn: &Connection, path: &Path) -> Result<PageScan, FollowError> {
    conn.execute_batch("BEGIN").map_err(sqlite_err(path))?;
    let r = dbpage::scan(conn).map_err(sqlite_err(path));
    let _ = conn.execute_batch("COMMIT");
    r
}

impl Follower {
    /// Opens a follower: restores the replica into `path` if it does not
    /// exist, or resumes from the persisted position if the database still
    /// has that position's checksum. With [`FollowOptions::force`], a database
    /// that cannot be resumed is re-restored in place (atomically).
    pub async fn open(
        replica: Replica,
        path: &Path,
        opts: FollowOptions,
    ) -> Result<Follower, FollowError> {
        let path = path.to_path_buf();
        let url = replica.to_string();
        let state = PositionFile::new(&path, &url);
        let start;
        let conn;
        let table;
        let stamp;
        let mut position;
        if !path.exists() {
            let wal = super::sibling(&path, "-wal");
            if std::fs::metadata(&wal)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
            {
                return Err(FollowError::StaleWal { path, wal });
            }
            let _ = std::fs::remove_file(super::sibling(&path, "-shm"));
            // Restore beside the output, record the position, then rename:
            // a crash at any point leaves either no output (restored again
            // on the next start) or an output with its position.
            let staged = super::sibling(&path, ".follow-restore");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(super::sibling(&staged, suffix));
            }
            let ropts = RestoreOptions {
                target: RestoreTarget::Latest,
                concurrency: opts.concurrency,
                write_state: false,
                ..RestoreOptions::default()
            };
            let report = match restore(&replica, &staged, &ropts).await? {
                RestoreOutcome::Restored(r) => r,
                // Cannot happen: the skip outcomes need `if_db_not_exists`
                // or `if_replica_exists`, which `ropts` leaves false.
                _ => unreachable!("no skip option was set"),
            };
            let mut page1 = vec![0u8; 100];
            std::fs::File::open(&staged)
                .and_then(|mut f| f.read_exact(&mut page1))
                .map_err(io_err(&staged))?;
            state.save(
                &FollowPosition {
                    txid: report.txid,
                    checksum: report.checksum,
                    page_size: report.page_size,
                },
                Page1Stamp::of(&page1),
                None,
                true,
            )?;
            std::fs::rename(&staged, &path).map_err(io_err(&path))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            let p = path.clone();
            let (c, scanned) = blocking(move || -> Result<_, FollowError> {
                let c = open_conn(&p)?;
                let s = scan(&c, &p)?;
                Ok((c, s))
            })
            .await??;
            if scanned.table.value() != report.checksum {
                // The restore verified what it wrote: this is the disk or a
                // concurrent writer.
                return Err(FollowError::ForeignWrite {
                    path,
                    txid: report.txid,
                    expected: report.checksum,
                    actual: scanned.table.value(),
                });
            }
            position = FollowPosition {
                txid: report.txid,
                checksum: report.checksum,
                page_size: scanned.page_size,
            };
            start = FollowStart::Restored {
                txid: report.txid,
                files: report.files.len(),
            };
            stamp = Page1Stamp::of(&scanned.page1);
            conn = c;
            table = scanned.table;
        } else {
            let p = path.clone();
            let (c, scanned) = blocking(move || -> Result<_, FollowError> {
                let c = open_conn(&p)?;
                let s = scan(&c, &p)?;
                Ok((c, s))
            })
            .await??;
            let saved = state.load();
            // The states the database may be in, each with the page-1 stamp
            // of the replica's page 1 (SQLite rewrites the follower's).
            let mut candidates: Vec<(Txid, Checksum, Page1Stamp)> = Vec::new();
            match &saved {
                Some(s) => {
                    candidates.push((s.txid, s.checksum, s.stamp));
                    if let Some(p) = s.pending {
                        candidates.push((p.txid, p.checksum, p.stamp));
                    }
                }
                None => {
                    // A database written by a plain `restore` (its state
                    // names the TXID and checksum it restored; its page 1 is
                    // the replica's) can be followed too.
                    if let Some(r) = StateDir::for_db(&path).load_position() {
                        candidates.push((r.txid, r.checksum, Page1Stamp::of(&scanned.page1)));
                    }
                }
            }
            let resumed = candidates.iter().find_map(|(txid, sum, st)| {
                let t = scanned.with_stamp(*st);
                (t.value() == *sum).then_some((*txid, t, *st))
            });
            position = FollowPosition {
                txid: Txid(0),
                checksum: scanned.table.value(),
                page_size: scanned.page_size,
            };
            conn = c;
            match resumed {
                Some((txid, t, st)) => {
                    position.txid = txid;
                    position.checksum = t.value();
                    table = t;
                    stamp = st;
                    start = FollowStart::Resumed { txid };
                }
                None => {
                    let err = match &saved {
                        Some(s) => FollowError::ForeignWrite {
                            path: path.clone(),
                            txid: s.txid,
                            expected: s.checksum,
                            actual: scanned.with_stamp(s.stamp).value(),
                        },
                        None => FollowError::NotAFollower {
                            path: path.clone(),
                            replica: url.clone(),
                        },
                    };
                    if !opts.force {
                        return Err(err);
                    }
                    stamp = Page1Stamp::of(&scanned.page1);
                    table = scanned.table;
                    start = FollowStart::Rebuilt {
                        txid: Txid(0),
                        reason: err.to_string(),
                    };
                }
            }
        }
        let (status, _) = watch::channel(FollowStatus {
            position,
            batches: 0,
            rebuilds: 0,
        });
        let dv = data_version(&conn, &path)?;
        let mut follower = Follower {
            replica,
            path,
            opts,
            conn: Some(conn),
            table,
            stamp,
            position,
            data_version: dv,
            state,
            start,
            status,
            warned: HashSet::new(),
        };
        if let FollowStart::Rebuilt { reason, .. } = &follower.start {
            let reason = reason.clone();
            tracing::warn!("{reason}; re-restoring in place (--force)");
            let files = follower.list_all().await?;
            follower.rebuild(&files, &reason).await?;
            position = follower.position;
            follower.start = FollowStart::Rebuilt {
                txid: position.txid,
                reason,
            };
        } else {
            follower
                .state
                .save(&follower.position, follower.stamp, None, true)?;
        }
        Ok(follower)
    }

    /// How the follower started.
    pub fn start(&self) -> &FollowStart {
        &self.start
    }

    /// The position reached.
    pub fn position(&self) -> FollowPosition {
        self.position
    }

    /// The follower database's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A receiver that sees every new position (after each commit).
    pub fn subscribe(&self) -> watch::Receiver<FollowStatus> {
        self.status.subscribe()
    }

    /// Polls until `shutdown` resolves. Storage errors are logged and retried
    /// on the next poll ([`FollowError::is_transient`]); any other error
    /// stops the follower. Returns the last status.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<FollowReport, FollowError> {
        tokio::pin!(shutdown);
        loop {
            match self.poll().await {
                Ok(PollOutcome::UpToDate) => {}
                Ok(PollOutcome::Applied {
                    from,
                    to,
                    files,
                    pages,
                    ..
                }) => {
                    tracing::info!(%from, %to, files, pages, "applied");
                }
                Ok(PollOutcome::Rebuilt { from, to, reason }) => {
                    tracing::warn!(%from, %to, "re-restored: {reason}");
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!("follow: {e}; retrying in {:?}", self.opts.interval);
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.opts.interval) => {}
            }
        }
        if let Some(conn) = &self.conn {
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        }
        Ok(FollowReport {
            start: self.start.clone(),
            status: self.status.borrow().clone(),
        })
    }

    /// Looks at the replica once and applies what is new.
    pub async fn poll(&mut self) -> Result<PollOutcome, FollowError> {
        self.check_foreign_write().await?;
        let cur = self.position.txid;
        // Level 0 first: one LIST when the follower keeps up.
        let l0 = self.replica.list_level(0).await?;
        let l0 = self.usable(l0);
        let step = match next_step(&l0, cur, false) {
            // A long way behind (e.g. after a day offline): the compacted
            // levels may reach the same TXID with far fewer files.
            Some(Step::Apply { chain, .. }) if chain.len() > LONG_CHAIN => {
                self.decide_on_all(cur).await?
            }
            Some(step) => step,
            None => self.decide_on_all(cur).await?,
        };
        match step {
            Step::UpToDate => Ok(PollOutcome::UpToDate),
            Step::Empty => Err(FollowError::EmptyReplica {
                replica: self.replica.to_string(),
            }),
            Step::Apply { chain, exact } => {
                match self
                    .apply(&chain, if exact { Mode::Exact } else { Mode::Overlap })
                    .await
                {
                    Ok(out) => Ok(out),
                    Err(ApplyFailure::Discontinuity(reason)) => {
                        let files = self.list_all().await?;
                        self.rebuild(&files, &reason).await
                    }
                    Err(ApplyFailure::Foreign {
                        data_version,
                        table,
                        stamp,
                    }) => {
                        self.foreign(data_version, table, stamp)?;
                        let files = self.list_all().await?;
                        self.rebuild(&files, "the follower was written to by another connection")
                            .await
                    }
                    Err(ApplyFailure::Error(e)) => Err(e),
                }
            }
            Step::Rebuild { files, reason } => self.rebuild(&files, &reason).await,
        }
    }

    /// Every level's files with a valid name.
    async fn list_all(&mut self) -> Result<Vec<LtxFileInfo>, FollowError> {
        let files = self.replica.list_all().await?;
        Ok(self.usable(files))
    }

    /// The next step given every level.
    async fn decide_on_all(&mut self, cur: Txid) -> Result<Step, FollowError> {
        let files = self.list_all().await?;
        // A complete listing always decides; `Empty` covers the impossible.
        Ok(next_step(&files, cur, true).unwrap_or(Step::Empty))
    }

    /// Drops the files whose names cannot be LTX files (TXID 0), warning
    /// once per name.
    fn usable(&mut self, files: Vec<LtxFileInfo>) -> Vec<LtxFileInfo> {
        let (valid, invalid) = crate::chain::split_valid(files);
        for (f, why) in invalid {
            let key = self.replica.file_key(f.level, f.min_txid, f.max_txid);
            if self.warned.insert(key.clone()) {
                tracing::warn!(
                    "ignoring {}/{key}: not a valid LTX file name ({why})",
                    self.replica
                );
            }
        }
        valid
    }

    /// Applies the whole chain from TXID 0 to the latest, in one transaction.
    async fn rebuild(
        &mut self,
        files: &[LtxFileInfo],
        reason: &str,
    ) -> Result<PollOutcome, FollowError> {
        let from = self.position.txid;
        let latest =
            files
                .iter()
                .map(|f| f.max_txid)
                .max()
                .ok_or_else(|| FollowError::EmptyReplica {
                    replica: self.replica.to_string(),
                })?;
        let chain = plan_chain(files, Txid(0), latest)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                let gap = first_gap(files, Txid(0), latest).unwrap_or(latest);
                FollowError::Restore(RestoreError::NoRestorePoint {
                    target: format!("TXID {latest}"),
                    replica: self.replica.to_string(),
                    reason: format!(
                        "no file covers TXID {gap}, so no chain of files reaches {latest}"
                    ),
                })
            })?;
        tracing::warn!(%from, to = %latest, "{reason}; re-restoring (one transaction)");
        match self.apply(&chain, Mode::Rebuild).await {
            Ok(PollOutcome::Applied { to, .. }) => {
                self.status.send_modify(|s| s.rebuilds += 1);
                Ok(PollOutcome::Rebuilt {
                    from,
                    to,
                    reason: reason.to_string(),
                })
            }
            Ok(other) => Ok(other),
            Err(ApplyFailure::Discontinuity(r)) => {
                Err(FollowError::Restore(RestoreError::NoRestorePoint {
                    target: format!("TXID {latest}"),
                    replica: self.replica.to_string(),
                    reason: r,
                }))
            }
            Err(ApplyFailure::Foreign {
                data_version,
                table,
                stamp,
            }) => {
                self.foreign(data_version, table, stamp)?;
                Box::pin(self.rebuild(files, "the follower was written to by another connection"))
                    .await
            }
            Err(ApplyFailure::Error(e)) => Err(e),
        }
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with_conn<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Connection, &Path) -> T + Send + 'static,
    ) -> Result<T, FollowError> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            // A call cancelled while its task ran dropped the connection
            // with the task.
            None => self.reopen()?,
        };
        let path = self.path.clone();
        match tokio::task::spawn_blocking(move || {
            let r = f(&conn, &path);
            (conn, r)
        })
        .await
        {
            Ok((conn, r)) => {
                self.conn = Some(conn);
                Ok(r)
            }
            Err(e) => {
                // The connection went with the task: open a new one.
                self.conn = Some(self.reopen()?);
                Err(FollowError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(format!("a blocking task failed: {e}")),
                })
            }
        }
    }

    /// A new connection, for one lost with a task that failed or was
    /// cancelled. That task may have committed before it ended, and a new
    /// connection's `data_version` cannot tell: the next check compares
    /// every page with the position's checksum instead.
    fn reopen(&mut self) -> Result<Connection, FollowError> {
        let conn = open_conn(&self.path)?;
        // Never a value `PRAGMA data_version` returns, which starts at 1.
        self.data_version = i64::MIN;
        Ok(conn)
    }

    /// Detects a commit by another connection since our last one.
    async fn check_foreign_write(&mut self) -> Result<(), FollowError> {
        let known = self.data_version;
        let seen = self
            .with_conn(
                move |conn, path| -> Result<Option<(i64, PageScan)>, FollowError> {
                    let dv = data_version(conn, path)?;
                    if dv == known {
                        return Ok(None);
                    }
                    Ok(Some((dv, scan(conn, path)?)))
                },
            )
            .await??;
        match seen {
            None => Ok(()),
            Some((dv, scanned)) => {
                let table = scanned.with_stamp(self.stamp);
                let stamp = Page1Stamp::of(&scanned.page1);
                self.foreign(dv, table, stamp)
            }
        }
    }

    /// Handles a change by another connection: accepted if no page changed,
    /// else an error, or with `force` the follower forgets its position so
    /// that the next step re-restores. `table` is the checksum with the
    /// follower's stamp, `stamp` the one page 1 holds.
    fn foreign(
        &mut self,
        dv: i64,
        table: DbChecksum,
        stamp: Page1Stamp,
    ) -> Result<(), FollowError> {
        if table.value() == self.table.value() {
            // Another connection committed nothing that changed a page (or a
            // checkpoint): accept.
            self.data_version = dv;
            return Ok(());
        }
        let err = FollowError::ForeignWrite {
            path: self.path.clone(),
            txid: self.position.txid,
            expected: self.table.value(),
            actual: table.value(),
        };
        if !self.opts.force {
            return Err(err);
        }
        tracing::warn!("{err}; re-restoring in place (--force)");
        self.table = table;
        self.stamp = stamp;
        self.data_version = dv;
        // Not a state of the replica: the next poll cannot continue from it.
        self.position.txid = Txid(0);
        self.position.checksum = self.table.value();
        Ok(())
    }

    async fn apply(
        &mut self,
        chain: &[LtxFileInfo],
        mode: Mode,
    ) -> Result<PollOutcome, ApplyFailure> {
        let staging = super::sibling(&self.path, ".tmp-ltx");
        // Removed however this ends (an error, a panic, the future dropped).
        let _staging = StagingDir(staging.clone());
        std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        let prepared = prepare(
            &self.replica,
            chain,
            &staging,
            self.opts.concurrency,
            &crate::progress::ProgressSink::none(),
        )
        .await
        .map_err(FollowError::from)?;
        let job = ApplyJob {
            chain: chain.to_vec(),
            prepared: Some(prepared),
            scratch: staging.join("check.db"),
            mode,
            table: std::mem::take(&mut self.table),
            stamp: self.stamp,
            position: self.position,
            data_version: self.data_version,
            state: self.state.clone(),
        };
        let done = self.with_conn(move |conn, path| job.run(conn, path)).await;
        let (table, result) = match done {
            Ok(d) => d,
            Err(e) => {
                // The table went with the task: recompute it.
                let scanned = self.with_conn(scan).await??;
                self.table = scanned.with_stamp(self.stamp);
                return Err(e.into());
            }
        };
        self.table = table;
        let applied = result?;
        let from = self.position.txid;
        self.position = applied.position;
        self.stamp = applied.stamp;
        self.data_version = applied.data_version;
        self.status.send_modify(|s| {
            s.position = applied.position;
            s.batches += 1;
        });
        Ok(PollOutcome::Applied {
            from,
            to: applied.position.txid,
            files: chain.len(),
            pages: applied.pages,
            verified: applied.verified,
        })
    }
}

/// A staging folder, removed when dropped.
struct StagingDir(PathBuf);

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A level-0 chain longer than this makes the follower look at every level
/// for a shorter one.
const LONG_CHAIN: usize = 32;

/// How a chain relates to the follower's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The chain starts right after the follower's TXID: its first file's
    /// pre-apply checksum must be the follower's checksum.
    Exact,
    /// The chain starts at or before the follower's TXID (compacted files):
    /// applying it over a later state gives the same result, proven by the
    /// post-apply checksum.
    Overlap,
    /// The whole chain from TXID 0.
    Rebuild,
}

enum ApplyFailure {
    /// The replica does not continue from the follower's state.
    Discontinuity(String),
    /// Another connection wrote to the follower (found inside the write
    /// transaction): its data_version and the table of what it holds now.
    Foreign {
        data_version: i64,
        table: DbChecksum,
        stamp: Page1Stamp,
    },
    Error(FollowError),
}

impl From<FollowError> for ApplyFailure {
    fn from(e: FollowError) -> Self {
        ApplyFailure::Error(e)
    }
}

/// What to do next, given a listing.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    UpToDate,
    Empty,
    Apply {
        chain: Vec<LtxFileInfo>,
        exact: bool,
    },
    Rebuild {
        files: Vec<LtxFileInfo>,
        reason: String,
    },
}

/// Decides the next step from a listing of level 0 only (`complete` false:
/// `None` when that is not enough to decide) or of every level.
fn next_step(files: &[LtxFileInfo], cur: Txid, complete: bool) -> Option<Step> {
    let Some(latest) = files.iter().map(|f| f.max_txid).max() else {
        return complete.then_some(Step::Empty);
    };
    if latest == cur && cur.0 > 0 {
        return Some(Step::UpToDate);
    }
    if latest > cur
        && cur.0 > 0
        && let Some(chain) = plan_chain(files, cur, latest)
    {
        return Some(Step::Apply { chain, exact: true });
    }
    if !complete {
        return None;
    }
    if cur.0 == 0 {
        return Some(Step::Rebuild {
            files: files.to_vec(),
            reason: "the follower is not at a state of the replica".into(),
        });
    }
    if latest < cur {
        return Some(Step::Rebuild {
            files: files.to_vec(),
            reason: format!(
                "the replica's latest TXID is {latest}, before the follower's {cur}: the replica was reset"
            ),
        });
    }
    // Compacted files that start at or before the follower's TXID and end
    // after it: the latest such start first (the smallest overlap).
    let mut starts: Vec<Txid> = files
        .iter()
        .filter(|f| f.min_txid <= cur && f.max_txid > cur)
        .filter_map(|f| f.min_txid.0.checked_sub(1).map(Txid))
        .collect();
    starts.sort_unstable_by(|a, b| b.cmp(a));
    starts.dedup();
    for s in starts {
        if let Some(chain) = plan_chain(files, s, latest) {
            return Some(Step::Apply {
                chain,
                exact: false,
            });
        }
    }
    Some(Step::Rebuild {
        files: files.to_vec(),
        reason: format!(
            "no chain of files in the replica continues from the follower's TXID {cur} (retention removed them?)"
        ),
    })
}

/// The pre-apply checksum a file records, if any.
fn pre_apply(h: &Header) -> Option<Checksum> {
    if !h.no_checksum() {
        Some(h.pre_apply_checksum)
    } else {
        h.reserved_checksums.map(|r| r.pre_apply)
    }
}

struct ApplyJob {
    chain: Vec<LtxFileInfo>,
    /// Taken by [`ApplyJob::apply`].
    prepared: Option<Prepared>,
    /// Where the state after the batch is built and checked.
    scratch: PathBuf,
    mode: Mode,
    table: DbChecksum,
    stamp: Page1Stamp,
    position: FollowPosition,
    data_version: i64,
    state: PositionFile,
}

struct Applied {
    position: FollowPosition,
    stamp: Page1Stamp,
    data_version: i64,
    pages: usize,
    verified: bool,
}

/// A batch written and verified, not yet committed.
struct Staged {
    next: FollowPosition,
    stamp: Page1Stamp,
    changes: Vec<(u32, Checksum)>,
    commit: u32,
    verified: bool,
}

impl ApplyJob {
    /// Applies the batch in one transaction; returns the table (updated
    /// only if the batch committed).
    fn run(
        mut self,
        conn: &Connection,
        path: &Path,
    ) -> (DbChecksum, Result<Applied, ApplyFailure>) {
        let mut table = std::mem::take(&mut self.table);
        let r = self.apply(conn, path, &mut table);
        (table, r)
    }

    fn apply(
        mut self,
        conn: &Connection,
        path: &Path,
        table: &mut DbChecksum,
    ) -> Result<Applied, ApplyFailure> {
        let prepared = self.prepared.take().ok_or_else(|| FollowError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("the batch was already applied"),
        })?;
        let headers = prepared.headers().to_vec();
        let page_size = prepared.page_size();
        if page_size != self.position.page_size {
            return Err(FollowError::PageSizeChanged {
                path: path.to_path_buf(),
                local: self.position.page_size,
                replica: page_size,
            }
            .into());
        }
        if self.mode == Mode::Exact
            && let Some(first) = headers.first()
            && !first.is_snapshot()
            && let Some(pre) = pre_apply(first)
            && pre != table.value()
        {
            return Err(ApplyFailure::Discontinuity(format!(
                "the replica no longer continues from the follower's TXID {} (checksum {}): its file {} expects checksum {pre}",
                self.position.txid,
                table.value(),
                self.files()
            )));
        }
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(sqlite_err(path))?;
        let staged = match self.write(conn, path, table, &headers, prepared) {
            Ok(s) => s,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        // The intended position, durable before the commit: after a crash the
        // database matches the saved position or this one.
        if let Err(e) = self.state.save(
            &self.position,
            self.stamp,
            Some((&staged.next, staged.stamp)),
            true,
        ) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        if let Err(e) = conn.execute_batch("COMMIT") {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(sqlite_err(path)(e).into());
        }
        table.truncate(staged.commit);
        for (pgno, sum) in &staged.changes {
            table.set_page(*pgno, *sum);
        }
        debug_assert_eq!(table.value(), staged.next.checksum);
        // A failure to record the final position is harmless: the intended
        // one, already durable, names the same state.
        let _ = self.state.save(&staged.next, staged.stamp, None, false);
        Ok(Applied {
            position: staged.next,
            stamp: staged.stamp,
            data_version: data_version(conn, path)?,
            pages: staged.changes.len(),
            verified: staged.verified,
        })
    }

    /// The batch's files, for messages.
    fn files(&self) -> String {
        match (self.chain.first(), self.chain.last()) {
            (Some(a), Some(b)) if a != b => format!("{a}..{b}"),
            (Some(a), _) => a.to_string(),
            _ => String::new(),
        }
    }

    /// Writes the merged pages inside the open write transaction and checks
    /// the result.
    fn write(
        &self,
        conn: &Connection,
        path: &Path,
        table: &DbChecksum,
        headers: &[Header],
        mut prepared: Prepared,
    ) -> Result<Staged, ApplyFailure> {
        let chain = &self.chain;
        let last = chain.last().ok_or_else(|| FollowError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("an empty batch"),
        })?;
        // Inside the write lock nobody else can commit: a moved data_version
        // means someone did since our last commit.
        let now = data_version(conn, path)?;
        if now != self.data_version {
            let scanned = dbpage::scan(conn).map_err(sqlite_err(path))?;
            let actual = scanned.with_stamp(self.stamp);
            if actual.value() != table.value() {
                return Err(ApplyFailure::Foreign {
                    data_version: now,
                    table: actual,
                    stamp: Page1Stamp::of(&scanned.page1),
                });
            }
        }
        let commit = prepared.commit();
        let page_size = prepared.page_size();
        let ps = u64::from(page_size);
        // The pages the follower keeps: those it has, up to the smallest size
        // the batch passes through (none for a rebuild, which replaces all).
        // Every page above them, up to `commit`, must come from the batch, in
        // order: checked before each page is written.
        let floor = match self.mode {
            Mode::Rebuild => 0,
            Mode::Exact | Mode::Overlap => u32::try_from(table.len())
                .unwrap_or(u32::MAX)
                .min(prepared.min_commit()),
        };
        let scratch_err = io_err(&self.scratch);
        let scratch = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.scratch)
            .map_err(&scratch_err)?;
        if floor > 0 {
            copy_pages(conn, &scratch, page_size)
                .map_err(|e| e.into_follow(path, &self.scratch))?;
        }
        let mut cover = Coverage::new(floor, commit, page_size);
        let mut missing = None;
        let mut changes: Vec<(u32, Checksum)> = Vec::new();
        let mut stamp = self.stamp;
        prepared.merge(chain, |pgno, page| {
            if let Err(p) = cover.accept(pgno) {
                missing = Some(p);
                return Ok::<_, FollowError>(ControlFlow::Break(()));
            }
            if pgno == 1 {
                stamp = Page1Stamp::of(page);
            }
            changes.push((pgno, ltx::page_checksum(pgno, page)));
            scratch
                .write_all_at(page, (u64::from(pgno) - 1) * ps)
                .map_err(&scratch_err)?;
            Ok(ControlFlow::Continue(()))
        })?;
        // Every file's own checksum: a damaged file explains a missing page.
        let trailers = prepared.finish(chain).map_err(FollowError::from)?;
        if let Some(pgno) = missing.or_else(|| cover.finish().err()) {
            return Err(FollowError::from(missing_page(chain, commit, pgno)).into());
        }
        scratch
            .set_len(u64::from(commit) * ps)
            .map_err(&scratch_err)?;
        let expected = check_links(chain, headers, &trailers, true).map_err(FollowError::from)?;
        let after = table.value_after(&changes, commit);
        if let Some(expected) = expected
            && expected != after
        {
            if self.mode != Mode::Rebuild {
                // The pre-apply checksum can agree by accident (it is an XOR
                // of page CRCs: equal changes at the same place in two pages
                // cancel out); the result cannot.
                return Err(ApplyFailure::Discontinuity(format!(
                    "the replica no longer continues from the follower's TXID {}: after its files {} the follower's checksum would be {after}, the replica's is {expected}",
                    self.position.txid,
                    self.files()
                )));
            }
            return Err(FollowError::from(RestoreError::ChecksumMismatch {
                file: last.to_string(),
                txid: last.max_txid,
                what: "checksum of the follower after the batch vs the file's post-apply checksum",
                expected,
                actual: after,
            })
            .into());
        }
        // As strict as a restore: SQLite must find the state after the batch
        // sound before anyone can read it.
        match super::integrity_check(&self.scratch) {
            Ok(()) => {}
            Err(RestoreError::Integrity { message }) => {
                return Err(FollowError::Integrity {
                    path: path.to_path_buf(),
                    txid: self.position.txid,
                    files: self.files(),
                    to: last.max_txid,
                    message,
                }
                .into());
            }
            Err(e) => return Err(FollowError::from(e).into()),
        }
        // Checked: now into the follower, inside its write transaction.
        let mut writer = PageWriter::new(conn).map_err(sqlite_err(path))?;
        let mut page = vec![0u8; page_size as usize];
        for (pgno, _) in &changes {
            scratch
                .read_exact_at(&mut page, (u64::from(*pgno) - 1) * ps)
                .map_err(&scratch_err)?;
            writer.write(*pgno, &page).map_err(sqlite_err(path))?;
        }
        writer.finish(commit).map_err(sqlite_err(path))?;
        Ok(Staged {
            next: FollowPosition {
                txid: last.max_txid,
                checksum: after,
                page_size,
            },
            stamp,
            changes,
            commit,
            verified: expected.is_some(),
        })
    }
}

/// An error copying the follower's pages: SQLite's or the scratch file's.
enum CopyError {
    Sqlite(rusqlite::Error),
    Io(std::io::Error),
}

impl CopyError {
    fn into_follow(self, db: &Path, scratch: &Path) -> FollowError {
        match self {
            CopyError::Sqlite(e) => sqlite_err(db)(e),
            CopyError::Io(e) => io_err(scratch)(e),
        }
    }
}

/// Copies every page of the follower, as its open transaction sees it,
/// into `out` at its offset.
fn copy_pages(conn: &Connection, out: &std::fs::File, page_size: u32) -> Result<(), CopyError> {
    let mut stmt = conn
        .prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno")
        .map_err(CopyError::Sqlite)?;
    let mut rows = stmt.query([]).map_err(CopyError::Sqlite)?;
    while let Some(row) = rows.next().map_err(CopyError::Sqlite)? {
        let pgno: u32 = row.get(0).map_err(CopyError::Sqlite)?;
        let data = row
            .get_ref(1)
            .and_then(|v| v.as_blob().map_err(rusqlite::Error::from))
            .map_err(CopyError::Sqlite)?;
        if pgno == 0 || data.len() != page_size as usize {
            continue;
        }
        out.write_all_at(data, (u64::from(pgno) - 1) * u64::from(page_size))
            .map_err(CopyError::Io)?;
    }
    Ok(())
}

/// The persisted position: `follow.json` in the database's litevault state
/// folder, per replica.
#[derive(Clone, Debug)]
struct PositionFile {
    dir: PathBuf,
    replica: String,
}

#[derive(Serialize, Deserialize)]
struct PositionJson {
    version: u32,
    replica: String,
    txid: String,
    checksum: String,
    page_size: u32,
    /// The replica's page-1 stamp, hex.
    stamp: String,
    /// The position a batch being committed leads to.
    pending: Option<PendingJson>,
}

#[derive(Serialize, Deserialize)]
struct PendingJson {
    txid: String,
    checksum: String,
    stamp: String,
}

#[derive(Clone, Copy, Debug)]
struct Saved {
    txid: Txid,
    checksum: Checksum,
    stamp: Page1Stamp,
    pending: Option<SavedPending>,
}

#[derive(Clone, Copy, Debug)]
struct SavedPending {
    txid: Txid,
    checksum: Checksum,
    stamp: Page1Stamp,
}

const FOLLOW_FILE: &str = "follow.json";

fn parse_stamp(s: &str) -> Option<Page1Stamp> {
    hex::decode(s).ok()?.try_into().ok().map(Page1Stamp)
}

impl PositionFile {
    fn new(db: &Path, replica: &str) -> PositionFile {
        PositionFile {
            dir: StateDir::for_db(db).path().to_path_buf(),
            replica: replica.to_string(),
        }
    }

    fn load(&self) -> Option<Saved> {
        let raw = std::fs::read(self.dir.join(FOLLOW_FILE)).ok()?;
        let j: PositionJson = serde_json::from_slice(&raw).ok()?;
        if j.version != 1 || j.replica != self.replica {
            return None;
        }
        let sum = |s: &str| u64::from_str_radix(s, 16).ok().map(Checksum);
        Some(Saved {
            txid: j.txid.parse().ok()?,
            checksum: sum(&j.checksum)?,
            stamp: parse_stamp(&j.stamp)?,
            pending: j.pending.and_then(|p| {
                Some(SavedPending {
                    txid: p.txid.parse().ok()?,
                    checksum: sum(&p.checksum)?,
                    stamp: parse_stamp(&p.stamp)?,
                })
            }),
        })
    }

    fn save(
        &self,
        pos: &FollowPosition,
        stamp: Page1Stamp,
        pending: Option<(&FollowPosition, Page1Stamp)>,
        sync: bool,
    ) -> Result<(), FollowError> {
        let j = PositionJson {
            version: 1,
            replica: self.replica.clone(),
            txid: pos.txid.to_string(),
            checksum: pos.checksum.to_string(),
            page_size: pos.page_size,
            stamp: hex::encode(stamp.0),
            pending: pending.map(|(p, st)| PendingJson {
                txid: p.txid.to_string(),
                checksum: p.checksum.to_string(),
                stamp: hex::encode(st.0),
            }),
        };
        let tmp = self.dir.join(format!("{FOLLOW_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(&j).map_err(|e| io_err(&tmp)(e.into()))?;
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        if sync {
            f.sync_all().map_err(io_err(&tmp))?;
        }
        drop(f);
        let dst = self.dir.join(FOLLOW_FILE);
        std::fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        if sync {
            let _ = std::fs::File::open(&self.dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(level: u8, min: u64, max: u64) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: Txid(min),
            max_txid: Txid(max),
            size: 10,
            created: Default::default(),
        }
    }

    fn ends(step: &Step) -> Vec<(u8, u64, u64)> {
        match step {
            Step::Apply { chain, .. } => chain
                .iter()
                .map(|f| (f.level, f.min_txid.0, f.max_txid.0))
                .collect(),
            _ => vec![],
        }
    }

    #[test]
    fn steps() {
        let l0: Vec<_> = (1..=5).map(|t| f(0, t, t)).collect();
        assert_eq!(next_step(&l0, Txid(5), false), Some(Step::UpToDate));
        let s = next_step(&l0, Txid(3), false).unwrap();
        assert_eq!(ends(&s), vec![(0, 4, 4), (0, 5, 5)]);
        assert!(matches!(s, Step::Apply { exact: true, .. }));
        // Level 0 alone cannot say what happened: ask for everything.
        assert_eq!(next_step(&l0, Txid(7), false), None);
        assert_eq!(next_step(&[], Txid(7), false), None);
        assert_eq!(next_step(&[], Txid(7), true), Some(Step::Empty));
        // Reset: the replica is behind.
        assert!(matches!(
            next_step(&l0, Txid(7), true),
            Some(Step::Rebuild { .. })
        ));
        // Retention removed 4..6 from level 0; a compaction 2..8 covers them.
        let mut files: Vec<_> = vec![f(0, 1, 1), f(0, 2, 2), f(0, 7, 7), f(0, 8, 8), f(0, 9, 9)];
        assert_eq!(next_step(&files, Txid(4), false), None);
        assert!(matches!(
            next_step(&files, Txid(4), true),
            Some(Step::Rebuild { .. })
        ));
        files.push(f(1, 2, 8));
        let s = next_step(&files, Txid(4), true).unwrap();
        assert_eq!(ends(&s), vec![(1, 2, 8), (0, 9, 9)]);
        assert!(matches!(s, Step::Apply { exact: false, .. }));
        // Position 0 (after a foreign write under --force): rebuild.
        assert!(matches!(
            next_step(&files, Txid(0), true),
            Some(Step::Rebuild { .. })
        ));
    }
}
