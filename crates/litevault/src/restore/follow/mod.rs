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
//!
//! Files: `mod.rs` (options, status, errors), `follower.rs` (open, poll,
//! rebuild), `step.rs` (what to do next from a listing), `apply.rs` (one
//! batch of pages, one SQLite transaction), `position.rs` (`follow.json`).

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

mod apply;
mod follower;
mod position;
mod step;
use apply::*;
use position::*;
use step::*;

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
