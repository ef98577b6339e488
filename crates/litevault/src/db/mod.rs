//! The watched database: read marks, WAL shipping, checkpoints, resync.
//!
//! # How nothing committed is ever missed
//!
//! The replicator keeps a read transaction open at all times, alternating
//! between two connections: the new one is opened before the old one is
//! released. While a read transaction is open, SQLite will neither checkpoint
//! frames past its snapshot into the database file nor restart the WAL over
//! frames it may read (a reader on read-mark 0, which SQLite gives when the WAL
//! was fully checkpointed, blocks every backfill instead). Because each
//! snapshot is taken before the WAL is scanned, every frame that a checkpoint
//! or a WAL restart could remove has already been shipped. So while the
//! replicator runs, a change of WAL salts means "a new generation begins, the
//! old one is fully shipped", and shipping continues from the new WAL's start.
//!
//! When that chain of reasoning is broken (first start, a restart after a
//! crash or clean stop, a TRUNCATE checkpoint, an unreadable position), the
//! replicator does not guess: it reads a consistent image of the database
//! (database file overlaid with the committed WAL frames, under a read mark,
//! never the write lock), compares every page's checksum with the table of
//! the last shipped state, and ships exactly the pages that differ. That is
//! the "resync". It closes the gap Litestream 0.5.17 leaves when the app
//! checkpoints and restarts the WAL while the replicator is down.
//!
//! Files: `mod.rs` (opening, the WAL and its read marks, committing a shipped
//! file), `prepare.rs` (the next LTX file: frames, resync, snapshot),
//! `checkpoint.rs`, `committed.rs` (where the committed WAL ends),
//! `state.rs` (the saved position and page table).

mod checkpoint;
mod committed;
mod prepare;
pub mod state;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::body::{LtxBody, SPILL_THRESHOLD, SpillWriter};
use crate::ltx::{self, Checksum, DbChecksum, Txid};
use crate::wal::{self, WalCursor, WalHeader, WalIndexHeader};
use committed::Committed;
pub use state::{SavedPosition, StateDir, WalPosition};

/// Errors of the watched database.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database file does not exist.
    #[error("database {path} does not exist; create it first or check the path")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The database is not in WAL mode.
    #[error(
        "database {path} is in journal_mode={mode}, but replication needs WAL mode; run `PRAGMA journal_mode=WAL;` on it once (e.g. sqlite3 {path} 'PRAGMA journal_mode=WAL')"
    )]
    NotWal {
        /// The database.
        path: PathBuf,
        /// Its journal mode.
        mode: String,
    },
    /// SQLite returned an error.
    #[error("sqlite error on {path}: {source}")]
    Sqlite {
        /// The database.
        path: PathBuf,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// Saving the local state (the position or the page table) failed.
    #[error(
        "saving the replicator's local state in {path}: {source}; check the disk (space, permissions, I/O errors). Nothing is lost: the frames stay in the WAL and the next step takes them again"
    )]
    SaveState {
        /// The local state folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the database or its WAL failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The database file is not a SQLite database.
    #[error("{path} is not a SQLite database ({reason})")]
    NotSqlite {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Encoding an LTX file failed.
    #[error("encoding LTX: {0}")]
    Ltx(#[from] ltx::LtxError),
    /// The WAL's committed frames do not verify.
    #[error(
        "{path} does not verify up to frame {frames}, the last one SQLite committed (a damaged WAL file, or one changed by something other than SQLite); nothing is shipped from it. The app keeps working; replication resumes after the next checkpoint restarts the WAL (e.g. sqlite3 DB 'PRAGMA wal_checkpoint(TRUNCATE)')"
    )]
    WalDamaged {
        /// The WAL file.
        path: PathBuf,
        /// How many frames SQLite's wal-index counts as committed.
        frames: u32,
    },
}

/// Checkpoint thresholds.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointOptions {
    /// Run a PASSIVE checkpoint after shipping once the WAL holds this many
    /// frames (0 disables).
    pub min_pages: u64,
    /// Run a TRUNCATE checkpoint once the WAL file is this large (0 disables).
    pub truncate_bytes: u64,
    /// Run a PASSIVE checkpoint when this long has passed since the last
    /// one and frames were shipped since (zero disables).
    pub interval: std::time::Duration,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            min_pages: crate::defaults::MIN_CHECKPOINT_PAGES,
            truncate_bytes: crate::defaults::TRUNCATE_WAL_BYTES,
            interval: crate::defaults::CHECKPOINT_INTERVAL,
        }
    }
}

/// Checkpoints the replicator ran, and how long they took.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointStats {
    /// PASSIVE checkpoints.
    pub passive: u64,
    /// TRUNCATE checkpoints.
    pub truncate: u64,
    /// Time spent in checkpoints, in seconds.
    pub total_seconds: f64,
    /// Duration of the last one, in seconds.
    pub last_seconds: f64,
}

/// Why a file is being shipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShipKind {
    /// New committed WAL frames, continuing the shipped state.
    Frames,
    /// Continuity could not be proven: the pages that differ from the last
    /// shipped state (all pages when that state is unknown).
    Resync,
    /// No pages: the shipped state again, under the next TXID, so that
    /// `litestream replicate` can continue the replica (see
    /// [`WatchedDb::prepare_handoff`]).
    Handoff,
}

/// An LTX file prepared from the database, not yet uploaded.
#[derive(Debug)]
pub struct PendingLtx {
    /// The encoded file (in memory, or spilled to disk when large).
    pub body: LtxBody,
    /// Its header.
    pub header: ltx::Header,
    /// Its post-apply checksum.
    pub post_apply: Checksum,
    /// Why it was made.
    pub kind: ShipKind,
    /// Pages in the file.
    pub page_count: u32,
    changes: Vec<(u32, Checksum)>,
    commit: u32,
    wal: Option<WalPosition>,
}

/// A snapshot of the last shipped state, encoded, not yet uploaded.
#[derive(Debug)]
pub struct PendingSnapshot {
    /// The encoded file.
    pub body: LtxBody,
    /// Its header (TXIDs `1..=txid`).
    pub header: ltx::Header,
    /// Its post-apply checksum (the database checksum at `txid`).
    pub post_apply: Checksum,
}

/// What a sync found.
#[derive(Debug)]
pub enum Prepared {
    /// Nothing new since the last shipped state.
    UpToDate,
    /// Not looked at in full this time: a transaction still being written,
    /// or the WAL changed under the reads. A commit may be waiting; look
    /// again.
    Later,
    /// A file to ship.
    Ship(Box<PendingLtx>),
}

/// The database being replicated.
pub struct WatchedDb {
    path: PathBuf,
    /// The database file, opened once for the replicator's own reads. It
    /// must never be closed while SQLite's connections are open: POSIX
    /// locks belong to the process, and closing any descriptor of the file
    /// drops every lock SQLite holds on it. Without its SHARED lock, another
    /// process closing its last connection would take the EXCLUSIVE lock,
    /// checkpoint past our read mark and delete the WAL.
    db_file: File,
    wal_path: PathBuf,
    state: StateDir,
    conns: [Connection; 2],
    /// Which connection holds the read mark.
    held: Option<usize>,
    /// The read mark has been held without interruption since the last ship.
    continuous: bool,
    page_size: u32,
    /// Page checksums of the replica's latest state; `None` when unknown.
    table: Option<DbChecksum>,
    /// TXID of the replica's latest state (0 when empty).
    txid: Txid,
    /// Checksum of the replica's latest state.
    checksum: Checksum,
    /// WAL position of the replica's latest state, when proven.
    wal: Option<WalPosition>,
    opts: CheckpointOptions,
    litestream_compat: bool,
    ships_since_table_save: u64,
    /// Checkpoints run by the replicator.
    checkpoints: CheckpointStats,
    /// Where the shipped position was at our last checkpoint (WAL salts and
    /// offset), and when it ran: the thresholds count frames shipped since.
    checkpointed: Option<(u32, u32, u64)>,
    checkpointed_at: std::time::Instant,
    /// The wal-index (`-shm`), which says where the committed WAL ends.
    shm_path: PathBuf,
    /// A descriptor of it, opened once and never closed while the
    /// connections are open: SQLite's read marks are POSIX locks on this
    /// file, and closing any descriptor of it drops them all.
    shm_file: std::sync::OnceLock<File>,
    /// Why the last resync was needed (for the log).
    resync_reason: &'static str,
    /// Passes in a row that put the WAL off (`Prepared::Later`), and why the
    /// last one did: a streak that does not end is logged.
    later_streak: u64,
    later_reason: &'static str,
}

fn sqlite_err(path: &Path) -> impl Fn(rusqlite::Error) -> DbError + '_ {
    move |source| DbError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sibling_path(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn wal_path_of(db: &Path) -> PathBuf {
    sibling_path(db, "-wal")
}

fn open_conn(path: &Path) -> Result<Connection, DbError> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err(path))?;
    no_lookaside(&c);
    c.busy_timeout(Duration::from_secs(5))
        .map_err(sqlite_err(path))?;
    // Closing our connection must never checkpoint or delete the WAL behind
    // the app's back.
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(sqlite_err(path))?;
    c.pragma_update(None, "wal_autocheckpoint", 0)
        .map_err(sqlite_err(path))?;
    // These connections only hold read marks and run checkpoints: a small
    // page cache keeps the memory of many databases low.
    c.pragma_update(None, "cache_size", -128)
        .map_err(|source| match source {
            rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::NotADatabase => {
                DbError::NotSqlite {
                    path: path.to_path_buf(),
                    reason: "file is not a database".into(),
                }
            }
            source => sqlite_err(path)(source),
        })?;
    Ok(c)
}

/// Turns off the connection's lookaside allocator: it reserves about 48 KiB
/// per connection up front, which for our two connections per database is
/// most of what a thousand idle databases cost, and these connections run a
/// handful of statements per checkpoint, where it saves nothing.
fn no_lookaside(c: &Connection) {
    // SAFETY: the handle is live for the call, no statement is open yet (the
    // condition under which SQLite accepts the change; else it answers
    // SQLITE_BUSY and keeps the allocator, which is only memory), and a null
    // buffer with zero slots is the documented way to turn it off.
    unsafe {
        rusqlite::ffi::sqlite3_db_config(
            c.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        );
    }
}

/// Settles SQLite's process-wide memory for replicating many databases in
/// one process: no up-front page-cache block per connection (by default
/// each connection takes room for 20 pages, about 87 KiB, on its first
/// read). Pages are then allocated one at a time, as read, up to each
/// connection's `cache_size`. Takes effect only before SQLite's first use
/// in the process (the `litevault` binary calls it first thing); later it
/// does nothing and returns `false`.
pub fn lean_sqlite_memory() -> bool {
    // SAFETY: sqlite3_config is documented as callable before
    // sqlite3_initialize; after it, it returns SQLITE_MISUSE and changes
    // nothing. A null buffer with zero lines sets no page-cache memory and
    // no initial bulk allocation.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        )
    };
    rc == rusqlite::ffi::SQLITE_OK
}

impl WatchedDb {
    /// Opens a database for replication. The database must exist and be in
    /// WAL mode. Its state lives in `.<name>-litevault/` beside it.
    pub fn open(path: &Path, opts: CheckpointOptions) -> Result<WatchedDb, DbError> {
        if !path.exists() {
            return Err(DbError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let path = std::fs::canonicalize(path).map_err(io_err(path))?;
        let a = open_conn(&path)?;
        let mode: String = a
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|source| match source {
                rusqlite::Error::SqliteFailure(e, _)
                    if e.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    DbError::NotSqlite {
                        path: path.clone(),
                        reason: "file is not a database".into(),
                    }
                }
                source => DbError::Sqlite {
                    path: path.clone(),
                    source,
                },
            })?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DbError::NotWal { path, mode });
        }
        let page_size: u32 = a
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sqlite_err(&path))?;
        let b = open_conn(&path)?;
        let db_file = File::open(&path).map_err(io_err(&path))?;
        let shm_path = sibling_path(&path, "-shm");
        Ok(WatchedDb {
            db_file,
            wal_path: wal_path_of(&path),
            state: StateDir::for_db(&path),
            path,
            conns: [a, b],
            held: None,
            continuous: false,
            page_size,
            table: None,
            txid: Txid(0),
            checksum: Checksum(0),
            wal: None,
            opts,
            litestream_compat: false,
            ships_since_table_save: 0,
            checkpoints: CheckpointStats::default(),
            checkpointed: None,
            checkpointed_at: std::time::Instant::now(),
            shm_file: std::sync::OnceLock::new(),
            shm_path,
            resync_reason: "",
            later_streak: 0,
            later_reason: "",
        })
    }

    /// Why the last resync was needed.
    pub fn resync_reason(&self) -> &'static str {
        self.resync_reason
    }

    /// Writes files Litestream 0.5 can restore: the NoChecksum flag, with
    /// the rolling checksums in the reserved header bytes.
    pub fn set_litestream_compat(&mut self, on: bool) {
        self.litestream_compat = on;
    }

    /// The database path (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The page size.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The state directory.
    pub fn state_dir(&self) -> &StateDir {
        &self.state
    }

    /// The TXID of the last shipped state.
    pub fn txid(&self) -> Txid {
        self.txid
    }

    /// The checksum of the last shipped state.
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// The locally saved page table and position (used to resume).
    pub fn saved_state(&self) -> (Option<(Txid, DbChecksum)>, Option<SavedPosition>) {
        (self.state.load_pages(), self.state.load_position())
    }

    /// Sets the replica's latest state, as established by the caller from the
    /// replica (see `replicate`): its TXID and checksum, the page table when
    /// it is known exactly, and the WAL position when it is proven.
    pub fn set_shipped_state(
        &mut self,
        txid: Txid,
        checksum: Checksum,
        table: Option<DbChecksum>,
        wal: Option<WalPosition>,
    ) {
        debug_assert!(table.as_ref().is_none_or(|t| t.value() == checksum));
        self.txid = txid;
        self.checksum = checksum;
        self.table = table;
        self.wal = if self.table.is_some() { wal } else { None };
        self.continuous = false;
    }

    /// Takes a new read mark before releasing the old one.
    fn rotate_read_mark(&mut self) -> Result<(), DbError> {
        let next = match self.held {
            Some(i) => 1 - i,
            None => 0,
        };
        let c = &self.conns[next];
        c.execute_batch("BEGIN").map_err(sqlite_err(&self.path))?;
        let r: rusqlite::Result<i64> =
            c.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0));
        if let Err(e) = r {
            let _ = c.execute_batch("ROLLBACK");
            return Err(sqlite_err(&self.path)(e));
        }
        if let Some(old) = self.held {
            let _ = self.conns[old].execute_batch("ROLLBACK");
        }
        self.held = Some(next);
        Ok(())
    }

    /// Releases every read mark (before a TRUNCATE checkpoint, or on close).
    fn release_read_marks(&mut self) {
        if let Some(i) = self.held.take() {
            let _ = self.conns[i].execute_batch("ROLLBACK");
        }
        self.continuous = false;
    }

    fn read_wal_header(&self) -> Result<Option<(WalHeader, u64)>, DbError> {
        let f = match File::open(&self.wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.wal_path)(e)),
        };
        let len = f.metadata().map_err(io_err(&self.wal_path))?.len();
        if len < wal::WAL_HEADER_SIZE as u64 {
            return Ok(None);
        }
        let mut buf = [0u8; wal::WAL_HEADER_SIZE];
        f.read_exact_at(&mut buf, 0)
            .map_err(io_err(&self.wal_path))?;
        match WalHeader::parse(&buf) {
            Ok(h) => Ok(Some((h, len))),
            // A header that does not verify is a WAL being (re)initialised;
            // SQLite treats it as empty, and so do we.
            Err(_) => Ok(None),
        }
    }

    /// Scans committed transactions from `cursor`, reading the WAL in chunks
    /// of whole frames and keeping only the frame list. Stops at the first
    /// frame that does not verify (stale frames past the end are not read).
    fn scan_wal(
        &self,
        header: &WalHeader,
        cursor: WalCursor,
        len: u64,
    ) -> Result<wal::WalScan, DbError> {
        let f = File::open(&self.wal_path).map_err(io_err(&self.wal_path))?;
        let frame = header.frame_size() as u64;
        let chunk = frame * (1u64 << 20).div_ceil(frame).max(16);
        let mut scanner = wal::WalScanner::new(*header, cursor);
        let mut buf = Vec::new();
        loop {
            let at = scanner.offset();
            if at >= len {
                return Ok(scanner.finish(wal::ScanStop::EndOfData));
            }
            let n = chunk.min(len - at) as usize;
            buf.resize(n, 0);
            f.read_exact_at(&mut buf, at)
                .map_err(io_err(&self.wal_path))?;
            if let Some(stop) = scanner.feed(&buf) {
                return Ok(scanner.finish(stop));
            }
        }
    }

    /// Reads one page of a WAL frame.
    fn read_wal_page(
        &self,
        wal: &File,
        page_offset: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), DbError> {
        buf.resize(self.page_size as usize, 0);
        wal.read_exact_at(buf, page_offset)
            .map_err(io_err(&self.wal_path))
    }

    /// Looks at the database and prepares the next LTX file to ship, if any.
    /// Blocking: call from a blocking thread.
    ///
    /// Only what SQLite counts as committed is read: the WAL up to the frame
    /// the wal-index names (see `committed`). A file is prepared only when
    /// its frames chain from the shipped position exactly to that frame;
    /// otherwise the shipped position is not on SQLite's committed history,
    /// and the pages are compared instead (resync).
    pub fn prepare(&mut self, timestamp_ms: i64) -> Result<Prepared, DbError> {
        let prepared = self.prepare_pass(timestamp_ms)?;
        if matches!(prepared, Prepared::Later) {
            self.later_streak += 1;
            if self.later_streak.is_power_of_two() && self.later_streak >= 64 {
                tracing::warn!(
                    db = %self.path.display(),
                    passes = self.later_streak,
                    reason = self.later_reason,
                    "the WAL keeps changing under the replicator's reads; nothing new ships until a pass completes"
                );
            }
        } else {
            self.later_streak = 0;
        }
        Ok(prepared)
    }

    /// Passes in a row that put the WAL off, and the last one's reason.
    pub fn later(&self) -> (u64, &'static str) {
        (self.later_streak, self.later_reason)
    }

    fn prepare_pass(&mut self, timestamp_ms: i64) -> Result<Prepared, DbError> {
        self.rotate_read_mark()?;
        let Some(committed) = self.committed()? else {
            self.continuous = false;
            self.later_reason = "the WAL file and the wal-index did not agree";
            return Ok(Prepared::Later);
        };
        let pos = self.wal;
        // Continue from the saved position when it provably lies on the
        // committed frames of the current WAL generation, or (read mark held
        // throughout and everything it covered shipped) when the WAL
        // restarted: then the old generation was shipped to its end.
        let start = match (pos, committed) {
            (
                Some(WalPosition::Frames {
                    salt1,
                    salt2,
                    cursor,
                }),
                Committed::Frames { header: h, end, .. },
            ) if h.salt1 == salt1 && h.salt2 == salt2 => {
                if cursor.offset > end {
                    self.resync_reason = "the shipped position is past the last committed frame";
                    None
                } else if self.frame_matches(&h, cursor, end)? {
                    Some(cursor)
                } else {
                    self.resync_reason = "the frame at the shipped position changed";
                    None
                }
            }
            (Some(_), Committed::Frames { header: h, .. }) if self.continuous => {
                Some(WalCursor::start(&h))
            }
            (Some(_), Committed::NoFrames) if self.continuous => {
                // No committed frame and nothing was lost while we held the
                // mark: the database file is the shipped state.
                self.wal = Some(WalPosition::NoWal);
                return Ok(Prepared::UpToDate);
            }
            (None, _) => {
                self.resync_reason = "no shipped WAL position";
                None
            }
            _ => {
                self.resync_reason = "the WAL started over since the last proven pass";
                None
            }
        };
        let prepared = match (start, committed) {
            (Some(cursor), Committed::Frames { header, end, index }) => {
                match self.prepare_frames(&header, cursor, end, &index, timestamp_ms)? {
                    Some(p) => p,
                    None => self.prepare_resync(committed, timestamp_ms)?,
                }
            }
            _ => self.prepare_resync(committed, timestamp_ms)?,
        };
        // Continuity holds while every frame up to our mark is shipped: the
        // mark was taken before the index was read, so reaching the index's
        // last frame covers it. A prepared file is not shipped yet: until
        // `commit` records it, frames between the shipped position and our
        // mark could be checkpointed and, after the next rotation, lost to a
        // WAL restart. A pass that put the WAL off (`Later`) proves nothing.
        self.continuous = matches!(prepared, Prepared::UpToDate);
        Ok(prepared)
    }

    /// Does the frame ending at `cursor` still have the checksum we recorded?
    fn frame_matches(&self, h: &WalHeader, cursor: WalCursor, len: u64) -> Result<bool, DbError> {
        if cursor.offset == wal::WAL_HEADER_SIZE as u64 {
            return Ok(cursor.checksum == WalCursor::start(h).checksum);
        }
        let frame = h.frame_size() as u64;
        if cursor.offset > len || cursor.offset < wal::WAL_HEADER_SIZE as u64 + frame {
            return Ok(false);
        }
        let f = File::open(&self.wal_path).map_err(io_err(&self.wal_path))?;
        let mut buf = vec![0u8; frame as usize];
        f.read_exact_at(&mut buf, cursor.offset - frame)
            .map_err(io_err(&self.wal_path))?;
        Ok(wal::frame_ends_at(h, cursor, &buf))
    }

    fn wal_salts_unchanged(&self, h: &WalHeader) -> Result<bool, DbError> {
        Ok(
            matches!(self.read_wal_header()?, Some((n, _)) if n.salt1 == h.salt1 && n.salt2 == h.salt2),
        )
    }

    fn base_header(&self, commit: u32, timestamp_ms: i64) -> ltx::Header {
        let txid = Txid(self.txid.0 + 1);
        ltx::Header {
            flags: 0,
            page_size: self.page_size,
            commit,
            min_txid: txid,
            max_txid: txid,
            timestamp_ms,
            pre_apply_checksum: self.checksum,
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
            ..ltx::Header::default()
        }
    }

    /// Where an encoded file goes: memory, then the state folder past
    /// [`SPILL_THRESHOLD`].
    fn spill_writer(&self) -> SpillWriter {
        SpillWriter::new(self.state.path(), SPILL_THRESHOLD)
    }

    /// Puts the checksums where this replica's mode keeps them: the standard
    /// fields, or (Litestream-compatible) the reserved header bytes of a
    /// NoChecksum file.
    fn seal_header(&self, mut header: ltx::Header, post: Checksum) -> ltx::Header {
        if self.litestream_compat {
            header.reserved_checksums = Some(ltx::ReservedChecksums {
                pre_apply: header.pre_apply_checksum,
                post_apply: post,
            });
            header.flags = ltx::HEADER_FLAG_NO_CHECKSUM;
            header.pre_apply_checksum = Checksum(0);
        }
        header
    }

    /// Records that a prepared file is in the replica.
    pub fn commit(&mut self, p: Box<PendingLtx>) -> Result<(), DbError> {
        let before = (self.txid, self.checksum);
        let r = self.commit_in_memory_then_save(p);
        if r.is_err() {
            // The caller drops the file this state came from, so go back to
            // the state before it; the page table and the WAL position were
            // already changed, so forget both: the next step compares every
            // page and makes the same TXID again (a resync).
            (self.txid, self.checksum) = before;
            self.table = None;
            self.wal = None;
            self.continuous = false;
        }
        r
    }

    fn commit_in_memory_then_save(&mut self, p: Box<PendingLtx>) -> Result<(), DbError> {
        let mut table = self.table.take().unwrap_or_default();
        table.set_len(p.commit);
        for (pgno, sum) in &p.changes {
            table.set_page(*pgno, *sum);
        }
        debug_assert_eq!(table.value(), p.post_apply);
        self.txid = p.header.max_txid;
        self.checksum = p.post_apply;
        self.table = Some(table);
        self.wal = p.wal;
        // A hand-off file reads nothing: it proves no continuity of its own.
        self.continuous |= p.kind != ShipKind::Handoff;
        self.ships_since_table_save += 1;
        let first = self.txid.0 == 1 || p.kind == ShipKind::Resync;
        if first || self.ships_since_table_save >= 256 {
            self.save_table()?;
        }
        self.save_position()
    }

    /// Persists the page table (done periodically and on close; a stale table
    /// is rolled forward from the replica on the next start).
    pub fn save_table(&mut self) -> Result<(), DbError> {
        if let Some(t) = &self.table {
            self.state
                .save_pages(self.txid, t)
                .map_err(|source| DbError::SaveState {
                    path: self.state.path().to_path_buf(),
                    source,
                })?;
            self.ships_since_table_save = 0;
        }
        Ok(())
    }

    fn save_position(&self) -> Result<(), DbError> {
        if let Some(wal) = self.wal {
            self.state
                .save_position(&SavedPosition {
                    txid: self.txid,
                    checksum: self.checksum,
                    page_size: self.page_size,
                    wal,
                })
                .map_err(|source| DbError::SaveState {
                    path: self.state.path().to_path_buf(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Saves state and releases the read marks.
    pub fn close(&mut self) -> Result<(), DbError> {
        self.release_read_marks();
        self.save_table()?;
        self.save_position()
    }
}
