//! The shipping loop: watch the database, upload LTX files, checkpoint.
//!
//! [`Replicator::open`] establishes where the replica stands (its latest TXID
//! and checksum) and reconciles the local state with it; [`Replicator::sync`]
//! ships what is new; [`Replicator::run`] loops until a caller-supplied
//! shutdown future resolves, then does a final sync.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use crate::db::{self, CheckpointOptions, Prepared, ShipKind, WatchedDb};
use crate::ltx::{self, Checksum, DbChecksum, Txid};
use crate::replica::{LtxFileInfo, Replica, ReplicaError};
use crate::restore::plan::plan_chain;

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
    /// A blocking task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Settings of the shipping loop.
#[derive(Clone, Copy, Debug)]
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
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        use crate::config::defaults;
        ReplicateOptions {
            poll_interval: defaults::POLL_INTERVAL,
            checkpoint: CheckpointOptions::default(),
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            litestream_compat: defaults::LITESTREAM_COMPAT,
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

/// Replicates one database to one replica.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use litevault::{Replica, Replicator, ReplicateOptions};
/// let replica = Replica::open("file:///var/backups/app")?;
/// let replicator = Replicator::open("app.db", replica, ReplicateOptions::default()).await?;
/// replicator.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
/// # Ok(()) }
/// ```
pub struct Replicator {
    db: Arc<Mutex<WatchedDb>>,
    /// One sync at a time: prepare, upload and commit form one step.
    sync_lock: tokio::sync::Mutex<()>,
    replica: Replica,
    opts: ReplicateOptions,
    path: PathBuf,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReplicateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReplicateError::Internal(e.to_string()))
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
    let Some(last) = files
        .iter()
        .filter(|f| f.max_txid == files.iter().map(|f| f.max_txid).max().unwrap())
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

impl Replicator {
    /// Opens the database and establishes where the replica stands.
    pub async fn open(
        db_path: impl AsRef<Path>,
        replica: Replica,
        opts: ReplicateOptions,
    ) -> Result<Replicator, ReplicateError> {
        let path = db_path.as_ref().to_path_buf();
        let p = path.clone();
        let name = replica.to_string();
        let watched = blocking(move || WatchedDb::open(&p, &name, opts.checkpoint)).await??;
        let head = replica_head(&replica).await?;
        let (saved_table, saved_pos) = watched.saved_state();
        let mut state = None;
        if head.txid.0 == 0 {
            watched.state_dir().clear();
        } else if let (Some((t, table)), Some(sum)) = (saved_table, head.checksum) {
            if table_matches(t, &table, head.txid, sum) {
                state = Some(table);
            } else if t < head.txid {
                state = roll_forward(&replica, &head.files, table, t, head.txid).await;
                if state.as_ref().is_some_and(|tb| tb.value() != sum) {
                    state = None;
                }
            }
        } else if head.checksum.is_none() {
            // The replica's files carry no checksums (Litestream wrote them):
            // learn its exact state by reading the chain once, so the next
            // file can state its pre-apply checksum and ship only what differs.
            tracing::info!(txid = %head.txid, "the replica carries no checksums; reading it once to continue it");
            state =
                roll_forward(&replica, &head.files, DbChecksum::new(), Txid(0), head.txid).await;
        }
        let checksum = match (&state, head.checksum) {
            // An empty replica: the first file is a snapshot.
            _ if head.txid.0 == 0 => Checksum(0),
            (_, Some(sum)) => sum,
            (Some(t), None) => t.value(),
            (None, None) => {
                return Err(ReplicateError::UnknownReplicaState {
                    replica: replica.to_string(),
                    txid: head.txid,
                });
            }
        };
        let wal = saved_pos
            .filter(|p| {
                state.is_some()
                    && p.txid == head.txid
                    && p.checksum == checksum
                    && p.page_size == watched.page_size()
            })
            .map(|p| p.wal);
        if head.txid.0 > 0 && state.is_none() {
            tracing::info!(
                db = %path.display(),
                txid = %head.txid,
                "no local state matches the replica; the next sync compares every page"
            );
        }
        let mut watched = watched;
        watched.set_litestream_compat(opts.litestream_compat);
        watched.set_shipped_state(head.txid, checksum, state, wal);
        Ok(Replicator {
            db: Arc::new(Mutex::new(watched)),
            sync_lock: tokio::sync::Mutex::new(()),
            replica,
            opts,
            path,
        })
    }

    /// The replica.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The TXID of the latest state in the replica.
    pub fn txid(&self) -> Txid {
        self.db.lock().expect("db lock").txid()
    }

    /// Ships everything committed so far: at most one LTX file per call.
    pub async fn sync(&self) -> Result<SyncOutcome, ReplicateError> {
        let _step = self.sync_lock.lock().await;
        let db = self.db.clone();
        let ts = now_ms();
        let prepared = blocking(move || db.lock().expect("db lock").prepare(ts)).await??;
        let outcome = match prepared {
            Prepared::UpToDate => SyncOutcome::UpToDate,
            Prepared::Ship(p) => {
                let size = p.body.len();
                let txid = p.header.max_txid;
                let when: DateTime<Utc> =
                    DateTime::from_timestamp_millis(p.header.timestamp_ms).unwrap_or_else(Utc::now);
                self.replica
                    .write_body(0, p.header.min_txid, txid, &p.body, when)
                    .await?;
                let pages = p.page_count;
                let resync = p.kind == ShipKind::Resync;
                if resync && txid.0 > 1 {
                    tracing::info!(db = %self.path.display(), %txid, pages, "resync shipped the pages that differ from the replica");
                }
                let db = self.db.clone();
                blocking(move || db.lock().expect("db lock").commit(p)).await??;
                SyncOutcome::Shipped {
                    txid,
                    pages,
                    bytes: size,
                    resync,
                }
            }
        };
        let db = self.db.clone();
        if let Some(mode) =
            blocking(move || db.lock().expect("db lock").maybe_checkpoint()).await??
        {
            tracing::debug!(db = %self.path.display(), mode, "checkpoint");
        }
        Ok(outcome)
    }

    /// Syncs until nothing is left to ship.
    pub async fn sync_all(&self) -> Result<Txid, ReplicateError> {
        while let SyncOutcome::Shipped { .. } = self.sync().await? {}
        Ok(self.txid())
    }

    /// Replicates until `shutdown` resolves, then ships what is left (bounded
    /// by [`ReplicateOptions::shutdown_timeout`]) and saves the local state.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ReplicateError> {
        tokio::pin!(shutdown);
        let mut last_seen = None;
        let mut last_full = Instant::now() - Duration::from_secs(3600);
        let mut backoff = Duration::ZERO;
        loop {
            let wait = self.opts.poll_interval.max(backoff);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
            }
            let seen = file_stamp(&self.path);
            if seen == last_seen && last_full.elapsed() < Duration::from_secs(1) {
                continue;
            }
            match self.sync().await {
                Ok(_) => {
                    backoff = Duration::ZERO;
                    last_seen = seen;
                    last_full = Instant::now();
                }
                Err(e) => {
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
                    tracing::warn!(db = %self.path.display(), error = %e, "sync failed; retrying in {backoff:?} (unshipped frames stay in the WAL)");
                }
            }
        }
        let done = tokio::time::timeout(self.opts.shutdown_timeout, self.sync_all()).await;
        let Replicator { db, opts, .. } = self;
        let close = blocking(move || match Arc::try_unwrap(db) {
            Ok(m) => m.into_inner().expect("db lock").close(),
            // A sync abandoned by the timeout still holds it: its state is
            // saved as it goes, so there is nothing more to do.
            Err(_) => Ok(()),
        });
        match done {
            Ok(r) => {
                r?;
                close.await??;
                Ok(())
            }
            Err(_) => {
                close.await??;
                Err(ReplicateError::ShutdownTimeout(opts.shutdown_timeout))
            }
        }
    }
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
