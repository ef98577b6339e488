//! Every default of litevault, in one place. The library builders
//! (`ReplicateOptions::default`, `CheckpointOptions::default`)
//! and the configuration file take their values from here.
//!
//! Where a setting exists in Litestream v0.5 the default is Litestream's
//! (read from its sources, `db.go`, `replica.go`, `cmd/litestream/main.go`,
//! and observed in the log of `litestream replicate` 0.5.17), unless the
//! comment says why litevault differs.

use std::time::Duration;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// How often a replica is synced (Litestream `sync-interval`, default 1s).
/// litevault ships as soon as a commit is seen, so this is the upper bound
/// of the batching delay, as in Litestream.
pub const SYNC_INTERVAL: Duration = secs(1);

/// How often the WAL is looked at for new commits when the kernel's change
/// notifications (inotify) are not available, and how often it is checked
/// with a `stat` beside them, in case one was missed. Litestream calls it
/// `monitor-interval` and polls at this interval always. With
/// notifications (the usual case on Linux), a commit wakes its replicator
/// at once whatever this is.
pub const POLL_INTERVAL: Duration = secs(1);

/// Compaction levels L1, L2, L3 (Litestream's `DefaultCompactionLevels`).
pub const COMPACTION_LEVELS: [Duration; 3] = [secs(30), secs(5 * 60), secs(3600)];

/// How often a snapshot (level 9) is taken (Litestream `snapshot.interval`, 24h).
pub const SNAPSHOT_INTERVAL: Duration = secs(24 * 3600);

/// How long snapshots are kept (Litestream `snapshot.retention`, 24h).
pub const SNAPSHOT_RETENTION: Duration = secs(24 * 3600);

/// How long L0 files are kept once compacted (Litestream `l0-retention`, 5m).
pub const L0_RETENTION: Duration = secs(5 * 60);

/// How often expired L0 files are swept (Litestream
/// `l0-retention-check-interval`, 15s).
pub const L0_RETENTION_CHECK_INTERVAL: Duration = secs(15);

/// Whether litevault deletes expired files itself (Litestream
/// `retention.enabled`, true; false leaves expiry to bucket lifecycle rules).
pub const RETENTION_ENABLED: bool = true;

/// Time-based PASSIVE checkpoint (Litestream `checkpoint-interval`, 1m).
pub const CHECKPOINT_INTERVAL: Duration = secs(60);

/// PASSIVE checkpoint once the WAL holds this many frames (Litestream
/// `min-checkpoint-page-count`, 1000).
pub const MIN_CHECKPOINT_PAGES: u64 = 1000;

/// TRUNCATE checkpoint once the WAL file is this large. Litestream's
/// `truncate-page-n` defaults to 121359 pages (about 474 MiB at 4 KiB
/// pages); litevault truncates at 256 MiB, counted in bytes so that the
/// bound does not depend on the page size.
pub const TRUNCATE_WAL_BYTES: u64 = 256 << 20;

/// SQLite busy timeout of litevault's connections (Litestream
/// `busy-timeout`, 1s).
pub const BUSY_TIMEOUT: Duration = secs(1);

/// Time allowed for the final sync at shutdown (Litestream
/// `shutdown-sync-timeout`, 30s).
pub const SHUTDOWN_TIMEOUT: Duration = secs(30);

/// Whether files are written so that Litestream 0.5 can restore and
/// continue them (the NoChecksum flag, litevault's checksums in the reserved
/// header bytes). On by default: released Litestream binaries reject files
/// that carry the standard trailer checksum (Litestream issue #1427), and a
/// user must be able to go back to Litestream at any time.
pub const LITESTREAM_COMPAT: bool = true;

/// How many databases of one `replicate` open at once (each open waits
/// mostly on its store: the lease, a listing, maybe a snapshot upload).
pub const OPEN_CONCURRENCY: usize = 16;

/// How long a replica lease lasts without renewal (litevault only).
pub const LEASE_TTL: Duration = secs(30);

/// `/readyz` answers 503 once a database's replication lag exceeds this
/// (litevault only).
pub const READYZ_MAX_LAG: Duration = secs(10);

/// Whether logs go to stderr (`logging.stderr`). Litestream writes them to
/// stdout unless `logging.stderr: true`; litevault keeps stdout for what a
/// command prints (`status --json`, `verify --json`, `ltx`), so its logs go
/// to stderr unless `logging.stderr: false`.
pub const LOG_TO_STDERR: bool = true;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "LITEVAULT_CONFIG";

/// Where the configuration file is looked for when neither `--config` nor
/// `LITEVAULT_CONFIG` names one, in order. `/etc/litestream.yml` is
/// deliberately not among them: on a host where Litestream still runs, both
/// tools would pick the same file up and write to the same replicas. Pass
/// `--config /etc/litestream.yml` to use it.
pub const CONFIG_PATHS: [&str; 2] = ["litevault.yml", "/etc/litevault.yml"];
