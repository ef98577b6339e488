//! The restore's error type: each variant names what was at fault and, where
//! an operator can act, how.

use std::path::{Path, PathBuf};

use crate::ltx::{self, Checksum, Txid};
use crate::replica::{LtxFileInfo, ReplicaError};

/// Errors of a restore. Each names what was at fault.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The replica holds no files.
    #[error(
        "replica {replica} holds no LTX files; check the URL (use --if-replica-exists to make this a no-op)"
    )]
    EmptyReplica {
        /// The replica URL.
        replica: String,
    },
    /// The output exists.
    #[error("{path} already exists; remove it, choose another -o, or pass --if-db-not-exists")]
    OutputExists {
        /// The output path.
        path: PathBuf,
    },
    /// No chain of files reaches the target.
    #[error("no restore point for {target} in {replica}: {reason}")]
    NoRestorePoint {
        /// The target as asked.
        target: String,
        /// The replica URL.
        replica: String,
        /// What is available.
        reason: String,
    },
    /// A file could not be decoded or failed its own checksum.
    #[error(
        "replica file {file} (TXID {min}-{max}) is damaged: {source}; restore an earlier point or repair the replica"
    )]
    BadFile {
        /// The file.
        file: String,
        /// Its first TXID.
        min: Txid,
        /// Its last TXID.
        max: Txid,
        /// The decoding error.
        #[source]
        source: ltx::LtxError,
    },
    /// Two files do not link up, or the result does not match.
    #[error(
        "checksum mismatch at {file} (TXID {txid}): {what}: expected {expected}, got {actual}; the replica is inconsistent, nothing was written"
    )]
    ChecksumMismatch {
        /// The file at fault.
        file: String,
        /// Its TXID.
        txid: Txid,
        /// What was compared.
        what: &'static str,
        /// The recorded checksum.
        expected: Checksum,
        /// The computed one.
        actual: Checksum,
    },
    /// The chain leaves a page unwritten.
    #[error(
        "{file} (TXID {txid}) says the database has {commit} pages, but no file up to it writes page {pgno}: \
         the replica is missing data or the file is forged; nothing was written. Restore an earlier TXID or repair the replica"
    )]
    MissingPage {
        /// The last file.
        file: String,
        /// Its TXID.
        txid: Txid,
        /// The page.
        pgno: u32,
        /// The database size (pages) the last file claims.
        commit: u32,
    },
    /// A replica file cannot be opened.
    #[error("cannot open replica file {file} ({path}): {source}; {hint}")]
    Open {
        /// The file.
        file: String,
        /// Where it is.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
        /// What to do.
        hint: &'static str,
    },
    /// Files of different page sizes in one chain.
    #[error("replica file {file} has page size {found}, the chain has {expected}")]
    PageSizeMismatch {
        /// The file.
        file: String,
        /// Its page size.
        found: u32,
        /// The chain's.
        expected: u32,
    },
    /// SQLite says the result is not a sound database.
    #[error("integrity_check of the restored database failed: {message}; nothing was written")]
    Integrity {
        /// SQLite's report.
        message: String,
    },
    /// An object of a Litestream v0.3 backup is damaged: it does not
    /// decompress, fails a checksum, or is not what its name says.
    #[error(
        "Litestream v0.3 object {object} in {replica} is damaged: {reason}; nothing was written. \
         Restore another point (--generation/--index, --timestamp) or replace the object from another copy"
    )]
    V03Damaged {
        /// The replica URL.
        replica: String,
        /// The object's key, relative to the replica.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// An object a Litestream v0.3 restore needs is not in the replica.
    #[error(
        "Litestream v0.3 object {object} is missing from {replica} ({reason}); nothing was written. \
         Restore an earlier point (--generation/--index, --timestamp) or put the object back"
    )]
    V03Missing {
        /// The replica URL.
        replica: String,
        /// The key the object would have, relative to the replica.
        object: String,
        /// How it was noticed.
        reason: String,
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

pub(super) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn bad_file(f: &LtxFileInfo) -> impl Fn(ltx::LtxError) -> RestoreError + '_ {
    move |source| RestoreError::BadFile {
        file: f.to_string(),
        min: f.min_txid,
        max: f.max_txid,
        source,
    }
}

impl From<crate::task::TaskFailed> for RestoreError {
    fn from(e: crate::task::TaskFailed) -> Self {
        RestoreError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        }
    }
}
