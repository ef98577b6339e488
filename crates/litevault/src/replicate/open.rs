//! Opening: each replica's lease and head, and the reconciliation of the
//! local state (saved position, page table, local store) with the replica
//! that is furthest ahead.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::outbox::Outbox;
use super::status::count_levels;
use super::{
    Head, Inner, LeaseOptions, Presync, ReplicaStatus, ReplicateError, ReplicateOptions,
    Replicator, Slot, SlotState, blocking, lock_or_recover, marks,
};
use crate::chain::plan_chain;
use crate::db::{self, WatchedDb};
use crate::ltx::{self, Checksum, DbChecksum, Txid};
use crate::replica::lease::{Lease, LeaseError};
use crate::replica::{LtxFileInfo, Replica, SNAPSHOT_LEVEL};

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

/// Up to this size, the file that ends a replica is read whole to find its
/// header and trailer: one request instead of two.
const HEAD_IN_ONE_READ: u64 = 64 * 1024;

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
    // A small file in one request; of a large one, the two ends.
    let (header, t) = if last.size <= HEAD_IN_ONE_READ {
        let whole = replica.read_file(&last).await?;
        let tail = whole.len().saturating_sub(ltx::TRAILER_SIZE);
        (
            whole.slice(..ltx::HEADER_SIZE.min(whole.len())),
            whole.slice(tail..),
        )
    } else {
        let header = replica
            .read_range(&last, 0..ltx::HEADER_SIZE as u64)
            .await?;
        let t = replica
            .read_range(
                &last,
                last.size.saturating_sub(ltx::TRAILER_SIZE as u64)..last.size,
            )
            .await?;
        (header, t)
    };
    let header = ltx::Header::decode(&header).map_err(|source| ReplicateError::BadFile {
        file: last.to_string(),
        source,
    })?;
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

/// How long opening waits for one replica before going on without it
/// (plus the lease wait).
const INIT_TIMEOUT: Duration = Duration::from_secs(20);

/// How often a replicator waiting for a lease asks again.
const LEASE_POLL: Duration = Duration::from_millis(500);

/// Takes a replica's lease (when leases are on) and reads where it stands.
async fn init_replica(
    replica: &Replica,
    db: &str,
    lease: Option<LeaseOptions>,
    wait: Duration,
    mut stop_waiting: Option<tokio::sync::watch::Receiver<bool>>,
    known: Option<Txid>,
) -> Result<(Option<Lease>, ReplicaHead), ReplicateError> {
    let lease = match lease {
        Some(lo) => {
            let deadline = Instant::now() + wait;
            let mut told = false;
            loop {
                match replica.acquire_lease(db, lo.ttl, lo.takeover).await {
                    Ok(l) => {
                        // The only writer now: what a killed upload left can go.
                        replica.sweep_staging();
                        break Some(l);
                    }
                    Err(LeaseError::Held { holder, .. }) if Instant::now() < deadline => {
                        if !told {
                            tracing::info!(%replica, %holder, wait = ?wait, "the lease is held by another replicator; waiting for its release");
                            told = true;
                        }
                        let left = deadline.saturating_duration_since(Instant::now());
                        let pause = tokio::time::sleep(left.min(LEASE_POLL));
                        match stop_waiting.as_mut() {
                            Some(stop) => tokio::select! {
                                _ = pause => {}
                                _ = stop.wait_for(|s| *s) => {
                                    return Err(ReplicateError::StoppedWaiting {
                                        replica: replica.to_string(),
                                    });
                                }
                            },
                            None => pause.await,
                        }
                    }
                    // The store cannot be reached: not a conflict with another writer.
                    Err(LeaseError::Replica(e)) => return Err(e.into()),
                    Err(e) => return Err(e.into()),
                }
            }
        }
        None => None,
    };
    match head_at_least(replica, known).await {
        Ok(h) => Ok((lease, h)),
        Err(e) => {
            if let Some(l) = lease {
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
        let path = db_path.as_ref().to_path_buf();
        match Self::open_once(&path, replicas.clone(), opts.clone()).await {
            Err(ReplicateError::Behind {
                replica,
                txid,
                replica_txid,
                ..
            }) if opts.catch_up => {
                let r = replicas
                    .iter()
                    .find(|r| r.to_string() == replica)
                    .ok_or(ReplicateError::NoReplicas)?;
                tracing::info!(db = %path.display(), %txid, %replica_txid, %replica, "the database is behind its replica (another replicator went on): restoring the latest state over it before starting");
                catch_up(&path, r).await?;
                Self::open_once(&path, replicas, opts).await
            }
            other => other,
        }
    }

    async fn open_once(
        db_path: &Path,
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
        let path = db_path.to_path_buf();
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
            let wait = lease_opts.map_or(Duration::ZERO, |l| l.wait);
            tokio::time::timeout(
                INIT_TIMEOUT + wait,
                init_replica(
                    r,
                    &db_name,
                    lease_opts,
                    wait,
                    opts.stop_waiting.clone(),
                    known,
                ),
            )
            .await
            .unwrap_or_else(|_| {
                Err(ReplicateError::Unreachable {
                    replica: r.to_string(),
                    after: INIT_TIMEOUT + wait,
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
                Err(e @ (ReplicateError::Lease(_) | ReplicateError::StoppedWaiting { .. })) => {
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
            for l in leases.into_iter().flatten() {
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
                } else if t < head.txid && unchanged_since(&path, &table).await {
                    // The database is still the state it had at `t` (restored
                    // then, or stopped then), and the replica went on: the
                    // later commits are someone else's, and the next sync
                    // would undo them.
                    for l in leases.into_iter().flatten() {
                        let _ = l.release().await;
                    }
                    return Err(ReplicateError::Behind {
                        db: path,
                        txid: t,
                        replica: reference.to_string(),
                        replica_txid: head.txid,
                    });
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
        leases: Vec<Option<Lease>>,
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
            // Each level's compaction is due an interval after the newest
            // file at that level, as the replica says, not after this
            // start: a replicator restarted more often than a level's
            // interval must still compact into it. A level with no file yet
            // counts from the oldest file below it (what waits to be
            // compacted into it), and an empty replica from now.
            let compacted_at = std::array::from_fn(|level| {
                let newest_at = files
                    .iter()
                    .filter(|f| usize::from(f.level) == level)
                    .map(|f| f.created)
                    .max();
                let oldest_below = || {
                    files
                        .iter()
                        .filter(|f| usize::from(f.level) < level)
                        .map(|f| f.created)
                        .min()
                };
                newest_at.or_else(oldest_below).or(Some(now))
            });
            slots.push(Slot {
                maintaining: tokio::sync::Mutex::new(()),
                state: tokio::sync::Mutex::new(SlotState {
                    txid: rt,
                    checksum: rc,
                    needs_snapshot,
                    files,
                    compacted_at,
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
                status_written: Mutex::new(None),
            }),
        })
    }

    /// A replica that could not be reached at start: take its lease and
    /// learn where it stands, now.
    pub(super) async fn late_init(
        &self,
        slot: &Slot,
        st: &mut SlotState,
    ) -> Result<(), ReplicateError> {
        let db_name = self.inner.path.display().to_string();
        let known = marks::load(&self.inner.state_dir, &slot.replica.to_string());
        let (lease, h) = init_replica(
            &slot.replica,
            &db_name,
            self.inner.opts.lease,
            Duration::ZERO,
            None,
            known,
        )
        .await?;
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
                if let Some(l) = lease {
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
}

/// Replaces a database that is behind its replica (proven unchanged since a
/// state the replica holds, so nothing of it is lost) by the replica's
/// latest state: the database and its WAL move aside, the verified restore
/// takes their place (with its local state), and then the old files go. A
/// restore that fails puts them back.
async fn catch_up(db: &Path, replica: &Replica) -> Result<(), ReplicateError> {
    use crate::restore::sibling;
    let aside = sibling(db, ".behind");
    let moves: Vec<(PathBuf, PathBuf)> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| (sibling(db, s), sibling(&aside, s)))
        .filter(|(from, _)| from.exists())
        .collect();
    for (from, to) in &moves {
        std::fs::rename(from, to).map_err(|source| ReplicateError::Local {
            path: from.clone(),
            source,
        })?;
    }
    match crate::restore::restore(replica, db, &crate::restore::RestoreOptions::default()).await {
        Ok(_) => {
            for (_, to) in &moves {
                let _ = std::fs::remove_file(to);
            }
            Ok(())
        }
        Err(e) => {
            for (from, to) in &moves {
                let _ = std::fs::rename(to, from);
            }
            Err(ReplicateError::CatchUp {
                db: db.to_path_buf(),
                reason: e.to_string(),
            })
        }
    }
}

/// Whether the database's content is the state of `table` (read through
/// SQLite's `sqlite_dbpage`, so with its WAL). A database that cannot be
/// read counts as changed: the caller then goes on as before. Without the
/// `dbpage` feature the check cannot be made, and it answers `false`.
#[cfg(not(feature = "dbpage"))]
async fn unchanged_since(_path: &Path, _table: &DbChecksum) -> bool {
    false
}

#[cfg(feature = "dbpage")]
async fn unchanged_since(path: &Path, table: &DbChecksum) -> bool {
    let path = path.to_path_buf();
    let want = table.value();
    crate::task::blocking(move || {
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        crate::restore::dbpage::read_checksum(&conn).map(|(_, t)| t.value() == want)
    })
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or(false)
}

fn table_matches(t: Txid, table: &DbChecksum, txid: Txid, sum: Checksum) -> bool {
    t == txid && table.value() == sum
}
