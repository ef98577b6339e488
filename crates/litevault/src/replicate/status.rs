//! What the replicator reports: its position, the status of each replica,
//! and the status file a running replicator refreshes.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::{Replicator, lock_db, lock_or_recover};
use crate::db;
use crate::ltx::Txid;
use crate::replica::{LtxFileInfo, Replica};

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
    /// The longest a running replicator leaves this file as it is: it
    /// writes it when something in it changes, and at least this often.
    /// A status older than this (and a few seconds) is a replicator that
    /// stopped without saying so. 0 in files of versions that wrote every
    /// second.
    #[serde(default)]
    pub refresh_secs: u64,
    /// Each replica.
    pub replicas: Vec<ReplicaStatus>,
}

/// The file a running replicator refreshes its status in.
pub const STATUS_FILE: &str = "status.json";

/// How often a running replicator rewrites an unchanged status file
/// ([`DbStatus::refresh_secs`]). Rewriting every second was most of what a
/// thousand idle databases cost (a file created and renamed per database
/// per second).
pub const STATUS_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

impl Replicator {
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
            refresh_secs: STATUS_REFRESH.as_secs(),
            replicas,
        }
    }

    /// Writes the status file if what it says changed (the time it was
    /// taken aside) or it is [`STATUS_REFRESH`] old; `running: false`, the
    /// last status of a stopping replicator, is always written.
    pub(super) fn write_status(&self, running: bool) {
        let mut st = self.status();
        st.running = running;
        let content = {
            let mut c = st.clone();
            c.updated_at = DateTime::<Utc>::UNIX_EPOCH;
            serde_json::to_vec(&c).unwrap_or_default()
        };
        {
            let mut last = lock_or_recover(&self.inner.status_written);
            if running
                && last
                    .as_ref()
                    .is_some_and(|(c, at)| *c == content && at.elapsed() < STATUS_REFRESH)
            {
                return;
            }
            *last = Some((content, std::time::Instant::now()));
        }
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
}

pub(super) fn count_levels(files: &[LtxFileInfo]) -> [usize; 10] {
    let mut n = [0usize; 10];
    for f in files {
        n[(f.level as usize).min(9)] += 1;
    }
    n
}
