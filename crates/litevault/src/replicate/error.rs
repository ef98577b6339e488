//! The replicator's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::db;
use crate::ltx::{self, Txid};
use crate::replica::ReplicaError;

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
    /// The local store beside the database cannot be written.
    #[error("local state in {path}: {source}; check the disk and the permissions of that folder")]
    Local {
        /// The folder or file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The replica's lease is held by another replicator, or was lost.
    #[error(transparent)]
    Lease(#[from] crate::replica::lease::LeaseError),
    /// A replica did not answer in time.
    #[error("replica {replica} did not answer within {after:?}; retrying in the background")]
    Unreachable {
        /// The replica.
        replica: String,
        /// How long we waited.
        after: Duration,
    },
    /// No replica was given.
    #[error("no replica given: pass at least one replica URL")]
    NoReplicas,
    /// The same replica was given twice.
    #[error("replica {0} is listed twice; each replica may appear once per database")]
    DuplicateReplica(String),
    /// A replica holds a history this database does not continue.
    #[error(
        "replica {replica} holds TXID {txid} with content this database does not have (another writer, or a different database); point it at an empty location, or restore from it first"
    )]
    Diverged {
        /// The replica URL.
        replica: String,
        /// Its latest TXID.
        txid: Txid,
    },
    /// The database is a state the replica holds, and the replica went on
    /// past it: another replicator shipped later commits (an overlapping
    /// deploy, a failover). Replicating now would make this older state the
    /// replica's latest.
    #[error(
        "database {db} is at TXID {txid}, but replica {replica} went on to TXID {replica_txid} after it (another replicator shipped those commits: an overlapping deploy, a failover); replicating now would replace them with this older state. Restore the latest state first (move {db} away, then `litevault restore {replica} -o {db}`), or point at another replica"
    )]
    Behind {
        /// The database.
        db: PathBuf,
        /// The TXID the database is at.
        txid: Txid,
        /// The replica URL.
        replica: String,
        /// The replica's latest TXID.
        replica_txid: Txid,
    },
    /// Restoring the replica's latest state over a database that was behind
    /// it failed; the database was put back as it was.
    #[error(
        "database {db} is behind its replica, and restoring the latest state over it failed: {reason}; the database is as it was"
    )]
    CatchUp {
        /// The database.
        db: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The wait for a lease another replicator holds was called off
    /// ([`super::ReplicateOptions::stop_waiting`]): nothing was started.
    #[error("stopped while waiting for the lease of {replica}, which another replicator holds")]
    StoppedWaiting {
        /// The replica URL.
        replica: String,
    },
    /// A snapshot could not be taken because the database kept changing.
    #[error(
        "could not take a consistent snapshot of the database: it kept changing; retrying later"
    )]
    SnapshotUnavailable,
    /// Every pass of a full sync found the WAL changing under its reads.
    #[error(
        "the WAL kept changing under the sync's reads ({0}); the commits are safe in the WAL and ship on the next pass or start"
    )]
    WalUnsettled(&'static str),
    /// More compaction levels than the key layout has room for.
    #[error(
        "{0} compaction levels given; at most 8 (L1 to L8): level 9 holds the snapshots. Drop the extra levels"
    )]
    TooManyLevels(usize),
    /// A blocking task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<crate::task::TaskFailed> for ReplicateError {
    fn from(e: crate::task::TaskFailed) -> Self {
        ReplicateError::Internal(e.to_string())
    }
}
