//! Fault and latency injection around a real object store: a decorator,
//! never a parallel fake.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// Fails the next `fail_puts` PUTs with a transient error, then passes
/// everything to the inner store.
#[derive(Debug)]
pub struct FlakyStore {
    pub inner: Arc<dyn ObjectStore>,
    /// PUTs still to fail.
    pub fail_puts: AtomicU32,
    /// PUT attempts seen.
    pub attempts: AtomicU32,
    /// Milliseconds added to every PUT (a slow network).
    pub put_delay_ms: AtomicU64,
    /// PUTs whose key contains this text wait for a permit of the semaphore
    /// (an upload that hangs until the test lets it finish).
    pub hold: std::sync::Mutex<Option<(String, Arc<tokio::sync::Semaphore>)>>,
    /// PUTs that are waiting at the hold now, or have waited.
    pub held: AtomicU32,
}

impl fmt::Display for FlakyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlakyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let gate = self
            .hold
            .lock()
            .unwrap()
            .as_ref()
            .filter(|(text, _)| location.as_ref().contains(text.as_str()))
            .map(|(_, sem)| sem.clone());
        if let Some(sem) = gate {
            self.held.fetch_add(1, Ordering::SeqCst);
            let _permit = sem.acquire().await;
        }
        let delay = self.put_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            // A slow store, injected: the latency is the condition under test.
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let left = self.fail_puts.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_puts.store(left - 1, Ordering::SeqCst);
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "injected: connection reset".into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

pub fn flaky(inner: Arc<dyn ObjectStore>) -> Arc<FlakyStore> {
    Arc::new(FlakyStore {
        inner,
        fail_puts: AtomicU32::new(0),
        attempts: AtomicU32::new(0),
        put_delay_ms: AtomicU64::new(0),
        hold: std::sync::Mutex::new(None),
        held: AtomicU32::new(0),
    })
}

/// Retries with millisecond backoffs: `attempts` tries in all.
pub fn fast_retry(attempts: u32) -> litevault::replica::RetryPolicy {
    litevault::replica::RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
    }
}

/// A replica at prefix `app` of a fresh in-memory store behind a
/// [`FlakyStore`], retrying as [`fast_retry`]`(attempts)`.
pub fn flaky_memory_replica(attempts: u32) -> (Arc<FlakyStore>, litevault::Replica) {
    let store = flaky(Arc::new(object_store::memory::InMemory::new()));
    let replica = litevault::Replica::from_store(
        store.clone(),
        "app",
        litevault::replica::KeyLayout::Ltx,
        "flaky",
    )
    .with_retry(fast_retry(attempts));
    (store, replica)
}

/// A replica at prefix `app` of a fresh in-memory store behind a
/// [`FaultStore`](litevault::replica::faults::FaultStore) with `config`
/// (default retry policy). Also returns the store itself, for a clean
/// replica over the same objects.
pub fn faulty_memory_replica(
    config: litevault::replica::faults::FaultConfig,
) -> (
    Arc<dyn ObjectStore>,
    Arc<litevault::replica::faults::FaultStore>,
    litevault::Replica,
) {
    let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let faulty = Arc::new(litevault::replica::faults::FaultStore::new(
        inner.clone(),
        config,
    ));
    let replica = litevault::Replica::from_store(
        faulty.clone(),
        "app",
        litevault::replica::KeyLayout::Ltx,
        "faulty",
    );
    (inner, faulty, replica)
}
