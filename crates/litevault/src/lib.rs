//! litevault: continuous SQLite replication to object storage, in
//! Litestream v0.5's LTX format and key layout, with verified restores.
//!
//! # Layout
//!
//! The data flow, module by module (the codecs `ltx` and `wal` are the
//! `litevault-ltx` crate, re-exported here):
//!
//! ```text
//!  app writes  -->  SQLite file + -wal
//!                     |  wal::      parse header and frames, verify the checksum
//!                     |             chain, stop at the last commit (pure)
//!                     v
//!                   db::        hold a read mark, prepare the next LTX file
//!                     |         (new frames, or a resync of the pages that
//!                     |         differ), run checkpoints after shipping
//!                     |  ltx::      encode/decode/compact LTX files (pure)
//!                     |  body::     an encoded file, in memory or spilled to disk
//!                     v
//!                   replicate:: the shipping loop (Replicator): the local
//!                     |         store, compaction, retention, leases
//!                     v
//!                   replica::   object_store with Litestream's key layout,
//!                     |         retries, request counts, the lease and
//!                     |         its keeper (one renewal per directory)
//!                     |  chain::    which files rebuild a state, which states
//!                     |             a listing reaches (pure)
//!                     v
//!                   restore::   plan the fewest files, fetch, merge, verify,
//!                     |         integrity_check, rename into place
//!                     |         (restore::follow: keep a read replica current,
//!                     |         each batch one SQLite transaction through
//!                     |         restore::dbpage; feature `dbpage`)
//!                     v
//!                   verify::    match a live snapshot to a TXID, restore it,
//!                               compare (feature `dbpage`)
//! ```
//!
//! `vault` embeds a replicator in the app (it hands out the connections;
//! durable commits); `supervise` runs the app as a child of the replicator.
//! Beside the flow: `config` (the YAML file, compatible with `litestream.yml`),
//! `defaults` (every default, in one place), `notify` (the kernel's change
//! notifications, which wake the replicators instead of a poll) and `units` (durations and sizes,
//! one grammar for flags, the file and HTTP), `content` (row-level digest used
//! to compare databases), `progress` (how long operations report), `task`
//! (blocking work off the async threads), `redact`, `pg` (feature `pg`:
//! export to PostgreSQL and import from it, verified) and `server` (feature
//! `server`: the HTTP surface over running replicators: health, readiness,
//! Prometheus metrics, status, durable sync, a status page).
//!
//! Features: `s3`, `gcs`, `azure` (replica backends, on by default; `file://`
//! is always there), `server`, `pg`, `dbpage` (needs the bundled SQLite built
//! with `LIBSQLITE3_FLAGS=-DSQLITE_ENABLE_DBPAGE_VTAB`; the build says so).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use litevault::{Replica, Replicator, ReplicateOptions};
//! use litevault::restore::{restore, RestoreOptions};
//!
//! let replica = Replica::open("file:///var/backups/app")?;
//! let replicator = Replicator::open("app.db", replica.clone(), ReplicateOptions::default()).await?;
//! replicator.sync_all().await?; // ship what is committed now
//! restore(&replica, "copy.db".as_ref(), &RestoreOptions::default()).await?;
//! # Ok(()) }
//! ```

pub mod body;
pub mod chain;
pub mod config;
pub mod content;
pub mod db;
pub mod defaults;
pub mod fsync_faults;
pub mod notify;
#[cfg(feature = "pg")]
pub mod pg;
pub mod progress;
pub mod redact;
pub mod replica;
pub mod replicate;
pub mod restore;
#[cfg(feature = "server")]
pub mod server;
pub mod supervise;
pub mod task;
#[cfg(test)]
mod testchain;
pub mod units;
pub mod vault;
#[cfg(feature = "dbpage")]
pub mod verify;

pub use litevault_ltx as ltx;
pub use litevault_ltx::wal;

pub use replica::Replica;
pub use replicate::{ReplicateError, ReplicateOptions, Replicator, SyncOutcome};
pub use restore::{RestoreError, RestoreOptions, RestoreTarget, restore};
pub use vault::{Vault, VaultError, VaultOptions};

/// The README's Rust examples are compiled as doctests (they use every
/// feature, as the workspace's own build does).
#[cfg(all(doctest, feature = "pg", feature = "server", feature = "dbpage"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
