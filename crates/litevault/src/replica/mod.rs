//! The replica: LTX files in object storage, in Litestream v0.5's key layout.
//!
//! [`Replica`] is the one small domain type over `Arc<dyn ObjectStore>`: list
//! the files of a level, read a file, write a file, delete files. Everything
//! that talks to storage goes through it, so retries, request accounting and
//! the key layout live in one place.
//!
//! Files: `mod.rs` (the type, opening, reading), `list.rs` (listing), `write.rs`
//! (uploads, conditional level-0 creates, deletes), `stores.rs` (the client
//! of each cloud scheme), `url.rs` (the URL grammar), `lease.rs` (one writer
//! per replica), `faults.rs` (fault injection for tests and the soak).

pub mod faults;
pub mod keeper;
pub mod lease;
mod list;
mod stores;
mod url;
mod write;

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
use stores::*;
pub use url::{
    ReplicaLocation, S3Host, Scheme, ServerSideEncryption, check_sse_customer_key,
    check_storage_class, parse_s3_host,
};

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

/// The folder of a Litestream v0.3 backup, relative to the replica's prefix.
pub const V03_ROOT: &str = "generations";

/// One object of a Litestream v0.3 backup, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V03Object {
    /// Its key relative to the replica's prefix (`generations/...`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Its modification time (file mtime, or the object's last-modified
    /// time): Litestream v0.3 reads it as the time the object was written.
    pub modified: DateTime<Utc>,
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
    /// S3: the storage class of the LTX files written.
    storage_class: Option<String>,
    /// The keeper whose renewals extend this replica's lease.
    keeper: Option<keeper::Keeper>,
    /// Whether [`Replica::list_all`] lists level by level: set the first
    /// time the replica's folder turns out to hold other objects.
    list_per_level: Arc<std::sync::atomic::AtomicBool>,
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

    /// Opens an S3 replica with explicit credentials and an SSE-C key (the
    /// base64 of 32 bytes; a secret kept out of the URL), each taking
    /// precedence over the URL and the environment.
    pub fn open_s3(
        raw: &str,
        creds: Option<&S3Credentials>,
        sse_customer_key: Option<&crate::redact::Secret>,
    ) -> Result<Replica, ReplicaError> {
        Replica::open_inner_with(raw, creds, None, None, sse_customer_key)
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
        Replica::open_inner_with(raw, creds, azure_key, gcs_key, None)
    }

    fn open_inner_with(
        raw: &str,
        creds: Option<&S3Credentials>,
        azure_key: Option<&str>,
        gcs_key: Option<&str>,
        sse_customer_key: Option<&crate::redact::Secret>,
    ) -> Result<Replica, ReplicaError> {
        let mut loc = ReplicaLocation::parse(raw)?;
        let shown = crate::redact::redact_query(raw);
        let raw = shown.as_str();
        let bad = |reason: String| ReplicaError::BadUrl {
            url: raw.into(),
            reason,
        };
        if let Some(key) = sse_customer_key {
            if matches!(loc.sse, Some(url::ServerSideEncryption::Kms { .. })) {
                return Err(bad(
                    "the URL sets sse-kms-key-id and an SSE-C key is given too: an object is encrypted one way; keep one".into(),
                ));
            }
            let key = url::check_sse_customer_key(key.expose(), None).map_err(bad)?;
            loc.sse = Some(url::ServerSideEncryption::Customer { key });
        }
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
                Scheme::S3 | Scheme::Gcs | Scheme::Azure => {
                    let key = client_key(&loc, creds, azure_key, gcs_key);
                    let store = shared_client(key, || match loc.scheme {
                        Scheme::S3 => s3_store(&loc, creds),
                        Scheme::Gcs => gcs_store(&loc, gcs_key),
                        _ => azure_store(&loc, azure_key),
                    })
                    .map_err(bad)?;
                    (store, loc.path.clone(), None, true)
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
            storage_class: loc.storage_class.clone(),
            keeper: None,
            list_per_level: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Lets `keeper` back this replica's lease (see [`keeper`]): the keeper
    /// of the directory this database was found in, on the replica this
    /// one lies under. A keeper elsewhere is ignored.
    pub fn with_keeper(mut self, keeper: keeper::Keeper) -> Replica {
        self.keeper = Some(keeper);
        self
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
            storage_class: None,
            keeper: None,
            list_per_level: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Replica {
        self.retry = retry;
        self
    }

    /// The retry policy every request follows.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
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

    /// Whether the replica holds a Litestream v0.3 backup (objects under
    /// `generations/`): one LIST request, stopped at the first object.
    pub async fn has_litestream_v03(&self) -> Result<bool, ReplicaError> {
        let prefix = ObjectPath::from(join(&self.prefix, V03_ROOT).as_str());
        let found = self
            .with_retry_op("LIST", prefix.as_ref(), &self.stats.lists, || {
                let mut list = self.store.list(Some(&prefix));
                async move { list.next().await.transpose() }
            })
            .await?;
        Ok(found.is_some())
    }

    /// Lists every object of the Litestream v0.3 backup (under
    /// `generations/`), with keys relative to the replica's prefix.
    pub async fn list_litestream_v03(&self) -> Result<Vec<V03Object>, ReplicaError> {
        let prefix = join(&self.prefix, V03_ROOT);
        let path = ObjectPath::from(prefix.as_str());
        let metas: Vec<object_store::ObjectMeta> = self
            .with_retry_op("LIST", &prefix, &self.stats.lists, || {
                self.store.list(Some(&path)).try_collect()
            })
            .await?;
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m.location.as_ref().get(strip..)?.to_string();
                Some(V03Object {
                    key,
                    size: m.size,
                    modified: m.last_modified,
                })
            })
            .collect())
    }

    /// For a local-folder replica, the path on disk of a v0.3 object (read
    /// in place). Counted as one GET.
    pub fn litestream_v03_local_path(&self, object: &V03Object) -> Option<PathBuf> {
        let root = self.local_root.as_ref()?;
        self.stats.gets.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(object.size, Ordering::Relaxed);
        Some(root.join(&object.key))
    }

    /// Opens a v0.3 object (its key relative to the replica's prefix) for
    /// streaming download.
    pub async fn open_litestream_v03(
        &self,
        key: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, ReplicaError>>, ReplicaError>
    {
        let key = join(&self.prefix, key);
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
                    if permanent(&e) || attempt >= self.retry.max_attempts {
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
}

/// Errors that another attempt cannot change (the object is missing or
/// exists, a condition failed, the request is refused or malformed).
fn permanent(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
    )
}

impl ReplicaError {
    /// A request that failed on every attempt, but with errors another
    /// attempt later may not meet (a reset connection, a timeout, a 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, ReplicaError::Storage { source, .. } if !permanent(source))
    }
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

    #[cfg(feature = "s3")]
    #[test]
    fn replicas_of_one_bucket_share_one_client_and_other_credentials_do_not() {
        let creds = |k: &str| S3Credentials {
            access_key_id: k.into(),
            secret_access_key: "secret".into(),
        };
        let url = |p: &str| format!("s3://bucket/{p}?endpoint=http://127.0.0.1:9");
        let a = Replica::open_with_credentials(&url("a.db"), Some(&creds("k1"))).unwrap();
        let b = Replica::open_with_credentials(&url("sub/b.db"), Some(&creds("k1"))).unwrap();
        let c = Replica::open_with_credentials(&url("a.db"), Some(&creds("k2"))).unwrap();
        let d = Replica::open_with_credentials(
            "s3://other/a.db?endpoint=http://127.0.0.1:9",
            Some(&creds("k1")),
        )
        .unwrap();
        assert!(Arc::ptr_eq(a.store(), b.store()), "same bucket, same keys");
        assert!(!Arc::ptr_eq(a.store(), c.store()), "other credentials");
        assert!(!Arc::ptr_eq(a.store(), d.store()), "other bucket");
        assert_eq!((a.prefix.as_str(), b.prefix.as_str()), ("a.db", "sub/b.db"));
        // The client goes with its last replica.
        let weak = Arc::downgrade(a.store());
        drop((a, b));
        assert!(weak.upgrade().is_none());
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
