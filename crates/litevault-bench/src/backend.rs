//! One trait over every storage backend measured: create the schema, load a
//! dataset, open per-worker sessions ([`Session`], in
//! [`workload`](super::workload)), clean up.
//!
//! The trait is async because PostgreSQL's client is; the SQLite sessions do
//! their (short, blocking) work inside the async calls, and the runner gives
//! each worker its own thread so that blocking never stalls another worker
//! (see [`mod@crate::run`]).
//!
//! Implementations: [`SqliteBackend`](super::sqlite::SqliteBackend) (local
//! disk, or a directory such as a FUSE-mounted bucket, DELETE or WAL
//! journal), [`VaultBackend`](super::sqlite::VaultBackend) (SQLite replicated
//! by an embedded [`litevault::Vault`]) and
//! [`PgBackend`](super::postgres::PgBackend).

use async_trait::async_trait;

use super::results::{BackendInfo, LoadInfo};
use super::run::BenchError;
use super::workload::{DatasetSpec, Session};

/// What a backend is asked to load, and how its caches are set.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The data.
    pub dataset: DatasetSpec,
    /// SQLite page cache per connection, KiB (`PRAGMA cache_size = -N`).
    pub sqlite_cache_kib: u64,
    /// Most sessions open at once (the mixed workload's readers + 1).
    pub sessions: usize,
}

/// A storage backend under measurement.
#[async_trait]
pub trait Backend: Send + Sync {
    /// How the report names it; `notes` grow as setup learns facts.
    fn info(&self) -> BackendInfo;

    /// Creates the schema and loads the dataset, replacing whatever a
    /// previous `load` left. Sessions opened before are invalid afterwards.
    async fn load(&mut self, setup: &Setup) -> Result<LoadInfo, BenchError>;

    /// A new session (connection) for one worker, over the loaded data.
    async fn session(&self) -> Result<Box<dyn Session>, BenchError>;

    /// Releases what `load` created (files, replication, schemas). Called
    /// once at the end, also after failures.
    async fn close(&mut self) -> Result<(), BenchError>;
}
