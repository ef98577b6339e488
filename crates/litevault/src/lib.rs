//! litevault: continuous SQLite replication to object storage, in
//! Litestream v0.5's LTX format and key layout, with verified restores.
//!
//! # Layout
//!
//! The data flow, module by module:
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
//!                     v
//!                   replicate:: the shipping loop (Replicator)
//!                     |
//!                     v
//!                   replica::   object_store with Litestream's key layout,
//!                     |         retries, request counts
//!                     v
//!                   restore::   plan the fewest files, fetch, merge, verify,
//!                     |         integrity_check, rename into place
//!                     |         (restore::follow: keep a read replica current,
//!                     |         each batch one SQLite transaction through
//!                     |         restore::dbpage)
//!                     v
//!                   verify::    match a live snapshot to a TXID, restore it,
//!                               compare
//! ```
//!
//! Beside the flow: `config` (the YAML file, compatible with `litestream.yml`;
//! every default in `config::defaults`), `content` (row-level digest used to
//! compare databases), `pg` (export to PostgreSQL and import from it, verified:
//! pure type mapping, value codec, checksums and DDL, with the I/O in
//! `pg::export` and `pg::import`), `server` (the HTTP surface over running
//! replicators: health, readiness, Prometheus metrics, status, durable sync, a
//! status page), `bench` (the storage backend comparison: one `Backend`
//! trait, seeded chat-app workloads, the runner and the report model) and
//! `cli` (one file per subcommand; `main.rs` only calls [`cli::main`]).
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

pub mod config;
pub mod content;
pub mod db;
pub mod fsync_faults;
#[cfg(feature = "pg")]
pub mod pg;
pub mod progress;
pub mod replica;
pub mod replicate;
pub mod restore;
#[cfg(feature = "server")]
pub mod server;
pub mod supervise;
pub mod vault;
#[cfg(feature = "dbpage")]
pub mod verify;

pub use litevault_ltx as ltx;
pub use litevault_ltx::wal;

pub use replica::Replica;
pub use replicate::{ReplicateError, ReplicateOptions, Replicator, SyncOutcome};
pub use restore::{RestoreError, RestoreOptions, RestoreTarget, restore};
pub use vault::{Vault, VaultError, VaultOptions};

/// The README's Rust example is compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
