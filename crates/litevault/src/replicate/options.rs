//! Settings of the replicator and the clock it runs by; the defaults are
//! in [`crate::defaults`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use super::RetentionOptions;
use crate::db::CheckpointOptions;

/// Settings of the shipping loop.
#[derive(Clone, Debug)]
pub struct ReplicateOptions {
    /// How often the WAL is looked at for new commits when change
    /// notifications are off or not available; with them, how often a
    /// `stat` checks that none was missed.
    pub poll_interval: Duration,
    /// Wake on the kernel's change notifications for the database and its
    /// WAL (inotify; see [`crate::notify`]) instead of polling. Where they
    /// are not available the WAL is polled every `poll_interval`.
    pub change_notifications: bool,
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
    /// Average time between two uploads of new transactions to one
    /// replica. Sparse commits ship at once (a burst of a few uploads is
    /// allowed); under a steady load, commits are batched into one upload
    /// per interval (as Litestream's `sync-interval`), which bounds the PUT
    /// requests.
    pub sync_interval: Duration,
    /// Group commit for an embedded writer: after its commit hook wakes the
    /// shipper, wait this long for more commits before taking them in, so
    /// that they share one file and one upload (0: take them at once).
    pub commit_window: Duration,
    /// When the database is behind its replica (a state the replica went on
    /// from: see [`super::ReplicateError::Behind`]), restore the replica's
    /// latest state over it at open, then continue. Only for a database no
    /// other process has open yet (`replicate --exec` sets it: the app
    /// starts after the open).
    pub catch_up: bool,
    /// Turning true ends a wait for a held lease at open
    /// ([`LeaseOptions::wait`]) with [`super::ReplicateError::StoppedWaiting`]:
    /// a process asked to stop while it waits need not wait on.
    pub stop_waiting: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Settings of the replica lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseOptions {
    /// How long the lease lasts unless renewed (renewed every third of it).
    pub ttl: Duration,
    /// Replace a lease whose holder stopped renewing it (after expiry).
    pub takeover: bool,
    /// At open, how long to wait for a lease another replicator holds (its
    /// release at a clean stop, or its expiry with `takeover`) before
    /// failing; zero fails at once.
    pub wait: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            ttl: crate::defaults::LEASE_TTL,
            takeover: false,
            wait: Duration::ZERO,
        }
    }
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        use crate::defaults;
        ReplicateOptions {
            poll_interval: defaults::POLL_INTERVAL,
            change_notifications: true,
            checkpoint: CheckpointOptions::default(),
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            litestream_compat: defaults::LITESTREAM_COMPAT,
            retention: RetentionOptions::default(),
            clock: Clock::system(),
            lease: Some(LeaseOptions::default()),
            sync_interval: defaults::SYNC_INTERVAL,
            commit_window: Duration::ZERO,
            catch_up: false,
            stop_waiting: None,
        }
    }
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

    pub(super) fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.now_ms()).unwrap_or_else(Utc::now)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
