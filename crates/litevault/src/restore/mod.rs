//! Restore: rebuild a database from a replica, verified, atomically.
//!
//! 1. **Plan** (`plan`): the fewest contiguous files, across levels, that
//!    reach the target TXID.
//! 2. **Fetch** them concurrently (small files in memory, large ones streamed
//!    to a staging folder beside the output; a local folder's files are read
//!    in place, never through a symbolic link).
//! 3. **Merge** ([`merge`]): one k-way pass over the files' page streams
//!    (pages inside an LTX file are sorted); the newest version of each page
//!    wins and pages past a later commit size are dropped; each page is
//!    written once, to `OUT.tmp`. At most `merge::MERGE_FAN_IN` files are
//!    open at once: a longer chain is merged by groups into sorted runs first.
//!    Every page up to the size the last file claims must come, in order: the
//!    first page skipped stops the merge, so nothing is allocated or written
//!    for pages a header claims and no file holds.
//! 4. **Verify**: every file's own checksum, every link of the chain
//!    (pre-apply of a file = post-apply of the one before), the checksum of the
//!    result against the last file's post-apply checksum, and
//!    `PRAGMA integrity_check`.
//! 5. **Publish**: fsync, rename `OUT.tmp` to `OUT`, fsync the folder.
//!
//! On any failure (or a panic, or the restore future being dropped) the
//! output path is left as it was, the temporary files are removed, and the
//! error names the file and TXID at fault.
//!
//! A replica with no LTX file but a Litestream v0.3 backup (`generations/`)
//! is restored by [`v03`], as is [`RestoreTarget::Generation`] on any
//! replica; the same temporary files, checks and publication apply.

#[cfg(feature = "dbpage")]
pub mod dbpage;
mod error;
#[cfg(feature = "dbpage")]
pub mod follow;
pub mod merge;
pub mod v03;
use crate::chain;

use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::db::{SavedPosition, StateDir, WalPosition};
use crate::ltx::{self, Checksum, DbChecksum, Txid};
use crate::replica::{LtxFileInfo, Replica, ReplicaError};
use merge::{Coverage, Prepared};

pub use error::RestoreError;
use error::{bad_file, io_err};

/// What to restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The latest state in the replica.
    Latest,
    /// The state right after this TXID.
    Txid(Txid),
    /// The latest state committed at or before this time, by the LTX
    /// header timestamps: the newest restore point such that it and every
    /// earlier one were committed at or before the time (see
    /// [`chain::point_at_time`]; monotonic even when a clock step made the
    /// timestamps go backwards).
    Timestamp(DateTime<Utc>),
    /// A generation of the replica's Litestream v0.3 backup: its latest
    /// state, or its state at the end of a WAL index (as v0.3's `restore
    /// -generation G -index N`). The replica's LTX files, if any, are not
    /// read.
    Generation {
        /// The generation.
        generation: v03::Generation,
        /// The last WAL index to apply (`None`: all of them).
        index: Option<u32>,
    },
}

/// Restore settings.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// What to restore.
    pub target: RestoreTarget,
    /// Exit successfully without doing anything when the output exists.
    pub if_db_not_exists: bool,
    /// Exit successfully without doing anything when the replica is empty.
    pub if_replica_exists: bool,
    /// Files downloaded at once.
    pub concurrency: usize,
    /// Where to report the bytes fetched (nowhere by default).
    pub progress: crate::progress::ProgressSink,
    /// Write the page table next to the output so that `replicate` can
    /// continue from it without uploading the database again.
    pub write_state: bool,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            target: RestoreTarget::Latest,
            if_db_not_exists: false,
            if_replica_exists: false,
            concurrency: 8,
            progress: crate::progress::ProgressSink::none(),
            write_state: true,
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RestoreOutcome {
    /// The database was restored.
    Restored(RestoreReport),
    /// `--if-db-not-exists` and the output exists: nothing done.
    SkippedDbExists,
    /// `--if-replica-exists` and the replica is empty: nothing done.
    SkippedNoReplica,
}

/// Figures of a completed restore.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    /// The TXID restored.
    pub txid: Txid,
    /// Files applied, in order.
    pub files: Vec<String>,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Pages in the result.
    pub pages: u32,
    /// Page size.
    pub page_size: u32,
    /// The checksum of the result.
    pub checksum: Checksum,
    /// `true` when the result was proven against the replica's recorded
    /// checksum; `false` for files written without checksums (Litestream),
    /// which are still checked by their file checksums and integrity_check.
    pub checksum_verified: bool,
    /// Wall time in milliseconds.
    pub millis: u64,
    /// For a restore from a Litestream v0.3 backup (whose states have no
    /// TXID: `txid` is then 0): the generation and WAL index restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub litestream_v03: Option<v03::V03Point>,
}

/// Files larger than this are streamed to disk instead of kept in memory.
const IN_MEMORY_LIMIT: u64 = 4 << 20;

/// Read buffer of a replica file read from disk.
const FILE_BUFFER: usize = 256 << 10;

/// Drops the files whose names cannot be LTX files (TXID 0, or a first TXID
/// above the last), each with a warning naming it; returns the rest and a
/// description of each file dropped.
pub(crate) fn usable_files(
    replica: &Replica,
    files: Vec<LtxFileInfo>,
) -> (Vec<LtxFileInfo>, Vec<String>) {
    let (valid, invalid) = chain::split_valid(files);
    let ignored: Vec<String> = invalid
        .iter()
        .map(|(f, why)| format!("{f} ({why})"))
        .collect();
    for (f, why) in &invalid {
        tracing::warn!(
            "ignoring {replica}/{}: not a valid LTX file name ({why})",
            replica.file_key(f.level, f.min_txid, f.max_txid)
        );
    }
    (valid, ignored)
}

/// Resolves a target to the files that rebuild it. Files whose names are not
/// valid LTX names (TXID 0) are ignored, with a warning.
pub async fn plan_restore(
    replica: &Replica,
    files: &[LtxFileInfo],
    target: RestoreTarget,
) -> Result<Vec<LtxFileInfo>, RestoreError> {
    let (valid, ignored) = usable_files(replica, files.to_vec());
    let files = &valid[..];
    let no_point = |target: String, reason: String| RestoreError::NoRestorePoint {
        target,
        replica: replica.to_string(),
        reason,
    };
    let Some(latest) = files.iter().map(|f| f.max_txid).max() else {
        return Err(no_point(
            describe(target),
            if ignored.is_empty() {
                "the replica holds no LTX files".into()
            } else {
                format!(
                    "its only files have invalid names: {}; remove them (or restore from a sound replica)",
                    ignored.join(", ")
                )
            },
        ));
    };
    let to =
        match target {
            RestoreTarget::Latest => latest,
            RestoreTarget::Txid(t) => {
                if !files.iter().any(|f| f.max_txid == t) {
                    let below = files.iter().map(|f| f.max_txid).filter(|x| *x < t).max();
                    return Err(no_point(
                        format!("TXID {t}"),
                        format!(
                            "no file ends at that TXID (latest is {latest}{})",
                            below
                                .map(|b| format!(", nearest below is {b}"))
                                .unwrap_or_default()
                        ),
                    ));
                }
                t
            }
            RestoreTarget::Timestamp(ts) => resolve_timestamp(replica, files, ts)
                .await?
                .ok_or_else(|| {
                    no_point(
                        ts.to_rfc3339(),
                        "every state of the replica is newer than that time (its first was committed after it)".into(),
                    )
                })?,
            RestoreTarget::Generation { .. } => {
                return Err(no_point(
                    describe(target),
                    "a generation names a Litestream v0.3 backup, and LTX files have none".into(),
                ));
            }
        };
    match chain::plan_chain(files, Txid(0), to) {
        Some(chain) if !chain.is_empty() => Ok(chain),
        _ => {
            let reason = match chain::first_gap(files, Txid(0), to) {
                Some(gap) => format!(
                    "no file covers TXID {gap}: the file holding it is missing, so no chain of files reaches {to}"
                ),
                None => "no contiguous chain of files from TXID 1".into(),
            };
            Err(no_point(format!("TXID {to}"), reason))
        }
    }
}

/// A target in words, for messages.
fn describe(target: RestoreTarget) -> String {
    match target {
        RestoreTarget::Latest => "the latest state".into(),
        RestoreTarget::Txid(t) => format!("TXID {t}"),
        RestoreTarget::Timestamp(ts) => ts.to_rfc3339(),
        RestoreTarget::Generation { generation, index } => match index {
            Some(i) => format!("generation {generation} WAL index {i:08x}"),
            None => format!("generation {generation}"),
        },
    }
}

/// The state at a time, by the rule of [`chain::point_at_time`]: restore
/// points are read in TXID order (their headers' timestamps, a few at once)
/// until the first one committed after `ts`.
async fn resolve_timestamp(
    replica: &Replica,
    files: &[LtxFileInfo],
    ts: DateTime<Utc>,
) -> Result<Option<Txid>, RestoreError> {
    const AT_ONCE: usize = 8;
    let target = ts.timestamp_millis();
    let points = chain::restore_points(files);
    let mut seen: Vec<(Txid, i64)> = Vec::new();
    for batch in points.chunks(AT_ONCE) {
        let read = futures::future::try_join_all(batch.iter().map(|f| async move {
            let raw = replica.read_range(f, 0..ltx::HEADER_SIZE as u64).await?;
            let h = ltx::Header::decode(&raw).map_err(bad_file(f))?;
            Ok::<_, RestoreError>((f.max_txid, h.timestamp_ms))
        }))
        .await?;
        let past = read.iter().any(|(_, t)| *t > target);
        seen.extend(read);
        if past {
            break;
        }
    }
    Ok(chain::point_at_time(&seen, target))
}

/// A replica file, fetched for the merge.
pub(crate) enum Fetched {
    /// Downloaded into memory.
    Memory(bytes::Bytes),
    /// A file of a local-folder replica, read in place.
    Local(PathBuf),
    /// Downloaded into the staging folder.
    Staged(PathBuf),
}

impl Fetched {
    /// Opens the file's bytes. A file on disk must be a regular file: a
    /// symbolic link is not followed and a FIFO or device is not read.
    pub(crate) fn reader(&self, f: &LtxFileInfo) -> Result<Box<dyn Read + Send>, RestoreError> {
        Ok(match self {
            Fetched::Memory(b) => Box::new(std::io::Cursor::new(b.clone())),
            Fetched::Local(p) | Fetched::Staged(p) => {
                Box::new(BufReader::with_capacity(FILE_BUFFER, open_regular(f, p)?))
            }
        })
    }

    /// Removes a downloaded copy.
    fn discard(&self) {
        if let Fetched::Staged(p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Opens a replica file on disk without following a symbolic link and
/// without blocking on a FIFO, and checks that it is a regular file.
fn open_regular(f: &LtxFileInfo, path: &Path) -> Result<File, RestoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    let open_err = |source: std::io::Error| {
        let hint = match source.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => {
                "too many files are open: raise the open-file limit (ulimit -n) or close other programs"
            }
            Some(libc::EACCES) | Some(libc::EPERM) => "make the replica readable by this user",
            _ => "check the replica folder",
        };
        RestoreError::Open {
            file: f.to_string(),
            path: path.to_path_buf(),
            source,
            hint,
        }
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(not_a_file(path));
        }
        Err(e) => return Err(open_err(e)),
    };
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() {
        return Err(not_a_file(path));
    }
    Ok(file)
}

fn not_a_file(path: &Path) -> RestoreError {
    let kind = std::fs::symlink_metadata(path)
        .map(|m| crate::replica::file_kind(&m.file_type()))
        .unwrap_or("file that is no longer there");
    RestoreError::Replica(ReplicaError::NotAFile {
        path: path.to_path_buf(),
        kind,
    })
}

async fn fetch(
    replica: &Replica,
    f: &LtxFileInfo,
    staging: &Path,
) -> Result<Fetched, RestoreError> {
    if let Some(path) = replica.local_path(f) {
        if std::fs::symlink_metadata(&path).is_err() {
            // Let the store report it, as for any other backend.
            return Ok(Fetched::Memory(replica.read_file(f).await?));
        }
        return Ok(Fetched::Local(path));
    }
    if f.size <= IN_MEMORY_LIMIT {
        return Ok(Fetched::Memory(replica.read_file(f).await?));
    }
    let path = staging.join(format!(
        "L{}-{}",
        f.level,
        ltx::format_filename(f.min_txid, f.max_txid)
    ));
    // The GET itself is retried by the replica; a transfer cut in the
    // middle of the body is started again here, under the same policy.
    let policy = replica.retry_policy();
    let mut delay = policy.initial_backoff;
    let mut attempt = 1;
    loop {
        let mut out = tokio::fs::File::create(&path)
            .await
            .map_err(io_err(&path))?;
        let mut stream = replica.open_stream(f).await?;
        let cut = loop {
            match stream.try_next().await {
                Ok(Some(chunk)) => tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
                    .await
                    .map_err(io_err(&path))?,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        match cut {
            None => {
                tokio::io::AsyncWriteExt::flush(&mut out)
                    .await
                    .map_err(io_err(&path))?;
                return Ok(Fetched::Staged(path));
            }
            Some(mut e) if attempt >= policy.max_attempts => {
                if let ReplicaError::Storage { attempts, .. } = &mut e {
                    *attempts = attempt;
                }
                return Err(e.into());
            }
            Some(e) => {
                tracing::warn!(file = %f, attempt, error = %e, "download cut short; starting it again in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(policy.max_backoff);
                attempt += 1;
            }
        }
    }
}

/// Fetches files concurrently, in order.
async fn fetch_all(
    replica: &Replica,
    files: &[LtxFileInfo],
    staging: &Path,
    concurrency: usize,
    bar: &crate::progress::ProgressSink,
) -> Result<Vec<Fetched>, RestoreError> {
    // The futures are built first: a closure returning a borrowing future
    // would make the caller's future not `Send`.
    let fetches: Vec<_> = files
        .iter()
        .map(|f| async move {
            let r = fetch(replica, f, staging).await;
            bar.advance(f.size);
            r
        })
        .collect();
    let fetched: Vec<Result<Fetched, RestoreError>> = futures::stream::iter(fetches)
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut ok = Vec::with_capacity(fetched.len());
    let mut first_err = None;
    for r in fetched {
        match r {
            Ok(f) => ok.push(f),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        None => Ok(ok),
        Some(e) => {
            ok.iter().for_each(Fetched::discard);
            Err(e)
        }
    }
}

use crate::task::blocking;

/// Fetches a chain and gets it ready to merge, with at most
/// [`merge::MERGE_FAN_IN`] files open (and held in memory) at once: a
/// longer chain is merged group by group into runs in `staging` (see
/// [`merge`]). Every file is checked against its name and the chain's page
/// size; the files merged into runs are checked against their own checksum.
pub(crate) async fn prepare(
    replica: &Replica,
    chain: &[LtxFileInfo],
    staging: &Path,
    concurrency: usize,
    bar: &crate::progress::ProgressSink,
) -> Result<Prepared, RestoreError> {
    if chain.is_empty() {
        return Err(RestoreError::NoRestorePoint {
            target: "the latest state".into(),
            replica: replica.to_string(),
            reason: "no file to apply".into(),
        });
    }
    prepare_with(
        replica,
        chain,
        staging,
        concurrency,
        bar,
        merge::MERGE_FAN_IN,
    )
    .await
}

/// [`prepare`] with a given fan-in (tests use a small one).
async fn prepare_with(
    replica: &Replica,
    chain: &[LtxFileInfo],
    staging: &Path,
    concurrency: usize,
    bar: &crate::progress::ProgressSink,
    fan_in: usize,
) -> Result<Prepared, RestoreError> {
    let fan_in = fan_in.max(2);
    let shared: Arc<[LtxFileInfo]> = chain.into();
    if chain.len() <= fan_in {
        let fetched = fetch_all(replica, chain, staging, concurrency, bar).await?;
        let c = shared.clone();
        return blocking(move || merge::open_direct(&c, fetched)).await?;
    }
    let mut runs = merge::RunSet::new(staging, fan_in);
    for (g, group) in chain.chunks(fan_in).enumerate() {
        let fetched = fetch_all(replica, group, staging, concurrency, bar).await?;
        let c = shared.clone();
        runs = blocking(move || {
            let r = runs.add_group(&c, g * fan_in, &fetched);
            fetched.iter().for_each(Fetched::discard);
            r.map(|()| runs)
        })
        .await??;
    }
    blocking(move || runs.finish(&shared)).await?
}

/// Removes a restore's temporary files when dropped (on success, on error,
/// on a panic, or when the restore future is dropped): the staging folder,
/// the `-wal`/`-shm` files of `OUT.tmp`, and `OUT.tmp` itself unless it was
/// published.
struct TempFiles {
    tmp: PathBuf,
    staging: PathBuf,
    published: bool,
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(sibling(&self.tmp, suffix));
        }
        if !self.published {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Restores a replica to `output`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use litevault::{Replica, restore::{restore, RestoreOptions}};
/// let replica = Replica::open("file:///var/backups/app")?;
/// restore(&replica, "restored.db".as_ref(), &RestoreOptions::default()).await?;
/// # Ok(()) }
/// ```
pub async fn restore(
    replica: &Replica,
    output: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome, RestoreError> {
    let started = Instant::now();
    if output.exists() {
        if opts.if_db_not_exists {
            return Ok(RestoreOutcome::SkippedDbExists);
        }
        return Err(RestoreError::OutputExists {
            path: output.to_path_buf(),
        });
    }
    if let RestoreTarget::Generation { generation, index } = opts.target {
        let target = v03::V03Target::Generation { generation, index };
        let report = v03::restore(replica, output, target, &opts.progress, started).await?;
        return Ok(RestoreOutcome::Restored(report));
    }
    let files = replica.list_all().await?;
    if files.is_empty() {
        if replica.has_litestream_v03().await? {
            let target = match opts.target {
                RestoreTarget::Timestamp(ts) => v03::V03Target::Timestamp(ts),
                RestoreTarget::Txid(t) => {
                    return Err(RestoreError::NoRestorePoint {
                        target: format!("TXID {t}"),
                        replica: replica.to_string(),
                        reason: "the replica holds a Litestream v0.3 backup, whose states have no TXID; \
                                 name one with --generation and --index (see `litevault ltx URL --v03`)"
                            .into(),
                    });
                }
                RestoreTarget::Latest | RestoreTarget::Generation { .. } => v03::V03Target::Latest,
            };
            let report = v03::restore(replica, output, target, &opts.progress, started).await?;
            return Ok(RestoreOutcome::Restored(report));
        }
        if opts.if_replica_exists {
            return Ok(RestoreOutcome::SkippedNoReplica);
        }
        return Err(RestoreError::EmptyReplica {
            replica: replica.to_string(),
        });
    }
    let chain = plan_restore(replica, &files, opts.target).await?;
    let (tmp, staging) = (sibling(output, ".tmp"), sibling(output, ".tmp-ltx"));
    let mut temp = TempFiles {
        tmp: tmp.clone(),
        staging: staging.clone(),
        published: false,
    };
    let report = restore_chain(replica, &chain, output, &tmp, &staging, opts, started).await?;
    temp.published = true;
    Ok(RestoreOutcome::Restored(report))
}

pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

async fn restore_chain(
    replica: &Replica,
    chain: &[LtxFileInfo],
    output: &Path,
    tmp: &Path,
    staging: &Path,
    opts: &RestoreOptions,
    started: Instant,
) -> Result<RestoreReport, RestoreError> {
    let last = chain
        .last()
        .cloned()
        .ok_or_else(|| RestoreError::NoRestorePoint {
            target: describe(opts.target),
            replica: replica.to_string(),
            reason: "no file to apply".into(),
        })?;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    std::fs::create_dir_all(staging).map_err(io_err(staging))?;
    let total: u64 = chain.iter().map(|f| f.size).sum();
    let bar = &opts.progress;
    bar.start(crate::progress::Unit::Bytes, Some(total));
    let _finish = bar.finish_on_drop();
    bar.message("fetching");
    let prepared = prepare(replica, chain, staging, opts.concurrency, bar).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "fetched");
    bar.message("applying");
    let chain_owned = chain.to_vec();
    let tmp_owned = tmp.to_path_buf();
    let merged = blocking(move || merge_into(&chain_owned, prepared, &tmp_owned)).await??;
    tracing::debug!(elapsed = ?started.elapsed(), "merged and verified");
    // fsync and integrity_check at once: the check reads the pages from the
    // page cache while the kernel writes them back. Both must pass before the
    // file is published.
    let tmp_owned = tmp.to_path_buf();
    let synced = std::thread::spawn(move || {
        File::options()
            .write(true)
            .open(&tmp_owned)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&tmp_owned))
    });
    let tmp_owned = tmp.to_path_buf();
    let checked = blocking(move || integrity_check(&tmp_owned)).await;
    let synced = synced.join().map_err(|_| RestoreError::Io {
        path: tmp.to_path_buf(),
        source: std::io::Error::other("the fsync thread panicked"),
    })?;
    checked??;
    synced?;
    tracing::debug!(elapsed = ?started.elapsed(), "synced and integrity_check passed");
    // Publish. A stale -wal or -shm beside the output would be replayed over
    // the restored file by the next open: remove them first.
    for suffix in ["-wal", "-shm"] {
        let p = sibling(output, suffix);
        if p.exists() {
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    std::fs::rename(tmp, output).map_err(io_err(output))?;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err(parent))?;
    }
    if opts.write_state {
        let state = StateDir::for_db(output);
        state.clear();
        let _ = state.save_pages(last.max_txid, &merged.table);
        let _ = state.save_position(&SavedPosition {
            txid: last.max_txid,
            checksum: merged.table.value(),
            page_size: merged.page_size,
            wal: WalPosition::NoWal,
        });
    }
    Ok(RestoreReport {
        txid: last.max_txid,
        files: chain.iter().map(|f| f.to_string()).collect(),
        bytes: total,
        pages: merged.table.len() as u32,
        page_size: merged.page_size,
        checksum: merged.table.value(),
        checksum_verified: merged.verified,
        millis: started.elapsed().as_millis() as u64,
        litestream_v03: None,
    })
}

pub(crate) struct Merged {
    pub(crate) table: DbChecksum,
    pub(crate) page_size: u32,
    pub(crate) verified: bool,
}

/// The error for a chain that leaves `pgno` unwritten.
pub(crate) fn missing_page(chain: &[LtxFileInfo], commit: u32, pgno: u32) -> RestoreError {
    let (file, txid) = chain
        .last()
        .map(|f| (f.to_string(), f.max_txid))
        .unwrap_or_default();
    RestoreError::MissingPage {
        file,
        txid,
        pgno,
        commit,
    }
}

/// Checks that the chain links up (pre-apply of each file = post-apply of
/// the one before, where the files carry checksums; `skip_snapshots` for a
/// follower, whose chain may restart at a snapshot); returns the checksum
/// the last file records for the result, if any.
pub(crate) fn check_links(
    chain: &[LtxFileInfo],
    headers: &[ltx::Header],
    trailers: &[ltx::Trailer],
    skip_snapshots: bool,
) -> Result<Option<Checksum>, RestoreError> {
    let sums: Vec<Option<(Checksum, Checksum)>> = headers
        .iter()
        .zip(trailers)
        .map(|(h, t)| ltx::rolling_checksums(h, t))
        .collect();
    // `headers` and `trailers` were read from the files of `chain`, one
    // each: `i` indexes all of them.
    for i in 1..sums.len() {
        if let (Some((_, prev_post)), Some((pre, _))) = (sums[i - 1], sums[i])
            && pre != prev_post
            && !(skip_snapshots && headers[i].is_snapshot())
        {
            return Err(RestoreError::ChecksumMismatch {
                file: chain[i].to_string(),
                txid: chain[i].min_txid,
                what: "pre-apply checksum vs the previous file's post-apply checksum",
                expected: prev_post,
                actual: pre,
            });
        }
    }
    Ok(sums.last().copied().flatten().map(|(_, post)| post))
}

/// Merges the chain's pages into `out` (created), verifying as it goes.
fn merge_into(
    chain: &[LtxFileInfo],
    mut prepared: Prepared,
    out: &Path,
) -> Result<Merged, RestoreError> {
    let page_size = prepared.page_size();
    let commit = prepared.commit();
    let file = File::create(out).map_err(io_err(out))?;
    // The merge runs here; page checksums and writes run on a second thread,
    // fed batches of consecutive pages. The checksum table and the file grow
    // with the pages the files hold, never ahead of them.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u32, Vec<u8>)>(4);
    let writer_file = file.try_clone().map_err(io_err(out))?;
    let out_path = out.to_path_buf();
    let writer = std::thread::spawn(move || -> Result<DbChecksum, RestoreError> {
        let mut table = DbChecksum::new();
        let ps = page_size as usize;
        for (start, batch) in rx {
            for (i, page) in batch.chunks_exact(ps).enumerate() {
                table.apply_page(start + i as u32, page);
            }
            writer_file
                .write_all_at(&batch, (u64::from(start) - 1) * u64::from(page_size))
                .map_err(io_err(&out_path))?;
        }
        Ok(table)
    });
    let batch_bytes = (2usize << 20).max(page_size as usize);
    let mut batch: Vec<u8> = Vec::with_capacity(batch_bytes);
    let mut batch_start = 0u32;
    let mut batch_next = 0u32;
    // Pages come in ascending order: each must be the next one, so a header
    // claiming pages no file holds is caught at the first page skipped.
    let mut cover = Coverage::new(0, commit, page_size);
    let mut missing = None;
    let mut merge = || -> Result<(), RestoreError> {
        prepared.merge(chain, |pgno, page| {
            if let Err(p) = cover.accept(pgno) {
                missing = Some(p);
                return Ok::<_, RestoreError>(ControlFlow::Break(()));
            }
            if !batch.is_empty() && (pgno != batch_next || batch.len() >= batch_bytes) {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_bytes));
                if tx.send((batch_start, full)).is_err() {
                    // The writer failed; its error is reported below.
                    return Ok(ControlFlow::Break(()));
                }
            }
            if batch.is_empty() {
                batch_start = pgno;
            }
            batch.extend_from_slice(page);
            batch_next = pgno.saturating_add(1);
            Ok(ControlFlow::Continue(()))
        })?;
        if !batch.is_empty() {
            let _ = tx.send((batch_start, std::mem::take(&mut batch)));
        }
        Ok(())
    };
    let merged = merge();
    drop(tx);
    let written = writer.join().map_err(|_| RestoreError::Io {
        path: out.to_path_buf(),
        source: std::io::Error::other("the writer thread panicked"),
    })?;
    merged?;
    let mut table = written?;
    let headers = prepared.headers().to_vec();
    // Every file's own checksum (the decoders check it at the end): a
    // damaged file explains a missing page better than the page does.
    let trailers = prepared.finish(chain)?;
    if let Some(pgno) = missing.or_else(|| cover.finish().err()) {
        return Err(missing_page(chain, commit, pgno));
    }
    // Every page up to `commit` is written (the lock page aside, which stays
    // a hole of zeros): sizing the table and the file adds nothing else.
    table.set_len(commit);
    file.set_len(u64::from(commit) * u64::from(page_size))
        .map_err(io_err(out))?;
    // Chain links and the result, where the files carry checksums (in the
    // standard fields or, Litestream-compatible, in the reserved bytes).
    let expected = check_links(chain, &headers, &trailers, false)?;
    // The result is proven when the last file records the checksum it must have.
    if let (Some(expected), Some(last)) = (expected, chain.last()) {
        let actual = table.value();
        if expected != actual {
            return Err(RestoreError::ChecksumMismatch {
                file: last.to_string(),
                txid: last.max_txid,
                what: "checksum of the restored database vs the file's post-apply checksum",
                expected,
                actual,
            });
        }
    }
    Ok(Merged {
        table,
        page_size,
        verified: expected.is_some(),
    })
}

/// Runs `PRAGMA integrity_check` on the restored file, then removes the
/// `-wal`/`-shm` files the check may have created.
fn integrity_check(path: &Path) -> Result<(), RestoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| RestoreError::Integrity {
        message: e.to_string(),
    })?;
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| RestoreError::Integrity {
            message: e.to_string(),
        })?;
    drop(conn);
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(sibling(path, suffix));
    }
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(RestoreError::Integrity {
            message: rows.join("; "),
        })
    }
}

#[cfg(test)]
mod tests;
