//! Restore: rebuild a database from a replica, verified, atomically.
//!
//! 1. **Plan** ([`plan`]): the fewest contiguous files, across levels, that
//!    reach the target TXID.
//! 2. **Fetch** them concurrently (small files in memory, large ones streamed
//!    to a staging folder beside the output).
//! 3. **Merge**: one k-way pass over the files' page streams (pages inside an
//!    LTX file are sorted); the newest version of each page wins and pages past
//!    a later commit size are dropped; each page is written once, to
//!    `OUT.tmp`.
//! 4. **Verify**: every file's own checksum, every link of the chain
//!    (pre-apply of a file = post-apply of the one before), the checksum of the
//!    result against the last file's post-apply checksum, and
//!    `PRAGMA integrity_check`.
//! 5. **Publish**: fsync, rename `OUT.tmp` to `OUT`, fsync the folder.
//!
//! On any failure the output path is left as it was and the error names the
//! file and TXID at fault.

pub mod dbpage;
pub mod follow;
pub mod plan;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::db::{SavedPosition, StateDir, WalPosition};
use crate::ltx::{self, Checksum, DbChecksum, Txid};
use crate::replica::{LtxFileInfo, Replica, ReplicaError};

/// What to restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The latest state in the replica.
    Latest,
    /// The state right after this TXID.
    Txid(Txid),
    /// The latest state committed at or before this time.
    Timestamp(DateTime<Utc>),
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
    /// Show a progress bar (when stderr is a terminal).
    pub progress: bool,
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
            progress: false,
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
}

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
        "the files up to {file} (TXID {txid}) never write page {pgno}; the replica is missing data"
    )]
    MissingPage {
        /// The last file.
        file: String,
        /// Its TXID.
        txid: Txid,
        /// The page.
        pgno: u32,
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

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RestoreError + '_ {
    move |source| RestoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad_file(f: &LtxFileInfo) -> impl Fn(ltx::LtxError) -> RestoreError + '_ {
    move |source| RestoreError::BadFile {
        file: f.to_string(),
        min: f.min_txid,
        max: f.max_txid,
        source,
    }
}

/// Files larger than this are streamed to disk instead of kept in memory.
const IN_MEMORY_LIMIT: u64 = 4 << 20;

/// Resolves a target to the files that rebuild it.
pub async fn plan_restore(
    replica: &Replica,
    files: &[LtxFileInfo],
    target: RestoreTarget,
) -> Result<Vec<LtxFileInfo>, RestoreError> {
    let latest = files.iter().map(|f| f.max_txid).max().unwrap_or(Txid(0));
    let no_point = |target: String, reason: String| RestoreError::NoRestorePoint {
        target,
        replica: replica.to_string(),
        reason,
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
                        "every file in the replica is newer than that time".into(),
                    )
                })?,
        };
    plan::plan_chain(files, Txid(0), to).ok_or_else(|| {
        let reason = match plan::first_gap(files, Txid(0), to) {
            Some(gap) => format!(
                "no file covers TXID {gap}: the file holding it is missing, so no chain of files reaches {to}"
            ),
            None => "no contiguous chain of files from TXID 1".into(),
        };
        no_point(format!("TXID {to}"), reason)
    })
}

/// The largest TXID whose LTX timestamp is at or before `ts`: a binary search
/// over the end points, reading one header per probe.
async fn resolve_timestamp(
    replica: &Replica,
    files: &[LtxFileInfo],
    ts: DateTime<Utc>,
) -> Result<Option<Txid>, RestoreError> {
    let mut ends: Vec<&LtxFileInfo> = Vec::new();
    // Only states a chain of files reaches are restore points: after
    // retention, a file can end where no chain from TXID 1 arrives.
    let reach = crate::replicate::retention::reachable(&files.iter().collect::<Vec<_>>());
    let mut sorted: Vec<&LtxFileInfo> = files
        .iter()
        .filter(|f| reach.contains(&f.max_txid.0))
        .collect();
    sorted.sort_by_key(|f| (f.max_txid, f.level));
    for f in sorted {
        if ends.last().is_none_or(|l| l.max_txid != f.max_txid) {
            ends.push(f);
        }
    }
    let target = ts.timestamp_millis();
    let (mut lo, mut hi) = (0usize, ends.len());
    // Invariant: ends[..lo] are at or before ts, ends[hi..] after it.
    while lo < hi {
        let mid = (lo + hi) / 2;
        let f = ends[mid];
        let raw = replica.read_range(f, 0..ltx::HEADER_SIZE as u64).await?;
        let h = ltx::Header::decode(&raw).map_err(bad_file(f))?;
        if h.timestamp_ms <= target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo.checked_sub(1).map(|i| ends[i].max_txid))
}

enum Fetched {
    Memory(bytes::Bytes),
    Disk(PathBuf),
}

impl Fetched {
    fn reader(&self) -> std::io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Fetched::Memory(b) => Box::new(std::io::Cursor::new(b.clone())),
            Fetched::Disk(p) => Box::new(BufReader::with_capacity(1 << 20, File::open(p)?)),
        })
    }
}

async fn fetch(
    replica: &Replica,
    f: &LtxFileInfo,
    staging: &Path,
) -> Result<Fetched, RestoreError> {
    if let Some(path) = replica.local_path(f) {
        if !path.exists() {
            // Let the store report it, as for any other backend.
            return Ok(Fetched::Memory(replica.read_file(f).await?));
        }
        return Ok(Fetched::Disk(path));
    }
    if f.size <= IN_MEMORY_LIMIT {
        return Ok(Fetched::Memory(replica.read_file(f).await?));
    }
    let path = staging.join(ltx::format_filename(f.min_txid, f.max_txid));
    let mut out = tokio::fs::File::create(&path)
        .await
        .map_err(io_err(&path))?;
    let mut stream = replica.open_stream(f).await?;
    while let Some(chunk) = stream.try_next().await? {
        tokio::io::AsyncWriteExt::write_all(&mut out, &chunk)
            .await
            .map_err(io_err(&path))?;
    }
    tokio::io::AsyncWriteExt::flush(&mut out)
        .await
        .map_err(io_err(&path))?;
    Ok(Fetched::Disk(path))
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
    let files = replica.list_all().await?;
    if files.is_empty() {
        if opts.if_replica_exists {
            return Ok(RestoreOutcome::SkippedNoReplica);
        }
        return Err(RestoreError::EmptyReplica {
            replica: replica.to_string(),
        });
    }
    let chain = plan_restore(replica, &files, opts.target).await?;
    let tmp = sibling(output, ".tmp");
    let staging = sibling(output, ".tmp-ltx");
    let result = restore_chain(replica, &chain, output, &tmp, &staging, opts, started).await;
    let _ = std::fs::remove_dir_all(&staging);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(sibling(&tmp, suffix));
        }
    }
    result.map(RestoreOutcome::Restored)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
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
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    std::fs::create_dir_all(staging).map_err(io_err(staging))?;
    let total: u64 = chain.iter().map(|f| f.size).sum();
    let bar = progress_bar(opts.progress, total);
    let fetched: Vec<Fetched> = futures::stream::iter(chain.iter())
        .map(|f| {
            let bar = bar.clone();
            async move {
                let r = fetch(replica, f, staging).await;
                if let Some(b) = &bar {
                    b.inc(f.size);
                }
                r
            }
        })
        .buffered(opts.concurrency.max(1))
        .try_collect()
        .await?;
    tracing::debug!(elapsed = ?started.elapsed(), "fetched");
    if let Some(b) = &bar {
        b.set_message("applying");
    }
    let chain_owned = chain.to_vec();
    let tmp_owned = tmp.to_path_buf();
    let merged = tokio::task::spawn_blocking(move || merge_into(&chain_owned, fetched, &tmp_owned))
        .await
        .map_err(|e| RestoreError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        })??;
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
    let checked = tokio::task::spawn_blocking(move || integrity_check(&tmp_owned)).await;
    let synced = synced.join().map_err(|_| RestoreError::Io {
        path: tmp.to_path_buf(),
        source: std::io::Error::other("the fsync thread panicked"),
    })?;
    checked.map_err(|e| RestoreError::Io {
        path: PathBuf::new(),
        source: std::io::Error::other(e.to_string()),
    })??;
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
    let last = chain.last().expect("chain is not empty");
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
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok(RestoreReport {
        txid: last.max_txid,
        files: chain.iter().map(|f| f.to_string()).collect(),
        bytes: chain.iter().map(|f| f.size).sum(),
        pages: merged.table.len() as u32,
        page_size: merged.page_size,
        checksum: merged.table.value(),
        checksum_verified: merged.verified,
        millis: started.elapsed().as_millis() as u64,
    })
}

fn progress_bar(enabled: bool, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message("fetching");
    Some(bar)
}

pub(crate) struct Merged {
    pub(crate) table: DbChecksum,
    pub(crate) page_size: u32,
    pub(crate) verified: bool,
}

/// Merges the chain's pages into `out` (created), verifying as it goes.
fn merge_into(
    chain: &[LtxFileInfo],
    fetched: Vec<Fetched>,
    out: &Path,
) -> Result<Merged, RestoreError> {
    let mut decoders = Vec::with_capacity(chain.len());
    for (f, data) in chain.iter().zip(&fetched) {
        let reader = data.reader().map_err(io_err(out))?;
        decoders.push(ltx::Decoder::new(reader).map_err(bad_file(f))?);
    }
    let headers: Vec<ltx::Header> = decoders.iter().map(|d| *d.header()).collect();
    let page_size = headers[0].page_size;
    for (f, h) in chain.iter().zip(&headers) {
        if h.page_size != page_size {
            return Err(RestoreError::PageSizeMismatch {
                file: f.to_string(),
                found: h.page_size,
                expected: page_size,
            });
        }
        if h.min_txid != f.min_txid || h.max_txid != f.max_txid {
            return Err(bad_file(f)(ltx::LtxError::InvalidHeader {
                reason: format!(
                    "header says TXID {}-{}, the file name says {}-{}",
                    h.min_txid, h.max_txid, f.min_txid, f.max_txid
                ),
            }));
        }
    }
    let commit = headers.last().expect("chain is not empty").commit;
    let file = File::create(out).map_err(io_err(out))?;
    // The merge runs here; page checksums and writes run on a second thread,
    // fed batches of consecutive pages.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u32, Vec<u8>)>(4);
    let writer_file = file.try_clone().map_err(io_err(out))?;
    let out_path = out.to_path_buf();
    let writer = std::thread::spawn(move || -> Result<DbChecksum, RestoreError> {
        let mut table = DbChecksum::new();
        table.set_len(commit);
        let ps = page_size as usize;
        for (start, batch) in rx {
            for (i, page) in batch.chunks_exact(ps).enumerate() {
                table.apply_page(start + i as u32, page);
            }
            writer_file
                .write_all_at(&batch, (start as u64 - 1) * page_size as u64)
                .map_err(io_err(&out_path))?;
        }
        Ok(table)
    });
    let batch_bytes = (2usize << 20).max(page_size as usize);
    let mut batch: Vec<u8> = Vec::with_capacity(batch_bytes);
    let mut batch_start = 0u32;
    let mut batch_next = 0u32;
    let mut merge = || -> Result<(), RestoreError> {
        merge_pages(chain, &headers, &mut decoders, |pgno, page| {
            if !batch.is_empty() && (pgno != batch_next || batch.len() >= batch_bytes) {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_bytes));
                if tx.send((batch_start, full)).is_err() {
                    // The writer failed; its error is reported below.
                    return Ok::<_, RestoreError>(ControlFlow::Break(()));
                }
            }
            if batch.is_empty() {
                batch_start = pgno;
            }
            batch.extend_from_slice(page);
            batch_next = pgno + 1;
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
    let table = written?;
    file.set_len(commit as u64 * page_size as u64)
        .map_err(io_err(out))?;
    // Every file's own checksum (the decoder checks it at the end).
    let mut trailers = Vec::with_capacity(decoders.len());
    for (i, d) in decoders.into_iter().enumerate() {
        trailers.push(d.finish().map_err(bad_file(&chain[i]))?);
    }
    let last = chain.last().expect("chain is not empty");
    let lock = ltx::lock_pgno(page_size);
    if let Some(pgno) = table.missing().find(|p| *p != lock) {
        return Err(RestoreError::MissingPage {
            file: last.to_string(),
            txid: last.max_txid,
            pgno,
        });
    }
    // Chain links and the result, where the files carry checksums (in the
    // standard fields or, Litestream-compatible, in the reserved bytes).
    let sums: Vec<Option<(Checksum, Checksum)>> = headers
        .iter()
        .zip(&trailers)
        .map(|(h, t)| ltx::rolling_checksums(h, t))
        .collect();
    for i in 1..sums.len() {
        if let (Some((_, prev_post)), Some((pre, _))) = (sums[i - 1], sums[i])
            && pre != prev_post
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
    // The result is proven when the last file records the checksum it must have.
    let verified = matches!(sums.last(), Some(Some(_)));
    if let Some(Some((_, expected))) = sums.last() {
        let actual = table.value();
        if *expected != actual {
            return Err(RestoreError::ChecksumMismatch {
                file: last.to_string(),
                txid: last.max_txid,
                what: "checksum of the restored database vs the file's post-apply checksum",
                expected: *expected,
                actual,
            });
        }
    }
    Ok(Merged {
        table,
        page_size,
        verified,
    })
}

/// Merges a chain's pages in page order and hands each page to `sink` once:
/// the newest file holding a page wins, and a page past the size a later
/// file committed is dropped. `sink` may stop the merge early.
pub(crate) fn merge_pages<R: Read, E: From<RestoreError>>(
    chain: &[LtxFileInfo],
    headers: &[ltx::Header],
    decoders: &mut [ltx::Decoder<R>],
    mut sink: impl FnMut(u32, &[u8]) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let page_size = headers[0].page_size as usize;
    // A page of file i survives only if no later file shrank the database
    // below it.
    let mut limit = vec![0u32; headers.len()];
    let mut m = u32::MAX;
    for i in (0..headers.len()).rev() {
        m = m.min(headers[i].commit);
        limit[i] = m;
    }
    let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); decoders.len()];
    // A min-heap of (page number, input index) over the inputs' next pages.
    let mut heap: BinaryHeap<Reverse<(u32, usize)>> = BinaryHeap::with_capacity(decoders.len());
    for (i, d) in decoders.iter_mut().enumerate() {
        if let Some(p) = next_valid(d, &mut bufs[i], limit[i]).map_err(bad_file(&chain[i]))? {
            heap.push(Reverse((p, i)));
        }
    }
    let mut holders: Vec<usize> = Vec::new();
    while let Some(Reverse((pgno, first))) = heap.pop() {
        holders.clear();
        holders.push(first);
        while let Some(Reverse((p, i))) = heap.peek().copied() {
            if p != pgno {
                break;
            }
            heap.pop();
            holders.push(i);
        }
        // The newest input holding this page wins.
        let winner = *holders.iter().max().expect("at least one holder");
        if bufs[winner].len() != page_size {
            return Err(bad_file(&chain[winner])(ltx::LtxError::InvalidHeader {
                reason: format!("page {pgno} has {} bytes", bufs[winner].len()),
            })
            .into());
        }
        if sink(pgno, &bufs[winner])?.is_break() {
            return Ok(());
        }
        for &i in &holders {
            if let Some(p) =
                next_valid(&mut decoders[i], &mut bufs[i], limit[i]).map_err(bad_file(&chain[i]))?
            {
                heap.push(Reverse((p, i)));
            }
        }
    }
    Ok(())
}

/// The next page of a decoder at or below `limit`, skipping the rest.
fn next_valid<R: Read>(
    d: &mut ltx::Decoder<R>,
    buf: &mut Vec<u8>,
    limit: u32,
) -> Result<Option<u32>, ltx::LtxError> {
    while let Some(pgno) = d.next_page(buf)? {
        if pgno <= limit {
            return Ok(Some(pgno));
        }
    }
    Ok(None)
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
