//! Verify: does the replica really restore to the live database?
//!
//! 1. Open a read transaction on the live database (a snapshot) and checksum
//!    every page as the snapshot sees it (the LTX database checksum, read
//!    through `sqlite_dbpage`).
//! 2. Find the TXID whose post-apply checksum (LTX trailer) equals it, among
//!    the TXIDs shipped since just before the snapshot, waiting up to
//!    [`VerifyOptions::timeout`] for a running replicator to ship it. The
//!    replicator ships every commit it finds in one file, so under a steady
//!    write load the snapshot's state may never be a TXID of its own: when
//!    the replica moves on without matching and the database has changed,
//!    verify takes a new snapshot and tries again.
//! 3. Restore that TXID from the replica to a temporary file, through the
//!    full verified restore (every file's CRC, every link of the chain, the
//!    result's checksum, `integrity_check`).
//! 4. Compare the restored file's checksum (read back from disk) and its
//!    row-level content digest with the live snapshot's, still held open.
//!
//! The outcome is one of: the replica restores and matches; the replica is
//! damaged ([`VerifyError::ReplicaDamaged`], naming the file and TXID); the
//! replica is behind the database beyond the timeout ([`VerifyError::Lag`]);
//! the database has diverged from the replica ([`VerifyError::Diverged`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::content::{self, ContentDigest};
use crate::db::StateDir;
use crate::ltx::{self, Checksum, DbChecksum, Txid};
use crate::replica::{LtxFileInfo, Replica, ReplicaError};
use crate::replicate::lock_or_recover;
use crate::restore::dbpage;
use crate::restore::{RestoreError, RestoreOptions, RestoreOutcome, RestoreTarget, restore};

/// Verify settings.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// How long to wait for the replica to reach the live database's state.
    pub timeout: Duration,
    /// Time between two listings of the replica while waiting.
    pub poll_interval: Duration,
    /// Files downloaded at once by the restore.
    pub concurrency: usize,
    /// Where to restore (a temporary folder is made inside it); the system's
    /// temporary folder when `None`.
    pub temp_dir: Option<PathBuf>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            concurrency: 8,
            temp_dir: None,
        }
    }
}

/// A successful verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The TXID at which the replica and the database were compared.
    pub txid: Txid,
    /// Their checksum.
    pub checksum: Checksum,
    /// Pages.
    pub pages: u32,
    /// Page size.
    pub page_size: u32,
    /// Files the restore applied.
    pub files: usize,
    /// Bytes the restore downloaded.
    pub bytes: u64,
    /// Rows per table, equal in both.
    pub rows: std::collections::BTreeMap<String, u64>,
    /// SHA-256 of the schema and every row, equal in both.
    pub content_sha256: String,
    /// Live snapshots taken (more than one when the database kept changing).
    pub snapshots: u32,
    /// Wall time in milliseconds.
    pub millis: u64,
}

/// Why a verification failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The live database cannot be read.
    #[error("cannot read the live database {path}: {source}")]
    Live {
        /// The database.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// This SQLite has no `sqlite_dbpage`.
    #[error("SQLite lacks the sqlite_dbpage virtual table ({message}); {fix}")]
    DbPageUnavailable {
        /// SQLite's message.
        message: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// The live database is not in WAL mode.
    #[error(
        "{path} is in journal mode {mode}, not WAL: it cannot be replicated, and verify's read transactions would block \
         its writers; run `PRAGMA journal_mode=WAL` on it (litevault replicate needs it too)"
    )]
    NotWal {
        /// The database.
        path: PathBuf,
        /// Its journal mode.
        mode: String,
    },
    /// The replica holds no files.
    #[error(
        "replica {replica} holds no LTX files: nothing was ever shipped there; check the URL and that `litevault replicate` runs"
    )]
    EmptyReplica {
        /// The replica URL.
        replica: String,
    },
    /// The replica's files carry no checksums, so states cannot be matched.
    #[error(
        "replica file {file} carries no checksums (written by Litestream): verify matches states by checksum; \
         replicate with litevault (its files carry checksums Litestream ignores)"
    )]
    NoChecksums {
        /// The file.
        file: String,
    },
    /// The replica does not restore.
    #[error("the replica does not restore at TXID {txid}: {source}")]
    ReplicaDamaged {
        /// The TXID whose restore failed.
        txid: Txid,
        /// The restore's error, naming the file at fault.
        #[source]
        source: RestoreError,
    },
    /// The replica restores, but not to the live database.
    #[error(
        "the replica restored at TXID {txid} differs from the live database: {what}: replica {replica_value}, live {live_value}"
    )]
    Mismatch {
        /// The TXID compared.
        txid: Txid,
        /// What differs.
        what: &'static str,
        /// The restored value.
        replica_value: String,
        /// The live value.
        live_value: String,
    },
    /// The replica is behind the database.
    #[error(
        "replica {replica} is behind {path}: its latest TXID is {replica_txid} (checksum {replica_checksum}); \
         the database has commits after it that were not shipped within {waited:?}{recorded}. \
         Is `litevault replicate` running?",
        recorded = match shipped_txid {
            Some(t) => format!(" (the replicator last recorded TXID {t} as shipped)"),
            None => String::new(),
        }
    )]
    Lag {
        /// The live database.
        path: PathBuf,
        /// The replica URL.
        replica: String,
        /// The replica's latest TXID.
        replica_txid: Txid,
        /// Its post-apply checksum.
        replica_checksum: Checksum,
        /// The TXID the replicator's local state records as shipped, if any.
        shipped_txid: Option<Txid>,
        /// How long verify waited.
        waited: Duration,
    },
    /// No TXID of the replica has the live database's checksum.
    #[error(
        "{path} matches no TXID in {replica}: the replica's latest TXID {replica_txid} has checksum {replica_checksum}, \
         the database {live_checksum}, and nothing matching arrived within {waited:?}; the database was changed \
         outside replication, restored from elsewhere, or is replicated to another location"
    )]
    Diverged {
        /// The live database.
        path: PathBuf,
        /// The replica URL.
        replica: String,
        /// The replica's latest TXID.
        replica_txid: Txid,
        /// Its post-apply checksum.
        replica_checksum: Checksum,
        /// The live checksum.
        live_checksum: Checksum,
        /// How long verify waited.
        waited: Duration,
    },
    /// Storage error.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
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

impl VerifyError {
    /// The process exit code `litevault verify` uses: 2 the replica is
    /// damaged or restores to something else, 3 it is behind, 4 the database
    /// diverged, 1 verify could not run.
    pub fn exit_code(&self) -> u8 {
        match self {
            VerifyError::ReplicaDamaged { .. } | VerifyError::Mismatch { .. } => 2,
            VerifyError::Lag { .. } => 3,
            VerifyError::Diverged { .. } => 4,
            _ => 1,
        }
    }

    /// A short name of the outcome, for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::ReplicaDamaged { .. } => "replica_damaged",
            VerifyError::Mismatch { .. } => "mismatch",
            VerifyError::Lag { .. } => "lag",
            VerifyError::Diverged { .. } => "diverged",
            _ => "error",
        }
    }
}

/// One snapshot of the live database, its read transaction held open.
struct Snapshot {
    checksum: Checksum,
    pages: u32,
    page_size: u32,
    conn: Connection,
}

/// Snapshots kept open at once: the newest states the database went through,
/// so that a TXID shipped a little later can still be matched. Each is a
/// read-only connection with a read transaction: it keeps checkpoints from
/// passing it while verify runs (SQLite shares its five WAL read marks among
/// readers, so many snapshots never lock the application's readers out).
const HELD_SNAPSHOTS: usize = 32;

/// Trailers of new TXIDs read per round of [`verify`].
const NEW_TRAILERS_PER_ROUND: usize = 8;

/// Locked with [`lock_or_recover`]: each critical section only pushes,
/// pops or assigns, so after a panic inside one the held snapshots are
/// still open read transactions and `newest` is a state the database was
/// in; at worst a state goes unmatched, as one passing between two samples
/// does.
struct Held {
    snapshots: std::collections::VecDeque<Snapshot>,
    taken: u32,
    /// The checksum of the newest snapshot, kept after it is dropped.
    newest: Checksum,
}

/// Takes a snapshot of the live database whenever it changes, on a thread of
/// its own, keeping the newest few open. The replicator ships every commit it
/// finds in one file, so under a steady write load a given snapshot's state
/// may never be a TXID of its own; sampling every state the database passes
/// through catches the ones that are.
struct Sampler {
    held: Arc<Mutex<Held>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), rusqlite::Error>>>,
    path: PathBuf,
}

fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(Duration::from_secs(10))?;
    Ok(c)
}

fn take_snapshot(path: &Path) -> rusqlite::Result<Snapshot> {
    let conn = open_read_only(path)?;
    conn.execute_batch("BEGIN")?;
    let scan = dbpage::scan(&conn)?;
    Ok(Snapshot {
        checksum: scan.table.value(),
        pages: scan.table.len() as u32,
        page_size: scan.page_size,
        conn,
    })
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
}

impl Sampler {
    /// Takes the first snapshot, then samples until stopped.
    fn start(path: &Path) -> Result<Sampler, VerifyError> {
        let live_err = |source| VerifyError::Live {
            path: path.to_path_buf(),
            source,
        };
        if !path.exists() {
            return Err(VerifyError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such database; give the path of the live database",
                ),
            });
        }
        let probe = open_read_only(path).map_err(live_err)?;
        dbpage::ensure_available(&probe).map_err(|message| VerifyError::DbPageUnavailable {
            message,
            fix: dbpage::DBPAGE_FIX,
        })?;
        // In rollback-journal mode a held read transaction would block the
        // application's commits; a replicated database is in WAL mode anyway.
        let mode: String = probe
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(live_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(VerifyError::NotWal {
                path: path.to_path_buf(),
                mode,
            });
        }
        // Read before the snapshot: a commit in between shows as a change
        // (a needless snapshot, never a missed one).
        let mut seen = data_version(&probe).map_err(live_err)?;
        let first = take_snapshot(path).map_err(live_err)?;
        let held = Arc::new(Mutex::new(Held {
            newest: first.checksum,
            snapshots: [first].into(),
            taken: 1,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (held, stop, path) = (held.clone(), stop.clone(), path.to_path_buf());
            std::thread::spawn(move || -> Result<(), rusqlite::Error> {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                    let now = data_version(&probe)?;
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    let snap = take_snapshot(&path)?;
                    let mut h = lock_or_recover(&held);
                    h.newest = snap.checksum;
                    h.taken += 1;
                    h.snapshots.push_back(snap);
                    while h.snapshots.len() > HELD_SNAPSHOTS {
                        h.snapshots.pop_front();
                    }
                }
                Ok(())
            })
        };
        Ok(Sampler {
            held,
            stop,
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    /// Removes and returns the held snapshot with this checksum.
    fn take(&self, checksum: Checksum) -> Option<Snapshot> {
        let mut h = lock_or_recover(&self.held);
        let i = h.snapshots.iter().rposition(|s| s.checksum == checksum)?;
        h.snapshots.remove(i)
    }

    fn newest(&self) -> Checksum {
        lock_or_recover(&self.held).newest
    }

    fn taken(&self) -> u32 {
        lock_or_recover(&self.held).taken
    }

    /// Stops sampling and closes the snapshots still held.
    fn finish(mut self) -> Result<(), VerifyError> {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.thread.take().map(|t| t.join());
        lock_or_recover(&self.held).snapshots.clear();
        match r {
            Some(Ok(Err(source))) => Err(VerifyError::Live {
                path: self.path.clone(),
                source,
            }),
            Some(Err(_)) => Err(VerifyError::Io {
                path: self.path.clone(),
                source: std::io::Error::other("the snapshot thread panicked"),
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The post-apply checksums of the files ending at each TXID, read once.
struct PostApply {
    known: HashMap<Txid, Checksum>,
}

impl PostApply {
    async fn of(&mut self, replica: &Replica, f: &LtxFileInfo) -> Result<Checksum, VerifyError> {
        if let Some(c) = self.known.get(&f.max_txid) {
            return Ok(*c);
        }
        let bad = |source| VerifyError::ReplicaDamaged {
            txid: f.max_txid,
            source: RestoreError::BadFile {
                file: f.to_string(),
                min: f.min_txid,
                max: f.max_txid,
                source,
            },
        };
        let head = replica.read_range(f, 0..ltx::HEADER_SIZE as u64).await?;
        let header = ltx::Header::decode(&head).map_err(bad)?;
        let tail = replica
            .read_range(f, f.size.saturating_sub(ltx::TRAILER_SIZE as u64)..f.size)
            .await?;
        let trailer = ltx::Trailer::decode(&tail).map_err(bad)?;
        let Some((_, post)) = ltx::rolling_checksums(&header, &trailer) else {
            return Err(VerifyError::NoChecksums {
                file: f.to_string(),
            });
        };
        self.known.insert(f.max_txid, post);
        Ok(post)
    }
}

/// One file ending at each TXID at or after `from`, the smallest, newest
/// TXID first.
fn ends_from(files: &[LtxFileInfo], from: Txid) -> Vec<LtxFileInfo> {
    let mut by_end: HashMap<Txid, &LtxFileInfo> = HashMap::new();
    for f in files.iter().filter(|f| f.max_txid >= from) {
        by_end
            .entry(f.max_txid)
            .and_modify(|e| {
                if f.size < e.size {
                    *e = f;
                }
            })
            .or_insert(f);
    }
    let mut v: Vec<LtxFileInfo> = by_end.into_values().cloned().collect();
    v.sort_by_key(|f| std::cmp::Reverse(f.max_txid));
    v
}

/// Verifies that `replica` restores to the live database at `db`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use litevault::Replica;
/// use litevault::verify::{verify, VerifyOptions};
/// let replica = Replica::open("file:///var/backups/app")?;
/// let report = verify("app.db".as_ref(), &replica, &VerifyOptions::default()).await?;
/// println!("replica matches at TXID {}", report.txid);
/// # Ok(()) }
/// ```
pub async fn verify(
    db: &Path,
    replica: &Replica,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    // `None`: a timeout past what an `Instant` can hold never ends.
    let deadline = started.checked_add(opts.timeout);
    let mut post = PostApply {
        known: HashMap::new(),
    };
    // TXIDs shipped before the first snapshot hold states it already
    // contains: only those from the latest of them on can match.
    // Files named with TXID 0 are no state of the replica: set aside, with a
    // warning (the restore below warns again if it meets them).
    let (mut files, _) = crate::restore::usable_files(replica, replica.list_all().await?);
    let from = files.iter().map(|f| f.max_txid).max().unwrap_or(Txid(0));
    let sampler = Sampler::start(db)?;
    let matched = loop {
        let mut found = None;
        // Newest first; at most a few new trailers per round, so verify keeps
        // up with a busy replica (older TXIDs could only match snapshots
        // that are no longer held).
        let mut fetched = 0;
        for f in ends_from(&files, from) {
            if !post.known.contains_key(&f.max_txid) {
                if fetched == NEW_TRAILERS_PER_ROUND {
                    continue;
                }
                fetched += 1;
            }
            let sum = post.of(replica, &f).await?;
            if let Some(snap) = sampler.take(sum) {
                found = Some((f.max_txid, snap));
                break;
            }
        }
        if found.is_some() || deadline.is_some_and(|d| Instant::now() >= d) {
            break found;
        }
        tokio::time::sleep(opts.poll_interval).await;
        // New TXIDs arrive in level 0: one LIST per round.
        let (l0, _) = crate::chain::split_valid(replica.list_level(0).await?);
        files.retain(|f| f.level != 0);
        files.extend(l0);
    };
    let snapshots = sampler.taken();
    let newest = sampler.newest();
    sampler.finish()?;
    let Some((txid, snap)) = matched else {
        return Err(diagnose(
            db,
            replica,
            &files,
            &mut post,
            newest,
            from,
            started.elapsed(),
        )
        .await);
    };
    // The matching snapshot is still open: digest it, restore the TXID and
    // compare.
    let (snap, live_digest) = crate::task::blocking(move || {
        let d = content::digest_in_transaction(&snap.conn);
        (snap, d)
    })
    .await
    .map_err(|e| VerifyError::Io {
        path: db.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    let live_digest = live_digest.map_err(|source| VerifyError::Live {
        path: db.to_path_buf(),
        source,
    })?;
    let base = opts.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        ".litevault-verify-{}-{}",
        std::process::id(),
        started.elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&dir).map_err(|source| VerifyError::Io {
        path: dir.clone(),
        source,
    })?;
    let result = restore_and_compare(replica, txid, &dir, opts, &snap, &live_digest).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (checksum, pages, page_size) = (snap.checksum, snap.pages, snap.page_size);
    drop(snap);
    let (files_applied, bytes) = result?;
    Ok(VerifyReport {
        txid,
        checksum,
        pages,
        page_size,
        files: files_applied,
        bytes,
        rows: live_digest.counts,
        content_sha256: live_digest.sha256,
        snapshots,
        millis: started.elapsed().as_millis() as u64,
    })
}

async fn restore_and_compare(
    replica: &Replica,
    txid: Txid,
    dir: &Path,
    opts: &VerifyOptions,
    snap: &Snapshot,
    live_digest: &ContentDigest,
) -> Result<(usize, u64), VerifyError> {
    let out = dir.join("restored.db");
    let ropts = RestoreOptions {
        target: RestoreTarget::Txid(txid),
        concurrency: opts.concurrency,
        write_state: false,
        ..RestoreOptions::default()
    };
    let report = match restore(replica, &out, &ropts).await {
        Ok(RestoreOutcome::Restored(r)) => r,
        // Cannot happen: the skip outcomes need `if_db_not_exists` or
        // `if_replica_exists`, which `ropts` leaves at their default, false.
        Ok(_) => unreachable!("no skip option was set"),
        Err(RestoreError::Replica(e)) => return Err(e.into()),
        Err(source) => return Err(VerifyError::ReplicaDamaged { txid, source }),
    };
    // Read the restored file back from disk rather than trusting the
    // restore's own figure.
    let (page_size, on_disk) = {
        let out = out.clone();
        crate::task::blocking(move || file_checksum(&out, snap_page_size_hint(&out)))
            .await
            .map_err(|e| VerifyError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| VerifyError::Io {
                path: dir.join("restored.db"),
                source,
            })?
    };
    if page_size != snap.page_size {
        return Err(VerifyError::Mismatch {
            txid,
            what: "page size",
            replica_value: page_size.to_string(),
            live_value: snap.page_size.to_string(),
        });
    }
    if on_disk.value() != snap.checksum {
        return Err(VerifyError::Mismatch {
            txid,
            what: "database checksum",
            replica_value: on_disk.value().to_string(),
            live_value: snap.checksum.to_string(),
        });
    }
    let restored = {
        let out = out.clone();
        crate::task::blocking(move || content::content_digest(&out))
            .await
            .map_err(|e| VerifyError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| VerifyError::Live {
                path: dir.join("restored.db"),
                source,
            })?
    };
    if restored.counts != live_digest.counts {
        return Err(VerifyError::Mismatch {
            txid,
            what: "row counts",
            replica_value: format!("{:?}", restored.counts),
            live_value: format!("{:?}", live_digest.counts),
        });
    }
    if restored.sha256 != live_digest.sha256 {
        return Err(VerifyError::Mismatch {
            txid,
            what: "content digest (schema and every row)",
            replica_value: restored.sha256,
            live_value: live_digest.sha256.clone(),
        });
    }
    Ok((report.files.len(), report.bytes))
}

/// The page size recorded in a database file's header.
fn snap_page_size_hint(path: &Path) -> u32 {
    let mut head = [0u8; 100];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok();
    if !ok {
        return 4096;
    }
    match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65536,
        n => n as u32,
    }
}

/// The LTX checksum of a database file, read in chunks.
fn file_checksum(path: &Path, page_size: u32) -> std::io::Result<(u32, DbChecksum)> {
    // The size comes from the file's own header: one a replica wrote can
    // hold anything, and a zero size would read empty pages forever.
    if !ltx::is_valid_page_size(page_size) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the database header gives page size {page_size}, not a power of two from 512 to 65536: the restored file is damaged"
            ),
        ));
    }
    let lock = ltx::lock_pgno(page_size);
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut page = vec![0u8; page_size as usize];
    let mut table = DbChecksum::new();
    let mut pgno = 0u32;
    loop {
        match f.read_exact(&mut page) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        pgno += 1;
        if pgno != lock {
            table.apply_page(pgno, &page);
        }
    }
    Ok((page_size, table))
}

/// Why no TXID matched: behind, or diverged.
async fn diagnose(
    db: &Path,
    replica: &Replica,
    files: &[LtxFileInfo],
    post: &mut PostApply,
    live_checksum: Checksum,
    first_latest: Txid,
    waited: Duration,
) -> VerifyError {
    let Some(last) = ends_from(files, Txid(0)).into_iter().next() else {
        return VerifyError::EmptyReplica {
            replica: replica.to_string(),
        };
    };
    let replica_checksum = match post.of(replica, &last).await {
        Ok(c) => c,
        Err(e) => return e,
    };
    // The replica is this database's history, behind it, when the
    // replicator beside the database records the replica's latest state as
    // shipped, or when the replica kept moving while verify waited.
    let state = StateDir::for_db(db);
    let shipped = state.load_position();
    let recorded = shipped
        .as_ref()
        .is_some_and(|p| p.txid == last.max_txid && p.checksum == replica_checksum)
        || crate::replicate::outbox::Outbox::read_only(state.path()).is_ok_and(|o| {
            o.files()
                .any(|f| f.max_txid == last.max_txid && f.post_apply == replica_checksum)
        });
    if recorded || last.max_txid > first_latest {
        return VerifyError::Lag {
            path: db.to_path_buf(),
            replica: replica.to_string(),
            replica_txid: last.max_txid,
            replica_checksum,
            shipped_txid: shipped.map(|p| p.txid),
            waited,
        };
    }
    VerifyError::Diverged {
        path: db.to_path_buf(),
        replica: replica.to_string(),
        replica_txid: last.max_txid,
        replica_checksum,
        live_checksum,
        waited,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_with_an_invalid_page_size_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restored.db");
        let mut head = vec![0u8; 4096];
        head[..16].copy_from_slice(b"SQLite format 3\0");
        for size in [0u16, 3, 256] {
            head[16..18].copy_from_slice(&size.to_be_bytes());
            std::fs::write(&path, &head).unwrap();
            let hint = snap_page_size_hint(&path);
            let err = file_checksum(&path, hint).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "size {size}");
            assert!(err.to_string().contains("page size"), "{err}");
        }
        head[16..18].copy_from_slice(&4096u16.to_be_bytes());
        std::fs::write(&path, &head).unwrap();
        let (size, _) = file_checksum(&path, snap_page_size_hint(&path)).unwrap();
        assert_eq!(size, 4096);
    }
}
