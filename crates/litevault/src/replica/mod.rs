//! The replica: LTX files in object storage, in Litestream v0.5's key layout.
//!
//! [`Replica`] is the one small domain type over `Arc<dyn ObjectStore>`: list
//! the files of a level, read a file, write a file, delete files. Everything
//! that talks to storage goes through it, so retries, request accounting and
//! the key layout live in one place.

pub mod faults;
pub mod lease;
mod url;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

pub use crate::body::{LtxBody, SpilledFile};
use crate::ltx::{self, Txid};
pub use url::{ReplicaLocation, S3Host, Scheme, parse_s3_host};

/// The highest level Litestream uses: level 9 holds snapshots.
pub const SNAPSHOT_LEVEL: u8 = 9;

/// Errors talking to a replica.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The replica URL cannot be used.
    #[error("bad replica URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong and how to write it.
        reason: String,
    },
    /// A storage request failed after all retries.
    #[error("{op} {key} on {replica} failed after {attempts} attempt(s): {source}")]
    Storage {
        /// The operation (PUT, GET, LIST, DELETE).
        op: &'static str,
        /// The object key or prefix.
        key: String,
        /// The replica URL.
        replica: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        #[source]
        source: Box<object_store::Error>,
    },
    /// An entry of a file:// replica is named like an LTX file but is not a
    /// regular file (a directory, a symbolic link, a FIFO, a device...).
    #[error(
        "{path} is named like an LTX file but is a {kind}, not a regular file: it may hide the replica's newest \
         state; litevault neither skips it nor follows it. Replace it with the real file or move it out of the replica"
    )]
    NotAFile {
        /// The entry.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// `LITEVAULT_FAULTS` (fault injection, a test facility) is set but
    /// cannot be used.
    #[error(transparent)]
    Faults(#[from] faults::FaultConfigError),
    /// A level-0 file already exists under the name with other content:
    /// the replica holds a history this writer does not know.
    #[error(
        "{key} on {replica} already exists with other content: the replica holds transactions this replicator did not see when it started (a listing that missed the newest files, or another writer); nothing was overwritten. The replicator lists the replica again and continues after its newest file; if this error repeats, another process is writing to the replica"
    )]
    FileConflict {
        /// The object key.
        key: String,
        /// The replica URL.
        replica: String,
    },
    /// Setting the timestamp of a file:// replica file failed.
    #[error("setting the modification time of {path}: {source}")]
    FileTime {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// One LTX file in the replica, as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LtxFileInfo {
    /// Compaction level: 0 for files shipped from the WAL, 9 for snapshots.
    pub level: u8,
    /// First TXID the file covers.
    pub min_txid: Txid,
    /// Last TXID the file covers.
    pub max_txid: Txid,
    /// Size in bytes.
    pub size: u64,
    /// When the file was written: the `litestream-timestamp` metadata where the
    /// store keeps it, else the object's modification time (file mtime for
    /// `file://`, which litevault and Litestream set to the LTX timestamp).
    pub created: DateTime<Utc>,
}

impl LtxFileInfo {
    /// `true` for a snapshot (a file that starts at TXID 1).
    pub fn is_snapshot(&self) -> bool {
        self.min_txid.0 == 1
    }
}

impl fmt::Display for LtxFileInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "L{}/{}",
            self.level,
            ltx::format_filename(self.min_txid, self.max_txid)
        )
    }
}

/// Request counters of one replica, shared by every clone of it.
#[derive(Debug, Default)]
pub struct RequestStats {
    /// PUT requests (including retries).
    pub puts: AtomicU64,
    /// GET requests (including ranged reads).
    pub gets: AtomicU64,
    /// LIST requests (one per listed prefix; pages are not counted apart).
    pub lists: AtomicU64,
    /// DELETE requests.
    pub deletes: AtomicU64,
    /// Bytes uploaded.
    pub bytes_out: AtomicU64,
    /// Bytes downloaded.
    pub bytes_in: AtomicU64,
    /// Failed attempts, retried or not.
    pub errors: AtomicU64,
}

/// A snapshot of [`RequestStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestCounts {
    /// PUT requests.
    pub puts: u64,
    /// GET requests.
    pub gets: u64,
    /// LIST requests.
    pub lists: u64,
    /// DELETE requests.
    pub deletes: u64,
    /// Bytes uploaded.
    pub bytes_out: u64,
    /// Bytes downloaded.
    pub bytes_in: u64,
    /// Failed attempts.
    pub errors: u64,
}

impl RequestStats {
    /// Reads the counters.
    pub fn counts(&self) -> RequestCounts {
        RequestCounts {
            puts: self.puts.load(Ordering::Relaxed),
            gets: self.gets.load(Ordering::Relaxed),
            lists: self.lists.load(Ordering::Relaxed),
            deletes: self.deletes.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Retry policy: capped exponential backoff.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub initial_backoff: Duration,
    /// The cap on the delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Static S3 credentials.
#[derive(Clone, Debug)]
pub struct S3Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// How object keys are formed for a backend, exactly as Litestream v0.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLayout {
    /// `<prefix>/ltx/<level>/<min>-<max>.ltx`, level in decimal: `file://`,
    /// GCS and Azure.
    Ltx,
    /// `<prefix>/<level as %04x>/<min>-<max>.ltx`: S3.
    S3,
}

impl KeyLayout {
    /// The folder of a level, relative to the replica prefix.
    pub fn level_dir(self, level: u8) -> String {
        match self {
            KeyLayout::Ltx => format!("ltx/{level}"),
            KeyLayout::S3 => format!("{level:04x}"),
        }
    }
}

/// An LTX replica: an object store, a prefix, a key layout.
#[derive(Clone)]
pub struct Replica {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    layout: KeyLayout,
    /// For `file://` replicas: the root directory, to set file times.
    local_root: Option<PathBuf>,
    /// Whether the store keeps object metadata (`litestream-timestamp`);
    /// turned off the first time a store says it cannot.
    metadata: Arc<std::sync::atomic::AtomicBool>,
    /// The metadata key of the LTX timestamp (Azure forbids hyphens).
    metadata_key: &'static str,
    display: String,
    retry: RetryPolicy,
    stats: Arc<RequestStats>,
    /// The store deletes many keys in one request, up to this many: S3
    /// `DeleteObjects` (1000 keys), Azure Blob Batch (256 keys).
    bulk_delete: Option<usize>,
    /// Level-0 files are written with `PutMode::Create`; turned off the
    /// first time a store says it cannot.
    create_l0: Arc<std::sync::atomic::AtomicBool>,
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("url", &self.display)
            .finish()
    }
}

impl fmt::Display for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// Looks an environment variable up under each name in turn.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn env_any(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

impl Replica {
    /// Opens the replica named by a URL.
    ///
    /// S3 credentials come from `LITEVAULT_ACCESS_KEY_ID` /
    /// `LITEVAULT_SECRET_ACCESS_KEY`, `LITESTREAM_ACCESS_KEY_ID` /
    /// `LITESTREAM_SECRET_ACCESS_KEY` or the usual `AWS_*` variables.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let url = format!("file://{}", dir.path().display());
    /// let replica = litevault::replica::Replica::open(&url).unwrap();
    /// assert!(replica.to_string().starts_with("file://"));
    /// ```
    pub fn open(raw: &str) -> Result<Replica, ReplicaError> {
        Replica::open_with_credentials(raw, None)
    }

    /// Opens a replica with explicit S3 credentials (taking precedence over
    /// the environment).
    pub fn open_with_credentials(
        raw: &str,
        creds: Option<&S3Credentials>,
    ) -> Result<Replica, ReplicaError> {
        Replica::open_inner(raw, creds, None, None)
    }

    /// Opens a Google Cloud Storage replica (`gs://bucket/path`) with an
    /// explicit service-account key (the JSON text of the key file), taking
    /// precedence over the environment. For an emulator the key may be
    /// `{"disable_oauth": true, "client_email": "", "private_key": ""}`
    /// with `?endpoint=http://127.0.0.1:PORT` in the URL: requests then
    /// carry no token and nothing asks the metadata server.
    pub fn open_with_gcs_service_account(
        raw: &str,
        service_account_json: &str,
    ) -> Result<Replica, ReplicaError> {
        Replica::open_inner(raw, None, None, Some(service_account_json))
    }

    /// Opens an Azure Blob Storage replica (`abs://account@container/path`)
    /// with an explicit account key (taking precedence over the environment).
    pub fn open_with_azure_key(raw: &str, account_key: &str) -> Result<Replica, ReplicaError> {
        Replica::open_inner(raw, None, Some(account_key), None)
    }

    fn open_inner(
        raw: &str,
        creds: Option<&S3Credentials>,
        azure_key: Option<&str>,
        gcs_key: Option<&str>,
    ) -> Result<Replica, ReplicaError> {
        let loc = ReplicaLocation::parse(raw)?;
        let bad = |reason: String| ReplicaError::BadUrl {
            url: raw.into(),
            reason,
        };
        let (store, prefix, local_root, metadata): (Arc<dyn ObjectStore>, String, _, bool) =
            match loc.scheme {
                Scheme::File => {
                    let root = PathBuf::from(&loc.path);
                    std::fs::create_dir_all(&root).map_err(|e| {
                        bad(format!(
                            "cannot create the directory {}: {e}",
                            root.display()
                        ))
                    })?;
                    let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)
                        .map_err(|e| bad(e.to_string()))?;
                    (Arc::new(fs), String::new(), Some(root), false)
                }
                Scheme::Memory => (
                    Arc::new(object_store::memory::InMemory::new()),
                    loc.path.clone(),
                    None,
                    true,
                ),
                Scheme::S3 => {
                    let s3 = s3_store(&loc, creds).map_err(bad)?;
                    (s3, loc.path.clone(), None, true)
                }
                Scheme::Gcs => {
                    let gcs = gcs_store(&loc, gcs_key).map_err(bad)?;
                    (gcs, loc.path.clone(), None, true)
                }
                Scheme::Azure => {
                    let az = azure_store(&loc, azure_key).map_err(bad)?;
                    (az, loc.path.clone(), None, true)
                }
            };
        let display = match loc.scheme {
            Scheme::File => format!("file://{}", loc.path),
            _ => raw.split('?').next().unwrap_or(raw).to_string(),
        };
        // A test facility: faults injected into every request when
        // LITEVAULT_FAULTS is set (logged loudly).
        let store = faults::wrap_from_env(store, &display)?;
        let layout = match loc.scheme {
            Scheme::S3 => KeyLayout::S3,
            _ => KeyLayout::Ltx,
        };
        let metadata_key = match loc.scheme {
            Scheme::Azure => "litestreamtimestamp",
            _ => "litestream-timestamp",
        };
        Ok(Replica {
            store,
            prefix,
            layout,
            metadata_key,
            local_root,
            metadata: Arc::new(std::sync::atomic::AtomicBool::new(metadata)),
            display,
            retry: RetryPolicy::default(),
            stats: Arc::new(RequestStats::default()),
            bulk_delete: match loc.scheme {
                Scheme::S3 => Some(1000),
                Scheme::Azure => Some(256),
                _ => None,
            },
            create_l0: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        })
    }

    /// Wraps any object store (for decorators such as fault injection).
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        layout: KeyLayout,
        display: &str,
    ) -> Replica {
        Replica {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            layout,
            metadata_key: "litestream-timestamp",
            local_root: None,
            metadata: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            display: display.to_string(),
            retry: RetryPolicy::default(),
            stats: Arc::new(RequestStats::default()),
            bulk_delete: None,
            create_l0: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Replica {
        self.retry = retry;
        self
    }

    /// The underlying store (shared).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The request counters.
    pub fn stats(&self) -> &Arc<RequestStats> {
        &self.stats
    }

    /// The key of a level's folder.
    pub fn level_prefix(&self, level: u8) -> String {
        join(&self.prefix, &self.layout.level_dir(level))
    }

    /// The key of an LTX file.
    pub fn file_key(&self, level: u8, min: Txid, max: Txid) -> String {
        join(&self.level_prefix(level), &ltx::format_filename(min, max))
    }

    async fn with_retry_op<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        counter: &AtomicU64,
        mut f: F,
    ) -> Result<T, ReplicaError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = object_store::Result<T>>,
    {
        let mut delay = self.retry.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            counter.fetch_add(1, Ordering::Relaxed);
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    let permanent = matches!(
                        e,
                        object_store::Error::NotFound { .. }
                            | object_store::Error::AlreadyExists { .. }
                            | object_store::Error::Precondition { .. }
                            | object_store::Error::NotSupported { .. }
                            | object_store::Error::NotImplemented { .. }
                            | object_store::Error::InvalidPath { .. }
                            | object_store::Error::PermissionDenied { .. }
                            | object_store::Error::Unauthenticated { .. }
                    );
                    if permanent || attempt >= self.retry.max_attempts {
                        return Err(ReplicaError::Storage {
                            op,
                            key: key.to_string(),
                            replica: self.display.clone(),
                            attempts: attempt,
                            source: Box::new(e),
                        });
                    }
                    tracing::warn!(op, key, attempt, error = %e, "storage request failed; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry.max_backoff);
                }
            }
        }
    }

    /// Lists the LTX files of one level, sorted by TXID range.
    pub async fn list_level(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let prefix = self.level_prefix(level);
        let path = ObjectPath::from(prefix.as_str());
        let metas: Vec<object_store::ObjectMeta> = self
            .with_retry_op("LIST", &prefix, &self.stats.lists, || {
                self.store.list(Some(&path)).try_collect()
            })
            .await?;
        let mut files: Vec<LtxFileInfo> = metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                let (min_txid, max_txid) = ltx::parse_filename_shape(name)?;
                // Only direct children of the level folder.
                let parent_ok = m
                    .location
                    .as_ref()
                    .strip_suffix(name)
                    .map(|p| p.trim_end_matches('/') == prefix.trim_end_matches('/'))
                    .unwrap_or(false);
                parent_ok.then_some(LtxFileInfo {
                    level,
                    min_txid,
                    max_txid,
                    size: m.size,
                    created: m.last_modified,
                })
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        self.check_local_entries(&prefix)?;
        Ok(files)
    }

    /// In a local folder, an entry named like an LTX file must be a regular
    /// file: the store's listing silently skips a directory or a dangling
    /// link and follows a link anywhere, so look at the folder itself.
    fn check_local_entries(&self, prefix: &str) -> Result<(), ReplicaError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let dir = root.join(prefix);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            // No folder: no files (the store's listing said so too).
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().and_then(ltx::parse_filename_shape).is_none() {
                continue;
            }
            // `file_type` does not follow symbolic links.
            match entry.file_type() {
                Ok(t) if t.is_file() => {}
                Ok(t) => {
                    return Err(ReplicaError::NotAFile {
                        path: entry.path(),
                        kind: file_kind(&t),
                    });
                }
                Err(_) => {
                    return Err(ReplicaError::NotAFile {
                        path: entry.path(),
                        kind: "file of unknown type",
                    });
                }
            }
        }
        Ok(())
    }

    /// Lists every level (0 to 9), lowest level first.
    pub async fn list_all(&self) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let levels =
            futures::future::try_join_all((0..=SNAPSHOT_LEVEL).map(|l| self.list_level(l))).await?;
        Ok(levels.into_iter().flatten().collect())
    }

    /// Downloads a whole file.
    pub async fn read_file(&self, info: &LtxFileInfo) -> Result<Bytes, ReplicaError> {
        let key = self.file_key(info.level, info.min_txid, info.max_txid);
        let path = ObjectPath::from(key.as_str());
        let bytes = self
            .with_retry_op("GET", &key, &self.stats.gets, || async {
                self.store.get(&path).await?.bytes().await
            })
            .await?;
        self.stats
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// In a local-folder replica, removes the staging files uploads leave
    /// when their process is killed mid-write (`NAME.ltx#N`: the store
    /// writes beside the final name, then renames). Call it only while
    /// holding the lease, so no upload of another process is in flight.
    /// Returns how many were removed.
    pub fn sweep_staging(&self) -> usize {
        let Some(root) = &self.local_root else {
            return 0;
        };
        let mut removed = 0;
        for level in 0..=SNAPSHOT_LEVEL {
            let dir = root.join(self.level_prefix(level));
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let staged =
                    name.to_str()
                        .and_then(|n| n.split_once('#'))
                        .is_some_and(|(ltx_name, n)| {
                            !n.is_empty()
                                && n.bytes().all(|b| b.is_ascii_digit())
                                && ltx::parse_filename_shape(ltx_name).is_some()
                        });
                let regular = entry.file_type().is_ok_and(|t| t.is_file());
                if staged && regular && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(replica = %self.display, removed, "removed staging files left by uploads that were cut short");
        }
        removed
    }

    /// For a local-folder replica, the path of a file on disk (read in place
    /// by a restore, without a copy). Counted as one GET.
    pub fn local_path(&self, info: &LtxFileInfo) -> Option<PathBuf> {
        let root = self.local_root.as_ref()?;
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_in.fetch_add(info.size, Ordering::Relaxed);
        Some(root.join(self.file_key(info.level, info.min_txid, info.max_txid)))
    }

    /// Opens a file for streaming download.
    pub async fn open_stream(
        &self,
        info: &LtxFileInfo,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, ReplicaError>>, ReplicaError>
    {
        let key = self.file_key(info.level, info.min_txid, info.max_txid);
        let path = ObjectPath::from(key.as_str());
        let res = self
            .with_retry_op("GET", &key, &self.stats.gets, || self.store.get(&path))
            .await?;
        let stats = self.stats.clone();
        let replica = self.display.clone();
        Ok(Box::pin(res.into_stream().map(move |r| match r {
            Ok(b) => {
                stats.bytes_in.fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(b)
            }
            Err(source) => Err(ReplicaError::Storage {
                op: "GET",
                key: key.clone(),
                replica: replica.clone(),
                attempts: 1,
                source: Box::new(source),
            }),
        })))
    }

    /// Downloads a byte range of a file (e.g. its header or trailer).
    pub async fn read_range(
        &self,
        info: &LtxFileInfo,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, ReplicaError> {
        let key = self.file_key(info.level, info.min_txid, info.max_txid);
        let path = ObjectPath::from(key.as_str());
        let bytes = self
            .with_retry_op("GET", &key, &self.stats.gets, || {
                self.store.get_range(&path, range.clone())
            })
            .await?;
        self.stats
            .bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    /// Uploads an LTX file under its final key. The upload is atomic: a
    /// failed or retried PUT never leaves a partial object under the name
    /// (object stores publish whole objects; the local backend writes a
    /// temporary file and renames it).
    ///
    /// A level-0 file is never overwritten (`PutMode::Create`): one that is
    /// already there with the same content (an earlier upload whose answer
    /// was lost) counts as written; one with other content is
    /// [`ReplicaError::FileConflict`], since replacing it would fork the
    /// replica's history. Stores without conditional creates overwrite.
    pub async fn write_file(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        data: Bytes,
        timestamp: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ReplicaError> {
        let key = self.file_key(level, min, max);
        let path = ObjectPath::from(key.as_str());
        let stamp = timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let size = data.len() as u64;
        let trailer = data.slice(data.len().saturating_sub(ltx::TRAILER_SIZE)..);
        let payload = PutPayload::from_bytes(data);
        let create = level == 0 && self.create_l0.load(Ordering::Relaxed);
        let put = |attributes: Attributes| {
            let payload = payload.clone();
            let path = path.clone();
            let key = &key;
            async move {
                self.with_retry_op("PUT", key, &self.stats.puts, || {
                    let attributes = attributes.clone();
                    let payload = payload.clone();
                    let path = path.clone();
                    async move {
                        let put = |mode| {
                            self.store.put_opts(
                                &path,
                                payload.clone(),
                                PutOptions {
                                    mode,
                                    attributes: attributes.clone(),
                                    ..Default::default()
                                },
                            )
                        };
                        if !create || !self.create_l0.load(Ordering::Relaxed) {
                            return put(PutMode::Overwrite).await;
                        }
                        match put(PutMode::Create).await {
                            Err(object_store::Error::NotImplemented { operation, .. })
                                if operation.contains("PutMode::Create") =>
                            {
                                self.create_l0.store(false, Ordering::Relaxed);
                                put(PutMode::Overwrite).await
                            }
                            other => other,
                        }
                    }
                })
                .await
                .map(|_| ())
            }
        };
        let mut round = 0;
        loop {
            round += 1;
            match self.with_timestamp_metadata(&stamp, put).await {
                Err(ReplicaError::Storage { source, .. })
                    if matches!(*source, object_store::Error::AlreadyExists { .. }) =>
                {
                    match self.existing_file(&key, size, &trailer).await? {
                        Existing::Same => break,
                        // The conflict was not real: nothing is there.
                        Existing::Missing if round < 3 => continue,
                        Existing::Missing | Existing::Other => {
                            return Err(ReplicaError::FileConflict {
                                key,
                                replica: self.display.clone(),
                            });
                        }
                    }
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        self.stats.bytes_out.fetch_add(size, Ordering::Relaxed);
        self.set_local_mtime(&key, timestamp)?;
        Ok(LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created: timestamp,
        })
    }

    /// Uploads an LTX body under its final key: small bodies in one PUT
    /// ([`write_file`](Self::write_file)), spilled ones as a multipart upload
    /// read from disk in 8 MiB parts (memory stays bounded). An upload that
    /// fails is aborted and retried whole; the object only appears when it
    /// completes.
    pub async fn write_body(
        &self,
        level: u8,
        min: Txid,
        max: Txid,
        body: &LtxBody,
        timestamp: DateTime<Utc>,
    ) -> Result<LtxFileInfo, ReplicaError> {
        let spilled = match body {
            LtxBody::Memory(b) => {
                return self.write_file(level, min, max, b.clone(), timestamp).await;
            }
            LtxBody::Spilled(f) => f.path(),
            LtxBody::File { path, .. } => path.as_path(),
        };
        let key = self.file_key(level, min, max);
        let path = ObjectPath::from(key.as_str());
        let stamp = timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // A multipart upload cannot be a conditional create: look first.
        // (One writer holds the lease, so nothing appears in between but
        // our own upload.)
        let info = LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size: body.len(),
            created: timestamp,
        };
        if level == 0
            && let Some(existing) = self.head_size(&key).await?
        {
            let trailer = read_tail(spilled, ltx::TRAILER_SIZE as u64)
                .await
                .map_err(|e| ReplicaError::Storage {
                    op: "PUT",
                    key: key.clone(),
                    replica: self.display.clone(),
                    attempts: 1,
                    source: Box::new(e),
                })?;
            if existing == body.len()
                && self.existing_file(&key, existing, &trailer).await? == Existing::Same
            {
                return Ok(info);
            }
            return Err(ReplicaError::FileConflict {
                key,
                replica: self.display.clone(),
            });
        }
        let upload = |attributes: Attributes| {
            let path = path.clone();
            let key = &key;
            async move {
                self.with_retry_op("PUT", key, &self.stats.puts, || {
                    let attributes = attributes.clone();
                    let path = path.clone();
                    async move {
                        let mut up = self
                            .store
                            .put_multipart_opts(
                                &path,
                                object_store::PutMultipartOptions {
                                    attributes,
                                    ..Default::default()
                                },
                            )
                            .await?;
                        match upload_parts(&mut up, spilled).await {
                            Ok(()) => up.complete().await.map(|_| ()),
                            Err(e) => {
                                let _ = up.abort().await;
                                Err(e)
                            }
                        }
                    }
                })
                .await
            }
        };
        self.with_timestamp_metadata(&stamp, upload).await?;
        self.stats
            .bytes_out
            .fetch_add(body.len(), Ordering::Relaxed);
        self.set_local_mtime(&key, timestamp)?;
        Ok(info)
    }

    /// The size of the object at `key`, `None` when there is none.
    async fn head_size(&self, key: &str) -> Result<Option<u64>, ReplicaError> {
        let path = ObjectPath::from(key);
        match self
            .with_retry_op("HEAD", key, &self.stats.gets, || self.store.head(&path))
            .await
        {
            Ok(m) => Ok(Some(m.size)),
            Err(ReplicaError::Storage { source, .. })
                if matches!(*source, object_store::Error::NotFound { .. }) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// What is at `key`, where we meant to create a level-0 file: ours
    /// (same size and trailer, which holds the CRC-64 of the whole file),
    /// another file, or nothing.
    async fn existing_file(
        &self,
        key: &str,
        size: u64,
        trailer: &[u8],
    ) -> Result<Existing, ReplicaError> {
        let path = ObjectPath::from(key);
        match self.head_size(key).await? {
            None => return Ok(Existing::Missing),
            Some(s) if s != size => return Ok(Existing::Other),
            Some(_) => {}
        }
        let range = size.saturating_sub(trailer.len() as u64)..size;
        let theirs = self
            .with_retry_op("GET", key, &self.stats.gets, || {
                self.store.get_range(&path, range.clone())
            })
            .await?;
        if theirs[..] != *trailer {
            return Ok(Existing::Other);
        }
        tracing::debug!(
            key,
            "the file was already written (an earlier answer was lost)"
        );
        Ok(Existing::Same)
    }

    /// Runs an upload with the LTX timestamp in the object's metadata. A
    /// store that keeps no metadata (a local folder behind a decorator) says
    /// so once, and from then on uploads go without it: the timestamp is in
    /// the LTX header anyway.
    async fn with_timestamp_metadata<F, Fut>(
        &self,
        stamp: &str,
        upload: F,
    ) -> Result<(), ReplicaError>
    where
        F: Fn(Attributes) -> Fut,
        Fut: std::future::Future<Output = Result<(), ReplicaError>>,
    {
        let attributes = |with: bool| {
            let mut a = Attributes::new();
            if with {
                a.insert(
                    Attribute::Metadata(self.metadata_key.into()),
                    stamp.to_string().into(),
                );
            }
            a
        };
        let with_metadata = self.metadata.load(Ordering::Relaxed);
        match upload(attributes(with_metadata)).await {
            Err(ReplicaError::Storage { source, .. })
                if with_metadata
                    && matches!(*source, object_store::Error::NotImplemented { .. }) =>
            {
                self.metadata.store(false, Ordering::Relaxed);
                upload(attributes(false)).await
            }
            other => other,
        }
    }

    fn set_local_mtime(&self, key: &str, timestamp: DateTime<Utc>) -> Result<(), ReplicaError> {
        if let Some(root) = &self.local_root {
            let file = root.join(key);
            let f = std::fs::File::options()
                .write(true)
                .open(&file)
                .map_err(|source| ReplicaError::FileTime {
                    path: file.clone(),
                    source,
                })?;
            f.set_modified(timestamp.into())
                .map_err(|source| ReplicaError::FileTime { path: file, source })?;
        }
        Ok(())
    }

    /// Deletes files (missing files are not an error). On S3 up to 1000
    /// files go in one request, on Azure up to 256 (Blob Batch); a key the
    /// bulk request could not delete is retried on its own.
    pub async fn delete_files(&self, files: &[LtxFileInfo]) -> Result<(), ReplicaError> {
        let mut left: Vec<&LtxFileInfo> = files.iter().collect();
        if let Some(batch) = self.bulk_delete
            && files.len() > 1
        {
            use futures::StreamExt;
            let keys: Vec<ObjectPath> = files
                .iter()
                .map(|f| ObjectPath::from(self.file_key(f.level, f.min_txid, f.max_txid)))
                .collect();
            self.stats
                .deletes
                .fetch_add(keys.len().div_ceil(batch) as u64, Ordering::Relaxed);
            let stream = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
            let results: Vec<_> = self.store.delete_stream(stream).collect().await;
            let deleted: std::collections::HashSet<String> = results
                .into_iter()
                .filter_map(|r| r.ok().map(|p| p.to_string()))
                .collect();
            left.retain(|f| !deleted.contains(&self.file_key(f.level, f.min_txid, f.max_txid)));
        }
        for f in left {
            let key = self.file_key(f.level, f.min_txid, f.max_txid);
            let path = ObjectPath::from(key.as_str());
            match self
                .with_retry_op("DELETE", &key, &self.stats.deletes, || {
                    self.store.delete(&path)
                })
                .await
            {
                Ok(()) => {}
                Err(ReplicaError::Storage { source, .. })
                    if matches!(*source, object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// What a level-0 key held when we meant to create it.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    /// The same file (our own earlier upload).
    Same,
    /// Another file.
    Other,
    /// Nothing.
    Missing,
}

/// The last `n` bytes of a local file.
async fn read_tail(path: &std::path::Path, n: u64) -> object_store::Result<Bytes> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let io = |e: std::io::Error| object_store::Error::Generic {
        store: "local spill file",
        source: Box::new(e),
    };
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    let len = f.metadata().await.map_err(io)?.len();
    f.seek(std::io::SeekFrom::Start(len.saturating_sub(n)))
        .await
        .map_err(io)?;
    let mut buf = Vec::with_capacity(n as usize);
    f.read_to_end(&mut buf).await.map_err(io)?;
    Ok(Bytes::from(buf))
}

/// Sends a file's bytes as the parts of a multipart upload, 16 MiB each.
async fn upload_parts(
    up: &mut Box<dyn object_store::MultipartUpload>,
    path: &std::path::Path,
) -> object_store::Result<()> {
    use tokio::io::AsyncReadExt;
    const PART: usize = 8 << 20;
    let io = |e: std::io::Error| object_store::Error::Generic {
        store: "local spill file",
        source: Box::new(e),
    };
    let mut f = tokio::fs::File::open(path).await.map_err(io)?;
    loop {
        let mut buf = vec![0u8; PART];
        let mut n = 0;
        while n < PART {
            let r = f.read(&mut buf[n..]).await.map_err(io)?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        up.put_part(PutPayload::from(buf)).await?;
        if n < PART {
            return Ok(());
        }
    }
}

/// Whether an endpoint is on this machine (an emulator): such an endpoint
/// never gets credentials from a cloud metadata service.
#[cfg(any(feature = "gcs", feature = "azure"))]
fn is_loopback_endpoint(endpoint: &str) -> bool {
    ::url::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
}

/// Our own retry loop retries every request; the client's would multiply it.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn no_client_retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    }
}

/// The S3 client of an `s3://` location. Credentials, in order: the
/// caller's, `LITEVAULT_*`, `LITESTREAM_*` or `AWS_*` access keys, and else
/// what `object_store` finds (instance or container credentials).
#[cfg(feature = "s3")]
fn s3_store(
    loc: &ReplicaLocation,
    creds: Option<&S3Credentials>,
) -> Result<Arc<dyn ObjectStore>, String> {
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&loc.bucket)
        // Like Litestream, a custom endpoint implies path-style addressing.
        .with_virtual_hosted_style_request(!(loc.force_path_style || loc.endpoint.is_some()));
    if let Some(k) = env_any(&[
        "LITEVAULT_ACCESS_KEY_ID",
        "LITESTREAM_ACCESS_KEY_ID",
        "AWS_ACCESS_KEY_ID",
    ]) {
        b = b.with_access_key_id(k);
    }
    if let Some(k) = env_any(&[
        "LITEVAULT_SECRET_ACCESS_KEY",
        "LITESTREAM_SECRET_ACCESS_KEY",
        "AWS_SECRET_ACCESS_KEY",
    ]) {
        b = b.with_secret_access_key(k);
    }
    if let Some(c) = creds {
        b = b
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key);
    } else if let Some(t) = env_any(&["AWS_SESSION_TOKEN"]) {
        b = b.with_token(t);
    }
    let region = loc
        .region
        .clone()
        .or_else(|| env_any(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
        .unwrap_or_else(|| "us-east-1".into());
    b = b.with_region(region);
    if let Some(ep) = loc
        .endpoint
        .clone()
        .or_else(|| env_any(&["AWS_ENDPOINT_URL"]))
    {
        let ep = if ep.contains("://") {
            ep
        } else {
            format!("https://{ep}")
        };
        b = b
            .with_allow_http(ep.starts_with("http://"))
            .with_endpoint(ep);
    }
    if loc.skip_verify {
        b = b.with_client_options(
            object_store::ClientOptions::new().with_allow_invalid_certificates(true),
        );
    }
    b = b.with_retry(no_client_retries());
    let s3 = b.build().map_err(|e| format!("S3 client: {e}"))?;
    Ok(Arc::new(s3))
}

#[cfg(not(feature = "s3"))]
fn s3_store(
    _loc: &ReplicaLocation,
    _creds: Option<&S3Credentials>,
) -> Result<Arc<dyn ObjectStore>, String> {
    Err(missing_backend("s3", "s3"))
}

#[cfg(not(feature = "gcs"))]
fn gcs_store(_loc: &ReplicaLocation, _key: Option<&str>) -> Result<Arc<dyn ObjectStore>, String> {
    Err(missing_backend("gs", "gcs"))
}

#[cfg(not(feature = "azure"))]
fn azure_store(_loc: &ReplicaLocation, _key: Option<&str>) -> Result<Arc<dyn ObjectStore>, String> {
    Err(missing_backend("abs", "azure"))
}

/// The error for a scheme whose backend this build left out.
#[cfg(not(all(feature = "s3", feature = "gcs", feature = "azure")))]
fn missing_backend(scheme: &str, feature: &str) -> String {
    format!(
        "this build of litevault has no {scheme}:// support: enable the crate feature `{feature}` \
         (litevault = {{ features = [\"{feature}\"] }})"
    )
}

/// The GCS client of a `gs://` location. Credentials, in order: an explicit
/// service-account key, `GOOGLE_SERVICE_ACCOUNT` / `_PATH` / `_KEY` (read
/// by `object_store`), `GOOGLE_APPLICATION_CREDENTIALS`, and else the
/// metadata server (Cloud Run, GCE, GKE). An `endpoint` on 127.0.0.1 or
/// localhost (an emulator) needs explicit credentials, so that a test or
/// dev setup never waits on a metadata server that is not there.
#[cfg(feature = "gcs")]
fn gcs_store(loc: &ReplicaLocation, key: Option<&str>) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    // An explicit key replaces the environment's service account (the
    // builder refuses a path and a key together).
    let mut b = match key {
        Some(k) => GoogleCloudStorageBuilder::new().with_service_account_key(k),
        None => GoogleCloudStorageBuilder::from_env(),
    }
    .with_bucket_name(&loc.bucket)
    .with_retry(no_client_retries());
    let service_account = [
        GoogleConfigKey::ServiceAccount,
        GoogleConfigKey::ServiceAccountKey,
    ]
    .iter()
    .any(|k| b.get_config_value(k).is_some());
    let mut application = false;
    if key.is_none()
        && !service_account
        && let Some(p) = env_any(&["GOOGLE_APPLICATION_CREDENTIALS"])
    {
        b = b.with_application_credentials(p);
        application = true;
    }
    if let Some(ep) = &loc.endpoint {
        if is_loopback_endpoint(ep) && key.is_none() && !service_account && !application {
            return Err(format!(
                "endpoint {ep} is on this machine (an emulator) but no GCS credentials are given, so the client would ask the cloud metadata server for a token; set GOOGLE_SERVICE_ACCOUNT_PATH to a service-account JSON file (for an emulator: {{\"disable_oauth\": true, \"client_email\": \"\", \"private_key\": \"\"}})"
            ));
        }
        b = b.with_base_url(ep).with_client_options(
            object_store::ClientOptions::new().with_allow_http(ep.starts_with("http://")),
        );
    }
    let gcs = b.build().map_err(|e| format!("GCS client: {e}"))?;
    Ok(Arc::new(gcs))
}

/// The Azure Blob Storage client of an `abs://` location. The account comes
/// from the URL (`abs://ACCOUNT@container/path` or `?account=`) or
/// `LITESTREAM_AZURE_ACCOUNT_NAME` / `AZURE_STORAGE_ACCOUNT_NAME`; the key
/// from the caller, `LITESTREAM_AZURE_ACCOUNT_KEY` or
/// `AZURE_STORAGE_ACCOUNT_KEY`; without a key, SAS or token, the managed
/// identity of the host (Azure IMDS). An `endpoint` on this machine (Azurite)
/// needs an explicit key, SAS or token.
#[cfg(feature = "azure")]
fn azure_store(loc: &ReplicaLocation, key: Option<&str>) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    let mut b = MicrosoftAzureBuilder::from_env()
        .with_container_name(&loc.bucket)
        .with_retry(no_client_retries());
    if let Some(a) = loc
        .account
        .clone()
        .or_else(|| env_any(&["LITESTREAM_AZURE_ACCOUNT_NAME"]))
    {
        b = b.with_account(a);
    }
    let emulator = b
        .get_config_value(&AzureConfigKey::UseEmulator)
        .is_some_and(|v| v == "true");
    if b.get_config_value(&AzureConfigKey::AccountName).is_none() && !emulator {
        return Err("no storage account: write abs://ACCOUNT@container/path (or ?account=ACCOUNT), or set LITESTREAM_AZURE_ACCOUNT_NAME".into());
    }
    if let Some(k) = key
        .map(str::to_string)
        .or_else(|| env_any(&["LITESTREAM_AZURE_ACCOUNT_KEY"]))
    {
        b = b.with_access_key(k);
    }
    if let Some(ep) = &loc.endpoint {
        let explicit = [
            AzureConfigKey::AccessKey,
            AzureConfigKey::SasKey,
            AzureConfigKey::Token,
        ]
        .iter()
        .any(|k| b.get_config_value(k).is_some_and(|v| !v.is_empty()));
        if is_loopback_endpoint(ep) && !explicit {
            return Err(format!(
                "endpoint {ep} is on this machine (Azurite) but no account key is given, so the client would ask the Azure metadata service (IMDS) for a token; set LITESTREAM_AZURE_ACCOUNT_KEY (Azurite's well-known key for devstoreaccount1)"
            ));
        }
        b = b
            .with_endpoint(ep.clone())
            .with_allow_http(ep.starts_with("http://"));
    }
    let az = b.build().map_err(|e| format!("Azure client: {e}"))?;
    Ok(Arc::new(az))
}

/// What a non-regular directory entry is, in words.
pub(crate) fn file_kind(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_fifo() {
        "FIFO (named pipe)"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else if t.is_file() {
        "regular file"
    } else {
        "file of unknown type"
    }
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout_matches_litestream() {
        let mem = || Arc::new(object_store::memory::InMemory::new());
        let r = Replica::from_store(mem(), "db/app", KeyLayout::Ltx, "mem");
        assert_eq!(
            r.file_key(0, Txid(1), Txid(0x1e)),
            "db/app/ltx/0/0000000000000001-000000000000001e.ltx"
        );
        assert_eq!(r.level_prefix(9), "db/app/ltx/9");
        let r = Replica::from_store(mem(), "", KeyLayout::Ltx, "mem");
        assert_eq!(r.level_prefix(1), "ltx/1");
        let r = Replica::from_store(mem(), "backups/app", KeyLayout::S3, "mem");
        assert_eq!(
            r.file_key(9, Txid(1), Txid(1)),
            "backups/app/0009/0000000000000001-0000000000000001.ltx"
        );
        assert_eq!(r.level_prefix(10), "backups/app/000a");
    }

    #[tokio::test]
    async fn write_list_read_delete() {
        let r = Replica::open("memory:///x").unwrap();
        let ts = Utc::now();
        r.write_file(0, Txid(2), Txid(2), Bytes::from_static(b"b"), ts)
            .await
            .unwrap();
        r.write_file(0, Txid(1), Txid(1), Bytes::from_static(b"a"), ts)
            .await
            .unwrap();
        r.write_file(9, Txid(1), Txid(2), Bytes::from_static(b"s"), ts)
            .await
            .unwrap();
        let l0 = r.list_level(0).await.unwrap();
        assert_eq!(
            l0.iter().map(|f| f.min_txid.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(r.list_all().await.unwrap().len(), 3);
        assert_eq!(&r.read_file(&l0[1]).await.unwrap()[..], b"b");
        r.delete_files(&l0).await.unwrap();
        assert!(r.list_level(0).await.unwrap().is_empty());
        let c = r.stats().counts();
        assert_eq!(c.puts, 3);
        assert_eq!(c.deletes, 2);
    }

    #[tokio::test]
    async fn file_replica_sets_mtime_to_timestamp() {
        let dir = tempfile::tempdir().unwrap();
        let r = Replica::open(&format!("file://{}", dir.path().display())).unwrap();
        let ts: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        r.write_file(0, Txid(1), Txid(1), Bytes::from_static(b"x"), ts)
            .await
            .unwrap();
        let l = r.list_level(0).await.unwrap();
        assert_eq!(l[0].created, ts);
        assert!(
            dir.path()
                .join("ltx/0/0000000000000001-0000000000000001.ltx")
                .exists()
        );
    }
}
