//! Writing to a replica: uploads (one request or multipart), level-0 files
//! created only where no file is, timestamps, deletes.

use super::*;

impl Replica {
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
                        let mut guard = AbortOnDrop(None);
                        let up = guard.0.insert(
                            self.store
                                .put_multipart_opts(
                                    &path,
                                    object_store::PutMultipartOptions {
                                        attributes,
                                        ..Default::default()
                                    },
                                )
                                .await?,
                        );
                        let r = match upload_parts(up, spilled).await {
                            Ok(()) => up.complete().await.map(|_| ()),
                            Err(e) => {
                                let _ = up.abort().await;
                                Err(e)
                            }
                        };
                        guard.0 = None;
                        r
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
    pub(super) async fn head_size(&self, key: &str) -> Result<Option<u64>, ReplicaError> {
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
    pub(super) async fn existing_file(
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

    /// Runs an upload with the LTX timestamp in the object's metadata (and
    /// the replica's storage class, when it has one). A
    /// store that keeps no metadata (a local folder behind a decorator) says
    /// so once, and from then on uploads go without it: the timestamp is in
    /// the LTX header anyway.
    pub(super) async fn with_timestamp_metadata<F, Fut>(
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
            if let Some(class) = &self.storage_class {
                a.insert(Attribute::StorageClass, class.clone().into());
            }
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

    pub(super) fn set_local_mtime(
        &self,
        key: &str,
        timestamp: DateTime<Utc>,
    ) -> Result<(), ReplicaError> {
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
pub(super) enum Existing {
    /// The same file (our own earlier upload).
    Same,
    /// Another file.
    Other,
    /// Nothing.
    Missing,
}

/// The last `n` bytes of a local file.
pub(super) async fn read_tail(path: &std::path::Path, n: u64) -> object_store::Result<Bytes> {
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

/// A multipart upload under way, aborted if dropped before it ends (a
/// stop's deadline cut it short): the abort is sent from a task of its own,
/// so no incomplete upload is left to be billed, as long as the runtime
/// runs a moment longer (the replicator still releases its leases then).
struct AbortOnDrop(Option<Box<dyn object_store::MultipartUpload>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let (Some(mut up), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = up.abort().await;
            });
        }
    }
}

/// Sends a file's bytes as the parts of a multipart upload, 8 MiB each.
pub(super) async fn upload_parts(
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
